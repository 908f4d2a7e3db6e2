//! Catalog entries of custom resources: what a `CustomResourceDefinition` serves, one entry
//! per served version, as upstream's apiextensions-apiserver builds its handlers.

use std::cmp::Ordering;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use serde_json::Value;

use super::{
    Conversion, ConversionError, ResourceInfo, ScalePaths, Scope, Shared, StorageInfo, intern,
    intern_list,
};
use crate::customresource::StructuralSchema;
use crate::jsonpath::JsonPath;
use crate::strategy::custom_resource::{CustomResourceStrategy, PrinterColumn, SelectableField};
use crate::validation::FieldError;

/// The verbs of every custom resource.
const VERBS: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The finalizer that holds a definition until its objects are gone.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// Orders versions as upstream's discovery does (`CompareKubeAwareVersionStrings`): versions
/// shaped like `v1`, `v2beta1`, `v1alpha2` first, GA before beta before alpha, higher numbers
/// first; any other string after them, alphabetically.
pub fn version_priority(a: &str, b: &str) -> Ordering {
    match (kube_version(a), kube_version(b)) {
        (Some(x), Some(y)) => y.cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

/// `(stability, major, minor)` of a Kubernetes-shaped version, larger is preferred.
fn kube_version(v: &str) -> Option<(u8, u64, u64)> {
    let rest = v.strip_prefix('v')?;
    let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let major: u64 = rest[..digits].parse().ok()?;
    if major == 0 {
        return None;
    }
    let tail = &rest[digits..];
    if tail.is_empty() {
        return Some((2, major, 0));
    }
    let (stability, minor) = if let Some(m) = tail.strip_prefix("beta") {
        (1, m)
    } else {
        (0, tail.strip_prefix("alpha")?)
    };
    if minor.is_empty() || !minor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stability, major, minor.parse().ok()?))
}

