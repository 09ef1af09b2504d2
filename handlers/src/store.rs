//! Where connection records live: DynamoDB in AWS, memory in the local gateway and unit tests.
//! Both pass one contract suite (`tests/tests/store_contract.rs`).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::scan::builders::ScanFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, BoxStream, StreamExt};

/// Attribute names of a record in the connections table. The partition key and the TTL
/// attribute come from `wsstack_routes::table`, which synth declares the table from.
pub const ATTR_CONNECTION_ID: &str = wsstack_routes::table::PARTITION_KEY;
pub const ATTR_USERNAME: &str = "username";
pub const ATTR_CONNECTED_AT: &str = wsstack_routes::table::CONNECTED_AT_ATTRIBUTE;
pub const ATTR_EXPIRES_AT: &str = wsstack_routes::table::TTL_ATTRIBUTE;
/// The verified subject (`sub` claim) of an authenticated connection.
pub const ATTR_SUB: &str = "sub";
/// Whose connection it is: the key of the user index ([`Connection::user_id`]).
pub const ATTR_USER_ID: &str = wsstack_routes::table::USER_ID_ATTRIBUTE;
/// The sender's rate limit state: the GCRA "theoretical arrival time", epoch **microseconds**.
/// (Until issue 18 it was `rateTat` in milliseconds, which rounded every rate from 501 to 999
/// per second up to 1,000; a record still carrying the old attribute just starts with a full
/// bucket.) Rate-limit items ([`Bucket`]) keep their state in the same attribute.
pub const ATTR_RATE_TAT: &str = "rateTatUs";
/// The key prefix of the rate-limit items ([`Bucket`]) kept in the connections table. API
/// Gateway's connection ids are base64 and never contain `#`, so no connection id starts with
/// it; every Scan of connections filters the prefix out.
pub const LIMIT_KEY_PREFIX: &str = "limit#";

/// How long a rate-limit item outlives the moment its bucket is full again (its TTL): after
/// that it says nothing a missing item would not, and DynamoDB's TTL may delete it.
pub const LIMIT_ITEM_GRACE_SECONDS: i64 = 3600;
/// When the token the connection was authenticated with expires, epoch seconds (the JWT's
/// `exp`): the token sweep closes the connection after it.
pub const ATTR_TOKEN_EXPIRES_AT: &str = "tokenExpiresAt";

/// Records per page of [`ConnectionStore::list`] unless configured otherwise. DynamoDB caps a
/// Scan page at 1 MB whatever the limit; our records are ~100 bytes, so this caps it first and
/// keeps memory per page small.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// One open WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub connection_id: String,
    pub username: String,
    /// When the client connected, epoch milliseconds.
    pub connected_at: i64,
    /// When the table's TTL may remove the record, epoch seconds (DynamoDB's TTL unit).
    pub expires_at: i64,
    /// The token's subject when the stage authenticates connections; `None` otherwise.
    pub sub: Option<String>,
    /// When the connection's token expires, epoch seconds, when the stage authenticates
    /// connections; `None` otherwise. The token sweep closes the connection after it.
    pub token_expires_at: Option<i64>,
}

impl Connection {
    /// The user the connection belongs to: the verified `sub` where the stage authenticates
    /// connections, the username the client chose elsewhere (not verified). Stored as
    /// [`ATTR_USER_ID`], the key of the table's user index: a push to a user reaches every
    /// connection with this value.
    pub fn user_id(&self) -> &str {
        self.sub.as_deref().unwrap_or(&self.username)
    }
}

/// One open connection of a user, as the user index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConnection {
    pub connection_id: String,
    /// When it connected, epoch milliseconds.
    pub connected_at: i64,
}

/// A rate limit: `per_second` on average, up to `burst` at once (a per-connection or per-user
/// request rate, or the stage's broadcast deliveries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRate {
    pub per_second: u32,
    pub burst: u32,
}

/// Microseconds per millisecond: the rate arithmetic works in microseconds, the callers'
/// clocks in milliseconds.
pub const US_PER_MS: i64 = 1_000;
const US_PER_SECOND: i64 = 1_000_000;

impl MessageRate {
    /// The emission interval of the generic cell rate algorithm (GCRA), in microseconds: the
    /// time one message "costs". Rounded up, so the limit is never looser than configured: at
    /// 750/s it is 1,334 µs (749.6/s). In milliseconds, as until issue 18, every rate from 501
    /// to 999 became an interval of 1 ms, i.e. 1,000/s.
    pub fn interval_us(self) -> i64 {
        let per_second = i64::from(self.per_second.max(1));
        (US_PER_SECOND + per_second - 1) / per_second
    }

    /// How far ahead of now the theoretical arrival time may be for a message to pass: room for
    /// `burst - 1` messages beyond the one being sent.
    pub fn tolerance_us(self) -> i64 {
        self.interval_us() * i64::from(self.burst.max(1) - 1)
    }

    /// The GCRA step for one message: the new theoretical arrival time if a message at
    /// `now_us` passes, given the stored one (`None`: never sent, a full bucket).
    pub fn admit(self, tat_us: Option<i64>, now_us: i64) -> Option<i64> {
        self.admit_cost(tat_us, now_us, 1).ok()
    }

    /// The GCRA step for `cost` units at once: passes when the bucket holds at least one unit
    /// (the theoretical arrival time is within the tolerance), then takes all `cost`, going
    /// into debt if need be (a broadcast's deliveries are known only after it listed them).
    /// `Ok(new tat)`, or `Err(microseconds until one unit is back)`.
    pub fn admit_cost(self, tat_us: Option<i64>, now_us: i64, cost: u32) -> Result<i64, i64> {
        let tat = tat_us.unwrap_or(now_us).max(now_us);
        let over = tat - now_us - self.tolerance_us();
        if over > 0 {
            return Err(over);
        }
        Ok(tat.saturating_add(self.cost_us(cost)))
    }

    /// What `cost` units take from the bucket, in microseconds.
    pub fn cost_us(self, cost: u32) -> i64 {
        self.interval_us().saturating_mul(i64::from(cost))
    }
}

/// A rate-limit bucket that is not a connection's own (that one lives on the connection's
/// record, [`ConnectionStore::admit_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// One user's requests across all of their connections: the verified `sub` of an
    /// authenticated stage.
    User(String),
    /// The stage's broadcast deliveries (posts to `@connections`), shared by every sender.
    Broadcasts,
}

