//! The local gateway end to end: real sockets, a real WebSocket client (tokio-tungstenite), the
//! real handlers behind it, and `@connections` through the real AWS SDK client, the AWS CLI and
//! the `push` tool.

mod gateway_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata;
use aws_sdk_apigatewaymanagement::operation::delete_connection::DeleteConnectionError;
use aws_sdk_apigatewaymanagement::operation::get_connection::GetConnectionError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures::SinkExt;
use futures::stream::BoxStream;
use gateway_support::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{self, Message};
use wsstack_gateway::{Limits, RouteTable};
use wsstack_handlers::faults::{Fault, Faulty, Op, Rule};
use wsstack_handlers::store::{
    Admission, Connection, ConnectionPage, ConnectionStore, MemoryStore, MessageRate, StoreError,
};
use wsstack_routes::{DEFAULT, Route};

fn send_message(data: &str) -> Value {
    json!({"action": "sendMessage", "data": data})
}

#[tokio::test]
async fn three_clients_receive_a_broadcast() {
    let (gw, _store) = start(options()).await;
    let mut alice = connect(&gw, "alice").await;
    let mut bob = connect(&gw, "bob").await;
    let mut carol = connect(&gw, "carol").await;
    alice.send_json(send_message("hello all")).await;
    for client in [&mut alice, &mut bob, &mut carol] {
        let frame = client.next_json().await;
        assert_eq!(frame["type"], "message", "{}: {frame}", client.name);
        assert_eq!(frame["from"], "alice");
        assert_eq!(frame["data"], "hello all");
    }
}

#[tokio::test]
async fn a_direct_message_reaches_only_its_target() {
    let (gw, store) = start(options()).await;
    let mut alice = connect(&gw, "alice").await;
    let mut bob = connect(&gw, "bob").await;
    let mut carol = connect(&gw, "carol").await;
    let bob_id = id_of(&store, "bob").await;
    alice
        .send_json(json!({"action": "sendMessage", "data": "psst", "to": bob_id}))
        .await;
    let direct = bob.next_json().await;
    assert_eq!(direct["type"], "direct", "{direct}");
    assert_eq!(direct["from"], "alice");
    assert_eq!(direct["to"], bob_id.as_str());
    assert_eq!(direct["data"], "psst");
    // Whatever alice and carol receive first must be the broadcast that follows, not the
    // direct message.
    alice.send_json(send_message("everyone")).await;
    for client in [&mut alice, &mut carol, &mut bob] {
        let frame = client.next_json().await;
        assert_eq!(frame["type"], "message", "{}: {frame}", client.name);
        assert_eq!(frame["data"], "everyone");
    }
}

#[tokio::test]
async fn unmatched_messages_go_to_default() {
    let (gw, _store) = start(options()).await;
    let mut alice = connect(&gw, "alice").await;
    // Route keys match exactly, case-sensitively.
    alice
        .send_json(json!({"action": "sendmessage", "data": "x"}))
        .await;
    let frame = alice.next_json().await;
    assert_eq!(frame["type"], "error", "{frame}");
    assert_eq!(frame["code"], "unknown_action");
    assert!(
        frame["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`sendmessage`"),
        "{frame}"
    );
    // Not JSON.
    alice.send_text("hello?").await;
    let frame = alice.next_json().await;
    assert_eq!(frame["code"], "unknown_action", "{frame}");
}

#[tokio::test]
async fn without_a_default_route_the_client_gets_forbidden() {
    let routes: Vec<Route> = wsstack_routes::ROUTES
        .iter()
        .copied()
        .filter(|r| r.key != DEFAULT)
        .collect();
    let (gw, store) = start(wsstack_gateway::GatewayOptions {
        routes: RouteTable::new(routes),
        ..options()
    })
    .await;
    let mut alice = connect(&gw, "alice").await;
    let id = id_of(&store, "alice").await;
    alice.send_json(json!({"action": "nope"})).await;
    let frame = alice.next_json().await;
    assert_eq!(frame["message"], "Forbidden", "{frame}");
    assert_eq!(frame["connectionId"], id.as_str());
    assert_eq!(
        frame["requestId"].as_str().map(str::len),
        Some(16),
        "{frame}"
    );
    // Matching routes still work on that connection.
    alice.send_json(send_message("still here")).await;
    assert_eq!(alice.next_json().await["data"], "still here");
}

