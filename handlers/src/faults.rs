//! Fault injection for tests and benches: [`Faulty`] wraps any implementation of the store, the
//! memberships, the management API, the queue, the event bus or an audience source and answers
//! a call from a plan of [`Rule`]s (which operation, which key, what fault, how many times)
//! before forwarding it to the wrapped implementation.
//!
//! ```
//! use wsstack_handlers::faults::{Faulty, Op, Rule};
//! use wsstack_handlers::management::ManagementError;
//! use wsstack_handlers::simulated::{Behaviour, SimulatedApi};
//!
//! // bob's posts answer 410; every other call reaches the simulated API.
//! let api = Faulty::new(SimulatedApi::new(Behaviour::default(), None))
//!     .with(Rule::fail(Op::Post, ManagementError::Gone).for_key("bob"));
//! ```
//!
//! A failed call never reaches the wrapped implementation; a delayed one does, after the
//! delay. A listing (`list` and the listings the store derives from it) fails as one stream
//! holding the error. Compiled for the crate's tests and with the `test-support` feature.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::audience::{AudienceError, AudiencePage, AudienceSource};
use crate::bus::{BusEntry, BusError, EntryResult, EventBus};
use crate::job::JobAudience;
use crate::management::{ConnectionInfo, ManagementApi, ManagementError};
use crate::membership::{JoinOutcome, MemberPage, MembershipStore};
use crate::queue::{Queue, QueueError, Received};
use crate::rooms::RoomName;
use crate::store::{
    Admission, Bucket, Charge, Connection, ConnectionPage, ConnectionStore, MessageRate, Recipient,
    Removal, StoreError, UserConnection,
};

/// An operation of one of the wrapped traits, as a rule names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// Every operation.
    Any,
    /// `ConnectionStore::put` (key: the record's connection id).
    Put,
    /// `ConnectionStore::get` (key: the connection id).
    Get,
    /// `ConnectionStore::delete` (key: the connection id).
    Delete,
    /// `ConnectionStore::remove` (key: the connection id).
    Remove,
    /// `ConnectionStore::admit_message` (key: the sender's connection id).
    AdmitMessage,
    /// `ConnectionStore::charge` (key: the bucket's item key, `Bucket::key`).
    Charge,
    /// `ConnectionStore::debit` (key: the bucket's item key).
    Debit,
    /// `ConnectionStore::list` and the listings the trait derives from it (`list_recipients`,
    /// `list_token_expired`, `list_by_sub`, `list_by_user`); no key.
    List,
    /// `ConnectionStore::page`; no key.
    Page,
    /// `MembershipStore::join` (key: the connection id).
    Join,
    /// `MembershipStore::leave` (key: the connection id).
    Leave,
    /// `MembershipStore::is_member` (key: the connection id).
    IsMember,
    /// `MembershipStore::members_page`; no key.
    MembersPage,
    /// `MembershipStore::rooms_of` (key: the connection id).
    RoomsOf,
    /// `MembershipStore::remove_member` (key: the connection id).
    RemoveMember,
    /// `MembershipStore::forget_listed` and `forget` (key: the connection id).
    Forget,
    /// `ManagementApi::post_to_connection` (key: the connection id).
    Post,
    /// `ManagementApi::get_connection` (key: the connection id).
    GetConnection,
    /// `ManagementApi::delete_connection` (key: the connection id).
    DeleteConnection,
    /// `Queue::send`; no key.
    Send,
    /// `Queue::receive`; no key.
    Receive,
    /// `Queue::delete` (key: the receipt handle).
    DeleteMessage,
    /// `EventBus::put`; no key.
    PutEvents,
    /// `AudienceSource::audience_page`; no key.
    AudiencePage,
}

/// What a matching rule does to a call.
#[derive(Debug, Clone)]
pub enum Fault<E> {
    /// Answers the error; the wrapped implementation never sees the call.
    Fail(E),
    /// Waits this long (`tokio::time`), then goes on to the next rule or the wrapped call.
    Delay(Duration),
    /// Panics, as a bug in a backend client would.
    Panic,
}

