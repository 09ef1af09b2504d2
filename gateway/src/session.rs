//! One WebSocket connection after its `$connect` verdict: read frames and route them, write what
//! is posted, enforce the limits, and run `$disconnect` at the end.
//!
//! Reading and writing are two futures of the connection's one task, so an idle connection
//! still costs a task, a socket and small buffers, and a client that stops reading stalls only
//! its writer: frames are still read and routed, pings answered, and the idle and maximum
//! deadlines and a `DELETE` still close the connection, each within the close timeout. Posts
//! to a client whose queue is full get 429 meanwhile. Handler invocations run in tasks of their
//! own (as Lambda runs invocations concurrently), so a slow handler never delays the next frame
//! or the frames posted back.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use aws_lambda_events::encodings::Body;
use bytes::Bytes;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::event;
use crate::integration::Outcome;
use crate::registry::{CloseReason, Connection, Out};
use crate::routing;
use crate::socket::ResetOnDrop;
use crate::state::Shared;

type Ws = WebSocketStream<TokioIo<Upgraded>>;
type Reader = SplitStream<Ws>;
type Writer = SplitSink<Ws, Message>;

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

/// When the connection last carried a message, either way: frames from the client and frames
/// written to it both keep it from idling out (see [`Activity::touch`]).
struct Activity {
    started: Instant,
    /// Milliseconds after `started`.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// Records activity now, also as the connection's `lastActiveAt`.
    ///
    /// Messages sent to the client count as activity, not only messages from it. AWS's
    /// documentation names the 10-minute "Idle Connection Timeout" without defining idle
    /// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html>);
    /// what deployed APIs do is reported as direction-agnostic: a connection closes when "no
    /// messages are sent between the server and client for a 10-minute period"
    /// (<https://hotsock.io/docs/connections/keep-alive>, a service built on API Gateway
    /// WebSockets that keeps connections alive with server-sent messages; also
    /// <https://github.com/andyrichardson/subscriptionless/issues/3>). A frame counts once it
    /// was written to the socket: a client that does not read gets no activity from posts that
    /// wait for it.
    fn touch(&self, conn: &Connection) {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(elapsed, Ordering::Relaxed);
        conn.touch(now_ms());
    }

    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Runs the connection until it closes, then unregisters it and runs `$disconnect`. `reset` is
/// the socket's: armed when the client does not complete the close in time, so that the socket
/// is gone, not only forgotten, by the time `$disconnect` runs.
pub(crate) async fn run(
    shared: Arc<Shared>,
    conn: Arc<Connection>,
    on_upgrade: OnUpgrade,
    reset: ResetOnDrop,
) {
    let end = match on_upgrade.await {
        Ok(upgraded) => {
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(shared.ws_config),
            )
            .await;
            serve(&shared, &conn, ws, &reset).await
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

/// How the read side ended the session.
enum Ending {
    /// The closing handshake completed: the socket closes gracefully.
    Closed(End),
    /// The client did not complete the close within the close timeout, or the socket failed:
    /// it is reset. A graceful close would leave the kernel holding the socket and its unsent
    /// frames for a client that does not read (see `socket`).
    Abandoned(End),
    /// A frame broke a limit or the protocol: the socket may hold the rest of it.
    AfterReadError(CloseReason),
}

async fn serve(shared: &Arc<Shared>, conn: &Arc<Connection>, ws: Ws, reset: &ResetOnDrop) -> End {
    let activity = Activity::new();
    let (mut sink, mut stream) = ws.split();
    let ending = {
        let writer = write_loop(conn, &mut sink, &activity, shared.limits.max_frame_bytes);
        tokio::pin!(writer);
        read_loop(shared, conn, &mut stream, writer.as_mut(), &activity).await
    };
    match ending {
        Ending::Closed(end) => end,
        Ending::Abandoned(end) => {
            // The socket drops as this returns.
            reset.arm();
            end
        }
        Ending::AfterReadError(reason) => {
            match stream.reunite(sink) {
                Ok(ws) => {
                    Box::pin(close_after_error(
                        ws,
                        reason,
                        shared.limits.close_timeout,
                        reset,
                    ))
                    .await
                }
                Err(_) => reset.arm(),
            }
            reason.into()
        }
    }
}

/// How the writer ended.
enum WriterEnd {
    /// It sent the close frame the gateway asked for.
    Closed(CloseReason),
    /// The socket failed.
    Failed,
}

/// Writes what is posted, in order, until a close is dequeued (sent as the close frame).
async fn write_loop(
    conn: &Connection,
    sink: &mut Writer,
    activity: &Activity,
    max_frame_bytes: usize,
) -> WriterEnd {
    loop {
        conn.wait_for_out().await;
        // Once through the scheduler before writing: tokio "wakes deferred tasks only after it
        // has run out of ready tasks and polled the driver" (`tokio::task::yield_now`). The
        // writers a broadcast wakes then write in bursts, not one between every two posts, so
        // a reading client takes several frames per wake-up of its thread, and posts that
        // arrive meanwhile can go out in the same flush. A local broadcast through the SDK took
        // 6 % less time and CPU with it (docs/benchmarks.md).
        tokio::task::yield_now().await;
        while let Some(out) = conn.next_out() {
            let written = match out {
                Out::Text(t) if t.len() <= max_frame_bytes => sink.feed(Message::Text(t)).await,
                Out::Text(t) => feed_fragments(sink, Data::Text, t.into(), max_frame_bytes).await,
                Out::Binary(b) if b.len() <= max_frame_bytes => sink.feed(Message::Binary(b)).await,
                Out::Binary(b) => feed_fragments(sink, Data::Binary, b, max_frame_bytes).await,
                Out::Close(reason) => {
                    return match sink.send(Message::Close(Some(close_frame(reason)))).await {
                        Ok(()) => WriterEnd::Closed(reason),
                        Err(_) => WriterEnd::Failed,
                    };
                }
            };
            if written.is_err() {
                return WriterEnd::Failed;
            }
        }
        if sink.flush().await.is_err() {
            return WriterEnd::Failed;
        }
        activity.touch(conn);
    }
}

/// A message over the frame limit as a fragmented message: "messages larger than 32 KB must be
/// split into multiple frames, each 32 KB or smaller. This applies to @connections commands"
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html>).
async fn feed_fragments(
    sink: &mut Writer,
    kind: Data,
    data: Bytes,
    max_frame_bytes: usize,
) -> Result<(), WsError> {
    for frame in fragments(kind, data, max_frame_bytes) {
        sink.feed(Message::Frame(frame)).await?;
    }
    Ok(())
}

/// `data` as frames of at most `max_frame_bytes`: the first with the message's opcode, then
/// continuations, the last one final.
fn fragments(kind: Data, data: Bytes, max_frame_bytes: usize) -> Vec<Frame> {
    let size = max_frame_bytes.max(1);
    let count = data.len().div_ceil(size).max(1);
    (0..count)
        .map(|i| {
            let chunk = data.slice(i * size..((i + 1) * size).min(data.len()));
            let opcode = if i == 0 { kind } else { Data::Continue };
            Frame::message(chunk, OpCode::Data(opcode), i + 1 == count)
        })
        .collect()
}

fn close_frame(reason: CloseReason) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(reason.code),
        reason: Utf8Bytes::from_static(reason.reason),
    }
}

