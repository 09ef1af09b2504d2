//! The `push-api` handler: the HTTP API a backend service calls (IAM-signed in AWS) to reach a
//! connection, a user on all of their connections, a room or everyone, to see a user's open
//! connections and to close one. Its routes are [`wsstack_routes::push_api::PUSH_ROUTES`].
//!
//! [`PushApi::answer`] knows nothing of Lambda or of a server: it takes a method, a path and a
//! body and gives a status and a JSON body. The `bootstrap` binary (wsstack-lambda) runs it behind
//! an HTTP API (payload format 2.0, with `lambda_http`); the local gateway serves the same
//! function on its push port.
//!
//! Answers (every one JSON):
//!
//! | status | when | body |
//! |---|---|---|
//! | 200 | posted now | [`PushAnswer`] |
//! | 202 | handed to the fan-out queue (queue mode, or what the deadline left) | [`PushAnswer`] with `queuedJobs` |
//! | 200 | `GET /users/{userId}/connections` | [`Presence`] |
//! | 204 | `DELETE /connections/{connectionId}` closed it | none |
//! | 400 | the body is not JSON, not an object, lacks `data`, a bad `replyTo` or room name | [`PushError`] naming the field |
//! | 404 | no route has this path | [`PushError`] |
//! | 405 | the path exists, not with this method (`Allow` lists the methods) | [`PushError`] |
//! | 410 | the connection is gone (closed, or never was) | [`PushError`] |
//! | 413 | the body, or the frame it makes, is past the 128 KB message limit | [`PushError`] |
//! | 502 | `@connections` refused or failed every post | [`PushError`] with a reference |
//! | 503 | the store or the queue failed | [`PushError`] with a reference |

use std::sync::Arc;

use serde_json::Value;
use wsstack_routes::push_api::{
    MAX_MESSAGE_BYTES, Matched, NoMatch, Presence, PresenceConnection, PushAnswer, PushError,
    PushOperation, PushRequest, match_route,
};

use crate::delivery::{Audience, Delivery, DeliveryReport, Parcel};
use crate::domain::{Frame, MAX_FRAME_BYTES};
use crate::fanout::Deadline;
use crate::management::{ManagementApi, ManagementError};
use crate::rooms::RoomName;
use crate::store::ConnectionStore;

/// The longest `replyTo`: a client's `requestId` is 1 to 64 printable ASCII characters.
pub const MAX_REPLY_TO_CHARS: usize = 64;

/// An answer: its status, its JSON body (empty for 204), and the `Allow` header of a 405.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushResponse {
    pub status: u16,
    pub body: String,
    pub allow: Option<String>,
}

impl PushResponse {
    fn json(status: u16, body: &impl serde::Serialize) -> PushResponse {
        PushResponse {
            status,
            // Plain data types with string keys: serializing cannot fail.
            body: serde_json::to_string(body).unwrap_or_default(),
            allow: None,
        }
    }

    /// An error answer: `{"error": code, "message": message}`.
    pub fn error(status: u16, code: &str, message: impl Into<String>) -> PushResponse {
        let error = PushError {
            error: code.to_owned(),
            message: message.into(),
        };
        PushResponse::json(status, &error)
    }

    /// The body as JSON (`Value::Null` for none).
    pub fn body_json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// The push API over the delivery service, the store and `@connections`.
#[derive(Clone)]
pub struct PushApi {
    pub delivery: Delivery,
    pub store: Arc<dyn ConnectionStore>,
    pub api: Arc<dyn ManagementApi>,
    /// The `@connections` endpoint pushes go to (the function's `CALLBACK_URL`).
    pub endpoint: String,
}

impl std::fmt::Debug for PushApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushApi")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl PushApi {
    /// Answers one request. `reference` ties a 5xx answer to the log line with its detail (the
    /// request id).
    pub async fn answer(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        reference: &str,
        deadline: Option<Deadline>,
    ) -> PushResponse {
        let matched = match match_route(method, path) {
            Ok(m) => m,
            Err(NoMatch::NotFound) => {
                return PushResponse::error(404, "not_found", format!("no route has {path}"));
            }
            Err(NoMatch::MethodNotAllowed(methods)) => {
                let allow = methods.join(", ");
                let mut r = PushResponse::error(
                    405,
                    "method_not_allowed",
                    format!("{path} takes {allow}, not {method}"),
                );
                r.allow = Some(allow);
                return r;
            }
        };
        let span = tracing::info_span!("push_api", operation = ?matched.route.operation, reference);
        tracing::Instrument::instrument(self.dispatch(matched, body, reference, deadline), span)
            .await
    }

    async fn dispatch(
        &self,
        matched: Matched,
        body: &[u8],
        reference: &str,
        deadline: Option<Deadline>,
    ) -> PushResponse {
        let param = matched.params.first().cloned().unwrap_or_default();
        let audience = match matched.route.operation {
            PushOperation::ListUserConnections => return self.presence(&param, reference).await,
            PushOperation::DeleteConnection => return self.disconnect(&param, reference).await,
            PushOperation::PostToConnection => Audience::Connection(param),
            PushOperation::PostToUser => Audience::User(param),
            PushOperation::PostToRoom => match RoomName::parse(&param) {
                Ok(room) => Audience::Room(room),
                Err(e) => {
                    return PushResponse::error(400, "bad_request", format!("room: {e}"));
                }
            },
            PushOperation::PostToEveryone => Audience::Everyone,
        };
        let frame = match push_frame(body) {
            Ok(frame) => frame,
            Err(refused) => return refused,
        };
        self.push(&audience, frame, reference, deadline).await
    }

