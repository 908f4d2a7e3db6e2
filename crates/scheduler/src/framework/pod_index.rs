//! The placed pods indexed by namespace and label, and their required anti-affinity terms
//! indexed by the first label pair they select, so that PodTopologySpread and InterPodAffinity
//! count the pods a selector picks at the cost of those pods rather than of every pod in the
//! cluster. Kept by the cache as pods are placed and removed.
//!
//! Memory: each placed pod has a slab entry (its shared view and node slot, about 24 bytes)
//! and a 4-byte id in one set per label it carries, and per anti-affinity term it has.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::affinity::Term;
use super::pod_info::NodePod;

/// A placed pod's number in the index.
pub type PodId = u32;

/// key → value → pods (or terms) under that pair.
type Pairs<T> = HashMap<String, HashMap<String, HashSet<T>>>;

/// The index; see the module's comment.
#[derive(Debug, Default)]
pub struct PodIndex {
    slab: Vec<Option<(Arc<NodePod>, usize)>>,
    free: Vec<PodId>,
    /// namespace → label key → label value → pods.
    by_label: HashMap<String, Pairs<PodId>>,
    /// Required anti-affinity terms (pod, term number) under their selector's first
    /// `matchLabels` pair.
    anti: Pairs<(PodId, u16)>,
    /// Required anti-affinity terms without `matchLabels`, looked at for every pod.
    anti_unkeyed: HashSet<(PodId, u16)>,
}

impl PodIndex {
    /// Adds `pod`, placed on the node in `slot`; returns its id.
    pub fn insert(&mut self, pod: Arc<NodePod>, slot: usize) -> PodId {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.slab.push(None);
                PodId::try_from(self.slab.len() - 1).unwrap_or(PodId::MAX)
            }
        };
        let namespace = self.by_label.entry(pod.namespace.clone()).or_default();
        for (key, value) in &pod.labels {
            namespace.entry(key.clone()).or_default().entry(value.clone()).or_default().insert(id);
        }
        for (n, term) in anti_terms(&pod) {
            let key = (id, n);
            match first_pair(term.selector()) {
                Some((k, v)) => {
                    self.anti
                        .entry(k.clone())
                        .or_default()
                        .entry(v.clone())
                        .or_default()
                        .insert(key);
                }
                None => {
                    self.anti_unkeyed.insert(key);
                }
            }
        }
        if let Some(entry) = self.slab.get_mut(id as usize) {
            *entry = Some((pod, slot));
        }
        id
    }

    /// Removes the pod `id`.
    pub fn remove(&mut self, id: PodId) {
        let Some((pod, _)) = self.slab.get_mut(id as usize).and_then(Option::take) else {
            return;
        };
        if let Some(namespace) = self.by_label.get_mut(&pod.namespace) {
            for (key, value) in &pod.labels {
                remove_from(namespace, key, value, &id);
            }
            if namespace.is_empty() {
                self.by_label.remove(&pod.namespace);
            }
        }
        for (n, term) in anti_terms(&pod) {
            match first_pair(term.selector()) {
                Some((k, v)) => remove_from(&mut self.anti, k, v, &(id, n)),
                None => {
                    self.anti_unkeyed.remove(&(id, n));
                }
            }
        }
        self.free.push(id);
    }

    fn get(&self, id: PodId) -> Option<(&NodePod, usize)> {
        self.slab.get(id as usize)?.as_ref().map(|(pod, slot)| (pod.as_ref(), *slot))
    }

    /// The placed pods in `namespace` that `selector` may match, with their node slots: those
    /// carrying its rarest `matchLabels` pair (the caller still matches the whole selector).
    /// `None` when the selector has no `matchLabels`, so the index cannot narrow it.
    pub fn candidates<'s>(
        &'s self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Option<Vec<(&'s NodePod, usize)>> {
        let pairs = selector.match_labels.as_ref().filter(|m| !m.is_empty())?;
        let Some(labels) = self.by_label.get(namespace) else { return Some(Vec::new()) };
        let mut rarest: Option<&HashSet<PodId>> = None;
        for (key, value) in pairs {
            let Some(ids) = labels.get(key).and_then(|values| values.get(value)) else {
                return Some(Vec::new());
            };
            if rarest.is_none_or(|r| ids.len() < r.len()) {
                rarest = Some(ids);
            }
        }
        Some(rarest.into_iter().flatten().filter_map(|id| self.get(*id)).collect())
    }

    /// Every namespace that holds a placed pod with labels.
    pub fn namespaces(&self) -> impl Iterator<Item = &str> {
        self.by_label.keys().map(String::as_str)
    }

    /// The required anti-affinity terms of placed pods that may select a pod with `labels`,
    /// with the pods that have them and their node slots (the caller still matches each).
    pub fn anti_terms_for<'s>(
        &'s self,
        labels: &BTreeMap<String, String>,
    ) -> impl Iterator<Item = (&'s NodePod, usize, &'s Term)> + 's {
        let keyed: Vec<&(PodId, u16)> = labels
            .iter()
            .filter_map(|(k, v)| self.anti.get(k)?.get(v))
            .flatten()
            .chain(&self.anti_unkeyed)
            .collect();
        keyed.into_iter().filter_map(|(id, n)| {
            let (pod, slot) = self.get(*id)?;
            let term = pod.affinity.as_ref()?.anti.get(usize::from(*n))?;
            Some((pod, slot, term))
        })
    }
}

