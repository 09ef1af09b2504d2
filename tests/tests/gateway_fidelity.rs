//! The local gateway against what AWS documents for API Gateway WebSocket APIs: binary frames,
//! clients that stop reading, failing and slow integrations, `@connections` ids, outbound frame
//! sizes, idle activity, subprotocols, and every field of the events handlers receive.
//!
//! Real sockets throughout: tokio-tungstenite clients, a bare TCP client where a client must
//! misbehave, `@connections` through the AWS SDK. Handlers are the real ones, recorded with an
//! `EventLog`, except where a stub integration stands in for a failing or slow function.

mod gateway_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use gateway_support::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use wsstack_gateway::{EventLog, GatewayOptions, Limits, Timeouts};
use wsstack_routes::Handler;

/// Short deadlines, so that tests of them take seconds.
fn short_limits(idle: Duration, max: Duration) -> Limits {
    Limits {
        idle_timeout: idle,
        max_connection_duration: max,
        close_timeout: Duration::from_millis(500),
        max_queued_bytes: 256 * 1024,
        ..Limits::default()
    }
}

/// Options with an event log, returned alongside.
fn logged(options: GatewayOptions) -> (GatewayOptions, EventLog) {
    let log = EventLog::new();
    (
        GatewayOptions {
            event_log: Some(log.clone()),
            ..options
        },
        log,
    )
}

fn ctx(event: &ApiGatewayWebsocketProxyRequest) -> Value {
    serde_json::to_value(&event.request_context).expect("requestContext serializes")
}

fn disconnect_code(event: &ApiGatewayWebsocketProxyRequest) -> (Option<i64>, Option<&str>) {
    (
        event.request_context.disconnect_status_code,
        event.request_context.disconnect_reason.as_deref(),
    )
}

/// "If a client app sends a binary frame, API Gateway rejects it and disconnects the client with
/// code 1003" (https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-develop-binary-media-types.html).
#[tokio::test]
async fn a_binary_frame_closes_the_connection_with_1003_and_disconnect_reports_it() {
    let (options, log) = logged(options());
    let (gw, store) = start(options).await;
    let mut alice = connect(&gw, "alice").await;
    let id = id_of(&store, "alice").await;
    alice.send(Message::binary(vec![0u8, 159, 146, 150])).await;
    let close = alice.expect_close().await;
    assert_eq!(u16::from(close.code), 1003, "{close:?}");
    let event = wait_for_event(&log, "DISCONNECT", Some(&id), WAIT).await;
    assert_eq!(disconnect_code(&event).0, Some(1003));
    // The frame was never routed.
    let routed: Vec<_> = log
        .events()
        .into_iter()
        .filter(|(_, e)| e.request_context.event_type.as_deref() == Some("MESSAGE"))
        .collect();
    assert!(routed.is_empty(), "{routed:?}");
    eventually("$disconnect deleted the record", WAIT, || {
        let store = store.clone();
        async move { stored_ids(&store).await.is_empty() }
    })
    .await;
}

/// Posts 128 KB messages to `id` until the gateway throttles (429); returns when the last
/// accepted post was answered. Panics if no 429 comes within `max_posts`.
async fn post_until_throttled(
    api: &aws_sdk_apigatewaymanagement::Client,
    id: &str,
    max_posts: usize,
) -> Instant {
    let mut last_accepted = Instant::now();
    for n in 0..max_posts {
        let result = api
            .post_to_connection()
            .connection_id(id)
            .data(Blob::new(vec![b'z'; 128 * 1024]))
            .send()
            .await;
        match result {
            Ok(_) => last_accepted = Instant::now(),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                assert_eq!(status, Some(429), "post {n}: {e:?}");
                assert_eq!(
                    e.as_service_error().and_then(|e| {
                        aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata::code(e)
                    }),
                    Some("LimitExceededException")
                );
                // The queue stays full: the next post is throttled too.
                let again = api
                    .post_to_connection()
                    .connection_id(id)
                    .data(Blob::new(b"more".to_vec()))
                    .send()
                    .await
                    .expect_err("a full queue keeps throttling");
                assert_eq!(again.raw_response().map(|r| r.status().as_u16()), Some(429));
                return last_accepted;
            }
        }
    }
    panic!("{max_posts} posts of 128 KB were all accepted by a client that does not read");
}

