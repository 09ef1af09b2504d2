//! The local push API: what a stage's HTTP push API is in AWS (`PushApiUrl`), on its own port
//! (`--push-port`, default 3003), served by the same `push-api` code
//! ([`wsstack_handlers::push_api::PushApi`]) over the gateway's store and `@connections`.
//!
//! In AWS every route takes a SigV4 signature (`AuthorizationType: AWS_IAM`); here none is
//! checked, so the server listens where the gateway does (127.0.0.1 by default) and says so in
//! the banner. A signed request is served like any other: the backend's code does not change
//! between the two.
//!
//! The stage's `[push_api]` throttling applies as in AWS: a token bucket of
//! `throttling_burst_limit` tokens refilled at `throttling_rate_limit` per second, every request
//! taking one, and past it `429 Too Many Requests` before the push API's code runs
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-throttling.html>).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use wsstack_handlers::push_api::{PushApi, PushResponse};
use wsstack_handlers::simulated::TokenBucket;
use wsstack_routes::push_api::MAX_MESSAGE_BYTES;

use crate::side_server::SideServer;

/// The push API's default port.
pub const DEFAULT_PUSH_PORT: u16 = 3003;

/// Why the push API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum PushServerError {
    #[error(
        "cannot serve the push API on {addr}: the address is already in use (pick another port with --push-port, or --no-push-api)"
    )]
    AddrInUse { addr: SocketAddr },
    #[error("cannot serve the push API on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// The push API stage's throttling (`[push_api]` in the stage file).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PushThrottling {
    /// Requests per second, sustained (`throttling_rate_limit`).
    pub rate_limit: f64,
    /// Requests at once: the bucket's size (`throttling_burst_limit`).
    pub burst_limit: u32,
}

/// What every request of the push API's server shares.
#[derive(Clone)]
struct PushState {
    push_api: PushApi,
    /// `None`: unthrottled.
    bucket: Option<Arc<Mutex<TokenBucket>>>,
}

/// The push API's server. Dropping it stops it.
#[derive(Debug)]
pub struct PushServer {
    server: SideServer,
    throttling: Option<PushThrottling>,
}

impl PushServer {
    /// Serves `push_api` on `addr` (port 0 picks a free one), throttled as `throttling` says
    /// (`None`: not at all).
    pub async fn bind(
        addr: SocketAddr,
        push_api: PushApi,
        throttling: Option<PushThrottling>,
    ) -> Result<PushServer, PushServerError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                PushServerError::AddrInUse { addr }
            } else {
                PushServerError::Io { addr, source }
            }
        })?;
        let bucket = throttling.map(|t| {
            let bucket = TokenBucket::new(t.rate_limit, f64::from(t.burst_limit));
            Arc::new(Mutex::new(bucket))
        });
        let router = Router::new()
            .fallback(answer)
            .with_state(PushState { push_api, bucket });
        let server = SideServer::spawn(listener, router)
            .map_err(|source| PushServerError::Io { addr, source })?;
        Ok(PushServer { server, throttling })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The throttling it applies (`None`: none).
    pub fn throttling(&self) -> Option<PushThrottling> {
        self.throttling
    }

    /// `http://{addr}`: what `PushApiUrl` is in AWS.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr())
    }
}

/// Every request: a token from the stage's bucket (none left: 429), the body read up to the
/// message limit (past it, 413), answered as the `push-api` function does.
async fn answer(State(state): State<PushState>, request: Request<Body>) -> Response {
    if !take_token(state.bucket.as_deref()) {
        return too_many_requests();
    }
    let push_api = state.push_api;
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_MESSAGE_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let answer = PushResponse::error(
                413,
                "too_large",
                format!("the body is past {MAX_MESSAGE_BYTES} bytes, a message's limit ({e})"),
            );
            return into_response(&parts.method, answer);
        }
    };
    let reference = uuid::Uuid::new_v4().simple().to_string();
    let answer = push_api
        .answer(
            parts.method.as_str(),
            raw_path(&parts.uri),
            &body,
            &reference,
            None,
        )
        .await;
    into_response(&parts.method, answer)
}

/// Takes a token from `bucket`; always true unthrottled.
fn take_token(bucket: Option<&Mutex<TokenBucket>>) -> bool {
    bucket.is_none_or(|b| {
        // A poisoned lock still holds a valid bucket.
        let mut b = b.lock().unwrap_or_else(|p| p.into_inner());
        b.try_take(tokio::time::Instant::now())
    })
}

/// What an HTTP API answers past its throttling: 429 with its error body.
fn too_many_requests() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"message":"Too Many Requests"}"#,
    )
        .into_response()
}

/// The path as sent, percent-escapes kept (the route matcher decodes each segment).
fn raw_path(uri: &Uri) -> &str {
    uri.path()
}

fn into_response(method: &Method, answer: PushResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if answer.body.is_empty() || method == Method::HEAD {
        status.into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            answer.body,
        )
            .into_response()
    };
    if let Some(allow) = answer
        .allow
        .and_then(|a| header::HeaderValue::from_str(&a).ok())
    {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    response
}