impl Bucket {
    /// The bucket's item key in the connections table: `limit#user#{sub}`, `limit#broadcasts`.
    ///
    /// A partition key value is at most 2,048 bytes ("Partition key length",
    /// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html>) and
    /// nothing but the issuer bounds a `sub` (OpenID Connect says 255 ASCII characters): only
    /// its first [`MAX_SUB_KEY_BYTES`] bytes are used, so no token can make every request of
    /// its user fail. Two subjects that share that prefix would share a bucket: stricter,
    /// never looser.
    pub fn key(&self) -> String {
        match self {
            Bucket::User(sub) => {
                let mut end = sub.len().min(MAX_SUB_KEY_BYTES);
                while !sub.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{LIMIT_KEY_PREFIX}user#{}", &sub[..end])
            }
            Bucket::Broadcasts => format!("{LIMIT_KEY_PREFIX}broadcasts"),
        }
    }
}

/// The most bytes of a `sub` a user bucket's key holds (see [`Bucket::key`]).
pub const MAX_SUB_KEY_BYTES: usize = 1024;

/// What a [`Bucket`] says about a charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    Admitted,
    /// Over the limit; nothing was taken. The bucket holds a unit again after this long.
    Limited {
        retry_after_ms: u64,
    },
}

impl Charge {
    fn from_retry_us(retry_us: i64) -> Charge {
        // Rounded up: retrying after the stated time passes.
        let ms = (retry_us.max(1) + US_PER_MS - 1) / US_PER_MS;
        Charge::Limited {
            retry_after_ms: u64::try_from(ms).unwrap_or(u64::MAX),
        }
    }
}

/// What the store says about a message from a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Within the rate: the sender's record.
    Admitted(Connection),
    /// Over the rate; nothing was changed.
    RateLimited,
    /// No record for the connection.
    UnknownSender,
}

/// A connection a broadcast posts to: only what the post needs, so a listing transfers and
/// decodes one attribute per record. (DynamoDB still reads, and bills, whole items: its 1 MB
/// page limit applies before projection and filter.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub connection_id: String,
}

/// Whether a record with TTL `expires_at` (epoch seconds) is still live at `now` (epoch
/// seconds). DynamoDB deletes expired records lazily, typically within days, and Scan returns
/// them until then; the developer guide's filter for them keeps items whose TTL is after now
/// ("Working with expired items",
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ttl-expired-items.html>).
pub fn is_live(expires_at: i64, now: i64) -> bool {
    expires_at > now
}

/// What [`ConnectionStore::remove`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// The record was deleted; `rooms` is the list of rooms it held (the connections table's
    /// `rooms` attribute, which the DynamoDB membership store keeps; empty where a store keeps
    /// no such list), so the caller can delete those memberships.
    Removed { rooms: Vec<String> },
    /// There was no record.
    Absent,
    /// The record is younger than the cut-off: kept.
    Young,
}

/// A store operation that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend refused or could not be reached.
    #[error("connection store unavailable: {0}")]
    Backend(String),
    /// A record in the table does not have the shape this code writes.
    #[error("malformed connection record {connection_id:?}: {reason}")]
    Malformed {
        connection_id: String,
        reason: String,
    },
}

