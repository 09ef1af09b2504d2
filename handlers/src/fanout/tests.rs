//! The engine in virtual time (`tokio::time::pause` via `start_paused`), against the simulated
//! `@connections` API: deadlines, throttling and 410s without waiting for any of them.

use std::collections::HashSet;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::faults::{Faulty, Op, Rule};
use crate::simulated::{Behaviour, SimulatedApi, TokenBucket};
use crate::store::{Connection, MemoryStore};

const ENDPOINT: &str = "http://127.0.0.1:9/dev";

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("conn-{i:06}")).collect()
}

async fn store_with(ids: &[String]) -> MemoryStore {
    let store = MemoryStore::new().with_page_size(100);
    for id in ids {
        store
            .put(&Connection {
                connection_id: id.clone(),
                username: "u".into(),
                connected_at: 0,
                expires_at: i64::MAX,
                sub: None,
                token_expires_at: None,
            })
            .await
            .expect("memory put");
    }
    store
}

fn fixed_latency(ms: u64) -> Behaviour {
    Behaviour {
        latency: (Duration::from_millis(ms), Duration::from_millis(ms)),
        ..Behaviour::default()
    }
}

#[tokio::test(start_paused = true)]
async fn deadline_stops_new_posts_and_hands_back_the_rest() {
    let all = ids(1_000);
    let store = MemoryStore::new();
    let api = SimulatedApi::new(fixed_latency(100), None);
    let started = Instant::now();
    // 10 in flight x 100 ms = 100 posts/s; 4 s to start posts, hard stop at 5 s.
    let deadline = Deadline::at(started + Duration::from_secs(5), Duration::from_secs(1));
    let mut fanout = FanOut::new(
        &store,
        &api,
        ENDPOINT,
        Bytes::from_static(b"x"),
        10,
        Some(deadline),
    );
    let left = fanout.post_batch(all.clone()).await;

    assert!(
        Instant::now() <= deadline.hard,
        "ran past the hard deadline"
    );
    let tally = api.tally();
    let last_start = tally.last_start.expect("posts were made");
    assert!(
        last_start < deadline.stop_starting,
        "a post started after stop_starting"
    );
    let report = fanout.into_report();
    assert_eq!(report.delivered, 400, "{report:?}");
    assert_eq!(left.len(), 600);
    assert_eq!(report.undelivered, 600);
    assert!(report.deadline_reached);
    // Delivered and handed back are disjoint and together are everyone.
    let delivered: HashSet<&String> = tally.deliveries.keys().collect();
    let left_set: HashSet<&String> = left.iter().collect();
    assert!(delivered.is_disjoint(&left_set));
    assert_eq!(delivered.len() + left_set.len(), all.len());
}

