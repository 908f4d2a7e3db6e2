//! A node as the scheduler sees it: the Node object with the pods on it (bound and assumed)
//! and the sums that the plugins compare against.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Taint};

use super::pod_info::{HostPort, NodePod};
use super::resources::Resources;

/// One node and its pods.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// The Node object, once seen (pods can be seen bound to a node before it).
    pub node: Option<Arc<Node>>,
    /// What the node offers pods.
    pub allocatable: Resources,
    /// The sum of its pods' declared requests.
    pub requested: Resources,
    /// The sum of its pods' requests for scoring (defaults for undeclared CPU and memory).
    pub non_zero_milli_cpu: i64,
    /// See `non_zero_milli_cpu`.
    pub non_zero_memory: i64,
    /// Its pods, by uid.
    pub pods: BTreeMap<String, Arc<NodePod>>,
    /// How many of its pods have pod affinity or anti-affinity terms.
    pub pods_with_affinity: usize,
    /// How many of its pods have terms that score other pods (required affinity, preferred
    /// affinity or anti-affinity).
    pub pods_scoring_affinity: usize,
    /// The host ports its pods claim.
    pub used_ports: Vec<HostPort>,
    /// The values of the labels that topology keys name most ([`WELL_KNOWN`]), kept beside
    /// the node: the plugins look them up on every node of every cycle.
    well_known: [Option<Box<str>>; 3],
}

/// The node labels kept at hand: hostname, zone and region.
pub const WELL_KNOWN: [&str; 3] =
    ["kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region"];

/// Whether `pod` has terms that score other pods: required or preferred pod affinity, or
/// preferred anti-affinity.
pub fn scores_others(pod: &NodePod) -> bool {
    pod.affinity.as_ref().is_some_and(|t| !t.affinity.is_empty() || !t.preferred.is_empty())
}

impl NodeInfo {
    /// An empty node named `name`.
    pub fn named(name: &str) -> Self {
        Self { name: name.to_string(), ..Self::default() }
    }

    /// Sets the Node object (a new one, or a change).
    pub fn set_node(&mut self, node: Arc<Node>) {
        self.allocatable = Resources::of(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
        let labels = node.metadata.labels.as_ref();
        self.well_known =
            WELL_KNOWN.map(|key| labels.and_then(|l| l.get(key)).map(|v| v.as_str().into()));
        self.node = Some(node);
    }

    /// Counts `pod` on this node (replacing an earlier version of it).
    pub fn add_pod(&mut self, pod: Arc<NodePod>) {
        self.remove_pod(&pod.uid);
        self.requested.add(pod.resources());
        self.requested.pods += 1;
        self.non_zero_milli_cpu += pod.requests.non_zero_milli_cpu;
        self.non_zero_memory += pod.requests.non_zero_memory;
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if pod.affinity.is_some() {
            self.pods_with_affinity += 1;
        }
        if scores_others(&pod) {
            self.pods_scoring_affinity += 1;
        }
        self.pods.insert(pod.uid.clone(), pod);
    }

    /// Stops counting the pod `uid`; returns it if it was here.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<NodePod>> {
        let pod = self.pods.remove(uid)?;
        self.requested.subtract(pod.resources());
        self.requested.pods -= 1;
        self.non_zero_milli_cpu -= pod.requests.non_zero_milli_cpu;
        self.non_zero_memory -= pod.requests.non_zero_memory;
        for port in &pod.host_ports {
            if let Some(at) = self.used_ports.iter().position(|p| p == port) {
                self.used_ports.swap_remove(at);
            }
        }
        if pod.affinity.is_some() {
            self.pods_with_affinity -= 1;
        }
        if scores_others(&pod) {
            self.pods_scoring_affinity -= 1;
        }
        Some(pod)
    }

    /// The node's labels.
    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.as_ref()?.metadata.labels.as_ref()
    }

    /// The value of one of the node's labels.
    pub fn label(&self, key: &str) -> Option<&str> {
        match WELL_KNOWN.iter().position(|k| *k == key) {
            Some(at) => self.well_known[at].as_deref(),
            None => self.labels()?.get(key).map(String::as_str),
        }
    }

    /// The node's taints.
    pub fn taints(&self) -> &[Taint] {
        self.node
            .as_ref()
            .and_then(|n| n.spec.as_ref())
            .and_then(|s| s.taints.as_deref())
            .unwrap_or_default()
    }

    /// Whether the node is cordoned (`spec.unschedulable`).
    pub fn unschedulable(&self) -> bool {
        self.node
            .as_ref()
            .and_then(|n| n.spec.as_ref())
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
    }
}
