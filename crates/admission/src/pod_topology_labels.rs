//! PodTopologyLabels, as upstream's `plugin/pkg/admission/podtopologylabels`: the topology
//! labels of a pod's node (`topology.k8s.io/zone`, `topology.k8s.io/region`, upstream's
//! default configuration; not the `topology.kubernetes.io/*` labels nodes carry) are copied
//! onto the pod, without overwriting its own: onto the Binding of a `pods/binding` create
//! (whose labels the binding carries to the pod), and onto a pod created with a `nodeName`. A
//! binding to something other than a `Node`, or to a node that does not exist, changes nothing.
//!
//! Upstream runs it only behind the `PodTopologyLabelsAdmission` feature gate, alpha and off
//! by default in 1.33 ([`ENABLED_BY_DEFAULT`]), so the plugin in the default chain is a no-op
//! (built with `enabled: false`). When enabled, note that krust's `pods/binding` handler does
//! not run admission and copies only a binding's annotations, so only pods created with a
//! `nodeName` would get the labels.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Binding, Node, Pod};
use krust_api::StatusError;
use serde_json::Value;

use crate::{Attributes, ClusterView, Mutating, Operation, Plugin, typed};

/// Upstream's name.
pub const NAME: &str = "PodTopologyLabels";

/// Whether upstream's `PodTopologyLabelsAdmission` gate is on by default (1.33: alpha, off).
pub const ENABLED_BY_DEFAULT: bool = false;

/// The node labels copied, as upstream's default configuration.
pub const LABELS: &[&str] = &["topology.k8s.io/zone", "topology.k8s.io/region"];

/// The plugin; it does nothing unless `enabled`.
pub struct PodTopologyLabels {
    enabled: bool,
}

impl PodTopologyLabels {
    /// The plugin, acting only when `enabled` (upstream's feature gate).
    pub fn new(enabled: bool) -> Self {
        Self { enabled }
    }
}

impl Plugin for PodTopologyLabels {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The topology labels of the node `name`; none when it does not exist.
fn topology_labels(cluster: &dyn ClusterView, name: &str) -> BTreeMap<String, String> {
    let node = cluster.get::<Node>("", "nodes", "", name);
    node.and_then(|n| n.metadata.labels)
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| LABELS.contains(&k.as_str()))
        .collect()
}

/// Adds `labels` to `object`'s `metadata.labels`, keeping the ones it has.
fn merge_labels(object: &mut Value, labels: BTreeMap<String, String>) {
    if labels.is_empty() {
        return;
    }
    let meta = krust_api::object::metadata_mut(object);
    let target = meta.entry("labels").or_insert_with(|| Value::Object(Default::default()));
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Some(target) = target.as_object_mut() {
        for (k, v) in labels {
            target.entry(k).or_insert(Value::String(v));
        }
    }
}

impl Mutating for PodTopologyLabels {
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        _old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if !self.enabled
            || attributes.operation != Operation::Create
            || !attributes.group.is_empty()
            || attributes.resource != "pods"
        {
            return Ok(());
        }
        let Some(object) = object else { return Ok(()) };
        let node = match attributes.subresource {
            "" => typed::<Pod>(object).and_then(|p| p.spec).and_then(|s| s.node_name),
            "binding" => typed::<Binding>(object)
                .filter(|b| b.target.kind.as_deref() == Some("Node"))
                .and_then(|b| b.target.name),
            _ => None,
        };
        let Some(node) = node.filter(|n| !n.is_empty()) else { return Ok(()) };
        merge_labels(object, topology_labels(cluster, &node));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, create};

    fn cluster() -> Objects {
        Objects(vec![(
            "",
            "nodes",
            json!({"metadata": {"name": "n1", "labels": {
                "topology.k8s.io/zone": "z1", "topology.k8s.io/region": "r1",
                "topology.kubernetes.io/zone": "z1", "kubernetes.io/hostname": "n1"}}}),
        )])
    }

    #[test]
    fn node_topology_reaches_bindings_and_bound_pods() {
        let copied = json!({"topology.k8s.io/zone": "z1", "topology.k8s.io/region": "r1"});
        let cases: &[(&str, &str, Value, Value)] = &[
            (
                "a binding to a node takes its labels",
                "binding",
                json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}}),
                copied.clone(),
            ),
            (
                "a pod's own labels are kept",
                "",
                json!({"metadata": {"name": "p", "labels": {"topology.k8s.io/zone": "mine"}},
                    "spec": {"nodeName": "n1", "containers": []}}),
                json!({"topology.k8s.io/zone": "mine", "topology.k8s.io/region": "r1"}),
            ),
            (
                "a binding to something else changes nothing",
                "binding",
                json!({"metadata": {"name": "p"}, "target": {"kind": "Pod", "name": "n1"}}),
                Value::Null,
            ),
            (
                "a missing node changes nothing",
                "binding",
                json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n2"}}),
                Value::Null,
            ),
            (
                "an unscheduled pod changes nothing",
                "",
                json!({"metadata": {"name": "p"}, "spec": {"containers": []}}),
                Value::Null,
            ),
        ];
        for (case, subresource, object, labels) in cases {
            let mut attributes = create("", "pods", "ns");
            attributes.subresource = subresource;
            let mut object = object.clone();
            PodTopologyLabels::new(true)
                .admit(&attributes, Some(&mut object), None, &cluster())
                .unwrap();
            assert_eq!(object["metadata"]["labels"], *labels, "{case}");
        }
    }

    #[test]
    fn off_by_default_as_upstreams_gate() {
        let mut object =
            json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1", "containers": []}});
        PodTopologyLabels::new(ENABLED_BY_DEFAULT)
            .admit(&create("", "pods", "ns"), Some(&mut object), None, &cluster())
            .unwrap();
        assert_eq!(object["metadata"].get("labels"), None);
    }
}