fn anti_terms(pod: &NodePod) -> impl Iterator<Item = (u16, &Term)> {
    pod.affinity
        .iter()
        .flat_map(|t| t.anti.iter())
        .enumerate()
        .map(|(n, term)| (u16::try_from(n).unwrap_or(u16::MAX), term))
}

fn first_pair(selector: &LabelSelector) -> Option<(&String, &String)> {
    selector.match_labels.as_ref()?.iter().next()
}

fn remove_from<T: std::hash::Hash + Eq>(pairs: &mut Pairs<T>, key: &str, value: &str, item: &T) {
    let Some(values) = pairs.get_mut(key) else { return };
    if let Some(items) = values.get_mut(value) {
        items.remove(item);
        if items.is_empty() {
            values.remove(value);
        }
    }
    if values.is_empty() {
        pairs.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn placed(
        uid: &str,
        labels: serde_json::Value,
        anti: Option<serde_json::Value>,
    ) -> Arc<NodePod> {
        let mut spec = serde_json::json!({"containers": []});
        if let Some(selector) = anti {
            spec["affinity"] = serde_json::json!({"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}]}});
        }
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": uid, "namespace": "ns", "uid": uid, "labels": labels},
            "spec": spec}))
        .expect("a pod");
        Arc::new(NodePod::of(&pod))
    }

    fn selector(labels: serde_json::Value) -> LabelSelector {
        serde_json::from_value(serde_json::json!({"matchLabels": labels})).expect("a selector")
    }

    #[test]
    fn candidates_carry_the_rarest_pair_and_leave_with_their_pods() {
        let mut index = PodIndex::default();
        let a = index.insert(placed("a", serde_json::json!({"app": "web", "v": "1"}), None), 0);
        index.insert(placed("b", serde_json::json!({"app": "web", "v": "2"}), None), 1);
        index.insert(placed("c", serde_json::json!({"app": "db"}), None), 1);
        let names = |found: Option<Vec<(&NodePod, usize)>>| {
            let mut names: Vec<String> =
                found.unwrap_or_default().iter().map(|(p, _)| p.name.clone()).collect();
            names.sort();
            names
        };
        let both = serde_json::json!({"app": "web", "v": "1"});
        assert_eq!(names(index.candidates("ns", &selector(both.clone()))), ["a"]);
        assert_eq!(
            names(index.candidates("ns", &selector(serde_json::json!({"app": "web"})))),
            ["a", "b"]
        );
        assert_eq!(names(index.candidates("other", &selector(both.clone()))), Vec::<String>::new());
        assert!(index.candidates("ns", &LabelSelector::default()).is_none(), "nothing to narrow");
        index.remove(a);
        assert_eq!(names(index.candidates("ns", &selector(both))), Vec::<String>::new());
        // The freed id is used again.
        assert_eq!(index.insert(placed("d", serde_json::json!({}), None), 2), a);
    }

    #[test]
    fn anti_affinity_terms_are_found_by_the_labels_they_select() {
        let mut index = PodIndex::default();
        let keyed = Some(serde_json::json!({"matchLabels": {"group": "g1"}}));
        let unkeyed = Some(serde_json::json!({"matchExpressions": [
            {"key": "group", "operator": "In", "values": ["g2"]}]}));
        index.insert(placed("a", serde_json::json!({"group": "g1"}), keyed), 0);
        let b = index.insert(placed("b", serde_json::json!({"group": "g2"}), unkeyed), 1);
        let found = |index: &PodIndex, labels: serde_json::Value| -> Vec<String> {
            let labels: BTreeMap<String, String> = serde_json::from_value(labels).expect("labels");
            let mut names: Vec<String> = index
                .anti_terms_for(&labels)
                .filter(|(_, _, t)| t.matches("ns", &labels, None))
                .map(|(p, _, _)| p.name.clone())
                .collect();
            names.sort();
            names
        };
        assert_eq!(found(&index, serde_json::json!({"group": "g1"})), ["a"]);
        assert_eq!(found(&index, serde_json::json!({"group": "g2"})), ["b"]);
        assert_eq!(found(&index, serde_json::json!({"group": "g3"})), Vec::<String>::new());
        index.remove(b);
        assert_eq!(found(&index, serde_json::json!({"group": "g2"})), Vec::<String>::new());
    }
}
