//! The `forward` handler against a real EventBridge API: moto's server with a custom bus, a
//! rule on the action's `detail-type` and an SQS queue as its target. What the handler puts
//! must arrive in the queue as the EventBridge envelope a backend's rule delivers
//! ("Amazon EventBridge events",
//! <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-events-structure.html>), and
//! what the bus refuses must never be acknowledged. The last test runs the `bootstrap` binary
//! as Lambda does (the local Runtime API), so the Lambda wiring (the bus built once from the
//! environment) is what is tested there, with the metric lines it writes (issue 19).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use aws_sdk_eventbridge::types::Target;
use serde_json::{Value, json};
use wsstack_handlers::App;
use wsstack_handlers::bus::{BusEntry, EntryResult, EventBus, SdkEventBus};
use wsstack_handlers::config::{Config, ForwardConfig};
use wsstack_handlers::management::SdkManagementApi;
use wsstack_handlers::store::{Connection, ConnectionStore, MemoryStore};
use wsstack_routes::Handler;
use wsstack_routes::bridge::{ForwardedAction, ForwardedDetail, event_source};
use wsstack_tests::lambda_runtime_api::{LambdaRuntimeApi, function_env, stdout_lines};
use wsstack_tests::moto::Moto;
use wsstack_tests::{Dynalite, create_connections_table, handlers_binary};

const BUS: &str = "wsstack-test";
const ACTION: &str = "doThing";
const SENDER: &str = "L0SM9cOFvHcCIhw=";

