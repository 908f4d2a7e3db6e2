//! DefaultTolerationSeconds: a pod that does not tolerate the `not-ready` and `unreachable`
//! NoExecute taints gets tolerations of them for 300 seconds, so that its node's failure
//! evicts it after five minutes.

use k8s_openapi::api::core::v1::Toleration;
use krust_api::StatusError;
use serde_json::Value;

use crate::{Attributes, ClusterView, Mutating, Operation, Plugin, is, typed};

/// Upstream's name.
pub const NAME: &str = "DefaultTolerationSeconds";

/// The taint of a node that is not ready.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";

/// The taint of a node that does not answer.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// How long the default tolerations last.
pub const SECONDS: i64 = 300;

/// The plugin.
pub struct DefaultTolerationSeconds;

impl Plugin for DefaultTolerationSeconds {
    fn name(&self) -> &'static str {
        NAME
    }
}

fn tolerates(tolerations: &[Toleration], key: &str) -> bool {
    tolerations.iter().any(|t| {
        matches!(t.key.as_deref(), None | Some("")) || t.key.as_deref() == Some(key)
    } && matches!(t.effect.as_deref(), None | Some("") | Some("NoExecute")))
}

/// What this plugin reads of a pod: its tolerations.
#[derive(serde::Deserialize)]
struct PodTolerations {
    spec: Option<TolerationsSpec>,
}

#[derive(serde::Deserialize)]
struct TolerationsSpec {
    tolerations: Option<Vec<Toleration>>,
}

impl Mutating for DefaultTolerationSeconds {
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        _old: Option<&Value>,
        _cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if attributes.operation != Operation::Create || !is(attributes, "", "pods") {
            return Ok(());
        }
        let Some(object) = object else { return Ok(()) };
        let Some(pod) = typed::<PodTolerations>(object) else { return Ok(()) };
        let tolerations = pod.spec.and_then(|s| s.tolerations).unwrap_or_default();
        let missing: Vec<&str> =
            [NOT_READY, UNREACHABLE].into_iter().filter(|k| !tolerates(&tolerations, k)).collect();
        let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if missing.is_empty() {
            return Ok(());
        }
        let list = spec.entry("tolerations").or_insert_with(|| Value::Array(Vec::new()));
        if !list.is_array() {
            *list = Value::Array(Vec::new());
        }
        if let Some(list) = list.as_array_mut() {
            for key in missing {
                let toleration = Toleration {
                    key: Some(key.into()),
                    operator: Some("Exists".into()),
                    effect: Some("NoExecute".into()),
                    toleration_seconds: Some(SECONDS),
                    value: None,
                };
                list.push(
                    serde_json::to_value(toleration)
                        .map_err(|e| StatusError::internal(e.to_string()))?,
                );
            }
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
    fn missing_tolerations_are_added_for_300_seconds() {
        let not_ready = json!({"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
        let unreachable = json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
        let cases: &[(&str, Value, Value)] = &[
            ("a pod without tolerations gets both", json!([]), json!([not_ready, unreachable])),
            (
                "a pod tolerating not-ready gets unreachable",
                json!([{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]),
                json!([{"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}, unreachable]),
            ),
            (
                "a pod tolerating everything gets nothing",
                json!([{"operator": "Exists"}]),
                json!([{"operator": "Exists"}]),
            ),
            (
                "a NoSchedule toleration does not count",
                json!([{"key": NOT_READY, "operator": "Exists", "effect": "NoSchedule"}]),
                json!([{"key": NOT_READY, "operator": "Exists", "effect": "NoSchedule"}, not_ready, unreachable]),
            ),
        ];
        for (case, given, expected) in cases {
            let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [], "tolerations": given}});
            DefaultTolerationSeconds
                .admit(&create("", "pods", "ns"), Some(&mut pod), None, &Objects::default())
                .unwrap();
            assert_eq!(pod["spec"]["tolerations"], *expected, "{case}");
        }
    }
}
