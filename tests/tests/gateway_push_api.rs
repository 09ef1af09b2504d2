//! Issue 17 item 2, locally: the push API a backend calls, served by the gateway's push server
//! with the `push-api` function's code, reaching real WebSocket clients: a user on all of
//! their devices, a room, presence, a disconnect, and the refusals. Requests are plain HTTP/1.1
//! over a socket, as `curl` would send them.

mod gateway_support;

use std::net::SocketAddr;

use gateway_support::{Client, WAIT, connect, id_of, memory_metrics, options, start};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsstack_gateway::RunningGateway;
use wsstack_gateway::push_server::{PushServer, PushThrottling};
use wsstack_handlers::store::ConnectionStore;
use wsstack_routes::push_api::{PUSH_ROUTES, PushOperation};

/// One request, `Connection: close`; the status and the JSON body (`Null` when empty).
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the push API");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("an answer in time")
        .expect("read the answer");
    let text = String::from_utf8_lossy(&raw);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let json = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    };
    (status, json)
}

/// The path of `operation` for one id, percent-encoded as a client must (connection ids are
/// base64 and may hold `/` and `+`).
fn path_of(operation: PushOperation, id: &str) -> String {
    PUSH_ROUTES
        .iter()
        .find(|r| r.operation == operation)
        .map(|r| r.path_with(&[id]))
        .unwrap_or_default()
}

async fn push_server(gw: &RunningGateway) -> PushServer {
    let push_api = gw.push_api().expect("the handlers' push API");
    PushServer::bind("127.0.0.1:0".parse().expect("addr"), push_api, None)
        .await
        .expect("push server")
}

async fn expect_push(client: &mut Client, data: &Value) -> Value {
    let frame = client.next_json().await;
    assert_eq!(frame["type"], "push", "{}: {frame}", client.name);
    assert_eq!(&frame["data"], data, "{}: {frame}", client.name);
    frame
}

