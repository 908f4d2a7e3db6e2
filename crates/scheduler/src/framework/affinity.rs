//! Pod affinity terms, read once per pod: each resolved against its pod's namespace and labels
//! (`namespaces`, `namespaceSelector: {}`, `matchLabelKeys`), so that a cycle matches the
//! terms of thousands of placed pods without parsing them again.
//!
//! A term's namespaces are its `namespaces`, the pod's own when empty, or every namespace when
//! its `namespaceSelector` is empty (`{}`); a selector with labels matches only the listed
//! namespaces, as namespace labels are not in the scheduler's cache.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::labels::selector_matches;

/// One term, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    selector: LabelSelector,
    namespaces: Vec<String>,
    all_namespaces: bool,
    /// The topology key: pods on nodes with the same value of this label are in one domain.
    pub key: String,
}

impl Term {
    /// `term` of a pod in `namespace` with `labels`.
    pub fn new(term: &PodAffinityTerm, namespace: &str, labels: &BTreeMap<String, String>) -> Self {
        // A term without a selector selects nothing.
        let mut selector = term.label_selector.clone().unwrap_or_else(|| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "krust.dev/nothing".into(),
                operator: "Exists".into(),
                values: None,
            }]),
            ..LabelSelector::default()
        });
        for key in term.match_label_keys.iter().flatten() {
            if let Some(value) = labels.get(key) {
                selector
                    .match_labels
                    .get_or_insert_with(Default::default)
                    .insert(key.clone(), value.clone());
            }
        }
        let listed = term.namespaces.clone().unwrap_or_default();
        let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
            s.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
                && s.match_expressions.as_ref().is_none_or(Vec::is_empty)
        });
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            vec![namespace.to_string()]
        } else {
            listed
        };
        Self { selector, namespaces, all_namespaces, key: term.topology_key.clone() }
    }

    /// The term's label selector (with `matchLabelKeys` applied).
    pub fn selector(&self) -> &LabelSelector {
        &self.selector
    }

    /// The namespaces the term looks in; `None` for every namespace.
    pub fn namespaces(&self) -> Option<&[String]> {
        (!self.all_namespaces).then_some(self.namespaces.as_slice())
    }

    /// Whether the term selects a pod in `namespace` with `labels`.
    pub fn matches(&self, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
        (self.all_namespaces || self.namespaces.iter().any(|n| n == namespace))
            && selector_matches(&self.selector, labels)
    }
}

/// A pod's inter-pod affinity, resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodTerms {
    /// Required affinity terms.
    pub affinity: Vec<Term>,
    /// Required anti-affinity terms.
    pub anti: Vec<Term>,
    /// Preferred terms with their weights, negative for anti-affinity.
    pub preferred: Vec<(i64, Term)>,
}

impl PodTerms {
    /// The terms of `pod`, if it has pod affinity or anti-affinity.
    pub fn of(pod: &Pod) -> Option<Self> {
        let affinity = pod.spec.as_ref()?.affinity.as_ref()?;
        if affinity.pod_affinity.is_none() && affinity.pod_anti_affinity.is_none() {
            return None;
        }
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let empty = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let term = |t: &PodAffinityTerm| Term::new(t, namespace, labels);
        let (positive, negative) =
            (affinity.pod_affinity.as_ref(), affinity.pod_anti_affinity.as_ref());
        let mut terms = PodTerms::default();
        if let Some(p) = positive {
            terms.affinity = p
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .map(term)
                .collect();
            terms.preferred.extend(
                p.preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                    .map(|w| (i64::from(w.weight), term(&w.pod_affinity_term))),
            );
        }
        if let Some(n) = negative {
            terms.anti = n
                .required_during_scheduling_ignored_during_execution
                .iter()
                .flatten()
                .map(term)
                .collect();
            terms.preferred.extend(
                n.preferred_during_scheduling_ignored_during_execution
                    .iter()
                    .flatten()
                    .map(|w| (-i64::from(w.weight), term(&w.pod_affinity_term))),
            );
        }
        Some(terms)
    }
}
