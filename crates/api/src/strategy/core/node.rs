//! Nodes: `pkg/registry/core/node/strategy.go` and `printNode`.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::strategy::Strategy;
use crate::strategy::util::{AGE, age, array_at, bool_at, col, keep_status, object_at, string_at};
use crate::table::{Column, TableContext};

/// Rules of `Node`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeStrategy;

const COLUMNS: &[Column] = &[
    col("Status", "The status of the node"),
    col("Roles", "The roles of the node"),
    AGE,
    col("Version", "Kubelet Version reported by the node."),
    col("Internal-IP", "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).").wide(),
    col("External-IP", "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).").wide(),
    col("OS-Image", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).").wide(),
    col("Kernel-Version", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).").wide(),
    col("Container-Runtime", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).").wide(),
];

impl Strategy for NodeStrategy {
    fn default(&self, obj: &mut Value) {
        // SetDefaults_NodeStatus: allocatable defaults to capacity.
        if let Some(capacity) = obj.pointer("/status/capacity").cloned()
            && obj.pointer("/status/allocatable").is_none_or(Value::is_null)
        {
            crate::object::set_path(obj, "status.allocatable", capacity);
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        let unschedulable = bool_at(obj, "spec.unschedulable").unwrap_or(false);
        vec![("spec.unschedulable", unschedulable.to_string())]
    }

    fn selectable_paths(&self) -> Option<&'static [&'static str]> {
        Some(&["spec.unschedulable"])
    }

    fn columns(&self) -> &[Column] {
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let mut status: Vec<String> = array_at(obj, "status.conditions")
            .iter()
            .filter(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
            .take(1)
            .map(|c| match c.get("status").and_then(Value::as_str) {
                Some("True") => "Ready".to_string(),
                _ => "NotReady".to_string(),
            })
            .collect();
        if status.is_empty() {
            status.push("Unknown".into());
        }
        if bool_at(obj, "spec.unschedulable") == Some(true) {
            status.push("SchedulingDisabled".into());
        }
        let mut roles = BTreeSet::new();
        for (k, v) in object_at(obj, "metadata.labels").into_iter().flatten() {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(role) = v.as_str().filter(|r| !r.is_empty())
            {
                roles.insert(role.to_string());
            }
        }
        let roles = if roles.is_empty() {
            "<none>".to_string()
        } else {
            roles.into_iter().collect::<Vec<_>>().join(",")
        };
        let address = |kind: &str| {
            array_at(obj, "status.addresses")
                .iter()
                .find(|a| a.get("type").and_then(Value::as_str) == Some(kind))
                .and_then(|a| a.get("address").and_then(Value::as_str))
                .unwrap_or("<none>")
                .to_string()
        };
        let info = |field: &str| {
            let v = string_at(obj, &format!("status.nodeInfo.{field}"));
            if v.is_empty() { "<unknown>".to_string() } else { v }
        };
        vec![
            json!(status.join(",")),
            json!(roles),
            age(obj, ctx),
            json!(string_at(obj, "status.nodeInfo.kubeletVersion")),
            json!(address("InternalIP")),
            json!(address("ExternalIP")),
            json!(info("osImage")),
            json!(info("kernelVersion")),
            json!(info("containerRuntimeVersion")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_row() {
        let node = json!({
            "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0"},
            },
        });
        let cells = NodeStrategy.cells(&node, &TableContext { now: chrono::Utc::now() });
        assert_eq!(cells[0], "Ready,SchedulingDisabled");
        assert_eq!(cells[1], "control-plane");
        assert_eq!(cells[3], "v1.33.0");
        assert_eq!(cells[4], "10.0.0.2");
        assert_eq!(cells[5], "<none>");
        assert_eq!(cells[6], "<unknown>");
    }
}
