//! NodePorts: a pod's host ports must be free on its node.

use crate::framework::{
    ClusterEvent, CycleState, Involved, NodeInfo, Plugin, PodInfo, Points, Reason, Rejection,
};

/// The plugin's name.
pub const NAME: &str = "NodePorts";

/// Refuses nodes where a host port the pod claims is taken.
pub struct NodePorts;

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn points(&self) -> Points {
        Points::FILTER
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::AssignedPodDelete]
    }

    /// Worth trying again on a new node with the ports free, or when a pod that held one of
    /// the ports goes.
    fn hint(&self, pod: &PodInfo, _: ClusterEvent, involved: Involved<'_>) -> bool {
        match involved {
            Involved::Node(node) => self.filter(&CycleState::default(), pod, node).is_ok(),
            Involved::Pod(gone) => {
                pod.host_ports.iter().any(|p| gone.host_ports.iter().any(|g| p.conflicts(g)))
            }
            Involved::Unknown => true,
        }
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let taken = pod.host_ports.iter().any(|p| node.used_ports.iter().any(|u| p.conflicts(u)));
        if taken { Err(Rejection::unschedulable(NAME, vec![Reason::PortsInUse])) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::NodePod;
    use crate::plugins::fixtures::{info, pod, sized};

    fn with_port(port: i32, ip: Option<&str>) -> k8s_openapi::api::core::v1::Pod {
        let mut spec =
            serde_json::json!({"name": "c", "ports": [{"containerPort": 80, "hostPort": port}]});
        if let Some(ip) = ip {
            spec["ports"][0]["hostIP"] = ip.into();
        }
        pod(serde_json::json!({"containers": [spec]}))
    }

    #[test]
    fn host_ports() {
        let state = CycleState::default();
        let busy = sized("a", "1", "1Gi", &[with_port(8080, None)]);
        let cases = [
            ("same port", with_port(8080, None), false),
            ("same port on one address", with_port(8080, Some("10.0.0.1")), false),
            ("another port", with_port(8081, None), true),
            ("no host port", pod(serde_json::json!({"containers": [{"name": "c"}]})), true),
        ];
        for (name, pod, fits) in cases {
            assert_eq!(NodePorts.filter(&state, &info(pod), &busy).is_ok(), fits, "{name}");
        }
    }

    #[test]
    fn hints_wake_a_pod_only_for_its_ports() {
        let waiting = info(with_port(8080, None));
        let event = ClusterEvent::AssignedPodDelete;
        let holder = NodePod::of(&with_port(8080, None));
        let other = NodePod::of(&with_port(9090, None));
        assert!(NodePorts.hint(&waiting, event, Involved::Pod(&holder)));
        assert!(!NodePorts.hint(&waiting, event, Involved::Pod(&other)));
        let busy = sized("a", "1", "1Gi", &[with_port(8080, None)]);
        let free = sized("b", "1", "1Gi", &[]);
        assert!(!NodePorts.hint(&waiting, ClusterEvent::NodeAdd, Involved::Node(&busy)));
        assert!(NodePorts.hint(&waiting, ClusterEvent::NodeAdd, Involved::Node(&free)));
    }
}