/// Reads and routes the client's frames and keeps the deadlines while `writer` runs, until the
/// socket is done with.
async fn read_loop(
    shared: &Arc<Shared>,
    conn: &Arc<Connection>,
    stream: &mut Reader,
    mut writer: Pin<&mut impl Future<Output = WriterEnd>>,
    activity: &Activity,
) -> Ending {
    let limits = &shared.limits;
    let max_at = activity.started + limits.max_connection_duration;
    // One timer for the idle and maximum deadlines and, once closing, for the close timeout.
    // Activity does not reset it (that would cost a timer-wheel update per frame): when it
    // fires early it is re-armed from the last activity.
    let deadline = tokio::time::sleep_until(max_at.min(activity.started + limits.idle_timeout));
    tokio::pin!(deadline);
    // Once the connection is closing: how it ended. The socket is dropped at the deadline then,
    // whether or not the client completed the closing handshake.
    let mut closing: Option<End> = None;
    let mut peer_closed = false;
    let mut writer_done = false;

    loop {
        tokio::select! {
            biased;
            end = &mut writer, if !writer_done && !peer_closed => {
                writer_done = true;
                if let Some(ending) =
                    on_writer_end(end, &mut closing, deadline.as_mut(), limits.close_timeout)
                {
                    return ending;
                }
            }
            // DELETE or shutdown: queued frames go first, then the close, within the timeout.
            reason = conn.wait_for_close(), if closing.is_none() => {
                begin_closing(&mut closing, reason.into(), deadline.as_mut(), limits.close_timeout);
            }
            () = &mut deadline => {
                if let Some(ending) =
                    on_deadline(conn, activity, max_at, &mut closing, deadline.as_mut(), limits)
                {
                    return ending;
                }
            }
            incoming = stream.next() => {
                let message = match incoming {
                    Some(Ok(m)) => m,
                    // The closing handshake completed (or the stream ended after it).
                    None => return Ending::Closed(closing.unwrap_or_else(End::abnormal)),
                    Some(Err(e)) => return on_read_error(conn, &e, closing),
                };
                activity.touch(conn);
                let frame = FrameContext {
                    closing: &mut closing,
                    peer_closed: &mut peer_closed,
                    deadline: deadline.as_mut(),
                    close_timeout: limits.close_timeout,
                };
                on_frame(shared, conn, message, frame);
            }
        }
    }
}

