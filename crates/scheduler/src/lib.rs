//! The scheduler: upstream's kube-scheduler as an API client. It runs inside `krust server`
//! and on its own (`krust scheduler --kubeconfig FILE`), the same way: a kube-rs client of the
//! API server, never the server's store or registry, under leader election on the
//! `kube-system/kube-scheduler` Lease.
//!
//! `framework/` is the plugin interface and what a cycle sees; `plugins/` holds one module per
//! plugin, pure and table-tested; `cycle.rs` runs one pod through a profile's plugins;
//! `cache.rs` and `queue.rs` keep the cluster's nodes and pods and the pods waiting;
//! `scheduler.rs` feeds them from watches and binds through `pods/binding`.

pub mod cache;
pub mod cycle;
pub mod error;
pub mod framework;
pub mod plugins;
pub mod preemption;
pub mod profile;
pub mod queue;
pub mod scheduler;

use krust_client::LeaderElection;
use krust_client::leader::Timing;
use kube::{Client, Config};

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
    let client = Client::try_from(config).map_err(Error::Client)?;
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
