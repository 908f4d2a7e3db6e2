//! The endpoint's serving certificate from the cluster (upstream's kubelet with
//! `serverTLSBootstrap`): the agent asks for one with a CertificateSigningRequest of the
//! `kubernetes.io/kubelet-serving` signer (`CN=system:node:NAME`, `O=system:nodes`, the node's
//! name and address as alternative names), keeps it in `<data-dir>/pki`, and asks for the next
//! one at 70–90% of its life, as upstream's rotation does. Until the first is issued, the
//! endpoint serves a self-signed one, which an API server checking agents refuses.
//!
//! The certificate is swapped under the running endpoint ([`Served`]): new handshakes get the
//! new one, open connections keep theirs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The signer of node agents' serving certificates.
pub const SIGNER: &str = "kubernetes.io/kubelet-serving";

/// How long a request may stay undecided before the agent asks anew (upstream's certificate
/// manager waits as long).
const DECISION_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The longest wait between two failed requests.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A failure to get or use a serving certificate.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The PEM material is unusable.
    #[error("unusable certificate or key: {0}")]
    Material(String),
    /// The PEM text cannot be read.
    #[error("unreadable PEM")]
    Pem(#[source] std::io::Error),
    /// The certificate and key cannot be served (not a pair, an unsupported key).
    #[error("cannot serve the certificate")]
    Tls(#[source] rustls::Error),
    /// A key, request or certificate cannot be made.
    #[error("cannot make a key, request or certificate")]
    Generate(#[source] rcgen::Error),
    /// The request could not be made or followed.
    #[error("the certificate signing request: {0}")]
    Api(#[from] kube::Error),
    /// The request could not be followed to its end, or was not decided in time.
    #[error("certificate signing request {name}: {reason}")]
    Await {
        /// The request's name.
        name: String,
        /// Why.
        reason: String,
    },
    /// The request was denied, failed or deleted.
    #[error("certificate signing request {name}: {reason}")]
    Refused {
        /// The request's name.
        name: String,
        /// Its `Denied` or `Failed` condition's message, or that it is gone.
        reason: String,
    },
    /// The certificate could not be kept on disk.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The certificate the endpoint serves, replaceable while it runs.
#[derive(Debug)]
pub struct Served {
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Served {
    /// Serves `cert` (a PEM chain) with `key` (PEM).
    pub fn new(cert: &str, key: &str) -> Result<Served, CertificateError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = RwLock::new(certified_key(&provider, cert, key)?);
        Ok(Served { provider, current })
    }

    /// Serves `cert` with `key` from the next handshake on.
    pub fn replace(&self, cert: &str, key: &str) -> Result<(), CertificateError> {
        let next = certified_key(&self.provider, cert, key)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(())
    }

    /// The crypto provider the certificate was loaded with.
    pub fn provider(&self) -> Arc<CryptoProvider> {
        Arc::clone(&self.provider)
    }
}

impl ResolvesServerCert for Served {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner)))
    }
}

fn certified_key(
    provider: &CryptoProvider,
    cert: &str,
    key: &str,
) -> Result<Arc<CertifiedKey>, CertificateError> {
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(CertificateError::Pem)?;
    if chain.is_empty() {
        return Err(CertificateError::Material("no certificate".into()));
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key.as_bytes())
        .ok()
        .flatten()
        .ok_or_else(|| CertificateError::Material("no private key".into()))?;
    // Checks that the key is the certificate's.
    Ok(Arc::new(CertifiedKey::from_der(chain, key, provider).map_err(CertificateError::Tls)?))
}

/// What the agent's certificate is for: its node, the names it is reached by, and the
/// cluster that issues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The node's name (also a DNS name of the certificate, as the `Hostname` address).
    pub node: String,
    /// The node's addresses.
    pub addresses: Vec<IpAddr>,
    /// The cluster, by its CA ([`cluster_of`]): a certificate kept from another cluster (a
    /// server started anew, or the node moved) is not served, as no API server of this one
    /// would trust it. `None` when the agent's kubeconfig gives no CA to tell clusters apart.
    pub cluster: Option<String>,
}