#[tokio::test]
async fn a_client_that_never_reads_is_still_closed_at_its_idle_deadline() {
    let idle = Duration::from_secs(1);
    let (options, log) = logged(GatewayOptions {
        limits: short_limits(idle, Duration::from_secs(3600)),
        ..options()
    });
    let (gw, _store) = start(options).await;
    let _raw = RawClient::connect(&gw, "username=stalled").await;
    let id = gw.connection_ids().pop().expect("one connection");
    let api = management_client(gw.callback_url()).await;
    let last_accepted = post_until_throttled(&api, &id, 200).await;
    let event = wait_for_event(&log, "DISCONNECT", Some(&id), WAIT).await;
    let after = last_accepted.elapsed();
    assert_eq!(disconnect_code(&event), (Some(1001), Some("Going away")));
    // Closed by the idle deadline (plus the close timeout), not by anything later.
    assert!(
        after < idle + Duration::from_secs(3),
        "closed {after:?} after the last post"
    );
    assert_eq!(gw.connection_count(), 0);
    let err = api
        .post_to_connection()
        .connection_id(&id)
        .data(Blob::new(b"late".to_vec()))
        .send()
        .await
        .expect_err("the connection is gone");
    assert!(
        err.as_service_error()
            .is_some_and(PostToConnectionError::is_gone_exception)
    );
}

