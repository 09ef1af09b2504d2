//! The handlers' `@connections` client inside the gateway (`--callback-transport`): the
//! `direct` path, which skips the SDK and HTTP, and the default `sdk-in-process` answer every
//! call as the AWS SDK does over the port. Real sockets, the real SDK client for the comparison.

mod gateway_support;

use std::time::Duration;

use bytes::Bytes;
use gateway_support::*;
use tokio_tungstenite::tungstenite::Message;
use wsstack_gateway::callback::CallbackTransport;
use wsstack_gateway::{GatewayOptions, Limits, RunningGateway};
use wsstack_handlers::local_sdk_config;
use wsstack_handlers::management::{ManagementApi, ManagementError, SdkManagementApi};
use wsstack_handlers::store::MemoryStore;

/// API Gateway's limit on a posted message: 128 KB
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html>).
const MAX_POST: usize = 128 * 1024;

/// A result as comparable text: `ok`, or the error as the handlers tell it apart. A 400's text
/// differs between the SDK (its error chain) and the direct path, so it is reduced to what the
/// handlers read of it.
fn outcome<T>(result: &Result<T, ManagementError>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(ManagementError::Other(m)) if m.contains("HTTP 400") => match m.find("Invalid") {
            // The SDK's text quotes the service's message in its error's debug form.
            Some(at) => format!("400 {}", m[at..].split('"').next().unwrap_or_default()),
            None => format!("400 without the service's message: {m}"),
        },
        Err(e) => e.to_string(),
    }
}

