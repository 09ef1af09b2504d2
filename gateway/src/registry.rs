//! The open connections: who they are and the frames waiting for their sockets.
//!
//! Each connection's session task owns its socket; everyone else (the `@connections` API,
//! shutdown, the session's own handler tasks) talks to it through its [`Connection`]: an outbox
//! queue and a wake-up. A post never waits for the socket, so 10,000 posts of a broadcast cost
//! 10,000 queue pushes, and a client that stops reading is throttled (429) instead of stalling
//! the poster.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::id::ConnectionId;

/// Why the gateway closes a socket: the close frame it sends, and what `$disconnect` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    /// Idle timeout, maximum duration and gateway shutdown: API Gateway sends 1001.
    pub const GOING_AWAY: CloseReason = CloseReason {
        code: 1001,
        reason: "Going away",
    };
    /// `DeleteConnection`.
    pub const DELETED: CloseReason = CloseReason {
        code: 1000,
        reason: "Connection deleted",
    };
    /// A frame over 32 KB or a message over 128 KB.
    pub const TOO_BIG: CloseReason = CloseReason {
        code: 1009,
        reason: "Message too big",
    };
    /// A binary frame: "If a client app sends a binary frame, API Gateway rejects it and
    /// disconnects the client with code 1003"
    /// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-develop-binary-media-types.html>).
    pub const BINARY_FRAME: CloseReason = CloseReason {
        code: 1003,
        reason: "Binary frames are not supported",
    };
}

/// Something for a connection's socket.
#[derive(Debug)]
pub enum Out {
    Text(Utf8Bytes),
    Binary(Bytes),
    Close(CloseReason),
}

impl Out {
    fn len(&self) -> usize {
        match self {
            Out::Text(t) => t.len(),
            Out::Binary(b) => b.len(),
            Out::Close(_) => 0,
        }
    }
}

/// Why a post was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostError {
    /// The connection is closing or closed: 410.
    Gone,
    /// Too much is already waiting for this client: 429.
    Throttled,
}

/// What the gateway knows about a client from its handshake.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub id: ConnectionId,
    /// Epoch milliseconds.
    pub connected_at: i64,
    pub source_ip: IpAddr,
    pub user_agent: Option<Box<str>>,
    /// The host the client connected to (the `Host` header), for `requestContext.domainName`.
    pub domain_name: Box<str>,
    /// What the `$connect` authorizer allowed the connection with (`principalId`, its context,
    /// `integrationLatency`): `requestContext.authorizer` of every event of the connection.
    pub authorizer: Option<Arc<std::collections::HashMap<String, serde_json::Value>>>,
}

#[derive(Debug, Default)]
struct Outbox {
    queue: VecDeque<Out>,
    queued_bytes: usize,
    /// Set once a close was requested or the socket went away: posts then get 410.
    closing: bool,
    /// The close the gateway asked for, if it did.
    close_reason: Option<CloseReason>,
}

/// An open connection, shared between its session task and everything that posts to it.
#[derive(Debug)]
pub struct Connection {
    pub info: ClientInfo,
    /// Epoch milliseconds of the client's last frame (`lastActiveAt`, idle timeout).
    last_active: AtomicI64,
    outbox: Mutex<Outbox>,
    wake: Notify,
    /// Woken when a close is requested, so the session closes in time even while the writer
    /// is stuck on a client that does not read.
    close_wake: Notify,
}