#[tokio::test]
async fn a_client_that_never_reads_but_pings_is_closed_at_its_maximum_duration() {
    let max = Duration::from_secs(6);
    let (options, log) = logged(GatewayOptions {
        limits: short_limits(Duration::from_secs(3600), max),
        ..options()
    });
    let (gw, _store) = start(options).await;
    let started = Instant::now();
    let mut raw = RawClient::connect(&gw, "username=pinger").await;
    let id = gw.connection_ids().pop().expect("one connection");
    let api = management_client(gw.callback_url()).await;
    post_until_throttled(&api, &id, 200).await;
    // Keep sending (so the connection is never idle) and never read.
    let pinging = tokio::spawn(async move {
        loop {
            raw.send_frame(Frame::ping(b"still here".to_vec())).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let event = wait_for_event(&log, "DISCONNECT", Some(&id), WAIT).await;
    pinging.abort();
    let after = started.elapsed();
    assert_eq!(disconnect_code(&event), (Some(1001), Some("Going away")));
    assert!(
        after >= max,
        "closed after {after:?}, before the maximum duration"
    );
    assert!(
        after < max + Duration::from_secs(3),
        "closed only after {after:?}"
    );
}

#[tokio::test]
async fn delete_closes_a_client_that_never_reads() {
    let (options, log) = logged(GatewayOptions {
        limits: short_limits(Duration::from_secs(3600), Duration::from_secs(3600)),
        ..options()
    });
    let (gw, _store) = start(options).await;
    let _raw = RawClient::connect(&gw, "username=stalled").await;
    let id = gw.connection_ids().pop().expect("one connection");
    let api = management_client(gw.callback_url()).await;
    post_until_throttled(&api, &id, 200).await;
    let deleted = Instant::now();
    api.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete failed: {e:?}"));
    let event = wait_for_event(&log, "DISCONNECT", Some(&id), WAIT).await;
    assert_eq!(disconnect_code(&event).0, Some(1000));
    assert!(
        deleted.elapsed() < Duration::from_secs(3),
        "{:?}",
        deleted.elapsed()
    );
    assert_eq!(gw.connection_count(), 0);
}

/// How a client that never reads ends: at its deadline, by DELETE, or at shutdown.
#[derive(Debug, Clone, Copy)]
enum StalledEnd {
    Deadline,
    Delete,
    Shutdown,
}

/// A client that never reads (its receive window full, the gateway's send buffer full behind
/// it) must lose its TCP socket, not only its registration, when the gateway ends the
/// connection: `$disconnect` follows the close timeout, so by then the server's side is gone
/// and the client, once it reads, sees the end of the stream (or a reset). Before issue 18
/// (item 12) the session ran `$disconnect` but the socket stayed ESTABLISHED until the process
/// exited.
async fn stalled_client_loses_its_socket(how: StalledEnd) {
    let (options, log) = logged(GatewayOptions {
        limits: short_limits(Duration::from_secs(1), Duration::from_secs(3600)),
        ..options()
    });
    // Only the deadline test lets the idle timeout end the connection.
    let options = match how {
        StalledEnd::Deadline => options,
        _ => GatewayOptions {
            limits: short_limits(Duration::from_secs(3600), Duration::from_secs(3600)),
            ..options
        },
    };
    let (gw, _store) = start(options).await;
    let mut raw = RawClient::connect(&gw, "username=stalled").await;
    let id = gw.connection_ids().pop().expect("one connection");
    let api = management_client(gw.callback_url()).await;
    post_until_throttled(&api, &id, 200).await;
    let mut running = Some(gw);
    match how {
        StalledEnd::Deadline => {}
        StalledEnd::Delete => {
            api.delete_connection()
                .connection_id(&id)
                .send()
                .await
                .unwrap_or_else(|e| panic!("delete failed: {e:?}"));
        }
        StalledEnd::Shutdown => {
            let gw = running.take().expect("gateway");
            let report = gw.shutdown(WAIT).await;
            assert_eq!(report.closed, 1, "{report:?}");
            assert!(report.drained, "{report:?}");
        }
    }
    let event = wait_for_event(&log, "DISCONNECT", Some(&id), WAIT).await;
    let expected = match how {
        StalledEnd::Delete => 1000,
        _ => 1001,
    };
    assert_eq!(disconnect_code(&event).0, Some(expected));
    // While the client still does not read, the gateway's end must be gone: a graceful close
    // would leave it in FIN_WAIT1 behind the unsent frames (the FIN waits for a window the
    // client never opens), holding its buffers for as long as the client keeps acknowledging
    // zero-window probes.
    eventually("the gateway let go of the socket", WAIT, || {
        let state = raw.server_side_tcp_state();
        async move { state.is_none() }
    })
    .await;
    // The client sees the end too, once it reads.
    match raw.read_until_closed(WAIT).await {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    drop(running);
}

#[tokio::test]
async fn the_socket_of_a_client_that_never_reads_is_closed_at_its_deadline() {
    stalled_client_loses_its_socket(StalledEnd::Deadline).await;
}

#[tokio::test]
async fn the_socket_of_a_client_that_never_reads_is_closed_on_delete() {
    stalled_client_loses_its_socket(StalledEnd::Delete).await;
}

#[tokio::test]
async fn the_socket_of_a_client_that_never_reads_is_closed_at_shutdown() {
    stalled_client_loses_its_socket(StalledEnd::Shutdown).await;
}

/// Messages posted to a client count as activity for the idle timeout (see `Activity::touch`
/// in the gateway's session for the sources).
#[tokio::test]
async fn posts_to_a_client_keep_it_from_idling_out() {
    let idle = Duration::from_millis(1500);
    let (options, log) = logged(GatewayOptions {
        limits: short_limits(idle, Duration::from_secs(3600)),
        ..options()
    });
    let (gw, store) = start(options).await;
    let mut alice = connect(&gw, "alice").await;
    let id = id_of(&store, "alice").await;
    let api = management_client(gw.callback_url()).await;
    // Posts for twice the idle timeout, the client silent but reading.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < idle * 2 {
        api.post_to_connection()
            .connection_id(&id)
            .data(Blob::new(format!("tick {n}").into_bytes()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("post {n} failed after {:?}: {e:?}", started.elapsed()));
        assert_eq!(alice.next().await, Message::text(format!("tick {n}")));
        n += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Then silence both ways: the idle timeout closes it.
    let close = alice.expect_close().await;
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    let event = wait_for_event(&log, "DISCONNECT", Some(&id), WAIT).await;
    assert_eq!(disconnect_code(&event).0, Some(1001));
}

/// "Because of the WebSocket frame size quota of 32 KB, a message larger than 32 KB must be
/// split into multiple frames, each 32 KB or smaller. This applies to @connections commands."
/// (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html)
#[tokio::test]
async fn posts_over_32_kb_reach_the_client_as_frames_of_at_most_32_kb() {
    let (gw, _store) = start(options()).await;
    let mut raw = RawClient::connect(&gw, "username=reader").await;
    let id = gw.connection_ids().pop().expect("one connection");
    let api = management_client(gw.callback_url()).await;
    let data: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    api.post_to_connection()
        .connection_id(&id)
        .data(Blob::new(data.clone()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("post failed: {e:?}"));
    let mut frames = Vec::new();
    let mut received = Vec::new();
    loop {
        let (opcode, fin, payload) = raw.read_frame().await;
        frames.push((opcode, fin, payload.len()));
        received.extend_from_slice(&payload);
        if fin {
            break;
        }
    }
    assert_eq!(received, data);
    assert!(frames.len() >= 4, "{frames:?}");
    assert!(
        frames.iter().all(|(_, _, len)| *len <= 32 * 1024),
        "{frames:?}"
    );
    // A text message: opcode 1, then continuations (0).
    assert_eq!(frames[0].0, 1, "{frames:?}");
    assert!(frames[1..].iter().all(|(op, _, _)| *op == 0), "{frames:?}");
}

/// The stand-in for a `$connect` handler that answers with a subprotocol, as AWS's example
/// does (https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-connect-route-subprotocol.html).
#[tokio::test]
async fn the_connect_answers_subprotocol_header_reaches_the_101() {
    let mut stub = StubIntegration::ok();
    stub.response.headers.insert(
        "sec-websocket-protocol",
        "wsstack.v1".parse().expect("header"),
    );
    let (gw, _store) = start(GatewayOptions {
        integration: Some(Arc::new(stub)),
        ..options()
    })
    .await;
    let mut request = gw.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "wsstack.v1, other".parse().expect("header"),
    );
    let (_ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("handshake timed out")
        .expect("handshake failed");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("wsstack.v1")
    );
}

/// The real `$connect` handler negotiates `wsstack.v1`; the gateway passes its answer on to the
/// 101, and its 400 for an unsupported subprotocol refuses the handshake.
#[tokio::test]
async fn the_real_connect_handler_negotiates_the_subprotocol_through_the_gateway() {
    let (gw, store) = start(options()).await;
    let offer = |protocols: &str| {
        let mut request = url_for(&gw, "proto")
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().expect("header"));
        request
    };
    let offered = format!("chat1, {}", wsstack_handlers::domain::SUBPROTOCOL);
    let (_ws, response) =
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(offer(&offered)))
            .await
            .expect("handshake timed out")
            .expect("handshake failed");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some(wsstack_handlers::domain::SUBPROTOCOL)
    );
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(offer("chat1"))).await {
        Ok(Err(tungstenite::Error::Http(r))) => assert_eq!(r.status().as_u16(), 400),
        other => panic!(
            "expected a 400 refusal, got {:?}",
            other.map(|r| r.map(|_| ()))
        ),
    }
    assert_eq!(stored_ids(&store).await.len(), 1);
}

async fn handshake_status(gw: &wsstack_gateway::RunningGateway) -> u16 {
    match try_connect(&gw.ws_url()).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("the handshake succeeded"),
    }
}

