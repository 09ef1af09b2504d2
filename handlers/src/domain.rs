//! The chat's rules, free of Lambda and AWS types: validate what a client sends, decide who
//! receives it, and build the frames that go out.
//!
//! Decisions the issue left open, made here:
//! - A broadcast reaches every connection, **the sender included**: the echo tells the sender
//!   the message went through and where it sits in the order everyone else sees.
//! - A direct message (`"to"`) reaches only its recipient (which may be the sender itself);
//!   a recipient without a record gets the sender an `unknown_recipient` error frame.
//! - `data` must be a string with at least one non-whitespace character and at most
//!   [`MAX_DATA_BYTES`] bytes of UTF-8; fields other than `action`, `data` and `to` are ignored
//!   so newer clients keep working.
//! - `sentAt` is the time API Gateway received the message (`requestTimeEpoch`), not the time
//!   the handler ran, so every recipient of one broadcast sees the same instant.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::rooms::RoomName;
use serde::Serialize;
use serde_json::Value;

/// Largest `data` accepted, in bytes of UTF-8. API Gateway's own frame limit is 32 KB, so a
/// larger message could not have arrived in one frame anyway.
pub const MAX_DATA_BYTES: usize = 32 * 1024;
/// Largest frame posted to a connection: PostToConnection refuses more than 128 KB. JSON escaping
/// can blow `data` up six-fold (`\u0001`), so the built frame is checked too.
pub const MAX_FRAME_BYTES: usize = 128 * 1024;
/// Username bounds (in characters).
pub const MAX_USERNAME_CHARS: usize = 64;
/// The username of a client that did not give one.
pub const DEFAULT_USERNAME: &str = "anonymous";
/// Longest connection id accepted in `to`. API Gateway's ids are 16 characters; the bound only
/// keeps garbage out of the store lookup.
pub const MAX_CONNECTION_ID_CHARS: usize = 128;
/// Most connections in one `listConnections` answer, and the default `limit`. At most 64
/// characters of username each, a full page stays far below the 128 KB a post may carry.
pub const MAX_LIST_LIMIT: usize = 100;

/// Longest `requestId` a forwarded action takes (in characters, printable ASCII).
pub const MAX_REQUEST_ID_CHARS: usize = 64;

/// The WebSocket subprotocol this API speaks: the frames and actions this module defines, in
/// their first version. A client may offer it in `Sec-WebSocket-Protocol`; a later, incompatible
/// protocol gets a new name, so old and new clients can be told apart at the handshake.
pub const SUBPROTOCOL: &str = "wsstack.v1";

/// The client offered subprotocols, none of which this API speaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported WebSocket subprotocol {}: this API speaks only {SUBPROTOCOL}", offered_list(.offered))]
pub struct SubprotocolError {
    /// What the client offered, in its order.
    pub offered: Vec<String>,
}

fn offered_list(offered: &[String]) -> String {
    offered
        .iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The subprotocol to answer a handshake with, given the values of the client's
/// `Sec-WebSocket-Protocol` headers (each a comma-separated list, RFC 6455 section 4.1).
///
/// - No offer (or only empty ones): `Ok(None)`, the handshake goes on without a subprotocol.
/// - [`SUBPROTOCOL`] among the offers: `Ok(Some(SUBPROTOCOL))`; the `$connect` answer must carry
///   it as a `Sec-WebSocket-Protocol` response header, or browsers fail the connection.
/// - Only other protocols: `Err`, the handshake is refused.
///
/// API Gateway passes the header to the `$connect` integration and sends the value the
/// integration returns in its response headers back to the client ("Set up a $connect route
/// that requires a WebSocket subprotocol",
/// <https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-connect-route-subprotocol.html>).
pub fn negotiate_subprotocol<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
) -> Result<Option<&'static str>, SubprotocolError> {
    let offered: Vec<String> = header_values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    // Subprotocol names are tokens compared exactly (RFC 6455 section 11.3.4).
    if offered.iter().any(|p| p == SUBPROTOCOL) {
        return Ok(Some(SUBPROTOCOL));
    }
    Err(SubprotocolError { offered })
}

/// Why a username from the `$connect` query string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameError {
    #[error("username must not be empty")]
    Empty,
    #[error("username must be at most {MAX_USERNAME_CHARS} characters, got {0}")]
    TooLong(usize),
    #[error(
        "username must contain only printable characters: character {position} is {code_point}, {kind}"
    )]
    NotPrintable {
        /// 1-based, in characters.
        position: usize,
        /// `U+202E`.
        code_point: String,
        kind: Unprintable,
    },
    #[error("username must not start or end with whitespace")]
    EdgeWhitespace,
    /// Authentication is on but the event carries no verified identity: the authorizer did
    /// not run (a misconfigured stage), so nobody is let in.
    #[error("no verified identity: the authorizer's context has no {0}")]
    NotVerified(&'static str),
}

/// Who a new connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    /// The token's subject; only for authenticated connections.
    pub sub: Option<String>,
}

