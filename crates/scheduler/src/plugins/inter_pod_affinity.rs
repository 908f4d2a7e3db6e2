//! InterPodAffinity: required pod affinity places a pod only in topology domains (nodes,
//! zones) that already hold pods its terms select; required anti-affinity keeps it out of
//! domains that hold them, and out of domains whose pods' own anti-affinity selects it.
//! Preferred terms, its own and those of the pods already placed, score domains.
//!
//! Terms are resolved once per pod (`framework/affinity.rs`).

use std::collections::HashMap;

use crate::framework::affinity::{PodTerms, Term};
use crate::framework::{
    ClusterEvent, CycleState, Involved, MAX_NODE_SCORE, NodeInfo, NodePod, Plugin, PodInfo, Points,
    Reason, Rejection, Snapshot,
};

/// The plugin's name.
pub const NAME: &str = "InterPodAffinity";
/// The weight an existing pod's required affinity term gives domains when scoring (upstream's
/// default `hardPodAffinityWeight`).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Places pods by the pods around them.
pub struct InterPodAffinity;

/// What the filter reads.
struct Filtering {
    /// Domains where an existing pod's anti-affinity selects the pod: by topology key, the
    /// values with how many such pods (one label lookup per key on each node).
    existing_anti: Vec<(String, HashMap<String, i64>)>,
    /// The pod's required affinity terms, with matching pods per domain value.
    affinity: Vec<(Term, HashMap<String, i64>)>,
    /// The pod's required anti-affinity terms, with matching pods per domain value.
    anti: Vec<(Term, HashMap<String, i64>)>,
    /// No pod anywhere matches the affinity terms, and the pod matches them itself: the first
    /// of its group may go anywhere.
    first_of_group: bool,
}

fn live(node: &NodeInfo) -> impl Iterator<Item = &NodePod> {
    node.pods.values().map(|p| p.as_ref()).filter(|p| !p.terminating)
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn points(&self) -> Points {
        Points::PRE_FILTER | Points::FILTER | Points::PRE_SCORE | Points::SCORE
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeLabel,
            ClusterEvent::AssignedPodAdd,
            ClusterEvent::AssignedPodUpdate,
            ClusterEvent::AssignedPodDelete,
        ]
    }

    /// Worth trying again when a pod comes or goes that one of the pod's required terms
    /// selects, or that has anti-affinity terms of its own (which may have kept the pod out).
    fn hint(&self, pod: &PodInfo, _: ClusterEvent, involved: Involved<'_>) -> bool {
        let Involved::Pod(other) = involved else { return true };
        if other.affinity.as_ref().is_some_and(|t| !t.anti.is_empty()) {
            return true;
        }
        let Some(own) = PodTerms::of(&pod.pod) else { return false };
        own.affinity.iter().chain(&own.anti).any(|t| t.may_match(&other.namespace, &other.labels))
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot<'_>,
    ) -> Result<(), Rejection> {
        let namespace = pod.namespace();
        let labels = pod.pod.metadata.labels.clone().unwrap_or_default();
        let own = PodTerms::of(&pod.pod).unwrap_or_default();
        let mut existing_anti: Vec<(String, HashMap<String, i64>)> = Vec::new();
        for (node, term) in snapshot.anti_terms_selecting(namespace, &labels) {
            if let Some(value) = node.label(&term.key) {
                let at = match existing_anti.iter().position(|(key, _)| *key == term.key) {
                    Some(at) => at,
                    None => {
                        existing_anti.push((term.key.clone(), HashMap::new()));
                        existing_anti.len() - 1
                    }
                };
                *existing_anti[at].1.entry(value.to_string()).or_insert(0) += 1;
            }
        }
        let count = |terms: Vec<Term>| -> Vec<(Term, HashMap<String, i64>)> {
            terms
                .into_iter()
                .map(|term| {
                    let mut domains = HashMap::new();
                    for (_, node) in snapshot.term_matching(&term) {
                        if let Some(value) = node.label(&term.key) {
                            *domains.entry(value.to_string()).or_insert(0) += 1;
                        }
                    }
                    (term, domains)
                })
                .collect()
        };
        let affinity = count(own.affinity);
        let anti = count(own.anti);
        let first_of_group = !affinity.is_empty()
            && affinity.iter().all(|(_, domains)| domains.is_empty())
            && affinity.iter().all(|(term, _)| {
                term.matches(namespace, &labels, snapshot.namespace_labels(namespace))
            });
        if existing_anti.is_empty() && affinity.is_empty() && anti.is_empty() {
            return Ok(());
        }
        state.write(NAME, Filtering { existing_anti, affinity, anti, first_of_group });
        Ok(())
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(filtering) = state.read::<Filtering>(NAME) else { return Ok(()) };
        // Few domains hold such pods: look each up on the node, rather than every node label.
        let refused_by_existing = filtering.existing_anti.iter().any(|(key, values)| {
            node.label(key).and_then(|value| values.get(value)).is_some_and(|n| *n > 0)
        });
        if refused_by_existing {
            return Err(Rejection::unschedulable(
                NAME,
                vec![Reason::ExistingPodsAntiAffinityMismatch],
            ));
        }
        if !filtering.first_of_group {
            for (term, domains) in &filtering.affinity {
                let here = node.label(&term.key).and_then(|v| domains.get(v)).copied().unwrap_or(0);
                if here == 0 {
                    return Err(Rejection::unresolvable(NAME, Reason::PodAffinityMismatch));
                }
            }
        }
        for (term, domains) in &filtering.anti {
            let here = node.label(&term.key).and_then(|v| domains.get(v)).copied().unwrap_or(0);
            if here > 0 {
                return Err(Rejection::unschedulable(NAME, vec![Reason::PodAntiAffinityMismatch]));
            }
        }
        Ok(())
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        snapshot: &Snapshot<'_>,
    ) {
        let namespace = pod.namespace();
        let labels = pod.pod.metadata.labels.clone().unwrap_or_default();
        let own_terms = PodTerms::of(&pod.pod).map(|t| t.preferred).unwrap_or_default();
        // Without preferred terms of its own, only pods with terms that score others can
        // score the pod: none anywhere (as the cache counts them), nothing to walk.
        if own_terms.is_empty() && snapshot.pods_scoring_affinity == Some(0) {
            return;
        }
        let mut domains: HashMap<(String, String), i64> = HashMap::new();
        for node in &snapshot.nodes {
            if own_terms.is_empty() && node.pods_scoring_affinity == 0 {
                continue;
            }
            for existing in live(node) {
                for (weight, term) in &own_terms {
                    if let Some(value) = node.label(&term.key)
                        && term.matches(
                            &existing.namespace,
                            &existing.labels,
                            snapshot.namespace_labels(&existing.namespace),
                        )
                    {
                        *domains.entry((term.key.clone(), value.to_string())).or_insert(0) +=
                            weight;
                    }
                }
                let Some(terms) = existing.affinity.as_deref() else { continue };
                let theirs = terms
                    .preferred
                    .iter()
                    .map(|(w, t)| (*w, t))
                    .chain(terms.affinity.iter().map(|t| (HARD_POD_AFFINITY_WEIGHT, t)));
                for (weight, term) in theirs {
                    if let Some(value) = node.label(&term.key)
                        && term.matches(namespace, &labels, snapshot.namespace_labels(namespace))
                    {
                        *domains.entry((term.key.clone(), value.to_string())).or_insert(0) +=
                            weight;
                    }
                }
            }
        }
        domains.retain(|_, w| *w != 0);
        if !domains.is_empty() {
            state.write(SCORE_KEY, domains);
        }
    }

    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(domains) = state.read::<HashMap<(String, String), i64>>(SCORE_KEY) else {
            return 0;
        };
        node.labels()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| domains.get(&(k.clone(), v.clone())))
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        let (Some(min), Some(max)) = (scores.iter().min().copied(), scores.iter().max().copied())
        else {
            return;
        };
        for score in scores {
            *score = if max > min { MAX_NODE_SCORE * (*score - min) / (max - min) } else { 0 };
        }
    }
}

