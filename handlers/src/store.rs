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
pub const ATTR_CONNECTED_AT: &str = "connectedAt";
pub const ATTR_EXPIRES_AT: &str = wsstack_routes::table::TTL_ATTRIBUTE;
/// The verified subject (`sub` claim) of an authenticated connection.
pub const ATTR_SUB: &str = "sub";
/// When the token the connection was authenticated with expires, epoch seconds (the JWT's
/// `exp`): the token sweep closes the connection after it.
pub const ATTR_TOKEN_EXPIRES_AT: &str = "tokenExpiresAt";
/// The sender's rate limit state: the GCRA "theoretical arrival time", epoch milliseconds.
pub const ATTR_RATE_TAT: &str = "rateTat";

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

/// A per-connection message rate: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRate {
    pub per_second: u32,
    pub burst: u32,
}

impl MessageRate {
    /// The emission interval of the generic cell rate algorithm (GCRA), in milliseconds: the
    /// time one message "costs".
    pub fn interval_ms(self) -> i64 {
        1000 / i64::from(self.per_second.max(1))
    }

    /// How far ahead of now the theoretical arrival time may be for a message to pass: room for
    /// `burst - 1` messages beyond the one being sent.
    pub fn tolerance_ms(self) -> i64 {
        self.interval_ms() * i64::from(self.burst.max(1) - 1)
    }

    /// The GCRA step: the new theoretical arrival time if a message at `now_ms` passes, given
    /// the stored one (`None`: never sent, a full bucket).
    pub fn admit(self, tat_ms: Option<i64>, now_ms: i64) -> Option<i64> {
        let tat = tat_ms.unwrap_or(now_ms).max(now_ms);
        (tat - now_ms <= self.tolerance_ms()).then_some(tat + self.interval_ms())
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
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ttl-expired-items.html).
pub fn is_live(expires_at: i64, now: i64) -> bool {
    expires_at > now
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
    /// Charges one message at `now_ms` to the sender's rate and returns its record: the sender
    /// lookup and the rate limit in one step (one conditional update on DynamoDB in the common
    /// cases; see [`DynamoDbStore`]).
    async fn admit_message(
        &self,
        connection_id: &str,
        now_ms: i64,
        rate: MessageRate,
    ) -> Result<Admission, StoreError>;
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
    /// The rate limit state per connection (the `rateTat` attribute of the DynamoDB record).
    rate_tat: Arc<Mutex<HashMap<String, i64>>>,
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
        match rate.admit(tats.get(connection_id).copied(), now_ms) {
            Some(tat) => {
                tats.insert(connection_id.to_owned(), tat);
                Ok(Admission::Admitted(record.clone()))
            }
            None => Ok(Admission::RateLimited),
        }
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
/// The rate limit is the generic cell rate algorithm on one attribute, `rateTat`. DynamoDB's
/// update expressions have no `max`, so [`ConnectionStore::admit_message`] tries the common
/// case first: a sender whose bucket is full (`rateTat` absent or not after now) gets
/// `rateTat = now + interval` in one conditional UpdateItem, which also returns the record. A
/// message over the rate fails that condition and is refused from the same answer (the old item
/// comes back with the failure), still one call. Only a message that passes *inside* a burst
/// (the previous one less than an interval ago) needs a second conditional update,
/// `rateTat = rateTat + interval`.
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

type ScanCursor = Option<HashMap<String, AttributeValue>>;

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
        self.client
            .scan()
            .table_name(&self.table)
            .set_limit(self.page_size)
    }

    /// A Scan for the recipients of a broadcast at `now` (epoch seconds): the ids of the
    /// records that are still live, read strongly consistent. Callers add the paging.
    pub(crate) fn recipient_scan(&self, now: i64) -> ScanFluentBuilder {
        self.client
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
            .filter_expression("attribute_not_exists(#ttl) OR #ttl > :now")
            .expression_attribute_names("#id", ATTR_CONNECTION_ID)
            .expression_attribute_names("#ttl", ATTR_EXPIRES_AT)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
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
        self.scan()
            .consistent_read(true)
            .projection_expression("#id")
            .filter_expression(filter)
            .expression_attribute_names("#id", ATTR_CONNECTION_ID)
            .expression_attribute_names("#a", name)
            .expression_attribute_values(":v", value)
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

    async fn admit_message(
        &self,
        connection_id: &str,
        now_ms: i64,
        rate: MessageRate,
    ) -> Result<Admission, StoreError> {
        let n = |v: i64| AttributeValue::N(v.to_string());
        // The common case: a full bucket. rateTat = now + interval.
        let full = self
            .conditional_update(
                connection_id,
                "SET #tat = :next",
                "attribute_not_exists(#tat) OR #tat <= :now",
                HashMap::from([
                    (":now".to_owned(), n(now_ms)),
                    (":next".to_owned(), n(now_ms + rate.interval_ms())),
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
        if rate.admit(rate_tat(&old), now_ms).is_none() {
            return Ok(Admission::RateLimited);
        }
        // Inside a burst: rateTat += interval, as long as it stays within the tolerance (a
        // concurrent message may have used the room since).
        let burst = self
            .conditional_update(
                connection_id,
                "SET #tat = #tat + :interval",
                "#tat <= :limit",
                HashMap::from([
                    (":interval".to_owned(), n(rate.interval_ms())),
                    (":limit".to_owned(), n(now_ms + rate.tolerance_ms())),
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

    async fn page(&self, after: Option<&str>, limit: usize) -> Result<ConnectionPage, StoreError> {
        // The table's only key is the partition key, so a connection id is the whole
        // ExclusiveStartKey and the whole LastEvaluatedKey. DynamoDB may return a
        // LastEvaluatedKey whose next page is empty (API Reference, Scan,
        // https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Scan.html).
        let start = after.map(connection_key);
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            // As for a broadcast: a person who connected a moment ago is listed.
            .consistent_read(true)
            .set_exclusive_start_key(start)
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
    use super::MessageRate;

    const RATE: MessageRate = MessageRate {
        per_second: 10,
        burst: 20,
    };

    #[test]
    fn a_full_bucket_passes_burst_messages_at_once_then_one_per_interval() {
        let now = 1_000_000;
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
        assert_eq!(RATE.admit(tat, now + 99), None);
        assert!(
            RATE.admit(tat, now + 100).is_some(),
            "one interval later, one more"
        );
    }

    #[test]
    fn idle_time_refills_the_bucket_but_never_beyond_the_burst() {
        let now = 1_000_000;
        let mut tat = Some(now - 3_600_000);
        for _ in 0..20 {
            tat = RATE.admit(tat, now);
            assert!(tat.is_some());
        }
        assert_eq!(RATE.admit(tat, now), None);
    }
}
