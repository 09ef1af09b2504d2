//! The WebSocket handshake at `/{stage}`: the `$connect` verdict comes before the upgrade.
//!
//! API Gateway answers the handshake only once `$connect` returned: a non-2xx answer (or a
//! failed integration) refuses the handshake with that status, and no frame of the client is
//! read before the verdict. Here the 101 response is only written after the handler returned,
//! so a client cannot have a frame routed early, and an id is not in the registry (so
//! `@connections` answers 410 for it) until the verdict accepted it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use aws_lambda_events::apigw::ApiGatewayProxyResponse;
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use crate::event;
use crate::http_error::{forbidden, json_error};
use crate::id::ConnectionId;
use crate::integration::Outcome;
use crate::registry::{ClientInfo, CloseReason, Connection};
use crate::session;
use crate::socket::Peer;
use crate::state::Shared;

/// WebSocket clients connect at `/{stage}`.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/{stage}", get(handshake))
}

/// The subprotocol a `$connect` answer picked. API Gateway passes this header of the
/// integration's response on to the client's 101, which is how a `$connect` handler accepts a
/// subprotocol the client offered
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-connect-route-subprotocol.html>).
fn chosen_subprotocol(response: &ApiGatewayProxyResponse) -> Option<HeaderValue> {
    response
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .or_else(|| {
            response
                .multi_value_headers
                .get(header::SEC_WEBSOCKET_PROTOCOL)
        })
        .cloned()
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A refused handshake's response, boxed: it is far larger than what an accepted step returns.
type Refusal = Box<Response>;

/// `GET /{stage}`: a WebSocket handshake.
async fn handshake(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(Peer { addr: peer, reset }): ConnectInfo<Peer>,
    Path(stage): Path<String>,
    mut request: Request,
) -> Response {
    let (key, on_upgrade) = match check_upgrade_request(&shared, &stage, &mut request) {
        Ok(accepted) => accepted,
        Err(refusal) => return *refusal,
    };
    let headers = request.headers();
    let query = request.uri().query();
    let now = chrono::Utc::now();
    let mut info = client_info(&shared, headers, peer, now);
    if let Err(refusal) = authorize(&shared, &mut info, headers, query, now).await {
        return *refusal;
    }
    let protocol = match connect_verdict(&shared, &info, headers, query, now).await {
        Ok(protocol) => protocol,
        Err(refusal) => return *refusal,
    };
    if let Err(refusal) = start_session(&shared, info, peer, on_upgrade, reset) {
        return *refusal;
    }
    switching_protocols(&key, protocol)
}

/// Checks that `request` is a WebSocket handshake this gateway can take (its stage, the
/// upgrade headers, version 13, a key, not shutting down, an upgradable HTTP/1.1 connection)
/// and returns its key and upgrade; or the error response a refused handshake gets.
fn check_upgrade_request(
    shared: &Shared,
    stage: &str,
    request: &mut Request,
) -> Result<(HeaderValue, OnUpgrade), Refusal> {
    if stage != shared.api.stage {
        return Err(Box::new(forbidden()));
    }
    let headers = request.headers();
    if !header_has_token(headers, header::UPGRADE, "websocket")
        || !header_has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(Box::new(json_error(
            StatusCode::UPGRADE_REQUIRED,
            None,
            "this is a WebSocket endpoint: connect with a WebSocket client",
        )));
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
        return Err(Box::new(response));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).cloned() else {
        return Err(Box::new(json_error(
            StatusCode::BAD_REQUEST,
            None,
            "missing Sec-WebSocket-Key",
        )));
    };
    if shared.shutting_down.load(Ordering::SeqCst) {
        return Err(Box::new(json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the gateway is stopping",
        )));
    }
    let Some(on_upgrade) = request.extensions_mut().remove::<OnUpgrade>() else {
        return Err(Box::new(json_error(
            StatusCode::BAD_REQUEST,
            None,
            "this connection cannot be upgraded (WebSockets need HTTP/1.1)",
        )));
    };
    Ok((key, on_upgrade))
}

