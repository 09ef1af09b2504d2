//! Rooms: what a room name may be, how `join` and `leave` read theirs, and the bounds a
//! connection keeps to.
//!
//! Decisions (docs/protocol.md, "Rooms"):
//! - A room name is 1 to [`MAX_ROOM_NAME_CHARS`] ASCII letters, digits, `-`, `_`, `.` or `:`.
//!   ASCII only: the name is a DynamoDB key and shows in logs, where look-alike Unicode
//!   characters would make two rooms seem one. Names are case-sensitive, like route keys.
//! - A connection is in at most [`MAX_ROOMS_PER_CONNECTION`] rooms: `$disconnect` deletes each
//!   membership, and this bound keeps that a handful of calls.
//! - Joining a room twice is fine (the sender gets `joined` again); leaving a room one is not in
//!   is `not_a_member`.

use std::fmt;

use serde_json::Value;

use crate::domain::{InputError, json_type, parse_object};

/// Longest room name, in characters.
pub const MAX_ROOM_NAME_CHARS: usize = 64;
/// Most rooms one connection may be in at once.
pub const MAX_ROOMS_PER_CONNECTION: usize = 20;

/// A valid room name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomName(String);

/// Why a room name was refused; the text follows "field `room` " in the error frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {MAX_ROOM_NAME_CHARS} characters, got {0}")]
    TooLong(usize),
    #[error(
        "has {character:?} at position {position}: only ASCII letters, digits, `-`, `_`, `.` and `:` are allowed"
    )]
    BadCharacter { character: char, position: usize },
}

impl RoomName {
    /// Checks `name` against the rules above.
    pub fn parse(name: &str) -> Result<RoomName, RoomNameError> {
        if name.is_empty() {
            return Err(RoomNameError::Empty);
        }
        let chars = name.chars().count();
        if chars > MAX_ROOM_NAME_CHARS {
            return Err(RoomNameError::TooLong(chars));
        }
        if let Some((position, character)) = name
            .chars()
            .enumerate()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
        {
            return Err(RoomNameError::BadCharacter {
                character,
                position,
            });
        }
        Ok(RoomName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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

    #[test]
    fn room_name_rules() {
        assert_eq!(RoomName::parse("lobby").unwrap().as_str(), "lobby");
        assert!(RoomName::parse("team-7:general_2.0").is_ok());
        assert!(RoomName::parse(&"r".repeat(MAX_ROOM_NAME_CHARS)).is_ok());
        assert_eq!(RoomName::parse(""), Err(RoomNameError::Empty));
        assert_eq!(
            RoomName::parse(&"r".repeat(MAX_ROOM_NAME_CHARS + 1)),
            Err(RoomNameError::TooLong(MAX_ROOM_NAME_CHARS + 1))
        );
        assert_eq!(
            RoomName::parse("a b"),
            Err(RoomNameError::BadCharacter {
                character: ' ',
                position: 1
            })
        );
        assert_eq!(
            RoomName::parse("café"),
            Err(RoomNameError::BadCharacter {
                character: 'é',
                position: 3
            })
        );
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
            Err(InputError::InvalidRoom(RoomNameError::Empty))
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
            InputError::InvalidRoom(RoomNameError::TooLong(65)).to_string(),
            "field `room` must be at most 64 characters, got 65"
        );
    }
}