    /// Delivers `frame` to `audience` and answers with what came of it.
    async fn push(
        &self,
        audience: &Audience,
        frame: Frame,
        reference: &str,
        deadline: Option<Deadline>,
    ) -> PushResponse {
        let Frame::Push { id, .. } = &frame else {
            return PushResponse::error(500, "internal", "not a push frame");
        };
        let id = id.clone();
        let parcel = Parcel {
            endpoint: self.endpoint.clone(),
            message_id: id.clone(),
            frame: frame.to_json(),
        };
        let report = match self.delivery.deliver(audience, &parcel, deadline).await {
            Ok(report) => report,
            Err(e) => {
                tracing::error!(error = %e, "push failed");
                return unavailable(reference);
            }
        };
        answer_push(audience, id, &report, reference)
    }

    /// `GET /users/{userId}/connections`.
    async fn presence(&self, user_id: &str, reference: &str) -> PushResponse {
        let now = chrono::Utc::now().timestamp();
        let listed: Result<Vec<_>, _> =
            futures::TryStreamExt::try_collect(self.store.list_by_user(user_id, now)).await;
        match listed {
            Ok(connections) => PushResponse::json(
                200,
                &Presence {
                    user_id: user_id.to_owned(),
                    connections: connections
                        .into_iter()
                        .map(|c| PresenceConnection {
                            connection_id: c.connection_id,
                            connected_at: c.connected_at,
                        })
                        .collect(),
                },
            ),
            Err(e) => {
                tracing::error!(error = %e, user_id, "listing a user's connections failed");
                unavailable(reference)
            }
        }
    }

    /// `DELETE /connections/{connectionId}`: closes the connection through `@connections`;
    /// API Gateway then runs `$disconnect`, which deletes its record and memberships.
    async fn disconnect(&self, connection_id: &str, reference: &str) -> PushResponse {
        match self
            .api
            .delete_connection(&self.endpoint, connection_id)
            .await
        {
            Ok(()) => PushResponse {
                status: 204,
                body: String::new(),
                allow: None,
            },
            Err(ManagementError::Gone) => gone(connection_id),
            Err(e) => {
                tracing::error!(error = %e, connection_id, "closing a connection failed");
                bad_gateway(reference)
            }
        }
    }
}

/// The frame a push request's body makes, or the 400/413 that refuses it.
fn push_frame(body: &[u8]) -> Result<Frame, PushResponse> {
    let too_large = |what: &str, bytes: usize| {
        PushResponse::error(
            413,
            "too_large",
            format!("{what} is {bytes} bytes; a message is at most {MAX_MESSAGE_BYTES}"),
        )
    };
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(too_large("the body", body.len()));
    }
    let bad = |message: String| PushResponse::error(400, "bad_request", message);
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(bad(
            "the body must be a JSON object: {\"data\": ..., \"replyTo\"?: ...}".into(),
        ));
    }
    if value.get("data").is_none() {
        return Err(bad("data: missing (any JSON value, null included)".into()));
    }
    if let Some(other) = value
        .get("replyTo")
        .filter(|v| !v.is_string() && !v.is_null())
    {
        return Err(bad(format!(
            "replyTo: must be a string (a client's requestId), got {}",
            crate::domain::json_type(other)
        )));
    }
    let request: PushRequest =
        serde_json::from_value(value).map_err(|e| bad(format!("the body: {e}")))?;
    if let Some(reply_to) = &request.reply_to
        && !valid_reply_to(reply_to)
    {
        return Err(bad(format!(
            "replyTo: 1 to {MAX_REPLY_TO_CHARS} printable ASCII characters, got {reply_to:?}"
        )));
    }
    let frame = Frame::push(request.data, request.reply_to, chrono::Utc::now());
    let bytes = frame.to_json().len();
    if bytes > MAX_FRAME_BYTES {
        return Err(too_large("the frame", bytes));
    }
    Ok(frame)
}

/// A client's `requestId`: 1 to 64 printable ASCII characters.
fn valid_reply_to(s: &str) -> bool {
    (1..=MAX_REPLY_TO_CHARS).contains(&s.len()) && s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// The answer to a delivery: 202 when jobs were queued, 410 for a gone connection, 502 when
/// every post failed, else 200.
fn answer_push(
    audience: &Audience,
    id: String,
    report: &DeliveryReport,
    reference: &str,
) -> PushResponse {
    let posts = &report.posts;
    if let Audience::Connection(connection_id) = audience {
        if posts.gone > 0 {
            return gone(connection_id);
        }
        if posts.delivered == 0 && report.queued_jobs == 0 {
            tracing::warn!(connection_id, ?posts, "push to a connection failed");
            return bad_gateway(reference);
        }
    }
    let answer = PushAnswer {
        id,
        delivered: posts.delivered,
        gone: posts.gone,
        failed: posts.failed + posts.undelivered,
        queued_jobs: report.queued_jobs,
    };
    let status = if report.queued_jobs > 0 { 202 } else { 200 };
    PushResponse::json(status, &answer)
}

fn gone(connection_id: &str) -> PushResponse {
    PushResponse::error(
        410,
        "gone",
        format!("connection {connection_id} is closed or does not exist"),
    )
}

fn bad_gateway(reference: &str) -> PushResponse {
    PushResponse::error(
        502,
        "delivery_failed",
        format!("@connections refused or failed; try again later (reference {reference})"),
    )
}

fn unavailable(reference: &str) -> PushResponse {
    PushResponse::error(
        503,
        "unavailable",
        format!("the stage's store or queue failed; try again later (reference {reference})"),
    )
}

#[cfg(test)]
mod tests;
