//! The `@connections` management API on the gateway's port, answering as API Gateway does so
//! that unchanged SDK clients and the AWS CLI work against it.
//!
//! Served at `/{stage}/@connections/{id}` (where SDK clients send it, the stage being part of
//! their endpoint URL) and at `/@connections/{id}`. Requests are SigV4-signed by the SDKs; any
//! signature, or none, is accepted. Errors carry their type in `x-amzn-ErrorType` and a JSON
//! `{"message": ...}` body, which is how restJson1 clients map them to typed errors.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::http_error::{forbidden, json_error, with_request_id};
use crate::id::ConnectionId;
use crate::registry::{CloseReason, Connection, Out, PostError};
use crate::state::Shared;

/// `@connections` at `/{stage}/@connections/{id}` (where SDK clients send it) and
/// `/@connections/{id}`.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/{stage}/@connections/{id}",
            routing::get(get_staged)
                .post(post_staged)
                .delete(delete_staged),
        )
        .route(
            "/@connections/{id}",
            routing::get(get_bare).post(post_bare).delete(delete_bare),
        )
}

/// An `@connections` error, as API Gateway types it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// Unknown, closed, closing or still-connecting id.
    Gone,
    /// Not a connection id at all (wrong length or characters): API Gateway answers 400
    /// `BadRequestException` with `Invalid connectionId: ...`; 410 is for well-formed ids.
    InvalidId(String),
    Forbidden,
    PayloadTooLarge {
        limit: usize,
    },
    LimitExceeded,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Gone => json_error(StatusCode::GONE, Some("GoneException"), "Gone"),
            ApiError::InvalidId(id) => json_error(
                StatusCode::BAD_REQUEST,
                Some("BadRequestException"),
                &format!("Invalid connectionId: {id}"),
            ),
            ApiError::Forbidden => forbidden(),
            ApiError::PayloadTooLarge { limit } => json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("PayloadTooLargeException"),
                &format!("the payload exceeds the {limit} byte limit"),
            ),
            ApiError::LimitExceeded => json_error(
                StatusCode::TOO_MANY_REQUESTS,
                Some("LimitExceededException"),
                "the client is not reading its messages fast enough",
            ),
        }
    }
}

fn answer(result: Result<Response, ApiError>) -> Response {
    with_request_id(result.unwrap_or_else(IntoResponse::into_response))
}

/// A request's target: the stage in the path (if any) and the connection id.
pub(crate) type Target = Result<(Option<String>, String), ApiError>;

/// The connection a path names.
pub(crate) fn lookup(shared: &Shared, target: Target) -> Result<Arc<Connection>, ApiError> {
    let (stage, id) = target?;
    if stage.is_some_and(|s| s != shared.api.stage) {
        return Err(ApiError::Forbidden);
    }
    let id = ConnectionId::parse(&id).ok_or(ApiError::InvalidId(id))?;
    // Unknown, closed and still-connecting ids all answer 410, as in AWS.
    let conn = shared.registry.get(&id).ok_or(ApiError::Gone)?;
    if conn.is_closing() {
        return Err(ApiError::Gone);
    }
    Ok(conn)
}

type StagedPath = Result<Path<(String, String)>, PathRejection>;
type BarePath = Result<Path<String>, PathRejection>;

const NOT_UTF8: &str = "(percent-escapes that are not UTF-8)";

// Path parameters are percent-decoded by the extractor (`%3D` is `=`); one that does not
// decode to UTF-8 is not a connection id.
fn staged(path: StagedPath) -> Target {
    path.map(|Path((stage, id))| (Some(stage), id))
        .map_err(|_| ApiError::InvalidId(NOT_UTF8.to_owned()))
}

fn bare(path: BarePath) -> Target {
    path.map(|Path(id)| (None, id))
        .map_err(|_| ApiError::InvalidId(NOT_UTF8.to_owned()))
}

async fn post(shared: &Shared, target: Target, body: Body) -> Response {
    let limit = shared.limits.max_post_bytes;
    // A declared `Content-Length` over the limit is refused before the body is read: hyper
    // carries it as the body's size hint (the lower bound of a body of known length).
    let declared = usize::try_from(HttpBody::size_hint(&body).lower()).unwrap_or(usize::MAX);
    if declared > limit {
        return answer(Err(ApiError::PayloadTooLarge { limit }));
    }
    // With a complete request the only failure is the length limit.
    match axum::body::to_bytes(body, limit).await {
        Ok(data) => post_answer(shared, target, data),
        Err(_) => answer(Err(ApiError::PayloadTooLarge { limit })),
    }
}

/// The answer to a `PostToConnection` whose body is read: the route's, and the SDK's
/// in-process transport's ([`crate::callback::InProcessClient`]) for a plain post.
pub(crate) fn post_answer(shared: &Shared, target: Target, data: Bytes) -> Response {
    answer(post_data(shared, target, data).map(|()| StatusCode::OK.into_response()))
}

