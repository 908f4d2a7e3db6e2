use serde_json::{Value, json};

use super::*;
use crate::catalog::Catalog;

const VERSION: &str = "v1.33.0";

fn builtin_v3(group: &str, version: &str) -> Value {
    let catalog = Catalog::builtin();
    let entries = catalog.entries();
    let served = Served { entries: &entries, definitions: &[], version: VERSION };
    served.v3(group, version).expect("the group version is served")
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    let schemas = doc.get("components").map_or(&doc["definitions"], |c| &c["schemas"]);
    schemas.get(name).unwrap_or_else(|| panic!("no definition {name}"))
}

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => refs(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn deployments_are_described_with_upstreams_names_and_descriptions() {
    let doc = builtin_v3("apps", "v1");
    let deployment = schema(&doc, "io.k8s.api.apps.v1.Deployment");
    assert_eq!(
        deployment["description"],
        "Deployment enables declarative updates for Pods and ReplicaSets."
    );
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(deployment["properties"]["kind"]["type"], "string");
    assert_eq!(
        deployment["properties"]["metadata"]["allOf"],
        json!([{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}])
    );
    let spec = schema(&doc, "io.k8s.api.apps.v1.DeploymentSpec");
    assert_eq!(
        spec["properties"]["strategy"]["description"],
        "The deployment strategy to use to replace existing pods with new ones."
    );
    assert_eq!(
        spec["properties"]["replicas"],
        json!({
            "description": spec["properties"]["replicas"]["description"],
            "format": "int32",
            "type": "integer",
        })
    );
    let required = spec["required"].as_array().expect("required fields");
    assert!(required.contains(&json!("selector")) && required.contains(&json!("template")));
    assert!(!required.contains(&json!("replicas")));
}

#[test]
fn descriptions_join_comment_lines_as_upstreams_generator() {
    let doc = builtin_v3("", "v1");
    let container = schema(&doc, "io.k8s.api.core.v1.Container");
    assert_eq!(
        container["properties"]["image"]["description"],
        "Container image name. More info: https://kubernetes.io/docs/concepts/containers/images This field is optional to allow higher level config management to default or override container images in workload controllers like Deployments and StatefulSets."
    );
    assert!(container["required"].as_array().is_some_and(|r| r.contains(&json!("name"))));
}

#[test]
fn required_fields_are_the_unmarked_single_fields() {
    let doc = builtin_v3("", "v1");
    assert_eq!(schema(&doc, "io.k8s.api.core.v1.Volume")["required"], json!(["name"]));
    assert_eq!(
        schema(&doc, "io.k8s.api.core.v1.PodCondition")["required"],
        json!(["type", "status"])
    );
    assert!(
        schema(&doc, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta").get("required").is_none()
    );
    let apps = builtin_v3("apps", "v1");
    assert!(schema(&apps, "io.k8s.api.apps.v1.DeploymentStatus").get("required").is_none());
    let extensions = builtin_v3("apiextensions.k8s.io", "v1");
    let props = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps";
    assert!(schema(&extensions, props).get("required").is_none());
    assert!(
        schema(&doc, "io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry")
            .get("required")
            .is_none()
    );
}

#[test]
fn merge_keys_and_list_markers_become_extensions() {
    let doc = builtin_v3("", "v1");
    let containers = &schema(&doc, "io.k8s.api.core.v1.PodSpec")["properties"]["containers"];
    assert_eq!(containers["type"], "array");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    assert_eq!(
        containers["items"],
        json!({"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"})
    );
    let volumes = &schema(&doc, "io.k8s.api.core.v1.PodSpec")["properties"]["volumes"];
    assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
    let tolerations = &schema(&doc, "io.k8s.api.core.v1.PodSpec")["properties"]["tolerations"];
    assert!(tolerations.get("x-kubernetes-patch-strategy").is_none());
    let command = &schema(&doc, "io.k8s.api.core.v1.Container")["properties"]["command"];
    assert_eq!(command["x-kubernetes-list-type"], "atomic");
    let meta = &schema(&doc, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")["properties"];
    assert_eq!(meta["finalizers"]["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(meta["ownerReferences"]["x-kubernetes-patch-merge-key"], "uid");
    let selector = schema(&doc, "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector");
    assert_eq!(selector["x-kubernetes-map-type"], "atomic");
    let port = &schema(&doc, "io.k8s.api.core.v1.ServicePort")["properties"];
    assert_eq!(port["protocol"]["default"], "TCP");
    assert!(port["port"].get("default").is_none());
}

#[test]
fn special_types_have_upstreams_json_forms() {
    let doc = builtin_v3("", "v1");
    let time = schema(&doc, "io.k8s.apimachinery.pkg.apis.meta.v1.Time");
    assert_eq!((&time["type"], &time["format"]), (&json!("string"), &json!("date-time")));
    let int_or_string = schema(&doc, "io.k8s.apimachinery.pkg.util.intstr.IntOrString");
    assert_eq!(int_or_string["format"], "int-or-string");
    assert_eq!(int_or_string["x-kubernetes-int-or-string"], true);
    assert!(schema(&doc, "io.k8s.apimachinery.pkg.api.resource.Quantity")["oneOf"].is_array());
    let limits = &schema(&doc, "io.k8s.api.core.v1.ResourceRequirements")["properties"]["limits"];
    assert_eq!(limits["type"], "object");
    assert_eq!(
        limits["additionalProperties"],
        json!({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.api.resource.Quantity"})
    );
    let secret = &schema(&doc, "io.k8s.api.core.v1.Secret")["properties"]["data"];
    assert_eq!(secret["additionalProperties"], json!({"format": "byte", "type": "string"}));
    // Embedded messages' fields are the parent's.
    let volume = &schema(&doc, "io.k8s.api.core.v1.Volume")["properties"];
    assert!(volume.get("configMap").is_some() && volume.get("volumeSource").is_none());
}

#[test]
fn patch_operations_carry_field_validation_and_the_kind() {
    let doc = builtin_v3("apps", "v1");
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "kind": "Deployment", "version": "v1"})
    );
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    let params = patch["parameters"].as_array().expect("parameters");
    assert!(params.iter().any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    assert!(
        patch["requestBody"]["content"].get("application/strategic-merge-patch+json").is_some()
    );
    assert_eq!(item["get"]["x-kubernetes-action"], "get");
    let list = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"];
    assert_eq!(list["x-kubernetes-action"], "list");
    let scale = &item.get("put").map(|_| {
        &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    });
    assert_eq!(
        scale.expect("scale")["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "kind": "Scale", "version": "v1"})
    );
}

#[test]
fn subresources_of_their_own_are_published_with_their_kinds() {
    let doc = builtin_v3("", "v1");
    let pod = "/api/v1/namespaces/{namespace}/pods/{name}";
    let eviction = &doc["paths"][format!("{pod}/eviction")]["post"];
    assert_eq!(eviction["operationId"], "createCoreV1NamespacedPodEviction");
    assert_eq!(
        eviction["x-kubernetes-group-version-kind"],
        json!({"group": "policy", "kind": "Eviction", "version": "v1"})
    );
    assert!(doc["components"]["schemas"].get("io.k8s.api.policy.v1.Eviction").is_some());
    let exec = &doc["paths"][format!("{pod}/exec")];
    assert_eq!(exec["get"]["x-kubernetes-action"], "connect");
    assert_eq!(exec["post"]["operationId"], "connectCoreV1PostNamespacedPodExec");
    // Every PATCH of pods (kubectl reads any of them) takes fieldValidation.
    for sub in ["", "/status", "/ephemeralcontainers", "/resize"] {
        let patch = &doc["paths"][format!("{pod}{sub}")]["patch"];
        assert!(
            patch["parameters"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["name"] == "fieldValidation")),
            "{sub}"
        );
    }
}

#[test]
fn every_reference_resolves_in_every_document() {
    let catalog = Catalog::builtin();
    let entries = catalog.entries();
    let served = Served { entries: &entries, definitions: &[], version: VERSION };
    for (group, version) in served.group_versions() {
        let doc = served.v3(group, version).expect("served");
        let mut targets = Vec::new();
        refs(&doc, &mut targets);
        for target in targets {
            let name = target.strip_prefix("#/components/schemas/").expect("a v3 reference");
            assert!(doc["components"]["schemas"].get(name).is_some(), "{group}/{version}: {name}");
        }
    }
    let doc = served.v2();
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let name = target.strip_prefix("#/definitions/").expect("a v2 reference");
        assert!(doc["definitions"].get(name).is_some(), "{name}");
    }
    assert!(doc["definitions"].as_object().is_some_and(|d| d.len() > 300));
}

#[test]
fn swagger_puts_descriptions_beside_references() {
    let catalog = Catalog::builtin();
    let entries = catalog.entries();
    let doc = Served { entries: &entries, definitions: &[], version: VERSION }.v2();
    assert_eq!(doc["swagger"], "2.0");
    let spec = &doc["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
    assert_eq!(spec["$ref"], "#/definitions/io.k8s.api.apps.v1.DeploymentSpec");
    assert!(spec["description"].as_str().is_some_and(|d| d.starts_with("Specification")));
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert!(patch["parameters"].as_array().is_some_and(|p| {
        p.iter().any(|p| p["name"] == "fieldValidation" && p["type"] == "string")
    }));
}

fn crontab_definition() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A CronTab runs a command on a schedule.",
                    "properties": {"spec": {
                        "type": "object",
                        "description": "What the CronTab runs.",
                        "properties": {
                            "cronSpec": {"type": "string", "description": "When it runs, in cron syntax."},
                            "replicas": {"type": "integer", "nullable": true},
                        },
                    }},
                }},
                "subresources": {"status": {}},
            }],
        },
    })
}

