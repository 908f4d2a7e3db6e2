//! Simulated nodes (`krust agent --simulate`), as kwok's and kubemark's hollow nodes: nodes
//! registered and kept alive through their Leases, whose bound pods are reported Running and
//! Ready without any container started, and whose deletions are confirmed at once. For scale
//! tests, benchmarks and capacity planning.
//!
//! One watch of the simulator's nodes (to see heartbeats stopped on request, and conditions
//! set `Unknown` by the node lifecycle controller, which it re-asserts) and one watch of every
//! bound pod, whatever the number of nodes. What a node and a pod report are the pure
//! functions of `node.rs` and `pods.rs`; `groups.rs` says which nodes there are.

pub mod groups;
pub mod node;
pub mod pods;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Config};
use tokio::sync::{Mutex, Semaphore};

use groups::NodeSpec;

/// Where node Leases live.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often each node's Lease is renewed.
const RENEW_PERIOD: Duration = Duration::from_secs(10);
/// How often each node's status is written even when nothing changed (upstream's
/// `nodeStatusReportFrequency`).
const STATUS_PERIOD: Duration = Duration::from_secs(300);
/// Writes in flight at most.
const WRITES: usize = 64;

/// How the simulator runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The nodes.
    pub nodes: Vec<NodeSpec>,
    /// The version the nodes report (`kubeletVersion`).
    pub version: String,
}