/// Starts closing with `end` unless the connection is already closing: the client then has the
/// close timeout (`deadline` is re-armed to it) to complete the closing handshake.
fn begin_closing(
    closing: &mut Option<End>,
    end: End,
    deadline: Pin<&mut tokio::time::Sleep>,
    close_timeout: Duration,
) {
    if closing.is_none() {
        *closing = Some(end);
        deadline.reset(Instant::now() + close_timeout);
    }
}

/// What the writer's end means for the read loop: once our close frame is out, wait
/// (boundedly) for the client's; a failed socket is abandoned.
fn on_writer_end(
    end: WriterEnd,
    closing: &mut Option<End>,
    deadline: Pin<&mut tokio::time::Sleep>,
    close_timeout: Duration,
) -> Option<Ending> {
    match end {
        // Our close frame is out: wait (boundedly) for the client's.
        WriterEnd::Closed(reason) => {
            begin_closing(closing, reason.into(), deadline, close_timeout);
            None
        }
        WriterEnd::Failed => Some(Ending::Abandoned(
            closing.take().unwrap_or_else(End::abnormal),
        )),
    }
}

/// The shared timer fired: past the close timeout the socket is abandoned; past the idle or
/// maximum deadline the connection closes with 1001; otherwise (there was activity since) the
/// timer is re-armed for the next deadline.
fn on_deadline(
    conn: &Connection,
    activity: &Activity,
    max_at: Instant,
    closing: &mut Option<End>,
    mut deadline: Pin<&mut tokio::time::Sleep>,
    limits: &crate::limits::Limits,
) -> Option<Ending> {
    if let Some(end) = closing.take() {
        // The client did not complete the close in time (or does not read).
        return Some(Ending::Abandoned(end));
    }
    let now = Instant::now();
    let idle_at = activity.last() + limits.idle_timeout;
    if now >= max_at || now >= idle_at {
        conn.close_now(CloseReason::GOING_AWAY);
        *closing = Some(CloseReason::GOING_AWAY.into());
        deadline.as_mut().reset(now + limits.close_timeout);
    } else {
        deadline.as_mut().reset(idle_at.min(max_at));
    }
    None
}

