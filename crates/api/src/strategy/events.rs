//! `events.k8s.io/v1` events: stored with core events, so they share their rules and table;
//! the creation checks are the stricter ones of `ValidateEventCreate` for this version.

use serde_json::{Value, json};

use super::Strategy;
use super::core::{EVENT_COLUMNS, event_cells, event_selectable_fields};
use super::util::str_at;
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `events.k8s.io` `Event`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventStrategy;

impl Strategy for EventStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        // Objects in the stored (core v1) shape were checked when they were created.
        if str_at(obj, "apiVersion") != Some("events.k8s.io/v1") {
            return errors;
        }
        let missing = |f: &str| str_at(obj, f).is_none_or(str::is_empty);
        if obj.get("eventTime").is_none_or(Value::is_null) {
            errors.push(FieldError::required("eventTime"));
        }
        if let Some(t) = str_at(obj, "type") {
            if t != "Normal" && t != "Warning" {
                errors.push(FieldError::invalid(
                    "type",
                    json!(t),
                    "has invalid value: ".to_string() + t,
                ));
            }
        } else {
            errors.push(FieldError::required("type"));
        }
        for field in ["reportingController", "reportingInstance", "action", "reason"] {
            if missing(field) {
                errors.push(FieldError::required(field));
            }
        }
        if str_at(obj, "note").is_some_and(|n| n.len() > 1024) {
            errors.push(FieldError::invalid(
                "note",
                Value::Null,
                "can have at most 1024 characters",
            ));
        }
        let event_ns = crate::object::namespace(obj).unwrap_or_default();
        if let Some(ns) = str_at(obj, "regarding.namespace").filter(|ns| !ns.is_empty())
            && !event_ns.is_empty()
            && ns != event_ns
        {
            errors.push(FieldError::invalid(
                "regarding.namespace",
                json!(ns),
                "does not match event.namespace",
            ));
        }
        errors
    }

    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<FieldError> {
        Vec::new()
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        event_selectable_fields(obj)
    }

    fn selectable_paths(&self) -> Option<&'static [&'static str]> {
        None
    }

    fn columns(&self) -> &[Column] {
        EVENT_COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        event_cells(obj, ctx)
    }

    fn owns_name_column(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_shape_is_checked_and_printed() {
        let ev = json!({
            "apiVersion": "events.k8s.io/v1",
            "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2025-01-01T00:00:00.000000Z",
            "type": "Normal",
            "reason": "Started",
            "action": "Start",
            "reportingController": "kubelet",
            "reportingInstance": "node-1",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
            "note": "started",
        });
        assert!(EventStrategy.validate(&ev).is_empty());
        let now =
            chrono::DateTime::parse_from_rfc3339("2025-01-01T00:01:00Z").expect("time").to_utc();
        let cells = EventStrategy.cells(&ev, &TableContext { now });
        assert_eq!(cells[0], "60s");
        assert_eq!(cells[3], "pod/p");
        assert_eq!(cells[5], "kubelet, node-1");
        assert_eq!(cells[6], "started");
        let mut bad = ev.clone();
        bad.as_object_mut().map(|m| m.remove("action"));
        assert_eq!(EventStrategy.validate(&bad)[0].to_string(), "action: Required value");
    }
}
