//! Admission webhooks without I/O, as upstream's `k8s.io/apiserver/pkg/admission/plugin/webhook`:
//! which webhooks of the Mutating- and ValidatingWebhookConfigurations apply to a write
//! ([`Webhook::applies`]), the AdmissionReview v1 sent to them ([`review_request`]), what their
//! answer means ([`parse_response`], [`Verdict`]) and the errors a write is refused with, worded
//! as upstream's.
//!
//! The API server makes the HTTPS calls (with the webhook's `caBundle` and timeout) and applies
//! `failurePolicy` to calls that fail.

pub mod matching;

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ServiceReference, ValidatingWebhookConfiguration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use krust_api::{Reason, StatusError};
use serde_json::{Value, json};

use crate::policy::cel::{Expression, Variables};
use crate::{Attributes, ClusterView, Operation};
use matching::{MatchPolicy, Rule};

/// What a failed call to a webhook does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    /// The write is refused (upstream's default).
    Fail,
    /// The webhook is skipped.
    Ignore,
}

impl FailurePolicy {
    /// Reads `failurePolicy` (absent: `Fail`).
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("Ignore") => Self::Ignore,
            _ => Self::Fail,
        }
    }
}

/// Where a webhook is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// `clientConfig.url`.
    Url(String),
    /// `clientConfig.service`: `https://<name>.<namespace>.svc:<port><path>`.
    Service {
        /// The Service's namespace.
        namespace: String,
        /// The Service's name.
        name: String,
        /// The path (`/` when absent).
        path: String,
        /// The Service's port (443 when absent).
        port: u16,
    },
}

impl Endpoint {
    /// The host name the server's certificate must carry.
    pub fn server_name(&self) -> String {
        match self {
            Self::Url(url) => {
                let rest = url.strip_prefix("https://").unwrap_or(url);
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let host = match authority.strip_prefix('[') {
                    Some(v6) => v6.split(']').next().unwrap_or_default(),
                    None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
                };
                host.to_string()
            }
            Self::Service { namespace, name, .. } => format!("{name}.{namespace}.svc"),
        }
    }
}

/// One webhook, mutating or validating, as the dispatcher needs it.
#[derive(Debug)]
pub struct Webhook {
    /// The webhook's name (`webhooks[].name`).
    pub name: String,
    /// The configuration it belongs to.
    pub configuration: String,
    /// Where it is reached (`None`: the configuration names neither a URL nor a Service).
    pub endpoint: Option<Endpoint>,
    /// The PEM certificates that sign the webhook's serving certificate (empty: the system's).
    pub ca_bundle: Vec<u8>,
    /// Its rules.
    pub rules: Vec<Rule>,
    /// What a failed call does.
    pub failure_policy: FailurePolicy,
    /// How rules' versions match.
    pub match_policy: MatchPolicy,
    /// Which namespaces' objects it sees.
    pub namespace_selector: Option<LabelSelector>,
    /// Which objects it sees, by label.
    pub object_selector: Option<LabelSelector>,
    /// `None`, `NoneOnDryRun`, `Some` or `Unknown`.
    pub side_effects: String,
    /// How long a call may take, in seconds (default 10).
    pub timeout_seconds: u64,
    /// Whether a mutating webhook runs again when a later one changed the object
    /// (`reinvocationPolicy: IfNeeded`).
    pub reinvoke: bool,
    /// `matchConditions`: CEL expressions that must all be true for the webhook to be called.
    pub match_conditions: Vec<(String, Expression)>,
}

/// Upstream's default webhook timeout.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 10;

