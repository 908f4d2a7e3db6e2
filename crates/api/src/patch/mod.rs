//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch
//! and (approximately) server-side apply.
//!
//! [`apply_patch`] is the single entry point the registry calls: it parses the patch body
//! for the given [`PatchType`] and returns the patched object. The original object is never
//! modified. Failures are [`PatchError`]s whose messages follow upstream's wording; turn one
//! into the `Status` to answer with through `StatusError::from`.
//!
//! - [`json`]: RFC 6902 operations, through the `json-patch` crate.
//! - [`merge`]: RFC 7386, through the `json-patch` crate.
//! - [`strategic`]: upstream's strategic merge patch, with its `$patch`,
//!   `$setElementOrder/…`, `$deleteFromPrimitiveList/…` and `$retainKeys` directives.
//! - [`merge_keys`]: the patch metadata (merge keys and strategies of lists) that upstream
//!   reads from Go struct tags, kept here as a table over the built-in types.
//!
//! Server-side apply (`application/apply-patch+yaml`) is approximated: the applied
//! configuration is merged into the live object as a strategic merge patch. Nothing is
//! tracked in `managedFields`, so fields dropped from a configuration are not removed and no
//! conflicts are ever reported.

pub mod json;
pub mod merge;
pub mod merge_keys;
pub mod strategic;

use serde_json::Value;

use crate::status::StatusError;

/// The kinds of PATCH bodies, told apart by the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`: a list of RFC 6902 operations.
    Json,
    /// `application/merge-patch+json`: an RFC 7386 merge patch.
    Merge,
    /// `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch.
    StrategicMerge,
    /// `application/apply-patch+yaml`: server-side apply (approximated, see the module docs).
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value; parameters such as
    /// `; charset=utf-8` are ignored, case is not significant. `None` for anything else.
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        [
            ("application/json-patch+json", PatchType::Json),
            ("application/merge-patch+json", PatchType::Merge),
            ("application/strategic-merge-patch+json", PatchType::StrategicMerge),
            ("application/apply-patch+yaml", PatchType::Apply),
        ]
        .into_iter()
        .find(|(name, _)| essence.eq_ignore_ascii_case(name))
        .map(|(_, kind)| kind)
    }

    /// The media type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied. The messages follow upstream's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    /// The patch body does not parse (bad JSON, bad YAML, or an unknown operation).
    #[error("{0}")]
    InvalidDocument(String),
    /// A merge patch or strategic merge patch body that is not a JSON object.
    #[error("Invalid JSON Patch")]
    NotAnObject,
    /// A JSON patch with more operations than upstream accepts.
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations {
        /// The limit.
        max: usize,
        /// The number of operations sent.
        got: usize,
    },
    /// A JSON patch `test` operation did not match.
    #[error("testing value {path} failed: test failed")]
    TestFailed {
        /// The JSON pointer of the tested value.
        path: String,
    },
    /// A JSON patch operation names a location that does not exist.
    #[error("{op} operation does not apply: doc is missing path: \"{path}\": missing value")]
    PathNotFound {
        /// The operation (`add`, `remove`, `replace`, `move`, `copy`).
        op: &'static str,
        /// The JSON pointer.
        path: String,
    },
    /// A JSON patch `move` or `copy` whose `from` does not exist.
    #[error("{op} operation does not apply: doc is missing from path: \"{from}\": missing value")]
    FromNotFound {
        /// The operation (`move` or `copy`).
        op: &'static str,
        /// The `from` JSON pointer.
        from: String,
    },
    /// A JSON patch `move` into one of its own children.
    #[error("move operation does not apply: cannot move {from} into its own child {path}")]
    MoveIntoItself {
        /// The `from` JSON pointer.
        from: String,
        /// The target JSON pointer.
        path: String,
    },
    /// A malformed strategic merge patch directive: a bad `$retainKeys`,
    /// `$setElementOrder/…` or `$deleteFromPrimitiveList/…` (upstream answers 400).
    #[error("{0}")]
    BadDirective(String),
    /// A strategic merge patch that cannot be merged into the object: missing merge keys,
    /// unknown `$patch` values, mixed list element types, lists of lists, ...
    #[error("{0}")]
    Merge(String),
    /// A server-side apply body that does not fit the object (another `kind` or `apiVersion`).
    #[error("{0}")]
    ApplyMismatch(String),
    /// A patch type that cannot be used here.
    #[error("{0}")]
    Unsupported(String),
}

