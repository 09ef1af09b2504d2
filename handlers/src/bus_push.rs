//! A backend's reply through the bus: an EventBridge event of `detail-type`
//! [`PUSH_DETAIL_TYPE`] whose `detail` is a [`PushDetail`] (an audience, the data, the
//! `requestId` it answers). The stage's rule sends these events to the fan-out queue, where
//! they arrive as the event's JSON (the body of an SQS message whose target has no input
//! transformer, <https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-targets.html>), and
//! the fan-out worker delivers them with the delivery service like any other push.
//!
//! The worker tells the two kinds of queue message apart by the envelope's `detail-type`: a
//! fan-out job has none.

use serde::Deserialize;
use serde_json::Value;
use wsstack_routes::bridge::{PUSH_DETAIL_TYPE, PushAudience, PushDetail};

use crate::delivery::Audience;
use crate::domain::{Frame, MAX_FRAME_BYTES};
use crate::rooms::RoomName;

/// An EventBridge event as its SQS target receives it, the fields the worker reads
/// (<https://docs.aws.amazon.com/eventbridge/latest/ref/overiew-event-structure.html>).
#[derive(Debug, Deserialize)]
struct Envelope {
    /// Unique per event: the push's message id in the logs and its fan-out jobs.
    id: String,
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    source: String,
    detail: Value,
}

/// A push read from the bus: whom it goes to, the frame, and the event's id.
#[derive(Debug, Clone, PartialEq)]
pub struct BusPush {
    pub event_id: String,
    pub audience: Audience,
    /// The frame's JSON text.
    pub frame: String,
}

/// Why a queue message that looks like an EventBridge event cannot be delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusPushError {
    #[error("event is not an EventBridge event of the expected shape: {0}")]
    Malformed(String),
    #[error(
        "event {event_id} from {event_source:?} has detail-type {detail_type:?}; the fan-out queue takes only {PUSH_DETAIL_TYPE:?}"
    )]
    DetailType {
        event_id: String,
        event_source: String,
        detail_type: String,
    },
    #[error("event {event_id}: detail: {reason}")]
    Detail { event_id: String, reason: String },
}

/// Whether a queue message body is an EventBridge event (it has a `detail-type`) rather than a
/// fan-out job.
pub fn is_event(body: &str) -> bool {
    // Cheap first: a job's JSON never has the key; then parse to be sure.
    body.contains("\"detail-type\"")
        && serde_json::from_str::<Value>(body).is_ok_and(|v| v.get("detail-type").is_some())
}

/// Reads a `Push` event into what to deliver; `now` stamps the frame's `sentAt`.
pub fn read(body: &str, now: chrono::DateTime<chrono::Utc>) -> Result<BusPush, BusPushError> {
    let envelope: Envelope =
        serde_json::from_str(body).map_err(|e| BusPushError::Malformed(e.to_string()))?;
    if envelope.detail_type != PUSH_DETAIL_TYPE {
        return Err(BusPushError::DetailType {
            event_id: envelope.id,
            event_source: envelope.source,
            detail_type: envelope.detail_type,
        });
    }
    let event_id = envelope.id;
    let detail_error = |reason: String| BusPushError::Detail {
        event_id: event_id.clone(),
        reason,
    };
    let detail: PushDetail =
        serde_json::from_value(envelope.detail).map_err(|e| detail_error(e.to_string()))?;
    let audience = match detail.audience {
        PushAudience::Connection { connection_id } if !connection_id.is_empty() => {
            Audience::Connection(connection_id)
        }
        PushAudience::User { user_id } if !user_id.is_empty() => Audience::User(user_id),
        PushAudience::Room { room } => Audience::Room(
            RoomName::parse(&room).map_err(|e| detail_error(format!("audience.room: {e}")))?,
        ),
        PushAudience::Everyone => Audience::Everyone,
        PushAudience::Connection { .. } | PushAudience::User { .. } => {
            return Err(detail_error("audience: an empty id".into()));
        }
    };
    let frame = Frame::push(detail.data, detail.reply_to, now).to_json();
    if frame.len() > MAX_FRAME_BYTES {
        return Err(detail_error(format!(
            "data: the frame is {} bytes; a message is at most {MAX_FRAME_BYTES}",
            frame.len()
        )));
    }
    Ok(BusPush {
        event_id,
        audience,
        frame,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// An event as the rule's SQS target receives it (the shape moto delivers too).
    fn event(detail_type: &str, detail: Value) -> String {
        json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": detail_type,
            "source": "jobs.backend",
            "account": "123456789012",
            "time": "2026-12-06T20:00:00Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": detail
        })
        .to_string()
    }

    #[test]
    fn a_push_event_names_its_audience_and_becomes_a_push_frame() {
        let body = event(
            "Push",
            json!({"audience": {"kind": "user", "userId": "sub-ada"}, "data": {"done": 7}, "replyTo": "r-1"}),
        );
        assert!(is_event(&body));
        let push = read(&body, chrono::Utc::now()).expect("a push");
        assert_eq!(push.audience, Audience::User("sub-ada".into()));
        assert_eq!(push.event_id, "6a7e8feb-b491-4cf7-a9f1-bf3703467718");
        let frame: Value = serde_json::from_str(&push.frame).expect("JSON");
        assert_eq!(
            (&frame["type"], &frame["data"], &frame["replyTo"]),
            (&json!("push"), &json!({"done": 7}), &json!("r-1"))
        );
        for (audience, want) in [
            (
                json!({"kind": "connection", "connectionId": "c1"}),
                Audience::Connection("c1".into()),
            ),
            (
                json!({"kind": "room", "room": "lobby"}),
                Audience::Room(RoomName::parse("lobby").expect("room")),
            ),
            (json!({"kind": "everyone"}), Audience::Everyone),
        ] {
            let body = event("Push", json!({"audience": audience, "data": 1}));
            assert_eq!(
                read(&body, chrono::Utc::now()).expect("a push").audience,
                want
            );
        }
    }

    #[test]
    fn a_fan_out_job_is_not_an_event() {
        let job = crate::job::FanOutJob::for_room("m", "http://x/dev", "{}", "lobby");
        assert!(!is_event(&job.to_body()));
        assert!(!is_event("not json \"detail-type\""));
    }

    #[test]
    fn what_cannot_be_delivered_is_an_error_naming_why() {
        let cases = [
            (event("JobDone", json!({})), "detail-type \"JobDone\""),
            (
                event("Push", json!({"audience": {"kind": "planet"}, "data": 1})),
                "detail: unknown variant `planet`",
            ),
            (
                event("Push", json!({"audience": {"kind": "everyone"}})),
                "missing field `data`",
            ),
            (
                event(
                    "Push",
                    json!({"audience": {"kind": "room", "room": "no spaces"}, "data": 1}),
                ),
                "audience.room",
            ),
            (
                event(
                    "Push",
                    json!({"audience": {"kind": "user", "userId": ""}, "data": 1}),
                ),
                "an empty id",
            ),
            (
                event(
                    "Push",
                    json!({"audience": {"kind": "everyone"}, "data": "x".repeat(MAX_FRAME_BYTES)}),
                ),
                "at most",
            ),
            (
                r#"{"detail-type": "Push"}"#.to_owned(),
                "missing field `id`",
            ),
        ];
        for (body, names) in cases {
            let err = read(&body, chrono::Utc::now()).expect_err(&body[..body.len().min(200)]);
            assert!(err.to_string().contains(names), "{err} should name {names}");
        }
    }
}
