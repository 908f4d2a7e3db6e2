//! Certificates chosen by the client's server name (SNI): each host of an Ingress's `tls` list
//! gets its `kubernetes.io/tls` Secret's certificate (an exact host before a `*.` wildcard);
//! any other name, a missing or unusable Secret, or a client that sends no server name gets the
//! default certificate, self-signed at start as ingress-nginx's "Kubernetes Ingress Controller
//! Fake Certificate".

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::routes::Key;

/// The subject of the default certificate, ingress-nginx's.
pub const DEFAULT_COMMON_NAME: &str = "Kubernetes Ingress Controller Fake Certificate";

/// Why a certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// A PEM block could not be read.
    #[error("cannot read the PEM of {field}: {source}")]
    Pem {
        /// `tls.crt` or `tls.key`.
        field: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// `tls.crt` holds no certificate.
    #[error("no certificate in tls.crt")]
    NoCertificate,
    /// `tls.key` holds no private key.
    #[error("no private key in tls.key")]
    NoKey,
    /// The key is of an unsupported kind or does not match the certificate.
    #[error("unusable certificate and key: {0}")]
    Unusable(#[source] rustls::Error),
    /// The default certificate could not be made.
    #[error("cannot make the default certificate: {0}")]
    Generate(#[source] rcgen::Error),
}

/// A certificate chain and its key from PEM (a Secret's `tls.crt` and `tls.key`), the key
/// checked against the certificate.
pub fn certified_key(
    provider: &CryptoProvider,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<CertifiedKey, CertificateError> {
    let chain: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .collect::<Result<_, _>>()
        .map_err(|source| CertificateError::Pem { field: "tls.crt", source })?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate);
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|source| CertificateError::Pem { field: "tls.key", source })?
        .ok_or(CertificateError::NoKey)?;
    CertifiedKey::from_der(chain, key, provider).map_err(CertificateError::Unusable)
}

/// The default certificate: self-signed, for `ingress.local`, named as ingress-nginx's.
pub fn default_certificate(provider: &CryptoProvider) -> Result<CertifiedKey, CertificateError> {
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()])
        .map_err(CertificateError::Generate)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "Acme Co");
    params.distinguished_name.push(rcgen::DnType::CommonName, DEFAULT_COMMON_NAME);
    let key = rcgen::KeyPair::generate().map_err(CertificateError::Generate)?;
    let cert = params.self_signed(&key).map_err(CertificateError::Generate)?;
    certified_key(provider, cert.pem().as_bytes(), key.serialize_pem().as_bytes())
}

/// A TLS Secret as the controller keeps it: its certificate parsed once per change.
pub type SecretView = Result<Arc<CertifiedKey>, Arc<CertificateError>>;

/// Which certified key each server name gets.
#[derive(Debug, Default)]
pub struct Certificates {
    /// By host as the Ingresses write it (exact, or `*.` wildcard), lower case.
    by_host: HashMap<String, Arc<CertifiedKey>>,
}

impl Certificates {
    /// The certificates of `hosts` (each host and its Secret, from [`crate::routes::Table::tls`]);
    /// a host whose Secret is missing or unusable is left out (it gets the default), and each
    /// unusable Secret is returned with its error, for the caller to report.
    pub fn new<'a>(
        hosts: &BTreeMap<String, Key>,
        secrets: &'a HashMap<Key, SecretView>,
    ) -> (Certificates, Vec<(&'a Key, Arc<CertificateError>)>) {
        let mut by_host = HashMap::new();
        let mut unusable = Vec::new();
        for (host, secret) in hosts {
            match secrets.get_key_value(secret) {
                Some((_, Ok(key))) => {
                    by_host.insert(host.clone(), key.clone());
                }
                Some((key, Err(e))) if !unusable.iter().any(|(k, _)| *k == key) => {
                    unusable.push((key, e.clone()));
                }
                _ => {}
            }
        }
        (Certificates { by_host }, unusable)
    }

    /// The certificate for the server name `name`: its own, else its parent's wildcard.
    pub fn find(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.by_host.get(&name).cloned().or_else(|| {
            let dot = name.find('.').filter(|d| *d > 0)?;
            self.by_host.get(&format!("*{}", &name[dot..])).cloned()
        })
    }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    fn pem(names: &[&str]) -> (String, String) {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    fn key(name: &str) -> Key {
        ("ns".into(), name.into())
    }

    #[test]
    fn server_names_find_their_own_certificate_then_the_wildcard() {
        let p = provider();
        let (a_cert, a_key) = pem(&["a.test"]);
        let (w_cert, w_key) = pem(&["*.wild.test"]);
        let secrets: HashMap<Key, SecretView> = HashMap::from([
            (
                key("a"),
                Ok(Arc::new(certified_key(&p, a_cert.as_bytes(), a_key.as_bytes()).unwrap())),
            ),
            (
                key("w"),
                Ok(Arc::new(certified_key(&p, w_cert.as_bytes(), w_key.as_bytes()).unwrap())),
            ),
            (key("bad"), Err(Arc::new(CertificateError::NoKey))),
        ]);
        let hosts = BTreeMap::from([
            ("a.test".to_string(), key("a")),
            ("*.wild.test".to_string(), key("w")),
            ("x.wild.test".to_string(), key("a")),
            ("b.test".to_string(), key("bad")),
            ("c.test".to_string(), key("missing")),
        ]);
        let (certificates, unusable) = Certificates::new(&hosts, &secrets);
        let same = |name: &str, secret: &str| {
            let want = secrets[&key(secret)].as_ref().unwrap();
            certificates.find(name).is_some_and(|k| k.cert == want.cert)
        };
        assert!(same("a.test", "a") && same("A.Test.", "a"));
        assert!(same("y.wild.test", "w"));
        assert!(same("x.wild.test", "a")); // its own before the wildcard
        assert!(certificates.find("wild.test").is_none());
        assert!(certificates.find("z.y.wild.test").is_none());
        assert!(certificates.find("b.test").is_none() && certificates.find("c.test").is_none());
        assert_eq!(unusable.len(), 1);
        assert_eq!(unusable[0].0, &key("bad"));
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let p = provider();
        let (cert, _) = pem(&["a.test"]);
        let (_, other_key) = pem(&["a.test"]);
        let e = certified_key(&p, cert.as_bytes(), other_key.as_bytes()).unwrap_err();
        assert!(matches!(e, CertificateError::Unusable(_)), "{e}");
        assert!(matches!(certified_key(&p, b"", b""), Err(CertificateError::NoCertificate)));
        assert!(matches!(
            certified_key(&p, cert.as_bytes(), b"junk"),
            Err(CertificateError::NoKey)
        ));
    }

    #[test]
    fn the_default_certificate_is_named_as_ingress_nginx_names_it() {
        let k = default_certificate(&provider()).unwrap();
        let der = k.end_entity_cert().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap();
        assert_eq!(cn, DEFAULT_COMMON_NAME);
    }
}