/// How a failed read ends the session: abandoned once closing or when the socket is gone, else
/// after sending the close the error calls for (a frame over the limit, invalid UTF-8, a
/// protocol error).
fn on_read_error(conn: &Connection, error: &WsError, closing: Option<End>) -> Ending {
    if let Some(end) = closing {
        return Ending::Abandoned(end);
    }
    conn.mark_closing();
    match read_error_close(conn, error) {
        Some(reason) => Ending::AfterReadError(reason),
        None => Ending::Abandoned(End::abnormal()),
    }
}

/// The read loop's state a client frame can change.
struct FrameContext<'a> {
    closing: &'a mut Option<End>,
    peer_closed: &'a mut bool,
    deadline: Pin<&'a mut tokio::time::Sleep>,
    close_timeout: Duration,
}

/// Handles one client frame: text is routed (until closing), binary closes with 1003, the
/// client's close frame starts closing with its code; pings only count as activity.
fn on_frame(shared: &Arc<Shared>, conn: &Arc<Connection>, message: Message, cx: FrameContext<'_>) {
    let closing_already = cx.closing.is_some();
    match message {
        // Once closing, the client's frames are read (to reach its close frame) but
        // no longer routed.
        Message::Text(text) if !closing_already => on_message(shared, conn, text),
        Message::Binary(_) if !closing_already => {
            tracing::info!(connection_id = %conn.info.id, "binary frame: closing with 1003");
            conn.close_now(CloseReason::BINARY_FRAME);
            begin_closing(
                cx.closing,
                CloseReason::BINARY_FRAME.into(),
                cx.deadline,
                cx.close_timeout,
            );
        }
        Message::Close(frame) => {
            // tungstenite answers the close frame itself; the next read ends.
            conn.mark_closing();
            *cx.peer_closed = true;
            if !closing_already {
                let end = match frame {
                    Some(f) => End::new(u16::from(f.code), f.reason.as_str()),
                    None => End::new(1005, "Client-side close frame status not set"),
                };
                begin_closing(cx.closing, end, cx.deadline, cx.close_timeout);
            }
        }
        // Pings are answered by tungstenite; they count as activity.
        _ => {}
    }
}

/// The close a read error calls for; `None` when the socket is gone.
fn read_error_close(conn: &Connection, error: &WsError) -> Option<CloseReason> {
    let reason = match error {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => CloseReason::TOO_BIG,
        WsError::Utf8(_) => CloseReason {
            code: 1007,
            reason: "Invalid frame payload data",
        },
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | WsError::Io(_)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed => return None,
        WsError::Protocol(_) => CloseReason {
            code: 1002,
            reason: "Protocol error",
        },
        _ => return None,
    };
    tracing::info!(connection_id = %conn.info.id, error = %error, code = reason.code, "closing the connection");
    Some(reason)
}