/// Connection records keyed by connection id.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Stores (or replaces) the record.
    async fn put(&self, connection: &Connection) -> Result<(), StoreError>;
    /// The record of `connection_id`, if any.
    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, StoreError>;
    /// Removes the record; removing a missing one succeeds.
    async fn delete(&self, connection_id: &str) -> Result<(), StoreError>;

    /// Removes the record in one step and says what it held; with `connected_before_ms`
    /// (epoch milliseconds), only a record whose `connectedAt` is before it
    /// ([`Removal::Young`] otherwise, and the record stays).
    ///
    /// The cut-off is for a 410 from `@connections`: API Gateway answers 410 also for a
    /// connection whose `$connect` has not completed ("a connection that is not yet
    /// established", <https://repost.aws/knowledge-center/410-gone-api-gateway>), and `$connect`
    /// writes the record before it returns, so a young record may belong to a client that is
    /// about to be connected. `$disconnect` passes `None`.
    ///
    /// The default reads, then deletes (not atomic; fine for test doubles); [`MemoryStore`]
    /// and [`DynamoDbStore`] do it in one step.
    async fn remove(
        &self,
        connection_id: &str,
        connected_before_ms: Option<i64>,
    ) -> Result<Removal, StoreError> {
        if let Some(cutoff) = connected_before_ms {
            match self.get(connection_id).await? {
                None => return Ok(Removal::Absent),
                Some(c) if c.connected_at >= cutoff => return Ok(Removal::Young),
                Some(_) => {}
            }
        }
        self.delete(connection_id).await?;
        Ok(Removal::Removed { rooms: Vec::new() })
    }
    /// Charges one message at `now_ms` to the sender's rate and returns its record: the sender
    /// lookup and the rate limit in one step (one conditional update on DynamoDB in the common
    /// cases; see [`DynamoDbStore`]).
    async fn admit_message(
        &self,
        connection_id: &str,
        now_ms: i64,
        rate: MessageRate,
    ) -> Result<Admission, StoreError>;
    /// Charges `cost` units at `now_ms` to `bucket` (created full on first use): admitted when
    /// the bucket holds at least one unit, and then all of `cost` is taken
    /// ([`MessageRate::admit_cost`]); refused with the time until a unit is back otherwise.
    ///
    /// The default keeps no buckets and admits everything (stores that wrap another for a
    /// test); [`MemoryStore`] and [`DynamoDbStore`] keep them.
    async fn charge(
        &self,
        bucket: &Bucket,
        now_ms: i64,
        rate: MessageRate,
        cost: u32,
    ) -> Result<Charge, StoreError> {
        let _ = (bucket, now_ms, rate, cost);
        Ok(Charge::Admitted)
    }

    /// Takes `cost` units from `bucket` at `now_ms` whatever it holds (into debt, which later
    /// charges wait out): what a broadcast costs once it knows how many it listed.
    async fn debit(
        &self,
        bucket: &Bucket,
        now_ms: i64,
        rate: MessageRate,
        cost: u32,
    ) -> Result<(), StoreError> {
        let _ = (bucket, now_ms, rate, cost);
        Ok(())
    }

    /// Every record, fetched a page at a time as the stream is polled. Records deleted or added
    /// while listing may or may not appear (as with a DynamoDB Scan); none appears twice.
    fn list(&self) -> BoxStream<'_, Result<Connection, StoreError>>;

    /// The connections a broadcast posts to at `now` (epoch seconds): every record that is
    /// live ([`is_live`]), with what was written before the listing started visible (a client
    /// that connected a moment ago is reached), paged like [`ConnectionStore::list`].
    ///
    /// The default filters [`ConnectionStore::list`]; [`DynamoDbStore`] has the table do it.
    fn list_recipients(&self, now: i64) -> BoxStream<'_, Result<Recipient, StoreError>> {
        self.list()
            .filter_map(move |item| {
                futures::future::ready(match item {
                    Ok(c) if !is_live(c.expires_at, now) => None,
                    Ok(c) => Some(Ok(Recipient {
                        connection_id: c.connection_id,
                    })),
                    Err(e) => Some(Err(e)),
                })
            })
            .boxed()
    }

    /// The connections whose token expired at or before `now` (epoch seconds), read strongly
    /// consistent, paged like [`ConnectionStore::list`]: what the token sweep closes. Records
    /// without a token expiry (stages without authentication) are never listed.
    ///
    /// The default filters [`ConnectionStore::list`]; [`DynamoDbStore`] has the table do it.
    fn list_token_expired(&self, now: i64) -> BoxStream<'_, Result<Recipient, StoreError>> {
        self.list()
            .filter_map(move |item| {
                futures::future::ready(match item {
                    Ok(c) if c.token_expires_at.is_some_and(|t| t <= now) => Some(Ok(Recipient {
                        connection_id: c.connection_id,
                    })),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
            })
            .boxed()
    }

    /// The connections of the user whose verified subject is `sub`, read strongly consistent,
    /// paged like [`ConnectionStore::list`]: what `push disconnect --user` closes.
    ///
    /// The default filters [`ConnectionStore::list`]; [`DynamoDbStore`] has the table do it.
    fn list_by_sub(&self, sub: &str) -> BoxStream<'_, Result<Recipient, StoreError>> {
        let sub = sub.to_owned();
        self.list()
            .filter_map(move |item| {
                futures::future::ready(match item {
                    Ok(c) if c.sub.as_deref() == Some(sub.as_str()) => Some(Ok(Recipient {
                        connection_id: c.connection_id,
                    })),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
            })
            .boxed()
    }

    /// The live connections (at `now`, epoch seconds) of the user `user_id`
    /// ([`Connection::user_id`]): what a push to a user posts to and presence lists.
    ///
    /// The default filters [`ConnectionStore::list`]; [`DynamoDbStore`] queries the user index,
    /// which is eventually consistent (a connection made a moment ago may be missing).
    fn list_by_user(
        &self,
        user_id: &str,
        now: i64,
    ) -> BoxStream<'_, Result<UserConnection, StoreError>> {
        let user_id = user_id.to_owned();
        self.list()
            .filter_map(move |item| {
                futures::future::ready(match item {
                    Ok(c) if c.user_id() == user_id && is_live(c.expires_at, now) => {
                        Some(Ok(UserConnection {
                            connection_id: c.connection_id,
                            connected_at: c.connected_at,
                        }))
                    }
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
            })
            .boxed()
    }

    /// At most `limit` records (at least 1), starting after the record whose id is `after`
    /// (from the start without it; a cursor whose record was deleted meanwhile still works),
    /// and the cursor of the next page: what a client pages through with `listConnections`.
    /// Expired records are included, as [`ConnectionStore::list`] includes them.
    async fn page(&self, after: Option<&str>, limit: usize) -> Result<ConnectionPage, StoreError>;
}

/// A page of records; a malformed record is an error of its own, so one bad item does not hide
/// the rest of its page.
pub type Page = Vec<Result<Connection, StoreError>>;

/// One page of [`ConnectionStore::page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPage {
    pub records: Page,
    /// Where the next page starts (the id of the last record read); `None` on the last page.
    /// A page may be followed by an empty one, as with DynamoDB's `LastEvaluatedKey`.
    pub next: Option<String>,
}

/// Turns a stream of pages into a stream of records. A failed page fetch ends the listing
/// (there is no cursor to go on from), after yielding the error.
fn flatten_pages<'a, T: Send + 'a>(
    pages: impl futures::Stream<Item = Result<Vec<Result<T, StoreError>>, StoreError>> + Send + 'a,
) -> BoxStream<'a, Result<T, StoreError>> {
    pages
        .map(|page| match page {
            Ok(records) => stream::iter(records),
            Err(e) => stream::iter(vec![Err(e)]),
        })
        .flatten()
        .boxed()
}

