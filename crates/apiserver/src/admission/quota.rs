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
            if registry.admission_view().await.list_json("", "resourcequotas", namespace).is_empty()
            {
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
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use krust_admission::{Operation, Selection};
    use krust_api::{Catalog, ResourceInfo};
    use krust_store::Store;
    use krust_store::embedded::EmbeddedStore;
    use serde_json::json;

    use super::*;
    use crate::registry::ServiceRanges;

    fn info(registry: &Registry, plural: &str) -> ResourceInfo {
        registry.catalog().lookup("", "v1", plural).unwrap()
    }

    fn attributes(dry_run: bool) -> Attributes<'static> {
        Attributes {
            operation: Operation::Create,
            group: "",
            version: "v1",
            kind: "Pod",
            resource: "pods",
            subresource: "",
            namespace: "ns",
            name: "p",
            user: None,
            dry_run,
        }
    }

    /// A quota whose stored status says `used` pods of `hard`, and a copy of it one write
    /// older (as a stale cache would hold it, saying `stale_used`).
    async fn quota(registry: &Registry, hard: &str, used: &str, stale_used: &str) -> Quota {
        let quotas = info(registry, "resourcequotas");
        let body = json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "q", "namespace": "ns"}, "spec": {"hard": {"pods": hard}}});
        registry.create(&quotas, Some("ns"), body, WriteOptions::default()).await.unwrap();
        let mut stale = registry.get(&quotas, Some("ns"), "q").await.unwrap();
        stale["status"] = json!({"hard": {"pods": hard}, "used": {"pods": used}});
        let opts = WriteOptions::default();
        registry
            .update(&quotas, Some("ns"), "q", Subresource::Status, stale.clone(), opts)
            .await
            .unwrap();
        stale["status"]["used"]["pods"] = json!(stale_used);
        typed::<Quota>(&stale).unwrap()
    }

    async fn used(registry: &Registry) -> Value {
        let quota = registry.get(&info(registry, "resourcequotas"), Some("ns"), "q").await.unwrap();
        quota["status"]["used"]["pods"].clone()
    }

    #[tokio::test]
    async fn a_charge_that_lost_a_race_is_evaluated_again_against_the_stored_quota() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let mut registry =
            Registry::new(store, Arc::new(Catalog::builtin()), ServiceRanges::default())
                .await
                .unwrap();
        registry.set_admission(Admission::new(
            &Selection { enabled: vec!["ResourceQuota"] },
            std::sync::Arc::new(krust_auth::Chain(Vec::new())),
        ));
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}});
        registry
            .create(&info(&registry, "namespaces"), None, ns, WriteOptions::default())
            .await
            .unwrap();
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": [{"name": "c"}]}});
        let plugin = ResourceQuota;

        // Stale: 0 of 2 used; stored: 1 of 2. The guarded write fails, the retry charges 2.
        let stale = quota(&registry, "2", "1", "0").await;
        let attrs = attributes(false);
        charge(&plugin, &registry, &attrs, Some(&pod), None, vec![stale]).await.unwrap();
        assert_eq!(used(&registry).await, "2");

        // Stale: 0 of 2 used; stored: 2 of 2. The retry refuses rather than over-admits.
        let quotas = info(&registry, "resourcequotas");
        registry.delete(&quotas, Some("ns"), "q", &Default::default()).await.unwrap();
        let stale = quota(&registry, "2", "2", "0").await;
        let refused = charge(&plugin, &registry, &attrs, Some(&pod), None, vec![stale]).await;
        assert_eq!(
            refused.unwrap_err().message,
            "pods \"p\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        assert_eq!(used(&registry).await, "2");

        // A dry run is checked, never written.
        registry.delete(&quotas, Some("ns"), "q", &Default::default()).await.unwrap();
        quota(&registry, "2", "0", "0").await;
        let fresh =
            registry.get(&quotas, Some("ns"), "q").await.map(|v| typed::<Quota>(&v)).unwrap();
        let dry = attributes(true);
        charge(&plugin, &registry, &dry, Some(&pod), None, fresh.into_iter().collect())
            .await
            .unwrap();
        assert_eq!(used(&registry).await, "0");
    }
}
