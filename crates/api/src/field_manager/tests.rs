#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};

use super::*;

fn deployment() -> Types<'static> {
    Types::of("apps/v1", "Deployment", None)
}

fn writer(manager: &str) -> Writer<'_> {
    Writer {
        manager,
        api_version: "apps/v1",
        subresource: "",
        now: "2026-12-04T08:00:00Z",
        status_subresource: true,
    }
}

fn config(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "web", "image": image},
        ]}}},
    })
}

#[test]
fn fields_follow_merge_keys() {
    let set = fields_of(&config(1, "nginx"), deployment());
    assert_eq!(
        set.to_fields_v1(),
        json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
                "k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}},
            }}}},
        })
    );
}

#[test]
fn an_update_takes_the_fields_it_changes() {
    let mut managed = ManagedFields::default();
    let created = config(1, "nginx");
    managed.update(&Value::Null, &created, deployment(), &writer("kubectl-create"));
    assert_eq!(managed.entries.len(), 1);
    let scaled = config(3, "nginx");
    managed.update(&created, &scaled, deployment(), &writer("kubectl-scale"));
    let scale = &managed.entries[1];
    assert_eq!(scale.fields.to_fields_v1(), json!({"f:spec": {"f:replicas": {}}}));
    let create = &managed.entries[0];
    assert!(create.fields.paths().iter().all(|p| display_path(p) != ".spec.replicas"));
    let mut obj = scaled.clone();
    managed.write_into(&mut obj);
    assert_eq!(ManagedFields::of(&obj).unwrap(), managed);
}

#[test]
fn an_apply_conflicts_with_another_managers_value_unless_forced() {
    let mut managed = ManagedFields::default();
    let live = managed
        .apply(&Value::Null, &config(1, "nginx"), deployment(), &writer("alice"), false)
        .unwrap();
    // The same value is shared, not a conflict.
    let same = managed.apply(&live, &config(1, "nginx"), deployment(), &writer("bob"), false);
    assert!(same.is_ok());
    let conflicts =
        managed.apply(&live, &config(2, "nginx"), deployment(), &writer("bob"), false).unwrap_err();
    assert_eq!(
        conflict_message(&conflicts),
        "Apply failed with 1 conflict: conflict with \"alice\": .spec.replicas"
    );
    let forced =
        managed.apply(&live, &config(2, "nginx"), deployment(), &writer("bob"), true).unwrap();
    assert_eq!(forced["spec"]["replicas"], 2);
    let alice = managed.entries.iter().find(|e| e.manager == "alice").unwrap();
    assert!(alice.fields.paths().iter().all(|p| display_path(p) != ".spec.replicas"));
}

#[test]
fn an_update_managers_conflict_names_its_version() {
    let mut managed = ManagedFields::default();
    let live = config(1, "nginx");
    managed.update(&Value::Null, &live, deployment(), &writer("kubectl-client-side-apply"));
    let conflicts = managed
        .apply(&live, &config(2, "httpd"), deployment(), &writer("kubectl"), false)
        .unwrap_err();
    assert_eq!(
        conflict_message(&conflicts),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"
    );
}

#[test]
fn fields_no_longer_applied_are_removed_unless_others_own_them() {
    let mut managed = ManagedFields::default();
    let mut first = config(1, "nginx");
    first["metadata"]["labels"]["tier"] = json!("front");
    first["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "busybox"}));
    let live = managed.apply(&Value::Null, &first, deployment(), &writer("alice"), false).unwrap();
    // Someone else sets a label of their own.
    let mut edited = live.clone();
    edited["metadata"]["labels"]["owner"] = json!("bob");
    managed.update(&live, &edited, deployment(), &writer("bob"));
    let second = config(1, "nginx");
    let applied = managed.apply(&edited, &second, deployment(), &writer("alice"), false).unwrap();
    assert_eq!(applied["metadata"]["labels"], json!({"app": "web", "owner": "bob"}));
    let names: Vec<&str> = applied["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web"]);
}

#[test]
fn writes_of_the_object_own_no_status() {
    let mut managed = ManagedFields::default();
    let mut obj = config(1, "nginx");
    obj["status"] = json!({"replicas": 1});
    managed.update(&Value::Null, &obj, deployment(), &writer("m"));
    assert!(
        managed.entries[0].fields.paths().iter().all(|p| !display_path(p).starts_with(".status"))
    );
    let status_writer = Writer { subresource: "status", ..writer("controller") };
    let mut next = obj.clone();
    next["status"]["replicas"] = json!(2);
    managed.update(&obj, &next, deployment(), &status_writer);
    let entry = managed.entries.iter().find(|e| e.subresource == "status").unwrap();
    assert_eq!(entry.fields.to_fields_v1(), json!({"f:status": {"f:replicas": {}}}));
}

#[test]
fn custom_resources_follow_their_schemas_list_types() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                  "x-kubernetes-list-map-keys": ["port"],
                  "items": {"type": "object", "properties": {
                      "port": {"type": "integer"}, "name": {"type": "string"}}}},
        "args": {"type": "array", "items": {"type": "string"}},
    }}}});
    let ty = Types::of("example.com/v1", "Widget", Some(&schema));
    let widget = |ports: Value| {
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
               "spec": {"ports": ports, "args": ["a"]}})
    };
    let w = |m| Writer { api_version: "example.com/v1", status_subresource: false, ..writer(m) };
    let mut managed = ManagedFields::default();
    let live = managed
        .apply(&Value::Null, &widget(json!([{"port": 80, "name": "http"}])), ty, &w("alice"), false)
        .unwrap();
    let live = managed
        .apply(&live, &widget(json!([{"port": 443, "name": "https"}])), ty, &w("bob"), false)
        .unwrap();
    let ports: Vec<i64> = live["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(ports, [80, 443]);
    let bob = managed.entries.iter().find(|e| e.manager == "bob").unwrap();
    assert_eq!(
        bob.fields.to_fields_v1()["f:spec"]["f:ports"],
        json!({"k:{\"port\":443}": {".": {}, "f:name": {}, "f:port": {}}})
    );
    // `args` is atomic: both set it to the same value, so both own it whole.
    assert_eq!(bob.fields.to_fields_v1()["f:spec"]["f:args"], json!({}));
}
