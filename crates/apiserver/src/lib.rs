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

pub mod discovery;
pub mod http;
pub mod lifecycle;
pub mod pki;
pub mod registry;
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
    /// What each watch may queue for its client, and how long it lasts.
    pub watch_limits: registry::WatchLimits,
    /// How much history the watch cache keeps.
    pub history_limits: watchcache::HistoryLimits,
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
            watch_limits: registry::WatchLimits::default(),
            history_limits: watchcache::HistoryLimits::default(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
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
    /// The data dir could not be made.
    #[error("cannot create data dir {path}")]
    DataDir {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Bootstrap objects could not be written.
    #[error("cannot create bootstrap objects: {0}")]
    Bootstrap(krust_api::StatusError),
}

/// Shared state of a running API server.
pub struct ApiServer {
    /// The generic registry.
    pub registry: Registry,
    /// `host:port` clients reach the server at.
    pub advertise_address: String,
}

/// A started server.
pub struct RunningServer {
    /// The address it listens on.
    pub address: SocketAddr,
    /// Its shared state.
    pub api: Arc<ApiServer>,
    /// The path of the admin kubeconfig.
    pub kubeconfig: PathBuf,
}

/// Opens the store, fills the caches, makes certificates and starts serving.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|source| StartError::DataDir { path: config.data_dir.clone(), source })?;
    let store: Arc<dyn Store> = if config.datastore_endpoints.is_empty() {
        Arc::new(EmbeddedStore::open(&config.data_dir.join("db"))?)
    } else {
        Arc::new(EtcdStore::connect(&config.datastore_endpoints).await?)
    };
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
    let pki = pki::ensure(
        &config.data_dir,
        config.bind_address,
        &format!("https://{advertise_address}"),
    )?;
    let tls = http::serve::tls_config(&pki)?;

    let catalog = Arc::new(Catalog::builtin());
    let registry = Registry::new_with(
        Arc::clone(&store),
        catalog,
        config.service_ranges,
        config.history_limits,
    )
    .await?
    .with_watch_limits(config.watch_limits);
    let api = Arc::new(ApiServer { registry, advertise_address });
    lifecycle::bootstrap(&api.registry, config.service_ranges, address.port())
        .await
        .map_err(StartError::Bootstrap)?;
    tokio::spawn(lifecycle::namespace::run(Arc::clone(&api)));
    tokio::spawn(lifecycle::compaction::run(store, config.compaction_interval));
    tokio::spawn(http::serve::serve(listener, tls, Arc::clone(&api)));
    Ok(RunningServer { address, api, kubeconfig: config.data_dir.join("admin.kubeconfig") })
}