#[tokio::test]
async fn handler_errors_and_panics_give_internal_server_error_and_everything_lives_on() {
    // The store fails, then panics, on the sender's lookup (`get`) and admission
    // (`admit_message`, which sendMessage calls) while the plan says so.
    let store = Arc::new(Faulty::<_, StoreError>::new(MemoryStore::new()));
    let gw = start_with(options(), store.clone()).await;
    let mut alice = connect(&gw, "alice").await;
    let id = id_of(store.inner(), "alice").await;
    let failure = StoreError::Backend("injected failure".into());
    let faults = [
        ("an error", Fault::Fail(failure)),
        ("a panic", Fault::Panic),
    ];
    for (what, fault) in faults {
        store.clear();
        store.add(Rule::new(Op::Get, fault.clone()));
        store.add(Rule::new(Op::AdmitMessage, fault));
        alice.send_json(send_message("boom")).await;
        let frame = alice.next_json().await;
        assert_eq!(frame["message"], "Internal server error", "{what}: {frame}");
        assert_eq!(frame["connectionId"], id.as_str());
        assert!(frame["requestId"].is_string(), "{frame}");
    }
    store.clear();
    alice.send_json(send_message("recovered")).await;
    assert_eq!(alice.next_json().await["data"], "recovered");
    let mut bob = connect(&gw, "bob").await;
    bob.send_json(send_message("new client")).await;
    assert_eq!(bob.next_json().await["data"], "new client");
}

#[tokio::test]
async fn a_refused_connect_fails_the_handshake_with_its_status() {
    let (gw, store) = start(options()).await;
    let long = "a".repeat(65);
    for query in [
        format!("username={long}"),
        "username=a%0Ab".to_owned(),
        "username=".to_owned(),
    ] {
        let url = format!("{}?{query}", gw.ws_url());
        match try_connect(&url).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), 400, "{query}")
            }
            Err(e) => panic!("{query}: expected HTTP 400, got {e}"),
            Ok(_) => panic!("{query}: the handshake succeeded"),
        }
    }
    assert!(stored_ids(&store).await.is_empty());
    assert_eq!(gw.connection_count(), 0);
    // A good username on the same gateway still connects.
    let _ok = connect(&gw, &"a".repeat(64)).await;
    assert_eq!(gw.connection_count(), 1);
}

