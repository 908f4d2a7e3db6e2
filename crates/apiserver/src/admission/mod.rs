//! The admission stage of the request chain, as the registry calls it around a write:
//! [`Admission::mutate`] before the strategy defaults and validates the object,
//! [`Admission::validate`] after, both before anything is stored (dry runs included).
//!
//! Each stage runs, in upstream's order: the built-in plugins (`krust_admission`, pure, over
//! a view of the watch cache), then the admission webhooks (mutating, then validating), then
//! the ValidatingAdmissionPolicies (validate only).

pub mod policy;
pub mod webhook;

use krust_admission::{Attributes, Chain, ClusterView};
use krust_api::StatusError;
use serde_json::Value;

/// The admission stage: built-in plugins, webhooks and policies.
#[derive(Default)]
pub struct Admission {
    /// The built-in plugins, as enabled.
    pub plugins: Chain,
    /// The admission webhooks of the Mutating- and ValidatingWebhookConfigurations.
    pub webhooks: webhook::Webhooks,
    /// The ValidatingAdmissionPolicies and their bindings.
    pub policies: policy::Policies,
}

impl Admission {
    /// The stage with these built-in plugins, and the webhooks and policies found in the cache.
    pub fn new(plugins: Chain) -> Self {
        Self { plugins, ..Self::default() }
    }

    /// The mutating stage: plugins, then mutating webhooks. The first refusal ends the write.
    pub async fn mutate(
        &self,
        attributes: &Attributes<'_>,
        mut object: Option<&mut Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        self.plugins.admit(attributes, object.as_deref_mut(), old, cluster)?;
        self.webhooks.mutate(attributes, object, old, cluster).await
    }

    /// The validating stage: plugins, then validating webhooks, then policies.
    pub async fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        self.plugins.validate(attributes, object, old, cluster)?;
        self.webhooks.validate(attributes, object, old, cluster).await?;
        self.policies.validate(attributes, object, old, cluster)
    }
}
