//! The fan-out worker: runs queued [`FanOutJob`]s with the fan-out engine.
//!
//! In AWS it is a Lambda function behind an SQS event source mapping with
//! `FunctionResponseTypes: [ReportBatchItemFailures]`: a job that could not be run is named in
//! the response's `batchItemFailures` and comes back after the visibility timeout (then to the
//! dead-letter queue), while the others are deleted
//! (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html>). Locally
//! the gateway runs the same [`Worker`] over a [`crate::queue::MemoryQueue`].
//!
//! A job never runs past the invocation's deadline: what is left (ids listed but not posted,
//! and the cursor) goes back on the queue as a continuation job before the worker returns.
//! Delivery is at least once: a post cut at the deadline, or a job retried after a failure,
//! may reach a connection twice; every message frame carries an `id` so clients can drop
//! duplicates.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use bytes::Bytes;

use crate::audience::{AudienceError, AudienceSource};
use crate::fanout::{Deadline, FanOut, FanOutReport};
use crate::job::{FanOutJob, JobError, Listing};
use crate::management::ManagementApi;
use crate::queue::{Queue, QueueError};
use crate::store::ConnectionStore;

/// The worker function's `Handler` property: the `bootstrap` binary runs the worker when
/// Lambda hands it this name as `_HANDLER`.
pub const HANDLER_NAME: &str = "fanout-worker";

/// Ids per audience page a worker lists at a time.
pub const PAGE_SIZE: usize = 1_000;

/// Why a job could not be run (it is then reported as a batch item failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    #[error("message {message_id}: {source}")]
    Job {
        message_id: String,
        source: JobError,
    },
    #[error("job of message {message_id}: {source}")]
    Audience {
        message_id: String,
        source: AudienceError,
    },
    #[error("job of message {message_id}: could not enqueue its continuation: {source}")]
    Continuation {
        message_id: String,
        source: QueueError,
    },
}

/// What one job did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobReport {
    pub posts: FanOutReport,
    /// The continuation enqueued, if the deadline came first.
    pub continuation: Option<FanOutJob>,
    /// Audience pages listed.
    pub pages: usize,
}

/// The worker's parts.
#[derive(Clone)]
pub struct Worker {
    pub store: Arc<dyn ConnectionStore>,
    pub audience: Arc<dyn AudienceSource>,
    pub api: Arc<dyn ManagementApi>,
    pub queue: Arc<dyn Queue>,
    pub concurrency: usize,
    pub page_size: usize,
}

impl Worker {
    /// Runs one job until it is done or its deadline comes; enqueues the rest.
    pub async fn run_job(
        &self,
        job: FanOutJob,
        deadline: Option<Deadline>,
    ) -> Result<JobReport, WorkerError> {
        let mut fanout = FanOut::new(
            self.store.as_ref(),
            self.api.as_ref(),
            &job.endpoint,
            Bytes::from(job.frame.clone()),
            self.concurrency,
            deadline,
        );
        let mut pending = job.pending.clone();
        let mut listing = job.listing.clone();
        let mut pages = 0;
        loop {
            if !pending.is_empty() {
                pending = fanout.post_batch(std::mem::take(&mut pending)).await;
                if !pending.is_empty() {
                    break;
                }
            }
            if fanout.expired() {
                break;
            }
            let after = match &listing {
                Listing::Done => break,
                Listing::Start => None,
                Listing::After(c) => Some(c.as_str()),
            };
            let page = match self
                .audience
                .audience_page(&job.audience, after, self.page_size)
                .await
            {
                Ok(p) => p,
                Err(source) if pages == 0 && pending.is_empty() && job_untouched(&fanout) => {
                    // Nothing done yet: let the queue retry the whole job (then dead-letter it).
                    return Err(WorkerError::Audience {
                        message_id: job.message_id.clone(),
                        source,
                    });
                }
                Err(e) => {
                    // Posts were made: hand the rest to a continuation rather than have the
                    // queue redo them all.
                    tracing::warn!(error = %e, "listing failed mid-job; continuing later");
                    break;
                }
            };
            pages += 1;
            pending = page.ids;
            listing = page.next;
        }
        let posts = fanout.into_report();
        let rest = job.continuation(listing, pending);
        let continuation = if rest.is_finished() {
            None
        } else {
            self.queue
                .send(vec![rest.to_body()])
                .await
                .map_err(|source| WorkerError::Continuation {
                    message_id: job.message_id.clone(),
                    source,
                })?;
            tracing::info!(
                message_id = %job.message_id,
                pending = rest.pending.len(),
                listing = ?rest.listing,
                "deadline reached: continuation enqueued"
            );
            Some(rest)
        };
        tracing::info!(
            message_id = %job.message_id,
            audience = ?job.audience,
            delivered = posts.delivered,
            gone = posts.gone,
            failed = posts.failed,
            throttled = posts.throttled,
            pages,
            "fan-out job done"
        );
        Ok(JobReport {
            posts,
            continuation,
            pages,
        })
    }

