//! Which writes a webhook or a policy applies to, as upstream's `rules.Matcher`,
//! `namespace.Matcher` and `object.Matcher`: rules over operation, group, version, resource
//! (with subresources and `*`) and scope; the namespace's labels; the object's labels.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1::{NamedRuleWithOperations, RuleWithOperations};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use krust_api::StatusError;
use krust_auth::rbac::aggregation::selector_matches;
use serde_json::Value;

use crate::{Attributes, ClusterView};

/// How a rule's versions are compared with the request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatchPolicy {
    /// Only the listed versions match.
    Exact,
    /// A request for the same group and resource in another version matches too (upstream's
    /// default; krust serves one version per resource, so this compares group and resource).
    #[default]
    Equivalent,
}

impl MatchPolicy {
    /// Reads `matchPolicy` (absent: `Equivalent`).
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("Exact") => Self::Exact,
            _ => Self::Equivalent,
        }
    }
}

/// One rule: what a webhook or policy applies to. An absent list matches nothing, as upstream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    /// `CREATE`, `UPDATE`, `DELETE`, `CONNECT` or `*`.
    pub operations: Vec<String>,
    /// API groups (`""` core, `*` all).
    pub api_groups: Vec<String>,
    /// API versions (`*` all).
    pub api_versions: Vec<String>,
    /// `resource`, `resource/subresource`, `*`, `*/*`, `resource/*`, `*/subresource`.
    pub resources: Vec<String>,
    /// `Cluster`, `Namespaced` or `*` (absent: `*`).
    pub scope: Option<String>,
    /// Names the rule is limited to (policies' rules only; empty: every name).
    pub resource_names: Vec<String>,
}

impl From<&RuleWithOperations> for Rule {
    fn from(r: &RuleWithOperations) -> Self {
        Self {
            operations: r.operations.clone().unwrap_or_default(),
            api_groups: r.api_groups.clone().unwrap_or_default(),
            api_versions: r.api_versions.clone().unwrap_or_default(),
            resources: r.resources.clone().unwrap_or_default(),
            scope: r.scope.clone(),
            resource_names: Vec::new(),
        }
    }
}

impl From<&NamedRuleWithOperations> for Rule {
    fn from(r: &NamedRuleWithOperations) -> Self {
        Self {
            operations: r.operations.clone().unwrap_or_default(),
            api_groups: r.api_groups.clone().unwrap_or_default(),
            api_versions: r.api_versions.clone().unwrap_or_default(),
            resources: r.resources.clone().unwrap_or_default(),
            scope: r.scope.clone(),
            resource_names: r.resource_names.clone().unwrap_or_default(),
        }
    }
}

