//! The push API, declared once: the HTTP API a backend service calls (IAM-signed) to reach a
//! connection, a user on all of their connections, a room or everyone, to see who is online and
//! to disconnect a client. Synth builds its routes (each `AuthorizationType: AWS_IAM`) and the
//! managed policy that grants `execute-api:Invoke` on exactly them from [`PUSH_ROUTES`]; the
//! `push-api` handler and the local gateway's push server dispatch with [`match_route`]; the
//! backend client builds its requests from it.
//!
//! Bodies and answers are the serde types of this module, so the server and the client cannot
//! disagree on a field name.

use serde::{Deserialize, Serialize};

/// What a push API request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PushOperation {
    /// `POST /connections/{connectionId}/messages`: one connection.
    PostToConnection,
    /// `POST /users/{userId}/messages`: every open connection of one user.
    PostToUser,
    /// `POST /rooms/{room}/messages`: every member of a room.
    PostToRoom,
    /// `POST /messages`: everyone (through the queue where the stage fans out that way).
    PostToEveryone,
    /// `GET /users/{userId}/connections`: the user's open connections (presence).
    ListUserConnections,
    /// `DELETE /connections/{connectionId}`: close a client's connection.
    DeleteConnection,
}

/// One route of the push API: an HTTP method and a path template whose `{name}` segments are
/// parameters, as an HTTP API route key spells them
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-routes.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushRoute {
    pub operation: PushOperation,
    pub method: &'static str,
    pub path: &'static str,
    /// The PascalCase stem of the route's logical ID (`PushApi{stem}Route`): an API, renaming
    /// it replaces the live route.
    pub logical_id_stem: &'static str,
}

impl PushRoute {
    /// The HTTP API route key: `"POST /users/{userId}/messages"`.
    pub fn route_key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The path with its parameters filled in (each value percent-encoded as one segment).
    pub fn path_with(&self, params: &[&str]) -> String {
        let mut values = params.iter();
        self.path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    values
                        .next()
                        .map_or_else(String::new, |v| encode_segment(v))
                } else {
                    segment.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The path as an IAM resource of `execute-api:Invoke` matches it: each parameter a `*`.
    pub fn iam_path(&self) -> String {
        self.path
            .split('/')
            .map(|s| if s.starts_with('{') { "*" } else { s })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The routes of the push API.
pub const PUSH_ROUTES: [PushRoute; 6] = [
    PushRoute {
        operation: PushOperation::PostToConnection,
        method: "POST",
        path: "/connections/{connectionId}/messages",
        logical_id_stem: "PostToConnection",
    },
    PushRoute {
        operation: PushOperation::PostToUser,
        method: "POST",
        path: "/users/{userId}/messages",
        logical_id_stem: "PostToUser",
    },
    PushRoute {
        operation: PushOperation::PostToRoom,
        method: "POST",
        path: "/rooms/{room}/messages",
        logical_id_stem: "PostToRoom",
    },
    PushRoute {
        operation: PushOperation::PostToEveryone,
        method: "POST",
        path: "/messages",
        logical_id_stem: "PostToEveryone",
    },
    PushRoute {
        operation: PushOperation::ListUserConnections,
        method: "GET",
        path: "/users/{userId}/connections",
        logical_id_stem: "ListUserConnections",
    },
    PushRoute {
        operation: PushOperation::DeleteConnection,
        method: "DELETE",
        path: "/connections/{connectionId}",
        logical_id_stem: "DeleteConnection",
    },
];

/// A matched request: which route, and its path parameters (percent-decoded), in the order the
/// path names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub route: &'static PushRoute,
    pub params: Vec<String>,
}

/// Why a request matches no route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoMatch {
    /// No route has this path (404).
    NotFound,
    /// The path exists, not with this method (405); the methods it has.
    MethodNotAllowed(Vec<&'static str>),
}

/// The route a request names, matched exactly (no trailing slash, no empty parameter).
pub fn match_route(method: &str, path: &str) -> Result<Matched, NoMatch> {
    let mut methods = Vec::new();
    for route in &PUSH_ROUTES {
        let Some(params) = match_path(route.path, path) else {
            continue;
        };
        if route.method.eq_ignore_ascii_case(method) {
            return Ok(Matched { route, params });
        }
        methods.push(route.method);
    }
    if methods.is_empty() {
        Err(NoMatch::NotFound)
    } else {
        Err(NoMatch::MethodNotAllowed(methods))
    }
}

fn match_path(template: &str, path: &str) -> Option<Vec<String>> {
    let mut want = template.split('/');
    let mut have = path.split('/');
    let mut params = Vec::new();
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(h)) if w.starts_with('{') => {
                if h.is_empty() {
                    return None;
                }
                params.push(decode_segment(h)?);
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return None,
        }
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes; `None` when one is malformed or the result is not UTF-8.
fn decode_segment(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Largest request body the push API takes: a WebSocket frame's 128 KB limit
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html>);
/// larger is answered 413.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;

/// The body of every `POST .../messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushRequest {
    /// Any JSON value; clients receive it as the frame's `data`.
    pub data: serde_json::Value,
    /// The `requestId` of the client message this answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

/// The frame clients receive for a push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "push", rename_all = "camelCase")]
pub struct PushFrame {
    /// Unique per push: a client drops a frame whose id it has seen (delivery is at least once).
    pub id: String,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// When the push API accepted it, RFC 3339 UTC.
    pub sent_at: String,
}

/// The answer to a push (200), or to one queued (202, `queuedJobs` > 0).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushAnswer {
    /// The push's id, as clients see it in the frame.
    pub id: String,
    pub delivered: usize,
    /// Connections that turned out to be gone (their records are deleted).
    pub gone: usize,
    pub failed: usize,
    /// Fan-out jobs enqueued (the stage fans out through the queue, or the deadline came
    /// first); their deliveries are not counted above.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub queued_jobs: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The answer to `GET /users/{userId}/connections`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    pub user_id: String,
    pub connections: Vec<PresenceConnection>,
}

/// One open connection of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceConnection {
    pub connection_id: String,
    /// When it connected, epoch milliseconds.
    pub connected_at: i64,
}

