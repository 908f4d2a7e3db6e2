//! The Kubernetes API server of krust.
//!
//! Request flow: [`http::serve`] terminates TLS and reads the client's identity from its
//! certificate; [`http`]'s handler routes the request to [`discovery`] or to the generic
//! [`registry`], which applies the resource's strategy and reads from the [`watchcache`] or
//! writes to the store. [`lifecycle`] holds the server's own background work (namespace
//! finalization, compaction, bootstrap objects).
//!
//! This crate is the only one that speaks HTTP; it never reaches into a store backend's
//! internals (only the `Store` trait).

pub mod admission;
pub mod authn;
pub mod authz;
pub mod conversion_webhook;
pub mod discovery;
pub mod health;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod pki;
pub mod registry;
pub mod shutdown;
pub mod watchcache;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use krust_api::Catalog;
use krust_store::Store;
use krust_store::embedded::EmbeddedStore;
use krust_store::etcd::EtcdStore;
use tokio::net::TcpListener;

use crate::registry::Registry;

/// How the server is started.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where certificates, the kubeconfig and the embedded store live.
    pub data_dir: PathBuf,
    /// The address to listen on.
    pub bind_address: IpAddr,
    /// The port to listen on (0: any free port).
    pub port: u16,
    /// etcd endpoints; empty for the embedded store.
    pub datastore_endpoints: Vec<String>,
    /// How often history older than one interval is compacted.
    pub compaction_interval: Duration,
    /// Where service cluster IPs and node ports come from.
    pub service_ranges: registry::ServiceRanges,
    /// How long to keep trying to reach etcd at start before giving up.
    pub datastore_connect_timeout: Duration,
    /// The embedded store's page cache, in bytes.
    pub embedded_cache_bytes: usize,
    /// What the binary knows of its build, for `/version`.
    pub build: discovery::BuildInfo,
    /// Time and number limits of connections.
    pub connections: http::serve::ConnectionLimits,
    /// Limits of requests in flight.
    pub inflight: http::inflight::Limits,
    /// What each watch may queue for its client, and how long it lasts.
    pub watch_limits: registry::WatchLimits,
    /// The most bytes of items one list response carries (`--max-list-response-bytes`;
    /// `None`: no bound, as upstream).
    pub max_list_response_bytes: Option<usize>,
    /// How much history the watch cache keeps.
    pub history_limits: watchcache::HistoryLimits,
    /// The static token file (`--token-auth-file`), if any.
    pub token_auth_file: Option<PathBuf>,
    /// The CA that node agents' serving certificates must chain to
    /// (`--kubelet-certificate-authority`); unchecked when `None`, as upstream's default.
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Whether requests without credentials run as `system:anonymous` (else they are 401).
    pub anonymous_auth: bool,
    /// The issuer of service-account tokens, also the API server's audience.
    pub service_account_issuer: String,
    /// The admission plugins enabled (`--enable-admission-plugins`,
    /// `--disable-admission-plugins`).
    pub admission: krust_admission::Selection,
    /// The configurations of the admission plugins that take one
    /// (`--admission-control-config-file`).
    pub admission_configs: krust_admission::PluginConfigs,
    /// The address pods reach the API server at (`--advertise-address`): the endpoint of the
    /// `kubernetes` Service, also in the serving certificate. `None` writes no endpoint (a
    /// server on loopback only).
    pub advertise_ip: Option<IpAddr>,
    /// The node this host's agent runs as: its kubeconfig (`agent.kubeconfig`) is written
    /// before the server serves, so whoever sees the server ready can start the agent.
    pub node_name: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/krust"),
            bind_address: IpAddr::from([0, 0, 0, 0]),
            port: 6443,
            datastore_endpoints: Vec::new(),
            compaction_interval: Duration::from_secs(300),
            service_ranges: registry::ServiceRanges::default(),
            datastore_connect_timeout: Duration::from_secs(60),
            embedded_cache_bytes: krust_store::embedded::DEFAULT_CACHE_SIZE,
            build: discovery::BuildInfo::default(),
            connections: http::serve::ConnectionLimits::default(),
            inflight: http::inflight::Limits::default(),
            watch_limits: registry::WatchLimits::default(),
            max_list_response_bytes: None,
            history_limits: watchcache::HistoryLimits::default(),
            token_auth_file: None,
            kubelet_certificate_authority: None,
            anonymous_auth: true,
            service_account_issuer: krust_auth::authn::service_account::DEFAULT_ISSUER.to_string(),
            admission: krust_admission::Selection::default(),
            admission_configs: krust_admission::PluginConfigs::default(),
            advertise_ip: None,
            node_name: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The node agents' CA (`--kubelet-certificate-authority`) could not be used.
    #[error("cannot use the kubelet certificate authority {path:?}: {message}")]
    KubeletCa {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Certificates could not be made or read.
    #[error("cannot prepare certificates")]
    Pki(#[from] pki::PkiError),
    /// TLS could not be configured.
    #[error("cannot configure TLS")]
    Tls(#[from] http::serve::TlsError),
    /// The store could not be opened.
    #[error("cannot open the store")]
    Store(#[from] krust_store::StoreError),
    /// The address could not be bound.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// etcd did not answer within the start-up timeout.
    #[error("etcd at {endpoints} did not answer within {waited:?}")]
    DatastoreUnreachable {
        /// The endpoints tried.
        endpoints: String,
        /// How long the server waited.
        waited: Duration,
        /// The last error.
        #[source]
        source: krust_store::StoreError,
    },
    /// The data dir could not be made private.
    #[error("cannot make {path} private to its owner")]
    Permissions {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The data dir could not be made.
    #[error("cannot create data dir {path}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The token file could not be read or parsed.
    #[error("cannot read the token file {path}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The service-account key is unusable.
    #[error("cannot use the service-account key")]
    ServiceAccountKey(#[from] krust_auth::authn::service_account::TokenError),
    /// Bootstrap objects could not be written.
    #[error("cannot create bootstrap objects: {0}")]
    Bootstrap(krust_api::StatusError),
}

/// Shared state of a running API server.
pub struct ApiServer {
    /// The generic registry.
    pub registry: Registry,
    /// Authorization: the RBAC policy and the authorizer over it.
    pub authz: authz::Authz,
    /// `host:port` clients reach the server at.
    pub advertise_address: String,
    /// The health checks.
    pub health: health::Health,
    /// What the binary knows of its build.
    pub build: discovery::BuildInfo,
    /// The requests in flight, and their limits.
    pub inflight: Arc<http::inflight::Inflight>,
    /// The server's metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// How long a request's body may take to arrive.
    pub request_body_timeout: Duration,
    /// How requests are authenticated.
    pub authn: authn::Authentication,
    /// Decides what authenticated requests may do (`system:masters` bypasses it); swapped for
    /// RBAC when it lands.
    pub authorizer: Arc<dyn krust_auth::Authorizer>,
    /// The shutdown signal, and the connections still open.
    pub shutdown: shutdown::Shutdown,
    /// How `pods/log` reaches node agents.
    pub node_client: http::node_client::NodeClient,
    /// The OpenAPI documents built so far.
    pub openapi: discovery::OpenApi,
}

/// A started server.
pub struct RunningServer {
    /// The address it listens on.
    pub address: SocketAddr,
    /// Its shared state.
    pub api: Arc<ApiServer>,
    /// The path of the admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The path of the controller manager's kubeconfig (`system:kube-controller-manager`).
    pub controller_manager_kubeconfig: PathBuf,
    /// The path of the scheduler's kubeconfig (`system:kube-scheduler`).
    pub scheduler_kubeconfig: PathBuf,
    /// The path of the built-in ingress controller's kubeconfig (`system:krust-ingress`).
    pub ingress_kubeconfig: PathBuf,
    /// The path of the node agent's kubeconfig (`system:node:NAME`), when the config names
    /// the node.
    pub node_kubeconfig: Option<PathBuf>,
    /// The address this server holds an endpoint lease of `default/kubernetes` for.
    endpoint_ip: Option<IpAddr>,
    /// The URL clients on this host reach the server at (as the kubeconfigs name it).
    pub server_url: String,
}

impl RunningServer {
    /// Stops serving: `/readyz` fails, no connection is accepted, watches end cleanly and
    /// open connections close once their requests are answered; waits for them at most
    /// `grace`. Every write answered before is durable already. Returns how many connections
    /// were still open at the end of the grace period.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.api.health.shutting_down();
        // The `kubernetes` Service stops sending pods here.
        if let Some(ip) = self.endpoint_ip {
            let port = self.address.port();
            let drop =
                lifecycle::kubernetes_endpoints::reconcile(&self.api.registry, ip, port, false);
            if let Err(e) = drop.await {
                tracing::warn!(error = %e, "cannot drop the API server's endpoint lease");
            }
        }
        self.api.registry.close_watches();
        self.api.shutdown.begin();
        let left = self.api.shutdown.drained(grace).await;
        if let Err(e) = self.api.registry.store().close().await {
            tracing::warn!(error = %e, "the store did not close cleanly");
        }
        left
    }
}

/// Opens the store, fills the caches, makes certificates and starts serving.
///
/// Everything under the data dir is private to its owner: folders 0700, keys, kubeconfigs and
/// the store file 0600 (they hold the cluster CA's key and every Secret).
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    private_dir(&config.data_dir)?;
    let backend: Arc<dyn Store> = if config.datastore_endpoints.is_empty() {
        let dir = config.data_dir.join("db");
        let mut options = krust_store::embedded::EmbeddedOptions::default();
        options.cache_size = config.embedded_cache_bytes;
        let store = EmbeddedStore::open_with(&dir, options)?;
        private_tree(&dir)?;
        Arc::new(store)
    } else {
        Arc::new(connect_etcd(&config.datastore_endpoints, config.datastore_connect_timeout).await?)
    };
    let catalog = Arc::new(Catalog::builtin());
    let inflight = Arc::new(http::inflight::Inflight::new(config.inflight));
    let metrics = Arc::new(metrics::Metrics::new(Arc::clone(&inflight), PathBuf::from("/proc")));
    let store: Arc<dyn Store> =
        Arc::new(metrics::TimedStore::new(backend, Arc::clone(&metrics), &catalog));
    let address = SocketAddr::new(config.bind_address, config.port);
    let listener = TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen { address, source })?;
    let address = listener.local_addr().map_err(|source| StartError::Listen { address, source })?;
    let host = if config.bind_address.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        config.bind_address
    };
    let advertise_address = SocketAddr::new(host, address.port()).to_string();
    let server_url = format!("https://{advertise_address}");
    let extra_names: Vec<IpAddr> =
        (config.service_ranges.first().into_iter()).chain(config.advertise_ip).collect();
    let pki = pki::ensure(&config.data_dir, config.bind_address, &extra_names, &server_url)?;
    let node_kubeconfig = match &config.node_name {
        Some(node) => Some(pki::node_kubeconfig(&config.data_dir, &server_url, node)?),
        None => None,
    };
    let kubelet_ca = match &config.kubelet_certificate_authority {
        None => None,
        Some(path) => Some(std::fs::read(path).map_err(|source| StartError::KubeletCa {
            path: path.clone(),
            message: source.to_string(),
        })?),
    };
    let node_client = http::node_client::NodeClient::new(
        &pki.kubelet_client_cert,
        &pki.kubelet_client_key,
        kubelet_ca.as_deref(),
    )
    .map_err(|message| StartError::KubeletCa {
        path: config.kubelet_certificate_authority.clone().unwrap_or_default(),
        message,
    })?;
    let tls = http::serve::tls_config(&pki)?;
    let token_file = match &config.token_auth_file {
        None => None,
        Some(path) => {
            let err = |source: Box<dyn std::error::Error + Send + Sync>| StartError::TokenFile {
                path: path.clone(),
                source,
            };
            let text = std::fs::read_to_string(path).map_err(|e| err(Box::new(e)))?;
            let file = krust_auth::authn::token_file::TokenFile::parse(&text)
                .map_err(|e| err(Box::new(e)))?;
            tracing::info!(path = %path.display(), tokens = file.len(), "static tokens read");
            Some(file)
        }
    };
    let sa_key = pki::service_account_key(&config.data_dir)?;
    let authn = authn::Authentication {
        token_file,
        tokens: Arc::new(authn::ServiceAccountTokens::new(
            &sa_key,
            &config.service_account_issuer,
        )?),
        anonymous: config.anonymous_auth,
    };

    let health = health::Health::new(Arc::clone(&store));
    let mut registry = Registry::new_with(
        Arc::clone(&store),
        catalog,
        config.service_ranges.clone(),
        config.history_limits,
    )
    .await?
    .with_watch_limits(config.watch_limits)
    .with_list_limit(config.max_list_response_bytes);
    let authz = authz::Authz::new(registry.cache());
    authz.install(&mut registry);
    authn.install(&mut registry);
    let unimplemented = config.admission.unimplemented();
    if !unimplemented.is_empty() {
        tracing::warn!(plugins = ?unimplemented, "admission plugins enabled but not implemented yet");
    }
    registry.set_admission(admission::Admission::configured(
        &config.admission,
        &config.admission_configs,
        authz.admission_authorizer(),
    ));
    let authorizer = authz.authorizer();
    let api = Arc::new(ApiServer {
        registry,
        authz,
        advertise_address,
        health,
        build: config.build,
        inflight,
        metrics,
        request_body_timeout: config.connections.request_body,
        authn,
        authorizer,
        shutdown: shutdown::Shutdown::default(),
        node_client,
        openapi: discovery::OpenApi::default(),
    });
    lifecycle::bootstrap(&api.registry, config.service_ranges, address.port())
        .await
        .map_err(StartError::Bootstrap)?;
    let endpoint_ip = config.advertise_ip.filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    if let Some(ip) = endpoint_ip {
        lifecycle::kubernetes_endpoints::reconcile(&api.registry, ip, address.port(), true)
            .await
            .map_err(StartError::Bootstrap)?;
        tokio::spawn(lifecycle::kubernetes_endpoints::run(Arc::clone(&api), ip, address.port()));
    }
    lifecycle::rbac::bootstrap_policy(&api.registry).await.map_err(StartError::Bootstrap)?;
    lifecycle::priority::bootstrap(&api.registry).await.map_err(StartError::Bootstrap)?;
    lifecycle::custom_resources::serve_stored(&api.registry)
        .await
        .map_err(StartError::Bootstrap)?;
    tokio::spawn(lifecycle::custom_resources::run(Arc::clone(&api)));
    tokio::spawn(lifecycle::rbac::run_aggregation(Arc::clone(&api)));
    tokio::spawn(lifecycle::resource_quota::run(Arc::clone(&api)));
    tokio::spawn(lifecycle::csr_signer::run(Arc::clone(&api), config.data_dir.clone()));
    tokio::spawn(lifecycle::compaction::run(store, config.compaction_interval));
    tokio::spawn(http::serve::serve(listener, tls, Arc::clone(&api), config.connections));
    Ok(RunningServer {
        address,
        api,
        kubeconfig: config.data_dir.join("admin.kubeconfig"),
        controller_manager_kubeconfig: config.data_dir.join(pki::CONTROLLER_MANAGER_KUBECONFIG),
        scheduler_kubeconfig: config.data_dir.join(pki::SCHEDULER_KUBECONFIG),
        ingress_kubeconfig: config.data_dir.join(pki::INGRESS_KUBECONFIG),
        node_kubeconfig,
        endpoint_ip,
        server_url,
    })
}

/// Connects to etcd, waiting for it as kube-apiserver does: a server started together with
/// its etcd must not lose the race. Retries with back-off (0.5 s doubling to 5 s) until
/// `timeout`, logging that it waits; then fails with the last error.
async fn connect_etcd(endpoints: &[String], timeout: Duration) -> Result<EtcdStore, StartError> {
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        match EtcdStore::connect(endpoints).await {
            Ok(store) => return Ok(store),
            Err(source) if started.elapsed() >= timeout => {
                return Err(StartError::DatastoreUnreachable {
                    endpoints: endpoints.join(","),
                    waited: started.elapsed(),
                    source,
                });
            }
            Err(e) => {
                let pause = delay.min(timeout.saturating_sub(started.elapsed()));
                tracing::warn!(
                    endpoints = %endpoints.join(","),
                    error = %e,
                    retry_in = ?pause,
                    "waiting for etcd"
                );
                tokio::time::sleep(pause).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Creates `dir` if needed and makes it private to its owner (0700).
fn private_dir(dir: &std::path::Path) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)
        .map_err(|source| StartError::DataDir { path: dir.to_owned(), source })?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|source| StartError::Permissions { path: dir.to_owned(), source })
}

/// Makes `dir` (0700) and every file in it (0600) private to its owner.
fn private_tree(dir: &std::path::Path) -> Result<(), StartError> {
    use std::os::unix::fs::PermissionsExt;
    private_dir(dir)?;
    let entries = std::fs::read_dir(dir)
        .map_err(|source| StartError::Permissions { path: dir.to_owned(), source })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            private_tree(&path)?;
        } else {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(|source| StartError::Permissions { path, source })?;
        }
    }
    Ok(())
}