impl PatchError {
    /// The HTTP status code to answer with: 400 for bodies that are not valid patches,
    /// 413 for too many JSON patch operations, 415 for unsupported patch types, and 422 for
    /// patches that do not apply to the object (upstream answers some of the latter for
    /// strategic merge patches with 500).
    pub fn code(&self) -> u16 {
        match self {
            PatchError::InvalidDocument(_)
            | PatchError::NotAnObject
            | PatchError::BadDirective(_)
            | PatchError::ApplyMismatch(_) => 400,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::Unsupported(_) => 415,
            PatchError::TestFailed { .. }
            | PatchError::PathNotFound { .. }
            | PatchError::FromNotFound { .. }
            | PatchError::MoveIntoItself { .. }
            | PatchError::Merge(_) => 422,
        }
    }
}

impl From<PatchError> for StatusError {
    fn from(err: PatchError) -> Self {
        let code = err.code();
        let reason = match code {
            400 => crate::Reason::BadRequest,
            413 => crate::Reason::RequestEntityTooLarge,
            415 => crate::Reason::UnsupportedMediaType,
            _ => crate::Reason::Invalid,
        };
        match err {
            // A JSON patch that does not apply: upstream answers as a generic server response
            // (`errors.NewGenericServerResponse(422, ...)` in its patch handler), the failure
            // as the cause.
            PatchError::TestFailed { .. }
            | PatchError::PathNotFound { .. }
            | PatchError::FromNotFound { .. }
            | PatchError::MoveIntoItself { .. } => StatusError {
                details: Some(serde_json::json!({
                    "causes": [{"reason": "UnexpectedServerResponse", "message": err.to_string()}],
                })),
                ..StatusError::with_code(
                    code,
                    reason,
                    "the server rejected our request due to an error in our request",
                )
            },
            _ => StatusError::with_code(code, reason, err.to_string()),
        }
    }
}

/// Applies a PATCH body of type `kind` to `original` and returns the patched object.
///
/// `api_version` and `kind_name` are the object's `apiVersion` and `kind`: they pick the
/// merge keys of strategic merge patches (see [`merge_keys`]) and are checked against an
/// applied configuration. Kinds that [`merge_keys`] does not know (custom resources) merge
/// maps and replace every list except in `metadata`; upstream refuses strategic merge
/// patches for custom resources altogether, which is the caller's decision to make.
pub fn apply_patch(
    kind: PatchType,
    original: &Value,
    patch: &[u8],
    api_version: &str,
    kind_name: &str,
) -> Result<Value, PatchError> {
    match kind {
        PatchType::Json => json::apply(original, patch),
        PatchType::Merge => merge::apply(original, patch),
        PatchType::StrategicMerge => {
            let patch: Value = serde_json::from_slice(patch)
                .map_err(|e| PatchError::InvalidDocument(e.to_string()))?;
            if !patch.is_object() {
                return Err(PatchError::NotAnObject);
            }
            let root = merge_keys::TypeRef::root(api_version, kind_name);
            strategic::merge(original, &patch, root)
        }
        PatchType::Apply => apply_configuration(original, patch, api_version, kind_name),
    }
}

/// The applied configuration as a strategic merge patch of the object (what a caller without
/// field ownership can make of an apply; the registry applies through
/// [`crate::field_manager`]).
fn apply_configuration(
    original: &Value,
    patch: &[u8],
    api_version: &str,
    kind_name: &str,
) -> Result<Value, PatchError> {
    let config = parse_apply(patch, api_version, kind_name)?;
    let root = merge_keys::TypeRef::root(api_version, kind_name);
    strategic::merge(original, &config, root)
}

