//! The admission webhooks' dispatcher, as upstream's `mutating` and `validating` dispatchers:
//! the Mutating- and ValidatingWebhookConfigurations are read from the watch cache (through
//! the [`ClusterView`] the stage is given; each configuration is decoded once per
//! resourceVersion), the webhooks that apply are called over HTTPS with an AdmissionReview v1,
//! trusting only their `caBundle`, within their `timeoutSeconds`.
//!
//! Mutating webhooks run one after another, in the order of their configurations' names, each
//! seeing the previous one's patch; those with `reinvocationPolicy: IfNeeded` run once more
//! when a later webhook changed the object. Validating webhooks run in parallel. A call that
//! fails refuses the write under `failurePolicy: Fail` and is skipped under `Ignore`; a dry
//! run is refused by a webhook whose `sideEffects` are not `None` or `NoneOnDryRun`.
//!
//! What matching, reviews and answers mean is pure, in `krust_admission::webhook`.

mod client;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use krust_admission::webhook::{
    self, FailurePolicy, Request, Verdict, Webhook, apply_patch, call_failed, denied,
    dry_run_unsupported,
};
use krust_admission::{Attributes, ClusterView};
use krust_api::StatusError;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use client::{CallError, Client};

const GROUP: &str = "admissionregistration.k8s.io";
const MUTATING: &str = "mutatingwebhookconfigurations";
const VALIDATING: &str = "validatingwebhookconfigurations";

/// Webhooks decoded from one configuration, at one resourceVersion.
type Decoded = HashMap<String, (String, Arc<Vec<Arc<Webhook>>>)>;

/// The webhook stage: decoded configurations and the HTTPS client.
#[derive(Default)]
pub struct Webhooks {
    mutating: Mutex<Decoded>,
    validating: Mutex<Decoded>,
    client: Client,
}

/// The webhooks of every configuration of `resource` in the cache, in the order of the
/// configurations' names, decoding only configurations that changed.
fn load<T: DeserializeOwned>(
    cluster: &dyn ClusterView,
    resource: &str,
    memo: &Mutex<Decoded>,
    read: fn(&T) -> Vec<Webhook>,
) -> Vec<Arc<Webhook>> {
    let mut configs = cluster.list(GROUP, resource, "");
    if configs.is_empty() {
        return Vec::new();
    }
    let meta = |v: &Value, k: &str| {
        v.pointer(&format!("/metadata/{k}")).and_then(Value::as_str).unwrap_or_default().to_string()
    };
    configs.sort_by_key(|c| meta(c, "name"));
    let mut memo = memo.lock().unwrap_or_else(PoisonError::into_inner);
    let mut next = HashMap::with_capacity(configs.len());
    let mut hooks = Vec::new();
    for config in configs {
        let (name, rv) = (meta(&config, "name"), meta(&config, "resourceVersion"));
        let decoded = match memo.remove(&name) {
            Some((seen, decoded)) if seen == rv => decoded,
            _ => match T::deserialize(&config) {
                Ok(typed) => Arc::new(read(&typed).into_iter().map(Arc::new).collect()),
                Err(e) => {
                    tracing::warn!(%name, error = %e, "webhook configuration does not decode; ignored");
                    continue;
                }
            },
        };
        hooks.extend(decoded.iter().cloned());
        next.insert(name, (rv, decoded));
    }
    *memo = next;
    hooks
}

impl Webhooks {
    /// A webhook stage with its own client.
    pub fn new(client: Client) -> Self {
        Self { client, ..Self::default() }
    }

    fn mutating(&self, cluster: &dyn ClusterView) -> Vec<Arc<Webhook>> {
        load::<MutatingWebhookConfiguration>(
            cluster,
            MUTATING,
            &self.mutating,
            webhook::mutating_webhooks,
        )
    }

    fn validating(&self, cluster: &dyn ClusterView) -> Vec<Arc<Webhook>> {
        load::<ValidatingWebhookConfiguration>(
            cluster,
            VALIDATING,
            &self.validating,
            webhook::validating_webhooks,
        )
    }

