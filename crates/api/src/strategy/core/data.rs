//! Secrets and config maps: `SetDefaults_Secret`, the `stringData` conversion,
//! `pkg/registry/core/{secret,configmap}/strategy.go`, `printSecret`, `printConfigMap`.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::strategy::Strategy;
use crate::strategy::util::{AGE, age, col, config_map_key_problems, object_at, string_at};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `Secret`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SecretStrategy;

/// Rules of `ConfigMap`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConfigMapStrategy;

const SECRET_COLUMNS: &[Column] = &[
    col(
        "Type",
        "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
    ),
    col(
        "Data",
        "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
    ),
    AGE,
];

const CONFIG_MAP_COLUMNS: &[Column] = &[
    col(
        "Data",
        "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.",
    ),
    AGE,
];

/// The most data a secret or config map may hold.
const MAX_SIZE: usize = 1024 * 1024;

const IMMUTABLE: &str = "field is immutable when `immutable` is set";

fn validate_keys(obj: &Value, field: &str, errors: &mut Vec<FieldError>) {
    for key in object_at(obj, field).into_iter().flat_map(Map::keys) {
        for problem in config_map_key_problems(key) {
            errors.push(FieldError::invalid(format!("{field}[{key}]"), json!(key), problem));
        }
    }
}

fn immutable_data(new: &Value, old: &Value, fields: &[&str], errors: &mut Vec<FieldError>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errors.push(FieldError::forbidden("immutable", IMMUTABLE));
    }
    for field in fields {
        if new.get(*field) != old.get(*field) {
            errors.push(FieldError::forbidden(*field, IMMUTABLE));
        }
    }
}

fn count(obj: &Value, fields: &[&str]) -> usize {
    fields.iter().map(|f| object_at(obj, f).map_or(0, Map::len)).sum()
}

/// The keys each secret type requires in `data`.
fn required_secret_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        _ => &[],
    }
}

impl Strategy for SecretStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        let kind = map.entry("type").or_insert(Value::Null);
        if kind.is_null() || kind.as_str() == Some("") {
            *kind = json!("Opaque");
        }
        // The v1 conversion writes stringData over data, base64-encoded.
        if let Some(Value::Object(strings)) = map.remove("stringData") {
            let data = map.entry("data").or_insert_with(|| json!({}));
            if !data.is_object() {
                *data = json!({});
            }
            if let Some(data) = data.as_object_mut() {
                for (k, v) in strings {
                    let text = v.as_str().unwrap_or_default();
                    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                    data.insert(k, json!(encoded));
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_keys(obj, "data", &mut errors);
        let size: usize = object_at(obj, "data")
            .into_iter()
            .flatten()
            .map(|(_, v)| v.as_str().map_or(0, |s| s.len() * 3 / 4))
            .sum();
        if size > MAX_SIZE {
            errors.push(FieldError::forbidden(
                "data",
                format!("Too long: may not be more than {MAX_SIZE} bytes"),
            ));
        }
        let kind = string_at(obj, "type");
        let data = object_at(obj, "data");
        for key in required_secret_keys(&kind) {
            if data.is_none_or(|d| !d.contains_key(*key)) {
                errors.push(FieldError::required(format!("data[{key}]")));
            }
        }
        if kind == "kubernetes.io/service-account-token"
            && crate::object::path(obj, "metadata.annotations")
                .and_then(|a| a.get("kubernetes.io/service-account.name"))
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            errors.push(FieldError::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
            ));
        }
        if kind == "kubernetes.io/basic-auth"
            && data.is_none_or(|d| !d.contains_key("username") && !d.contains_key("password"))
        {
            errors.push(FieldError::required("data[username]"));
            errors.push(FieldError::required("data[password]"));
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        if new.get("type") != old.get("type") {
            errors.push(FieldError::invalid(
                "type",
                new.get("type").cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
        immutable_data(new, old, &["data"], &mut errors);
        errors
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("type", string_at(obj, "type"))]
    }

    fn selectable_paths(&self) -> Option<&'static [&'static str]> {
        Some(&["type"])
    }

    fn columns(&self) -> &[Column] {
        SECRET_COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![json!(string_at(obj, "type")), json!(count(obj, &["data"])), age(obj, ctx)]
    }
}

impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_keys(obj, "data", &mut errors);
        validate_keys(obj, "binaryData", &mut errors);
        let binary = object_at(obj, "binaryData");
        for key in object_at(obj, "data").into_iter().flat_map(Map::keys) {
            if binary.is_some_and(|b| b.contains_key(key)) {
                errors.push(FieldError::invalid(
                    format!("data[{key}]"),
                    json!(key),
                    "duplicate of key present in binaryData",
                ));
            }
        }
        let size: usize = ["data", "binaryData"]
            .iter()
            .flat_map(|f| object_at(obj, f).into_iter().flatten())
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > MAX_SIZE {
            errors.push(FieldError::forbidden(
                "",
                format!("Too long: may not be more than {MAX_SIZE} bytes"),
            ));
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        immutable_data(new, old, &["data", "binaryData"], &mut errors);
        errors
    }

    fn columns(&self) -> &[Column] {
        CONFIG_MAP_COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![json!(count(obj, &["data", "binaryData"])), age(obj, ctx)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_default_to_opaque_and_encode_string_data() {
        let mut s = json!({"stringData": {"user": "admin"}, "data": {"a": "Yg=="}});
        SecretStrategy.default(&mut s);
        let once = s.clone();
        SecretStrategy.default(&mut s);
        assert_eq!(s, once);
        assert_eq!(s, json!({"data": {"a": "Yg==", "user": "YWRtaW4="}, "type": "Opaque"}));
    }

    #[test]
    fn keys_and_immutability() {
        let cm = json!({"data": {"bad key": "x"}});
        let errors = ConfigMapStrategy.validate(&cm);
        assert!(errors[0].to_string().starts_with(
            "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters"
        ));
        let old = json!({"immutable": true, "data": {"a": "1"}});
        let new = json!({"immutable": true, "data": {"a": "2"}});
        let errors = ConfigMapStrategy.validate_update(&new, &old);
        assert_eq!(
            errors[0].to_string(),
            "data: Forbidden: field is immutable when `immutable` is set"
        );
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": ""}});
        assert_eq!(SecretStrategy.validate(&tls)[0].to_string(), "data[tls.key]: Required value");
    }
}
