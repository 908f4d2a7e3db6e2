//! NodeName: a pod that names its node fits only there.

use crate::framework::{
    ClusterEvent, CycleState, NodeInfo, Plugin, PodInfo, Points, Reason, Rejection,
};

/// The plugin's name.
pub const NAME: &str = "NodeName";

/// Refuses every node but the one a pod names in `spec.nodeName`.
pub struct NodeName;

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn points(&self) -> Points {
        Points::FILTER
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd]
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(name) if !name.is_empty() && name != node.name => {
                Err(Rejection::unresolvable(NAME, Reason::NodeNameMismatch))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::{info, pod, sized};

    #[test]
    fn only_the_named_node() {
        let named = info(pod(serde_json::json!({"nodeName": "a", "containers": []})));
        let state = CycleState::default();
        assert!(NodeName.filter(&state, &named, &sized("a", "1", "1Gi", &[])).is_ok());
        assert_eq!(
            NodeName.filter(&state, &named, &sized("b", "1", "1Gi", &[])),
            Err(Rejection::unresolvable(NAME, Reason::NodeNameMismatch))
        );
        let free = info(pod(serde_json::json!({"containers": []})));
        assert!(NodeName.filter(&state, &free, &sized("b", "1", "1Gi", &[])).is_ok());
    }
}
