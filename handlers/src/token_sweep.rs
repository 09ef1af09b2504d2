//! Closing connections that outlived their token, or whose user was cut off.
//!
//! API Gateway checks a token only on `$connect`: a connection stays open for up to two hours
//! whatever the token's `exp` says. `$connect` stores the token's expiry on the record
//! ([`crate::store::ATTR_TOKEN_EXPIRES_AT`]); the token sweep (the `token-sweeper` handler, run
//! by an EventBridge schedule every few minutes in stages with `[auth] mode = "jwt"`, and by the
//! local gateway on a timer) lists the records whose token has expired and closes each
//! connection with `@connections` DELETE (DeleteConnection). API Gateway then runs
//! `$disconnect`, which removes the record and its room memberships. A 410 means the
//! connection is already gone: the sweep deletes its stale record itself.
//!
//! [`Closer::close_user`] closes every connection of one user (by the verified `sub`): what
//! `push disconnect --user` runs after the user was disabled at the issuer.
//!
//! The work is bounded like a fan-out: at most `concurrency` DELETEs in flight, none started
//! after the deadline's `stop_starting`, none waited for after its `hard` limit; what is left
//! is picked up by the next run.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::{BoxStream, FuturesUnordered};

use crate::fanout::Deadline;
use crate::management::{ManagementApi, ManagementError};
use crate::store::{ConnectionStore, Recipient, StoreError};

/// The function's `Handler` property: the `bootstrap` binary runs the sweep when Lambda hands
/// it this name as `_HANDLER`.
pub const HANDLER_NAME: &str = "token-sweeper";

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Connections listed for closing.
    pub listed: usize,
    /// Closed by DeleteConnection (API Gateway runs their `$disconnect`).
    pub closed: usize,
    /// Already gone (410): their stale records were deleted.
    pub gone: usize,
    /// DeleteConnection failed otherwise (429, 403, 5xx, a network error); the next run
    /// retries them.
    pub failed: usize,
    /// Listed but not closed before the deadline; the next run picks them up.
    pub unfinished: usize,
    /// Whether the deadline stopped the run.
    pub deadline_reached: bool,
    /// Records that could not be read, and the last such error (a page that could not be
    /// fetched ends the listing: the connections after it wait for the next run).
    pub list_errors: usize,
    pub list_error: Option<StoreError>,
}

/// How one connection's close went.
enum CloseOutcome {
    Closed,
    Gone,
    Failed,
}

/// Closes connections through `@connections` DELETE.
#[derive(Clone)]
pub struct Closer {
    pub store: Arc<dyn ConnectionStore>,
    pub api: Arc<dyn ManagementApi>,
    /// The `@connections` endpoint including the stage, e.g. `https://{api}.execute-api.{region}.amazonaws.com/{stage}`.
    pub endpoint: String,
    /// DeleteConnection calls in flight at once (at least 1).
    pub concurrency: usize,
}

impl Closer {
    /// The token sweep: closes every connection whose token expired at or before `now`
    /// (epoch seconds).
    pub async fn sweep(&self, now: i64, deadline: Option<Deadline>) -> SweepReport {
        let report = self
            .close_all(self.store.list_token_expired(now), deadline)
            .await;
        tracing::info!(
            now,
            listed = report.listed,
            closed = report.closed,
            gone = report.gone,
            failed = report.failed,
            unfinished = report.unfinished,
            list_errors = report.list_errors,
            deadline_reached = report.deadline_reached,
            "token sweep done"
        );
        report
    }

    /// Closes every connection of the user whose verified subject is `sub`.
    pub async fn close_user(&self, sub: &str, deadline: Option<Deadline>) -> SweepReport {
        let report = self.close_all(self.store.list_by_sub(sub), deadline).await;
        tracing::info!(
            sub,
            listed = report.listed,
            closed = report.closed,
            gone = report.gone,
            failed = report.failed,
            "user's connections closed"
        );
        report
    }

