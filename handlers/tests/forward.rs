//! The `forward` handler through `App::handle` (issue 17 item 1): the in-memory store, a
//! scripted bus that records every `PutEvents` call, and a management API that must never be
//! called (a forwarded action answers in the route's response). The real bus is exercised
//! against moto in `tests/tests/forward_bus.rs`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;
use bytes::Bytes;
use serde_json::{Value, json};
use wsstack_handlers::bus::{BusEntry, BusError, EntryResult, EventBus, MAX_PUT_ATTEMPTS};
use wsstack_handlers::config::{Config, ForwardConfig};
use wsstack_handlers::management::{ConnectionInfo, ManagementApi, ManagementError};
use wsstack_handlers::store::{Connection, ConnectionStore, MemoryStore, MessageRate};
use wsstack_handlers::{App, HandlerError};
use wsstack_routes::Handler;
use wsstack_routes::bridge::{ForwardedAction, ForwardedDetail};

const SENDER: &str = "CqEs4dW0DoECJ1g=";
/// The fixture's `messageId`, `requestId` and `requestTimeEpoch` (as RFC 3339).
const MESSAGE_ID: &str = "CqEyBcgYDoECJ1g=";
const API_REQUEST_ID: &str = "CqEyBF1ojoEFXEQ=";
const RECEIVED_AT: &str = "2026-11-26T14:27:09.456Z";
const BUS: &str = "wsstack-prod";
const SOURCE: &str = "wsstack.prod";

/// Answers each call with the next scripted answer (a put with a fresh id once the script is
/// done), recording what it was asked to put.
#[derive(Default)]
struct ScriptedBus {
    script: Mutex<VecDeque<Result<Vec<EntryResult>, BusError>>>,
    calls: Mutex<Vec<Vec<BusEntry>>>,
}

impl ScriptedBus {
    fn answering(answers: Vec<Result<Vec<EntryResult>, BusError>>) -> Self {
        ScriptedBus {
            script: Mutex::new(answers.into()),
            calls: Mutex::default(),
        }
    }

    fn calls(&self) -> Vec<Vec<BusEntry>> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl EventBus for ScriptedBus {
    async fn put(&self, entries: &[BusEntry]) -> Result<Vec<EntryResult>, BusError> {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(entries.to_vec());
            calls.len()
        };
        match self.script.lock().unwrap().pop_front() {
            Some(answer) => answer,
            None => Ok(vec![EntryResult::Put {
                event_id: format!("ev-{n}"),
            }]),
        }
    }
}

fn failed(code: &str) -> Result<Vec<EntryResult>, BusError> {
    Ok(vec![EntryResult::Failed {
        code: code.into(),
        message: "arn:aws:events:eu-west-1:111122223333:event-bus/wsstack-prod says no".into(),
    }])
}

/// Counts calls; a forwarded action must make none.
#[derive(Default)]
struct NoManagement(AtomicUsize);

#[async_trait]
impl ManagementApi for NoManagement {
    async fn post_to_connection(&self, _: &str, _: &str, _: Bytes) -> Result<(), ManagementError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn get_connection(&self, _: &str, _: &str) -> Result<ConnectionInfo, ManagementError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(ManagementError::Other("not used".into()))
    }
    async fn delete_connection(&self, _: &str, _: &str) -> Result<(), ManagementError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

struct Fixture {
    app: App,
    bus: Arc<ScriptedBus>,
    api: Arc<NoManagement>,
}

fn forward_config() -> ForwardConfig {
    ForwardConfig {
        event_bus_name: BUS.into(),
        event_source: SOURCE.into(),
        actions: vec![
            ForwardedAction {
                name: "doThing".into(),
                max_data_bytes: 64,
            },
            ForwardedAction {
                name: "ping".into(),
                max_data_bytes: 1024,
            },
        ],
    }
}