    /// Calls one webhook; `Ok(None)` when the call failed and its failure policy is `Ignore`.
    async fn call(
        &self,
        hook: &Webhook,
        request: &Request<'_>,
        cluster: &dyn ClusterView,
    ) -> Result<Option<Verdict>, StatusError> {
        let uid = uuid::Uuid::new_v4().to_string();
        let review = webhook::review_request(request, &uid);
        let result = self.client.call(hook, &review, cluster).await.and_then(|body| {
            webhook::parse_response(&body, &uid).map_err(|e| CallError::Response(e.to_string()))
        });
        match result {
            Ok(verdict) => {
                for warning in &verdict.warnings {
                    tracing::info!(webhook = %hook.name, %warning, "admission webhook warning");
                }
                Ok(Some(verdict))
            }
            Err(e) if hook.failure_policy == FailurePolicy::Ignore => {
                tracing::warn!(webhook = %hook.name, error = %e, "failed calling webhook, failing open");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(webhook = %hook.name, error = %e, "failed calling webhook, failing closed");
                Err(call_failed(&hook.name, &e.to_string()))
            }
        }
    }

    /// The mutating webhooks: each applicable one in turn, its patch applied before the next.
    /// Answers the webhooks' warnings for the client.
    pub async fn mutate(
        &self,
        attributes: &Attributes<'_>,
        mut object: Option<&mut Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<Vec<String>, StatusError> {
        let mut warnings = Vec::new();
        let hooks = self.mutating(cluster);
        if hooks.is_empty() {
            return Ok(warnings);
        }
        // Webhooks that asked to be reinvoked, and whether a later one changed the object.
        let mut reinvocable: Vec<(usize, bool)> = Vec::new();
        for (i, hook) in hooks.iter().enumerate() {
            let called = self
                .mutate_one(hook, attributes, object.as_deref_mut(), old, cluster, &mut warnings)
                .await?;
            if called == Some(true) {
                for seen in &mut reinvocable {
                    seen.1 = true;
                }
            }
            if hook.reinvoke && called.is_some() {
                reinvocable.push((i, false));
            }
        }
        for (i, changed_after) in reinvocable {
            if let (true, Some(hook)) = (changed_after, hooks.get(i)) {
                self.mutate_one(
                    hook,
                    attributes,
                    object.as_deref_mut(),
                    old,
                    cluster,
                    &mut warnings,
                )
                .await?;
            }
        }
        Ok(warnings)
    }

    /// Runs one mutating webhook if it applies, adding its warnings to `warnings`; returns
    /// whether it changed the object (`None`: it was not called).
    async fn mutate_one(
        &self,
        hook: &Webhook,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
        warnings: &mut Vec<String>,
    ) -> Result<Option<bool>, StatusError> {
        let request = Request { attributes, object: object.as_deref(), old };
        if !hook.applies(&request, cluster)? {
            return Ok(None);
        }
        if attributes.dry_run && !hook.supports_dry_run() {
            return Err(dry_run_unsupported(&hook.name));
        }
        let Some(verdict) = self.call(hook, &request, cluster).await? else {
            return Ok(Some(false));
        };
        warnings.extend(verdict.warnings.iter().cloned());
        if !verdict.allowed {
            return Err(denied(&hook.name, verdict.status.as_ref()));
        }
        match &verdict.patch {
            Some(patch) => apply_patch(&hook.name, patch, object).map(Some),
            None => Ok(Some(false)),
        }
    }

    /// The validating webhooks: every applicable one, in parallel; the first refusal (in
    /// configuration order) ends the write. Answers the webhooks' warnings for the client, in
    /// configuration order.
    pub async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<Vec<String>, StatusError> {
        let mut warnings = Vec::new();
        let hooks = self.validating(cluster);
        if hooks.is_empty() {
            return Ok(warnings);
        }
        let request = Request { attributes, object, old };
        let mut calls = Vec::new();
        for hook in &hooks {
            if !hook.applies(&request, cluster)? {
                continue;
            }
            if attributes.dry_run && !hook.supports_dry_run() {
                return Err(dry_run_unsupported(&hook.name));
            }
            calls.push(async move {
                let verdict = self.call(hook, &request, cluster).await?;
                match verdict {
                    Some(v) if !v.allowed => Err(denied(&hook.name, v.status.as_ref())),
                    Some(v) => Ok(v.warnings),
                    None => Ok(Vec::new()),
                }
            });
        }
        for result in futures::future::join_all(calls).await {
            warnings.extend(result?);
        }
        Ok(warnings)
    }
}

#[cfg(test)]
mod tests;
