//! Strategic merge patch, after upstream's `apimachinery/pkg/util/strategicpatch`.
//!
//! A strategic merge patch is a JSON merge patch whose lists can merge:
//!
//! - maps merge recursively and `null` removes a key;
//! - lists of objects with a merge key ([`ListStrategy::MergeByKey`]) merge item by item,
//!   matching items on that key; items of the patch that match nothing are appended;
//! - lists of primitives with the merge strategy ([`ListStrategy::MergePrimitives`]) merge
//!   as sets;
//! - every other list is replaced whole.
//!
//! Directives change the defaults:
//!
//! - `$patch: replace` in a map replaces the map instead of merging it; as an item of a
//!   merging list, `{"$patch": "replace"}` replaces the list by the other items;
//! - `$patch: delete` in a map removes it (a nested map's key is removed; the whole
//!   object becomes `{}`); as an item of a merging list, `{"name": "x", "$patch": "delete"}`
//!   removes the items whose merge key matches;
//! - `$patch: merge` in a map is the default behaviour made explicit;
//! - `$deleteFromPrimitiveList/<field>: [values]` removes values from a primitive list;
//! - `$setElementOrder/<field>: [items]` orders a merged list: the listed items (by merge
//!   key, or by value for primitives) come in that order, and items only the server had keep
//!   their place relative to them, as `kubectl apply` expects;
//! - `$retainKeys: [keys]` clears every key of the map not listed (the `retainKeys`
//!   strategy of volumes and of a Deployment's `strategy`), after checking that the patch
//!   sets no other key.
//!
//! Merge keys come from [`merge_keys`](super::merge_keys). Where the table says a list is
//! atomic but the patch carries merge directives for it (a `$setElementOrder` of single-key
//! objects or primitives, or `{"<key>": …, "$patch": "delete"}` items), the list is merged
//! with the key the directives use, so a client that knows more merge keys than our table
//! still gets the merge it asked for.
//!
//! Departures from upstream, all where upstream keeps directive keys or leaves the value in
//! a shape its Go structs would drop: patch values for keys the object lacks have their
//! directives processed (against nothing) instead of being copied verbatim, a
//! `$deleteFromPrimitiveList` for a missing list is a no-op, and `$patch: merge` in a map
//! is accepted.

use serde_json::{Map, Value};

use super::PatchError;
use super::merge_keys::{ListStrategy, TypeRef};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

const BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const BAD_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";

/// Applies the strategic merge patch `patch` (an object) to a copy of `original`, whose
/// top-level type is `ty` (see [`TypeRef::root`]).
pub fn merge(original: &Value, patch: &Value, ty: TypeRef) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::NotAnObject);
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    Ok(match merge_map(original, patch.clone(), ty)? {
        Merged::Keep(map) => Value::Object(map),
        Merged::Delete => Value::Object(Map::new()),
    })
}

/// What merging a map produced.
enum Merged {
    /// The merged map.
    Keep(Map<String, Value>),
    /// `$patch: delete`: the map is to be removed.
    Delete,
}

/// How a list merges, with the merge key owned (it may come from the patch itself).
#[derive(Debug, Clone, PartialEq)]
enum Strategy {
    Atomic,
    Primitives,
    ByKey(String),
}

