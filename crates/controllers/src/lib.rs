//! The controllers: upstream's kube-controller-manager as API clients. They run inside
//! `krust server` and on their own (`krust controllers --kubeconfig FILE`), the same way: a
//! kube-rs client of the API server, never the server's store or registry.
//!
//! One instance acts at a time, the holder of the `kube-system/kube-controller-manager`
//! Lease. Shared caches are filled with the controller manager's own credential; each
//! controller writes as its own service account (`kube-system/NAME`, bound to
//! `system:controller:NAME`). A controller's decisions are plain functions of cached objects,
//! unit-tested in its module; the module's `run` wires them to caches and writes.

pub mod cronjob;
pub mod csr_approving;
pub mod csr_cleaner;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoint_slice;
pub mod endpoints;
pub mod endpointslice_mirroring;
pub mod error;
pub mod garbage_collector;
pub mod job;
pub mod local_path;
pub mod namespace;
pub mod node_lifecycle;
pub mod persistent_volume;
pub mod pod_gc;
pub mod replicaset;
pub mod replication_controller;
pub mod root_ca;
pub mod runtime;
pub mod service_account;
pub mod service_lb;
pub mod statefulset;
pub mod ttl_after_finished;
pub mod volume_protection;

use k8s_openapi::api::apps::v1::{
    ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    Endpoints, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
    ReplicationController, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::{Api, Config};

pub use error::Error;
use krust_client::leader::Timing;
use krust_client::{Informer, LeaderElection};
use runtime::Credentials;

/// The lease the controller managers contend for (upstream's name).
pub const LEASE: &str = "kube-controller-manager";

/// How the controllers run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The CA bundle published in every namespace as `kube-root-ca.crt` (PEM); the
    /// kubeconfig's CA when read by [`config_from_kubeconfig`].
    pub root_ca: String,
    /// This instance's name in the lease.
    pub identity: String,
    /// Finished pods kept before the pod garbage collector deletes the oldest (upstream's
    /// `--terminated-pod-gc-threshold`).
    pub terminated_pod_gc_threshold: usize,
    /// The addresses LoadBalancer Services get one each of; `None` gives them the ready
    /// nodes' addresses.
    pub load_balancer_pool: Option<service_lb::decide::Pool>,
    /// The directory on each node that local-path volumes are made in; `None` turns the
    /// local-path provisioner and its default class off.
    pub local_storage_path: Option<String>,
}

/// Runs the controllers until `shutdown` completes: waits for the lease, runs every controller
/// while it holds it, and stops them (to contend again) when it is lost. At shutdown the
/// controllers stop and the lease is released, so that another instance takes over at once.
pub async fn run(
    config: Config,
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), Error> {
    let root = krust_client::client(config.clone()).map_err(Error::Client)?;
    let credentials = Credentials::new(root.clone(), &config).map_err(Error::Client)?;
    let mut election = LeaderElection::new(
        root,
        runtime::credentials::NAMESPACE,
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
        tracing::info!(identity = election.identity(), "leading: controllers start");
        let stopping = tokio::select! {
            result = controllers(&credentials, &options) => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "controllers cannot start yet");
                    tokio::time::sleep(Timing::default().retry_period).await;
                }
                false
            }
            () = election.hold() => {
                tracing::warn!("lost the lease: controllers stop");
                false
            }
            () = &mut shutdown => true,
        };
        if stopping {
            // The controllers' tasks are gone with their future; the lease goes next.
            election.release().await;
            return Ok(());
        }
    }
}

