//! Rules of the `admissionregistration.k8s.io` resources: webhook configurations and
//! validating admission policies with their bindings.

use serde_json::{Value, json};

use super::Strategy;
use super::util::{AGE, age, array_at, col, default_field, each_mut, int_col, keep_status, str_at};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `MutatingWebhookConfiguration`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MutatingWebhookConfigurationStrategy;

/// Rules of `ValidatingWebhookConfiguration`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidatingWebhookConfigurationStrategy;

/// Rules of `ValidatingAdmissionPolicy`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidatingAdmissionPolicyStrategy;

/// Rules of `ValidatingAdmissionPolicyBinding`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidatingAdmissionPolicyBindingStrategy;

const WEBHOOK_COLUMNS: &[Column] = &[
    int_col(
        "Webhooks",
        "Webhooks indicates the number of webhooks registered in this configuration",
    ),
    AGE,
];

/// `SetDefaults_ValidatingWebhook` / `SetDefaults_MutatingWebhook` and what nests in them.
fn default_webhook(w: &mut Value, mutating: bool) {
    if !w.is_object() {
        return;
    }
    default_field(w, "failurePolicy", json!("Fail"));
    default_field(w, "matchPolicy", json!("Equivalent"));
    default_field(w, "namespaceSelector", json!({}));
    default_field(w, "objectSelector", json!({}));
    default_field(w, "timeoutSeconds", json!(10));
    if mutating {
        default_field(w, "reinvocationPolicy", json!("Never"));
    }
    each_mut(w, "rules", |r| {
        if r.is_object() {
            default_field(r, "scope", json!("*"));
        }
    });
    if let Some(service) = w.pointer_mut("/clientConfig/service").filter(|s| s.is_object()) {
        default_field(service, "port", json!(443));
    }
}

fn validate_webhooks(obj: &Value, errors: &mut Vec<FieldError>) {
    let mut names = std::collections::BTreeSet::new();
    for (i, w) in array_at(obj, "webhooks").iter().enumerate() {
        let at = format!("webhooks[{i}]");
        match w.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) {
            None => errors.push(FieldError::required(format!("{at}.name"))),
            Some(name) => {
                if !names.insert(name) {
                    errors.push(FieldError::duplicate(format!("{at}.name"), json!(name)));
                } else if name.split('.').count() < 3 {
                    errors.push(FieldError::invalid(
                        format!("{at}.name"),
                        json!(name),
                        "should be a domain with at least three segments separated by dots",
                    ));
                }
            }
        }
        if w.get("sideEffects").is_none_or(Value::is_null) {
            errors.push(FieldError::required(format!("{at}.sideEffects")));
        }
        if w.get("admissionReviewVersions").and_then(Value::as_array).is_none_or(Vec::is_empty) {
            errors.push(FieldError::required(format!("{at}.admissionReviewVersions")));
        }
        let config = w.get("clientConfig");
        let has_url = config.and_then(|c| c.get("url")).is_some_and(|u| !u.is_null());
        let has_service = config.and_then(|c| c.get("service")).is_some_and(|s| !s.is_null());
        if has_url == has_service {
            errors.push(FieldError::required(format!("{at}.clientConfig")));
        }
    }
}

fn webhook_cells(obj: &Value, ctx: &TableContext) -> Vec<Value> {
    vec![json!(array_at(obj, "webhooks").len()), age(obj, ctx)]
}

impl Strategy for MutatingWebhookConfigurationStrategy {
    fn default(&self, obj: &mut Value) {
        each_mut(obj, "webhooks", |w| default_webhook(w, true));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_webhooks(obj, &mut errors);
        errors
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn columns(&self) -> &[Column] {
        WEBHOOK_COLUMNS
    }
    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        webhook_cells(obj, ctx)
    }
}

