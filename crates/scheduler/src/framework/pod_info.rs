//! The scheduler's views of pods: the pod being scheduled, whole, with what every plugin
//! reads of it computed once; and the pods already on nodes, kept small (a cluster holds
//! many), with only what the plugins read of them.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::affinity::PodTerms;
use super::resources::{PodRequests, Resources};

/// A host port a pod's container claims on its node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The address, `0.0.0.0` when any.
    pub ip: String,
    /// The port.
    pub port: i32,
}

impl HostPort {
    /// Whether two claims collide: the same protocol and port, on the same address or where
    /// either is every address.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        const ANY: &str = "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY || other.ip == ANY)
    }

    /// The host ports `pod` claims.
    pub fn of(pod: &Pod) -> Vec<HostPort> {
        let Some(spec) = &pod.spec else { return Vec::new() };
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let port = p.host_port.filter(|port| *port > 0)?;
                Some(HostPort {
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_string()),
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".to_string()),
                    port,
                })
            })
            .collect()
    }
}

/// The pod being scheduled.
#[derive(Debug, Clone)]
pub struct PodInfo {
    /// The pod as last seen.
    pub pod: Arc<Pod>,
    /// Its requests.
    pub requests: PodRequests,
    /// The host ports it claims.
    pub host_ports: Vec<HostPort>,
    /// What PodTopologySpread's default constraints count its peers by (the selectors of its
    /// services and controller), when it has no constraints of its own; filled in by the
    /// scheduler from the objects it watches.
    pub default_spread: Option<LabelSelector>,
}

impl PodInfo {
    /// The view of `pod`.
    pub fn new(pod: Arc<Pod>) -> Self {
        Self {
            requests: PodRequests::of(&pod),
            host_ports: HostPort::of(&pod),
            default_spread: None,
            pod,
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        key(&self.pod)
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or_default()
    }

    /// The pod's priority (set by the Priority admission plugin), 0 when absent.
    pub fn priority(&self) -> i32 {
        priority(&self.pod)
    }
}

/// `namespace/name` of a pod.
pub fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

/// A pod's priority, 0 when absent.
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// A pod already on a node (bound, or assumed while its binding is on the way).
#[derive(Debug, Clone, PartialEq)]
pub struct NodePod {
    /// The pod's uid.
    pub uid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its requests.
    pub requests: PodRequests,
    /// The host ports it claims.
    pub host_ports: Vec<HostPort>,
    /// Its priority.
    pub priority: i32,
    /// Its inter-pod affinity terms, resolved, when it has any (what the inter-pod affinity
    /// plugin reads of placed pods).
    pub affinity: Option<Arc<PodTerms>>,
    /// Whether it is being deleted (preemption does not count it as a victim).
    pub terminating: bool,
}

impl NodePod {
    /// The small view of `pod`.
    pub fn of(pod: &Pod) -> Self {
        let affinity = PodTerms::of(pod).map(Arc::new);
        Self {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            requests: PodRequests::of(pod),
            host_ports: HostPort::of(pod),
            priority: priority(pod),
            affinity,
            terminating: pod.metadata.deletion_timestamp.is_some(),
        }
    }

    /// The declared requests.
    pub fn resources(&self) -> &Resources {
        &self.requests.requests
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(protocol: &str, ip: &str, port: i32) -> HostPort {
        HostPort { protocol: protocol.into(), ip: ip.into(), port }
    }

    #[test]
    fn host_ports_conflict_as_upstream() {
        let cases = [
            (
                "same port, any address",
                port("TCP", "0.0.0.0", 80),
                port("TCP", "10.0.0.1", 80),
                true,
            ),
            (
                "same port and address",
                port("TCP", "10.0.0.1", 80),
                port("TCP", "10.0.0.1", 80),
                true,
            ),
            (
                "different addresses",
                port("TCP", "10.0.0.1", 80),
                port("TCP", "10.0.0.2", 80),
                false,
            ),
            ("different protocols", port("TCP", "0.0.0.0", 53), port("UDP", "0.0.0.0", 53), false),
            ("different ports", port("TCP", "0.0.0.0", 80), port("TCP", "0.0.0.0", 81), false),
        ];
        for (name, a, b, want) in cases {
            assert_eq!(a.conflicts(&b), want, "{name}");
            assert_eq!(b.conflicts(&a), want, "{name} (reversed)");
        }
    }
}
