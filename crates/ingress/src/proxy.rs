//! The HTTP and HTTPS listeners: each request is routed by the table current when it arrives
//! and relayed to one of its backend's ready endpoints, in turn. A new table applies to the
//! next request; connections and requests in flight keep going with what they started with.
//!
//! What a backend receives, as from ingress-nginx with its defaults: the request with its
//! `Host`, HTTP/1.1, without hop-by-hop headers (RFC 9110 section 7.6.1: `Connection` and what
//! it names, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`)
//! nor `Proxy` (httpoxy), with `X-Request-ID` (the client's, else a new one), `X-Real-IP` and
//! `X-Forwarded-For` (the client's address: headers from clients are not trusted, and the
//! client's `X-Forwarded-For` goes on as `X-Original-Forwarded-For`), `X-Forwarded-Host`,
//! `X-Forwarded-Port`, `X-Forwarded-Proto` and `X-Scheme`. An upgrade (WebSocket) is relayed,
//! then bytes are copied both ways. A connection refused or timed out moves on to the next
//! endpoint (at most three tries; nothing was sent); a backend that fails otherwise gets the
//! client a 502, one that does not answer within 60 s a 504. Backend connections are kept
//! open between requests when the backend allows (`client.rs`).

use std::borrow::Cow;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::client::{Client, SendError};
use crate::connect::Connector;
use crate::routes::Table;

/// The body of requests to backends.
pub type Body = BoxBody<Bytes, hyper::Error>;
/// The body of answers to clients.
pub type Answer = UnsyncBoxBody<Bytes, hyper::Error>;

/// How long a backend may take to accept a connection (ingress-nginx's `proxy-connect-timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a backend may take to answer a request's head (ingress-nginx's
/// `proxy-read-timeout`).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a client may take to send a request's head (nginx's `client_header_timeout`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many endpoints a request without a body tries (ingress-nginx's
/// `proxy-next-upstream-tries`).
const TRIES: usize = 3;

/// The routing table every worker reads, swapped whole on each change.
#[derive(Debug, Default)]
pub struct Routes {
    table: RwLock<Arc<Table>>,
}

