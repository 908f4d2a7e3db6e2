//! Pod affinity terms, read once per pod: each resolved against its pod's namespace and labels
//! (`namespaces`, `namespaceSelector: {}`, `matchLabelKeys`), so that a cycle matches the
//! terms of thousands of placed pods without parsing them again.
//!
//! A term's namespaces are its `namespaces`, the pod's own when both are empty, every namespace
//! when its `namespaceSelector` is empty (`{}`), and those whose labels its `namespaceSelector`
//! selects (the scheduler watches namespaces' labels; a namespace whose labels are unknown is
//! not selected).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::labels::selector_matches;

/// Labels of a pod or a namespace.
pub type Labels = BTreeMap<String, String>;

/// One term, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    selector: LabelSelector,
    namespaces: Vec<String>,
    all_namespaces: bool,
    /// A `namespaceSelector` with labels or expressions.
    namespace_selector: Option<LabelSelector>,
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
        let namespace_selector = term.namespace_selector.clone().filter(|_| !all_namespaces);
        Self {
            selector,
            namespaces,
            all_namespaces,
            namespace_selector,
            key: term.topology_key.clone(),
        }
    }

    /// The term's label selector (with `matchLabelKeys` applied).
    pub fn selector(&self) -> &LabelSelector {
        &self.selector
    }

    /// The namespaces the term looks in; `None` for every namespace, or those its
    /// `namespaceSelector` selects ([`Term::covers`] tells which).
    pub fn namespaces(&self) -> Option<&[String]> {
        (!self.all_namespaces && self.namespace_selector.is_none())
            .then_some(self.namespaces.as_slice())
    }

    /// Whether the term looks in `namespace`, whose labels are `namespace_labels` (`None` when
    /// unknown).
    pub fn covers(&self, namespace: &str, namespace_labels: Option<&Labels>) -> bool {
        self.all_namespaces
            || self.namespaces.iter().any(|n| n == namespace)
            || self
                .namespace_selector
                .as_ref()
                .zip(namespace_labels)
                .is_some_and(|(s, labels)| selector_matches(s, labels))
    }

    /// Whether the term selects a pod in `namespace` (with `namespace_labels`) with `labels`.
    pub fn matches(
        &self,
        namespace: &str,
        labels: &Labels,
        namespace_labels: Option<&Labels>,
    ) -> bool {
        self.covers(namespace, namespace_labels) && selector_matches(&self.selector, labels)
    }

    /// Whether the term may select a pod in `namespace` with `labels`, whatever the
    /// namespace's labels (for queueing hints, which have no snapshot).
    pub fn may_match(&self, namespace: &str, labels: &Labels) -> bool {
        (self.namespace_selector.is_some() || self.covers(namespace, None))
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodAffinityTerm;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn term(namespace_selector: Option<LabelSelector>, namespaces: &[&str]) -> Term {
        let term = PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(labels(&[("app", "db")])),
                ..LabelSelector::default()
            }),
            namespace_selector,
            namespaces: Some(namespaces.iter().map(|n| n.to_string()).collect()),
            topology_key: "kubernetes.io/hostname".into(),
            ..PodAffinityTerm::default()
        };
        Term::new(&term, "own", &Labels::new())
    }

    #[test]
    fn namespaces_are_listed_selected_by_labels_or_all() {
        let db = labels(&[("app", "db")]);
        let team = labels(&[("team", "a")]);
        let own = term(None, &[]);
        assert!(own.matches("own", &db, None) && !own.matches("other", &db, Some(&team)));
        assert_eq!(own.namespaces(), Some(&["own".to_string()][..]));

        let all = term(Some(LabelSelector::default()), &[]);
        assert!(all.matches("other", &db, None));
        assert_eq!(all.namespaces(), None);

        let selector = LabelSelector {
            match_labels: Some(labels(&[("team", "a")])),
            ..LabelSelector::default()
        };
        let by_label = term(Some(selector), &["listed"]);
        assert!(by_label.matches("other", &db, Some(&team)));
        assert!(by_label.matches("listed", &db, None));
        assert!(!by_label.matches("other", &db, Some(&labels(&[("team", "b")]))));
        assert!(!by_label.matches("other", &db, None));
        assert!(by_label.may_match("other", &db));
        assert_eq!(by_label.namespaces(), None);
    }
}
