//! The API Gateway Management API (`@connections`): post to, look up and close a connection.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::config::StalledStreamProtectionConfig;
use aws_sdk_apigatewaymanagement::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_apigatewaymanagement::primitives::Blob;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// Why a management call failed, told apart the way a caller must react.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagementError {
    /// 410: the connection is closed or unknown; its record is stale.
    #[error("connection is gone (410)")]
    Gone,
    /// 413: the payload exceeds the 128 KB limit.
    #[error("payload too large (413)")]
    PayloadTooLarge,
    /// 429: too many requests, or the client's buffer is full.
    #[error("throttled (429)")]
    Throttled,
    /// 403: the caller may not manage connections of this API/stage. Carries the service's
    /// message, which says who was refused what on which resource (an IAM policy naming the
    /// wrong stage or method reads differently from a wrong endpoint), or is empty.
    #[error("forbidden (403): {}", if .0.is_empty() { "the service gave no message" } else { .0.as_str() })]
    Forbidden(String),
    /// Anything else: network failure, 5xx, an unexpected answer.
    #[error("management API call failed: {0}")]
    Other(String),
}

/// What `GetConnection` tells about a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionInfo {
    pub connected_at: Option<DateTime<Utc>>,
    pub last_active_at: Option<DateTime<Utc>>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// The `@connections` operations. `endpoint` is the callback URL including the stage, e.g.
/// `https://{domainName}/{stage}` or `http://127.0.0.1:3001/dev`.
#[async_trait]
pub trait ManagementApi: Send + Sync {
    async fn post_to_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), ManagementError>;
    async fn get_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
    ) -> Result<ConnectionInfo, ManagementError>;
    async fn delete_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
    ) -> Result<(), ManagementError>;
}

/// The production implementation over `aws-sdk-apigatewaymanagement`.
///
/// The SDK binds a client to one endpoint, and a Lambda may serve several stages or domains, so
/// it keeps one client per endpoint. Clients are cheap to clone and share their connection pool,
/// so a warm Lambda reuses TLS connections across invocations. At most
/// [`MAX_CACHED_CLIENTS`] are kept: a function posts to its `CALLBACK_URL`, or to the endpoint
/// its events name, so a few at most; the bound only keeps a stream of distinct endpoints from
/// growing the map without end.
///
/// Each call runs as a task of its own (see `on_own_task`): a fan-out polls its posts from one
/// task, and the SDK's work per request (serialization, endpoint resolution, SigV4 signing,
/// interceptors) is CPU, so on one task it would use one core however many the function has.
#[derive(Debug)]
pub struct SdkManagementApi {
    base: aws_sdk_apigatewaymanagement::config::Builder,
    clients: Mutex<HashMap<String, aws_sdk_apigatewaymanagement::Client>>,
}

impl SdkManagementApi {
    pub fn new(sdk_config: &aws_config::SdkConfig) -> Self {
        let mut base = aws_sdk_apigatewaymanagement::config::Builder::from(sdk_config);
        base.set_timeout_config(Some(timeout_config()));
        base.set_stalled_stream_protection(Some(stalled_stream_protection()));
        SdkManagementApi {
            base,
            clients: Mutex::default(),
        }
    }

