//! Pulls from registries (the OCI distribution API): the manifest a reference names (this
//! node's entry of a multi-platform index), then the config and the layers not yet in the
//! store, each checked against its digest before the store takes it. The node's
//! `registries.yaml` ([`config`]) may name mirrors, tried in order before the registry itself,
//! and per-host credentials and TLS settings. A registry on the loopback address may be plain
//! HTTP, as containerd allows for `localhost`, and so may a mirror whose URL says `http://`;
//! every other endpoint is HTTPS, checked against the host's CAs (and its own, if configured).

pub mod auth;
pub mod config;
pub mod keyring;
pub mod manifest;
pub mod transport;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;

use super::{Blobs, Image, ImageError, ImageStore, Reference};
use auth::Challenge;
use config::{ConfigError, Endpoint, Registries};
use keyring::{Credential, Keyring};
use manifest::{Descriptor, Fetched, ManifestError};
use transport::{Response, Transport, TransportError};

/// Why a pull failed; shown on the container's status as the kubelet shows containerd's.
#[derive(Debug, thiserror::Error)]
#[error("failed to pull and unpack image {reference:?}: {failure}")]
pub struct PullError {
    /// The image as the pod names it.
    pub reference: String,
    /// What went wrong.
    pub failure: Failure,
}

/// What went wrong in a pull.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Not an image reference (the pod's `InvalidImageName`).
    #[error("invalid reference format")]
    InvalidName,
    /// The registry has no such tag, digest or repository.
    #[error("failed to resolve reference {0:?}: {0}: not found")]
    NotFound(String),
    /// The registry refused us (no or wrong credentials).
    #[error(
        "failed to resolve reference {reference:?}: pull access denied, repository does not exist or may require authorization: {status}"
    )]
    Denied {
        /// The normalised reference.
        reference: String,
        /// The registry's answer.
        status: String,
    },
    /// A blob the manifest names is not in the registry.
    #[error("failed to copy: blob {0}: not found")]
    MissingBlob(String),
    /// A blob is longer than its descriptor says.
    #[error("failed to copy: blob {digest} is larger than its {size} bytes")]
    TooLarge {
        /// The blob's digest.
        digest: String,
        /// The size its descriptor gives.
        size: u64,
    },
    /// The registry answered something else.
    #[error("unexpected status from GET request to {url}: {status}")]
    Status {
        /// The URL.
        url: String,
        /// The answer.
        status: String,
    },
    /// No usable answer.
    #[error("{0}")]
    Transport(#[from] TransportError),
    /// The manifest cannot be used.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    /// A multi-platform image without this node's platform.
    #[error("no match for platform in manifest: not found")]
    NoPlatform,
    /// A blob is not what its descriptor says.
    #[error("failed to copy: digest mismatch for {expected}: got {actual}")]
    DigestMismatch {
        /// The digest the manifest names.
        expected: String,
        /// The digest of what arrived.
        actual: String,
    },
    /// A layer in a format this agent cannot unpack.
    #[error("unsupported layer media type {0:?}")]
    LayerType(String),
    /// The store could not take it.
    #[error("{0}")]
    Store(#[from] ImageError),
    /// Writing a download failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl PullError {
    /// Whether the pod's image is not a reference at all (`InvalidImageName`).
    pub fn invalid_name(&self) -> bool {
        matches!(self.failure, Failure::InvalidName)
    }
}

/// The node's registry client: its configuration, and a TLS client for each host that has
/// TLS settings of its own.
pub struct Client {
    config: Registries,
    transport: Transport,
    by_host: BTreeMap<String, Transport>,
}

impl Client {
    /// A client for `config`, trusting the host's CAs; reads the CA, certificate and key files
    /// the configuration names, so that a wrong path shows when the node starts.
    pub fn new(config: Registries) -> Result<Client, ConfigError> {
        let transport = Transport::new();
        let mut by_host = BTreeMap::new();
        for (host, settings) in &config.configs {
            let Some(tls) = &settings.tls else { continue };
            let read = |path: &PathBuf| {
                std::fs::read(path).map_err(|e| {
                    ConfigError::new(format!("configs.{host:?}.tls: {}: {e}", path.display()))
                })
            };
            let ca = tls.ca_file.as_ref().map(read).transpose()?;
            let identity = match (&tls.cert_file, &tls.key_file) {
                (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
                _ => None,
            };
            let client = krust_tls::client_with(
                ca.as_deref(),
                identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
                !tls.insecure_skip_verify,
            )
            .map_err(|e| ConfigError::new(format!("configs.{host:?}.tls: {e}")))?;
            by_host.insert(host.clone(), Transport::with_tls(client));
        }
        Ok(Client { config, transport, by_host })
    }

    /// Reads the configuration at `path`; no file is an empty configuration.
    pub fn from_file(path: &Path) -> Result<Client, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ConfigError::new(format!("{}: {e}", path.display()))),
        };
        let config = Registries::parse(&text)
            .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
        Client::new(config)
    }

    /// The settings' key for `endpoint`: its host, else (for the registry itself) the
    /// registry's name as images write it, else `*`.
    fn key<'k, T>(
        map: &'k BTreeMap<String, T>,
        endpoint: &Endpoint,
        reference: &Reference,
    ) -> Option<&'k T> {
        map.get(&endpoint.host)
            .or_else(|| map.get(&reference.registry).filter(|_| !endpoint.mirror))
            .or_else(|| map.get("*"))
    }

    fn transport(&self, endpoint: &Endpoint, reference: &Reference) -> &Transport {
        Self::key(&self.by_host, endpoint, reference).unwrap_or(&self.transport)
    }

    /// The credentials to try at `endpoint` for `reference`: a pod's pull secrets for the
    /// host they name (a mirror's own, or the registry's), then the configuration's.
    fn credentials(
        &self,
        endpoint: &Endpoint,
        reference: &Reference,
        keyring: &Keyring,
    ) -> Vec<Credential> {
        let host = if endpoint.mirror { &endpoint.host } else { &reference.registry };
        let mut credentials = keyring.lookup(host, &reference.repository);
        let configured = Self::key(&self.config.configs, endpoint, reference)
            .and_then(|c| c.auth.as_ref())
            .and_then(config::Auth::credential);
        credentials.extend(configured);
        credentials
    }
}

