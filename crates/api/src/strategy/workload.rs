//! What the controllers' resources share: selectors that must match their templates,
//! replica counts, status reset on create.

use serde_json::{Value, json};

use super::util::{non_negative, selector_is_empty, selector_matches};
use crate::object::path;
use crate::validation::FieldError;

/// The message of a selector that does not match the template labels.
pub(crate) const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";

/// Validates a `LabelSelector` at `spec.selector` against the labels of the template at
/// `template` (`spec.template`): required, non-empty, well-formed, matching.
pub(crate) fn validate_selector(
    obj: &Value,
    template: &str,
    kind: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(selector) = path(obj, "spec.selector").filter(|s| !s.is_null()) else {
        errors.push(FieldError::required("spec.selector"));
        return;
    };
    if selector_is_empty(selector) {
        errors.push(FieldError::invalid(
            "spec.selector",
            selector.clone(),
            format!("empty selector is invalid for {kind}"),
        ));
        return;
    }
    let exprs = selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten();
    for (i, e) in exprs.enumerate() {
        let at = format!("spec.selector.matchExpressions[{i}]");
        let op = e.get("operator").and_then(Value::as_str).unwrap_or_default();
        let values = e.get("values").and_then(Value::as_array).map_or(0, Vec::len);
        match op {
            "In" | "NotIn" if values == 0 => {
                errors.push(FieldError::required(format!("{at}.values")))
            }
            "Exists" | "DoesNotExist" if values > 0 => errors.push(FieldError::forbidden(
                format!("{at}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(FieldError::invalid(
                format!("{at}.operator"),
                json!(other),
                "not a valid selector operator",
            )),
        }
    }
    let labels_at = format!("{template}.metadata.labels");
    let labels = path(obj, &labels_at).and_then(Value::as_object).cloned().unwrap_or_default();
    if !selector_matches(selector, &labels) {
        errors.push(FieldError::invalid(labels_at, Value::Object(labels), SELECTOR_MISMATCH));
    }
}

/// Validates a map selector (replication controllers) against the template labels.
pub(crate) fn validate_map_selector(obj: &Value, errors: &mut Vec<FieldError>) {
    let selector = path(obj, "spec.selector").and_then(Value::as_object);
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        errors.push(FieldError::required("spec.selector"));
        return;
    };
    let labels = path(obj, "spec.template.metadata.labels").and_then(Value::as_object);
    match labels {
        None => errors.push(FieldError::required("spec.template.metadata.labels")),
        Some(labels) => {
            if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                errors.push(FieldError::invalid(
                    "spec.template.metadata.labels",
                    Value::Object(labels.clone()),
                    "`selector` does not match template `labels`",
                ));
            }
        }
    }
}

/// `spec.replicas` may not be negative.
pub(crate) fn validate_replicas(obj: &Value, errors: &mut Vec<FieldError>) {
    non_negative(obj, "spec.replicas", errors);
}

/// A required pod template.
pub(crate) fn require_template(obj: &Value, template: &str, errors: &mut Vec<FieldError>) -> bool {
    if path(obj, template).is_none_or(Value::is_null) {
        errors.push(FieldError::required(template.to_string()));
        return false;
    }
    true
}