/// After a read error the socket may hold the rest of a refused frame, which tungstenite can no
/// longer parse: send the close frame, then discard raw bytes until the client closes. Dropping
/// a socket with unread bytes would reset it, and the client would lose the close frame. All of
/// it within `timeout`, as a client that does not read would block the close frame; past it
/// (or if the socket fails) the socket is reset.
async fn close_after_error(
    mut ws: Ws,
    reason: CloseReason,
    timeout: Duration,
    reset: &ResetOnDrop,
) {
    let closed = tokio::time::timeout(timeout, async {
        if ws.close(Some(close_frame(reason))).await.is_err() {
            return false;
        }
        let raw = ws.get_mut();
        if raw.shutdown().await.is_err() {
            return false;
        }
        let mut sink = vec![0u8; 8 * 1024];
        loop {
            match raw.read(&mut sink).await {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    })
    .await;
    if closed != Ok(true) {
        reset.arm();
    }
}

/// Routes one client text message and starts its handler.
fn on_message(shared: &Arc<Shared>, conn: &Arc<Connection>, text: Utf8Bytes) {
    let Some(route) = shared.routes.select(&text) else {
        let request_id = crate::id::request_id();
        let frame = routing::forbidden_frame(conn.info.id.as_str(), &request_id);
        post_status_frame(shared, conn, frame);
        return;
    };
    let event = event::message_event(
        &shared.api,
        &conn.info,
        route.key,
        text.as_str().to_owned(),
        chrono::Utc::now(),
    );
    let (handler, two_way) = (route.handler, route.two_way);
    let shared2 = Arc::clone(shared);
    let conn = Arc::clone(conn);
    shared.tracker.spawn(async move {
        let request_id = event.request_context.request_id.clone().unwrap_or_default();
        // A route without a route response sends the client nothing of the handler's answer:
        // handlers talk back through @connections. A two-way route (a forwarded action) sends
        // the response's body as a frame, as API Gateway does with a route response.
        let frame = match shared2.invoker.invoke(handler, event).await {
            Outcome::Response(r) if two_way => match response_text(*r) {
                Some(text) => text,
                None => return,
            },
            Outcome::Response(_) => return,
            Outcome::Failed(e) => {
                tracing::error!(connection_id = %conn.info.id, request_id, error = %e, "integration failed");
                routing::internal_error_frame(conn.info.id.as_str(), &request_id)
            }
            Outcome::TimedOut(after) => {
                tracing::error!(connection_id = %conn.info.id, request_id, ?after, "integration timed out");
                routing::timed_out_frame(conn.info.id.as_str(), &request_id)
            }
        };
        post_status_frame(&shared2, &conn, frame);
    });
}

/// The body of a two-way route's response, as a text frame; none when the body is empty.
fn response_text(response: ApiGatewayProxyResponse) -> Option<String> {
    match response.body? {
        Body::Text(t) if !t.is_empty() => Some(t),
        Body::Binary(b) if !b.is_empty() => Some(String::from_utf8_lossy(&b).into_owned()),
        _ => None,
    }
}

/// Queues a frame of the gateway's own (`Forbidden`, `Internal server error`, ...) under the
/// same bound as posts: a client that sends without reading must not grow its queue without
/// end. A frame that does not fit is dropped, as a throttled post would be.
fn post_status_frame(shared: &Shared, conn: &Connection, frame: String) {
    if let Err(e) = conn.post(Out::Text(frame.into()), shared.limits.max_queued_bytes) {
        tracing::debug!(connection_id = %conn.info.id, error = ?e, "status frame dropped");
    }
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
    match shared.invoker.invoke(route.handler, event).await {
        Outcome::Response(_) => {}
        // API Gateway's $disconnect is best effort too: nobody is left to tell.
        Outcome::Failed(e) => {
            tracing::error!(connection_id = %conn.info.id, error = %e, "$disconnect failed")
        }
        Outcome::TimedOut(after) => {
            tracing::error!(connection_id = %conn.info.id, ?after, "$disconnect timed out")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_messages_leave_as_frames_of_at_most_the_limit() {
        let data = Bytes::from(vec![b'x'; 70_000]);
        let frames = fragments(Data::Text, data, 32 * 1024);
        let sizes: Vec<usize> = frames.iter().map(|f| f.payload().len()).collect();
        assert_eq!(sizes, vec![32_768, 32_768, 4_464]);
        assert_eq!(frames[0].header().opcode, OpCode::Data(Data::Text));
        assert_eq!(frames[1].header().opcode, OpCode::Data(Data::Continue));
        assert_eq!(frames[2].header().opcode, OpCode::Data(Data::Continue));
        let finals: Vec<bool> = frames.iter().map(|f| f.header().is_final).collect();
        assert_eq!(finals, vec![false, false, true]);
    }
}
