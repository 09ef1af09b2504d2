//! Every route through `App::handle`, with the in-memory store and a recording management API,
//! fed with events in the shapes API Gateway sends (fixtures/*.json).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use bytes::Bytes;
use serde_json::{Value, json};
use wsstack_handlers::audience::AudienceError;
use wsstack_handlers::config::Config;
use wsstack_handlers::delivery::DeliveryError;
use wsstack_handlers::domain::{CLIENT_ERROR_CODES, MAX_DATA_BYTES, MAX_LIST_LIMIT};
use wsstack_handlers::faults::{Faulty, Op, Rule};
use wsstack_handlers::management::{ConnectionInfo, ManagementApi, ManagementError};
use wsstack_handlers::metrics::{self, Metrics, MetricsSink};
use wsstack_handlers::store::{Connection, ConnectionStore, MemoryStore, MessageRate, StoreError};
use wsstack_handlers::{App, HandlerError};
use wsstack_routes::Handler;

const ENDPOINT: &str = "https://abc123def4.execute-api.eu-west-1.amazonaws.com/prod";
const SENDER: &str = "CqEs4dW0DoECJ1g=";

/// One PostToConnection call.
#[derive(Debug, Clone, PartialEq)]
struct Post {
    endpoint: String,
    connection_id: String,
    data: String,
}

/// Records every post that reaches it; faults come from the [`Faulty`] in front of it.
#[derive(Default)]
struct RecordingApi {
    posts: Mutex<Vec<Post>>,
}

impl RecordingApi {
    fn posts(&self) -> Vec<Post> {
        self.posts.lock().unwrap().clone()
    }

    /// Data posted to `id`, parsed as JSON.
    fn frames_to(&self, id: &str) -> Vec<Value> {
        self.posts()
            .into_iter()
            .filter(|p| p.connection_id == id)
            .map(|p| serde_json::from_str(&p.data).unwrap())
            .collect()
    }
}

#[async_trait]
impl ManagementApi for RecordingApi {
    async fn post_to_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), ManagementError> {
        self.posts.lock().unwrap().push(Post {
            endpoint: endpoint.to_owned(),
            connection_id: connection_id.to_owned(),
            data: String::from_utf8(data.to_vec()).unwrap(),
        });
        Ok(())
    }

    async fn get_connection(&self, _: &str, _: &str) -> Result<ConnectionInfo, ManagementError> {
        Err(ManagementError::Other("not used by the routes".into()))
    }

    async fn delete_connection(&self, _: &str, _: &str) -> Result<(), ManagementError> {
        Err(ManagementError::Other("not used by the routes".into()))
    }
}

/// The recording API behind a fault plan (empty unless a test adds to it).
type Api = Faulty<RecordingApi, ManagementError>;

/// A recording API whose posts to each of `ids` answer `err`; the others are recorded.
fn failing(ids: &[&str], err: ManagementError) -> Api {
    ids.iter()
        .fold(Api::new(RecordingApi::default()), |api, id| {
            api.with(Rule::fail(Op::Post, err.clone()).for_key(*id))
        })
}

fn unavailable() -> StoreError {
    StoreError::Backend("ProvisionedThroughputExceededException".into())
}