/// An app whose store holds the sender, `alice` (with `sub` when given).
async fn setup(bus: ScriptedBus, config: Config, sub: Option<&str>) -> Fixture {
    let store = MemoryStore::new();
    store
        .put(&Connection {
            connection_id: SENDER.into(),
            username: "alice".into(),
            connected_at: 1_795_703_226_123,
            expires_at: 4_102_444_800,
            sub: sub.map(str::to_owned),
            token_expires_at: None,
        })
        .await
        .unwrap();
    let bus = Arc::new(bus);
    let api = Arc::new(NoManagement::default());
    let app = App::new(Arc::new(store), api.clone(), config)
        .with_forwarding(bus.clone(), forward_config());
    Fixture { app, bus, api }
}

fn event(body: &str) -> ApiGatewayWebsocketProxyRequest {
    let path = format!("{}/tests/fixtures/message.json", env!("CARGO_MANIFEST_DIR"));
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["requestContext"]["routeKey"] = json!("doThing");
    v["body"] = json!(body);
    serde_json::from_value(v).unwrap()
}

fn forward_event(body: Value) -> ApiGatewayWebsocketProxyRequest {
    event(&body.to_string())
}

/// The route's response: 200 with a frame as its body.
fn frame_of(resp: ApiGatewayProxyResponse) -> Value {
    assert_eq!(resp.status_code, 200);
    match resp.body {
        Some(Body::Text(t)) => serde_json::from_str(&t).unwrap(),
        other => panic!("no text body: {other:?}"),
    }
}

async fn forward(f: &Fixture, body: Value) -> Value {
    frame_of(
        f.app
            .handle(Handler::Forward, forward_event(body))
            .await
            .unwrap(),
    )
}

#[tokio::test]
async fn an_accepted_action_is_one_event_on_the_bus_and_the_answer_names_it() {
    let f = setup(ScriptedBus::default(), Config::new("Connections"), None).await;
    let frame = forward(
        &f,
        json!({"action": "doThing", "data": {"n": [1, 2]}, "requestId": "r-1", "extra": true}),
    )
    .await;
    assert_eq!(
        frame,
        json!({"type": "accepted", "action": "doThing", "requestId": "r-1", "eventId": "ev-1"})
    );
    let calls = f.bus.calls();
    assert_eq!(calls.len(), 1, "one PutEvents call");
    assert_eq!(calls[0].len(), 1, "with one entry");
    let entry = &calls[0][0];
    assert_eq!(entry.event_bus_name, BUS);
    assert_eq!(entry.source, SOURCE);
    assert_eq!(entry.detail_type, "doThing");
    let detail: ForwardedDetail = serde_json::from_str(&entry.detail).unwrap();
    assert_eq!(
        detail,
        ForwardedDetail {
            connection_id: SENDER.into(),
            user_id: "alice".into(),
            username: "alice".into(),
            request_id: Some("r-1".into()),
            message_id: MESSAGE_ID.into(),
            data: json!({"n": [1, 2]}),
            received_at: RECEIVED_AT.into(),
        }
    );
    assert_eq!(f.api.0.load(Ordering::SeqCst), 0, "no @connections call");
}

#[tokio::test]
async fn without_data_or_request_id_the_event_carries_null_and_the_answer_no_request_id() {
    let f = setup(ScriptedBus::default(), Config::new("Connections"), None).await;
    let frame = forward(&f, json!({"action": "ping"})).await;
    assert_eq!(
        frame,
        json!({"type": "accepted", "action": "ping", "eventId": "ev-1"})
    );
    let detail: Value = serde_json::from_str(&f.bus.calls()[0][0].detail).unwrap();
    assert_eq!(detail["data"], Value::Null);
    assert_eq!(detail["requestId"], Value::Null);
}

#[tokio::test]
async fn with_auth_the_user_id_is_the_verified_sub() {
    let mut config = Config::new("Connections");
    config.authenticated = true;
    let f = setup(ScriptedBus::default(), config, Some("sub-alice")).await;
    forward(&f, json!({"action": "ping"})).await;
    let detail: ForwardedDetail = serde_json::from_str(&f.bus.calls()[0][0].detail).unwrap();
    assert_eq!(detail.user_id, "sub-alice");
    assert_eq!(detail.username, "alice");
}