impl Identity {
    /// A username the client chose (no authentication), already validated.
    pub fn anonymous_choice(username: String) -> Self {
        Identity {
            username,
            sub: None,
        }
    }

    /// The identity the authorizer verified. The username must still be a valid username: a
    /// claim is data from the identity provider, not a promise about our limits.
    pub fn verified(username: Option<&str>, sub: Option<&str>) -> Result<Self, UsernameError> {
        let sub = sub
            .filter(|s| !s.is_empty())
            .ok_or(UsernameError::NotVerified("sub"))?;
        let username = username.ok_or(UsernameError::NotVerified("username"))?;
        Ok(Identity {
            username: validate_username(Some(username))?,
            sub: Some(sub.to_owned()),
        })
    }
}

/// The kinds of character a username refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unprintable {
    /// General category Cc: NUL, BEL, newline, ...
    Control,
    /// General category Cf: bidi overrides and isolates, zero-width space and joiners, soft
    /// hyphen, ... Invisible, and able to make one name read as another.
    Format,
    /// General categories Zl and Zp: line and paragraph separators.
    Separator,
}

impl std::fmt::Display for Unprintable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unprintable::Control => "a control character",
            Unprintable::Format => "an invisible format character (bidi control, zero-width, ...)",
            Unprintable::Separator => "a line or paragraph separator",
        })
    }
}

fn unprintable(c: char) -> Option<Unprintable> {
    use unicode_general_category::{GeneralCategory, get_general_category};
    match get_general_category(c) {
        GeneralCategory::Control => Some(Unprintable::Control),
        GeneralCategory::Format => Some(Unprintable::Format),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some(Unprintable::Separator)
        }
        _ => None,
    }
}

/// The username for a new connection: the query string's `username`, or [`DEFAULT_USERNAME`]
/// when absent. 1 to 64 printable characters: no control characters (Cc), no invisible format
/// characters (Cf: a right-to-left override or a zero-width joiner lets one name pass for
/// another), no line or paragraph separators; spaces are fine inside but not at either end,
/// where they would only confuse readers.
pub fn validate_username(raw: Option<&str>) -> Result<String, UsernameError> {
    let Some(name) = raw else {
        return Ok(DEFAULT_USERNAME.to_owned());
    };
    if name.is_empty() {
        return Err(UsernameError::Empty);
    }
    let chars = name.chars().count();
    if chars > MAX_USERNAME_CHARS {
        return Err(UsernameError::TooLong(chars));
    }
    if let Some((i, c, kind)) = name
        .chars()
        .enumerate()
        .find_map(|(i, c)| unprintable(c).map(|kind| (i, c, kind)))
    {
        return Err(UsernameError::NotPrintable {
            position: i + 1,
            code_point: format!("U+{:04X}", u32::from(c)),
            kind,
        });
    }
    if name.trim() != name {
        return Err(UsernameError::EdgeWhitespace);
    }
    Ok(name.to_owned())
}

/// A valid `sendMessage` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMessage {
    pub data: String,
    /// `Some(id)`: a direct message to that connection; `None`: a broadcast.
    pub to: Option<String>,
    /// `Some(room)`: to that room's members only (never together with `to`).
    pub room: Option<RoomName>,
}

