#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use krust_auth::UserInfo;
use serde_json::json;

use super::*;

#[derive(Default)]
struct Cluster(HashMap<(String, String, String), Value>);

impl ClusterView for Cluster {
    fn get_json(
        &self,
        _group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Option<bytes::Bytes> {
        self.0.get(&(resource.into(), namespace.into(), name.into())).map(crate::testing::json)
    }
    fn list_json(&self, _group: &str, _resource: &str, _namespace: &str) -> Vec<bytes::Bytes> {
        Vec::new()
    }
}

fn node_user(name: &str) -> UserInfo {
    UserInfo {
        name: format!("system:node:{name}"),
        groups: vec!["system:nodes".into(), "system:authenticated".into()],
        ..UserInfo::default()
    }
}

fn bound_pod(name: &str, node: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "a"},
        "spec": {"nodeName": node, "containers": [{"name": "c"}]}})
}

fn cluster() -> Cluster {
    let mut c = Cluster::default();
    c.0.insert(("pods".into(), "a".into(), "mine".into()), bound_pod("mine", "n1"));
    c.0.insert(("pods".into(), "a".into(), "theirs".into()), bound_pod("theirs", "n2"));
    c.0.insert(
        ("nodes".into(), "".into(), "n1".into()),
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "n1-uid"}}),
    );
    c
}

struct Case {
    name: &'static str,
    operation: Operation,
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    namespace: &'static str,
    object_name: &'static str,
    object: Option<Value>,
    old: Option<Value>,
    refused: Option<&'static str>,
}

fn case(
    name: &'static str,
    operation: Operation,
    resource: &'static str,
    object_name: &'static str,
) -> Case {
    Case {
        name,
        operation,
        group: "",
        resource,
        subresource: "",
        namespace: "a",
        object_name,
        object: None,
        old: None,
        refused: None,
    }
}

fn run(c: &Case, user: &UserInfo) -> Result<(), StatusError> {
    let attributes = Attributes {
        operation: c.operation,
        group: c.group,
        version: "v1",
        kind: "",
        resource: c.resource,
        subresource: c.subresource,
        namespace: c.namespace,
        name: c.object_name,
        user: Some(user),
        dry_run: false,
    };
    let mut object = c.object.clone();
    NodeRestriction::new().admit(&attributes, object.as_mut(), c.old.as_ref(), &cluster())
}