/// How far a pull is, for a progress display (`krust image pull`): bytes to download (the
/// config and the layers the store lacks, known once the manifest is read) and bytes
/// downloaded.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes to download; 0 until the manifest is read.
    pub total: AtomicU64,
    /// Bytes downloaded.
    pub done: AtomicU64,
}

/// Pulls `image` into `store`, with the credentials `keyring` holds for it: from each of its
/// registry's endpoints in turn (mirrors first) until one serves it; the last one's failure
/// otherwise.
pub async fn pull(
    client: &Client,
    store: &ImageStore,
    image: &str,
    keyring: &Keyring,
) -> Result<Image, PullError> {
    pull_with_progress(client, store, image, keyring, &Progress::default()).await
}

/// [`pull`], counting its downloads in `progress`.
pub async fn pull_with_progress(
    client: &Client,
    store: &ImageStore,
    image: &str,
    keyring: &Keyring,
    progress: &Progress,
) -> Result<Image, PullError> {
    let error = |failure| PullError { reference: image.to_string(), failure };
    let reference = Reference::parse(image)
        .filter(|r| r.digest.as_deref().is_none_or(super::is_sha256))
        .ok_or_else(|| error(Failure::InvalidName))?;
    // Removed when the pull ends, or is cancelled.
    let scratch = store.scratch("pull").map_err(|e| error(e.into()))?;
    let mut failure = None;
    for endpoint in client.config.endpoints(&reference.registry) {
        let credentials = client.credentials(&endpoint, &reference, keyring);
        let transport = client.transport(&endpoint, &reference);
        let attempt = Session::open(transport, &endpoint, &reference, credentials).await;
        let pulled = match attempt {
            Ok(mut session) => {
                progress.total.store(0, Ordering::Relaxed);
                progress.done.store(0, Ordering::Relaxed);
                session.progress = Some(progress);
                pull_into(&mut session, store, &reference, scratch.path()).await
            }
            Err(e) => Err(e),
        };
        match pulled {
            Ok(image) => return Ok(image),
            Err(e) => {
                if endpoint.mirror {
                    tracing::info!(image, mirror = %endpoint.host, error = %e, "mirror failed, trying the next endpoint");
                }
                failure = Some(e);
            }
        }
    }
    Err(error(failure.unwrap_or(Failure::NotFound(reference.to_string()))))
}

