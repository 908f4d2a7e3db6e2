//! Priority classes: `pkg/apis/scheduling/v1/defaults.go`, the strategy and
//! `printPriorityClass`.

use serde_json::{Value, json};

use super::Strategy;
use super::util::{AGE, age, bool_at, col, int_at, int_col};
use crate::object::default_path;
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `PriorityClass`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PriorityClassStrategy;

/// The highest priority user-defined classes may use.
const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;

impl Strategy for PriorityClassStrategy {
    fn default(&self, obj: &mut Value) {
        default_path(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let name = crate::object::name(obj).unwrap_or_default();
        let value = int_at(obj, "value").unwrap_or(0);
        if name.starts_with("system-") {
            if !["system-node-critical", "system-cluster-critical"].contains(&name) {
                errors.push(FieldError::forbidden(
                    "metadata.name",
                    "priority class names with 'system-' prefix are reserved for system use only",
                ));
            }
        } else if value > HIGHEST_USER_PRIORITY {
            errors.push(FieldError::forbidden(
                "value",
                format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"
                ),
            ));
        }
        if let Some(p) = obj.get("preemptionPolicy").and_then(Value::as_str) {
            let allowed = ["Never", "PreemptLowerPriority"];
            if !allowed.contains(&p) {
                errors.push(FieldError::not_supported("preemptionPolicy", json!(p), &allowed));
            }
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if new.get("value") != old.get("value") {
            errors.push(FieldError::forbidden("value", "may not be changed in an update."));
        }
        if new.get("preemptionPolicy") != old.get("preemptionPolicy") {
            errors.push(FieldError::invalid(
                "preemptionPolicy",
                new.get("preemptionPolicy").cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
        errors
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            int_col(
                "Value",
                "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
            ),
            Column::new(
                "Global-Default",
                "boolean",
                "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.",
            ),
            AGE,
            col(
                "PreemptionPolicy",
                "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.",
            ),
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let policy =
            obj.get("preemptionPolicy").and_then(Value::as_str).unwrap_or("PreemptLowerPriority");
        vec![
            json!(int_at(obj, "value").unwrap_or(0)),
            json!(bool_at(obj, "globalDefault").unwrap_or(false)),
            age(obj, ctx),
            json!(policy),
        ]
    }
}
