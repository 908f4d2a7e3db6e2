//! Pod disruption budgets: `pkg/registry/policy/poddisruptionbudget/strategy.go` and
//! `printPodDisruptionBudget`.

use serde_json::{Value, json};

use super::Strategy;
use super::util::{AGE, age, col, int_cell, int_col, keep_status, reset_status};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `PodDisruptionBudget`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodDisruptionBudgetStrategy;

fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".into(),
    }
}

impl Strategy for PodDisruptionBudgetStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(
            obj,
            json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}),
        );
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let set = |f: &str| obj.pointer(&format!("/spec/{f}")).is_some_and(|v| !v.is_null());
        if set("minAvailable") && set("maxUnavailable") {
            errors.push(FieldError::invalid(
                "spec",
                obj.get("spec").cloned().unwrap_or(Value::Null),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        for field in ["minAvailable", "maxUnavailable"] {
            if let Some(n) =
                obj.pointer(&format!("/spec/{field}")).and_then(Value::as_i64).filter(|n| *n < 0)
            {
                errors.push(FieldError::invalid(
                    format!("spec.{field}"),
                    json!(n),
                    "must be greater than or equal to 0",
                ));
            }
        }
        if let Some(p) = obj.pointer("/spec/unhealthyPodEvictionPolicy").and_then(Value::as_str) {
            let allowed = ["AlwaysAllow", "IfHealthyBudget"];
            if !allowed.contains(&p) {
                errors.push(FieldError::not_supported(
                    "spec.unhealthyPodEvictionPolicy",
                    json!(p),
                    &allowed,
                ));
            }
        }
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col("Min Available", "The minimum number of pods that must be available."),
            col("Max Unavailable", "The maximum number of pods that may be unavailable."),
            int_col(
                "Allowed Disruptions",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![
            json!(int_or_string(obj.pointer("/spec/minAvailable"))),
            json!(int_or_string(obj.pointer("/spec/maxUnavailable"))),
            int_cell(obj, "status.disruptionsAllowed"),
            age(obj, ctx),
        ]
    }
}
