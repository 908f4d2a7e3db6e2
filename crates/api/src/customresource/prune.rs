//! Pruning: dropping the fields a structural schema does not specify, as upstream's
//! `schema/pruning` does, honouring `x-kubernetes-preserve-unknown-fields` and keeping
//! `apiVersion`, `kind` and `metadata` of embedded resources and of the root.

use std::fmt::Write as _;

use serde_json::Value;

use super::schema::Schema;

const META: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// The fields of an `ObjectMeta`.
const OBJECT_META: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Whether Go's JSON encoding of an `ObjectMeta` leaves a field out (`omitempty`).
fn empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

/// Where a pruned field's path is built: `spec.foo`, `spec.items[2].bar`.
struct Pruner {
    path: String,
    pruned: Vec<String>,
}

impl Pruner {
    fn record(&mut self, key: &str) {
        let mut p = self.path.clone();
        if !p.is_empty() {
            p.push('.');
        }
        p.push_str(key);
        self.pruned.push(p);
    }

    fn enter_key(&mut self, key: &str) -> usize {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(key);
        len
    }

    fn enter_index(&mut self, i: usize) -> usize {
        let len = self.path.len();
        let _ = write!(self.path, "[{i}]");
        len
    }

    /// The `metadata` of an embedded resource as upstream's decoding into an `ObjectMeta`
    /// and back leaves it (`objectmeta.Coerce`): unknown fields dropped (and reported),
    /// empty ones left out.
    fn coerce_metadata(&mut self, x: &mut Value) {
        let Some(Value::Object(meta)) = x.get_mut("metadata") else { return };
        let len = self.enter_key("metadata");
        meta.retain(|k, v| {
            if !OBJECT_META.contains(&k.as_str()) {
                self.record(k);
                return false;
            }
            !empty(v)
        });
        self.path.truncate(len);
    }

    /// `embedded` is the schema's `x-kubernetes-embedded-resource`, true at the root.
    fn prune(&mut self, x: &mut Value, s: Option<&Schema>, embedded: bool) {
        if embedded && !self.path.is_empty() {
            self.coerce_metadata(x);
        }
        if let Some(s) = s.filter(|s| s.preserve_unknown) {
            self.skip(x, s, embedded);
            return;
        }
        match x {
            Value::Object(map) => {
                let Some(s) = s else {
                    for k in map.keys() {
                        self.record(k);
                    }
                    map.clear();
                    return;
                };
                map.retain(|k, v| {
                    if embedded && META.contains(&k.as_str()) {
                        return true;
                    }
                    let sub = match s.properties.get(k) {
                        Some(p) => Some(p),
                        None if s.additional.is_some() => s.additional_schema(),
                        None => {
                            if !META.contains(&k.as_str()) || !self.path.is_empty() {
                                self.record(k);
                            }
                            return false;
                        }
                    };
                    let len = self.enter_key(k);
                    self.prune(v, sub, sub.is_some_and(|s| s.embedded));
                    self.path.truncate(len);
                    true
                });
            }
            Value::Array(items) => {
                let item_schema = s.and_then(|s| s.items.as_deref());
                for (i, v) in items.iter_mut().enumerate() {
                    let len = self.enter_index(i);
                    self.prune(v, item_schema, item_schema.is_some_and(|s| s.embedded));
                    self.path.truncate(len);
                }
            }
            _ => {}
        }
    }

    /// Below `x-kubernetes-preserve-unknown-fields`: unknown fields stay, known ones are
    /// pruned by their own schemas.
    fn skip(&mut self, x: &mut Value, s: &Schema, embedded: bool) {
        if embedded && !self.path.is_empty() {
            self.coerce_metadata(x);
        }
        match x {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    if embedded && META.contains(&k.as_str()) {
                        continue;
                    }
                    let sub = match s.properties.get(k) {
                        Some(p) => Some(p),
                        None if s.additional.is_some() => s.additional_schema(),
                        None => continue,
                    };
                    let len = self.enter_key(k);
                    self.prune(v, sub, sub.is_some_and(|s| s.embedded));
                    self.path.truncate(len);
                }
            }
            Value::Array(items) => {
                if let Some(item) = s.items.as_deref() {
                    for (i, v) in items.iter_mut().enumerate() {
                        let len = self.enter_index(i);
                        self.skip(v, item, item.embedded);
                        self.path.truncate(len);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Prunes `x` against `s`; `resource_root` treats it as a resource (its `apiVersion`, `kind`
/// and `metadata` kept). The paths pruned, sorted.
pub(crate) fn prune(x: &mut Value, s: &Schema, resource_root: bool) -> Vec<String> {
    let mut pruner = Pruner { path: String::new(), pruned: Vec::new() };
    pruner.prune(x, Some(s), resource_root || s.embedded);
    pruner.pruned.sort();
    pruner.pruned
}