/// Why a client message was refused. The `Display` text is the `message` of the error frame
/// and, with [`InputError::code`], part of the protocol: tests pin both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("the message has no body")]
    EmptyBody,
    #[error("binary frames are not supported; send a text frame with JSON")]
    BinaryFrame,
    #[error("the message is not valid JSON")]
    NotJson,
    #[error("the message must be a JSON object")]
    NotAnObject,
    #[error("field `data` is required")]
    MissingData,
    #[error("field `data` must be a string, got {0}")]
    DataNotString(&'static str),
    #[error("field `data` must not be empty")]
    EmptyData,
    /// `data` over its limit: [`MAX_DATA_BYTES`] of text for `sendMessage`, a forwarded
    /// action's `max_data_bytes` of JSON text.
    #[error("field `data` is {bytes} bytes; the limit is {limit}")]
    DataTooLarge { bytes: usize, limit: usize },
    #[error("the message would be {0} bytes on the wire; the limit is {MAX_FRAME_BYTES}")]
    FrameTooLarge(usize),
    #[error("field `to` must be a string, got {0}")]
    ToNotString(&'static str),
    #[error(
        "field `to` must be a connection id of 1 to {MAX_CONNECTION_ID_CHARS} printable characters"
    )]
    InvalidTo,
    #[error("no connection `{0}`")]
    UnknownRecipient(String),
    #[error("your connection has no record; reconnect")]
    UnknownSender,
    /// The post to the recipient failed. The service's own text (a 403 names the account and
    /// the role) stays in the log; the client gets `reference`, the id the log line carries
    /// (API Gateway's `requestId` of the sender's frame), to quote when it asks why.
    #[error("could not deliver to `{to}`; try again later (reference {reference})")]
    DeliveryFailed { to: String, reference: String },
    /// No route for the message's `action` (`None`: it has none). `supported` lists what a
    /// client may send: the built-in actions, then the app manifest's forwarded ones.
    #[error("{}", unknown_action_message(.action.as_deref(), .supported))]
    UnknownAction {
        action: Option<String>,
        supported: Vec<String>,
    },
    #[error("field `limit` must be an integer from 1 to {MAX_LIST_LIMIT}")]
    InvalidLimit,
    #[error(
        "field `cursor` must be the `next` of a previous `connections` answer (a string of 1 to {MAX_CONNECTION_ID_CHARS} printable characters)"
    )]
    InvalidCursor,
    #[error("field `room` is required")]
    MissingRoom,
    #[error("field `room` must be a string, got {0}")]
    RoomNotString(&'static str),
    #[error("field `room` {0}")]
    InvalidRoom(crate::rooms::RoomNameError),
    #[error(
        "fields `room` and `to` cannot be combined: a message goes to a room or to one connection"
    )]
    RoomWithTo,
    #[error(
        "you are in {} rooms, the most a connection may join; leave one first",
        crate::rooms::MAX_ROOMS_PER_CONNECTION
    )]
    TooManyRooms,
    #[error("you are not a member of room `{0}`; join it first")]
    NotAMember(String),
    /// Over the connection's rate: (messages per second, burst). Every client route counts.
    #[error("too many messages: at most {0} per second and {1} at once; this one was not sent")]
    RateLimited(u32, u32),
    /// Over the user's rate across all of their connections (authenticated stages).
    #[error(
        "too many messages from your account across its connections: at most {per_second} per second and {burst} at once; this one was not sent; retry in {retry_after_ms} ms"
    )]
    UserRateLimited {
        per_second: u32,
        burst: u32,
        retry_after_ms: u64,
    },
    /// A broadcast (to everyone or to a room) past the stage's budget of deliveries per second.
    #[error(
        "the stage's broadcast budget of {per_second} deliveries per second is used up; this message was not sent; retry in {retry_after_ms} ms (direct messages still go through)"
    )]
    BroadcastBudgetExceeded {
        per_second: u32,
        retry_after_ms: u64,
    },
    /// A forwarded action's `requestId` that is not 1 to [`MAX_REQUEST_ID_CHARS`] printable
    /// ASCII characters.
    #[error(
        "field `requestId` must be a string of 1 to {MAX_REQUEST_ID_CHARS} printable ASCII characters"
    )]
    InvalidRequestId,
    /// A forwarded action could not be put on the stage's bus. The service's own text stays in
    /// the log, under `reference` (API Gateway's `requestId` of the client's frame), as for
    /// [`InputError::DeliveryFailed`]. Nothing was forwarded: the client may send it again.
    #[error("could not forward `{action}`; try again later (reference {reference})")]
    BackendUnavailable { action: String, reference: String },
}

/// The error codes a client can receive through API Gateway, as docs/protocol.md lists them.
///
/// [`InputError`] has four more, which guard a direct invocation only: API Gateway routes a
/// body that is not a JSON object carrying `"action": "sendMessage"` to `$default` (so
/// `empty_body`, `not_json` and `not_an_object` never reach `sendMessage`), and closes the
/// connection on a binary frame (`binary_frame`; "Binary media types for WebSocket APIs" in the
/// API Gateway developer guide).
pub const CLIENT_ERROR_CODES: &[&str] = &[
    "missing_data",
    "data_not_string",
    "empty_data",
    "data_too_large",
    "frame_too_large",
    "to_not_string",
    "invalid_to",
    "unknown_recipient",
    "unknown_sender",
    "delivery_failed",
    "rate_limited",
    "user_rate_limited",
    "broadcast_budget_exceeded",
    "unknown_action",
    "invalid_limit",
    "invalid_cursor",
    "missing_room",
    "room_not_string",
    "invalid_room",
    "room_with_to",
    "too_many_rooms",
    "not_a_member",
    "invalid_request_id",
    "backend_unavailable",
];

fn unknown_action_message(action: Option<&str>, supported: &[String]) -> String {
    let supported = supported.join(", ");
    match action {
        Some(a) => format!("unknown action `{a}`; supported actions: {supported}"),
        None => format!("the message has no `action`; supported actions: {supported}"),
    }
}