    /// How many endpoints have a client now (at most [`MAX_CACHED_CLIENTS`]).
    pub fn cached_clients(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn client(&self, endpoint: &str) -> aws_sdk_apigatewaymanagement::Client {
        // The map only caches; a poisoned lock still holds valid clients.
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        // Every post of a fan-out asks for the same endpoint: found, without a key to allocate.
        if let Some(client) = clients.get(endpoint) {
            return client.clone();
        }
        if clients.len() >= MAX_CACHED_CLIENTS {
            // Past the bound, start over: the endpoints in use come back at their next post
            // (a client is cheap to build; only its idle connections are lost).
            tracing::warn!(
                cached = clients.len(),
                endpoint,
                "too many @connections endpoints: dropping the cached clients"
            );
            clients.clear();
        }
        let config = self.base.clone().endpoint_url(endpoint).build();
        let client = aws_sdk_apigatewaymanagement::Client::from_conf(config);
        clients.insert(endpoint.to_owned(), client.clone());
        client
    }
}

/// Most `@connections` endpoints [`SdkManagementApi`] keeps a client for.
pub const MAX_CACHED_CLIENTS: usize = 16;

/// Longest wait for one `@connections` attempt. The SDK sets no request timeout by default
/// (only a 3.1 s connect timeout), so one stalled connection could hold a broadcast slot until
/// the Lambda deadline. A post answers in tens of milliseconds; 2 s is far past that yet leaves
/// the SDK time for its retries inside a fan-out's deadline, which stops starting posts this
/// long before its hard stop (`fanout::Deadline::at`).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for one `@connections` call including the SDK's retries (3 attempts with
/// back-off in the standard retry mode).
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(7);

/// Stalled-stream protection is off for `@connections` calls: the attempt timeout ends every
/// call sooner than it could. By default the SDK turns it on for uploads and downloads and
/// fails a stream with less than 1 byte/s of activity once a grace period of 20 s has passed;
/// it is there for streaming data consumed after the SDK has returned a response, which the
/// operation and attempt timeouts do not cover
/// (<https://docs.aws.amazon.com/sdk-for-rust/latest/dg/timeouts.html>). No `@connections`
/// operation streams: a post's body (at most 128 KB) is in memory, its answer is empty, and the
/// whole exchange lies within [`ATTEMPT_TIMEOUT`], a tenth of that grace period. Left on, it
/// wraps both bodies of every call and adds its interceptor's work to each: a local broadcast
/// through the SDK took 6 to 8 % less time and 4 to 6 % less CPU without it
/// (docs/benchmarks.md).
fn stalled_stream_protection() -> StalledStreamProtectionConfig {
    StalledStreamProtectionConfig::disabled()
}

fn timeout_config() -> aws_smithy_types::timeout::TimeoutConfig {
    aws_smithy_types::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// Runs `call` as a task of its own, so that the runtime's worker threads share the CPU work of
/// many calls in flight: a Lambda past 1,769 MB has more than one vCPU ("At 1,769 MB, a function
/// has the equivalent of one vCPU",
/// https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html), and the local
/// gateway runs on every core of the machine. Dropping the returned future aborts the task, as
/// dropping the call itself would cancel it (a fan-out cut at its deadline drops the posts in
/// flight); a panic in the call is resumed in the caller. The call runs in the caller's tracing
/// span, so the SDK's log lines keep the invocation's context.
///
/// `call` makes the call's future inside the task, which keeps it on the heap where it is made:
/// the SDK's future is several kilobytes, and every move of a future that holds it (into the
/// caller's future, into `spawn`, into the task) copies all of it. What moves is `call`, the
/// client (a pointer) and the request's arguments.
async fn on_own_task<C, F>(call: C) -> Result<F::Output, ManagementError>
where
    C: FnOnce() -> F + Send + 'static,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    use tracing::Instrument;
    let task = task_of(call).in_current_span();
    match tokio_util::task::AbortOnDropHandle::new(tokio::spawn(task)).await {
        Ok(output) => Ok(output),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels the task while this future is alive.
        Err(e) => Err(ManagementError::Other(format!(
            "the @connections call was cancelled: {e}"
        ))),
    }
}

/// The future [`on_own_task`] spawns: `call`, then a pointer to the call's future, which `call`
/// makes on the heap.
async fn task_of<C, F>(call: C) -> F::Output
where
    C: FnOnce() -> F,
    F: Future,
{
    Box::pin(call()).await
}

/// Maps an SDK error by the modeled error code (API Gateway sends it in `x-amzn-ErrorType`), or
/// failing that by the HTTP status, so a proxy that keeps the status but drops the header is
/// still understood.
fn map_sdk_error<E>(err: SdkError<E>) -> ManagementError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match (err.code(), status) {
        (Some("GoneException"), _) | (_, Some(410)) => ManagementError::Gone,
        (Some("PayloadTooLargeException"), _) | (_, Some(413)) => ManagementError::PayloadTooLarge,
        (Some("LimitExceededException" | "ThrottlingException"), _) | (_, Some(429)) => {
            ManagementError::Throttled
        }
        (Some("ForbiddenException"), _) | (_, Some(403)) => {
            ManagementError::Forbidden(err.message().unwrap_or_default().to_owned())
        }
        _ => {
            let mut text = match status {
                Some(s) => format!("HTTP {s}: {err}"),
                None => err.to_string(),
            };
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            ManagementError::Other(text)
        }
    }
}