impl Strategy for ValidatingWebhookConfigurationStrategy {
    fn default(&self, obj: &mut Value) {
        each_mut(obj, "webhooks", |w| default_webhook(w, false));
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_webhooks(obj, &mut errors);
        errors
    }
    fn tracks_generation(&self) -> bool {
        true
    }
    fn columns(&self) -> &[Column] {
        WEBHOOK_COLUMNS
    }
    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        webhook_cells(obj, ctx)
    }
}

fn default_match_resources(m: &mut Value) {
    if !m.is_object() {
        return;
    }
    default_field(m, "matchPolicy", json!("Equivalent"));
    default_field(m, "namespaceSelector", json!({}));
    default_field(m, "objectSelector", json!({}));
    for rules in ["resourceRules", "excludeResourceRules"] {
        each_mut(m, rules, |r| {
            if r.is_object() {
                default_field(r, "scope", json!("*"));
            }
        });
    }
}

impl Strategy for ValidatingAdmissionPolicyStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
            default_field(spec, "failurePolicy", json!("Fail"));
            if let Some(m) = spec.get_mut("matchConstraints") {
                default_match_resources(m);
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if array_at(obj, "spec.validations").is_empty()
            && array_at(obj, "spec.auditAnnotations").is_empty()
        {
            errors.push(FieldError::required("spec.validations"));
        }
        for (i, v) in array_at(obj, "spec.validations").iter().enumerate() {
            if v.get("expression").and_then(Value::as_str).is_none_or(|e| e.trim().is_empty()) {
                errors.push(FieldError::required(format!("spec.validations[{i}].expression")));
            }
        }
        if obj.pointer("/spec/matchConstraints/resourceRules").is_none() {
            errors.push(FieldError::required("spec.matchConstraints.resourceRules"));
        }
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            int_col(
                "Validations",
                "Validations indicates the number of validation rules defined in this configuration",
            ),
            col(
                "ParamKind",
                "ParamKind specifies the kind of resources used to parameterize this policy",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let param_kind = match obj.pointer("/spec/paramKind").filter(|p| p.is_object()) {
            Some(p) => format!(
                "{}/{}",
                p.get("apiVersion").and_then(Value::as_str).unwrap_or_default(),
                p.get("kind").and_then(Value::as_str).unwrap_or_default()
            ),
            None => "<unset>".into(),
        };
        vec![json!(array_at(obj, "spec.validations").len()), json!(param_kind), age(obj, ctx)]
    }
}

impl Strategy for ValidatingAdmissionPolicyBindingStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(m) = obj.pointer_mut("/spec/matchResources") {
            default_match_resources(m);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if str_at(obj, "spec.policyName").is_none_or(str::is_empty) {
            errors.push(FieldError::required("spec.policyName"));
        }
        let actions = array_at(obj, "spec.validationActions");
        if actions.is_empty() {
            errors.push(FieldError::required("spec.validationActions"));
        }
        for (i, a) in actions.iter().enumerate() {
            let a = a.as_str().unwrap_or_default();
            if !["Deny", "Warn", "Audit"].contains(&a) {
                errors.push(FieldError::not_supported(
                    format!("spec.validationActions[{i}]"),
                    json!(a),
                    &["Audit", "Deny", "Warn"],
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
            col(
                "PolicyName",
                "PolicyName indicates the policy definition which the policy binding binded to",
            ),
            col(
                "ParamRef",
                "ParamRef indicates the param resource which sets the configration param",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let param = match obj.pointer("/spec/paramRef").filter(|p| p.is_object()) {
            None => "<unset>".to_string(),
            Some(p) => {
                let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
                let ns = p.get("namespace").and_then(Value::as_str).unwrap_or_default();
                if !name.is_empty() {
                    if ns.is_empty() { format!("*/{name}") } else { format!("{ns}/{name}") }
                } else {
                    super::util::format_label_selector(p.get("selector"))
                }
            }
        };
        vec![json!(str_at(obj, "spec.policyName").unwrap_or_default()), json!(param), age(obj, ctx)]
    }
}