/// A store whose every operation fails, as DynamoDB does when throttled or unreachable.
fn failing_store() -> Arc<Faulty<MemoryStore, StoreError>> {
    Arc::new(Faulty::new(MemoryStore::new()).with(Rule::fail(Op::Any, unavailable())))
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A fixture, edited, deserialized the way lambda_runtime does.
fn event(name: &str, edit: impl FnOnce(&mut Value)) -> ApiGatewayWebsocketProxyRequest {
    let mut v = fixture(name);
    edit(&mut v);
    serde_json::from_value(v).unwrap()
}

fn message(body: Value) -> ApiGatewayWebsocketProxyRequest {
    let body = body.to_string();
    event("message", |v| v["body"] = json!(body))
}

fn raw_message(body: &str) -> ApiGatewayWebsocketProxyRequest {
    event("message", |v| v["body"] = json!(body))
}

/// Metric lines kept in `lines`, as the function `wsstack-test` writes them.
fn memory_metrics(lines: &Arc<Mutex<Vec<String>>>) -> Metrics {
    Metrics {
        handler: "wsstack-test".into(),
        sink: MetricsSink::Memory(lines.clone()),
    }
}

/// The `Stage` and value of each line counting `metric`, every line checked against the
/// embedded metric format's required members.
fn metric_counts(lines: &Mutex<Vec<String>>, metric: &str) -> Vec<(String, u64)> {
    let lines = lines.lock().unwrap().clone();
    lines
        .iter()
        .map(|l| metrics::validate(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v[metric].is_number())
        .map(|v| {
            assert_eq!(v["Handler"], "wsstack-test");
            (
                v["Stage"].as_str().unwrap_or("").to_owned(),
                v[metric].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn conn(id: &str, username: &str) -> Connection {
    Connection {
        connection_id: id.to_owned(),
        username: username.to_owned(),
        connected_at: 1_795_703_226_123,
        expires_at: LIVE_UNTIL,
        sub: None,
        token_expires_at: None,
    }
}

/// An `expiresAt` far in the future: the record is live whenever the tests run.
const LIVE_UNTIL: i64 = 4_102_444_800; // 2100-01-01

struct Fixture {
    app: App,
    store: MemoryStore,
    api: Arc<Api>,
}

/// An app whose store holds the sender (alice) and bob and carol.
async fn setup(api: impl Into<Api>) -> Fixture {
    let store = MemoryStore::new();
    for c in [
        conn(SENDER, "alice"),
        conn("bob", "bob"),
        conn("carol", "carol"),
    ] {
        store.put(&c).await.unwrap();
    }
    let api = Arc::new(api.into());
    let app = App::new(
        Arc::new(store.clone()),
        api.clone(),
        Config::new("Connections"),
    );
    Fixture { app, store, api }
}

// ---------------------------------------------------------------------------------- $connect

#[tokio::test]
async fn connect_stores_the_record_from_a_real_event() {
    let f = Fixture {
        store: MemoryStore::new(),
        ..setup(RecordingApi::default()).await
    };
    let app = App::new(
        Arc::new(f.store.clone()),
        f.api.clone(),
        Config::new("Connections"),
    );
    let resp = app
        .handle(Handler::Connect, event("connect", |_| {}))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
    assert_eq!(
        f.store.get(SENDER).await.unwrap(),
        Some(Connection {
            connection_id: SENDER.into(),
            username: "alice".into(),
            connected_at: 1_795_703_226_123,
            expires_at: 1_795_703_226 + 2 * 3600,
            sub: None,
            token_expires_at: None,
        })
    );
    assert!(f.api.posts().is_empty(), "$connect must not post");
}

#[tokio::test]
async fn connect_without_username_is_anonymous() {
    let f = setup(RecordingApi::default()).await;
    let ev = event("connect", |v| {
        v["requestContext"]["connectionId"] = json!("new1");
        v.as_object_mut().unwrap().remove("queryStringParameters");
        v.as_object_mut()
            .unwrap()
            .remove("multiValueQueryStringParameters");
    });
    assert_eq!(
        f.app
            .handle(Handler::Connect, ev)
            .await
            .unwrap()
            .status_code,
        200
    );
    assert_eq!(
        f.store.get("new1").await.unwrap().unwrap().username,
        "anonymous"
    );
}

#[tokio::test]
async fn connect_refuses_bad_usernames_with_400_and_stores_nothing() {
    for (name, why) in [
        ("".to_owned(), "username must not be empty"),
        (
            "x".repeat(65),
            "username must be at most 64 characters, got 65",
        ),
        (
            "bad\u{7}bell".to_owned(),
            "username must contain only printable characters: character 4 is U+0007, a control character",
        ),
        (
            "ad\u{202E}min".to_owned(),
            "username must contain only printable characters: character 3 is U+202E, an invisible format character (bidi control, zero-width, ...)",
        ),
        (
            "trailing ".to_owned(),
            "username must not start or end with whitespace",
        ),
    ] {
        let f = setup(RecordingApi::default()).await;
        let ev = event("connect", |v| {
            v["requestContext"]["connectionId"] = json!("new1");
            v["queryStringParameters"]["username"] = json!(name);
            v["multiValueQueryStringParameters"]["username"] = json!([name]);
        });
        let resp = f.app.handle(Handler::Connect, ev).await.unwrap();
        assert_eq!(resp.status_code, 400, "{name:?}");
        assert_eq!(
            resp.body,
            Some(aws_lambda_events::encodings::Body::Text(why.into()))
        );
        assert_eq!(f.store.get("new1").await.unwrap(), None);
    }
}

/// A `$connect` event whose client offered `protocols` in `Sec-WebSocket-Protocol`.
fn connect_offering(protocols: &str) -> ApiGatewayWebsocketProxyRequest {
    event("connect", |v| {
        v["requestContext"]["connectionId"] = json!("new1");
        v["headers"]["Sec-WebSocket-Protocol"] = json!(protocols);
        v["multiValueHeaders"]["Sec-WebSocket-Protocol"] = json!([protocols]);
    })
}

// https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-connect-route-subprotocol.html
#[tokio::test]
async fn connect_answers_with_wsstack_v1_when_the_client_offers_it_among_others() {
    let f = setup(RecordingApi::default()).await;
    let resp = f
        .app
        .handle(Handler::Connect, connect_offering("chat, wsstack.v1, mqtt"))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
    assert_eq!(
        resp.headers
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .collect::<Vec<_>>(),
        ["wsstack.v1"]
    );
    assert!(f.store.get("new1").await.unwrap().is_some());
}

#[tokio::test]
async fn connect_refuses_a_client_that_offers_only_other_subprotocols() {
    let f = setup(RecordingApi::default()).await;
    let resp = f
        .app
        .handle(Handler::Connect, connect_offering("chat, wsstack.v2"))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 400);
    assert_eq!(
        resp.body,
        Some(aws_lambda_events::encodings::Body::Text(
            "unsupported WebSocket subprotocol `chat`, `wsstack.v2`: this API speaks only wsstack.v1"
                .into()
        ))
    );
    assert!(resp.headers.get("Sec-WebSocket-Protocol").is_none());
    assert_eq!(f.store.get("new1").await.unwrap(), None, "no record kept");
}

#[tokio::test]
async fn connect_says_nothing_of_subprotocols_when_none_is_offered() {
    let f = setup(RecordingApi::default()).await;
    let ev = event("connect", |v| {
        v["requestContext"]["connectionId"] = json!("new1")
    });
    let resp = f.app.handle(Handler::Connect, ev).await.unwrap();
    assert_eq!(resp.status_code, 200);
    assert!(resp.headers.is_empty(), "{:?}", resp.headers);
    assert!(resp.multi_value_headers.is_empty());
}

#[tokio::test]
async fn connect_is_refused_when_the_store_fails() {
    let app = App::new(
        failing_store(),
        Arc::new(RecordingApi::default()),
        Config::new("Connections"),
    );
    let resp = app
        .handle(Handler::Connect, event("connect", |_| {}))
        .await
        .unwrap();
    // Any non-2xx makes API Gateway refuse the handshake.
    assert_eq!(resp.status_code, 500);
}

// ------------------------------------------------------------------------------- $disconnect

#[tokio::test]
async fn disconnect_deletes_and_is_idempotent() {
    let f = setup(RecordingApi::default()).await;
    let ev = event("disconnect", |_| {});
    assert_eq!(ev.request_context.disconnect_status_code, Some(1001));
    assert_eq!(
        ev.request_context.disconnect_reason.as_deref(),
        Some("Going away")
    );
    for _ in 0..2 {
        let resp = f.app.handle(Handler::Disconnect, ev.clone()).await.unwrap();
        assert_eq!(resp.status_code, 200);
        assert_eq!(f.store.get(SENDER).await.unwrap(), None);
    }
    assert_eq!(f.store.len(), 2, "only the sender's record goes");
}

#[tokio::test]
async fn disconnect_reports_a_store_failure() {
    let app = App::new(
        failing_store(),
        Arc::new(RecordingApi::default()),
        Config::new("Connections"),
    );
    let err = app
        .handle(Handler::Disconnect, event("disconnect", |_| {}))
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::Store(_)), "{err}");
}

// ------------------------------------------------------------------------------- sendMessage

#[tokio::test]
async fn broadcast_reaches_everyone_including_the_sender() {
    let f = setup(RecordingApi::default()).await;
    let resp = f
        .app
        .handle(Handler::SendMessage, event("message", |_| {}))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
    let expected = json!({
        "type": "message",
        "id": "CqEyBcgYDoECJ1g=",
        "from": "alice",
        "data": "hello, world",
        "sentAt": "2026-11-26T14:27:09.456Z",
    });
    for id in [SENDER, "bob", "carol"] {
        assert_eq!(f.api.frames_to(id), vec![expected.clone()], "{id}");
    }
    assert_eq!(f.api.posts().len(), 3);
    assert!(f.api.posts().iter().all(|p| p.endpoint == ENDPOINT));
}

#[tokio::test]
async fn configured_callback_url_overrides_the_event() {
    let store = MemoryStore::new();
    store.put(&conn(SENDER, "alice")).await.unwrap();
    let api = Arc::new(RecordingApi::default());
    let mut config = Config::new("Connections");
    config.callback_url = Some("http://127.0.0.1:3001/dev".into());
    let app = App::new(Arc::new(store), api.clone(), config);
    app.handle(Handler::SendMessage, event("message", |_| {}))
        .await
        .unwrap();
    assert_eq!(api.posts()[0].endpoint, "http://127.0.0.1:3001/dev");
}

/// Behind a custom domain (issue 8, item 6) the event's `domainName` is that domain and its
/// first path segment the mapping key, where `@connections` calls fail
/// (https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-custom-domain-names.html).
/// Synth sets `CALLBACK_URL` to the execute-api endpoint; the posts go there, never to the
/// custom domain.
#[tokio::test]
async fn behind_a_custom_domain_posts_go_to_the_execute_api_endpoint_synth_sets() {
    let store = MemoryStore::new();
    store.put(&conn(SENDER, "alice")).await.unwrap();
    store.put(&conn("bob", "bob")).await.unwrap();
    let api = Arc::new(RecordingApi::default());
    // The environment as synth writes it for send-message.
    let env = HashMap::from([("TABLE_NAME", "Connections"), ("CALLBACK_URL", ENDPOINT)]);
    let config = Config::from_lookup(|k| env.get(k).map(|v| (*v).to_owned())).unwrap();
    let app = App::new(Arc::new(store), api.clone(), config);
    let custom = event("message", |v| {
        v["requestContext"]["domainName"] = json!("chat.example.com");
        v["requestContext"]["stage"] = json!("prod");
        v["path"] = json!("/chat");
    });
    app.handle(Handler::SendMessage, custom).await.unwrap();
    let posts = api.posts();
    assert_eq!(posts.len(), 2, "{posts:?}");
    for p in posts {
        assert_eq!(p.endpoint, ENDPOINT, "{p:?}");
    }
    // Without CALLBACK_URL the event's domain would have been used: the case synth prevents.
    assert_eq!(
        App::new(
            Arc::new(MemoryStore::new()),
            api.clone(),
            Config::new("Connections")
        )
        .callback_endpoint(&event("message", |v| {
            v["requestContext"]["domainName"] = json!("chat.example.com");
        }))
        .unwrap(),
        "https://chat.example.com/prod"
    );
}

#[tokio::test]
async fn direct_message_reaches_only_its_recipient() {
    let f = setup(RecordingApi::default()).await;
    let ev = message(json!({"action": "sendMessage", "data": "psst", "to": "bob"}));
    f.app.handle(Handler::SendMessage, ev).await.unwrap();
    assert_eq!(
        f.api.frames_to("bob"),
        vec![json!({
            "type": "direct",
            "id": "CqEyBcgYDoECJ1g=",
            "from": "alice",
            "to": "bob",
            "data": "psst",
            "sentAt": "2026-11-26T14:27:09.456Z",
        })]
    );
    assert_eq!(f.api.posts().len(), 1);
}

fn error_frame(code: &str, message: &str) -> Value {
    json!({"type": "error", "code": code, "message": message})
}

#[tokio::test]
async fn bad_input_gets_an_exact_error_frame_and_nothing_is_sent() {
    let big = "x".repeat(MAX_DATA_BYTES + 1);
    let escapes = "\u{1}".repeat(MAX_DATA_BYTES);
    let cases: Vec<(&str, ApiGatewayWebsocketProxyRequest, Value)> = vec![
        (
            "no body",
            event("message", |v| {
                v.as_object_mut().unwrap().remove("body");
            }),
            error_frame("empty_body", "the message has no body"),
        ),
        (
            "binary frame",
            event("message", |v| {
                v["body"] = json!("aGk=");
                v["isBase64Encoded"] = json!(true);
            }),
            error_frame(
                "binary_frame",
                "binary frames are not supported; send a text frame with JSON",
            ),
        ),
        (
            "not JSON",
            raw_message("{\"action\":\"sendMessage\",\"data\":"),
            error_frame("not_json", "the message is not valid JSON"),
        ),
        (
            "array",
            raw_message("[\"sendMessage\"]"),
            error_frame("not_an_object", "the message must be a JSON object"),
        ),
        (
            "missing data",
            message(json!({"action": "sendMessage"})),
            error_frame("missing_data", "field `data` is required"),
        ),
        (
            "number data",
            message(json!({"action": "sendMessage", "data": 42})),
            error_frame(
                "data_not_string",
                "field `data` must be a string, got number",
            ),
        ),
        (
            "null data",
            message(json!({"action": "sendMessage", "data": null})),
            error_frame("data_not_string", "field `data` must be a string, got null"),
        ),
        (
            "object data",
            message(json!({"action": "sendMessage", "data": {"text": "hi"}})),
            error_frame(
                "data_not_string",
                "field `data` must be a string, got object",
            ),
        ),
        (
            "empty data",
            message(json!({"action": "sendMessage", "data": ""})),
            error_frame("empty_data", "field `data` must not be empty"),
        ),
        (
            "blank data",
            message(json!({"action": "sendMessage", "data": " \n\t"})),
            error_frame("empty_data", "field `data` must not be empty"),
        ),
        (
            "data over the limit",
            message(json!({"action": "sendMessage", "data": big})),
            error_frame(
                "data_too_large",
                "field `data` is 32769 bytes; the limit is 32768",
            ),
        ),
        (
            "frame over the limit after escaping",
            message(json!({"action": "sendMessage", "data": escapes})),
            error_frame(
                "frame_too_large",
                "the message would be 196711 bytes on the wire; the limit is 131072",
            ),
        ),
        (
            "numeric to",
            message(json!({"action": "sendMessage", "data": "hi", "to": 7})),
            error_frame("to_not_string", "field `to` must be a string, got number"),
        ),
        (
            "empty to",
            message(json!({"action": "sendMessage", "data": "hi", "to": ""})),
            error_frame(
                "invalid_to",
                "field `to` must be a connection id of 1 to 128 printable characters",
            ),
        ),
        (
            "unknown to",
            message(json!({"action": "sendMessage", "data": "hi", "to": "nobody"})),
            error_frame("unknown_recipient", "no connection `nobody`"),
        ),
        (
            "unregistered sender",
            event("message", |v| {
                v["requestContext"]["connectionId"] = json!("ghost")
            }),
            error_frame("unknown_sender", "your connection has no record; reconnect"),
        ),
    ];
    // Every code a client can receive from sendMessage has its case (`delivery_failed`,
    // `rate_limited`, `$default`'s `unknown_action`, listConnections' `invalid_limit` and
    // `invalid_cursor`, and the rooms' codes have tests of their own: the rooms' in
    // `tests/tests/gateway_rooms.rs`).
    let covered: std::collections::BTreeSet<String> = cases
        .iter()
        .map(|(_, _, frame)| frame["code"].as_str().expect("code").to_owned())
        .collect();
    for code in CLIENT_ERROR_CODES {
        if ![
            "delivery_failed",
            "rate_limited",
            "user_rate_limited",
            "broadcast_budget_exceeded",
            "unknown_action",
            "invalid_limit",
            "invalid_cursor",
            "missing_room",
            "room_not_string",
            "invalid_room",
            "room_with_to",
            "too_many_rooms",
            "not_a_member",
            // Forwarded actions' codes: handlers/tests/forward.rs.
            "invalid_request_id",
            "backend_unavailable",
        ]
        .contains(code)
        {
            assert!(covered.contains(*code), "no case answers {code}");
        }
    }
    for (what, ev, expected) in cases {
        let f = setup(RecordingApi::default()).await;
        let sender = ev.request_context.connection_id.clone().unwrap();
        let resp = f.app.handle(Handler::SendMessage, ev).await.unwrap();
        assert_eq!(resp.status_code, 200, "{what}");
        let posts = f.api.posts();
        assert_eq!(
            posts.len(),
            1,
            "{what}: only the sender hears back: {posts:?}"
        );
        assert_eq!(posts[0].connection_id, sender, "{what}");
        assert_eq!(f.api.frames_to(&sender), vec![expected], "{what}");
        assert_eq!(f.store.len(), 3, "{what}: the store is untouched");
    }
}

#[tokio::test]
async fn a_gone_receiver_loses_its_record_and_the_others_still_get_the_message() {
    let f = setup(failing(&["bob"], ManagementError::Gone)).await;
    let resp = f
        .app
        .handle(Handler::SendMessage, event("message", |_| {}))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
    assert_eq!(
        f.store.get("bob").await.unwrap(),
        None,
        "the stale record is deleted"
    );
    assert!(
        f.store.get(SENDER).await.unwrap().is_some(),
        "never the sender's"
    );
    assert_eq!(f.api.frames_to(SENDER).len(), 1);
    assert_eq!(f.api.frames_to("carol").len(), 1);
    assert_eq!(
        f.api.frames_to(SENDER)[0]["type"],
        "message",
        "no error frame"
    );
}

#[tokio::test]
async fn a_failing_receiver_does_not_stop_the_others() {
    let f = setup(failing(
        &["carol"],
        ManagementError::Other("HTTP 500".into()),
    ))
    .await;
    let resp = f
        .app
        .handle(Handler::SendMessage, event("message", |_| {}))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
    assert_eq!(f.api.frames_to(SENDER).len(), 1);
    assert_eq!(f.api.frames_to("bob").len(), 1);
    assert!(
        f.store.get("carol").await.unwrap().is_some(),
        "only a 410 deletes"
    );
}

#[tokio::test]
async fn direct_message_to_a_gone_connection_deletes_it_and_tells_the_sender() {
    let f = setup(failing(&["bob"], ManagementError::Gone)).await;
    let ev = message(json!({"action": "sendMessage", "data": "psst", "to": "bob"}));
    f.app.handle(Handler::SendMessage, ev).await.unwrap();
    assert_eq!(f.store.get("bob").await.unwrap(), None);
    assert_eq!(
        f.api.frames_to(SENDER),
        vec![error_frame("unknown_recipient", "no connection `bob`")]
    );
}

#[tokio::test]
async fn direct_message_that_cannot_be_delivered_tells_the_sender_with_a_reference() {
    let f = setup(failing(&["bob"], ManagementError::Throttled)).await;
    let ev = message(json!({"action": "sendMessage", "data": "psst", "to": "bob"}));
    f.app.handle(Handler::SendMessage, ev).await.unwrap();
    // The reference is the event's requestId (fixtures/message.json), which the log line with
    // the detail carries too.
    assert_eq!(
        f.api.frames_to(SENDER),
        vec![error_frame(
            "delivery_failed",
            "could not deliver to `bob`; try again later (reference CqEyBF1ojoEFXEQ=)"
        )]
    );
}

/// A 403's text names the account and the role the handler runs as: it goes to the log,
/// never to a client (issue 18, item 3).
#[tokio::test]
async fn a_refused_post_does_not_show_the_service_text_to_the_sender() {
    let service_text = "User: arn:aws:sts::123456789012:assumed-role/wsstack-prod-SendMessageRole/fn \
                        is not authorized to perform: execute-api:ManageConnections";
    let f = setup(failing(
        &["bob"],
        ManagementError::Forbidden(service_text.into()),
    ))
    .await;
    let ev = message(json!({"action": "sendMessage", "data": "psst", "to": "bob"}));
    f.app.handle(Handler::SendMessage, ev).await.unwrap();
    let frames = f.api.frames_to(SENDER);
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["code"], "delivery_failed");
    let text = frames[0].to_string();
    for secret in [
        "123456789012",
        "arn:aws",
        "assumed-role",
        "403",
        "forbidden",
    ] {
        assert!(
            !text.contains(secret),
            "{secret:?} reached the client: {text}"
        );
    }
    assert!(text.contains("CqEyBF1ojoEFXEQ="), "the reference: {text}");
}

#[tokio::test]
async fn an_error_frame_to_a_sender_that_left_is_not_a_failure() {
    let f = setup(failing(&[SENDER], ManagementError::Gone)).await;
    let resp = f
        .app
        .handle(Handler::SendMessage, raw_message("nope"))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
}

#[tokio::test]
async fn an_error_frame_that_cannot_be_sent_is_a_function_error() {
    let f = setup(failing(
        &[SENDER],
        ManagementError::Forbidden(
            "not authorized to perform: execute-api:ManageConnections".into(),
        ),
    ))
    .await;
    let err = f
        .app
        .handle(Handler::SendMessage, raw_message("nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandlerError::Management(ManagementError::Forbidden(_))),
        "{err}"
    );
    // The service's message reaches the function error Lambda logs.
    assert_eq!(
        err.to_string(),
        "could not answer the sender: forbidden (403): not authorized to perform: \
         execute-api:ManageConnections"
    );
}

#[tokio::test]
async fn expired_records_are_neither_posted_to_nor_counted() {
    let f = setup(RecordingApi::default()).await;
    let now = chrono::Utc::now().timestamp();
    f.store
        .put(&Connection {
            expires_at: now - 60,
            ..conn("stale", "dave")
        })
        .await
        .unwrap();
    let report = wsstack_handlers::fanout::broadcast(
        &f.store,
        f.api.as_ref(),
        ENDPOINT,
        Bytes::from_static(b"hi"),
        wsstack_handlers::fanout::Limits::without_deadline(8),
    )
    .await;
    assert_eq!(
        report,
        wsstack_handlers::fanout::FanOutReport {
            delivered: 3,
            ..Default::default()
        }
    );
    assert!(f.api.frames_to("stale").is_empty());
    // Removing it is DynamoDB TTL's job, not the broadcast's.
    assert!(f.store.get("stale").await.unwrap().is_some());
}

#[tokio::test]
async fn a_broadcast_that_reaches_none_of_its_recipients_is_a_function_error() {
    let api = failing(
        &["bob", "carol", SENDER],
        ManagementError::Forbidden("denied".into()),
    );
    let f = setup(api).await;
    let err = f
        .app
        .handle(Handler::SendMessage, event("message", |_| {}))
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandlerError::NothingDelivered { failed: 3 }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the broadcast reached none of its 3 recipients; every post failed"
    );
    // The Lambda binary reports it as `HandlerError::NothingDelivered` (wsstack-lambda's
    // `a_handler_error_is_reported_by_its_kind` checks that part).
    assert_eq!(err.kind(), "NothingDelivered");
}

#[tokio::test]
async fn a_broadcast_whose_other_recipients_are_all_gone_is_no_failure() {
    let api = failing(&["bob", "carol"], ManagementError::Gone);
    let f = setup(api).await;
    let resp = f
        .app
        .handle(Handler::SendMessage, event("message", |_| {}))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
    assert_eq!(f.api.frames_to(SENDER).len(), 1);
}

#[tokio::test]
async fn a_listing_failure_is_a_function_error() {
    let inner = MemoryStore::new();
    inner.put(&conn(SENDER, "alice")).await.unwrap();
    let api = Arc::new(RecordingApi::default());
    let app = App::new(
        // A store that can get the sender but fails to list (a Scan page failing
        // mid-broadcast).
        Arc::new(
            Faulty::new(inner)
                .with(Rule::fail(Op::List, unavailable()))
                .with(Rule::fail(Op::Page, unavailable())),
        ),
        api.clone(),
        Config::new("Connections"),
    );
    let err = app
        .handle(Handler::SendMessage, event("message", |_| {}))
        .await
        .unwrap_err();
    // The listing is the delivery service's now (issue 16): its error names the message and
    // carries the store's.
    assert!(
        matches!(
            err,
            HandlerError::Delivery(DeliveryError::Audience {
                source: AudienceError::Backend(_),
                ..
            })
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains(&unavailable().to_string()),
        "{err}"
    );
    assert!(api.posts().is_empty());
}

#[tokio::test]
async fn broadcast_crosses_pages_and_respects_the_concurrency_bound() {
    let store = MemoryStore::new().with_page_size(7);
    store.put(&conn(SENDER, "alice")).await.unwrap();
    for i in 0..249 {
        store.put(&conn(&format!("c{i:03}"), "x")).await.unwrap();
    }
    let api = Arc::new(
        Api::new(RecordingApi::default()).with(Rule::delay(Op::Post, Duration::from_millis(2))),
    );
    let mut config = Config::new("Connections");
    config.broadcast_concurrency = 5;
    let app = App::new(Arc::new(store), api.clone(), config);
    app.handle(Handler::SendMessage, event("message", |_| {}))
        .await
        .unwrap();
    let mut ids: Vec<String> = api.posts().into_iter().map(|p| p.connection_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 250, "every connection exactly once");
    assert_eq!(api.posts().len(), 250);
    let max = api.max_in_flight();
    assert!((2..=5).contains(&max), "max in flight {max}");
}

// --------------------------------------------------------------------------- listConnections

fn list_request(body: Value) -> ApiGatewayWebsocketProxyRequest {
    let body = body.to_string();
    event("message", |v| {
        v["body"] = json!(body);
        v["requestContext"]["routeKey"] = json!("listConnections");
    })
}

/// Pages through `listConnections` as a client does, `limit` at a time; returns the ids in
/// the order received and the number of requests.
async fn list_all(app: &App, api: &RecordingApi, limit: usize) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut cursor = Value::Null;
    for requests in 1.. {
        let ev =
            list_request(json!({"action": "listConnections", "cursor": cursor, "limit": limit}));
        let resp = app.handle(Handler::ListConnections, ev).await.unwrap();
        assert_eq!(resp.status_code, 200);
        let frames = api.frames_to(SENDER);
        let answer = frames.last().expect("an answer to the sender").clone();
        assert_eq!(answer["type"], "connections", "{answer}");
        assert_eq!(answer["you"], SENDER);
        let items = answer["items"].as_array().unwrap();
        assert!(
            items.len() <= limit,
            "{} items for limit {limit}",
            items.len()
        );
        ids.extend(
            items
                .iter()
                .map(|i| i["connectionId"].as_str().unwrap().to_owned()),
        );
        cursor = answer["next"].clone();
        if cursor.is_null() {
            return (ids, requests);
        }
        assert!(requests < 1000, "no end to the listing");
    }
    unreachable!()
}

#[tokio::test]
async fn list_connections_answers_the_sender_with_names_and_ids() {
    let f = setup(RecordingApi::default()).await;
    let resp = f
        .app
        .handle(
            Handler::ListConnections,
            list_request(json!({"action": "listConnections"})),
        )
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
    // Only the sender hears the answer.
    assert_eq!(f.api.posts().len(), 1);
    let summary = |id: &str, name: &str| json!({"connectionId": id, "username": name, "connectedAt": "2026-11-26T14:27:06.123Z"});
    assert_eq!(
        f.api.frames_to(SENDER),
        vec![json!({
            "type": "connections",
            "items": [summary(SENDER, "alice"), summary("bob", "bob"), summary("carol", "carol")],
            "next": null,
            "you": SENDER,
        })]
    );
}

#[tokio::test]
async fn list_connections_pages_through_everyone_exactly_once() {
    let f = setup(RecordingApi::default()).await;
    for i in 0..247 {
        f.store.put(&conn(&format!("c{i:03}"), "x")).await.unwrap();
    }
    // Hundreds of pages in a moment: far past the default rate limit, which this test is not
    // about (every listConnections is charged since issue 18).
    let mut config = Config::new("Connections");
    config.message_rate = MessageRate {
        per_second: 1000,
        burst: 1000,
    };
    let app = App::new(Arc::new(f.store.clone()), f.api.clone(), config);
    for limit in [1, 7, MAX_LIST_LIMIT] {
        let before = f.api.posts().len();
        let (mut ids, requests) = list_all(&app, &f.api, limit).await;
        assert_eq!(requests, f.api.posts().len() - before);
        assert!(
            requests >= 250_usize.div_ceil(limit),
            "limit {limit}: {requests} requests"
        );
        ids.sort();
        let n = ids.len();
        ids.dedup();
        assert_eq!(
            (n, ids.len()),
            (250, 250),
            "limit {limit}: everyone exactly once"
        );
    }
}

#[tokio::test]
async fn list_connections_leaves_out_records_past_their_ttl() {
    let f = setup(RecordingApi::default()).await;
    // TTL deletes lazily: the record is still in the table an hour after it expired.
    let stale = Connection {
        expires_at: 1_795_703_229 - 3600,
        ..conn("stale", "gone")
    };
    f.store.put(&stale).await.unwrap();
    let (ids, _) = list_all(&f.app, &f.api, MAX_LIST_LIMIT).await;
    assert_eq!(ids, vec![SENDER, "bob", "carol"]);
}

#[tokio::test]
async fn list_connections_refuses_bad_cursor_and_limit_with_exact_error_frames() {
    let f = setup(RecordingApi::default()).await;
    let limit_error = error_frame(
        "invalid_limit",
        "field `limit` must be an integer from 1 to 100",
    );
    let cursor_error = error_frame(
        "invalid_cursor",
        "field `cursor` must be the `next` of a previous `connections` answer (a string of 1 to 128 printable characters)",
    );
    let cases = vec![
        (
            list_request(json!({"action": "listConnections", "limit": 0})),
            limit_error.clone(),
        ),
        (
            list_request(json!({"action": "listConnections", "limit": 101})),
            limit_error.clone(),
        ),
        (
            list_request(json!({"action": "listConnections", "limit": "5"})),
            limit_error,
        ),
        (
            list_request(json!({"action": "listConnections", "cursor": 3})),
            cursor_error.clone(),
        ),
        (
            list_request(json!({"action": "listConnections", "cursor": ""})),
            cursor_error,
        ),
        (
            event("message", |v| v["body"] = json!("[1]")),
            error_frame("not_an_object", "the message must be a JSON object"),
        ),
    ];
    for (ev, expected) in cases {
        let before = f.api.posts().len();
        let resp = f.app.handle(Handler::ListConnections, ev).await.unwrap();
        assert_eq!(resp.status_code, 200);
        let posts = f.api.posts();
        assert_eq!(posts.len(), before + 1, "{expected}");
        assert_eq!(posts[before].connection_id, SENDER);
        let got: Value = serde_json::from_str(&posts[before].data).unwrap();
        assert_eq!(got, expected);
    }
}

#[tokio::test]
async fn list_connections_with_a_failing_store_is_a_function_error() {
    let api = Arc::new(RecordingApi::default());
    let app = App::new(failing_store(), api.clone(), Config::new("Connections"));
    let err = app
        .handle(
            Handler::ListConnections,
            list_request(json!({"action": "listConnections"})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandlerError::Store(StoreError::Backend(_))),
        "{err}"
    );
    assert!(api.posts().is_empty());
}

#[tokio::test]
async fn list_connections_to_a_sender_that_left_is_not_a_failure() {
    let f = setup(failing(&[SENDER], ManagementError::Gone)).await;
    let resp = f
        .app
        .handle(
            Handler::ListConnections,
            list_request(json!({"action": "listConnections"})),
        )
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
}

// ---------------------------------------------------------------------------------- $default

#[tokio::test]
async fn default_lists_the_supported_actions() {
    let f = setup(RecordingApi::default()).await;
    let resp = f
        .app
        .handle(Handler::Default, event("default", |_| {}))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
    // The route table's client actions, in its order.
    let actions: Vec<&str> = wsstack_routes::client_actions().collect();
    assert_eq!(
        actions[..4],
        ["sendMessage", "listConnections", "join", "leave"]
    );
    assert_eq!(
        f.api.frames_to(SENDER),
        vec![json!({
            "type": "error",
            "code": "unknown_action",
            "message": format!("unknown action `subscribe`; supported actions: {}", actions.join(", ")),
            "supportedActions": actions,
        })]
    );
    assert_eq!(f.store.len(), 3);
}

#[tokio::test]
async fn default_explains_a_message_without_action() {
    let f = setup(RecordingApi::default()).await;
    let ev = event("default", |v| v["body"] = json!("hello?"));
    f.app.handle(Handler::Default, ev).await.unwrap();
    let actions: Vec<&str> = wsstack_routes::client_actions().collect();
    assert_eq!(
        f.api.frames_to(SENDER)[0]["message"],
        format!(
            "the message has no `action`; supported actions: {}",
            actions.join(", ")
        )
    );
}

/// In Lambda, `$default` learns the forwarded actions from `FORWARDED_ACTIONS` (synth sets it
/// from the app manifest) and lists them after the built-in ones.
#[tokio::test]
async fn default_lists_the_forwarded_actions_from_the_environment() {
    let store = MemoryStore::new();
    store.put(&conn(SENDER, "alice")).await.unwrap();
    let api = Arc::new(RecordingApi::default());
    let env = [
        ("TABLE_NAME", "Connections"),
        (
            "FORWARDED_ACTIONS",
            r#"[{"name":"submitJob","maxDataBytes":4096},{"name":"cancelJob","maxDataBytes":64}]"#,
        ),
    ];
    let config = Config::from_lookup(|name| {
        env.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    })
    .expect("config");
    let app = App::new(Arc::new(store), api.clone(), config);
    app.handle(Handler::Default, event("default", |_| {}))
        .await
        .unwrap();
    let mut actions: Vec<&str> = wsstack_routes::client_actions().collect();
    actions.extend(["submitJob", "cancelJob"]);
    assert_eq!(
        api.frames_to(SENDER),
        vec![json!({
            "type": "error",
            "code": "unknown_action",
            "message": format!("unknown action `subscribe`; supported actions: {}", actions.join(", ")),
            "supportedActions": actions,
        })]
    );
}

// ------------------------------------------------------------------------------ bad events

#[tokio::test]
async fn a_missing_connection_id_is_an_error_not_a_panic() {
    for (handler, name) in [
        (Handler::Connect, "connect"),
        (Handler::Disconnect, "disconnect"),
        (Handler::SendMessage, "message"),
        (Handler::Default, "default"),
    ] {
        let f = setup(RecordingApi::default()).await;
        let ev = event(name, |v| {
            v["requestContext"]
                .as_object_mut()
                .unwrap()
                .remove("connectionId");
        });
        let err = f.app.handle(handler, ev).await.unwrap_err();
        assert_eq!(err.to_string(), "event has no requestContext.connectionId");
    }
}

#[tokio::test]
async fn a_missing_domain_name_is_an_error_when_no_callback_url_is_configured() {
    let f = setup(RecordingApi::default()).await;
    let ev = event("message", |v| {
        v["requestContext"]
            .as_object_mut()
            .unwrap()
            .remove("domainName");
    });
    let err = f.app.handle(Handler::SendMessage, ev).await.unwrap_err();
    assert_eq!(err.to_string(), "event has no requestContext.domainName");
}

/// docs/protocol.md lists exactly the error codes a client can receive through API Gateway.
#[test]
fn the_protocol_doc_lists_the_error_codes_clients_can_receive() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
            .expect("docs/protocol.md");
    let start = readme
        .find("The codes a client can receive:")
        .expect("docs/protocol.md names the codes a client can receive");
    let end = start + readme[start..].find(". ").expect("end of the sentence");
    let listed: Vec<&str> = readme[start..end]
        .split('`')
        .skip(1)
        .step_by(2)
        // Route keys name where a code comes from; the rest are codes.
        .filter(|word| wsstack_routes::route(word).is_none())
        .collect();
    assert_eq!(listed, CLIENT_ERROR_CODES);
}

// ------------------------------------------------------------ authentication and rate limits

fn authenticated() -> Config {
    let mut c = Config::new("Connections");
    c.authenticated = true;
    c
}

/// A `$connect` event for `id` that asks for `?username=mallory`, with the authorizer context
/// API Gateway passes (`requestContext.authorizer`), if any.
fn connect_as(id: &str, authorizer: Option<Value>) -> ApiGatewayWebsocketProxyRequest {
    event("connect", |v| {
        v["requestContext"]["connectionId"] = json!(id);
        // Now, so the record is live (a broadcast skips expired ones).
        v["requestContext"]["connectedAt"] = json!(chrono::Utc::now().timestamp_millis());
        v["queryStringParameters"] = json!({"username": "mallory"});
        v["multiValueQueryStringParameters"] = json!({"username": ["mallory"]});
        if let Some(a) = authorizer {
            v["requestContext"]["authorizer"] = a;
        }
    })
}

#[tokio::test]
async fn with_auth_the_username_is_the_verified_one_never_the_query_string() {
    let store = MemoryStore::new();
    let api = Arc::new(RecordingApi::default());
    let app = App::new(Arc::new(store.clone()), api.clone(), authenticated());
    let context = json!({"principalId": "sub-ada", "sub": "sub-ada", "username": "ada", "integrationLatency": 3});
    let resp = app
        .handle(Handler::Connect, connect_as("ada-1", Some(context)))
        .await
        .unwrap();
    assert_eq!(resp.status_code, 200);
    let record = store.get("ada-1").await.unwrap().expect("stored");
    assert_eq!(record.username, "ada");
    assert_eq!(record.sub.as_deref(), Some("sub-ada"));

    // Its messages carry the verified name.
    let msg = event("message", |v| {
        v["requestContext"]["connectionId"] = json!("ada-1");
        v["body"] = json!(json!({"action": "sendMessage", "data": "hi"}).to_string());
    });
    app.handle(Handler::SendMessage, msg).await.unwrap();
    let frames = api.frames_to("ada-1");
    assert_eq!(frames[0]["from"], "ada");
}

#[tokio::test]
async fn with_auth_a_connect_without_a_verified_identity_is_refused_and_not_stored() {
    let store = MemoryStore::new();
    let app = App::new(
        Arc::new(store.clone()),
        Arc::new(RecordingApi::default()),
        authenticated(),
    );
    for (id, context) in [
        ("none", None),
        ("no-sub", Some(json!({"username": "ada"}))),
        ("no-name", Some(json!({"sub": "s"}))),
    ] {
        let resp = app
            .handle(Handler::Connect, connect_as(id, context))
            .await
            .unwrap();
        assert_eq!(resp.status_code, 403, "{id}");
        assert_eq!(store.get(id).await.unwrap(), None, "{id}");
    }
    // A verified username still obeys the username rules.
    let long = "x".repeat(65);
    let resp = app
        .handle(
            Handler::Connect,
            connect_as("long", Some(json!({"sub": "s", "username": long}))),
        )
        .await
        .unwrap();
    assert_eq!(resp.status_code, 400);
}

#[tokio::test]
async fn a_sender_over_its_rate_gets_rate_limited_and_nothing_is_sent() {
    let f = setup(RecordingApi::default()).await;
    let mut config = Config::new("Connections");
    config.message_rate = MessageRate {
        per_second: 1,
        burst: 3,
    };
    let app = App::new(Arc::new(f.store.clone()), f.api.clone(), config);
    for _ in 0..4 {
        app.handle(
            Handler::SendMessage,
            message(json!({"action": "sendMessage", "data": "spam"})),
        )
        .await
        .unwrap();
    }
    // Three broadcasts reached bob; the fourth message only earned the sender an error.
    assert_eq!(f.api.frames_to("bob").len(), 3);
    let to_sender = f.api.frames_to(SENDER);
    assert_eq!(to_sender.len(), 4);
    assert_eq!(to_sender[3]["type"], "error");
    assert_eq!(to_sender[3]["code"], "rate_limited");
    assert_eq!(
        to_sender[3]["message"],
        "too many messages: at most 1 per second and 3 at once; this one was not sent"
    );
}

/// The request of each client route the fixture's sender can repeat, and its route.
fn client_requests() -> Vec<(Handler, ApiGatewayWebsocketProxyRequest)> {
    let on = |route: &str, body: Value| {
        let body = body.to_string();
        let route = route.to_owned();
        event("message", move |v| {
            v["body"] = json!(body);
            v["requestContext"]["routeKey"] = json!(route);
        })
    };
    vec![
        (
            Handler::SendMessage,
            on(
                "sendMessage",
                json!({"action": "sendMessage", "data": "hi", "to": "bob"}),
            ),
        ),
        (
            Handler::ListConnections,
            on("listConnections", json!({"action": "listConnections"})),
        ),
        (
            Handler::Join,
            on("join", json!({"action": "join", "room": "lobby"})),
        ),
        (
            Handler::Leave,
            on("leave", json!({"action": "leave", "room": "lobby"})),
        ),
        (Handler::Default, on("$default", json!({"action": "nope"}))),
    ]
}

/// Issue 18: only sendMessage was limited; a Scan per listConnections, joins, leaves and
/// unroutable frames were free. Every client route now charges the connection's one bucket.
#[tokio::test]
async fn every_client_route_is_charged_against_the_connections_rate() {
    for (handler, request) in client_requests() {
        let f = setup(RecordingApi::default()).await;
        let mut config = Config::new("Connections");
        config.message_rate = MessageRate {
            per_second: 1,
            burst: 2,
        };
        let app = App::new(Arc::new(f.store.clone()), f.api.clone(), config);
        for _ in 0..3 {
            app.handle(handler, request.clone()).await.unwrap();
        }
        let to_sender = f.api.frames_to(SENDER);
        let last = to_sender.last().expect("an answer");
        assert_eq!(last["code"], "rate_limited", "{handler:?}: {to_sender:?}");
        assert_eq!(
            to_sender
                .iter()
                .filter(|f| f["code"] == "rate_limited")
                .count(),
            1,
            "{handler:?}: the first two pass"
        );
    }
    // One bucket for all routes: two listings use up a burst of two, then a message is refused.
    let f = setup(RecordingApi::default()).await;
    let mut config = Config::new("Connections");
    config.message_rate = MessageRate {
        per_second: 1,
        burst: 2,
    };
    let app = App::new(Arc::new(f.store.clone()), f.api.clone(), config);
    let requests = client_requests();
    for _ in 0..2 {
        app.handle(Handler::ListConnections, requests[1].1.clone())
            .await
            .unwrap();
    }
    app.handle(Handler::SendMessage, requests[0].1.clone())
        .await
        .unwrap();
    assert!(f.api.frames_to("bob").is_empty(), "the message was refused");
    assert_eq!(
        f.api.frames_to(SENDER).last().expect("an answer")["code"],
        "rate_limited"
    );
}

/// Issue 18: limits were per connection, so a user with N connections had N times the rate.
/// In authenticated stages a second bucket, keyed by the verified `sub`, spans them all.
#[tokio::test]
async fn a_user_over_their_rate_across_connections_gets_user_rate_limited() {
    let f = setup(RecordingApi::default()).await;
    let tab = |id: &str| Connection {
        sub: Some("user-1".into()),
        ..conn(id, "alice")
    };
    f.store.put(&tab(SENDER)).await.unwrap();
    f.store.put(&tab("second-tab")).await.unwrap();
    let mut config = authenticated();
    config.message_rate = MessageRate {
        per_second: 1,
        burst: 3,
    };
    config.user_rate = MessageRate {
        per_second: 1,
        burst: 4,
    };
    let lines = Arc::new(Mutex::new(Vec::new()));
    let app = App::new(Arc::new(f.store.clone()), f.api.clone(), config)
        .with_metrics(memory_metrics(&lines));
    let list_from = |id: &str| {
        let id = id.to_owned();
        event("message", move |v| {
            v["body"] = json!(json!({"action": "listConnections"}).to_string());
            v["requestContext"]["routeKey"] = json!("listConnections");
            v["requestContext"]["connectionId"] = json!(id);
        })
    };
    // Three from the first tab (its own burst), then the second tab: one more passes (the
    // user's fourth), the next is over the user's burst although this tab's bucket is full.
    for _ in 0..3 {
        app.handle(Handler::ListConnections, list_from(SENDER))
            .await
            .unwrap();
    }
    for _ in 0..2 {
        app.handle(Handler::ListConnections, list_from("second-tab"))
            .await
            .unwrap();
    }
    assert!(
        f.api
            .frames_to(SENDER)
            .iter()
            .all(|f| f["type"] == "connections")
    );
    let second = f.api.frames_to("second-tab");
    assert_eq!(second[0]["type"], "connections");
    assert_eq!(second[1]["code"], "user_rate_limited", "{second:?}");
    let retry = second[1]["retryAfterMs"].as_u64().expect("retryAfterMs");
    assert!((1..=1000).contains(&retry), "retry in {retry} ms");
    assert!(
        second[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("too many messages from your account across its connections: at most 1 per second and 4 at once"),
        "{}",
        second[1]
    );
    // Issue 19: the refusal over the user's rate counts as RateLimited, for the event's stage.
    assert_eq!(
        metric_counts(&lines, "RateLimited"),
        [("prod".to_owned(), 1)],
        "{lines:?}"
    );
    // Someone else (no sub, as bob's record) is not held back by alice's account.
    let bob = list_from("bob");
    app.handle(Handler::ListConnections, bob).await.unwrap();
    assert_eq!(f.api.frames_to("bob")[0]["type"], "connections");
}

/// Issue 18: a message to everyone counted once although it costs a post per connection of
/// the account's shared @connections quota. The stage budget charges broadcasts their audience.
#[tokio::test]
async fn a_broadcast_past_the_stage_budget_gets_broadcast_budget_exceeded() {
    let f = setup(RecordingApi::default()).await;
    let mut config = Config::new("Connections");
    // Two deliveries a second, two at once: the first broadcast (three recipients) passes on
    // a full bucket and leaves it 1.5 s behind; the second must wait a second.
    config.broadcast_budget = wsstack_handlers::config::budget(2);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let app = App::new(Arc::new(f.store.clone()), f.api.clone(), config)
        .with_metrics(memory_metrics(&lines));
    for _ in 0..2 {
        app.handle(
            Handler::SendMessage,
            message(json!({"action": "sendMessage", "data": "to all"})),
        )
        .await
        .unwrap();
    }
    assert_eq!(f.api.frames_to("bob").len(), 1, "only the first went out");
    let to_sender = f.api.frames_to(SENDER);
    assert_eq!(to_sender.len(), 2);
    assert_eq!(to_sender[1]["code"], "broadcast_budget_exceeded");
    let retry = to_sender[1]["retryAfterMs"].as_u64().expect("retryAfterMs");
    assert!((900..=1000).contains(&retry), "retry in {retry} ms");
    assert!(
        to_sender[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("the stage's broadcast budget of 2 deliveries per second is used up"),
        "{}",
        to_sender[1]
    );
    // Issue 19: the refusal is counted on its own, not as a RateLimited.
    assert_eq!(
        metric_counts(&lines, "BroadcastBudgetExceeded"),
        [("prod".to_owned(), 1)]
    );
    assert!(metric_counts(&lines, "RateLimited").is_empty());
    // A direct message costs one post and is not a broadcast: it still goes through.
    app.handle(
        Handler::SendMessage,
        message(json!({"action": "sendMessage", "data": "psst", "to": "bob"})),
    )
    .await
    .unwrap();
    assert_eq!(f.api.frames_to("bob").len(), 2);
}

/// Issue 18: `$connect` keeps the token's expiry on the record, for the token sweep. API
/// Gateway passes context values as strings ("Output from an API Gateway Lambda authorizer":
/// `"numberKey": "1"`), the local gateway as numbers: both are read. Without authentication
/// there is no token and nothing to sweep.
#[tokio::test]
async fn connect_stores_the_tokens_expiry_for_the_sweep() {
    let store = MemoryStore::new();
    let app = App::new(
        Arc::new(store.clone()),
        Arc::new(RecordingApi::default()),
        authenticated(),
    );
    for (id, expiry) in [
        ("as-string", json!("1795706826")),
        ("as-number", json!(1_795_706_826_i64)),
    ] {
        let context = json!({"sub": "sub-ada", "username": "ada", "tokenExpiresAt": expiry});
        let resp = app
            .handle(Handler::Connect, connect_as(id, Some(context)))
            .await
            .unwrap();
        assert_eq!(resp.status_code, 200, "{id}");
        let record = store.get(id).await.unwrap().expect("stored");
        assert_eq!(record.token_expires_at, Some(1_795_706_826), "{id}");
    }
    let anonymous = App::new(
        Arc::new(store.clone()),
        Arc::new(RecordingApi::default()),
        Config::new("Connections"),
    );
    anonymous
        .handle(Handler::Connect, connect_as("anon", None))
        .await
        .unwrap();
    let record = store.get("anon").await.unwrap().expect("stored");
    assert_eq!(record.token_expires_at, None);
}

#[tokio::test]
async fn the_authorizer_is_not_a_route_handler() {
    let f = setup(RecordingApi::default()).await;
    let err = f
        .app
        .handle(Handler::Authorizer, event("connect", |_| {}))
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::NotARoute("authorizer")));
    let err = f
        .app
        .handle(Handler::TokenSweeper, event("connect", |_| {}))
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::NotARoute("token-sweeper")));
}

