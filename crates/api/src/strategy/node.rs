//! Runtime classes: `printRuntimeClass`.

use serde_json::{Value, json};

use super::Strategy;
use super::util::{AGE, age, col, immutable, str_at};
use crate::table::{Column, TableContext};
use crate::validation::{FieldError, dns1123_label};

/// Rules of `RuntimeClass`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeClassStrategy;

impl Strategy for RuntimeClassStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        match str_at(obj, "handler").filter(|h| !h.is_empty()) {
            None => errors.push(FieldError::required("handler")),
            Some(h) => {
                for problem in dns1123_label(h) {
                    errors.push(FieldError::invalid("handler", json!(h), problem));
                }
            }
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        immutable(new, old, "handler", &mut errors);
        errors
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col(
                "Handler",
                "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class. The possible values are specific to the node & CRI configuration.  It is assumed that all handlers are available on every node, and handlers of the same name are equivalent on every node. For example, a handler called \"runc\" might specify that the runc OCI runtime (using native Linux containers) will be used to run the containers in a pod. The Handler must be lowercase, conform to the DNS Label (RFC 1123) requirements, and is immutable.",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![json!(str_at(obj, "handler").unwrap_or_default()), age(obj, ctx)]
    }
}
