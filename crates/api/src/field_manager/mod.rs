//! Field ownership: `metadata.managedFields` and server-side apply, after upstream's
//! fieldmanager and structured-merge-diff.
//!
//! Every write records which manager set which fields. An update (or a create, or a non-apply
//! patch) gives its manager the fields whose values it changed, taking them from the others.
//! An apply merges the applied configuration into the object, refuses (409) to change a value
//! another manager owns unless forced, and removes the fields its manager applied before and
//! no longer applies, when nobody else owns them.
//!
//! Lists and maps follow the schema: for built-in kinds the merge keys of
//! [`crate::patch::merge_keys`] (a list with a merge key is associative, a merged list of
//! primitives a set, any other list atomic); for kinds it does not know (custom resources)
//! lists are atomic and maps granular, as upstream's default.

pub mod builtin;
pub mod fieldset;
pub mod schema;

use serde_json::{Map, Value, json};

pub use fieldset::{FieldSet, PathElement, display_path};
pub use schema::{ListKind, Member, Types};

/// Metadata members no manager owns (upstream's `stripmeta`).
const UNOWNED_META: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// The fields `obj` sets, as their manager would own them (type meta and the server's
/// metadata left out).
pub fn fields_of(obj: &Value, ty: Types<'_>) -> FieldSet {
    let mut set = FieldSet::default();
    let Value::Object(members) = obj else { return set };
    for (name, value) in members {
        if name == "apiVersion" || name == "kind" {
            continue;
        }
        let node = set.child(PathElement::Field(name.clone()));
        let member = ty.member(name);
        if name == "metadata" {
            if let Value::Object(meta_members) = value {
                for (field, v) in meta_members {
                    if UNOWNED_META.contains(&field.as_str()) {
                        continue;
                    }
                    let m = member.ty.member(field);
                    collect(v, &m, node.child(PathElement::Field(field.clone())));
                }
            }
            continue;
        }
        collect(value, &member, node);
    }
    set.members.retain(|_, c| !c.is_empty());
    set
}

/// The key of an item of an associative list on `keys`, when it has them all.
fn item_key(item: &Value, keys: &[String], ty: Types<'_>) -> Option<PathElement> {
    let mut values = Vec::new();
    for key in keys {
        values.push((key.clone(), key_value(item, key, ty)?.to_string()));
    }
    values.sort();
    Some(PathElement::Key(values))
}

/// The value of key field `key` of a list item: its own, else the schema's default (a
/// Service port without `protocol` is the `TCP` one, as structured-merge-diff reads it).
fn key_value(item: &Value, key: &str, ty: Types<'_>) -> Option<Value> {
    item.get(key).cloned().or_else(|| ty.default_of(key))
}

/// Whether `item` is the one `other` identifies on `keys`.
fn same_item(item: &Value, other: &Value, keys: &[String], ty: Types<'_>) -> bool {
    keys.iter().all(|k| {
        let value = key_value(item, k, ty);
        value.is_some() && value == key_value(other, k, ty)
    })
}

fn collect(value: &Value, member: &Member<'_>, node: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() && !member.atomic_map => {
            for (name, v) in map {
                let child = member.ty.member(name);
                collect(v, &child, node.child(PathElement::Field(name.clone())));
            }
        }
        Value::Array(items) if !items.is_empty() => match &member.list {
            ListKind::Atomic => node.itself = true,
            ListKind::Set => {
                for item in items {
                    node.child(PathElement::Value(item.to_string())).itself = true;
                }
            }
            ListKind::Map(keys) => {
                if items.iter().any(|i| item_key(i, keys, member.ty).is_none()) {
                    node.itself = true;
                    return;
                }
                let item_member =
                    Member { ty: member.ty, list: ListKind::Atomic, atomic_map: false };
                for item in items {
                    if let Some(element) = item_key(item, keys, member.ty) {
                        let child = node.child(element);
                        child.itself = true;
                        collect(item, &item_member, child);
                    }
                }
            }
        },
        _ => node.itself = true,
    }
}

/// Whether `value` is the one `text` (the JSON a path element keeps) encodes.
fn is_json(value: &Value, text: &str) -> bool {
    serde_json::from_str::<Value>(text).is_ok_and(|parsed| parsed == *value)
}

/// The value at `path` in `obj`, if there is one.
pub fn value_at<'a>(obj: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |value, element| step(value, element))
}

