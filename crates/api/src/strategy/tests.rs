//! Every built-in strategy's selectable fields read the same from the members its
//! `selectable_paths` names as from the whole object.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use crate::Catalog;
use crate::sparse::Sparse;

/// `obj`'s selectable fields as `info`'s strategy reads them from the whole object and from
/// the members it names alone, or `None` when it asks for the whole object.
fn read_both(info: &crate::ResourceInfo, obj: &Value) -> Option<[Vec<(&'static str, String)>; 2]> {
    let paths = info.strategy.selectable_paths()?;
    let sparse = Sparse::new(paths.iter().chain(&["metadata.name", "metadata.namespace"]));
    let kept = sparse.decode(&serde_json::to_vec(obj).unwrap()).unwrap();
    Some([info.strategy.selectable_fields(obj), info.strategy.selectable_fields(&kept)])
}

fn set(obj: &mut Value, dotted: &str, value: Value) {
    let mut at = obj;
    for name in dotted.split('.') {
        if !at.is_object() {
            *at = json!({});
        }
        at = at.as_object_mut().unwrap().entry(name).or_insert(Value::Null);
    }
    *at = value;
}

#[test]
fn realistic_objects_select_the_same_from_the_named_members() {
    let catalog = Catalog::builtin();
    let cases = [
        (
            "pods",
            json!({"metadata":{"name":"web","namespace":"a","labels":{"app":"web"}},
                "spec":{"nodeName":"n1","restartPolicy":"Always","schedulerName":"default-scheduler",
                    "serviceAccountName":"sa","hostNetwork":true,"containers":[{"name":"c","image":"i"}]},
                "status":{"phase":"Running","podIP":"10.0.0.2","podIPs":[{"ip":"10.0.0.1"}],
                    "nominatedNodeName":"n2","conditions":[{"type":"Ready","status":"True"}]}}),
        ),
        ("pods", json!({"metadata":{"name":"web"},"status":{"podIP":"10.0.0.2"}})),
        ("nodes", json!({"metadata":{"name":"n1"},"spec":{"unschedulable":true,"podCIDR":"x"}})),
        ("replicasets", json!({"metadata":{"name":"r"},"status":{"replicas":3,"readyReplicas":1}})),
        ("replicationcontrollers", json!({"metadata":{"name":"r"},"status":{"replicas":2}})),
        ("jobs", json!({"metadata":{"name":"j"},"status":{"succeeded":2,"active":1}})),
        ("namespaces", json!({"metadata":{"name":"ns"},"status":{"phase":"Terminating"}})),
        (
            "secrets",
            json!({"metadata":{"name":"s"},"type":"kubernetes.io/tls","data":{"k":"dg=="}}),
        ),
        (
            "services",
            json!({"metadata":{"name":"s"},"spec":{"clusterIP":"10.1.0.1","type":"NodePort"}}),
        ),
        (
            "persistentvolumes",
            json!({"metadata":{"name":"pv"},"spec":{"capacity":{"storage":"1Gi"}}}),
        ),
    ];
    for (resource, obj) in cases {
        let info = catalog.entries().iter().find(|i| i.plural == resource).cloned().unwrap();
        let [whole, named] = read_both(&info, &obj).unwrap();
        assert_eq!(whole, named, "{resource}");
    }
}

#[test]
fn every_offered_field_reads_the_same_from_the_named_members() {
    let catalog = Catalog::builtin();
    for info in catalog.entries().iter() {
        let offered = info.strategy.selectable_fields(&json!({}));
        let mut obj = json!({"metadata":{"name":"n","namespace":"ns"},"other":{"x":1}});
        let paths = info.strategy.selectable_paths().unwrap_or_default();
        for (i, path) in offered.iter().map(|(f, _)| *f).chain(paths.iter().copied()).enumerate() {
            if !path.starts_with("metadata.") {
                set(&mut obj, path, json!(format!("v{i}")));
            }
        }
        if let Some([whole, named]) = read_both(info, &obj) {
            assert_eq!(whole, named, "{}", info.plural);
        }
    }
}