/// A bus with a rule sending `ACTION`'s events from stage `test` to a new queue; the queue's
/// URL.
async fn bus_to_queue(sdk: &aws_config::SdkConfig) -> String {
    let events = aws_sdk_eventbridge::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    events
        .create_event_bus()
        .name(BUS)
        .send()
        .await
        .expect("create bus");
    let queue_url = sqs
        .create_queue()
        .queue_name("forwarded")
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_owned();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("queue arn")
        .clone();
    let pattern = json!({"source": [event_source("test")], "detail-type": [ACTION]});
    events
        .put_rule()
        .name("forward-doThing")
        .event_bus_name(BUS)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .expect("put rule");
    events
        .put_targets()
        .rule("forward-doThing")
        .event_bus_name(BUS)
        .targets(
            Target::builder()
                .id("backend")
                .arn(queue_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("put targets");
    queue_url
}

/// An app holding the sender `ada`, forwarding `ACTION` to `bus_name` over moto.
async fn app(sdk: &aws_config::SdkConfig, bus_name: &str) -> App {
    let store = MemoryStore::new();
    store
        .put(&Connection {
            connection_id: SENDER.into(),
            username: "ada".into(),
            connected_at: 1_795_703_226_123,
            expires_at: 4_102_444_800,
            sub: None,
            token_expires_at: None,
        })
        .await
        .expect("put sender");
    let forwarding = ForwardConfig {
        event_bus_name: bus_name.into(),
        event_source: event_source("test"),
        actions: vec![ForwardedAction {
            name: ACTION.into(),
            max_data_bytes: 1024,
        }],
    };
    // Never called: a forwarded action answers in the route's response.
    let api = SdkManagementApi::new(sdk);
    App::new(Arc::new(store), Arc::new(api), Config::new("Connections"))
        .with_forwarding(Arc::new(SdkEventBus::new(sdk)), forwarding)
}

/// A `doThing` message from the sender, as API Gateway hands it to the integration.
fn message(body: Value) -> ApiGatewayWebsocketProxyRequest {
    serde_json::from_value(json!({
        "requestContext": {
            "routeKey": ACTION,
            "messageId": "L0SM9cOFvHcCIhx=",
            "eventType": "MESSAGE",
            "messageDirection": "IN",
            "stage": "test",
            "connectedAt": 1_795_703_226_123_i64,
            "requestTimeEpoch": 1_795_703_229_456_i64,
            "requestId": "L0SM9cOFvHcCIhy=",
            "domainName": "abc123def4.execute-api.eu-west-1.amazonaws.com",
            "connectionId": SENDER,
            "apiId": "abc123def4",
            "identity": {"sourceIp": "203.0.113.7"}
        },
        "body": body.to_string(),
        "isBase64Encoded": false
    }))
    .expect("event")
}

fn frame_of(resp: ApiGatewayProxyResponse) -> Value {
    assert_eq!(resp.status_code, 200);
    match resp.body {
        Some(Body::Text(t)) => serde_json::from_str(&t).expect("a JSON frame"),
        other => panic!("no text body: {other:?}"),
    }
}

/// The bodies in the queue, polling until `n` have come (or 10 empty polls).
async fn receive(sdk: &aws_config::SdkConfig, queue_url: &str, n: usize) -> Vec<Value> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let mut got = Vec::new();
    for _ in 0..10 {
        if got.len() >= n {
            break;
        }
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        for m in out.messages() {
            got.push(serde_json::from_str(m.body().unwrap_or_default()).expect("JSON envelope"));
        }
    }
    got
}

#[tokio::test]
async fn a_forwarded_action_reaches_the_backends_queue_as_an_eventbridge_event() {
    let moto = Moto::start();
    let sdk = wsstack_handlers::local_sdk_config(Some(&moto.endpoint())).await;
    let queue_url = bus_to_queue(&sdk).await;
    let app = app(&sdk, BUS).await;
    let data = json!({"order": 42, "items": ["é", "🚀"]});
    let body = json!({"action": ACTION, "data": data, "requestId": "req-1"});
    let frame = frame_of(
        app.handle(Handler::Forward, message(body))
            .await
            .expect("handled"),
    );
    assert_eq!(frame["type"], "accepted", "{frame}");
    assert_eq!(frame["action"], ACTION);
    assert_eq!(frame["requestId"], "req-1");
    let event_id = frame["eventId"].as_str().expect("eventId").to_owned();
    assert!(!event_id.is_empty());

    let got = receive(&sdk, &queue_url, 1).await;
    assert_eq!(got.len(), 1, "one event: {got:?}");
    let envelope = &got[0];
    assert_eq!(envelope["source"], "wsstack.test");
    assert_eq!(envelope["detail-type"], ACTION);
    assert_eq!(
        envelope["id"],
        event_id.as_str(),
        "the answer names the event"
    );
    let detail: ForwardedDetail =
        serde_json::from_value(envelope["detail"].clone()).expect("a ForwardedDetail");
    assert_eq!(
        detail,
        ForwardedDetail {
            connection_id: SENDER.into(),
            user_id: "ada".into(),
            username: "ada".into(),
            request_id: Some("req-1".into()),
            message_id: "L0SM9cOFvHcCIhx=".into(),
            data,
            received_at: "2026-11-26T14:27:09.456Z".into(),
        }
    );
}

#[tokio::test]
async fn a_bus_that_does_not_exist_is_answered_backend_unavailable() {
    let moto = Moto::start();
    let sdk = wsstack_handlers::local_sdk_config(Some(&moto.endpoint())).await;
    let app = app(&sdk, "no-such-bus").await;
    let body = json!({"action": ACTION, "requestId": "req-2"});
    let frame = frame_of(
        app.handle(Handler::Forward, message(body))
            .await
            .expect("handled"),
    );
    assert_eq!(frame["code"], "backend_unavailable", "{frame}");
    assert_eq!(frame["requestId"], "req-2");
    assert!(
        !frame.to_string().contains("no-such-bus"),
        "the service's text stays in the log: {frame}"
    );
}

/// The SDK bus reads a call that succeeds with a failed entry (`FailedEntryCount` 1) as that
/// entry's error code, next to the entry that went through.
#[tokio::test]
async fn the_sdk_bus_reports_each_entrys_result() {
    let moto = Moto::start();
    let sdk = wsstack_handlers::local_sdk_config(Some(&moto.endpoint())).await;
    bus_to_queue(&sdk).await;
    let entry = |detail: &str| BusEntry {
        event_bus_name: BUS.into(),
        source: event_source("test"),
        detail_type: ACTION.into(),
        detail: detail.into(),
    };
    let bus = SdkEventBus::new(&sdk);
    let results = bus
        .put(&[entry("{\"ok\":true}"), entry("not json")])
        .await
        .expect("the call succeeds");
    assert!(
        matches!(&results[0], EntryResult::Put { event_id } if !event_id.is_empty()),
        "{results:?}"
    );
    assert!(
        matches!(&results[1], EntryResult::Failed { code, .. } if code == "MalformedDetail"),
        "{results:?}"
    );
    assert!(!results[1].retryable());
    let too_many: Vec<BusEntry> = (0..11).map(|_| entry("{}")).collect();
    assert!(
        bus.put(&too_many).await.is_err(),
        "at most 10 entries a call"
    );
}

#[tokio::test]
async fn a_missing_bus_is_a_call_error_that_is_not_retried() {
    let moto = Moto::start();
    let sdk = wsstack_handlers::local_sdk_config(Some(&moto.endpoint())).await;
    let bus = SdkEventBus::new(&sdk);
    let err = bus
        .put(&[BusEntry {
            event_bus_name: "no-such-bus".into(),
            source: "wsstack.test".into(),
            detail_type: ACTION.into(),
            detail: "{}".into(),
        }])
        .await
        .expect_err("no such bus");
    assert!(!err.retryable(), "{err}");
    assert!(err.to_string().contains("ResourceNotFound"), "{err}");
}

/// The `forward` function as Lambda runs it: records in dynalite, the bus on moto, the answer
/// the Lambda proxy result API Gateway sends back on the two-way route.
#[tokio::test]
async fn the_bootstrap_binary_forwards_through_the_lambda_runtime_api() {
    let moto = Moto::start();
    let sdk = wsstack_handlers::local_sdk_config(Some(&moto.endpoint())).await;
    let queue_url = bus_to_queue(&sdk).await;
    let dynalite = Dynalite::start().await;
    let dynamodb = dynalite.client().await;
    create_connections_table(&dynamodb, "wsstack-Connections")
        .await
        .expect("table");
    let store = wsstack_handlers::store::DynamoDbStore::new(dynamodb, "wsstack-Connections".into());
    store
        .put(&Connection {
            connection_id: SENDER.into(),
            username: "ada".into(),
            connected_at: chrono::Utc::now().timestamp_millis(),
            expires_at: 4_102_444_800,
            sub: Some("sub-ada".into()),
            token_expires_at: None,
        })
        .await
        .expect("put sender");
    let runtime = LambdaRuntimeApi::start().await.expect("runtime API");
    let actions = json!([{"name": ACTION, "maxDataBytes": 1024}]).to_string();
    let mut function = tokio::process::Command::new(handlers_binary("bootstrap"))
        .env_clear()
        .envs(function_env(&runtime.address(), "forward"))
        .envs([
            ("TABLE_NAME", "wsstack-Connections".to_owned()),
            ("AWS_ENDPOINT_URL_DYNAMODB", dynalite.endpoint()),
            ("AWS_ENDPOINT_URL_EVENTBRIDGE", moto.endpoint()),
            ("EVENT_BUS_NAME", BUS.to_owned()),
            ("EVENT_SOURCE", event_source("test")),
            ("FORWARDED_ACTIONS", actions),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start bootstrap");
    let stdout = stdout_lines(&mut function);
    let event = serde_json::to_value(message(
        json!({"action": ACTION, "data": [1], "requestId": "req-3"}),
    ))
    .expect("event JSON");
    let frame = invoke_for_frame(&runtime, &event).await;
    assert_eq!(frame["type"], "accepted", "{frame}");
    assert_eq!(frame["requestId"], "req-3");
    let got = receive(&sdk, &queue_url, 1).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["id"], frame["eventId"]);
    assert_eq!(got[0]["detail"]["userId"], "sub-ada", "the verified sub");
    assert_eq!(got[0]["detail"]["data"], json!([1]));
    assert!(runtime.init_error().is_none());

    // Issue 19: the bus gone, the next action is answered backend_unavailable; the function
    // counted one of each on lines of their own in CloudWatch's embedded metric format.
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    events
        .delete_event_bus()
        .name(BUS)
        .send()
        .await
        .expect("delete the bus");
    let event = serde_json::to_value(message(json!({"action": ACTION, "requestId": "req-4"})))
        .expect("event JSON");
    let frame = invoke_for_frame(&runtime, &event).await;
    assert_eq!(frame["code"], "backend_unavailable", "{frame}");
    let counted = metric_lines(&stdout, 2).await;
    let count = |metric: &str| -> Vec<(Value, Value, Value)> {
        counted
            .iter()
            .filter(|v| v[metric].is_number())
            .map(|v| (v["Stage"].clone(), v["Handler"].clone(), v[metric].clone()))
            .collect()
    };
    let one = vec![(json!("test"), json!("wsstack-test"), json!(1))];
    assert_eq!(count("Forwarded"), one, "{counted:?}");
    assert_eq!(count("ForwardFailed"), one, "{counted:?}");
    assert!(
        count("ForwardRetried").is_empty(),
        "a missing bus is not retried: {counted:?}"
    );
}

/// The function's embedded metric format lines (those with an `_aws` member), each checked
/// against the specification's required members, once at least `n` have come (or after 5 s).
/// The frame the function answers `event` with, through the Runtime API: a 200 whose body is
/// the route response (accepted or an error frame).
async fn invoke_for_frame(runtime: &LambdaRuntimeApi, event: &Value) -> Value {
    let outcome = runtime
        .invoke(event, Duration::from_secs(30))
        .await
        .expect("an answer");
    let response = outcome.json().expect("a response");
    assert_eq!(response["statusCode"], 200, "{response}");
    serde_json::from_str(response["body"].as_str().expect("a text body")).expect("a frame")
}

async fn metric_lines(stdout: &std::sync::Mutex<Vec<String>>, n: usize) -> Vec<Value> {
    let mut lines = Vec::new();
    for _ in 0..50 {
        lines = stdout
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|l| l.contains("\"_aws\""))
            .cloned()
            .collect();
        if lines.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lines
        .iter()
        .map(|l| wsstack_handlers::metrics::validate(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}
