//! The HTTPS listener: TLS with optional client certificates, HTTP/1.1 and HTTP/2, and the
//! identity of each connection's client.
//!
//! Every stage of a connection is bounded in time ([`ConnectionLimits`]): the TLS handshake,
//! reading a request's head, reading its body (in the handler, answered 408), and idling
//! between requests. Connections still in their TLS handshake are capped in number: past the
//! cap the oldest of them is dropped, so that a crowd of silent sockets neither starves new
//! clients nor exhausts file descriptors, and accepting never stops.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::activity::{Activity, Watched};
use super::handler;
use super::response;
use crate::ApiServer;
use crate::authn::x509;
use crate::pki::Pki;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM text could not be read.
    #[error("cannot read {what} PEM")]
    Pem {
        /// Which PEM.
        what: &'static str,
    },
    /// rustls refused the configuration.
    #[error("invalid TLS configuration")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("invalid client CA")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem { what })
}

/// The server's TLS configuration: serving certificate, and client certificates signed by the
/// cluster CA accepted but not required (a request without one is authenticated by its bearer
/// token, or is anonymous).
pub fn tls_config(pki: &Pki) -> Result<rustls::ServerConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(&pki.ca_cert, "CA certificate")? {
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
            .allow_unauthenticated()
            .build()?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut pki.serving_key.as_bytes())
        .ok()
        .flatten()
        .ok_or(TlsError::Pem { what: "serving key" })?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs(&pki.serving_cert, "serving certificate")?, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Time and number limits of connections; passed in from [`crate::Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// The longest a TLS handshake may take (as Go clients' `TLSHandshakeTimeout`: 10 s).
    pub tls_handshake: Duration,
    /// The longest reading an HTTP/1 request's head may take, from its first byte (the first
    /// request's: from the end of the TLS handshake), as upstream's `ReadHeaderTimeout`: 32 s.
    /// Waiting for the next request of a kept-alive connection is idling (`idle`).
    pub request_header: Duration,
    /// The longest reading a request's body may take, from the start of the request; then
    /// the request is answered 408 and, on HTTP/1, the connection closed.
    pub request_body: Duration,
    /// How long a connection with no request in flight stays open (upstream's `IdleTimeout`:
    /// 90 s); HTTP/2 connections are then sent GOAWAY.
    pub idle: Duration,
    /// How often an HTTP/2 connection that sent nothing is pinged; unanswered for as long
    /// again, it is closed.
    pub http2_keep_alive: Duration,
    /// How many streams an HTTP/2 connection may have open at once: upstream's
    /// `--http2-max-streams-per-connection`, 1000. A client that keeps every watch on one
    /// connection (client-go, krust's own components) needs room for all of them.
    pub http2_max_streams: u32,
    /// How many accepted connections may be in their TLS handshake at once; past it, the
    /// oldest is dropped.
    pub max_pending_handshakes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            tls_handshake: Duration::from_secs(10),
            request_header: Duration::from_secs(32),
            request_body: Duration::from_secs(60),
            idle: Duration::from_secs(90),
            http2_keep_alive: Duration::from_secs(30),
            http2_max_streams: 1000,
            max_pending_handshakes: 512,
        }
    }
}

/// The connections in their TLS handshake, by arrival; past `cap`, the oldest are told to go.
#[derive(Debug)]
struct Handshakes {
    cap: usize,
    inner: Mutex<HandshakesInner>,
}

#[derive(Debug, Default)]
struct HandshakesInner {
    next: u64,
    pending: BTreeMap<u64, Arc<Notify>>,
}

/// A connection's place among those in their handshake; leaves on drop.
struct Ticket {
    handshakes: Arc<Handshakes>,
    id: u64,
    evicted: Arc<Notify>,
}

impl Handshakes {
    fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self { cap: cap.max(1), inner: Mutex::default() })
    }

    /// Admits a new connection, evicting the oldest ones past the cap.
    fn admit(self: &Arc<Self>) -> Ticket {
        let evicted = Arc::new(Notify::new());
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = inner.next;
        inner.next += 1;
        inner.pending.insert(id, Arc::clone(&evicted));
        while inner.pending.len() > self.cap {
            if let Some((_, oldest)) = inner.pending.pop_first() {
                // `notify_one` keeps a permit, so a task not yet waiting still sees it.
                oldest.notify_one();
            }
        }
        drop(inner);
        Ticket { handshakes: Arc::clone(self), id, evicted }
    }

    fn pending(&self) -> usize {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pending.len()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner =
            self.handshakes.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.pending.remove(&self.id);
    }
}

/// The HTTP builders: one per protocol TLS negotiated, and one that detects it.
struct Builders {
    detect: auto::Builder<TokioExecutor>,
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(limits: &ConnectionLimits) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Heads are timed by the connection's `Activity` (hyper's timer also runs while a
        // kept-alive connection waits for its next request).
        builder.http1().timer(TokioTimer::new()).header_read_timeout(None);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(limits.http2_keep_alive)
            .keep_alive_timeout(limits.http2_keep_alive)
            .max_concurrent_streams(limits.http2_max_streams);
        Self { detect: builder.clone(), h1: builder.clone().http1_only(), h2: builder.http2_only() }
    }
}

/// Accepts connections until the server shuts down, serving each on its own task.
pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    api: Arc<ApiServer>,
    limits: ConnectionLimits,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let handshakes = Handshakes::new(limits.max_pending_handshakes);
    let builders = Arc::new(Builders::new(&limits));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = api.shutdown.wait() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, pending_handshakes = handshakes.pending(), "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let ticket = handshakes.admit();
        let (acceptor, api, builders) = (acceptor.clone(), Arc::clone(&api), Arc::clone(&builders));
        tokio::spawn(async move {
            connection(acceptor, tcp, peer, api, ticket, builders, limits).await
        });
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    api: Arc<ApiServer>,
    ticket: Ticket,
    builders: Arc<Builders>,
    limits: ConnectionLimits,
) {
    let server = Arc::clone(&api);
    let _open = server.shutdown.connection();
    let evicted = Arc::clone(&ticket.evicted);
    let tls = tokio::select! {
        accepted = tokio::time::timeout(limits.tls_handshake, acceptor.accept(tcp)) => match accepted {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = evicted.notified() => {
            tracing::debug!(%peer, "TLS handshake dropped: too many connections in their handshake");
            return;
        }
    };
    drop(ticket);
    let session = tls.get_ref().1;
    let user: Option<Arc<krust_auth::UserInfo>> = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| x509::user_from_certificate(cert.as_ref()))
        .map(Arc::new);
    let builder = match session.alpn_protocol() {
        Some(b"h2") => &builders.h2,
        Some(b"http/1.1") => &builders.h1,
        _ => &builders.detect,
    };
    let activity = Activity::new(!matches!(session.alpn_protocol(), Some(b"h2")));
    let service = {
        let activity = Arc::clone(&activity);
        service_fn(move |req| {
            let (api, user, active) = (Arc::clone(&api), user.clone(), activity.begin());
            // Boxed: a stream's task (HTTP/2) or the connection (HTTP/1) holds the request's
            // future inline for as long as it lives, and a watch lives long after its handler
            // is done; the handler's future is some kilobytes, its box is freed when it ends.
            Box::pin(async move {
                let response = handler::handle(api, user, req).await;
                Ok::<_, std::convert::Infallible>(response::hold(response, active))
            })
        })
    };
    let io = super::malformed::StatusOnParseError::new(Watched::new(tls, Arc::clone(&activity)));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        // While a request is in flight, look again one idle period later; a head that starts
        // arriving wakes the loop.
        let idle = activity.idle_deadline(limits.idle).filter(|_| !closing);
        let wake = [idle, activity.head_deadline(limits.request_header)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + limits.idle);
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if activity.head_deadline(limits.request_header).is_some_and(|d| d <= now) {
                    tracing::debug!(%peer, "closing a connection whose request head did not arrive in time");
                    return;
                }
                if !closing && activity.idle_deadline(limits.idle).is_some_and(|d| d <= now) {
                    tracing::debug!(%peer, "closing an idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = activity.head_started.notified() => {}
            () = server.shutdown.wait(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_cap_the_oldest_handshake_is_evicted() {
        let handshakes = Handshakes::new(2);
        let first = handshakes.admit();
        let second = handshakes.admit();
        assert_eq!(handshakes.pending(), 2);
        let third = handshakes.admit();
        assert_eq!(handshakes.pending(), 2);
        // The first was told to go (the permit is kept for a later wait); the others were not.
        tokio::time::timeout(Duration::from_secs(1), first.evicted.notified())
            .await
            .expect("the oldest handshake is evicted");
        let not_evicted =
            tokio::time::timeout(Duration::from_millis(20), second.evicted.notified()).await;
        assert!(not_evicted.is_err());
        drop(first);
        assert_eq!(handshakes.pending(), 2);
        drop((second, third));
        assert_eq!(handshakes.pending(), 0);
    }
}
