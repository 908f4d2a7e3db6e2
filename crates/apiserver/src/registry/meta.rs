//! The metadata rules every resource shares (upstream's `rest.BeforeCreate`/`BeforeUpdate` and
//! `ValidateObjectMeta`), as plain functions.

use chrono::{DateTime, SecondsFormat, Utc};
use krust_api::ResourceInfo;
use krust_api::object::{meta_str, metadata_mut};
use krust_api::validation::{FieldError, dns1123_subdomain};
use serde_json::{Map, Value};

/// Characters of generated name suffixes (no vowels, no look-alikes), as upstream.
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Formats a time as Kubernetes does (RFC 3339, seconds, `Z`).
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A random 5-character suffix for `generateName`.
pub fn name_suffix() -> String {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    bytes[..5]
        .iter()
        .map(|b| SUFFIX_ALPHABET[*b as usize % SUFFIX_ALPHABET.len()] as char)
        .collect()
}

/// Fills the system fields of a new object: name from `generateName`, uid, creation time,
/// generation; clears what clients may not set.
pub fn prepare_create(info: &ResourceInfo, obj: &mut Value, now: DateTime<Utc>) {
    let meta = metadata_mut(obj);
    let has_name = meta.get("name").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
    if !has_name && let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
        let name = format!("{prefix}{}", name_suffix());
        meta.insert("name".into(), Value::String(name));
    }
    meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), Value::String(timestamp(now)));
    for field in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        meta.remove(field);
    }
    if info.strategy.tracks_generation() {
        meta.insert("generation".into(), Value::from(1));
    } else {
        meta.remove("generation");
    }
}

/// Carries the fields clients may not change from the stored object to the new one, and
/// advances the generation when anything but metadata and status changed (never on a
/// `status` update: `bump` false).
pub fn prepare_update(info: &ResourceInfo, new: &mut Value, old: &Value, bump: bool) {
    let old_meta = old.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
    let meta = metadata_mut(new);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "namespace",
        "name",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    meta.remove("selfLink");
    meta.remove("managedFields");
    let annotations = |o: &Value| o.pointer("/metadata/annotations").cloned();
    let with_status = info.strategy.generation_counts_status();
    let changed = spec_of(new, with_status) != spec_of(old, with_status)
        || (info.strategy.generation_follows_annotations() && annotations(new) != annotations(old));
    if bump && info.strategy.tracks_generation() && changed {
        let generation = old_meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
        metadata_mut(new).insert("generation".into(), Value::from(generation));
    }
}

/// Everything but `metadata`, `apiVersion`, `kind` and (unless `with_status`) `status`.
fn spec_of(obj: &Value, with_status: bool) -> Map<String, Value> {
    let mut map = obj.as_object().cloned().unwrap_or_default();
    for field in ["metadata", "apiVersion", "kind"] {
        map.remove(field);
    }
    if !with_status {
        map.remove("status");
    }
    map
}

/// Validates what an update may not change in metadata: no new finalizers once the object is
/// being deleted.
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    if old.pointer("/metadata/deletionTimestamp").is_none() {
        return Vec::new();
    }
    let list = |v: &Value| -> Vec<Value> {
        v.pointer("/metadata/finalizers").and_then(Value::as_array).cloned().unwrap_or_default()
    };
    let before = list(old);
    if list(new).iter().any(|f| !before.contains(f)) {
        return vec![FieldError::forbidden(
            "metadata.finalizers",
            "no new finalizers can be added if the object is being deleted",
        )];
    }
    Vec::new()
}

/// Validates the metadata of an object (name, namespace, labels, annotations).
pub fn validate(info: &ResourceInfo, obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match meta_str(obj, "name") {
        None | Some("") => {
            if meta_str(obj, "generateName").is_none_or(str::is_empty) {
                errors.push(
                    FieldError::required("metadata.name")
                        .with_detail("name or generateName is required"),
                );
            }
        }
        Some(name) => {
            for problem in info.strategy.name_rule().check(name) {
                errors.push(FieldError::invalid("metadata.name", Value::from(name), problem));
            }
        }
    }
    if let Some(meta) = obj.get("metadata") {
        if let Some(labels) = meta.get("labels") {
            errors.extend(validate_labels(labels));
        }
        if let Some(annotations) = meta.get("annotations") {
            errors.extend(validate_annotations(annotations));
        }
    }
    errors
}

fn qualified_name_problems(key: &str) -> Vec<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut problems = Vec::new();
    if let Some(prefix) = prefix {
        problems.extend(dns1123_subdomain(prefix).into_iter().map(|p| format!("prefix part {p}")));
    }
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if !valid {
        problems.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into());
    }
    problems
}

fn validate_labels(labels: &Value) -> Vec<FieldError> {
    let Some(map) = labels.as_object() else {
        return vec![FieldError::invalid(
            "metadata.labels",
            labels.clone(),
            "must be a map of strings",
        )];
    };
    let mut errors = Vec::new();
    for (key, value) in map {
        for problem in qualified_name_problems(key) {
            errors.push(FieldError::invalid("metadata.labels", Value::from(key.as_str()), problem));
        }
        let Some(text) = value.as_str() else {
            errors.push(FieldError::invalid("metadata.labels", value.clone(), "must be a string"));
            continue;
        };
        let valid = text.is_empty()
            || (text.len() <= 63
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && text.as_bytes()[0].is_ascii_alphanumeric()
                && text.as_bytes()[text.len() - 1].is_ascii_alphanumeric());
        if !valid {
            errors.push(FieldError::invalid("metadata.labels", Value::from(text), "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"));
        }
    }
    errors
}

/// Upstream's limit on the total size of annotations.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

fn validate_annotations(annotations: &Value) -> Vec<FieldError> {
    let Some(map) = annotations.as_object() else {
        return vec![FieldError::invalid(
            "metadata.annotations",
            annotations.clone(),
            "must be a map of strings",
        )];
    };
    let mut errors = Vec::new();
    let mut total = 0;
    for (key, value) in map {
        for problem in qualified_name_problems(&key.to_lowercase()) {
            errors.push(FieldError::invalid(
                "metadata.annotations",
                Value::from(key.as_str()),
                problem,
            ));
        }
        total += key.len() + value.as_str().map_or(0, str::len);
        if !value.is_string() {
            errors.push(FieldError::invalid(
                "metadata.annotations",
                value.clone(),
                "must be a string",
            ));
        }
    }
    if total > ANNOTATIONS_MAX_BYTES {
        errors.push(FieldError::too_long("metadata.annotations", ANNOTATIONS_MAX_BYTES));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_names_use_the_prefix_and_five_safe_characters() {
        let catalog = krust_api::Catalog::builtin();
        let Some(info) = catalog.lookup("", "v1", "configmaps") else { return };
        let mut obj = json!({"metadata": {"generateName": "web-"}});
        prepare_create(&info, &mut obj, Utc::now());
        let name = meta_str(&obj, "name").unwrap_or_default();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert!(meta_str(&obj, "uid").is_some());
    }

    #[test]
    fn labels_with_bad_keys_are_invalid() {
        assert!(validate_labels(&json!({"app": "web", "example.com/tier": "front"})).is_empty());
        assert_eq!(validate_labels(&json!({"bad key": "x"})).len(), 1);
        assert_eq!(validate_labels(&json!({"app": "-x"})).len(), 1);
    }
}
