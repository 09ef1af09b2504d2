//! The client protocol as types, and the AsyncAPI 3.0 document generated from them.
//!
//! - [`ClientMessage`]: what a client sends, one variant per client action of the route table,
//!   tagged by `action` (API Gateway's route selection field).
//! - [`crate::domain::Frame`]: what a client receives, tagged by `type`.
//! - [`crate::domain::CLIENT_ERROR_CODES`]: the `code`s an error frame can carry.
//!
//! The handlers parse bodies with their own validating parsers (`domain::parse_send_message`,
//! ...), which name the exact field that is wrong; these types are the protocol's declaration
//! and the source of `docs/asyncapi.yaml` ([`asyncapi_document`]). Tests check that the parsers
//! accept what the types describe, that every client action has its variant, and that the
//! document in the repository is the one these types generate.

use schemars::JsonSchema;
use schemars::generate::{Contract, SchemaSettings};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::domain::{
    CLIENT_ERROR_CODES, Frame, MAX_CONNECTION_ID_CHARS, MAX_DATA_BYTES, MAX_LIST_LIMIT, SUBPROTOCOL,
};
use crate::rooms::MAX_ROOM_NAME_CHARS;

/// A room name: 1 to 64 ASCII letters, digits, `-`, `_`, `.` or `:` (case-sensitive).
const ROOM_PATTERN: &str = "^[A-Za-z0-9._:-]{1,64}$";
/// A forwarded action's `requestId`: 1 to 64 printable ASCII characters (space to `~`).
const REQUEST_ID_PATTERN: &str = "^[ -~]{1,64}$";

// Issue 17: its `action` is whatever name the app manifest gives, so it is a message of its
// own rather than a `ClientMessage` variant (whose tags are the route table's actions).
/// A forwarded action: one of the stage's actions from the app manifest (not a built-in one),
/// put on the stage's EventBridge bus for the backend and answered with an `accepted` frame
/// once it is there, or an error frame (naming its `requestId`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForwardedActionMessage {
    /// One of the stage's forwarded actions (the app manifest's names).
    pub action: String,
    /// Any JSON value, at most the action's `maxDataBytes` as compact JSON text (default
    /// 32,768); absent is `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Names the request in the answer and in the event's detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = REQUEST_ID_PATTERN))]
    pub request_id: Option<String>,
}

impl ForwardedActionMessage {
    /// An example, as the AsyncAPI document and the tests use it.
    pub fn example() -> Self {
        ForwardedActionMessage {
            action: "placeOrder".to_owned(),
            data: Some(json!({"sku": "A-1", "quantity": 2})),
            request_id: Some("order-17".to_owned()),
        }
    }
}

/// A message a client sends, as JSON text in one text frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action")]
pub enum ClientMessage {
    /// A chat message: to everyone (the sender included), to the members of `room`, or to the
    /// one connection `to`.
    #[serde(rename = "sendMessage", rename_all = "camelCase")]
    SendMessage {
        /// The text, 1 to 32,768 bytes (UTF-8), not only white space.
        #[schemars(length(min = 1, max = 32768))]
        data: String,
        /// A direct message to this connection id (from `listConnections`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 128))]
        to: Option<String>,
        /// A message to this room's members; the sender must be one. Not with `to`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(regex(pattern = ROOM_PATTERN))]
        room: Option<String>,
    },
    /// One page of the open connections, the sender included.
    #[serde(rename = "listConnections", rename_all = "camelCase")]
    ListConnections {
        /// The `next` of the previous `connections` answer; absent or null for the first page.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 128))]
        cursor: Option<String>,
        /// Items per page, 1 to 100 (default 100).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 100))]
        limit: Option<u32>,
    },
    /// Join a room (joining one again is fine).
    #[serde(rename = "join")]
    Join {
        /// The room's name.
        #[schemars(regex(pattern = ROOM_PATTERN))]
        room: String,
    },
    /// Leave a room.
    #[serde(rename = "leave")]
    Leave {
        /// The room's name.
        #[schemars(regex(pattern = ROOM_PATTERN))]
        room: String,
    },
}

