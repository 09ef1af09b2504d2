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
//! and the cursor) goes back on the queue as a continuation job before the worker returns. A
//! job of the batch that the deadline left unstarted goes back as a fresh message too (not as
//! a batch item failure, which would count toward the queue's `maxReceiveCount` and send a job
//! that never failed to the dead-letter queue).
//!
//! Two rules bound what a job can make the worker do:
//!
//! - **Endpoint.** The worker posts only to its function's `CALLBACK_URL` (the stage's
//!   execute-api endpoint, which synth sets; the local gateway passes its own). A job whose
//!   `endpoint` names anything else is refused unrun, logged with both, and named in
//!   `batchItemFailures`, so it ends in the dead-letter queue where an operator sees it.
//! - **Age.** A job carries when its message was first enqueued (`enqueuedAt`, kept by every
//!   continuation; for a version 1 body, SQS's `SentTimestamp` or the first time a worker saw
//!   it). A job older than `FANOUT_MAX_JOB_AGE_SECONDS` is dropped with a log line and counted:
//!   under sustained 429s each continuation is a new message, so neither the receive count nor
//!   the queue's retention would ever end it.
//!
//! A message can also be a backend's push through the bus (an EventBridge `Push` event the
//! stage's rule sends to the queue): the worker delivers it to its audience with the same
//! delivery service ([`crate::bus_push`]).
//!
//! Delivery is at least once: a post cut at the deadline, or a job retried after a failure,
//! may reach a connection twice; every message frame carries an `id` so clients can drop
//! duplicates.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};

use crate::audience::{AudienceError, AudienceSource};
use crate::bus_push::{self, BusPushError};
pub use crate::delivery::JobReport;
use crate::delivery::{Delivery, DeliveryError, Parcel};
use crate::fanout::Deadline;
use crate::job::{FanOutJob, JobError};
use crate::management::ManagementApi;
use crate::membership::MembershipStore;
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
    /// A message from the bus that is not a push the worker can deliver.
    #[error("message {message_id}: {source}")]
    Event {
        message_id: String,
        source: BusPushError,
    },
    /// The job names an endpoint other than the one this worker posts to.
    #[error(
        "message {message_id}: job endpoint {job_endpoint:?} is not this worker's endpoint {endpoint:?}; refused, nothing posted"
    )]
    ForeignEndpoint {
        message_id: String,
        job_endpoint: String,
        endpoint: String,
    },
}

impl From<DeliveryError> for WorkerError {
    fn from(e: DeliveryError) -> Self {
        match e {
            DeliveryError::Audience { message_id, source } => {
                WorkerError::Audience { message_id, source }
            }
            DeliveryError::Continuation { message_id, source }
            | DeliveryError::Enqueue { message_id, source } => {
                WorkerError::Continuation { message_id, source }
            }
            // The worker's delivery always has its queue.
            DeliveryError::NoQueue => WorkerError::Continuation {
                message_id: String::new(),
                source: QueueError::Backend("no queue configured".into()),
            },
        }
    }
}

/// What a batch of jobs came to ([`Worker::handle_sqs`] logs it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Jobs run (to their end, or to a continuation).
    pub ran: usize,
    /// Jobs dropped for their age.
    pub expired: usize,
    /// Jobs the deadline left unstarted, sent back to the queue as fresh messages.
    pub requeued: usize,
    /// Jobs named in `batchItemFailures`.
    pub failed: usize,
}

