//! The wrapper itself: each fault kind, keys, counts running out, forwarding, the record of
//! calls, and each trait it wraps.

use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::*;
use crate::membership::MemoryMembershipStore;
use crate::queue::MemoryQueue;
use crate::simulated::{Behaviour, SimulatedApi};
use crate::store::MemoryStore;

fn conn(id: &str) -> Connection {
    Connection {
        connection_id: id.to_owned(),
        username: "u".to_owned(),
        connected_at: 0,
        expires_at: i64::MAX,
        sub: None,
        token_expires_at: None,
    }
}

fn down() -> StoreError {
    StoreError::Backend("injected".into())
}

async fn store_of(ids: &[&str]) -> Faulty<MemoryStore, StoreError> {
    let store = Faulty::new(MemoryStore::new());
    for id in ids {
        store.put(&conn(id)).await.expect("empty plan");
    }
    store
}

/// An API that answers at once.
fn api() -> Faulty<SimulatedApi, ManagementError> {
    let instant = Behaviour {
        latency: (Duration::ZERO, Duration::ZERO),
        ..Behaviour::default()
    };
    Faulty::new(SimulatedApi::new(instant, None))
}

#[tokio::test]
async fn an_empty_plan_forwards_every_call() {
    let store = store_of(&["a", "b"]).await;
    assert_eq!(store.get("a").await, Ok(Some(conn("a"))));
    store.delete("a").await.expect("forwarded");
    assert_eq!(
        store.inner().len(),
        1,
        "the delete reached the memory store"
    );
    let listed: Vec<_> = store.list().collect().await;
    assert_eq!(listed, vec![Ok(conn("b"))]);
}

#[tokio::test]
async fn a_failure_answers_its_error_and_never_reaches_the_wrapped_store() {
    let store = store_of(&["a"]).await.with(Rule::fail(Op::Delete, down()));
    assert_eq!(store.delete("a").await, Err(down()));
    assert_eq!(
        store.get("a").await,
        Ok(Some(conn("a"))),
        "other ops forward"
    );
    assert_eq!(store.inner().len(), 1, "the record is still there");
}

#[tokio::test]
async fn a_keyed_rule_matches_only_its_key() {
    let api = api().with(Rule::fail(Op::Post, ManagementError::Gone).for_key("bob"));
    let post = |id: &'static str| api.post_to_connection("e", id, Bytes::from_static(b"x"));
    assert_eq!(post("bob").await, Err(ManagementError::Gone));
    assert_eq!(post("carol").await, Ok(()));
    let tally = api.inner().tally();
    assert_eq!(tally.posts, 1, "only carol's post reached the API");
    assert_eq!(tally.deliveries.get("carol"), Some(&1));
}

#[tokio::test]
async fn a_counted_rule_fires_that_many_times_then_calls_forward() {
    let store = store_of(&["a"])
        .await
        .with(Rule::fail(Op::Get, down()).times(2));
    assert_eq!(store.get("a").await, Err(down()));
    assert_eq!(store.get("a").await, Err(down()));
    assert_eq!(store.get("a").await, Ok(Some(conn("a"))));
    assert_eq!(store.count(Op::Get), 3, "faulted calls are recorded too");
}

#[tokio::test]
async fn rules_apply_in_order_and_the_first_failure_wins() {
    let store = store_of(&[])
        .await
        .with(Rule::fail(Op::Get, StoreError::Backend("first".into())).times(1))
        .with(Rule::fail(Op::Any, StoreError::Backend("any".into())));
    assert_eq!(
        store.get("a").await,
        Err(StoreError::Backend("first".into()))
    );
    assert_eq!(store.get("a").await, Err(StoreError::Backend("any".into())));
    assert_eq!(
        store.put(&conn("a")).await,
        Err(StoreError::Backend("any".into())),
        "Op::Any matches every operation"
    );
}

