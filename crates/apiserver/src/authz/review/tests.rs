#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use krust_auth::rbac::{Policy, RbacAuthorizer};
use serde_json::json;

use super::*;

fn policy() -> Arc<Policy> {
    let role = ClusterRole {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("pods".into()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            verbs: vec!["get".into()],
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            ..PolicyRule::default()
        }]),
        aggregation_rule: None,
    };
    let binding = ClusterRoleBinding {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("devs".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: krust_auth::rbac::GROUP.into(),
            kind: "ClusterRole".into(),
            name: "pods".into(),
        },
        subjects: Some(vec![Subject {
            kind: "Group".into(),
            name: "dev".into(),
            ..Subject::default()
        }]),
    };
    Arc::new(Policy::new([], [Arc::new(role)], [], [Arc::new(binding)]))
}

fn answer(review: Review, requester: &UserInfo, body: Value) -> Result<Value, StatusError> {
    let p = policy();
    let authorizer = RbacAuthorizer(Arc::clone(&p));
    review.answer(&authorizer, &p, requester, Some("a"), body)
}

#[test]
fn reviews_answer_as_upstreams_endpoints() {
    let nobody = UserInfo::default();
    let dev = UserInfo { name: "bob".into(), groups: vec!["dev".into()], ..UserInfo::default() };
    let pods = json!({"verb": "get", "resource": "pods", "namespace": "a"});
    let cases = [
        (
            "a subject access review allows the spec's user",
            Review::SubjectAccess,
            &nobody,
            json!({"spec": {"user": "x", "groups": ["dev"], "resourceAttributes": pods}}),
            json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"devs\" of ClusterRole \"pods\" to Group \"dev\""}),
        ),
        (
            "a subject access review does not allow others",
            Review::SubjectAccess,
            &dev,
            json!({"spec": {"user": "x", "resourceAttributes": pods}}),
            json!({"allowed": false}),
        ),
        (
            "a self review asks about the requester",
            Review::SelfSubjectAccess,
            &dev,
            json!({"spec": {"resourceAttributes": pods}}),
            json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"devs\" of ClusterRole \"pods\" to Group \"dev\""}),
        ),
        (
            "masters are allowed without a reason",
            Review::SelfSubjectAccess,
            &UserInfo { groups: vec![MASTERS.into()], ..UserInfo::default() },
            json!({"spec": {"nonResourceAttributes": {"path": "/x", "verb": "get"}}}),
            json!({"allowed": true}),
        ),
        (
            "a local review reads the URL's namespace",
            Review::LocalSubjectAccess,
            &nobody,
            json!({"spec": {"groups": ["dev"], "resourceAttributes": pods}}),
            json!({"allowed": true, "reason": "RBAC: allowed by ClusterRoleBinding \"devs\" of ClusterRole \"pods\" to Group \"dev\""}),
        ),
    ];
    for (name, review, requester, body, status) in cases {
        let out = answer(review, requester, body).unwrap();
        assert_eq!(out["status"], status, "{name}");
        assert_eq!(out["kind"], review.kind(), "{name}");
    }
}

#[test]
fn a_rules_review_lists_resource_and_path_rules() {
    let dev = UserInfo { name: "bob".into(), groups: vec!["dev".into()], ..UserInfo::default() };
    let out = answer(Review::SelfSubjectRules, &dev, json!({"spec": {"namespace": "a"}})).unwrap();
    assert_eq!(
        out["status"],
        json!({"incomplete": false, "nonResourceRules": [], "resourceRules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
    );
    let masters = UserInfo { groups: vec![MASTERS.into()], ..UserInfo::default() };
    let out =
        answer(Review::SelfSubjectRules, &masters, json!({"spec": {"namespace": "a"}})).unwrap();
    assert_eq!(
        out["status"]["nonResourceRules"],
        json!([{"nonResourceURLs": ["*"], "verbs": ["*"]}])
    );
    let missing =
        answer(Review::SelfSubjectRules, &dev, json!({"spec": {}})).err().map(|e| e.code());
    assert_eq!(missing, Some(400));
}

#[test]
fn selectors_are_checked_as_upstreams_and_do_not_narrow_rbac() {
    let dev = UserInfo { name: "bob".into(), groups: vec!["dev".into()], ..UserInfo::default() };
    let review = |attributes: Value| {
        answer(Review::SelfSubjectAccess, &dev, json!({"spec": {"resourceAttributes": attributes}}))
    };
    let allowed = review(json!({"verb": "get", "resource": "pods", "namespace": "a",
        "labelSelector": {"rawSelector": "app=web"},
        "fieldSelector": {"requirements": [{"key": "spec.nodeName", "operator": "In", "values": ["n1"]}]}}))
    .unwrap();
    assert_eq!(allowed["status"]["allowed"], true, "{allowed}");

    let e = review(json!({"verb": "list", "resource": "pods",
        "labelSelector": {"rawSelector": "a=b", "requirements": [{"key": "a", "operator": "Exists"}]},
        "fieldSelector": {}}))
    .unwrap_err();
    assert_eq!(e.code(), 422);
    assert!(
        e.message.contains(
            "spec.resourceAttributes.labelSelector.rawSelector: Invalid value: \"a=b\": may not specified at the same time as requirements"
        ),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("spec.resourceAttributes.fieldSelector.requirements: Required value: when spec.resourceAttributes.fieldSelector is specified, requirements or rawSelector is required"),
        "{}",
        e.message
    );

    let e = review(json!({"verb": "list", "resource": "pods",
        "labelSelector": {"requirements": [
            {"key": "-bad", "operator": "In"},
            {"key": "ok", "operator": "Exists", "values": ["x"]},
            {"key": "ok", "operator": "Someday"}]}}))
    .unwrap_err();
    let m = &e.message;
    assert!(m.contains("labelSelector.requirements[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"), "{m}");
    assert!(m.contains("labelSelector.requirements[0].key: Invalid value: \"-bad\""), "{m}");
    assert!(m.contains("labelSelector.requirements[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"), "{m}");
    assert!(!m.contains("requirements[2]"), "an unknown operator is allowed: {m}");
}
