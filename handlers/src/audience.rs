//! Listing a fan-out job's audience one page at a time, resumable from a cursor.
//!
//! "Everyone" is a DynamoDB parallel Scan: segment k of n, `ExclusiveStartKey` as the cursor
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Scan.html#Scan.ParallelScan>).
//! A room is its members, one [`MembershipStore::members_page`] at a time (the cursor is the
//! last connection ID listed). [`StackAudience`] is the worker's source: connections for
//! everyone, memberships for a room; a store alone lists only everyone and refuses a room job
//! with [`AudienceError::Unsupported`].

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::job::{JobAudience, Listing};
use crate::membership::MembershipStore;
use crate::rooms::RoomName;
use crate::store::{
    ATTR_CONNECTION_ID, ConnectionStore, DynamoDbStore, MemoryStore, connection_key, is_live,
};

/// One page of an audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudiencePage {
    pub ids: Vec<String>,
    /// Where the next page starts ([`Listing::Done`] after the last).
    pub next: Listing,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudienceError {
    #[error("audience {0:?} cannot be listed by this store")]
    Unsupported(JobAudience),
    #[error("listing the audience failed: {0}")]
    Backend(String),
}

#[async_trait]
pub trait AudienceSource: Send + Sync {
    /// The page of `audience` after `after` (`None`: the first page), at most `limit` ids.
    async fn audience_page(
        &self,
        audience: &JobAudience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AudiencePage, AudienceError>;
}

/// The worker's audience: everyone from the connections, a room from its memberships.
#[derive(Clone)]
pub struct StackAudience {
    pub connections: Arc<dyn AudienceSource>,
    /// `None` where rooms are not wired (a room job is then refused).
    pub memberships: Option<Arc<dyn MembershipStore>>,
}

#[async_trait]
impl AudienceSource for StackAudience {
    async fn audience_page(
        &self,
        audience: &JobAudience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AudiencePage, AudienceError> {
        let JobAudience::Room { room } = audience else {
            return self.connections.audience_page(audience, after, limit).await;
        };
        let Some(memberships) = &self.memberships else {
            return Err(AudienceError::Unsupported(audience.clone()));
        };
        // The job came from our own sendMessage, which validated the name; a job whose name
        // fails now is refused by name, not listed.
        let room = RoomName::parse(room)
            .map_err(|e| AudienceError::Backend(format!("room {room:?}: {e}")))?;
        // The membership store's page size is its own (a Query page); `limit` bounds a Scan.
        let page = memberships
            .members_page(&room, after)
            .await
            .map_err(|e| AudienceError::Backend(format!("room {}: {e}", room.as_str())))?;
        Ok(AudiencePage {
            ids: page.connection_ids,
            next: page.next.map_or(Listing::Done, Listing::After),
        })
    }
}

/// Any [`ConnectionStore`] as an audience source, for deliveries made now (inline): everyone
/// as a single segment (the store's pages, live records only), a user from the user listing.
/// A multi-segment or room audience is refused: queue mode's segments and rooms are listed by
/// the stack's own sources ([`StackAudience`] over the store's [`AudienceSource`]).
pub struct StoreAudience(pub Arc<dyn ConnectionStore>);

#[async_trait]
impl AudienceSource for StoreAudience {
    async fn audience_page(
        &self,
        audience: &JobAudience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AudiencePage, AudienceError> {
        match audience {
            JobAudience::Everyone {
                segment: 0,
                segments: 1,
            } => {}
            JobAudience::User { user_id } => return user_page(self.0.as_ref(), user_id).await,
            _ => return Err(AudienceError::Unsupported(audience.clone())),
        }
        let page = self
            .0
            .page(after, limit)
            .await
            .map_err(|e| AudienceError::Backend(e.to_string()))?;
        let now = chrono::Utc::now().timestamp();
        let ids = page
            .records
            .into_iter()
            .filter_map(|record| match record {
                Ok(c) if is_live(c.expires_at, now) => Some(c.connection_id),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a malformed record");
                    None
                }
            })
            .collect();
        Ok(AudiencePage {
            ids,
            next: page.next.map_or(Listing::Done, Listing::After),
        })
    }
}

/// Every live connection of one user, in one page: a user has a handful of connections, and
/// the listing reads the user index (see [`ConnectionStore::list_by_user`]).
async fn user_page(
    store: &dyn ConnectionStore,
    user_id: &str,
) -> Result<AudiencePage, AudienceError> {
    use futures::TryStreamExt;
    let ids = store
        .list_by_user(user_id, chrono::Utc::now().timestamp())
        .map_ok(|c| c.connection_id)
        .try_collect()
        .await
        .map_err(|e| AudienceError::Backend(format!("user {user_id:?}: {e}")))?;
    Ok(AudiencePage {
        ids,
        next: Listing::Done,
    })
}

/// Which of `segments` Scan segments an id falls in, for the in-memory store (DynamoDB hashes
/// the partition key itself). FNV-1a: stable across runs and platforms.
pub fn memory_segment(id: &str, segments: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % u64::from(segments.max(1))) as u32
}

#[async_trait]
impl AudienceSource for MemoryStore {
    async fn audience_page(
        &self,
        audience: &JobAudience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AudiencePage, AudienceError> {
        let (segment, segments) = match audience {
            JobAudience::Everyone { segment, segments } => (*segment, *segments),
            JobAudience::User { user_id } => return user_page(self, user_id).await,
            JobAudience::Room { .. } => return Err(AudienceError::Unsupported(audience.clone())),
        };
        let now = chrono::Utc::now().timestamp();
        // Expired records are left out, as `ConnectionStore::list_recipients` does.
        let (ids, next) = self.ids_after(after, limit, |c| {
            is_live(c.expires_at, now) && memory_segment(&c.connection_id, segments) == segment
        });
        Ok(AudiencePage {
            ids,
            next: next.map_or(Listing::Done, Listing::After),
        })
    }
}

#[async_trait]
impl AudienceSource for DynamoDbStore {
    async fn audience_page(
        &self,
        audience: &JobAudience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AudiencePage, AudienceError> {
        let (segment, segments) = match audience {
            JobAudience::Everyone { segment, segments } => (*segment, *segments),
            JobAudience::User { user_id } => return user_page(self, user_id).await,
            JobAudience::Room { .. } => return Err(AudienceError::Unsupported(audience.clone())),
        };
        let too_big = |what: &str| AudienceError::Backend(format!("{what} out of range"));
        let start = after.map(connection_key);
        // The same records as `ConnectionStore::list_recipients`, one segment of them.
        let out = self
            .recipient_scan(chrono::Utc::now().timestamp())
            .segment(i32::try_from(segment).map_err(|_| too_big("segment"))?)
            .total_segments(i32::try_from(segments).map_err(|_| too_big("segments"))?)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| AudienceError::Backend(crate::error_chain(&e)))?;
        let ids = out
            .items()
            .iter()
            .filter_map(|item| match item.get(ATTR_CONNECTION_ID) {
                Some(AttributeValue::S(id)) => Some(id.clone()),
                _ => {
                    tracing::warn!(?item, "skipping a record without a string connectionId");
                    None
                }
            })
            .collect();
        let next = match out
            .last_evaluated_key()
            .and_then(|k| k.get(ATTR_CONNECTION_ID))
        {
            Some(AttributeValue::S(id)) => Listing::After(id.clone()),
            _ => Listing::Done,
        };
        Ok(AudiencePage { ids, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Connection, ConnectionStore};

    /// Every id of `audience`, page after page, and how many pages it took.
    async fn every_page(
        source: &dyn AudienceSource,
        audience: &JobAudience,
        limit: usize,
    ) -> (Vec<String>, usize) {
        let (mut ids, mut after, mut pages) = (Vec::new(), None::<String>, 0);
        loop {
            let page = source
                .audience_page(audience, after.as_deref(), limit)
                .await
                .expect("page");
            pages += 1;
            ids.extend(page.ids);
            match page.next {
                Listing::After(c) => after = Some(c),
                Listing::Done => return (ids, pages),
                Listing::Start => panic!("a page never points back to the start"),
            }
        }
    }

    #[tokio::test]
    async fn memory_segments_partition_everyone_across_pages() {
        let store = MemoryStore::new();
        for i in 0..1_000 {
            store
                .put(&Connection {
                    connection_id: format!("c{i:04}"),
                    username: "u".into(),
                    connected_at: 0,
                    expires_at: i64::MAX,
                    sub: None,
                    token_expires_at: None,
                })
                .await
                .expect("put");
        }
        let mut seen = Vec::new();
        for segment in 0..7 {
            let audience = JobAudience::Everyone {
                segment,
                segments: 7,
            };
            let (ids, pages) = every_page(&store, &audience, 50).await;
            seen.extend(ids);
            assert!(pages > 1, "segment {segment} took several pages");
        }
        seen.sort();
        let all: Vec<String> = (0..1_000).map(|i| format!("c{i:04}")).collect();
        assert_eq!(seen, all, "every id in exactly one segment, once");
    }

    #[tokio::test]
    async fn a_room_is_listed_from_its_memberships_page_by_page() {
        use crate::membership::MemoryMembershipStore;
        let connections = Arc::new(MemoryStore::new());
        let memberships = Arc::new(MemoryMembershipStore::new().with_page_size(400));
        let lobby = RoomName::parse("lobby").expect("name");
        let other = RoomName::parse("other").expect("name");
        for i in 0..2_500 {
            let id = format!("c{i:04}");
            connections
                .put(&Connection {
                    connection_id: id.clone(),
                    username: "u".into(),
                    connected_at: 0,
                    expires_at: i64::MAX,
                    sub: None,
                    token_expires_at: None,
                })
                .await
                .expect("put");
            let room = if i % 5 == 0 { &other } else { &lobby };
            memberships
                .join(room, &id, i64::MAX, 10)
                .await
                .expect("join");
        }
        let source = StackAudience {
            connections,
            memberships: Some(memberships),
        };
        let audience = JobAudience::Room {
            room: "lobby".into(),
        };
        let (seen, pages) = every_page(&source, &audience, 1_000).await;
        let members: Vec<String> = (0..2_500)
            .filter(|i| i % 5 != 0)
            .map(|i| format!("c{i:04}"))
            .collect();
        assert_eq!(seen, members, "every member once, no one else");
        assert!(pages > 1, "listed across pages");
    }

    #[tokio::test]
    async fn a_room_job_without_memberships_or_with_a_bad_name_is_refused_by_name() {
        let no_rooms = StackAudience {
            connections: Arc::new(MemoryStore::new()),
            memberships: None,
        };
        let lobby = JobAudience::Room {
            room: "lobby".into(),
        };
        assert_eq!(
            no_rooms.audience_page(&lobby, None, 10).await.unwrap_err(),
            AudienceError::Unsupported(lobby)
        );
        let with_rooms = StackAudience {
            connections: Arc::new(MemoryStore::new()),
            memberships: Some(Arc::new(crate::membership::MemoryMembershipStore::new())),
        };
        let bad = JobAudience::Room {
            room: "no spaces".into(),
        };
        let err = with_rooms.audience_page(&bad, None, 10).await.unwrap_err();
        assert!(err.to_string().contains("\"no spaces\""), "{err}");
    }

    #[tokio::test]
    async fn a_store_alone_refuses_rooms() {
        let audience = JobAudience::Room {
            room: "lobby".into(),
        };
        let err = MemoryStore::new()
            .audience_page(&audience, None, 10)
            .await
            .unwrap_err();
        assert_eq!(err, AudienceError::Unsupported(audience));
    }
}
