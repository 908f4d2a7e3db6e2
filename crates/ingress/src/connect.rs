//! Connections to endpoints, for the proxy's HTTP client: a plain TCP connection to an
//! endpoint's `IP:port` (never a name to resolve), with as few system calls as it takes, since a backend that closes after each answer (many do) costs
//! one connection per request: the socket is made non-blocking when created, no addresses are
//! asked back, and shutting down the write side before closing is left to `close`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

/// Connects to the `IP:port` of a URI, within `timeout`.
#[derive(Debug, Clone, Copy)]
pub struct Connector {
    /// How long a connection may take to be accepted.
    pub timeout: Duration,
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket or the connection failed.
    #[error("cannot connect to {address}: {source}")]
    Io {
        /// The endpoint.
        address: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The endpoint did not accept in time.
    #[error("connecting to {0} timed out")]
    Timeout(SocketAddr),
    /// The HTTP/1.1 connection could not be set up.
    #[error("cannot set up HTTP/1.1 with {address}: {source}")]
    Handshake {
        /// The endpoint.
        address: SocketAddr,
        /// Why.
        source: hyper::Error,
    },
}

async fn connect(address: SocketAddr, timeout: Duration) -> Result<Stream, ConnectError> {
    let io = |source| ConnectError::Io { address, source };
    let socket =
        if address.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }.map_err(io)?;
    socket.set_nodelay(true).map_err(io)?;
    match tokio::time::timeout(timeout, socket.connect(address)).await {
        Ok(Ok(stream)) => Ok(Stream(TokioIo::new(stream))),
        Ok(Err(source)) => Err(ConnectError::Io { address, source }),
        Err(_) => Err(ConnectError::Timeout(address)),
    }
}

impl Connector {
    /// A connection to `address`.
    pub async fn connect(&self, address: SocketAddr) -> Result<Stream, ConnectError> {
        connect(address, self.timeout).await
    }
}

/// A connection to an endpoint.
#[derive(Debug)]
pub struct Stream(TokioIo<TcpStream>);

impl Read for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    /// Nothing: the connection is closed when dropped, which sends the same FIN.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}
