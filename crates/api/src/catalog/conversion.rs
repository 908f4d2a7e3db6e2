//! Conversions between served versions and the stored ones, after upstream's
//! `pkg/apis/events/v1/conversion.go` and `pkg/apis/autoscaling/v1/conversion.go`.
//!
//! Both are written over JSON: fields the two versions share are kept as they are, renamed
//! fields move, and what only one version can express travels in the annotations upstream
//! uses for the same purpose, so that a round trip loses nothing.

use serde_json::{Map, Value, json};

use super::{Conversion, ConversionError};

/// `events.k8s.io/v1` events, stored as core `v1` events.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventsV1;

/// `autoscaling/v1` horizontal pod autoscalers, stored as `autoscaling/v2`.
#[derive(Debug, Clone, Copy, Default)]
pub struct HpaV1;

/// The conversion of `events.k8s.io/v1` events.
pub static EVENTS_V1: EventsV1 = EventsV1;
/// The conversion of `autoscaling/v1` horizontal pod autoscalers.
pub static HPA_V1: HpaV1 = HpaV1;

/// Field renames between `events.k8s.io/v1` (left) and core `v1` (right).
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
    ("reportingController", "reportingComponent"),
];

fn rename(obj: &mut Value, renames: &[(&str, &str)], forward: bool, api_version: &str) {
    if let Some(map) = obj.as_object_mut() {
        let moved: Vec<(String, Value)> = renames
            .iter()
            .filter_map(|(a, b)| {
                let (from, to) = if forward { (*a, *b) } else { (*b, *a) };
                map.remove(from).map(|v| (to.to_string(), v))
            })
            .collect();
        map.extend(moved);
        map.insert("apiVersion".into(), Value::String(api_version.into()));
    }
}

impl EventsV1 {
    /// From the served version to the stored one.
    pub fn to_stored(&self, mut obj: Value) -> Value {
        rename(&mut obj, EVENT_RENAMES, true, "v1");
        obj
    }

    /// From the stored version to the served one.
    pub fn to_served(&self, mut obj: Value) -> Value {
        rename(&mut obj, EVENT_RENAMES, false, "events.k8s.io/v1");
        obj
    }
}

impl Conversion for EventsV1 {
    fn to_stored(&self, obj: Value) -> Result<Value, ConversionError> {
        Ok(EventsV1::to_stored(self, obj))
    }

    fn to_served(&self, obj: Value) -> Result<Value, ConversionError> {
        Ok(EventsV1::to_served(self, obj))
    }
}

/// Upstream's round-trip annotations (`pkg/apis/autoscaling/annotations.go`).
pub const HPA_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// Current metrics kept by `autoscaling/v1` objects.
pub const HPA_CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// Conditions kept by `autoscaling/v1` objects.
pub const HPA_CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// Scaling behavior kept by `autoscaling/v1` objects.
pub const HPA_BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

const HPA_ANNOTATIONS: &[&str] = &[
    HPA_METRICS_ANNOTATION,
    HPA_CURRENT_METRICS_ANNOTATION,
    HPA_CONDITIONS_ANNOTATION,
    HPA_BEHAVIOR_ANNOTATION,
];

/// Removes the round-trip annotations, returning the ones that were there.
fn take_hpa_annotations(obj: &mut Value) -> Map<String, Value> {
    let mut taken = Map::new();
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return taken;
    };
    if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        for key in HPA_ANNOTATIONS {
            if let Some(v) = annotations.remove(*key) {
                taken.insert((*key).to_string(), v);
            }
        }
        if annotations.is_empty() {
            meta.remove("annotations");
        }
    }
    taken
}

fn set_annotation(obj: &mut Value, key: &str, value: &Value) {
    let meta = crate::object::metadata_mut(obj);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    if let Some(map) = annotations.as_object_mut() {
        map.insert(key.into(), Value::String(value.to_string()));
    }
}

fn parse_annotation(annotations: &Map<String, Value>, key: &str) -> Option<Value> {
    serde_json::from_str(annotations.get(key)?.as_str()?).ok()
}

fn is_cpu_resource(metric: &Value) -> bool {
    metric.get("type").and_then(Value::as_str) == Some("Resource")
        && metric.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
}

/// Copies the entries of `from` named in `keys` into `to` under new names.
fn copy_fields(from: &Value, to: &mut Map<String, Value>, keys: &[(&str, &str)]) {
    for (src, dst) in keys {
        if let Some(v) = from.pointer(src).filter(|v| !v.is_null()) {
            to.insert((*dst).to_string(), v.clone());
        }
    }
}

