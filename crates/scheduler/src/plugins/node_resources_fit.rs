//! NodeResourcesFit: the pod's requests must fit in what the node has left, and nodes are
//! scored by how much would be used, by the profile's strategy: `LeastAllocated` (spread, the
//! default), `MostAllocated` (pack) or `RequestedToCapacityRatio` (a shape over utilization).

use serde::Deserialize;

use crate::framework::{
    ClusterEvent, CycleState, Involved, MAX_NODE_SCORE, NodeInfo, Plugin, PodInfo, Points, Reason,
    Rejection,
};

/// The plugin's name.
pub const NAME: &str = "NodeResourcesFit";

/// A resource scored, with its weight.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WeightedResource {
    /// The resource's name (`cpu`, `memory`, an extended resource).
    pub name: String,
    /// Its weight among the scored resources.
    #[serde(default = "one")]
    pub weight: i64,
}

fn one() -> i64 {
    1
}

/// A point of the `RequestedToCapacityRatio` shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct ShapePoint {
    /// Utilization in percent, 0 to 100.
    pub utilization: i64,
    /// Score at that utilization, 0 to 10.
    pub score: i64,
}

/// How nodes are scored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    /// Free capacity is better (spreads pods).
    LeastAllocated,
    /// Used capacity is better (packs pods).
    MostAllocated,
    /// The score follows a piecewise-linear shape over utilization.
    RequestedToCapacityRatio(Vec<ShapePoint>),
}

/// The plugin with its scoring strategy.
pub struct NodeResourcesFit {
    strategy: Strategy,
    resources: Vec<WeightedResource>,
}

impl Default for NodeResourcesFit {
    fn default() -> Self {
        Self::new(Strategy::LeastAllocated, default_resources())
    }
}

/// CPU and memory, weighted 1 each (upstream's default).
pub fn default_resources() -> Vec<WeightedResource> {
    vec![
        WeightedResource { name: "cpu".into(), weight: 1 },
        WeightedResource { name: "memory".into(), weight: 1 },
    ]
}

impl NodeResourcesFit {
    /// The plugin scoring `resources` by `strategy`.
    pub fn new(strategy: Strategy, resources: Vec<WeightedResource>) -> Self {
        Self { strategy, resources }
    }
}

/// The resources a pod lacks on a node (upstream's `fitsRequest`), as rejection reasons.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<Reason> {
    let mut reasons = Vec::new();
    if node.requested.pods + 1 > node.allocatable.pods {
        reasons.push(Reason::TooManyPods);
    }
    let asked = &pod.requests.requests;
    if asked.is_empty() {
        return reasons;
    }
    let free = |name: &str| node.allocatable.get(name).saturating_sub(node.requested.get(name));
    for (name, amount) in [
        ("cpu", asked.milli_cpu),
        ("memory", asked.memory),
        ("ephemeral-storage", asked.ephemeral_storage),
    ] {
        if amount > 0 && amount > free(name) {
            reasons.push(Reason::Insufficient(name.to_string()));
        }
    }
    for (name, amount) in &asked.scalar {
        if *amount > 0 && *amount > free(name) {
            reasons.push(Reason::Insufficient(name.clone()));
        }
    }
    reasons
}

