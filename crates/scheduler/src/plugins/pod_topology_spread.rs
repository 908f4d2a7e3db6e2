//! PodTopologySpread: a pod's `topologySpreadConstraints` keep the pods its selector matches
//! spread over topology domains (zones, hosts). `DoNotSchedule` constraints filter: placing
//! the pod in a domain must not make it exceed the least populated domain by more than
//! `maxSkew` (with `minDomains`, missing domains count as empty). `ScheduleAnyway`
//! constraints score: less populated domains are better. `nodeAffinityPolicy` (default
//! Honor) and `nodeTaintsPolicy` (default Ignore) choose which nodes' domains count.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::TopologySpreadConstraint;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::node_affinity::required_matches;
use crate::framework::labels::{selector_matches, tolerated};
use crate::framework::{
    ClusterEvent, CycleState, Involved, MAX_NODE_SCORE, NodeInfo, NodePod, Plugin, PodInfo, Points,
    Reason, Rejection, Snapshot,
};

/// The plugin's name.
pub const NAME: &str = "PodTopologySpread";

/// Spreads pods over topology domains.
pub struct PodTopologySpread {
    /// The constraints of a pod that has none of its own (counted by its default selector).
    defaults: Vec<TopologySpreadConstraint>,
    /// Whether `defaults` are upstream's built-in ones: then a node lacking a topology label
    /// still counts for the constraints whose labels it has.
    system_defaulted: bool,
}

impl Default for PodTopologySpread {
    /// Upstream's system defaults: spread over hosts (`maxSkew` 3) and zones (`maxSkew` 5),
    /// both `ScheduleAnyway`.
    fn default() -> Self {
        let soft = |key: &str, max_skew| TopologySpreadConstraint {
            max_skew,
            topology_key: key.to_string(),
            when_unsatisfiable: "ScheduleAnyway".to_string(),
            ..Default::default()
        };
        Self {
            defaults: vec![
                soft("kubernetes.io/hostname", 3),
                soft("topology.kubernetes.io/zone", 5),
            ],
            system_defaulted: true,
        }
    }
}

impl PodTopologySpread {
    /// The plugin with `defaultingType: List` and these default constraints (none: pods
    /// without constraints are not spread).
    pub fn with_defaults(defaults: Vec<TopologySpreadConstraint>) -> Self {
        Self { defaults, system_defaulted: false }
    }

    /// The pod's constraints of kind `when`, and whether a node must carry every topology
    /// label to count.
    fn constraints(&self, pod: &PodInfo, when: &str) -> (Vec<Constraint>, bool) {
        let own = own_constraints(pod);
        if !own.is_empty() {
            return (constraints(own, pod, when, None), true);
        }
        match &pod.default_spread {
            Some(selector) => {
                (constraints(&self.defaults, pod, when, Some(selector)), !self.system_defaulted)
            }
            None => (Vec::new(), true),
        }
    }
}

/// The pod's own `topologySpreadConstraints`.
fn own_constraints(pod: &PodInfo) -> &[TopologySpreadConstraint] {
    pod.pod.spec.as_ref().and_then(|s| s.topology_spread_constraints.as_deref()).unwrap_or_default()
}

/// One constraint, ready to count with.
struct Constraint {
    max_skew: i64,
    key: String,
    selector: LabelSelector,
    min_domains: Option<i64>,
    honor_affinity: bool,
    honor_taints: bool,
}

/// Pods matching each constraint, per domain value.
struct Counts {
    constraints: Vec<Constraint>,
    /// Per constraint: domain value → matching pods, for the domains that hold any.
    domains: Vec<HashMap<String, i64>>,
    /// Per constraint: how many domains count, with or without matching pods.
    domain_counts: Vec<usize>,
    /// Whether the incoming pod matches each constraint's own selector.
    self_match: Vec<bool>,
    /// Whether a node lacking any constraint's label is left out (and scores nothing).
    require_all: bool,
    /// Per constraint: the least populated domain's count (0 below `minDomains`).
    least: Vec<i64>,
}