/// Copies the entries of `from` named in `keys` to new pointers inside `to`.
fn copy_to_pointers(from: &Value, to: &mut Value, keys: &[(&str, &str)]) {
    for (src, dst) in keys {
        if let Some(v) = from.get(*src).filter(|v| !v.is_null()) {
            let dotted = dst.trim_start_matches('/').replace('/', ".");
            crate::object::set_path(to, &dotted, v.clone());
        }
    }
}

/// One metric field mapping per metric type: (v2 pointer, v1 field), for specs or statuses.
fn metric_fields(kind: &str, status: bool) -> &'static [(&'static str, &'static str)] {
    match (kind, status) {
        ("Resource", false) => &[
            ("/name", "name"),
            ("/target/averageUtilization", "targetAverageUtilization"),
            ("/target/averageValue", "targetAverageValue"),
        ],
        ("Resource", true) => &[
            ("/name", "name"),
            ("/current/averageUtilization", "currentAverageUtilization"),
            ("/current/averageValue", "currentAverageValue"),
        ],
        ("ContainerResource", false) => &[
            ("/name", "name"),
            ("/container", "container"),
            ("/target/averageUtilization", "targetAverageUtilization"),
            ("/target/averageValue", "targetAverageValue"),
        ],
        ("ContainerResource", true) => &[
            ("/name", "name"),
            ("/container", "container"),
            ("/current/averageUtilization", "currentAverageUtilization"),
            ("/current/averageValue", "currentAverageValue"),
        ],
        ("Pods", false) => &[
            ("/metric/name", "metricName"),
            ("/metric/selector", "selector"),
            ("/target/averageValue", "targetAverageValue"),
        ],
        ("Pods", true) => &[
            ("/metric/name", "metricName"),
            ("/metric/selector", "selector"),
            ("/current/averageValue", "currentAverageValue"),
        ],
        ("Object", false) => &[
            ("/describedObject", "target"),
            ("/metric/name", "metricName"),
            ("/metric/selector", "selector"),
            ("/target/value", "targetValue"),
            ("/target/averageValue", "averageValue"),
        ],
        ("Object", true) => &[
            ("/describedObject", "target"),
            ("/metric/name", "metricName"),
            ("/metric/selector", "selector"),
            ("/current/value", "currentValue"),
            ("/current/averageValue", "averageValue"),
        ],
        ("External", false) => &[
            ("/metric/name", "metricName"),
            ("/metric/selector", "metricSelector"),
            ("/target/value", "targetValue"),
            ("/target/averageValue", "targetAverageValue"),
        ],
        ("External", true) => &[
            ("/metric/name", "metricName"),
            ("/metric/selector", "metricSelector"),
            ("/current/value", "currentValue"),
            ("/current/averageValue", "currentAverageValue"),
        ],
        _ => &[],
    }
}

/// The JSON field holding a metric type's source (`resource`, `containerResource`, ...).
fn source_field(kind: &str) -> &'static str {
    match kind {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        _ => "",
    }
}

/// An `autoscaling/v2` metric (spec or status) as `autoscaling/v1` writes it in annotations.
fn metric_to_v1(metric: &Value, status: bool) -> Value {
    let kind = metric.get("type").and_then(Value::as_str).unwrap_or_default();
    let field = source_field(kind);
    let mut out = Map::new();
    out.insert("type".into(), json!(kind));
    if let Some(source) = metric.get(field) {
        let mut inner = Map::new();
        copy_fields(source, &mut inner, metric_fields(kind, status));
        out.insert(field.into(), Value::Object(inner));
    }
    Value::Object(out)
}

/// An `autoscaling/v1` annotation metric back in the `autoscaling/v2` shape.
fn metric_from_v1(metric: &Value, status: bool) -> Value {
    let kind = metric.get("type").and_then(Value::as_str).unwrap_or_default();
    let field = source_field(kind);
    let mut out = json!({"type": kind});
    if let Some(source) = metric.get(field) {
        let mut inner = json!({});
        let reversed: Vec<(&str, &str)> =
            metric_fields(kind, status).iter().map(|(v2, v1)| (*v1, *v2)).collect();
        copy_to_pointers(source, &mut inner, &reversed);
        if !status {
            // v2 targets carry their type; v1 implied it by the field that was set.
            let target_type = if inner.pointer("/target/averageUtilization").is_some() {
                "Utilization"
            } else if inner.pointer("/target/averageValue").is_some() && kind != "Object" {
                "AverageValue"
            } else if inner.pointer("/target/value").is_some() {
                "Value"
            } else {
                "AverageValue"
            };
            crate::object::set_path(&mut inner, "target.type", json!(target_type));
        }
        out[field] = inner;
    }
    out
}