/// Reads an applied configuration (YAML or JSON): an object of the given `apiVersion` and
/// `kind`.
pub fn parse_apply(patch: &[u8], api_version: &str, kind_name: &str) -> Result<Value, PatchError> {
    let text = std::str::from_utf8(patch)
        .map_err(|e| PatchError::InvalidDocument(format!("error decoding YAML: {e}")))?;
    let config: Value = serde_saphyr::from_str(text)
        .map_err(|e| PatchError::InvalidDocument(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(PatchError::InvalidDocument(
            "error decoding YAML: the applied configuration is not an object".into(),
        ));
    }
    for (field, expected) in [("apiVersion", api_version), ("kind", kind_name)] {
        match config.get(field) {
            None | Some(Value::Null) => {
                return Err(PatchError::ApplyMismatch(format!(
                    "{field} must be set in the applied configuration"
                )));
            }
            Some(Value::String(s)) if s == expected => {}
            Some(other) => {
                let shown = other.as_str().map_or_else(|| other.to_string(), str::to_string);
                return Err(PatchError::ApplyMismatch(format!(
                    "{field} {shown:?} of the applied configuration does not match the object's {expected:?}"
                )));
            }
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types_map_to_patch_types() {
        let cases = [
            ("a json patch content type", "application/json-patch+json", Some(PatchType::Json)),
            ("a merge patch content type", "application/merge-patch+json", Some(PatchType::Merge)),
            (
                "a strategic merge patch content type",
                "application/strategic-merge-patch+json",
                Some(PatchType::StrategicMerge),
            ),
            ("an apply content type", "application/apply-patch+yaml", Some(PatchType::Apply)),
            (
                "parameters are ignored",
                "application/merge-patch+json; charset=utf-8",
                Some(PatchType::Merge),
            ),
            ("case is ignored", "Application/JSON-Patch+JSON", Some(PatchType::Json)),
            ("plain json is not a patch", "application/json", None),
            ("an empty header is not a patch", "", None),
        ];
        for (name, header, want) in cases {
            assert_eq!(PatchType::from_content_type(header), want, "{name}");
            if let Some(kind) = want {
                assert_eq!(PatchType::from_content_type(kind.content_type()), want, "{name}");
            }
        }
    }

    #[test]
    fn apply_patch_dispatches_on_the_patch_type() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        let cases: Vec<(&str, PatchType, &str, Value)> = vec![
            (
                "a json patch replaces a label",
                PatchType::Json,
                r#"[{"op": "replace", "path": "/metadata/labels/a", "value": "2"}]"#,
                json!({"a": "2"}),
            ),
            (
                "a merge patch removes a label with null",
                PatchType::Merge,
                r#"{"metadata": {"labels": {"a": null, "b": "x"}}}"#,
                json!({"b": "x"}),
            ),
            (
                "a strategic merge patch adds a label",
                PatchType::StrategicMerge,
                r#"{"metadata": {"labels": {"c": "3"}}}"#,
                json!({"a": "1", "c": "3"}),
            ),
            (
                "an applied configuration is merged in",
                PatchType::Apply,
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    d: '4'\n",
                json!({"a": "1", "d": "4"}),
            ),
        ];
        for (name, kind, body, labels) in cases {
            let out = apply_patch(kind, &pod, body.as_bytes(), "v1", "Pod").unwrap();
            assert_eq!(out["metadata"]["labels"], labels, "{name}");
            assert_eq!(out["spec"], pod["spec"], "{name}");
        }
    }

    #[test]
    fn an_applied_configuration_can_create_an_object() {
        let body = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  template:\n    spec:\n      containers:\n      - name: web\n        image: nginx\n        ports:\n        - containerPort: 80\n";
        let out =
            apply_patch(PatchType::Apply, &Value::Null, body.as_bytes(), "apps/v1", "Deployment")
                .unwrap();
        assert_eq!(out["spec"]["replicas"], 2);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            80
        );
        let again =
            apply_patch(PatchType::Apply, &out, body.as_bytes(), "apps/v1", "Deployment").unwrap();
        assert_eq!(again, out, "applying the same configuration twice changes nothing");
    }

    #[test]
    fn bad_patches_become_statuses_with_upstream_codes() {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let cases: Vec<(&str, PatchType, &str, u16)> = vec![
            ("a json patch that is not json is a bad request", PatchType::Json, "[{", 400),
            ("a merge patch that is a list is a bad request", PatchType::Merge, "[1]", 400),
            (
                "a strategic merge patch that is a string is a bad request",
                PatchType::StrategicMerge,
                "\"x\"",
                400,
            ),
            (
                "a failed test operation is unprocessable",
                PatchType::Json,
                r#"[{"op": "test", "path": "/metadata/name", "value": "d"}]"#,
                422,
            ),
            (
                "an applied configuration of another kind is a bad request",
                PatchType::Apply,
                "apiVersion: v1\nkind: Secret\n",
                400,
            ),
        ];
        for (name, kind, body, code) in cases {
            let err = apply_patch(kind, &obj, body.as_bytes(), "v1", "ConfigMap").unwrap_err();
            let status = StatusError::from(err);
            assert_eq!(status.code(), code, "{name}: {}", status.message);
        }
    }
}
