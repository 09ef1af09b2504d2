//! The worker and queue-mode `sendMessage` in virtual time, over the in-memory store and queue
//! and the simulated `@connections`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};

use super::*;
use crate::job::Audience;
use crate::queue::MemoryQueue;
use crate::simulated::{Behaviour, SimulatedApi, TokenBucket};
use crate::store::{Connection, MemoryStore};

const ENDPOINT: &str = "http://127.0.0.1:9/dev";
const VISIBILITY: Duration = Duration::from_secs(30);

async fn store_of(n: usize) -> MemoryStore {
    let store = MemoryStore::new();
    for i in 0..n {
        store
            .put(&Connection {
                connection_id: format!("c{i:06}"),
                username: "u".into(),
                connected_at: 0,
                expires_at: i64::MAX,
                sub: None,
                token_expires_at: None,
            })
            .await
            .expect("put");
    }
    store
}

fn worker(store: &MemoryStore, api: &Arc<SimulatedApi>, queue: &MemoryQueue) -> Worker {
    Worker {
        store: Arc::new(store.clone()),
        audience: Arc::new(store.clone()),
        api: api.clone(),
        queue: Arc::new(queue.clone()),
        concurrency: 32,
        page_size: 100,
    }
}

async fn drain(worker: &Worker, queue: &MemoryQueue, job_time: Duration) -> usize {
    let mut jobs = 0;
    while !queue.is_empty() {
        jobs += worker
            .poll_once(queue, Duration::from_secs(1), job_time)
            .await
            .expect("memory queue");
    }
    jobs
}

#[tokio::test(start_paused = true)]
async fn segments_with_short_deadlines_reach_everyone_exactly_once() {
    let store = store_of(3_000).await;
    let api = Arc::new(SimulatedApi::new(
        Behaviour::default(),
        Some(TokenBucket::new(500.0, 100.0)),
    ));
    let queue = MemoryQueue::new(VISIBILITY);
    queue
        .send(
            FanOutJob::for_everyone("m1", ENDPOINT, "{}", 4)
                .iter()
                .map(FanOutJob::to_body)
                .collect(),
        )
        .await
        .expect("send");
    let w = worker(&store, &api, &queue);
    // 500 ms per job: well short of the ~1 s a segment of 750 needs at 32 posts in flight, so
    // jobs continue one another.
    let jobs = drain(&w, &queue, Duration::from_millis(500)).await;
    assert!(jobs > 4, "continuations were enqueued: {jobs} jobs");
    let tally = api.tally();
    assert_eq!(tally.deliveries.len(), 3_000, "everyone reached");
    let twice: Vec<_> = tally.deliveries.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "duplicates: {twice:?}");
    assert!(tally.throttled > 0, "the bucket was the limit");
}

#[tokio::test(start_paused = true)]
async fn a_job_hands_back_its_rest_with_a_cursor() {
    let store = store_of(1_000).await;
    let api = Arc::new(SimulatedApi::new(
        Behaviour {
            latency: (Duration::from_millis(100), Duration::from_millis(100)),
            ..Behaviour::default()
        },
        None,
    ));
    let queue = MemoryQueue::new(VISIBILITY);
    let w = Worker {
        concurrency: 10,
        ..worker(&store, &api, &queue)
    };
    let job = FanOutJob::for_everyone("m1", ENDPOINT, "{}", 1).remove(0);
    let deadline = Deadline::at(
        tokio::time::Instant::now() + Duration::from_secs(3),
        Duration::from_secs(1),
    );
    let report = w.run_job(job, Some(deadline)).await.expect("job");
    let rest = report.continuation.expect("a continuation");
    assert_eq!(report.posts.delivered, 200);
    assert!(
        matches!(rest.listing, Listing::After(_)),
        "{:?}",
        rest.listing
    );
    assert_eq!(
        rest.audience,
        Audience::Everyone {
            segment: 0,
            segments: 1
        }
    );
    assert_eq!(queue.len(), 1, "the continuation is on the queue");
    // The continuation picks up exactly where the job stopped.
    drain(&w, &queue, Duration::from_secs(60)).await;
    let tally = api.tally();
    assert_eq!(tally.deliveries.len(), 1_000);
    assert!(tally.deliveries.values().all(|&n| n == 1));
}

fn sqs_event(bodies: &[(&str, String)]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for (id, body) in bodies {
        let mut m = SqsMessage::default();
        m.message_id = Some((*id).to_owned());
        m.body = Some(body.clone());
        event.records.push(m);
    }
    event
}

#[tokio::test(start_paused = true)]
async fn bad_jobs_are_reported_as_batch_item_failures() {
    let store = store_of(10).await;
    let api = Arc::new(SimulatedApi::new(Behaviour::default(), None));
    let queue = MemoryQueue::new(VISIBILITY);
    let w = worker(&store, &api, &queue);
    let good = FanOutJob::for_everyone("m1", ENDPOINT, "{}", 1)
        .remove(0)
        .to_body();
    let room = FanOutJob {
        audience: Audience::Room {
            room: "lobby".into(),
        },
        ..FanOutJob::from_body(&good).expect("good")
    }
    .to_body();
    let event = sqs_event(&[
        ("ok", good),
        ("garbage", "{not json".into()),
        ("room", room),
    ]);
    let response = w.handle_sqs(event, None).await;
    let failed: HashSet<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(failed, HashSet::from(["garbage".into(), "room".into()]));
    assert_eq!(api.tally().deliveries.len(), 10, "the good job ran");
}

