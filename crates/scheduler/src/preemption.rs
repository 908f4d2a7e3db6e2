//! DefaultPreemption (the PostFilter): when no node fits a pod, find a node where removing
//! pods of lower priority would make it fit, removing as few and as unimportant ones as
//! possible, and honouring PodDisruptionBudgets where it can. A pure function of the cycle's
//! snapshot and diagnosis; the scheduler deletes the victims and nominates the node.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;

use crate::framework::labels::selector_matches;
use crate::framework::{Code, CycleState, Diagnosis, NodeInfo, NodePod, PodInfo, Snapshot};
use crate::profile::Profile;

/// The plugin's name.
pub const NAME: &str = "DefaultPreemption";

/// Candidate nodes tried at most (upstream's `minCandidateNodesAbsolute` bound).
const MAX_CANDIDATES: usize = 100;

/// Where the pod goes once the victims are gone.
#[derive(Debug, Clone)]
pub struct Preemption {
    /// The node to nominate.
    pub node: String,
    /// The pods to delete.
    pub victims: Vec<Arc<NodePod>>,
}

/// A PodDisruptionBudget as preemption reads it.
#[derive(Debug, Clone)]
pub struct Budget {
    namespace: String,
    selector: k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    allowed: i64,
}

impl Budget {
    /// The budget's view, if it selects anything.
    pub fn of(pdb: &PodDisruptionBudget) -> Option<Self> {
        Some(Self {
            namespace: pdb.metadata.namespace.clone()?,
            selector: pdb.spec.as_ref()?.selector.clone()?,
            allowed: i64::from(pdb.status.as_ref().map_or(0, |s| s.disruptions_allowed)),
        })
    }

    fn covers(&self, pod: &NodePod) -> bool {
        self.namespace == pod.namespace && selector_matches(&self.selector, &pod.labels)
    }
}

/// Why a pod may not preempt.
pub fn ineligible(pod: &PodInfo, snapshot: &Snapshot<'_>) -> Option<&'static str> {
    let spec = pod.pod.spec.as_ref()?;
    if spec.preemption_policy.as_deref() == Some("Never") {
        return Some("not eligible due to preemptionPolicy=Never.");
    }
    let nominated = pod.pod.status.as_ref()?.nominated_node_name.as_deref()?;
    let node = snapshot.nodes.iter().find(|n| n.name == nominated)?;
    let waiting = node.pods.values().any(|p| p.terminating && p.priority < pod.priority());
    waiting.then_some("not eligible due to a terminating pod on the nominated node.")
}

/// Finds the node and victims, or says why there are none (the `preemption: ...` message).
pub fn preempt(
    profile: &Profile,
    pod: &PodInfo,
    snapshot: &Snapshot<'_>,
    diagnosis: &Diagnosis,
    budgets: &[Budget],
) -> Result<Preemption, String> {
    if let Some(reason) = ineligible(pod, snapshot) {
        return Err(format!("preemption: {reason}"));
    }
    let priority = pod.priority();
    let resolvable: HashMap<&str, Code> =
        diagnosis.rejections.iter().map(|(n, r)| (n.as_str(), r.code)).collect();
    let mut not_helpful = 0;
    let mut no_victims = 0;
    let mut best: Option<(Score, Preemption)> = None;
    let mut tried = 0;
    for node in &snapshot.nodes {
        match resolvable.get(node.name.as_str()) {
            Some(Code::Unschedulable) if tried < MAX_CANDIDATES => tried += 1,
            Some(Code::Unschedulable) => continue,
            _ => {
                not_helpful += 1;
                continue;
            }
        }
        match victims_on(profile, pod, snapshot, node, priority, budgets) {
            Some((victims, violations)) => {
                let score = Score::of(&victims, violations);
                if best.as_ref().is_none_or(|(b, _)| score < *b) {
                    best = Some((score, Preemption { node: node.name.clone(), victims }));
                }
            }
            None => no_victims += 1,
        }
    }
    if let Some((_, preemption)) = best {
        return Ok(preemption);
    }
    let mut reasons = Vec::new();
    if no_victims > 0 {
        reasons.push(format!("{no_victims} No preemption victims found for incoming pod"));
    }
    if not_helpful > 0 {
        reasons.push(format!("{not_helpful} Preemption is not helpful for scheduling"));
    }
    reasons.sort();
    Err(format!(
        "preemption: 0/{} nodes are available: {}.",
        snapshot.nodes.len(),
        reasons.join(", ")
    ))
}

/// How good a candidate is: fewer budget violations, then a lower highest victim priority,
/// then a lower priority sum, then fewer victims (upstream's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Score {
    violations: usize,
    highest: i64,
    sum: i64,
    count: usize,
}

impl Score {
    fn of(victims: &[Arc<NodePod>], violations: usize) -> Self {
        Self {
            violations,
            highest: victims.iter().map(|v| i64::from(v.priority)).max().unwrap_or(i64::MIN),
            sum: victims.iter().map(|v| i64::from(v.priority)).sum(),
            count: victims.len(),
        }
    }
}