#[tokio::test]
async fn a_failing_or_panicking_connect_refuses_the_handshake_with_502() {
    for (fail, panic) in [
        (vec![Handler::Connect], vec![]),
        (vec![], vec![Handler::Connect]),
    ] {
        let stub = StubIntegration {
            fail,
            panic,
            ..StubIntegration::ok()
        };
        let (gw, _store) = start(GatewayOptions {
            integration: Some(Arc::new(stub)),
            ..options()
        })
        .await;
        assert_eq!(handshake_status(&gw).await, 502);
        assert_eq!(gw.connection_count(), 0);
    }
}

/// A gateway with a 300 ms integration timeout whose `handler` takes 30 s.
async fn start_with_slow(handler: Handler) -> wsstack_gateway::RunningGateway {
    let stub = StubIntegration {
        slow: vec![(handler, Duration::from_secs(30))],
        ..StubIntegration::ok()
    };
    let (gw, _store) = start(GatewayOptions {
        integration: Some(Arc::new(stub)),
        timeouts: Timeouts {
            integration: Duration::from_millis(300),
            ..Timeouts::default()
        },
        ..options()
    })
    .await;
    gw
}

#[tokio::test]
async fn a_slow_connect_refuses_the_handshake_with_504_at_the_integration_timeout() {
    let gw = start_with_slow(Handler::Connect).await;
    let started = Instant::now();
    assert_eq!(handshake_status(&gw).await, 504);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_message_route_gets_endpoint_request_timed_out_and_the_connection_lives_on() {
    let gw = start_with_slow(Handler::SendMessage).await;
    let mut alice = connect(&gw, "alice").await;
    let id = gw.connection_ids().pop().expect("one connection");
    alice
        .send_json(json!({"action": "sendMessage", "data": "slow"}))
        .await;
    let frame = alice.next_json().await;
    assert_eq!(frame["message"], "Endpoint request timed out", "{frame}");
    assert_eq!(frame["connectionId"], id.as_str());
    assert!(frame["requestId"].is_string(), "{frame}");
    assert_eq!(gw.connection_count(), 1);
}

#[tokio::test]
async fn connections_api_answers_400_for_a_malformed_id_and_410_for_an_unknown_one() {
    let (gw, _store) = start(options()).await;
    let api = management_client(gw.callback_url()).await;
    for bad in [
        "abc",
        "AAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAA=AA=",
        "AAAAAAAAAAAAAA-=",
    ] {
        let err = api
            .post_to_connection()
            .connection_id(bad)
            .data(Blob::new(b"x".to_vec()))
            .send()
            .await
            .expect_err("a malformed id must fail");
        assert_eq!(
            err.raw_response().map(|r| r.status().as_u16()),
            Some(400),
            "{bad}"
        );
        let code = err
            .as_service_error()
            .and_then(aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata::code);
        assert_eq!(code, Some("BadRequestException"), "{bad}");
        let message = err
            .as_service_error()
            .and_then(aws_sdk_apigatewaymanagement::error::ProvideErrorMetadata::message)
            .unwrap_or_default()
            .to_owned();
        assert!(
            message.contains("Invalid connectionId") && message.contains(bad),
            "{message}"
        );
        let err = api
            .delete_connection()
            .connection_id(bad)
            .send()
            .await
            .expect_err("a malformed id must fail");
        assert_eq!(
            err.raw_response().map(|r| r.status().as_u16()),
            Some(400),
            "{bad}"
        );
    }
    let err = api
        .get_connection()
        .connection_id("AAAAAAAAAAAAAAA=")
        .send()
        .await
        .expect_err("an unknown id must fail");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(410));
}