impl ClientMessage {
    /// One example of every action, in the order of the route table.
    pub fn examples() -> Vec<ClientMessage> {
        vec![
            ClientMessage::SendMessage {
                data: "hello".to_owned(),
                to: None,
                room: None,
            },
            ClientMessage::ListConnections {
                cursor: None,
                limit: Some(20),
            },
            ClientMessage::Join {
                room: "lobby".to_owned(),
            },
            ClientMessage::Leave {
                room: "lobby".to_owned(),
            },
        ]
    }

    /// The message's route key (its `action`).
    pub fn action(&self) -> &'static str {
        match self {
            ClientMessage::SendMessage { .. } => wsstack_routes::SEND_MESSAGE,
            ClientMessage::ListConnections { .. } => wsstack_routes::LIST_CONNECTIONS,
            ClientMessage::Join { .. } => wsstack_routes::JOIN,
            ClientMessage::Leave { .. } => wsstack_routes::LEAVE,
        }
    }
}

/// Where `docs/asyncapi.yaml` is, relative to the workspace root.
pub const ASYNCAPI_PATH: &str = "docs/asyncapi.yaml";

/// The JSON Schemas of `T`'s variants (an internally tagged enum), by their tag `tag`: each
/// `oneOf` branch of `T`'s schema, whose `tag` property is a constant.
fn variant_schemas<T: JsonSchema>(contract: Contract, tag: &str) -> Vec<(String, Value)> {
    let mut settings = SchemaSettings::draft07();
    settings.inline_subschemas = true;
    settings.contract = contract;
    let schema = settings.into_generator().root_schema_for::<T>();
    let branches = schema
        .as_value()
        .get("oneOf")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    branches
        .into_iter()
        .filter_map(|mut branch| {
            let name = branch
                .pointer(&format!("/properties/{tag}"))
                .and_then(|p| p.get("const").or_else(|| p.pointer("/enum/0")))
                .and_then(Value::as_str)?
                .to_owned();
            if let Some(map) = branch.as_object_mut() {
                map.remove("$schema");
            }
            Some((name, branch))
        })
        .collect()
}

/// The name of the forwarded action message in the document (any of the manifest's actions).
pub const FORWARDED_ACTION: &str = "forwardedAction";

/// The JSON Schema of a struct, as a message payload.
fn struct_schema<T: JsonSchema>() -> Value {
    let mut settings = SchemaSettings::draft07();
    settings.inline_subschemas = true;
    settings.contract = Contract::Deserialize;
    let mut schema = settings
        .into_generator()
        .root_schema_for::<T>()
        .as_value()
        .clone();
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
        map.remove("title");
    }
    schema
}

/// The messages, channel messages and operations of the document, built one kind at a time.
#[derive(Default)]
struct Parts {
    messages: Map<String, Value>,
    channel_messages: Map<String, Value>,
    operations: Map<String, Value>,
}

impl Parts {
    /// Adds message `name` with `payload` (its `description` becomes the summary), and the
    /// operation `operation` that `action`s (`receive` or `send`) it on the connection.
    fn add(
        &mut self,
        name: &str,
        title: String,
        mut payload: Value,
        operation: String,
        action: &str,
    ) {
        let summary = payload
            .as_object_mut()
            .and_then(|m| m.remove("description"))
            .unwrap_or_default();
        self.messages.insert(
            name.to_owned(),
            json!({"name": name, "title": title, "summary": summary, "payload": payload}),
        );
        self.channel_messages.insert(
            name.to_owned(),
            json!({"$ref": format!("#/components/messages/{name}")}),
        );
        let summary = match action {
            "receive" => format!("A client sends `{name}`."),
            _ => format!(
                "The server sends a `{}` frame.",
                title.split(' ').next().unwrap_or(name)
            ),
        };
        self.operations.insert(
            operation,
            json!({
                "action": action,
                "channel": {"$ref": "#/channels/connection"},
                "summary": summary,
                "messages": [{"$ref": format!("#/channels/connection/messages/{name}")}],
            }),
        );
    }
}