impl Strategy {
    fn key(&self) -> Option<&str> {
        match self {
            Strategy::ByKey(key) => Some(key),
            _ => None,
        }
    }
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    ty: TypeRef,
) -> Result<Merged, PatchError> {
    if let Some(directive) = patch.shift_remove(DIRECTIVE) {
        match directive.as_str() {
            Some("replace") => return merge_map(Map::new(), patch, ty),
            Some("delete") => return Ok(Merged::Delete),
            Some("merge") => {}
            _ => return Err(bad_patch_type(&directive, &patch)),
        }
    }

    apply_retain_keys(&mut original, &mut patch)?;
    apply_set_element_order(&mut original, &mut patch, ty)?;

    let mut deletions = Vec::new();
    for (key, patch_value) in patch {
        if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((key, patch_value));
            continue;
        }
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let meta = ty.field(&key);
        let slot = original.get_mut(&key);
        match (slot, patch_value) {
            (Some(Value::Object(current)), Value::Object(patch_map)) => {
                match merge_map(std::mem::take(current), patch_map, meta.ty)? {
                    Merged::Keep(map) => *current = map,
                    Merged::Delete => {
                        original.shift_remove(&key);
                    }
                }
            }
            (Some(Value::Array(current)), Value::Array(patch_list)) => {
                let strategy = strategy_for(meta.list, None, &patch_list);
                *current = merge_list(std::mem::take(current), patch_list, &strategy, meta.ty)?;
            }
            // Equal scalars (`80` and `80.0`) leave the original's spelling alone.
            (Some(current), patch_value) if same(current, &patch_value) => {}
            (_, patch_value) => match fresh_value(patch_value, meta.list, meta.ty)? {
                Some(value) => {
                    original.insert(key, value);
                }
                None => {
                    original.shift_remove(&key);
                }
            },
        }
    }

    for (key, values) in deletions {
        let field = directive_field(&key, DELETE_FROM_PRIMITIVE_LIST, BAD_PRIMITIVE_LIST)?;
        let Value::Array(values) = values else {
            return Err(PatchError::BadDirective(BAD_PRIMITIVE_LIST.into()));
        };
        if let Some(Value::Array(list)) = original.get_mut(field) {
            list.retain(|item| !values.iter().any(|v| same(item, v)));
        }
    }
    Ok(Merged::Keep(original))
}

/// A patch value for a key the original lacks (or holds with another JSON type): its
/// directives are processed against nothing. `None` when it deletes itself.
fn fresh_value(value: Value, list: ListStrategy, ty: TypeRef) -> Result<Option<Value>, PatchError> {
    Ok(match value {
        Value::Object(map) => match merge_map(Map::new(), map, ty)? {
            Merged::Keep(map) => Some(Value::Object(map)),
            Merged::Delete => None,
        },
        Value::Array(items) => {
            let strategy = strategy_for(list, None, &items);
            Some(Value::Array(merge_list(Vec::new(), items, &strategy, ty)?))
        }
        scalar => Some(scalar),
    })
}