/// One line of a fault plan: `fault` for calls of `op` with `key` (any key when `None`), at
/// most `times` times (always when `None`).
#[derive(Debug, Clone)]
pub struct Rule<E> {
    pub op: Op,
    pub key: Option<String>,
    pub fault: Fault<E>,
    pub times: Option<usize>,
}

impl<E> Rule<E> {
    /// Every call of `op` answers `error`.
    pub fn fail(op: Op, error: E) -> Self {
        Self::new(op, Fault::Fail(error))
    }

    /// Every call of `op` waits `delay` first.
    pub fn delay(op: Op, delay: Duration) -> Self {
        Self::new(op, Fault::Delay(delay))
    }

    /// Every call of `op` panics.
    pub fn panic(op: Op) -> Self {
        Self::new(op, Fault::Panic)
    }

    /// `fault` on every call of `op`.
    pub fn new(op: Op, fault: Fault<E>) -> Self {
        Rule {
            op,
            key: None,
            fault,
            times: None,
        }
    }

    /// Only calls whose key (a connection id, see [`Op`]) is `key`.
    pub fn for_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Only the first `n` matching calls; later ones go on as if the rule were not there.
    pub fn times(mut self, n: usize) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, op: Op, key: Option<&str>) -> bool {
        (self.op == Op::Any || self.op == op)
            && self.key.as_deref().is_none_or(|k| Some(k) == key)
            && self.times != Some(0)
    }
}

/// One call the wrapper saw: its operation and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: Op,
    pub key: Option<String>,
}

/// What the plan decided for one call: the delays to wait, then the outcome.
struct Verdict<E> {
    delay: Duration,
    outcome: Option<Fault<E>>,
}

/// An implementation `T` of the wrapped traits with a fault plan in front of it (see the
/// module's documentation). `E` is the error type of the trait it stands in for
/// (`StoreError` for both stores). It records every call and the most calls it had in flight.
#[derive(Debug)]
pub struct Faulty<T, E> {
    inner: T,
    plan: Mutex<Vec<Rule<E>>>,
    calls: Mutex<Vec<Call>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl<T, E: Clone> From<T> for Faulty<T, E> {
    fn from(inner: T) -> Self {
        Faulty::new(inner)
    }
}

impl<T, E> std::ops::Deref for Faulty<T, E> {
    type Target = T;

    /// The wrapped implementation, so a test reads its recorder or store through the wrapper.
    fn deref(&self) -> &T {
        &self.inner
    }
}

impl<T, E: Clone> Faulty<T, E> {
    /// `inner` with an empty plan: every call is forwarded.
    pub fn new(inner: T) -> Self {
        Faulty {
            inner,
            plan: Mutex::default(),
            calls: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        }
    }

    /// The wrapper with `rule` added after the plan's others.
    pub fn with(self, rule: Rule<E>) -> Self {
        self.add(rule);
        self
    }

    /// Adds `rule` after the plan's others, while the wrapper is in use.
    pub fn add(&self, rule: Rule<E>) {
        lock(&self.plan).push(rule);
    }

    /// Empties the plan: from now on every call is forwarded.
    pub fn clear(&self) {
        lock(&self.plan).clear();
    }

    /// The wrapped implementation.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Every call so far, in order, faulted ones included.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// How many calls of `op` there were (of any operation for [`Op::Any`]).
    pub fn count(&self, op: Op) -> usize {
        lock(&self.calls)
            .iter()
            .filter(|c| op == Op::Any || c.op == op)
            .count()
    }

    /// The most calls that were in progress at once (delays and the wrapped call included).
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Records the call and applies the plan's matching rules in order: delays add up, the
    /// first failure or panic ends the walk. A rule with a count is used up by firing.
    fn verdict(&self, op: Op, key: Option<&str>) -> Verdict<E> {
        lock(&self.calls).push(Call {
            op,
            key: key.map(str::to_owned),
        });
        let mut verdict = Verdict {
            delay: Duration::ZERO,
            outcome: None,
        };
        for rule in lock(&self.plan).iter_mut() {
            if !rule.matches(op, key) {
                continue;
            }
            if let Some(n) = &mut rule.times {
                *n -= 1;
            }
            match &rule.fault {
                Fault::Delay(d) => verdict.delay += *d,
                outcome => {
                    verdict.outcome = Some(outcome.clone());
                    break;
                }
            }
        }
        verdict
    }

