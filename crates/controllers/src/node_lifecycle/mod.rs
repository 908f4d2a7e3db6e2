//! The node lifecycle controller (upstream's `node-lifecycle-controller` with its taint
//! eviction): every few seconds it looks at each node's Lease and status, marks a node that
//! stopped reporting `Unknown` and its pods not ready, keeps each node's condition taints what
//! its conditions call for (`taints.rs`), and deletes the pods that a `NoExecute` taint no
//! longer lets stay (`eviction.rs`). A node that changes (cordoned, uncordoned, a condition reported) has its
//! taints brought in line at once, as upstream's node update queue does, rather than at the
//! next pass. Its decisions are the pure functions of those modules; this file reads the
//! shared caches and writes.

pub mod eviction;
pub mod health;
pub mod taints;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use krust_client::{Events, Informer};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use health::Observed;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "node-controller";

/// Where nodes' Leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// How often every node is looked at (upstream's `--node-monitor-period`).
const MONITOR_PERIOD: Duration = Duration::from_secs(5);

/// The controller's memory between passes.
struct Monitor {
    client: Client,
    events: Events,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    observed: HashMap<String, Observed>,
    /// Pods already deleted for a taint (not deleted twice while they terminate).
    evicted: HashSet<String>,
}

/// Runs the controller, reading the shared caches of nodes, node leases and pods and writing
/// as `client`.
pub fn run(
    client: Client,
    nodes: &mut Informer<Node>,
    leases: &mut Informer<Lease>,
    pods: &mut Informer<Pod>,
) -> impl Future<Output = ()> + Send + 'static {
    let mut changed = nodes.subscribe();
    let mut monitor = Monitor {
        events: Events::new(client.clone(), NAME),
        client,
        nodes: nodes.store(),
        leases: leases.store(),
        pods: pods.store(),
        observed: HashMap::new(),
        evicted: HashSet::new(),
    };
    async move {
        krust_client::informer::ready(&monitor.nodes).await;
        krust_client::informer::ready(&monitor.leases).await;
        krust_client::informer::ready(&monitor.pods).await;
        let mut tick = tokio::time::interval(MONITOR_PERIOD);
        loop {
            tokio::select! {
                _ = tick.tick() => monitor.pass().await,
                Some(node) = changed.next() => {
                    let current = monitor.nodes.get(&ObjectRef::new(&node.name_any()));
                    if let Some(node) = current {
                        monitor.retaint((*node).clone()).await;
                    }
                }
            }
        }
    }
}

