//! TLS client settings shared by the API server and the node agent: the crypto provider
//! (ring), the host's trusted CAs, and the verifier that accepts any server certificate,
//! which upstream uses where it does not check the server (the API server towards
//! kubelets, the kubelet's HTTPS probes and hooks).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Where Debian (and most distributions) keep the trusted CAs, after `SSL_CERT_FILE`.
const CA_BUNDLES: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"];

/// The crypto provider every TLS connection of krust uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The host's trusted CAs: the first bundle found of `SSL_CERT_FILE` (as OpenSSL reads it)
/// and the distributions' usual files, then every certificate in the folders of
/// `SSL_CERT_DIR` (colon-separated, as Go's `crypto/x509` reads it; the distributions' folder
/// only repeats their bundle, so it is read only when named); empty when there is none.
pub fn host_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let bundles = std::env::var("SSL_CERT_FILE")
        .ok()
        .into_iter()
        .chain(CA_BUNDLES.iter().map(|s| s.to_string()));
    for bundle in bundles {
        if let Ok(pem) = std::fs::read(&bundle) {
            let mut reader = pem.as_slice();
            roots.add_parsable_certificates(rustls_pemfile::certs(&mut reader).flatten());
            break;
        }
    }
    let folders = std::env::var("SSL_CERT_DIR").unwrap_or_default();
    roots.add_parsable_certificates(folder_certificates(&folders));
    roots
}

/// Every PEM certificate in the files of `folders` (colon-separated), in name order.
fn folder_certificates(folders: &str) -> Vec<CertificateDer<'static>> {
    let mut certificates = Vec::new();
    for folder in folders.split(':').filter(|f| !f.is_empty()) {
        let Ok(entries) = std::fs::read_dir(folder) else { continue };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            if let Ok(pem) = std::fs::read(&path) {
                let mut reader = pem.as_slice();
                certificates.extend(rustls_pemfile::certs(&mut reader).flatten());
            }
        }
    }
    certificates
}

/// A client checking servers against the host's CAs.
pub fn verified_client() -> Result<ClientConfig, rustls::Error> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(host_roots())
        .with_no_client_auth())
}

/// A client for one server's own settings: the host's CAs and those of `ca_pem` (or any
/// certificate when `verify` is false), presenting `identity` (a PEM certificate chain and
/// its PEM key) when given.
pub fn client_with(
    ca_pem: Option<&[u8]>,
    identity: Option<(&[u8], &[u8])>,
    verify: bool,
) -> Result<ClientConfig, rustls::Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = if verify {
        let mut roots = host_roots();
        if let Some(pem) = ca_pem {
            let certs = pem_certs(pem)?;
            if certs.is_empty() {
                return Err(rustls::Error::General("no certificate in the CA file".into()));
            }
            roots.add_parsable_certificates(certs);
        }
        builder.with_root_certificates(roots)
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
    };
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((chain, key)) => {
            let chain = pem_certs(chain)?;
            let key = rustls_pemfile::private_key(&mut &key[..])
                .map_err(|e| rustls::Error::General(format!("cannot read the key: {e}")))?
                .ok_or_else(|| rustls::Error::General("no private key in the key file".into()))?;
            builder.with_client_auth_cert(chain, key)
        }
    }
}

fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, rustls::Error> {
    rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| rustls::Error::General(format!("cannot read the certificates: {e}")))
}

/// A client that accepts any server certificate and presents none (the kubelet's HTTPS
/// probes: upstream skips verification there).
pub fn unverified_client() -> Result<ClientConfig, rustls::Error> {
    let provider = provider();
    Ok(ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_no_client_auth())
}

/// Accepts any server certificate; the handshake's signatures are still checked, so the
/// server holds the key of the certificate it sent.
#[derive(Debug)]
pub struct AnyServer(pub Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cert_dir_adds_the_certificates_of_its_files() {
        let Ok(bundle) = std::fs::read(CA_BUNDLES[0]) else { return };
        let wanted: Vec<_> = rustls_pemfile::certs(&mut bundle.as_slice()).flatten().collect();
        let dir = std::env::temp_dir().join(format!("krust-cert-dir-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let written = std::fs::write(dir.join("bundle.pem"), &bundle).is_ok()
            && std::fs::write(dir.join("notes.txt"), "not a certificate").is_ok();
        let found = folder_certificates(&format!("/nonexistent:{}", dir.display()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(written);
        assert!(!wanted.is_empty());
        assert_eq!(found, wanted);
    }

    #[test]
    fn clients_build_with_the_ring_provider() {
        assert!(verified_client().is_ok());
        assert!(unverified_client().is_ok());
    }
}
