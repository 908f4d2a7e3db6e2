//! ValidatingAdmissionPolicies without I/O, as upstream's `validatingadmissionpolicy` plugin:
//! a policy ([`Policy`], compiled once) applies through each of its bindings ([`Binding`]) to
//! the writes both match ([`Policy::applies`], [`Binding::applies`]); its CEL validations are
//! evaluated over `object`, `oldObject`, `request`, `params`, `namespaceObject` and
//! `variables` ([`evaluate`]); a failed validation refuses the write when the binding's
//! `validationActions` hold `Deny` ([`refusal`], worded as upstream's), warns with `Warn`.
//!
//! The API server finds the params (`paramKind` + the binding's `paramRef`) and the namespace
//! object in its caches and passes them in.

pub mod cel;

use k8s_openapi::api::admissionregistration::v1::{
    MatchResources, ParamRef, ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use krust_api::{Reason, StatusError};
use serde_json::{Value, json};

use crate::webhook::matching::{self, MatchPolicy, Rule};
use crate::webhook::{FailurePolicy, Request, variables};
use crate::{Attributes, ClusterView};
use cel::Expression;

/// One validation of a policy, compiled.
#[derive(Debug)]
pub struct Validation {
    /// `expression`.
    pub expression: Expression,
    /// `message`.
    pub message: Option<String>,
    /// `messageExpression`.
    pub message_expression: Option<Expression>,
    /// `reason` (absent: `Invalid`).
    pub reason: Option<String>,
}

/// Which writes a policy or a binding applies to (`matchConstraints`, `matchResources`).
#[derive(Debug, Default)]
pub struct Matcher {
    /// `resourceRules` (empty in a binding: whatever the policy matches).
    pub rules: Vec<Rule>,
    /// `excludeResourceRules`.
    pub exclude: Vec<Rule>,
    /// `matchPolicy`.
    pub match_policy: MatchPolicy,
    /// `namespaceSelector`.
    pub namespace_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// `objectSelector`.
    pub object_selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
}

impl Matcher {
    fn new(resources: &MatchResources) -> Self {
        Self {
            rules: resources.resource_rules.iter().flatten().map(Rule::from).collect(),
            exclude: resources.exclude_resource_rules.iter().flatten().map(Rule::from).collect(),
            match_policy: MatchPolicy::parse(resources.match_policy.as_deref()),
            namespace_selector: resources.namespace_selector.clone(),
            object_selector: resources.object_selector.clone(),
        }
    }

    /// Whether the write is matched; `rules_required`: an empty rule list matches nothing
    /// (policies) rather than everything (bindings).
    fn matches(
        &self,
        request: &Request<'_>,
        cluster: &dyn ClusterView,
        rules_required: bool,
    ) -> Result<bool, StatusError> {
        let attributes = request.attributes;
        let rules = if self.rules.is_empty() {
            !rules_required
        } else {
            matching::any_rule_matches(&self.rules, attributes, self.match_policy)
        };
        Ok(rules
            && !matching::any_rule_matches(&self.exclude, attributes, self.match_policy)
            && matching::object_matches(self.object_selector.as_ref(), request.object, request.old)
            && matching::namespace_matches(
                self.namespace_selector.as_ref(),
                attributes,
                request.object,
                request.old,
                cluster,
            )?)
    }
}

/// A ValidatingAdmissionPolicy, compiled.
#[derive(Debug)]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// What an expression that fails to evaluate does (absent: `Fail`).
    pub failure_policy: FailurePolicy,
    /// `paramKind`: `(apiVersion, kind)` of its params, if it takes any.
    pub param_kind: Option<(String, String)>,
    /// `matchConstraints`.
    pub constraints: Matcher,
    /// `matchConditions`.
    pub match_conditions: Vec<(String, Expression)>,
    /// `variables`, in order.
    pub variables: Vec<(String, Expression)>,
    /// `validations`.
    pub validations: Vec<Validation>,
}

