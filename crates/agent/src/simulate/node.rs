//! The Node object and the status a simulated node reports: the capacity of its group, Ready
//! with no pressure, addresses from its index (`100.64.0.0/10`), a pod network of its own
//! (`10.128.0.0/9` in /24s), and upstream's well-known labels.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec as Spec,
    NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

use super::groups::NodeSpec;

/// The label every simulated node carries (what the simulator watches).
pub const SIMULATED_LABEL: &str = "krust.dev/simulated";
/// Set to `stopped` on a node, it makes the simulator stop reporting for it.
pub const HEARTBEAT_ANNOTATION: &str = "krust.dev/simulate-heartbeat";

/// The node's address.
pub fn address(index: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + index as u32)
}

/// The node's pod network, a /24: (network, prefix).
pub fn pod_cidr(index: usize) -> (Ipv4Addr, u8) {
    let base = u32::from(Ipv4Addr::new(10, 128, 0, 0)) + ((index as u32) << 8);
    (Ipv4Addr::from(base), 24)
}

/// The Node to register.
pub fn node(spec: &NodeSpec, version: &str, now: Timestamp) -> Node {
    let mut labels: BTreeMap<String, String> = [
        ("kubernetes.io/hostname", spec.name.as_str()),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", std::env::consts::ARCH),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", std::env::consts::ARCH),
        (SIMULATED_LABEL, "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    labels.extend(spec.labels.clone());
    let (network, prefix) = pod_cidr(spec.index);
    let cidr = format!("{network}/{prefix}");
    Node {
        metadata: ObjectMeta {
            name: Some(spec.name.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(Spec {
            pod_cidr: Some(cidr.clone()),
            pod_cidrs: Some(vec![cidr]),
            taints: (!spec.taints.is_empty()).then(|| spec.taints.clone()),
            ..Spec::default()
        }),
        status: Some(status(spec, version, now)),
    }
}

/// What the node reports: capacity, Ready, no pressure, addresses, system info.
pub fn status(spec: &NodeSpec, version: &str, now: Timestamp) -> NodeStatus {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", spec.cpu.clone()),
        ("memory", spec.memory.clone()),
        ("pods", spec.pods.to_string()),
        ("ephemeral-storage", "100Gi".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: address(spec.index).to_string() },
            NodeAddress { type_: "Hostname".into(), address: spec.name.clone() },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: std::env::consts::ARCH.to_string(),
            boot_id: String::new(),
            container_runtime_version: "krust-simulated://1".to_string(),
            kernel_version: "simulated".to_string(),
            kube_proxy_version: String::new(),
            kubelet_version: version.to_string(),
            machine_id: String::new(),
            operating_system: "linux".to_string(),
            os_image: "krust simulated node".to_string(),
            system_uuid: String::new(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// Whether a node, as last seen, reports Ready (the simulator re-asserts it when not).
pub fn reports_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether the node's heartbeat was stopped on request.
pub fn heartbeat_stopped(node: &Node) -> bool {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(HEARTBEAT_ANNOTATION))
        .is_some_and(|v| v == "stopped")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks_follow_the_index() {
        assert_eq!(address(0), Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(address(300), Ipv4Addr::new(100, 64, 1, 45));
        assert_eq!(pod_cidr(0), (Ipv4Addr::new(10, 128, 0, 0), 24));
        assert_eq!(pod_cidr(4999), (Ipv4Addr::new(10, 147, 135, 0), 24));
    }

    #[test]
    fn the_node_reports_its_group() {
        let spec = NodeSpec {
            name: "sim-1".into(),
            index: 1,
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            labels: [("size".to_string(), "big".to_string())].into(),
            taints: vec![],
        };
        let node = node(&spec, "v1.33.0", Timestamp::now());
        let labels = node.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels.get("kubernetes.io/hostname").map(String::as_str), Some("sim-1"));
        assert_eq!(labels.get("size").map(String::as_str), Some("big"));
        assert!(reports_ready(&node));
        assert!(!heartbeat_stopped(&node));
        let status = node.status.expect("status");
        assert_eq!(
            status.allocatable.expect("allocatable").get("cpu"),
            Some(&Quantity("4".into()))
        );
        assert_eq!(node.spec.expect("spec").pod_cidr.as_deref(), Some("10.128.1.0/24"));
    }
}
