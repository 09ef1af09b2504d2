//! The worker and queue-mode `sendMessage` in virtual time, over the in-memory store and queue
//! and the simulated `@connections`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};

use super::*;
use crate::faults::{Faulty, Op, Rule};
use crate::job::{JobAudience, Listing};
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
        memberships: None,
        endpoint: ENDPOINT.to_owned(),
        max_job_age: crate::config::DEFAULT_MAX_JOB_AGE,
        concurrency: 32,
        page_size: 100,
        broadcast_budget: None,
        metrics: None,
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
        JobAudience::Everyone {
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
        audience: JobAudience::Room {
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

/// A job the deadline left unstarted is not a failed receive: it goes back to the queue as a
/// fresh message (its age with it) and the batch reports it done (issue 18, item 9b).
#[tokio::test(start_paused = true)]
async fn jobs_not_started_before_the_deadline_are_requeued_not_failed() {
    let store = store_of(10).await;
    let api = Arc::new(SimulatedApi::new(Behaviour::default(), None));
    let queue = MemoryQueue::new(VISIBILITY);
    let w = worker(&store, &api, &queue);
    let job = FanOutJob::for_everyone("m1", ENDPOINT, "{}", 1).remove(0);
    let deadline = Deadline::at(tokio::time::Instant::now(), Duration::from_secs(1));
    let response = w
        .handle_sqs(sqs_event(&[("late", job.to_body())]), Some(deadline))
        .await;
    assert!(
        response.batch_item_failures.is_empty(),
        "an unstarted job must not count toward maxReceiveCount: {:?}",
        response.batch_item_failures
    );
    assert_eq!(api.tally().posts, 0);
    let requeued = queue
        .receive(10, Duration::ZERO)
        .await
        .expect("memory queue");
    assert_eq!(requeued.len(), 1, "the job is back on the queue");
    assert_eq!(
        FanOutJob::from_body(&requeued[0].body),
        Ok(job),
        "the same job, its enqueuedAt included"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unstarted_job_that_cannot_be_requeued_is_a_batch_item_failure() {
    let store = store_of(10).await;
    let api = Arc::new(SimulatedApi::new(Behaviour::default(), None));
    // A queue that refuses every send.
    let refusing = Faulty::new(MemoryQueue::new(VISIBILITY)).with(Rule::fail(
        Op::Send,
        QueueError::Backend("AccessDenied".into()),
    ));
    let w = Worker {
        queue: Arc::new(refusing),
        ..worker(&store, &api, &MemoryQueue::new(VISIBILITY))
    };
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

/// The worker posts only to its configured endpoint: a job naming another one (plain http, a
/// host of anyone's choosing) is refused unrun and goes the way of a bad job (issue 18, item
/// 4).
#[tokio::test(start_paused = true)]
async fn a_job_naming_another_endpoint_is_refused_and_nothing_is_posted() {
    let store = store_of(10).await;
    let api = Arc::new(SimulatedApi::new(Behaviour::default(), None));
    let queue = MemoryQueue::new(VISIBILITY);
    let w = worker(&store, &api, &queue);
    let foreign = FanOutJob::for_everyone("m1", "http://169.254.169.254/latest", "{}", 1)
        .remove(0)
        .to_body();
    let same_with_slash = FanOutJob::for_everyone("m2", &format!("{ENDPOINT}/"), "{}", 1)
        .remove(0)
        .to_body();
    let response = w
        .handle_sqs(
            sqs_event(&[("foreign", foreign.clone()), ("ours", same_with_slash)]),
            None,
        )
        .await;
    let failed: Vec<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(failed, ["foreign"]);
    let tally = api.tally();
    assert_eq!(tally.deliveries.len(), 10, "only our own job posted");
    assert!(tally.deliveries.values().all(|&n| n == 1));
    let err = w
        .run_body("foreign", &foreign, None)
        .await
        .expect_err("refused");
    assert!(matches!(err, WorkerError::ForeignEndpoint { .. }), "{err}");
    assert!(err.to_string().contains("169.254.169.254"), "{err}");
    assert!(queue.is_empty(), "no continuation of a refused job");
}

/// A job older than the maximum age is dropped, counted, and not continued; a younger one's
/// continuation keeps the first enqueue time, so sustained 429s cannot keep a message alive
/// forever (issue 18, item 10).
#[tokio::test(start_paused = true)]
async fn jobs_past_the_maximum_age_are_dropped_and_continuations_keep_their_age() {
    let store = store_of(50).await;
    // An empty bucket that never refills: every post answers 429.
    let api = Arc::new(SimulatedApi::new(
        Behaviour::default(),
        Some(TokenBucket::new(0.0, 0.0)),
    ));
    let queue = MemoryQueue::new(VISIBILITY);
    let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
    let w = Worker {
        max_job_age: Duration::from_secs(600),
        metrics: Some(crate::metrics::Metrics {
            handler: "fanout-worker".into(),
            sink: crate::metrics::MetricsSink::Memory(lines.clone()),
        }),
        ..worker(&store, &api, &queue)
    };
    let enqueued_at = crate::job::now_ms() - 300_000;
    let young = FanOutJob {
        enqueued_at: Some(enqueued_at),
        ..FanOutJob::for_everyone("m1", ENDPOINT, "{}", 1).remove(0)
    };
    let deadline = Deadline::at(
        tokio::time::Instant::now() + Duration::from_secs(3),
        Duration::from_secs(1),
    );
    let report = w.run_job(young, Some(deadline)).await.expect("runs");
    assert!(!report.expired);
    let rest = report.continuation.expect("429s leave a continuation");
    assert_eq!(
        rest.enqueued_at,
        Some(enqueued_at),
        "the age is carried over"
    );
    assert_eq!(queue.len(), 1);

    // The same continuation, past the maximum: dropped without a post or a successor.
    let old = FanOutJob {
        enqueued_at: Some(crate::job::now_ms() - 601_000),
        ..rest
    };
    let posts_before = api.tally().posts;
    let report = w
        .run_job(old.clone(), None)
        .await
        .expect("dropping is no error");
    assert!(report.expired);
    assert_eq!(report.continuation, None);
    assert_eq!(api.tally().posts, posts_before, "nothing posted");
    // Issue 19: the first run's line counts its 429s and the continuation it queued; the
    // dropped job is a JobsExpired count.
    let kept = lines.lock().expect("lock").clone();
    let parsed: Vec<serde_json::Value> = kept
        .iter()
        .map(|l| crate::metrics::validate(l).expect("valid EMF"))
        .collect();
    assert!(
        parsed[0]["Throttled"].as_u64().is_some_and(|n| n > 0),
        "{kept:?}"
    );
    assert_eq!(parsed[0]["Queued"], 1, "{kept:?}");
    assert_eq!(
        parsed.last().map(|v| v["JobsExpired"].clone()),
        Some(serde_json::json!(1))
    );
    assert_eq!(queue.len(), 1, "no new continuation");

    // In a batch: done (not a failure), and counted.
    let response = w
        .handle_sqs(sqs_event(&[("old", old.to_body())]), None)
        .await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(queue.len(), 1);
}

/// A version 1 job (no `enqueuedAt`) takes its age from SQS's `SentTimestamp`.
#[tokio::test(start_paused = true)]
async fn a_version_1_job_is_as_old_as_its_sqs_sent_timestamp() {
    let store = store_of(5).await;
    let api = Arc::new(SimulatedApi::new(Behaviour::default(), None));
    let queue = MemoryQueue::new(VISIBILITY);
    let w = worker(&store, &api, &queue);
    let v1 = format!(
        r#"{{"version":1,"messageId":"m1","endpoint":"{ENDPOINT}","frame":"{{}}","audience":{{"kind":"everyone","segment":0,"segments":1}},"listing":"start"}}"#
    );
    let mut event = sqs_event(&[("v1-old", v1.clone()), ("v1-new", v1)]);
    let old_ms = crate::job::now_ms() - 3_600_000;
    event.records[0]
        .attributes
        .insert("SentTimestamp".into(), old_ms.to_string());
    let response = w.handle_sqs(event, None).await;
    assert!(response.batch_item_failures.is_empty());
    // Only the recent one ran (the old one is past the default 15 minutes).
    assert_eq!(api.tally().posts, 5);
}

/// Queue mode: a member that answers 410 loses its record *and* its memberships (issue 18,
/// item 11); a connection that connected moments ago keeps its record (item 8).
#[tokio::test(start_paused = true)]
async fn a_gone_connection_in_queue_mode_leaves_no_membership_behind() {
    use crate::membership::{MembershipStore, MemoryMembershipStore};
    use crate::rooms::RoomName;
    let store = store_of(3).await;
    let memberships = Arc::new(MemoryMembershipStore::new());
    let lobby = RoomName::parse("lobby").expect("name");
    let other = RoomName::parse("other").expect("name");
    for id in ["c000000", "c000001"] {
        for room in [&lobby, &other] {
            memberships
                .join(room, id, i64::MAX, 10)
                .await
                .expect("join");
        }
    }
    // c000002 connected a moment ago (its handshake may still be going on).
    store
        .put(&Connection {
            connection_id: "c000002".into(),
            username: "u".into(),
            connected_at: chrono::Utc::now().timestamp_millis(),
            expires_at: i64::MAX,
            sub: None,
            token_expires_at: None,
        })
        .await
        .expect("put");
    let api = Arc::new(SimulatedApi::new(
        Behaviour {
            gone: ["c000000".to_owned(), "c000002".to_owned()].into(),
            ..Behaviour::default()
        },
        None,
    ));
    let queue = MemoryQueue::new(VISIBILITY);
    let w = Worker {
        memberships: Some(memberships.clone()),
        audience: Arc::new(crate::audience::StackAudience {
            connections: Arc::new(store.clone()),
            memberships: Some(memberships.clone()),
        }),
        ..worker(&store, &api, &queue)
    };
    let job = FanOutJob::for_everyone("m1", ENDPOINT, "{}", 1).remove(0);
    let report = w.run_job(job, None).await.expect("runs");
    assert_eq!(report.posts.gone, 2);
    assert_eq!(store.get("c000000").await.expect("get"), None);
    for room in [&lobby, &other] {
        assert!(
            !memberships
                .is_member(room, "c000000")
                .await
                .expect("member"),
            "{room}: no membership left"
        );
        assert!(
            memberships
                .is_member(room, "c000001")
                .await
                .expect("member")
        );
    }
    assert!(
        store.get("c000002").await.expect("get").is_some(),
        "a record younger than the handshake grace stays"
    );
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
    config.fanout = crate::config::Fanout::Queue {
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

/// Issue 18, item 7 in queue mode: `sendMessage` admits a queued broadcast on one unit of the
/// stage's budget; the worker charges every connection it lists, so the next broadcast waits
/// the debt out as it would after an inline one.
#[tokio::test]
async fn the_worker_charges_what_it_lists_to_the_broadcast_budget() {
    use crate::store::{Bucket, Charge, MessageRate};
    let store = store_of(250).await;
    let api = Arc::new(SimulatedApi::new(Behaviour::default(), None));
    let queue = MemoryQueue::new(VISIBILITY);
    let budget = MessageRate {
        per_second: 100,
        burst: 100,
    };
    let w = Worker {
        broadcast_budget: Some(budget),
        metrics: None,
        ..worker(&store, &api, &queue)
    };
    let job = FanOutJob::for_everyone("m1", ENDPOINT, "{}", 1).remove(0);
    let report = w.run_job(job, None).await.expect("runs");
    assert_eq!(report.posts.delivered, 250);
    // 250 deliveries against 100 a second: the budget is in debt for about 1.5 s.
    let now = chrono::Utc::now().timestamp_millis();
    let Charge::Limited { retry_after_ms } = store
        .charge(&Bucket::Broadcasts, now, budget, 1)
        .await
        .expect("charge")
    else {
        panic!("the listed deliveries were not charged");
    };
    assert!(
        (1_000..=1_600).contains(&retry_after_ms),
        "retry after {retry_after_ms} ms"
    );
    // Without a budget nothing is charged.
    let store = store_of(250).await;
    let w = worker(&store, &api, &queue);
    let job = FanOutJob::for_everyone("m2", ENDPOINT, "{}", 1).remove(0);
    w.run_job(job, None).await.expect("runs");
    assert_eq!(
        store
            .charge(&Bucket::Broadcasts, now, budget, 1)
            .await
            .expect("charge"),
        Charge::Admitted
    );
}

/// An EventBridge `Push` event as the stage's rule puts it on the queue.
fn push_event(audience: serde_json::Value) -> String {
    serde_json::json!({
        "version": "0",
        "id": "0f4e6a2c-0000-4000-8000-000000000001",
        "detail-type": "Push",
        "source": "jobs.backend",
        "account": "123456789012",
        "time": "2026-12-06T20:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {"audience": audience, "data": {"done": true}}
    })
    .to_string()
}

/// Issue 17 item 4: in a batch, a push from the bus is delivered to its audience, one it
/// cannot deliver is a batch item failure (then the dead-letter queue), and one the deadline
/// left unstarted goes back to the queue as it was.
#[tokio::test(start_paused = true)]
async fn pushes_from_the_bus_are_delivered_refused_or_requeued() {
    let store = store_of(10).await;
    let api = Arc::new(SimulatedApi::new(Behaviour::default(), None));
    let queue = MemoryQueue::new(VISIBILITY);
    let w = worker(&store, &api, &queue);
    let event = sqs_event(&[
        (
            "everyone",
            push_event(serde_json::json!({"kind": "everyone"})),
        ),
        (
            "one",
            push_event(serde_json::json!({"kind": "connection", "connectionId": "c000003"})),
        ),
        ("planet", push_event(serde_json::json!({"kind": "planet"}))),
    ]);
    let response = w.handle_sqs(event, None).await;
    let failed: Vec<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    assert_eq!(failed, ["planet"]);
    let tally = api.tally();
    assert_eq!(tally.deliveries.len(), 10, "everyone");
    assert_eq!(tally.deliveries["c000003"], 2, "everyone, then the one");

    let late = push_event(serde_json::json!({"kind": "everyone"}));
    let deadline = Deadline::at(tokio::time::Instant::now(), Duration::from_secs(1));
    let response = w
        .handle_sqs(sqs_event(&[("late", late.clone())]), Some(deadline))
        .await;
    assert!(response.batch_item_failures.is_empty());
    let requeued = queue
        .receive(10, Duration::ZERO)
        .await
        .expect("memory queue");
    assert_eq!(requeued.len(), 1);
    assert_eq!(requeued[0].body, late, "the same event");
}
