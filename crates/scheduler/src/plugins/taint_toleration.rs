//! TaintToleration: a node's `NoSchedule` and `NoExecute` taints refuse pods that do not
//! tolerate them; its `PreferNoSchedule` taints lower the score of such pods.

use k8s_openapi::api::core::v1::Toleration;

use crate::framework::labels::{tolerated, tolerates};
use crate::framework::{
    ClusterEvent, CycleState, Involved, NodeInfo, Plugin, PodInfo, Points, Reason, Rejection,
    normalize_scores,
};

/// The plugin's name.
pub const NAME: &str = "TaintToleration";

/// Filters by hard taints, scores by soft ones.
pub struct TaintToleration;

fn tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default()
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn points(&self) -> Points {
        Points::FILTER | Points::SCORE
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::NodeTaint]
    }

    /// Worth trying again on a node that this filter now lets through.
    fn hint(&self, pod: &PodInfo, _: ClusterEvent, involved: Involved<'_>) -> bool {
        match involved {
            Involved::Node(node) => self.filter(&CycleState::default(), pod, node).is_ok(),
            _ => true,
        }
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let tolerations = tolerations(pod);
        let untolerated = node.taints().iter().find(|taint| {
            matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute")
                && !tolerated(tolerations, taint)
        });
        match untolerated {
            None => Ok(()),
            Some(taint) => Err(Rejection::unresolvable(
                NAME,
                Reason::UntoleratedTaint {
                    key: taint.key.clone(),
                    value: taint.value.clone().unwrap_or_default(),
                },
            )),
        }
    }

    /// How many `PreferNoSchedule` taints the pod does not tolerate (fewer is better).
    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let tolerations = tolerations(pod);
        let soft = |t: &&Toleration| {
            t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule")
        };
        let count = node
            .taints()
            .iter()
            .filter(|taint| {
                taint.effect == "PreferNoSchedule"
                    && !tolerations.iter().filter(soft).any(|t| tolerates(t, taint))
            })
            .count();
        i64::try_from(count).unwrap_or(i64::MAX)
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_scores(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::{info, node, pod};

    fn tainted(effect: &str) -> NodeInfo {
        node(
            "t",
            serde_json::json!({"spec": {"taints": [{"key": "gpu", "value": "true", "effect": effect}]}}),
            &[],
        )
    }

    #[test]
    fn hard_taints_refuse() {
        let state = CycleState::default();
        let plain = info(pod(serde_json::json!({"containers": []})));
        let tolerant = info(pod(serde_json::json!({"containers": [],
            "tolerations": [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]})));
        let refused = Err(Rejection::unresolvable(
            NAME,
            Reason::UntoleratedTaint { key: "gpu".into(), value: "true".into() },
        ));
        assert_eq!(TaintToleration.filter(&state, &plain, &tainted("NoSchedule")), refused);
        assert_eq!(TaintToleration.filter(&state, &plain, &tainted("NoExecute")), refused);
        assert!(TaintToleration.filter(&state, &plain, &tainted("PreferNoSchedule")).is_ok());
        assert!(TaintToleration.filter(&state, &tolerant, &tainted("NoSchedule")).is_ok());
    }

    #[test]
    fn soft_taints_lower_the_score() {
        let state = CycleState::default();
        let plain = info(pod(serde_json::json!({"containers": []})));
        let mut scores = vec![
            TaintToleration.score(&state, &plain, &tainted("PreferNoSchedule")),
            TaintToleration.score(&state, &plain, &node("clean", serde_json::json!({}), &[])),
        ];
        assert_eq!(scores, vec![1, 0]);
        TaintToleration.normalize(&mut scores);
        assert_eq!(scores, vec![0, 100]);
    }
}
