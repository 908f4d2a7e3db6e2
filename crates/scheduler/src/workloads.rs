//! The label selectors of the objects that group pods (Services, ReplicationControllers,
//! ReplicaSets, StatefulSets), kept from their watches for PodTopologySpread's default
//! constraints: a pod without constraints of its own is spread among the pods its services and
//! its controller select, as upstream's `DefaultSelector` does. Only the selectors are kept,
//! never the objects.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::runtime::watcher;

/// The kinds whose selectors are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `v1` Service: its `spec.selector`.
    Service,
    /// `v1` ReplicationController: its `spec.selector`.
    ReplicationController,
    /// `apps/v1` ReplicaSet: its `spec.selector`.
    ReplicaSet,
    /// `apps/v1` StatefulSet: its `spec.selector`.
    StatefulSet,
}

/// What one object selects pods by.
#[derive(Debug, Clone, PartialEq)]
pub enum Selects {
    /// Equality on every label of the map (services, replication controllers).
    Labels(BTreeMap<String, String>),
    /// A full label selector (replica sets, stateful sets).
    Selector(LabelSelector),
}

/// One object's selector, as a watch reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// Its selector; `None` when it has none.
    pub selects: Option<Selects>,
}

impl Entry {
    fn new(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            selects: None,
        }
    }

    /// A Service's entry.
    pub fn of_service(service: &Service) -> Self {
        let selector = service.spec.as_ref().and_then(|s| s.selector.clone());
        Self { selects: selector.map(Selects::Labels), ..Self::new(&service.metadata) }
    }

    /// A ReplicationController's entry.
    pub fn of_replication_controller(rc: &ReplicationController) -> Self {
        let selector = rc.spec.as_ref().and_then(|s| s.selector.clone());
        Self { selects: selector.map(Selects::Labels), ..Self::new(&rc.metadata) }
    }

    /// A ReplicaSet's entry.
    pub fn of_replica_set(rs: &ReplicaSet) -> Self {
        let selector = rs.spec.as_ref().map(|s| s.selector.clone());
        Self { selects: selector.map(Selects::Selector), ..Self::new(&rs.metadata) }
    }

    /// A StatefulSet's entry.
    pub fn of_stateful_set(set: &StatefulSet) -> Self {
        let selector = set.spec.as_ref().map(|s| s.selector.clone());
        Self { selects: selector.map(Selects::Selector), ..Self::new(&set.metadata) }
    }
}