/// Why the simulator stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// No client could be built.
    #[error("cannot build the API client")]
    Client(#[source] kube::Error),
    /// A node could not be registered.
    #[error("cannot register node {node}")]
    Register {
        /// The node.
        node: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// One node's state.
struct Simulated {
    spec: NodeSpec,
    uid: String,
    stopped: bool,
    addresses: pods::Addresses,
}

/// Everything the simulator's tasks share.
struct Simulator {
    client: Client,
    version: String,
    nodes: Mutex<HashMap<String, Simulated>>,
    /// Pods reported, with their node and address.
    pods: Mutex<HashMap<String, (String, Ipv4Addr)>>,
    /// Pods whose deletion was confirmed.
    deleted: Mutex<HashSet<String>>,
    writes: Semaphore,
}

/// Registers the nodes and simulates them until the future is dropped.
pub async fn run(config: Config, options: Options) -> Result<(), SimulateError> {
    let client = krust_client::client(config).map_err(SimulateError::Client)?;
    let simulator = Arc::new(Simulator {
        client,
        version: options.version,
        nodes: Mutex::new(HashMap::new()),
        pods: Mutex::new(HashMap::new()),
        deleted: Mutex::new(HashSet::new()),
        writes: Semaphore::new(WRITES),
    });
    let mut registering = tokio::task::JoinSet::new();
    for spec in options.nodes {
        let simulator = Arc::clone(&simulator);
        registering.spawn(async move { simulator.register(spec).await });
        while registering.len() >= WRITES {
            if let Some(result) = registering.join_next().await {
                result.unwrap_or(Ok(()))?;
            }
        }
    }
    while let Some(result) = registering.join_next().await {
        result.unwrap_or(Ok(()))?;
    }
    tracing::info!(nodes = simulator.nodes.lock().await.len(), "simulated nodes registered");
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(Arc::clone(&simulator).renew_leases());
    tasks.spawn(Arc::clone(&simulator).report_status());
    tasks.spawn(Arc::clone(&simulator).follow_nodes());
    tasks.spawn(Arc::clone(&simulator).follow_pods());
    while tasks.join_next().await.is_some() {}
    Ok(())
}

impl Simulator {
    /// Creates the node, or takes over the one of that name, and its Lease.
    async fn register(&self, spec: NodeSpec) -> Result<(), SimulateError> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let err = |source| SimulateError::Register { node: spec.name.clone(), source };
        let object = node::node(&spec, &self.version, Timestamp::now());
        let created = match nodes.create(&PostParams::default(), &object).await {
            Ok(created) => created,
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                nodes.get(&spec.name).await.map_err(err)?
            }
            Err(e) => return Err(err(e)),
        };
        let uid = created.metadata.uid.clone().unwrap_or_default();
        let stopped = node::heartbeat_stopped(&created);
        let (network, _) = node::pod_cidr(spec.index);
        let name = spec.name.clone();
        self.nodes.lock().await.insert(
            name.clone(),
            Simulated { spec, uid, stopped, addresses: pods::Addresses::new(network) },
        );
        if !stopped {
            self.write_status(&name).await;
            self.renew(&name).await;
        }
        Ok(())
    }

    /// Writes the node's status (Ready, fresh heartbeats).
    async fn write_status(&self, name: &str) {
        let Some(spec) = self.nodes.lock().await.get(name).map(|n| n.spec.clone()) else { return };
        let nodes: Api<Node> = Api::all(self.client.clone());
        let status = node::status(&spec, &self.version, Timestamp::now());
        let patch = serde_json::json!({"status": status});
        let _permit = self.writes.acquire().await;
        if let Err(e) =
            nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await
        {
            tracing::debug!(node = name, error = %e, "cannot write node status");
        }
    }

    /// Renews (or creates) the node's Lease.
    async fn renew(&self, name: &str) {
        let Some(uid) = self.nodes.lock().await.get(name).map(|n| n.uid.clone()) else { return };
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        let now = MicroTime(Timestamp::now());
        let _permit = self.writes.acquire().await;
        let patch = serde_json::json!({"spec": {"renewTime": now, "holderIdentity": name}});
        match leases.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.to_string()),
                        namespace: Some(LEASE_NAMESPACE.to_string()),
                        owner_references: Some(vec![OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: name.to_string(),
                            uid,
                            ..OwnerReference::default()
                        }]),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(name.to_string()),
                        lease_duration_seconds: Some(40),
                        renew_time: Some(now),
                        ..LeaseSpec::default()
                    }),
                };
                if let Err(e) = leases.create(&PostParams::default(), &lease).await {
                    tracing::debug!(node = name, error = %e, "cannot create the node's lease");
                }
            }
            Err(e) => tracing::debug!(node = name, error = %e, "cannot renew the node's lease"),
        }
    }

    /// Renews every live node's Lease once per period, spread over the period.
    async fn renew_leases(self: Arc<Self>) {
        loop {
            let names: Vec<String> = {
                let nodes = self.nodes.lock().await;
                nodes.iter().filter(|(_, n)| !n.stopped).map(|(name, _)| name.clone()).collect()
            };
            let gap = RENEW_PERIOD / names.len().max(1) as u32;
            let mut tick = tokio::time::interval(gap.max(Duration::from_micros(100)));
            for name in names {
                tick.tick().await;
                let simulator = Arc::clone(&self);
                tokio::spawn(async move { simulator.renew(&name).await });
            }
            tick.tick().await;
        }
    }

    /// Writes every live node's status once per report period.
    async fn report_status(self: Arc<Self>) {
        let mut tick = tokio::time::interval(STATUS_PERIOD);
        tick.tick().await;
        loop {
            tick.tick().await;
            let names: Vec<String> = {
                let nodes = self.nodes.lock().await;
                nodes.iter().filter(|(_, n)| !n.stopped).map(|(name, _)| name.clone()).collect()
            };
            for name in names {
                self.write_status(&name).await;
            }
        }
    }

    /// Follows the simulator's nodes: a heartbeat stopped or resumed on request, and a status
    /// marked not Ready by someone else while it should be, which is written again.
    async fn follow_nodes(self: Arc<Self>) {
        let api: Api<Node> = Api::all(self.client.clone());
        let config = watcher::Config::default().labels(&format!("{}=true", node::SIMULATED_LABEL));
        let mut stream = std::pin::pin!(watcher(api, config).default_backoff().applied_objects());
        while let Some(event) = stream.next().await {
            let Ok(seen) = event else { continue };
            let name = seen.metadata.name.clone().unwrap_or_default();
            let stopped = node::heartbeat_stopped(&seen);
            let resumed = {
                let mut nodes = self.nodes.lock().await;
                let Some(simulated) = nodes.get_mut(&name) else { continue };
                let was = simulated.stopped;
                simulated.stopped = stopped;
                if let Some(uid) = &seen.metadata.uid {
                    simulated.uid = uid.clone();
                }
                was && !stopped
            };
            if stopped {
                continue;
            }
            if resumed || !node::reports_ready(&seen) {
                tracing::info!(node = name, "reporting Ready");
                self.write_status(&name).await;
                self.renew(&name).await;
            }
        }
    }

    /// Follows every bound pod: pods on the simulator's nodes are reported Running, and their
    /// deletions confirmed.
    async fn follow_pods(self: Arc<Self>) {
        let api: Api<Pod> = Api::all(self.client.clone());
        let config = watcher::Config::default().fields("spec.nodeName!=");
        let mut stream = std::pin::pin!(watcher(api, config).default_backoff());
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                    self.pod_changed(pod).await;
                }
                Ok(watcher::Event::Delete(pod)) => self.pod_gone(&pod).await,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pod watch failed; re-listing"),
            }
        }
    }

    async fn pod_changed(self: &Arc<Self>, pod: Pod) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else { return };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if !self.nodes.lock().await.contains_key(&node) {
            return;
        }
        if pod.metadata.deletion_timestamp.is_some() {
            if self.deleted.lock().await.insert(uid.clone()) {
                let simulator = Arc::clone(self);
                tokio::spawn(async move { simulator.confirm_deletion(pod, uid).await });
            }
            return;
        }
        if pods::reported(&pod) || self.pods.lock().await.contains_key(&uid) {
            return;
        }
        let address = {
            let mut nodes = self.nodes.lock().await;
            let Some(simulated) = nodes.get_mut(&node) else { return };
            let host = node::address(simulated.spec.index);
            simulated.addresses.take().map(|ip| (host, ip))
        };
        let Some((host, ip)) = address else {
            tracing::warn!(node, "no pod address left");
            return;
        };
        self.pods.lock().await.insert(uid.clone(), (node, ip));
        let simulator = Arc::clone(self);
        tokio::spawn(async move { simulator.report_running(pod, host, ip).await });
    }

    async fn report_running(&self, pod: Pod, host: Ipv4Addr, ip: Ipv4Addr) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let status = pods::running(&pod, host, ip, Timestamp::now());
        let patch = serde_json::json!({"status": status});
        for attempt in 0..5u32 {
            let result = {
                let _permit = self.writes.acquire().await;
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await
            };
            match result {
                Ok(_) => return,
                Err(kube::Error::Api(s)) if s.is_not_found() => return,
                Err(e) => {
                    tracing::debug!(pod = name, error = %e, "cannot report the pod running");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
    }

    /// Confirms a deletion as a kubelet does once the containers are gone.
    async fn confirm_deletion(&self, pod: Pod, uid: String) {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        let _permit = self.writes.acquire().await;
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
            Err(e) => tracing::debug!(pod = name, error = %e, "cannot confirm the deletion"),
        }
    }

    async fn pod_gone(&self, pod: &Pod) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        self.deleted.lock().await.remove(&uid);
        let Some((node, ip)) = self.pods.lock().await.remove(&uid) else { return };
        if let Some(simulated) = self.nodes.lock().await.get_mut(&node) {
            simulated.addresses.release(ip);
        }
    }
}