/// An in-process store: the local gateway's default and the unit tests' fixture.
///
/// Listing pages through the key order with a cursor, like a Scan, so a broadcast that deletes
/// stale records while it lists behaves the same here as on DynamoDB and never holds the lock
/// across an await.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    records: Arc<Mutex<BTreeMap<String, Connection>>>,
    /// The rate limit state per connection (the `rateTatUs` attribute of the DynamoDB record).
    rate_tat: Arc<Mutex<HashMap<String, i64>>>,
    /// The other buckets' state ([`Bucket`], the `limit#` items of the DynamoDB table): kept
    /// apart from the records, so no listing can see them.
    buckets: Arc<Mutex<HashMap<Bucket, i64>>>,
    page_size: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore {
            records: Arc::default(),
            rate_tat: Arc::default(),
            buckets: Arc::default(),
            page_size: DEFAULT_PAGE_SIZE,
        }
    }

    /// Records per listing page (at least 1).
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// How many records the store holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Connection>> {
        // A panic while holding the lock cannot leave the map half-updated (every operation is
        // a single insert/remove), so a poisoned lock is safe to keep using.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Up to `limit` connection ids whose records `keep` accepts, after `cursor` in key order,
    /// and the key to continue after (`None` when the end was reached). The fan-out worker's segment
    /// listing (`crate::audience`) pages with it; the lock is not held across an await.
    pub fn ids_after(
        &self,
        cursor: Option<&str>,
        limit: usize,
        keep: impl Fn(&Connection) -> bool,
    ) -> (Vec<String>, Option<String>) {
        use std::ops::Bound;
        let records = self.lock();
        let start = cursor.map_or(Bound::Unbounded, |c| Bound::Excluded(c.to_owned()));
        let mut ids = Vec::new();
        let mut last = None;
        for (key, record) in records.range::<String, _>((start, Bound::Unbounded)) {
            if ids.len() >= limit.max(1) {
                return (ids, last);
            }
            if keep(record) {
                ids.push(key.clone());
            }
            last = Some(key.clone());
        }
        (ids, None)
    }

    fn rate_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        self.rate_tat.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn page_after(&self, cursor: Option<&str>, limit: usize) -> Vec<Connection> {
        use std::ops::Bound;
        let records = self.lock();
        let start = match cursor {
            Some(c) => Bound::Excluded(c.to_owned()),
            None => Bound::Unbounded,
        };
        records
            .range((start, Bound::Unbounded))
            .take(limit)
            .map(|(_, c)| c.clone())
            .collect()
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn put(&self, connection: &Connection) -> Result<(), StoreError> {
        let mut records = self.lock();
        // A put replaces the whole item, rate state included, as PutItem does.
        self.rate_lock().remove(&connection.connection_id);
        records.insert(connection.connection_id.clone(), connection.clone());
        Ok(())
    }

    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        Ok(self.lock().get(connection_id).cloned())
    }

    async fn delete(&self, connection_id: &str) -> Result<(), StoreError> {
        let mut records = self.lock();
        self.rate_lock().remove(connection_id);
        records.remove(connection_id);
        Ok(())
    }

    async fn remove(
        &self,
        connection_id: &str,
        connected_before_ms: Option<i64>,
    ) -> Result<Removal, StoreError> {
        let mut records = self.lock();
        match (records.get(connection_id), connected_before_ms) {
            (None, _) => return Ok(Removal::Absent),
            (Some(c), Some(cutoff)) if c.connected_at >= cutoff => return Ok(Removal::Young),
            _ => {}
        }
        self.rate_lock().remove(connection_id);
        records.remove(connection_id);
        // This store keeps no list of rooms: the memory membership store keeps its own.
        Ok(Removal::Removed { rooms: Vec::new() })
    }

    async fn admit_message(
        &self,
        connection_id: &str,
        now_ms: i64,
        rate: MessageRate,
    ) -> Result<Admission, StoreError> {
        // Both locks, records first (as everywhere), so the check and the charge are atomic.
        let records = self.lock();
        let Some(record) = records.get(connection_id) else {
            return Ok(Admission::UnknownSender);
        };
        let mut tats = self.rate_lock();
        match rate.admit(tats.get(connection_id).copied(), now_ms * US_PER_MS) {
            Some(tat) => {
                tats.insert(connection_id.to_owned(), tat);
                Ok(Admission::Admitted(record.clone()))
            }
            None => Ok(Admission::RateLimited),
        }
    }

    async fn charge(
        &self,
        bucket: &Bucket,
        now_ms: i64,
        rate: MessageRate,
        cost: u32,
    ) -> Result<Charge, StoreError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        match rate.admit_cost(buckets.get(bucket).copied(), now_ms * US_PER_MS, cost) {
            Ok(tat) => {
                buckets.insert(bucket.clone(), tat);
                Ok(Charge::Admitted)
            }
            Err(retry_us) => Ok(Charge::from_retry_us(retry_us)),
        }
    }

    async fn debit(
        &self,
        bucket: &Bucket,
        now_ms: i64,
        rate: MessageRate,
        cost: u32,
    ) -> Result<(), StoreError> {
        let now_us = now_ms * US_PER_MS;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let tat = buckets.get(bucket).copied().unwrap_or(now_us).max(now_us);
        buckets.insert(bucket.clone(), tat.saturating_add(rate.cost_us(cost)));
        Ok(())
    }

    fn list(&self) -> BoxStream<'_, Result<Connection, StoreError>> {
        // State: the cursor after which the next page starts; `None` inside `Some` = first page.
        let pages = stream::try_unfold(Some(None::<String>), move |state| async move {
            let Some(cursor) = state else {
                return Ok(None);
            };
            let page = self.page_after(cursor.as_deref(), self.page_size);
            if page.is_empty() {
                return Ok(None);
            }
            let next = if page.len() < self.page_size {
                None
            } else {
                page.last().map(|c| Some(c.connection_id.clone()))
            };
            Ok::<_, StoreError>(Some((page.into_iter().map(Ok).collect::<Page>(), next)))
        });
        flatten_pages(pages)
    }

    async fn page(&self, after: Option<&str>, limit: usize) -> Result<ConnectionPage, StoreError> {
        let limit = limit.max(1);
        let page = self.page_after(after, limit);
        let next = if page.len() < limit {
            None
        } else {
            page.last().map(|c| c.connection_id.clone())
        };
        Ok(ConnectionPage {
            records: page.into_iter().map(Ok).collect(),
            next,
        })
    }
}

/// The connections table in DynamoDB. Uses only PutItem, GetItem, UpdateItem, DeleteItem and
/// Scan (the actions `wsstack_routes::Handler::table_actions` grants).
///
/// The rate limit is the generic cell rate algorithm on one attribute, `rateTatUs`. DynamoDB's
/// update expressions have no `max`, so [`ConnectionStore::admit_message`] tries the common
/// case first: a sender whose bucket is full (`rateTatUs` absent or not after now) gets
/// `rateTatUs = now + interval` in one conditional UpdateItem, which also returns the record. A
/// message over the rate fails that condition and is refused from the same answer (the old item
/// comes back with the failure), still one call. Only a message that passes *inside* a burst
/// (the previous one less than an interval ago) needs a second conditional update,
/// `rateTatUs = rateTatUs + interval`.
///
/// The other buckets ([`Bucket`]: per user, the stage's broadcasts) are items of the same table
/// keyed `limit#...` ([`LIMIT_KEY_PREFIX`]) with the same attribute and the same two steps,
/// plus a TTL. Every Scan here filters their key prefix out, so neither a broadcast, nor
/// `listConnections`, nor the fan-out worker's segments ever see them, and
/// [`ConnectionStore::get`] answers `None` for their keys.
#[derive(Debug, Clone)]
pub struct DynamoDbStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    page_size: Option<i32>,
}

impl DynamoDbStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        DynamoDbStore {
            client,
            table,
            page_size: None,
        }
    }

    /// Caps the records per Scan page (the Scan `Limit`); by default DynamoDB's 1 MB page
    /// applies. Tests use a small value to cross page boundaries with few records.
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = Some(i32::try_from(page_size.max(1)).unwrap_or(i32::MAX));
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }
}

/// Renders an SDK error with its causes: the top-level `Display` of an SDK error is just
/// "service error", which tells an operator nothing.
pub(crate) fn backend_error(err: impl std::error::Error) -> StoreError {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    StoreError::Backend(text)
}

/// A connection record's key: the table's only key is the partition key, the connection id.
/// Also the whole `ExclusiveStartKey` of a Scan of the table.
pub(crate) fn connection_key(connection_id: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([(
        ATTR_CONNECTION_ID.to_owned(),
        AttributeValue::S(connection_id.to_owned()),
    )])
}

