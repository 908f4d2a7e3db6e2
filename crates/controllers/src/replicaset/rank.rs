//! Which pods a scale-down deletes first (upstream's `ActivePodsWithRanks`): the least
//! valuable first, by these rules in order:
//! 1. not yet on a node before on one;
//! 2. Pending before Unknown before Running;
//! 3. not ready before ready;
//! 4. a lower `controller.kubernetes.io/pod-deletion-cost` before a higher;
//! 5. more pods of the same owner on its node before fewer (spreads what stays);
//! 6. ready for less time before longer (on a log scale, upstream's LogarithmicScaleDown);
//! 7. more container restarts before fewer;
//! 8. newer before older (on a log scale).

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::status::{is_ready, ready_since};

/// `pods` ordered from the first to delete to the last.
pub fn deletion_order(pods: &[Arc<Pod>], now: Timestamp) -> Vec<Arc<Pod>> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for pod in pods {
        if let Some(node) = node(pod) {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |pod: &Pod| node(pod).and_then(|n| per_node.get(n)).copied().unwrap_or(0);
    let mut ordered: Vec<Arc<Pod>> = pods.to_vec();
    ordered.sort_by(|a, b| compare(a, rank(a), b, rank(b), now));
    ordered
}

fn node(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

fn phase_rank(pod: &Pod) -> u8 {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Pending") | None => 0,
        Some("Unknown") => 1,
        Some("Running") => 2,
        Some(_) => 3,
    }
}

/// The pod's deletion cost (0 when unset or not a number).
fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.iter().map(|c| c.restart_count).max())
        .unwrap_or(0)
}

/// A duration's bucket on a log-2 scale of seconds, so that pods of about the same age rank
/// alike.
fn log_bucket(since: Option<Timestamp>, now: Timestamp) -> i64 {
    let seconds = since.map_or(0, |t| now.duration_since(t).as_secs().max(0));
    if seconds <= 0 { -1 } else { i64::from(63 - seconds.leading_zeros()) }
}

/// Whether `a` goes before `b` (is deleted first).
fn compare(a: &Pod, rank_a: usize, b: &Pod, rank_b: usize, now: Timestamp) -> Ordering {
    // 1. Unassigned first.
    node(a)
        .is_some()
        .cmp(&node(b).is_some())
        // 2. Pending < Unknown < Running.
        .then_with(|| phase_rank(a).cmp(&phase_rank(b)))
        // 3. Not ready first.
        .then_with(|| is_ready(a).cmp(&is_ready(b)))
        // 4. Cheaper to delete first.
        .then_with(|| deletion_cost(a).cmp(&deletion_cost(b)))
        // 5. More colocated first.
        .then_with(|| rank_b.cmp(&rank_a))
        // 6. Ready for less time first.
        .then_with(|| {
            if is_ready(a) && is_ready(b) {
                log_bucket(ready_since(a), now).cmp(&log_bucket(ready_since(b), now))
            } else {
                Ordering::Equal
            }
        })
        // 7. More restarts first.
        .then_with(|| restarts(b).cmp(&restarts(a)))
        // 8. Newer first.
        .then_with(|| {
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            log_bucket(created(a), now).cmp(&log_bucket(created(b), now))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    fn pod(name: &str, node: Option<&str>, phase: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(PodSpec { node_name: node.map(str::to_string), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(Timestamp::UNIX_EPOCH)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.name.as_deref().unwrap_or_default()).collect()
    }

    #[test]
    fn the_least_valuable_pods_go_first() {
        let pods = [
            pod("running-ready", Some("n1"), "Running", true),
            pod("unassigned", None, "Pending", false),
            pod("running-unready", Some("n2"), "Running", false),
            pod("pending", Some("n3"), "Pending", false),
        ];
        let order = deletion_order(&pods, Timestamp::now());
        assert_eq!(names(&order), ["unassigned", "pending", "running-unready", "running-ready"]);
    }

    #[test]
    fn crowded_nodes_lose_pods_first() {
        let pods = [
            pod("alone", Some("n1"), "Running", true),
            pod("crowded-a", Some("n2"), "Running", true),
            pod("crowded-b", Some("n2"), "Running", true),
        ];
        let order = deletion_order(&pods, Timestamp::now());
        assert_eq!(names(&order)[2], "alone");
    }
}