/// A watch event of `K` reduced to its object's selector.
pub fn event<K>(event: watcher::Event<K>, entry: fn(&K) -> Entry) -> watcher::Event<Entry> {
    match event {
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(entry(&object)),
        watcher::Event::InitDone => watcher::Event::InitDone,
        watcher::Event::Apply(object) => watcher::Event::Apply(entry(&object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(entry(&object)),
    }
}

/// The kept selectors, by kind, namespace and name.
#[derive(Debug, Default)]
pub struct Workloads {
    selectors: HashMap<Kind, HashMap<String, HashMap<String, Selects>>>,
    /// What a re-list of a kind has shown so far.
    relisting: HashMap<Kind, Vec<Entry>>,
    /// The kinds whose first list is in.
    listed: HashSet<Kind>,
}

impl Workloads {
    /// Applies one watch event of `kind`.
    pub fn apply(&mut self, kind: Kind, event: watcher::Event<Entry>) {
        match event {
            watcher::Event::Init => {
                self.relisting.insert(kind, Vec::new());
            }
            watcher::Event::InitApply(entry) => {
                self.relisting.entry(kind).or_default().push(entry);
            }
            watcher::Event::InitDone => {
                self.listed.insert(kind);
                let entries = self.relisting.remove(&kind).unwrap_or_default();
                self.selectors.remove(&kind);
                for entry in entries {
                    self.insert(kind, entry);
                }
            }
            watcher::Event::Apply(entry) => self.insert(kind, entry),
            watcher::Event::Delete(entry) => self.remove(kind, &entry.namespace, &entry.name),
        }
    }

    /// Whether every kind has been listed once (before that, default spreading would miss
    /// the selectors not yet seen).
    pub fn synced(&self) -> bool {
        const KINDS: [Kind; 4] =
            [Kind::Service, Kind::ReplicationController, Kind::ReplicaSet, Kind::StatefulSet];
        KINDS.iter().all(|k| self.listed.contains(k))
    }

    fn insert(&mut self, kind: Kind, entry: Entry) {
        let Some(selects) = entry.selects else {
            return self.remove(kind, &entry.namespace, &entry.name);
        };
        self.selectors
            .entry(kind)
            .or_default()
            .entry(entry.namespace)
            .or_default()
            .insert(entry.name, selects);
    }

    fn remove(&mut self, kind: Kind, namespace: &str, name: &str) {
        let Some(namespaces) = self.selectors.get_mut(&kind) else { return };
        if let Some(names) = namespaces.get_mut(namespace) {
            names.remove(name);
            if names.is_empty() {
                namespaces.remove(namespace);
            }
        }
    }

    fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<&Selects> {
        self.selectors.get(&kind)?.get(namespace)?.get(name)
    }

    /// The selector that PodTopologySpread's default constraints count `pod`'s peers by: the
    /// selectors of the services that select it, merged with its controller's (upstream's
    /// `DefaultSelector`). `None` when that selects nothing in particular.
    pub fn default_selector(&self, pod: &Pod) -> Option<LabelSelector> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let mut match_labels = BTreeMap::new();
        let services = self.selectors.get(&Kind::Service).and_then(|n| n.get(namespace));
        for selects in services.into_iter().flat_map(|names| names.values()) {
            if let Selects::Labels(selector) = selects
                && !selector.is_empty()
                && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
            {
                match_labels.extend(selector.clone());
            }
        }
        let mut match_expressions = Vec::new();
        let owner =
            pod.metadata.owner_references.iter().flatten().find(|o| o.controller == Some(true));
        let kind = owner.and_then(|o| match (o.api_version.as_str(), o.kind.as_str()) {
            ("v1", "ReplicationController") => Some(Kind::ReplicationController),
            ("apps/v1", "ReplicaSet") => Some(Kind::ReplicaSet),
            ("apps/v1", "StatefulSet") => Some(Kind::StatefulSet),
            _ => None,
        });
        if let (Some(owner), Some(kind)) = (owner, kind) {
            match self.get(kind, namespace, &owner.name) {
                Some(Selects::Labels(selector)) => match_labels.extend(selector.clone()),
                Some(Selects::Selector(selector)) => {
                    match_labels.extend(selector.match_labels.clone().unwrap_or_default());
                    match_expressions
                        .extend(selector.match_expressions.clone().unwrap_or_default());
                }
                None => {}
            }
        }
        if match_labels.is_empty() && match_expressions.is_empty() {
            return None;
        }
        Some(LabelSelector {
            match_labels: Some(match_labels),
            match_expressions: (!match_expressions.is_empty()).then_some(match_expressions),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(labels: serde_json::Value, owner: Option<(&str, &str, &str)>) -> Pod {
        let mut meta = serde_json::json!({"name": "p", "namespace": "ns", "labels": labels});
        if let Some((api_version, kind, name)) = owner {
            meta["ownerReferences"] = serde_json::json!([{"apiVersion": api_version, "kind": kind,
                "name": name, "uid": "u", "controller": true}]);
        }
        serde_json::from_value(serde_json::json!({"metadata": meta})).expect("a pod")
    }

    fn service(namespace: &str, name: &str, selector: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": namespace}, "spec": {"selector": selector}}))
        .expect("a service")
    }

    fn replica_set(name: &str, selector: serde_json::Value) -> ReplicaSet {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"selector": selector, "template": {}}}))
        .expect("a replica set")
    }

    #[test]
    fn services_and_the_controller_make_the_selector() {
        let mut w = Workloads::default();
        let web = Entry::of_service(&service("ns", "web", serde_json::json!({"app": "web"})));
        let other = Entry::of_service(&service("ns", "db", serde_json::json!({"app": "db"})));
        let elsewhere = Entry::of_service(&service("x", "web", serde_json::json!({"tier": "x"})));
        for entry in [web, other, elsewhere] {
            w.apply(Kind::Service, watcher::Event::Apply(entry));
        }
        let rs = replica_set(
            "web-1",
            serde_json::json!({"matchLabels": {"app": "web", "pod-template-hash": "1"},
            "matchExpressions": [{"key": "tier", "operator": "Exists"}]}),
        );
        w.apply(Kind::ReplicaSet, watcher::Event::Apply(Entry::of_replica_set(&rs)));
        let labels = serde_json::json!({"app": "web", "pod-template-hash": "1", "tier": "x"});
        let owned = pod(labels.clone(), Some(("apps/v1", "ReplicaSet", "web-1")));
        let selector = w.default_selector(&owned).expect("a selector");
        let expected: BTreeMap<String, String> =
            [("app", "web"), ("pod-template-hash", "1")].map(|(k, v)| (k.into(), v.into())).into();
        assert_eq!(selector.match_labels, Some(expected));
        assert_eq!(selector.match_expressions.map(|e| e.len()), Some(1));
        // Without a controller, the services alone.
        let bare = w.default_selector(&pod(labels, None)).expect("a selector");
        assert_eq!(bare.match_labels.map(|m| m.len()), Some(1));
        // Nothing selects it: no default constraints.
        assert_eq!(w.default_selector(&pod(serde_json::json!({"app": "other"}), None)), None);
    }

    #[test]
    fn a_relist_replaces_a_kind() {
        let mut w = Workloads::default();
        let web = Entry::of_service(&service("ns", "web", serde_json::json!({"app": "web"})));
        w.apply(Kind::Service, watcher::Event::Apply(web));
        let p = pod(serde_json::json!({"app": "web"}), None);
        assert!(w.default_selector(&p).is_some());
        w.apply(Kind::Service, watcher::Event::Init);
        assert!(w.default_selector(&p).is_some(), "kept until the re-list is done");
        w.apply(Kind::Service, watcher::Event::InitDone);
        assert_eq!(w.default_selector(&p), None);
        assert!(!w.synced(), "the other kinds are not listed yet");
        for kind in [Kind::ReplicationController, Kind::ReplicaSet, Kind::StatefulSet] {
            w.apply(kind, watcher::Event::Init);
            w.apply(kind, watcher::Event::InitDone);
        }
        assert!(w.synced());
    }
}