/// A cluster's identity for [`Subject::cluster`]: the SHA-256 of its CA certificates (PEM
/// `ca`, as the agent's kubeconfig has them), in hex; `None` without any.
pub fn cluster_of(ca: &str) -> Option<String> {
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut any = false;
    for cert in rustls_pemfile::certs(&mut ca.as_bytes()).flatten() {
        digest.update(cert.as_ref());
        any = true;
    }
    any.then(|| digest.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

impl Subject {
    /// The certificate's common name.
    pub fn common_name(&self) -> String {
        format!("system:node:{}", self.node)
    }
}

/// The life of a certificate in `pem` that is usable for `subject`: issued for its names and
/// addresses, and not expired at `now`; `None` for any other.
pub fn usable_life(
    pem: &str,
    subject: &Subject,
    now: SystemTime,
) -> Option<(SystemTime, SystemTime)> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = block.parse_x509().ok()?;
    let seconds = |t: x509_parser::time::ASN1Time| {
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(u64::try_from(t.timestamp()).ok()?))
    };
    let (from, until) = (seconds(cert.validity().not_before)?, seconds(cert.validity().not_after)?);
    if until <= now {
        return None;
    }
    let names = cert.subject_alternative_name().ok().flatten()?;
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for name in &names.value.general_names {
        match name {
            x509_parser::extensions::GeneralName::DNSName(d) => dns.push(d.to_string()),
            x509_parser::extensions::GeneralName::IPAddress(bytes) => ips.extend(ip_of(bytes)),
            _ => {}
        }
    }
    let covered = dns.contains(&subject.node) && subject.addresses.iter().all(|a| ips.contains(a));
    covered.then_some((from, until))
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// When to ask for the next certificate: at `jitter` (0 to 1) between 70% and 90% of the
/// certificate's life, as upstream's certificate manager.
pub fn rotation_deadline(from: SystemTime, until: SystemTime, jitter: f64) -> SystemTime {
    let life = until.duration_since(from).unwrap_or_default();
    from + life.mul_f64(0.7 + 0.2 * jitter.clamp(0.0, 1.0))
}

/// A key and a certificate signing request (both PEM) for `subject`.
pub fn signing_request(subject: &Subject) -> Result<(String, String), CertificateError> {
    let bad = CertificateError::Generate;
    let key = rcgen::KeyPair::generate().map_err(bad)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, subject.common_name());
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
    params
        .subject_alt_names
        .push(rcgen::SanType::DnsName(subject.node.clone().try_into().map_err(bad)?));
    params
        .subject_alt_names
        .extend(subject.addresses.iter().copied().map(rcgen::SanType::IpAddress));
    let request = params.serialize_request(&key).map_err(bad)?;
    Ok((key.serialize_pem(), request.pem().map_err(bad)?))
}

/// Where the issued certificate and its key are kept.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("serving.crt"), dir.join("serving.key"))
}

/// Where the cluster that issued the kept certificate is noted ([`Subject::cluster`]).
fn cluster_path(dir: &Path) -> PathBuf {
    dir.join("serving.cluster")
}

