//! One scheduling cycle, a plain function: PreFilter, Filter over the nodes (stopping once
//! enough feasible ones are found, from where the last cycle stopped, as upstream), PreScore,
//! Score with normalization and weights, and the best node (ties broken at random).

use crate::framework::{CycleState, Diagnosis, MAX_NODE_SCORE, NodeInfo, PodInfo, Snapshot};
use crate::profile::Profile;

/// Nodes always checked before scoring, when there are that many.
const MIN_FEASIBLE_NODES: usize = 100;
/// The smallest adaptive share of nodes checked.
const MIN_FEASIBLE_PERCENTAGE: usize = 5;

/// Where a pod goes.
pub struct Placement {
    /// The chosen node.
    pub node: String,
    /// How many nodes were filtered (the next cycle starts after them).
    pub evaluated: usize,
    /// How many of them fit.
    pub feasible: usize,
    /// What the plugins computed in the cycle, for Reserve, Permit and the binding cycle.
    pub state: CycleState,
}

impl std::fmt::Debug for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Placement")
            .field("node", &self.node)
            .field("evaluated", &self.evaluated)
            .field("feasible", &self.feasible)
            .finish_non_exhaustive()
    }
}

/// How many feasible nodes to find before scoring (upstream's `numFeasibleNodesToFind`): all
/// of a small cluster; of a large one, a share that shrinks as it grows (50% less 1% per 125
/// nodes, at least 5%), at least 100.
pub fn feasible_nodes_to_find(percentage: u32, nodes: usize) -> usize {
    if nodes < MIN_FEASIBLE_NODES || percentage >= 100 {
        return nodes;
    }
    let mut share = percentage as usize;
    if share == 0 {
        share = 50usize.saturating_sub(nodes / 125).max(MIN_FEASIBLE_PERCENTAGE);
    }
    (nodes * share / 100).max(MIN_FEASIBLE_NODES)
}

/// A small generator for breaking ties between equally scored nodes.
#[derive(Debug, Clone)]
pub struct Random(u64);

impl Random {
    /// A generator seeded with `seed` (any value but zero).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Runs one cycle for `pod` over `snapshot`, filtering from node `start` on.
pub fn schedule(
    profile: &Profile,
    pod: &PodInfo,
    snapshot: &Snapshot<'_>,
    start: usize,
    random: &mut Random,
) -> Result<Placement, Diagnosis> {
    let all = snapshot.nodes.len();
    let mut diagnosis = Diagnosis { all_nodes: all, ..Diagnosis::default() };
    if all == 0 {
        return Err(diagnosis);
    }
    let mut state = CycleState::default();
    for plugin in &profile.pre_filter {
        if let Err(rejection) = plugin.pre_filter(&mut state, pod, snapshot) {
            diagnosis.pre_filter = rejection.reasons.first().map(ToString::to_string);
            diagnosis.rejections =
                snapshot.nodes.iter().map(|n| (n.name.clone(), rejection.clone())).collect();
            return Err(diagnosis);
        }
    }
    let want = feasible_nodes_to_find(profile.percentage_of_nodes_to_score, all);
    let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(all));
    let mut evaluated = 0;
    for i in 0..all {
        let node = snapshot.nodes[(start + i) % all];
        evaluated += 1;
        let passes =
            |node: &NodeInfo| profile.filter.iter().try_for_each(|p| p.filter(&state, pod, node));
        // As upstream: a node with nominated pods must fit with them and without them.
        let verdict = passes(node).and_then(|()| match snapshot.with_nominated(pod, node) {
            Some(with) => passes(&with),
            None => Ok(()),
        });
        match verdict {
            Ok(()) => {
                feasible.push(node);
                if feasible.len() >= want {
                    break;
                }
            }
            Err(rejection) => diagnosis.rejections.push((node.name.clone(), rejection)),
        }
    }
    let placement = |node: &NodeInfo, feasible: usize, state: CycleState| Placement {
        node: node.name.clone(),
        evaluated,
        feasible,
        state,
    };
    match feasible[..] {
        [] => return Err(diagnosis),
        [only] => return Ok(placement(only, 1, state)),
        _ => {}
    }
    for plugin in &profile.pre_score {
        plugin.pre_score(&mut state, pod, &feasible, snapshot);
    }
    let mut totals = vec![0i64; feasible.len()];
    let mut scores = vec![0i64; feasible.len()];
    for (plugin, weight) in &profile.score {
        for (score, node) in scores.iter_mut().zip(&feasible) {
            *score = plugin.score(&state, pod, node);
        }
        plugin.normalize(&mut scores);
        for (total, score) in totals.iter_mut().zip(&scores) {
            *total += score.clamp(&0, &MAX_NODE_SCORE) * weight;
        }
    }
    let best = totals.iter().copied().max().unwrap_or(0);
    let tied: Vec<usize> = (0..totals.len()).filter(|i| totals[*i] == best).collect();
    let chosen = tied[random.below(tied.len())];
    Ok(placement(feasible[chosen], feasible.len(), state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::snapshot::ImageSpread;
    use crate::plugins::fixtures::{info, node, requesting, sized};
    use crate::profile::Configuration;
    use std::collections::HashMap;

    fn default_profile() -> Profile {
        Configuration::default().profiles().expect("profiles").remove(0)
    }

    #[test]
    fn feasible_share_follows_upstream() {
        assert_eq!(feasible_nodes_to_find(0, 50), 50);
        assert_eq!(feasible_nodes_to_find(0, 1000), 420);
        assert_eq!(feasible_nodes_to_find(0, 5000), 500);
        assert_eq!(feasible_nodes_to_find(0, 10000), 500);
        assert_eq!(feasible_nodes_to_find(10, 500), 100);
        assert_eq!(feasible_nodes_to_find(100, 5000), 5000);
    }

    #[test]
    fn the_emptiest_fitting_node_wins() {
        let nodes = [
            sized("small", "1", "1Gi", &[]),
            sized("busy", "4", "8Gi", &[requesting("3", "6Gi")]),
            sized("free", "4", "8Gi", &[]),
        ];
        let images: HashMap<String, ImageSpread> = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let pod = info(requesting("2", "2Gi"));
        let placement = schedule(&default_profile(), &pod, &snapshot, 0, &mut Random::new(7))
            .expect("a node fits");
        assert_eq!(placement.node, "free");
        assert_eq!((placement.evaluated, placement.feasible), (3, 1));
    }

    #[test]
    fn no_fit_explains_every_node() {
        let nodes = [
            sized("a", "1", "1Gi", &[]),
            sized("b", "1", "1Gi", &[]),
            node(
                "gpu",
                serde_json::json!({
                "spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]},
                "status": {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "110"}}}),
                &[],
            ),
        ];
        let images = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let pod = info(requesting("2", "100Mi"));
        let diagnosis = schedule(&default_profile(), &pod, &snapshot, 1, &mut Random::new(7))
            .expect_err("nothing fits");
        assert_eq!(
            diagnosis.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {gpu: true}, 2 Insufficient cpu."
        );
    }

    #[test]
    fn ties_are_broken_among_the_best() {
        let nodes: Vec<_> = (0..4).map(|i| sized(&format!("n{i}"), "4", "8Gi", &[])).collect();
        let images = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let pod = info(requesting("1", "1Gi"));
        let mut random = Random::new(42);
        let chosen: std::collections::BTreeSet<String> = (0..40)
            .map(|_| {
                schedule(&default_profile(), &pod, &snapshot, 0, &mut random).expect("fits").node
            })
            .collect();
        assert!(chosen.len() > 1, "always {chosen:?}");
    }
}
