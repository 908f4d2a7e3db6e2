//! Connections to endpoints, for the proxy's HTTP client: a plain TCP connection to the
//! `IP:port` a request's URI names (endpoints are addresses, never names to resolve), with as
//! few system calls as it takes, since a backend that closes after each answer (many do) costs
//! one connection per request: the socket is made non-blocking when created, no addresses are
//! asked back, and shutting down the write side before closing is left to `close`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
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
    /// The URI does not name an `IP:port`.
    #[error("not an endpoint address: {0}")]
    Address(String),
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
}

fn address_of(uri: &Uri) -> Result<SocketAddr, ConnectError> {
    let authority = uri.authority().ok_or_else(|| ConnectError::Address(uri.to_string()))?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let ip = host.parse().map_err(|_| ConnectError::Address(uri.to_string()))?;
    let port = authority.port_u16().unwrap_or(80);
    Ok(SocketAddr::new(ip, port))
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

impl tower::Service<Uri> for Connector {
    type Response = Stream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        Box::pin(async move { connect(address_of(&uri)?, timeout).await })
    }
}

/// A connection to an endpoint.
#[derive(Debug)]
pub struct Stream(TokioIo<TcpStream>);

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn endpoint_uris_name_an_address() {
        let a = |s: &str| address_of(&s.parse().unwrap()).map(|a| a.to_string());
        assert_eq!(a("http://10.0.0.1:8080/x").unwrap(), "10.0.0.1:8080");
        assert_eq!(a("http://[fd00::1]:80/").unwrap(), "[fd00::1]:80");
        assert_eq!(a("http://10.0.0.1/").unwrap(), "10.0.0.1:80");
        assert!(matches!(a("http://name.test:80/"), Err(ConnectError::Address(_))));
    }
}
