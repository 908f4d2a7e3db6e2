//! The cluster as one scheduling cycle sees it: every node with its pods, borrowed from the
//! scheduler's cache (which does not change during a cycle), how widely each image is spread,
//! and the cache's index of placed pods by label, through which the plugins find the pods a
//! selector picks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::affinity::{Labels, Term};
use super::labels::selector_matches;
use super::pod_index::PodIndex;
use super::{NodeInfo, NodePod};

/// An image's size and how many nodes hold it (what image locality scores by).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImageSpread {
    /// Its size in bytes.
    pub size: i64,
    /// How many nodes report it.
    pub nodes: usize,
}

/// The cache's index of placed pods, with the node slots it refers to.
#[derive(Debug, Clone, Copy)]
pub struct Indexed<'a> {
    /// The index.
    pub pods: &'a PodIndex,
    /// The cache's node slots, which the index's entries name.
    pub slots: &'a [Option<NodeInfo>],
    /// Node label key → value → how many nodes carry it.
    pub label_values: &'a HashMap<String, HashMap<String, usize>>,
}

impl<'a> Indexed<'a> {
    fn node(&self, slot: usize) -> Option<&'a NodeInfo> {
        self.slots.get(slot)?.as_ref()
    }
}

/// One cycle's view of the cluster.
pub struct Snapshot<'a> {
    /// Every node whose Node object is known, in a stable order.
    pub nodes: Vec<&'a NodeInfo>,
    /// Images by name.
    pub images: &'a HashMap<String, ImageSpread>,
    /// The placed pods by label; without it (in tests of one plugin) every node is walked.
    pub index: Option<Indexed<'a>>,
    /// Pods waiting for the node that preemption nominated them to, by node and uid.
    pub nominated: Option<&'a HashMap<String, HashMap<String, Arc<NodePod>>>>,
    /// The labels of each namespace (for affinity terms' `namespaceSelector`).
    pub namespaces: Option<&'a HashMap<String, Labels>>,
    /// Claims, volumes and storage classes (for VolumeBinding).
    pub volumes: Option<&'a super::Volumes>,
    /// How many placed pods have terms that score other pods (required or preferred pod
    /// affinity, preferred anti-affinity), when the cache counts them.
    pub pods_scoring_affinity: Option<usize>,
}

impl<'a> Snapshot<'a> {
    /// A view of `nodes` without an index.
    pub fn new(nodes: Vec<&'a NodeInfo>, images: &'a HashMap<String, ImageSpread>) -> Self {
        Self {
            nodes,
            images,
            index: None,
            nominated: None,
            namespaces: None,
            volumes: None,
            pods_scoring_affinity: None,
        }
    }

    /// The labels of `namespace`, if known.
    pub fn namespace_labels(&self, namespace: &str) -> Option<&'a Labels> {
        self.namespaces?.get(namespace)
    }

    /// `node` with the pods nominated to it that `pod` must leave room for (those of at
    /// least its priority, other than itself), as upstream's filters see a node with
    /// nominated pods; `None` when there are none.
    pub fn with_nominated(&self, pod: &super::PodInfo, node: &NodeInfo) -> Option<NodeInfo> {
        let waiting = self.nominated?.get(&node.name)?;
        let uid = pod.pod.metadata.uid.as_deref().unwrap_or_default();
        let priority = pod.priority();
        let mut ahead =
            waiting.values().filter(|p| p.uid != uid && p.priority >= priority).peekable();
        ahead.peek()?;
        let mut with = node.clone();
        for nominated in ahead {
            with.add_pod(Arc::clone(nominated));
        }
        Some(with)
    }

    /// The nodes that hold at least one pod with pod affinity or anti-affinity terms.
    pub fn nodes_with_affinity_pods(&self) -> impl Iterator<Item = &'a NodeInfo> + '_ {
        self.nodes.iter().copied().filter(|n| n.pods_with_affinity > 0)
    }

    /// How many distinct values the nodes have for label `key` (its topology domains), when
    /// the cache keeps that count.
    pub fn domain_count(&self, key: &str) -> Option<usize> {
        Some(self.index?.label_values.get(key).map_or(0, HashMap::len))
    }

    /// The live (not terminating) placed pods in `namespace` that `selector` matches, each
    /// with its node.
    pub fn matching(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Vec<(&'a NodePod, &'a NodeInfo)> {
        let keep = |pod: &NodePod| {
            !pod.terminating
                && pod.namespace == namespace
                && selector_matches(selector, &pod.labels)
        };
        if let Some(index) = self.index
            && let Some(candidates) = index.pods.candidates(namespace, selector)
        {
            return candidates
                .into_iter()
                .filter(|(pod, _)| keep(pod))
                .filter_map(|(pod, slot)| Some((pod, index.node(slot)?)))
                .collect();
        }
        self.nodes
            .iter()
            .copied()
            .flat_map(|node: &'a NodeInfo| node.pods.values().map(move |pod| (pod.as_ref(), node)))
            .filter(|(pod, _)| keep(pod))
            .collect()
    }

    /// The live placed pods that an inter-pod affinity `term` selects, each with its node.
    pub fn term_matching(&self, term: &Term) -> Vec<(&'a NodePod, &'a NodeInfo)> {
        match term.namespaces() {
            Some(namespaces) => {
                namespaces.iter().flat_map(|ns| self.matching(ns, term.selector())).collect()
            }
            None => {
                let mut namespaces: Vec<&str> = match self.index {
                    Some(index) => index.pods.namespaces().collect(),
                    None => self
                        .nodes
                        .iter()
                        .flat_map(|n| n.pods.values().map(|p| p.namespace.as_str()))
                        .collect(),
                };
                namespaces.sort_unstable();
                namespaces.dedup();
                namespaces
                    .into_iter()
                    .filter(|ns| term.covers(ns, self.namespace_labels(ns)))
                    .flat_map(|ns| self.matching(ns, term.selector()))
                    .collect()
            }
        }
    }

    /// The required anti-affinity terms of live placed pods that select a pod in `namespace`
    /// with `labels`, each with the node of the pod that has it.
    pub fn anti_terms_selecting(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Vec<(&'a NodeInfo, &'a Term)> {
        let namespace_labels = self.namespace_labels(namespace);
        if let Some(index) = self.index {
            return index
                .pods
                .anti_terms_for(labels)
                .filter(|(pod, _, term)| {
                    !pod.terminating && term.matches(namespace, labels, namespace_labels)
                })
                .filter_map(|(_, slot, term)| Some((index.node(slot)?, term)))
                .collect();
        }
        let mut found = Vec::new();
        for node in self.nodes_with_affinity_pods() {
            for pod in node.pods.values().filter(|p| !p.terminating) {
                let Some(terms) = pod.affinity.as_deref() else { continue };
                for term in
                    terms.anti.iter().filter(|t| t.matches(namespace, labels, namespace_labels))
                {
                    found.push((node, term));
                }
            }
        }
        found
    }
}
