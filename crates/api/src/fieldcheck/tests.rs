use serde_json::json;

use super::*;

fn unknown(api_version: &str, kind: &str, obj: serde_json::Value) -> Option<Vec<String>> {
    unknown_fields(api_version, kind, &obj)
}

#[test]
fn a_typo_deep_in_a_pod_template_is_found_with_its_path() {
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "foo": true,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "sidecar", "image": "busybox"},
                    {"name": "web", "image": "nginx", "imagePullPolice": "Always",
                     "ports": [{"containerPort": 80, "protocl": "TCP"}]},
                ]},
            },
        },
    });
    assert_eq!(
        unknown("apps/v1", "Deployment", deployment),
        Some(vec![
            "spec.foo".to_string(),
            "spec.template.spec.containers[1].imagePullPolice".to_string(),
            "spec.template.spec.containers[1].ports[0].protocl".to_string(),
        ])
    );
}

#[test]
fn service_fields_are_case_sensitive_and_int_or_string_takes_both_forms() {
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web", "any.key/at-all": "x"},
            "ports": [
                {"name": "http", "port": 80, "targetPort": "http"},
                {"name": "https", "port": 443, "targetPort": 8443, "nodeport": 30443},
            ],
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10}},
        },
    });
    assert_eq!(unknown("v1", "Service", service), Some(vec!["spec.ports[1].nodeport".to_string()]));
}

#[test]
fn an_unknown_top_level_member_is_found_and_status_is_tolerated() {
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default"},
        "data": {"a": "1"},
        "binaryData": {"b": "AA=="},
        "immutable": false,
        "status": {},
        "extra": {"x": 1},
    });
    assert_eq!(unknown("v1", "ConfigMap", config_map), Some(vec!["extra".to_string()]));
}

#[test]
fn a_clean_object_as_kubectl_sends_it_has_no_unknown_fields() {
    let last_applied = r#"{"apiVersion":"apps/v1","kind":"Deployment"}"#;
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
            "creationTimestamp": null,
            "generation": 1,
            "managedFields": [{
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "apiVersion": "apps/v1",
                "time": "2024-01-01T00:00:00Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {".": {}}}, "f:spec": {"f:replicas": {}}},
            }],
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "u", "controller": true}],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "a", "operator": "In", "values": ["b"]}]},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {
                    "containers": [{
                        "name": "web",
                        "image": "nginx",
                        "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": 0.1}},
                        "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}],
                        "envFrom": [{"secretRef": {"name": "s"}}],
                        "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5},
                        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sleep 1"]}}},
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}],
                    }],
                    "volumes": [
                        {"name": "config", "configMap": {"name": "c", "defaultMode": 420}},
                        {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                    "overhead": {"cpu": "10m"},
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": "Exists"}]}],
                    }}},
                },
            },
        },
        "status": {"conditions": [{"type": "Available", "status": "True", "lastUpdateTime": "2024-01-01T00:00:00Z"}]},
    });
    assert_eq!(unknown("apps/v1", "Deployment", deployment), Some(vec![]));
    // Embedded raw objects accept anything.
    let revision = json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "r"},
        "data": {"spec": {"anything": {"goes": [1, 2]}}},
        "revision": 1,
    });
    assert_eq!(unknown("apps/v1", "ControllerRevision", revision), Some(vec![]));
}

#[test]
fn the_status_of_a_kind_with_one_is_checked() {
    let pod =
        json!({"apiVersion": "v1", "kind": "Pod", "status": {"phase": "Running", "phaze": "x"}});
    assert_eq!(unknown("v1", "Pod", pod), Some(vec!["status.phaze".to_string()]));
}

#[test]
fn the_scale_subresource_has_its_own_kind() {
    let scale = json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": "web"}, "spec": {"replicas": 3, "replica": 1}});
    assert_eq!(unknown("autoscaling/v1", "Scale", scale), Some(vec!["spec.replica".to_string()]));
}

#[test]
fn kinds_without_a_schema_are_not_checked() {
    let widget = json!({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"anything": 1}});
    assert_eq!(unknown("example.com/v1", "Widget", widget), None);
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"});
    assert_eq!(unknown("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd), None);
}

#[test]
fn duplicate_members_are_found_in_document_order() {
    let body =
        br#"{"a":1,"metadata":{"labels":{"x":"1","x":"2"}},"a":2,"l":[{"b":1},{"b":1,"b":2}]}"#;
    assert_eq!(duplicate_fields(body), vec!["metadata.labels.x", "a", "l[1].b"]);
    assert_eq!(duplicate_fields(br#"{"a":{"b":1},"c":[1,2]}"#), Vec::<String>::new());
    assert_eq!(duplicate_fields(b"{not json"), Vec::<String>::new());
}

#[test]
fn problems_are_worded_as_upstream_words_them() {
    let problems = vec![unknown_field("spec.foo"), duplicate_field("metadata.labels.a\"b")];
    assert_eq!(
        strict_decoding_error(&problems),
        r#"strict decoding error: unknown field "spec.foo", duplicate field "metadata.labels.a\"b""#
    );
}
