//! TaintNodesByCondition: a new Node is tainted `node.kubernetes.io/not-ready:NoSchedule`
//! until the node lifecycle controller sees it ready, so nothing is scheduled to it early.

use k8s_openapi::api::core::v1::{Node, Taint};
use krust_api::StatusError;
use serde_json::Value;

use crate::{Attributes, ClusterView, Mutating, Operation, Plugin, is, typed};

/// Upstream's name.
pub const NAME: &str = "TaintNodesByCondition";

/// The taint's key.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// The plugin.
pub struct TaintNodesByCondition;

impl Plugin for TaintNodesByCondition {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl Mutating for TaintNodesByCondition {
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        _old: Option<&Value>,
        _cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if attributes.operation != Operation::Create || !is(attributes, "", "nodes") {
            return Ok(());
        }
        let Some(object) = object else { return Ok(()) };
        let Some(node) = typed::<Node>(object) else { return Ok(()) };
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        if taints.iter().any(|t| t.key == NOT_READY && t.effect == "NoSchedule") {
            return Ok(());
        }
        let Some(obj) = object.as_object_mut() else { return Ok(()) };
        let spec = obj.entry("spec").or_insert_with(|| Value::Object(Default::default()));
        let Some(spec) = spec.as_object_mut() else { return Ok(()) };
        let list = spec.entry("taints").or_insert_with(|| Value::Array(Vec::new()));
        if !list.is_array() {
            *list = Value::Array(Vec::new());
        }
        let taint =
            Taint { key: NOT_READY.into(), effect: "NoSchedule".into(), ..Default::default() };
        if let Some(list) = list.as_array_mut() {
            list.push(
                serde_json::to_value(taint).map_err(|e| StatusError::internal(e.to_string()))?,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, create};

    #[test]
    fn new_nodes_are_tainted_not_ready_once() {
        let taint = json!({"key": NOT_READY, "effect": "NoSchedule"});
        let cases: &[(&str, Value, Value)] = &[
            ("a node without a spec", json!({"metadata": {"name": "n"}}), json!([taint])),
            (
                "a node with other taints",
                json!({"metadata": {"name": "n"}, "spec": {"taints": [{"key": "a", "effect": "NoExecute"}]}}),
                json!([{"key": "a", "effect": "NoExecute"}, taint]),
            ),
            (
                "a node with the taint",
                json!({"metadata": {"name": "n"}, "spec": {"taints": [taint]}}),
                json!([taint]),
            ),
        ];
        for (case, node, expected) in cases {
            let mut node = node.clone();
            TaintNodesByCondition
                .admit(&create("", "nodes", ""), Some(&mut node), None, &Objects::default())
                .unwrap();
            assert_eq!(node["spec"]["taints"], *expected, "{case}");
        }
    }
}