impl InputError {
    /// `unknown_action` for `action`, listing the built-in actions (the route table's client
    /// actions, in its order) and then `forwarded`, the stage's forwarded actions.
    pub fn unknown_action<'a>(
        action: Option<String>,
        forwarded: impl IntoIterator<Item = &'a str>,
    ) -> InputError {
        let supported = wsstack_routes::client_actions()
            .map(str::to_owned)
            .chain(forwarded.into_iter().map(str::to_owned))
            .collect();
        InputError::UnknownAction { action, supported }
    }

    /// A stable, machine-readable code for the error frame.
    pub fn code(&self) -> &'static str {
        match self {
            InputError::EmptyBody => "empty_body",
            InputError::BinaryFrame => "binary_frame",
            InputError::NotJson => "not_json",
            InputError::NotAnObject => "not_an_object",
            InputError::MissingData => "missing_data",
            InputError::DataNotString(_) => "data_not_string",
            InputError::EmptyData => "empty_data",
            InputError::DataTooLarge { .. } => "data_too_large",
            InputError::FrameTooLarge(_) => "frame_too_large",
            InputError::ToNotString(_) => "to_not_string",
            InputError::InvalidTo => "invalid_to",
            InputError::UnknownRecipient(_) => "unknown_recipient",
            InputError::UnknownSender => "unknown_sender",
            InputError::DeliveryFailed { .. } => "delivery_failed",
            InputError::RateLimited(..) => "rate_limited",
            InputError::UserRateLimited { .. } => "user_rate_limited",
            InputError::BroadcastBudgetExceeded { .. } => "broadcast_budget_exceeded",
            InputError::UnknownAction { .. } => "unknown_action",
            InputError::InvalidLimit => "invalid_limit",
            InputError::InvalidCursor => "invalid_cursor",
            InputError::MissingRoom => "missing_room",
            InputError::RoomNotString(_) => "room_not_string",
            InputError::InvalidRoom(_) => "invalid_room",
            InputError::RoomWithTo => "room_with_to",
            InputError::TooManyRooms => "too_many_rooms",
            InputError::NotAMember(_) => "not_a_member",
            InputError::InvalidRequestId => "invalid_request_id",
            InputError::BackendUnavailable { .. } => "backend_unavailable",
        }
    }

    /// When a refused request may be sent again with success, milliseconds from now: the
    /// error frame's `retryAfterMs`, for the limits that know it.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            InputError::UserRateLimited { retry_after_ms, .. }
            | InputError::BroadcastBudgetExceeded { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        }
    }
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The JSON object of a message's body: the checks every action shares.
pub(crate) fn parse_object(
    body: Option<&str>,
    is_base64: bool,
) -> Result<serde_json::Map<String, Value>, InputError> {
    if is_base64 {
        return Err(InputError::BinaryFrame);
    }
    let body = match body {
        Some(b) if !b.is_empty() => b,
        _ => return Err(InputError::EmptyBody),
    };
    let value: Value = serde_json::from_str(body).map_err(|_| InputError::NotJson)?;
    let Value::Object(fields) = value else {
        return Err(InputError::NotAnObject);
    };
    Ok(fields)
}

/// Whether `id` can be a connection id: 1 to [`MAX_CONNECTION_ID_CHARS`] characters, no
/// control characters.
fn plausible_connection_id(id: &str) -> bool {
    let n = id.chars().count();
    (1..=MAX_CONNECTION_ID_CHARS).contains(&n) && !id.chars().any(char::is_control)
}

/// Parses and validates the body of a `sendMessage` message.
pub fn parse_send_message(body: Option<&str>, is_base64: bool) -> Result<SendMessage, InputError> {
    let mut fields = parse_object(body, is_base64)?;
    let data = match fields.remove("data") {
        None => return Err(InputError::MissingData),
        Some(Value::String(s)) => s,
        Some(other) => return Err(InputError::DataNotString(json_type(&other))),
    };
    if data.trim().is_empty() {
        return Err(InputError::EmptyData);
    }
    if data.len() > MAX_DATA_BYTES {
        return Err(InputError::DataTooLarge {
            bytes: data.len(),
            limit: MAX_DATA_BYTES,
        });
    }
    let to = match fields.remove("to") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if plausible_connection_id(&s) => Some(s),
        Some(Value::String(_)) => return Err(InputError::InvalidTo),
        Some(other) => return Err(InputError::ToNotString(json_type(&other))),
    };
    let room = match fields.remove("room") {
        None | Some(Value::Null) => None,
        Some(v) => Some(room_field(v)?),
    };
    if room.is_some() && to.is_some() {
        return Err(InputError::RoomWithTo);
    }
    Ok(SendMessage { data, to, room })
}

/// A valid `listConnections` request: `{"action": "listConnections", "cursor"?, "limit"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListConnections {
    /// The `next` of the previous answer; `None` for the first page.
    pub cursor: Option<String>,
    /// 1 to [`MAX_LIST_LIMIT`]; [`MAX_LIST_LIMIT`] when the client gave none.
    pub limit: usize,
}

/// Parses and validates the body of a `listConnections` message. `null` is the same as an
/// absent field, so a client can send back the `next` of the last page as it got it.
pub fn parse_list_connections(
    body: Option<&str>,
    is_base64: bool,
) -> Result<ListConnections, InputError> {
    let mut fields = parse_object(body, is_base64)?;
    let cursor = match fields.remove("cursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if plausible_connection_id(&s) => Some(s),
        Some(_) => return Err(InputError::InvalidCursor),
    };
    let limit = match fields.remove("limit") {
        None | Some(Value::Null) => MAX_LIST_LIMIT,
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) if (1..=MAX_LIST_LIMIT).contains(&n) => n,
            _ => return Err(InputError::InvalidLimit),
        },
        Some(_) => return Err(InputError::InvalidLimit),
    };
    Ok(ListConnections { cursor, limit })
}