#[tokio::test(start_paused = true)]
async fn a_delay_waits_then_forwards() {
    let store = store_of(&["a"])
        .await
        .with(Rule::delay(Op::Get, Duration::from_secs(3)));
    let start = Instant::now();
    assert_eq!(store.get("a").await, Ok(Some(conn("a"))));
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn delays_add_up_before_a_failure() {
    let api = api()
        .with(Rule::delay(Op::Any, Duration::from_secs(1)))
        .with(Rule::fail(Op::DeleteConnection, ManagementError::Throttled));
    let start = Instant::now();
    assert_eq!(
        api.delete_connection("e", "a").await,
        Err(ManagementError::Throttled)
    );
    assert_eq!(start.elapsed(), Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn concurrent_delayed_calls_are_counted_in_flight() {
    let api = api().with(Rule::delay(Op::Post, Duration::from_millis(10)));
    let posts = (0..4).map(|i| api.post_to_connection("e", ["a", "b", "c", "d"][i], Bytes::new()));
    futures::future::join_all(posts).await;
    assert_eq!(api.max_in_flight(), 4);
    assert_eq!(api.inner().tally().posts, 4);
}

#[tokio::test]
#[should_panic(expected = "injected panic in AdmitMessage")]
async fn a_panic_rule_panics() {
    let store = store_of(&["a"]).await.with(Rule::panic(Op::AdmitMessage));
    let _ = store
        .admit_message(
            "a",
            0,
            MessageRate {
                per_second: 1,
                burst: 1,
            },
        )
        .await;
}

#[tokio::test]
async fn a_failed_listing_is_one_error_in_every_derived_listing() {
    let store = store_of(&["a"]).await.with(Rule::fail(Op::List, down()));
    let listed: Vec<_> = store.list().collect().await;
    assert_eq!(listed, vec![Err(down())]);
    let recipients: Vec<_> = store.list_recipients(0).collect().await;
    assert_eq!(recipients, vec![Err(down())]);
    let by_user: Vec<_> = store.list_by_user("u", 0).collect().await;
    assert_eq!(by_user, vec![Err(down())]);
    assert_eq!(store.page(None, 10).await.map(|p| p.records.len()), Ok(1));
}

#[tokio::test(start_paused = true)]
async fn a_delayed_listing_yields_the_wrapped_items_after_the_delay() {
    let store = store_of(&["a"])
        .await
        .with(Rule::delay(Op::List, Duration::from_secs(2)));
    let start = Instant::now();
    let listed: Vec<_> = store.list_recipients(0).collect().await;
    assert_eq!(listed.len(), 1);
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test]
async fn the_plan_changes_while_in_use() {
    let store = store_of(&["a"]).await;
    store.add(Rule::fail(Op::Get, down()));
    assert_eq!(store.get("a").await, Err(down()));
    store.clear();
    assert_eq!(store.get("a").await, Ok(Some(conn("a"))));
    assert_eq!(
        store.calls(),
        vec![
            Call {
                op: Op::Put,
                key: Some("a".into())
            },
            Call {
                op: Op::Get,
                key: Some("a".into())
            },
            Call {
                op: Op::Get,
                key: Some("a".into())
            },
        ]
    );
}

#[tokio::test]
async fn the_queue_fails_sends_and_forwards_the_rest() {
    let queue = Faulty::new(MemoryQueue::new(Duration::from_secs(30)))
        .with(Rule::fail(Op::Send, QueueError::Backend("AccessDenied".into())).times(1));
    assert_eq!(
        queue.send(vec!["job".into()]).await,
        Err(QueueError::Backend("AccessDenied".into()))
    );
    queue.send(vec!["job".into()]).await.expect("second send");
    let got = queue.receive(10, Duration::ZERO).await.expect("receive");
    assert_eq!(got.len(), 1, "only the second send reached the queue");
    queue
        .delete(&got[0].receipt_handle)
        .await
        .expect("forwarded delete");
    assert_eq!(queue.inner().len(), 0);
}

#[tokio::test]
async fn memberships_fail_for_one_connection() {
    let rooms = Faulty::new(MemoryMembershipStore::new())
        .with(Rule::fail(Op::RoomsOf, down()).for_key("a"));
    assert_eq!(rooms.rooms_of("a").await, Err(down()));
    assert_eq!(rooms.rooms_of("b").await, Ok(Vec::new()));
    assert_eq!(rooms.forget("a").await, Ok(0), "forget is an op of its own");
}

#[tokio::test]
async fn an_audience_source_fails_its_pages() {
    let store = MemoryStore::new();
    store.put(&conn("a")).await.expect("memory put");
    let audience = Faulty::new(store)
        .with(Rule::fail(Op::AudiencePage, AudienceError::Backend("scan".into())).times(1));
    let everyone = JobAudience::Everyone {
        segment: 0,
        segments: 1,
    };
    let first = audience.audience_page(&everyone, None, 10).await;
    assert!(matches!(first, Err(AudienceError::Backend(_))), "{first:?}");
    let second = audience.audience_page(&everyone, None, 10).await;
    assert_eq!(second.expect("forwarded").ids, vec!["a".to_owned()]);
}

/// A bus that puts every entry.
struct Accepting;

#[async_trait]
impl EventBus for Accepting {
    async fn put(&self, entries: &[BusEntry]) -> Result<Vec<EntryResult>, BusError> {
        Ok(entries
            .iter()
            .map(|_| EntryResult::Put {
                event_id: "ev".into(),
            })
            .collect())
    }
}

#[tokio::test]
async fn the_bus_fails_its_puts() {
    let refused = BusError::Call {
        reason: "ThrottlingException".into(),
        retryable: true,
    };
    let bus = Faulty::new(Accepting).with(Rule::fail(Op::PutEvents, refused).times(1));
    assert!(bus.put(&[]).await.is_err());
    assert_eq!(bus.put(&[]).await.map(|r| r.len()), Ok(0));
    assert_eq!(bus.count(Op::PutEvents), 2);
    assert_eq!(bus.count(Op::Any), 2);
}
