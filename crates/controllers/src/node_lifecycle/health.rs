//! Whether a node still reports: its Lease's renewals (or its status's heartbeats), as this
//! controller observed them on its own clock, never the node's timestamps (so clock skew
//! between hosts cannot make a node look dead or alive). A node that has not reported for the
//! grace period has its conditions set to `Unknown`, as upstream's node lifecycle controller
//! does.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// How long a node may go without reporting (upstream's `--node-monitor-grace-period`).
pub const GRACE: Duration = Duration::from_secs(40);

/// The conditions a node's agent reports, which become `Unknown` when it stops.
const REPORTED: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What was last seen of one node's reports, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The lease's `renewTime` and the Ready condition's `lastHeartbeatTime`, as seen.
    pub marks: (Option<String>, Option<String>),
    /// When they last changed, on this controller's clock.
    pub at: Instant,
}

impl Observed {
    /// Takes in what is seen now; a change is a sign of life.
    pub fn see(
        previous: Option<&Observed>,
        marks: (Option<String>, Option<String>),
        now: Instant,
    ) -> Self {
        match previous {
            Some(seen) if seen.marks == marks => seen.clone(),
            _ => Observed { marks, at: now },
        }
    }

    /// Whether the node went silent for longer than `grace`.
    pub fn silent(&self, now: Instant, grace: Duration) -> bool {
        now.duration_since(self.at) > grace
    }
}

/// The node's conditions with every reported one set to `Unknown` (added if absent), or
/// `None` when they all are already.
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions =
        node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut changed = false;
    for kind in REPORTED {
        match conditions.iter_mut().find(|c| c.type_ == *kind) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".to_string();
                c.reason = Some("NodeStatusUnknown".to_string());
                c.message = Some("Kubelet stopped posting node status.".to_string());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: kind.to_string(),
                    status: "Unknown".to_string(),
                    reason: Some("NodeStatusNeverUpdated".to_string()),
                    message: Some("Kubelet never posted node status.".to_string()),
                    last_heartbeat_time: Some(Time(now)),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

/// Whether the node's `Ready` condition is `Unknown` (it stopped reporting).
pub fn is_unknown(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "Unknown")
}

/// Whether `pod` still says it is Ready, so that a node that stopped reporting must have it
/// marked not ready (upstream's `MarkPodsNotReady`): no service should send it traffic on the
/// word of a node that can no longer speak for it.
pub fn still_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "False")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_counts_from_the_last_change_seen() {
        let start = Instant::now();
        let marks = |renew: &str| (Some(renew.to_string()), None);
        let first = Observed::see(None, marks("t1"), start);
        let same = Observed::see(Some(&first), marks("t1"), start + Duration::from_secs(30));
        assert_eq!(same.at, start);
        assert!(same.silent(start + Duration::from_secs(41), GRACE));
        let renewed = Observed::see(Some(&same), marks("t2"), start + Duration::from_secs(41));
        assert!(!renewed.silent(start + Duration::from_secs(60), GRACE));
    }

    #[test]
    fn silent_nodes_become_unknown_once() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                {"type": "MemoryPressure", "status": "False"}]}
        }))
        .expect("a node");
        let now = Timestamp::now();
        let conditions = unknown_conditions(&node, now).expect("a change");
        let ready = conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(conditions.len(), 4, "the missing ones are added");
        let mut settled = node.clone();
        settled.status.as_mut().expect("status").conditions = Some(conditions);
        assert_eq!(unknown_conditions(&settled, now), None);
    }

    #[test]
    fn only_pods_still_ready_are_marked() {
        let pod = |conditions: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"status": {"conditions": conditions}}))
                .expect("a pod")
        };
        assert!(still_ready(&pod(serde_json::json!([{"type": "Ready", "status": "True"}]))));
        assert!(!still_ready(&pod(serde_json::json!([{"type": "Ready", "status": "False"}]))));
        assert!(!still_ready(&pod(
            serde_json::json!([{"type": "PodScheduled", "status": "True"}])
        )));
        let node: Node = serde_json::from_value(serde_json::json!({"status": {"conditions": [
            {"type": "Ready", "status": "Unknown"}]}}))
        .expect("a node");
        assert!(is_unknown(&node));
        assert!(!is_unknown(&Node::default()));
    }
}
