//! The one delivery service: a frame to an [`Audience`] (a connection, a user on all of their
//! connections, a room, everyone).
//!
//! Everything that reaches clients goes through [`Delivery::deliver`]: `sendMessage` (everyone,
//! a room, one connection), the push API, `push`, and the fan-out worker (which runs the queued
//! rest of a delivery with [`Delivery::run_job`]). Whatever the audience, posts go through the
//! fan-out engine ([`crate::fanout::FanOut`]): bounded concurrency, the deadline, back-off and
//! retry on 429, and the clean-up of a gone connection (its record and its memberships).
//!
//! How an audience is reached:
//!
//! - **One connection**: one post, now.
//! - **A user**: the user index lists their connections (one page), posted now.
//! - **A room or everyone, inline** (the stage's `[fanout] mode = "inline"`): listed page by page
//!   and posted now; when the deadline comes first, the rest (the ids listed but not posted,
//!   and the cursor) is handed to the fan-out queue as a job the worker continues.
//! - **A room or everyone, queue mode**: jobs go on the queue (one per Scan segment for everyone,
//!   one for a room) and the worker posts; nothing is posted now.
//!
//! Every page listed is charged to the stage's broadcast budget when one is set, less what the
//! caller took to admit the delivery ([`Delivery::prepaid`]).

use std::sync::Arc;

use bytes::Bytes;

use crate::audience::{AudienceError, AudienceSource};
use crate::fanout::{Deadline, FanOut, FanOutReport};
use crate::job::{FanOutJob, JobAudience, Listing};
use crate::management::ManagementApi;
use crate::membership::MembershipStore;
use crate::metrics::Metrics;
use crate::queue::{Queue, QueueError};
use crate::rooms::RoomName;
use crate::store::{ConnectionStore, MessageRate};

/// Whom a frame goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// One connection, by its id.
    Connection(String),
    /// Every open connection of one user ([`crate::store::Connection::user_id`]).
    User(String),
    /// Every member of a room.
    Room(RoomName),
    /// Every open connection.
    Everyone,
}

/// What is delivered: the frame, its id, and the `@connections` endpoint to post it to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parcel {
    /// The `@connections` endpoint, `https://{api}.execute-api.{region}.amazonaws.com/{stage}`.
    pub endpoint: String,
    /// The message's id: ties its fan-out jobs together in the logs.
    pub message_id: String,
    /// The frame, as JSON text.
    pub frame: String,
}

/// What a delivery came to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The posts made now.
    pub posts: FanOutReport,
    /// Jobs put on the fan-out queue: the whole delivery (queue mode), or what the deadline left.
    pub queued_jobs: usize,
}

/// What one job did ([`Delivery::run_job`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobReport {
    pub posts: FanOutReport,
    /// The continuation enqueued, if the deadline came first.
    pub continuation: Option<FanOutJob>,
    /// Audience pages listed.
    pub pages: usize,
    /// Whether the job was dropped unrun for being older than the worker's maximum job age.
    pub expired: bool,
}

/// Why a delivery could not be made or handed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Queue mode, or a hand-off, without a queue to send to (a wiring mistake of the embedder).
    #[error("fan-out mode is queue but no queue is configured")]
    NoQueue,
    #[error("could not enqueue the fan-out jobs of message {message_id}: {source}")]
    Enqueue {
        message_id: String,
        source: QueueError,
    },
    /// The audience could not be listed before anything was posted.
    #[error("message {message_id}: {source}")]
    Audience {
        message_id: String,
        source: AudienceError,
    },
    #[error("message {message_id}: could not enqueue the continuation: {source}")]
    Continuation {
        message_id: String,
        source: QueueError,
    },
}

/// The parts a delivery uses. Cheap to clone (shared handles).
#[derive(Clone)]
pub struct Delivery {
    pub store: Arc<dyn ConnectionStore>,
    /// Lists a job's audience page by page ([`crate::audience::StackAudience`] in the stack).
    pub audience: Arc<dyn AudienceSource>,
    /// Where a gone connection's memberships are deleted (`None`: rooms are not wired).
    pub memberships: Option<Arc<dyn MembershipStore>>,
    pub api: Arc<dyn ManagementApi>,
    /// The fan-out queue: queue mode's jobs and the hand-off at a deadline (`None`: what a
    /// deadline leaves is logged, not delivered).
    pub queue: Option<Arc<dyn Queue>>,
    /// `Some(segments)`: rooms and everyone go through the queue, everyone in this many jobs.
    pub queue_segments: Option<u32>,
    /// Most posts in flight.
    pub concurrency: usize,
    /// Ids per audience page.
    pub page_size: usize,
    /// The stage's budget of broadcast deliveries: every page listed is charged to it.
    pub broadcast_budget: Option<MessageRate>,
    /// Units of that budget the caller already took for this delivery (`sendMessage` takes one
    /// to admit a broadcast): the first pages listed are charged that much less.
    pub prepaid: usize,
    /// Where each delivery's metric line goes (`None`: no metrics; [`crate::metrics`]).
    pub metrics: Option<Metrics>,
}

