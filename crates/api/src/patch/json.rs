//! JSON patch (RFC 6902): a list of `add`, `remove`, `replace`, `move`, `copy` and `test`
//! operations applied in order, all or nothing.

use json_patch::{Patch, PatchErrorKind, PatchOperation};
use serde_json::Value;

use super::PatchError;

/// Upstream's limit on the number of operations in one JSON patch.
pub const MAX_OPERATIONS: usize = 10_000;

/// Parses a JSON patch body and applies it to a copy of `original`.
pub fn apply(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let patch: Patch =
        serde_json::from_slice(body).map_err(|e| PatchError::InvalidDocument(e.to_string()))?;
    apply_operations(original, &patch)
}

/// Applies parsed operations to a copy of `original`.
pub fn apply_operations(original: &Value, patch: &Patch) -> Result<Value, PatchError> {
    if patch.0.len() > MAX_OPERATIONS {
        return Err(PatchError::TooManyOperations { max: MAX_OPERATIONS, got: patch.0.len() });
    }
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &patch.0).map_err(|err| {
        let path = err.path.to_string();
        let op = patch.0.get(err.operation);
        let (name, from) = match op {
            Some(PatchOperation::Add(_)) => ("add", None),
            Some(PatchOperation::Remove(_)) => ("remove", None),
            Some(PatchOperation::Replace(_)) => ("replace", None),
            Some(PatchOperation::Move(m)) => ("move", Some(m.from.to_string())),
            Some(PatchOperation::Copy(c)) => ("copy", Some(c.from.to_string())),
            Some(PatchOperation::Test(_)) | None => ("test", None),
        };
        match err.kind {
            PatchErrorKind::TestFailed => PatchError::TestFailed { path },
            PatchErrorKind::InvalidFromPointer => {
                PatchError::FromNotFound { op: name, from: from.unwrap_or_default() }
            }
            PatchErrorKind::CannotMoveInsideItself => {
                PatchError::MoveIntoItself { from: from.unwrap_or_default(), path }
            }
            _ => PatchError::PathNotFound { op: name, path },
        }
    })?;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({"metadata": {"name": "a", "labels": {"app": "web"}}, "spec": {"ports": [{"port": 80}]}})
    }

    #[test]
    fn operations_apply_in_order() {
        let cases = [
            (
                "add creates a new key",
                r#"[{"op": "add", "path": "/metadata/labels/tier", "value": "front"}]"#,
                "/metadata/labels",
                json!({"app": "web", "tier": "front"}),
            ),
            (
                "add with a dash appends to a list",
                r#"[{"op": "add", "path": "/spec/ports/-", "value": {"port": 443}}]"#,
                "/spec/ports",
                json!([{"port": 80}, {"port": 443}]),
            ),
            (
                "remove deletes a key",
                r#"[{"op": "remove", "path": "/metadata/labels/app"}]"#,
                "/metadata/labels",
                json!({}),
            ),
            (
                "replace changes a value",
                r#"[{"op": "replace", "path": "/spec/ports/0/port", "value": 8080}]"#,
                "/spec/ports/0/port",
                json!(8080),
            ),
            (
                "move renames a key",
                r#"[{"op": "move", "from": "/metadata/labels/app", "path": "/metadata/labels/name"}]"#,
                "/metadata/labels",
                json!({"name": "web"}),
            ),
            (
                "copy duplicates a value",
                r#"[{"op": "copy", "from": "/metadata/name", "path": "/metadata/labels/name"}]"#,
                "/metadata/labels/name",
                json!("a"),
            ),
            (
                "a passing test lets later operations run",
                r#"[{"op": "test", "path": "/metadata/name", "value": "a"},
                    {"op": "replace", "path": "/metadata/name", "value": "b"}]"#,
                "/metadata/name",
                json!("b"),
            ),
        ];
        for (name, body, pointer, want) in cases {
            let out = apply(&doc(), body.as_bytes()).unwrap();
            assert_eq!(out.pointer(pointer), Some(&want), "{name}");
        }
    }

    #[test]
    fn failures_carry_upstream_messages() {
        let cases = [
            (
                "a failed test names the path",
                r#"[{"op": "test", "path": "/metadata/name", "value": "b"}]"#,
                "testing value /metadata/name failed: test failed",
            ),
            (
                "replacing a missing key names the path",
                r#"[{"op": "replace", "path": "/spec/replicas", "value": 1}]"#,
                "replace operation does not apply: doc is missing path: \"/spec/replicas\": missing value",
            ),
            (
                "removing a missing key names the path",
                r#"[{"op": "remove", "path": "/metadata/labels/nope"}]"#,
                "remove operation does not apply: doc is missing path: \"/metadata/labels/nope\": missing value",
            ),
            (
                "adding under a missing parent names the path",
                r#"[{"op": "add", "path": "/status/phase", "value": "x"}]"#,
                "add operation does not apply: doc is missing path: \"/status/phase\": missing value",
            ),
            (
                "moving from a missing key names the from path",
                r#"[{"op": "move", "from": "/nope", "path": "/x"}]"#,
                "move operation does not apply: doc is missing from path: \"/nope\": missing value",
            ),
        ];
        for (name, body, want) in cases {
            let err = apply(&doc(), body.as_bytes()).unwrap_err();
            assert_eq!(err.to_string(), want, "{name}");
        }
    }

    #[test]
    fn a_failed_operation_leaves_nothing_applied() {
        let original = doc();
        let body = r#"[{"op": "replace", "path": "/metadata/name", "value": "z"},
                       {"op": "test", "path": "/metadata/name", "value": "a"}]"#;
        assert!(apply(&original, body.as_bytes()).is_err());
        assert_eq!(original, doc());
    }

    #[test]
    fn malformed_bodies_are_invalid_documents() {
        let cases = [
            ("an object is not a list of operations", r#"{"op": "add"}"#),
            ("an unknown operation is rejected", r#"[{"op": "frob", "path": "/a"}]"#),
            ("a missing path is rejected", r#"[{"op": "remove"}]"#),
            ("broken json is rejected", "[{"),
        ];
        for (name, body) in cases {
            let err = apply(&doc(), body.as_bytes()).unwrap_err();
            assert!(matches!(err, PatchError::InvalidDocument(_)), "{name}: {err:?}");
        }
    }

    #[test]
    fn too_many_operations_are_refused() {
        let ops: Vec<Value> = (0..=MAX_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/metadata/name", "value": "a"}))
            .collect();
        let body = serde_json::to_vec(&ops).unwrap();
        let err = apply(&doc(), &body).unwrap_err();
        assert_eq!(
            err.to_string(),
            "The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
    }
}
