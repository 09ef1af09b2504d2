//! The WebSocket handshake at `/{stage}`: the `$connect` verdict comes before the upgrade.
//!
//! API Gateway answers the handshake only once `$connect` returned: a non-2xx answer (or a
//! failed integration) refuses the handshake with that status, and no frame of the client is
//! read before the verdict. Here the 101 response is only written after the handler returned,
//! so a client cannot have a frame routed early, and an id is not in the registry (so
//! `@connections` answers 410 for it) until the verdict accepted it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::connections_api::{forbidden, json_error};
use crate::event;
use crate::id::ConnectionId;
use crate::registry::{ClientInfo, CloseReason, Connection};
use crate::routing::{self, Outcome};
use crate::server::Shared;
use crate::session;

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `GET /{stage}`: a WebSocket handshake.
pub async fn handshake(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(stage): Path<String>,
    mut request: Request,
) -> Response {
    if stage != shared.api.stage {
        return forbidden();
    }
    let headers = request.headers();
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return json_error(
            StatusCode::UPGRADE_REQUIRED,
            None,
            "this is a WebSocket endpoint: connect with a WebSocket client",
        );
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION) != Some(&HeaderValue::from_static("13")) {
        let mut response = json_error(
            StatusCode::UPGRADE_REQUIRED,
            None,
            "unsupported WebSocket version",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return json_error(StatusCode::BAD_REQUEST, None, "missing Sec-WebSocket-Key");
    };
    if shared.shutting_down.load(Ordering::SeqCst) {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the gateway is stopping",
        );
    }
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            None,
            "this connection cannot be upgraded (WebSockets need HTTP/1.1)",
        );
    };

    let headers = request.headers();
    let now = chrono::Utc::now();
    let info = ClientInfo {
        id: ConnectionId::generate(),
        connected_at: now.timestamp_millis(),
        source_ip: peer.ip(),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(Into::into),
        domain_name: headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(Into::into)
            .unwrap_or_else(|| shared.local_addr.to_string().into()),
    };

    let mut protocol = None;
    if let Some(route) = shared.routes.connect() {
        let event = event::connect_event(
            &shared.api,
            &info,
            route.key,
            headers,
            request.uri().query(),
            now,
        );
        // Boxed: handler futures are large and this one is done before the session starts.
        match Box::pin(routing::invoke(&shared.app, route.handler, event)).await {
            Outcome::Response(r) if (200..300).contains(&r.status_code) => {
                // A $connect handler picks the subprotocol by answering with this header.
                protocol = r.headers.get(header::SEC_WEBSOCKET_PROTOCOL).cloned();
            }
            Outcome::Response(r) => {
                let status = u16::try_from(r.status_code)
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                tracing::info!(connection_id = %info.id, status = status.as_u16(), body = ?r.body, "$connect refused the connection");
                return status.into_response();
            }
            Outcome::Failed(e) => {
                tracing::error!(connection_id = %info.id, error = %e, "$connect failed");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        }
    }

    let id = info.id;
    let conn = Arc::new(Connection::new(info));
    if !shared.registry.insert(Arc::clone(&conn)) {
        // Cannot happen with generated ids; refusing is still better than sharing a socket.
        tracing::error!(connection_id = %id, "connection id already in use");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    // A shutdown that began during $connect may have missed this connection: close it now.
    if shared.shutting_down.load(Ordering::SeqCst) {
        conn.close(CloseReason::GOING_AWAY);
    }
    tracing::debug!(connection_id = %id, %peer, "connected");
    shared
        .tracker
        .spawn(session::run(Arc::clone(&shared), conn, on_upgrade));

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    response
}