/// The part of `value` that `element` names (a member, or an item of a list), if there is one.
fn step<'a>(value: &'a Value, element: &PathElement) -> Option<&'a Value> {
    match (element, value) {
        (PathElement::Field(name), Value::Object(map)) => map.get(name),
        (PathElement::Key(keys), Value::Array(items)) => items
            .iter()
            .find(|item| keys.iter().all(|(k, v)| item.get(k).is_some_and(|x| is_json(x, v)))),
        (PathElement::Value(v), Value::Array(items)) => items.iter().find(|item| is_json(item, v)),
        (PathElement::Index(i), Value::Array(items)) => items.get(*i),
        _ => None,
    }
}

/// The nodes below `after` (fields of `new`, whose type is `ty`) that a write from `old` to
/// `new` adds or changes: an added node is the writer's (a map it made too, as upstream
/// records `.`), a kept node only when it is a value that changed. One walk down both values
/// together; a part equal in both is not walked.
fn changed_nodes(
    after: &FieldSet,
    old: Option<&Value>,
    new: Option<&Value>,
    ty: Types<'_>,
) -> FieldSet {
    let mut changed = FieldSet::default();
    for (element, below) in &after.members {
        let was = old.and_then(|v| step(v, element));
        let is = new.and_then(|v| step(v, element));
        if was.is_some() && was == is {
            continue;
        }
        let ty = match element {
            PathElement::Field(name) => ty.member(name).ty,
            _ => ty,
        };
        // Structs of known types are never absent in upstream's typed objects, so only maps
        // (and structs of unknown types) are recorded as added.
        let added = was.is_none() && is.is_some_and(|v| !is_granular(v) || !ty.is_struct());
        let leaf_changed = was != is && is.is_some_and(|v| !is_granular(v));
        let mut node = changed_nodes(below, was, is, ty);
        node.itself |= added || leaf_changed;
        if node.itself || !node.members.is_empty() {
            changed.members.insert(element.clone(), node);
        }
    }
    changed
}

/// Removes what `path` names from `obj` (a member, or an item of a list).
fn remove_at(obj: &mut Value, path: &[PathElement]) {
    let Some((last, parent_path)) = path.split_last() else { return };
    let mut current = obj;
    for element in parent_path {
        let next = match (element, current) {
            (PathElement::Field(name), Value::Object(map)) => map.get_mut(name),
            (PathElement::Key(keys), Value::Array(items)) => items
                .iter_mut()
                .find(|item| keys.iter().all(|(k, v)| item.get(k).is_some_and(|x| is_json(x, v)))),
            (PathElement::Value(v), Value::Array(items)) => {
                items.iter_mut().find(|item| is_json(item, v))
            }
            (PathElement::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        let Some(next) = next else { return };
        current = next;
    }
    match (last, current) {
        (PathElement::Field(name), Value::Object(map)) => {
            map.shift_remove(name);
        }
        (PathElement::Key(keys), Value::Array(items)) => items
            .retain(|item| !keys.iter().all(|(k, v)| item.get(k).is_some_and(|x| is_json(x, v)))),
        (PathElement::Value(v), Value::Array(items)) => items.retain(|item| !is_json(item, v)),
        (PathElement::Index(i), Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
        }
        _ => {}
    }
}

/// `config` merged into `live`: maps member by member, associative lists item by item (live
/// order kept, new items after), sets by value, anything else replaced.
fn merge(live: &mut Value, config: &Value, member: &Member<'_>) {
    match (live, config) {
        (Value::Object(live_map), Value::Object(config_map)) if !member.atomic_map => {
            for (name, value) in config_map {
                let child = member.ty.member(name);
                match live_map.get_mut(name) {
                    Some(existing) => merge(existing, value, &child),
                    None => {
                        live_map.insert(name.clone(), value.clone());
                    }
                }
            }
        }
        (Value::Array(live_items), Value::Array(config_items)) => match &member.list {
            ListKind::Set => {
                for item in config_items {
                    if !live_items.contains(item) {
                        live_items.push(item.clone());
                    }
                }
            }
            ListKind::Map(keys)
                if config_items
                    .iter()
                    .chain(live_items.iter())
                    .all(|i| item_key(i, keys, member.ty).is_some()) =>
            {
                let item_member =
                    Member { ty: member.ty, list: ListKind::Atomic, atomic_map: false };
                for item in config_items {
                    match live_items.iter_mut().find(|l| same_item(l, item, keys, member.ty)) {
                        Some(existing) => merge(existing, item, &item_member),
                        None => live_items.push(item.clone()),
                    }
                }
            }
            _ => *live_items = config_items.clone(),
        },
        (live, config) => *live = config.clone(),
    }
}

/// One entry of `metadata.managedFields`.
#[derive(Debug, Clone, PartialEq)]
pub struct ManagedEntry {
    /// The manager's name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// The apiVersion the manager wrote in.
    pub api_version: String,
    /// When its fields last changed (RFC 3339).
    pub time: String,
    /// The subresource it wrote through (empty for the object itself).
    pub subresource: String,
    /// Its fields.
    pub fields: FieldSet,
}

/// The managers of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagedFields {
    /// The entries, in the order they are kept.
    pub entries: Vec<ManagedEntry>,
}

/// What a write says of itself, for the record.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    /// The manager's name.
    pub manager: &'a str,
    /// The apiVersion the object is written in.
    pub api_version: &'a str,
    /// The subresource written through (empty for the object itself).
    pub subresource: &'a str,
    /// The time of the write (RFC 3339).
    pub now: &'a str,
    /// Whether the resource has a `status` subresource (then writes of the object itself
    /// own no status, and writes of the status only the status).
    pub status_subresource: bool,
}