impl Policy {
    /// Compiles a policy.
    pub fn new(policy: &ValidatingAdmissionPolicy) -> Self {
        let spec = policy.spec.as_ref();
        Self {
            name: policy.metadata.name.clone().unwrap_or_default(),
            failure_policy: FailurePolicy::parse(spec.and_then(|s| s.failure_policy.as_deref())),
            param_kind: spec.and_then(|s| s.param_kind.as_ref()).map(|p| {
                (p.api_version.clone().unwrap_or_default(), p.kind.clone().unwrap_or_default())
            }),
            constraints: spec
                .and_then(|s| s.match_constraints.as_ref())
                .map(Matcher::new)
                .unwrap_or_default(),
            match_conditions: spec
                .and_then(|s| s.match_conditions.as_ref())
                .into_iter()
                .flatten()
                .map(|c| (c.name.clone(), Expression::compile(&c.expression)))
                .collect(),
            variables: spec
                .and_then(|s| s.variables.as_ref())
                .into_iter()
                .flatten()
                .map(|v| (v.name.clone(), Expression::compile(&v.expression)))
                .collect(),
            validations: spec
                .and_then(|s| s.validations.as_ref())
                .into_iter()
                .flatten()
                .map(|v| Validation {
                    expression: Expression::compile(&v.expression),
                    message: v.message.clone().filter(|m| !m.is_empty()),
                    message_expression: v
                        .message_expression
                        .as_deref()
                        .filter(|m| !m.is_empty())
                        .map(Expression::compile),
                    reason: v.reason.clone().filter(|r| !r.is_empty()),
                })
                .collect(),
        }
    }

    /// Whether the policy's `matchConstraints` cover the write (writes to admission
    /// configuration itself are exempt, as upstream's).
    pub fn applies(
        &self,
        request: &Request<'_>,
        cluster: &dyn ClusterView,
    ) -> Result<bool, StatusError> {
        if matching::is_exempt_from_webhooks(request.attributes) {
            return Ok(false);
        }
        self.constraints.matches(request, cluster, true)
    }
}

/// A ValidatingAdmissionPolicyBinding.
#[derive(Debug)]
pub struct Binding {
    /// Its name.
    pub name: String,
    /// The policy it binds.
    pub policy_name: String,
    /// `paramRef`.
    pub param_ref: Option<ParamRef>,
    /// `matchResources` (absent: everything the policy matches).
    pub resources: Option<Matcher>,
    /// `validationActions` hold `Deny`.
    pub deny: bool,
    /// `validationActions` hold `Warn`.
    pub warn: bool,
}

impl Binding {
    /// Reads a binding.
    pub fn new(binding: &ValidatingAdmissionPolicyBinding) -> Self {
        let spec = binding.spec.as_ref();
        let actions = spec.and_then(|s| s.validation_actions.clone()).unwrap_or_default();
        Self {
            name: binding.metadata.name.clone().unwrap_or_default(),
            policy_name: spec.and_then(|s| s.policy_name.clone()).unwrap_or_default(),
            param_ref: spec.and_then(|s| s.param_ref.clone()),
            resources: spec.and_then(|s| s.match_resources.as_ref()).map(Matcher::new),
            deny: actions.iter().any(|a| a == "Deny"),
            warn: actions.iter().any(|a| a == "Warn"),
        }
    }

    /// Whether the binding's `matchResources` cover the write.
    pub fn applies(
        &self,
        request: &Request<'_>,
        cluster: &dyn ClusterView,
    ) -> Result<bool, StatusError> {
        match &self.resources {
            None => Ok(true),
            Some(m) => m.matches(request, cluster, false),
        }
    }

    /// Whether a missing param refuses the write (`parameterNotFoundAction: Deny`, the
    /// default) rather than letting it through.
    pub fn denies_without_params(&self) -> bool {
        self.param_ref
            .as_ref()
            .and_then(|p| p.parameter_not_found_action.as_deref())
            .is_none_or(|a| a == "Deny")
    }
}

/// A failed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What is said (`failed expression: EXPR` when the validation has no message).
    pub message: String,
    /// The reason (`Invalid` unless the validation says otherwise).
    pub reason: String,
}

