//! Core events: `pkg/registry/core/event/strategy.go` and `printEvent`.

use serde_json::{Value, json};

use crate::strategy::Strategy;
use crate::strategy::util::{col, int_at, str_at, string_at};
use crate::table::{Column, TableContext, age};
use crate::validation::FieldError;

/// Rules of core `Event`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventStrategy;

/// Upstream's event table; `Name` comes last and only with `-o wide`.
pub(crate) const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
    col("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
    col("Reason", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
    col("Object", "regarding contains the object this Event is about. In most cases it's an Object reporting controller implements, e.g. ReplicaSetController implements ReplicaSets and this event is emitted because it acts on some changes in a ReplicaSet object."),
    col("Subobject", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.").wide(),
    col("Source", "The component reporting this event. Should be a short machine understandable string.").wide(),
    col("Message", "A human-readable description of the status of this operation."),
    col("First Seen", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)").wide(),
    col("Count", "The number of times this event has occurred.").wide(),
    Column { format: "name", ..col("Name", crate::table::NAME.description).wide() },
];

/// A core `v1` event, whichever version `obj` is served in.
fn as_core(obj: &Value) -> std::borrow::Cow<'_, Value> {
    if str_at(obj, "apiVersion") == Some("events.k8s.io/v1") {
        std::borrow::Cow::Owned(crate::catalog::conversion::EVENTS_V1.to_stored(obj.clone()))
    } else {
        std::borrow::Cow::Borrowed(obj)
    }
}

fn since(timestamp: Option<&str>, ctx: &TableContext) -> Option<String> {
    timestamp.filter(|t| !t.is_empty()).map(|t| age(Some(t), ctx.now))
}

/// The row of `printEvent` with `wide` set, for a core or `events.k8s.io` event.
pub(crate) fn event_cells(obj: &Value, ctx: &TableContext) -> Vec<Value> {
    let ev = as_core(obj);
    let first = since(str_at(&ev, "firstTimestamp"), ctx)
        .or_else(|| since(str_at(&ev, "eventTime"), ctx))
        .unwrap_or_else(|| "<unknown>".into());
    let mut last = since(str_at(&ev, "lastTimestamp"), ctx).unwrap_or_else(|| first.clone());
    let mut count = int_at(&ev, "count").unwrap_or(0);
    if ev.get("series").is_some_and(|s| !s.is_null()) {
        last = since(str_at(&ev, "series.lastObservedTime"), ctx)
            .unwrap_or_else(|| "<unknown>".into());
        count = int_at(&ev, "series.count").unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = string_at(&ev, "involvedObject.kind").to_lowercase();
    let target = match str_at(&ev, "involvedObject.name").filter(|n| !n.is_empty()) {
        Some(name) => format!("{kind}/{name}"),
        None => kind,
    };
    let first_non_empty = |a: String, b: String| if a.is_empty() { b } else { a };
    let component =
        first_non_empty(string_at(&ev, "source.component"), string_at(&ev, "reportingComponent"));
    let instance =
        first_non_empty(string_at(&ev, "source.host"), string_at(&ev, "reportingInstance"));
    let source = if instance.is_empty() { component } else { format!("{component}, {instance}") };
    vec![
        json!(last),
        json!(string_at(&ev, "type")),
        json!(string_at(&ev, "reason")),
        json!(target),
        json!(string_at(&ev, "involvedObject.fieldPath")),
        json!(source),
        json!(string_at(&ev, "message").trim()),
        json!(first),
        json!(count),
        json!(crate::object::name(&ev).unwrap_or_default()),
    ]
}

/// `ToSelectableFields` of events, for a core or `events.k8s.io` event.
pub(crate) fn event_selectable_fields(obj: &Value) -> Vec<(&'static str, String)> {
    let ev = as_core(obj);
    let field = |f: &str| string_at(&ev, f);
    let mut source = field("source.component");
    if source.is_empty() {
        source = field("reportingComponent");
    }
    vec![
        ("involvedObject.kind", field("involvedObject.kind")),
        ("involvedObject.namespace", field("involvedObject.namespace")),
        ("involvedObject.name", field("involvedObject.name")),
        ("involvedObject.uid", field("involvedObject.uid")),
        ("involvedObject.apiVersion", field("involvedObject.apiVersion")),
        ("involvedObject.resourceVersion", field("involvedObject.resourceVersion")),
        ("involvedObject.fieldPath", field("involvedObject.fieldPath")),
        ("reason", field("reason")),
        ("reportingComponent", field("reportingComponent")),
        ("source", source),
        ("type", field("type")),
    ]
}

impl Strategy for EventStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let event_ns = crate::object::namespace(obj).unwrap_or_default();
        if let Some(ns) = str_at(obj, "involvedObject.namespace").filter(|ns| !ns.is_empty())
            && !event_ns.is_empty()
            && ns != event_ns
        {
            errors.push(FieldError::invalid(
                "involvedObject.namespace",
                json!(ns),
                "does not match event.namespace",
            ));
        }
        errors
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
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn event_row_reads_like_kubectl() {
        let ev = json!({
            "metadata": {"name": "web.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "namespace": "default", "fieldPath": "spec.containers{web}"},
            "reason": "Pulled",
            "message": "Pulled image \n",
            "type": "Normal",
            "source": {"component": "kubelet", "host": "node-1"},
            "firstTimestamp": "2025-01-01T00:00:00Z",
            "lastTimestamp": "2025-01-01T00:05:00Z",
            "count": 2,
        });
        let ctx = TableContext {
            now: Utc.with_ymd_and_hms(2025, 1, 1, 0, 10, 0).single().expect("time"),
        };
        let cells = event_cells(&ev, &ctx);
        assert_eq!(cells.len(), EVENT_COLUMNS.len());
        assert_eq!(
            cells,
            [
                json!("5m"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{web}"),
                json!("kubelet, node-1"),
                json!("Pulled image"),
                json!("10m"),
                json!(2),
                json!("web.1"),
            ]
        );
        let fields = event_selectable_fields(&ev);
        assert!(fields.contains(&("source", "kubelet".to_string())));
        assert!(fields.contains(&("involvedObject.name", "web".to_string())));
    }
}
