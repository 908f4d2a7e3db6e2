//! ResourceQuota in the admission stage. Upstream runs it last of all validation (after the
//! webhooks and policies), and what it admits is charged before the object is stored: the
//! quotas' new `status.used` is written through the registry (`resourcequotas/status`,
//! guarded by the resourceVersion the quota was read at), and a write that lost a race is
//! evaluated again against the quota read afresh, up to three times, as upstream's quota
//! evaluator does. Dry runs are checked but not charged.
//!
//! Charges in one namespace are evaluated one at a time (upstream queues them per
//! namespace), so concurrent writes do not fail each other's guarded status writes; the
//! quota controller's writes still may, hence the retries.
//!
//! The decision is `krust_admission::resource_quota`'s (pure); this module reads the quotas
//! and writes their status.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use k8s_openapi::api::core::v1::ResourceQuota as Quota;
use k8s_openapi::jiff::Timestamp;
use krust_admission::resource_quota::{self, ResourceQuota};
use krust_admission::{Attributes, ClusterView, typed};
use krust_api::StatusError;
use serde_json::Value;

use super::Admission;
use crate::registry::{Registry, Subresource, WriteOptions};

/// How many times a charge is evaluated again after a status write failed (upstream's).
const RETRIES: usize = 3;

/// A charge under way.
pub type Charging<'a> = Pin<Box<dyn Future<Output = Result<(), StatusError>> + Send + 'a>>;

/// One lock per namespace with quotas, held while a write is checked and charged.
#[derive(Default)]
pub struct Locks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Locks {
    /// The lock of `namespace` (locks nobody holds are dropped on the way).
    fn of(&self, namespace: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        Arc::clone(locks.entry(namespace.to_string()).or_default())
    }
}

/// The time quota evaluation reads (whether a deleted pod's grace period ran out).
pub fn now() -> Timestamp {
    Timestamp::from_millisecond(chrono::Utc::now().timestamp_millis())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

impl Admission {
    /// The last validating step, upstream's ResourceQuota (when enabled): checks the write
    /// against the quotas of its namespace and, unless it is a dry run, charges it to them
    /// through `registry` before the caller stores the object.
    ///
    /// Boxed: the status writes go through the registry, whose writes call this again.
    pub fn charge_quota<'a>(
        &'a self,
        registry: &'a Registry,
        attributes: &'a Attributes<'a>,
        object: Option<&'a Value>,
        old: Option<&'a Value>,
    ) -> Charging<'a> {
        Box::pin(async move {
            let Some(plugin) = &self.plugins.quota else { return Ok(()) };
            if !plugin.handles(attributes, object, old) {
                return Ok(());
            }
            let namespace = attributes.namespace;
            if registry.admission_view().await.list("", "resourcequotas", namespace).is_empty() {
                return Ok(());
            }
            let lock = self.quota_locks.of(namespace);
            let _held = lock.lock().await;
            // Read after the lock: the cache then holds the charges made before.
            let quotas = resource_quota::quotas(&registry.admission_view().await, namespace);
            charge(plugin, registry, attributes, object, old, quotas).await
        })
    }
}

/// Checks and charges, retrying the quotas whose status write failed.
async fn charge(
    plugin: &ResourceQuota,
    registry: &Registry,
    attributes: &Attributes<'_>,
    object: Option<&Value>,
    old: Option<&Value>,
    mut quotas: Vec<Quota>,
) -> Result<(), StatusError> {
    let info = registry
        .catalog()
        .lookup("", "v1", "resourcequotas")
        .copied()
        .ok_or_else(|| StatusError::internal("the catalog has no resourcequotas"))?;
    let namespace = attributes.namespace;
    let mut attempt = 0;
    loop {
        let charged = plugin.check(attributes, object, old, &quotas, now())?;
        if attributes.dry_run || charged.is_empty() {
            return Ok(());
        }
        let mut failed = Vec::new();
        let mut last = None;
        for quota in charged {
            let name = quota.metadata.name.clone().unwrap_or_default();
            let body = serde_json::to_value(&quota)
                .map_err(|e| StatusError::internal(format!("quota {name}: {e}")))?;
            let opts = WriteOptions::default();
            if let Err(e) = registry
                .update(&info, Some(namespace), &name, Subresource::Status, body, opts)
                .await
            {
                tracing::debug!(quota = %name, %namespace, error = %e.message, "quota charge lost a race");
                failed.push(name);
                last = Some(e);
            }
        }
        let Some(error) = last else { return Ok(()) };
        attempt += 1;
        if attempt > RETRIES {
            return Err(error);
        }
        // The quotas that failed, as stored now (one deleted meanwhile no longer counts).
        quotas.clear();
        for name in failed {
            match registry.get(&info, Some(namespace), &name).await {
                Ok(value) => quotas.extend(typed::<Quota>(&value)),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
}