fn to_item(c: &Connection) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (
            ATTR_CONNECTION_ID.to_owned(),
            AttributeValue::S(c.connection_id.clone()),
        ),
        (
            ATTR_USERNAME.to_owned(),
            AttributeValue::S(c.username.clone()),
        ),
        (
            ATTR_CONNECTED_AT.to_owned(),
            AttributeValue::N(c.connected_at.to_string()),
        ),
        (
            ATTR_EXPIRES_AT.to_owned(),
            AttributeValue::N(c.expires_at.to_string()),
        ),
    ]);
    if let Some(sub) = &c.sub {
        item.insert(ATTR_SUB.to_owned(), AttributeValue::S(sub.clone()));
    }
    item.insert(
        ATTR_USER_ID.to_owned(),
        AttributeValue::S(c.user_id().to_owned()),
    );
    if let Some(t) = c.token_expires_at {
        item.insert(
            ATTR_TOKEN_EXPIRES_AT.to_owned(),
            AttributeValue::N(t.to_string()),
        );
    }
    item
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Connection, StoreError> {
    let connection_id = match item.get(ATTR_CONNECTION_ID) {
        Some(AttributeValue::S(s)) => s.clone(),
        _ => {
            return Err(StoreError::Malformed {
                connection_id: String::new(),
                reason: format!("no string attribute {ATTR_CONNECTION_ID}"),
            });
        }
    };
    let malformed = |reason: String| StoreError::Malformed {
        connection_id: connection_id.clone(),
        reason,
    };
    let string = |name: &str| match item.get(name) {
        Some(AttributeValue::S(s)) => Ok(s.clone()),
        _ => Err(malformed(format!("no string attribute {name}"))),
    };
    let number = |name: &str| match item.get(name) {
        Some(AttributeValue::N(n)) => n
            .parse::<i64>()
            .map_err(|_| malformed(format!("attribute {name}={n} is not an integer"))),
        _ => Err(malformed(format!("no number attribute {name}"))),
    };
    let sub = match item.get(ATTR_SUB) {
        None => None,
        Some(AttributeValue::S(s)) => Some(s.clone()),
        Some(_) => return Err(malformed(format!("attribute {ATTR_SUB} is not a string"))),
    };
    let token_expires_at = match item.get(ATTR_TOKEN_EXPIRES_AT) {
        None => None,
        Some(_) => Some(number(ATTR_TOKEN_EXPIRES_AT)?),
    };
    Ok(Connection {
        username: string(ATTR_USERNAME)?,
        connected_at: number(ATTR_CONNECTED_AT)?,
        expires_at: number(ATTR_EXPIRES_AT)?,
        sub,
        token_expires_at,
        connection_id,
    })
}

fn rate_tat(item: &HashMap<String, AttributeValue>) -> Option<i64> {
    match item.get(ATTR_RATE_TAT) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

impl DynamoDbStore {
    /// The record as stored, every attribute.
    async fn raw_get(
        &self,
        connection_id: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(
                ATTR_CONNECTION_ID,
                AttributeValue::S(connection_id.to_owned()),
            )
            // A client may message right after `$connect` returned; an eventually consistent
            // read could miss the record written a few milliseconds earlier.
            .consistent_read(true)
            .send()
            .await
            .map_err(backend_error)?;
        Ok(out.item)
    }

    /// One conditional UpdateItem: `set` when `condition` holds for an existing record.
    /// `Ok(Ok(new item))`, or `Ok(Err(old item))` when the condition failed (`None`: no record).
    async fn conditional_update(
        &self,
        connection_id: &str,
        set: &str,
        condition: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<
        Result<HashMap<String, AttributeValue>, Option<HashMap<String, AttributeValue>>>,
        StoreError,
    > {
        use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(
                ATTR_CONNECTION_ID,
                AttributeValue::S(connection_id.to_owned()),
            )
            .update_expression(set)
            .condition_expression(format!("attribute_exists(#pk) AND ({condition})"))
            .expression_attribute_names("#pk", ATTR_CONNECTION_ID)
            .expression_attribute_names("#tat", ATTR_RATE_TAT)
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(o) => Ok(Ok(o.attributes.unwrap_or_default())),
            Err(e) => match e.as_service_error() {
                Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
                    Ok(Err(c.item.clone()))
                }
                _ => Err(backend_error(e)),
            },
        }
    }
}

impl DynamoDbStore {
    /// The first step of a charge or a debit: when the bucket is full (no state yet, or its
    /// state at or before now), set it to `now + cost` in one conditional update; when it is
    /// not, the old state (see [`DynamoDbStore::bucket_update`]).
    async fn bucket_refill(
        &self,
        key: &str,
        values: &HashMap<String, AttributeValue>,
    ) -> Result<Result<(), Option<i64>>, StoreError> {
        self.bucket_update(
            key,
            "SET #tat = :next, #ttl = :exp",
            "attribute_not_exists(#tat) OR #tat <= :now",
            only(values.clone(), &[":next", ":exp", ":now"]),
        )
        .await
    }

    /// One conditional UpdateItem of a rate-limit item (created when missing): `set` when
    /// `condition` holds. `Ok(true)` when it did; `Ok(false)` with the old `rateTatUs` (if the
    /// answer carried one) when the condition failed.
    async fn bucket_update(
        &self,
        key: &str,
        set: &str,
        condition: &str,
        values: HashMap<String, AttributeValue>,
    ) -> Result<Result<(), Option<i64>>, StoreError> {
        use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
        use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(connection_key(key)))
            .update_expression(set)
            .condition_expression(condition)
            .expression_attribute_names("#tat", ATTR_RATE_TAT)
            .expression_attribute_names("#ttl", ATTR_EXPIRES_AT)
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match out {
            Ok(_) => Ok(Ok(())),
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(c)) => {
                    Ok(Err(c.item.as_ref().and_then(rate_tat)))
                }
                _ => Err(backend_error(e)),
            },
        }
    }

    /// The `rateTatUs` of a rate-limit item, read strongly consistent (`None`: no item or no
    /// state yet).
    async fn bucket_tat(&self, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.raw_get(key).await?.as_ref().and_then(rate_tat))
    }
}

/// The expression values of a bucket update at `now_us` for `cost` units: now, the state of a
/// full bucket after the charge, the charge, the most the state may be ahead of now for a
/// charge to pass, and the item's TTL (epoch seconds: when the bucket is full again at the
/// latest, plus [`LIMIT_ITEM_GRACE_SECONDS`]).
fn bucket_values(now_us: i64, rate: MessageRate, cost: u32) -> HashMap<String, AttributeValue> {
    let n = |v: i64| AttributeValue::N(v.to_string());
    let cost_us = rate.cost_us(cost);
    let full_by_us = now_us
        .saturating_add(rate.tolerance_us())
        .saturating_add(cost_us);
    let expires_at = full_by_us / 1_000_000 + 1 + LIMIT_ITEM_GRACE_SECONDS;
    HashMap::from([
        (":now".to_owned(), n(now_us)),
        (":next".to_owned(), n(now_us.saturating_add(cost_us))),
        (":cost".to_owned(), n(cost_us)),
        (
            ":limit".to_owned(),
            n(now_us.saturating_add(rate.tolerance_us())),
        ),
        (":exp".to_owned(), n(expires_at)),
    ])
}