#[tokio::test(start_paused = true)]
async fn hard_deadline_cuts_posts_in_flight_and_returns_them() {
    let store = MemoryStore::new();
    // A post that hangs for a minute (an attempt timeout that did not fire, say).
    let api = SimulatedApi::new(fixed_latency(60_000), None);
    let started = Instant::now();
    let deadline = Deadline::at(started + Duration::from_secs(3), Duration::from_secs(1));
    let mut fanout = FanOut::new(
        &store,
        &api,
        ENDPOINT,
        Bytes::from_static(b"x"),
        4,
        Some(deadline),
    );
    let left = fanout.post_batch(ids(2)).await;
    assert_eq!(
        Instant::now(),
        deadline.hard,
        "returned at the hard stop, not later"
    );
    let mut left = left;
    left.sort();
    assert_eq!(left, ids(2), "the cut posts are handed back for a retry");
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_starts_nothing() {
    let store = MemoryStore::new();
    let api = SimulatedApi::new(fixed_latency(10), None);
    let deadline = Deadline::at(Instant::now(), Duration::from_secs(1));
    let mut fanout = FanOut::new(
        &store,
        &api,
        ENDPOINT,
        Bytes::from_static(b"x"),
        8,
        Some(deadline),
    );
    assert!(fanout.expired());
    let left = fanout.post_batch(ids(5)).await;
    assert_eq!(left.len(), 5);
    assert_eq!(api.tally().posts, 0);
}

#[tokio::test(start_paused = true)]
async fn throttling_lowers_concurrency_and_loses_nothing() {
    let all = ids(3_000);
    let store = MemoryStore::new();
    // A bucket of 500/s (burst 100) in front of 256 posts in flight at 20 ms: 12,800/s offered.
    let api = SimulatedApi::new(fixed_latency(20), Some(TokenBucket::new(500.0, 100.0)));
    let mut fanout = FanOut::new(&store, &api, ENDPOINT, Bytes::from_static(b"x"), 256, None);
    let left = fanout.post_batch(all.clone()).await;
    assert!(left.is_empty(), "no deadline: everything is delivered");
    assert!(
        fanout.concurrency() < 256,
        "the window shrank: {}",
        fanout.concurrency()
    );
    let report = fanout.into_report();
    let tally = api.tally();
    assert!(report.throttled > 0, "the bucket throttled: {report:?}");
    assert_eq!(report.throttled as u64, tally.throttled);
    assert_eq!(report.failed, 0, "a 429 is retried, never a failure");
    assert_eq!(report.delivered, all.len());
    assert_eq!(tally.deliveries.len(), all.len(), "everyone got it");
    assert!(
        tally.deliveries.values().all(|&n| n == 1),
        "nobody got it twice"
    );
    // The bucket allows 500/s; the fan-out cannot beat the floor but should not be far off it
    // either (a fixed-concurrency one would spend most posts on 429s).
    let posts_per_delivery = tally.posts as f64 / all.len() as f64;
    assert!(
        posts_per_delivery < 2.0,
        "{posts_per_delivery} posts per delivery"
    );
}

#[tokio::test(start_paused = true)]
async fn throttled_posts_left_at_the_deadline_are_handed_back_not_failed() {
    let store = MemoryStore::new();
    // A bucket with 10 tokens and no refill to speak of: the rest stays throttled.
    let api = SimulatedApi::new(fixed_latency(10), Some(TokenBucket::new(0.001, 10.0)));
    let deadline = Deadline::at(
        Instant::now() + Duration::from_secs(10),
        Duration::from_secs(1),
    );
    let mut fanout = FanOut::new(
        &store,
        &api,
        ENDPOINT,
        Bytes::from_static(b"x"),
        50,
        Some(deadline),
    );
    let left = fanout.post_batch(ids(50)).await;
    let report = fanout.into_report();
    assert_eq!(report.delivered, 10);
    assert_eq!(report.failed, 0);
    assert_eq!(left.len(), 40);
    assert!(Instant::now() <= deadline.hard);
}

#[tokio::test(start_paused = true)]
async fn gone_connection_has_its_own_record_deleted() {
    let all = ids(5);
    let store = store_with(&all).await;
    let behaviour = Behaviour {
        gone: HashSet::from([all[2].clone()]),
        ..fixed_latency(5)
    };
    let api = SimulatedApi::new(behaviour, None);
    let report = broadcast(
        &store,
        &api,
        ENDPOINT,
        Bytes::from_static(b"x"),
        Limits::without_deadline(4),
    )
    .await;
    assert_eq!((report.delivered, report.gone, report.failed), (4, 1, 0));
    assert_eq!(
        store.get(&all[2]).await.expect("get"),
        None,
        "the gone record is deleted"
    );
    for id in [&all[0], &all[1], &all[3], &all[4]] {
        assert!(store.get(id).await.expect("get").is_some(), "{id} is kept");
    }
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried() {
    let all = ids(200);
    let store = MemoryStore::new();
    let behaviour = Behaviour {
        // One post in 10 fails (a deterministic pseudo-random draw); none here is unlucky
        // MAX_ATTEMPTS times in a row.
        transient_failure_one_in: 10,
        ..fixed_latency(5)
    };
    let api = SimulatedApi::new(behaviour, None);
    let mut fanout = FanOut::new(&store, &api, ENDPOINT, Bytes::from_static(b"x"), 16, None);
    let left = fanout.post_batch(all.clone()).await;
    assert!(left.is_empty());
    let report = fanout.into_report();
    assert_eq!(report.delivered, 200, "{report:?}");
    assert_eq!(report.failed, 0);
    assert!(api.tally().transient_failures > 0);
}

/// A management API that always answers `error`.
fn refusing(error: ManagementError) -> Faulty<SimulatedApi, ManagementError> {
    Faulty::new(SimulatedApi::new(fixed_latency(0), None)).with(Rule::fail(Op::Any, error))
}

#[tokio::test(start_paused = true)]
async fn permanent_failures_are_counted_after_their_attempts() {
    let all = ids(3);
    let store = store_with(&all).await;
    let forbidden = broadcast(
        &store,
        &refusing(ManagementError::Forbidden("not allowed".into())),
        ENDPOINT,
        Bytes::from_static(b"x"),
        Limits::without_deadline(2),
    )
    .await;
    assert_eq!((forbidden.delivered, forbidden.failed), (0, 3));
    let other = broadcast(
        &store,
        &refusing(ManagementError::Other("HTTP 502".into())),
        ENDPOINT,
        Bytes::from_static(b"x"),
        Limits::without_deadline(2),
    )
    .await;
    assert_eq!((other.delivered, other.failed), (0, 3), "{other:?}");
}

#[tokio::test(start_paused = true)]
async fn broadcast_stops_listing_at_the_deadline() {
    let all = ids(3_000);
    let store = store_with(&all).await;
    let api = SimulatedApi::new(fixed_latency(100), None);
    let deadline = Deadline::at(
        Instant::now() + Duration::from_secs(2),
        Duration::from_millis(500),
    );
    let limits = Limits {
        concurrency: 10,
        deadline: Some(deadline),
    };
    let report = broadcast(&store, &api, ENDPOINT, Bytes::from_static(b"x"), limits).await;
    assert!(Instant::now() <= deadline.hard);
    assert!(report.deadline_reached);
    assert_eq!(report.delivered, 150, "{report:?}");
    assert!(report.undelivered > 0);
}

#[test]
fn retry_delay_grows_and_is_capped() {
    assert_eq!(retry_delay(1), THROTTLE_RETRY_DELAY);
    assert_eq!(retry_delay(2), THROTTLE_RETRY_DELAY * 2);
    assert_eq!(retry_delay(30), MAX_RETRY_DELAY);
}

#[test]
fn lambda_deadline_keeps_the_margin_and_the_attempt_timeout() {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    let before = Instant::now();
    let d = Deadline::from_lambda_deadline(now_ms + 10_000, Duration::from_secs(2));
    let hard = d.hard.duration_since(before);
    // Plus a few ms: the wall clock is read in whole milliseconds, at two different moments.
    let slack = Duration::from_millis(5);
    assert!(
        hard <= Duration::from_secs(10) - DEADLINE_MARGIN + slack,
        "{hard:?}"
    );
    assert!(hard >= Duration::from_secs(8), "{hard:?}");
    assert_eq!(d.hard - d.stop_starting, Duration::from_secs(2));
    // A deadline already past gives a deadline of now: nothing starts.
    let past = Deadline::from_lambda_deadline(now_ms.saturating_sub(5_000), Duration::from_secs(2));
    assert!(past.stop_starting <= Instant::now());
}
