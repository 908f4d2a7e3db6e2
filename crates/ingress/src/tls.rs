//! Certificates chosen by the client's server name (SNI): each host of an Ingress's `tls`
//! list gets its `kubernetes.io/tls` Secret's certificate; other names get a self-signed
//! default one, as ingress-nginx answers with its "fake" certificate.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::Error;
use crate::routes::Key;

/// Which certified key each server name gets.
#[derive(Debug, Default)]
pub struct Certificates {
    /// By host as the Ingresses write it (exact, or `*.` wildcard), lower case.
    by_host: HashMap<String, Arc<CertifiedKey>>,
}

impl Certificates {
    /// The certificates for `hosts` (host and Secret), from the Secrets' `tls.crt` and
    /// `tls.key`; a Secret missing or unusable is left out (its hosts get the default).
    pub fn new<'a>(
        hosts: impl Iterator<Item = (&'a String, &'a Key)>,
        secrets: &HashMap<Key, (Vec<u8>, Vec<u8>)>,
    ) -> Certificates {
        let mut loaded: HashMap<&Key, Option<Arc<CertifiedKey>>> = HashMap::new();
        let mut by_host = HashMap::new();
        for (host, secret) in hosts {
            let key = loaded
                .entry(secret)
                .or_insert_with(|| {
                    let (cert, key) = secrets.get(secret)?;
                    match certified_key(cert, key) {
                        Ok(k) => Some(Arc::new(k)),
                        Err(e) => {
                            tracing::warn!(secret = %format!("{}/{}", secret.0, secret.1), error = %e, "ingress: unusable TLS Secret");
                            None
                        }
                    }
                })
                .clone();
            if let Some(key) = key {
                by_host.insert(host.clone(), key);
            }
        }
        Certificates { by_host }
    }

    fn find(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.to_ascii_lowercase();
        self.by_host.get(&name).cloned().or_else(|| {
            let (_, parent) = name.split_once('.')?;
            self.by_host.get(&format!("*.{parent}")).cloned()
        })
    }
}

/// A certificate chain and key from PEM.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, Error> {
    let chain: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Tls(format!("cannot read the certificate: {e}")))?;
    if chain.is_empty() {
        return Err(Error::Tls("no certificate in tls.crt".into()));
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|e| Error::Tls(format!("cannot read the key: {e}")))?
        .ok_or_else(|| Error::Tls("no private key in tls.key".into()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| Error::Tls(format!("unusable key: {e}")))?;
    Ok(CertifiedKey::new(chain, signing))
}

/// A self-signed certificate for names no Ingress has one for.
pub fn default_certificate() -> Result<CertifiedKey, Error> {
    let certified = rcgen::generate_simple_self_signed(vec!["ingress.local".to_string()])
        .map_err(|e| Error::Tls(format!("cannot make the default certificate: {e}")))?;
    certified_key(certified.cert.pem().as_bytes(), certified.signing_key.serialize_pem().as_bytes())
}

/// The resolver the HTTPS listener asks, reading the certificates the watches keep current.
#[derive(Debug)]
pub struct Resolver {
    /// The current certificates, swapped whole on each change.
    pub certificates: RwLock<Arc<Certificates>>,
    /// The default certificate.
    pub default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let certificates = self.certificates.read().unwrap_or_else(|e| e.into_inner()).clone();
        hello
            .server_name()
            .and_then(|name| certificates.find(name))
            .or_else(|| Some(self.default.clone()))
    }
}
