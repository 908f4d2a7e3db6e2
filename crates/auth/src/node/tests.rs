#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;

struct Fixed(Arc<Graph>);

impl GraphSource for Fixed {
    fn current(&self) -> Arc<Graph> {
        Arc::clone(&self.0)
    }
}

fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).unwrap()
}

/// n1 runs `web` in `a`, which uses secret `db`, config map `conf`, claim `data` (bound to
/// volume `pv1`) and service account `runner`; n2 runs `other`, which uses secret `theirs`.
fn graph() -> Graph {
    let web = pod(json!({"metadata": {"name": "web", "namespace": "a"}, "spec": {
    "nodeName": "n1", "serviceAccountName": "runner",
    "imagePullSecrets": [{"name": "pull"}],
    "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "conf"}}],
        "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "p"}}}]}],
    "volumes": [
        {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
        {"name": "p", "projected": {"sources": [{"secret": {"name": "projected"}}]}},
        {"name": "s", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
    ]}}));
    let other = pod(json!({"metadata": {"name": "other", "namespace": "a"}, "spec": {
        "nodeName": "n2", "containers": [{"name": "c"}],
        "volumes": [{"name": "s", "secret": {"secretName": "theirs"}}]}}));
    let unbound = pod(json!({"metadata": {"name": "pending", "namespace": "a"}, "spec": {
        "containers": [{"name": "c"}], "volumes": [{"name": "s", "secret": {"secretName": "later"}}]}}));
    assert!(pod_refs(&unbound).is_none(), "a pod bound to no node gives no access");
    let mut graph = Graph::default();
    graph.add_pod(&pod_refs(&web).unwrap());
    graph.add_pod(&pod_refs(&other).unwrap());
    graph.add_claim("a", "data", "pv1");
    graph
}

fn node(name: &str) -> UserInfo {
    UserInfo {
        name: format!("system:node:{name}"),
        groups: vec![NODES_GROUP.into(), crate::AUTHENTICATED.into()],
        ..UserInfo::default()
    }
}

fn request(
    user: UserInfo,
    verb: &str,
    group: &str,
    resource: &str,
    ns: &str,
    name: &str,
) -> Attributes {
    let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
    Attributes {
        user,
        verb: verb.into(),
        resource_request: true,
        namespace: ns.into(),
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        subresource: subresource.into(),
        name: name.into(),
        path: String::new(),
    }
}

#[test]
fn a_node_reaches_what_its_pods_reference_and_nothing_else() {
    let authorizer = NodeAuthorizer::new(Fixed(Arc::new(graph())));
    let n1 = || node("n1");
    let no_relation = "no relationship found between node 'n1' and this object";
    let cases: &[(&str, Attributes, Option<&str>)] = &[
        ("a secret in env", request(n1(), "get", "", "secrets", "a", "db"), None),
        ("a pull secret", request(n1(), "get", "", "secrets", "a", "pull"), None),
        ("a projected secret", request(n1(), "get", "", "secrets", "a", "projected"), None),
        ("a config map in envFrom", request(n1(), "watch", "", "configmaps", "a", "conf"), None),
        ("a claim", request(n1(), "get", "", "persistentvolumeclaims", "a", "data"), None),
        (
            "an ephemeral claim",
            request(n1(), "get", "", "persistentvolumeclaims", "a", "web-s"),
            None,
        ),
        ("the claim's volume", request(n1(), "get", "", "persistentvolumes", "", "pv1"), None),
        (
            "a token of its service account",
            request(n1(), "create", "", "serviceaccounts/token", "a", "runner"),
            None,
        ),
        (
            "another node's secret",
            request(n1(), "get", "", "secrets", "a", "theirs"),
            Some(no_relation),
        ),
        (
            "the same name elsewhere",
            request(n1(), "get", "", "secrets", "b", "db"),
            Some(no_relation),
        ),
        (
            "a secret of an unbound pod",
            request(n1(), "get", "", "secrets", "a", "later"),
            Some(no_relation),
        ),
        (
            "a list of secrets",
            request(n1(), "list", "", "secrets", "a", ""),
            Some("No Object name found"),
        ),
        (
            "a write of a secret",
            request(n1(), "update", "", "secrets", "a", "db"),
            Some("can only read resources of this type"),
        ),
        (
            "another volume",
            request(n1(), "get", "", "persistentvolumes", "", "pv2"),
            Some(no_relation),
        ),
        (
            "a token of another account",
            request(n1(), "create", "", "serviceaccounts/token", "a", "default"),
            Some(no_relation),
        ),
        (
            "its own lease",
            request(n1(), "update", "coordination.k8s.io", "leases", "kube-node-lease", "n1"),
            None,
        ),
        (
            "another node's lease",
            request(n1(), "update", "coordination.k8s.io", "leases", "kube-node-lease", "n2"),
            Some("can only access node lease with the same name as the requesting node"),
        ),
        (
            "a lease elsewhere",
            request(n1(), "get", "coordination.k8s.io", "leases", "default", "n1"),
            Some("can only access leases in the \"kube-node-lease\" system namespace"),
        ),
        ("nodes, through the role's rules", request(n1(), "list", "", "nodes", "", ""), None),
        (
            "node status, through the rules",
            request(n1(), "patch", "", "nodes/status", "", "n1"),
            None,
        ),
        (
            "pod status, through the rules",
            request(n1(), "update", "", "pods/status", "a", "web"),
            None,
        ),
        ("events, through the rules", request(n1(), "create", "", "events", "a", ""), None),
        (
            "what the rules do not give",
            request(n1(), "delete", "", "namespaces", "", "a"),
            Some(""),
        ),
    ];
    for (case, attributes, refused) in cases {
        let decision = authorizer.authorize(attributes);
        match refused {
            None => assert!(decision.allowed(), "{case}: {decision:?}"),
            Some(reason) => {
                assert_eq!(decision, Decision::NoOpinion(reason.to_string()), "{case}")
            }
        }
    }
}

#[test]
fn only_nodes_are_judged() {
    let authorizer = NodeAuthorizer::new(Fixed(Arc::new(graph())));
    let not_in_group = UserInfo { name: "system:node:n1".into(), ..UserInfo::default() };
    let unnamed =
        UserInfo { name: "jane".into(), groups: vec![NODES_GROUP.into()], ..UserInfo::default() };
    assert_eq!(
        authorizer.authorize(&request(not_in_group, "get", "", "secrets", "a", "db")),
        Decision::NoOpinion(String::new())
    );
    assert_eq!(
        authorizer.authorize(&request(unnamed, "list", "", "nodes", "", "")),
        Decision::NoOpinion("unknown node for user \"jane\"".into())
    );
}

#[test]
fn removing_a_pod_removes_only_its_references() {
    let mut graph = graph();
    let second = pod(json!({"metadata": {"name": "web2", "namespace": "a"}, "spec": {
        "nodeName": "n1", "containers": [{"name": "c",
            "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "p"}}}]}]}}));
    let refs = pod_refs(&second).unwrap();
    graph.add_pod(&refs);
    graph.remove_pod(&refs);
    assert!(graph.reaches("n1", Kind::Secret, "a", "db"), "web still uses it");
    graph.remove_claim("a", "data", "pv1");
    assert!(!graph.reaches_volume("n1", "pv1"));
}
