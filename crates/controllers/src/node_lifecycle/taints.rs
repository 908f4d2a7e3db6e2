//! The taints a node's conditions call for (upstream's `TaintNodesByCondition` and its
//! `NoExecute` tainting): `NoSchedule` taints keep new pods off a node that is not ready,
//! unreachable, under pressure or cordoned; `NoExecute` taints on a node that is not ready or
//! unreachable evict the pods that do not tolerate them.

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The node is not ready (`Ready=False`).
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The node stopped reporting (`Ready=Unknown`).
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The node is cordoned.
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Condition types that taint a node when `True`, with their taint's key.
const PRESSURE: &[(&str, &str)] = &[
    ("MemoryPressure", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "node.kubernetes.io/disk-pressure"),
    ("PIDPressure", "node.kubernetes.io/pid-pressure"),
    ("NetworkUnavailable", "node.kubernetes.io/network-unavailable"),
];

/// The status of one of the node's conditions.
pub fn condition<'a>(node: &'a Node, kind: &str) -> Option<&'a str> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.as_str())
}

/// Whether this controller manages a taint (it adds and removes only these).
fn managed(taint: &Taint) -> bool {
    let keys = [NOT_READY, UNREACHABLE, UNSCHEDULABLE];
    keys.contains(&taint.key.as_str()) || PRESSURE.iter().any(|(_, key)| *key == taint.key)
}

/// The managed taints the node's state calls for: `(key, effect)`.
pub fn wanted(node: &Node) -> Vec<(&'static str, &'static str)> {
    let mut wanted = Vec::new();
    match condition(node, "Ready") {
        Some("True") => {}
        Some("False") => wanted.extend([(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]),
        Some(_) => wanted.extend([(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")]),
        // A node whose agent never reported keeps new pods off (as the taint admission put
        // on it at creation); it becomes unreachable once the grace period passes.
        None => wanted.push((NOT_READY, "NoSchedule")),
    }
    for (kind, key) in PRESSURE {
        if condition(node, kind) == Some("True") {
            wanted.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        wanted.push((UNSCHEDULABLE, "NoSchedule"));
    }
    wanted
}

/// The node's taints with the managed ones made what its state calls for, or `None` when they
/// already are. Other taints are kept as they are; a new `NoExecute` taint records when it
/// was added (evictions count from then).
pub fn reconciled(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let wanted = wanted(node);
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| !managed(t) || wanted.iter().any(|(k, e)| t.key == *k && t.effect == *e))
        .cloned()
        .collect();
    for (key, effect) in &wanted {
        if !next.iter().any(|t| t.key == *key && t.effect == *effect) {
            next.push(Taint {
                key: key.to_string(),
                effect: effect.to_string(),
                time_added: (*effect == "NoExecute").then_some(Time(now)),
                value: None,
            });
        }
    }
    (next != current).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(ready: Option<&str>, extra: serde_json::Value) -> Node {
        let mut conditions = vec![];
        if let Some(ready) = ready {
            conditions.push(serde_json::json!({"type": "Ready", "status": ready}));
        }
        if let Some(more) = extra.get("conditions").and_then(|c| c.as_array()) {
            conditions.extend(more.iter().cloned());
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "spec": extra.get("spec").cloned().unwrap_or(serde_json::json!({})),
            "status": {"conditions": conditions},
        }))
        .expect("a node")
    }

    fn keys(taints: &[Taint]) -> Vec<(String, String)> {
        taints.iter().map(|t| (t.key.clone(), t.effect.clone())).collect()
    }

    #[test]
    fn conditions_call_for_taints() {
        let now = Timestamp::now();
        let cases = [
            ("ready", node(Some("True"), serde_json::json!({})), vec![]),
            ("never reported", node(None, serde_json::json!({})), vec![(NOT_READY, "NoSchedule")]),
            (
                "not ready",
                node(Some("False"), serde_json::json!({})),
                vec![(NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")],
            ),
            (
                "unknown",
                node(Some("Unknown"), serde_json::json!({})),
                vec![(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")],
            ),
            (
                "memory pressure and cordoned",
                node(
                    Some("True"),
                    serde_json::json!({
                    "conditions": [{"type": "MemoryPressure", "status": "True"}],
                    "spec": {"unschedulable": true}}),
                ),
                vec![
                    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
                    (UNSCHEDULABLE, "NoSchedule"),
                ],
            ),
        ];
        for (name, node, want) in cases {
            let got = reconciled(&node, now).unwrap_or_default();
            let want: Vec<_> = want.iter().map(|(k, e)| (k.to_string(), e.to_string())).collect();
            assert_eq!(keys(&got), want, "{name}");
        }
    }

    #[test]
    fn other_taints_stay_and_stale_ones_go() {
        let now = Timestamp::now();
        let tainted = node(
            Some("True"),
            serde_json::json!({"spec": {"taints": [
            {"key": "gpu", "value": "true", "effect": "NoSchedule"},
            {"key": NOT_READY, "effect": "NoSchedule"}]}}),
        );
        let next = reconciled(&tainted, now).expect("a change");
        assert_eq!(keys(&next), vec![("gpu".to_string(), "NoSchedule".to_string())]);
        let settled = node(
            Some("True"),
            serde_json::json!({"spec": {"taints": [
            {"key": "gpu", "value": "true", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(reconciled(&settled, now), None);
    }

    #[test]
    fn no_execute_taints_record_when() {
        let now = Timestamp::now();
        let next = reconciled(&node(Some("False"), serde_json::json!({})), now).expect("a change");
        let no_execute = next.iter().find(|t| t.effect == "NoExecute").expect("NoExecute");
        assert_eq!(no_execute.time_added, Some(Time(now)));
    }
}
