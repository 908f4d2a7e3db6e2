//! Schemas of the built-in types, from upstream's protobuf messages: one definition per
//! message, named as upstream names it, with the descriptions of the schemas' comments.
//!
//! Types map as upstream's generator maps the Go types: integers with their format, maps as
//! `additionalProperties`, repeated fields as arrays, and the types with a JSON form of their
//! own ([`Special`]) as upstream defines them (`Time` a `date-time` string, `IntOrString`
//! with the `int-or-string` format, ...). Fields of embedded messages (`names::INLINE`) are
//! fields of the parent. Upstream's list markers (`+listType`, `+listMapKey`, `+mapType`,
//! `+structType`) become the `x-kubernetes-*` extensions and `+default` the `default`; the
//! strategic merge patch extensions come from [`crate::patch::merge_keys`], the facts this
//! server merges by.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::Flavor;
use super::docs::{self, Doc};
use crate::patch::merge_keys::{FieldMeta, ListStrategy, ROOTS, TypeRef};
use crate::protobuf::names::{JsonField, json_field};
use crate::protobuf::schema::{self, APIEXTENSIONS};
use crate::protobuf::special::Special;

/// The description upstream gives `apiVersion` in every kind.
pub const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
/// The description upstream gives `kind` in every kind.
pub const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// Messages with `metadata` that are no kinds (no `apiVersion` and `kind`): templates.
const NOT_KINDS: &[&str] = &["PersistentVolumeClaimTemplate"];

/// Messages of the CustomResourceDefinition types whose JSON is any value, or a schema or
/// something else (upstream's definitions of them have no type).
const ANY_JSON: &[&str] =
    &["JSON", "JSONSchemaPropsOrArray", "JSONSchemaPropsOrBool", "JSONSchemaPropsOrStringArray"];

/// The JSON name of a field of `JSONSchemaProps`, whose protobuf names are not its JSON ones
/// (`ref` is `$ref`, `xKubernetesListType` is `x-kubernetes-list-type`); any other field's
/// own name.
fn schema_props_name(message: &MessageDescriptor, name: &str) -> String {
    if message.name() != "JSONSchemaProps" || !message.package_name().starts_with(APIEXTENSIONS) {
        return name.to_string();
    }
    match name {
        "ref" | "schema" => format!("${name}"),
        _ => match name.strip_prefix("xKubernetes") {
            Some(rest) => {
                let mut out = String::from("x-kubernetes");
                for c in rest.chars() {
                    if c.is_ascii_uppercase() {
                        out.push('-');
                    }
                    out.push(c.to_ascii_lowercase());
                }
                out
            }
            None => name.to_string(),
        },
    }
}

/// Messages of `meta/v1` that are kinds without `metadata`.
const META_KINDS: &[&str] = &[
    "APIGroup",
    "APIGroupList",
    "APIResourceList",
    "APIVersions",
    "CreateOptions",
    "DeleteOptions",
    "GetOptions",
    "ListOptions",
    "PatchOptions",
    "UpdateOptions",
];

/// The OpenAPI name of a message: `api.apps.v1.Deployment` → `io.k8s.api.apps.v1.Deployment`,
/// `kube_aggregator.pkg...` → `io.k8s.kube-aggregator.pkg...`.
pub fn definition_name(message: &MessageDescriptor) -> String {
    let full = message.full_name();
    let full = full.strip_prefix("k8s.io.").unwrap_or(full);
    let (package, name) = full.rsplit_once('.').unwrap_or(("", full));
    format!("io.k8s.{}.{name}", package.replace('_', "-"))
}

/// The message of a built-in kind: the protobuf encoding's, or for the kinds it does not
/// encode (`apiextensions.k8s.io`), the message of the group version's package.
pub fn kind_message(group: &str, version: &str, kind: &str) -> Option<MessageDescriptor> {
    let api_version =
        if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    schema::message(&api_version, kind).or_else(|| {
        let package = match group {
            "apiextensions.k8s.io" => APIEXTENSIONS,
            _ => return None,
        };
        schema::pool()?.get_message_by_name(&format!("{package}{version}.{kind}"))
    })
}

/// A reference to definition `name`, with the description of the field holding it.
pub fn reference(flavor: Flavor, name: &str, description: &str) -> Value {
    let target = format!("{}{name}", flavor.prefix());
    match (flavor, description.is_empty()) {
        (_, true) => json!({"$ref": target}),
        (Flavor::V2, false) => json!({"$ref": target, "description": description}),
        (Flavor::V3, false) => json!({"allOf": [{"$ref": target}], "description": description}),
    }
}

