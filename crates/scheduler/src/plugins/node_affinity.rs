//! NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes by their labels;
//! preferred node affinity scores them by the weights of the terms they match.

use k8s_openapi::api::core::v1::NodeAffinity as Affinity;

use crate::framework::labels::{any_term_matches, term_matches};
use crate::framework::{
    ClusterEvent, CycleState, Involved, NodeInfo, Plugin, PodInfo, Points, Reason, Rejection,
    normalize_scores,
};

/// The plugin's name.
pub const NAME: &str = "NodeAffinity";

/// Filters and scores by node labels.
pub struct NodeAffinity;

fn affinity(pod: &PodInfo) -> Option<&Affinity> {
    pod.pod.spec.as_ref()?.affinity.as_ref()?.node_affinity.as_ref()
}

/// Whether `node` satisfies the pod's node selector and required node affinity.
pub fn required_matches(pod: &PodInfo, node: &NodeInfo) -> bool {
    let empty = Default::default();
    let labels = node.labels().unwrap_or(&empty);
    let selector = pod.pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    if !selector.into_iter().flatten().all(|(k, v)| labels.get(k) == Some(v)) {
        return false;
    }
    match affinity(pod).and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())
    {
        Some(required) => any_term_matches(&required.node_selector_terms, labels, &node.name),
        None => true,
    }
}

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn points(&self) -> Points {
        Points::FILTER | Points::SCORE
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::NodeLabel]
    }

    /// Worth trying again on a node that this filter now lets through.
    fn hint(&self, pod: &PodInfo, _: ClusterEvent, involved: Involved<'_>) -> bool {
        match involved {
            Involved::Node(node) => self.filter(&CycleState::default(), pod, node).is_ok(),
            _ => true,
        }
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        if required_matches(pod, node) {
            Ok(())
        } else {
            Err(Rejection::unresolvable(NAME, Reason::NodeAffinityMismatch))
        }
    }

    /// The sum of the weights of the preferred terms the node matches.
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(preferred) = affinity(pod)
            .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
        else {
            return 0;
        };
        let empty = Default::default();
        let labels = node.labels().unwrap_or(&empty);
        preferred
            .iter()
            .filter(|p| p.weight != 0 && term_matches(&p.preference, labels, &node.name))
            .map(|p| i64::from(p.weight))
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_scores(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::{info, node, pod};

    fn labelled(name: &str, zone: &str) -> NodeInfo {
        node(name, serde_json::json!({"metadata": {"labels": {"zone": zone, "disk": "ssd"}}}), &[])
    }

    #[test]
    fn selector_and_required_terms() {
        let state = CycleState::default();
        let cases = [
            ("no constraint", serde_json::json!({"containers": []}), true),
            (
                "selector matches",
                serde_json::json!({"containers": [], "nodeSelector": {"zone": "a"}}),
                true,
            ),
            (
                "selector differs",
                serde_json::json!({"containers": [], "nodeSelector": {"zone": "b"}}),
                false,
            ),
            (
                "required term matches",
                serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                    {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}}}),
                true,
            ),
            (
                "no required term matches",
                serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]}}}}),
                false,
            ),
        ];
        for (name, spec, fits) in cases {
            let result = NodeAffinity.filter(&state, &info(pod(spec)), &labelled("n", "a"));
            assert_eq!(result.is_ok(), fits, "{name}");
            if !fits {
                assert_eq!(
                    result,
                    Err(Rejection::unresolvable(NAME, Reason::NodeAffinityMismatch))
                );
            }
        }
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let state = CycleState::default();
        let pod = info(pod(serde_json::json!({"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 80, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
                {"weight": 20, "preference": {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}}]}}})));
        let mut scores = vec![
            NodeAffinity.score(&state, &pod, &labelled("x", "a")),
            NodeAffinity.score(&state, &pod, &labelled("y", "b")),
        ];
        assert_eq!(scores, vec![100, 20]);
        NodeAffinity.normalize(&mut scores);
        assert_eq!(scores, vec![100, 20]);
    }
}
