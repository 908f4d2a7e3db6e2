//! The scheduler's cache: every node with the pods bound to it, plus the pods assumed on a
//! node while their binding is on its way (so that the next pod already sees them). Fed by the
//! node and pod watches; read by each cycle as a [`Snapshot`] that borrows it.
//!
//! Memory: a node keeps its Node object; a pod keeps only its [`NodePod`] view (names, labels,
//! requests, ports, affinity), a few hundred bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::framework::affinity::Labels;
use crate::framework::node_info::scores_others;
use crate::framework::pod_index::{PodId, PodIndex};
use crate::framework::snapshot::ImageSpread;
use crate::framework::{ClusterEvent, Indexed, NodeInfo, NodePod, PodInfo, Snapshot};

/// Where a pod is counted.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placed {
    node: String,
    /// Counted before the API confirmed its binding.
    assumed: bool,
    /// Its number in the label index.
    id: PodId,
}

/// Nodes and the pods on them.
#[derive(Debug, Default)]
pub struct Cache {
    nodes: Nodes,
    /// The nodes whose Node object is known, by name: the order cycles walk them in.
    order: BTreeMap<String, usize>,
    /// `order`'s slots, flattened for the cycles (rebuilt when a node comes or goes).
    walk: Vec<usize>,
    pods: HashMap<String, Placed>,
    images: HashMap<String, ImageSpread>,
    /// The placed pods by label, for the plugins that count pods by selector.
    index: PodIndex,
    /// Node label key → value → how many nodes carry it (the topology domains).
    label_values: HashMap<String, HashMap<String, usize>>,
    /// Pods nominated to a node by preemption, by node and uid, and the node of each uid.
    nominated: HashMap<String, HashMap<String, Arc<NodePod>>>,
    nominated_to: HashMap<String, String>,
    /// The labels of each namespace, by name (affinity terms' `namespaceSelector`).
    namespaces: HashMap<String, Labels>,
    /// How many placed pods have terms that score other pods.
    pods_scoring_affinity: usize,
    /// Claims, volumes and storage classes.
    pub volumes: crate::framework::Volumes,
}

/// Node infos in slots that keep their place while the cache lives, so that a cycle's walk
/// is a list of slot numbers rather than of names to look up.
#[derive(Debug, Default)]
struct Nodes {
    slots: Vec<Option<NodeInfo>>,
    by_name: HashMap<String, usize>,
    free: Vec<usize>,
}