/// Definitions collected for one document, by name.
#[derive(Debug)]
pub struct Collector {
    flavor: Flavor,
    definitions: BTreeMap<String, Value>,
}

impl Collector {
    /// An empty set for documents of `flavor`.
    pub fn new(flavor: Flavor) -> Self {
        Self { flavor, definitions: BTreeMap::new() }
    }

    /// The flavor of the document.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Adds the definition of `message` and of every message it refers to; returns its name.
    pub fn add_message(&mut self, message: &MessageDescriptor) -> String {
        let name = definition_name(message);
        if !self.definitions.contains_key(&name) {
            // Inserted first, so that a message referring to itself (JSONSchemaProps) stops.
            self.definitions.insert(name.clone(), Value::Null);
            let schema = self.message_schema(message);
            self.definitions.insert(name.clone(), schema);
        }
        name
    }

    /// Adds the definition of built-in kind `kind` of `group` and `version`, with its
    /// `x-kubernetes-group-version-kind`; returns its name, or `None` when it has no message.
    pub fn add_kind(&mut self, group: &str, version: &str, kind: &str) -> Option<String> {
        let name = self.add_message(&kind_message(group, version, kind)?);
        self.add_gvk(&name, group, version, kind);
        Some(name)
    }

    /// Adds a definition built elsewhere (custom resources).
    pub fn insert(&mut self, name: String, schema: Value) {
        self.definitions.insert(name, schema);
    }

    /// Adds `group`, `version`, `kind` to the `x-kubernetes-group-version-kind` list of
    /// definition `name`.
    pub fn add_gvk(&mut self, name: &str, group: &str, version: &str, kind: &str) {
        let Some(Value::Object(schema)) = self.definitions.get_mut(name) else { return };
        let gvk = json!({"group": group, "kind": kind, "version": version});
        let list = schema
            .entry("x-kubernetes-group-version-kind")
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list
            && !list.contains(&gvk)
        {
            list.push(gvk);
        }
    }

    /// The definitions, by name.
    pub fn into_definitions(self) -> Map<String, Value> {
        self.definitions.into_iter().collect()
    }

    fn message_schema(&mut self, message: &MessageDescriptor) -> Value {
        let doc = docs::message(message.full_name());
        if let Some(special) = Special::of(message) {
            return special_schema(special, self.flavor, doc.description);
        }
        if message.package_name().starts_with(APIEXTENSIONS) && ANY_JSON.contains(&message.name()) {
            // Any JSON value, or a schema or something else: no type, as upstream.
            return with_description(json!({}), doc.description);
        }
        let mut properties = BTreeMap::new();
        let mut required = Vec::new();
        if is_kind(message) {
            properties.insert("apiVersion".to_string(), string_with(API_VERSION_DOC));
            properties.insert("kind".to_string(), string_with(KIND_DOC));
        }
        self.add_fields(message, &mut properties, &mut required, false);
        let mut schema = Map::new();
        if !doc.description.is_empty() {
            schema.insert("description".into(), Value::from(doc.description));
        }
        schema.insert("properties".into(), Value::Object(properties.into_iter().collect()));
        if !required.is_empty() {
            schema.insert("required".into(), Value::from(required));
        }
        schema.insert("type".into(), Value::from("object"));
        if doc.marker("structType") == Some("atomic") {
            schema.insert("x-kubernetes-map-type".into(), Value::from("atomic"));
        }
        Value::Object(schema)
    }

    /// The fields of `message` (and of the messages it embeds) as properties.
    fn add_fields(
        &mut self,
        message: &MessageDescriptor,
        properties: &mut BTreeMap<String, Value>,
        required: &mut Vec<String>,
        inlined: bool,
    ) {
        // Messages whose fields carry no `+optional` or `+required` at all (older ones such
        // as `ManagedFieldsEntry`, `JSONSchemaProps`) say nothing of what is required.
        let marked = uses_optional_markers(message);
        for field in message.fields() {
            let json_name = match json_field(message.name(), field.name()) {
                JsonField::Inline => {
                    if let Kind::Message(inlined) = field.kind() {
                        self.add_fields(&inlined, properties, required, true);
                    }
                    continue;
                }
                JsonField::Named(name) => schema_props_name(message, name),
            };
            let doc = docs::field(message.full_name(), field.name());
            if is_required(&field, &doc, inlined || !marked) {
                required.push(json_name.clone());
            }
            let mut schema = self.field_schema(&field, &doc);
            if let (Value::Object(schema), Some(meta)) =
                (&mut schema, patch_meta(message.full_name(), &json_name))
            {
                add_patch_extensions(schema, meta);
            }
            // `+default=<JSON>` (a reference such as `ref(...)` is not JSON and is left out).
            if let (Value::Object(schema), Some(default)) = (
                &mut schema,
                doc.marker("default").and_then(|d| serde_json::from_str::<Value>(d).ok()),
            ) {
                schema.insert("default".into(), default);
            }
            properties.insert(json_name, schema);
        }
    }