impl Delivery {
    /// Delivers `parcel` to `audience`: now, within `deadline` (the rest handed to the queue),
    /// or through the queue, as the audience and the stage's fan-out mode say.
    pub async fn deliver(
        &self,
        audience: &Audience,
        parcel: &Parcel,
        deadline: Option<Deadline>,
    ) -> Result<DeliveryReport, DeliveryError> {
        let job = |a: JobAudience| FanOutJob {
            audience: a,
            ..FanOutJob::for_room(&parcel.message_id, &parcel.endpoint, &parcel.frame, "")
        };
        let job = match (audience, self.queue_segments) {
            (Audience::Connection(id), _) => return Ok(self.post_one(id, parcel, deadline).await),
            (Audience::Everyone, Some(segments)) => {
                let jobs = FanOutJob::for_everyone(
                    &parcel.message_id,
                    &parcel.endpoint,
                    &parcel.frame,
                    segments,
                );
                return self.enqueue(parcel, jobs).await;
            }
            (Audience::Room(room), Some(_)) => {
                let room = JobAudience::Room {
                    room: room.as_str().to_owned(),
                };
                return self.enqueue(parcel, vec![job(room)]).await;
            }
            (Audience::Everyone, None) => job(JobAudience::Everyone {
                segment: 0,
                segments: 1,
            }),
            (Audience::Room(room), None) => job(JobAudience::Room {
                room: room.as_str().to_owned(),
            }),
            (Audience::User(user_id), _) => job(JobAudience::User {
                user_id: user_id.clone(),
            }),
        };
        let report = self.run_job(job, deadline).await?;
        Ok(DeliveryReport {
            posts: report.posts,
            queued_jobs: usize::from(report.continuation.is_some()),
        })
    }

    /// One post to one connection, with the engine's retries within `deadline`.
    async fn post_one(
        &self,
        connection_id: &str,
        parcel: &Parcel,
        deadline: Option<Deadline>,
    ) -> DeliveryReport {
        let mut fanout = self.fan_out(parcel, deadline, None);
        fanout.post_batch(vec![connection_id.to_owned()]).await;
        let posts = fanout.into_report();
        self.record_metrics(&parcel.endpoint, &posts, 0);
        DeliveryReport {
            posts,
            queued_jobs: 0,
        }
    }

    async fn enqueue(
        &self,
        parcel: &Parcel,
        jobs: Vec<FanOutJob>,
    ) -> Result<DeliveryReport, DeliveryError> {
        let message_id = parcel.message_id.as_str();
        let queue = self.queue.as_ref().ok_or(DeliveryError::NoQueue)?;
        let count = jobs.len();
        queue
            .send(jobs.iter().map(FanOutJob::to_body).collect())
            .await
            .map_err(|source| DeliveryError::Enqueue {
                message_id: message_id.to_owned(),
                source,
            })?;
        tracing::info!(message_id, jobs = count, "delivery enqueued");
        self.record_metrics(&parcel.endpoint, &FanOutReport::default(), count);
        Ok(DeliveryReport {
            posts: FanOutReport::default(),
            queued_jobs: count,
        })
    }

