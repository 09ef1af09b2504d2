//! The gateway's TCP sockets: accepted with `TCP_NODELAY`, each with a [`ResetOnDrop`] handle
//! its session can arm so that dropping the socket resets the connection instead of closing it
//! gracefully.
//!
//! A graceful close queues the FIN behind whatever the kernel still holds for the client. A
//! client that stopped reading never opens its window again, so that FIN is never sent: the
//! kernel keeps the socket in FIN_WAIT1 with its buffers (megabytes on loopback) for as long as
//! the client answers the zero-window probes, long after the session has given up on it. A
//! reset (`SO_LINGER` of zero) drops both ends at once. Sessions arm it only when the client did
//! not complete the closing handshake within the close timeout; clients that do still get every
//! frame and a clean close.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Tells a [`Socket`] to reset its connection when it is dropped.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResetOnDrop(Arc<AtomicBool>);

impl ResetOnDrop {
    /// The socket, once dropped, resets the connection (discarding what the client did not
    /// read) instead of closing it gracefully.
    pub(crate) fn arm(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn armed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// An accepted connection.
#[derive(Debug)]
pub(crate) struct Socket {
    tcp: TcpStream,
    reset: ResetOnDrop,
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.reset.armed() {
            // A zero linger makes the close a RST and never blocks.
            if let Err(e) = self.tcp.set_zero_linger() {
                tracing::debug!(error = %e, "could not set SO_LINGER: the socket closes gracefully");
            }
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// The gateway's listener: sockets with `TCP_NODELAY` and a reset handle.
#[derive(Debug)]
pub(crate) struct GatewayListener(pub(crate) TcpListener);

impl Listener for GatewayListener {
    type Io = Socket;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Socket, SocketAddr) {
        // axum's accept loop: retries (and logs) errors such as running out of descriptors.
        let (tcp, addr) = Listener::accept(&mut self.0).await;
        // Small frames must leave at once; Nagle would hold them for the peer's ACK.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let socket = Socket {
            tcp,
            reset: ResetOnDrop::default(),
        };
        (socket, addr)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// What a request knows of its connection (`ConnectInfo<Peer>`): the client's address and the
/// reset handle of its socket, which a WebSocket session takes over with the socket.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub addr: SocketAddr,
    pub reset: ResetOnDrop,
}

impl Connected<IncomingStream<'_, GatewayListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, GatewayListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            reset: stream.io().reset.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Accepts one connection from a client; returns both ends.
    async fn pair() -> (Socket, TcpStream) {
        let mut listener = GatewayListener(
            TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a free port"),
        );
        let addr = Listener::local_addr(&listener).expect("local address");
        let (client, (server, _)) =
            tokio::join!(TcpStream::connect(addr), Listener::accept(&mut listener));
        (server, client.expect("connect"))
    }

    #[tokio::test]
    async fn an_unarmed_socket_closes_gracefully() {
        let (server, mut client) = pair().await;
        assert!(server.tcp.nodelay().expect("TCP_NODELAY"));
        drop(server);
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).await.expect("end of stream"), 0);
    }

    #[tokio::test]
    async fn an_armed_socket_resets_the_connection() {
        let (server, mut client) = pair().await;
        server.reset.clone().arm();
        drop(server);
        let mut buf = [0u8; 1];
        let err = client.read(&mut buf).await.expect_err("a reset");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    }
}
