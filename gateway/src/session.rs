//! One WebSocket connection after its `$connect` verdict: read frames and route them, write what
//! is posted, enforce the limits, and run `$disconnect` at the end.
//!
//! One task per connection does all of it, so an idle connection costs a task, a socket and
//! small buffers. Handler invocations run in tasks of their own (as Lambda runs invocations
//! concurrently), so a slow handler never delays the next frame or the frames posted back.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::event;
use crate::registry::{CloseReason, Connection, Out};
use crate::routing::{self, Outcome};
use crate::server::Shared;

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// How a connection ended, as `$disconnect` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct End {
    code: u16,
    reason: String,
}

impl End {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        End {
            code,
            reason: reason.into(),
        }
    }

    fn abnormal() -> Self {
        End::new(1006, "Connection closed abnormally")
    }
}

impl From<CloseReason> for End {
    fn from(r: CloseReason) -> Self {
        End::new(r.code, r.reason)
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Runs the connection until it closes, then unregisters it and runs `$disconnect`.
pub async fn run(shared: Arc<Shared>, conn: Arc<Connection>, on_upgrade: OnUpgrade) {
    let end = match on_upgrade.await {
        Ok(upgraded) => {
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(shared.ws_config),
            )
            .await;
            serve(&shared, &conn, ws).await
        }
        Err(e) => {
            tracing::debug!(connection_id = %conn.info.id, error = %e, "upgrade failed");
            End::abnormal()
        }
    };
    conn.mark_closing();
    shared.registry.remove(&conn.info.id);
    tracing::debug!(connection_id = %conn.info.id, code = end.code, reason = %end.reason, "closed");
    // Boxed: the disconnect invocation's future is large and only lives at the very end, so it
    // should not widen every idle connection's task.
    Box::pin(disconnect(&shared, &conn, end)).await;
}

async fn serve(shared: &Arc<Shared>, conn: &Arc<Connection>, mut ws: Ws) -> End {
    let limits = &shared.limits;
    let started = Instant::now();
    let max_at = started + limits.max_connection_duration;
    let mut last_active = started;
    // One timer for both deadlines; activity does not reset it (that would cost a timer-wheel
    // update per frame): when it fires early it is re-armed from the last activity.
    let deadline = tokio::time::sleep_until(max_at.min(started + limits.idle_timeout));
    tokio::pin!(deadline);
    // The close frame the client sent, once it did.
    let mut peer_close: Option<End> = None;

    loop {
        tokio::select! {
            // Posted frames first: under load a client should get its deliveries before the
            // gateway reads more from it.
            biased;
            () = conn.wait_for_out(), if peer_close.is_none() => {
                match write_queued(conn, &mut ws).await {
                    Ok(None) => {}
                    Ok(Some(reason)) => return close(&mut ws, reason, limits.close_timeout).await,
                    Err(_) => return End::abnormal(),
                }
            }
            incoming = ws.next() => {
                let message = match incoming {
                    Some(Ok(m)) => m,
                    // The closing handshake completed (or the stream ended after it).
                    None => return peer_close.unwrap_or_else(End::abnormal),
                    Some(Err(e)) => return on_read_error(conn, &mut ws, e, limits.close_timeout).await,
                };
                last_active = Instant::now();
                conn.touch(now_ms());
                match message {
                    Message::Text(text) => on_message(shared, conn, Some(text), None),
                    Message::Binary(data) => on_message(shared, conn, None, Some(&data)),
                    Message::Close(frame) => {
                        // tungstenite answers the close frame itself; the next read ends.
                        conn.mark_closing();
                        peer_close = Some(match frame {
                            Some(f) => End::new(u16::from(f.code), f.reason.as_str()),
                            None => End::new(1005, "Client-side close frame status not set"),
                        });
                    }
                    // Pings are answered by tungstenite; they count as activity.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
            }
            () = &mut deadline => {
                let now = Instant::now();
                let idle_at = last_active + limits.idle_timeout;
                if now >= max_at || now >= idle_at {
                    conn.mark_closing();
                    return close(&mut ws, CloseReason::GOING_AWAY, limits.close_timeout).await;
                }
                deadline.as_mut().reset(idle_at.min(max_at));
            }
        }
    }
}

/// Writes everything queued for the client; returns the close the queue asked for, if any.
async fn write_queued(conn: &Connection, ws: &mut Ws) -> Result<Option<CloseReason>, WsError> {
    let mut close = None;
    while let Some(out) = conn.next_out() {
        match out {
            Out::Text(t) => ws.feed(Message::Text(t)).await?,
            Out::Binary(b) => ws.feed(Message::Binary(b)).await?,
            Out::Close(reason) => {
                close = Some(reason);
                break;
            }
        }
    }
    ws.flush().await?;
    Ok(close)
}

/// Sends a close frame and waits (boundedly) for the client's, so the client reads the close
/// code instead of a reset.
async fn close(ws: &mut Ws, reason: CloseReason, timeout: Duration) -> End {
    let frame = CloseFrame {
        code: CloseCode::from(reason.code),
        reason: Utf8Bytes::from_static(reason.reason),
    };
    if ws.close(Some(frame)).await.is_ok() {
        let _ = tokio::time::timeout(timeout, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
    reason.into()
}

async fn on_read_error(conn: &Connection, ws: &mut Ws, error: WsError, timeout: Duration) -> End {
    conn.mark_closing();
    let reason = match &error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => CloseReason::TOO_BIG,
        WsError::Utf8(_) => CloseReason {
            code: 1007,
            reason: "Invalid frame payload data",
        },
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WsError::Io(_)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => return End::abnormal(),
        WsError::Protocol(_) => CloseReason {
            code: 1002,
            reason: "Protocol error",
        },
        _ => return End::abnormal(),
    };
    tracing::info!(connection_id = %conn.info.id, error = %error, code = reason.code, "closing the connection");
    Box::pin(close_after_error(ws, reason, timeout)).await;
    reason.into()
}

/// After a read error the socket may hold the rest of a refused frame, which tungstenite can no
/// longer parse: send the close frame, then discard raw bytes until the client closes. Dropping
/// a socket with unread bytes would reset it, and the client would lose the close frame.
async fn close_after_error(ws: &mut Ws, reason: CloseReason, timeout: Duration) {
    let frame = CloseFrame {
        code: CloseCode::from(reason.code),
        reason: Utf8Bytes::from_static(reason.reason),
    };
    if ws.close(Some(frame)).await.is_err() {
        return;
    }
    let raw = ws.get_mut();
    let _ = raw.shutdown().await;
    let mut sink = vec![0u8; 8 * 1024];
    let _ = tokio::time::timeout(timeout, async {
        while let Ok(n) = raw.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Routes one client message and starts its handler.
fn on_message(
    shared: &Arc<Shared>,
    conn: &Arc<Connection>,
    text: Option<Utf8Bytes>,
    binary: Option<&[u8]>,
) {
    let Some(route) = shared.routes.select(text.as_deref()) else {
        let request_id = crate::id::request_id();
        let frame = routing::forbidden_frame(conn.info.id.as_str(), &request_id);
        let _ = conn.post(Out::Text(frame.into()), usize::MAX);
        return;
    };
    let (body, is_base64) = match (text, binary) {
        (Some(t), _) => (t.as_str().to_owned(), false),
        (None, Some(b)) => (base64::engine::general_purpose::STANDARD.encode(b), true),
        (None, None) => (String::new(), false),
    };
    let event = event::message_event(
        &shared.api,
        &conn.info,
        route.key,
        body,
        is_base64,
        chrono::Utc::now(),
    );
    let handler = route.handler;
    let shared2 = Arc::clone(shared);
    let conn = Arc::clone(conn);
    shared.tracker.spawn(async move {
        let request_id = event.request_context.request_id.clone().unwrap_or_default();
        // A route without a route response sends the client nothing of the handler's answer:
        // handlers talk back through @connections.
        if let Outcome::Failed(e) = routing::invoke(&shared2.app, handler, event).await {
            tracing::error!(connection_id = %conn.info.id, request_id, error = %e, "integration failed");
            let frame = routing::internal_error_frame(conn.info.id.as_str(), &request_id);
            let _ = conn.post(Out::Text(frame.into()), usize::MAX);
        }
    });
}

async fn disconnect(shared: &Shared, conn: &Connection, end: End) {
    let Some(route) = shared.routes.disconnect() else {
        return;
    };
    let event = event::disconnect_event(
        &shared.api,
        &conn.info,
        route.key,
        end.code,
        &end.reason,
        chrono::Utc::now(),
    );
    if let Outcome::Failed(e) = routing::invoke(&shared.app, route.handler, event).await {
        // API Gateway's $disconnect is best effort too: nobody is left to tell.
        tracing::error!(connection_id = %conn.info.id, error = %e, "$disconnect failed");
    }
}
