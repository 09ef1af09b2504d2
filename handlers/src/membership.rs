//! Who is in which room: DynamoDB in AWS, memory in the local gateway and unit tests. Both pass
//! one contract suite (`tests/tests/membership_contract.rs`).
//!
//! The DynamoDB layout (docs/protocol.md, "Rooms"): the rooms table holds one item per membership, keyed
//! by `room` (partition) and `connectionId` (sort), so a room's members are one Query, read page
//! by page with the last connection ID as the cursor; each item carries the member's
//! `expiresAt` (the table's TTL, the backstop when nothing else cleans up). The rooms a
//! connection is in are a string set `rooms` on its record in the connections table (an added
//! attribute, not a key change), which `$disconnect` and a 410 read to delete the memberships.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use futures::{StreamExt, TryStreamExt};

use crate::rooms::RoomName;
use crate::store::{StoreError, backend_error};
use wsstack_routes::{rooms_table, table};

/// Members per page of [`MembershipStore::members_page`] unless configured otherwise. A
/// membership item is under 100 bytes, so this caps a Query page well before DynamoDB's 1 MB.
pub const DEFAULT_MEMBER_PAGE_SIZE: usize = 1000;

/// What a join did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined,
    /// The connection was a member already; nothing changed but the membership's expiry.
    AlreadyMember,
    /// The connection is in as many rooms as it may be; nothing changed.
    TooManyRooms,
    /// The connection has no record (it disconnected meanwhile); nothing changed.
    UnknownConnection,
}

/// One page of a room's members.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPage {
    /// Connection IDs, in ascending order.
    pub connection_ids: Vec<String>,
    /// The cursor of the next page (the last connection ID of this one), `None` on the last.
    /// A page may be short, even empty, and still have a next one (expired members are
    /// filtered out after DynamoDB's page limit applies).
    pub next: Option<String>,
}

/// Room memberships.
#[async_trait]
pub trait MembershipStore: Send + Sync {
    /// Puts `connection_id` in `room` until `expires_at` (epoch seconds), unless that would put
    /// it in more than `max_rooms` rooms.
    async fn join(
        &self,
        room: &RoomName,
        connection_id: &str,
        expires_at: i64,
        max_rooms: usize,
    ) -> Result<JoinOutcome, StoreError>;
    /// Takes `connection_id` out of `room`; `Ok(false)` when it was not a member.
    async fn leave(&self, room: &RoomName, connection_id: &str) -> Result<bool, StoreError>;
    /// Whether `connection_id` is an unexpired member of `room`.
    async fn is_member(&self, room: &RoomName, connection_id: &str) -> Result<bool, StoreError>;
    /// The unexpired members of `room` after the cursor `after` (`None`: from the start).
    async fn members_page(
        &self,
        room: &RoomName,
        after: Option<&str>,
    ) -> Result<MemberPage, StoreError>;
    /// The rooms `connection_id` is in, by its record (empty without one).
    async fn rooms_of(&self, connection_id: &str) -> Result<Vec<RoomName>, StoreError>;
    /// Deletes the membership item alone, leaving the connection's record as it is (for a
    /// connection whose record is deleted next, or is gone already).
    async fn remove_member(&self, room: &RoomName, connection_id: &str) -> Result<(), StoreError>;

    /// Deletes the memberships of a connection whose record was just deleted, given the rooms
    /// that record listed (what [`crate::store::ConnectionStore::remove`] returned); returns
    /// how many. A store that keeps each connection's rooms itself (the memory store) deletes
    /// those too. A name that is not a valid room is logged and skipped.
    async fn forget_listed(
        &self,
        connection_id: &str,
        rooms: &[String],
    ) -> Result<usize, StoreError> {
        let rooms: Vec<RoomName> = rooms
            .iter()
            .filter_map(|r| match RoomName::parse(r) {
                Ok(room) => Some(room),
                Err(e) => {
                    tracing::warn!(connection_id, room = %r, error = %e, "skipping a malformed room in a deleted record");
                    None
                }
            })
            .collect();
        let count = rooms.len();
        futures::stream::iter(rooms)
            .map(|room| async move { self.remove_member(&room, connection_id).await })
            .buffer_unordered(crate::rooms::MAX_ROOMS_PER_CONNECTION)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(count)
    }