impl Routes {
    /// Replaces the table; requests that already hold the old one finish with it.
    pub fn swap(&self, table: Arc<Table>) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = table;
    }

    /// The current table.
    pub fn current(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the connections of one worker (a thread with a runtime of its own) share: the routes,
/// and a client whose connections to endpoints live on that worker.
pub struct Worker {
    /// The routes.
    pub routes: Arc<Routes>,
    client: Client,
    request_ids: AtomicU64,
    seed: RandomState,
}

impl Worker {
    /// A worker's state over `routes`.
    pub fn new(routes: Arc<Routes>) -> Worker {
        let connector = Connector { timeout: CONNECT_TIMEOUT };
        Worker {
            routes,
            client: Client::new(connector),
            request_ids: AtomicU64::new(0),
            seed: RandomState::new(),
        }
    }

    /// A new request id: 32 hex digits (a counter hashed with keys of this worker's own, so
    /// unique in practice; not a secret).
    fn request_id(&self) -> HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        let (a, b) = (self.seed.hash_one(n), self.seed.hash_one(!n));
        let wide = (u128::from(a) << 64) | u128::from(b);
        let mut digits = [0u8; 32];
        for (i, digit) in digits.iter_mut().enumerate() {
            *digit = HEX[((wide >> (124 - 4 * i)) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&digits).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

/// The listener a request came in on.
#[derive(Debug, Clone, Copy)]
pub struct Listener {
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Its port (`X-Forwarded-Port`).
    pub port: u16,
}

/// Headers that belong to one connection, never relayed (RFC 9110 section 7.6.1).
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static X_ORIGINAL_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-original-forwarded-for");
static PROXY: HeaderName = HeaderName::from_static("proxy");

fn text(status: StatusCode, body: &'static str) -> Response<Answer> {
    let mut response = Response::new(
        Full::new(Bytes::from_static(body.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The request's host as the client wrote it (`Host`, or the HTTP/2 authority), with its port.
fn authority<B>(request: &Request<B>) -> Option<HeaderValue> {
    match request.headers().get(header::HOST) {
        Some(host) if host.to_str().is_ok() => Some(host.clone()),
        _ => request.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    }
}

/// A host as routes name it: lower case, without its port and final dot (an IPv6 literal
/// without its brackets); borrowed when the client wrote it so.
pub fn route_host(authority: &str) -> Cow<'_, str> {
    let host = match authority.strip_prefix('[') {
        Some(literal) => literal.split(']').next().unwrap_or(""),
        None => match authority.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => authority,
        },
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Removes the hop-by-hop headers, with those `Connection` names. One look at each name
/// finds them (most messages have none, or only `Connection`), rather than a removal, and
/// its hash lookup, per kind.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name) || named.contains(name))
        .cloned()
        .collect();
    for name in &present {
        headers.remove(name);
    }
}

/// The protocol a request asks to switch to (`Connection: upgrade` and `Upgrade`), HTTP/1.1.
fn upgrade_of<B>(request: &Request<B>) -> Option<HeaderValue> {
    let asks = request
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    (asks && request.version() == http::Version::HTTP_11)
        .then(|| request.headers().get(header::UPGRADE).cloned())
        .flatten()
}

/// The headers a backend receives: the client's, less what is hop-by-hop, plus the
/// `X-Forwarded-*` family (see the module's documentation).
fn backend_headers(
    shared: &Worker,
    mut headers: HeaderMap,
    host: Option<HeaderValue>,
    client: &Downstream,
    upgrade: Option<&HeaderValue>,
) -> HeaderMap {
    strip_hop_by_hop(&mut headers);
    headers.remove(&PROXY);
    if let Some(host) = &host
        && !headers.contains_key(header::HOST)
    {
        // HTTP/2 carries the host as the authority: HTTP/1.1 backends need it as `Host`.
        headers.insert(header::HOST, host.clone());
    }
    if !headers.contains_key(&X_REQUEST_ID) {
        headers.insert(X_REQUEST_ID.clone(), shared.request_id());
    }
    if let Some(original) = headers.remove(&X_FORWARDED_FOR) {
        headers.insert(X_ORIGINAL_FORWARDED_FOR.clone(), original);
    }
    if let Some(address) = &client.address {
        headers.insert(X_REAL_IP.clone(), address.clone());
        headers.insert(X_FORWARDED_FOR.clone(), address.clone());
    }
    match host {
        Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host),
        None => headers.remove(&X_FORWARDED_HOST),
    };
    headers.insert(X_FORWARDED_PORT.clone(), client.port.clone());
    let scheme = HeaderValue::from_static(client.listener.scheme);
    headers.insert(X_FORWARDED_PROTO.clone(), scheme.clone());
    headers.insert(X_SCHEME.clone(), scheme);
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol.clone());
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    headers
}

/// The client side of one connection, as its requests' forwarded headers name it (made
/// once per connection).
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The listener it came in on.
    pub listener: Listener,
    /// Its address (`X-Real-IP`, `X-Forwarded-For`).
    address: Option<HeaderValue>,
    /// The listener's port (`X-Forwarded-Port`).
    port: HeaderValue,
}

impl Downstream {
    /// The client at `peer`, on `listener`.
    pub fn new(peer: SocketAddr, listener: Listener) -> Downstream {
        Downstream {
            listener,
            address: HeaderValue::from_str(&peer.ip().to_string()).ok(),
            port: HeaderValue::from(listener.port),
        }
    }
}

/// Answers one request: routed, relayed, or answered here (404, 503, 502, 504).
pub async fn relay(
    shared: &Worker,
    mut request: Request<Incoming>,
    client: &Downstream,
) -> Response<Answer> {
    if request.method() == http::Method::CONNECT {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405 Not Allowed\n");
    }
    let table = shared.routes.current();
    let authority = authority(&request);
    let host = route_host(authority.as_ref().and_then(|a| a.to_str().ok()).unwrap_or(""));
    let Some(upstream) = table.route(&host, request.uri().path()) else {
        return text(StatusCode::NOT_FOUND, "default backend - 404\n");
    };
    if upstream.endpoints.is_empty() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "503 Service Temporarily Unavailable\n");
    }
    let upgrade = upgrade_of(&request);
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));
    let (parts, body) = request.into_parts();
    let headers = backend_headers(shared, parts.headers, authority, client, upgrade.as_ref());
    let path =
        parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let body = if body.is_end_stream() {
        Empty::new().map_err(|never| match never {}).boxed()
    } else {
        body.boxed()
    };
    let mut outgoing = Request::new(body);
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = Uri::from(path);
    *outgoing.headers_mut() = headers;
    for (endpoint, authority) in upstream.pick().take(TRIES) {
        if !outgoing.headers().contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            // An HTTP/1.0 request without a host: the endpoint's, as nginx's `$proxy_host`.
            outgoing.headers_mut().insert(header::HOST, host);
        }
        let answer = if client_upgrade.is_some() {
            shared
                .client
                .send_upgrade(endpoint, outgoing)
                .await
                .map(|r| r.map(BodyExt::boxed_unsync))
        } else {
            match tokio::time::timeout(READ_TIMEOUT, shared.client.send(endpoint, outgoing)).await {
                Ok(answer) => answer.map(|r| r.map(BodyExt::boxed_unsync)),
                Err(_) => {
                    tracing::debug!(upstream = %upstream.name, %endpoint, "ingress: the backend did not answer in time");
                    return text(StatusCode::GATEWAY_TIMEOUT, "504 Gateway Time-out\n");
                }
            }
        };
        match answer {
            Ok(mut response) => {
                if response.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_upgrade) = client_upgrade
                {
                    let backend_upgrade = hyper::upgrade::on(&mut response);
                    tokio::spawn(tunnel(client_upgrade, backend_upgrade, upstream.name.clone()));
                    let protocol = response.headers().get(header::UPGRADE).cloned();
                    strip_hop_by_hop(response.headers_mut());
                    if let Some(protocol) = protocol {
                        let headers = response.headers_mut();
                        headers.insert(header::UPGRADE, protocol);
                        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                    }
                    return response;
                }
                strip_hop_by_hop(response.headers_mut());
                return response;
            }
            Err(SendError::Connect(e, back)) => {
                tracing::debug!(upstream = %upstream.name, %endpoint, error = %e, "ingress: cannot connect to an endpoint; trying the next");
                outgoing = *back;
            }
            Err(SendError::Exchange(e)) => {
                tracing::debug!(upstream = %upstream.name, %endpoint, error = %e, "ingress: the backend failed");
                return text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n");
            }
        }
    }
    text(StatusCode::BAD_GATEWAY, "502 Bad Gateway\n")
}

