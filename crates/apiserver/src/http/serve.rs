//! The HTTPS listener: TLS with optional client certificates, HTTP/1.1 and HTTP/2, and the
//! identity of each connection's client.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::authn::{self, User};
use super::handler;
use crate::ApiServer;
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
/// cluster CA accepted but not required (a request without one is answered 401).
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

/// Accepts connections for ever, serving each on its own task.
pub async fn serve(listener: TcpListener, tls: rustls::ServerConfig, api: Arc<ApiServer>) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, api) = (acceptor.clone(), Arc::clone(&api));
        tokio::spawn(async move { connection(acceptor, tcp, peer, api).await });
    }
}

async fn connection(
    acceptor: TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    api: Arc<ApiServer>,
) {
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
    };
    let user: Option<Arc<User>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| authn::user_from_certificate(cert.as_ref()))
        .map(Arc::new);
    let service = service_fn(move |req| {
        let (api, user) = (Arc::clone(&api), user.clone());
        async move { Ok::<_, std::convert::Infallible>(handler::handle(api, user, req).await) }
    });
    if let Err(e) =
        auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