    /// Deletes every membership of a connection that is going away (`$disconnect`, a 410);
    /// returns how many. The caller deletes the record afterwards, so a failure here leaves
    /// the list of rooms in place for a retry (and the TTL as the backstop).
    async fn forget(&self, connection_id: &str) -> Result<usize, StoreError> {
        let rooms = self.rooms_of(connection_id).await?;
        let count = rooms.len();
        futures::stream::iter(rooms)
            .map(|room| async move { self.remove_member(&room, connection_id).await })
            .buffer_unordered(crate::rooms::MAX_ROOMS_PER_CONNECTION)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(count)
    }
}

fn now_epoch_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

/// An in-process membership store: the local gateway's default and the unit tests' fixture.
/// It keeps each connection's rooms itself (the DynamoDB store keeps them on the record).
#[derive(Debug, Clone)]
pub struct MemoryMembershipStore {
    inner: Arc<Mutex<Memberships>>,
    page_size: usize,
}

#[derive(Debug, Default)]
struct Memberships {
    /// (room, connection ID) -> expiresAt.
    members: BTreeMap<(String, String), i64>,
    /// connection ID -> its rooms.
    rooms: HashMap<String, BTreeSet<String>>,
}

impl Default for MemoryMembershipStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryMembershipStore {
    pub fn new() -> Self {
        MemoryMembershipStore {
            inner: Arc::default(),
            page_size: DEFAULT_MEMBER_PAGE_SIZE,
        }
    }

