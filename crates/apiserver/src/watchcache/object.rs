//! One object as the cache keeps it: the bytes a client is sent, beside a small index entry
//! (its labels and selectable fields), decoded only where logic needs the object.

use std::sync::Arc;

use bytes::Bytes;
use krust_api::ResourceInfo;
use krust_api::object::{meta_str, metadata_mut};
use krust_store::{KeyValue, Revision};
use serde_json::Value;

/// How a resource's objects are kept: the storage version's catalog entry, whose `apiVersion`
/// and `kind` the kept bytes carry and whose strategy names the selectable fields.
#[derive(Clone, Copy)]
pub struct Shape {
    /// The catalog entry of the storage version.
    pub info: ResourceInfo,
}

impl Shape {
    /// The shape of objects stored as `info` (an entry whose version is the storage version).
    pub fn new(info: ResourceInfo) -> Self {
        Self { info }
    }

    /// One shape per storage prefix of `catalog`: the entry without a conversion (any entry
    /// of the prefix when none is).
    pub fn of_catalog(catalog: &krust_api::Catalog) -> Vec<Shape> {
        let mut by_prefix: std::collections::BTreeMap<String, ResourceInfo> = Default::default();
        for info in catalog.entries() {
            let entry = by_prefix.entry(info.storage_prefix()).or_insert(*info);
            if entry.conversion.is_some() && info.conversion.is_none() {
                *entry = *info;
            }
        }
        by_prefix.into_values().map(Shape::new).collect()
    }

    /// The shapes of `catalog` whose storage prefix is one of `prefixes`.
    pub fn of_prefixes(catalog: &krust_api::Catalog, prefixes: &[&str]) -> Vec<Shape> {
        let mut shapes = Self::of_catalog(catalog);
        shapes.retain(|s| prefixes.contains(&s.info.storage_prefix().as_str()));
        shapes
    }

    /// The field the cache indexes, if any (pods: `spec.nodeName`).
    pub fn indexed_field(&self) -> Option<&'static str> {
        self.info.strategy.indexed_field()
    }
}

/// One object: encoded once, shared by every reader.
#[derive(Debug)]
pub struct CachedObject {
    /// The storage key.
    pub key: Arc<str>,
    /// The object as JSON, in its storage version, with its `apiVersion`, `kind` and
    /// `metadata.resourceVersion`: what a client of the storage version is sent.
    pub json: Bytes,
    /// The revision of its last change.
    pub mod_revision: Revision,
    /// Its labels, in the object's order.
    labels: Box<[(Box<str>, Box<str>)]>,
    /// Its selectable fields (`metadata.name`, `metadata.namespace` and the strategy's), as
    /// field selectors read them.
    fields: Box<[(&'static str, Box<str>)]>,
    /// About how many bytes it takes in memory.
    pub size: usize,
}

impl CachedObject {
    /// Decodes a stored value once to index it; `None` (logged) when the bytes are not a JSON
    /// object.
    pub fn decode(kv: KeyValue, shape: &Shape) -> Option<Self> {
        let mut value: Value = match serde_json::from_slice(&kv.value) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                tracing::error!(key = %kv.key, "stored value is not a JSON object; skipped");
                return None;
            }
        };
        metadata_mut(&mut value)
            .insert("resourceVersion".into(), Value::String(kv.mod_revision.to_string()));
        let value = crate::registry::to_served(&shape.info, value);
        Some(Self::new(kv.key.into(), &value, kv.mod_revision, shape))
    }

    /// Indexes and encodes `value`, an object in the storage version of `shape`.
    fn new(key: Arc<str>, value: &Value, mod_revision: Revision, shape: &Shape) -> Self {
        let labels: Box<[(Box<str>, Box<str>)]> =
            krust_api::object::labels(value).map(|(k, v)| (k.into(), v.into())).collect();
        let mut fields = vec![
            ("metadata.name", meta_str(value, "name").unwrap_or_default().into()),
            ("metadata.namespace", meta_str(value, "namespace").unwrap_or_default().into()),
        ];
        fields.extend(
            shape.info.strategy.selectable_fields(value).into_iter().map(|(f, v)| (f, v.into())),
        );
        let fields: Box<[(&'static str, Box<str>)]> = fields.into_boxed_slice();
        let mut json = serde_json::to_vec(value).unwrap_or_default();
        json.shrink_to_fit();
        let size = std::mem::size_of::<Self>()
            + key.len()
            + json.len()
            + labels.iter().map(|(k, v)| 32 + k.len() + v.len()).sum::<usize>()
            + fields.iter().map(|(_, v)| 32 + v.len()).sum::<usize>();
        Self { key, json: Bytes::from(json), mod_revision, labels, fields, size }
    }

    /// The object decoded (in its storage version), for logic that reads it.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }

    /// The object decoded into a typed view.
    pub fn decode_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.json)
    }

    /// Its labels.
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> {
        self.labels.iter().map(|(k, v)| (&**k, &**v))
    }

    /// The value of a selectable field (`None`: the resource has no such field).
    pub fn field(&self, field: &str) -> Option<&str> {
        self.fields.iter().find(|(f, _)| *f == field).map(|(_, v)| &**v)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod_shape() -> Shape {
        let catalog = krust_api::Catalog::builtin();
        Shape::new(*catalog.lookup("", "v1", "pods").unwrap())
    }

    #[test]
    fn an_object_is_kept_as_the_bytes_a_client_gets_beside_its_labels_and_fields() {
        let kv = KeyValue {
            key: "/registry/core/pods/a/web".into(),
            value: br#"{"metadata":{"name":"web","namespace":"a","labels":{"app":"web"}},"spec":{"nodeName":"n1"}}"#.to_vec(),
            create_revision: 4,
            mod_revision: 7,
        };
        let object = CachedObject::decode(kv, &pod_shape()).unwrap();
        let value = object.value();
        assert_eq!(value["apiVersion"], "v1");
        assert_eq!(value["kind"], "Pod");
        assert_eq!(value["metadata"]["resourceVersion"], "7");
        assert_eq!(object.labels().collect::<Vec<_>>(), [("app", "web")]);
        assert_eq!(object.field("spec.nodeName"), Some("n1"));
        assert_eq!(object.field("metadata.namespace"), Some("a"));
        assert_eq!(object.field("spec.nope"), None);
        assert!(object.size >= object.json.len() && object.size < 2 * object.json.len() + 600);
    }
}
