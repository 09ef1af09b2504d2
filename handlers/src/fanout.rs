//! Delivery of one frame to many connections, bounded in concurrency and in time.
//!
//! Posts run with bounded concurrency: one at a time, a broadcast to 1,000 connections at
//! ~20 ms per PostToConnection takes 20 s; unbounded, a large table opens thousands of sockets
//! and earns 429s. A connection that answers 410 Gone has its own record deleted (never the
//! sender's), with its room memberships, and the fan-out goes on; any other failure is counted
//! and logged, never fatal. A record younger than [`HANDSHAKE_GRACE`] is kept on a 410: its
//! client may still be inside `$connect`, which API Gateway also answers 410 for.
//!
//! Three rules keep a fan-out inside what Lambda and API Gateway allow:
//!
//! - **Deadline.** A [`Deadline`] (the invocation's deadline minus a margin) stops the engine
//!   from starting posts once an attempt could no longer finish in time, and cuts whatever is
//!   still in flight at the hard limit. What was not delivered comes back to the caller (ids to
//!   re-enqueue), and is logged; the function never runs past its own timeout.
//! - **Adaptive concurrency (AIMD).** A 429 (`LimitExceededException`) that survived the SDK's
//!   own retries means the account's shared `@connections` token bucket (10,000/s, burst 5,000)
//!   is empty: the window of posts in flight halves (at most once per
//!   [`THROTTLE_RETRY_DELAY`]) and grows back by one post per round trip. The throttled posts are
//!   retried later with exponential back-off, never counted as failed.
//! - **Transient failures** (5xx, a timed-out attempt) are retried up to [`MAX_ATTEMPTS`] times
//!   in all; a frame may then arrive twice, which is why every message frame has an `id`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::management::{ManagementApi, ManagementError};
use crate::membership::MembershipStore;
use crate::rooms::RoomName;
use crate::store::{ConnectionStore, Removal, StoreError};

/// Room left between the engine's hard stop and the invocation's deadline: enough to
/// re-enqueue what is left, log, and return.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(1_000);
/// First delay before a throttled post is retried; doubles per attempt up to
/// [`MAX_RETRY_DELAY`]. Also the shortest interval between two halvings of the window, so one
/// burst of 429s (all posts of one round trip) halves it once, not once per post.
pub const THROTTLE_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between two attempts of one post.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
/// Attempts of one post that failed transiently (not 429) before it counts as failed. Each
/// attempt is itself up to 3 tries of the SDK's standard retry mode; 5 makes a loss at a 1%
/// transient failure rate a 1-in-10^10 event per post.
pub const MAX_ATTEMPTS: u32 = 5;
/// Ids per batch when a broadcast walks the store's listing.
pub const BATCH_SIZE: usize = 1_000;
/// How young a record a 410 leaves alone. `$connect` writes the record before API Gateway
/// completes the handshake, and a post in between answers 410 like a closed connection ("a
/// connection that is not yet established",
/// <https://repost.aws/knowledge-center/410-gone-api-gateway>). The handshake waits for the
/// authorizer and then `$connect`, each bounded by the 29 s integration timeout
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html>),
/// and `connectedAt` is stamped when the request arrives: 60 s covers both. A record that
/// stays after a real 410 is deleted by a later broadcast, `$disconnect` or the TTL.
pub const HANDSHAKE_GRACE: Duration = Duration::from_secs(60);

/// What happened to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The connection was gone; its record has been deleted (or the delete was logged as failed).
    Gone,
    Failed(ManagementError),
}

/// When a fan-out must be done: no post starts at or after `stop_starting`, and nothing runs
/// at or after `hard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub stop_starting: Instant,
    pub hard: Instant,
}

impl Deadline {
    /// A deadline that ends at `hard`; posts stop starting `attempt_timeout` before it, so an
    /// attempt started just before that still ends (by its SDK timeout) in time.
    pub fn at(hard: Instant, attempt_timeout: Duration) -> Deadline {
        let stop_starting = hard.checked_sub(attempt_timeout).unwrap_or(hard);
        Deadline {
            stop_starting,
            hard,
        }
    }