// -------------------------------------------------------------------- rooms and $disconnect

/// Memberships whose `join` lets a whole `$disconnect` of the connection run first (record,
/// then the memberships it knew of): the interleaving of a join racing `$disconnect` on a
/// multi-threaded runtime, after the join's record lookup and before its membership write.
struct DisconnectDuringJoin {
    inner: wsstack_handlers::membership::MemoryMembershipStore,
    store: MemoryStore,
}

#[async_trait]
impl wsstack_handlers::membership::MembershipStore for DisconnectDuringJoin {
    async fn join(
        &self,
        room: &wsstack_handlers::rooms::RoomName,
        connection_id: &str,
        expires_at: i64,
        max_rooms: usize,
    ) -> Result<wsstack_handlers::membership::JoinOutcome, StoreError> {
        self.store.remove(connection_id, None).await?;
        self.inner.forget_listed(connection_id, &[]).await?;
        self.inner
            .join(room, connection_id, expires_at, max_rooms)
            .await
    }
    async fn leave(
        &self,
        room: &wsstack_handlers::rooms::RoomName,
        id: &str,
    ) -> Result<bool, StoreError> {
        self.inner.leave(room, id).await
    }
    async fn is_member(
        &self,
        room: &wsstack_handlers::rooms::RoomName,
        id: &str,
    ) -> Result<bool, StoreError> {
        self.inner.is_member(room, id).await
    }
    async fn members_page(
        &self,
        room: &wsstack_handlers::rooms::RoomName,
        after: Option<&str>,
    ) -> Result<wsstack_handlers::membership::MemberPage, StoreError> {
        self.inner.members_page(room, after).await
    }
    async fn rooms_of(
        &self,
        id: &str,
    ) -> Result<Vec<wsstack_handlers::rooms::RoomName>, StoreError> {
        self.inner.rooms_of(id).await
    }
    async fn remove_member(
        &self,
        room: &wsstack_handlers::rooms::RoomName,
        id: &str,
    ) -> Result<(), StoreError> {
        self.inner.remove_member(room, id).await
    }
}

