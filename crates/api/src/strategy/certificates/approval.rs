//! `certificatesigningrequests/approval`: the view through which a CSR is approved or denied
//! (`kubectl certificate approve|deny`), as upstream's `csrApprovalStrategy`: an update changes
//! only `status.conditions`; `Approved` and `Denied` exclude each other and, once set, stay.

use serde_json::{Value, json};

use crate::StatusError;
use crate::validation::FieldError;

fn conditions(obj: &Value) -> Vec<Value> {
    obj.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default()
}

fn kind(condition: &Value) -> &str {
    condition.get("type").and_then(Value::as_str).unwrap_or_default()
}

/// The new CSR: `old` (served) with the conditions of `view`, their missing timestamps set to
/// `now`; refused as upstream's validation when the conditions are inconsistent.
pub fn merge(old: &Value, view: &Value, now: &str) -> Result<Value, StatusError> {
    let name = old.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let mut new_conditions = conditions(view);
    let mut errors = Vec::new();
    for (i, c) in new_conditions.iter_mut().enumerate() {
        let t = kind(c).to_string();
        if t.is_empty() {
            errors.push(FieldError::required(format!("status.conditions[{i}].type")));
        }
        if matches!(t.as_str(), "Approved" | "Denied")
            && c.get("status").and_then(Value::as_str) != Some("True")
        {
            errors.push(FieldError::not_supported(
                format!("status.conditions[{i}].status"),
                c.get("status").cloned().unwrap_or(json!("")),
                &["True"],
            ));
        }
        if let Some(map) = c.as_object_mut() {
            for field in ["lastUpdateTime", "lastTransitionTime"] {
                if map.get(field).is_none_or(Value::is_null) {
                    map.insert(field.into(), json!(now));
                }
            }
            map.entry("status").or_insert_with(|| json!("True"));
        }
    }
    let has = |list: &[Value], t: &str| list.iter().any(|c| kind(c) == t);
    if has(&new_conditions, "Approved") && has(&new_conditions, "Denied") {
        let i = new_conditions
            .iter()
            .rposition(|c| matches!(kind(c), "Approved" | "Denied"))
            .unwrap_or(0);
        errors.push(FieldError::invalid(
            format!("status.conditions[{i}].type"),
            json!(kind(&new_conditions[i])),
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
    let old_conditions = conditions(old);
    for t in ["Approved", "Denied", "Failed"] {
        if has(&old_conditions, t) && !has(&new_conditions, t) {
            errors.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type {t:?}"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(StatusError::invalid(
            "certificates.k8s.io",
            "CertificateSigningRequest",
            name,
            &errors,
        ));
    }
    let mut new = old.clone();
    if !new.get("status").is_some_and(Value::is_object) {
        new["status"] = json!({});
    }
    new["status"]["conditions"] = Value::Array(new_conditions);
    Ok(new)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn approval_changes_only_the_conditions() {
        let old = json!({"metadata": {"name": "c"}, "spec": {"username": "jane"}, "status": {}});
        let view = json!({"metadata": {"name": "c"}, "spec": {"username": "mallory"},
            "status": {"certificate": "Zm9v", "conditions": [{"type": "Approved", "status": "True", "reason": "KubectlApprove"}]}});
        let new = merge(&old, &view, "now").unwrap();
        assert_eq!(new["spec"]["username"], "jane");
        assert!(new["status"].get("certificate").is_none());
        assert_eq!(new["status"]["conditions"][0]["lastUpdateTime"], "now");
    }

    #[test]
    fn approved_and_denied_exclude_each_other_and_stay() {
        let approved = json!({"metadata": {"name": "c"}, "status": {"conditions": [{"type": "Approved", "status": "True"}]}});
        let both = json!({"status": {"conditions": [{"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]}});
        let e = merge(&approved, &both, "now").unwrap_err();
        assert_eq!(e.code(), 422);
        assert!(
            e.message.contains("Approved and Denied conditions are mutually exclusive"),
            "{}",
            e.message
        );
        let removed = merge(&approved, &json!({"status": {"conditions": []}}), "now").unwrap_err();
        assert!(
            removed.message.contains("updates may not remove a condition of type \"Approved\""),
            "{}",
            removed.message
        );
    }
}