    async fn close_all(
        &self,
        mut listing: BoxStream<'_, Result<Recipient, StoreError>>,
        deadline: Option<Deadline>,
    ) -> SweepReport {
        let mut report = SweepReport::default();
        let mut in_flight = FuturesUnordered::new();
        let mut listing_done = false;
        loop {
            while !listing_done && in_flight.len() < self.concurrency.max(1) {
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d.stop_starting) {
                    report.deadline_reached = true;
                    listing_done = true;
                    break;
                }
                match listing.next().await {
                    None => listing_done = true,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "token sweep: a record could not be listed");
                        report.list_errors += 1;
                        report.list_error = Some(e);
                    }
                    Some(Ok(r)) => {
                        report.listed += 1;
                        in_flight.push(self.close(r.connection_id));
                    }
                }
            }
            if in_flight.is_empty() {
                break;
            }
            let next = match deadline {
                None => in_flight.next().await,
                Some(d) => match tokio::time::timeout_at(d.hard, in_flight.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        report.deadline_reached = true;
                        report.unfinished += in_flight.len();
                        tracing::warn!(
                            unfinished = in_flight.len(),
                            "token sweep: the deadline cut closes in flight"
                        );
                        break;
                    }
                },
            };
            match next {
                Some(CloseOutcome::Closed) => report.closed += 1,
                Some(CloseOutcome::Gone) => report.gone += 1,
                Some(CloseOutcome::Failed) => report.failed += 1,
                None => break,
            }
        }
        report
    }

    async fn close(&self, connection_id: String) -> CloseOutcome {
        match self
            .api
            .delete_connection(&self.endpoint, &connection_id)
            .await
        {
            Ok(()) => {
                tracing::info!(connection_id, "closed a connection");
                CloseOutcome::Closed
            }
            Err(ManagementError::Gone) => {
                // Closed already and its `$disconnect` never removed the record (it is best
                // effort): remove it here.
                match self.store.delete(&connection_id).await {
                    Ok(()) => {
                        tracing::info!(connection_id, "deleted the record of a gone connection")
                    }
                    Err(e) => {
                        tracing::warn!(connection_id, error = %e, "could not delete a gone connection's record");
                    }
                }
                CloseOutcome::Gone
            }
            Err(e) => {
                tracing::warn!(connection_id, error = %e, "could not close a connection");
                CloseOutcome::Failed
            }
        }
    }
}