    /// From the Lambda invocation context's deadline (epoch milliseconds), less
    /// [`DEADLINE_MARGIN`].
    ///
    /// The context's `deadline` is wall-clock time; it is turned into a monotonic [`Instant`]
    /// once, here, so a clock adjustment during the invocation cannot stretch it.
    pub fn from_lambda_deadline(deadline_epoch_ms: u64, attempt_timeout: Duration) -> Deadline {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let left = Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms))
            .saturating_sub(DEADLINE_MARGIN);
        Deadline::at(Instant::now() + left, attempt_timeout)
    }

    fn may_start(&self, now: Instant) -> bool {
        now < self.stop_starting
    }
}

/// The tally of a fan-out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanOutReport {
    pub delivered: usize,
    pub gone: usize,
    /// Posts that failed otherwise (after [`MAX_ATTEMPTS`]), plus records that could not be
    /// read.
    pub failed: usize,
    /// 429 answers seen (each one retried later, not a failure).
    pub throttled: usize,
    /// Posts not made before the deadline (returned to the caller as ids, or not listed yet).
    pub undelivered: usize,
    /// Whether the deadline stopped the fan-out.
    pub deadline_reached: bool,
    /// When the deadline stopped a broadcast: the ids listed but not posted to, and the last
    /// id taken from the listing (the rest of the listing comes after it). What a hand-off to
    /// the queue needs.
    pub handed_back: Vec<String>,
    pub listed_up_to: Option<String>,
    /// Set when listing stopped early (a page could not be fetched): connections after that
    /// point were not reached.
    pub list_error: Option<StoreError>,
}

/// Posts `frame` to one connection; on 410 deletes that connection's record (see
/// [`forget_gone`]).
pub async fn deliver(
    store: &dyn ConnectionStore,
    api: &dyn ManagementApi,
    endpoint: &str,
    connection_id: &str,
    frame: Bytes,
) -> Outcome {
    deliver_to(store, None, api, endpoint, connection_id, frame).await
}

/// [`deliver`], deleting a gone connection's room memberships too when `memberships` is set.
pub async fn deliver_to(
    store: &dyn ConnectionStore,
    memberships: Option<&dyn MembershipStore>,
    api: &dyn ManagementApi,
    endpoint: &str,
    connection_id: &str,
    frame: Bytes,
) -> Outcome {
    deliver_in(
        store,
        memberships,
        None,
        api,
        endpoint,
        connection_id,
        frame,
    )
    .await
}

/// [`deliver_to`] for a member of `room`: a gone member's membership of `room` is deleted too,
/// even when its record (which lists its rooms) is gone already.
pub async fn deliver_in(
    store: &dyn ConnectionStore,
    memberships: Option<&dyn MembershipStore>,
    room: Option<&RoomName>,
    api: &dyn ManagementApi,
    endpoint: &str,
    connection_id: &str,
    frame: Bytes,
) -> Outcome {
    match api.post_to_connection(endpoint, connection_id, frame).await {
        Ok(()) => Outcome::Delivered,
        Err(ManagementError::Gone) => {
            let forgotten = forget_gone(store, memberships, connection_id).await;
            if forgotten
                && let (Some(m), Some(room)) = (memberships, room)
                && let Err(e) = m.remove_member(room, connection_id).await
            {
                // The membership's TTL removes it; the next message to the room retries.
                tracing::warn!(connection_id, %room, error = %e, "could not delete a gone member");
            }
            Outcome::Gone
        }
        Err(e) => Outcome::Failed(e),
    }
}

/// Cleans up after a connection `@connections` answered 410 for: deletes its record unless it
/// connected less than [`HANDSHAKE_GRACE`] ago (then its client may still be inside
/// `$connect`), then the memberships the record listed. Returns whether the connection was
/// treated as gone (`false`: a young record, kept). Failures are logged, never fatal: a later
/// broadcast retries and the tables' TTL is the backstop.
pub async fn forget_gone(
    store: &dyn ConnectionStore,
    memberships: Option<&dyn MembershipStore>,
    connection_id: &str,
) -> bool {
    let grace = i64::try_from(HANDSHAKE_GRACE.as_millis()).unwrap_or(i64::MAX);
    let cutoff = chrono::Utc::now().timestamp_millis().saturating_sub(grace);
    let rooms = match store.remove(connection_id, Some(cutoff)).await {
        Ok(Removal::Young) => {
            tracing::info!(
                connection_id,
                grace_seconds = HANDSHAKE_GRACE.as_secs(),
                "410 for a connection that connected moments ago: record kept (its handshake may not be complete)"
            );
            return false;
        }
        Ok(Removal::Removed { rooms }) => {
            tracing::info!(connection_id, "deleted the record of a gone connection");
            rooms
        }
        Ok(Removal::Absent) => Vec::new(),
        Err(e) => {
            // The record stays until the TTL removes it; the next broadcast retries.
            tracing::warn!(connection_id, error = %e, "could not delete a gone connection");
            return true;
        }
    };
    if let Some(m) = memberships
        && let Err(e) = m.forget_listed(connection_id, &rooms).await
    {
        tracing::warn!(connection_id, error = %e, "could not delete a gone connection's memberships");
    }
    true
}

