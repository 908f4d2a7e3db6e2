//! The two system PriorityClasses every cluster has (upstream's `scheduling/bootstrap-system-
//! priority-classes` start hook), created when absent.

use krust_admission::priority::{SYSTEM_CLUSTER_CRITICAL, SYSTEM_NODE_CRITICAL};
use krust_api::StatusError;
use serde_json::json;

use crate::registry::{Registry, WriteOptions};

/// Creates `system-cluster-critical` and `system-node-critical` when absent.
pub async fn bootstrap(registry: &Registry) -> Result<(), StatusError> {
    let Some(info) = registry.catalog().lookup("scheduling.k8s.io", "v1", "priorityclasses") else {
        return Err(StatusError::internal("the catalog has no priorityclasses"));
    };
    for ((name, value), description) in [
        (
            SYSTEM_NODE_CRITICAL,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            SYSTEM_CLUSTER_CRITICAL,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ] {
        let class = json!({
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
            "preemptionPolicy": "PreemptLowerPriority",
        });
        match registry.create(&info, None, class, WriteOptions::default()).await {
            Ok(_) => tracing::info!(priorityclass = name, "created"),
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