/// What a node would have requested of `resource` with the pod on it, and what it has: CPU and
/// memory count the scoring defaults for undeclared requests; other resources count only when
/// the pod asks for them.
pub fn requested_and_allocatable(pod: &PodInfo, node: &NodeInfo, resource: &str) -> (i64, i64) {
    let allocatable = node.allocatable.get(resource);
    match resource {
        "cpu" => (node.non_zero_milli_cpu + pod.requests.non_zero_milli_cpu, allocatable),
        "memory" => (node.non_zero_memory + pod.requests.non_zero_memory, allocatable),
        _ => {
            let asked = pod.requests.requests.get(resource);
            if asked == 0 && resource != "ephemeral-storage" {
                return (0, 0);
            }
            (node.requested.get(resource) + asked, allocatable)
        }
    }
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn points(&self) -> Points {
        Points::FILTER | Points::SCORE
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[
            ClusterEvent::NodeAdd,
            ClusterEvent::NodeAllocatable,
            ClusterEvent::AssignedPodDelete,
            ClusterEvent::AssignedPodUpdate,
        ]
    }

    /// Worth trying again on a node where the pod now fits; any pod that leaves a node (or
    /// changes its requests) frees room.
    fn hint(&self, pod: &PodInfo, _: ClusterEvent, involved: Involved<'_>) -> bool {
        match involved {
            Involved::Node(node) => insufficient(pod, node).is_empty(),
            _ => true,
        }
    }

    fn filter(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let reasons = insufficient(pod, node);
        if reasons.is_empty() { Ok(()) } else { Err(Rejection::unschedulable(NAME, reasons)) }
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let (mut total, mut weights) = (0, 0);
        for resource in &self.resources {
            let (requested, allocatable) = requested_and_allocatable(pod, node, &resource.name);
            if allocatable == 0 {
                continue;
            }
            let score = match &self.strategy {
                Strategy::LeastAllocated => least_allocated(requested, allocatable),
                Strategy::MostAllocated => most_allocated(requested, allocatable),
                Strategy::RequestedToCapacityRatio(shape) => {
                    ratio_score(shape, requested, allocatable)
                }
            };
            total += score * resource.weight;
            weights += resource.weight;
        }
        if weights == 0 { 0 } else { total / weights }
    }
}

fn least_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

fn most_allocated(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 {
        return 0;
    }
    requested.min(capacity) * MAX_NODE_SCORE / capacity
}

/// The shape's score at the node's utilization, linear between points; upstream's shape scores
/// are 0 to 10 and are scaled to the node score's range.
fn ratio_score(shape: &[ShapePoint], requested: i64, capacity: i64) -> i64 {
    let scale = MAX_NODE_SCORE / 10;
    if capacity == 0 || requested > capacity {
        return shape.last().map_or(0, |p| p.score * scale);
    }
    let utilization = requested * 100 / capacity;
    let mut previous: Option<ShapePoint> = None;
    for point in shape {
        if utilization <= point.utilization {
            let Some(before) = previous else { return point.score * scale };
            let span = point.utilization - before.utilization;
            if span == 0 {
                return point.score * scale;
            }
            let score = before.score * scale
                + (point.score - before.score) * scale * (utilization - before.utilization) / span;
            return score;
        }
        previous = Some(*point);
    }
    shape.last().map_or(0, |p| p.score * scale)
}

/// NodeResourcesBalancedAllocation: nodes whose CPU and memory would be used in like
/// proportions score higher (one minus the standard deviation of the used fractions).
pub struct BalancedAllocation {
    resources: Vec<WeightedResource>,
}

/// BalancedAllocation's name.
pub const BALANCED_NAME: &str = "NodeResourcesBalancedAllocation";