/// Where the scoring domains are kept in the cycle state.
const SCORE_KEY: &str = "InterPodAffinity/score";

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::framework::snapshot::ImageSpread;
    use crate::plugins::fixtures::{info, node, pod_with};

    fn host(name: &str, pods: &[k8s_openapi::api::core::v1::Pod]) -> NodeInfo {
        node(
            name,
            serde_json::json!({"metadata": {"labels": {"kubernetes.io/hostname": name}}}),
            pods,
        )
    }

    fn labelled(app: &str, affinity: serde_json::Value) -> k8s_openapi::api::core::v1::Pod {
        pod_with(
            serde_json::json!({"labels": {"app": app}}),
            serde_json::json!({"containers": [], "affinity": affinity}),
        )
    }

    fn term(app: &str) -> serde_json::Value {
        serde_json::json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"})
    }

    fn run(pod: &PodInfo, nodes: &[NodeInfo]) -> Vec<Result<(), Rejection>> {
        let images: HashMap<String, ImageSpread> = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let mut state = CycleState::default();
        InterPodAffinity.pre_filter(&mut state, pod, &snapshot).expect("no refusal");
        nodes.iter().map(|n| InterPodAffinity.filter(&state, pod, n)).collect()
    }

    #[test]
    fn anti_affinity_keeps_replicas_apart() {
        let anti = serde_json::json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web")]}});
        let nodes = [host("a", &[labelled("web", anti.clone())]), host("b", &[])];
        let pod = info(labelled("web", anti));
        let results = run(&pod, &nodes);
        // Both the pod's own term and the existing pod's term refuse node a.
        assert_eq!(
            results[0],
            Err(Rejection::unschedulable(NAME, vec![Reason::ExistingPodsAntiAffinityMismatch]))
        );
        assert!(results[1].is_ok());
    }

    #[test]
    fn affinity_follows_the_selected_pods() {
        let affinity = serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("db")]}});
        let nodes = [host("a", &[labelled("db", serde_json::json!({}))]), host("b", &[])];
        let results = run(&info(labelled("web", affinity.clone())), &nodes);
        assert!(results[0].is_ok());
        assert_eq!(results[1], Err(Rejection::unresolvable(NAME, Reason::PodAffinityMismatch)));
        // The first of a group that selects itself may go anywhere.
        let own = serde_json::json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web")]}});
        let empty = [host("a", &[]), host("b", &[])];
        assert!(run(&info(labelled("web", own)), &empty).iter().all(Result::is_ok));
    }

    #[test]
    fn preferred_terms_score() {
        let prefer = serde_json::json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": term("db")}]}});
        let nodes = [host("a", &[labelled("db", serde_json::json!({}))]), host("b", &[])];
        let images: HashMap<String, ImageSpread> = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let pod = info(labelled("web", prefer));
        let mut state = CycleState::default();
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        InterPodAffinity.pre_score(&mut state, &pod, &feasible, &snapshot);
        let mut scores: Vec<i64> =
            nodes.iter().map(|n| InterPodAffinity.score(&state, &pod, n)).collect();
        InterPodAffinity.normalize(&mut scores);
        assert_eq!(scores, vec![100, 0]);
    }
}
