//! Issue 17 item 4: a backend that only puts events can reply. Against moto's EventBridge and
//! SQS: a `Push` event put on the stage's bus goes by a rule on its `detail-type` to the fan-out
//! queue (as the event's JSON, the target having no input transformer,
//! https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-targets.html), and the fan-out
//! worker reads it from there and delivers it through `@connections` (a fake server on a real
//! socket) to every device of the user it names. Events of other detail-types never reach the
//! queue; a `Push` the worker cannot deliver fails naming why.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};
use serde_json::{Value, json};
use wsstack_handlers::management::SdkManagementApi;
use wsstack_handlers::queue::{Queue, SqsQueue};
use wsstack_handlers::store::{Connection, ConnectionStore, MemoryStore};
use wsstack_handlers::worker::{Worker, WorkerError};
use wsstack_routes::bridge::PUSH_DETAIL_TYPE;
use wsstack_tests::moto::Moto;
use wsstack_tests::{Answer, FakeConnectionsApi, local_sdk_config};

const BUS: &str = "wsstack-dev-bus";

struct Bus {
    events: aws_sdk_eventbridge::Client,
    queue: SqsQueue,
    _moto: Moto,
}

/// A bus, a rule sending `Push` events to a queue, and the queue, on moto.
async fn bus_to_queue() -> Bus {
    let moto = Moto::start();
    let sdk = local_sdk_config(Some(&moto.endpoint())).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let url = sqs
        .create_queue()
        .queue_name("wsstack-dev-fanout")
        .send()
        .await
        .expect("queue")
        .queue_url()
        .expect("url")
        .to_owned();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    let queue_arn = attributes
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("queue ARN")
        .clone();
    events
        .create_event_bus()
        .name(BUS)
        .send()
        .await
        .expect("bus");
    events
        .put_rule()
        .name("PushReplyRule")
        .event_bus_name(BUS)
        .event_pattern(json!({"detail-type": [PUSH_DETAIL_TYPE]}).to_string())
        .send()
        .await
        .expect("rule");
    events
        .put_targets()
        .rule("PushReplyRule")
        .event_bus_name(BUS)
        .targets(
            Target::builder()
                .id("FanoutQueue")
                .arn(queue_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("target");
    Bus {
        events,
        queue: SqsQueue::new(sqs, url),
        _moto: moto,
    }
}

async fn put(bus: &Bus, detail_type: &str, detail: Value) {
    let out = bus
        .events
        .put_events()
        .entries(
            PutEventsRequestEntry::builder()
                .event_bus_name(BUS)
                .source("jobs.backend")
                .detail_type(detail_type)
                .detail(detail.to_string())
                .build(),
        )
        .send()
        .await
        .expect("put events");
    assert_eq!(out.failed_entry_count(), 0, "{out:?}");
}

async fn store_with_ada_on_two_devices() -> MemoryStore {
    let store = MemoryStore::new();
    for (id, sub) in [
        ("ada-1=", "sub-ada"),
        ("ada-2=", "sub-ada"),
        ("bob=", "sub-bob"),
    ] {
        store
            .put(&Connection {
                connection_id: id.to_owned(),
                username: "u".to_owned(),
                connected_at: 0,
                expires_at: i64::MAX,
                sub: Some(sub.to_owned()),
                token_expires_at: None,
            })
            .await
            .expect("put");
    }
    store
}

fn worker(
    store: MemoryStore,
    api: &FakeConnectionsApi,
    queue: &SqsQueue,
    sdk: &aws_config::SdkConfig,
) -> Worker {
    Worker {
        store: Arc::new(store.clone()),
        audience: Arc::new(store),
        api: Arc::new(SdkManagementApi::new(sdk)),
        queue: Arc::new(queue.clone()),
        memberships: None,
        endpoint: format!("{}/dev", api.base_url()),
        max_job_age: Duration::from_secs(3600),
        broadcast_budget: None,
        metrics: None,
        concurrency: 8,
        page_size: 100,
    }
}

#[tokio::test]
async fn a_push_event_on_the_bus_reaches_every_device_of_the_user_through_the_queue() {
    let bus = bus_to_queue().await;
    put(&bus, "JobProgress", json!({"job": 7})).await;
    put(
        &bus,
        PUSH_DETAIL_TYPE,
        json!({"audience": {"kind": "user", "userId": "sub-ada"}, "data": {"job": 7, "state": "done"}, "replyTo": "r-1"}),
    )
    .await;
    let received = bus
        .queue
        .receive(10, Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(
        received.len(),
        1,
        "only the Push event reaches the queue: {received:?}"
    );
    let api = FakeConnectionsApi::start(|req| Answer::success(&req.method)).await;
    let sdk = local_sdk_config(None).await;
    let worker = worker(
        store_with_ada_on_two_devices().await,
        &api,
        &bus.queue,
        &sdk,
    );
    let report = worker
        .run_body(&received[0].message_id, &received[0].body, None)
        .await
        .expect("delivered");
    assert_eq!(report.posts.delivered, 2, "{report:?}");
    let mut to: Vec<String> = api
        .requests()
        .into_iter()
        .map(|r| {
            let frame: Value = serde_json::from_slice(&r.body).expect("a frame");
            assert_eq!(frame["type"], "push");
            assert_eq!(frame["data"], json!({"job": 7, "state": "done"}));
            assert_eq!(frame["replyTo"], "r-1");
            r.connection_id
        })
        .collect();
    to.sort();
    assert_eq!(to, ["ada-1=", "ada-2="]);
}

#[tokio::test]
async fn a_push_event_the_worker_cannot_deliver_fails_naming_why() {
    let bus = bus_to_queue().await;
    put(
        &bus,
        PUSH_DETAIL_TYPE,
        json!({"audience": {"kind": "planet"}, "data": 1}),
    )
    .await;
    let received = bus
        .queue
        .receive(10, Duration::from_secs(2))
        .await
        .expect("receive");
    assert_eq!(received.len(), 1);
    let api = FakeConnectionsApi::start(|req| Answer::success(&req.method)).await;
    let sdk = local_sdk_config(None).await;
    let worker = worker(
        store_with_ada_on_two_devices().await,
        &api,
        &bus.queue,
        &sdk,
    );
    let err = worker
        .run_body(&received[0].message_id, &received[0].body, None)
        .await
        .expect_err("refused");
    assert!(matches!(err, WorkerError::Event { .. }), "{err}");
    assert!(
        err.to_string().contains("unknown variant `planet`"),
        "{err}"
    );
    assert!(api.requests().is_empty());
}