#[tokio::test]
async fn the_wrong_stage_or_a_plain_request_is_refused() {
    let (gw, _store) = start(options()).await;
    let url = format!("ws://{}/prod", gw.local_addr());
    match try_connect(&url).await {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status().as_u16(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
}

fn fragment(data: Vec<u8>, opcode: OpCode, last: bool) -> Message {
    Message::Frame(Frame::message(data, opcode, last))
}

/// Sends `total` bytes of a JSON text message in frames of `frame_size`.
async fn send_fragmented(client: &mut Client, total: usize, frame_size: usize) {
    let prefix = br#"{"action":"sendMessage","data":""#.to_vec();
    let suffix = br#""}"#.to_vec();
    let mut body = prefix;
    body.resize(total - suffix.len(), b'x');
    body.extend_from_slice(&suffix);
    let chunks: Vec<Vec<u8>> = body.chunks(frame_size).map(<[u8]>::to_vec).collect();
    let last = chunks.len() - 1;
    for (i, chunk) in chunks.into_iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        // A refused message closes the socket; later frames may find it gone.
        if client
            .socket()
            .feed(fragment(chunk, opcode, i == last))
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = client.socket().flush().await;
}

#[tokio::test]
async fn frames_over_32_kb_and_messages_over_128_kb_close_with_1009() {
    let (gw, store) = start(options()).await;
    let kb = 1024;

    // At the limits: a 32 KB frame, and a 128 KB message in 32 KB frames, are routed
    // (sendMessage refuses `data` over 32 KB with an error frame, which proves it ran).
    let mut ok = connect(&gw, "ok").await;
    ok.send_text(&text_of_size(32 * kb)).await;
    assert_eq!(ok.next_json().await["code"], "unknown_action");
    send_fragmented(&mut ok, 128 * kb, 32 * kb).await;
    assert_eq!(ok.next_json().await["code"], "data_too_large");

    // One frame of 32 KB + 1.
    let mut big_frame = connect(&gw, "frame").await;
    big_frame.send_text(&text_of_size(32 * kb + 1)).await;
    let close = big_frame.expect_close().await;
    assert_eq!(u16::from(close.code), 1009, "{close:?}");

    // 128 KB + 1 in frames of 32 KB.
    let mut big_message = connect(&gw, "message").await;
    send_fragmented(&mut big_message, 128 * kb + 1, 32 * kb).await;
    let close = big_message.expect_close().await;
    assert_eq!(u16::from(close.code), 1009, "{close:?}");

    // $disconnect ran for both; the good client is still connected.
    let ok_id = id_of(&store, "ok").await;
    eventually("only the good client has a record", WAIT, || {
        let store = store.clone();
        let ok_id = ok_id.clone();
        async move { stored_ids(&store).await == vec![ok_id] }
    })
    .await;
    ok.send_json(send_message("still open")).await;
    assert_eq!(ok.next_json().await["data"], "still open");
}

#[tokio::test]
async fn an_idle_connection_is_closed_and_its_record_removed() {
    let (gw, store) = start(wsstack_gateway::GatewayOptions {
        limits: Limits {
            idle_timeout: Duration::from_millis(500),
            ..Limits::default()
        },
        ..options()
    })
    .await;
    let mut idle = connect(&gw, "idle").await;
    assert_eq!(stored_ids(&store).await.len(), 1);
    let close = idle.expect_close().await;
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    eventually("the idle client's record is deleted", WAIT, || {
        let store = store.clone();
        async move { stored_ids(&store).await.is_empty() }
    })
    .await;
    assert_eq!(gw.connection_count(), 0);
}

#[tokio::test]
async fn activity_keeps_a_connection_open_until_its_maximum_duration() {
    let max = Duration::from_secs(2);
    let (gw, _store) = start(wsstack_gateway::GatewayOptions {
        limits: Limits {
            idle_timeout: Duration::from_millis(1500),
            max_connection_duration: max,
            ..Limits::default()
        },
        ..options()
    })
    .await;
    let started = Instant::now();
    let mut busy = connect(&gw, "busy").await;
    let close = loop {
        // Activity every 100 ms: the 1.5 s idle timeout never fires, the maximum does.
        busy.send(Message::Ping(Vec::new().into())).await;
        match tokio::time::timeout(Duration::from_millis(100), busy.next()).await {
            Ok(Message::Close(Some(frame))) => break frame,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => assert!(started.elapsed() < max * 4, "never closed"),
        }
    };
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    assert!(
        started.elapsed() >= max,
        "closed after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn connections_api_through_the_aws_sdk_over_the_port() {
    let (gw, store) = start(options()).await;
    let api = management_client(gw.callback_url()).await;
    connections_api_answers(&gw, &store, api).await;
}

/// The transport the handlers inside the gateway use: the same SDK requests, answered by the
/// gateway's router in process, answer exactly as over the port.
#[tokio::test]
async fn connections_api_through_the_aws_sdk_in_process() {
    let (gw, store) = start(options()).await;
    let api = in_process_management_client(&gw).await;
    connections_api_answers(&gw, &store, api).await;
}

/// POST (text and binary), GET, 413 past 128 KB, DELETE, then 410 in every operation.
async fn connections_api_answers(
    gw: &wsstack_gateway::RunningGateway,
    store: &MemoryStore,
    api: aws_sdk_apigatewaymanagement::Client,
) {
    let mut alice = connect(gw, "alice").await;
    let id = id_of(store, "alice").await;

    // POST: the raw body as a text frame; bytes that are not UTF-8 as a binary frame.
    api.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(b"{\"hello\":1}".to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("post failed: {e:?}"));
    assert_eq!(alice.next().await, Message::text("{\"hello\":1}"));
    api.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![0xff, 0x00, 0xfe]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("binary post failed: {e:?}"));
    assert_eq!(alice.next().await, Message::binary(vec![0xff, 0x00, 0xfe]));

    // GET.
    let info = api
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get failed: {e:?}"));
    let identity = info.identity().expect("identity");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));
    assert_eq!(identity.user_agent(), Some("wsstack-tests/1"));
    let connected = info.connected_at().expect("connectedAt");
    let active = info.last_active_at().expect("lastActiveAt");
    let now = chrono::Utc::now().timestamp();
    assert!((now - connected.secs()).abs() < 60, "{connected:?}");
    assert!(active.secs() >= connected.secs());

    // 413 above 128 KB; exactly 128 KB is delivered.
    let err = api
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![b'x'; 128 * 1024 + 1]))
        .send()
        .await
        .expect_err("an oversized post must fail");
    assert!(
        matches!(
            err.as_service_error(),
            Some(PostToConnectionError::PayloadTooLargeException(_))
        ),
        "{err:?}"
    );
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(413));
    api.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(vec![b'y'; 128 * 1024]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("a 128 KB post failed: {e:?}"));
    match alice.next().await {
        Message::Text(t) => assert_eq!(t.len(), 128 * 1024),
        other => panic!("expected the 128 KB text frame, got {other:?}"),
    }

    // DELETE: 204, the client sees its socket closed, $disconnect deletes the record.
    api.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete failed: {e:?}"));
    let close = alice.expect_close().await;
    assert_eq!(u16::from(close.code), 1000, "{close:?}");
    eventually("$disconnect deleted the record", WAIT, || {
        let store = store.clone();
        async move { stored_ids(&store).await.is_empty() }
    })
    .await;

    // 410 for the closed id, in every operation, and for an id that never existed.
    let err = api
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(b"late".to_vec()))
        .send()
        .await
        .expect_err("posting to a closed connection must fail");
    assert!(
        matches!(
            err.as_service_error(),
            Some(PostToConnectionError::GoneException(_))
        ),
        "{err:?}"
    );
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(410));
    let err = api
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect_err("get of a closed connection");
    assert!(
        matches!(
            err.as_service_error(),
            Some(GetConnectionError::GoneException(_))
        ),
        "{err:?}"
    );
    let err = api
        .delete_connection()
        .connection_id("AAAAAAAAAAAAAAA=")
        .send()
        .await
        .expect_err("delete of an unknown connection");
    assert!(
        matches!(
            err.as_service_error(),
            Some(DeleteConnectionError::GoneException(_))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn connections_api_also_answers_without_the_stage_prefix() {
    let (gw, store) = start(options()).await;
    let mut bob = connect(&gw, "bob").await;
    let id = id_of(&store, "bob").await;
    // An endpoint without the stage: requests go to /@connections/{id}.
    let api = management_client(&format!("http://{}", gw.local_addr())).await;
    api.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(b"bare".to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("post failed: {e:?}"));
    assert_eq!(bob.next().await, Message::text("bare"));
    // The wrong stage is refused.
    let wrong = management_client(&format!("http://{}/prod", gw.local_addr())).await;
    let err = wrong
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(b"x".to_vec()))
        .send()
        .await
        .expect_err("wrong stage");
    assert_eq!(err.code(), Some("ForbiddenException"), "{err:?}");
}

/// A POST whose `Content-Length` declares more than 128 KB is answered 413 from its headers,
/// before the gateway reads (or the client sends) a byte of the body.
#[tokio::test]
async fn a_declared_oversized_post_is_refused_before_its_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (gw, store) = start(options()).await;
    let _carol = connect(&gw, "carol").await;
    let id = id_of(&store, "carol").await;
    let mut raw = tokio::net::TcpStream::connect(gw.local_addr())
        .await
        .expect("connect");
    // Ids are base64: `/`, `+` and `=` are percent-encoded in a path, as the SDKs do.
    let id: String = id
        .chars()
        .map(|c| match c {
            '/' => "%2F".to_owned(),
            '+' => "%2B".to_owned(),
            '=' => "%3D".to_owned(),
            c => c.to_string(),
        })
        .collect();
    let head = format!(
        "POST /dev/@connections/{id} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        gw.local_addr(),
        128 * 1024 + 1
    );
    raw.write_all(head.as_bytes()).await.expect("write head");
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-amzn-errortype: payloadtoolargeexception"),
        "{answer}"
    );
}