/// Keeps only the values an expression names: DynamoDB refuses unused ones.
fn only(
    mut values: HashMap<String, AttributeValue>,
    names: &[&str],
) -> HashMap<String, AttributeValue> {
    values.retain(|k, _| names.contains(&k.as_str()));
    values
}

type ScanCursor = Option<HashMap<String, AttributeValue>>;

/// The Scan filter that keeps connection records and leaves out the rate-limit items, by their
/// key prefix (a filter on an attribute only records have would also drop records written
/// before that attribute, which a broadcast still reaches). [`connections_only`] adds it.
const CONNECTIONS_ONLY: &str = "NOT begins_with(#id, :limitPrefix)";

/// `scan` with [`CONNECTIONS_ONLY`]'s names and values (`filter`, which must contain it, as its
/// filter expression).
fn connections_only(scan: ScanFluentBuilder, filter: &str) -> ScanFluentBuilder {
    scan.filter_expression(filter)
        .expression_attribute_names("#id", ATTR_CONNECTION_ID)
        .expression_attribute_values(":limitPrefix", AttributeValue::S(LIMIT_KEY_PREFIX.into()))
}

fn recipient_from_item(item: &HashMap<String, AttributeValue>) -> Result<Recipient, StoreError> {
    match item.get(ATTR_CONNECTION_ID) {
        Some(AttributeValue::S(s)) => Ok(Recipient {
            connection_id: s.clone(),
        }),
        _ => Err(StoreError::Malformed {
            connection_id: String::new(),
            reason: format!("no string attribute {ATTR_CONNECTION_ID}"),
        }),
    }
}

fn user_connection_from_item(
    item: &HashMap<String, AttributeValue>,
) -> Result<UserConnection, StoreError> {
    let Recipient { connection_id } = recipient_from_item(item)?;
    let connected_at = match item.get(ATTR_CONNECTED_AT) {
        Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
        _ => None,
    };
    let connected_at = connected_at.ok_or_else(|| StoreError::Malformed {
        connection_id: connection_id.clone(),
        reason: format!("no number attribute {ATTR_CONNECTED_AT}"),
    })?;
    Ok(UserConnection {
        connection_id,
        connected_at,
    })
}

impl DynamoDbStore {
    /// The Scan `request` (table, page size and the caller's parameters set), page after page
    /// from where the last one ended; `decode` reads one item.
    fn scan_pages<T: Send + 'static>(
        &self,
        request: ScanFluentBuilder,
        decode: fn(&HashMap<String, AttributeValue>) -> Result<T, StoreError>,
    ) -> BoxStream<'_, Result<T, StoreError>> {
        // State: `None` = done; `Some(cursor)` = fetch the page starting after `cursor`
        // (`Some(None)` is the first page).
        let pages = stream::try_unfold(Some(None), move |state: Option<ScanCursor>| {
            let request = request.clone();
            async move {
                let Some(start) = state else {
                    return Ok(None);
                };
                let out = request
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(backend_error)?;
                let page: Vec<Result<T, StoreError>> = out.items().iter().map(decode).collect();
                let next = out.last_evaluated_key().map(|k| Some(k.clone()));
                Ok::<_, StoreError>(Some((page, next)))
            }
        });
        flatten_pages(pages)
    }

    fn scan(&self) -> ScanFluentBuilder {
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .set_limit(self.page_size);
        connections_only(scan, CONNECTIONS_ONLY)
    }

    /// A Scan for the recipients of a broadcast at `now` (epoch seconds): the ids of the
    /// records that are still live, read strongly consistent. Callers add the paging.
    pub(crate) fn recipient_scan(&self, now: i64) -> ScanFluentBuilder {
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            // A Scan is eventually consistent by default and could miss a record written a
            // moment ago: a client that just connected would not get the broadcast (API
            // Reference, Scan, ConsistentRead).
            .consistent_read(true)
            // The post needs the connection id only.
            .projection_expression("#id")
            // Expired records (TTL at or before now) still sit in the table until DynamoDB's
            // TTL process deletes them; the filter keeps them out of the broadcast. A record
            // without the attribute predates TTL: still reached.
            .expression_attribute_names("#ttl", ATTR_EXPIRES_AT)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()));
        // Rate-limit items (`limit#...`) are not connections.
        connections_only(
            scan,
            &format!("(attribute_not_exists(#ttl) OR #ttl > :now) AND {CONNECTIONS_ONLY}"),
        )
    }

    /// A Scan for the ids of the records whose attribute `name` satisfies `filter` (`#a` is
    /// the attribute, `:v` the value), read strongly consistent so that a record written a
    /// moment ago is seen.
    fn filtered_id_scan(
        &self,
        name: &str,
        filter: &str,
        value: AttributeValue,
    ) -> ScanFluentBuilder {
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .set_limit(self.page_size)
            .consistent_read(true)
            .projection_expression("#id")
            .expression_attribute_names("#a", name)
            .expression_attribute_values(":v", value);
        // Rate-limit items (`limit#...`) are not connections, whatever their attributes.
        connections_only(scan, &format!("({filter}) AND {CONNECTIONS_ONLY}"))
    }
}

