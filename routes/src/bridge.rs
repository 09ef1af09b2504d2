//! The EventBridge side of the bridge, declared once: what a forwarded client action looks like
//! on the stage's bus, and the event a backend puts on the bus to reply without calling the push
//! API.
//!
//! A forwarded action is one event (`PutEvents` entry): `Source` is [`event_source`], the
//! `DetailType` is the action's name, the `Detail` a [`ForwardedDetail`]. A backend's reply is an
//! event whose `DetailType` is [`PUSH_DETAIL_TYPE`] and whose `Detail` is a [`PushDetail`]; a rule
//! sends those to the fan-out queue, where the worker delivers them.
//! (<https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEventsRequestEntry.html>)

use serde::{Deserialize, Serialize};

/// The `detail-type` of a backend's reply through the bus.
pub const PUSH_DETAIL_TYPE: &str = "Push";

/// The `source` of every event a stage's forwarded actions put on its bus: `wsstack.{stage}`.
/// A backend's own replies use any other source (EventBridge reserves `aws.`).
pub fn event_source(stage: &str) -> String {
    format!("wsstack.{stage}")
}

/// Default of an action's `max_data_bytes`: the largest `data` (as JSON text) it forwards.
pub const DEFAULT_MAX_DATA_BYTES: u32 = 32 * 1024;
/// Upper bound of `max_data_bytes`: a WebSocket frame carries at most 128 KB
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html>),
/// and the event with its envelope must stay within one `PutEvents` entry.
pub const MAX_MAX_DATA_BYTES: u32 = 128 * 1024;

/// A forwarded action as the app manifest (`wsstack.toml`) declares it. Synth hands the list to
/// the `forward` handler as JSON (its `FORWARDED_ACTIONS` variable); the local gateway reads the
/// manifest itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardedAction {
    /// The `action` a client names; the route key and the event's `detail-type`.
    pub name: String,
    /// The largest `data` forwarded, in bytes of JSON text; larger is refused with an error
    /// frame. Default [`DEFAULT_MAX_DATA_BYTES`].
    #[serde(default = "default_max_data_bytes")]
    pub max_data_bytes: u32,
}

fn default_max_data_bytes() -> u32 {
    DEFAULT_MAX_DATA_BYTES
}

/// The `detail` of a forwarded client action, as a backend receives it (the `detail` of the
/// EventBridge event its rule delivers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardedDetail {
    /// The sender's connection: where a reply to this device goes.
    pub connection_id: String,
    /// The sender's verified `sub` in stages with `[auth] mode = "jwt"`; elsewhere the
    /// username the client chose, which is not verified.
    pub user_id: String,
    pub username: String,
    /// The client's `requestId`, if it sent one: a reply names it in `replyTo`.
    #[serde(default)]
    pub request_id: Option<String>,
    /// API Gateway's id of the WebSocket message.
    pub message_id: String,
    /// The client's `data`, any JSON value (`null` when it sent none).
    pub data: serde_json::Value,
    /// When API Gateway received the message, RFC 3339 UTC.
    pub received_at: String,
}

/// Whom a reply through the bus goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum PushAudience {
    Connection {
        #[serde(rename = "connectionId")]
        connection_id: String,
    },
    User {
        #[serde(rename = "userId")]
        user_id: String,
    },
    Room {
        room: String,
    },
    Everyone,
}

/// The `detail` of a reply a backend puts on the bus (`detail-type` [`PUSH_DETAIL_TYPE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushDetail {
    pub audience: PushAudience,
    pub data: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_detail_names_its_audience_by_kind() {
        let d: PushDetail = serde_json::from_value(serde_json::json!({
            "audience": {"kind": "user", "userId": "u-1"},
            "data": {"done": true},
            "replyTo": "r1"
        }))
        .unwrap();
        assert_eq!(
            d.audience,
            PushAudience::User {
                user_id: "u-1".into()
            }
        );
        let everyone: PushAudience =
            serde_json::from_value(serde_json::json!({"kind": "everyone"})).unwrap();
        assert_eq!(everyone, PushAudience::Everyone);
        assert!(
            serde_json::from_value::<PushDetail>(serde_json::json!({
                "audience": {"kind": "planet"}, "data": 1
            }))
            .is_err()
        );
    }

    #[test]
    fn the_source_names_the_stage() {
        assert_eq!(event_source("prod"), "wsstack.prod");
    }
}
