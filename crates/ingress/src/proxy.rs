//! The HTTP and HTTPS listeners: each request is routed by the table current when it
//! arrives, and relayed to one of its backend's ready endpoints (in turn); an upgraded
//! connection (WebSocket) is relayed both ways once the backend switches protocols. A new
//! table applies to the next request; connections and requests in flight keep going.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::routes::Table;

type Body = BoxBody<Bytes, hyper::Error>;

/// What every connection shares.
pub struct Shared {
    /// The routing table, swapped whole on each change.
    pub table: RwLock<Arc<Table>>,
    client: Client<HttpConnector, Incoming>,
    turn: AtomicUsize,
}

impl Shared {
    /// Shared state with an empty table.
    pub fn new() -> Shared {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(5)));
        Shared {
            table: RwLock::new(Arc::new(Table::default())),
            client: Client::builder(TokioExecutor::new()).build(connector),
            turn: AtomicUsize::new(0),
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// Headers that belong to one connection, never relayed (RFC 9110 section 7.6.1).
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(body.as_bytes())).map_err(|never| match never {}).boxed(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The request's host, lower case and without its port.
fn host_of(request: &Request<Incoming>) -> String {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(literal) => literal.split(']').next().unwrap_or(""),
        None => match host.rsplit_once(':') {
            Some((name, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
                name
            }
            _ => host,
        },
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

async fn relay(
    shared: &Shared,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    scheme: &'static str,
) -> Response<Body> {
    let host = host_of(&request);
    let table = shared.table.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(upstream) = table.route(&host, request.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "default backend - 404\n");
    };
    if upstream.endpoints.is_empty() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no ready endpoint\n");
    }
    let endpoint =
        upstream.endpoints[shared.turn.fetch_add(1, Ordering::Relaxed) % upstream.endpoints.len()];
    let authority = request.uri().authority().map(|a| a.to_string()).unwrap_or_default();
    let path = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let Ok(uri) = format!("http://{endpoint}{path}").parse::<Uri>() else {
        return text(StatusCode::BAD_REQUEST, "bad request target\n");
    };
    *request.uri_mut() = uri;
    *request.version_mut() = http::Version::HTTP_11;
    // What the Connection header names is hop-by-hop too.
    let named: Vec<HeaderName> = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    // An upgrade (WebSocket and the like) is passed on, and its connection relayed after.
    let upgrade = named
        .contains(&header::UPGRADE)
        .then(|| request.headers().get(header::UPGRADE).cloned())
        .flatten();
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut request));
    let headers = request.headers_mut();
    for name in HOP_BY_HOP.iter().chain(&named) {
        headers.remove(name);
    }
    if let Some(protocol) = &upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol.clone());
    }
    // An HTTP/2 request names its host in its authority only: the HTTP/1.1 backend gets it as
    // the Host header.
    if !headers.contains_key(header::HOST)
        && !authority.is_empty()
        && let Ok(value) = HeaderValue::from_str(&authority)
    {
        headers.insert(header::HOST, value);
    }
    let client_ip = peer.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(before) => format!("{before}, {client_ip}"),
        None => client_ip.clone(),
    };
    for (name, value) in [
        ("x-forwarded-for", forwarded_for),
        ("x-real-ip", client_ip),
        ("x-forwarded-host", host),
        ("x-forwarded-proto", scheme.to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    match shared.client.request(request).await {
        Ok(mut response) => {
            if response.status() == StatusCode::SWITCHING_PROTOCOLS
                && let Some(client_upgrade) = client_upgrade
            {
                let backend_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    let (Ok(client), Ok(backend)) = (client_upgrade.await, backend_upgrade.await)
                    else {
                        return;
                    };
                    let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
                });
                return response.map(|body| body.boxed());
            }
            let (mut parts, body) = response.into_parts();
            for name in &HOP_BY_HOP {
                parts.headers.remove(name);
            }
            Response::from_parts(parts, body.boxed())
        }
        Err(e) => {
            tracing::debug!(upstream = %upstream.name, %endpoint, error = %e, "ingress: the backend failed");
            text(StatusCode::BAD_GATEWAY, "bad gateway\n")
        }
    }
}

async fn serve_connection<S>(shared: Arc<Shared>, stream: S, peer: SocketAddr, scheme: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, std::convert::Infallible>(relay(&shared, request, peer, scheme).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
        tracing::debug!(%peer, error = %e, "ingress: connection ended");
    }
}

/// Serves plain HTTP on `listener`, for ever.
pub async fn http(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(shared.clone(), stream, peer, "http"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "ingress: cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves HTTPS on `listener` with `acceptor`, for ever.
pub async fn https(shared: Arc<Shared>, listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let (shared, acceptor) = (shared.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    );
                    match handshake.await {
                        Ok(Ok(tls)) => serve_connection(shared, tls, peer, "https").await,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "ingress: TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "ingress: TLS handshake timed out"),
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "ingress: cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