/// The AsyncAPI 3.0 document of the client protocol: one channel (the connection), one
/// `receive` operation per client action and one `send` operation per frame type. Deterministic:
/// generated twice, it is the same text.
pub fn asyncapi_document() -> Value {
    let mut parts = Parts::default();
    for (action, payload) in variant_schemas::<ClientMessage>(Contract::Deserialize, "action") {
        let title = format!("{action} (client to server)");
        parts.add(&action, title, payload, action.clone(), "receive");
    }
    parts.add(
        FORWARDED_ACTION,
        format!("{FORWARDED_ACTION} (client to server)"),
        struct_schema::<ForwardedActionMessage>(),
        FORWARDED_ACTION.to_owned(),
        "receive",
    );
    for (kind, mut payload) in variant_schemas::<Frame>(Contract::Serialize, "type") {
        if kind == "error"
            && let Some(code) = payload.pointer_mut("/properties/code")
        {
            // The codes a client can receive, from their one declaration.
            code["enum"] = json!(CLIENT_ERROR_CODES);
        }
        let operation = format!("send{}Frame", upper_first(&kind));
        let title = format!("{kind} (server to client)");
        parts.add(&format!("{kind}Frame"), title, payload, operation, "send");
    }
    json!({
        "asyncapi": "3.0.0",
        "info": info(),
        "defaultContentType": "application/json",
        "servers": servers(),
        "channels": {
            "connection": {
                "address": "/",
                "title": "A client's WebSocket connection",
                "description": format!(
                    "`$connect` takes `?username=` (1 to 64 printable characters; without authentication) or the token the stage's `[auth]` names. Limits: a connection id is at most {MAX_CONNECTION_ID_CHARS} characters, a room name at most {MAX_ROOM_NAME_CHARS}, a page of connections at most {MAX_LIST_LIMIT} items."
                ),
                "messages": parts.channel_messages,
            },
        },
        "operations": parts.operations,
        "components": {"messages": parts.messages},
    })
}

fn info() -> Value {
    json!({
        "title": "wsstack WebSocket API",
        "version": env!("CARGO_PKG_VERSION"),
        "description": format!(
            "The client protocol of a wsstack stage. Generated from the route table (routes/) and the protocol types (handlers/src/protocol.rs, handlers/src/domain.rs) by `make asyncapi`; do not edit by hand.\n\nClients send JSON text frames; API Gateway picks the route from the `{field}` field (exact, case-sensitive); a message without a known action goes to `$default`, which answers an `error` frame with code `unknown_action`. Binary frames close the connection (1003). A message is at most {max_frame} bytes; `data` at most {max_data} bytes. Connections are closed after 10 minutes idle or 2 hours. Offer the subprotocol `{SUBPROTOCOL}` (optional). Delivery is at least once: message frames carry an `id`.",
            field = wsstack_routes::ROUTE_SELECTION_FIELD,
            max_frame = crate::domain::MAX_FRAME_BYTES,
            max_data = MAX_DATA_BYTES,
        ),
        "license": {"name": "Apache-2.0"},
    })
}

fn servers() -> Value {
    json!({
        "aws": {
            "host": "{apiId}.execute-api.{region}.amazonaws.com",
            "pathname": "/{stage}",
            "protocol": "wss",
            "description": "A deployed stage (the stack's WebSocketUrl output).",
            "variables": {
                "apiId": {"description": "The WebSocket API's id."},
                "region": {"default": "us-east-1", "description": "The stack's region."},
                "stage": {"default": "dev", "description": "The stage's name (a file in stages/)."},
            },
        },
        "local": {
            "host": "127.0.0.1:3001",
            "pathname": "/dev",
            "protocol": "ws",
            "description": "`make dev`: the local gateway.",
        },
    })
}