    /// Members per page (at least 1).
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Memberships> {
        // Every operation leaves both maps consistent before it could panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl MembershipStore for MemoryMembershipStore {
    async fn join(
        &self,
        room: &RoomName,
        connection_id: &str,
        expires_at: i64,
        max_rooms: usize,
    ) -> Result<JoinOutcome, StoreError> {
        let mut m = self.lock();
        let rooms = m.rooms.entry(connection_id.to_owned()).or_default();
        let outcome = if rooms.contains(room.as_str()) {
            JoinOutcome::AlreadyMember
        } else if rooms.len() >= max_rooms {
            return Ok(JoinOutcome::TooManyRooms);
        } else {
            rooms.insert(room.as_str().to_owned());
            JoinOutcome::Joined
        };
        m.members.insert(
            (room.as_str().to_owned(), connection_id.to_owned()),
            expires_at,
        );
        Ok(outcome)
    }

    async fn leave(&self, room: &RoomName, connection_id: &str) -> Result<bool, StoreError> {
        let mut m = self.lock();
        let was = m
            .members
            .remove(&(room.as_str().to_owned(), connection_id.to_owned()))
            .is_some();
        if let Some(rooms) = m.rooms.get_mut(connection_id) {
            rooms.remove(room.as_str());
            if rooms.is_empty() {
                m.rooms.remove(connection_id);
            }
        }
        Ok(was)
    }

    async fn is_member(&self, room: &RoomName, connection_id: &str) -> Result<bool, StoreError> {
        let now = now_epoch_seconds();
        Ok(self
            .lock()
            .members
            .get(&(room.as_str().to_owned(), connection_id.to_owned()))
            .is_some_and(|&expires_at| expires_at > now))
    }

    async fn members_page(
        &self,
        room: &RoomName,
        after: Option<&str>,
    ) -> Result<MemberPage, StoreError> {
        use std::ops::Bound;
        let now = now_epoch_seconds();
        let m = self.lock();
        let room = room.as_str().to_owned();
        let start = match after {
            Some(c) => Bound::Excluded((room.clone(), c.to_owned())),
            None => Bound::Included((room.clone(), String::new())),
        };
        // Like a Query with `Limit`: the page limit counts items read, expired ones included.
        let read: Vec<(&String, i64)> = m
            .members
            .range((start, Bound::Unbounded))
            .take_while(|((r, _), _)| *r == room)
            .take(self.page_size)
            .map(|((_, id), &exp)| (id, exp))
            .collect();
        let next = (read.len() == self.page_size)
            .then(|| read.last().map(|(id, _)| (*id).clone()))
            .flatten();
        Ok(MemberPage {
            connection_ids: read
                .into_iter()
                .filter(|(_, exp)| *exp > now)
                .map(|(id, _)| id.clone())
                .collect(),
            next,
        })
    }

    async fn rooms_of(&self, connection_id: &str) -> Result<Vec<RoomName>, StoreError> {
        Ok(self
            .lock()
            .rooms
            .get(connection_id)
            .map(|rooms| {
                rooms
                    .iter()
                    .filter_map(|r| RoomName::parse(r).ok())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn forget_listed(
        &self,
        connection_id: &str,
        rooms: &[String],
    ) -> Result<usize, StoreError> {
        let mut m = self.lock();
        let mut all: BTreeSet<String> = m.rooms.remove(connection_id).unwrap_or_default();
        all.extend(rooms.iter().cloned());
        let mut count = 0;
        for room in all {
            if m.members
                .remove(&(room, connection_id.to_owned()))
                .is_some()
            {
                count += 1;
            }
        }
        Ok(count)
    }

    async fn remove_member(&self, room: &RoomName, connection_id: &str) -> Result<(), StoreError> {
        let mut m = self.lock();
        m.members
            .remove(&(room.as_str().to_owned(), connection_id.to_owned()));
        // The record's list of rooms goes with the record in DynamoDB; here it is ours.
        if let Some(rooms) = m.rooms.get_mut(connection_id) {
            rooms.remove(room.as_str());
            if rooms.is_empty() {
                m.rooms.remove(connection_id);
            }
        }
        Ok(())
    }
}

/// Memberships in DynamoDB: the rooms table, plus the `rooms` set on each connection record.
/// Uses exactly the actions `wsstack_routes::Handler::table_actions` grants the room handlers.
#[derive(Debug, Clone)]
pub struct DynamoDbMembershipStore {
    client: aws_sdk_dynamodb::Client,
    rooms_table: String,
    connections_table: String,
    page_size: i32,
}

const ATTR_ROOM: &str = rooms_table::PARTITION_KEY;
const ATTR_MEMBER: &str = rooms_table::SORT_KEY;
const ATTR_MEMBER_EXPIRES_AT: &str = rooms_table::TTL_ATTRIBUTE;
const ATTR_CONNECTION_ID: &str = table::PARTITION_KEY;
const ATTR_ROOMS: &str = table::ROOMS_ATTRIBUTE;

impl DynamoDbMembershipStore {
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        rooms_table: String,
        connections_table: String,
    ) -> Self {
        DynamoDbMembershipStore {
            client,
            rooms_table,
            connections_table,
            page_size: DEFAULT_MEMBER_PAGE_SIZE as i32,
        }
    }

    /// Caps the members per Query page (the Query `Limit`).
    pub fn with_page_size(mut self, page_size: usize) -> Self {
        self.page_size = i32::try_from(page_size.max(1)).unwrap_or(i32::MAX);
        self
    }

    pub fn rooms_table(&self) -> &str {
        &self.rooms_table
    }

    fn member_key(room: &RoomName, connection_id: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (
                ATTR_ROOM.to_owned(),
                AttributeValue::S(room.as_str().to_owned()),
            ),
            (
                ATTR_MEMBER.to_owned(),
                AttributeValue::S(connection_id.to_owned()),
            ),
        ])
    }

    fn malformed(connection_id: &str, reason: impl Into<String>) -> StoreError {
        StoreError::Malformed {
            connection_id: connection_id.to_owned(),
            reason: reason.into(),
        }
    }

    /// One attribute of a connection's record, read strongly consistent (a join or leave just
    /// wrote it); `None` when there is no record. The map holds the attribute if it is set.
    async fn read_connection_attribute(
        &self,
        connection_id: &str,
        attribute: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.connections_table)
            .set_key(Some(crate::store::connection_key(connection_id)))
            .projection_expression("#attr")
            .expression_attribute_names("#attr", attribute)
            .consistent_read(true)
            .send()
            .await
            .map_err(backend_error)?;
        Ok(out.item)
    }
}

fn condition_failed(err: &SdkError<UpdateItemError>) -> bool {
    matches!(
        err.as_service_error(),
        Some(UpdateItemError::ConditionalCheckFailedException(_))
    )
}

impl DynamoDbMembershipStore {
    /// Adds `room` to the record's list of rooms, conditionally: the record must exist (an
    /// UpdateItem on a missing key creates the item,
    /// https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html)
    /// and the list stay within `max_rooms`. `Ok(Ok(Joined | AlreadyMember))` when listed,
    /// `Ok(Err(TooManyRooms | UnknownConnection))` when the condition refused it.
    async fn list_room_on_record(
        &self,
        room: &RoomName,
        connection_id: &str,
        max_rooms: usize,
    ) -> Result<Result<JoinOutcome, JoinOutcome>, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.connections_table)
            .set_key(Some(crate::store::connection_key(connection_id)))
            .update_expression("ADD #rooms :room")
            .condition_expression(
                "attribute_exists(#id) AND (attribute_not_exists(#rooms) OR contains(#rooms, :name) OR size(#rooms) < :max)",
            )
            .expression_attribute_names("#rooms", ATTR_ROOMS)
            .expression_attribute_names("#id", ATTR_CONNECTION_ID)
            .expression_attribute_values(
                ":room",
                AttributeValue::Ss(vec![room.as_str().to_owned()]),
            )
            .expression_attribute_values(":name", AttributeValue::S(room.as_str().to_owned()))
            .expression_attribute_values(":max", AttributeValue::N(max_rooms.to_string()))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await;
        match update {
            Ok(out) => {
                let was_in = match out.attributes().and_then(|a| a.get(ATTR_ROOMS)) {
                    Some(AttributeValue::Ss(rooms)) => rooms.iter().any(|r| r == room.as_str()),
                    _ => false,
                };
                Ok(Ok(if was_in {
                    JoinOutcome::AlreadyMember
                } else {
                    JoinOutcome::Joined
                }))
            }
            Err(e) if condition_failed(&e) => {
                // Which half of the condition failed: the record, or the bound.
                let record = self
                    .read_connection_attribute(connection_id, ATTR_CONNECTION_ID)
                    .await?;
                Ok(Err(if record.is_some() {
                    JoinOutcome::TooManyRooms
                } else {
                    JoinOutcome::UnknownConnection
                }))
            }
            Err(e) => Err(backend_error(e)),
        }
    }
}