#[test]
fn custom_resources_publish_their_definitions_schema() {
    let definition = crontab_definition();
    let entries = crate::catalog::custom::entries(&definition).expect("valid definition");
    let served = Served { entries: &entries, definitions: &[definition], version: VERSION };
    let doc = served.v3("stable.example.com", "v1").expect("served");
    let crontab = schema(&doc, "com.example.stable.v1.CronTab");
    assert_eq!(crontab["description"], "A CronTab runs a command on a schedule.");
    assert_eq!(
        crontab["x-kubernetes-group-version-kind"],
        json!([{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}])
    );
    assert_eq!(
        crontab["properties"]["spec"]["properties"]["cronSpec"]["description"],
        "When it runs, in cron syntax."
    );
    assert_eq!(
        crontab["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    assert!(schema(&doc, "com.example.stable.v1.CronTabList")["properties"]["items"].is_object());
    let patch = &doc["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}"]
        ["patch"];
    assert!(patch["requestBody"]["content"].get("application/merge-patch+json").is_some());
    assert!(
        patch["requestBody"]["content"].get("application/strategic-merge-patch+json").is_none()
    );
    assert!(
        patch["parameters"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["name"] == "fieldValidation"))
    );
    assert!(
        doc["paths"]
            .get("/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}/status")
            .is_some()
    );

    let v2 = served.v2();
    let replicas = &v2["definitions"]["com.example.stable.v1.CronTab"]["properties"]["spec"]["properties"]
        ["replicas"];
    assert_eq!(replicas, &json!({"type": "integer"}));
}