/// A store whose `put` (the `$connect` handler's write) waits for the test's go-ahead, holding
/// the handshake inside `$connect`.
struct GatedStore {
    inner: MemoryStore,
    entered: tokio::sync::mpsc::UnboundedSender<String>,
    gate: tokio::sync::Semaphore,
}

#[async_trait]
impl ConnectionStore for GatedStore {
    async fn put(&self, c: &Connection) -> Result<(), StoreError> {
        let _ = self.entered.send(c.connection_id.clone());
        let permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        permit.forget();
        self.inner.put(c).await
    }
    async fn get(&self, id: &str) -> Result<Option<Connection>, StoreError> {
        self.inner.get(id).await
    }
    async fn admit_message(
        &self,
        id: &str,
        now_ms: i64,
        rate: MessageRate,
    ) -> Result<Admission, StoreError> {
        self.inner.admit_message(id, now_ms, rate).await
    }
    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete(id).await
    }
    fn list(&self) -> BoxStream<'_, Result<Connection, StoreError>> {
        self.inner.list()
    }
    async fn page(&self, after: Option<&str>, limit: usize) -> Result<ConnectionPage, StoreError> {
        self.inner.page(after, limit).await
    }
}

#[tokio::test]
async fn a_connection_inside_connect_is_gone_to_the_connections_api() {
    let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
    let store = Arc::new(GatedStore {
        inner: MemoryStore::new(),
        entered: entered_tx,
        gate: tokio::sync::Semaphore::new(0),
    });
    let gw = start_with(options(), store.clone()).await;
    let api = management_client(gw.callback_url()).await;
    let url = url_for(&gw, "waiting");
    let handshake = tokio::spawn(async move { try_connect(&url).await });
    let id = tokio::time::timeout(WAIT, entered.recv())
        .await
        .expect("$connect did not start")
        .expect("store dropped");
    let err = api
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(b"too early".to_vec()))
        .send()
        .await
        .expect_err("a connection inside $connect must be gone");
    assert!(
        matches!(
            err.as_service_error(),
            Some(PostToConnectionError::GoneException(_))
        ),
        "{err:?}"
    );
    assert!(
        !handshake.is_finished(),
        "the handshake completed before the verdict"
    );
    store.gate.add_permits(1);
    let ws = tokio::time::timeout(WAIT, handshake)
        .await
        .expect("handshake did not finish")
        .expect("handshake task panicked")
        .unwrap_or_else(|e| panic!("handshake failed: {e}"));
    api.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(b"now".to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("post after the verdict failed: {e:?}"));
    let mut client = gateway_support::Client::from_socket("waiting", ws);
    assert_eq!(client.next().await, Message::text("now"));
}