#[tokio::test]
async fn a_backend_reaches_a_user_on_every_device_a_room_and_one_connection() {
    let (gw, store) = start(options()).await;
    let push = push_server(&gw).await;
    let addr = push.local_addr();
    let mut ada_phone = connect(&gw, "ada").await;
    let mut ada_laptop = connect(&gw, "ada").await;
    let mut bob = connect(&gw, "bob").await;

    // Without authentication a connection's user is its username (unverified).
    let data = json!({"job": 7, "state": "done"});
    let (status, answer) = http(
        addr,
        "POST",
        "/users/ada/messages",
        &json!({"data": data, "replyTo": "r-1"}).to_string(),
    )
    .await;
    assert_eq!(
        (status, answer["delivered"].clone()),
        (200, json!(2)),
        "{answer}"
    );
    for client in [&mut ada_phone, &mut ada_laptop] {
        let frame = expect_push(client, &data).await;
        assert_eq!(frame["replyTo"], "r-1");
        assert_eq!(frame["id"], answer["id"]);
    }

    let (status, presence) = http(addr, "GET", "/users/ada/connections", "").await;
    assert_eq!(status, 200, "{presence}");
    let listed = presence["connections"].as_array().map_or(0, Vec::len);
    assert_eq!(listed, 2, "{presence}");

    bob.send_json(json!({"action": "join", "room": "lobby"}))
        .await;
    assert_eq!(bob.next_json().await["type"], "joined");
    let (status, answer) = http(addr, "POST", "/rooms/lobby/messages", r#"{"data": "room"}"#).await;
    assert_eq!(
        (status, answer["delivered"].clone()),
        (200, json!(1)),
        "{answer}"
    );
    expect_push(&mut bob, &json!("room")).await;

    let bob_id = id_of(&store, "bob").await;
    let (status, answer) = http(
        addr,
        "POST",
        &path_of(PushOperation::PostToConnection, &bob_id),
        r#"{"data": null}"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    expect_push(&mut bob, &Value::Null).await;

    // Everyone: all three.
    let (status, answer) = http(addr, "POST", "/messages", r#"{"data": "all"}"#).await;
    assert_eq!(
        (status, answer["delivered"].clone()),
        (200, json!(3)),
        "{answer}"
    );
    for client in [&mut ada_phone, &mut ada_laptop, &mut bob] {
        expect_push(client, &json!("all")).await;
    }
}

#[tokio::test]
async fn a_backend_disconnects_a_client_and_then_gets_410_for_it() {
    let (gw, store) = start(options()).await;
    let push = push_server(&gw).await;
    let mut bob = connect(&gw, "bob").await;
    let bob_id = id_of(&store, "bob").await;
    let (status, body) = http(
        push.local_addr(),
        "DELETE",
        &path_of(PushOperation::DeleteConnection, &bob_id),
        "",
    )
    .await;
    assert_eq!((status, body), (204, Value::Null));
    bob.expect_close().await;
    gateway_support::eventually("bob's record is deleted", WAIT, || {
        let store = store.clone();
        let bob_id = bob_id.clone();
        async move { store.get(&bob_id).await.ok().flatten().is_none() }
    })
    .await;
    let (status, body) = http(
        push.local_addr(),
        "POST",
        &path_of(PushOperation::PostToConnection, &bob_id),
        r#"{"data": 1}"#,
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (410, json!("gone")),
        "{body}"
    );
}

/// The stage's `[push_api]` throttling, locally as in AWS: a bucket of `burst_limit` requests
/// refilled at `rate_limit` per second; past it `429 {"message":"Too Many Requests"}` before
/// the push API runs, so nothing is delivered
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html>).
#[tokio::test]
async fn the_push_api_is_throttled_as_the_stage_says_and_a_refused_push_delivers_nothing() {
    let (gw, store) = start(options()).await;
    let throttling = PushThrottling {
        rate_limit: 0.01,
        burst_limit: 2,
    };
    let push_api = gw.push_api().expect("the handlers' push API");
    let push = PushServer::bind(
        "127.0.0.1:0".parse().expect("addr"),
        push_api,
        Some(throttling),
    )
    .await
    .expect("push server");
    assert_eq!(push.throttling(), Some(throttling));
    let mut ada = connect(&gw, "ada").await;
    let ada_id = id_of(&store, "ada").await;
    let path = path_of(PushOperation::PostToConnection, &ada_id);
    for n in 0..2 {
        let (status, body) = http(
            push.local_addr(),
            "POST",
            &path,
            &format!(r#"{{"data": {n}}}"#),
        )
        .await;
        assert_eq!(status, 200, "push {n} of the burst: {body}");
        assert_eq!(expect_push(&mut ada, &json!(n)).await["data"], json!(n));
    }
    let (status, body) = http(push.local_addr(), "POST", &path, r#"{"data": "over"}"#).await;
    assert_eq!(
        (status, body),
        (429, json!({"message": "Too Many Requests"}))
    );
    // Every route shares the bucket, reads too.
    let (status, _) = http(
        push.local_addr(),
        "GET",
        &path_of(PushOperation::ListUserConnections, "ada"),
        "",
    )
    .await;
    assert_eq!(status, 429);
    // The refused push was never delivered: the next frame ada gets is one sent after it.
    gw.management_api()
        .post_to_connection(gw.callback_url(), &ada_id, "after".into())
        .await
        .expect("a direct post");
    assert_eq!(
        ada.next().await,
        tokio_tungstenite::tungstenite::Message::text("after")
    );
}

#[tokio::test]
async fn the_push_api_refuses_what_it_cannot_deliver_naming_why() {
    let (gw, _store) = start(options()).await;
    let push = push_server(&gw).await;
    let addr = push.local_addr();
    let big = json!({"data": "x".repeat(200 * 1024)}).to_string();
    for (method, path, body, status, code) in [
        ("POST", "/messages", "{", 400, "bad_request"),
        ("POST", "/messages", r#"{"dat": 1}"#, 400, "bad_request"),
        (
            "POST",
            "/rooms/a%20b/messages",
            r#"{"data": 1}"#,
            400,
            "bad_request",
        ),
        ("POST", "/messages", big.as_str(), 413, "too_large"),
        ("POST", "/nowhere", r#"{"data": 1}"#, 404, "not_found"),
        ("GET", "/messages", "", 405, "method_not_allowed"),
    ] {
        let (got, answer) = http(addr, method, path, body).await;
        assert_eq!(got, status, "{method} {path}: {answer}");
        assert_eq!(answer["error"], code, "{method} {path}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

/// `push api` (the CLI over `wsstack-client`) against the local push API: a user's tabs get the
/// message, the answer is printed as JSON; a refusal exits non-zero naming it.
#[tokio::test]
async fn the_push_cli_calls_the_push_api() {
    let (gw, _store) = start(options()).await;
    let push = push_server(&gw).await;
    let mut tab = connect(&gw, "ada").await;
    let url = push.url();
    let (ok, stdout, stderr) = gateway_support::run_tool(
        &gateway_support::push_binary(),
        &[
            "api",
            "--url",
            &url,
            "user",
            "ada",
            "--data",
            r#"{"n": 1}"#,
            "--reply-to",
            "r-1",
        ],
    )
    .await;
    assert!(ok, "stdout: {stdout}\nstderr: {stderr}");
    let answer: Value = serde_json::from_str(stdout.trim()).expect("JSON on stdout");
    assert_eq!(answer["delivered"], 1, "{answer}");
    let frame = expect_push(&mut tab, &json!({"n": 1})).await;
    assert_eq!(frame["replyTo"], "r-1");

    let (ok, _, stderr) = gateway_support::run_tool(
        &gateway_support::push_binary(),
        &["api", "--url", &url, "room", "no spaces", "--data", "x"],
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("400") && stderr.contains("room"),
        "{stderr}"
    );
}

/// Issue 19: the gateway's runs of the handlers write the same metric lines as in Lambda (the
/// embedded metric format), here into memory.
#[tokio::test]
async fn the_gateways_deliveries_write_embedded_metric_lines() {
    use wsstack_handlers::metrics::validate;
    let (metrics, lines) = memory_metrics();
    let (gw, _store) = start(wsstack_gateway::GatewayOptions {
        metrics,
        ..options()
    })
    .await;
    let push = push_server(&gw).await;
    let mut ada = connect(&gw, "ada").await;
    let mut bob = connect(&gw, "bob").await;
    let (status, answer) = http(push.local_addr(), "POST", "/messages", r#"{"data": 1}"#).await;
    assert_eq!(
        (status, answer["delivered"].clone()),
        (200, json!(2)),
        "{answer}"
    );
    for client in [&mut ada, &mut bob] {
        expect_push(client, &json!(1)).await;
    }
    let lines = lines.lock().expect("lock").clone();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = validate(&lines[0]).unwrap_or_else(|e| panic!("{e}: {}", lines[0]));
    assert_eq!(
        (&line["Stage"], &line["Handler"], &line["Delivered"]),
        (&json!("dev"), &json!("wsstack-local"), &json!(2))
    );
}
