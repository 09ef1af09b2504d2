//! Listing a fan-out job's audience one page at a time, resumable from a cursor.
//!
//! "Everyone" is a DynamoDB parallel Scan: segment k of n, `ExclusiveStartKey` as the cursor
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Scan.html#Scan.ParallelScan>).
//! Rooms are listed by the rooms code; until it implements [`AudienceSource`] for them, a room
//! job is refused with [`AudienceError::Unsupported`].

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::job::{Audience, Listing};
use crate::store::{ATTR_CONNECTION_ID, ATTR_EXPIRES_AT, DynamoDbStore, MemoryStore, is_live};

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
    Unsupported(Audience),
    #[error("listing the audience failed: {0}")]
    Backend(String),
}

#[async_trait]
pub trait AudienceSource: Send + Sync {
    /// The page of `audience` after `after` (`None`: the first page), at most `limit` ids.
    async fn audience_page(
        &self,
        audience: &Audience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AudiencePage, AudienceError>;
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
        audience: &Audience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AudiencePage, AudienceError> {
        let Audience::Everyone { segment, segments } = *audience else {
            return Err(AudienceError::Unsupported(audience.clone()));
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
        audience: &Audience,
        after: Option<&str>,
        limit: usize,
    ) -> Result<AudiencePage, AudienceError> {
        let Audience::Everyone { segment, segments } = *audience else {
            return Err(AudienceError::Unsupported(audience.clone()));
        };
        let too_big = |what: &str| AudienceError::Backend(format!("{what} out of range"));
        let start = after.map(|id| {
            HashMap::from([(
                ATTR_CONNECTION_ID.to_owned(),
                AttributeValue::S(id.to_owned()),
            )])
        });
        let out = self
            .client()
            .scan()
            .table_name(self.table())
            .segment(i32::try_from(segment).map_err(|_| too_big("segment"))?)
            .total_segments(i32::try_from(segments).map_err(|_| too_big("segments"))?)
            // As `ConnectionStore::list_recipients`: consistent (a client that connected a
            // moment ago is reached), only the key, and no record whose TTL has passed.
            .consistent_read(true)
            .projection_expression("#id")
            .filter_expression("attribute_not_exists(#ttl) OR #ttl > :now")
            .expression_attribute_names("#id", ATTR_CONNECTION_ID)
            .expression_attribute_names("#ttl", ATTR_EXPIRES_AT)
            .expression_attribute_values(
                ":now",
                AttributeValue::N(chrono::Utc::now().timestamp().to_string()),
            )
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
                })
                .await
                .expect("put");
        }
        let mut seen = Vec::new();
        for segment in 0..7 {
            let audience = Audience::Everyone {
                segment,
                segments: 7,
            };
            let mut after: Option<String> = None;
            let mut pages = 0;
            loop {
                let page = store
                    .audience_page(&audience, after.as_deref(), 50)
                    .await
                    .expect("page");
                pages += 1;
                seen.extend(page.ids);
                match page.next {
                    Listing::After(c) => after = Some(c),
                    Listing::Done => break,
                    Listing::Start => panic!("a page never points back to the start"),
                }
            }
            assert!(pages > 1, "segment {segment} took several pages");
        }
        seen.sort();
        let all: Vec<String> = (0..1_000).map(|i| format!("c{i:04}")).collect();
        assert_eq!(seen, all, "every id in exactly one segment, once");
    }

    #[tokio::test]
    async fn rooms_are_refused_until_implemented() {
        let audience = Audience::Room {
            room: "lobby".into(),
        };
        let err = MemoryStore::new()
            .audience_page(&audience, None, 10)
            .await
            .unwrap_err();
        assert_eq!(err, AudienceError::Unsupported(audience));
    }
}