    /// Runs one call of `op`: the plan's delay, then its failure or panic, or `call` on the
    /// wrapped implementation; counted in flight throughout.
    async fn run<R>(
        &self,
        op: Op,
        key: Option<&str>,
        call: impl Future<Output = Result<R, E>>,
    ) -> Result<R, E> {
        let verdict = self.verdict(op, key);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let _leaving = InFlight(&self.in_flight);
        if !verdict.delay.is_zero() {
            tokio::time::sleep(verdict.delay).await;
        }
        match verdict.outcome {
            Some(Fault::Fail(e)) => Err(e),
            Some(Fault::Panic) => panic!("injected panic in {op:?} ({key:?})"),
            Some(Fault::Delay(_)) | None => call.await,
        }
    }

    /// A listing of `op`: one error item when the plan fails it, the wrapped stream after the
    /// plan's delay otherwise.
    fn stream<'a, I: Send + 'a>(
        &'a self,
        op: Op,
        inner: impl FnOnce() -> BoxStream<'a, Result<I, E>>,
    ) -> BoxStream<'a, Result<I, E>>
    where
        E: Send + 'a,
    {
        let verdict = self.verdict(op, None);
        let stream = match verdict.outcome {
            Some(Fault::Fail(e)) => return futures::stream::iter([Err(e)]).boxed(),
            Some(Fault::Panic) => panic!("injected panic in {op:?}"),
            Some(Fault::Delay(_)) | None => inner(),
        };
        if verdict.delay.is_zero() {
            return stream;
        }
        let delay = verdict.delay;
        futures::stream::once(async move {
            tokio::time::sleep(delay).await;
            stream
        })
        .flatten()
        .boxed()
    }
}

/// Leaves the in-flight count when the call ends, however it ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl<T: ConnectionStore> ConnectionStore for Faulty<T, StoreError> {
    async fn put(&self, c: &Connection) -> Result<(), StoreError> {
        self.run(Op::Put, Some(&c.connection_id), self.inner.put(c))
            .await
    }
    async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        self.run(Op::Get, Some(id), self.inner.get(id)).await
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.run(Op::Delete, Some(id), self.inner.delete(id)).await
    }
    async fn remove(&self, id: &str, before_ms: Option<i64>) -> Result<Removal, StoreError> {
        self.run(Op::Remove, Some(id), self.inner.remove(id, before_ms))
            .await
    }
    async fn admit_message(
        &self,
        id: &str,
        now_ms: i64,
        rate: MessageRate,
    ) -> Result<Admission, StoreError> {
        let call = self.inner.admit_message(id, now_ms, rate);
        self.run(Op::AdmitMessage, Some(id), call).await
    }
    async fn charge(
        &self,
        bucket: &Bucket,
        now_ms: i64,
        rate: MessageRate,
        cost: u32,
    ) -> Result<Charge, StoreError> {
        let call = self.inner.charge(bucket, now_ms, rate, cost);
        self.run(Op::Charge, Some(&bucket.key()), call).await
    }
    async fn debit(
        &self,
        bucket: &Bucket,
        now_ms: i64,
        rate: MessageRate,
        cost: u32,
    ) -> Result<(), StoreError> {
        let call = self.inner.debit(bucket, now_ms, rate, cost);
        self.run(Op::Debit, Some(&bucket.key()), call).await
    }
    fn list(&self) -> BoxStream<'_, Result<Connection, StoreError>> {
        self.stream(Op::List, || self.inner.list())
    }
    fn list_recipients(&self, now: i64) -> BoxStream<'_, Result<Recipient, StoreError>> {
        self.stream(Op::List, || self.inner.list_recipients(now))
    }
    fn list_token_expired(&self, now: i64) -> BoxStream<'_, Result<Recipient, StoreError>> {
        self.stream(Op::List, || self.inner.list_token_expired(now))
    }
    fn list_by_sub(&self, sub: &str) -> BoxStream<'_, Result<Recipient, StoreError>> {
        self.stream(Op::List, || self.inner.list_by_sub(sub))
    }
    fn list_by_user(
        &self,
        user_id: &str,
        now: i64,
    ) -> BoxStream<'_, Result<UserConnection, StoreError>> {
        self.stream(Op::List, || self.inner.list_by_user(user_id, now))
    }
    async fn page(&self, after: Option<&str>, limit: usize) -> Result<ConnectionPage, StoreError> {
        self.run(Op::Page, None, self.inner.page(after, limit))
            .await
    }
}