/// One field another manager owns with another value.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The manager, as upstream names it (`"kubectl" using apps/v1` for updates).
    pub manager: String,
    /// The field's path (`.spec.replicas`).
    pub path: String,
}

/// An apply's conflicts, worded as upstream's 409 says them (grouped by manager, managers
/// sorted).
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    if let [one] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager, one.path
        );
    }
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    let mut lines = Vec::new();
    for manager in managers {
        lines.push(format!("conflicts with {manager}:"));
        for c in conflicts.iter().filter(|c| c.manager == manager) {
            lines.push(format!("- {}", c.path));
        }
    }
    format!("Apply failed with {} conflicts: {}", conflicts.len(), lines.join("\n"))
}

impl ManagedFields {
    /// Reads `metadata.managedFields` of `obj`; `None` when they are not well formed.
    pub fn of(obj: &Value) -> Option<Self> {
        let Some(list) = obj.pointer("/metadata/managedFields") else {
            return Some(Self::default());
        };
        let Value::Array(items) = list else { return None };
        let mut entries = Vec::new();
        for item in items {
            let text = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            if item.as_object().is_some_and(Map::is_empty) {
                continue;
            }
            let fields = match item.get("fieldsV1") {
                Some(v) => FieldSet::from_fields_v1(v)?,
                None => FieldSet::default(),
            };
            entries.push(ManagedEntry {
                manager: text("manager"),
                operation: text("operation"),
                api_version: text("apiVersion"),
                time: text("time"),
                subresource: text("subresource"),
                fields,
            });
        }
        Some(Self { entries })
    }

