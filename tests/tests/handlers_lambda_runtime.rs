//! The `bootstrap` binary as Lambda runs it: a process whose `lambda_runtime` polls a local
//! Lambda Runtime API for events and posts back the JSON API Gateway receives; its DynamoDB
//! client is pointed at dynalite. What is asserted is that JSON, byte for byte as parsed.

use std::time::Duration;

use serde_json::{Value, json};
use wsstack_handlers::store::{ConnectionStore, DynamoDbStore};
use wsstack_tests::lambda_runtime_api::{LambdaRuntimeApi, Outcome, function_env};
use wsstack_tests::{Dynalite, create_connections_table, handlers_binary};

const TABLE: &str = "wsstack-Connections";
const ROOMS: &str = "wsstack-Rooms";
/// Init (SDK config, tracing) plus one DynamoDB round trip; generous for a debug build on a
/// busy machine. Not a speed check: the cold-start bench measures that.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// A `bootstrap` process serving `handler`, killed on drop.
struct Function {
    _process: tokio::process::Child,
}

fn spawn(runtime: &LambdaRuntimeApi, handler: &str, extra: &[(&str, String)]) -> Function {
    let mut command = tokio::process::Command::new(handlers_binary("bootstrap"));
    command
        .env_clear()
        .envs(function_env(&runtime.address(), handler))
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .kill_on_drop(true);
    let process = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start bootstrap: {e}"));
    Function { _process: process }
}

fn connect_event(connection_id: &str, username: &str, protocols: Option<&str>) -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../handlers/tests/fixtures/connect.json"
    );
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture"))
        .expect("fixture JSON");
    v["requestContext"]["connectionId"] = json!(connection_id);
    v["requestContext"]["connectedAt"] = json!(chrono::Utc::now().timestamp_millis());
    v["queryStringParameters"]["username"] = json!(username);
    v["multiValueQueryStringParameters"]["username"] = json!([username]);
    if let Some(p) = protocols {
        v["headers"]["Sec-WebSocket-Protocol"] = json!(p);
        v["multiValueHeaders"]["Sec-WebSocket-Protocol"] = json!([p]);
    }
    v
}

struct Env {
    // Drop order: the function before the servers it talks to.
    function: Function,
    runtime: LambdaRuntimeApi,
    store: DynamoDbStore,
    _dynalite: Dynalite,
}

async fn connect_function() -> Env {
    let dynalite = Dynalite::start().await;
    let client = dynalite.client().await;
    create_connections_table(&client, TABLE)
        .await
        .expect("table");
    let runtime = LambdaRuntimeApi::start().await.expect("runtime API");
    let function = spawn(
        &runtime,
        "connect",
        &[
            ("TABLE_NAME", TABLE.to_owned()),
            ("AWS_ENDPOINT_URL_DYNAMODB", dynalite.endpoint()),
        ],
    );
    Env {
        function,
        runtime,
        store: DynamoDbStore::new(client, TABLE.into()),
        _dynalite: dynalite,
    }
}

/// API Gateway reads `statusCode`, `headers` and `body` of the `$connect` answer: 200 with the
/// chosen subprotocol accepts the handshake.
// https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-connect-route-subprotocol.html
#[tokio::test]
async fn connect_accepts_through_the_lambda_runtime_api() {
    let env = connect_function().await;
    let outcome = env
        .runtime
        .invoke(
            &connect_event("Accepted1=", "ada", Some("chat, wsstack.v1")),
            ANSWER_WITHIN,
        )
        .await
        .expect("an answer");
    let response = outcome.json().expect("a response");
    assert_eq!(
        response,
        json!({
            "statusCode": 200,
            "headers": {"sec-websocket-protocol": "wsstack.v1"},
            "multiValueHeaders": {},
            "isBase64Encoded": false
        })
    );
    let record = env
        .store
        .get("Accepted1=")
        .await
        .expect("dynalite")
        .expect("the record the function stored");
    assert_eq!(record.username, "ada");

    // The same process serves the next event (a warm invocation): no subprotocol offered, none
    // answered.
    let outcome = env
        .runtime
        .invoke(&connect_event("Accepted2=", "grace", None), ANSWER_WITHIN)
        .await
        .expect("an answer");
    assert_eq!(
        outcome.json().expect("a response"),
        json!({"statusCode": 200, "headers": {}, "multiValueHeaders": {}, "isBase64Encoded": false})
    );
    assert!(env.runtime.init_error().is_none());
    drop(env.function);
}

