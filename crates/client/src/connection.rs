//! A kube-rs client whose requests share one HTTP/2 connection to the server, as client-go's
//! do. kube-rs's own client speaks HTTP/1.1, where every watch holds a connection (and its
//! TLS buffers at both ends) of its own: a component with forty informers kept forty.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use kube::client::ConfigExt;
use kube::{Client, Config};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tower::{BoxError, Service, ServiceBuilder};

/// Flow-control windows as client-go's: a stream may run 4 MiB ahead of its reader, and the
/// connection far more, so that one slow watch does not hold up the others.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 1 << 30;

/// How often an idle connection is pinged, and how long a ping may go unanswered before the
/// connection is taken as dead (and its watches end, to be started again on a new one).
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for `config` whose requests and watches share one HTTP/2 connection.
///
/// A configuration this does not cover (a proxy, or a server without TLS) gets kube-rs's
/// own HTTP/1.1 client. So does any use of an HTTP upgrade (exec, attach, port-forward over
/// WebSocket), which HTTP/2 does not carry: make those clients with `Client::try_from`.
pub fn client(config: Config) -> kube::Result<Client> {
    if config.proxy_url.is_some() || config.cluster_url.scheme_str() != Some("https") {
        return Client::try_from(config);
    }
    let mut tls = config.rustls_client_config()?;
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let server_name = config
        .tls_server_name
        .clone()
        .or_else(|| config.cluster_url.host().map(|h| h.trim_matches(['[', ']']).to_string()));
    let server_name = match server_name.map(ServerName::try_from) {
        Some(Ok(name)) => name,
        _ => return Client::try_from(config),
    };
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = TlsConnect {
        tcp,
        tls: TlsConnector::from(Arc::new(tls)),
        server_name: Arc::new(server_name),
    };
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .http2_only(true)
        .timer(TokioTimer::new())
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(CONNECTION_WINDOW)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .http2_keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(connector);
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(http);
    Ok(Client::new(service, config.default_namespace))
}

/// Connects over TCP, then TLS with ALPN `h2`, to the server of the client's configuration.
#[derive(Clone)]
struct TlsConnect {
    tcp: HttpConnector,
    tls: TlsConnector,
    /// The name the server's certificate must carry.
    server_name: Arc<ServerName<'static>>,
}

impl Service<Uri> for TlsConnect {
    type Response = Stream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tcp = self.tcp.call(uri);
        let tls = self.tls.clone();
        let name = ServerName::clone(&self.server_name);
        Box::pin(async move {
            let tcp = tcp.await?.into_inner();
            let stream = tls.connect(name, tcp).await?;
            Ok(Stream(TokioIo::new(stream)))
        })
    }
}

/// A TLS connection to the server, as hyper reads and writes it.
struct Stream(TokioIo<TlsStream<TcpStream>>);

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}
