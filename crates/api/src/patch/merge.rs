//! JSON merge patch (RFC 7386): objects merge recursively, `null` removes a key, everything
//! else (lists included) replaces what was there.

use serde_json::Value;

use super::PatchError;

/// Parses a merge patch body and applies it to a copy of `original`.
///
/// The body must be a JSON object, as upstream requires (a merge patch of any other value
/// would replace the whole object).
pub fn apply(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let patch: Value =
        serde_json::from_slice(body).map_err(|e| PatchError::InvalidDocument(e.to_string()))?;
    if !patch.is_object() {
        return Err(PatchError::NotAnObject);
    }
    Ok(apply_value(original, &patch))
}

/// Applies a parsed merge patch to a copy of `original`.
pub fn apply_value(original: &Value, patch: &Value) -> Value {
    let mut doc = original.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patches_follow_rfc_7386() {
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "x"}, {"name": "y"}], "replicas": 1}});
        let cases = [
            (
                "nested maps merge key by key",
                json!({"metadata": {"labels": {"c": "3"}}}),
                json!({"metadata": {"labels": {"a": "1", "b": "2", "c": "3"}},
                    "spec": {"containers": [{"name": "x"}, {"name": "y"}], "replicas": 1}}),
            ),
            (
                "null removes a key",
                json!({"metadata": {"labels": {"a": null}}}),
                json!({"metadata": {"labels": {"b": "2"}},
                    "spec": {"containers": [{"name": "x"}, {"name": "y"}], "replicas": 1}}),
            ),
            (
                "lists are replaced whole",
                json!({"spec": {"containers": [{"name": "z"}]}}),
                json!({"metadata": {"labels": {"a": "1", "b": "2"}},
                    "spec": {"containers": [{"name": "z"}], "replicas": 1}}),
            ),
            (
                "a map replaces a scalar",
                json!({"spec": {"replicas": {"n": 2}}}),
                json!({"metadata": {"labels": {"a": "1", "b": "2"}},
                    "spec": {"containers": [{"name": "x"}, {"name": "y"}], "replicas": {"n": 2}}}),
            ),
        ];
        for (name, patch, want) in cases {
            let body = serde_json::to_vec(&patch).unwrap();
            assert_eq!(apply(&original, &body).unwrap(), want, "{name}");
        }
    }

    #[test]
    fn bodies_that_are_not_objects_are_refused() {
        let cases = [
            ("a list", "[1, 2]", "Invalid JSON Patch"),
            ("a string", "\"x\"", "Invalid JSON Patch"),
            ("null", "null", "Invalid JSON Patch"),
        ];
        for (name, body, want) in cases {
            let err = apply(&json!({}), body.as_bytes()).unwrap_err();
            assert_eq!(err.to_string(), want, "{name}");
        }
        let err = apply(&json!({}), b"{").unwrap_err();
        assert!(matches!(err, PatchError::InvalidDocument(_)), "broken json: {err:?}");
    }
}