/// The document as YAML text, as `docs/asyncapi.yaml` holds it.
pub fn asyncapi_yaml() -> Result<String, serde_yaml_ng::Error> {
    serde_yaml_ng::to_string(&asyncapi_document())
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::parse_room_request;
    use crate::domain::{parse_list_connections, parse_send_message};

    #[test]
    fn every_client_action_has_a_message_type_and_nothing_else_does() {
        let typed: Vec<&str> = ClientMessage::examples()
            .iter()
            .map(ClientMessage::action)
            .collect();
        let routed: Vec<&str> = wsstack_routes::client_actions().collect();
        assert_eq!(typed, routed);
        for m in ClientMessage::examples() {
            let json = serde_json::to_value(&m).expect("json");
            assert_eq!(json["action"], m.action(), "the serde tag is the route key");
        }
    }

    #[test]
    fn the_handlers_parsers_accept_what_the_types_describe() {
        for m in ClientMessage::examples() {
            let body = serde_json::to_string(&m).expect("json");
            let parsed = match m.action() {
                wsstack_routes::SEND_MESSAGE => parse_send_message(Some(&body), false).map(|_| ()),
                wsstack_routes::LIST_CONNECTIONS => {
                    parse_list_connections(Some(&body), false).map(|_| ())
                }
                _ => parse_room_request(Some(&body), false).map(|_| ()),
            };
            assert_eq!(parsed, Ok(()), "{body}");
            let back: ClientMessage = serde_json::from_str(&body).expect("round trip");
            assert_eq!(back, m);
        }
    }

    #[test]
    fn the_forwarded_action_parser_accepts_what_the_type_describes() {
        let m = ForwardedActionMessage::example();
        let body = serde_json::to_string(&m).expect("json");
        let actions = [wsstack_routes::bridge::ForwardedAction {
            name: m.action.clone(),
            max_data_bytes: wsstack_routes::bridge::DEFAULT_MAX_DATA_BYTES,
        }];
        let parsed =
            crate::forwarded::parse_forwarded(Some(&body), false, &actions).expect("valid");
        assert_eq!(parsed.request_id, m.request_id);
        assert_eq!(Some(parsed.data), m.data);
        // The pattern is the parser's rule.
        for id in [
            "a",
            "~ !",
            &"r".repeat(64),
            "",
            &"r".repeat(65),
            "é",
            "a\tb",
        ] {
            let by_pattern =
                id.len() <= 64 && !id.is_empty() && id.bytes().all(|b| (b' '..=b'~').contains(&b));
            assert_eq!(crate::forwarded::valid_request_id(id), by_pattern, "{id:?}");
        }
        assert_eq!(
            REQUEST_ID_PATTERN,
            format!("^[ -~]{{1,{}}}$", crate::domain::MAX_REQUEST_ID_CHARS)
        );
        let doc = asyncapi_document();
        let payload = &doc["components"]["messages"][FORWARDED_ACTION]["payload"];
        assert_eq!(
            payload["properties"]["requestId"]["pattern"],
            REQUEST_ID_PATTERN
        );
        assert_eq!(doc["operations"][FORWARDED_ACTION]["action"], "receive");
    }

    #[test]
    fn the_room_pattern_is_the_room_rule() {
        let re = |s: &str| {
            s.len() <= MAX_ROOM_NAME_CHARS
                && !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        };
        for name in [
            "lobby",
            "team-7:general_2.0",
            "",
            "a b",
            "é",
            &"r".repeat(65),
        ] {
            assert_eq!(
                crate::rooms::RoomName::parse(name).is_ok(),
                re(name),
                "{name:?}"
            );
        }
        assert_eq!(
            ROOM_PATTERN,
            format!("^[A-Za-z0-9._:-]{{1,{MAX_ROOM_NAME_CHARS}}}$")
        );
    }

    #[test]
    fn the_document_has_an_operation_per_action_and_per_frame() {
        let doc = asyncapi_document();
        let ops = doc["operations"].as_object().expect("operations");
        for action in wsstack_routes::client_actions() {
            assert_eq!(ops[action]["action"], "receive", "{action}");
        }
        for kind in [
            "message",
            "direct",
            "push",
            "connections",
            "joined",
            "left",
            "accepted",
            "error",
        ] {
            let op = format!("send{}Frame", upper_first(kind));
            assert_eq!(ops[&op]["action"], "send", "{op}");
        }
        let codes =
            &doc["components"]["messages"]["errorFrame"]["payload"]["properties"]["code"]["enum"];
        assert_eq!(codes, &json!(CLIENT_ERROR_CODES));
        let data = &doc["components"]["messages"]["sendMessage"]["payload"]["properties"]["data"];
        assert_eq!(data["maxLength"], 32768);
        assert_eq!(MAX_DATA_BYTES, 32768);
        assert_eq!(asyncapi_document(), doc, "deterministic");
    }
}
