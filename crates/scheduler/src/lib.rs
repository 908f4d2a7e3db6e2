//! The scheduler: upstream's kube-scheduler as an API client. It runs inside `krust server`
//! and on its own (`krust scheduler --kubeconfig FILE`), the same way: a kube-rs client of the
//! API server, never the server's store or registry, under leader election on the
//! `kube-system/kube-scheduler` Lease.
//!
//! `framework/` is the plugin interface and what a cycle sees; `plugins/` holds one module per
//! plugin, pure and table-tested; `cycle.rs` runs one pod through a profile's plugins;
//! `cache.rs` and `queue.rs` keep the cluster's nodes and pods and the pods waiting;
//! `scheduler.rs` feeds them from watches and binds through `pods/binding`; `workloads.rs`
//! keeps the selectors of services and controllers for default spreading.

pub mod binding;
pub mod cache;
pub mod cycle;
pub mod error;
pub mod explain;
pub mod framework;
pub mod plugins;
pub mod preemption;
pub mod profile;
pub mod queue;
pub mod scheduler;
pub mod workloads;

use krust_client::LeaderElection;
use krust_client::leader::Timing;
use kube::Config;

pub use error::Error;
pub use profile::Configuration;

/// The lease schedulers contend for (upstream's name), in `kube-system`.
pub const LEASE: &str = "kube-scheduler";

/// How the scheduler runs.
#[derive(Debug, Default)]
pub struct Options {
    /// This instance's name in the lease.
    pub identity: String,
    /// Its configuration (upstream's `KubeSchedulerConfiguration`); the default profile when
    /// empty.
    pub configuration: Configuration,
}

/// Runs the scheduler until `shutdown` completes: waits for the lease, schedules while it
/// holds it, and starts over (contending again, with fresh caches) when it is lost. At
/// shutdown the lease is released, so that another instance takes over at once.
pub async fn run(
    config: Config,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    // A configuration that cannot be used stops the start, not a later leadership.
    options.configuration.profiles()?;
    let client = krust_client::client(config).map_err(Error::Client)?;
    let mut election = LeaderElection::new(
        client.clone(),
        "kube-system",
        LEASE,
        options.identity.clone(),
        Timing::default(),
    );
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = election.acquire() => {}
            () = &mut shutdown => return Ok(()),
        }
        tracing::info!(identity = election.identity(), "leading: the scheduler starts");
        let profiles = options.configuration.profiles()?;
        let scheduler = scheduler::Scheduler::new(client.clone(), profiles);
        tokio::select! {
            () = scheduler.run() => {
                tracing::warn!("the scheduler's watches ended");
            }
            () = election.hold() => {
                tracing::warn!("lost the lease: the scheduler stops");
            }
            () = &mut shutdown => {
                election.release().await;
                return Ok(());
            }
        }
    }
}

/// `krust explain-pending`: reads the nodes and pods through `client`, and says node by node
/// why the pod `namespace/name` does not fit and what would let it (see [`explain`]).
/// The namespace is the configuration's default when `namespace` is `None`.
pub async fn explain_pending(
    config: Config,
    namespace: Option<&str>,
    name: &str,
    configuration: &Configuration,
) -> Result<String, ExplainError> {
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Api, ListParams};

    let namespace = namespace.unwrap_or(&config.default_namespace).to_string();
    let namespace = namespace.as_str();
    let client = krust_client::client(config).map_err(ExplainError::Read)?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod = pods.get(name).await.map_err(ExplainError::Read)?;
    let scheduler = pod
        .spec
        .as_ref()
        .and_then(|s| s.scheduler_name.clone())
        .unwrap_or_else(|| profile::DEFAULT_SCHEDULER.to_string());
    let profile = configuration
        .profiles()?
        .into_iter()
        .find(|p| p.scheduler_name == scheduler)
        .ok_or_else(|| ExplainError::NoProfile(scheduler.clone()))?;
    let mut cache = cache::Cache::default();
    let nodes: Api<Node> = Api::all(client.clone());
    for node in nodes.list(&ListParams::default()).await.map_err(ExplainError::Read)? {
        cache.set_node(node);
    }
    let all: Api<Pod> = Api::all(client);
    for placed in all
        .list(&ListParams::default().fields("spec.nodeName!="))
        .await
        .map_err(ExplainError::Read)?
    {
        let finished = placed
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if !finished && placed.metadata.uid != pod.metadata.uid {
            cache.add_pod(&placed);
        }
    }
    let key = format!("{namespace}/{name}");
    let info = framework::PodInfo::new(std::sync::Arc::new(pod));
    let verdicts = explain::explain(&profile, &info, &cache.snapshot());
    Ok(explain::render(&key, &verdicts))
}

/// Why a pending pod could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The API could not be read.
    #[error("cannot read the cluster")]
    Read(#[source] kube::Error),
    /// No profile schedules the pod.
    #[error("no profile of this configuration has schedulerName {0:?}")]
    NoProfile(String),
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] profile::ConfigError),
}