impl HpaV1 {
    /// From the served version to the stored one.
    pub fn to_stored(&self, mut obj: Value) -> Value {
        let annotations = take_hpa_annotations(&mut obj);
        let Some(map) = obj.as_object_mut() else {
            return obj;
        };
        map.insert("apiVersion".into(), json!("autoscaling/v2"));

        // spec: targetCPUUtilizationPercentage becomes a cpu Utilization metric, after the
        // metrics only v2 can express.
        if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
            let cpu = spec.remove("targetCPUUtilizationPercentage").filter(|v| !v.is_null());
            let mut metrics: Vec<Value> = parse_annotation(&annotations, HPA_METRICS_ANNOTATION)
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|m| metric_from_v1(m, false))
                .collect();
            if let Some(cpu) = cpu {
                metrics.push(json!({
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": cpu},
                    },
                }));
            }
            if !metrics.is_empty() {
                spec.insert("metrics".into(), Value::Array(metrics));
            }
            if let Some(behavior) = parse_annotation(&annotations, HPA_BEHAVIOR_ANNOTATION) {
                spec.insert("behavior".into(), behavior);
            }
        }

        // status: currentCPUUtilizationPercentage becomes a cpu current metric, unless the
        // annotation kept all of them.
        if let Some(status) = map.get_mut("status").and_then(Value::as_object_mut) {
            let cpu = status.remove("currentCPUUtilizationPercentage").filter(|v| !v.is_null());
            let kept = parse_annotation(&annotations, HPA_CURRENT_METRICS_ANNOTATION)
                .and_then(|v| v.as_array().cloned());
            let current: Vec<Value> = match (kept, cpu) {
                (Some(kept), _) => kept.iter().map(|m| metric_from_v1(m, true)).collect(),
                (None, Some(cpu)) => vec![json!({
                    "type": "Resource",
                    "resource": {"name": "cpu", "current": {"averageUtilization": cpu}},
                })],
                (None, None) => Vec::new(),
            };
            if !current.is_empty() {
                status.insert("currentMetrics".into(), Value::Array(current));
            }
            if let Some(conditions) = parse_annotation(&annotations, HPA_CONDITIONS_ANNOTATION) {
                status.insert("conditions".into(), conditions);
            }
        }
        obj
    }

    /// From the stored version to the served one.
    pub fn to_served(&self, mut obj: Value) -> Value {
        take_hpa_annotations(&mut obj);
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        let status = obj.get("status").cloned().unwrap_or(Value::Null);

        let metrics = spec.get("metrics").and_then(Value::as_array).cloned().unwrap_or_default();
        let cpu_target = metrics.iter().find(|m| is_cpu_resource(m)).and_then(|m| {
            m.pointer("/resource/target/averageUtilization").filter(|v| !v.is_null()).cloned()
        });
        let other: Vec<Value> = metrics
            .iter()
            .filter(|m| {
                !(is_cpu_resource(m)
                    && m.pointer("/resource/target/averageUtilization")
                        .is_some_and(|v| !v.is_null()))
            })
            .map(|m| metric_to_v1(m, false))
            .collect();
        let current =
            status.get("currentMetrics").and_then(Value::as_array).cloned().unwrap_or_default();
        let cpu_current = current.iter().filter(|m| is_cpu_resource(m)).find_map(|m| {
            m.pointer("/resource/current/averageUtilization").filter(|v| !v.is_null()).cloned()
        });

        if let Some(map) = obj.as_object_mut() {
            map.insert("apiVersion".into(), json!("autoscaling/v1"));
            if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("metrics");
                spec.remove("behavior");
                if let Some(cpu) = cpu_target {
                    spec.insert("targetCPUUtilizationPercentage".into(), cpu);
                }
            }
            if let Some(status) = map.get_mut("status").and_then(Value::as_object_mut) {
                status.remove("currentMetrics");
                status.remove("conditions");
                if let Some(cpu) = cpu_current {
                    status.insert("currentCPUUtilizationPercentage".into(), cpu);
                }
            }
        }
        if !other.is_empty() {
            set_annotation(&mut obj, HPA_METRICS_ANNOTATION, &Value::Array(other));
        }
        if !current.is_empty() {
            let v1: Vec<Value> = current.iter().map(|m| metric_to_v1(m, true)).collect();
            set_annotation(&mut obj, HPA_CURRENT_METRICS_ANNOTATION, &Value::Array(v1));
        }
        if let Some(behavior) = spec.get("behavior").filter(|v| !v.is_null()) {
            set_annotation(&mut obj, HPA_BEHAVIOR_ANNOTATION, behavior);
        }
        if let Some(conditions) =
            status.get("conditions").filter(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        {
            set_annotation(&mut obj, HPA_CONDITIONS_ANNOTATION, conditions);
        }
        obj
    }
}