impl Closer {
    /// The token sweeper as the stage's function runs it (the `token-sweeper` handler, which
    /// the `bootstrap` binary of wsstack-lambda hands EventBridge scheduled events to), from its
    /// configuration. It needs the `@connections` endpoint ([`crate::config::CALLBACK_URL`],
    /// which synth sets): a scheduled event names no API. Missing, it is a configuration error,
    /// logged.
    pub fn from_config(
        store: Arc<dyn ConnectionStore>,
        api: Arc<dyn ManagementApi>,
        config: &crate::config::Config,
    ) -> Result<Closer, crate::config::ConfigError> {
        let Some(endpoint) = config.callback_url.clone() else {
            let e = crate::config::ConfigError::Missing {
                name: crate::config::CALLBACK_URL,
            };
            tracing::error!(error = %e, "bad configuration");
            return Err(e);
        };
        Ok(Closer {
            store,
            api,
            endpoint,
            concurrency: config.broadcast_concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::time::Duration;

    use async_trait::async_trait;
    use bytes::Bytes;

    use super::*;
    use crate::faults::{Faulty, Op, Rule};
    use crate::management::ConnectionInfo;
    use crate::store::{Connection, MemoryStore};

    const NOW: i64 = 1_800_000_000;

    /// A `@connections` API whose DELETE closes (forgets) a connection it knows and answers
    /// 410 for the others; failures and delays come from the [`Faulty`] in front of it.
    #[derive(Default)]
    struct Api {
        open: Mutex<HashSet<String>>,
        deleted: Mutex<Vec<String>>,
    }

    /// The API behind a fault plan.
    type FaultyApi = Faulty<Api, ManagementError>;

    #[async_trait]
    impl ManagementApi for Api {
        async fn post_to_connection(
            &self,
            _: &str,
            _: &str,
            _: Bytes,
        ) -> Result<(), ManagementError> {
            unreachable!("the sweep never posts")
        }
        async fn get_connection(
            &self,
            _: &str,
            _: &str,
        ) -> Result<ConnectionInfo, ManagementError> {
            unreachable!("the sweep never gets")
        }
        async fn delete_connection(&self, endpoint: &str, id: &str) -> Result<(), ManagementError> {
            assert_eq!(endpoint, "http://127.0.0.1:1/dev");
            if self.open.lock().expect("lock").remove(id) {
                self.deleted.lock().expect("lock").push(id.to_owned());
                Ok(())
            } else {
                Err(ManagementError::Gone)
            }
        }
    }

    fn record(id: &str, sub: Option<&str>, token_expires_at: Option<i64>) -> Connection {
        Connection {
            connection_id: id.to_owned(),
            username: "u".to_owned(),
            connected_at: NOW * 1000,
            expires_at: NOW + 7200,
            sub: sub.map(str::to_owned),
            token_expires_at,
        }
    }

    async fn closer(
        api: Arc<FaultyApi>,
        records: &[Connection],
        concurrency: usize,
    ) -> (Closer, MemoryStore) {
        let store = MemoryStore::new().with_page_size(3);
        for r in records {
            store.put(r).await.expect("put");
            api.open
                .lock()
                .expect("lock")
                .insert(r.connection_id.clone());
        }
        let closer = Closer {
            store: Arc::new(store.clone()),
            api,
            endpoint: "http://127.0.0.1:1/dev".to_owned(),
            concurrency,
        };
        (closer, store)
    }

    #[tokio::test(start_paused = true)]
    async fn expired_tokens_are_closed_live_ones_and_unauthenticated_ones_stay() {
        let api = Arc::new(FaultyApi::new(Api::default()));
        let (closer, _store) = closer(
            api.clone(),
            &[
                record("expired-long-ago", Some("a"), Some(NOW - 3600)),
                record("expiring-now", Some("b"), Some(NOW)),
                record("live", Some("c"), Some(NOW + 1)),
                record("anonymous", None, None),
            ],
            8,
        )
        .await;
        let report = closer.sweep(NOW, None).await;
        assert_eq!(report.listed, 2);
        assert_eq!(report.closed, 2);
        let mut deleted = api.deleted.lock().expect("lock").clone();
        deleted.sort();
        assert_eq!(deleted, ["expired-long-ago", "expiring-now"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_gone_connection_has_its_record_deleted_and_failures_are_counted() {
        let broken = ManagementError::Other("HTTP 500".into());
        let api = Arc::new(
            FaultyApi::new(Api::default())
                .with(Rule::fail(Op::DeleteConnection, broken).for_key("broken-1")),
        );
        let (closer, store) = closer(
            api.clone(),
            &[
                record("stale", Some("a"), Some(NOW - 10)),
                record("broken-1", Some("b"), Some(NOW - 10)),
                record("live", Some("c"), Some(NOW + 100)),
            ],
            8,
        )
        .await;
        // The API forgot `stale` (its socket closed, `$disconnect` never ran).
        api.open.lock().expect("lock").remove("stale");
        let report = closer.sweep(NOW, None).await;
        assert_eq!((report.gone, report.failed, report.closed), (1, 1, 0));
        assert_eq!(store.get("stale").await.expect("get"), None);
        // A failed close keeps the record: the next run retries it.
        assert!(store.get("broken-1").await.expect("get").is_some());
        assert!(store.get("live").await.expect("get").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn closes_run_with_bounded_concurrency_and_stop_at_the_deadline() {
        let api = Arc::new(FaultyApi::new(Api::default()).with(Rule::delay(
            Op::DeleteConnection,
            Duration::from_millis(100),
        )));
        let records: Vec<Connection> = (0..40)
            .map(|i| record(&format!("c{i:02}"), Some("a"), Some(NOW - 1)))
            .collect();
        let (closer, _store) = closer(api.clone(), &records, 4).await;
        let start = tokio::time::Instant::now();
        // 40 closes, 4 at a time, 100 ms each: 1 s in all; the deadline allows 450 ms.
        let deadline = Deadline::at(
            start + Duration::from_millis(450),
            Duration::from_millis(100),
        );
        let report = closer.sweep(NOW, Some(deadline)).await;
        assert!(report.deadline_reached);
        assert_eq!(api.max_in_flight(), 4, "at most 4 in flight");
        // Started before 350 ms: rounds at 0, 100, 200, 300 ms.
        assert_eq!(report.closed, 16, "{report:?}");
        assert!(tokio::time::Instant::now() <= deadline.hard);
        // The next run closes the rest.
        let report = closer.sweep(NOW, None).await;
        assert_eq!(report.closed, 24);
    }

    #[tokio::test(start_paused = true)]
    async fn close_user_closes_exactly_that_users_connections() {
        let api = Arc::new(FaultyApi::new(Api::default()));
        let (closer, _store) = closer(
            api.clone(),
            &[
                record("ada-1", Some("ada"), Some(NOW + 600)),
                record("ada-2", Some("ada"), Some(NOW + 600)),
                record("bo-1", Some("bo"), Some(NOW + 600)),
                record("anonymous", None, None),
                record("ada-3", Some("ada"), Some(NOW + 600)),
            ],
            2,
        )
        .await;
        let report = closer.close_user("ada", None).await;
        assert_eq!(report.closed, 3);
        let mut deleted = api.deleted.lock().expect("lock").clone();
        deleted.sort();
        assert_eq!(deleted, ["ada-1", "ada-2", "ada-3"]);
        assert_eq!(
            closer.close_user("nobody", None).await,
            SweepReport::default()
        );
    }
}