/// The fewest lower-priority pods to remove from `node` for `pod` to fit, and how many
/// budgets removing them breaks; `None` when removing all of them is not enough.
fn victims_on(
    profile: &Profile,
    pod: &PodInfo,
    snapshot: &Snapshot<'_>,
    node: &NodeInfo,
    priority: i32,
    budgets: &[Budget],
) -> Option<(Vec<Arc<NodePod>>, usize)> {
    let mut lower: Vec<Arc<NodePod>> =
        node.pods.values().filter(|p| p.priority < priority && !p.terminating).cloned().collect();
    if lower.is_empty() {
        return None;
    }
    let mut trial = node.clone();
    for victim in &lower {
        trial.remove_pod(&victim.uid);
    }
    if !fits(profile, pod, snapshot, &trial) {
        return None;
    }
    // Reprieve as many as possible, most important first; those whose removal would break a
    // budget are tried before the others.
    let mut allowed: Vec<i64> = budgets.iter().map(|b| b.allowed).collect();
    let breaks = |pod: &NodePod, allowed: &[i64]| {
        budgets.iter().zip(allowed).any(|(b, a)| b.covers(pod) && *a <= 0)
    };
    lower.sort_by(|a, b| b.priority.cmp(&a.priority).then_with(|| a.name.cmp(&b.name)));
    let (violating, rest): (Vec<_>, Vec<_>) = lower.into_iter().partition(|p| breaks(p, &allowed));
    let mut victims = Vec::new();
    let mut violations = 0;
    for (candidate, violates) in
        violating.into_iter().map(|p| (p, true)).chain(rest.into_iter().map(|p| (p, false)))
    {
        trial.add_pod(Arc::clone(&candidate));
        if fits(profile, pod, snapshot, &trial) {
            continue;
        }
        trial.remove_pod(&candidate.uid);
        for (budget, left) in budgets.iter().zip(allowed.iter_mut()) {
            if budget.covers(&candidate) {
                *left -= 1;
            }
        }
        if violates {
            violations += 1;
        }
        victims.push(candidate);
    }
    Some((victims, violations))
}

/// Whether `pod` passes the profile's filters on `node` (PreFilter recomputed over the
/// snapshot with `node` in place of its cached self).
fn fits(profile: &Profile, pod: &PodInfo, snapshot: &Snapshot<'_>, node: &NodeInfo) -> bool {
    let nodes: Vec<&NodeInfo> =
        snapshot.nodes.iter().map(|n| if n.name == node.name { node } else { *n }).collect();
    // Without the index: it describes the cached nodes, not this trial.
    let trial = Snapshot::new(nodes, snapshot.images);
    let mut state = CycleState::default();
    if profile.pre_filter.iter().any(|p| p.pre_filter(&mut state, pod, &trial).is_err()) {
        return false;
    }
    profile.filter.iter().all(|p| p.filter(&state, pod, node).is_ok())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::cycle::{Random, schedule};
    use crate::framework::snapshot::ImageSpread;
    use crate::plugins::fixtures::{info, pod_with, sized};
    use crate::profile::Configuration;

    fn at(priority: i32, cpu: &str, name: &str) -> k8s_openapi::api::core::v1::Pod {
        pod_with(
            serde_json::json!({"name": name, "labels": {"app": name}}),
            serde_json::json!({"priority": priority, "containers": [
                {"name": "c", "resources": {"requests": {"cpu": cpu}}}]}),
        )
    }

    fn profile() -> Profile {
        Configuration::default().profiles().expect("profiles").remove(0)
    }

    #[test]
    fn lower_priority_pods_make_room() {
        let nodes = [
            sized("a", "2", "4Gi", &[at(10, "1", "low1"), at(10, "1", "low2")]),
            sized("b", "2", "4Gi", &[at(1000, "2", "important")]),
        ];
        let images: HashMap<String, ImageSpread> = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let pod = info(at(100, "1", "new"));
        let diagnosis =
            schedule(&profile(), &pod, &snapshot, 0, &mut Random::new(1)).expect_err("full");
        let preemption = preempt(&profile(), &pod, &snapshot, &diagnosis, &[]).expect("a node");
        assert_eq!(preemption.node, "a");
        assert_eq!(preemption.victims.len(), 1, "one victim is enough");
    }

    #[test]
    fn budgets_are_honoured_where_possible() {
        let nodes = [sized("a", "2", "4Gi", &[at(10, "1", "guarded"), at(10, "1", "free")])];
        let images = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let pod = info(at(100, "1", "new"));
        let diagnosis =
            schedule(&profile(), &pod, &snapshot, 0, &mut Random::new(1)).expect_err("full");
        let pdb: PodDisruptionBudget = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "b", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "guarded"}}},
            "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}
        }))
        .expect("a pdb");
        let budgets = [Budget::of(&pdb).expect("a budget")];
        let preemption =
            preempt(&profile(), &pod, &snapshot, &diagnosis, &budgets).expect("a node");
        let names: Vec<_> = preemption.victims.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, vec!["free"]);
    }

    #[test]
    fn nothing_to_preempt_says_why() {
        let nodes = [
            sized("a", "2", "4Gi", &[at(1000, "2", "important")]),
            crate::plugins::fixtures::node(
                "t",
                serde_json::json!({
                "spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]},
                "status": {"allocatable": {"cpu": "8", "memory": "4Gi", "pods": "110"}}}),
                &[],
            ),
        ];
        let images = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let pod = info(at(100, "1", "new"));
        let diagnosis =
            schedule(&profile(), &pod, &snapshot, 0, &mut Random::new(1)).expect_err("full");
        assert_eq!(
            preempt(&profile(), &pod, &snapshot, &diagnosis, &[]).expect_err("none"),
            "preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, \
             1 Preemption is not helpful for scheduling."
        );
    }
}