impl Conversion for HpaV1 {
    fn to_stored(&self, obj: Value) -> Result<Value, ConversionError> {
        Ok(HpaV1::to_stored(self, obj))
    }

    fn to_served(&self, obj: Value) -> Result<Value, ConversionError> {
        Ok(HpaV1::to_served(self, obj))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_core_v1() {
        let served = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "e1", "namespace": "default"},
            "eventTime": "2024-01-01T00:00:00.000000Z",
            "reportingController": "kubelet",
            "reportingInstance": "node-1",
            "action": "Pulling",
            "reason": "Pulling",
            "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
            "note": "Pulling image",
            "type": "Normal",
            "deprecatedSource": {"component": "kubelet", "host": "node-1"},
            "deprecatedFirstTimestamp": "2024-01-01T00:00:00Z",
            "deprecatedLastTimestamp": "2024-01-01T00:01:00Z",
            "deprecatedCount": 3,
            "series": {"count": 2, "lastObservedTime": "2024-01-01T00:01:00.000000Z"},
        });
        let stored = EVENTS_V1.to_stored(served.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "Pulling image");
        assert_eq!(stored["source"]["component"], "kubelet");
        assert_eq!(stored["firstTimestamp"], "2024-01-01T00:00:00Z");
        assert_eq!(stored["count"], 3);
        assert_eq!(stored["reportingComponent"], "kubelet");
        assert!(stored.get("note").is_none() && stored.get("regarding").is_none());
        let back = EVENTS_V1.to_served(stored);
        let mut sorted_back: Vec<_> = back.as_object().into_iter().flatten().collect();
        let mut sorted_served: Vec<_> = served.as_object().into_iter().flatten().collect();
        sorted_back.sort_by_key(|(k, _)| k.as_str());
        sorted_served.sort_by_key(|(k, _)| k.as_str());
        assert_eq!(sorted_back, sorted_served);
    }

    #[test]
    fn hpa_v1_cpu_target_becomes_a_utilization_metric() {
        let v1 = json!({
            "apiVersion": "autoscaling/v1",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "targetCPUUtilizationPercentage": 50,
            },
            "status": {"currentReplicas": 2, "desiredReplicas": 2, "currentCPUUtilizationPercentage": 40},
        });
        let v2 = HPA_V1.to_stored(v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}])
        );
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            40
        );
        let back = HPA_V1.to_served(v2);
        assert_eq!(back["spec"], v1["spec"]);
        assert_eq!(back["status"]["currentCPUUtilizationPercentage"], 40);
        assert_eq!(back["apiVersion"], "autoscaling/v1");
    }

    #[test]
    fn hpa_v2_only_fields_survive_a_v1_round_trip() {
        let v2 = json!({
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 5,
                "metrics": [
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
            },
            "status": {
                "currentReplicas": 1,
                "desiredReplicas": 1,
                "conditions": [{"type": "AbleToScale", "status": "True"}],
            },
        });
        let v1 = HPA_V1.to_served(v2.clone());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 70);
        assert!(v1["spec"].get("metrics").is_none());
        let annotations = &v1["metadata"]["annotations"];
        assert!(annotations[HPA_METRICS_ANNOTATION].as_str().is_some_and(|s| s.contains("qps")));
        assert!(annotations[HPA_CONDITIONS_ANNOTATION].is_string());
        assert!(annotations[HPA_BEHAVIOR_ANNOTATION].is_string());
        let back = HPA_V1.to_stored(v1);
        assert_eq!(back["spec"], v2["spec"]);
        assert_eq!(back["status"], v2["status"]);
        assert_eq!(back["metadata"], v2["metadata"]);
    }
}