#[tokio::test(start_paused = true)]
async fn jobs_not_started_before_the_deadline_go_back() {
    let store = store_of(10).await;
    let api = Arc::new(SimulatedApi::new(Behaviour::default(), None));
    let queue = MemoryQueue::new(VISIBILITY);
    let w = worker(&store, &api, &queue);
    let body = FanOutJob::for_everyone("m1", ENDPOINT, "{}", 1)
        .remove(0)
        .to_body();
    let deadline = Deadline::at(tokio::time::Instant::now(), Duration::from_secs(1));
    let response = w
        .handle_sqs(sqs_event(&[("late", body)]), Some(deadline))
        .await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, "late");
    assert_eq!(api.tally().posts, 0);
}

#[tokio::test(start_paused = true)]
async fn an_inline_broadcast_hands_off_to_the_queue_at_its_deadline() {
    let store = store_of(2_000).await;
    let api = Arc::new(SimulatedApi::new(
        Behaviour {
            latency: (Duration::from_millis(100), Duration::from_millis(100)),
            ..Behaviour::default()
        },
        None,
    ));
    let queue = MemoryQueue::new(VISIBILITY);
    let mut config = crate::config::Config::new("Connections");
    config.broadcast_concurrency = 10;
    config.callback_url = Some(ENDPOINT.into());
    let app = crate::App::new(Arc::new(store.clone()), api.clone(), config)
        .with_queue(Arc::new(queue.clone()));
    let event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/message.json"
        ))
        .expect("fixture"),
    )
    .expect("fixture parses");
    // The sender must have a record.
    let sender = event
        .request_context
        .connection_id
        .clone()
        .expect("fixture has a connection id");
    store
        .put(&Connection {
            connection_id: sender,
            username: "alice".into(),
            connected_at: 0,
            expires_at: i64::MAX,
            sub: None,
            token_expires_at: None,
        })
        .await
        .expect("put");
    let deadline = Deadline::at(
        tokio::time::Instant::now() + Duration::from_secs(5),
        Duration::from_secs(1),
    );
    app.handle_until(wsstack_routes::Handler::SendMessage, event, Some(deadline))
        .await
        .expect("sendMessage");
    assert!(tokio::time::Instant::now() <= deadline.hard);
    let inline_delivered = api.tally().deliveries.len();
    assert_eq!(inline_delivered, 400, "10 in flight x 100 ms for 4 s");
    assert_eq!(queue.len(), 1, "the rest is one job on the queue");
    let w = worker(&store, &api, &queue);
    drain(&w, &queue, Duration::from_secs(60)).await;
    let tally = api.tally();
    assert_eq!(
        tally.deliveries.len(),
        2_001,
        "everyone, the sender included"
    );
    assert!(tally.deliveries.values().all(|&n| n == 1), "nobody twice");
}

/// Queue mode, a room: `sendMessage` enqueues one room job; the worker lists the members page
/// by page and posts to each once, to no one else.
#[tokio::test(start_paused = true)]
async fn a_room_message_in_queue_mode_is_one_job_that_reaches_each_member_once() {
    use crate::membership::{MembershipStore, MemoryMembershipStore};
    use crate::rooms::RoomName;
    let store = store_of(300).await;
    let memberships = Arc::new(MemoryMembershipStore::new().with_page_size(40));
    let lobby = RoomName::parse("lobby").expect("name");
    let event: aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/message.json"
        ))
        .expect("fixture")
        .replace(
            r#"{\"action\":\"sendMessage\",\"data\":\"hello, world\"}"#,
            r#"{\"action\":\"sendMessage\",\"data\":\"hi room\",\"room\":\"lobby\"}"#,
        ),
    )
    .expect("fixture parses");
    assert!(
        event.body.as_deref().is_some_and(|b| b.contains("lobby")),
        "the fixture's body was rewritten: {:?}",
        event.body
    );
    let sender = event
        .request_context
        .connection_id
        .clone()
        .expect("fixture has a connection id");
    store
        .put(&Connection {
            connection_id: sender.clone(),
            username: "alice".into(),
            connected_at: 0,
            expires_at: i64::MAX,
            sub: None,
            token_expires_at: None,
        })
        .await
        .expect("put");
    // Every third connection and the sender are members.
    let mut members: HashSet<String> = (0..300)
        .filter(|i| i % 3 == 0)
        .map(|i| format!("c{i:06}"))
        .collect();
    members.insert(sender);
    for id in &members {
        memberships
            .join(&lobby, id, i64::MAX, 10)
            .await
            .expect("join");
    }
    let api = Arc::new(SimulatedApi::new(Behaviour::default(), None));
    let queue = MemoryQueue::new(VISIBILITY);
    let mut config = crate::config::Config::new("Connections");
    config.callback_url = Some(ENDPOINT.into());
    config.fanout = crate::config::FanOutMode::Queue {
        queue_url: "memory".into(),
        segments: 4,
    };
    let app = crate::App::new(Arc::new(store.clone()), api.clone(), config)
        .with_memberships(memberships.clone())
        .with_queue(Arc::new(queue.clone()));
    app.handle(wsstack_routes::Handler::SendMessage, event)
        .await
        .expect("sendMessage");
    assert_eq!(api.tally().deliveries.len(), 0, "sendMessage only enqueued");
    assert_eq!(queue.len(), 1, "one room job");
    let w = Worker {
        audience: Arc::new(crate::audience::StackAudience {
            connections: Arc::new(store.clone()),
            memberships: Some(memberships),
        }),
        ..worker(&store, &api, &queue)
    };
    drain(&w, &queue, Duration::from_secs(60)).await;
    let tally = api.tally();
    let reached: HashSet<String> = tally.deliveries.keys().cloned().collect();
    assert_eq!(reached, members, "the members, no one else");
    assert!(tally.deliveries.values().all(|&n| n == 1), "nobody twice");
}