#[tokio::test]
async fn the_aws_cli_manages_connections() {
    let (gw, store) = start(options()).await;
    let mut carol = connect(&gw, "carol").await;
    let id = id_of(&store, "carol").await;
    let aws = std::path::Path::new("aws");
    let endpoint = gw.callback_url().to_owned();
    let cli = |op: &'static str, extra: Vec<String>| {
        let mut args = vec![
            "apigatewaymanagementapi".to_owned(),
            op.to_owned(),
            "--endpoint-url".to_owned(),
            endpoint.clone(),
            "--connection-id".to_owned(),
            id.clone(),
        ];
        args.extend(extra);
        args
    };

    let args = cli(
        "post-to-connection",
        vec!["--data".into(), "hello from the CLI".into()],
    );
    let (ok, _, err) = run_tool(aws, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(ok, "post-to-connection failed: {err}");
    assert_eq!(carol.next().await, Message::text("hello from the CLI"));

    let args = cli("get-connection", vec![]);
    let (ok, out, err) = run_tool(aws, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(ok, "get-connection failed: {err}");
    let info: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(info["Identity"]["SourceIp"], "127.0.0.1", "{out}");
    assert!(info["ConnectedAt"].is_string(), "{out}");

    let args = cli("delete-connection", vec![]);
    let (ok, _, err) = run_tool(aws, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(ok, "delete-connection failed: {err}");
    assert_eq!(u16::from(carol.expect_close().await.code), 1000);

    let args = cli("post-to-connection", vec!["--data".into(), "late".into()]);
    let (ok, _, err) = run_tool(aws, &args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert!(!ok, "posting to a deleted connection succeeded");
    assert!(err.contains("GoneException"), "{err}");
}

#[tokio::test]
async fn the_push_tool_reaches_a_client() {
    let (gw, store) = start(options()).await;
    let mut dave = connect(&gw, "dave").await;
    let id = id_of(&store, "dave").await;
    let push = push_binary();
    let base = format!("http://{}", gw.local_addr());
    let (ok, out, err) = run_tool(
        &push,
        &[
            "--endpoint",
            &base,
            "--stage",
            gw.stage(),
            "--connection-id",
            &id,
            "--data",
            "maintenance soon",
        ],
    )
    .await;
    assert!(ok, "push failed: {out}{err}");
    let frame = dave.next_json().await;
    assert_eq!(frame["type"], "push", "{frame}");
    assert_eq!(frame["data"], "maintenance soon");

    let (ok, out, err) = run_tool(
        &push,
        &[
            "--endpoint",
            &base,
            "--stage",
            gw.stage(),
            "--connection-id",
            &id,
            "--data",
            "raw!",
            "--raw",
        ],
    )
    .await;
    assert!(ok, "push --raw failed: {out}{err}");
    assert_eq!(dave.next().await, Message::text("raw!"));

    // A gone connection is an error of the tool.
    let (ok, _, err) = run_tool(
        &push,
        &[
            "--endpoint",
            &base,
            "--stage",
            gw.stage(),
            "--connection-id",
            "AAAAAAAAAAAAAAA=",
            "--data",
            "x",
        ],
    )
    .await;
    assert!(!ok, "push to an unknown connection succeeded");
    assert!(err.contains("410") || err.contains("gone"), "{err}");
}

#[tokio::test]
async fn shutdown_closes_every_client_with_1001_and_runs_disconnect() {
    let (gw, store) = start(options()).await;
    let mut clients = Vec::new();
    for name in ["a1", "a2", "a3"] {
        clients.push(connect(&gw, name).await);
    }
    assert_eq!(stored_ids(&store).await.len(), 3);
    let shutdown = tokio::spawn(gw.shutdown(WAIT));
    for client in &mut clients {
        let close = client.expect_close().await;
        assert_eq!(u16::from(close.code), 1001, "{}: {close:?}", client.name);
    }
    // Clients answer the close as they drop.
    drop(clients);
    let report = tokio::time::timeout(WAIT * 2, shutdown)
        .await
        .expect("shutdown did not finish")
        .expect("shutdown panicked");
    assert_eq!(report.closed, 3);
    assert!(report.drained, "{report:?}");
    // Every $disconnect ran before shutdown returned.
    assert!(stored_ids(&store).await.is_empty());
}

#[tokio::test]
async fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let err = wsstack_gateway::Gateway::bind(
        wsstack_gateway::GatewayOptions { port, ..options() },
        Arc::new(MemoryStore::new()),
    )
    .await
    .expect_err("binding a taken port must fail");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("already in use"), "{text}");
}

#[tokio::test]
async fn churn_leaves_exactly_the_live_connections_in_the_store() {
    let (gw, store) = start(options()).await;
    let mut live = Vec::new();
    for i in 0..10 {
        live.push(connect(&gw, &format!("live{i}")).await);
    }
    // 1,000 clients in waves of 100 (so a low fd limit is never reached): half close cleanly,
    // half vanish with a TCP reset.
    for wave in 0..10 {
        let mut clients = futures::future::join_all((0..100).map(|i| {
            let url = url_for(&gw, &format!("churn{wave}-{i}"));
            async move { try_connect(&url).await }
        }))
        .await
        .into_iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(ws) => Client::from_socket(&format!("churn{wave}-{i}"), ws),
            Err(e) => panic!("churn client {wave}-{i} could not connect: {e}"),
        })
        .collect::<Vec<_>>();
        let killed = clients.split_off(50);
        for c in killed {
            c.kill();
        }
        futures::future::join_all(clients.into_iter().map(Client::close)).await;
    }
    let mut expected: Vec<String> = Vec::new();
    for c in &live {
        expected.push(id_of(&store, &c.name).await);
    }
    expected.sort();
    eventually(
        "the store holds exactly the 10 live connections",
        WAIT * 3,
        || {
            let store = store.clone();
            let expected = expected.clone();
            async move { stored_ids(&store).await == expected }
        },
    )
    .await;
    let mut registered = gw.connection_ids();
    registered.sort();
    assert_eq!(registered, expected);
    // The survivors still work.
    live[0].send_json(send_message("survivors")).await;
    for c in &mut live {
        assert_eq!(c.next_json().await["data"], "survivors", "{}", c.name);
    }
}