#[allow(clippy::too_many_arguments)]
fn webhook(
    configuration: &str,
    name: &str,
    client: &k8s_openapi::api::admissionregistration::v1::WebhookClientConfig,
    rules: Option<&Vec<k8s_openapi::api::admissionregistration::v1::RuleWithOperations>>,
    failure_policy: Option<&str>,
    match_policy: Option<&str>,
    namespace_selector: Option<&LabelSelector>,
    object_selector: Option<&LabelSelector>,
    side_effects: &str,
    timeout_seconds: Option<i32>,
    match_conditions: Option<&Vec<k8s_openapi::api::admissionregistration::v1::MatchCondition>>,
) -> Webhook {
    let endpoint = match (&client.url, &client.service) {
        (Some(url), _) => Some(Endpoint::Url(url.clone())),
        (None, Some(ServiceReference { namespace, name, path, port })) => Some(Endpoint::Service {
            namespace: namespace.clone(),
            name: name.clone(),
            path: path.clone().unwrap_or_else(|| "/".into()),
            port: port.and_then(|p| u16::try_from(p).ok()).unwrap_or(443),
        }),
        (None, None) => None,
    };
    Webhook {
        name: name.to_string(),
        configuration: configuration.to_string(),
        endpoint,
        ca_bundle: client.ca_bundle.as_ref().map(|b| b.0.clone()).unwrap_or_default(),
        rules: rules.into_iter().flatten().map(Rule::from).collect(),
        failure_policy: FailurePolicy::parse(failure_policy),
        match_policy: MatchPolicy::parse(match_policy),
        namespace_selector: namespace_selector.cloned(),
        object_selector: object_selector.cloned(),
        side_effects: side_effects.to_string(),
        timeout_seconds: timeout_seconds
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0)
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS),
        reinvoke: false,
        match_conditions: match_conditions
            .into_iter()
            .flatten()
            .map(|c| (c.name.clone(), Expression::compile(&c.expression)))
            .collect(),
    }
}

/// The webhooks of a MutatingWebhookConfiguration, in order.
pub fn mutating_webhooks(config: &MutatingWebhookConfiguration) -> Vec<Webhook> {
    let configuration = config.metadata.name.as_deref().unwrap_or_default();
    config
        .webhooks
        .iter()
        .flatten()
        .map(|h| Webhook {
            reinvoke: h.reinvocation_policy.as_deref() == Some("IfNeeded"),
            ..webhook(
                configuration,
                &h.name,
                &h.client_config,
                h.rules.as_ref(),
                h.failure_policy.as_deref(),
                h.match_policy.as_deref(),
                h.namespace_selector.as_ref(),
                h.object_selector.as_ref(),
                &h.side_effects,
                h.timeout_seconds,
                h.match_conditions.as_ref(),
            )
        })
        .collect()
}

/// The webhooks of a ValidatingWebhookConfiguration, in order.
pub fn validating_webhooks(config: &ValidatingWebhookConfiguration) -> Vec<Webhook> {
    let configuration = config.metadata.name.as_deref().unwrap_or_default();
    config
        .webhooks
        .iter()
        .flatten()
        .map(|h| {
            webhook(
                configuration,
                &h.name,
                &h.client_config,
                h.rules.as_ref(),
                h.failure_policy.as_deref(),
                h.match_policy.as_deref(),
                h.namespace_selector.as_ref(),
                h.object_selector.as_ref(),
                &h.side_effects,
                h.timeout_seconds,
                h.match_conditions.as_ref(),
            )
        })
        .collect()
}

/// A write as the webhooks see it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// What the write is.
    pub attributes: &'a Attributes<'a>,
    /// The new object (none for deletes).
    pub object: Option<&'a Value>,
    /// The current object (none for creates).
    pub old: Option<&'a Value>,
}

impl Webhook {
    /// Whether the webhook is called for `request`: its rules, namespace selector, object
    /// selector and match conditions, as upstream's `ShouldCallHook`. A match condition that
    /// fails to evaluate follows the failure policy (`Fail`: the error refuses the write).
    pub fn applies(
        &self,
        request: &Request<'_>,
        cluster: &dyn ClusterView,
    ) -> Result<bool, StatusError> {
        let attributes = request.attributes;
        if matching::is_exempt_from_webhooks(attributes)
            || !matching::any_rule_matches(&self.rules, attributes, self.match_policy)
            || !matching::object_matches(self.object_selector.as_ref(), request.object, request.old)
            || !matching::namespace_matches(
                self.namespace_selector.as_ref(),
                attributes,
                request.object,
                request.old,
                cluster,
            )?
        {
            return Ok(false);
        }
        if self.match_conditions.is_empty() {
            return Ok(true);
        }
        let vars = variables(request, None, None);
        for (name, condition) in &self.match_conditions {
            match condition.evaluate_bool(&vars) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(_) if self.failure_policy == FailurePolicy::Ignore => return Ok(false),
                Err(e) => {
                    return Err(StatusError::internal(format!(
                        "failed calling webhook \"{}\": matchCondition '{name}' failed: {e}",
                        self.name
                    )));
                }
            }
        }
        Ok(true)
    }

    /// Whether the webhook may be called for a dry run (its side effects are `None` or
    /// `NoneOnDryRun`).
    pub fn supports_dry_run(&self) -> bool {
        matches!(self.side_effects.as_str(), "None" | "NoneOnDryRun")
    }
}

