//! A forwarded action's message, validated without AWS types (issue 17 item 1):
//! `{"action": <a forwarded action>, "data"?: <any JSON>, "requestId"?: <1 to 64 printable
//! ASCII characters>}`. As with `sendMessage`, other fields are ignored so newer clients keep
//! working; `null` is the same as an absent field.

use serde_json::Value;
use wsstack_routes::bridge::ForwardedAction;

use crate::domain::{InputError, MAX_REQUEST_ID_CHARS, parse_object};

/// The client's field naming its request; the `accepted` frame and the event's detail carry it.
pub const REQUEST_ID_FIELD: &str = "requestId";

/// A valid forwarded action.
#[derive(Debug, Clone, PartialEq)]
pub struct Forwarded {
    /// The action's name: the event's `detail-type`.
    pub action: String,
    /// The client's `data` (`null` when it sent none).
    pub data: Value,
    pub request_id: Option<String>,
}

/// A refused forwarded action, with its `requestId` when that was valid (the error frame
/// names it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub error: InputError,
    pub request_id: Option<String>,
}

impl From<InputError> for Refusal {
    fn from(error: InputError) -> Self {
        Refusal {
            error,
            request_id: None,
        }
    }
}

/// Parses and validates a forwarded action against the configured `actions`: a known
/// `action`, a valid `requestId`, `data` within the action's `max_data_bytes` as compact JSON
/// text (what goes into the event).
pub fn parse_forwarded(
    body: Option<&str>,
    is_base64: bool,
    actions: &[ForwardedAction],
) -> Result<Forwarded, Refusal> {
    let mut fields = parse_object(body, is_base64)?;
    let request_id = match fields.remove(REQUEST_ID_FIELD) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if valid_request_id(&s) => Some(s),
        Some(_) => return Err(InputError::InvalidRequestId.into()),
    };
    let refuse = |error| Refusal {
        error,
        request_id: request_id.clone(),
    };
    let unknown = |action| {
        refuse(InputError::unknown_action(
            action,
            actions.iter().map(|a| a.name.as_str()),
        ))
    };
    let action = match fields.remove(wsstack_routes::ROUTE_SELECTION_FIELD) {
        Some(Value::String(name)) => match actions.iter().find(|a| a.name == name) {
            Some(a) => a,
            None => return Err(unknown(Some(name))),
        },
        Some(other) => return Err(unknown(Some(other.to_string()))),
        None => return Err(unknown(None)),
    };
    let data = fields.remove("data").unwrap_or(Value::Null);
    let bytes = data_bytes(&data);
    let limit = usize::try_from(action.max_data_bytes).unwrap_or(usize::MAX);
    if bytes > limit {
        return Err(refuse(InputError::DataTooLarge { bytes, limit }));
    }
    Ok(Forwarded {
        action: action.name.clone(),
        data,
        request_id,
    })
}

/// 1 to [`MAX_REQUEST_ID_CHARS`] printable ASCII characters (space to `~`).
pub fn valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_CHARS).contains(&id.len()) && id.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// The size of `data` as compact JSON text.
fn data_bytes(data: &Value) -> usize {
    // Serializing a `Value` cannot fail (its map keys are strings); count it as too large
    // otherwise.
    serde_json::to_string(data).map_or(usize::MAX, |s| s.len())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn actions() -> Vec<ForwardedAction> {
        vec![
            ForwardedAction {
                name: "doThing".into(),
                max_data_bytes: 16,
            },
            ForwardedAction {
                name: "other".into(),
                max_data_bytes: 1024,
            },
        ]
    }

    fn parse(body: Value) -> Result<Forwarded, Refusal> {
        parse_forwarded(Some(&body.to_string()), false, &actions())
    }

    #[test]
    fn reads_action_data_and_request_id_and_ignores_other_fields() {
        assert_eq!(
            parse(json!({"action": "doThing", "data": {"n": 1}, "requestId": "r-1", "x": 2})),
            Ok(Forwarded {
                action: "doThing".into(),
                data: json!({"n": 1}),
                request_id: Some("r-1".into()),
            })
        );
        assert_eq!(
            parse(json!({"action": "other", "requestId": null})),
            Ok(Forwarded {
                action: "other".into(),
                data: Value::Null,
                request_id: None,
            })
        );
    }

    #[test]
    fn request_ids_are_1_to_64_printable_ascii_characters() {
        for ok in ["a", " ", "~", &"r".repeat(64)] {
            assert!(valid_request_id(ok), "{ok:?}");
        }
        for bad in ["", &"r".repeat(65), "a\tb", "a\u{7f}", "é", "a\nb"] {
            assert!(!valid_request_id(bad), "{bad:?}");
            assert_eq!(
                parse(json!({"action": "doThing", "requestId": bad})),
                Err(InputError::InvalidRequestId.into()),
                "{bad:?}"
            );
        }
        assert_eq!(
            parse(json!({"action": "doThing", "requestId": 7})),
            Err(InputError::InvalidRequestId.into())
        );
    }

    #[test]
    fn data_is_measured_as_compact_json_text_against_the_actions_limit() {
        // `"0123456789abcd"` is 16 bytes with its quotes: at the limit.
        assert!(parse(json!({"action": "doThing", "data": "0123456789abcd"})).is_ok());
        // One more byte is over it; the refusal names the request.
        assert_eq!(
            parse(json!({"action": "doThing", "data": "0123456789abcde", "requestId": "r"})),
            Err(Refusal {
                error: InputError::DataTooLarge {
                    bytes: 17,
                    limit: 16
                },
                request_id: Some("r".into()),
            })
        );
        assert!(parse(json!({"action": "other", "data": "0123456789abcde"})).is_ok());
        // Escapes count as they go on: `"\u0001"` is 8 bytes.
        assert_eq!(
            parse(json!({"action": "doThing", "data": ["\u{1}", "\u{1}"]})).map_err(|r| r.error),
            Err(InputError::DataTooLarge {
                bytes: 19,
                limit: 16
            })
        );
    }

    #[test]
    fn an_action_not_configured_is_unknown() {
        assert_eq!(
            parse(json!({"action": "nope", "requestId": "r"})),
            Err(Refusal {
                error: InputError::unknown_action(Some("nope".into()), ["doThing", "other"]),
                request_id: Some("r".into()),
            })
        );
        assert_eq!(
            parse(json!({"data": 1})).map_err(|r| r.error),
            Err(InputError::unknown_action(None, ["doThing", "other"]))
        );
        // The error lists the built-in actions, then the configured ones.
        let Err(Refusal {
            error: InputError::UnknownAction { supported, .. },
            ..
        }) = parse(json!({"action": "nope"}))
        else {
            panic!("unknown_action")
        };
        assert_eq!(supported.first().map(String::as_str), Some("sendMessage"));
        assert_eq!(supported[supported.len() - 2..], ["doThing", "other"]);
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_refused() {
        let acts = actions();
        assert_eq!(
            parse_forwarded(Some("{\"action\":"), false, &acts).map_err(|r| r.error),
            Err(InputError::NotJson)
        );
        assert_eq!(
            parse_forwarded(Some("[1]"), false, &acts).map_err(|r| r.error),
            Err(InputError::NotAnObject)
        );
        assert_eq!(
            parse_forwarded(Some("{}"), true, &acts).map_err(|r| r.error),
            Err(InputError::BinaryFrame)
        );
        assert_eq!(
            parse_forwarded(None, false, &acts).map_err(|r| r.error),
            Err(InputError::EmptyBody)
        );
    }
}
