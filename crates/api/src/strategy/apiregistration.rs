//! API services: the aggregator's strategy and table.

use serde_json::{Value, json};

use super::Strategy;
use super::util::{AGE, age, array_at, col, keep_status, reset_status, str_at};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `APIService`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiServiceStrategy;

impl Strategy for ApiServiceStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(service) = obj.pointer_mut("/spec/service").filter(|s| s.is_object()) {
            super::util::default_field(service, "port", json!(443));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let group = str_at(obj, "spec.group").unwrap_or_default();
        let version = str_at(obj, "spec.version").unwrap_or_default();
        if version.is_empty() {
            errors.push(FieldError::required("spec.version"));
        }
        let name = crate::object::name(obj).unwrap_or_default();
        let expected =
            if group.is_empty() { version.to_string() } else { format!("{version}.{group}") };
        if !version.is_empty() && name != expected {
            errors.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                format!("must be `spec.version+\".\"+spec.group`: {expected:?}"),
            ));
        }
        let local = obj.pointer("/spec/service").is_none_or(Value::is_null);
        if !local {
            if obj
                .pointer("/spec/groupPriorityMinimum")
                .and_then(Value::as_i64)
                .is_none_or(|p| p <= 0)
            {
                errors.push(FieldError::invalid(
                    "spec.groupPriorityMinimum",
                    obj.pointer("/spec/groupPriorityMinimum").cloned().unwrap_or(json!(0)),
                    "must be positive and less than 20000",
                ));
            }
            if obj.pointer("/spec/versionPriority").and_then(Value::as_i64).is_none_or(|p| p <= 0) {
                errors.push(FieldError::invalid(
                    "spec.versionPriority",
                    obj.pointer("/spec/versionPriority").cloned().unwrap_or(json!(0)),
                    "must be positive and less than 1000",
                ));
            }
        }
        errors
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col("Service", "The reference to the service that hosts this API endpoint."),
            col("Available", "Whether this service is available."),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let service = match obj.pointer("/spec/service").filter(|s| s.is_object()) {
            Some(s) => format!(
                "{}/{}",
                s.get("namespace").and_then(Value::as_str).unwrap_or_default(),
                s.get("name").and_then(Value::as_str).unwrap_or_default()
            ),
            None => "Local".into(),
        };
        let available = array_at(obj, "status.conditions")
            .iter()
            .find(|c| c.get("type").and_then(Value::as_str) == Some("Available"))
            .map_or("Unknown".to_string(), |c| {
                let status = c.get("status").and_then(Value::as_str).unwrap_or_default();
                let reason = c.get("reason").and_then(Value::as_str).unwrap_or_default();
                if status == "True" || reason.is_empty() {
                    status.to_string()
                } else {
                    format!("{status} ({reason})")
                }
            });
        vec![json!(service), json!(available), age(obj, ctx)]
    }
}