async fn pull_into(
    session: &mut Session<'_>,
    store: &ImageStore,
    reference: &Reference,
    scratch: &Path,
) -> Result<Image, Failure> {
    let wanted = reference.digest.clone().or_else(|| reference.tag.clone()).unwrap_or_default();
    let (top_digest, fetched) = session.manifest(&wanted, reference.digest.as_deref()).await?;
    let (config, layers) = match fetched {
        Fetched::Image { config, layers } => (config, layers),
        Fetched::Index(entries) => {
            let entry = manifest::choose(&entries, &manifest::host_platform())
                .ok_or(Failure::NoPlatform)?;
            match session.manifest(&entry.digest, Some(&entry.digest)).await?.1 {
                Fetched::Image { config, layers } => (config, layers),
                Fetched::Index(_) => {
                    return Err(ManifestError::Invalid("an index inside an index".into()).into());
                }
            }
        }
    };
    // zstd, and Windows' foreign layers that no registry serves.
    let unsupported = ["zstd", "foreign", "nondistributable"];
    if let Some(layer) =
        layers.iter().find(|l| unsupported.iter().any(|u| l.media_type.contains(u)))
    {
        return Err(Failure::LayerType(layer.media_type.clone()));
    }
    if config.size > MAX_UNSIZED_BLOB {
        return Err(Failure::TooLarge { digest: config.digest.clone(), size: MAX_UNSIZED_BLOB });
    }
    if let Some(progress) = session.progress {
        let missing = layers.iter().filter(|l| !store.has_layer(&l.digest)).map(|l| l.size);
        progress.total.store(config.size + missing.sum::<u64>(), Ordering::Relaxed);
    }
    let config_file = scratch.join("config");
    session.blob(&config, &config_file).await?;
    let mut layer_files = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let file = scratch.join(format!("layer-{i}"));
        if !store.has_layer(&layer.digest) {
            session.blob(layer, &file).await?;
        }
        layer_files.push(file);
    }
    let names = match (&reference.tag, &reference.digest) {
        (Some(_), None) => vec![reference.to_string()],
        _ => Vec::new(),
    };
    let repo_digest = format!("{}@{top_digest}", reference.name());
    let store = store.clone();
    let known: Vec<(String, u64)> = layers.iter().map(|l| (l.digest.clone(), l.size)).collect();
    tokio::task::spawn_blocking(move || {
        let blobs = Blobs {
            names,
            repo_digest: Some(repo_digest),
            config: &config_file,
            layers: layer_files
                .iter()
                .map(PathBuf::as_path)
                .zip(known.into_iter().map(Some))
                .collect(),
        };
        store.add(&blobs)
    })
    .await
    .map_err(|e| Failure::Io { path: PathBuf::from("unpack"), source: std::io::Error::other(e) })?
    .map_err(Failure::from)
}

/// The most a blob whose descriptor gives no size may hold.
const MAX_UNSIZED_BLOB: u64 = 16 << 20;

/// A URL for a message: its query may hold a blob store's signature.
fn without_query(url: &str) -> String {
    url.split('?').next().unwrap_or_default().to_string()
}

/// Whether plain HTTP is allowed: a registry on this host.
fn is_loopback(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(n, _)| n);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One pull's conversation with a registry: its base URL and the authorization that works.
struct Session<'a> {
    transport: &'a Transport,
    base: String,
    repository: String,
    reference: String,
    /// What to answer a 401 with, in order: each credential, or only anonymity when there
    /// is none (a public repository still wants a token).
    attempts: Vec<Option<Credential>>,
    /// The next attempt to try.
    next: usize,
    /// The attempt the current authorization came from.
    current: Option<usize>,
    /// An attempt that worked, to renew with when its token expires.
    renew: Option<usize>,
    authorization: Option<String>,
    /// Where downloaded bytes are counted.
    progress: Option<&'a Progress>,
}

