//! The local push API: what a stage's HTTP push API is in AWS (`PushApiUrl`), on its own port
//! (`--push-port`, default 3003), served by the same `push-api` code
//! ([`wsstack_handlers::push_api::PushApi`]) over the gateway's store and `@connections`.
//!
//! In AWS every route takes a SigV4 signature (`AuthorizationType: AWS_IAM`); here none is
//! checked, so the server listens where the gateway does (127.0.0.1 by default) and says so in
//! the banner. A signed request is served like any other: the backend's code does not change
//! between the two.

use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Method, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use wsstack_handlers::push_api::{PushApi, PushResponse};
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

/// The push API's server. Dropping it stops it.
#[derive(Debug)]
pub struct PushServer {
    server: SideServer,
}

impl PushServer {
    /// Serves `push_api` on `addr` (port 0 picks a free one).
    pub async fn bind(addr: SocketAddr, push_api: PushApi) -> Result<PushServer, PushServerError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                PushServerError::AddrInUse { addr }
            } else {
                PushServerError::Io { addr, source }
            }
        })?;
        let router = Router::new().fallback(answer).with_state(push_api);
        let server = SideServer::spawn(listener, router)
            .map_err(|source| PushServerError::Io { addr, source })?;
        Ok(PushServer { server })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// `http://{addr}`: what `PushApiUrl` is in AWS.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr())
    }
}

/// Every request: the body read up to the message limit (past it, 413), answered as the
/// `push-api` function does.
async fn answer(State(push_api): State<PushApi>, request: Request<Body>) -> Response {
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
