//! Rooms: what a room name may be, and the bounds a connection keeps to (`domain` reads
//! the `room` field of `join`, `leave` and `sendMessage` with these rules).
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
}
