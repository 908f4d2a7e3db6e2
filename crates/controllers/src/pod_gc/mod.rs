//! The pod garbage collector (upstream's `pod-garbage-collector`): every 20 s it deletes the
//! oldest finished pods beyond a threshold, the pods of nodes that are gone (after the node's
//! absence is confirmed with the API and has lasted 40 s), pods being deleted that were never
//! bound (no agent will confirm them), and pods being deleted on nodes tainted out of service.
//! A pod that had not finished is first marked `Failed`, with a `DisruptionTarget` condition
//! when its node is gone; deletions are forced (grace period 0), as upstream's.

pub mod decide;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use krust_client::Informer;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "pod-garbage-collector";

/// How often the collector looks (upstream's `gcCheckPeriod`).
const PERIOD: Duration = Duration::from_secs(20);

/// How long a node must be missing before its pods go (upstream's `quarantineTime`).
const QUARANTINE: Duration = Duration::from_secs(40);

/// Runs the collector over the shared pod and node caches, writing as `client`;
/// `threshold` finished pods are kept.
pub fn run(
    client: Client,
    pods: &Informer<Pod>,
    nodes: &Informer<Node>,
    threshold: usize,
) -> impl Future<Output = ()> + Send + 'static {
    let mut collector = Collector {
        client,
        pods: pods.store(),
        nodes: nodes.store(),
        threshold,
        missing_since: HashMap::new(),
    };
    async move {
        krust_client::informer::ready(&collector.pods).await;
        krust_client::informer::ready(&collector.nodes).await;
        let mut ticks = tokio::time::interval(PERIOD);
        loop {
            ticks.tick().await;
            collector.pass().await;
        }
    }
}

struct Collector {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    /// Finished pods kept.
    threshold: usize,
    /// Nodes pods are bound to that the cache does not know, since when.
    missing_since: HashMap<String, Instant>,
}

impl Collector {
    async fn pass(&mut self) {
        let pods = self.pods.state();
        let pods: Vec<&Pod> = pods.iter().map(AsRef::as_ref).collect();
        for pod in decide::terminated_over(&pods, self.threshold) {
            self.delete(pod, None).await;
        }
        let gone = self.gone_nodes(&pods).await;
        for pod in decide::orphaned(&pods, &gone) {
            tracing::info!(pod = %pod.name_any(), namespace = ?pod.namespace(), "deleting the pod of a node that no longer exists");
            self.delete(pod, Some("PodGC: node no longer exists")).await;
        }
        for pod in decide::unscheduled_terminating(&pods) {
            self.delete(pod, None).await;
        }
        let node = |name: &str| self.nodes.get(&ObjectRef::new(name)).map(|n| (*n).clone());
        for pod in decide::terminating_out_of_service(&pods, node) {
            self.delete(pod, None).await;
        }
    }

    /// The nodes pods are bound to that have been missing from the cache for the quarantine
    /// time and that the API confirms gone.
    async fn gone_nodes(&mut self, pods: &[&Pod]) -> HashSet<String> {
        let nodes = self.nodes.state();
        let known: HashSet<&str> =
            nodes.iter().filter_map(|n| n.metadata.name.as_deref()).collect();
        let missing = decide::missing_nodes(pods, &known);
        self.missing_since.retain(|n, _| missing.contains(n));
        let now = Instant::now();
        let api: Api<Node> = Api::all(self.client.clone());
        let mut gone = HashSet::new();
        for node in missing {
            let since = *self.missing_since.entry(node.clone()).or_insert(now);
            if now.duration_since(since) < QUARANTINE {
                continue;
            }
            match api.get_opt(&node).await {
                Ok(None) => {
                    gone.insert(node);
                }
                Ok(Some(_)) => {}
                Err(e) => tracing::debug!(node, error = %e, "cannot tell whether the node is gone"),
            }
        }
        gone
    }

    /// Marks `pod` failed if it has not finished (with a `DisruptionTarget` condition saying
    /// `disruption`, if given), then deletes it at once.
    async fn delete(&self, pod: &Pod, disruption: Option<&str>) {
        let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        if !decide::is_terminated(pod) {
            let mut status = json!({"phase": "Failed"});
            if let Some(message) = disruption {
                status["conditions"] = json!([{
                    "type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                    "message": message, "lastTransitionTime": Timestamp::now().to_string(),
                }]);
            }
            let patch = json!({"status": status});
            match api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => return,
                Err(e) => {
                    tracing::warn!(pod = name, namespace, error = %e, "cannot mark the pod failed");
                    return;
                }
            }
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => tracing::debug!(pod = name, namespace, "collected"),
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
            Err(e) => tracing::warn!(pod = name, namespace, error = %e, "cannot delete the pod"),
        }
    }
}
