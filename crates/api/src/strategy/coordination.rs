//! Leases: `printLease`.

use serde_json::{Value, json};

use super::Strategy;
use super::util::{AGE, age, col, int_at, str_at};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `Lease`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LeaseStrategy;

impl Strategy for LeaseStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for field in ["leaseDurationSeconds", "leaseTransitions"] {
            let at = format!("spec.{field}");
            if let Some(n) = int_at(obj, &at) {
                let bad = if field == "leaseDurationSeconds" { n <= 0 } else { n < 0 };
                if bad {
                    let rule = if field == "leaseDurationSeconds" {
                        "must be greater than 0"
                    } else {
                        "must be greater than or equal to 0"
                    };
                    errors.push(FieldError::invalid(at, json!(n), rule));
                }
            }
        }
        errors
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col(
                "Holder",
                "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![json!(str_at(obj, "spec.holderIdentity").unwrap_or_default()), age(obj, ctx)]
    }
}