/// A post waiting to be (re)tried: when, which connection, how many attempts so far.
type Retry = Reverse<(Instant, String, u32)>;

/// One fan-out of one frame: the concurrency window and the tally live across batches, so a
/// worker that posts page after page keeps what it learnt about throttling.
pub struct FanOut<'a> {
    store: &'a dyn ConnectionStore,
    /// Where a gone connection's memberships are deleted (`None`: nowhere).
    memberships: Option<&'a dyn MembershipStore>,
    /// The room whose members this fan-out posts to, if it does: a gone member's membership
    /// of it is deleted even when the record listing its rooms is gone already.
    room: Option<RoomName>,
    api: &'a dyn ManagementApi,
    endpoint: &'a str,
    frame: Bytes,
    max_concurrency: usize,
    deadline: Option<Deadline>,
    /// Posts allowed in flight; fractional so that additive increase is +1 per round trip.
    window: f64,
    last_decrease: Option<Instant>,
    report: FanOutReport,
}

impl<'a> FanOut<'a> {
    pub fn new(
        store: &'a dyn ConnectionStore,
        api: &'a dyn ManagementApi,
        endpoint: &'a str,
        frame: Bytes,
        max_concurrency: usize,
        deadline: Option<Deadline>,
    ) -> Self {
        let max_concurrency = max_concurrency.max(1);
        FanOut {
            store,
            memberships: None,
            room: None,
            api,
            endpoint,
            frame,
            max_concurrency,
            deadline,
            window: max_concurrency as f64,
            last_decrease: None,
            report: FanOutReport::default(),
        }
    }

    /// Deletes the memberships of connections that turn out to be gone from `memberships`.
    pub fn with_memberships(mut self, memberships: &'a dyn MembershipStore) -> Self {
        self.memberships = Some(memberships);
        self
    }

    /// Posts to the members of `room` (see [`deliver_in`]).
    pub fn in_room(mut self, room: RoomName) -> Self {
        self.room = Some(room);
        self
    }

