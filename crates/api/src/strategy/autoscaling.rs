//! Horizontal pod autoscalers, served as `autoscaling/v2` (stored) and `autoscaling/v1`:
//! `pkg/apis/autoscaling/{v1,v2}/defaults.go`, the strategy and `printHorizontalPodAutoscaler`.

use serde_json::{Value, json};

use super::Strategy;
use super::util::{AGE, age, array_at, col, int_at, int_col, keep_status, reset_status, str_at};
use crate::catalog::conversion::HPA_V1;
use crate::object::default_path;
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `HorizontalPodAutoscaler`, in either served version.
#[derive(Debug, Clone, Copy, Default)]
pub struct HorizontalPodAutoscalerStrategy;

fn is_v1(obj: &Value) -> bool {
    str_at(obj, "apiVersion") == Some("autoscaling/v1")
}

/// The object in the `autoscaling/v2` shape.
fn as_v2(obj: &Value) -> std::borrow::Cow<'_, Value> {
    if is_v1(obj) {
        std::borrow::Cow::Owned(HPA_V1.to_stored(obj.clone()))
    } else {
        std::borrow::Cow::Borrowed(obj)
    }
}

const COLUMNS: &[Column] = &[
    col(
        "Reference",
        "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.",
    ),
    col(
        "Targets",
        "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond. If not set, the default metric will be set to 80% average CPU utilization.",
    ),
    col(
        "MinPods",
        "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available.",
    ),
    int_col(
        "MaxPods",
        "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.",
    ),
    int_col(
        "Replicas",
        "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
    ),
    AGE,
];

fn quantity(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "<unknown>".into(),
    }
}

/// `formatHPAMetrics`: at most two metrics, then `+ N more...`.
fn format_metrics(hpa: &Value) -> String {
    let specs = array_at(hpa, "spec.metrics");
    if specs.is_empty() {
        return "<none>".into();
    }
    let statuses = array_at(hpa, "status.currentMetrics");
    let mut list = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let status = statuses.get(i);
        let current = |source: &str, field: &str| {
            let v = status
                .and_then(|s| s.get(source))
                .and_then(|s| s.get("current"))
                .and_then(|c| c.get(field));
            quantity(v)
        };
        let target = |source: &str, field: &str| {
            spec.get(source).and_then(|s| s.get("target")).and_then(|t| t.get(field)).cloned()
        };
        let text = match spec.get("type").and_then(Value::as_str).unwrap_or_default() {
            kind @ ("External" | "Object") => {
                let source = if kind == "External" { "external" } else { "object" };
                match target(source, "averageValue") {
                    Some(avg) => format!(
                        "{}/{} (avg)",
                        current(source, "averageValue"),
                        quantity(Some(&avg))
                    ),
                    None => format!(
                        "{}/{}",
                        current(source, "value"),
                        quantity(target(source, "value").as_ref())
                    ),
                }
            }
            "Pods" => format!(
                "{}/{}",
                current("pods", "averageValue"),
                quantity(target("pods", "averageValue").as_ref())
            ),
            kind @ ("Resource" | "ContainerResource") => {
                let source = if kind == "Resource" { "resource" } else { "containerResource" };
                let name = spec
                    .get(source)
                    .and_then(|s| s.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = match (
                    kind,
                    spec.get(source).and_then(|s| s.get("container")).and_then(Value::as_str),
                ) {
                    ("ContainerResource", Some(c)) => format!("{name} of container \"{c}\""),
                    _ => name.to_string(),
                };
                match target(source, "averageValue") {
                    Some(avg) => format!(
                        "{name}: {}/{}",
                        current(source, "averageValue"),
                        quantity(Some(&avg))
                    ),
                    None => {
                        let current = status
                            .and_then(|s| s.get(source))
                            .and_then(|s| s.pointer("/current/averageUtilization"))
                            .and_then(Value::as_i64)
                            .map_or("<unknown>".to_string(), |u| format!("{u}%"));
                        let target = target(source, "averageUtilization")
                            .and_then(|t| t.as_i64())
                            .map_or("<auto>".to_string(), |u| format!("{u}%"));
                        format!("{name}: {current}/{target}")
                    }
                }
            }
            _ => "<unknown type>".into(),
        };
        list.push(text);
    }
    const MAX: usize = 2;
    let count = list.len();
    if count > MAX {
        list.truncate(MAX);
        format!("{} + {} more...", list.join(", "), count - MAX)
    } else {
        list.join(", ")
    }
}

fn scale_up_default() -> Value {
    json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ]})
}

