//! The admission stage of the request chain, as the registry calls it around a write:
//! [`Admission::mutate`] before the strategy defaults and validates the object,
//! [`Admission::validate`] after, both before anything is stored (dry runs included).
//!
//! Each stage runs, in upstream's order: the built-in plugins (`krust_admission`, pure, over
//! a view of the watch cache), then the admission webhooks (mutating, then validating), then
//! the ValidatingAdmissionPolicies (validate only). Last, [`Admission::charge_quota`] checks
//! the write against the namespace's ResourceQuotas and charges it to them before it is stored.

pub mod policy;
pub mod quota;
mod view;
pub mod webhook;

use std::sync::Arc;

use krust_admission::{Attributes, Chain, ClusterView};
use krust_api::StatusError;
use serde_json::Value;

pub use krust_admission::{PluginConfigs, Selection, SelectionError};
pub use view::CacheView;

/// The admission stage: built-in plugins, webhooks and policies.
#[derive(Default)]
pub struct Admission {
    /// The built-in plugins, as enabled.
    pub plugins: Chain,
    /// The admission webhooks of the Mutating- and ValidatingWebhookConfigurations.
    pub webhooks: webhook::Webhooks,
    /// The ValidatingAdmissionPolicies and their bindings.
    pub policies: policy::Policies,
    /// The names of every enabled plugin (`--enable-admission-plugins` /
    /// `--disable-admission-plugins`), including those run outside [`Admission::plugins`]
    /// (`MutatingAdmissionWebhook`, `ValidatingAdmissionWebhook`, `ValidatingAdmissionPolicy`).
    pub enabled: Vec<&'static str>,
    /// The per-namespace locks quota charges are made under.
    quota_locks: quota::Locks,
}

/// Upstream's alphabet of generated name suffixes (no vowels, no look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Five random characters of [`SUFFIX_ALPHABET`], as upstream's `SimpleNameGenerator`.
pub fn name_suffix() -> String {
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| char::from(SUFFIX_ALPHABET[usize::from(*b) % SUFFIX_ALPHABET.len()]))
        .collect()
}

impl Admission {
    /// The stage with the plugins `selection` enables, in upstream's order; the plugins that
    /// need one ask `authorizer` (the server's, `system:masters` included:
    /// [`Authz::admission_authorizer`](crate::authz::Authz::admission_authorizer)).
    pub fn new(selection: &Selection, authorizer: Arc<dyn krust_auth::Authorizer>) -> Self {
        Self::configured(selection, &PluginConfigs::default(), authorizer)
    }

    /// [`Admission::new`], the plugins that take a configuration given theirs
    /// (`--admission-control-config-file`).
    pub fn configured(
        selection: &Selection,
        configs: &PluginConfigs,
        authorizer: Arc<dyn krust_auth::Authorizer>,
    ) -> Self {
        Self {
            plugins: krust_admission::build(selection, configs, Arc::new(name_suffix), authorizer),
            enabled: selection.enabled.clone(),
            ..Self::default()
        }
    }

    /// The mutating stage: plugins, then mutating webhooks. The first refusal ends the write.
    /// Answers the webhooks' warnings for the client.
    pub async fn mutate(
        &self,
        attributes: &Attributes<'_>,
        mut object: Option<&mut Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<Vec<String>, StatusError> {
        self.plugins.admit(attributes, object.as_deref_mut(), old, cluster)?;
        if !self.on("MutatingAdmissionWebhook") {
            return Ok(Vec::new());
        }
        self.webhooks.mutate(attributes, object, old, cluster).await
    }

    /// The validating stage: plugins, then validating webhooks, then policies. Answers the
    /// warnings for the client: the plugins' (PodSecurity's `warn` mode), the webhooks' and
    /// those of policies bound with `Warn`.
    pub async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<Vec<String>, StatusError> {
        let mut warnings = self.plugins.validate(attributes, object, old, cluster)?;
        if self.on("ValidatingAdmissionWebhook") {
            warnings.extend(self.webhooks.validate(attributes, object, old, cluster).await?);
        }
        if self.on("ValidatingAdmissionPolicy") {
            warnings.extend(self.policies.validate(attributes, object, old, cluster)?);
        }
        Ok(warnings)
    }

    /// Whether the plugin `name` is enabled (all are, without a selection).
    fn on(&self, name: &str) -> bool {
        self.enabled.is_empty() || self.enabled.contains(&name)
    }
}