/// Every error answer: a stable code and a message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushError {
    pub error: String,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_matches_its_own_path_and_no_other() {
        for route in &PUSH_ROUTES {
            let params: Vec<&str> = route.path.matches('{').map(|_| "a b/c").collect();
            let path = route.path_with(&params);
            let m = match_route(route.method, &path).expect(&path);
            assert_eq!(m.route.operation, route.operation, "{path}");
            assert!(m.params.iter().all(|p| p == "a b/c"), "{path}: {m:?}");
        }
    }

    #[test]
    fn unknown_paths_are_not_found_and_wrong_methods_name_the_allowed_ones() {
        assert_eq!(match_route("POST", "/nope"), Err(NoMatch::NotFound));
        assert_eq!(match_route("POST", "/messages/"), Err(NoMatch::NotFound));
        assert_eq!(
            match_route("POST", "/connections//messages"),
            Err(NoMatch::NotFound)
        );
        assert_eq!(
            match_route("GET", "/messages"),
            Err(NoMatch::MethodNotAllowed(vec!["POST"]))
        );
        assert_eq!(
            match_route("POST", "/connections/%zz/messages"),
            Err(NoMatch::NotFound)
        );
    }

    #[test]
    fn route_keys_and_iam_paths() {
        let user = &PUSH_ROUTES[1];
        assert_eq!(user.route_key(), "POST /users/{userId}/messages");
        assert_eq!(user.iam_path(), "/users/*/messages");
        assert_eq!(PUSH_ROUTES[3].iam_path(), "/messages");
    }

    #[test]
    fn the_frame_is_tagged_push_and_omits_an_absent_reply_to() {
        let frame = PushFrame {
            id: "p1".into(),
            data: serde_json::json!({"n": 1}),
            reply_to: None,
            sent_at: "2026-01-01T00:00:00Z".into(),
        };
        assert_eq!(
            serde_json::to_value(&frame).unwrap(),
            serde_json::json!({"type": "push", "id": "p1", "data": {"n": 1}, "sentAt": "2026-01-01T00:00:00Z"})
        );
    }
}
