//! Certificate signing requests: `pkg/registry/certificates/certificates/strategy.go` and
//! `printCertificateSigningRequest`.

mod approval;
mod requester;

use serde_json::{Value, json};

use super::util::{AGE, age, array_at, col, int_at, keep_status, reset_status, str_at};
use super::{Requester, Strategy};
use crate::StatusError;
use crate::table::{Column, TableContext, human_duration};
use crate::validation::FieldError;

/// Rules of `CertificateSigningRequest`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CertificateSigningRequestStrategy;

/// `extractCSRStatus`: Denied/Approved/Pending, then `,Failed` and `,Issued`.
fn csr_condition(obj: &Value) -> String {
    let has = |t: &str| {
        array_at(obj, "status.conditions")
            .iter()
            .any(|c| c.get("type").and_then(Value::as_str) == Some(t))
    };
    let mut status = if has("Denied") {
        "Denied".to_string()
    } else if has("Approved") {
        "Approved".to_string()
    } else {
        "Pending".to_string()
    };
    if has("Failed") {
        status.push_str(",Failed");
    }
    if str_at(obj, "status.certificate").is_some_and(|c| !c.is_empty()) {
        status.push_str(",Issued");
    }
    status
}

impl Strategy for CertificateSigningRequestStrategy {
    fn part_subresources(&self) -> &'static [&'static str] {
        &["approval"]
    }

    fn merge_subresource(
        &self,
        name: &str,
        old: &Value,
        view: &Value,
        now: &str,
    ) -> Result<Value, StatusError> {
        match name {
            "approval" => approval::merge(old, view, now),
            other => Err(super::no_merge_rule(other)),
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, json!({}));
    }

    fn record_requester(&self, obj: &mut Value, requester: &Requester<'_>) {
        requester::record(obj, requester);
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // The main resource changes neither spec nor status; approval and status have their
        // own subresources.
        keep_status(new, old);
        if let (Some(map), Some(spec)) = (new.as_object_mut(), old.get("spec")) {
            map.insert("spec".into(), spec.clone());
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if str_at(obj, "spec.request").is_none_or(str::is_empty) {
            errors.push(FieldError::required("spec.request"));
        }
        if str_at(obj, "spec.signerName").is_none_or(str::is_empty) {
            errors.push(FieldError::required("spec.signerName"));
        }
        if let Some(s) = int_at(obj, "spec.expirationSeconds").filter(|s| *s < 600) {
            errors.push(FieldError::invalid(
                "spec.expirationSeconds",
                json!(s),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
        errors
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            AGE,
            col("SignerName", "Name of the signer that this request should be signed by"),
            col("Requestor", "Name of the user that requested this certificate"),
            col("RequestedDuration", "Requested duration for issued certificates"),
            col("Condition", "Condition of the request"),
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let signer = str_at(obj, "spec.signerName").filter(|s| !s.is_empty()).unwrap_or("<none>");
        let duration =
            int_at(obj, "spec.expirationSeconds").map_or("<none>".to_string(), human_duration);
        vec![
            age(obj, ctx),
            json!(signer),
            json!(str_at(obj, "spec.username").unwrap_or_default()),
            json!(duration),
            json!(csr_condition(obj)),
        ]
    }
}