/// Every `@connections` answer a handler can meet, through `api` on `gw`'s endpoint, in order:
/// (what was done, what came of it).
async fn answers(
    gw: &RunningGateway,
    store: &MemoryStore,
    api: &dyn ManagementApi,
) -> Vec<(&'static str, String)> {
    let endpoint = gw.callback_url();
    let mut seen = Vec::new();
    let mut alice = connect(gw, "alice").await;
    let id = id_of(store, "alice").await;

    let text = api
        .post_to_connection(endpoint, &id, Bytes::from_static(b"{\"hello\":1}"))
        .await;
    seen.push(("post text", outcome(&text)));
    assert_eq!(alice.next().await, Message::text("{\"hello\":1}"));
    let binary = api
        .post_to_connection(endpoint, &id, Bytes::from_static(&[0xff, 0x00, 0xfe]))
        .await;
    seen.push(("post bytes that are not UTF-8", outcome(&binary)));
    assert_eq!(alice.next().await, Message::binary(vec![0xff, 0x00, 0xfe]));
    let over = api
        .post_to_connection(endpoint, &id, Bytes::from(vec![b'x'; MAX_POST + 1]))
        .await;
    seen.push(("post 128 KB + 1", outcome(&over)));
    let at_limit = api
        .post_to_connection(endpoint, &id, Bytes::from(vec![b'y'; MAX_POST]))
        .await;
    seen.push(("post 128 KB", outcome(&at_limit)));
    match alice.next().await {
        Message::Text(t) => assert_eq!(t.len(), MAX_POST),
        other => panic!("expected the 128 KB text frame, got {other:?}"),
    }

    let info = api.get_connection(endpoint, &id).await;
    seen.push(("get", outcome(&info)));
    if let Ok(info) = info {
        assert_eq!(info.source_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(info.user_agent.as_deref(), Some("wsstack-tests/1"));
        let connected = info.connected_at.expect("connectedAt");
        assert!(info.last_active_at.expect("lastActiveAt") >= connected);
        assert!((chrono::Utc::now() - connected).num_seconds().abs() < 60);
    }

    let invalid = api
        .post_to_connection(endpoint, "not an id!", "x".into())
        .await;
    seen.push(("post to a malformed id", outcome(&invalid)));
    let unknown = api
        .post_to_connection(endpoint, "AAAAAAAAAAAAAAA=", "x".into())
        .await;
    seen.push(("post to an unknown id", outcome(&unknown)));
    let other_stage = format!("http://{}/prod", gw.local_addr());
    let forbidden = api.post_to_connection(&other_stage, &id, "x".into()).await;
    seen.push(("post on another stage's endpoint", outcome(&forbidden)));

    seen.push((
        "post to a client that never reads",
        until_throttled(gw, api).await,
    ));

    let deleted = api.delete_connection(endpoint, &id).await;
    seen.push(("delete", outcome(&deleted)));
    let close = alice.expect_close().await;
    assert_eq!(u16::from(close.code), 1000, "{close:?}");
    let post_after = api.post_to_connection(endpoint, &id, "late".into()).await;
    seen.push(("post after delete", outcome(&post_after)));
    let get_after = api.get_connection(endpoint, &id).await;
    seen.push(("get after delete", outcome(&get_after)));
    let delete_after = api.delete_connection(endpoint, &id).await;
    seen.push(("delete after delete", outcome(&delete_after)));
    seen
}

/// Posts 128 KB messages to a client that does not read until one is refused; that refusal.
async fn until_throttled(gw: &RunningGateway, api: &dyn ManagementApi) -> String {
    let before = gw.connection_ids();
    let _raw = RawClient::connect(gw, "username=stalled").await;
    let stalled = gw
        .connection_ids()
        .into_iter()
        .find(|id| !before.contains(id))
        .expect("the stalled client's connection");
    for _ in 0..200 {
        let result = api
            .post_to_connection(
                gw.callback_url(),
                &stalled,
                Bytes::from(vec![b'z'; MAX_POST]),
            )
            .await;
        if result.is_err() {
            return outcome(&result);
        }
    }
    "200 posts of 128 KB accepted by a client that does not read".to_owned()
}

fn small_outbox() -> GatewayOptions {
    GatewayOptions {
        limits: Limits {
            max_queued_bytes: 256 * 1024,
            ..Limits::default()
        },
        ..options()
    }
}

const EXPECTED: &[(&str, &str)] = &[
    ("post text", "ok"),
    ("post bytes that are not UTF-8", "ok"),
    ("post 128 KB + 1", "payload too large (413)"),
    ("post 128 KB", "ok"),
    ("get", "ok"),
    (
        "post to a malformed id",
        "400 Invalid connectionId: not an id!",
    ),
    ("post to an unknown id", "connection is gone (410)"),
    (
        "post on another stage's endpoint",
        "forbidden (403): Forbidden",
    ),
    ("post to a client that never reads", "throttled (429)"),
    ("delete", "ok"),
    ("post after delete", "connection is gone (410)"),
    ("get after delete", "connection is gone (410)"),
    ("delete after delete", "connection is gone (410)"),
];

fn expected() -> Vec<(&'static str, String)> {
    EXPECTED
        .iter()
        .map(|(k, v)| (*k, (*v).to_owned()))
        .collect()
}

/// The SDK over the port (as a Lambda reaches `@connections`) answers as API Gateway
/// documents: the reference the direct path is held to.
#[tokio::test]
async fn the_sdk_over_the_port_answers_as_api_gateway() {
    let (gw, store) = start(small_outbox()).await;
    let sdk = SdkManagementApi::new(&local_sdk_config(None).await);
    assert_eq!(answers(&gw, &store, &sdk).await, expected());
}

fn direct() -> GatewayOptions {
    GatewayOptions {
        callback_transport: CallbackTransport::Direct,
        ..small_outbox()
    }
}

/// The gateway's `direct` client answers every call as the SDK over the port does.
#[tokio::test]
async fn the_direct_client_answers_as_the_sdk_over_the_port() {
    let (gw, store) = start(direct()).await;
    let direct = gw.management_api();
    assert_eq!(answers(&gw, &store, direct.as_ref()).await, expected());
}

/// `sdk-in-process`, the default: the SDK's requests handed to the router answer the same.
#[tokio::test]
async fn the_default_sdk_in_process_client_answers_as_over_the_port() {
    assert_eq!(
        small_outbox().callback_transport,
        CallbackTransport::SdkInProcess
    );
    let (gw, store) = start(small_outbox()).await;
    let api = gw.management_api();
    assert_eq!(answers(&gw, &store, api.as_ref()).await, expected());
}

/// Once the gateway has stopped, the direct client answers an error, never a panic. The error
/// is the direct path's own (its SDK fallback would fail to connect instead): the gateway's
/// endpoint is served directly, so the answers compared above are the direct path's.
#[tokio::test]
async fn the_direct_client_of_a_stopped_gateway_answers_an_error() {
    let (gw, _store) = start(direct()).await;
    let api = gw.management_api();
    let endpoint = gw.callback_url().to_owned();
    gw.shutdown(Duration::from_secs(5)).await;
    let err = api
        .post_to_connection(&endpoint, "AAAAAAAAAAAAAAA=", "x".into())
        .await
        .expect_err("a stopped gateway");
    assert_eq!(
        err,
        ManagementError::Other("the gateway is not serving".to_owned())
    );
}

/// A POST's answer as the handlers' SDK reads it: status, `x-amzn-ErrorType` and body.
type PostAnswer = (u16, Option<String>, String);

/// `path` POSTed with `body` over the gateway's port (HTTP/1.1 on a socket).
async fn post_over_the_port(gw: &RunningGateway, path: &str, body: &[u8]) -> PostAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(gw.local_addr())
        .await
        .expect("connect to the port");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        gw.local_addr(),
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.expect("write head");
    tcp.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("answered in time")
        .expect("read the answer");
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let error_type = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("x-amzn-errortype")
            .then(|| value.trim().to_owned())
    });
    (status, error_type, body.to_owned())
}

