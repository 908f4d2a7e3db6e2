//! NodeUnschedulable: a cordoned node takes only pods that tolerate
//! `node.kubernetes.io/unschedulable:NoSchedule`.

use k8s_openapi::api::core::v1::Taint;

use crate::framework::labels::tolerated;
use crate::framework::{
    ClusterEvent, CycleState, Involved, NodeInfo, Plugin, PodInfo, Points, Reason, Rejection,
};

/// The plugin's name.
pub const NAME: &str = "NodeUnschedulable";

/// The taint a cordoned node is treated as having.
pub const TAINT_KEY: &str = "node.kubernetes.io/unschedulable";

/// Refuses cordoned nodes.
pub struct NodeUnschedulable;

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn points(&self) -> Points {
        Points::FILTER
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::NodeTaint]
    }

    /// Worth trying again on a node that this filter now lets through.
    fn hint(&self, pod: &PodInfo, _: ClusterEvent, involved: Involved<'_>) -> bool {
        match involved {
            Involved::Node(node) => self.filter(&CycleState::default(), pod, node).is_ok(),
            _ => true,
        }
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        if !node.unschedulable() {
            return Ok(());
        }
        let taint = Taint {
            key: TAINT_KEY.to_string(),
            effect: "NoSchedule".to_string(),
            ..Taint::default()
        };
        let tolerations =
            pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
        if tolerated(tolerations, &taint) {
            Ok(())
        } else {
            Err(Rejection::unresolvable(NAME, Reason::NodeUnschedulable))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::{info, node, pod};

    #[test]
    fn cordoned_nodes() {
        let cordoned = node("a", serde_json::json!({"spec": {"unschedulable": true}}), &[]);
        let open = node("b", serde_json::json!({}), &[]);
        let plain = info(pod(serde_json::json!({"containers": []})));
        let tolerant = info(pod(serde_json::json!({"containers": [], "tolerations": [
            {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]})));
        let state = CycleState::default();
        assert_eq!(
            NodeUnschedulable.filter(&state, &plain, &cordoned),
            Err(Rejection::unresolvable(NAME, Reason::NodeUnschedulable))
        );
        assert!(NodeUnschedulable.filter(&state, &tolerant, &cordoned).is_ok());
        assert!(NodeUnschedulable.filter(&state, &plain, &open).is_ok());
    }
}