/// Asks the cluster for a serving certificate for `subject` and waits until it is issued,
/// denied or failed; answers the key and the certificate (PEM).
pub async fn request(
    client: &Client,
    subject: &Subject,
) -> Result<(String, String), CertificateError> {
    let (key, request) = signing_request(subject)?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta { generate_name: Some("csr-".into()), ..ObjectMeta::default() },
        spec: CertificateSigningRequestSpec {
            request: ByteString(request.into_bytes()),
            signer_name: SIGNER.into(),
            // An ECDSA key only signs: no `key encipherment` (upstream asks for it for RSA).
            usages: Some(["digital signature", "server auth"].map(String::from).into()),
            ..CertificateSigningRequestSpec::default()
        },
        status: None,
    };
    let created = api.create(&PostParams::default(), &csr).await?;
    let name = created.name_any();
    tracing::info!(csr = %name, "asked for a serving certificate");
    let settled =
        |csr: Option<&CertificateSigningRequest>| csr.is_none_or(|csr| outcome(csr).is_some());
    let waiting = kube::runtime::wait::await_condition(api, &name, settled);
    let last = match tokio::time::timeout(DECISION_TIMEOUT, waiting).await {
        Ok(Ok(last)) => last,
        Ok(Err(e)) => {
            return Err(CertificateError::Await { name, reason: e.to_string() });
        }
        Err(_) => {
            let reason = format!(
                "not issued within {} min (kubectl certificate approve {name}, if it is this node's)",
                DECISION_TIMEOUT.as_secs() / 60
            );
            return Err(CertificateError::Await { name, reason });
        }
    };
    let refused = |reason: String| CertificateError::Refused { name: name.clone(), reason };
    match last.as_ref().and_then(outcome) {
        Some(Ok(cert)) => Ok((key, cert)),
        Some(Err(reason)) => Err(refused(reason)),
        None => Err(refused("deleted before it was issued".into())),
    }
}

/// A request's outcome: its certificate, or why there will be none; `None` while pending.
fn outcome(csr: &CertificateSigningRequest) -> Option<Result<String, String>> {
    let status = csr.status.as_ref()?;
    if let Some(ending) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True")
    {
        let message = ending.message.clone().unwrap_or_default();
        return Some(Err(format!("{}: {message}", ending.type_)));
    }
    let cert = status.certificate.as_ref().filter(|c| !c.0.is_empty())?;
    Some(String::from_utf8(cert.0.clone()).map_err(|_| "the certificate is not PEM".to_string()))
}

/// The certificate kept in `dir`, with its key and life, if it is still usable for
/// `subject` (its cluster's too) and its key is its own.
pub fn kept(dir: &Path, subject: &Subject, now: SystemTime) -> Option<Issued> {
    let (cert_path, key_path) = paths(dir);
    // Without a note (kept before clusters were noted) or a CA to compare, as before.
    let noted = std::fs::read_to_string(cluster_path(dir)).ok();
    if let (Some(noted), Some(cluster)) = (noted, &subject.cluster)
        && noted.trim() != cluster
    {
        tracing::info!(node = %subject.node, "the kept serving certificate is another cluster's: a new one is asked for");
        return None;
    }
    let cert = std::fs::read_to_string(cert_path).ok()?;
    let key = std::fs::read_to_string(key_path).ok()?;
    Issued::new(cert, key, subject, now).ok()
}

/// A certificate the cluster issued, with its key.
#[derive(Debug, Clone)]
pub struct Issued {
    cert: String,
    key: String,
    life: (SystemTime, SystemTime),
}

impl Issued {
    /// `cert` with `key`, if it is usable for `subject` at `now` and the key is its own.
    pub fn new(
        cert: String,
        key: String,
        subject: &Subject,
        now: SystemTime,
    ) -> Result<Issued, CertificateError> {
        let life = usable_life(&cert, subject, now).ok_or_else(|| {
            CertificateError::Material("not valid now, or not for this node's names".into())
        })?;
        certified_key(&rustls::crypto::ring::default_provider(), &cert, &key)?;
        Ok(Issued { cert, key, life })
    }

    /// The certificate and its key (PEM).
    pub fn pem(self) -> (String, String) {
        (self.cert, self.key)
    }
}