/// The worker's parts.
#[derive(Clone)]
pub struct Worker {
    pub store: Arc<dyn ConnectionStore>,
    pub audience: Arc<dyn AudienceSource>,
    pub api: Arc<dyn ManagementApi>,
    pub queue: Arc<dyn Queue>,
    /// Where a gone connection's memberships are deleted (`None`: rooms are not wired).
    pub memberships: Option<Arc<dyn MembershipStore>>,
    /// The only `@connections` endpoint the worker posts to (its function's `CALLBACK_URL`).
    pub endpoint: String,
    /// Jobs older than this (since their message's first enqueue) are dropped.
    pub max_job_age: std::time::Duration,
    /// The stage's budget of broadcast deliveries per second: every page the worker lists is
    /// charged to it (queue mode's broadcasts are admitted by `sendMessage` on one unit and
    /// charged here, as the inline path charges what it listed). `None`: not charged.
    pub broadcast_budget: Option<crate::store::MessageRate>,
    pub concurrency: usize,
    pub page_size: usize,
    /// Where each job's metric line goes (`None`: no metrics).
    pub metrics: Option<crate::metrics::Metrics>,
}

/// Endpoints compare without a trailing slash (`CALLBACK_URL` is stored without one).
fn same_endpoint(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

impl Worker {
    /// Runs one job until it is done or its deadline comes; enqueues the rest (the delivery
    /// service's [`Delivery::run_job`], after the worker's own checks).
    pub async fn run_job(
        &self,
        mut job: FanOutJob,
        deadline: Option<Deadline>,
    ) -> Result<JobReport, WorkerError> {
        if let Some(dropped) = self.check_job(&mut job)? {
            return Ok(dropped);
        }
        self.delivery()
            .run_job(job, deadline)
            .await
            .map_err(WorkerError::from)
    }

    /// The delivery service over the worker's parts, posting through its queue.
    pub fn delivery(&self) -> Delivery {
        Delivery {
            store: self.store.clone(),
            audience: self.audience.clone(),
            memberships: self.memberships.clone(),
            api: self.api.clone(),
            queue: Some(self.queue.clone()),
            // The worker posts what it is given: jobs are already the queue's.
            queue_segments: None,
            concurrency: self.concurrency,
            page_size: self.page_size,
            broadcast_budget: self.broadcast_budget,
            prepaid: 0,
            metrics: self.metrics.clone(),
        }
    }

    /// Refuses a job naming another endpoint than the worker's, gives a version 1 job its age
    /// (it starts now; its continuations carry it), and drops a job older than the maximum:
    /// `Ok(Some(report))` when it is dropped, `Ok(None)` when it may run.
    fn check_job(&self, job: &mut FanOutJob) -> Result<Option<JobReport>, WorkerError> {
        if !same_endpoint(&job.endpoint, &self.endpoint) {
            let err = WorkerError::ForeignEndpoint {
                message_id: job.message_id.clone(),
                job_endpoint: job.endpoint.clone(),
                endpoint: self.endpoint.clone(),
            };
            tracing::error!(error = %err, "refusing a fan-out job");
            return Err(err);
        }
        let now = crate::job::now_ms();
        job.enqueued_at.get_or_insert(now);
        let Some(age) = job.age(now).filter(|age| *age > self.max_job_age) else {
            return Ok(None);
        };
        tracing::warn!(
            message_id = %job.message_id,
            age_seconds = age.as_secs(),
            max_age_seconds = self.max_job_age.as_secs(),
            audience = ?job.audience,
            pending = job.pending.len(),
            listing = ?job.listing,
            "fan-out job dropped: older than the maximum job age; its pending connections and the rest of its listing are not posted to"
        );
        if let Some(metrics) = &self.metrics {
            let now_ms = chrono::Utc::now().timestamp_millis();
            metrics.count(
                &self.endpoint,
                wsstack_routes::metrics::Metric::JobsExpired,
                1,
                now_ms,
            );
        }
        Ok(Some(JobReport {
            expired: true,
            ..JobReport::default()
        }))
    }

    /// Runs a queue message body (a fan-out job, or a backend's push through the bus); an
    /// unreadable body is an error naming why.
    pub async fn run_body(
        &self,
        message_id: &str,
        body: &str,
        deadline: Option<Deadline>,
    ) -> Result<JobReport, WorkerError> {
        if bus_push::is_event(body) {
            return self.run_event(message_id, body, deadline).await;
        }
        let job = FanOutJob::from_body(body).map_err(|source| WorkerError::Job {
            message_id: message_id.to_owned(),
            source,
        })?;
        self.run_job(job, deadline).await
    }

    /// Delivers a backend's push that came through the bus ([`crate::bus_push`]) to its
    /// audience, as the push API would: a room or everyone from here, page by page, with the
    /// rest handed back to the queue at the deadline.
    async fn run_event(
        &self,
        message_id: &str,
        body: &str,
        deadline: Option<Deadline>,
    ) -> Result<JobReport, WorkerError> {
        let push = bus_push::read(body, chrono::Utc::now()).map_err(|source| {
            let err = WorkerError::Event {
                message_id: message_id.to_owned(),
                source,
            };
            tracing::error!(error = %err, "refusing an event from the bus");
            err
        })?;
        let parcel = Parcel {
            endpoint: self.endpoint.clone(),
            message_id: push.event_id,
            frame: push.frame,
        };
        let report = self
            .delivery()
            .deliver(&push.audience, &parcel, deadline)
            .await?;
        tracing::info!(
            event_id = %parcel.message_id,
            audience = ?push.audience,
            delivered = report.posts.delivered,
            gone = report.posts.gone,
            failed = report.posts.failed,
            queued_jobs = report.queued_jobs,
            "push from the bus delivered"
        );
        Ok(JobReport {
            posts: report.posts,
            ..JobReport::default()
        })
    }

    /// The Lambda entry point for an SQS batch: runs the jobs one after another and names the
    /// ones that failed in `batchItemFailures`. A job the deadline left unstarted is sent back
    /// to the queue as a fresh message and reported done (a batch item failure would count
    /// toward `maxReceiveCount` although the job never ran); only if that send fails is it
    /// named in `batchItemFailures`.
    pub async fn handle_sqs(
        &self,
        event: SqsEvent,
        deadline: Option<Deadline>,
    ) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        let mut tally = BatchReport::default();
        for record in event.records {
            let message_id = record.message_id.clone().unwrap_or_default();
            let outcome = self.handle_record(&message_id, &record, deadline).await;
            match outcome {
                Ok(Handled::Ran { expired: true }) => tally.expired += 1,
                Ok(Handled::Ran { expired: false }) => tally.ran += 1,
                Ok(Handled::Requeued) => tally.requeued += 1,
                Err(reason) => {
                    tally.failed += 1;
                    tracing::warn!(message_id, %reason, "job returned to the queue");
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = message_id;
                    response.batch_item_failures.push(failure);
                }
            }
        }
        tracing::info!(
            ran = tally.ran,
            expired = tally.expired,
            requeued = tally.requeued,
            failed = tally.failed,
            "fan-out batch done"
        );
        response
    }

    async fn handle_record(
        &self,
        message_id: &str,
        record: &aws_lambda_events::sqs::SqsMessage,
        deadline: Option<Deadline>,
    ) -> Result<Handled, String> {
        let body = record.body.as_deref().unwrap_or("");
        if bus_push::is_event(body) {
            return self.handle_event(message_id, body, deadline).await;
        }
        let mut job = FanOutJob::from_body(body).map_err(|source| {
            WorkerError::Job {
                message_id: message_id.to_owned(),
                source,
            }
            .to_string()
        })?;
        // A version 1 job has no `enqueuedAt`: SQS's `SentTimestamp` (epoch milliseconds, "API
        // Reference, ReceiveMessage",
        // https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html)
        // is when this message was sent, the closest there is.
        if job.enqueued_at.is_none() {
            job.enqueued_at = record
                .attributes
                .get("SentTimestamp")
                .and_then(|t| t.parse::<i64>().ok());
        }
        let in_time = deadline.is_none_or(|d| tokio::time::Instant::now() < d.stop_starting);
        if !in_time {
            // Unstarted: the same job as a fresh message (its age travels in `enqueuedAt`).
            let fresh = FanOutJob {
                version: crate::job::JOB_VERSION,
                enqueued_at: Some(job.enqueued_at.unwrap_or_else(crate::job::now_ms)),
                ..job.clone()
            };
            self.queue.send(vec![fresh.to_body()]).await.map_err(|e| {
                format!(
                    "the deadline came before this job started, and re-enqueueing it failed: {e}"
                )
            })?;
            tracing::info!(message_id, job_message_id = %job.message_id, "deadline came before this job started: re-enqueued as a fresh message");
            return Ok(Handled::Requeued);
        }
        self.run_job(job, deadline)
            .await
            .map(|report| Handled::Ran {
                expired: report.expired,
            })
            .map_err(|e| e.to_string())
    }
}