    /// Whether no post may start any more.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| !d.may_start(Instant::now()))
    }

    /// Posts currently allowed in flight.
    pub fn concurrency(&self) -> usize {
        (self.window as usize).clamp(1, self.max_concurrency)
    }

    pub fn report(&self) -> &FanOutReport {
        &self.report
    }

    pub fn into_report(self) -> FanOutReport {
        self.report
    }

    /// Counts records that could not be read as failures, or a failed listing, into the tally.
    pub fn record_list_error(&mut self, error: StoreError) {
        match error {
            e @ StoreError::Malformed { .. } => {
                tracing::warn!(error = %e, "skipping a malformed record");
                self.report.failed += 1;
            }
            e => {
                tracing::error!(error = %e, "listing connections failed");
                self.report.list_error = Some(e);
            }
        }
    }

    /// Counts connections the caller did not even hand over (not listed before the deadline).
    pub fn record_not_started(&mut self, count: usize) {
        self.report.undelivered += count;
        self.report.deadline_reached = true;
    }

    /// Posts the frame to `ids` and returns those it did not deliver before the deadline: not
    /// started, waiting for a retry after a 429, or still in flight at the hard stop (those may
    /// have arrived: a retry can duplicate them).
    pub async fn post_batch(&mut self, ids: Vec<String>) -> Vec<String> {
        // Declared before the posts in flight, which borrow it, so it outlives them.
        let room = self.room.clone();
        let room = room.as_ref();
        let mut pending: VecDeque<(String, u32)> = ids.into_iter().map(|id| (id, 0)).collect();
        let mut retries: BinaryHeap<Retry> = BinaryHeap::new();
        let mut in_flight_ids: HashSet<String> = HashSet::new();
        let mut in_flight = FuturesUnordered::new();
        let (store, memberships, api, endpoint) =
            (self.store, self.memberships, self.api, self.endpoint);

        let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
        let hard = self.deadline.map_or(far_future, |d| d.hard);
        let mut cut_at_hard_stop = false;
        // One timer for the hard stop, armed once: a fresh one per settled post would cost a
        // timer-wheel insert and removal per connection.
        let hard_stop = tokio::time::sleep_until(hard);
        tokio::pin!(hard_stop);

        loop {
            let now = Instant::now();
            promote_due_retries(&mut retries, &mut pending, now);
            let may_start = self.deadline.is_none_or(|d| d.may_start(now));
            if may_start {
                while in_flight.len() < self.concurrency()
                    && let Some((id, attempts)) = pending.pop_front()
                {
                    in_flight_ids.insert(id.clone());
                    let frame = self.frame.clone();
                    in_flight.push(async move {
                        let outcome =
                            deliver_in(store, memberships, room, api, endpoint, &id, frame).await;
                        (id, attempts + 1, outcome)
                    });
                }
            }
            if in_flight.is_empty() && (!may_start || (pending.is_empty() && retries.is_empty())) {
                break;
            }
            let next_retry = retries.peek().map(|Reverse((at, _, _))| *at);
            // Wake for a retry only when it could start (a free slot, before the deadline): past
            // `stop_starting` the wake-up would be in the past and the loop would spin.
            let wake_for_retry = match next_retry {
                Some(at) if may_start && in_flight.len() < self.concurrency() => {
                    let stop = self.deadline.map_or(far_future, |d| d.stop_starting);
                    Some(at.min(stop))
                }
                _ => None,
            };
            tokio::select! {
                Some((id, attempts, outcome)) = in_flight.next() => {
                    in_flight_ids.remove(&id);
                    self.settle(id, attempts, outcome, &mut retries);
                }
                () = tokio::time::sleep_until(wake_for_retry.unwrap_or(far_future)),
                    if wake_for_retry.is_some() => {}
                () = &mut hard_stop => {
                    cut_at_hard_stop = true;
                    break;
                }
            }
        }

        let cut_in_flight = if cut_at_hard_stop {
            // Dropping the futures cancels the requests; whether they arrived is unknown.
            drop(in_flight);
            in_flight_ids
        } else {
            HashSet::new()
        };
        self.hand_back(cut_in_flight, pending, retries)
    }

    /// What a batch did not deliver (cut in flight at the hard stop, not started, waiting for
    /// a retry): counted as undelivered and handed back to the caller.
    fn hand_back(
        &mut self,
        cut_in_flight: HashSet<String>,
        pending: VecDeque<(String, u32)>,
        retries: BinaryHeap<Retry>,
    ) -> Vec<String> {
        let cut_at_hard_stop = !cut_in_flight.is_empty();
        let mut left: Vec<String> = cut_in_flight.into_iter().collect();
        left.extend(pending.into_iter().map(|(id, _)| id));
        left.extend(retries.into_iter().map(|Reverse((_, id, _))| id));
        if !left.is_empty() {
            self.report.undelivered += left.len();
            self.report.deadline_reached = true;
            tracing::warn!(
                undelivered = left.len(),
                in_flight_cut = cut_at_hard_stop,
                "fan-out deadline reached: posts not made are handed back"
            );
        }
        left
    }

    fn settle(
        &mut self,
        id: String,
        attempts: u32,
        outcome: Outcome,
        retries: &mut BinaryHeap<Retry>,
    ) {
        let now = Instant::now();
        match outcome {
            Outcome::Delivered | Outcome::Gone => {
                if outcome == Outcome::Delivered {
                    self.report.delivered += 1;
                } else {
                    self.report.gone += 1;
                }
                // Additive increase: +1 per window's worth of successes, i.e. per round trip.
                self.window = (self.window + 1.0 / self.window).min(self.max_concurrency as f64);
            }
            // Without a deadline (the `push` CLI, tests) nothing would ever end a run of
            // 429s: they count as attempts like any transient failure.
            Outcome::Failed(e @ ManagementError::Throttled)
                if self.deadline.is_none() && attempts >= MAX_ATTEMPTS =>
            {
                self.report.throttled += 1;
                tracing::warn!(connection_id = %id, attempts, error = %e, "delivery failed");
                self.report.failed += 1;
            }
            Outcome::Failed(ManagementError::Throttled) => {
                self.report.throttled += 1;
                let decrease_due = self
                    .last_decrease
                    .is_none_or(|at| now.duration_since(at) >= THROTTLE_RETRY_DELAY);
                if decrease_due {
                    self.window = (self.window / 2.0).max(1.0);
                    self.last_decrease = Some(now);
                    tracing::debug!(window = self.concurrency(), "429: lowering concurrency");
                }
                retries.push(Reverse((now + retry_delay(attempts), id, attempts)));
            }
            Outcome::Failed(e @ ManagementError::Other(_)) if attempts < MAX_ATTEMPTS => {
                tracing::debug!(connection_id = %id, attempts, error = %e, "retrying a post");
                retries.push(Reverse((now + retry_delay(attempts), id, attempts)));
            }
            Outcome::Failed(e) => {
                tracing::warn!(connection_id = %id, attempts, error = %e, "delivery failed");
                self.report.failed += 1;
            }
        }
    }
}