fn to_chrono(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    let t = t?;
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

#[async_trait]
impl ManagementApi for SdkManagementApi {
    async fn post_to_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
        data: Bytes,
    ) -> Result<(), ManagementError> {
        let client = self.client(endpoint);
        let connection_id = connection_id.to_owned();
        on_own_task(move || {
            client
                .post_to_connection()
                .connection_id(connection_id)
                .data(Blob::new(data.to_vec()))
                .send()
        })
        .await?
        .map_err(map_sdk_error)?;
        Ok(())
    }

    async fn get_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
    ) -> Result<ConnectionInfo, ManagementError> {
        let client = self.client(endpoint);
        let connection_id = connection_id.to_owned();
        let out = on_own_task(move || client.get_connection().connection_id(connection_id).send())
            .await?
            .map_err(map_sdk_error)?;
        Ok(ConnectionInfo {
            connected_at: to_chrono(out.connected_at()),
            last_active_at: to_chrono(out.last_active_at()),
            source_ip: out
                .identity()
                .and_then(|i| i.source_ip())
                .map(str::to_owned),
            user_agent: out
                .identity()
                .and_then(|i| i.user_agent())
                .map(str::to_owned),
        })
    }

    async fn delete_connection(
        &self,
        endpoint: &str,
        connection_id: &str,
    ) -> Result<(), ManagementError> {
        let client = self.client(endpoint);
        let connection_id = connection_id.to_owned();
        on_own_task(move || {
            client
                .delete_connection()
                .connection_id(connection_id)
                .send()
        })
        .await?
        .map_err(map_sdk_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two calls in flight from one task run at the same time, on two worker threads: each
    /// waits (blocking its thread, as CPU work does) until the other has started. Polled on the
    /// caller's task, the first would wait alone and time out.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_in_flight_from_one_task_share_the_worker_threads() {
        let (first_started, first_seen) = std::sync::mpsc::channel::<()>();
        let (second_started, second_seen) = std::sync::mpsc::channel::<()>();
        let wait = Duration::from_secs(10);
        let first = on_own_task(move || async move {
            first_started.send(()).ok();
            second_seen.recv_timeout(wait).is_ok()
        });
        let second = on_own_task(move || async move {
            second_started.send(()).ok();
            first_seen.recv_timeout(wait).is_ok()
        });
        let (first, second) = tokio::join!(first, second);
        assert_eq!((first, second), (Ok(true), Ok(true)));
    }

    /// Dropping a call in flight (a fan-out cut at its deadline) ends its task, as dropping the
    /// SDK's future would: the call's own state is dropped.
    #[tokio::test]
    async fn dropping_a_call_aborts_its_task() {
        let (dropped, was_dropped) = tokio::sync::oneshot::channel::<()>();
        struct OnDrop(Option<tokio::sync::oneshot::Sender<()>>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                if let Some(tx) = self.0.take() {
                    tx.send(()).ok();
                }
            }
        }
        let guard = OnDrop(Some(dropped));
        let call = on_own_task(move || async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        // Started, then cut.
        let cut = tokio::time::timeout(Duration::from_millis(20), call).await;
        assert!(cut.is_err(), "a pending call does not finish");
        tokio::time::timeout(Duration::from_secs(5), was_dropped)
            .await
            .expect("the task is aborted when the call is dropped")
            .expect("the guard reports its drop");
    }

    /// The call runs in the caller's span: an SDK log line inside it keeps the invocation's
    /// context (a task of its own would otherwise start with no span).
    #[tokio::test]
    async fn a_call_runs_in_the_callers_span() {
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let span = tracing::info_span!("invocation");
        let name = on_own_task(|| async { tracing::Span::current().metadata().map(|m| m.name()) });
        let name = tracing::Instrument::instrument(name, span).await;
        assert_eq!(name, Ok(Some("invocation")));
    }

    /// A panic inside the call reaches the caller as a panic, as it did before the call had a
    /// task of its own (a fan-out's panic handling sees it unchanged).
    #[tokio::test]
    #[should_panic(expected = "the SDK panicked")]
    async fn a_panic_in_a_call_is_resumed_in_the_caller() {
        let _ = on_own_task(|| async { panic!("the SDK panicked") }).await;
    }

    /// The spawned future holds the call's maker and a pointer, never the call's future: a
    /// call's future of 16 KiB leaves it under 64 bytes. (The SDK's future is 5.7 KB; held
    /// inline, it was copied on every move into `spawn` and the task, and `memmove` was the top
    /// symbol of a broadcast's profile: docs/benchmarks.md.)
    #[test]
    fn the_spawned_future_does_not_hold_the_calls_future() {
        let task = task_of(|| async {
            let buffer = [1u8; 16 * 1024];
            std::future::ready(()).await;
            buffer.iter().map(|&b| usize::from(b)).sum::<usize>()
        });
        let size = std::mem::size_of_val(&task);
        assert!(size < 64, "the spawned future is {size} bytes");
    }

    /// A post to an endpoint that accepts the connection and never answers ends in an error
    /// within the operation timeout, after at least one attempt timed out: a stalled
    /// `@connections` endpoint cannot hold a fan-out's post until the Lambda deadline. (Virtual
    /// time: the runtime's clock jumps to the next timer while the socket stays silent.)
    #[tokio::test(start_paused = true)]
    async fn a_post_to_a_silent_endpoint_ends_within_the_operation_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a free port");
        let endpoint = format!("http://{}/dev", listener.local_addr().expect("address"));
        // Accepts every connection (a retry may open a new one) and holds it, silent.
        let (accepted_tx, mut accepted) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let _ = accepted_tx.send(socket);
            }
        });
        let api = SdkManagementApi::new(&crate::local_sdk_config(None).await);
        let started = tokio::time::Instant::now();
        let result = tokio::time::timeout(
            OPERATION_TIMEOUT * 3,
            api.post_to_connection(&endpoint, "AAAAAAAAAAAAAAA=", Bytes::from_static(b"hi")),
        )
        .await
        .expect("the call ends by itself");
        let elapsed = started.elapsed();
        server.abort();
        assert!(accepted.try_recv().is_ok(), "the SDK connected");
        assert!(
            matches!(result, Err(ManagementError::Other(_))),
            "{result:?}"
        );
        assert!(elapsed >= ATTEMPT_TIMEOUT, "ended after {elapsed:?}");
        assert!(elapsed <= OPERATION_TIMEOUT, "ended after {elapsed:?}");
    }

    /// The attempt timeout ends a stalled call long before stalled-stream protection would
    /// (its grace period is 20 s by default,
    /// https://docs.aws.amazon.com/sdk-for-rust/latest/dg/timeouts.html), so the clients go
    /// without it.
    #[tokio::test]
    async fn clients_leave_stalled_calls_to_the_attempt_timeout() {
        use aws_smithy_runtime_api::client::stalled_stream_protection::DEFAULT_GRACE_PERIOD;
        assert!(ATTEMPT_TIMEOUT * 10 <= DEFAULT_GRACE_PERIOD);
        let api = SdkManagementApi::new(&crate::local_sdk_config(None).await);
        let client = api.client("http://127.0.0.1:9/dev");
        let config = client.config();
        let protection = config
            .stalled_stream_protection()
            .expect("the client sets stalled-stream protection");
        assert!(!protection.upload_enabled() && !protection.download_enabled());
        assert_eq!(
            config
                .timeout_config()
                .and_then(|t| t.operation_attempt_timeout()),
            Some(ATTEMPT_TIMEOUT)
        );
    }

    /// Whatever endpoints come along, the cache stays bounded (issue 18, item 4).
    #[tokio::test]
    async fn the_client_cache_is_bounded() {
        let sdk = crate::local_sdk_config(None).await;
        let api = SdkManagementApi::new(&sdk);
        for i in 0..(MAX_CACHED_CLIENTS * 4) {
            api.client(&format!("http://127.0.0.1:{}/dev", 10_000 + i));
            assert!(api.cached_clients() <= MAX_CACHED_CLIENTS, "after {i}");
        }
        // The endpoint in use stays cached between posts.
        api.client("https://api.example/prod");
        let before = api.cached_clients();
        api.client("https://api.example/prod");
        assert_eq!(api.cached_clients(), before);
    }
}