    fn field_schema(&mut self, field: &FieldDescriptor, doc: &Doc) -> Value {
        let description = doc.description;
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else { return json!({}) };
            let value = self.value_schema(&entry.map_entry_value_field().kind());
            let mut schema = with_description(
                json!({"additionalProperties": value, "type": "object"}),
                description,
            );
            if let Some(map_type) = doc.marker("mapType") {
                schema["x-kubernetes-map-type"] = Value::from(map_type);
            }
            schema
        } else if field.is_list() {
            let items = self.value_schema(&field.kind());
            let mut schema =
                with_description(json!({"items": items, "type": "array"}), description);
            if let Some(list_type) = doc.marker("listType") {
                schema["x-kubernetes-list-type"] = Value::from(list_type);
                let keys: Vec<&str> = doc.markers_named("listMapKey").collect();
                if list_type == "map" && !keys.is_empty() {
                    schema["x-kubernetes-list-map-keys"] = Value::from(keys);
                }
            }
            schema
        } else {
            match field.kind() {
                Kind::Message(message) if Special::of(&message) != Some(Special::StringList) => {
                    let name = self.add_message(&message);
                    reference(self.flavor, &name, description)
                }
                kind => with_description(self.value_schema(&kind), description),
            }
        }
    }

    /// The schema of one value: a scalar, or a reference to a message's definition.
    fn value_schema(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Message(message) => match Special::of(message) {
                Some(Special::StringList) => {
                    json!({"items": {"type": "string"}, "type": "array"})
                }
                _ => {
                    let name = self.add_message(message);
                    reference(self.flavor, &name, "")
                }
            },
            Kind::String | Kind::Enum(_) => json!({"type": "string"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::Bytes => json!({"format": "byte", "type": "string"}),
            Kind::Double => json!({"format": "double", "type": "number"}),
            Kind::Float => json!({"format": "float", "type": "number"}),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 | Kind::Uint32 | Kind::Fixed32 => {
                json!({"format": "int32", "type": "integer"})
            }
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => {
                json!({"format": "int64", "type": "integer"})
            }
        }
    }
}

/// Whether objects of `message` carry `apiVersion` and `kind` (upstream's `TypeMeta`): the
/// messages with object or list metadata, but for templates, and the option and discovery
/// kinds of `meta/v1`.
fn is_kind(message: &MessageDescriptor) -> bool {
    let name = message.name();
    if name.ends_with("Spec") || NOT_KINDS.contains(&name) {
        return false;
    }
    if message.package_name() == "apimachinery.pkg.apis.meta.v1" && META_KINDS.contains(&name) {
        return true;
    }
    message.get_field_by_name("metadata").is_some_and(|field| match field.kind() {
        Kind::Message(meta) => matches!(meta.name(), "ObjectMeta" | "ListMeta"),
        _ => false,
    })
}

/// Whether `message` says what is optional: at least three tenths of its fields (an embedded
/// message counting as one, marked when it says so itself) are marked `+optional` or
/// `+required`. Older messages (`JSONSchemaProps`, `ManagedFieldsEntry`) mark a field or two,
/// and leave the others' optionality unsaid. (Against upstream's required lists of 1.33, this
/// rule finds about 350 of 500 required fields, with about 50 wrongly required.)
fn uses_optional_markers(message: &MessageDescriptor) -> bool {
    let marked = message
        .fields()
        .filter(|field| {
            let doc = docs::field(message.full_name(), field.name());
            if doc.marker("optional").is_some() || doc.marker("required").is_some() {
                return true;
            }
            match (json_field(message.name(), field.name()), field.kind()) {
                (JsonField::Inline, Kind::Message(inlined)) => uses_optional_markers(&inlined),
                _ => false,
            }
        })
        .count();
    marked > 0 && marked * 10 >= message.fields().len() * 3
}