impl Nodes {
    fn get(&self, name: &str) -> Option<&NodeInfo> {
        self.slots.get(*self.by_name.get(name)?)?.as_ref()
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut NodeInfo> {
        self.slots.get_mut(*self.by_name.get(name)?)?.as_mut()
    }

    fn slot(&self, slot: usize) -> Option<&NodeInfo> {
        self.slots.get(slot)?.as_ref()
    }

    /// The slot of `name`, made empty if new.
    fn entry(&mut self, name: &str) -> (usize, &mut NodeInfo) {
        let slot = match self.by_name.get(name) {
            Some(slot) => *slot,
            None => {
                let slot = self.free.pop().unwrap_or_else(|| {
                    self.slots.push(None);
                    self.slots.len() - 1
                });
                self.slots[slot] = Some(NodeInfo::named(name));
                self.by_name.insert(name.to_string(), slot);
                slot
            }
        };
        (slot, self.slots[slot].get_or_insert_with(|| NodeInfo::named(name)))
    }

    fn remove(&mut self, name: &str) {
        if let Some(slot) = self.by_name.remove(name) {
            self.slots[slot] = None;
            self.free.push(slot);
        }
    }
}

impl Cache {
    /// A cycle's view.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            nodes: self.walk.iter().filter_map(|slot| self.nodes.slot(*slot)).collect(),
            images: &self.images,
            index: Some(Indexed {
                pods: &self.index,
                slots: &self.nodes.slots,
                label_values: &self.label_values,
            }),
            nominated: Some(&self.nominated),
            namespaces: Some(&self.namespaces),
            volumes: Some(&self.volumes),
            pods_scoring_affinity: Some(self.pods_scoring_affinity),
        }
    }

    /// Records the labels of namespace `name`.
    pub fn set_namespace(&mut self, name: &str, labels: Labels) {
        self.namespaces.insert(name.to_string(), labels);
    }

    /// Forgets namespace `name`.
    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    /// Replaces every namespace's labels (after a relist).
    pub fn set_namespaces(&mut self, namespaces: HashMap<String, Labels>) {
        self.namespaces = namespaces;
    }

    /// How many nodes a cycle sees.
    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    /// A node as cached.
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.nodes.get(name)
    }

    /// Adds or changes a node; returns what changed, for the queue.
    pub fn set_node(&mut self, node: Node) -> Vec<ClusterEvent> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let (slot, info) = self.nodes.entry(&name);
        let previous = info.node.take();
        let events = changes(previous.as_deref(), &node);
        if let Some(old) = &previous {
            images_of(old).for_each(|(image, _)| release(&mut self.images, image));
            count_labels(&mut self.label_values, old, false);
        }
        count_labels(&mut self.label_values, &node, true);
        for (image, size) in images_of(&node) {
            let spread = self.images.entry(image.to_string()).or_default();
            spread.size = size;
            spread.nodes += 1;
        }
        info.set_node(Arc::new(node));
        if previous.is_none() {
            self.order.insert(name, slot);
            self.walk = self.order.values().copied().collect();
        }
        events
    }

    /// Removes a node (its pods stay counted until they go too).
    pub fn remove_node(&mut self, name: &str) {
        let Some(info) = self.nodes.get_mut(name) else { return };
        if let Some(node) = info.node.take() {
            images_of(&node).for_each(|(image, _)| release(&mut self.images, image));
            count_labels(&mut self.label_values, &node, false);
        }
        if self.order.remove(name).is_some() {
            self.walk = self.order.values().copied().collect();
        }
        if info.pods.is_empty() {
            self.nodes.remove(name);
        }
    }

    /// The names of every node that has a Node object.
    pub fn node_names(&self) -> impl Iterator<Item = &String> {
        self.order.keys()
    }

    /// Counts a bound pod (confirming it if it was assumed); returns the event it is, if
    /// any, with the pod's view.
    pub fn add_pod(&mut self, pod: &Pod) -> Option<(ClusterEvent, Arc<NodePod>)> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let node = pod.spec.as_ref()?.node_name.clone()?;
        let view = Arc::new(NodePod::of(pod));
        let event = match self.pods.get(&uid) {
            Some(placed) if !placed.assumed && placed.node == node => {
                let unchanged = self
                    .nodes
                    .get(&node)
                    .and_then(|n| n.pods.get(&uid))
                    .is_some_and(|old| **old == *view);
                if unchanged {
                    return None;
                }
                ClusterEvent::AssignedPodUpdate
            }
            _ => ClusterEvent::AssignedPodAdd,
        };
        self.remove_pod(&uid);
        self.place(uid, &node, view.clone(), false);
        Some((event, view))
    }

    fn place(&mut self, uid: String, node: &str, view: Arc<NodePod>, assumed: bool) {
        if scores_others(&view) {
            self.pods_scoring_affinity += 1;
        }
        let (slot, info) = self.nodes.entry(node);
        info.add_pod(view.clone());
        let id = self.index.insert(view, slot);
        self.pods.insert(uid, Placed { node: node.to_string(), assumed, id });
    }

    /// Stops counting a pod; returns its view if it was counted (bound or assumed).
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<NodePod>> {
        let placed = self.pods.remove(uid)?;
        self.index.remove(placed.id);
        let info = self.nodes.get_mut(&placed.node)?;
        let view = info.remove_pod(uid);
        if view.as_deref().is_some_and(scores_others) {
            self.pods_scoring_affinity -= 1;
        }
        if info.node.is_none() && info.pods.is_empty() {
            self.nodes.remove(&placed.node);
        }
        view
    }

    /// Keeps a pending pod's nomination (`status.nominatedNodeName`), or forgets it when the
    /// pod has none, is bound or is gone (`None`).
    pub fn nominate(&mut self, uid: &str, nominated: Option<(&str, &Pod)>) {
        if let Some(node) = self.nominated_to.remove(uid)
            && let Some(waiting) = self.nominated.get_mut(&node)
        {
            waiting.remove(uid);
            if waiting.is_empty() {
                self.nominated.remove(&node);
            }
        }
        if let Some((node, pod)) = nominated {
            let view = Arc::new(NodePod::of(pod));
            self.nominated.entry(node.to_string()).or_default().insert(uid.to_string(), view);
            self.nominated_to.insert(uid.to_string(), node.to_string());
        }
    }

    /// The uids of the pods with a nomination (for a re-list to drop those that are gone).
    pub fn nominated_uids(&self) -> Vec<String> {
        self.nominated_to.keys().cloned().collect()
    }

    /// Counts `pod` on `node` before its binding is confirmed.
    pub fn assume(&mut self, pod: &PodInfo, node: &str) {
        let uid = pod.pod.metadata.uid.clone().unwrap_or_default();
        self.remove_pod(&uid);
        let view = Arc::new(NodePod::of(&pod.pod));
        self.place(uid, node, view, true);
    }

    /// Stops counting an assumed pod whose binding failed.
    pub fn forget(&mut self, uid: &str) {
        if self.pods.get(uid).is_some_and(|p| p.assumed) {
            self.remove_pod(uid);
        }
    }

    /// Whether a pod is assumed (its binding is on the way).
    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// The uids of every counted pod (for a re-list to drop those that are gone).
    pub fn pod_uids(&self) -> Vec<String> {
        self.pods.keys().cloned().collect()
    }
}