/// The `action` of a message that reached `$default`, if it has one (for the error text).
pub fn requested_action(body: Option<&str>) -> Option<String> {
    let value: Value = serde_json::from_str(body?).ok()?;
    match value.get(wsstack_routes::ROUTE_SELECTION_FIELD)? {
        Value::String(s) => Some(s.clone()),
        // API Gateway stringifies non-string actions before matching; do the same in the text.
        other => Some(other.to_string()),
    }
}

/// Who receives a valid message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// Every open connection, the sender included.
    Everyone,
    /// One connection.
    One(String),
    /// The members of a room, the sender included (it must be one).
    Room(RoomName),
}

impl SendMessage {
    pub fn recipients(&self) -> Recipients {
        match (&self.to, &self.room) {
            (Some(id), _) => Recipients::One(id.clone()),
            (None, Some(room)) => Recipients::Room(room.clone()),
            (None, None) => Recipients::Everyone,
        }
    }
}

/// A frame posted to clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Frame {
    /// A broadcast chat message, or a room's (then `room` names it).
    #[serde(rename_all = "camelCase")]
    Message {
        /// The message's id (API Gateway's `messageId`): delivery is at least once, so a client
        /// drops a frame whose id it has seen.
        id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<String>,
        from: String,
        data: String,
        sent_at: String,
    },
    /// A direct message to the one connection in `to`.
    #[serde(rename_all = "camelCase")]
    Direct {
        /// As in [`Frame::Message`].
        id: String,
        from: String,
        to: String,
        data: String,
        sent_at: String,
    },
    /// A message from a backend service: the push API, a reply through the bus, or the `push`
    /// tool. The same shape as [`wsstack_routes::push_api::PushFrame`], which backends use.
    #[serde(rename_all = "camelCase")]
    Push {
        /// Unique per push: a client drops a frame whose id it has seen (delivery is at least
        /// once).
        id: String,
        /// Any JSON value the backend sent.
        data: Value,
        /// The `requestId` of the client message this answers, when it answers one.
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
        sent_at: String,
    },
    /// A page of the open connections, the answer to `listConnections`. `next` is `null` on
    /// the last page; `you` is the asking connection's own id, so a client can tell itself
    /// apart in `items`.
    #[serde(rename_all = "camelCase")]
    Connections {
        items: Vec<ConnectionSummary>,
        next: Option<String>,
        you: String,
    },
    /// The sender joined `room` (also when it already was a member).
    Joined { room: String },
    /// The sender left `room`.
    Left { room: String },
    /// A forwarded action is on the stage's bus (the answer of its two-way route): `eventId`
    /// is EventBridge's id of the event; `requestId` the client's, when it sent one.
    #[serde(rename_all = "camelCase")]
    Accepted {
        action: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        event_id: String,
    },
    /// The sender's message was refused.
    #[serde(rename_all = "camelCase")]
    Error {
        code: String,
        message: String,
        /// The refused forwarded action's `requestId`, when it had a valid one.
        #[serde(skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        /// With `unknown_action`: the actions a client may send, the built-in ones (in the
        /// route table's order) and then the stage's forwarded actions (its app manifest's).
        #[serde(skip_serializing_if = "Option::is_none")]
        supported_actions: Option<Vec<String>>,
        /// For the limits that know it: when a retry will pass, milliseconds from now.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
}

/// One connection as `listConnections` shows it: what another client needs to name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionSummary {
    pub connection_id: String,
    pub username: String,
    /// ISO-8601, like `sentAt`.
    pub connected_at: String,
}