impl Default for BalancedAllocation {
    fn default() -> Self {
        Self { resources: default_resources() }
    }
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        BALANCED_NAME
    }

    fn points(&self) -> Points {
        Points::SCORE
    }

    fn score(&self, _: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let fractions: Vec<f64> = self
            .resources
            .iter()
            .filter_map(|r| {
                let (requested, allocatable) = requested_and_allocatable(pod, node, &r.name);
                (allocatable > 0).then(|| (requested as f64 / allocatable as f64).min(1.0))
            })
            .collect();
        let deviation = match fractions.as_slice() {
            [] | [_] => 0.0,
            [a, b] => (a - b).abs() / 2.0,
            all => {
                let mean = all.iter().sum::<f64>() / all.len() as f64;
                (all.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / all.len() as f64).sqrt()
            }
        };
        ((1.0 - deviation) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::{info, node, requesting, sized};

    #[test]
    fn fit_names_what_is_short() {
        let state = CycleState::default();
        let full = sized("a", "1", "1Gi", &[requesting("800m", "512Mi")]);
        let cases = [
            ("fits", requesting("200m", "256Mi"), vec![]),
            ("too much cpu", requesting("300m", "256Mi"), vec![Reason::Insufficient("cpu".into())]),
            (
                "too much of both",
                requesting("300m", "600Mi"),
                vec![Reason::Insufficient("cpu".into()), Reason::Insufficient("memory".into())],
            ),
        ];
        for (name, pod, reasons) in cases {
            let result = NodeResourcesFit::default().filter(&state, &info(pod), &full);
            match reasons.is_empty() {
                true => assert!(result.is_ok(), "{name}: {result:?}"),
                false => assert_eq!(result, Err(Rejection::unschedulable(NAME, reasons)), "{name}"),
            }
        }
        let one_pod = node(
            "b",
            serde_json::json!({"status": {"allocatable": {"cpu": "4", "pods": "1"}}}),
            &[requesting("1m", "1Mi")],
        );
        assert_eq!(
            NodeResourcesFit::default().filter(&state, &info(requesting("1m", "1Mi")), &one_pod),
            Err(Rejection::unschedulable(
                NAME,
                vec![Reason::TooManyPods, Reason::Insufficient("memory".into())]
            ))
        );
    }

    #[test]
    fn extended_resources() {
        let state = CycleState::default();
        let gpu = node(
            "g",
            serde_json::json!({"status": {"allocatable": {
            "cpu": "4", "memory": "4Gi", "pods": "110", "nvidia.com/gpu": "1"}}}),
            &[],
        );
        let asking = crate::plugins::fixtures::pod(serde_json::json!({"containers": [{"name": "c",
            "resources": {"requests": {"nvidia.com/gpu": "2"}}}]}));
        assert_eq!(
            NodeResourcesFit::default().filter(&state, &info(asking), &gpu),
            Err(Rejection::unschedulable(
                NAME,
                vec![Reason::Insufficient("nvidia.com/gpu".into())]
            ))
        );
    }

    #[test]
    fn strategies_score_as_upstream() {
        let state = CycleState::default();
        // 4 cpu, 8Gi; 1 cpu and 2Gi used; the pod asks 1 cpu and 2Gi: half of each used.
        let node = sized("a", "4", "8Gi", &[requesting("1", "2Gi")]);
        let pod = info(requesting("1", "2Gi"));
        assert_eq!(NodeResourcesFit::default().score(&state, &pod, &node), 50);
        let most = NodeResourcesFit::new(Strategy::MostAllocated, default_resources());
        assert_eq!(most.score(&state, &pod, &node), 50);
        let shape = vec![
            ShapePoint { utilization: 0, score: 10 },
            ShapePoint { utilization: 100, score: 0 },
        ];
        let ratio =
            NodeResourcesFit::new(Strategy::RequestedToCapacityRatio(shape), default_resources());
        assert_eq!(ratio.score(&state, &pod, &node), 50);
        let small = info(requesting("1", "1Gi"));
        // cpu 50% used, memory 37.5%: least allocated (50 + 62) / 2.
        assert_eq!(NodeResourcesFit::default().score(&state, &small, &node), 56);
        // Balanced: |0.5 - 0.375| / 2 = 0.0625 deviation.
        assert_eq!(BalancedAllocation::default().score(&state, &small, &node), 93);
    }

    #[test]
    fn hints_wake_a_pod_for_a_node_it_fits() {
        let fit = NodeResourcesFit::default();
        let waiting = info(requesting("3", "1Gi"));
        let small = sized("small", "2", "8Gi", &[]);
        let large = sized("large", "4", "8Gi", &[]);
        assert!(!fit.hint(&waiting, ClusterEvent::NodeAdd, Involved::Node(&small)));
        assert!(fit.hint(&waiting, ClusterEvent::NodeAdd, Involved::Node(&large)));
        assert!(fit.hint(&waiting, ClusterEvent::AssignedPodDelete, Involved::Unknown));
    }
}