fn any_is(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

/// Whether the request is of a namespaced object (namespaces themselves are cluster-scoped).
fn is_namespaced(attributes: &Attributes<'_>) -> bool {
    !attributes.namespace.is_empty() && !is_namespace_object(attributes)
}

fn is_namespace_object(attributes: &Attributes<'_>) -> bool {
    attributes.group.is_empty() && attributes.resource == "namespaces"
}

impl Rule {
    /// Whether the rule covers the request, as upstream's `rules.Matcher.Matches`.
    pub fn matches(&self, attributes: &Attributes<'_>, policy: MatchPolicy) -> bool {
        let version = match policy {
            MatchPolicy::Exact => any_is(&self.api_versions, attributes.version),
            MatchPolicy::Equivalent => !self.api_versions.is_empty(),
        };
        let scope = match self.scope.as_deref() {
            Some("Cluster") => !is_namespaced(attributes),
            Some("Namespaced") => is_namespaced(attributes),
            _ => true,
        };
        let names = self.resource_names.is_empty()
            || self.resource_names.iter().any(|n| n == attributes.name);
        any_is(&self.operations, attributes.operation.as_str())
            && any_is(&self.api_groups, attributes.group)
            && version
            && self.resource_matches(attributes)
            && scope
            && names
    }

    fn resource_matches(&self, attributes: &Attributes<'_>) -> bool {
        self.resources.iter().any(|r| {
            let (resource, sub) = r.split_once('/').unwrap_or((r.as_str(), ""));
            (resource == "*" || resource == attributes.resource)
                && (sub == "*" || sub == attributes.subresource)
        })
    }
}

/// Whether any of `rules` covers the request.
pub fn any_rule_matches(rules: &[Rule], attributes: &Attributes<'_>, policy: MatchPolicy) -> bool {
    rules.iter().any(|r| r.matches(attributes, policy))
}

/// Writes to webhook configurations and admission policies are never sent to webhooks, so that
/// a broken webhook cannot lock itself in (upstream's `IsExemptAdmissionConfigurationResource`).
pub fn is_exempt_from_webhooks(attributes: &Attributes<'_>) -> bool {
    attributes.group == "admissionregistration.k8s.io"
        && matches!(
            attributes.resource,
            "mutatingwebhookconfigurations"
                | "validatingwebhookconfigurations"
                | "validatingadmissionpolicies"
                | "validatingadmissionpolicybindings"
                | "mutatingadmissionpolicies"
                | "mutatingadmissionpolicybindings"
        )
}

fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// The labels of an object.
pub fn labels_of(object: &Value) -> BTreeMap<String, String> {
    object
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

/// The namespace object of the request: the namespace it is in, or the namespace it writes.
/// `Ok(None)` for cluster-scoped objects; a missing namespace is a 404, as upstream's.
pub fn namespace_object(
    attributes: &Attributes<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
    cluster: &dyn ClusterView,
) -> Result<Option<Value>, StatusError> {
    if is_namespace_object(attributes) {
        return Ok(object.or(old).cloned());
    }
    if attributes.namespace.is_empty() {
        return Ok(None);
    }
    match cluster.get::<Value>("", "namespaces", "", attributes.namespace) {
        Some(ns) => Ok(Some(ns)),
        None => Err(StatusError::not_found("", "namespaces", attributes.namespace)),
    }
}

/// Whether the namespace of the request matches `selector`, as upstream's
/// `MatchNamespaceSelector`: cluster-scoped objects (other than namespaces) always match; an
/// empty selector matches; a missing namespace is a 404.
pub fn namespace_matches(
    selector: Option<&LabelSelector>,
    attributes: &Attributes<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
    cluster: &dyn ClusterView,
) -> Result<bool, StatusError> {
    let Some(selector) = selector.filter(|s| !is_empty(s)) else { return Ok(true) };
    if attributes.namespace.is_empty() && !is_namespace_object(attributes) {
        return Ok(true);
    }
    let labels = namespace_object(attributes, object, old, cluster)?
        .map(|ns| labels_of(&ns))
        .unwrap_or_default();
    Ok(selector_matches(selector, &labels))
}

/// Whether the new or the old object's labels match `selector`, as upstream's
/// `MatchObjectSelector` (an empty selector matches everything, even without an object).
pub fn object_matches(
    selector: Option<&LabelSelector>,
    object: Option<&Value>,
    old: Option<&Value>,
) -> bool {
    let Some(selector) = selector.filter(|s| !is_empty(s)) else { return true };
    [object, old].into_iter().flatten().any(|o| selector_matches(selector, &labels_of(o)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;
    use crate::Operation;

    fn attrs<'a>(op: Operation, group: &'a str, resource: &'a str, sub: &'a str) -> Attributes<'a> {
        Attributes {
            operation: op,
            group,
            version: "v1",
            kind: "Pod",
            resource,
            subresource: sub,
            namespace: "default",
            name: "web",
            user: None,
            dry_run: false,
        }
    }

    fn rule(ops: &[&str], groups: &[&str], versions: &[&str], resources: &[&str]) -> Rule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        Rule {
            operations: v(ops),
            api_groups: v(groups),
            api_versions: v(versions),
            resources: v(resources),
            ..Rule::default()
        }
    }

    #[test]
    fn rules_match_operation_group_version_and_resource() {
        let pods = attrs(Operation::Create, "", "pods", "");
        let r = rule(&["CREATE"], &[""], &["v1"], &["pods"]);
        assert!(r.matches(&pods, MatchPolicy::Exact));
        assert!(!r.matches(&attrs(Operation::Update, "", "pods", ""), MatchPolicy::Exact));
        assert!(!r.matches(&attrs(Operation::Create, "apps", "pods", ""), MatchPolicy::Exact));
        assert!(!r.matches(&attrs(Operation::Create, "", "services", ""), MatchPolicy::Exact));
        let v2 = rule(&["*"], &["*"], &["v2"], &["*"]);
        assert!(!v2.matches(&pods, MatchPolicy::Exact));
        assert!(v2.matches(&pods, MatchPolicy::Equivalent));
    }

    #[test]
    fn a_star_resource_matches_no_subresource_and_slash_star_matches_all() {
        let status = attrs(Operation::Update, "", "pods", "status");
        assert!(!rule(&["*"], &["*"], &["*"], &["*"]).matches(&status, MatchPolicy::Exact));
        assert!(rule(&["*"], &["*"], &["*"], &["*/*"]).matches(&status, MatchPolicy::Exact));
        assert!(rule(&["*"], &["*"], &["*"], &["pods/*"]).matches(&status, MatchPolicy::Exact));
        assert!(rule(&["*"], &["*"], &["*"], &["*/status"]).matches(&status, MatchPolicy::Exact));
        assert!(!rule(&["*"], &["*"], &["*"], &["pods"]).matches(&status, MatchPolicy::Exact));
    }

    #[test]
    fn scope_tells_namespaced_from_cluster_objects() {
        let mut r = rule(&["*"], &["*"], &["*"], &["*"]);
        r.scope = Some("Cluster".into());
        assert!(!r.matches(&attrs(Operation::Create, "", "pods", ""), MatchPolicy::Exact));
        let mut ns = attrs(Operation::Create, "", "namespaces", "");
        ns.namespace = "";
        assert!(r.matches(&ns, MatchPolicy::Exact));
        r.scope = Some("Namespaced".into());
        assert!(r.matches(&attrs(Operation::Create, "", "pods", ""), MatchPolicy::Exact));
    }

    #[test]
    fn object_selectors_match_the_new_or_the_old_labels() {
        let sel: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"a": "b"}})).unwrap();
        let with = json!({"metadata": {"labels": {"a": "b"}}});
        let without = json!({"metadata": {}});
        assert!(object_matches(Some(&sel), Some(&without), Some(&with)));
        assert!(!object_matches(Some(&sel), Some(&without), None));
        assert!(object_matches(Some(&LabelSelector::default()), None, None));
    }

    struct Namespaces(Vec<Value>);
    impl ClusterView for Namespaces {
        fn get_json(&self, _: &str, _: &str, _: &str, name: &str) -> Option<bytes::Bytes> {
            self.0.iter().find(|n| n["metadata"]["name"] == name).map(crate::testing::json)
        }
        fn list_json(&self, _: &str, _: &str, _: &str) -> Vec<bytes::Bytes> {
            self.0.iter().map(crate::testing::json).collect()
        }
    }

    #[test]
    fn namespace_selectors_read_the_namespace_labels() {
        let cluster =
            Namespaces(vec![json!({"metadata": {"name": "default", "labels": {"env": "prod"}}})]);
        let sel: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"env": "prod"}})).unwrap();
        let pods = attrs(Operation::Create, "", "pods", "");
        assert!(namespace_matches(Some(&sel), &pods, None, None, &cluster).unwrap());
        let mut elsewhere = pods.clone();
        elsewhere.namespace = "gone";
        assert_eq!(
            namespace_matches(Some(&sel), &elsewhere, None, None, &cluster).unwrap_err().code(),
            404
        );
        let mut cluster_scoped = pods.clone();
        cluster_scoped.namespace = "";
        assert!(namespace_matches(Some(&sel), &cluster_scoped, None, None, &cluster).unwrap());
    }
}