fn scale_down_default() -> Value {
    json!({"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ]})
}

impl Strategy for HorizontalPodAutoscalerStrategy {
    fn default(&self, obj: &mut Value) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            return;
        }
        default_path(obj, "spec.minReplicas", json!(1));
        if is_v1(obj) {
            return;
        }
        if array_at(obj, "spec.metrics").is_empty() {
            crate::object::set_path(
                obj,
                "spec.metrics",
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            );
        }
        for (field, default) in
            [("scaleUp", scale_up_default()), ("scaleDown", scale_down_default())]
        {
            let at = format!("spec.behavior.{field}");
            match crate::object::path(obj, &at).filter(|v| v.is_object()) {
                None => crate::object::set_path(obj, &at, default),
                Some(_) => {
                    for key in ["policies", "selectPolicy", "stabilizationWindowSeconds"] {
                        if let Some(v) = default.get(key)
                            && (key != "stabilizationWindowSeconds" || field == "scaleUp")
                        {
                            default_path(obj, &format!("{at}.{key}"), v.clone());
                        }
                    }
                }
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({"currentReplicas": 0, "desiredReplicas": 0}));
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for field in ["kind", "name"] {
            if str_at(obj, &format!("spec.scaleTargetRef.{field}")).is_none_or(str::is_empty) {
                errors.push(FieldError::required(format!("spec.scaleTargetRef.{field}")));
            }
        }
        let min = int_at(obj, "spec.minReplicas");
        if let Some(m) = min.filter(|m| *m < 1) {
            errors.push(FieldError::invalid(
                "spec.minReplicas",
                json!(m),
                "must be greater than or equal to 1",
            ));
        }
        let max = int_at(obj, "spec.maxReplicas").unwrap_or(0);
        if max < 1 {
            errors.push(FieldError::invalid(
                "spec.maxReplicas",
                json!(max),
                "must be greater than 0",
            ));
        } else if min.is_some_and(|m| max < m) {
            errors.push(FieldError::invalid(
                "spec.maxReplicas",
                json!(max),
                "must be greater than or equal to `minReplicas`",
            ));
        }
        if let Some(t) = int_at(obj, "spec.targetCPUUtilizationPercentage").filter(|t| *t < 1) {
            errors.push(FieldError::invalid(
                "spec.targetCPUUtilizationPercentage",
                json!(t),
                "must be greater than or equal to 1",
            ));
        }
        errors
    }

    fn columns(&self) -> &[Column] {
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let hpa = as_v2(obj);
        let reference = format!(
            "{}/{}",
            str_at(&hpa, "spec.scaleTargetRef.kind").unwrap_or_default(),
            str_at(&hpa, "spec.scaleTargetRef.name").unwrap_or_default()
        );
        let min =
            int_at(&hpa, "spec.minReplicas").map_or(json!("<unset>"), |m| json!(m.to_string()));
        vec![
            json!(reference),
            json!(format_metrics(&hpa)),
            min,
            json!(int_at(&hpa, "spec.maxReplicas").unwrap_or(0)),
            json!(int_at(&hpa, "status.currentReplicas").unwrap_or(0)),
            age(obj, ctx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_defaults_and_row() {
        let mut hpa = json!({"apiVersion": "autoscaling/v2", "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5}});
        HorizontalPodAutoscalerStrategy.default(&mut hpa);
        let once = hpa.clone();
        HorizontalPodAutoscalerStrategy.default(&mut hpa);
        assert_eq!(hpa, once);
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 80);
        assert!(HorizontalPodAutoscalerStrategy.validate(&hpa).is_empty());
        let cells =
            HorizontalPodAutoscalerStrategy.cells(&hpa, &TableContext { now: chrono::Utc::now() });
        assert_eq!(
            cells[..5],
            [json!("Deployment/web"), json!("cpu: <unknown>/80%"), json!("1"), json!(5), json!(0)]
        );
    }

    #[test]
    fn v1_objects_print_through_v2() {
        let hpa = json!({"apiVersion": "autoscaling/v1", "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 4,
            "targetCPUUtilizationPercentage": 50}, "status": {"currentReplicas": 2, "currentCPUUtilizationPercentage": 30}});
        let cells =
            HorizontalPodAutoscalerStrategy.cells(&hpa, &TableContext { now: chrono::Utc::now() });
        assert_eq!(cells[1], "cpu: 30%/50%");
        let bad = json!({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 3, "maxReplicas": 2}});
        assert_eq!(
            HorizontalPodAutoscalerStrategy.validate(&bad)[0].to_string(),
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"
        );
    }
}