/// A non-2xx `statusCode` makes API Gateway refuse the handshake with that status.
#[tokio::test]
async fn connect_refuses_through_the_lambda_runtime_api() {
    let env = connect_function().await;
    for (id, username, protocols, body) in [
        (
            "Refused1=",
            "ada",
            Some("wsstack.v2"),
            "unsupported WebSocket subprotocol `wsstack.v2`: this API speaks only wsstack.v1",
        ),
        (
            "Refused2=",
            "ad\u{202E}a",
            None,
            "username must contain only printable characters: character 3 is U+202E, an \
             invisible format character (bidi control, zero-width, ...)",
        ),
    ] {
        let outcome = env
            .runtime
            .invoke(&connect_event(id, username, protocols), ANSWER_WITHIN)
            .await
            .expect("an answer");
        assert_eq!(
            outcome.json().expect("a response, not a function error"),
            json!({
                "statusCode": 400,
                "headers": {},
                "multiValueHeaders": {},
                "body": body,
                "isBase64Encoded": false
            }),
            "{id}"
        );
        assert_eq!(env.store.get(id).await.expect("dynalite"), None, "{id}");
    }
}

/// A function whose table is missing answers `$connect` with 500 (never accepting a client it
/// has no record of); a broken event is a function error with its type.
#[tokio::test]
async fn failures_reach_the_runtime_api_as_lambda_reports_them() {
    let dynalite = Dynalite::start().await;
    let runtime = LambdaRuntimeApi::start().await.expect("runtime API");
    let _function = spawn(
        &runtime,
        "connect",
        &[
            ("TABLE_NAME", "NoSuchTable".to_owned()),
            ("AWS_ENDPOINT_URL_DYNAMODB", dynalite.endpoint()),
        ],
    );
    let outcome = runtime
        .invoke(&connect_event("Lost1=", "ada", None), ANSWER_WITHIN)
        .await
        .expect("an answer");
    assert_eq!(
        outcome.json().expect("a response"),
        json!({
            "statusCode": 500,
            "headers": {},
            "multiValueHeaders": {},
            "body": "could not register the connection",
            "isBase64Encoded": false
        })
    );

    let mut event = connect_event("x", "ada", None);
    event["requestContext"]
        .as_object_mut()
        .expect("requestContext")
        .remove("connectionId");
    let outcome = runtime
        .invoke(&event, ANSWER_WITHIN)
        .await
        .expect("an answer");
    let Outcome::Error { error_type, body } = outcome else {
        panic!("expected a function error, got {outcome:?}");
    };
    // lambda_runtime marks every function error "unhandled"; the body carries its type.
    assert_eq!(error_type.as_deref(), Some("unhandled"));
    let body: Value = serde_json::from_slice(&body).expect("error JSON");
    assert_eq!(body["errorType"], "HandlerError::MissingField");
    assert_eq!(
        body["errorMessage"],
        "event has no requestContext.connectionId"
    );
}

/// An unknown handler setting fails the init: the process exits before it polls for an event
/// (Lambda then reports the init failure), with the log line naming the value.
#[tokio::test]
async fn an_unknown_handler_never_serves_an_event() {
    let runtime = LambdaRuntimeApi::start().await.expect("runtime API");
    let mut command = tokio::process::Command::new(handlers_binary("bootstrap"));
    command
        .env_clear()
        .envs(function_env(&runtime.address(), "sendMessage"))
        .env("TABLE_NAME", TABLE)
        .kill_on_drop(true);
    let output = tokio::time::timeout(ANSWER_WITHIN, command.output())
        .await
        .expect("exits")
        .expect("runs");
    assert!(!output.status.success());
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        log.contains(r#"_HANDLER=\"sendMessage\" names no handler"#),
        "{log}"
    );
}

