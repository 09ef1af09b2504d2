//! A server on a port of its own beside the API's (the browser page, the push API): its
//! address, and its task, stopped when it is dropped.

use std::io;
use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub(crate) struct SideServer {
    local_addr: SocketAddr,
    cancel: CancellationToken,
    server: JoinHandle<io::Result<()>>,
}

impl SideServer {
    /// Serves `router` on `listener` until dropped.
    pub(crate) fn spawn(listener: TcpListener, router: Router) -> io::Result<SideServer> {
        let local_addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let server = tokio::spawn(
            axum::serve(listener, router)
                .with_graceful_shutdown(cancel.clone().cancelled_owned())
                .into_future(),
        );
        Ok(SideServer {
            local_addr,
            cancel,
            server,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for SideServer {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.server.abort();
    }
}