/// Moves the retries due at `now` to the front of `pending`.
fn promote_due_retries(
    retries: &mut BinaryHeap<Retry>,
    pending: &mut VecDeque<(String, u32)>,
    now: Instant,
) {
    while let Some(Reverse((at, _, _))) = retries.peek()
        && *at <= now
    {
        if let Some(Reverse((_, id, attempts))) = retries.pop() {
            pending.push_front((id, attempts));
        }
    }
}

/// Exponential back-off: [`THROTTLE_RETRY_DELAY`] × 2^(attempts - 1), at most
/// [`MAX_RETRY_DELAY`].
fn retry_delay(attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(10);
    (THROTTLE_RETRY_DELAY * factor).min(MAX_RETRY_DELAY)
}

/// How a broadcast may use its time and sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most posts in flight (the window starts here and never exceeds it).
    pub concurrency: usize,
    pub deadline: Option<Deadline>,
}

impl Limits {
    /// No deadline: for the `push` CLI and tests, which have no invocation deadline.
    pub fn without_deadline(concurrency: usize) -> Limits {
        Limits {
            concurrency,
            deadline: None,
        }
    }
}

/// Posts `frame` to every connection in `store`, batch by batch, within `limits`.
pub async fn broadcast(
    store: &dyn ConnectionStore,
    api: &dyn ManagementApi,
    endpoint: &str,
    frame: Bytes,
    limits: Limits,
) -> FanOutReport {
    broadcast_to(store, None, api, endpoint, frame, limits).await
}

/// [`broadcast`], deleting gone connections' memberships from `memberships` too.
pub async fn broadcast_to(
    store: &dyn ConnectionStore,
    memberships: Option<&dyn MembershipStore>,
    api: &dyn ManagementApi,
    endpoint: &str,
    frame: Bytes,
    limits: Limits,
) -> FanOutReport {
    let mut fanout = FanOut::new(
        store,
        api,
        endpoint,
        frame,
        limits.concurrency,
        limits.deadline,
    );
    if let Some(m) = memberships {
        fanout = fanout.with_memberships(m);
    }
    // Records whose TTL has passed are neither posted to nor counted.
    let mut listing = store
        .list_recipients(chrono::Utc::now().timestamp())
        .ready_chunks(BATCH_SIZE);
    let mut listed_up_to = None;
    while let Some(chunk) = listing.next().await {
        let mut ids = Vec::with_capacity(chunk.len());
        for item in chunk {
            match item {
                Ok(c) => ids.push(c.connection_id),
                Err(e) => fanout.record_list_error(e),
            }
        }
        if let Some(last) = ids.last() {
            listed_up_to = Some(last.clone());
        }
        let left = fanout.post_batch(ids).await;
        if !left.is_empty() || fanout.expired() {
            // Inline mode has nowhere to hand the rest to: it is logged, and the listing is
            // not read further (reading it would only spend the time that is up).
            tracing::warn!(
                undelivered_listed = left.len(),
                "broadcast stopped at its deadline; connections not yet listed were not reached"
            );
            fanout.record_not_started(0);
            fanout.report.handed_back = left;
            fanout.report.listed_up_to = listed_up_to;
            break;
        }
        if fanout.report().list_error.is_some() {
            break;
        }
    }
    fanout.into_report()
}

#[cfg(test)]
mod tests;
