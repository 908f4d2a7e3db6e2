//! Which pods the pod garbage collector removes (upstream's `podgc` passes), as plain
//! functions of the cached pods and nodes.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Node, Pod};

/// Upstream's `--terminated-pod-gc-threshold` default: finished pods kept at most.
pub const TERMINATED_THRESHOLD: usize = 12_500;

/// The taint an administrator puts on a node known to be down for good.
pub const OUT_OF_SERVICE: &str = "node.kubernetes.io/out-of-service";

/// Whether a pod has finished (`Succeeded` or `Failed`).
pub fn is_terminated(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The oldest finished pods beyond `threshold`, oldest first (upstream's
/// `gcTerminated`: by creation time). Pods already being deleted do not count.
pub fn terminated_over<'a>(pods: &[&'a Pod], threshold: usize) -> Vec<&'a Pod> {
    let mut done: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| is_terminated(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    let excess = done.len().saturating_sub(threshold);
    if excess == 0 {
        return Vec::new();
    }
    done.sort_by(|a, b| {
        let at = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        at(a).cmp(&at(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    done.truncate(excess);
    done
}

/// The nodes pods are bound to that the cache does not know (candidates for orphaned pods;
/// each is confirmed gone with the API before its pods go).
pub fn missing_nodes(pods: &[&Pod], known: &HashSet<&str>) -> HashSet<String> {
    pods.iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.as_deref())
        .filter(|n| !n.is_empty() && !known.contains(n))
        .map(str::to_string)
        .collect()
}

/// The pods bound to one of `gone` nodes (upstream's `gcOrphaned`).
pub fn orphaned<'a>(pods: &[&'a Pod], gone: &HashSet<String>) -> Vec<&'a Pod> {
    pods.iter()
        .copied()
        .filter(|p| {
            p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some_and(|n| gone.contains(n))
        })
        .collect()
}

/// Pods being deleted that were never bound to a node: no agent will confirm their
/// deletion (upstream's `gcUnscheduledTerminating`).
pub fn unscheduled_terminating<'a>(pods: &[&'a Pod]) -> Vec<&'a Pod> {
    pods.iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty))
        .collect()
}

/// Pods being deleted on a node that is not ready and tainted out of service: their agent is
/// gone for good (upstream's `gcTerminating`).
pub fn terminating_out_of_service<'a>(
    pods: &[&'a Pod],
    node: impl Fn(&str) -> Option<Node>,
) -> Vec<&'a Pod> {
    pods.iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter(|p| {
            let Some(name) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) else {
                return false;
            };
            node(name).is_some_and(|n| out_of_service(&n))
        })
        .collect()
}

fn out_of_service(node: &Node) -> bool {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let tainted = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .any(|t| t.key == OUT_OF_SERVICE);
    !ready && tainted
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeSpec, PodSpec, PodStatus, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
    use k8s_openapi::jiff::Timestamp;

    fn pod(name: &str, node: Option<&str>, phase: &str, age: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(
                    Timestamp::from_second(1_000_000 - age).expect("in range"),
                )),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: node.map(Into::into), ..PodSpec::default() }),
            status: Some(PodStatus { phase: Some(phase.into()), ..PodStatus::default() }),
        }
    }

    fn deleting(mut p: Pod) -> Pod {
        p.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        p
    }

    #[test]
    fn oldest_finished_pods_over_the_threshold() {
        let pods = [
            pod("new-done", Some("n"), "Succeeded", 10),
            pod("old-done", Some("n"), "Failed", 300),
            pod("mid-done", Some("n"), "Succeeded", 100),
            pod("running", Some("n"), "Running", 1000),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let names = |v: Vec<&Pod>| {
            v.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect::<Vec<_>>()
        };
        assert_eq!(names(terminated_over(&refs, 1)), ["old-done", "mid-done"]);
        assert!(terminated_over(&refs, 3).is_empty());
    }

    #[test]
    fn orphans_and_unscheduled_terminating() {
        let pods = [
            pod("on-gone", Some("gone"), "Running", 1),
            pod("on-here", Some("here"), "Running", 1),
            deleting(pod("never-bound", None, "Pending", 1)),
            pod("pending", None, "Pending", 1),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let missing = missing_nodes(&refs, &["here"].into());
        assert_eq!(missing, ["gone".to_string()].into());
        assert_eq!(orphaned(&refs, &missing).len(), 1);
        let stuck = unscheduled_terminating(&refs);
        assert_eq!(stuck.len(), 1);
        assert_eq!(stuck[0].metadata.name.as_deref(), Some("never-bound"));
    }

    #[test]
    fn terminating_on_an_out_of_service_node() {
        let pods =
            [deleting(pod("a", Some("down"), "Running", 1)), pod("b", Some("down"), "Running", 1)];
        let refs: Vec<&Pod> = pods.iter().collect();
        let down = Node {
            spec: Some(NodeSpec {
                taints: Some(vec![Taint {
                    key: OUT_OF_SERVICE.into(),
                    effect: "NoExecute".into(),
                    ..Taint::default()
                }]),
                ..NodeSpec::default()
            }),
            ..Node::default()
        };
        let found = terminating_out_of_service(&refs, |_| Some(down.clone()));
        assert_eq!(found.len(), 1);
        assert!(terminating_out_of_service(&refs, |_| Some(Node::default())).is_empty());
    }
}