/// Evaluates the policy's validations for one write and one param (`None`: no params),
/// returning the failures (empty: the write passes). An expression that fails to evaluate is
/// a failure under `failurePolicy: Fail` and ignored under `Ignore`; so is a match condition.
pub fn evaluate(
    policy: &Policy,
    request: &Request<'_>,
    params: Option<&Value>,
    namespace: Option<&Value>,
) -> Vec<Failure> {
    let mut vars = variables(request, params, namespace);
    let error = |message: String| Failure { message, reason: "Invalid".into() };
    for (name, condition) in &policy.match_conditions {
        match condition.evaluate_bool(&vars) {
            Ok(true) => {}
            Ok(false) => return Vec::new(),
            Err(_) if policy.failure_policy == FailurePolicy::Ignore => return Vec::new(),
            Err(e) => {
                return vec![error(format!("failed to evaluate matchCondition '{name}': {e}"))];
            }
        }
    }
    if !policy.variables.is_empty() {
        let mut computed = std::collections::HashMap::new();
        for (name, expression) in &policy.variables {
            if let Ok(value) = expression.evaluate(&vars) {
                computed.insert(name.clone(), value);
                vars.set_cel("variables", ::cel::Value::Map(computed.clone().into()));
            }
        }
    }
    let mut failures = Vec::new();
    for validation in &policy.validations {
        let expression = validation.expression.source.trim();
        match validation.expression.evaluate_bool(&vars) {
            Ok(true) => {}
            Ok(false) => {
                let from_expression = validation
                    .message_expression
                    .as_ref()
                    .and_then(|m| m.evaluate_string(&vars).ok())
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty() && !m.contains('\n'));
                let message = from_expression
                    .or_else(|| validation.message.clone())
                    .unwrap_or_else(|| format!("failed expression: {expression}"));
                let reason = validation.reason.clone().unwrap_or_else(|| "Invalid".into());
                failures.push(Failure { message, reason });
            }
            Err(_) if policy.failure_policy == FailurePolicy::Ignore => {}
            Err(e) => {
                failures.push(error(format!("expression '{expression}' resulted in error: {e}")))
            }
        }
    }
    failures
}

/// `plural.group`, or `plural` for the core group.
fn qualified(attributes: &Attributes<'_>) -> String {
    if attributes.group.is_empty() {
        attributes.resource.to_string()
    } else {
        format!("{}.{}", attributes.resource, attributes.group)
    }
}

fn reason_code(reason: &str) -> (u16, Reason) {
    match reason {
        "Unauthorized" => (401, Reason::Unauthorized),
        "Forbidden" => (403, Reason::Forbidden),
        "RequestEntityTooLarge" => (413, Reason::RequestEntityTooLarge),
        _ => (422, Reason::Invalid),
    }
}

/// The refusal of a write by a policy through a binding, as upstream's:
/// `<resource> "<name>" is forbidden: ValidatingAdmissionPolicy '<policy>' with binding
/// '<binding>' denied request: <message>`, with the failure's reason (422 for `Invalid`).
pub fn refusal(
    attributes: &Attributes<'_>,
    name: &str,
    policy: &str,
    binding: &str,
    failure: &Failure,
) -> StatusError {
    let why = format!(
        "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {}",
        failure.message
    );
    let resource = qualified(attributes);
    let message = if name.is_empty() {
        format!("{resource} is forbidden: {why}")
    } else {
        format!("{resource} \"{name}\" is forbidden: {why}")
    };
    let (code, reason) = reason_code(&failure.reason);
    let mut details = json!({"group": attributes.group, "kind": attributes.resource, "causes": [{"message": why}]});
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    StatusError { details: Some(details), ..StatusError::with_code(code, reason, message) }
}

/// The refusal when a binding's params are missing and `parameterNotFoundAction` is `Deny`.
pub fn missing_params(
    attributes: &Attributes<'_>,
    name: &str,
    policy: &str,
    binding: &str,
) -> StatusError {
    refusal(
        attributes,
        name,
        policy,
        binding,
        &Failure {
            message: "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction".into(),
            reason: "Invalid".into(),
        },
    )
}

/// The warning of a failed validation under `validationActions: [Warn]`, as upstream's.
pub fn warning(policy: &str, binding: &str, failure: &Failure) -> String {
    format!(
        "Validation failed for ValidatingAdmissionPolicy '{policy}' with binding '{binding}': {}",
        failure.message
    )
}

#[cfg(test)]
mod tests;
