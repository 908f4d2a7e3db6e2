//! Nodes and pods for the plugins' table tests.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::snapshot::ImageSpread;
use crate::framework::{NodeInfo, NodePod, PodInfo};

/// A node from its JSON (`metadata`, `spec`, `status`), named `name`, with the pods given.
pub fn node(name: &str, mut json: serde_json::Value, pods: &[Pod]) -> NodeInfo {
    json["metadata"]["name"] = name.into();
    let node: Node = serde_json::from_value(json).expect("a node");
    let mut info = NodeInfo::named(name);
    info.set_node(Arc::new(node));
    for (i, pod) in pods.iter().enumerate() {
        let mut pod = pod.clone();
        pod.metadata.uid = Some(format!("{name}-{i}"));
        info.add_pod(Arc::new(NodePod::of(&pod)));
    }
    info
}

/// A node with `cpu` and `memory` allocatable and room for 110 pods.
pub fn sized(name: &str, cpu: &str, memory: &str, pods: &[Pod]) -> NodeInfo {
    node(
        name,
        serde_json::json!({"status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}),
        pods,
    )
}

/// A pod from its spec JSON, in namespace `default`.
pub fn pod(spec: serde_json::Value) -> Pod {
    pod_with(serde_json::json!({}), spec)
}

/// A pod from its metadata and spec JSON.
pub fn pod_with(mut metadata: serde_json::Value, spec: serde_json::Value) -> Pod {
    if metadata.get("namespace").is_none() {
        metadata["namespace"] = "default".into();
    }
    if metadata.get("name").is_none() {
        metadata["name"] = "p".into();
    }
    serde_json::from_value(serde_json::json!({"metadata": metadata, "spec": spec})).expect("a pod")
}

/// A pod whose one container requests `cpu` and `memory`.
pub fn requesting(cpu: &str, memory: &str) -> Pod {
    pod(serde_json::json!({"containers": [
        {"name": "c", "image": "i", "resources": {"requests": {"cpu": cpu, "memory": memory}}}
    ]}))
}

/// The scheduler's view of `pod`.
pub fn info(pod: Pod) -> PodInfo {
    PodInfo::new(Arc::new(pod))
}

/// No images anywhere.
pub fn no_images() -> HashMap<String, ImageSpread> {
    HashMap::new()
}