/// ISO-8601 in UTC with milliseconds, e.g. `2026-11-26T14:27:06.123Z`.
pub fn iso8601(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Frame {
    /// The frame for a valid message from `from` (the sender's username).
    pub fn for_message(msg: &SendMessage, id: &str, from: &str, sent_at: DateTime<Utc>) -> Frame {
        let sent_at = iso8601(sent_at);
        match &msg.to {
            None => Frame::Message {
                id: id.to_owned(),
                room: msg.room.as_ref().map(|r| r.as_str().to_owned()),
                from: from.to_owned(),
                data: msg.data.clone(),
                sent_at,
            },
            Some(to) => Frame::Direct {
                id: id.to_owned(),
                from: from.to_owned(),
                to: to.clone(),
                data: msg.data.clone(),
                sent_at,
            },
        }
    }

    /// A push from a backend service, with a new id.
    pub fn push(data: Value, reply_to: Option<String>, sent_at: DateTime<Utc>) -> Frame {
        Frame::Push {
            id: uuid::Uuid::new_v4().simple().to_string(),
            data,
            reply_to,
            sent_at: iso8601(sent_at),
        }
    }

    /// The error frame for refused input. Unknown actions also list the supported ones, so a
    /// client can discover the protocol.
    pub fn error(err: &InputError) -> Frame {
        let supported_actions = match err {
            InputError::UnknownAction { supported, .. } => Some(supported.clone()),
            _ => None,
        };
        Frame::Error {
            code: err.code().to_owned(),
            message: err.to_string(),
            request_id: None,
            supported_actions,
            retry_after_ms: err.retry_after_ms(),
        }
    }

    /// The error frame answering a forwarded action, which names the client's `requestId`.
    pub fn error_answering(err: &InputError, request_id: Option<&str>) -> Frame {
        let mut frame = Frame::error(err);
        if let Frame::Error { request_id: id, .. } = &mut frame {
            *id = request_id.map(str::to_owned);
        }
        frame
    }

    /// The JSON text of the frame.
    pub fn to_json(&self) -> String {
        // Serializing plain strings into a `Value`-free struct cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The JSON text, refused when too large to post.
    pub fn to_wire(&self) -> Result<String, InputError> {
        let json = self.to_json();
        if json.len() > MAX_FRAME_BYTES {
            return Err(InputError::FrameTooLarge(json.len()));
        }
        Ok(json)
    }
}

/// The `room` field's value as a room name.
pub(crate) fn room_field(value: Value) -> Result<RoomName, InputError> {
    match value {
        Value::String(s) => RoomName::parse(&s).map_err(InputError::InvalidRoom),
        other => Err(InputError::RoomNotString(json_type(&other))),
    }
}

/// The room of a `join` or `leave` message: `{"action": "join", "room": "lobby"}`.
pub fn parse_room_request(body: Option<&str>, is_base64: bool) -> Result<RoomName, InputError> {
    let mut fields = parse_object(body, is_base64)?;
    match fields.remove("room") {
        None | Some(Value::Null) => Err(InputError::MissingRoom),
        Some(v) => room_field(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn username_rules() {
        assert_eq!(validate_username(None).unwrap(), "anonymous");
        assert_eq!(validate_username(Some("alice")).unwrap(), "alice");
        assert_eq!(validate_username(Some("Zoë B.")).unwrap(), "Zoë B.");
        assert_eq!(
            validate_username(Some(&"é".repeat(64))).unwrap(),
            "é".repeat(64)
        );
        assert_eq!(validate_username(Some("")), Err(UsernameError::Empty));
        assert_eq!(
            validate_username(Some(&"a".repeat(65))),
            Err(UsernameError::TooLong(65))
        );
        assert_eq!(
            validate_username(Some(" a")),
            Err(UsernameError::EdgeWhitespace)
        );
        // Other scripts pass. (Cf also holds U+200C ZWNJ, which Persian spelling uses, and the
        // ZWJ of emoji sequences: refused all the same, as a username is a label to tell
        // people apart, where an invisible character only helps impersonation.)
        assert_eq!(validate_username(Some("한국어")).unwrap(), "한국어");
        assert_eq!(validate_username(Some("אבג")).unwrap(), "אבג");
    }

    #[test]
    fn usernames_refuse_control_format_and_separator_characters_naming_them() {
        for (name, position, code_point, kind) in [
            ("a\nb", 2, "U+000A", Unprintable::Control),
            ("\u{7f}x", 1, "U+007F", Unprintable::Control),
            // Right-to-left override: "admin\u{202E}nimda" renders as "adminadmin".
            ("admin\u{202E}txt", 6, "U+202E", Unprintable::Format),
            ("ab\u{2066}c", 3, "U+2066", Unprintable::Format), // left-to-right isolate
            ("ali\u{200B}ce", 4, "U+200B", Unprintable::Format), // zero-width space
            ("al\u{200D}ice", 3, "U+200D", Unprintable::Format), // zero-width joiner
            ("\u{FEFF}bob", 1, "U+FEFF", Unprintable::Format), // byte order mark
            ("bo\u{00AD}b", 3, "U+00AD", Unprintable::Format), // soft hyphen
            ("a\u{2028}b", 2, "U+2028", Unprintable::Separator),
        ] {
            let err = validate_username(Some(name)).expect_err(name);
            assert_eq!(
                err,
                UsernameError::NotPrintable {
                    position,
                    code_point: code_point.to_owned(),
                    kind
                },
                "{name:?}"
            );
        }
        assert_eq!(
            validate_username(Some("admin\u{202E}txt"))
                .expect_err("RLO")
                .to_string(),
            "username must contain only printable characters: character 6 is U+202E, an invisible \
             format character (bidi control, zero-width, ...)"
        );
    }

    #[test]
    fn subprotocol_negotiation() {
        assert_eq!(negotiate_subprotocol([]), Ok(None));
        assert_eq!(negotiate_subprotocol([""]), Ok(None));
        assert_eq!(negotiate_subprotocol(["wsstack.v1"]), Ok(Some(SUBPROTOCOL)));
        // Among others, in one header or several.
        assert_eq!(
            negotiate_subprotocol(["chat, wsstack.v1 ,mqtt"]),
            Ok(Some(SUBPROTOCOL))
        );
        assert_eq!(
            negotiate_subprotocol(["chat", "wsstack.v1"]),
            Ok(Some(SUBPROTOCOL))
        );
        let err = negotiate_subprotocol(["chat, WSSTACK.V1", "wsstack.v2"]).unwrap_err();
        assert_eq!(err.offered, ["chat", "WSSTACK.V1", "wsstack.v2"]);
        assert_eq!(
            err.to_string(),
            "unsupported WebSocket subprotocol `chat`, `WSSTACK.V1`, `wsstack.v2`: this API \
             speaks only wsstack.v1"
        );
    }

    #[test]
    fn parses_broadcast_and_direct() {
        assert_eq!(
            parse_send_message(
                Some(r#"{"action":"sendMessage","data":"hi","extra":1}"#),
                false
            ),
            Ok(SendMessage {
                data: "hi".into(),
                to: None,
                room: None
            })
        );
        let direct = parse_send_message(
            Some(r#"{"action":"sendMessage","data":"hi","to":"abc="}"#),
            false,
        )
        .unwrap();
        assert_eq!(direct.recipients(), Recipients::One("abc=".into()));
    }

    #[test]
    fn data_at_the_limit_is_accepted_one_byte_more_is_not() {
        let ok = format!(r#"{{"data":"{}"}}"#, "x".repeat(MAX_DATA_BYTES));
        assert!(parse_send_message(Some(&ok), false).is_ok());
        let big = format!(r#"{{"data":"{}"}}"#, "x".repeat(MAX_DATA_BYTES + 1));
        assert_eq!(
            parse_send_message(Some(&big), false),
            Err(InputError::DataTooLarge {
                bytes: MAX_DATA_BYTES + 1,
                limit: MAX_DATA_BYTES
            })
        );
    }

    #[test]
    fn frames_have_the_documented_shape() {
        let at = Utc.timestamp_millis_opt(1_764_167_226_123).unwrap();
        let msg = SendMessage {
            data: "hi".into(),
            to: None,
            room: None,
        };
        assert_eq!(
            Frame::for_message(&msg, "m1", "alice", at).to_json(),
            r#"{"type":"message","id":"m1","from":"alice","data":"hi","sentAt":"2025-11-26T14:27:06.123Z"}"#
        );
        let direct = SendMessage {
            data: "hi".into(),
            to: Some("bob1".into()),
            room: None,
        };
        assert_eq!(
            Frame::for_message(&direct, "m1", "alice", at).to_json(),
            r#"{"type":"direct","id":"m1","from":"alice","to":"bob1","data":"hi","sentAt":"2025-11-26T14:27:06.123Z"}"#
        );
        // The supported actions are the route table's client actions, in its order.
        let actions: Vec<&str> = wsstack_routes::client_actions().collect();
        assert_eq!(
            actions[..4],
            ["sendMessage", "listConnections", "join", "leave"]
        );
        assert_eq!(
            Frame::error(&InputError::unknown_action(Some("x".into()), [])).to_json(),
            format!(
                r#"{{"type":"error","code":"unknown_action","message":"unknown action `x`; supported actions: {}","supportedActions":{}}}"#,
                actions.join(", "),
                serde_json::to_string(&actions).expect("json")
            )
        );
        // A stage's forwarded actions follow the built-in ones, in the message and the list.
        let with_forwarded: Vec<&str> = actions
            .iter()
            .copied()
            .chain(["submitJob", "cancelJob"])
            .collect();
        assert_eq!(
            Frame::error(&InputError::unknown_action(
                None,
                ["submitJob", "cancelJob"]
            ))
            .to_json(),
            format!(
                r#"{{"type":"error","code":"unknown_action","message":"the message has no `action`; supported actions: {}","supportedActions":{}}}"#,
                with_forwarded.join(", "),
                serde_json::to_string(&with_forwarded).expect("json")
            )
        );
        let in_room = SendMessage {
            data: "hi".into(),
            to: None,
            room: Some(RoomName::parse("lobby").unwrap()),
        };
        assert_eq!(
            Frame::for_message(&in_room, "m1", "alice", at).to_json(),
            r#"{"type":"message","id":"m1","room":"lobby","from":"alice","data":"hi","sentAt":"2025-11-26T14:27:06.123Z"}"#
        );
        assert_eq!(
            Frame::Joined {
                room: "lobby".into()
            }
            .to_json(),
            r#"{"type":"joined","room":"lobby"}"#
        );
    }

    #[test]
    fn send_message_takes_a_room_but_not_with_to() {
        let m = parse_send_message(Some(r#"{"data":"hi","room":"lobby"}"#), false).unwrap();
        assert_eq!(
            m.recipients(),
            Recipients::Room(RoomName::parse("lobby").unwrap())
        );
        assert_eq!(
            parse_send_message(Some(r#"{"data":"hi","room":"lobby","to":"x"}"#), false),
            Err(InputError::RoomWithTo)
        );
        assert_eq!(
            parse_send_message(Some(r#"{"data":"hi","room":7}"#), false),
            Err(InputError::RoomNotString("number"))
        );
        assert_eq!(
            parse_send_message(Some(r#"{"data":"hi","room":"a b"}"#), false).map_err(|e| e.code()),
            Err("invalid_room")
        );
    }

    #[test]
    fn escaping_can_push_a_valid_message_over_the_frame_limit() {
        let msg = SendMessage {
            data: "\u{1}".repeat(MAX_DATA_BYTES),
            to: None,
            room: None,
        };
        let frame = Frame::for_message(&msg, "m1", "a", Utc::now());
        assert!(
            matches!(frame.to_wire(), Err(InputError::FrameTooLarge(n)) if n > MAX_FRAME_BYTES)
        );
    }

    #[test]
    fn list_connections_reads_cursor_and_limit() {
        assert_eq!(
            parse_list_connections(Some(r#"{"action":"listConnections"}"#), false),
            Ok(ListConnections {
                cursor: None,
                limit: MAX_LIST_LIMIT
            })
        );
        assert_eq!(
            parse_list_connections(Some(r#"{"cursor":"abc=","limit":2}"#), false),
            Ok(ListConnections {
                cursor: Some("abc=".into()),
                limit: 2
            })
        );
        assert_eq!(
            parse_list_connections(Some(r#"{"cursor":null,"limit":null}"#), false),
            Ok(ListConnections {
                cursor: None,
                limit: MAX_LIST_LIMIT
            })
        );
        for body in [
            r#"{"limit":0}"#,
            r#"{"limit":101}"#,
            r#"{"limit":-1}"#,
            r#"{"limit":2.5}"#,
            r#"{"limit":"10"}"#,
        ] {
            assert_eq!(
                parse_list_connections(Some(body), false),
                Err(InputError::InvalidLimit),
                "{body}"
            );
        }
        for body in [
            r#"{"cursor":""}"#,
            r#"{"cursor":7}"#,
            r#"{"cursor":"a\nb"}"#,
        ] {
            assert_eq!(
                parse_list_connections(Some(body), false),
                Err(InputError::InvalidCursor),
                "{body}"
            );
        }
        assert_eq!(
            parse_list_connections(Some("[]"), false),
            Err(InputError::NotAnObject)
        );
        assert_eq!(
            parse_list_connections(Some("{}"), true),
            Err(InputError::BinaryFrame)
        );
    }

    #[test]
    fn connections_frame_has_the_documented_shape() {
        let frame = Frame::Connections {
            items: vec![ConnectionSummary {
                connection_id: "bob1".into(),
                username: "bob".into(),
                connected_at: "2025-11-26T14:27:06.123Z".into(),
            }],
            next: None,
            you: "alice1".into(),
        };
        assert_eq!(
            frame.to_json(),
            r#"{"type":"connections","items":[{"connectionId":"bob1","username":"bob","connectedAt":"2025-11-26T14:27:06.123Z"}],"next":null,"you":"alice1"}"#
        );
    }

    #[test]
    fn requested_action_reads_strings_and_stringifies_others() {
        assert_eq!(
            requested_action(Some(r#"{"action":"join"}"#)).as_deref(),
            Some("join")
        );
        assert_eq!(
            requested_action(Some(r#"{"action":7}"#)).as_deref(),
            Some("7")
        );
        assert_eq!(requested_action(Some("nope")), None);
        assert_eq!(requested_action(None), None);
    }

    #[test]
    fn join_and_leave_read_their_room() {
        let room = parse_room_request(Some(r#"{"action":"join","room":"lobby"}"#), false);
        assert_eq!(room.unwrap().as_str(), "lobby");
        assert_eq!(
            parse_room_request(Some(r#"{"action":"join"}"#), false),
            Err(InputError::MissingRoom)
        );
        assert_eq!(
            parse_room_request(Some(r#"{"action":"join","room":null}"#), false),
            Err(InputError::MissingRoom)
        );
        assert_eq!(
            parse_room_request(Some(r#"{"action":"join","room":["x"]}"#), false),
            Err(InputError::RoomNotString("array"))
        );
        assert_eq!(
            parse_room_request(Some(r#"{"action":"join","room":""}"#), false),
            Err(InputError::InvalidRoom(crate::rooms::RoomNameError::Empty))
        );
        assert_eq!(
            parse_room_request(Some("nope"), false),
            Err(InputError::NotJson)
        );
        assert_eq!(
            parse_room_request(Some("x"), true),
            Err(InputError::BinaryFrame)
        );
        assert_eq!(
            InputError::InvalidRoom(crate::rooms::RoomNameError::TooLong(65)).to_string(),
            "field `room` must be at most 64 characters, got 65"
        );
    }
}