#[async_trait]
impl MembershipStore for DynamoDbMembershipStore {
    async fn join(
        &self,
        room: &RoomName,
        connection_id: &str,
        expires_at: i64,
        max_rooms: usize,
    ) -> Result<JoinOutcome, StoreError> {
        // First the record's list of rooms, then the membership. In this order a failure in
        // between leaves a listed room without a membership, which `$disconnect` deletes
        // harmlessly, never a membership nobody lists.
        let outcome = match self
            .list_room_on_record(room, connection_id, max_rooms)
            .await?
        {
            Ok(outcome) => outcome,
            Err(refused) => return Ok(refused),
        };
        let mut item = Self::member_key(room, connection_id);
        item.insert(
            ATTR_MEMBER_EXPIRES_AT.to_owned(),
            AttributeValue::N(expires_at.to_string()),
        );
        self.client
            .put_item()
            .table_name(&self.rooms_table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(backend_error)?;
        // A `$disconnect` may have run between the update and the put: it deletes the record
        // (which lists this room, the update came first) and then the memberships the record
        // listed, possibly before this one existed. Reading the record again closes the gap:
        // if it is gone now, `$disconnect`'s delete came before this read, and this membership
        // is deleted here; if it is still there, `$disconnect` has yet to delete it, and will
        // find the room in it.
        let record = self
            .read_connection_attribute(connection_id, ATTR_CONNECTION_ID)
            .await?;
        if record.is_none() {
            self.remove_member(room, connection_id).await?;
            tracing::info!(connection_id, %room, "the connection left while joining: membership deleted again");
            return Ok(JoinOutcome::UnknownConnection);
        }
        Ok(outcome)
    }

    async fn leave(&self, room: &RoomName, connection_id: &str) -> Result<bool, StoreError> {
        // The membership first: once it is gone the room's messages stop, whatever happens to
        // the record's list (a stale entry there only costs `$disconnect` one no-op delete).
        let old = self
            .client
            .delete_item()
            .table_name(&self.rooms_table)
            .set_key(Some(Self::member_key(room, connection_id)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(backend_error)?;
        let update = self
            .client
            .update_item()
            .table_name(&self.connections_table)
            .set_key(Some(crate::store::connection_key(connection_id)))
            .update_expression("DELETE #rooms :room")
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#rooms", ATTR_ROOMS)
            .expression_attribute_names("#id", ATTR_CONNECTION_ID)
            .expression_attribute_values(
                ":room",
                AttributeValue::Ss(vec![room.as_str().to_owned()]),
            )
            .send()
            .await;
        match update {
            Ok(_) => {}
            // No record: nothing lists the room.
            Err(e) if condition_failed(&e) => {}
            Err(e) => return Err(backend_error(e)),
        }
        Ok(old.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn is_member(&self, room: &RoomName, connection_id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.rooms_table)
            .set_key(Some(Self::member_key(room, connection_id)))
            // A client may send to a room right after its join returned.
            .consistent_read(true)
            .send()
            .await
            .map_err(backend_error)?;
        let Some(item) = out.item() else {
            return Ok(false);
        };
        // TTL deletes lazily: an expired item may still be read.
        let expires_at = member_expiry(connection_id, item)?;
        Ok(expires_at > now_epoch_seconds())
    }

    async fn members_page(
        &self,
        room: &RoomName,
        after: Option<&str>,
    ) -> Result<MemberPage, StoreError> {
        // The cursor is the last connection ID of the previous page, so `ExclusiveStartKey` is
        // (room, cursor), what DynamoDB's `LastEvaluatedKey` was
        // (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Query.Pagination.html).
        let start = after.map(|c| Self::member_key(room, c));
        let out = self
            .client
            .query()
            .table_name(&self.rooms_table)
            .key_condition_expression("#room = :room")
            // TTL deletes lazily (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html):
            // filter expired members out. The filter applies after `Limit`, hence short pages.
            .filter_expression("#exp > :now")
            .expression_attribute_names("#room", ATTR_ROOM)
            .expression_attribute_names("#exp", ATTR_MEMBER_EXPIRES_AT)
            .expression_attribute_values(":room", AttributeValue::S(room.as_str().to_owned()))
            .expression_attribute_values(":now", AttributeValue::N(now_epoch_seconds().to_string()))
            .set_exclusive_start_key(start)
            .limit(self.page_size)
            .send()
            .await
            .map_err(backend_error)?;
        let connection_ids = out
            .items()
            .iter()
            .map(|item| match item.get(ATTR_MEMBER) {
                Some(AttributeValue::S(id)) => Ok(id.clone()),
                _ => Err(Self::malformed(
                    "",
                    format!("membership in room {room:?} has no string attribute {ATTR_MEMBER}"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let next = match out.last_evaluated_key() {
            None => None,
            Some(key) => match key.get(ATTR_MEMBER) {
                Some(AttributeValue::S(id)) => Some(id.clone()),
                _ => {
                    return Err(Self::malformed(
                        "",
                        format!("room {room:?}: LastEvaluatedKey has no {ATTR_MEMBER}"),
                    ));
                }
            },
        };
        Ok(MemberPage {
            connection_ids,
            next,
        })
    }

    async fn rooms_of(&self, connection_id: &str) -> Result<Vec<RoomName>, StoreError> {
        let record = self
            .read_connection_attribute(connection_id, ATTR_ROOMS)
            .await?;
        match record.as_ref().and_then(|i| i.get(ATTR_ROOMS)) {
            None => Ok(Vec::new()),
            Some(AttributeValue::Ss(rooms)) => rooms
                .iter()
                .map(|r| {
                    RoomName::parse(r).map_err(|e| {
                        Self::malformed(connection_id, format!("room {r:?} in {ATTR_ROOMS}: {e}"))
                    })
                })
                .collect(),
            Some(_) => Err(Self::malformed(
                connection_id,
                format!("attribute {ATTR_ROOMS} is not a string set"),
            )),
        }
    }

    async fn remove_member(&self, room: &RoomName, connection_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.rooms_table)
            .set_key(Some(Self::member_key(room, connection_id)))
            .send()
            .await
            .map_err(backend_error)?;
        Ok(())
    }
}

fn member_expiry(
    connection_id: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<i64, StoreError> {
    match item.get(ATTR_MEMBER_EXPIRES_AT) {
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| StoreError::Malformed {
            connection_id: connection_id.to_owned(),
            reason: format!("membership attribute {ATTR_MEMBER_EXPIRES_AT}={n} is not an integer"),
        }),
        _ => Err(StoreError::Malformed {
            connection_id: connection_id.to_owned(),
            reason: format!("membership has no number attribute {ATTR_MEMBER_EXPIRES_AT}"),
        }),
    }
}