fn error(code: &str, message: &str) -> Value {
    json!({"type": "error", "code": code, "message": message})
}

fn with_request_id(mut frame: Value, id: &str) -> Value {
    frame["requestId"] = json!(id);
    frame
}

#[tokio::test]
async fn bad_input_gets_an_exact_error_frame_and_nothing_goes_on_the_bus() {
    let request_id_rule =
        "field `requestId` must be a string of 1 to 64 printable ASCII characters";
    let cases: Vec<(&str, String, Value)> = vec![
        (
            "not JSON",
            "{\"action\":\"doThing\",".into(),
            error("not_json", "the message is not valid JSON"),
        ),
        (
            "empty requestId",
            json!({"action": "doThing", "requestId": ""}).to_string(),
            error("invalid_request_id", request_id_rule),
        ),
        (
            "65-character requestId",
            json!({"action": "doThing", "requestId": "r".repeat(65)}).to_string(),
            error("invalid_request_id", request_id_rule),
        ),
        (
            "non-printable requestId",
            json!({"action": "doThing", "requestId": "r\u{7}1"}).to_string(),
            error("invalid_request_id", request_id_rule),
        ),
        (
            "non-ASCII requestId",
            json!({"action": "doThing", "requestId": "réq"}).to_string(),
            error("invalid_request_id", request_id_rule),
        ),
        (
            "requestId not a string",
            json!({"action": "doThing", "requestId": 7}).to_string(),
            error("invalid_request_id", request_id_rule),
        ),
        (
            // 67 bytes of JSON text: the string's 65 characters and its quotes.
            "data too large",
            json!({"action": "doThing", "data": "x".repeat(65), "requestId": "r-9"}).to_string(),
            with_request_id(
                error(
                    "data_too_large",
                    "field `data` is 67 bytes; the limit is 64",
                ),
                "r-9",
            ),
        ),
    ];
    for (what, body, expected) in cases {
        let f = setup(ScriptedBus::default(), Config::new("Connections"), None).await;
        let resp = f.app.handle(Handler::Forward, event(&body)).await.unwrap();
        assert_eq!(frame_of(resp), expected, "{what}");
        assert!(f.bus.calls().is_empty(), "{what}: nothing on the bus");
    }
}

#[tokio::test]
async fn an_action_the_function_does_not_forward_is_unknown() {
    let f = setup(ScriptedBus::default(), Config::new("Connections"), None).await;
    let frame = forward(&f, json!({"action": "nope", "requestId": "r"})).await;
    assert_eq!(frame["code"], "unknown_action");
    assert_eq!(frame["requestId"], "r");
    assert!(f.bus.calls().is_empty());
}

#[tokio::test]
async fn an_unknown_sender_is_refused_and_nothing_goes_on_the_bus() {
    let f = setup(ScriptedBus::default(), Config::new("Connections"), None).await;
    let mut ev = forward_event(json!({"action": "ping", "requestId": "r-2"}));
    ev.request_context.connection_id = Some("stranger".into());
    let frame = frame_of(f.app.handle(Handler::Forward, ev).await.unwrap());
    assert_eq!(
        frame,
        with_request_id(
            error("unknown_sender", "your connection has no record; reconnect"),
            "r-2"
        )
    );
    assert!(f.bus.calls().is_empty());
}

#[tokio::test]
async fn the_sender_is_rate_limited_like_send_message_malformed_messages_included() {
    let mut config = Config::new("Connections");
    config.message_rate = MessageRate {
        per_second: 1,
        burst: 2,
    };
    let f = setup(ScriptedBus::default(), config, None).await;
    // A malformed message spends the burst as well.
    let frame = forward(&f, json!({"action": "ping", "requestId": ""})).await;
    assert_eq!(frame["code"], "invalid_request_id");
    let frame = forward(&f, json!({"action": "ping"})).await;
    assert_eq!(frame["type"], "accepted");
    let frame = forward(&f, json!({"action": "ping", "requestId": "r-3"})).await;
    assert_eq!(
        frame,
        with_request_id(
            error(
                "rate_limited",
                "too many messages: at most 1 per second and 2 at once; this one was not sent"
            ),
            "r-3"
        )
    );
    assert_eq!(f.bus.calls().len(), 1, "only the admitted one went out");
}