/// Every `requestContext` field of the three event types, through the real handlers, checked
/// against what API Gateway sends (AWS's example events in `aws_lambda_events`:
/// `example-apigw-websocket-request-without-method.json` for CONNECT,
/// `example-apigw-websocket-request-disconnect-route.json` for DISCONNECT).
#[tokio::test]
async fn every_request_context_field_of_connect_message_and_disconnect() {
    let (options, log) = logged(options());
    let (gw, store) = start(options).await;
    let before = chrono::Utc::now().timestamp_millis();
    let mut alice = connect(&gw, "alice").await;
    let id = id_of(&store, "alice").await;
    alice
        .send_json(json!({"action": "sendMessage", "data": "hi"}))
        .await;
    assert_eq!(alice.next_json().await["data"], "hi");
    alice
        .socket()
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .expect("close");
    let disconnect = wait_for_event(&log, "DISCONNECT", Some(&id), WAIT).await;
    let connect = wait_for_event(&log, "CONNECT", Some(&id), WAIT).await;
    let message = wait_for_event(&log, "MESSAGE", Some(&id), WAIT).await;
    let after = chrono::Utc::now().timestamp_millis();
    let host = gw.local_addr().to_string();

    let mut connected_at = None;
    for (event, route, event_type) in [
        (&connect, "$connect", "CONNECT"),
        (&message, "sendMessage", "MESSAGE"),
        (&disconnect, "$disconnect", "DISCONNECT"),
    ] {
        let c = ctx(event);
        assert_eq!(c["routeKey"], route, "{c}");
        assert_eq!(c["eventType"], event_type, "{c}");
        assert_eq!(c["messageDirection"], "IN", "{c}");
        assert_eq!(c["connectionId"], id.as_str(), "{c}");
        assert_eq!(c["stage"], "dev", "{c}");
        assert_eq!(c["apiId"], "wsstacklcl", "{c}");
        assert_eq!(c["domainName"], host.as_str(), "{c}");
        assert_eq!(c["identity"]["sourceIp"], "127.0.0.1", "{c}");
        assert_eq!(c["identity"]["userAgent"], "wsstack-tests/1", "{c}");
        let request_id = c["requestId"].as_str().expect("requestId");
        assert_eq!(request_id.len(), 16, "{c}");
        assert!(request_id.ends_with('='), "{c}");
        assert_eq!(c["extendedRequestId"], request_id, "{c}");
        let at = c["connectedAt"].as_i64().expect("connectedAt");
        assert!((before..=after).contains(&at), "{c}");
        assert_eq!(
            *connected_at.get_or_insert(at),
            at,
            "connectedAt differs: {c}"
        );
        let time = c["requestTimeEpoch"].as_i64().expect("requestTimeEpoch");
        assert!(time >= at && time <= after, "{c}");
        // `dd/Mon/yyyy:HH:mm:ss +0000`, the same instant as requestTimeEpoch.
        let text = c["requestTime"].as_str().expect("requestTime");
        let parsed = chrono::DateTime::parse_from_str(text, "%d/%b/%Y:%H:%M:%S %z")
            .unwrap_or_else(|e| panic!("requestTime {text:?}: {e}"));
        assert_eq!(parsed.timestamp(), time / 1000, "{c}");
        let is_message = event_type == "MESSAGE";
        assert_eq!(c["messageId"].is_string(), is_message, "{c}");
        let is_disconnect = event_type == "DISCONNECT";
        assert_eq!(c["disconnectStatusCode"].is_number(), is_disconnect, "{c}");
        assert_eq!(c["disconnectReason"].is_string(), is_disconnect, "{c}");
        assert!(!event.is_base64_encoded);
    }
    assert_ne!(ctx(&message)["messageId"], ctx(&message)["requestId"]);
    assert_eq!(
        message.body.as_deref(),
        Some(r#"{"action":"sendMessage","data":"hi"}"#)
    );
    assert_eq!(disconnect_code(&disconnect), (Some(1000), Some("bye")));

    // $connect: the handshake's headers with API Gateway's X-Forwarded-*, and the query.
    let h = &connect.headers;
    assert_eq!(
        h.get("host").and_then(|v| v.to_str().ok()),
        Some(host.as_str())
    );
    assert_eq!(
        h.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        Some("127.0.0.1")
    );
    let port = gw.local_addr().port().to_string();
    assert_eq!(
        h.get("x-forwarded-port").and_then(|v| v.to_str().ok()),
        Some(port.as_str())
    );
    assert!(h.contains_key("sec-websocket-key"), "{h:?}");
    assert_eq!(
        connect.query_string_parameters.first("username"),
        Some("alice")
    );
    // $disconnect: Host and the empty headers of AWS's example disconnect event.
    let h = &disconnect.headers;
    assert_eq!(
        h.get("host").and_then(|v| v.to_str().ok()),
        Some(host.as_str())
    );
    for empty in ["x-api-key", "x-forwarded-for", "x-restapi"] {
        assert_eq!(
            h.get(empty).and_then(|v| v.to_str().ok()),
            Some(""),
            "{empty}: {h:?}"
        );
    }
}

/// `disconnectStatusCode` and `disconnectReason` for each way a connection ends. AWS's example
/// event gives 1005 / "Client-side close frame status not set" for a client close without a
/// status; the binary-frame code is documented (1003); idle, maximum duration and shutdown use
/// 1001 (going away, RFC 6455), DELETE 1000.
#[tokio::test]
async fn disconnect_status_for_client_close_idle_delete_binary_and_shutdown() {
    let (main_options, log) = logged(options());
    let (gw, store) = start(main_options).await;
    let api = management_client(gw.callback_url()).await;
    // Idle, on a gateway of its own with a short idle timeout.
    let (idle_options, idle_log) = logged(GatewayOptions {
        limits: short_limits(Duration::from_secs(1), Duration::from_secs(3600)),
        ..options()
    });
    let (idle_gw, idle_store) = start(idle_options).await;
    let mut idle = connect(&idle_gw, "idle").await;
    let idle_id = id_of(&idle_store, "idle").await;
    assert_eq!(u16::from(idle.expect_close().await.code), 1001);
    let e = wait_for_event(&idle_log, "DISCONNECT", Some(&idle_id), WAIT).await;
    assert_eq!(disconnect_code(&e), (Some(1001), Some("Going away")));

    // A client close without a status.
    let mut plain = connect(&gw, "plain").await;
    let plain_id = id_of(&store, "plain").await;
    plain.socket().close(None).await.expect("close");
    let e = wait_for_event(&log, "DISCONNECT", Some(&plain_id), WAIT).await;
    assert_eq!(
        disconnect_code(&e),
        (Some(1005), Some("Client-side close frame status not set"))
    );

    // DELETE.
    let mut deleted = connect(&gw, "deleted").await;
    let deleted_id = id_of(&store, "deleted").await;
    api.delete_connection()
        .connection_id(&deleted_id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("delete failed: {e:?}"));
    assert_eq!(u16::from(deleted.expect_close().await.code), 1000);
    let e = wait_for_event(&log, "DISCONNECT", Some(&deleted_id), WAIT).await;
    assert_eq!(
        disconnect_code(&e),
        (Some(1000), Some("Connection deleted"))
    );

    // Binary.
    let mut binary = connect(&gw, "binary").await;
    let binary_id = id_of(&store, "binary").await;
    binary.send(Message::binary(vec![1, 2, 3])).await;
    assert_eq!(u16::from(binary.expect_close().await.code), 1003);
    let e = wait_for_event(&log, "DISCONNECT", Some(&binary_id), WAIT).await;
    assert_eq!(
        disconnect_code(&e),
        (Some(1003), Some("Binary frames are not supported"))
    );

    // Shutdown.
    let mut last = connect(&gw, "last").await;
    let last_id = id_of(&store, "last").await;
    let report = gw.shutdown(WAIT).await;
    assert!(report.drained, "{report:?}");
    assert_eq!(u16::from(last.expect_close().await.code), 1001);
    let e = wait_for_event(&log, "DISCONNECT", Some(&last_id), WAIT).await;
    assert_eq!(disconnect_code(&e), (Some(1001), Some("Going away")));
}

#[tokio::test]
async fn the_event_log_records_every_invocation_with_its_handler() {
    let (options, log) = logged(options());
    let (gw, _store) = start(options).await;
    let mut alice = connect(&gw, "alice").await;
    alice.send_json(json!({"action": "nope"})).await;
    assert_eq!(alice.next_json().await["code"], "unknown_action");
    alice.close().await;
    let _ = wait_for_event(&log, "DISCONNECT", None, WAIT).await;
    let handlers: Vec<Handler> = log.events().into_iter().map(|(h, _)| h).collect();
    assert_eq!(
        handlers,
        vec![Handler::Connect, Handler::Default, Handler::Disconnect]
    );
}