/// What upstream's naming controller makes of a definition's names: the names it accepts
/// (each requested name unless it is taken, else the one accepted before) and the first
/// conflict, as the `NamesAccepted` condition's reason and message.
#[derive(Debug, Clone, PartialEq)]
pub struct NamesVerdict {
    /// `status.acceptedNames`.
    pub accepted: Value,
    /// `(reason, message)` of the first name taken (`KindConflict`, `"Widget" is already in
    /// use`).
    pub conflict: Option<(&'static str, String)>,
}

/// Checks the names of `definition` against the other definitions of its group (the names
/// they had accepted) and the built-in resources of the group.
pub fn accept_names(definition: &Value, all: &[Value], catalog: &super::Catalog) -> NamesVerdict {
    let text = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let list = |v: &Value, p: &str| -> Vec<String> {
        v.pointer(p)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let group = text(definition, "/spec/group");
    let own = crate::object::name(definition).unwrap_or_default();
    let (mut used_names, mut used_kinds) = (Vec::new(), Vec::new());
    for builtin in catalog.entries().iter().filter(|e| e.definition.is_empty()) {
        if builtin.group == group {
            used_names.push(builtin.plural.to_string());
            used_names.push(builtin.singular.to_string());
            used_names.extend(builtin.short_names.iter().map(|s| s.to_string()));
            used_kinds.push(builtin.kind.to_string());
            used_kinds.push(format!("{}List", builtin.kind));
        }
    }
    for other in all {
        if crate::object::name(other) == Some(own) || text(other, "/spec/group") != group {
            continue;
        }
        used_names.push(text(other, "/status/acceptedNames/plural"));
        used_names.push(text(other, "/status/acceptedNames/singular"));
        used_names.extend(list(other, "/status/acceptedNames/shortNames"));
        used_kinds.push(text(other, "/status/acceptedNames/kind"));
        used_kinds.push(text(other, "/status/acceptedNames/listKind"));
    }
    used_names.retain(|n| !n.is_empty());
    used_kinds.retain(|n| !n.is_empty());
    let mut accepted = definition
        .pointer("/status/acceptedNames")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| serde_json::json!({"kind": "", "plural": ""}));
    let mut conflict: Option<(&'static str, String)> = None;
    let mut take = |field: &str, value: Value, taken: bool, reason: &'static str, shown: &str| {
        if taken {
            conflict.get_or_insert((reason, format!("{shown:?} is already in use")));
        } else if let Some(map) = accepted.as_object_mut() {
            map.insert(field.to_string(), value);
        }
    };
    let plural = text(definition, "/spec/names/plural");
    take(
        "plural",
        Value::String(plural.clone()),
        used_names.contains(&plural),
        "PluralConflict",
        &plural,
    );
    let singular = text(definition, "/spec/names/singular");
    if !singular.is_empty() {
        let taken = used_names.contains(&singular);
        take("singular", Value::String(singular.clone()), taken, "SingularConflict", &singular);
    }
    let short = list(definition, "/spec/names/shortNames");
    if let Some(taken) = short.iter().find(|s| used_names.contains(s)) {
        take("shortNames", Value::Null, true, "ShortNamesConflict", taken);
    } else if !short.is_empty() {
        take("shortNames", serde_json::json!(short), false, "", "");
    }
    let kind = text(definition, "/spec/names/kind");
    take("kind", Value::String(kind.clone()), used_kinds.contains(&kind), "KindConflict", &kind);
    let list_kind = text(definition, "/spec/names/listKind");
    if !list_kind.is_empty() {
        let taken = used_kinds.contains(&list_kind);
        take("listKind", Value::String(list_kind.clone()), taken, "ListKindConflict", &list_kind);
    }
    let categories = list(definition, "/spec/names/categories");
    if !categories.is_empty() {
        take("categories", serde_json::json!(categories), false, "", "");
    }
    NamesVerdict { accepted, conflict }
}

/// A definition's served entries, or the field errors that keep it from being served (an
/// invalid schema, a path that does not parse).
pub fn entries(object: &Value) -> Result<Vec<ResourceInfo>, Vec<FieldError>> {
    let crd: CustomResourceDefinition = serde_json::from_value(object.clone())
        .map_err(|e| vec![FieldError::invalid("spec", Value::Null, e.to_string())])?;
    let name = crd.metadata.name.clone().unwrap_or_default();
    let spec = &crd.spec;
    let Some(storage) = spec.versions.iter().find(|v| v.storage) else {
        return Err(vec![FieldError::required("spec.versions").with_detail("no storage version")]);
    };
    let group = intern(&spec.group);
    let plural = intern(&spec.names.plural);
    let storage_api_version = intern(&format!("{}/{}", spec.group, storage.name));
    let scope = if spec.scope == "Cluster" { Scope::Cluster } else { Scope::Namespaced };
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, version) in spec.versions.iter().enumerate() {
        if !version.served {
            continue;
        }
        let raw = object.pointer(&format!("/spec/versions/{i}"));
        let strategy = match strategy(version, raw, i) {
            Ok(s) if version.deprecated == Some(true) => {
                s.deprecated(version.deprecation_warning.clone().unwrap_or_else(|| {
                    format!("{}/{} {} is deprecated", spec.group, version.name, spec.names.kind)
                }))
            }
            Ok(s) => s,
            Err(e) => {
                errors.extend(e);
                continue;
            }
        };
        let api_version = format!("{}/{}", spec.group, version.name);
        let conversion: Option<Shared<dyn Conversion>> =
            (version.name != storage.name).then(|| {
                Shared::Owned(Arc::new(ApiVersionChange {
                    served: intern(&api_version),
                    stored: storage_api_version,
                }) as Arc<dyn Conversion>)
            });
        let subresources = version.subresources.as_ref();
        let scale = subresources.and_then(|s| s.scale.as_ref()).map(|scale| ScalePaths {
            spec_replicas: dotted(&scale.spec_replicas_path),
            status_replicas: dotted(&scale.status_replicas_path),
            selector: scale.label_selector_path.as_deref().map(dotted).unwrap_or(""),
        });
        out.push(ResourceInfo {
            group,
            version: intern(&version.name),
            kind: intern(&spec.names.kind),
            plural,
            singular: intern(
                spec.names.singular.as_deref().unwrap_or(&spec.names.kind.to_lowercase()),
            ),
            scope,
            short_names: intern_list(spec.names.short_names.as_deref().unwrap_or_default()),
            categories: intern_list(spec.names.categories.as_deref().unwrap_or_default()),
            verbs: VERBS,
            status: subresources.is_some_and(|s| s.status.is_some()),
            scale,
            extra_subresources: &[],
            storage: StorageInfo { group, resource: plural, api_version: storage_api_version },
            conversion,
            strategy: Shared::Owned(Arc::new(strategy)),
            definition: intern(&name),
        });
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// A JSONPath of fields (`.spec.replicas`) as the dotted path the registry reads.
fn dotted(path: &str) -> &'static str {
    JsonPath::parse(path).ok().and_then(|p| p.dotted()).map_or("", |d| intern(&d))
}

fn strategy(
    version: &CustomResourceDefinitionVersion,
    raw: Option<&Value>,
    index: usize,
) -> Result<CustomResourceStrategy, Vec<FieldError>> {
    let base = format!("spec.versions[{index}]");
    let raw_schema = raw.and_then(|v| v.pointer("/schema/openAPIV3Schema")).cloned();
    let schema = match raw.and_then(|v| v.pointer("/schema/openAPIV3Schema")) {
        Some(schema) => {
            Some(StructuralSchema::new(schema, &format!("{base}.schema.openAPIV3Schema"))?)
        }
        None => None,
    };
    let mut errors = Vec::new();
    let mut columns = Vec::new();
    for (c, column) in version.additional_printer_columns.iter().flatten().enumerate() {
        match JsonPath::parse(&column.json_path) {
            Ok(path) => columns.push(PrinterColumn::new(
                &column.name,
                &column.type_,
                column.format.as_deref().unwrap_or_default(),
                column.description.as_deref().unwrap_or_default(),
                column.priority.unwrap_or(0),
                path,
            )),
            Err(e) => errors.push(FieldError::invalid(
                format!("{base}.additionalPrinterColumns[{c}].jsonPath"),
                Value::String(column.json_path.clone()),
                e.to_string(),
            )),
        }
    }
    let mut selectable = Vec::new();
    for (f, field) in version.selectable_fields.iter().flatten().enumerate() {
        match JsonPath::parse(&field.json_path) {
            Ok(path) => match path.dotted() {
                Some(name) => selectable.push(SelectableField { name: intern(&name), path }),
                None => errors.push(FieldError::invalid(
                    format!("{base}.selectableFields[{f}].jsonPath"),
                    Value::String(field.json_path.clone()),
                    "must be a simple path of fields",
                )),
            },
            Err(e) => errors.push(FieldError::invalid(
                format!("{base}.selectableFields[{f}].jsonPath"),
                Value::String(field.json_path.clone()),
                e.to_string(),
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let status = version.subresources.as_ref().is_some_and(|s| s.status.is_some());
    Ok(CustomResourceStrategy::new(schema, raw_schema, status, columns, selectable))
}

/// The conversion of a definition whose `spec.conversion.strategy` is `None`: only the
/// `apiVersion` changes between versions.
#[derive(Debug)]
struct ApiVersionChange {
    served: &'static str,
    stored: &'static str,
}

fn set_api_version(mut obj: Value, api_version: &str) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(api_version.to_string()));
    }
    obj
}

impl Conversion for ApiVersionChange {
    fn to_stored(&self, obj: Value) -> Result<Value, ConversionError> {
        Ok(set_api_version(obj, self.stored))
    }

    fn to_served(&self, obj: Value) -> Result<Value, ConversionError> {
        Ok(set_api_version(obj, self.served))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn versions_sort_as_upstream_discovery() {
        let mut v = vec!["v1alpha1", "foo", "v2", "v1beta2", "v1", "v1beta1", "v10", "abc"];
        v.sort_by(|a, b| version_priority(a, b));
        assert_eq!(v, ["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "abc", "foo"]);
    }

    #[test]
    fn a_definition_serves_its_served_versions() {
        let crd = json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                          "listKind": "WidgetList", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object"}},
                     "subresources": {"status": {}, "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector"}}},
                    {"name": "v1beta1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1alpha1", "served": false, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                ],
            },
        });
        let entries = entries(&crd).unwrap();
        assert_eq!(entries.len(), 2);
        let v1 = &entries[0];
        assert_eq!(
            (v1.group, v1.version, v1.kind, v1.plural),
            ("example.com", "v1", "Widget", "widgets")
        );
        assert_eq!(v1.short_names, ["wd"]);
        assert!(v1.status && v1.conversion.is_none());
        let scale = v1.scale.unwrap();
        assert_eq!((scale.spec_replicas, scale.selector), ("spec.replicas", "status.selector"));
        assert_eq!(v1.storage_prefix(), "/registry/example.com/widgets/");
        let beta = &entries[1];
        assert!(!beta.status);
        let conversion = beta.conversion.as_ref().unwrap();
        let stored = conversion.to_stored(json!({"apiVersion": "example.com/v1beta1"})).unwrap();
        assert_eq!(stored["apiVersion"], "example.com/v1");
        assert_eq!(conversion.to_served(stored).unwrap()["apiVersion"], "example.com/v1beta1");
    }
}