/// The CEL variables of a request: `object`, `oldObject`, `request`, and `params` and
/// `namespaceObject` when given.
pub fn variables(
    request: &Request<'_>,
    params: Option<&Value>,
    namespace: Option<&Value>,
) -> Variables {
    let mut vars = Variables::default();
    vars.set("object", request.object.unwrap_or(&Value::Null));
    vars.set("oldObject", request.old.unwrap_or(&Value::Null));
    vars.set("request", &review_request_body(request.attributes, "", None, None));
    vars.set("params", params.unwrap_or(&Value::Null));
    vars.set("namespaceObject", namespace.unwrap_or(&Value::Null));
    vars
}

/// `AdmissionRequest.userInfo` of a user.
fn user_info(attributes: &Attributes<'_>) -> Value {
    match attributes.user {
        Some(user) => {
            let mut info = serde_json::Map::new();
            info.insert("username".into(), json!(user.name));
            if !user.uid.is_empty() {
                info.insert("uid".into(), json!(user.uid));
            }
            if !user.groups.is_empty() {
                info.insert("groups".into(), json!(user.groups));
            }
            if !user.extra.is_empty() {
                info.insert("extra".into(), json!(user.extra));
            }
            Value::Object(info)
        }
        None => json!({}),
    }
}

/// The options of the write, as the `options` of the review.
fn options(attributes: &Attributes<'_>) -> Value {
    let kind = match attributes.operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
        Operation::Connect => return Value::Null,
    };
    let mut options = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if attributes.dry_run {
        options["dryRun"] = json!(["All"]);
    }
    options
}

/// The `request` of an AdmissionReview.
fn review_request_body(
    attributes: &Attributes<'_>,
    uid: &str,
    object: Option<&Value>,
    old: Option<&Value>,
) -> Value {
    let kind =
        json!({"group": attributes.group, "version": attributes.version, "kind": attributes.kind});
    let resource = json!({"group": attributes.group, "version": attributes.version, "resource": attributes.resource});
    let mut request = serde_json::Map::new();
    request.insert("uid".into(), json!(uid));
    request.insert("kind".into(), kind.clone());
    request.insert("resource".into(), resource.clone());
    if !attributes.subresource.is_empty() {
        request.insert("subResource".into(), json!(attributes.subresource));
    }
    request.insert("requestKind".into(), kind);
    request.insert("requestResource".into(), resource);
    if !attributes.subresource.is_empty() {
        request.insert("requestSubResource".into(), json!(attributes.subresource));
    }
    if !attributes.name.is_empty() {
        request.insert("name".into(), json!(attributes.name));
    }
    if !attributes.namespace.is_empty() {
        request.insert("namespace".into(), json!(attributes.namespace));
    }
    request.insert("operation".into(), json!(attributes.operation.as_str()));
    request.insert("userInfo".into(), user_info(attributes));
    request.insert("object".into(), object.cloned().unwrap_or(Value::Null));
    request.insert("oldObject".into(), old.cloned().unwrap_or(Value::Null));
    request.insert("dryRun".into(), json!(attributes.dry_run));
    request.insert("options".into(), options(attributes));
    Value::Object(request)
}

/// The AdmissionReview v1 sent to a webhook for `request`, with the request's `uid`.
pub fn review_request(request: &Request<'_>, uid: &str) -> Value {
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": review_request_body(request.attributes, uid, request.object, request.old),
    })
}

/// A webhook's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Whether the write may go on.
    pub allowed: bool,
    /// `response.status` (why it was refused).
    pub status: Option<Value>,
    /// The JSON patch to apply (decoded from base64), if any.
    pub patch: Option<Value>,
    /// `response.warnings`.
    pub warnings: Vec<String>,
}

/// Why a webhook's answer is unusable (a failed call: `failurePolicy` applies).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResponseError {
    /// The body is not an AdmissionReview.
    #[error("received invalid webhook response: {0}")]
    Invalid(String),
    /// The review has no `response`.
    #[error("webhook response was absent")]
    Absent,
    /// The response is for another request.
    #[error("expected response.uid=\"{expected}\", got \"{got}\"")]
    Uid {
        /// The request's uid.
        expected: String,
        /// The response's.
        got: String,
    },
    /// A patch without a patch type, or of another type than JSONPatch.
    #[error("{0}")]
    PatchType(String),
}