/// Whether upstream requires the field, as near as the schemas' comments tell: marked
/// `+required`, or a single field not marked `+optional` (upstream requires the fields whose
/// JSON tag lacks `omitempty`, which go with `+optional`; lists and the fields of embedded
/// messages are unmarked optional ones more often than not), unless `only_marked`.
fn is_required(field: &FieldDescriptor, doc: &Doc, only_marked: bool) -> bool {
    if doc.marker("required").is_some() {
        return true;
    }
    !only_marked && !field.is_list() && !field.is_map() && doc.marker("optional").is_none()
}

fn string_with(description: &str) -> Value {
    json!({"description": description, "type": "string"})
}

fn with_description(mut schema: Value, description: &str) -> Value {
    if !description.is_empty()
        && let Value::Object(object) = &mut schema
    {
        object.insert("description".into(), Value::from(description));
    }
    schema
}

/// The definition of a type with a JSON form of its own, as upstream defines it.
fn special_schema(special: Special, flavor: Flavor, description: &str) -> Value {
    let schema = match (special, flavor) {
        (Special::Time | Special::MicroTime, _) => json!({"format": "date-time", "type": "string"}),
        (Special::Duration, _) => json!({"type": "string"}),
        (Special::Quantity, Flavor::V2) => json!({"type": "string"}),
        (Special::Quantity, Flavor::V3) => {
            json!({"oneOf": [{"type": "string"}, {"type": "number"}]})
        }
        (Special::IntOrString, Flavor::V2) => json!({"format": "int-or-string", "type": "string"}),
        (Special::IntOrString, Flavor::V3) => json!({
            "format": "int-or-string",
            "oneOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": true,
        }),
        (Special::RawJson, _) => json!({"type": "object"}),
        (Special::StringList, _) => json!({"items": {"type": "string"}, "type": "array"}),
    };
    with_description(schema, description)
}

/// Adds `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key`.
fn add_patch_extensions(schema: &mut Map<String, Value>, meta: FieldMeta) {
    let mut strategies = Vec::new();
    match meta.list {
        ListStrategy::Atomic => {}
        ListStrategy::MergePrimitives => strategies.push("merge"),
        ListStrategy::MergeByKey(key) => {
            strategies.push("merge");
            schema.insert("x-kubernetes-patch-merge-key".into(), Value::from(key));
        }
    }
    if meta.retain_keys {
        strategies.push("retainKeys");
    }
    if !strategies.is_empty() {
        schema.insert("x-kubernetes-patch-strategy".into(), Value::from(strategies.join(",")));
    }
}

/// The patch metadata of field `json` of message `message` (full name), when it merges.
fn patch_meta(message: &str, json: &str) -> Option<FieldMeta> {
    PATCH_META.get(&(message.to_string(), json.to_string())).copied()
}

/// Every (message, JSON field) that [`crate::patch::merge_keys`] merges, found by walking
/// its type graph beside the messages of every version of its root kinds.
static PATCH_META: LazyLock<HashMap<(String, String), FieldMeta>> = LazyLock::new(|| {
    let mut out = HashMap::new();
    let mut seen = HashSet::new();
    for (group, kind, _) in ROOTS {
        for version in schema::versions(group) {
            let api_version =
                if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
            if let Some(message) = schema::message(&api_version, kind) {
                walk(&message, TypeRef::root(&api_version, kind), &mut out, &mut seen);
            }
        }
    }
    if let Some(meta) = schema::pool()
        .and_then(|pool| pool.get_message_by_name("apimachinery.pkg.apis.meta.v1.ObjectMeta"))
    {
        walk(&meta, TypeRef::named("ObjectMeta"), &mut out, &mut seen);
    }
    out
});

fn walk(
    message: &MessageDescriptor,
    ty: TypeRef,
    out: &mut HashMap<(String, String), FieldMeta>,
    seen: &mut HashSet<(String, Option<&'static str>)>,
) {
    if !seen.insert((message.full_name().to_string(), ty.name())) {
        return;
    }
    for field in message.fields() {
        let json = match json_field(message.name(), field.name()) {
            JsonField::Inline => {
                if let Kind::Message(inlined) = field.kind() {
                    walk(&inlined, ty, out, seen);
                }
                continue;
            }
            JsonField::Named(json) => json,
        };
        let meta = ty.field(json);
        if meta.list != ListStrategy::Atomic || meta.retain_keys {
            out.entry((message.full_name().to_string(), json.to_string())).or_insert(meta);
        }
        if meta.ty.name().is_some()
            && !field.is_map()
            && let Kind::Message(next) = field.kind()
        {
            walk(&next, meta.ty, out, seen);
        }
    }
}
