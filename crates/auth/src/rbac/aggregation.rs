//! ClusterRole aggregation, as upstream's `clusterroleaggregation` controller computes it: the
//! rules of a ClusterRole with an `aggregationRule` are the rules of every other ClusterRole
//! its selectors match, in selector order, then by role name, each rule once.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `labels` match `selector`. An empty selector matches everything; a malformed one
/// (an unknown operator, `In` without values) matches nothing.
pub fn selector_matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        let value = labels.get(&e.key);
        match e.operator.as_str() {
            "In" => !values.is_empty() && value.is_some_and(|v| values.contains(v)),
            "NotIn" => !values.is_empty() && value.is_none_or(|v| !values.contains(v)),
            "Exists" => values.is_empty() && value.is_some(),
            "DoesNotExist" => values.is_empty() && value.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// The rules `role` aggregates from `all` (every ClusterRole), or `None` when it has no
/// `aggregationRule`.
pub fn aggregated_rules(role: &ClusterRole, all: &[&ClusterRole]) -> Option<Vec<PolicyRule>> {
    let rule = role.aggregation_rule.as_ref()?;
    let mut sorted: Vec<&ClusterRole> = all.to_vec();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let empty = BTreeMap::new();
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in rule.cluster_role_selectors.iter().flatten() {
        for other in &sorted {
            if other.metadata.name == role.metadata.name
                || !selector_matches(selector, other.metadata.labels.as_ref().unwrap_or(&empty))
            {
                continue;
            }
            for r in other.rules.iter().flatten() {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
    }
    Some(rules)
}

/// Whether `role`'s stored rules differ from `aggregated` (an absent list equals an empty
/// one, as upstream's semantic equality has it).
pub fn needs_update(role: &ClusterRole, aggregated: &[PolicyRule]) -> bool {
    role.rules.as_deref().unwrap_or_default() != aggregated
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta};

    use super::*;

    fn role(name: &str, labels: &[(&str, &str)], verbs: &[&str]) -> ClusterRole {
        ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..ObjectMeta::default()
            },
            rules: Some(
                verbs
                    .iter()
                    .map(|v| PolicyRule {
                        verbs: vec![v.to_string()],
                        api_groups: Some(vec![String::new()]),
                        resources: Some(vec!["pods".into()]),
                        ..PolicyRule::default()
                    })
                    .collect(),
            ),
            aggregation_rule: None,
        }
    }

    fn aggregating(name: &str, selectors: Vec<LabelSelector>) -> ClusterRole {
        ClusterRole {
            aggregation_rule: Some(AggregationRule { cluster_role_selectors: Some(selectors) }),
            ..role(name, &[], &[])
        }
    }

    fn labels(k: &str, v: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some([(k.to_string(), v.to_string())].into()),
            match_expressions: None,
        }
    }

    fn verbs(rules: &[PolicyRule]) -> Vec<String> {
        rules.iter().map(|r| r.verbs.join(",")).collect()
    }

    #[test]
    fn aggregation_gathers_the_rules_of_matching_roles() {
        let a = role("b-role", &[("agg", "true")], &["get", "list"]);
        let b = role("a-role", &[("agg", "true")], &["list", "watch"]);
        let c = role("c-role", &[("agg", "false")], &["delete"]);
        let edit = aggregating("edit", vec![labels("agg", "true")]);
        let all = [&a, &b, &c, &edit];
        let cases = [
            (
                "matching roles give their rules by role name, each once",
                &edit,
                Some(vec!["list", "watch", "get"]),
            ),
            ("a role without an aggregationRule aggregates nothing", &a, None),
        ];
        for (name, role, expected) in cases {
            let got = aggregated_rules(role, &all).map(|r| verbs(&r));
            let expected = expected.map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn a_role_does_not_aggregate_itself_and_no_match_is_no_rules() {
        let mut edit = aggregating("edit", vec![labels("agg", "true")]);
        edit.metadata.labels = Some([("agg".to_string(), "true".to_string())].into());
        edit.rules = Some(role("x", &[], &["get"]).rules.unwrap_or_default());
        let got = aggregated_rules(&edit, &[&edit]).unwrap_or_default();
        assert!(got.is_empty());
        assert!(needs_update(&edit, &got));
        let empty = aggregating("view", vec![labels("none", "true")]);
        assert!(!needs_update(&empty, &[]));
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let l: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let expr = |op: &str, values: &[&str]| LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "a".into(),
                operator: op.into(),
                values: if values.is_empty() {
                    None
                } else {
                    Some(values.iter().map(|v| v.to_string()).collect())
                },
            }]),
        };
        let cases = [
            ("an empty selector matches everything", LabelSelector::default(), true),
            ("matchLabels match equal values", labels("a", "1"), true),
            ("matchLabels refuse other values", labels("a", "2"), false),
            ("In matches a listed value", expr("In", &["1", "2"]), true),
            ("NotIn refuses a listed value", expr("NotIn", &["1"]), false),
            ("Exists matches a present key", expr("Exists", &[]), true),
            ("DoesNotExist refuses a present key", expr("DoesNotExist", &[]), false),
            ("an unknown operator matches nothing", expr("Like", &["1"]), false),
        ];
        for (name, selector, expected) in cases {
            assert_eq!(selector_matches(&selector, &l), expected, "{name}");
        }
    }
}