fn mirror(node: &str) -> Value {
    let mut p = bound_pod("static", node);
    p["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "x"});
    p["metadata"]["ownerReferences"] = json!([
        {"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "n1-uid", "controller": true}]);
    p
}

/// A mirror pod of n1 whose owner reference has `change` merged in (`null`: no references).
fn mirror_owned(change: Value) -> Value {
    let mut p = mirror("n1");
    match change {
        Value::Null => {
            p["metadata"].as_object_mut().unwrap().remove("ownerReferences");
        }
        Value::Array(owners) => p["metadata"]["ownerReferences"] = Value::Array(owners),
        Value::Object(fields) => {
            for (k, v) in fields {
                p["metadata"]["ownerReferences"][0][k] = v;
            }
        }
        _ => unreachable!(),
    }
    p
}

#[test]
fn a_mirror_pod_is_owned_by_its_node_alone() {
    let owner = mirror("n1")["metadata"]["ownerReferences"][0].clone();
    let cases = [
        (
            "no owner",
            Value::Null,
            Some(r#"node "n1" can only create pods with an owner reference set to itself"#),
        ),
        (
            "two owners",
            json!([owner.clone(), owner]),
            Some(r#"node "n1" can only create pods with a single owner reference set to itself"#),
        ),
        (
            "another node",
            json!({"name": "n2"}),
            Some("can only create pods with an owner reference set to itself"),
        ),
        (
            "another kind",
            json!({"kind": "Pod"}),
            Some("can only create pods with an owner reference set to itself"),
        ),
        (
            "another version",
            json!({"apiVersion": "v2"}),
            Some("can only create pods with an owner reference set to itself"),
        ),
        (
            "not as controller",
            json!({"controller": false}),
            Some(
                r#"node "n1" can only create pods with a controller owner reference set to itself"#,
            ),
        ),
        (
            "blocking deletion",
            json!({"blockOwnerDeletion": true}),
            Some(r#"node "n1" must not set blockOwnerDeletion on an owner reference"#),
        ),
        (
            "an old uid",
            json!({"uid": "old"}),
            Some("node n1 UID mismatch: expected old got n1-uid"),
        ),
        ("its node as controller", json!({}), None),
    ];
    for (name, change, refused) in cases {
        let c = Case {
            object: Some(mirror_owned(change)),
            ..case(name, Operation::Create, "pods", "static")
        };
        match (run(&c, &node_user("n1")), refused) {
            (Ok(()), None) => {}
            (Err(e), Some(why)) => {
                assert_eq!(e.code(), 403, "{name}");
                assert!(e.message.contains(why), "{name}: {}", e.message);
            }
            (got, want) => panic!("{name}: got {got:?}, want refusal {want:?}"),
        }
    }
    // A node that is not registered: the lookup's 404, as upstream's.
    let mut unregistered = mirror("n3");
    unregistered["metadata"]["ownerReferences"][0]["name"] = json!("n3");
    let c = Case { object: Some(unregistered), ..case("", Operation::Create, "pods", "static") };
    let e = run(&c, &node_user("n3")).unwrap_err();
    assert_eq!((e.code(), e.message.as_str()), (404, r#"nodes "n3" not found"#));
}

fn node_obj(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
}

#[test]
fn a_node_writes_only_what_is_its_own() {
    let with_secret = {
        let mut p = mirror("n1");
        p["spec"]["volumes"] = json!([{"name": "s", "secret": {"secretName": "x"}}]);
        p
    };
    let cases = vec![
        Case {
            object: Some(mirror("n1")),
            ..case("a mirror pod of its own", Operation::Create, "pods", "static")
        },
        Case {
            object: Some(mirror("n2")),
            refused: Some("can only create pods with spec.nodeName set to itself"),
            ..case("a mirror pod of another node", Operation::Create, "pods", "static")
        },
        Case {
            object: Some(bound_pod("p", "n1")),
            refused: Some("can only create mirror pods"),
            ..case("a plain pod", Operation::Create, "pods", "p")
        },
        Case {
            object: Some(with_secret),
            refused: Some("can not create pods that reference secrets"),
            ..case("a mirror pod with a secret", Operation::Create, "pods", "static")
        },
        Case {
            object: Some({
                let mut p = mirror("n1");
                p["spec"]["serviceAccountName"] = json!("default");
                p
            }),
            refused: Some("can not create pods that reference a service account"),
            ..case("a mirror pod with an account", Operation::Create, "pods", "static")
        },
        Case {
            object: Some({
                let mut p = mirror("n1");
                p["spec"]["volumes"] = json!([{"name": "b", "projected": {"sources": [
                    {"clusterTrustBundle": {"signerName": "x/y", "path": "b.pem"}}]}}]);
                p
            }),
            refused: Some("can not create pods that reference clustertrustbundles"),
            ..case("a mirror pod with trust bundles", Operation::Create, "pods", "static")
        },
        Case {
            old: Some(bound_pod("mine", "n1")),
            ..case("deleting its pod", Operation::Delete, "pods", "mine")
        },
        Case {
            old: Some(bound_pod("theirs", "n2")),
            refused: Some("can only delete pods with spec.nodeName set to itself"),
            ..case("deleting another's pod", Operation::Delete, "pods", "theirs")
        },
        Case {
            subresource: "status",
            old: Some(bound_pod("mine", "n1")),
            ..case("the status of its pod", Operation::Update, "pods", "mine")
        },
        Case {
            subresource: "status",
            old: Some(bound_pod("theirs", "n2")),
            refused: Some("can only update pod status for pods with spec.nodeName set to itself"),
            ..case("the status of another's pod", Operation::Update, "pods", "theirs")
        },
        Case {
            subresource: "eviction",
            object: Some(json!({"metadata": {"name": "mine"}})),
            ..case("evicting its pod", Operation::Create, "pods", "mine")
        },
        Case {
            subresource: "eviction",
            object: Some(json!({"metadata": {"name": "theirs"}})),
            refused: Some("can only evict pods with spec.nodeName set to itself"),
            ..case("evicting another's pod", Operation::Create, "pods", "theirs")
        },
        Case {
            namespace: "",
            object: Some(node_obj(
                "n1",
                json!({"kubernetes.io/hostname": "n1", "node.kubernetes.io/exclude-from-external-load-balancers": ""}),
            )),
            ..case("creating itself", Operation::Create, "nodes", "n1")
        },
        Case {
            namespace: "",
            object: Some(node_obj("n2", json!({}))),
            refused: Some("is not allowed to modify node \"n2\""),
            ..case("creating another node", Operation::Create, "nodes", "n2")
        },
        Case {
            namespace: "",
            object: Some(node_obj("n1", json!({"node-restriction.kubernetes.io/pool": "secure"}))),
            old: Some(node_obj("n1", json!({}))),
            refused: Some("is not allowed to modify labels: node-restriction.kubernetes.io/pool"),
            ..case("its own restricted label", Operation::Update, "nodes", "n1")
        },
        Case {
            namespace: "",
            object: Some(node_obj("n1", json!({"node-role.kubernetes.io/control-plane": ""}))),
            refused: Some("is not allowed to set labels: node-role.kubernetes.io/control-plane"),
            ..case("an unsafe label", Operation::Create, "nodes", "n1")
        },
        Case {
            namespace: "",
            object: Some(node_obj(
                "n1",
                json!({"node-restriction.kubernetes.io/pool": "secure", "x": "y"}),
            )),
            old: Some(node_obj("n1", json!({"node-restriction.kubernetes.io/pool": "secure"}))),
            ..case("an unchanged restricted label", Operation::Update, "nodes", "n1")
        },
        Case {
            group: "coordination.k8s.io",
            namespace: "kube-node-lease",
            object: Some(json!({"metadata": {"name": "n1"}})),
            ..case("its lease", Operation::Create, "leases", "n1")
        },
        Case {
            group: "coordination.k8s.io",
            namespace: "kube-node-lease",
            object: Some(json!({"metadata": {"name": "n2"}})),
            refused: Some("can only access node lease with the same name"),
            ..case("another lease", Operation::Create, "leases", "n2")
        },
        Case {
            subresource: "token",
            object: Some(json!({"spec": {"boundObjectRef": {"kind": "Pod", "name": "theirs"}}})),
            refused: Some("bound to a pod scheduled on a different node"),
            ..case("a token for another's pod", Operation::Create, "serviceaccounts", "default")
        },
        Case {
            subresource: "token",
            object: Some(json!({"spec": {"boundObjectRef": {"kind": "Pod", "name": "mine"}}})),
            ..case("a token for its pod", Operation::Create, "serviceaccounts", "default")
        },
    ];
    for c in &cases {
        match (run(c, &node_user("n1")), c.refused) {
            (Ok(()), None) => {}
            (Err(e), Some(why)) => {
                assert_eq!(e.code(), 403, "{}", c.name);
                assert!(e.message.contains(why), "{}: {}", c.name, e.message);
            }
            (got, want) => panic!("{}: got {got:?}, want refusal {want:?}", c.name),
        }
        let admin = UserInfo { name: "jane".into(), ..UserInfo::default() };
        assert!(run(c, &admin).is_ok(), "{}: other users pass", c.name);
    }
}

#[test]
fn refusals_are_worded_as_upstreams() {
    let c = Case {
        subresource: "status",
        old: Some(bound_pod("theirs", "n2")),
        ..case("", Operation::Update, "pods", "theirs")
    };
    assert_eq!(
        run(&c, &node_user("n1")).unwrap_err().message,
        r#"pods "theirs" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself"#
    );
}