    /// The fan-out engine for `parcel`, deleting gone connections' memberships where rooms are
    /// wired, and a gone member's membership of `room`.
    fn fan_out<'a>(
        &'a self,
        parcel: &'a Parcel,
        deadline: Option<Deadline>,
        room: Option<RoomName>,
    ) -> FanOut<'a> {
        let fanout = FanOut::new(
            self.store.as_ref(),
            self.api.as_ref(),
            &parcel.endpoint,
            Bytes::from(parcel.frame.clone()),
            self.concurrency,
            deadline,
        );
        let fanout = match &self.memberships {
            Some(m) => fanout.with_memberships(m.as_ref()),
            None => fanout,
        };
        match room {
            Some(room) => fanout.in_room(room),
            None => fanout,
        }
    }

    /// Runs one job (a slice of an audience, from its cursor) until it is done or `deadline`
    /// comes; enqueues the rest as its continuation.
    pub async fn run_job(
        &self,
        job: FanOutJob,
        deadline: Option<Deadline>,
    ) -> Result<JobReport, DeliveryError> {
        let (parcel, room) = job_parcel(&job);
        let mut fanout = self.fan_out(&parcel, deadline, room);
        let mut pending = job.pending.clone();
        let mut listing = job.listing.clone();
        let mut pages = 0;
        let mut prepaid = self.prepaid;
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
                Err(source) if pages == 0 && pending.is_empty() && untouched(&fanout) => {
                    // Nothing done yet: the caller retries the whole job (the queue, then its
                    // dead-letter queue) or reports the failure.
                    return Err(DeliveryError::Audience {
                        message_id: job.message_id.clone(),
                        source,
                    });
                }
                Err(e) => {
                    // Posts were made: hand the rest to a continuation rather than redo them.
                    tracing::warn!(error = %e, "listing failed mid-job; continuing later");
                    break;
                }
            };
            pages += 1;
            self.charge_budget(page.ids.len().saturating_sub(prepaid))
                .await;
            prepaid = prepaid.saturating_sub(page.ids.len());
            pending = page.ids;
            listing = page.next;
        }
        let posts = fanout.into_report();
        let continuation = self.continue_later(&job, listing, pending).await?;
        self.record_metrics(&job.endpoint, &posts, usize::from(continuation.is_some()));
        log_job_done(&job, &posts, pages);
        Ok(JobReport {
            posts,
            continuation,
            pages,
            expired: false,
        })
    }

    /// The metric line of one delivery: its posts and the jobs it handed to the queue.
    fn record_metrics(&self, endpoint: &str, posts: &FanOutReport, queued: usize) {
        if let Some(metrics) = &self.metrics {
            let now = chrono::Utc::now().timestamp_millis();
            metrics.record(endpoint, posts, queued, now);
        }
    }

    /// Charges `listed` deliveries to the stage's broadcast budget, into debt if need be (later
    /// broadcasts wait it out). A failure is logged, not fatal: the posts go out.
    async fn charge_budget(&self, listed: usize) {
        let Some(budget) = self.broadcast_budget else {
            return;
        };
        let cost = u32::try_from(listed).unwrap_or(u32::MAX);
        if cost == 0 {
            return;
        }
        let now = chrono::Utc::now().timestamp_millis();
        let bucket = crate::store::Bucket::Broadcasts;
        if let Err(e) = self.store.debit(&bucket, now, budget, cost).await {
            tracing::warn!(error = %e, listed, "could not charge the broadcast budget");
        }
    }

    /// Enqueues what `job` left (`listing` not yet read, `pending` listed but not posted) as its
    /// continuation; `None` when nothing is left, or when there is no queue (then the rest is
    /// logged as undelivered).
    async fn continue_later(
        &self,
        job: &FanOutJob,
        listing: Listing,
        pending: Vec<String>,
    ) -> Result<Option<FanOutJob>, DeliveryError> {
        let rest = job.continuation(listing, pending);
        if rest.is_finished() {
            return Ok(None);
        }
        let Some(queue) = &self.queue else {
            tracing::warn!(
                message_id = %job.message_id,
                pending = rest.pending.len(),
                listing = ?rest.listing,
                "deadline reached with no fan-out queue to hand the rest to: not delivered"
            );
            return Ok(None);
        };
        queue
            .send(vec![rest.to_body()])
            .await
            .map_err(|source| DeliveryError::Continuation {
                message_id: job.message_id.clone(),
                source,
            })?;
        tracing::info!(
            message_id = %job.message_id,
            pending = rest.pending.len(),
            listing = ?rest.listing,
            "deadline reached: the rest handed to the fan-out queue"
        );
        Ok(Some(rest))
    }
}

fn untouched(fanout: &FanOut<'_>) -> bool {
    let r = fanout.report();
    r.delivered + r.gone + r.failed + r.undelivered == 0
}

/// What a job posts (its frame, to its endpoint, under its message id) and, for a room's
/// audience, the room: a gone member's membership of it is deleted as the fan-out goes.
fn job_parcel(job: &FanOutJob) -> (Parcel, Option<RoomName>) {
    let parcel = Parcel {
        endpoint: job.endpoint.clone(),
        message_id: job.message_id.clone(),
        frame: job.frame.clone(),
    };
    let room = match &job.audience {
        JobAudience::Room { room } => RoomName::parse(room).ok(),
        _ => None,
    };
    (parcel, room)
}

/// The log line of a finished job: its message, audience, what its posts did and how many
/// pages of the audience it listed.
fn log_job_done(job: &FanOutJob, posts: &FanOutReport, pages: usize) {
    tracing::info!(
        message_id = %job.message_id,
        audience = ?job.audience,
        delivered = posts.delivered,
        gone = posts.gone,
        failed = posts.failed,
        throttled = posts.throttled,
        pages,
        "delivery done"
    );
}