#[async_trait]
impl<T: MembershipStore> MembershipStore for Faulty<T, StoreError> {
    async fn join(
        &self,
        room: &RoomName,
        id: &str,
        expires_at: i64,
        max_rooms: usize,
    ) -> Result<JoinOutcome, StoreError> {
        let call = self.inner.join(room, id, expires_at, max_rooms);
        self.run(Op::Join, Some(id), call).await
    }
    async fn leave(&self, room: &RoomName, id: &str) -> Result<bool, StoreError> {
        self.run(Op::Leave, Some(id), self.inner.leave(room, id))
            .await
    }
    async fn is_member(&self, room: &RoomName, id: &str) -> Result<bool, StoreError> {
        self.run(Op::IsMember, Some(id), self.inner.is_member(room, id))
            .await
    }
    async fn members_page(
        &self,
        room: &RoomName,
        after: Option<&str>,
    ) -> Result<MemberPage, StoreError> {
        let call = self.inner.members_page(room, after);
        self.run(Op::MembersPage, None, call).await
    }
    async fn rooms_of(&self, id: &str) -> Result<Vec<RoomName>, StoreError> {
        self.run(Op::RoomsOf, Some(id), self.inner.rooms_of(id))
            .await
    }
    async fn remove_member(&self, room: &RoomName, id: &str) -> Result<(), StoreError> {
        let call = self.inner.remove_member(room, id);
        self.run(Op::RemoveMember, Some(id), call).await
    }
    async fn forget_listed(&self, id: &str, rooms: &[String]) -> Result<usize, StoreError> {
        let call = self.inner.forget_listed(id, rooms);
        self.run(Op::Forget, Some(id), call).await
    }
    async fn forget(&self, id: &str) -> Result<usize, StoreError> {
        self.run(Op::Forget, Some(id), self.inner.forget(id)).await
    }
}

#[async_trait]
impl<T: ManagementApi> ManagementApi for Faulty<T, ManagementError> {
    async fn post_to_connection(
        &self,
        endpoint: &str,
        id: &str,
        data: Bytes,
    ) -> Result<(), ManagementError> {
        let call = self.inner.post_to_connection(endpoint, id, data);
        self.run(Op::Post, Some(id), call).await
    }
    async fn get_connection(
        &self,
        endpoint: &str,
        id: &str,
    ) -> Result<ConnectionInfo, ManagementError> {
        let call = self.inner.get_connection(endpoint, id);
        self.run(Op::GetConnection, Some(id), call).await
    }
    async fn delete_connection(&self, endpoint: &str, id: &str) -> Result<(), ManagementError> {
        let call = self.inner.delete_connection(endpoint, id);
        self.run(Op::DeleteConnection, Some(id), call).await
    }
}

#[async_trait]
impl<T: Queue> Queue for Faulty<T, QueueError> {
    async fn send(&self, bodies: Vec<String>) -> Result<(), QueueError> {
        self.run(Op::Send, None, self.inner.send(bodies)).await
    }
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        self.run(Op::Receive, None, self.inner.receive(max, wait))
            .await
    }
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        let call = self.inner.delete(receipt_handle);
        self.run(Op::DeleteMessage, Some(receipt_handle), call)
            .await
    }
}

#[async_trait]
impl<T: EventBus> EventBus for Faulty<T, BusError> {
    async fn put(&self, entries: &[BusEntry]) -> Result<Vec<EntryResult>, BusError> {
        self.run(Op::PutEvents, None, self.inner.put(entries)).await
    }
}

#[async_trait]
impl<T: AudienceSource> AudienceSource for Faulty<T, AudienceError> {
    async fn audience_page(
        &self,
        audience: &JobAudience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AudiencePage, AudienceError> {
        let call = self.inner.audience_page(audience, after, limit);
        self.run(Op::AudiencePage, None, call).await
    }
}

#[cfg(test)]
mod tests;