#[async_trait]
impl ConnectionStore for DynamoDbStore {
    async fn put(&self, connection: &Connection) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(connection)))
            .send()
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn get(&self, connection_id: &str) -> Result<Option<Connection>, StoreError> {
        if connection_id.starts_with(LIMIT_KEY_PREFIX) {
            // A rate-limit item, not a connection (a `to` naming one is an unknown recipient).
            return Ok(None);
        }
        self.raw_get(connection_id)
            .await?
            .as_ref()
            .map(from_item)
            .transpose()
    }

    async fn delete(&self, connection_id: &str) -> Result<(), StoreError> {
        // DeleteItem of a missing key succeeds, which makes this idempotent for free.
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(
                ATTR_CONNECTION_ID,
                AttributeValue::S(connection_id.to_owned()),
            )
            .send()
            .await
            .map_err(backend_error)?;
        Ok(())
    }

    async fn remove(
        &self,
        connection_id: &str,
        connected_before_ms: Option<i64>,
    ) -> Result<Removal, StoreError> {
        use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
        use aws_sdk_dynamodb::types::ReturnValue;
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(connection_key(connection_id)))
            // The deleted item comes back whole ("return the item's attribute values in the
            // same operation, using the ReturnValues parameter", API Reference, DeleteItem,
            // https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_DeleteItem.html):
            // its `rooms` are the memberships to delete, read in the same step that ends any
            // join (a join's update needs the record).
            .return_values(ReturnValue::AllOld);
        if let Some(cutoff) = connected_before_ms {
            // A missing item passes `attribute_not_exists` and the delete is a no-op.
            request = request
                .condition_expression("attribute_not_exists(#at) OR #at < :cutoff")
                .expression_attribute_names("#at", ATTR_CONNECTED_AT)
                .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.to_string()));
        }
        let out = match request.send().await {
            Ok(out) => out,
            Err(e)
                if matches!(
                    e.as_service_error(),
                    Some(DeleteItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                return Ok(Removal::Young);
            }
            Err(e) => return Err(backend_error(e)),
        };
        let Some(old) = out.attributes.filter(|a| !a.is_empty()) else {
            return Ok(Removal::Absent);
        };
        let rooms = match old.get(wsstack_routes::table::ROOMS_ATTRIBUTE) {
            Some(AttributeValue::Ss(rooms)) => rooms.clone(),
            _ => Vec::new(),
        };
        Ok(Removal::Removed { rooms })
    }

    async fn admit_message(
        &self,
        connection_id: &str,
        now_ms: i64,
        rate: MessageRate,
    ) -> Result<Admission, StoreError> {
        let n = |v: i64| AttributeValue::N(v.to_string());
        let now_us = now_ms * US_PER_MS;
        // The common case: a full bucket. rateTatUs = now + interval.
        let full = self
            .conditional_update(
                connection_id,
                "SET #tat = :next",
                "attribute_not_exists(#tat) OR #tat <= :now",
                HashMap::from([
                    (":now".to_owned(), n(now_us)),
                    (":next".to_owned(), n(now_us + rate.interval_us())),
                ]),
            )
            .await?;
        let old = match full {
            Ok(new) => return from_item(&new).map(Admission::Admitted),
            Err(Some(old)) => old,
            // DynamoDB returns the old item with the failure; emulators that ignore
            // ReturnValuesOnConditionCheckFailure (dynalite, issue mhart/dynalite#182) do not,
            // and there one GetItem tells a missing record from a full bucket.
            Err(None) => match self.raw_get(connection_id).await? {
                Some(item) => item,
                None => return Ok(Admission::UnknownSender),
            },
        };
        if rate.admit(rate_tat(&old), now_us).is_none() {
            return Ok(Admission::RateLimited);
        }
        // Inside a burst: rateTatUs += interval, as long as it stays within the tolerance (a
        // concurrent message may have used the room since).
        let burst = self
            .conditional_update(
                connection_id,
                "SET #tat = #tat + :interval",
                "#tat <= :limit",
                HashMap::from([
                    (":interval".to_owned(), n(rate.interval_us())),
                    (":limit".to_owned(), n(now_us + rate.tolerance_us())),
                ]),
            )
            .await?;
        match burst {
            Ok(new) => from_item(&new).map(Admission::Admitted),
            Err(Some(_)) => Ok(Admission::RateLimited),
            Err(None) => match self.raw_get(connection_id).await? {
                Some(_) => Ok(Admission::RateLimited),
                None => Ok(Admission::UnknownSender),
            },
        }
    }

    /// Two conditional updates at most, as for a connection's own bucket: a full bucket (no
    /// state, or state not after now) takes the charge at once; otherwise, when the state
    /// leaves room, `rateTatUs += cost` on condition that it still does.
    async fn charge(
        &self,
        bucket: &Bucket,
        now_ms: i64,
        rate: MessageRate,
        cost: u32,
    ) -> Result<Charge, StoreError> {
        let key = bucket.key();
        let now_us = now_ms * US_PER_MS;
        let values = bucket_values(now_us, rate, cost);
        let full = self.bucket_refill(&key, &values).await?;
        let tat = match full {
            Ok(()) => return Ok(Charge::Admitted),
            Err(Some(tat)) => Some(tat),
            // dynalite does not return the old item with the failure (mhart/dynalite#182).
            Err(None) => self.bucket_tat(&key).await?,
        };
        if let Err(retry_us) = rate.admit_cost(tat, now_us, cost) {
            return Ok(Charge::from_retry_us(retry_us));
        }
        let burst = self
            .bucket_update(
                &key,
                "SET #tat = #tat + :cost, #ttl = :exp",
                "#tat <= :limit",
                only(values, &[":cost", ":exp", ":limit"]),
            )
            .await?;
        match burst {
            Ok(()) => Ok(Charge::Admitted),
            // A concurrent charge took the room meanwhile.
            Err(tat) => {
                let tat = match tat {
                    Some(t) => Some(t),
                    None => self.bucket_tat(&key).await?,
                };
                Ok(Charge::from_retry_us(
                    rate.admit_cost(tat, now_us, cost)
                        .err()
                        .unwrap_or(rate.interval_us()),
                ))
            }
        }
    }

    async fn debit(
        &self,
        bucket: &Bucket,
        now_ms: i64,
        rate: MessageRate,
        cost: u32,
    ) -> Result<(), StoreError> {
        let key = bucket.key();
        let now_us = now_ms * US_PER_MS;
        let values = bucket_values(now_us, rate, cost);
        // The state only grows, so once it is after now the second update's condition holds;
        // the loop only guards against an item deleted in between.
        for _ in 0..3 {
            let full = self.bucket_refill(&key, &values).await?;
            if full.is_ok() {
                return Ok(());
            }
            let ahead = self
                .bucket_update(
                    &key,
                    "SET #tat = #tat + :cost, #ttl = :exp",
                    "#tat > :now",
                    only(values.clone(), &[":cost", ":exp", ":now"]),
                )
                .await?;
            if ahead.is_ok() {
                return Ok(());
            }
        }
        Err(StoreError::Backend(format!(
            "could not charge {cost} to rate-limit item {key}: its state kept changing"
        )))
    }

    fn list(&self) -> BoxStream<'_, Result<Connection, StoreError>> {
        self.scan_pages(self.scan(), from_item)
    }

    fn list_recipients(&self, now: i64) -> BoxStream<'_, Result<Recipient, StoreError>> {
        self.scan_pages(
            self.recipient_scan(now).set_limit(self.page_size),
            recipient_from_item,
        )
    }

    fn list_token_expired(&self, now: i64) -> BoxStream<'_, Result<Recipient, StoreError>> {
        // A comparison with a missing attribute is false, so records without a token expiry
        // are never returned (DynamoDB developer guide, "Comparison operator and function
        // reference", https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Expressions.OperatorsAndFunctions.html).
        let scan = self.filtered_id_scan(
            ATTR_TOKEN_EXPIRES_AT,
            "#a <= :v",
            AttributeValue::N(now.to_string()),
        );
        self.scan_pages(scan, recipient_from_item)
    }

    fn list_by_sub(&self, sub: &str) -> BoxStream<'_, Result<Recipient, StoreError>> {
        let scan = self.filtered_id_scan(ATTR_SUB, "#a = :v", AttributeValue::S(sub.to_owned()));
        self.scan_pages(scan, recipient_from_item)
    }

    fn list_by_user(
        &self,
        user_id: &str,
        now: i64,
    ) -> BoxStream<'_, Result<UserConnection, StoreError>> {
        // A Query of the user index: a GSI is read eventually consistent only (developer guide,
        // "Using Global Secondary Indexes in DynamoDB",
        // https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.Reading).
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(wsstack_routes::table::USER_INDEX)
            .key_condition_expression("#u = :u")
            .expression_attribute_names("#u", ATTR_USER_ID)
            .expression_attribute_values(":u", AttributeValue::S(user_id.to_owned()))
            // Expired records wait for the TTL process: not connections any more.
            .filter_expression("attribute_not_exists(#ttl) OR #ttl > :now")
            .expression_attribute_names("#ttl", ATTR_EXPIRES_AT)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .set_limit(self.page_size);
        let pages = stream::try_unfold(Some(None), move |state: Option<ScanCursor>| {
            let query = query.clone();
            async move {
                let Some(start) = state else {
                    return Ok(None);
                };
                let out = query
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(backend_error)?;
                let page: Vec<_> = out.items().iter().map(user_connection_from_item).collect();
                let next = out.last_evaluated_key().map(|k| Some(k.clone()));
                Ok::<_, StoreError>(Some((page, next)))
            }
        });
        flatten_pages(pages)
    }

    async fn page(&self, after: Option<&str>, limit: usize) -> Result<ConnectionPage, StoreError> {
        // The table's only key is the partition key, so a connection id is the whole
        // ExclusiveStartKey and the whole LastEvaluatedKey. DynamoDB may return a
        // LastEvaluatedKey whose next page is empty (API Reference, Scan,
        // https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Scan.html).
        let start = after.map(connection_key);
        let scan = self
            .client
            .scan()
            .table_name(&self.table)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            // As for a broadcast: a person who connected a moment ago is listed.
            .consistent_read(true)
            .set_exclusive_start_key(start);
        // Not the rate-limit items. (The filter applies after `Limit`, so a page may hold
        // fewer records; a client pages on with `next`, as after expired ones.)
        let out = connections_only(scan, CONNECTIONS_ONLY)
            .send()
            .await
            .map_err(backend_error)?;
        let next = match out.last_evaluated_key() {
            None => None,
            Some(key) => match key.get(ATTR_CONNECTION_ID) {
                Some(AttributeValue::S(id)) => Some(id.clone()),
                _ => {
                    return Err(StoreError::Backend(format!(
                        "Scan returned a LastEvaluatedKey without a string {ATTR_CONNECTION_ID}"
                    )));
                }
            },
        };
        Ok(ConnectionPage {
            records: out.items().iter().map(from_item).collect(),
            next,
        })
    }
}