impl Connection {
    pub fn new(info: ClientInfo) -> Self {
        Connection {
            last_active: AtomicI64::new(info.connected_at),
            info,
            outbox: Mutex::default(),
            wake: Notify::new(),
            close_wake: Notify::new(),
        }
    }

    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // Every critical section is a push, a pop or a flag store: a panic cannot leave the
        // queue half-updated, so a poisoned lock is still good.
        self.outbox.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame for the client.
    pub fn post(&self, out: Out, max_queued_bytes: usize) -> Result<(), PostError> {
        {
            let mut outbox = self.outbox();
            if outbox.closing {
                return Err(PostError::Gone);
            }
            let len = out.len();
            if outbox.queued_bytes.saturating_add(len) > max_queued_bytes {
                return Err(PostError::Throttled);
            }
            outbox.queued_bytes += len;
            outbox.queue.push_back(out);
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Asks the session to close the socket after what is already queued; later posts get 410.
    /// Returns false if the connection was already closing.
    pub fn close(&self, reason: CloseReason) -> bool {
        self.request_close(reason, false)
    }

    /// Asks the session to close the socket at once: what is still queued is dropped.
    /// Returns false if the connection was already closing.
    pub fn close_now(&self, reason: CloseReason) -> bool {
        self.request_close(reason, true)
    }

    fn request_close(&self, reason: CloseReason, drop_queued: bool) -> bool {
        {
            let mut outbox = self.outbox();
            if outbox.closing {
                return false;
            }
            outbox.closing = true;
            outbox.close_reason = Some(reason);
            if drop_queued {
                outbox.queue.clear();
                outbox.queued_bytes = 0;
            }
            outbox.queue.push_back(Out::Close(reason));
        }
        self.wake.notify_one();
        self.close_wake.notify_one();
        true
    }

    /// Resolves with the reason once a close was requested ([`Connection::close`],
    /// [`Connection::close_now`]).
    pub async fn wait_for_close(&self) -> CloseReason {
        loop {
            if let Some(reason) = self.outbox().close_reason {
                return reason;
            }
            self.close_wake.notified().await;
        }
    }

    /// Marks the connection as closing without queuing a close (the socket is already gone or
    /// the session closes it itself); frames still queued are dropped.
    pub fn mark_closing(&self) {
        let mut outbox = self.outbox();
        outbox.closing = true;
        outbox.queue.clear();
        outbox.queued_bytes = 0;
    }

    pub fn is_closing(&self) -> bool {
        self.outbox().closing
    }

    /// The next queued item, if any.
    pub fn next_out(&self) -> Option<Out> {
        let mut outbox = self.outbox();
        let out = outbox.queue.pop_front()?;
        outbox.queued_bytes -= out.len();
        Some(out)
    }

    /// Resolves when something was queued since the last call (a wake-up is never lost: one
    /// that arrives while nobody waits is kept for the next call).
    pub async fn wait_for_out(&self) {
        self.wake.notified().await
    }

    pub fn touch(&self, now_ms: i64) {
        self.last_active.store(now_ms, Ordering::Relaxed);
    }

    pub fn last_active(&self) -> i64 {
        self.last_active.load(Ordering::Relaxed)
    }
}

const SHARDS: usize = 16;

type Shard = Mutex<HashMap<ConnectionId, Arc<Connection>>>;

/// Open connections by id, sharded so that a broadcast's concurrent lookups rarely meet on one
/// lock.
#[derive(Debug)]
pub struct Registry {
    shards: Box<[Shard]>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Registry {
    fn shard(&self, id: &ConnectionId) -> MutexGuard<'_, HashMap<ConnectionId, Arc<Connection>>> {
        // Ids look random, so their first characters spread evenly over the shards.
        let b = id.as_str().as_bytes();
        let index = (usize::from(b[0]) * 31 + usize::from(b[1])) % SHARDS;
        // Inserts and removes are single map operations: a poisoned lock is still consistent.
        self.shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection; false if its id is taken (ids are unique by construction).
    pub fn insert(&self, connection: Arc<Connection>) -> bool {
        let id = connection.info.id;
        let mut shard = self.shard(&id);
        if shard.contains_key(&id) {
            return false;
        }
        shard.insert(id, connection);
        true
    }

    pub fn get(&self, id: &ConnectionId) -> Option<Arc<Connection>> {
        self.shard(id).get(id).cloned()
    }

    pub fn remove(&self, id: &ConnectionId) -> Option<Arc<Connection>> {
        self.shard(id).remove(id)
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// A snapshot of every open connection.
    pub fn all(&self) -> Vec<Arc<Connection>> {
        let mut all = Vec::new();
        for shard in self.shards.iter() {
            all.extend(
                shard
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .values()
                    .cloned(),
            );
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn connection() -> Arc<Connection> {
        Arc::new(Connection::new(ClientInfo {
            id: ConnectionId::generate(),
            connected_at: 1,
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            user_agent: None,
            domain_name: "localhost".into(),
            authorizer: None,
        }))
    }

    #[test]
    fn posts_queue_in_order_until_closed() {
        let c = connection();
        c.post(Out::Binary(Bytes::from_static(b"1")), 10).unwrap();
        c.post(Out::Binary(Bytes::from_static(b"2")), 10).unwrap();
        assert!(c.close(CloseReason::DELETED));
        assert!(!c.close(CloseReason::GOING_AWAY));
        assert_eq!(
            c.post(Out::Binary(Bytes::from_static(b"3")), 10),
            Err(PostError::Gone)
        );
        assert!(matches!(c.next_out(), Some(Out::Binary(b)) if b == "1"));
        assert!(matches!(c.next_out(), Some(Out::Binary(b)) if b == "2"));
        assert!(matches!(
            c.next_out(),
            Some(Out::Close(CloseReason::DELETED))
        ));
        assert!(c.next_out().is_none());
    }

    #[tokio::test]
    async fn close_now_drops_what_is_queued_and_wakes_the_session() {
        let c = connection();
        c.post(Out::Binary(Bytes::from_static(b"1")), 10).unwrap();
        assert!(c.close_now(CloseReason::BINARY_FRAME));
        assert_eq!(c.wait_for_close().await, CloseReason::BINARY_FRAME);
        assert!(matches!(
            c.next_out(),
            Some(Out::Close(CloseReason::BINARY_FRAME))
        ));
        assert!(c.next_out().is_none());
        assert!(!c.close(CloseReason::DELETED));
    }

    #[test]
    fn a_client_that_does_not_read_is_throttled() {
        let c = connection();
        c.post(Out::Binary(Bytes::from(vec![0; 6])), 10).unwrap();
        assert_eq!(
            c.post(Out::Binary(Bytes::from(vec![0; 5])), 10),
            Err(PostError::Throttled)
        );
        assert!(c.next_out().is_some());
        c.post(Out::Binary(Bytes::from(vec![0; 10])), 10).unwrap();
    }

    #[test]
    fn registry_finds_and_forgets() {
        let r = Registry::default();
        let c = connection();
        assert!(r.insert(c.clone()));
        assert!(!r.insert(c.clone()));
        assert_eq!(r.len(), 1);
        assert!(r.get(&c.info.id).is_some());
        assert!(r.remove(&c.info.id).is_some());
        assert!(r.get(&c.info.id).is_none());
        assert_eq!(r.len(), 0);
    }
}
