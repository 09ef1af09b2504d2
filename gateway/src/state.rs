//! The state every request and session of one gateway shares.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::task::TaskTracker;

use crate::event::ApiContext;
use crate::integration::Invoker;
use crate::limits::Limits;
use crate::registry::Registry;
use crate::routing::RouteTable;

/// State every request and session shares.
pub(crate) struct Shared {
    /// Runs the handlers (bounded, recorded).
    pub invoker: Invoker,
    pub routes: RouteTable,
    pub registry: Registry,
    pub limits: Limits,
    pub api: ApiContext,
    pub ws_config: WebSocketConfig,
    /// Sessions and handler invocations, awaited on shutdown.
    pub tracker: TaskTracker,
    pub shutting_down: AtomicBool,
    pub local_addr: SocketAddr,
    /// The `$connect` authorizer, where authentication is on.
    pub authorizer: Option<std::sync::Arc<crate::auth::ConnectAuthorizer>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("stage", &self.api.stage)
            .field("local_addr", &self.local_addr)
            .field("connections", &self.registry.len())
            .finish_non_exhaustive()
    }
}