/// `path` POSTed with `body` through the SDK's in-process transport, as the handlers' SDK
/// client hands it over.
async fn post_in_process(gw: &RunningGateway, path: &str, body: &[u8]) -> PostAnswer {
    use aws_smithy_runtime_api::client::http::HttpConnector;
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{}{path}", gw.local_addr()))
        .header("content-length", body.len())
        .body(aws_smithy_types::body::SdkBody::from(body.to_vec()))
        .expect("a request");
    let request = HttpRequest::try_from(request).expect("an SDK request");
    let response = gw
        .in_process_http_client()
        .call(request)
        .await
        .expect("an answer");
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .map(str::to_owned);
    let body = String::from_utf8_lossy(response.body().bytes().unwrap_or_default()).into_owned();
    (response.status().as_u16(), error_type, body)
}

/// The in-process transport answers a plain post without the router and every other request
/// with it: both answer every POST as the port does, status, error type and message.
#[tokio::test]
async fn the_in_process_transport_answers_every_post_as_the_port_does() {
    let (gw, store) = start(options()).await;
    let mut alice = connect(&gw, "alice").await;
    let id = id_of(&store, "alice").await;
    // As the SDKs encode an id in a path.
    let id = id
        .replace('/', "%2F")
        .replace('+', "%2B")
        .replace('=', "%3D");
    let cases: Vec<(String, &[u8], u16)> = vec![
        (format!("/dev/@connections/{id}"), b"hi", 200),
        ("/dev/@connections/AAAAAAAAAAAAAAA%3D".to_owned(), b"x", 410),
        ("/dev/@connections/not%20an%20id".to_owned(), b"x", 400),
        (format!("/prod/@connections/{id}"), b"x", 403),
        // The router's: the bare route, an escape that is not UTF-8, other shapes.
        (format!("/@connections/{id}"), b"bare", 200),
        ("/dev/@connections/%FF".to_owned(), b"x", 400),
        (format!("/dev/@connections/{id}/"), b"x", 403),
        (format!("/dev/%40connections/{id}"), b"x", 403),
    ];
    for (path, body, status) in cases {
        let port = post_over_the_port(&gw, &path, body).await;
        let in_process = post_in_process(&gw, &path, body).await;
        assert_eq!(port.0, status, "{path} over the port: {port:?}");
        assert_eq!(in_process, port, "{path}: in process, then over the port");
        if status == 200 {
            let sent = String::from_utf8_lossy(body).into_owned();
            for via in ["the port", "in process"] {
                assert_eq!(alice.next().await, Message::text(sent.clone()), "{via}");
            }
        }
    }
    // Over the port, a body over the limit is refused from its declared length, before it is
    // read (`gateway_end_to_end::a_declared_oversized_post_is_refused_before_its_body`); in
    // process, from its length.
    let over = vec![b'x'; MAX_POST + 1];
    let (status, error_type, _) =
        post_in_process(&gw, &format!("/dev/@connections/{id}"), &over).await;
    assert_eq!(
        (status, error_type.as_deref()),
        (413, Some("PayloadTooLargeException"))
    );
}
