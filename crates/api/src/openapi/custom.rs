//! Schemas of custom resources, from their definitions' `openAPIV3Schema`, published as
//! upstream's apiextensions builder publishes them: the version's schema with `apiVersion`,
//! `kind` and `metadata` (a reference to `ObjectMeta`) set, and the kind's
//! `x-kubernetes-group-version-kind`; a list kind beside it. Documents of OpenAPI v2 get the
//! schema without what v2 cannot say (`nullable`, `oneOf`, `anyOf`, `not`).

use serde_json::{Map, Value, json};

use super::Flavor;
use super::builtin::{API_VERSION_DOC, Collector, KIND_DOC, reference};
use crate::catalog::ResourceInfo;

/// The name of `ObjectMeta`'s definition.
pub const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
/// The name of `ListMeta`'s definition.
pub const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

const METADATA_DOC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DOC: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// Upstream's name of a custom kind's definition: the group reversed, the version, the kind
/// (`stable.example.com`, `v1`, `CronTab` → `com.example.stable.v1.CronTab`).
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// The `openAPIV3Schema` of the definition's version `version`, if it has one.
pub fn version_schema<'a>(definition: &'a Value, version: &str) -> Option<&'a Value> {
    definition
        .pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))?
        .pointer("/schema/openAPIV3Schema")
}

/// Adds the definitions of the kind `info` serves and of its list, from `definition` (the
/// CustomResourceDefinition); returns their names.
pub fn add(collector: &mut Collector, info: &ResourceInfo, definition: &Value) -> (String, String) {
    let flavor = collector.flavor();
    for meta in ["ObjectMeta", "ListMeta"] {
        if let Some(message) = super::meta_message(meta) {
            collector.add_message(&message);
        }
    }
    let mut schema = version_schema(definition, info.version)
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    if flavor == Flavor::V2 {
        to_v2(&mut schema);
    }
    if let Value::Object(object) = &mut schema {
        let properties = object.entry("properties").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(properties) = properties {
            properties.insert("apiVersion".into(), string_with(API_VERSION_DOC));
            properties.insert("kind".into(), string_with(KIND_DOC));
            properties.insert("metadata".into(), reference(flavor, OBJECT_META, METADATA_DOC));
        }
        object.entry("type").or_insert_with(|| Value::from("object"));
    }
    let name = definition_name(info.group, info.version, info.kind);
    collector.insert(name.clone(), schema);
    collector.add_gvk(&name, info.group, info.version, info.kind);

    let list_kind = format!("{}List", info.kind);
    let list_name = definition_name(info.group, info.version, &list_kind);
    let list = json!({
        "description": format!("{list_kind} is a list of {}", info.kind),
        "properties": {
            "apiVersion": string_with(API_VERSION_DOC),
            "items": {
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/api-conventions.md", info.plural),
                "items": reference(flavor, &name, ""),
                "type": "array",
            },
            "kind": string_with(KIND_DOC),
            "metadata": reference(flavor, LIST_META, LIST_METADATA_DOC),
        },
        "required": ["items"],
        "type": "object",
    });
    collector.insert(list_name.clone(), list);
    collector.add_gvk(&list_name, info.group, info.version, &list_kind);
    (name, list_name)
}

fn string_with(description: &str) -> Value {
    json!({"description": description, "type": "string"})
}

/// Removes from a schema (and the schemas inside it) what OpenAPI v2 cannot say.
pub fn to_v2(schema: &mut Value) {
    let Value::Object(object) = schema else { return };
    for key in ["nullable", "oneOf", "anyOf", "not"] {
        object.remove(key);
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(inner) = object.get_mut(key) {
            match inner {
                Value::Array(items) => items.iter_mut().for_each(to_v2),
                inner => to_v2(inner),
            }
        }
    }
    if let Some(Value::Array(all)) = object.get_mut("allOf") {
        all.iter_mut().for_each(to_v2);
    }
    for key in ["properties", "patternProperties", "definitions"] {
        if let Some(Value::Object(map)) = object.get_mut(key) {
            map.values_mut().for_each(to_v2);
        }
    }
}