    /// Runs a queue message body; an unreadable body is an error naming why.
    pub async fn run_body(
        &self,
        message_id: &str,
        body: &str,
        deadline: Option<Deadline>,
    ) -> Result<JobReport, WorkerError> {
        let job = FanOutJob::from_body(body).map_err(|source| WorkerError::Job {
            message_id: message_id.to_owned(),
            source,
        })?;
        self.run_job(job, deadline).await
    }

    /// The Lambda entry point for an SQS batch: runs the jobs one after another and names the
    /// ones that failed, or were not started before the deadline, in `batchItemFailures`.
    pub async fn handle_sqs(
        &self,
        event: SqsEvent,
        deadline: Option<Deadline>,
    ) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let message_id = record.message_id.unwrap_or_default();
            let in_time = deadline.is_none_or(|d| tokio::time::Instant::now() < d.stop_starting);
            let outcome = if in_time {
                let body = record.body.as_deref().unwrap_or("");
                self.run_body(&message_id, body, deadline)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                Err("the deadline came before this job started".to_owned())
            };
            if let Err(reason) = outcome {
                tracing::warn!(message_id, %reason, "job returned to the queue");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }
}

impl Worker {
    /// Receives up to 10 jobs from `queue` (waiting up to `wait`), runs each with `job_time`
    /// as its deadline, and deletes those that ran; the others come back after the visibility
    /// timeout, as with SQS and a Lambda event source mapping. Returns how many were received.
    /// The local gateway's queue mode is a loop of this.
    pub async fn poll_once(
        &self,
        queue: &dyn Queue,
        wait: std::time::Duration,
        job_time: std::time::Duration,
    ) -> Result<usize, QueueError> {
        let received = queue.receive(10, wait).await?;
        for m in &received {
            let deadline = Deadline::at(
                tokio::time::Instant::now() + job_time,
                crate::management::ATTEMPT_TIMEOUT.min(job_time / 2),
            );
            match self.run_body(&m.message_id, &m.body, Some(deadline)).await {
                Ok(_) => queue.delete(&m.receipt_handle).await?,
                Err(e) => tracing::warn!(error = %e, "job returned to the queue"),
            }
        }
        Ok(received.len())
    }
}

fn job_untouched(fanout: &FanOut<'_>) -> bool {
    let r = fanout.report();
    r.delivered + r.gone + r.failed + r.undelivered == 0
}

/// Serves the fan-out worker's Lambda function (the `fanout-worker` handler, which `run_lambda`
/// dispatches here): SQS events, each a batch of jobs. It needs a queue to re-enqueue to: the
/// stage's fan-out queue ([`crate::config::FANOUT_QUEUE_URL`]), set in both modes, since inline
/// mode hands off to the worker what its deadline leaves.
pub(crate) async fn serve_lambda(
    store: Arc<crate::store::DynamoDbStore>,
    memberships: Option<Arc<crate::membership::DynamoDbMembershipStore>>,
    api: Arc<dyn ManagementApi>,
    queue: Option<crate::queue::SqsQueue>,
    config: &crate::config::Config,
) -> Result<(), crate::RunError> {
    let Some(queue) = queue else {
        let e = crate::config::ConfigError::Missing {
            name: crate::config::FANOUT_QUEUE_URL,
        };
        tracing::error!(error = %e, "bad configuration");
        return Err(e.into());
    };
    let worker = Worker {
        store: store.clone(),
        audience: Arc::new(crate::audience::StackAudience {
            connections: store,
            memberships: memberships.map(|m| m as Arc<dyn crate::membership::MembershipStore>),
        }),
        api,
        queue: Arc::new(queue),
        concurrency: config.broadcast_concurrency,
        page_size: PAGE_SIZE,
    };
    tracing::debug!(handler = HANDLER_NAME, "ready");
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<SqsEvent>| {
            let worker = worker.clone();
            async move {
                let deadline = Deadline::from_lambda_deadline(
                    event.context.deadline,
                    crate::management::ATTEMPT_TIMEOUT,
                );
                Ok::<_, std::convert::Infallible>(
                    worker.handle_sqs(event.payload, Some(deadline)).await,
                )
            }
        },
    ))
    .await
    .map_err(|e| crate::RunError::Runtime(e.to_string()))
}

#[cfg(test)]
mod tests;