/// Issue 18: the `token-sweeper` function as Lambda runs it, on an EventBridge scheduled event
/// ("Scheduled Event", whose content does not matter): it Scans dynalite for records whose
/// token has expired and closes each through `@connections` DELETE at `CALLBACK_URL`; a 410
/// deletes the stale record; a connection whose token is valid, or that has no token, is left
/// alone.
#[tokio::test]
async fn the_token_sweeper_closes_expired_tokens_through_the_lambda_runtime_api() {
    use wsstack_handlers::store::Connection;
    use wsstack_tests::{Answer, FakeConnectionsApi};

    let dynalite = Dynalite::start().await;
    let client = dynalite.client().await;
    create_connections_table(&client, TABLE)
        .await
        .expect("table");
    let store = DynamoDbStore::new(client, TABLE.into());
    let now = chrono::Utc::now().timestamp();
    for (id, token_expires_at) in [
        ("expired=", Some(now - 60)),
        ("gone-expired=", Some(now - 60)),
        ("valid=", Some(now + 600)),
        ("anonymous=", None),
    ] {
        store
            .put(&Connection {
                connection_id: id.to_owned(),
                username: "u".to_owned(),
                connected_at: now * 1000,
                expires_at: now + 7200,
                sub: token_expires_at.map(|_| "s".to_owned()),
                token_expires_at,
            })
            .await
            .expect("put");
    }
    let api = FakeConnectionsApi::start(|req| {
        if req.connection_id.starts_with("gone-") {
            Answer::gone()
        } else {
            Answer::success(&req.method)
        }
    })
    .await;
    let runtime = LambdaRuntimeApi::start().await.expect("runtime API");
    let function = spawn(
        &runtime,
        "token-sweeper",
        &[
            ("TABLE_NAME", TABLE.to_owned()),
            ("CALLBACK_URL", format!("{}/dev", api.base_url())),
            ("AWS_ENDPOINT_URL_DYNAMODB", dynalite.endpoint()),
        ],
    );
    // https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-run-lambda-schedule.html
    let scheduled = json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-12-06T03:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/TokenSweepSchedule"],
        "detail": {}
    });
    let outcome = runtime
        .invoke(&scheduled, ANSWER_WITHIN)
        .await
        .expect("an answer");
    let report = outcome.json().expect("a report, not a function error");
    assert_eq!(report["listed"], 2, "{report}");
    assert_eq!(report["closed"], 1, "{report}");
    assert_eq!(report["gone"], 1, "{report}");
    let mut deletes: Vec<(String, String)> = api
        .requests()
        .into_iter()
        .map(|r| (r.method, r.connection_id))
        .collect();
    deletes.sort();
    assert_eq!(
        deletes,
        [
            ("DELETE".to_owned(), "expired=".to_owned()),
            ("DELETE".to_owned(), "gone-expired=".to_owned())
        ]
    );
    assert_eq!(store.get("gone-expired=").await.expect("dynalite"), None);
    // The closed one's record is `$disconnect`'s to remove; the others stay.
    for id in ["expired=", "valid=", "anonymous="] {
        assert!(store.get(id).await.expect("dynalite").is_some(), "{id}");
    }
    drop(function);
}