    /// The entries as `metadata.managedFields` holds them (none: the member is removed).
    pub fn write_into(&self, obj: &mut Value) {
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        if self.entries.is_empty() {
            meta.shift_remove("managedFields");
            return;
        }
        let list: Vec<Value> = self
            .entries
            .iter()
            .map(|e| {
                let mut entry = json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": e.fields.to_fields_v1(),
                });
                if !e.subresource.is_empty() {
                    entry["subresource"] = json!(e.subresource);
                }
                entry
            })
            .collect();
        meta.insert("managedFields".into(), Value::Array(list));
    }

    fn entry_mut(&mut self, writer: &Writer<'_>, operation: &str) -> &mut ManagedEntry {
        let found = self.entries.iter().position(|e| {
            e.manager == writer.manager
                && e.operation == operation
                && e.subresource == writer.subresource
        });
        let index = match found {
            Some(i) => i,
            None => {
                self.entries.push(ManagedEntry {
                    manager: writer.manager.to_string(),
                    operation: operation.to_string(),
                    api_version: writer.api_version.to_string(),
                    time: writer.now.to_string(),
                    subresource: writer.subresource.to_string(),
                    fields: FieldSet::default(),
                });
                self.entries.len() - 1
            }
        };
        &mut self.entries[index]
    }

    /// Records an update from `old` to `new` (both in the writer's version; `old` null for a
    /// create): the writer's `Update` entry gains the fields whose values it changed, which
    /// the other managers lose; removed fields leave every manager.
    pub fn update(&mut self, old: &Value, new: &Value, ty: Types<'_>, writer: &Writer<'_>) {
        let before = fields_of(old, ty);
        let after = fields_of(new, ty);
        let mut removed = before.clone();
        removed.subtract(&after);
        let changed = restrict(changed_nodes(&after, Some(old), Some(new), ty), writer);
        for entry in &mut self.entries {
            entry.fields.subtract(&removed);
            if !(entry.manager == writer.manager
                && entry.operation == "Update"
                && entry.subresource == writer.subresource)
            {
                entry.fields.subtract(&changed);
            }
        }
        if !changed.is_empty() {
            let entry = self.entry_mut(writer, "Update");
            entry.fields.union(&changed);
            entry.time = writer.now.to_string();
            entry.api_version = writer.api_version.to_string();
        }
        self.entries.retain(|e| !e.fields.is_empty());
    }

    /// Applies `config` to `live` as the writer: the merged object, with the managers
    /// updated, or the conflicts when the configuration changes values others own and
    /// `force` is not set.
    pub fn apply(
        &mut self,
        live: &Value,
        config: &Value,
        ty: Types<'_>,
        writer: &Writer<'_>,
        force: bool,
    ) -> Result<Value, Vec<Conflict>> {
        let applied = restrict(fields_of(config, ty), writer);
        let mut conflicts = Vec::new();
        let mut conflicting = FieldSet::default();
        for entry in &self.entries {
            let same = entry.manager == writer.manager
                && entry.operation == "Apply"
                && entry.subresource == writer.subresource;
            if same {
                continue;
            }
            for path in entry.fields.intersection(&applied).paths() {
                let (theirs, mine) = (value_at(live, &path), value_at(config, &path));
                let differs = match (theirs, mine) {
                    (Some(a), Some(b)) if is_granular(a) && is_granular(b) => false,
                    (a, b) => a != b,
                };
                if differs {
                    let mut manager = format!("{:?}", entry.manager);
                    if !entry.subresource.is_empty() {
                        manager.push_str(&format!(" with subresource {:?}", entry.subresource));
                    }
                    if entry.operation != "Apply" {
                        manager.push_str(&format!(" using {}", entry.api_version));
                    }
                    conflicts.push(Conflict { manager, path: display_path(&path) });
                    conflicting.union(&FieldSet::of_path(&path));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(conflicts);
        }
        let mut merged = live.clone();
        let root = Member { ty, list: ListKind::Atomic, atomic_map: false };
        merge(&mut merged, &strip_unowned(config), &root);
        // What this manager applied before and applies no more goes, unless others own it.
        let previous = self
            .entries
            .iter()
            .find(|e| {
                e.manager == writer.manager
                    && e.operation == "Apply"
                    && e.subresource == writer.subresource
            })
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let mut dropped = previous;
        dropped.subtract(&applied);
        for entry in &mut self.entries {
            entry.fields.subtract(&conflicting);
            let same = entry.manager == writer.manager
                && entry.operation == "Apply"
                && entry.subresource == writer.subresource;
            if !same {
                dropped.subtract(&entry.fields);
            }
        }
        for path in dropped.paths() {
            remove_at(&mut merged, &path);
        }
        let entry = self.entry_mut(writer, "Apply");
        if entry.fields != applied {
            entry.time = writer.now.to_string();
        }
        entry.fields = applied;
        entry.api_version = writer.api_version.to_string();
        self.entries.retain(|e| !e.fields.is_empty());
        Ok(merged)
    }
}
/// Whether a value is a map or list whose parts are owned one by one (so two managers'
/// sets may both hold it while its parts differ).
fn is_granular(value: &Value) -> bool {
    matches!(value, Value::Object(map) if !map.is_empty())
}

/// A configuration without the metadata no manager owns.
fn strip_unowned(config: &Value) -> Value {
    let mut config = config.clone();
    if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in UNOWNED_META {
            if *field != "name" && *field != "namespace" {
                meta.shift_remove(*field);
            }
        }
    }
    config
}

/// The part of `set` the writer owns: with a `status` subresource, the status for writes
/// through it and all but the status for writes of the object.
fn restrict(mut set: FieldSet, writer: &Writer<'_>) -> FieldSet {
    if !writer.status_subresource {
        return set;
    }
    let status = PathElement::Field("status".into());
    match writer.subresource {
        "status" => set.members.retain(|element, _| *element == status),
        "" => {
            set.members.remove(&status);
        }
        _ => {}
    }
    set
}

#[cfg(test)]
mod tests;