/// `$retainKeys`: clears the keys of `original` that the list does not name.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::BadDirective(BAD_RETAIN_KEYS.into()));
    };
    let retained = |key: &str| retain.iter().any(|k| k.as_str() == Some(key));
    let stray = patch.iter().any(|(key, value)| {
        !value.is_null()
            && !key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            && !key.starts_with(SET_ELEMENT_ORDER)
            && !retained(key)
    });
    if stray {
        return Err(PatchError::BadDirective(BAD_RETAIN_KEYS.into()));
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

/// `$setElementOrder/<field>`: merges the field's list (taking it out of `patch`) and puts
/// the result in the requested order.
fn apply_set_element_order(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    ty: TypeRef,
) -> Result<(), PatchError> {
    let directives: Vec<String> =
        patch.keys().filter(|k| k.starts_with(SET_ELEMENT_ORDER)).cloned().collect();
    for directive in directives {
        let Some(order) = patch.shift_remove(&directive) else {
            continue;
        };
        let field = directive_field(&directive, SET_ELEMENT_ORDER, BAD_SET_ELEMENT_ORDER)?;
        let Value::Array(order) = order else {
            return Err(PatchError::BadDirective(BAD_SET_ELEMENT_ORDER.into()));
        };
        let current = match original.get(field) {
            Some(Value::Array(list)) => Some(list.clone()),
            None | Some(Value::Null) => None,
            Some(other) => return Err(bad_arg_type(other)),
        };
        let patch_list = match patch.shift_remove(field) {
            Some(Value::Array(list)) => Some(list),
            None => None,
            Some(other) => return Err(bad_arg_type(&other)),
        };
        let meta = ty.field(field);
        let strategy = strategy_for(meta.list, Some(&order), patch_list.as_deref().unwrap_or(&[]));
        if let Some(list) = &patch_list {
            check_order(list, &order, strategy.key(), &directive)?;
        }
        let server = current.clone().unwrap_or_default();
        let merged = match (current, patch_list) {
            (None, None) => continue,
            (Some(current), None) => current,
            (current, Some(list)) => {
                merge_list(current.unwrap_or_default(), list, &strategy, meta.ty)?
            }
        };
        let key = strategy.key();
        let (listed, server_only): (Vec<Value>, Vec<Value>) =
            merged.into_iter().partition(|item| position(&order, item, key).is_some());
        let ordered = interleave(listed, server_only, &order, &server, key);
        original.insert(field.to_string(), Value::Array(ordered));
    }
    Ok(())
}

/// Upstream's check that the patch's list is in the order `$setElementOrder` gives.
fn check_order(
    patch: &[Value],
    order: &[Value],
    key: Option<&str>,
    directive: &str,
) -> Result<(), PatchError> {
    let items: Vec<&Value> = patch.iter().filter(|item| item.get(DIRECTIVE).is_none()).collect();
    let (mut p, mut o) = (0, 0);
    while p < items.len() && o < order.len() {
        if same_identity(items[p], &order[o], key) {
            p += 1;
        }
        o += 1;
    }
    if p < items.len() {
        return Err(PatchError::BadDirective(format!(
            "The order in patch list:\n{}\n doesn't match {} list:\n{}\n",
            Value::Array(patch.to_vec()),
            directive.split('/').next().unwrap_or(directive),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

/// The strategy of a list: the table's, or the one the patch's directives imply when the
/// table says atomic.
fn strategy_for(table: ListStrategy, order: Option<&[Value]>, patch: &[Value]) -> Strategy {
    match table {
        ListStrategy::MergeByKey(key) => return Strategy::ByKey(key.to_string()),
        ListStrategy::MergePrimitives => return Strategy::Primitives,
        ListStrategy::Atomic => {}
    }
    if let Some(order) = order.filter(|o| !o.is_empty()) {
        if order.iter().all(|item| !item.is_object() && !item.is_array()) {
            return Strategy::Primitives;
        }
        let single_key = |item: &Value| {
            item.as_object().filter(|m| m.len() == 1).and_then(|m| m.keys().next().cloned())
        };
        if let Some(key) = single_key(&order[0])
            && order.iter().all(|item| single_key(item).as_deref() == Some(key.as_str()))
        {
            return Strategy::ByKey(key);
        }
    }
    let deleted_key = patch.iter().find_map(|item| {
        let map = item.as_object()?;
        if map.get(DIRECTIVE)?.as_str() != Some("delete") || map.len() != 2 {
            return None;
        }
        map.keys().find(|k| *k != DIRECTIVE).cloned()
    });
    match deleted_key {
        Some(key) => Strategy::ByKey(key),
        None => Strategy::Atomic,
    }
}

/// Merges `patch` into `original` with `strategy`; `ty` is the type of the items.
fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    strategy: &Strategy,
    ty: TypeRef,
) -> Result<Vec<Value>, PatchError> {
    let key = match strategy {
        Strategy::Atomic => return fresh_items(patch, ty),
        Strategy::Primitives => None,
        Strategy::ByKey(key) => Some(key.as_str()),
    };
    if original.is_empty() && patch.is_empty() {
        return Ok(original);
    }
    if !element_kind(&original, &patch)? {
        // Primitives merge as a set, whatever the key.
        let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
        for item in original.iter().chain(&patch) {
            if !merged.iter().any(|m| same(m, item)) {
                merged.push(item.clone());
            }
        }
        let (listed, server_only): (Vec<Value>, Vec<Value>) =
            merged.into_iter().partition(|item| position(&patch, item, None).is_some());
        return Ok(interleave(listed, server_only, &patch, &original, None));
    }
    let Some(key) = key else {
        return Err(PatchError::Merge("cannot merge lists without merge key for type map".into()));
    };

    let mut original = original;
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                let Some(value) = item.get(key) else {
                    return Err(no_merge_key(&item, key));
                };
                original.retain(|o| !o.get(key).is_some_and(|v| same(v, value)));
            }
            Some("replace") => replace = true,
            Some("merge") => {
                return Err(PatchError::Merge(
                    "merging lists cannot yet be specified in the patch".into(),
                ));
            }
            _ => {
                let map = item.as_object().cloned().unwrap_or_default();
                return Err(bad_patch_type(directive, &map));
            }
        }
    }
    if replace {
        return fresh_items(plain, ty);
    }

    let server = original.clone();
    let mut merged = original;
    for item in &plain {
        let Some(value) = item.get(key) else {
            return Err(no_merge_key(item, key));
        };
        let map = item.as_object().cloned().unwrap_or_default();
        let found = merged.iter().position(|o| o.get(key).is_some_and(|v| same(v, value)));
        match found {
            Some(index) => {
                let current = match &mut merged[index] {
                    Value::Object(current) => std::mem::take(current),
                    _ => Map::new(),
                };
                match merge_map(current, map, ty)? {
                    Merged::Keep(map) => merged[index] = Value::Object(map),
                    Merged::Delete => {
                        merged.remove(index);
                    }
                }
            }
            None => {
                if let Merged::Keep(map) = merge_map(Map::new(), map, ty)? {
                    merged.push(Value::Object(map));
                }
            }
        }
    }
    let (listed, server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|item| position(&plain, item, Some(key)).is_some());
    Ok(interleave(listed, server_only, &plain, &server, Some(key)))
}

/// The items of a list that replaces what was there, with their directives processed;
/// bare directive items (`{"$patch": "replace"}`) and deleted items are dropped.
fn fresh_items(items: Vec<Value>, ty: TypeRef) -> Result<Vec<Value>, PatchError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::Object(map) => {
                if map.len() == 1 && map.contains_key(DIRECTIVE) {
                    continue;
                }
                if let Merged::Keep(map) = merge_map(Map::new(), map, ty)? {
                    out.push(Value::Object(map));
                }
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Whether the items of the lists are objects (`true`) or primitives (`false`); an error
/// for lists of lists and for mixed lists, as upstream.
fn element_kind(original: &[Value], patch: &[Value]) -> Result<bool, PatchError> {
    fn kind(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Number(_) => 2,
            Value::String(_) => 3,
            Value::Array(_) => 4,
            Value::Object(_) => 5,
        }
    }
    let mut items = original.iter().chain(patch);
    let Some(first) = items.next() else {
        return Ok(false);
    };
    if first.is_array() {
        return Err(PatchError::Merge("lists of lists are not supported".into()));
    }
    if items.any(|item| kind(item) != kind(first)) {
        return Err(PatchError::Merge(format!(
            "list element types are not identical: [{} {}]",
            Value::Array(original.to_vec()),
            Value::Array(patch.to_vec())
        )));
    }
    Ok(first.is_object())
}

/// Upstream's order of a merged list: `listed` items (those the patch or
/// `$setElementOrder` names) in the order of `order`, and `server_only` items in the order
/// of `server`, interleaved so that a server-only item stays before a listed item it
/// preceded on the server.
fn interleave(
    mut listed: Vec<Value>,
    mut server_only: Vec<Value>,
    order: &[Value],
    server: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    listed.sort_by_key(|item| position(order, item, key).unwrap_or(usize::MAX));
    server_only.sort_by_key(|item| position(server, item, key).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(listed.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = listed.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => {
                matches!((position(server, l, key), position(server, r, key)), (Some(li), Some(ri)) if li < ri)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

/// The index in `list` of the item with the same identity as `item`.
fn position(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    list.iter().position(|x| same_identity(x, item, key))
}

/// Whether two items are the same list entry: equal merge key values, or equal values for
/// primitives.
fn same_identity(a: &Value, b: &Value, key: Option<&str>) -> bool {
    match key {
        Some(key) => match (a.get(key), b.get(key)) {
            (Some(x), Some(y)) => same(x, y),
            _ => false,
        },
        None => same(a, b),
    }
}

/// JSON equality where numbers compare by value (`80` equals `80.0`), as Go's decoded
/// `float64`s do.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// The field a `<prefix>/<field>` directive key names.
fn directive_field<'a>(key: &'a str, prefix: &str, error: &str) -> Result<&'a str, PatchError> {
    match key.split_once('/') {
        Some((p, field)) if p == prefix => Ok(field),
        _ => Err(PatchError::BadDirective(error.into())),
    }
}

fn bad_patch_type(directive: &Value, map: &Map<String, Value>) -> PatchError {
    let shown = directive.as_str().map_or_else(|| directive.to_string(), str::to_string);
    PatchError::Merge(format!("unknown patch type: {shown} in map: {}", Value::Object(map.clone())))
}

fn no_merge_key(item: &Value, key: &str) -> PatchError {
    PatchError::Merge(format!("map: {item} does not contain declared merge key: {key}"))
}

fn bad_arg_type(value: &Value) -> PatchError {
    let kind = match value {
        Value::Null => "nil",
        Value::Bool(_) => "bool",
        Value::Number(_) => "float64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    };
    PatchError::Merge(format!("expected a []interface {{}}, but received a {kind}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "old"}},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {
                        "containers": [
                            {"name": "web", "image": "nginx:1.24",
                             "env": [{"name": "A", "value": "1"}, {"name": "OLD", "value": "x"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                            {"name": "sidecar", "image": "envoy"}
                        ],
                        "volumes": [{"name": "data", "emptyDir": {}}]
                    }
                }
            }
        })
    }

    fn patch_deployment(patch: Value) -> Result<Value, PatchError> {
        merge(&deployment(), &patch, TypeRef::root("apps/v1", "Deployment"))
    }

    fn pod_spec(obj: &Value) -> &Value {
        &obj["spec"]["template"]["spec"]
    }

    fn names(list: &Value) -> Vec<&str> {
        list.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn kubectl_apply_patches_merge_into_deployments() {
        type Check = fn(&Value);
        let cases: Vec<(&str, Value, Check)> = vec![
            (
                "changing an image keeps the rest of the container",
                json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "new"}},
                    "spec": {"template": {"spec": {
                        "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                        "containers": [{"image": "nginx:1.25", "name": "web"}]}}}}),
                |out| {
                    let web = &pod_spec(out)["containers"][0];
                    assert_eq!(web["image"], "nginx:1.25");
                    assert_eq!(web["env"].as_array().unwrap().len(), 2);
                    assert_eq!(web["ports"][0]["containerPort"], 80);
                    assert_eq!(names(&pod_spec(out)["containers"]), ["web", "sidecar"]);
                    assert_eq!(
                        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
                        "new"
                    );
                },
            ),
            (
                "an env entry is removed with a delete directive",
                json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                    "containers": [{"$setElementOrder/env": [{"name": "A"}],
                        "env": [{"$patch": "delete", "name": "OLD"}], "name": "web"}]}}}}),
                |out| {
                    let web = &pod_spec(out)["containers"][0];
                    assert_eq!(web["env"], json!([{"name": "A", "value": "1"}]));
                    assert_eq!(web["image"], "nginx:1.24");
                },
            ),
            (
                "a container is removed with a delete directive",
                json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "web"}],
                    "containers": [{"$patch": "delete", "name": "sidecar"}]}}}}),
                |out| assert_eq!(names(&pod_spec(out)["containers"]), ["web"]),
            ),
            (
                "set element order places a new container first",
                json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "init"}, {"name": "web"}, {"name": "sidecar"}],
                    "containers": [{"name": "init", "image": "busybox"}]}}}}),
                |out| assert_eq!(names(&pod_spec(out)["containers"]), ["init", "web", "sidecar"]),
            ),
            (
                "set element order alone reorders a list",
                json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "web"}]}}}}),
                |out| assert_eq!(names(&pod_spec(out)["containers"]), ["sidecar", "web"]),
            ),
            (
                "an env entry is added and ordered",
                json!({"spec": {"template": {"spec": {
                    "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
                    "containers": [{"name": "web",
                        "$setElementOrder/env": [{"name": "A"}, {"name": "B"}, {"name": "OLD"}],
                        "env": [{"name": "B", "value": "2"}]}]}}}}),
                |out| {
                    let env = &pod_spec(out)["containers"][0]["env"];
                    assert_eq!(names(env), ["A", "B", "OLD"]);
                },
            ),
            (
                "a replica count change leaves the template alone",
                json!({"spec": {"replicas": 5}}),
                |out| {
                    assert_eq!(out["spec"]["replicas"], 5);
                    assert_eq!(pod_spec(out), pod_spec(&deployment()));
                },
            ),
            (
                "a retained strategy drops the other keys",
                json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate", "rollingUpdate": null}}}),
                |out| assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"})),
            ),
            (
                "a retained volume source replaces the old source",
                json!({"spec": {"template": {"spec": {"volumes": [
                    {"name": "data", "hostPath": {"path": "/x"}, "$retainKeys": ["hostPath", "name"]}]}}}}),
                |out| {
                    assert_eq!(
                        pod_spec(out)["volumes"],
                        json!([{"name": "data", "hostPath": {"path": "/x"}}])
                    )
                },
            ),
            (
                "a map is deleted with a delete directive",
                json!({"spec": {"strategy": {"$patch": "delete"}}}),
                |out| assert!(out["spec"].get("strategy").is_none()),
            ),
            (
                "a map is replaced with a replace directive",
                json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}),
                |out| assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"})),
            ),
            (
                "a merge list is replaced with a replace item",
                json!({"spec": {"template": {"spec": {"containers": [
                    {"name": "only", "image": "busybox"}, {"$patch": "replace"}]}}}}),
                |out| {
                    assert_eq!(
                        pod_spec(out)["containers"],
                        json!([{"name": "only", "image": "busybox"}])
                    )
                },
            ),
            (
                "an explicit merge directive on a map merges",
                json!({"spec": {"strategy": {"$patch": "merge", "type": "Recreate"}}}),
                |out| {
                    assert_eq!(out["spec"]["strategy"]["type"], "Recreate");
                    assert_eq!(out["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1);
                },
            ),
            (
                "directives in values new to the object are processed",
                json!({"spec": {"template": {"spec": {
                    "affinity": {"$patch": "replace", "nodeAffinity": {}},
                    "initContainers": [{"name": "i", "env": [{"name": "X", "$patch": "delete"}]}],
                    "nodeSelector": {"$patch": "delete"}}}}}),
                |out| {
                    let spec = pod_spec(out);
                    assert_eq!(spec["affinity"], json!({"nodeAffinity": {}}));
                    assert_eq!(spec["initContainers"], json!([{"name": "i", "env": []}]));
                    assert!(spec.get("nodeSelector").is_none());
                },
            ),
        ];
        for (name, patch, check) in cases {
            let out = patch_deployment(patch).unwrap_or_else(|e| panic!("{name}: {e}"));
            let text = out.to_string();
            assert!(!text.contains("\"$"), "{name}: directives left in {text}");
            let guard = std::panic::catch_unwind(|| check(&out));
            assert!(guard.is_ok(), "{name}: {out:#}");
        }
    }

    #[test]
    fn lists_merge_by_their_upstream_keys() {
        let cases = [
            (
                "service ports merge on port",
                "v1",
                "Service",
                json!({"spec": {"ports": [{"port": 80, "targetPort": 8080, "name": "http"}, {"port": 443, "name": "https"}]}}),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
                json!({"spec": {"ports": [{"port": 80, "targetPort": 9090, "name": "http"}, {"port": 443, "name": "https"}]}}),
            ),
            (
                "a new service port goes before server-only ports without an order",
                "v1",
                "Service",
                json!({"spec": {"ports": [{"port": 80}, {"port": 443}]}}),
                json!({"spec": {"ports": [{"port": 8443}]}}),
                json!({"spec": {"ports": [{"port": 8443}, {"port": 80}, {"port": 443}]}}),
            ),
            (
                "merge keys compare numbers by value",
                "v1",
                "Service",
                json!({"spec": {"ports": [{"port": 80, "name": "http"}]}}),
                json!({"spec": {"ports": [{"port": 80.0, "protocol": "TCP"}]}}),
                json!({"spec": {"ports": [{"port": 80, "name": "http", "protocol": "TCP"}]}}),
            ),
            (
                "finalizers merge as a set",
                "v1",
                "ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["b", "c"]}}),
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            ),
            (
                "finalizers are removed with a deletion list",
                "v1",
                "ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
                json!({"metadata": {"finalizers": ["a", "c"]}}),
            ),
            (
                "finalizers follow set element order",
                "v1",
                "ConfigMap",
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"$setElementOrder/finalizers": ["b", "c", "a"], "finalizers": ["c"]}}),
                json!({"metadata": {"finalizers": ["b", "c", "a"]}}),
            ),
            (
                "a deletion list for a missing list does nothing",
                "v1",
                "ConfigMap",
                json!({"metadata": {"name": "x"}}),
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
                json!({"metadata": {"name": "x"}}),
            ),
            (
                "null removes a map key",
                "v1",
                "ConfigMap",
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "data": {"k": "v"}}),
                json!({"metadata": {"labels": {"a": null}}, "data": null}),
                json!({"metadata": {"labels": {"b": "2"}}}),
            ),
            (
                "owner references merge on uid",
                "v1",
                "Pod",
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "rs-a"}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "1", "controller": true}]}}),
                json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "rs-a", "controller": true}]}}),
            ),
            (
                "pod conditions merge on type",
                "v1",
                "Pod",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}}),
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "True"}]}}),
            ),
            (
                "node addresses merge on type",
                "v1",
                "Node",
                json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n"}]}}),
                json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}]}}),
                json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}, {"type": "Hostname", "address": "n"}]}}),
            ),
            (
                "tolerations are atomic",
                "v1",
                "Pod",
                json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}),
                json!({"spec": {"tolerations": [{"key": "c"}]}}),
                json!({"spec": {"tolerations": [{"key": "c"}]}}),
            ),
            (
                "endpoints subsets are atomic",
                "v1",
                "Endpoints",
                json!({"subsets": [{"addresses": [{"ip": "1.1.1.1"}]}]}),
                json!({"subsets": [{"addresses": [{"ip": "2.2.2.2"}]}]}),
                json!({"subsets": [{"addresses": [{"ip": "2.2.2.2"}]}]}),
            ),
            (
                "custom resource lists are replaced",
                "example.com/v1",
                "Widget",
                json!({"spec": {"items": [{"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {"items": [{"name": "a", "x": 1}]}}),
                json!({"spec": {"items": [{"name": "a", "x": 1}]}}),
            ),
            (
                "a set element order on an unknown list merges on its key",
                "example.com/v1",
                "Widget",
                json!({"spec": {"items": [{"name": "a", "v": 1}, {"name": "b"}]}}),
                json!({"spec": {"$setElementOrder/items": [{"name": "b"}, {"name": "a"}], "items": [{"name": "a", "v": 2}]}}),
                json!({"spec": {"items": [{"name": "b"}, {"name": "a", "v": 2}]}}),
            ),
            (
                "a delete item on an unknown list merges on its key",
                "example.com/v1",
                "Widget",
                json!({"spec": {"items": [{"id": "a"}, {"id": "b"}]}}),
                json!({"spec": {"items": [{"id": "a", "$patch": "delete"}]}}),
                json!({"spec": {"items": [{"id": "b"}]}}),
            ),
            (
                "a scalar replaces a map",
                "v1",
                "ConfigMap",
                json!({"data": {"a": "b"}}),
                json!({"data": "x"}),
                json!({"data": "x"}),
            ),
            (
                "cronjob containers are reached through the job template",
                "batch/v1",
                "CronJob",
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b"}]}}}}}}),
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "2"}]}}}}}}),
                json!({"spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "2"}, {"name": "b"}]}}}}}}),
            ),
        ];
        for (name, api_version, kind, original, patch, want) in cases {
            let out = merge(&original, &patch, TypeRef::root(api_version, kind))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(out, want, "{name}");
        }
    }

    #[test]
    fn server_only_items_keep_their_place() {
        let original =
            json!({"spec": {"containers": [{"name": "a"}, {"name": "injected"}, {"name": "b"}]}});
        let patch = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
            "containers": [{"name": "c"}]}});
        let out = merge(&original, &patch, TypeRef::root("v1", "Pod")).unwrap();
        assert_eq!(names(&out["spec"]["containers"]), ["a", "injected", "b", "c"]);
    }

    #[test]
    fn the_whole_object_can_be_replaced_or_deleted() {
        let original = json!({"a": 1, "b": {"c": 2}});
        let ty = TypeRef::UNKNOWN;
        let replaced = merge(&original, &json!({"$patch": "replace", "x": 1}), ty).unwrap();
        assert_eq!(replaced, json!({"x": 1}));
        let deleted = merge(&original, &json!({"$patch": "delete"}), ty).unwrap();
        assert_eq!(deleted, json!({}));
    }

    #[test]
    fn malformed_patches_have_upstream_messages() {
        let pod = json!({"spec": {"containers": [{"name": "a"}], "tolerations": []},
            "metadata": {"finalizers": ["x"], "labels": {"a": "b"}}});
        let cases = [
            (
                "a merge item without its key is refused",
                json!({"spec": {"containers": [{"image": "x"}]}}),
                "map: {\"image\":\"x\"} does not contain declared merge key: name",
            ),
            (
                "a delete item without its key is refused",
                json!({"spec": {"containers": [{"$patch": "delete"}]}}),
                "map: {\"$patch\":\"delete\"} does not contain declared merge key: name",
            ),
            (
                "an unknown map directive is refused",
                json!({"metadata": {"labels": {"$patch": "frob"}}}),
                "unknown patch type: frob in map: {}",
            ),
            (
                "a merge directive in a list is refused",
                json!({"spec": {"containers": [{"$patch": "merge"}]}}),
                "merging lists cannot yet be specified in the patch",
            ),
            (
                "mixed element types are refused",
                json!({"metadata": {"finalizers": [["y"]]}}),
                "list element types are not identical: [[\"x\"] [[\"y\"]]]",
            ),
            (
                "a retain keys list must name the patched keys",
                json!({"spec": {"$retainKeys": ["containers"], "nodeName": "n"}}),
                "invalid patch format of retainKeys",
            ),
            (
                "a retain keys directive must be a list",
                json!({"spec": {"$retainKeys": "containers"}}),
                "invalid patch format of retainKeys",
            ),
            (
                "a deletion list must be a list",
                json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "x"}}),
                "invalid patch format of primitive list",
            ),
            (
                "a deletion list must name its field",
                json!({"metadata": {"$deleteFromPrimitiveList": ["x"]}}),
                "invalid patch format of primitive list",
            ),
            (
                "a set element order must be a list",
                json!({"spec": {"$setElementOrder/containers": {"name": "a"}}}),
                "invalid patch format of setElementOrder list",
            ),
            (
                "a set element order must list the patched items in order",
                json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                    "containers": [{"name": "b"}, {"name": "a"}]}}),
                "The order in patch list:\n[{\"name\":\"b\"},{\"name\":\"a\"}]\n doesn't match $setElementOrder list:\n[{\"name\":\"a\"},{\"name\":\"b\"}]\n",
            ),
        ];
        for (name, patch, want) in cases {
            let err = merge(&pod, &patch, TypeRef::root("v1", "Pod")).unwrap_err();
            assert_eq!(err.to_string(), want, "{name}");
        }
        let err = merge(&pod, &json!([1]), TypeRef::root("v1", "Pod")).unwrap_err();
        assert_eq!(err, PatchError::NotAnObject, "a patch that is not an object is refused");
    }

    #[test]
    fn the_original_is_left_untouched() {
        let original = deployment();
        let patch = json!({"spec": {"replicas": 9, "template": {"spec": {"containers": [{"name": "web", "image": "x"}]}}}});
        let _ = merge(&original, &patch, TypeRef::root("apps/v1", "Deployment")).unwrap();
        assert_eq!(original, deployment());
    }
}