/// An HTTP API request with payload format 2.0, as the push API's routes deliver it
/// (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html):
/// the `$default` stage, so `rawPath` carries no stage.
fn http_api_event(method: &str, path: &str, route_key: &str, body: Option<&str>) -> Value {
    json!({
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "192.0.2.1", "userAgent": "backend/1.0"},
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": route_key,
            "stage": "$default",
            "time": "06/Dec/2026:20:00:00 +0000",
            "timeEpoch": 1_796_500_800_000_i64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// Issue 17: the `push-api` function as Lambda runs it (`lambda_http`, payload format 2.0): a
/// push to a user reaches each of their connections in dynalite through `@connections`, and
/// the answers (200, 410, 400, 404) are HTTP API proxy results with JSON bodies.
#[tokio::test]
async fn the_push_api_answers_http_api_requests_through_the_lambda_runtime_api() {
    use wsstack_handlers::store::Connection;
    use wsstack_tests::{Answer, FakeConnectionsApi};

    let dynalite = Dynalite::start().await;
    let client = dynalite.client().await;
    create_connections_table(&client, TABLE)
        .await
        .expect("table");
    wsstack_tests::create_rooms_table(&client, ROOMS)
        .await
        .expect("rooms table");
    let store = DynamoDbStore::new(client, TABLE.into());
    let now = chrono::Utc::now().timestamp();
    for (id, sub) in [
        ("ada-1=", "sub-ada"),
        ("ada-2=", "sub-ada"),
        ("bob=", "sub-bob"),
    ] {
        store
            .put(&Connection {
                connection_id: id.to_owned(),
                username: "u".to_owned(),
                connected_at: (now - 3600) * 1000,
                expires_at: now + 7200,
                sub: Some(sub.to_owned()),
                token_expires_at: None,
            })
            .await
            .expect("put");
    }
    let api = FakeConnectionsApi::start(|req| {
        if req.connection_id.starts_with("gone") {
            Answer::gone()
        } else {
            Answer::success(&req.method)
        }
    })
    .await;
    let runtime = LambdaRuntimeApi::start().await.expect("runtime API");
    let (function, stdout) = spawn_capturing(
        &runtime,
        "push-api",
        &[
            ("TABLE_NAME", TABLE.to_owned()),
            ("ROOMS_TABLE_NAME", ROOMS.to_owned()),
            ("CALLBACK_URL", format!("{}/dev", api.base_url())),
            ("AWS_ENDPOINT_URL_DYNAMODB", dynalite.endpoint()),
        ],
    );
    let invoke = |event: Value| {
        let runtime = &runtime;
        async move {
            let outcome = runtime
                .invoke(&event, ANSWER_WITHIN)
                .await
                .expect("an answer");
            let result = outcome
                .json()
                .expect("a proxy result, not a function error");
            let status = result["statusCode"].as_u64().expect("statusCode");
            let body: Value = result["body"].as_str().map_or(Value::Null, |b| {
                serde_json::from_str(b).expect("a JSON body")
            });
            (status, body)
        }
    };

    let (status, body) = invoke(http_api_event(
        "POST",
        "/users/sub-ada/messages",
        "POST /users/{userId}/messages",
        Some(r#"{"data": {"job": 7, "state": "done"}, "replyTo": "r-1"}"#),
    ))
    .await;
    assert_eq!(
        (status, body["delivered"].clone()),
        (200, json!(2)),
        "{body}"
    );
    let mut posted: Vec<String> = api
        .requests()
        .into_iter()
        .map(|r| {
            let frame: Value = serde_json::from_slice(&r.body).expect("a frame");
            assert_eq!(frame["type"], "push");
            assert_eq!(frame["replyTo"], "r-1");
            assert_eq!(frame["data"], json!({"job": 7, "state": "done"}));
            r.connection_id
        })
        .collect();
    posted.sort();
    assert_eq!(posted, ["ada-1=", "ada-2="]);

    let (status, body) = invoke(http_api_event(
        "POST",
        "/connections/gone%3D/messages",
        "POST /connections/{connectionId}/messages",
        Some(r#"{"data": 1}"#),
    ))
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (410, json!("gone")),
        "{body}"
    );

    let (status, body) = invoke(http_api_event(
        "POST",
        "/messages",
        "POST /messages",
        Some(r#"{"replyTo": "x"}"#),
    ))
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("bad_request")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("data")),
        "{body}"
    );

    let (status, body) = invoke(http_api_event(
        "GET",
        "/users/sub-ada/connections",
        "GET /users/{userId}/connections",
        None,
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["connections"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );
    drop(function);

    // Issue 19: the push to Ada's two devices wrote one metric line in CloudWatch's embedded
    // metric format, on its own line of the function's output (not inside a log record).
    let lines = stdout.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let emf: Vec<Value> = lines
        .iter()
        .filter(|l| l.contains("\"_aws\""))
        .map(|l| wsstack_handlers::metrics::validate(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!emf.is_empty(), "no metric line in {lines:?}");
    let delivered: Vec<&Value> = emf.iter().filter(|v| v["Delivered"] == 2).collect();
    assert_eq!(delivered.len(), 1, "{emf:?}");
    assert_eq!(delivered[0]["Handler"], "wsstack-test");
    assert_eq!(delivered[0]["Stage"], "dev");
}

/// [`spawn`], with the process's standard output kept line by line (where Lambda takes the
/// function's metric lines from).
fn spawn_capturing(
    runtime: &LambdaRuntimeApi,
    handler: &str,
    extra: &[(&str, String)],
) -> (Function, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let mut command = tokio::process::Command::new(handlers_binary("bootstrap"));
    command
        .env_clear()
        .envs(function_env(&runtime.address(), handler))
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut process = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start bootstrap: {e}"));
    let lines = wsstack_tests::lambda_runtime_api::stdout_lines(&mut process);
    (Function { _process: process }, lines)
}