/// Copies bytes both ways between an upgraded client connection and its backend's.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    name: String,
) {
    match tokio::try_join!(client, backend) {
        Ok((client, backend)) => {
            let (mut client, mut backend) = (TokioIo::new(client), TokioIo::new(backend));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                tracing::debug!(upstream = %name, error = %e, "ingress: an upgraded connection ended");
            }
        }
        Err(e) => tracing::debug!(upstream = %name, error = %e, "ingress: an upgrade failed"),
    }
}

/// Serves one client connection (HTTP/1.1 with upgrades, or HTTP/2) until it closes.
pub async fn serve_connection<S>(
    shared: Arc<Worker>,
    stream: S,
    peer: SocketAddr,
    listener: Listener,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let client = Arc::new(Downstream::new(peer, listener));
    let service = hyper::service::service_fn(move |request| {
        let (shared, client) = (shared.clone(), client.clone());
        async move { Ok::<_, std::convert::Infallible>(relay(&shared, request, &client).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).await {
        tracing::debug!(%peer, error = %e, "ingress: connection ended");
    }
}

/// A connection accepted for a worker: the stream, its peer, the listener it came in on.
#[derive(Debug)]
pub struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    listener: Listener,
    load: Load,
}

/// One open connection counted against its worker; uncounted when dropped.
#[derive(Debug)]
struct Load(Arc<AtomicUsize>);

impl Drop for Load {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where accepted connections go: each worker's queue and how many connections it holds.
#[derive(Debug, Clone)]
pub struct Workers {
    queues: Vec<(mpsc::UnboundedSender<Accepted>, Arc<AtomicUsize>)>,
}

impl Workers {
    /// `count` (at least one) workers' queues, and the receiving end of each.
    pub fn new(count: usize) -> (Workers, Vec<mpsc::UnboundedReceiver<Accepted>>) {
        let (queues, receivers) = (0..count.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                ((tx, Arc::new(AtomicUsize::new(0))), rx)
            })
            .unzip();
        (Workers { queues }, receivers)
    }

    /// Hands `stream` to the worker holding the fewest connections (the first of them: a
    /// worker that stopped is skipped).
    fn hand_off(&self, stream: std::net::TcpStream, peer: SocketAddr, listener: Listener) {
        let mut order: Vec<usize> = (0..self.queues.len()).collect();
        order.sort_by_key(|i| self.queues[*i].1.load(Ordering::Relaxed));
        let mut accepted = Some((stream, peer));
        for i in order {
            let Some((stream, peer)) = accepted.take() else { return };
            let (queue, count) = &self.queues[i];
            count.fetch_add(1, Ordering::Relaxed);
            let load = Load(count.clone());
            match queue.send(Accepted { stream, peer, listener, load }) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => accepted = Some((back.stream, back.peer)),
            }
        }
    }
}

/// Accepts connections on `listener` for ever and hands each to the least loaded worker. The
/// workers do the rest (TLS handshakes included), each on its own thread: a connection and
/// its requests stay on one (as with nginx's worker processes), spread evenly.
pub async fn accept(listener: TcpListener, scheme: &'static str, workers: Workers) {
    let default = if scheme == "https" { 443 } else { 80 };
    let on = Listener { scheme, port: listener.local_addr().map_or(default, |a| a.port()) };
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                match stream.into_std() {
                    Ok(stream) => workers.hand_off(stream, peer, on),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "ingress: cannot hand a connection over")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "ingress: cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves the connections handed to this worker until its queue closes: HTTP as it comes,
/// HTTPS after a TLS handshake with `acceptor` (bounded in time).
pub async fn work(
    worker: Arc<Worker>,
    mut queue: mpsc::UnboundedReceiver<Accepted>,
    acceptor: TlsAcceptor,
) {
    let sweeper = worker.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(15));
        loop {
            every.tick().await;
            sweeper.client.sweep();
        }
    });
    while let Some(Accepted { stream, peer, listener, load }) = queue.recv().await {
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "ingress: cannot take a connection over");
                continue;
            }
        };
        let (worker, acceptor) = (worker.clone(), acceptor.clone());
        tokio::spawn(async move {
            let _load = load;
            if listener.scheme != "https" {
                return serve_connection(worker, stream, peer, listener).await;
            }
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => serve_connection(worker, tls, peer, listener).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "ingress: TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "ingress: TLS handshake timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::routes::{Backends, Key, ServiceView, SliceView};

    /// A backend on loopback: answers with the request's method, path and headers, one per
    /// line; `/slow` after 500 ms; an `Upgrade: echo` request switches to echoing bytes.
    async fn backend() -> SocketAddr {
        backend_with(true, None).await.0
    }

    /// A backend as [`backend`], keeping connections open between requests or not, closing
    /// idle ones after `idle`; and how many connections it accepted.
    async fn backend_with(
        keep_alive: bool,
        idle: Option<Duration>,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
                let service =
                    hyper::service::service_fn(|mut request: Request<Incoming>| async move {
                        if request.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        let mut text = format!("{} {}\n", request.method(), request.uri());
                        for (name, value) in request.headers() {
                            text.push_str(&format!("{name}: {}\n", value.to_str().unwrap()));
                        }
                        if request.headers().get(header::UPGRADE).is_some_and(|u| u == "echo") {
                            let upgrade = hyper::upgrade::on(&mut request);
                            tokio::spawn(async move {
                                let mut io = TokioIo::new(upgrade.await.unwrap());
                                let mut buf = [0u8; 64];
                                while let Ok(n) = io.read(&mut buf).await {
                                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            });
                            let response = Response::builder()
                                .status(StatusCode::SWITCHING_PROTOCOLS)
                                .header(header::CONNECTION, "upgrade")
                                .header(header::UPGRADE, "echo")
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            return Ok::<_, std::convert::Infallible>(response);
                        }
                        Ok(Response::builder()
                            .header("keep-alive", "timeout=5")
                            .header("x-backend", "yes")
                            .body(Full::new(Bytes::from(text)))
                            .unwrap())
                    });
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.keep_alive(keep_alive);
                if let Some(idle) = idle {
                    builder.timer(TokioTimer::new()).header_read_timeout(idle);
                }
                tokio::spawn(
                    builder.serve_connection(TokioIo::new(stream), service).with_upgrades(),
                );
            }
        });
        (address, accepted)
    }

    /// GETs `/` through the proxy on a connection of its own: the status.
    async fn get(proxy: SocketAddr) -> u16 {
        status(&send(proxy, "GET / HTTP/1.1\r\nHost: a.test\r\n", "").await)
    }

    #[tokio::test]
    async fn backend_connections_are_kept_between_requests_when_the_backend_allows() {
        let (b, accepted) = backend_with(true, None).await;
        let (_, p) = proxy(table(&[b.port()])).await;
        for _ in 0..5 {
            assert_eq!(get(p).await, 200);
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 1);
        // A body read to its end by many clients at once: a few connections, all kept.
        let many: Vec<_> = (0..8).map(|_| tokio::spawn(get(p))).collect();
        for one in many {
            assert_eq!(one.await.unwrap(), 200);
        }
        let after = accepted.load(Ordering::Relaxed);
        for _ in 0..5 {
            assert_eq!(get(p).await, 200);
        }
        assert_eq!(accepted.load(Ordering::Relaxed), after);
    }

    #[tokio::test]
    async fn a_backend_that_closes_gets_a_connection_per_request() {
        let (b, accepted) = backend_with(false, None).await;
        let (_, p) = proxy(table(&[b.port()])).await;
        for _ in 0..3 {
            assert_eq!(get(p).await, 200);
        }
        assert_eq!(accepted.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn an_idle_connection_the_backend_closed_is_not_used() {
        let (b, accepted) = backend_with(true, Some(Duration::from_millis(100))).await;
        let (_, p) = proxy(table(&[b.port()])).await;
        assert_eq!(get(p).await, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(get(p).await, 200);
        assert_eq!(accepted.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_body_the_client_stops_reading_closes_its_backend_connection() {
        let (b, accepted) = backend_with(true, None).await;
        let (_, p) = proxy(table(&[b.port()])).await;
        // The client goes away before reading: the proxy's answer is dropped mid-way or not;
        // either way the next request gets an answer.
        {
            let mut stream = TcpStream::connect(p).await.unwrap();
            stream.write_all(b"GET /slow HTTP/1.1\r\nHost: a.test\r\n\r\n").await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(get(p).await, 200);
        assert!(accepted.load(Ordering::Relaxed) <= 2);
    }

    /// A port nothing listens on.
    async fn dead_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    /// A table: host `a.test` to Service `ns/a` port 80 whose ready endpoints are `ports` on
    /// 127.0.0.1; host `none.test` to Service `ns/none`, which has none.
    fn table(ports: &[u16]) -> Arc<Table> {
        let mut backends = Backends::default();
        for name in ["a", "none"] {
            let key: Key = ("ns".into(), name.into());
            backends.services.insert(key, ServiceView { ports: vec![(String::new(), 80)] });
        }
        let key: Key = ("ns".into(), "a".into());
        let slices = backends.slices.entry(key.clone()).or_default();
        for port in ports {
            slices.insert(
                format!("a-{port}"),
                SliceView {
                    service: key.clone(),
                    ports: vec![(String::new(), i32::from(*port))],
                    ready: vec!["127.0.0.1".parse().unwrap()],
                },
            );
        }
        let spec = serde_json::from_value(serde_json::json!({"rules": [
            {"host": "a.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "a", "port": {"number": 80}}}}]}},
            {"host": "none.test", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "none", "port": {"number": 80}}}}]}}]}))
        .unwrap();
        let ingresses: BTreeMap<Key, _> = BTreeMap::from([(("ns".into(), "web".into()), spec)]);
        Arc::new(Table::build(&ingresses, &backends))
    }

    async fn proxy(table: Arc<Table>) -> (Arc<Worker>, SocketAddr) {
        let shared = Arc::new(Worker::new(Arc::new(Routes::default())));
        shared.routes.swap(table);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (workers, mut queues) = Workers::new(1);
        tokio::spawn(accept(listener, "http", workers));
        tokio::spawn(work(shared.clone(), queues.remove(0), acceptor()));
        (shared, address)
    }

    fn acceptor() -> TlsAcceptor {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = crate::tls::Resolver {
            certificates: Default::default(),
            default: Arc::new(crate::tls::default_certificate(&provider).unwrap()),
        };
        crate::acceptor(provider, Arc::new(resolver)).unwrap()
    }

    #[tokio::test]
    async fn connections_go_to_the_least_loaded_worker_that_still_runs() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (workers, mut queues) = Workers::new(3);
        drop(queues.pop()); // the third worker stopped
        let on = Listener { scheme: "http", port: 80 };
        let mut held = Vec::new();
        for _ in 0..4 {
            let client = std::net::TcpStream::connect(address).unwrap();
            let (_, peer) = listener.accept().await.unwrap();
            workers.hand_off(client, peer, on);
        }
        for queue in &mut queues {
            for _ in 0..2 {
                held.push(queue.try_recv().unwrap());
            }
            assert!(queue.try_recv().is_err());
        }
        // Connections that close no longer count.
        held.truncate(1);
        let client = std::net::TcpStream::connect(address).unwrap();
        workers.hand_off(client, address, on);
        assert!(queues[1].try_recv().is_ok());
    }

    /// Sends `head` (with `Connection: close`) and reads the whole answer.
    async fn send(proxy: SocketAddr, head: &str, body: &str) -> String {
        let mut stream = TcpStream::connect(proxy).await.unwrap();
        stream
            .write_all(format!("{head}Connection: close\r\n\r\n{body}").as_bytes())
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    fn status(answer: &str) -> u16 {
        answer.split(' ').nth(1).unwrap().parse().unwrap()
    }

    /// The header `name` the backend reports having received (lower case).
    fn seen<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
        let body = answer.split_once("\r\n\r\n").unwrap().1;
        body.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")))
    }

    #[tokio::test]
    async fn backends_get_the_host_and_forwarded_headers_and_no_hop_by_hop_ones() {
        let b = backend().await;
        let (_, p) = proxy(table(&[b.port()])).await;
        let answer = send(
            p,
            "GET /x?y=1 HTTP/1.1\r\nHost: A.test:8000\r\nX-Forwarded-For: 192.0.2.7\r\n\
             Keep-Alive: timeout=9\r\nProxy: http://evil\r\nTE: trailers\r\nX-Drop: 1\r\n\
             Connection: x-drop\r\nX-Custom: kept\r\n",
            "",
        )
        .await;
        assert_eq!(status(&answer), 200, "{answer}");
        let body = answer.split_once("\r\n\r\n").unwrap().1;
        assert!(body.starts_with("GET /x?y=1\n"), "{body}");
        assert_eq!(seen(&answer, "host"), Some("A.test:8000"));
        assert_eq!(seen(&answer, "x-custom"), Some("kept"));
        assert_eq!(seen(&answer, "x-forwarded-for"), Some("127.0.0.1"));
        assert_eq!(seen(&answer, "x-original-forwarded-for"), Some("192.0.2.7"));
        assert_eq!(seen(&answer, "x-real-ip"), Some("127.0.0.1"));
        assert_eq!(seen(&answer, "x-forwarded-host"), Some("A.test:8000"));
        assert_eq!(seen(&answer, "x-forwarded-port"), Some(p.port().to_string().as_str()));
        assert_eq!(seen(&answer, "x-forwarded-proto"), Some("http"));
        assert_eq!(seen(&answer, "x-scheme"), Some("http"));
        assert!(seen(&answer, "x-request-id").is_some_and(|id| id.len() == 32));
        for gone in ["proxy", "keep-alive", "te", "x-drop"] {
            assert_eq!(seen(&answer, gone), None, "{gone} relayed: {answer}");
        }
        // The backend's own hop-by-hop headers stay with it.
        let head = answer.split_once("\r\n\r\n").unwrap().0.to_ascii_lowercase();
        assert!(head.contains("x-backend: yes") && !head.contains("keep-alive"), "{head}");
        // A client's request id goes on as it is.
        let answer = send(p, "GET / HTTP/1.1\r\nHost: a.test\r\nX-Request-ID: mine\r\n", "").await;
        assert_eq!(seen(&answer, "x-request-id"), Some("mine"));
    }

    #[tokio::test]
    async fn no_route_is_404_and_no_ready_endpoint_is_503() {
        let (_, p) = proxy(table(&[])).await;
        let answer = send(p, "GET / HTTP/1.1\r\nHost: other.test\r\n", "").await;
        assert_eq!(status(&answer), 404, "{answer}");
        assert!(answer.ends_with("default backend - 404\n"));
        assert_eq!(status(&send(p, "GET / HTTP/1.1\r\nHost: none.test\r\n", "").await), 503);
        assert_eq!(status(&send(p, "GET / HTTP/1.1\r\nHost: a.test\r\n", "").await), 503);
        let answer = send(p, "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n", "").await;
        assert_eq!(status(&answer), 405, "{answer}");
    }

    #[tokio::test]
    async fn a_refused_endpoint_is_skipped_when_the_request_has_no_body() {
        let b = backend().await;
        let dead = dead_port().await;
        let (_, p) = proxy(table(&[dead, b.port()])).await;
        for _ in 0..4 {
            let answer = send(p, "GET / HTTP/1.1\r\nHost: a.test\r\n", "").await;
            assert_eq!(status(&answer), 200, "{answer}");
        }
        // A body is sent once: a refused connection is a 502.
        let (_, p) = proxy(table(&[dead])).await;
        let answer =
            send(p, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n", "hello").await;
        assert_eq!(status(&answer), 502, "{answer}");
        // A body reaches a live endpoint whole.
        let (_, p) = proxy(table(&[b.port()])).await;
        let answer =
            send(p, "POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n", "hello").await;
        assert_eq!(seen(&answer, "content-length"), Some("5"));
    }

    #[tokio::test]
    async fn http2_requests_reach_http1_backends_with_their_authority_as_host() {
        let b = backend().await;
        let (_, p) = proxy(table(&[b.port()])).await;
        let stream = TcpStream::connect(p).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let request =
            Request::builder().uri("http://a.test/h2").body(Empty::<Bytes>::new()).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("host: a.test\n"), "{body}");
        assert!(body.starts_with("GET /h2\n"), "{body}");
    }

    #[tokio::test]
    async fn an_upgrade_is_relayed_and_bytes_go_both_ways() {
        let b = backend().await;
        let (_, p) = proxy(table(&[b.port()])).await;
        let mut stream = TcpStream::connect(p).await.unwrap();
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("upgrade: echo"), "{head}");
        stream.write_all(b"ping").await.unwrap();
        let mut echo = [0u8; 4];
        stream.read_exact(&mut echo).await.unwrap();
        assert_eq!(&echo, b"ping");
    }

    #[tokio::test]
    async fn a_new_table_leaves_requests_in_flight_alone() {
        let b = backend().await;
        let (shared, p) = proxy(table(&[b.port()])).await;
        let slow = tokio::spawn(send(p, "GET /slow HTTP/1.1\r\nHost: a.test\r\n", ""));
        tokio::time::sleep(Duration::from_millis(100)).await;
        shared.routes.swap(Arc::new(Table::default()));
        assert_eq!(status(&send(p, "GET / HTTP/1.1\r\nHost: a.test\r\n", "").await), 404);
        let answer = slow.await.unwrap();
        assert_eq!(status(&answer), 200, "{answer}");
    }

    #[test]
    fn hosts_lose_their_port_case_and_final_dot() {
        assert!(matches!(route_host("a.test:80"), Cow::Borrowed("a.test")));
        assert_eq!(route_host("A.Test:8080"), "a.test");
        assert_eq!(route_host("a.test."), "a.test");
        assert_eq!(route_host("[::1]:80"), "::1");
        assert_eq!(route_host("a.test:"), "a.test");
        assert_eq!(route_host(""), "");
    }

    #[test]
    fn request_ids_are_32_hex_digits_and_differ() {
        let worker = Worker::new(Arc::default());
        let (a, b) = (worker.request_id(), worker.request_id());
        for id in [&a, &b] {
            let id = id.to_str().expect("text");
            assert!(
                id.len() == 32
                    && id.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{id}"
            );
        }
        assert_ne!(a, b);
    }
}