impl Monitor {
    async fn pass(&mut self) {
        let now = Instant::now();
        let nodes = self.nodes.state();
        let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
        self.observed.retain(|name, _| names.contains(name));
        let mut tainted: HashMap<String, Vec<Taint>> = HashMap::new();
        let mut unknown: HashSet<String> = HashSet::new();
        for node in nodes {
            let name = node.name_any();
            let lease = self.leases.get(&ObjectRef::new(&name).within(LEASE_NAMESPACE));
            let renewed = lease
                .as_ref()
                .and_then(|l| l.spec.as_ref())
                .and_then(|s| s.renew_time.as_ref())
                .map(|t| t.0.to_string());
            let heartbeat = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0.to_string());
            let seen = Observed::see(self.observed.get(&name), (renewed, heartbeat), now);
            let silent = seen.silent(now, health::GRACE);
            self.observed.insert(name.clone(), seen);
            let mut node = (*node).clone();
            if silent && let Some(conditions) = health::unknown_conditions(&node, Timestamp::now())
            {
                match self.mark_unknown(&name, &conditions).await {
                    Ok(updated) => node = updated,
                    Err(e) => tracing::warn!(node = name, error = %e, "cannot mark node unknown"),
                }
            }
            if health::is_unknown(&node) {
                unknown.insert(name.clone());
            }
            let node = self.retaint(node).await;
            let taints = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
            if taints.iter().any(|t| t.effect == "NoExecute") {
                tainted.insert(name, taints);
            }
        }
        self.mark_pods_not_ready(&unknown).await;
        self.evict(&tainted).await;
    }

    /// Marks the pods on nodes that stopped reporting not ready (`Ready=False`), as
    /// upstream's `MarkPodsNotReady` does, with a `NodeNotReady` event for each.
    async fn mark_pods_not_ready(&self, nodes: &HashSet<String>) {
        if nodes.is_empty() {
            return;
        }
        for pod in self.pods.state() {
            let on = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default();
            if !nodes.contains(on) || !health::still_ready(&pod) {
                continue;
            }
            let namespace = pod.namespace().unwrap_or_default();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let condition = serde_json::json!({"type": "Ready", "status": "False",
                "lastTransitionTime": Timestamp::now().to_string()});
            let patch = serde_json::json!({"status": {"conditions": [condition]}});
            let params = PatchParams::default();
            match api.patch_status(&pod.name_any(), &params, &Patch::Strategic(patch)).await {
                Ok(_) => self.events.warning(
                    pod_reference(&pod),
                    "NodeNotReady",
                    "NodeNotReady",
                    "Node is not ready".to_string(),
                ),
                Err(e) => {
                    tracing::debug!(pod = pod.name_any(), error = %e, "cannot mark pod not ready")
                }
            }
        }
    }

    /// Brings the node's condition taints in line with its conditions and `unschedulable`,
    /// returning the node as it now is.
    async fn retaint(&self, mut node: Node) -> Node {
        if let Some(next) = taints::reconciled(&node, Timestamp::now()) {
            match self.set_taints(&node, &next).await {
                Ok(()) => node.spec.get_or_insert_with(Default::default).taints = Some(next),
                Err(e) => tracing::debug!(node = node.name_any(), error = %e, "cannot taint node"),
            }
        }
        node
    }

    /// Writes the node's conditions as `Unknown`.
    async fn mark_unknown(
        &self,
        name: &str,
        conditions: &[NodeCondition],
    ) -> Result<Node, kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = serde_json::json!({"status": {"conditions": conditions}});
        let node = nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        tracing::info!(node = name, "node stopped reporting: conditions Unknown");
        self.events.normal(
            reference(&node),
            "NodeNotReady",
            "NodeNotReady",
            format!("Node {name} status is now: NodeNotReady"),
        );
        Ok(node)
    }

    /// Writes the node's taints, guarded by the version they were computed from.
    async fn set_taints(&self, node: &Node, taints: &[Taint]) -> Result<(), kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let patch = serde_json::json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"taints": taints},
        });
        nodes.patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok(())
    }

    /// Deletes the pods that the `NoExecute` taints of their nodes no longer let stay.
    async fn evict(&mut self, tainted: &HashMap<String, Vec<Taint>>) {
        let live: HashSet<String> = self.pods.state().iter().filter_map(|p| p.uid()).collect();
        self.evicted.retain(|uid| live.contains(uid));
        if tainted.is_empty() {
            return;
        }
        let now = Timestamp::now();
        for pod in self.pods.state() {
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                continue;
            };
            let Some(taints) = tainted.get(node) else { continue };
            let uid = pod.uid().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() || self.evicted.contains(&uid) {
                continue;
            }
            let Some(at) = eviction::eviction_time(&pod, taints, now) else { continue };
            if at > now {
                continue;
            }
            let namespace = pod.namespace().unwrap_or_default();
            let name = pod.name_any();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match api.delete(&name, &params).await {
                Ok(_) => {
                    tracing::info!(pod = %format!("{namespace}/{name}"), node, "evicted for a NoExecute taint");
                    self.events.normal(
                        pod_reference(&pod),
                        "TaintManagerEviction",
                        "Deleting",
                        format!("Marking for deletion Pod {namespace}/{name}"),
                    );
                    self.evicted.insert(uid);
                }
                Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {
                    self.evicted.insert(uid);
                }
                Err(e) => tracing::warn!(pod = name, error = %e, "cannot evict pod"),
            }
        }
    }
}

fn reference(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..Default::default()
    }
}

fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}