/// A join racing `$disconnect` leaves no membership behind, whatever the membership store
/// (issue 18, item 11): the join reads the record again after writing.
#[tokio::test]
async fn a_join_racing_disconnect_leaves_no_membership() {
    use wsstack_handlers::membership::{MembershipStore, MemoryMembershipStore};
    let f = setup(RecordingApi::default()).await;
    let inner = MemoryMembershipStore::new();
    let app = App::new(
        Arc::new(f.store.clone()),
        f.api.clone(),
        Config::new("Connections"),
    )
    .with_memberships(Arc::new(DisconnectDuringJoin {
        inner: inner.clone(),
        store: f.store.clone(),
    }));
    let ev = event("message", |v| {
        v["requestContext"]["routeKey"] = json!("join");
        v["body"] = json!(r#"{"action":"join","room":"lobby"}"#);
    });
    app.handle(Handler::Join, ev).await.unwrap();
    let lobby = wsstack_handlers::rooms::RoomName::parse("lobby").unwrap();
    assert!(
        !inner.is_member(&lobby, SENDER).await.unwrap(),
        "no membership outlives the record"
    );
    assert_eq!(
        inner
            .members_page(&lobby, None)
            .await
            .unwrap()
            .connection_ids,
        Vec::<String>::new()
    );
    assert_eq!(
        f.api.frames_to(SENDER),
        vec![error_frame(
            "unknown_sender",
            "your connection has no record; reconnect"
        )]
    );
}
