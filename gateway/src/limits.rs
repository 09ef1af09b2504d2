//! API Gateway's WebSocket limits and the socket configuration that enforces them.

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest frame a client may send (API Gateway: 32 KB). A larger one closes with 1009.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// Largest message a client may send, across its frames (API Gateway: 128 KB). A larger one
/// closes with 1009.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
/// Largest `PostToConnection` payload (API Gateway: 128 KB); more gets 413.
pub const MAX_POST_BYTES: usize = 128 * 1024;
/// API Gateway closes a connection that received nothing for this long.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// API Gateway closes every connection after this long.
pub const MAX_CONNECTION_DURATION: Duration = Duration::from_secs(2 * 60 * 60);

/// Bytes of posted frames that may wait for one client's socket before posts to it get 429
/// (API Gateway throttles a client that does not read, rather than buffering without end).
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;
/// How long the gateway waits for the client's close frame after sending its own, before it
/// drops the socket.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// Initial read buffer of a socket. tungstenite's default (128 KiB, zero-filled, so resident)
/// would cost a gigabyte for 10,000 idle clients; the buffer grows on demand for larger frames.
pub const READ_BUFFER_BYTES: usize = 1024;
/// Frames are gathered up to this size before a write, so a burst of posts to one client
/// costs one syscall; a flush follows every burst, so nothing waits for the buffer to fill.
pub const WRITE_BUFFER_BYTES: usize = 4 * 1024;

/// The limits a gateway enforces; [`Limits::default`] is API Gateway's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_message_bytes: usize,
    pub max_post_bytes: usize,
    pub idle_timeout: Duration,
    pub max_connection_duration: Duration,
    pub max_queued_bytes: usize,
    pub close_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: MAX_FRAME_BYTES,
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_post_bytes: MAX_POST_BYTES,
            idle_timeout: IDLE_TIMEOUT,
            max_connection_duration: MAX_CONNECTION_DURATION,
            max_queued_bytes: MAX_QUEUED_BYTES,
            close_timeout: CLOSE_TIMEOUT,
        }
    }
}

impl Limits {
    /// The socket configuration: small buffers, API Gateway's size limits.
    pub fn websocket_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER_BYTES)
            .write_buffer_size(WRITE_BUFFER_BYTES)
            .max_frame_size(Some(self.max_frame_bytes))
            .max_message_size(Some(self.max_message_bytes))
    }
}

/// Parses a duration as a user writes it: `600` (seconds), `90s`, `10m`, `2h`, `1h30m`,
/// `250ms`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || {
        format!(
            "invalid duration {text:?}: use seconds (600) or units such as 90s, 10m, 2h, 1h30m, 250ms"
        )
    };
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
            "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
            _ => return Err(bad()),
        };
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_the_forms_users_write() {
        assert_eq!(parse_duration("600"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "m", "10x", "1.5h", "-3", "h10", "10 m"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains("invalid duration"), "{bad}: {err}");
        }
    }

    #[test]
    fn defaults_are_api_gateways() {
        let l = Limits::default();
        assert_eq!(l.max_frame_bytes, 32 * 1024);
        assert_eq!(l.max_message_bytes, 128 * 1024);
        assert_eq!(l.idle_timeout, Duration::from_secs(600));
        assert_eq!(l.max_connection_duration, Duration::from_secs(7200));
    }
}