/// Counts a node's labels in (`add`) or out of the label values.
fn count_labels(values: &mut HashMap<String, HashMap<String, usize>>, node: &Node, add: bool) {
    for (key, value) in node.metadata.labels.iter().flatten() {
        if add {
            *values.entry(key.clone()).or_default().entry(value.clone()).or_default() += 1;
            continue;
        }
        let Some(by_value) = values.get_mut(key) else { continue };
        if let Some(n) = by_value.get_mut(value) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                by_value.remove(value);
            }
        }
        if by_value.is_empty() {
            values.remove(key);
        }
    }
}

fn release(images: &mut HashMap<String, ImageSpread>, image: &str) {
    if let Some(spread) = images.get_mut(image) {
        spread.nodes = spread.nodes.saturating_sub(1);
        if spread.nodes == 0 {
            images.remove(image);
        }
    }
}

/// Every name of every image a node reports, with the image's size.
fn images_of(node: &Node) -> impl Iterator<Item = (&str, i64)> {
    node.status.as_ref().and_then(|s| s.images.as_ref()).into_iter().flatten().flat_map(|i| {
        let size = i.size_bytes.unwrap_or(0);
        i.names.iter().flatten().map(move |n| (n.as_str(), size))
    })
}

/// What changed between two versions of a node, as the events the plugins listen for.
fn changes(old: Option<&Node>, new: &Node) -> Vec<ClusterEvent> {
    let Some(old) = old else { return vec![ClusterEvent::NodeAdd] };
    let mut events = Vec::new();
    if old.metadata.labels != new.metadata.labels {
        events.push(ClusterEvent::NodeLabel);
    }
    let taints = |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable));
    if taints(old) != taints(new) {
        events.push(ClusterEvent::NodeTaint);
    }
    let allocatable = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    if allocatable(old) != allocatable(new) {
        events.push(ClusterEvent::NodeAllocatable);
    }
    let conditions = |n: &Node| n.status.as_ref().and_then(|s| s.conditions.clone());
    if conditions(old) != conditions(new) {
        events.push(ClusterEvent::NodeOther);
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::{info, requesting};

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "images": [{"names": ["app:1"], "sizeBytes": 1000}]}
        }))
        .expect("a node")
    }

    fn bound(uid: &str, node: &str) -> Pod {
        let mut pod = requesting("1", "1Gi");
        pod.metadata.uid = Some(uid.into());
        pod.spec.as_mut().expect("spec").node_name = Some(node.into());
        pod
    }

    #[test]
    fn assumed_pods_count_until_confirmed_or_forgotten() {
        let mut cache = Cache::default();
        assert_eq!(cache.set_node(node("a", "4")), vec![ClusterEvent::NodeAdd]);
        let mut pending = requesting("1", "1Gi");
        pending.metadata.uid = Some("u1".into());
        cache.assume(&info(pending), "a");
        assert!(cache.is_assumed("u1"));
        assert_eq!(cache.node("a").map(|n| n.requested.milli_cpu), Some(1000));
        // The watch confirms the binding: counted once.
        assert_eq!(
            cache.add_pod(&bound("u1", "a")).map(|(e, _)| e),
            Some(ClusterEvent::AssignedPodAdd)
        );
        assert!(!cache.is_assumed("u1"));
        assert_eq!(cache.node("a").map(|n| n.requested.milli_cpu), Some(1000));
        assert!(cache.add_pod(&bound("u1", "a")).is_none(), "no change, no event");
        let mut other = requesting("2", "1Gi");
        other.metadata.uid = Some("u2".into());
        cache.assume(&info(other), "a");
        cache.forget("u2");
        assert_eq!(cache.node("a").map(|n| n.requested.milli_cpu), Some(1000));
        assert!(cache.remove_pod("u1").is_some());
        assert_eq!(cache.node("a").map(|n| n.requested.pods), Some(0));
    }

    #[test]
    fn node_changes_become_events() {
        let mut cache = Cache::default();
        cache.set_node(node("a", "4"));
        assert_eq!(cache.set_node(node("a", "8")), vec![ClusterEvent::NodeAllocatable]);
        let mut cordoned = node("a", "8");
        cordoned.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            unschedulable: Some(true),
            ..Default::default()
        });
        assert_eq!(cache.set_node(cordoned), vec![ClusterEvent::NodeTaint]);
        assert_eq!(cache.snapshot().images.get("app:1").map(|i| i.nodes), Some(1));
        cache.set_node(node("b", "4"));
        assert_eq!(cache.snapshot().images.get("app:1").map(|i| i.nodes), Some(2));
        cache.remove_node("a");
        assert_eq!(cache.node_count(), 1);
        assert_eq!(cache.snapshot().images.get("app:1").map(|i| i.nodes), Some(1));
    }

    #[test]
    fn pods_seen_before_their_node() {
        let mut cache = Cache::default();
        cache.add_pod(&bound("u1", "late"));
        assert_eq!(cache.snapshot().nodes.len(), 0, "no Node object yet");
        cache.set_node(node("late", "4"));
        let snapshot = cache.snapshot();
        assert_eq!(snapshot.nodes.len(), 1);
        assert_eq!(snapshot.nodes[0].requested.milli_cpu, 1000);
    }

    /// A pod of `group` in `namespace`, bound to `node`, with anti-affinity by hostname and a
    /// topology spread over zones within its group.
    fn member(uid: &str, namespace: &str, group: &str, node: &str) -> Pod {
        let selector = serde_json::json!({"matchLabels": {"group": group}});
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": namespace, "uid": uid,
                "labels": {"app": "x", "group": group}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                    [{"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}]}},
                "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                    "whenUnsatisfiable": "DoNotSchedule", "labelSelector": selector}]}
        }))
        .expect("a pod");
        if node.is_empty() {
            pod.spec.as_mut().expect("spec").node_name = None;
        }
        pod
    }

    #[test]
    fn pods_whose_terms_score_others_are_counted() {
        let mut cache = Cache::default();
        cache.set_node(node("a", "4"));
        // Required anti-affinity alone scores no other pod.
        cache.add_pod(&member("anti", "ns", "g", "a"));
        assert_eq!(cache.snapshot().pods_scoring_affinity, Some(0));
        let mut attracted = member("attracted", "ns", "g", "a");
        let affinity = attracted.spec.as_mut().and_then(|s| s.affinity.as_mut()).expect("affinity");
        affinity.pod_affinity = affinity.pod_anti_affinity.clone().map(|anti| {
            k8s_openapi::api::core::v1::PodAffinity {
                required_during_scheduling_ignored_during_execution: anti
                    .required_during_scheduling_ignored_during_execution,
                ..Default::default()
            }
        });
        cache.add_pod(&attracted);
        cache.add_pod(&attracted);
        assert_eq!(cache.snapshot().pods_scoring_affinity, Some(1));
        cache.remove_pod("attracted");
        assert_eq!(cache.snapshot().pods_scoring_affinity, Some(0));
    }

    #[test]
    fn the_label_index_answers_as_walking_every_node() {
        use crate::cycle::{Random, schedule};
        use crate::profile::Configuration;
        let mut cache = Cache::default();
        for n in 0..6 {
            let zoned = serde_json::json!({"metadata": {"name": format!("n{n}"), "labels": {
                "kubernetes.io/hostname": format!("n{n}"), "zone": format!("z{}", n % 3)}},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}});
            cache.set_node(serde_json::from_value(zoned).expect("a node"));
        }
        let placements =
            [("a", "g1", "n0"), ("b", "g1", "n1"), ("c", "g2", "n1"), ("d", "g1", "n3")];
        for (uid, group, node) in placements {
            cache.add_pod(&member(uid, "ns", group, node));
        }
        cache.add_pod(&member("other-ns", "elsewhere", "g1", "n2"));
        cache.remove_pod("d");
        cache.add_pod(&member("e", "ns", "g1", "n4"));
        let profile = Configuration::default().profiles().expect("profiles").remove(0);
        for group in ["g1", "g2", "g3"] {
            let pod = info(member("new", "ns", group, ""));
            let indexed = cache.snapshot();
            let walked = Snapshot::new(indexed.nodes.clone(), indexed.images);
            let verdicts = |snapshot: &Snapshot<'_>| {
                crate::explain::explain(&profile, &pod, snapshot)
                    .into_iter()
                    .map(|v| format!("{v:?}"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(verdicts(&indexed), verdicts(&walked), "{group}");
            let one = schedule(&profile, &pod, &indexed, 0, &mut Random::new(1));
            let other = schedule(&profile, &pod, &walked, 0, &mut Random::new(1));
            assert_eq!(one.ok().map(|p| p.node), other.ok().map(|p| p.node), "{group}");
        }
    }

    #[test]
    fn nominated_pods_of_higher_priority_keep_their_room() {
        use crate::cycle::{Random, schedule};
        use crate::profile::Configuration;
        let mut cache = Cache::default();
        cache.set_node(node("a", "2"));
        let with_priority = |uid: &str, priority: i32| {
            let mut pod = requesting("2", "1Gi");
            pod.metadata.uid = Some(uid.into());
            pod.spec.as_mut().expect("spec").priority = Some(priority);
            pod
        };
        let profile = Configuration::default().profiles().expect("profiles").remove(0);
        let waiting = info(with_priority("low", 0));
        let fits = |cache: &Cache| {
            schedule(&profile, &waiting, &cache.snapshot(), 0, &mut Random::new(1)).is_ok()
        };
        assert!(fits(&cache));
        // A more important pod waits for node a: the less important one may not take it.
        let preemptor = with_priority("high", 10);
        cache.nominate("high", Some(("a", &preemptor)));
        assert!(!fits(&cache));
        // A nominated pod of lower priority does not hold it back.
        cache.nominate("high", None);
        let lesser = with_priority("lesser", -1);
        cache.nominate("lesser", Some(("a", &lesser)));
        assert!(fits(&cache));
        assert_eq!(cache.nominated_uids(), vec!["lesser".to_string()]);
    }
}