/// `list`'s constraints of kind `when`, counting by `selector` where given (default
/// constraints), else by each constraint's own.
fn constraints(
    list: &[TopologySpreadConstraint],
    pod: &PodInfo,
    when: &str,
    selector: Option<&LabelSelector>,
) -> Vec<Constraint> {
    let labels = pod.pod.metadata.labels.clone().unwrap_or_default();
    list.iter()
        .filter(|c| c.when_unsatisfiable == when)
        .map(|c| {
            let mut selector =
                selector.cloned().unwrap_or_else(|| c.label_selector.clone().unwrap_or_default());
            // matchLabelKeys: the pod's own values of those keys join the selector.
            for key in c.match_label_keys.iter().flatten() {
                if let Some(value) = labels.get(key) {
                    selector
                        .match_labels
                        .get_or_insert_with(Default::default)
                        .insert(key.clone(), value.clone());
                }
            }
            Constraint {
                max_skew: i64::from(c.max_skew),
                key: c.topology_key.clone(),
                selector,
                min_domains: c.min_domains.map(i64::from),
                honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

/// Whether the pod has a node selector or required node affinity (which the
/// `nodeAffinityPolicy: Honor` of its constraints then checks on each node).
fn has_node_constraints(pod: &PodInfo) -> bool {
    let Some(spec) = pod.pod.spec.as_ref() else { return false };
    spec.node_selector.as_ref().is_some_and(|s| !s.is_empty())
        || spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .is_some_and(|a| a.required_during_scheduling_ignored_during_execution.is_some())
}

/// The node's domain for `constraint`, if the node counts for it and the incoming pod
/// (`node_constraints`: whether the pod has a node selector or required affinity).
fn counted_domain<'n>(
    constraint: &Constraint,
    pod: &PodInfo,
    node_constraints: bool,
    node: &'n NodeInfo,
) -> Option<&'n str> {
    let value = node.label(&constraint.key)?;
    if constraint.honor_affinity && node_constraints && !required_matches(pod, node) {
        return None;
    }
    if constraint.honor_taints {
        let tolerations =
            pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
        let refused = node.taints().iter().any(|t| {
            matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerated(tolerations, t)
        });
        if refused {
            return None;
        }
    }
    Some(value)
}

fn matches(constraint: &Constraint, namespace: &str, pod: &NodePod) -> bool {
    !pod.terminating
        && pod.namespace == namespace
        && selector_matches(&constraint.selector, &pod.labels)
}

/// Counts the matching pods per domain over the nodes that count. Only domains that hold
/// matching pods are kept; the others are counted (from the cache's label values when every
/// node with the label counts, else by walking the nodes) so that the least populated domain
/// is known without a map of every host.
fn count<'a>(
    (constraints, require_all): (Vec<Constraint>, bool),
    pod: &PodInfo,
    snapshot: &Snapshot<'a>,
) -> Option<Counts> {
    if constraints.is_empty() {
        return None;
    }
    let namespace = pod.namespace();
    let own = pod.pod.metadata.labels.clone().unwrap_or_default();
    let node_constraints = has_node_constraints(pod);
    // With one constraint, a node with its label has every label.
    let check_all = require_all && constraints.len() > 1;
    let counted = |constraint: &Constraint, node: &'a NodeInfo| -> Option<&'a str> {
        if check_all && !has_every_label(&constraints, node) {
            return None;
        }
        counted_domain(constraint, pod, node_constraints, node)
    };
    let every_labelled_node_counts =
        !node_constraints && !check_all && constraints.iter().all(|c| !c.honor_taints);
    let domain_counts: Vec<usize> = constraints
        .iter()
        .map(|constraint| match snapshot.domain_count(&constraint.key) {
            Some(n) if every_labelled_node_counts => n,
            _ => {
                let values: HashSet<&str> =
                    snapshot.nodes.iter().filter_map(|n| counted(constraint, n)).collect();
                values.len()
            }
        })
        .collect();
    let mut domains: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
    for (i, constraint) in constraints.iter().enumerate() {
        for (_, node) in snapshot.matching(namespace, &constraint.selector) {
            if let Some(value) = counted(constraint, node) {
                match domains[i].get_mut(value) {
                    Some(count) => *count += 1,
                    None => {
                        domains[i].insert(value.to_string(), 1);
                    }
                }
            }
        }
    }
    let self_match = constraints.iter().map(|c| selector_matches(&c.selector, &own)).collect();
    let least = constraints
        .iter()
        .zip(&domains)
        .zip(&domain_counts)
        .map(|((constraint, domains), all)| {
            let below_min = constraint.min_domains.is_some_and(|m| (*all as i64) < m);
            if below_min || domains.len() < *all {
                0
            } else {
                domains.values().copied().min().unwrap_or(0)
            }
        })
        .collect();
    Some(Counts { constraints, domains, domain_counts, self_match, require_all, least })
}

fn has_every_label(constraints: &[Constraint], node: &NodeInfo) -> bool {
    constraints.iter().all(|c| node.label(&c.key).is_some())
}

/// The raw score of a node that scoring leaves out; normalized to 0.
const IGNORED: i64 = -1;

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }

    fn points(&self) -> Points {
        Points::PRE_FILTER | Points::FILTER | Points::PRE_SCORE | Points::SCORE
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeDelete,
            ClusterEvent::NodeLabel,
            ClusterEvent::NodeTaint,
            ClusterEvent::AssignedPodAdd,
            ClusterEvent::AssignedPodUpdate,
            ClusterEvent::AssignedPodDelete,
        ]
    }

    /// Worth trying again when a pod that its own constraints count comes or goes, or a node
    /// with one of their topology labels changes. Default constraints depend on objects the
    /// hint does not see, so any change may help a pod that has only those.
    fn hint(&self, pod: &PodInfo, _: ClusterEvent, involved: Involved<'_>) -> bool {
        let own = own_constraints(pod);
        if own.is_empty() {
            return true;
        }
        match involved {
            Involved::Node(node) => own.iter().any(|c| node.label(&c.topology_key).is_some()),
            Involved::Pod(other) => {
                let all = [
                    constraints(own, pod, "DoNotSchedule", None),
                    constraints(own, pod, "ScheduleAnyway", None),
                ];
                all.iter().flatten().any(|c| matches(c, pod.namespace(), other))
            }
            Involved::Unknown => true,
        }
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot<'_>,
    ) -> Result<(), Rejection> {
        if let Some(counts) = count(self.constraints(pod, "DoNotSchedule"), pod, snapshot) {
            state.write(NAME, counts);
        }
        Ok(())
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(counts) = state.read::<Counts>(NAME) else { return Ok(()) };
        for (i, constraint) in counts.constraints.iter().enumerate() {
            let Some(value) = node.label(&constraint.key) else {
                return Err(Rejection::unresolvable(NAME, Reason::TopologySpreadMissingLabel));
            };
            let here = counts.domains[i].get(value).copied().unwrap_or(0)
                + i64::from(counts.self_match[i]);
            if here - counts.least[i] > constraint.max_skew {
                return Err(Rejection::unschedulable(NAME, vec![Reason::TopologySpreadMismatch]));
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
        if let Some(counts) = count(self.constraints(pod, "ScheduleAnyway"), pod, snapshot) {
            state.write(SCORE_KEY, counts);
        }
    }

    /// The matching pods in the node's domains, each constraint weighted by how many domains
    /// it has (fewer pods is better). A node without the constraints' labels is left out.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(counts) = state.read::<Counts>(SCORE_KEY) else { return 0 };
        if counts.require_all && !has_every_label(&counts.constraints, node) {
            return IGNORED;
        }
        let mut score = 0.0;
        for (i, constraint) in counts.constraints.iter().enumerate() {
            let Some(value) = node.label(&constraint.key) else { continue };
            let weight = ((counts.domain_counts[i] + 2) as f64).ln();
            let here = counts.domains[i].get(value).copied().unwrap_or(0);
            score += (here as f64) * weight + (constraint.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        let counted = || scores.iter().copied().filter(|s| *s != IGNORED);
        let (Some(min), Some(max)) = (counted().min(), counted().max()) else {
            scores.iter_mut().for_each(|s| *s = 0);
            return;
        };
        for score in scores {
            *score = if *score == IGNORED {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *score) / max
            };
        }
    }
}

/// Where the scoring counts are kept in the cycle state (apart from the filter's).
const SCORE_KEY: &str = "PodTopologySpread/score";

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::framework::snapshot::ImageSpread;
    use crate::plugins::fixtures::{info, node, pod_with};

    fn zoned(name: &str, zone: &str, pods: &[k8s_openapi::api::core::v1::Pod]) -> NodeInfo {
        node(
            name,
            serde_json::json!({"metadata": {"labels": {"zone": zone}},
            "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "110"}}}),
            pods,
        )
    }

    fn web() -> k8s_openapi::api::core::v1::Pod {
        pod_with(
            serde_json::json!({"labels": {"app": "web"}}),
            serde_json::json!({"containers": []}),
        )
    }

    fn spread(when: &str, min_domains: Option<i32>) -> PodInfo {
        let mut constraint = serde_json::json!({"maxSkew": 1, "topologyKey": "zone",
            "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}});
        if let Some(m) = min_domains {
            constraint["minDomains"] = m.into();
        }
        info(pod_with(
            serde_json::json!({"labels": {"app": "web"}}),
            serde_json::json!({"containers": [], "topologySpreadConstraints": [constraint]}),
        ))
    }

    #[test]
    fn do_not_schedule_keeps_skew() {
        let nodes = [
            zoned("a1", "a", &[web(), web()]),
            zoned("b1", "b", &[web()]),
            node("bare", serde_json::json!({}), &[]),
        ];
        let images: HashMap<String, ImageSpread> = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let pod = spread("DoNotSchedule", None);
        let mut state = CycleState::default();
        PodTopologySpread::default().pre_filter(&mut state, &pod, &snapshot).expect("no refusal");
        assert_eq!(
            PodTopologySpread::default().filter(&state, &pod, &nodes[0]),
            Err(Rejection::unschedulable(NAME, vec![Reason::TopologySpreadMismatch]))
        );
        assert!(PodTopologySpread::default().filter(&state, &pod, &nodes[1]).is_ok());
        assert_eq!(
            PodTopologySpread::default().filter(&state, &pod, &nodes[2]),
            Err(Rejection::unresolvable(NAME, Reason::TopologySpreadMissingLabel))
        );
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let nodes = [zoned("a1", "a", &[web()]), zoned("b1", "b", &[web()])];
        let images = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let pod = spread("DoNotSchedule", Some(3));
        let mut state = CycleState::default();
        PodTopologySpread::default().pre_filter(&mut state, &pod, &snapshot).expect("no refusal");
        assert!(PodTopologySpread::default().filter(&state, &pod, &nodes[0]).is_err());
        let without = spread("DoNotSchedule", None);
        let mut state = CycleState::default();
        PodTopologySpread::default()
            .pre_filter(&mut state, &without, &snapshot)
            .expect("no refusal");
        assert!(PodTopologySpread::default().filter(&state, &without, &nodes[0]).is_ok());
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let nodes = [zoned("a1", "a", &[web(), web()]), zoned("b1", "b", &[])];
        let images = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let pod = spread("ScheduleAnyway", None);
        let mut state = CycleState::default();
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        PodTopologySpread::default().pre_score(&mut state, &pod, &feasible, &snapshot);
        let mut scores: Vec<i64> =
            nodes.iter().map(|n| PodTopologySpread::default().score(&state, &pod, n)).collect();
        PodTopologySpread::default().normalize(&mut scores);
        assert!(scores[1] > scores[0], "{scores:?}");
    }

    fn scores_of(plugin: &PodTopologySpread, pod: &PodInfo, nodes: &[NodeInfo]) -> Vec<i64> {
        let images = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let mut state = CycleState::default();
        let feasible: Vec<&NodeInfo> = nodes.iter().collect();
        plugin.pre_score(&mut state, pod, &feasible, &snapshot);
        let mut scores: Vec<i64> = nodes.iter().map(|n| plugin.score(&state, pod, n)).collect();
        plugin.normalize(&mut scores);
        scores
    }

    fn host(name: &str, zone: Option<&str>, pods: &[k8s_openapi::api::core::v1::Pod]) -> NodeInfo {
        let mut labels = serde_json::json!({"kubernetes.io/hostname": name});
        if let Some(zone) = zone {
            labels["topology.kubernetes.io/zone"] = zone.into();
        }
        node(
            name,
            serde_json::json!({"metadata": {"labels": labels},
            "status": {"allocatable": {"cpu": "4", "memory": "4Gi", "pods": "110"}}}),
            pods,
        )
    }

    fn unconstrained(selected: bool) -> PodInfo {
        let mut pod = info(pod_with(
            serde_json::json!({"labels": {"app": "web"}}),
            serde_json::json!({"containers": []}),
        ));
        if selected {
            pod.default_spread = Some(LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                match_expressions: None,
            });
        }
        pod
    }

    #[test]
    fn system_defaults_spread_a_controllers_pods_over_hosts() {
        // No zone labels: the host constraint still counts under the system defaults.
        let nodes = [host("a", None, &[web(), web()]), host("b", None, &[])];
        let scores = scores_of(&PodTopologySpread::default(), &unconstrained(true), &nodes);
        assert!(scores[1] > scores[0], "{scores:?}");
        // A pod that no service or controller selects is not spread.
        let none = scores_of(&PodTopologySpread::default(), &unconstrained(false), &nodes);
        assert_eq!(none[0], none[1]);
    }

    #[test]
    fn listed_defaults_leave_out_nodes_without_the_labels() {
        let zone = TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "topology.kubernetes.io/zone".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            ..Default::default()
        };
        let plugin = PodTopologySpread::with_defaults(vec![zone]);
        let nodes =
            [host("a", Some("z1"), &[web()]), host("b", Some("z2"), &[]), host("c", None, &[])];
        let scores = scores_of(&plugin, &unconstrained(true), &nodes);
        assert!(scores[1] > scores[0], "{scores:?}");
        assert_eq!(scores[2], 0, "a node without the zone label scores nothing: {scores:?}");
    }
}
