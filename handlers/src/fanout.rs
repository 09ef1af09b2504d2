//! Delivery of one frame to many connections.
//!
//! Posts run with bounded concurrency: one at a time, a broadcast to 1,000 connections at
//! ~20 ms per PostToConnection takes 20 s; unbounded, a large table opens thousands of sockets
//! and earns 429s. A connection that answers 410 Gone has its own record deleted (never the
//! sender's) and the fan-out goes on; any other failure is counted and logged, never fatal.

use bytes::Bytes;
use futures::StreamExt;

use crate::management::{ManagementApi, ManagementError};
use crate::store::{ConnectionStore, StoreError};

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The connection was gone; its record has been deleted (or the delete was logged as failed).
    Gone,
    Failed(ManagementError),
}

/// The tally of a broadcast.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanOutReport {
    pub delivered: usize,
    pub gone: usize,
    /// Posts that failed otherwise, plus records that could not be read.
    pub failed: usize,
    /// Set when listing stopped early (a page could not be fetched): connections after that
    /// point were not reached.
    pub list_error: Option<StoreError>,
}

/// Posts `frame` to one connection; on 410 deletes that connection's record.
pub async fn deliver(
    store: &dyn ConnectionStore,
    api: &dyn ManagementApi,
    endpoint: &str,
    connection_id: &str,
    frame: Bytes,
) -> Outcome {
    match api.post_to_connection(endpoint, connection_id, frame).await {
        Ok(()) => Outcome::Delivered,
        Err(ManagementError::Gone) => {
            if let Err(e) = store.delete(connection_id).await {
                // The record stays until the TTL removes it; the next broadcast retries.
                tracing::warn!(connection_id, error = %e, "could not delete a gone connection");
            } else {
                tracing::info!(connection_id, "deleted the record of a gone connection");
            }
            Outcome::Gone
        }
        Err(e) => {
            tracing::warn!(connection_id, error = %e, "delivery failed");
            Outcome::Failed(e)
        }
    }
}

/// Posts `frame` to every connection in `store`, at most `concurrency` posts at a time.
pub async fn broadcast(
    store: &dyn ConnectionStore,
    api: &dyn ManagementApi,
    endpoint: &str,
    frame: Bytes,
    concurrency: usize,
) -> FanOutReport {
    enum Step {
        Done(Outcome),
        BadRecord(StoreError),
    }
    let frame = &frame;
    // Records whose TTL has passed are neither posted to nor counted.
    store
        .list_recipients(chrono::Utc::now().timestamp())
        .map(|item| async move {
            match item {
                Ok(c) => {
                    Step::Done(deliver(store, api, endpoint, &c.connection_id, frame.clone()).await)
                }
                Err(e) => Step::BadRecord(e),
            }
        })
        .buffer_unordered(concurrency.max(1))
        .fold(FanOutReport::default(), |mut report, step| async move {
            match step {
                Step::Done(Outcome::Delivered) => report.delivered += 1,
                Step::Done(Outcome::Gone) => report.gone += 1,
                Step::Done(Outcome::Failed(_)) => report.failed += 1,
                Step::BadRecord(e @ StoreError::Malformed { .. }) => {
                    tracing::warn!(error = %e, "skipping a malformed record");
                    report.failed += 1;
                }
                Step::BadRecord(e) => {
                    tracing::error!(error = %e, "listing connections failed");
                    report.list_error = Some(e);
                }
            }
            report
        })
        .await
}
