//! The `bootstrap` binary as Lambda runs it: a process whose `lambda_runtime` polls a local
//! Lambda Runtime API for events and posts back the JSON API Gateway receives; its DynamoDB
//! client is pointed at dynalite. What is asserted is that JSON, byte for byte as parsed.

use std::time::Duration;

use serde_json::{Value, json};
use wsstack_handlers::store::{ConnectionStore, DynamoDbStore};
use wsstack_tests::lambda_runtime_api::{LambdaRuntimeApi, Outcome, function_env};
use wsstack_tests::{Dynalite, create_connections_table, handlers_binary};

const TABLE: &str = "wsstack-Connections";
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