impl Worker {
    /// One record that is an event from the bus: run, or, when the deadline came before it
    /// started, sent back as it is (a fresh message, not a failed receive).
    async fn handle_event(
        &self,
        message_id: &str,
        body: &str,
        deadline: Option<Deadline>,
    ) -> Result<Handled, String> {
        let in_time = deadline.is_none_or(|d| tokio::time::Instant::now() < d.stop_starting);
        if !in_time {
            self.queue.send(vec![body.to_owned()]).await.map_err(|e| {
                format!(
                    "the deadline came before this event started, and re-enqueueing it failed: {e}"
                )
            })?;
            return Ok(Handled::Requeued);
        }
        self.run_event(message_id, body, deadline)
            .await
            .map(|_| Handled::Ran { expired: false })
            .map_err(|e| e.to_string())
    }
}

/// What became of one record of a batch.
enum Handled {
    /// Ran; `true` when it was dropped for its age instead.
    Ran {
        expired: bool,
    },
    Requeued,
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

impl Worker {
    /// The fan-out worker as the stage's function runs it (the `fanout-worker` handler, which
    /// the `bootstrap` binary of wsstack-lambda hands SQS events to, each a batch of jobs), from
    /// its configuration. It needs a queue to re-enqueue to: the stage's fan-out queue
    /// ([`crate::config::FANOUT_QUEUE_URL`]), set in both modes, since inline mode hands off to
    /// the worker what its deadline leaves; and the `@connections` endpoint
    /// ([`crate::config::CALLBACK_URL`]). Either missing is a configuration error, logged.
    pub fn from_config(
        store: Arc<crate::store::DynamoDbStore>,
        memberships: Option<Arc<crate::membership::DynamoDbMembershipStore>>,
        api: Arc<dyn ManagementApi>,
        queue: Option<crate::queue::SqsQueue>,
        config: &crate::config::Config,
    ) -> Result<Worker, crate::config::ConfigError> {
        let Some(queue) = queue else {
            let e = crate::config::ConfigError::Missing {
                name: crate::config::FANOUT_QUEUE_URL,
            };
            tracing::error!(error = %e, "bad configuration");
            return Err(e);
        };
        // The only endpoint the worker posts to: synth sets it to the stage's execute-api
        // endpoint; jobs naming another are refused.
        let Some(endpoint) = config.callback_url.clone() else {
            let e = crate::config::ConfigError::Missing {
                name: crate::config::CALLBACK_URL,
            };
            tracing::error!(error = %e, "bad configuration");
            return Err(e);
        };
        let memberships = memberships.map(|m| m as Arc<dyn MembershipStore>);
        Ok(Worker {
            store: store.clone(),
            audience: Arc::new(crate::audience::StackAudience {
                connections: store,
                memberships: memberships.clone(),
            }),
            api,
            queue: Arc::new(queue),
            memberships,
            endpoint,
            max_job_age: config.max_job_age,
            concurrency: config.broadcast_concurrency,
            page_size: PAGE_SIZE,
            broadcast_budget: Some(config.broadcast_budget),
            metrics: crate::metrics::Metrics::from_lambda_env(),
        })
    }
}

#[cfg(test)]
mod tests;