#[cfg(test)]
mod rate_tests {
    use super::{Bucket, MAX_SUB_KEY_BYTES, MessageRate};

    #[test]
    fn a_user_buckets_key_fits_a_partition_key_whatever_the_sub() {
        assert_eq!(Bucket::User("abc".into()).key(), "limit#user#abc");
        assert_eq!(Bucket::Broadcasts.key(), "limit#broadcasts");
        // 3-byte characters: the cut lands on a character boundary, under DynamoDB's 2,048.
        let huge = Bucket::User("€".repeat(5_000)).key();
        assert!(huge.len() <= "limit#user#".len() + MAX_SUB_KEY_BYTES);
        assert!(huge.len() < 2048);
        assert!(huge.ends_with('€'));
    }

    const RATE: MessageRate = MessageRate {
        per_second: 10,
        burst: 20,
    };

    #[test]
    fn a_full_bucket_passes_burst_messages_at_once_then_one_per_interval() {
        let now = 1_000_000_000;
        let mut tat = None;
        for i in 0..20 {
            tat = Some(
                RATE.admit(tat, now)
                    .unwrap_or_else(|| panic!("message {i} refused")),
            );
        }
        assert_eq!(
            RATE.admit(tat, now),
            None,
            "the 21st at once is over the burst"
        );
        assert_eq!(RATE.admit(tat, now + 99_999), None);
        assert!(
            RATE.admit(tat, now + 100_000).is_some(),
            "one interval (100 ms, in microseconds) later, one more"
        );
    }

    /// Issue 18: in milliseconds, 1000 / 750 rounded the interval down to 1 ms, a limit of
    /// 1,000 a second. Over ten seconds of steady sending, 750/s must let about 7,500 through.
    #[test]
    fn a_rate_of_750_admits_750_a_second_not_1000() {
        let rate = MessageRate {
            per_second: 750,
            burst: 1,
        };
        let start: i64 = 1_700_000_000_000_000;
        let mut tat = None;
        let mut admitted = 0;
        // One attempt every microsecond for ten seconds: far more than the rate.
        for step in 0..10_000_000 {
            let now = start + step;
            if let Some(t) = rate.admit(tat, now) {
                tat = Some(t);
                admitted += 1;
            }
        }
        assert!(
            (7_490..=7_500).contains(&admitted),
            "admitted {admitted} in 10 s at 750/s"
        );
        // Never looser than configured: the interval is rounded up.
        assert_eq!(rate.interval_us(), 1_334);
    }

    #[test]
    fn a_charge_of_many_passes_on_one_unit_then_leaves_a_debt_to_wait_out() {
        let budget = MessageRate {
            per_second: 5_000,
            burst: 5_000,
        };
        let now: i64 = 1_700_000_000_000_000;
        // A broadcast to 20,000 when the bucket is full: admitted, 4 s of deliveries taken.
        let tat = budget
            .admit_cost(None, now, 20_000)
            .expect("a full bucket admits");
        assert_eq!(tat - now, 4_000_000);
        // The next waits until the debt is back within the burst (4,999 intervals ahead):
        // 4 s - 999.8 ms from now.
        assert_eq!(budget.admit_cost(Some(tat), now, 1), Err(3_000_200));
        assert!(budget.admit_cost(Some(tat), now + 3_000_199, 1).is_err());
        assert!(budget.admit_cost(Some(tat), now + 3_000_200, 1).is_ok());
    }

    #[test]
    fn idle_time_refills_the_bucket_but_never_beyond_the_burst() {
        let now = 1_000_000_000_000;
        let mut tat = Some(now - 3_600_000_000);
        for _ in 0..20 {
            tat = RATE.admit(tat, now);
            assert!(tat.is_some());
        }
        assert_eq!(RATE.admit(tat, now), None);
    }
}
