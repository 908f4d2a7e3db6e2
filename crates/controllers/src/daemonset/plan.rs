//! One pass of the DaemonSet controller as a plain function (upstream's `manage`,
//! `rollingUpdate` and `updateDaemonSetStatus`): a pod for each node that should run one, none
//! on the others, failed and duplicate pods removed, old revisions replaced within
//! `maxUnavailable` (or beside new ones within `maxSurge`), and the status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;

use super::placement::{self, REVISION_HASH};
use crate::replicaset::status::{is_available, is_ready};
use crate::runtime::int_or_percent::scaled;

/// At most this many pods are created or deleted in one pass.
pub const BURST: usize = 500;

/// What one pass does.
#[derive(Debug, Default)]
pub struct Plan {
    /// Nodes to create a pod on.
    pub create: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<Arc<Pod>>,
    /// Failed pods among the deletions, for `FailedDaemonPod` events.
    pub failed: Vec<Arc<Pod>>,
    /// The status.
    pub status: DaemonSetStatus,
    /// When a ready pod turns available, if one is waiting.
    pub requeue: Option<Duration>,
}

/// The node a daemon pod is on, or is pinned to while unscheduled.
pub fn node_of(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(node) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(node.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|f| {
        (f.key == "metadata.name" && f.operator == "In")
            .then(|| f.values.as_ref()?.first().cloned())?
    })
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(REVISION_HASH).map(String::as_str)
}

fn is_failed(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

/// Decides a pass over `ds` (of template revision `hash`), its `pods`, and the `nodes`.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    hash: &str,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    let spec = ds.spec.clone().unwrap_or_default();
    let min_ready =
        Duration::from_secs(u64::try_from(spec.min_ready_seconds.unwrap_or(0)).unwrap_or(0));
    let available = |p: &Pod| is_available(p, min_ready, now);
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        if let Some(node) = node_of(pod) {
            by_node.entry(node).or_default().push(Arc::clone(pod));
        }
    }
    let deleting_on: BTreeMap<String, usize> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter_map(|p| node_of(p))
        .fold(BTreeMap::new(), |mut m, n| {
            *m.entry(n).or_default() += 1;
            m
        });
    let mut status = DaemonSetStatus {
        observed_generation: ds.metadata.generation,
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        ..DaemonSetStatus::default()
    };
    // Nodes that should run a pod, with the live pods there.
    let mut running: Vec<(String, Vec<Arc<Pod>>)> = Vec::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let fit = placement::fit(ds, node);
        let mut here = by_node.remove(&name).unwrap_or_default();
        if fit.should_run {
            status.desired_number_scheduled += 1;
        }
        if !here.is_empty() {
            if fit.should_run {
                status.current_number_scheduled += 1;
            } else {
                status.number_misscheduled += 1;
            }
        }
        if !fit.may_stay {
            plan.delete.append(&mut here);
            continue;
        }
        // Failed pods go (a new one follows on the next pass).
        let (failed, alive): (Vec<_>, Vec<_>) = here.into_iter().partition(|p| is_failed(p));
        plan.failed.extend(failed.iter().cloned());
        plan.delete.extend(failed);
        if !fit.should_run {
            continue;
        }
        if alive.is_empty() {
            if deleting_on.get(&name).copied().unwrap_or(0) == 0 {
                plan.create.push(name);
            }
            continue;
        }
        running.push((name, alive));
    }
    // Pods on nodes that are gone.
    for (_, mut gone) in by_node {
        plan.delete.append(&mut gone);
    }
    // Per node: a pod of each revision at most; extras go, the oldest stays.
    for (_, pods) in &mut running {
        pods.sort_by_key(|p| {
            (p.metadata.creation_timestamp.as_ref().map(|t| t.0), p.metadata.name.clone())
        });
        let mut kept_new = false;
        let mut kept_old = false;
        pods.retain(|p| {
            let slot = if hash_of(p) == Some(hash) { &mut kept_new } else { &mut kept_old };
            if *slot {
                plan.delete.push(Arc::clone(p));
                false
            } else {
                *slot = true;
                true
            }
        });
    }
    let desired = status.desired_number_scheduled;
    let rolling =
        spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate")
            == "RollingUpdate";
    if rolling {
        let update = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.clone())
            .unwrap_or_default();
        let max_surge =
            update.max_surge.as_ref().map_or(0, |v| scaled(v, desired, true).unwrap_or(0));
        let max_unavailable =
            update.max_unavailable.as_ref().map_or(1, |v| scaled(v, desired, true).unwrap_or(1));
        roll(
            &mut plan,
            &running,
            hash,
            available,
            max_surge,
            max_unavailable.max(if max_surge == 0 { 1 } else { 0 }),
        );
    }
    // Status over the pods that stay.
    for (_, pods) in &running {
        let current: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| !plan.delete.iter().any(|d| d.metadata.uid == p.metadata.uid))
            .collect();
        let newest = current.iter().find(|p| hash_of(p) == Some(hash)).or(current.first());
        if let Some(pod) = newest
            && is_ready(pod)
        {
            status.number_ready += 1;
            if available(pod) {
                status.number_available = Some(status.number_available.unwrap_or(0) + 1);
            } else if let Some(since) = crate::replicaset::status::ready_since(pod) {
                let waited = Duration::try_from(now.duration_since(since)).unwrap_or_default();
                let left = min_ready.saturating_sub(waited) + Duration::from_secs(1);
                plan.requeue = Some(plan.requeue.map_or(left, |r| r.min(left)));
            }
        }
        if current.iter().any(|p| hash_of(p) == Some(hash)) {
            status.updated_number_scheduled =
                Some(status.updated_number_scheduled.unwrap_or(0) + 1);
        }
    }
    let unavailable = desired - status.number_available.unwrap_or(0);
    status.number_unavailable = (unavailable > 0).then_some(unavailable);
    plan.create.truncate(BURST);
    plan.delete.truncate(BURST);
    plan.status = status;
    plan
}