/// Reads a webhook's AdmissionReview answer to the request with `uid`, as upstream's
/// `VerifyAdmissionResponse`.
pub fn parse_response(body: &[u8], uid: &str) -> Result<Verdict, ResponseError> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| ResponseError::Invalid(e.to_string()))?;
    let api_version = review.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = review.get("kind").and_then(Value::as_str).unwrap_or_default();
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(ResponseError::Invalid(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        )));
    }
    let Some(response) = review.get("response").filter(|r| r.is_object()) else {
        return Err(ResponseError::Absent);
    };
    let got = response.get("uid").and_then(Value::as_str).unwrap_or_default();
    if got != uid {
        return Err(ResponseError::Uid { expected: uid.to_string(), got: got.to_string() });
    }
    let patch = match response.get("patch").and_then(Value::as_str).filter(|p| !p.is_empty()) {
        None => None,
        Some(encoded) => {
            match response.get("patchType").and_then(Value::as_str) {
                None => {
                    return Err(ResponseError::PatchType(
                        "webhook returned response.patch but not response.patchType".into(),
                    ));
                }
                Some("JSONPatch") => {}
                Some(other) => {
                    return Err(ResponseError::PatchType(format!(
                        "webhook returned invalid response.patchType of \"{other}\""
                    )));
                }
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| ResponseError::Invalid(format!("response.patch: {e}")))?;
            Some(
                serde_json::from_slice(&bytes)
                    .map_err(|e| ResponseError::Invalid(format!("response.patch: {e}")))?,
            )
        }
    };
    Ok(Verdict {
        allowed: response.get("allowed").and_then(Value::as_bool).unwrap_or(false),
        status: response.get("status").cloned(),
        patch,
        warnings: response
            .get("warnings")
            .and_then(Value::as_array)
            .map(|w| w.iter().filter_map(|s| Some(s.as_str()?.to_string())).collect())
            .unwrap_or_default(),
    })
}

/// Applies a mutating webhook's JSON patch to `object`. Returns whether it changed.
/// A patch that does not apply is an internal error (not subject to `failurePolicy`), as
/// upstream's.
pub fn apply_patch(
    webhook: &str,
    patch: &Value,
    object: Option<&mut Value>,
) -> Result<bool, StatusError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| StatusError::internal(format!("Internal error occurred: {e}")))?;
    if operations.0.is_empty() {
        return Ok(false);
    }
    let Some(object) = object else {
        return Err(StatusError::internal(format!(
            "Internal error occurred: admission webhook \"{webhook}\" attempted to modify the object, which is not supported for this operation"
        )));
    };
    let patched = krust_api::patch::json::apply_operations(object, &operations)
        .map_err(|e| StatusError::internal(format!("Internal error occurred: {e}")))?;
    let changed = patched != *object;
    *object = patched;
    Ok(changed)
}

/// A webhook's refusal, as upstream's `ToStatusErr`: `admission webhook "NAME" denied the
/// request: MESSAGE`, with the webhook's code (at least 400) and reason.
pub fn denied(webhook: &str, status: Option<&Value>) -> StatusError {
    let field = |k: &str| status.and_then(|s| s.get(k));
    let text = |k: &str| field(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let code = field("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let denied_by = format!("admission webhook \"{webhook}\" denied the request");
    let message = match (text("message"), text("reason")) {
        (Some(m), _) => format!("{denied_by}: {m}"),
        (None, Some(r)) => format!("{denied_by}: {r}"),
        (None, None) => format!("{denied_by} without explanation"),
    };
    StatusError {
        details: field("details").filter(|d| d.is_object()).cloned(),
        ..StatusError::with_code(
            code,
            Reason::from_name(text("reason").unwrap_or_default()),
            message,
        )
    }
}

/// A failed call under `failurePolicy: Fail`, as upstream's `ErrCallingWebhook` wrapped in an
/// internal error.
pub fn call_failed(webhook: &str, reason: &str) -> StatusError {
    StatusError::internal(format!(
        "Internal error occurred: failed calling webhook \"{webhook}\": {reason}"
    ))
}

/// A dry run refused because the webhook has side effects, as upstream's
/// `NewDryRunUnsupportedErr`.
pub fn dry_run_unsupported(webhook: &str) -> StatusError {
    StatusError::bad_request(format!("admission webhook \"{webhook}\" does not support dry run"))
}

#[cfg(test)]
mod tests;