/// The stage and connection id of a plain `/{stage}/@connections/{id}`, percent-decoded as the
/// route's `Path` extractor decodes them, for a caller that answers the request without the
/// router. `None` for every other path (a segment more or less, an empty one, an escape that
/// does not decode to UTF-8), whose answer is the router's to give.
pub(crate) fn plain_staged_target(path: &str) -> Option<(Option<String>, String)> {
    let mut segments = path.strip_prefix('/')?.split('/');
    let (stage, literal, id) = (segments.next()?, segments.next()?, segments.next()?);
    if segments.next().is_some() || literal != "@connections" || stage.is_empty() || id.is_empty() {
        return None;
    }
    let decode = |s| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    Some((Some(decode(stage)?), decode(id)?))
}

/// `PostToConnection` once the body is read: the size limit, then the connection, then its
/// outbox (410 when closing, 429 when its client is not reading).
pub(crate) fn post_data(shared: &Shared, target: Target, data: Bytes) -> Result<(), ApiError> {
    let limit = shared.limits.max_post_bytes;
    if data.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let conn = lookup(shared, target)?;
    match conn.post(frame(data), shared.limits.max_queued_bytes) {
        Ok(()) => Ok(()),
        Err(PostError::Gone) => Err(ApiError::Gone),
        Err(PostError::Throttled) => Err(ApiError::LimitExceeded),
    }
}

/// The posted bytes as a text frame, or a binary frame when they are not UTF-8.
fn frame(data: Bytes) -> Out {
    // `try_from` validates the UTF-8 once; cloning `Bytes` only bumps a reference count.
    match Utf8Bytes::try_from(data.clone()) {
        Ok(text) => Out::Text(text),
        Err(_) => Out::Binary(data),
    }
}

fn iso8601(epoch_ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(epoch_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn get(shared: &Shared, target: Target) -> Result<Response, ApiError> {
    let conn = lookup(shared, target)?;
    let body = serde_json::json!({
        "connectedAt": iso8601(conn.info.connected_at),
        "identity": {
            "sourceIp": conn.info.source_ip.to_string(),
            "userAgent": conn.info.user_agent.as_deref(),
        },
        "lastActiveAt": iso8601(conn.last_active()),
    });
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// `DeleteConnection`: closes the socket with 1000 (410 when it is already closing).
pub(crate) fn delete(shared: &Shared, target: Target) -> Result<(), ApiError> {
    let conn = lookup(shared, target)?;
    if conn.close(CloseReason::DELETED) {
        Ok(())
    } else {
        Err(ApiError::Gone)
    }
}

fn delete_answer(shared: &Shared, target: Target) -> Result<Response, ApiError> {
    delete(shared, target).map(|()| StatusCode::NO_CONTENT.into_response())
}

async fn post_staged(State(shared): State<Arc<Shared>>, path: StagedPath, body: Body) -> Response {
    post(&shared, staged(path), body).await
}

async fn post_bare(State(shared): State<Arc<Shared>>, path: BarePath, body: Body) -> Response {
    post(&shared, bare(path), body).await
}

async fn get_staged(State(shared): State<Arc<Shared>>, path: StagedPath) -> Response {
    answer(get(&shared, staged(path)))
}

async fn get_bare(State(shared): State<Arc<Shared>>, path: BarePath) -> Response {
    answer(get(&shared, bare(path)))
}

async fn delete_staged(State(shared): State<Arc<Shared>>, path: StagedPath) -> Response {
    answer(delete_answer(&shared, staged(path)))
}

async fn delete_bare(State(shared): State<Arc<Shared>>, path: BarePath) -> Response {
    answer(delete_answer(&shared, bare(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a plain `/{stage}/@connections/{id}` is answered without the router, its segments
    /// percent-decoded as the route's extractor decodes them; every other path is the
    /// router's (tests/tests/gateway_callback.rs compares both answers with the port's).
    #[test]
    fn only_a_plain_staged_post_path_is_answered_without_the_router() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            (
                "/dev/@connections/L0SM9cOFvHcCIhw%3D",
                Some(("dev", "L0SM9cOFvHcCIhw=")),
            ),
            ("/dev/@connections/a%2Fb%2B%3D", Some(("dev", "a/b+="))),
            ("/prod/@connections/x", Some(("prod", "x"))),
            ("/d%65v/@connections/x", Some(("dev", "x"))),
            (
                "/dev/@connections/not%20an%20id",
                Some(("dev", "not an id")),
            ),
            // The bare route, more or fewer segments, empty ones: the router's.
            ("/@connections/x", None),
            ("/dev/@connections/x/", None),
            ("/dev/@connections/x/y", None),
            ("/dev/@connections/", None),
            ("//@connections/x", None),
            ("dev/@connections/x", None),
            ("/dev/%40connections/x", None),
            ("/dev/connections/x", None),
            ("", None),
            // An escape that is not UTF-8: the router answers its 400.
            ("/dev/@connections/%FF", None),
            ("/%FF/@connections/x", None),
        ];
        for (path, expected) in cases {
            let expected = expected.map(|(stage, id)| (Some(stage.to_owned()), id.to_owned()));
            assert_eq!(plain_staged_target(path), expected, "{path:?}");
        }
    }
}