#[tokio::test]
async fn an_authenticated_user_is_rate_limited_across_connections() {
    let mut config = Config::new("Connections");
    config.authenticated = true;
    config.user_rate = MessageRate {
        per_second: 1,
        burst: 1,
    };
    let f = setup(ScriptedBus::default(), config, Some("sub-alice")).await;
    assert_eq!(
        forward(&f, json!({"action": "ping"})).await["type"],
        "accepted"
    );
    let frame = forward(&f, json!({"action": "ping"})).await;
    assert_eq!(frame["code"], "user_rate_limited");
    assert!(frame["retryAfterMs"].is_u64());
    assert_eq!(f.bus.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failed_entry_retried_with_success_is_acknowledged_once() {
    let bus = ScriptedBus::answering(vec![failed("ThrottlingException")]);
    let f = setup(bus, Config::new("Connections"), None).await;
    let frame = forward(&f, json!({"action": "doThing", "requestId": "r-4"})).await;
    assert_eq!(
        frame,
        json!({"type": "accepted", "action": "doThing", "requestId": "r-4", "eventId": "ev-2"})
    );
    let calls = f.bus.calls();
    assert_eq!(calls.len(), 2, "the failed entry was put again");
    assert_eq!(calls[0], calls[1], "the same event");
}

#[tokio::test(start_paused = true)]
async fn failed_entries_are_retried_then_answered_backend_unavailable() {
    let answers = (0..MAX_PUT_ATTEMPTS)
        .map(|_| failed("InternalFailure"))
        .collect();
    let f = setup(
        ScriptedBus::answering(answers),
        Config::new("Connections"),
        None,
    )
    .await;
    let frame = forward(&f, json!({"action": "doThing", "requestId": "r-5"})).await;
    let expected =
        format!("could not forward `doThing`; try again later (reference {API_REQUEST_ID})");
    assert_eq!(
        frame,
        with_request_id(error("backend_unavailable", &expected), "r-5")
    );
    assert_eq!(f.bus.calls().len() as u32, MAX_PUT_ATTEMPTS);
}

#[tokio::test(start_paused = true)]
async fn a_refused_entry_is_not_retried_and_its_text_stays_in_the_log() {
    let f = setup(
        ScriptedBus::answering(vec![failed("AccessDeniedException")]),
        Config::new("Connections"),
        None,
    )
    .await;
    let frame = forward(&f, json!({"action": "doThing"})).await;
    assert_eq!(frame["code"], "backend_unavailable");
    let text = frame.to_string();
    assert!(
        !text.contains("111122223333") && !text.contains("AccessDenied"),
        "{text}"
    );
    assert_eq!(f.bus.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_failing_call_is_retried_like_a_failed_entry() {
    let transient = || {
        Err(BusError::Call {
            reason: "dispatch failure: connection reset".into(),
            retryable: true,
        })
    };
    let f = setup(
        ScriptedBus::answering(vec![transient(), transient()]),
        Config::new("Connections"),
        None,
    )
    .await;
    let frame = forward(&f, json!({"action": "doThing"})).await;
    assert_eq!(frame["eventId"], "ev-3");
    assert_eq!(f.bus.calls().len(), 3);
}

#[tokio::test]
async fn without_a_bus_the_forward_handler_is_a_wiring_error() {
    let store = MemoryStore::new();
    let app = App::new(
        Arc::new(store),
        Arc::new(NoManagement::default()),
        Config::new("Connections"),
    );
    let err = app
        .handle(Handler::Forward, forward_event(json!({"action": "ping"})))
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::NoBus), "{err}");
}