/// Keeps the endpoint's certificate one the cluster issued for `subject`: starts from the
/// one kept in `dir` if it is still usable, asks for a new one when there is none or it is
/// due, and retries failures with a growing back-off. Runs for ever. `current` is what the
/// endpoint serves now, if the cluster issued it ([`kept`] at the start).
pub async fn keep(
    client: Client,
    subject: Subject,
    dir: PathBuf,
    served: Arc<Served>,
    mut current: Option<Issued>,
) {
    let mut backoff = Duration::from_secs(2);
    loop {
        if let Some(issued) = &current {
            let due = rotation_deadline(issued.life.0, issued.life.1, jitter());
            if let Ok(wait) = due.duration_since(SystemTime::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let asked = request(&client, &subject).await.and_then(|(key, cert)| {
            let issued = Issued::new(cert, key, &subject, SystemTime::now())?;
            served.replace(&issued.cert, &issued.key)?;
            Ok(issued)
        });
        match asked {
            Ok(issued) => {
                tracing::info!(node = %subject.node, "serving a certificate the cluster issued");
                backoff = Duration::from_secs(2);
                // Served already; a failed write only costs a new request at the next start.
                let writing = {
                    let (dir, issued) = (dir.clone(), issued.clone());
                    let cluster = subject.cluster.clone();
                    tokio::task::spawn_blocking(move || {
                        save(&dir, &issued.cert, &issued.key, cluster.as_deref())
                    })
                };
                if let Ok(Err(e)) = writing.await {
                    tracing::warn!(error = %e, "cannot keep the serving certificate on disk");
                }
                current = Some(issued);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "no serving certificate from the cluster yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A number between 0 and 1 that differs from agent to agent and from start to start.
fn jitter() -> f64 {
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    f64::from(nanos.subsec_nanos() % 1000) / 1000.0
}

/// Writes the certificate, its key and its cluster into `dir` (0700), each whole (a file of
/// its own renamed over the old one): the key private (0600), the certificate last. Every
/// request has a new key, so a crash in between leaves a certificate beside a key not its
/// own, which [`kept`] refuses: a certificate is only ever used beside its own key and
/// cluster.
fn save(dir: &Path, cert: &str, key: &str, cluster: Option<&str>) -> Result<(), CertificateError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    let (cert_path, key_path) = paths(dir);
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CertificateError::Write { path, source }
    };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(failed(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed(dir))?;
    let write = |path: &Path, text: &str, mode: u32| {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        // A partial file left by a crash is made anew, with this file's mode.
        let _ = std::fs::remove_file(&partial);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&partial)
            .map_err(failed(&partial))?;
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(failed(&partial))?;
        file.sync_all().map_err(failed(&partial))?;
        std::fs::rename(&partial, path).map_err(failed(path))
    };
    write(&key_path, key, 0o600)?;
    match cluster {
        Some(cluster) => write(&cluster_path(dir), cluster, 0o644)?,
        None => {
            let _ = std::fs::remove_file(cluster_path(dir));
        }
    }
    write(&cert_path, cert, 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            node: "node-a".into(),
            addresses: vec!["10.0.0.7".parse().expect("an address")],
            cluster: Some("cluster-a".into()),
        }
    }

    #[test]
    fn a_signing_request_names_the_node_and_its_address() {
        use x509_parser::prelude::FromDer;
        let (_, pem) = signing_request(&subject()).expect("a request");
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
                .expect("a CSR");
        let info = &csr.certification_request_info;
        let cn: Vec<_> =
            info.subject.iter_common_name().map(|c| c.as_str().expect("text")).collect();
        let o: Vec<_> =
            info.subject.iter_organization().map(|c| c.as_str().expect("text")).collect();
        assert_eq!((cn, o), (vec!["system:node:node-a"], vec!["system:nodes"]));
    }

    #[test]
    fn a_certificate_is_usable_only_for_the_names_it_covers_and_until_it_expires() {
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params =
            rcgen::CertificateParams::new(vec!["node-a".into(), "10.0.0.7".into()]).expect("names");
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2027, 1, 1);
        let pem = params.self_signed(&key).expect("a certificate").pem();
        let at = |y: u64| SystemTime::UNIX_EPOCH + Duration::from_secs((y - 1970) * 31_557_600);
        assert!(usable_life(&pem, &subject(), at(2026)).is_some());
        assert!(usable_life(&pem, &subject(), at(2028)).is_none());
        let moved =
            Subject { addresses: vec!["10.0.0.8".parse().expect("an address")], ..subject() };
        assert!(usable_life(&pem, &moved, at(2026)).is_none());
        let renamed = Subject { node: "node-b".into(), ..subject() };
        assert!(usable_life(&pem, &renamed, at(2026)).is_none());
    }

    #[test]
    fn a_kept_certificate_is_used_only_beside_its_own_key() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("pki");
        let cert = |key: &rcgen::KeyPair| {
            rcgen::CertificateParams::new(vec!["node-a".into(), "10.0.0.7".into()])
                .expect("names")
                .self_signed(key)
                .expect("a certificate")
                .pem()
        };
        let (key, other) = (
            rcgen::KeyPair::generate().expect("a key"),
            rcgen::KeyPair::generate().expect("a key"),
        );
        // A partial file a crash left, world-readable: the key is written anew, private.
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("serving.key.partial"), "stale").expect("partial");
        save(&dir, &cert(&key), &key.serialize_pem(), Some("cluster-a")).expect("saved");
        let mode =
            |path: PathBuf| std::fs::metadata(path).expect("file").permissions().mode() & 0o777;
        assert_eq!((mode(dir.join("serving.key")), mode(dir.clone())), (0o600, 0o700));
        assert!(kept(&dir, &subject(), SystemTime::now()).is_some());
        // Another cluster's (a server started anew): not served.
        let elsewhere = Subject { cluster: Some("cluster-b".into()), ..subject() };
        assert!(kept(&dir, &elsewhere, SystemTime::now()).is_none());
        // One kept before clusters were noted is used as before.
        std::fs::remove_file(dir.join("serving.cluster")).expect("noted");
        assert!(kept(&dir, &elsewhere, SystemTime::now()).is_some());
        save(&dir, &cert(&key), &key.serialize_pem(), Some("cluster-a")).expect("saved");
        // A crash between the key and the certificate: a new key beside the old certificate.
        save(&dir, &cert(&key), &other.serialize_pem(), Some("cluster-a")).expect("saved");
        assert!(kept(&dir, &subject(), SystemTime::now()).is_none());
        assert!(Served::new(&cert(&key), &other.serialize_pem()).is_err());
    }

    #[test]
    fn a_cluster_is_known_by_its_ca_certificates() {
        let ca = |name: &str| {
            let key = rcgen::KeyPair::generate().expect("a key");
            rcgen::CertificateParams::new(vec![name.into()])
                .expect("names")
                .self_signed(&key)
                .expect("a certificate")
                .pem()
        };
        let (a, b) = (ca("a"), ca("b"));
        assert_eq!(cluster_of(&a), cluster_of(&format!("\n{a}\n")));
        assert_ne!(cluster_of(&a), cluster_of(&b));
        assert_eq!(cluster_of(&a).map(|c| c.len()), Some(64));
        assert_eq!(cluster_of(""), None);
    }

    #[test]
    fn rotation_falls_between_seventy_and_ninety_percent_of_the_life() {
        let from = SystemTime::UNIX_EPOCH;
        let until = from + Duration::from_secs(1000);
        assert_eq!(rotation_deadline(from, until, 0.0), from + Duration::from_secs(700));
        assert_eq!(rotation_deadline(from, until, 1.0), from + Duration::from_secs(900));
        assert_eq!(rotation_deadline(from, until, 7.0), from + Duration::from_secs(900));
    }

    #[test]
    fn a_request_ends_with_its_certificate_or_its_refusal() {
        use k8s_openapi::api::certificates::v1::{
            CertificateSigningRequestCondition, CertificateSigningRequestStatus,
        };
        let mut csr = CertificateSigningRequest::default();
        assert_eq!(outcome(&csr), None);
        csr.status = Some(CertificateSigningRequestStatus {
            certificate: Some(ByteString(b"PEM".to_vec())),
            conditions: None,
        });
        assert_eq!(outcome(&csr), Some(Ok("PEM".into())));
        csr.status = Some(CertificateSigningRequestStatus {
            certificate: None,
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Denied".into(),
                status: "True".into(),
                message: Some("not this node's address".into()),
                ..CertificateSigningRequestCondition::default()
            }]),
        });
        assert_eq!(outcome(&csr), Some(Err("Denied: not this node's address".into())));
    }
}