/// Starts every controller and the caches they share, each on a task of its own (so that
/// one busy controller neither starves the others nor the lease's renewals); runs until
/// dropped, which stops them all.
async fn controllers(credentials: &Credentials, options: &Options) -> Result<(), Error> {
    let root = credentials.root().clone();
    // Every controller's credential at once: a slow or failed one delays the start once.
    let mut names = vec![
        namespace::NAME,
        service_account::NAME,
        root_ca::NAME,
        garbage_collector::NAME,
        replicaset::NAME,
        deployment::NAME,
        disruption::NAME,
        node_lifecycle::NAME,
        endpoints::NAME,
        endpoint_slice::NAME,
        endpointslice_mirroring::NAME,
        pod_gc::NAME,
        cronjob::NAME,
        csr_cleaner::NAME,
        replication_controller::NAME,
        job::NAME,
        ttl_after_finished::NAME,
        daemonset::NAME,
        statefulset::NAME,
        service_lb::NAME,
        persistent_volume::NAME,
        volume_protection::claims::NAME,
        volume_protection::volumes::NAME,
    ];
    if options.local_storage_path.is_some() {
        names.push(local_path::NAME);
    }
    let mut clients = runtime::credentials::Clients::mint(credentials, &names).await?;
    let mut namespaces = Informer::<Namespace>::default();
    let mut replica_sets = Informer::<ReplicaSet>::default();
    let mut pods = Informer::<Pod>::default();
    let mut deployments = Informer::<Deployment>::default();
    let mut nodes = Informer::<Node>::default();
    let mut node_leases = Informer::<Lease>::default();
    let mut budgets = Informer::<PodDisruptionBudget>::default();
    let mut services = Informer::<Service>::default();
    let mut endpoints = Informer::<Endpoints>::default();
    let mut endpoint_slices = Informer::<EndpointSlice>::default();
    let mut cronjobs = Informer::<CronJob>::default();
    let mut jobs = Informer::<Job>::default();
    let mut signing_requests = Informer::<CertificateSigningRequest>::default();
    let mut replication_controllers = Informer::<ReplicationController>::default();
    let mut daemon_sets = Informer::<DaemonSet>::default();
    let revisions = Informer::<ControllerRevision>::default();
    let mut stateful_sets = Informer::<StatefulSet>::default();
    let mut claims = Informer::<PersistentVolumeClaim>::default();
    let mut volumes = Informer::<PersistentVolume>::default();
    let mut storage_classes = Informer::<StorageClass>::default();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(namespace::run(clients.take(namespace::NAME)?, &mut namespaces));
    tasks.spawn(service_account::run(
        root.clone(),
        clients.take(service_account::NAME)?,
        &mut namespaces,
    ));
    tasks.spawn(root_ca::run(
        root.clone(),
        clients.take(root_ca::NAME)?,
        &mut namespaces,
        options.root_ca.clone(),
    ));
    tasks.spawn(garbage_collector::run(root.clone(), clients.take(garbage_collector::NAME)?));
    tasks.spawn(replicaset::run(clients.take(replicaset::NAME)?, &mut replica_sets, &mut pods));
    tasks.spawn(deployment::run(
        clients.take(deployment::NAME)?,
        &mut deployments,
        &mut replica_sets,
        &mut pods,
    ));
    tasks.spawn(disruption::run(
        clients.take(disruption::NAME)?,
        &mut budgets,
        &mut pods,
        &mut replica_sets,
        &mut deployments,
    ));
    tasks.spawn(node_lifecycle::run(
        clients.take(node_lifecycle::NAME)?,
        &mut nodes,
        &mut node_leases,
        &mut pods,
    ));
    tasks.spawn(endpoints::run(
        clients.take(endpoints::NAME)?,
        &mut services,
        &mut pods,
        &mut endpoints,
    ));
    tasks.spawn(endpoint_slice::run(
        clients.take(endpoint_slice::NAME)?,
        &mut services,
        &mut pods,
        &mut endpoint_slices,
        &nodes,
    ));
    tasks.spawn(endpointslice_mirroring::run(
        clients.take(endpointslice_mirroring::NAME)?,
        &mut endpoints,
        &mut services,
        &mut endpoint_slices,
    ));
    tasks.spawn(pod_gc::run(
        clients.take(pod_gc::NAME)?,
        &pods,
        &nodes,
        options.terminated_pod_gc_threshold,
    ));
    tasks.spawn(cronjob::run(clients.take(cronjob::NAME)?, &mut cronjobs, &mut jobs));
    // The cleaner and the approver are both the certificate controller's.
    let certificates = clients.take(csr_cleaner::NAME)?;
    tasks.spawn(csr_cleaner::run(certificates.clone(), &mut signing_requests));
    tasks.spawn(csr_approving::run(certificates, &mut signing_requests, &mut nodes));
    tasks.spawn(replication_controller::run(
        clients.take(replication_controller::NAME)?,
        &mut replication_controllers,
        &mut pods,
    ));
    tasks.spawn(job::run(clients.take(job::NAME)?, &mut jobs, &mut pods));
    tasks.spawn(ttl_after_finished::run(clients.take(ttl_after_finished::NAME)?, &mut jobs));
    tasks.spawn(daemonset::run(
        clients.take(daemonset::NAME)?,
        &mut daemon_sets,
        &mut pods,
        &mut nodes,
        &revisions,
    ));
    tasks.spawn(statefulset::run(
        clients.take(statefulset::NAME)?,
        &mut stateful_sets,
        &mut pods,
        &revisions,
    ));
    tasks.spawn(service_lb::run(
        clients.take(service_lb::NAME)?,
        &mut services,
        &mut nodes,
        options.load_balancer_pool.clone(),
    ));
    tasks.spawn(persistent_volume::run(
        clients.take(persistent_volume::NAME)?,
        &mut claims,
        &mut volumes,
        &mut storage_classes,
        &pods,
    ));
    if let Some(path) = &options.local_storage_path {
        tasks.spawn(local_path::run(
            clients.take(local_path::NAME)?,
            &mut claims,
            &mut volumes,
            &storage_classes,
            &nodes,
            path.clone(),
        ));
    }
    tasks.spawn(volume_protection::claims::run(
        clients.take(volume_protection::claims::NAME)?,
        &mut claims,
        &mut pods,
    ));
    tasks.spawn(volume_protection::volumes::run(
        clients.take(volume_protection::volumes::NAME)?,
        &mut volumes,
    ));
    // Every subscriber is taken: the caches may start.
    tasks.spawn(namespaces.run(Api::all(root.clone())));
    tasks.spawn(replica_sets.run(Api::all(root.clone())));
    tasks.spawn(pods.run(Api::all(root.clone())));
    tasks.spawn(deployments.run(Api::all(root.clone())));
    tasks.spawn(nodes.run(Api::all(root.clone())));
    tasks.spawn(budgets.run(Api::all(root.clone())));
    tasks.spawn(services.run(Api::all(root.clone())));
    tasks.spawn(endpoints.run(Api::all(root.clone())));
    tasks.spawn(endpoint_slices.run(Api::all(root.clone())));
    tasks.spawn(cronjobs.run(Api::all(root.clone())));
    tasks.spawn(jobs.run(Api::all(root.clone())));
    tasks.spawn(signing_requests.run(Api::all(root.clone())));
    tasks.spawn(replication_controllers.run(Api::all(root.clone())));
    tasks.spawn(daemon_sets.run(Api::all(root.clone())));
    tasks.spawn(revisions.run(Api::all(root.clone())));
    tasks.spawn(stateful_sets.run(Api::all(root.clone())));
    tasks.spawn(claims.run(Api::all(root.clone())));
    tasks.spawn(volumes.run(Api::all(root.clone())));
    tasks.spawn(storage_classes.run(Api::all(root.clone())));
    tasks.spawn(node_leases.run(Api::namespaced(root, node_lifecycle::LEASE_NAMESPACE)));
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// How many objects each controller reconciles at once (upstream's `--concurrent-*-syncs`
/// defaults are 5 to 10).
pub fn controller_config() -> kube::runtime::controller::Config {
    kube::runtime::controller::Config::default().concurrency(8)
}
