#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::Operation;

struct Empty;
impl ClusterView for Empty {
    fn get_json(&self, _: &str, _: &str, _: &str, _: &str) -> Option<bytes::Bytes> {
        None
    }
    fn list_json(&self, _: &str, _: &str, _: &str) -> Vec<bytes::Bytes> {
        Vec::new()
    }
}

fn deployments() -> Attributes<'static> {
    Attributes {
        operation: Operation::Create,
        group: "apps",
        version: "v1",
        kind: "Deployment",
        resource: "deployments",
        subresource: "",
        namespace: "",
        name: "web",
        user: None,
        dry_run: false,
    }
}

fn policy(spec: Value) -> Policy {
    let mut base = json!({
        "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
        "validations": [{"expression": "object.spec.replicas <= 5"}],
    });
    for (k, v) in spec.as_object().unwrap() {
        base[k] = v.clone();
    }
    Policy::new(
        &serde_json::from_value(json!({"metadata": {"name": "max-replicas"}, "spec": base}))
            .unwrap(),
    )
}

fn deployment(replicas: i64) -> Value {
    json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"replicas": replicas}})
}

#[test]
fn a_failed_validation_says_which_expression_failed() {
    let p = policy(json!({}));
    let attrs = deployments();
    let six = deployment(6);
    let request = Request { attributes: &attrs, object: Some(&six), old: None };
    assert!(p.applies(&request, &Empty).unwrap());
    let failures = evaluate(&p, &request, None, None);
    assert_eq!(
        failures,
        vec![Failure {
            message: "failed expression: object.spec.replicas <= 5".into(),
            reason: "Invalid".into()
        }]
    );
    let e = refusal(&attrs, "web", &p.name, "b", &failures[0]);
    assert_eq!(
        e.message,
        "deployments.apps \"web\" is forbidden: ValidatingAdmissionPolicy 'max-replicas' with binding 'b' denied request: failed expression: object.spec.replicas <= 5"
    );
    assert_eq!((e.code(), e.reason.as_str()), (422, "Invalid"));

    let five = deployment(5);
    let ok = Request { attributes: &attrs, object: Some(&five), old: None };
    assert!(evaluate(&p, &ok, None, None).is_empty());
}

#[test]
fn messages_reasons_and_message_expressions_are_used() {
    let p = policy(json!({"validations": [
        {"expression": "object.spec.replicas <= 5", "message": "too many", "reason": "Forbidden"},
        {"expression": "object.spec.replicas <= 4", "messageExpression": "'replicas ' + string(object.spec.replicas) + ' > 4'"},
    ]}));
    let attrs = deployments();
    let six = deployment(6);
    let request = Request { attributes: &attrs, object: Some(&six), old: None };
    let failures = evaluate(&p, &request, None, None);
    assert_eq!(failures[0], Failure { message: "too many".into(), reason: "Forbidden".into() });
    assert_eq!(failures[1].message, "replicas 6 > 4");
    assert_eq!(refusal(&attrs, "web", "p", "b", &failures[0]).code(), 403);
}

#[test]
fn errors_follow_the_failure_policy() {
    let attrs = deployments();
    let object = json!({"metadata": {"name": "web"}, "spec": {}});
    let request = Request { attributes: &attrs, object: Some(&object), old: None };
    let failing = policy(json!({}));
    let failures = evaluate(&failing, &request, None, None);
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0]
            .message
            .starts_with("expression 'object.spec.replicas <= 5' resulted in error: ")
    );
    let ignoring = policy(json!({"failurePolicy": "Ignore"}));
    assert!(evaluate(&ignoring, &request, None, None).is_empty());
}

#[test]
fn params_variables_and_match_conditions_are_bound() {
    let p = policy(json!({
        "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
        "variables": [{"name": "limit", "expression": "int(params.data.max)"}],
        "matchConditions": [{"name": "labelled", "expression": "has(object.metadata.labels)"}],
        "validations": [{"expression": "object.spec.replicas <= variables.limit"}],
    }));
    assert_eq!(p.param_kind, Some(("v1".into(), "ConfigMap".into())));
    let attrs = deployments();
    let six = deployment(6);
    let request = Request { attributes: &attrs, object: Some(&six), old: None };
    let params = json!({"data": {"max": "3"}});
    assert_eq!(evaluate(&p, &request, Some(&params), None).len(), 1);
    let params = json!({"data": {"max": "10"}});
    assert!(evaluate(&p, &request, Some(&params), None).is_empty());
    let unlabelled = json!({"metadata": {"name": "web"}, "spec": {"replicas": 60}});
    let request = Request { attributes: &attrs, object: Some(&unlabelled), old: None };
    assert!(evaluate(&p, &request, Some(&json!({"data": {"max": "3"}})), None).is_empty());
}

#[test]
fn bindings_narrow_what_the_policy_matches() {
    let binding = |spec: Value| {
        Binding::new(
            &serde_json::from_value(json!({"metadata": {"name": "b"}, "spec": spec})).unwrap(),
        )
    };
    let b = binding(json!({"policyName": "max-replicas", "validationActions": ["Deny"]}));
    assert!(b.deny && !b.warn);
    assert!(b.denies_without_params());
    let attrs = deployments();
    let six = deployment(6);
    let request = Request { attributes: &attrs, object: Some(&six), old: None };
    assert!(b.applies(&request, &Empty).unwrap());
    let other = binding(
        json!({"policyName": "p", "matchResources": {"objectSelector": {"matchLabels": {"app": "db"}}}}),
    );
    assert!(!other.applies(&request, &Empty).unwrap());
    let excluded = binding(
        json!({"policyName": "p", "matchResources": {"excludeResourceRules": [{"apiGroups": ["apps"], "apiVersions": ["*"], "operations": ["*"], "resources": ["*"], "resourceNames": ["web"]}]}}),
    );
    assert!(!excluded.applies(&request, &Empty).unwrap());
    assert_eq!(
        warning("p", "b", &Failure { message: "m".into(), reason: "Invalid".into() }),
        "Validation failed for ValidatingAdmissionPolicy 'p' with binding 'b': m"
    );
}