impl<'a> Session<'a> {
    /// A session with `endpoint`; finds the registry's scheme when the endpoint does not say
    /// it (HTTPS, or HTTP on loopback when TLS fails).
    async fn open(
        transport: &'a Transport,
        endpoint: &Endpoint,
        reference: &Reference,
        credentials: Vec<Credential>,
    ) -> Result<Session<'a>, Failure> {
        let host = endpoint.host.as_str();
        let attempts = if credentials.is_empty() {
            vec![None]
        } else {
            credentials.into_iter().map(Some).collect()
        };
        let mut session = Session {
            transport,
            base: format!("{}://{host}{}", endpoint.scheme.unwrap_or("https"), endpoint.prefix),
            repository: reference.repository.clone(),
            reference: reference.to_string(),
            attempts,
            next: 0,
            current: None,
            renew: None,
            authorization: None,
            progress: None,
        };
        if endpoint.scheme.is_some() {
            return Ok(session);
        }
        match transport.get(&format!("{}/v2/", session.base), &[], None).await {
            Ok(_) => {}
            Err(TransportError::Tls { .. } | TransportError::Http { .. }) if is_loopback(host) => {
                session.base = format!("http://{host}");
            }
            Err(e) => return Err(e.into()),
        }
        Ok(session)
    }

    /// GETs `path` under `/v2/<repository>/`, answering the registry's challenges.
    async fn get(&mut self, path: &str, accept: &[(&str, &str)]) -> Result<Response, Failure> {
        let url = format!("{}/v2/{}/{path}", self.base, self.repository);
        loop {
            let response = self.transport.get(&url, accept, self.authorization.as_deref()).await?;
            if response.status != hyper::StatusCode::UNAUTHORIZED {
                if self.current.is_some() {
                    self.renew = self.current;
                }
                return Ok(response);
            }
            let index = self.renew.take().unwrap_or_else(|| {
                self.next += 1;
                self.next - 1
            });
            let Some(attempt) = self.attempts.get(index).cloned() else {
                return Err(Failure::Denied {
                    reference: self.reference.clone(),
                    status: response.status.to_string(),
                });
            };
            self.current = Some(index);
            let challenge = response.header("www-authenticate").and_then(auth::parse_challenge);
            self.authorization = match (challenge, attempt) {
                (Some(Challenge::Bearer { realm, service, scope }), credential) => {
                    self.token(&realm, service.as_deref(), scope.as_deref(), credential.as_ref())
                        .await?
                }
                (Some(Challenge::Basic), Some(credential)) => Some(auth::basic(&credential)),
                _ => None,
            };
        }
    }

    /// A bearer token from the registry's token endpoint; `None` when it refuses this
    /// credential (the next one is tried).
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
        credential: Option<&Credential>,
    ) -> Result<Option<String>, Failure> {
        let url = auth::token_url(realm, service, scope, &self.repository);
        let basic = credential.map(auth::basic);
        let answer = self.transport.get(&url, &[], basic.as_deref()).await?;
        if matches!(answer.status, hyper::StatusCode::UNAUTHORIZED | hyper::StatusCode::FORBIDDEN) {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(Failure::Status {
                url: without_query(&answer.url),
                status: answer.status.to_string(),
            });
        }
        let token =
            auth::token_of(&answer.bytes(1 << 20).await?).ok_or_else(|| Failure::Denied {
                reference: self.reference.clone(),
                status: format!("no token in the answer of {realm}"),
            })?;
        Ok(Some(format!("Bearer {token}")))
    }

    /// The manifest `wanted` (a tag or digest) and its digest, checked against `expected`.
    async fn manifest(
        &mut self,
        wanted: &str,
        expected: Option<&str>,
    ) -> Result<(String, Fetched), Failure> {
        let response =
            self.get(&format!("manifests/{wanted}"), &[("accept", manifest::ACCEPT)]).await?;
        if response.status == hyper::StatusCode::NOT_FOUND {
            return Err(Failure::NotFound(self.reference.clone()));
        }
        if !response.status.is_success() {
            return Err(Failure::Status {
                url: without_query(&response.url),
                status: response.status.to_string(),
            });
        }
        let content_type = response.header("content-type").unwrap_or_default().to_string();
        let body = response.bytes(manifest::MAX_MANIFEST_BYTES).await?;
        let digest = super::sha256_hex(&body);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(Failure::DigestMismatch { expected: expected.into(), actual: digest });
        }
        Ok((digest, manifest::parse(&body, &content_type)?))
    }

    /// Downloads the blob `descriptor` names into `file`, checking its digest.
    async fn blob(&mut self, descriptor: &Descriptor, file: &Path) -> Result<(), Failure> {
        let mut response = self.get(&format!("blobs/{}", descriptor.digest), &[]).await?;
        if response.status == hyper::StatusCode::NOT_FOUND {
            return Err(Failure::MissingBlob(descriptor.digest.clone()));
        }
        if !response.status.is_success() {
            return Err(Failure::Status {
                url: without_query(&response.url),
                status: response.status.to_string(),
            });
        }
        let io = |source| Failure::Io { path: file.to_path_buf(), source };
        let mut out = tokio::fs::File::create(file).await.map_err(io)?;
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        // A registry sends what the descriptor says, no more (a config is small).
        let limit = if descriptor.size > 0 { descriptor.size } else { MAX_UNSIZED_BLOB };
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await? {
            written += chunk.len() as u64;
            if written > limit {
                return Err(Failure::TooLarge { digest: descriptor.digest.clone(), size: limit });
            }
            context.update(&chunk);
            out.write_all(&chunk).await.map_err(io)?;
            if let Some(progress) = self.progress {
                progress.done.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }
        out.flush().await.map_err(io)?;
        let actual = super::digest_string(context.finish().as_ref());
        if actual != descriptor.digest {
            return Err(Failure::DigestMismatch { expected: descriptor.digest.clone(), actual });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback() {
        for host in ["localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "localhost"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["registry.example.com", "10.0.0.1:5000", "localhost.example.com:5000"] {
            assert!(!is_loopback(host), "{host}");
        }
        assert_eq!(config::default_host("docker.io"), "registry-1.docker.io");
        assert_eq!(config::default_host("quay.io"), "quay.io");
    }

    #[test]
    fn messages_read_as_containerds() {
        let e = PullError {
            reference: "127.0.0.1:9/app:1".into(),
            failure: Failure::NotFound("127.0.0.1:9/app:1".into()),
        };
        assert_eq!(
            e.to_string(),
            r#"failed to pull and unpack image "127.0.0.1:9/app:1": failed to resolve reference "127.0.0.1:9/app:1": 127.0.0.1:9/app:1: not found"#
        );
    }
}
