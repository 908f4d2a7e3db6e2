//! The selectors the plugins match labels with: node selector terms (node affinity), label
//! selectors (pod affinity, topology spread) and tolerations against taints, as upstream's
//! `nodeaffinity`, `metav1.LabelSelectorAsSelector` and `Toleration.ToleratesTaint` match.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether a node with `labels` and `name` matches one term: every label expression and every
/// field expression holds. A term with neither matches nothing.
pub fn term_matches(
    term: &NodeSelectorTerm,
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(name);
            requirement_matches(r, value)
        })
}

/// Whether any of the terms matches (they are ORed).
pub fn any_term_matches(
    terms: &[NodeSelectorTerm],
    labels: &BTreeMap<String, String>,
    name: &str,
) -> bool {
    terms.iter().any(|t| term_matches(t, labels, name))
}

fn requirement_matches(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(value), [bound]) = (value, values) else { return false };
            let (Ok(value), Ok(bound)) = (value.parse::<i64>(), bound.parse::<i64>()) else {
                return false;
            };
            if requirement.operator == "Gt" { value > bound } else { value < bound }
        }
        _ => false,
    }
}

/// Whether `labels` match a label selector: every `matchLabels` pair and every expression.
/// An empty selector matches everything; an absent one is the caller's to decide.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v))
        && selector.match_expressions.iter().flatten().all(|e| {
            let value = labels.get(&e.key);
            let values = e.values.as_deref().unwrap_or_default();
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// Whether `toleration` tolerates `taint` (upstream's `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// Whether any of `tolerations` tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn term(json: serde_json::Value) -> NodeSelectorTerm {
        serde_json::from_value(json).expect("a term")
    }

    #[test]
    fn node_selector_terms() {
        let node = labels(&[("zone", "a"), ("cores", "8")]);
        let cases = [
            (
                "In",
                serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}),
                true,
            ),
            (
                "In, other value",
                serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}),
                false,
            ),
            (
                "NotIn, absent label",
                serde_json::json!({"matchExpressions": [{"key": "gpu", "operator": "NotIn", "values": ["x"]}]}),
                true,
            ),
            (
                "Exists",
                serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}),
                true,
            ),
            (
                "DoesNotExist",
                serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}),
                false,
            ),
            (
                "Gt",
                serde_json::json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]}),
                true,
            ),
            (
                "Lt",
                serde_json::json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]}),
                false,
            ),
            (
                "Gt on a non-number",
                serde_json::json!({"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["4"]}]}),
                false,
            ),
            (
                "field by name",
                serde_json::json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}),
                true,
            ),
            (
                "field by other name",
                serde_json::json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}),
                false,
            ),
            ("an empty term", serde_json::json!({}), false),
            (
                "both must hold",
                serde_json::json!({
                "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}],
                "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}),
                false,
            ),
        ];
        for (name, json, want) in cases {
            assert_eq!(term_matches(&term(json), &node, "n1"), want, "{name}");
        }
    }

    #[test]
    fn tolerations() {
        let taint = Taint {
            key: "gpu".into(),
            value: Some("true".into()),
            effect: "NoSchedule".into(),
            ..Taint::default()
        };
        let toleration = |json: serde_json::Value| -> Toleration {
            serde_json::from_value(json).expect("a toleration")
        };
        let cases = [
            ("equal key and value", serde_json::json!({"key": "gpu", "value": "true"}), true),
            ("other value", serde_json::json!({"key": "gpu", "value": "false"}), false),
            ("exists", serde_json::json!({"key": "gpu", "operator": "Exists"}), true),
            ("exists, every key", serde_json::json!({"operator": "Exists"}), true),
            (
                "other effect",
                serde_json::json!({"key": "gpu", "operator": "Exists", "effect": "NoExecute"}),
                false,
            ),
            (
                "same effect",
                serde_json::json!({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}),
                true,
            ),
            ("other key", serde_json::json!({"key": "cpu", "operator": "Exists"}), false),
        ];
        for (name, json, want) in cases {
            assert_eq!(tolerates(&toleration(json), &taint), want, "{name}");
        }
    }

    #[test]
    fn label_selectors() {
        let pod = labels(&[("app", "web"), ("tier", "front")]);
        let selector = |json: serde_json::Value| -> LabelSelector {
            serde_json::from_value(json).expect("a selector")
        };
        assert!(selector_matches(&selector(serde_json::json!({})), &pod));
        assert!(selector_matches(
            &selector(serde_json::json!({"matchLabels": {"app": "web"}})),
            &pod
        ));
        assert!(!selector_matches(
            &selector(serde_json::json!({"matchLabels": {"app": "db"}})),
            &pod
        ));
        assert!(selector_matches(
            &selector(
                serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]})
            ),
            &pod
        ));
        assert!(!selector_matches(
            &selector(
                serde_json::json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})
            ),
            &pod
        ));
    }
}
