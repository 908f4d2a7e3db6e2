//! Access to the standard fields of an object kept as JSON.

use serde_json::{Map, Value};

/// Reads `metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// The object's `metadata.name`.
pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name")
}

/// The object's `metadata.namespace`.
pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace")
}

/// The object's `metadata` as a mutable map, created (and replacing a non-object) if needed.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("object ensured above");
    let meta = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("object ensured above")
}

/// The object's labels as (key, value) pairs; non-string values are skipped.
pub fn labels(obj: &Value) -> impl Iterator<Item = (&str, &str)> {
    obj.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))))
}

/// Follows a dotted path such as `spec.nodeName` through nested objects.
pub fn path<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(obj, |v, part| v.get(part))
}

/// Reads a dotted path as a string (numbers and booleans are rendered).
pub fn path_string(obj: &Value, dotted: &str) -> Option<String> {
    match path(obj, dotted)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Sets a dotted path, creating intermediate objects.
pub fn set_path(obj: &mut Value, dotted: &str, value: Value) {
    let mut cur = obj;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let map = cur.as_object_mut().expect("object ensured above");
        if parts.peek().is_none() {
            map.insert(part.to_string(), value);
            return;
        }
        cur = map.entry(part).or_insert_with(|| Value::Object(Map::new()));
    }
}

/// Sets a dotted path only when it is absent or null (the shape of defaulting).
pub fn default_path(obj: &mut Value, dotted: &str, value: Value) {
    if path(obj, dotted).is_none_or(Value::is_null) {
        set_path(obj, dotted, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_path_fills_only_missing_fields() {
        let mut pod = json!({"spec": {"restartPolicy": "Never"}});
        default_path(&mut pod, "spec.restartPolicy", json!("Always"));
        default_path(&mut pod, "spec.dnsPolicy", json!("ClusterFirst"));
        assert_eq!(pod, json!({"spec": {"restartPolicy": "Never", "dnsPolicy": "ClusterFirst"}}));
    }
}
