//! Why a pod fits no node, and its message in upstream's words:
//! `0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {gpu: true}.`

use std::collections::{BTreeMap, BTreeSet};

use super::{Code, Rejection};

/// What the filters said about each node, for a pod that fits none.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    /// How many nodes the cluster has.
    pub all_nodes: usize,
    /// The refusal of each node that was evaluated.
    pub rejections: Vec<(String, Rejection)>,
    /// What a PreFilter that refused the pod on every node said, if one did.
    pub pre_filter: Option<String>,
    /// What preemption reported (`preemption: ...`), if it ran.
    pub post_filter: Option<String>,
}

impl Diagnosis {
    /// The plugins that refused a node (their events can make the pod fit).
    pub fn plugins(&self) -> BTreeSet<&'static str> {
        self.rejections.iter().map(|(_, r)| r.plugin).collect()
    }

    /// Whether preemption could help on some node.
    pub fn preemption_may_help(&self) -> bool {
        self.rejections.iter().any(|(_, r)| r.code == Code::Unschedulable)
    }

    /// The `FailedScheduling` message: every reason counted over the nodes, sorted as
    /// upstream's `FitError.Error` sorts them (by the counted string).
    /// With no nodes at all it is upstream's `no nodes available to schedule pods`.
    pub fn message(&self) -> String {
        if self.all_nodes == 0 {
            return "no nodes available to schedule pods".to_string();
        }
        let reasons = match &self.pre_filter {
            Some(message) => message.clone(),
            None => histogram(self.rejections.iter().map(|(_, r)| r)).join(", "),
        };
        let mut message = format!("0/{} nodes are available: {reasons}.", self.all_nodes);
        if let Some(post_filter) = &self.post_filter {
            message.push(' ');
            message.push_str(post_filter);
        }
        message
    }
}

/// `N reason` for every distinct reason over `rejections`, sorted as strings.
pub fn histogram<'a>(rejections: impl Iterator<Item = &'a Rejection>) -> Vec<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for rejection in rejections {
        for reason in &rejection.reasons {
            *counts.entry(reason.to_string()).or_default() += 1;
        }
    }
    let mut lines: Vec<String> =
        counts.into_iter().map(|(reason, count)| format!("{count} {reason}")).collect();
    lines.sort();
    lines
}

#[cfg(test)]
mod tests {
    use super::super::Reason;
    use super::*;

    #[test]
    fn message_counts_reasons_over_nodes() {
        let cpu =
            Rejection::unschedulable("NodeResourcesFit", vec![Reason::Insufficient("cpu".into())]);
        let taint = Rejection::unresolvable(
            "TaintToleration",
            Reason::UntoleratedTaint { key: "gpu".into(), value: "true".into() },
        );
        let both = Rejection::unschedulable(
            "NodeResourcesFit",
            vec![Reason::Insufficient("cpu".into()), Reason::Insufficient("memory".into())],
        );
        let diagnosis = Diagnosis {
            all_nodes: 5,
            rejections: vec![
                ("a".into(), cpu.clone()),
                ("b".into(), both),
                ("c".into(), taint.clone()),
                ("d".into(), taint.clone()),
                ("e".into(), taint),
            ],
            ..Diagnosis::default()
        };
        assert_eq!(
            diagnosis.message(),
            "0/5 nodes are available: 1 Insufficient memory, 2 Insufficient cpu, \
             3 node(s) had untolerated taint {gpu: true}."
        );
        assert!(diagnosis.preemption_may_help());
        assert_eq!(
            diagnosis.plugins().into_iter().collect::<Vec<_>>(),
            vec!["NodeResourcesFit", "TaintToleration"]
        );
    }

    #[test]
    fn no_nodes_at_all() {
        let diagnosis = Diagnosis { all_nodes: 0, ..Diagnosis::default() };
        assert_eq!(diagnosis.message(), "no nodes available to schedule pods");
    }
}
