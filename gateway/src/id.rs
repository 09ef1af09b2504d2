//! Identifiers shaped like API Gateway's: 16 characters of standard base64 (11 bytes, so the
//! last character is always `=`), e.g. `L0SM9cOFvHcCIhw=`. Connection ids, request ids and
//! message ids all have this shape in AWS.
//!
//! Ids come from a process-wide counter passed through a bijective 64-bit mixer, so no two ids
//! of one gateway run are ever equal (no collision check needed), and they look random, so code
//! that wrongly relies on ordering or prefixes fails locally as it would in AWS.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;

/// Length of every id.
pub const ID_LEN: usize = 16;

/// A connection id. Fixed size and `Copy`: the registry holds tens of thousands of them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId([u8; ID_LEN]);

impl ConnectionId {
    /// A fresh, never-before-issued id.
    pub fn generate() -> Self {
        ConnectionId(next_raw())
    }

    /// The id named by a client (e.g. in an `@connections` path), if it has the shape of an id
    /// (15 characters of standard base64 and a final `=`); `None` otherwise, which
    /// `@connections` answers with 400 (a well-formed id that names nothing gets 410).
    pub fn parse(text: &str) -> Option<Self> {
        let bytes: [u8; ID_LEN] = text.as_bytes().try_into().ok()?;
        let (last, body) = bytes.split_last()?;
        let base64 = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/');
        (*last == b'=' && body.iter().all(base64)).then_some(ConnectionId(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII bytes are ever stored (base64 output or checked by `parse`).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({})", self.as_str())
    }
}

/// A request or message id (same shape as a connection id).
pub fn request_id() -> String {
    ConnectionId(next_raw()).as_str().to_owned()
}

/// SplitMix64's finalizer: a bijection on `u64`, so distinct inputs give distinct outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn next_raw() -> [u8; ID_LEN] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: OnceLock<u64> = OnceLock::new();
    // A random start per process, so ids of two runs differ (a client that kept an old id gets
    // 410, not someone else's connection).
    let seed = *SEED.get_or_init(|| {
        let b = uuid::Uuid::new_v4().into_bytes();
        u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_add(seed);
    let unique = mix(n).to_be_bytes();
    let extra = mix(n ^ 0x9e37_79b9_7f4a_7c15).to_be_bytes();
    let mut raw = [0u8; 11];
    raw[..8].copy_from_slice(&unique);
    raw[8..].copy_from_slice(&extra[..3]);
    let mut out = [0u8; ID_LEN];
    // 11 bytes always encode to exactly 16 characters with one `=` of padding.
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(raw, &mut out)
        .unwrap_or(0);
    debug_assert_eq!(written, ID_LEN);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_look_like_api_gateway_ids_and_are_unique() {
        let ids: HashSet<ConnectionId> = (0..100_000).map(|_| ConnectionId::generate()).collect();
        assert_eq!(ids.len(), 100_000);
        for id in ids.iter().take(100) {
            let s = id.as_str();
            assert_eq!(s.len(), 16, "{s}");
            assert!(s.ends_with('='), "{s}");
            assert!(!s[..15].contains('='), "{s}");
            assert_eq!(ConnectionId::parse(s), Some(*id));
        }
    }

    #[test]
    fn parse_refuses_what_cannot_be_an_id() {
        assert_eq!(ConnectionId::parse(""), None);
        assert_eq!(ConnectionId::parse("L0SM9cOFvHcCIhw"), None);
        assert_eq!(ConnectionId::parse("L0SM9cOFvHcCIhw=="), None);
        assert_eq!(ConnectionId::parse("L0SM9cOFvHcCIh w="), None);
        assert_eq!(ConnectionId::parse("L0SM9cOFvHcCIhwA"), None);
        assert_eq!(ConnectionId::parse("L0SM9cOFvHcC=hw="), None);
        assert!(ConnectionId::parse("L0SM9cOFvHcCIhw=").is_some());
    }
}