/// Replaces old pods (upstream's `rollingUpdate`): without surge, old pods are deleted while
/// fewer than `max_unavailable` nodes lack an available pod (an unavailable old pod goes at
/// once); with surge, a new pod starts beside an old one on up to `max_surge` nodes, and the
/// old one goes once the new one is available.
fn roll(
    plan: &mut Plan,
    running: &[(String, Vec<Arc<Pod>>)],
    hash: &str,
    available: impl Fn(&Pod) -> bool,
    max_surge: i32,
    max_unavailable: i32,
) {
    let mut unavailable = 0;
    let mut candidates = Vec::new();
    let mut surging = 0;
    let mut want_surge = Vec::new();
    for (node, pods) in running {
        let new = pods.iter().find(|p| hash_of(p) == Some(hash));
        let old = pods.iter().find(|p| hash_of(p) != Some(hash));
        match (old, new) {
            (None, Some(new)) if !available(new) => unavailable += 1,
            (None, _) => {}
            (Some(old), None) if max_surge == 0 => {
                if available(old) {
                    candidates.push(Arc::clone(old));
                } else {
                    unavailable += 1;
                    plan.delete.push(Arc::clone(old));
                }
            }
            (Some(old), None) => {
                if available(old) {
                    want_surge.push(node.clone());
                } else {
                    // An old pod that is not available is replaced at once.
                    plan.create.push(node.clone());
                    surging += 1;
                }
            }
            (Some(old), Some(new)) => {
                if available(new) {
                    plan.delete.push(Arc::clone(old));
                } else {
                    surging += 1;
                }
            }
        }
    }
    if max_surge == 0 {
        let room = usize::try_from(max_unavailable - unavailable).unwrap_or(0);
        plan.delete.extend(candidates.into_iter().take(room));
    } else {
        let room = usize::try_from(max_surge - surging).unwrap_or(0);
        plan.create.extend(want_surge.into_iter().take(room));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet,
    };
    use k8s_openapi::api::core::v1::{PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    fn node(name: &str) -> Arc<Node> {
        Arc::new(Node {
            metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
            ..Node::default()
        })
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([(REVISION_HASH.to_string(), hash.to_string())].into()),
                creation_timestamp: Some(Time(at("2026-01-01T00:00:00Z"))),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: Some(node.into()), ..PodSpec::default() }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(at("2026-01-01T00:00:00Z"))),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    fn ds(surge: i32, unavailable: i32) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                generation: Some(2),
                ..ObjectMeta::default()
            },
            spec: Some(DaemonSetSpec {
                update_strategy: Some(DaemonSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: Some(RollingUpdateDaemonSet {
                        max_surge: Some(IntOrString::Int(surge)),
                        max_unavailable: Some(IntOrString::Int(unavailable)),
                    }),
                }),
                ..DaemonSetSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn every_node_gets_one_pod() {
        let nodes = [node("a"), node("b"), node("c")];
        let pods = [pod("p1", "a", "new", true), pod("p2", "a", "new", true)];
        let plan = plan(&ds(0, 1), &nodes, &pods, "new", at("2026-01-01T00:10:00Z"));
        assert_eq!(plan.create, ["b", "c"]);
        assert_eq!(plan.delete.len(), 1, "the duplicate on a goes");
        assert_eq!(plan.status.desired_number_scheduled, 3);
        assert_eq!(plan.status.current_number_scheduled, 1);
        assert_eq!(plan.status.number_unavailable, Some(2));
    }

    #[test]
    fn a_rolling_update_keeps_within_max_unavailable() {
        let nodes = [node("a"), node("b"), node("c")];
        let pods =
            [pod("p1", "a", "old", true), pod("p2", "b", "old", true), pod("p3", "c", "old", true)];
        let first = plan(&ds(0, 1), &nodes, &pods, "new", at("2026-01-01T00:10:00Z"));
        assert_eq!(first.delete.len(), 1);
        assert!(first.create.is_empty());
        // Node a's new pod is not ready yet: nothing more goes.
        let pods = [
            pod("n1", "a", "new", false),
            pod("p2", "b", "old", true),
            pod("p3", "c", "old", true),
        ];
        let second = plan(&ds(0, 1), &nodes, &pods, "new", at("2026-01-01T00:10:00Z"));
        assert!(second.delete.is_empty());
        assert_eq!(second.status.updated_number_scheduled, Some(1));
    }

    #[test]
    fn surge_starts_new_pods_beside_old_ones() {
        let nodes = [node("a"), node("b")];
        let pods = [pod("p1", "a", "old", true), pod("p2", "b", "old", true)];
        let first = plan(&ds(1, 0), &nodes, &pods, "new", at("2026-01-01T00:10:00Z"));
        assert_eq!(first.create, ["a"]);
        assert!(first.delete.is_empty());
        let pods =
            [pod("p1", "a", "old", true), pod("n1", "a", "new", true), pod("p2", "b", "old", true)];
        let second = plan(&ds(1, 0), &nodes, &pods, "new", at("2026-01-01T00:10:00Z"));
        assert_eq!(
            second.delete.iter().filter_map(|p| p.metadata.name.as_deref()).collect::<Vec<_>>(),
            ["p1"]
        );
        assert_eq!(second.create, ["b"]);
    }
}