/// The new connection's identity as its events report it: a fresh id, the connect time, the
/// client's address and user agent, and the `Host` it asked for (else the gateway's address).
fn client_info(
    shared: &Shared,
    headers: &HeaderMap,
    peer: std::net::SocketAddr,
    now: chrono::DateTime<chrono::Utc>,
) -> ClientInfo {
    ClientInfo {
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
        authorizer: None,
    }
}

/// Runs the authorizer, if any, before the `$connect` integration: an allowed connection gets
/// its context in `info` (it reaches every event as `requestContext.authorizer`); a refused
/// one gets the authorizer's status as the error.
async fn authorize(
    shared: &Shared,
    info: &mut ClientInfo,
    headers: &HeaderMap,
    query: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Refusal> {
    // The authorizer runs before the `$connect` integration; its context reaches every event of
    // the connection as `requestContext.authorizer`.
    if let Some(authorizer) = &shared.authorizer {
        let auth_request = crate::auth::request(&shared.api, info, headers, query, now);
        match crate::auth::check(authorizer, auth_request).await {
            crate::auth::Check::Allowed(fields) => info.authorizer = Some(Arc::new(fields)),
            crate::auth::Check::Refused(status) => {
                tracing::info!(connection_id = %info.id, status = status.as_u16(), "the authorizer refused the connection");
                return Err(Box::new(status.into_response()));
            }
        }
    }
    Ok(())
}

/// Invokes the `$connect` route, if there is one, and returns the subprotocol its 2xx answer
/// picked; any other answer, a failure or a timeout refuses the handshake as API Gateway
/// does (that status, 502, 504).
async fn connect_verdict(
    shared: &Shared,
    info: &ClientInfo,
    headers: &HeaderMap,
    query: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<HeaderValue>, Refusal> {
    let Some(route) = shared.routes.connect() else {
        return Ok(None);
    };
    let event = event::connect_event(&shared.api, info, route.key, headers, query, now);
    // Boxed: handler futures are large and this one is done before the session starts.
    match Box::pin(shared.invoker.invoke(route.handler, event)).await {
        Outcome::Response(r) if (200..300).contains(&r.status_code) => Ok(chosen_subprotocol(&r)),
        Outcome::Response(r) => {
            let status = u16::try_from(r.status_code)
                .ok()
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            tracing::info!(connection_id = %info.id, status = status.as_u16(), body = ?r.body, "$connect refused the connection");
            Err(Box::new(status.into_response()))
        }
        // A failed integration refuses the handshake with 502 and one that did not answer
        // in time with 504, as a deployed API answers.
        Outcome::Failed(e) => {
            tracing::error!(connection_id = %info.id, error = %e, "$connect failed");
            Err(Box::new(StatusCode::BAD_GATEWAY.into_response()))
        }
        Outcome::TimedOut(after) => {
            tracing::error!(connection_id = %info.id, ?after, "$connect timed out");
            Err(Box::new(StatusCode::GATEWAY_TIMEOUT.into_response()))
        }
    }
}

/// Registers the accepted connection (only now can `@connections` reach it) and spawns its
/// session on the upgraded socket; a shutdown that began during `$connect` closes it at once.
fn start_session(
    shared: &Arc<Shared>,
    info: ClientInfo,
    peer: std::net::SocketAddr,
    on_upgrade: OnUpgrade,
    reset: crate::socket::ResetOnDrop,
) -> Result<(), Refusal> {
    let id = info.id;
    let conn = Arc::new(Connection::new(info));
    if !shared.registry.insert(Arc::clone(&conn)) {
        // Cannot happen with generated ids; refusing is still better than sharing a socket.
        tracing::error!(connection_id = %id, "connection id already in use");
        return Err(Box::new(StatusCode::INTERNAL_SERVER_ERROR.into_response()));
    }
    // A shutdown that began during $connect may have missed this connection: close it now.
    if shared.shutting_down.load(Ordering::SeqCst) {
        conn.close(CloseReason::GOING_AWAY);
    }
    tracing::debug!(connection_id = %id, %peer, "connected");
    shared
        .tracker
        .spawn(session::run(Arc::clone(shared), conn, on_upgrade, reset));
    Ok(())
}

/// The 101 answer that completes the handshake: the accept key derived from the client's
/// key, and the subprotocol `$connect` picked, if any.
fn switching_protocols(key: &HeaderValue, protocol: Option<HeaderValue>) -> Response {
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
