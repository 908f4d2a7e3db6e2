//! Quota usage kept current, as upstream's resource quota controller keeps it (run in-process
//! for now; it moves to the controllers crate, as an API client, when that crate exists).
//!
//! Admission charges what it admits; this task gives a quota its first status and takes
//! back what goes away. A quota is synced (`status.hard` set to `spec.hard`, `status.used`
//! recomputed from the watch cache, `krust_admission::resource_quota::controller::sync`) when
//! its `spec.hard` is not yet its `status.hard` or a resource it limits has no usage yet
//! (created, or its spec changed); when an object it counts is deleted or stops counting (a
//! pod turned terminal, a service's type changed, a claim's volume grew); and every five
//! minutes for all quotas (upstream's default `--resource-quota-sync-period`), which also
//! takes back charges for objects that were never stored. Status is written through the
//! registry (`resourcequotas/status`), guarded by the resourceVersion read; a quota whose
//! write failed is synced again a second later.
//!
//! Deletions are found by comparing, pass after pass, the objects of each resource a quota
//! of the namespace watches (name, uid, and what their usage depends on).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ResourceQuota as Quota, ResourceQuotaStatus};
use k8s_openapi::jiff::Timestamp;
use krust_admission::resource_quota::{Evaluator, ObjectState, controller};
use krust_admission::{ClusterView, typed};
use krust_api::StatusError;
use krust_api::object::meta_str;
use serde_json::Value;
use tokio::time::Instant;

use crate::ApiServer;
use crate::admission::CacheView;
use crate::admission::quota::now;
use crate::registry::{Registry, Subresource, WriteOptions};

/// How often every quota is synced (upstream's default `--resource-quota-sync-period`).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(300);

/// How soon a failed sync is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// Runs passes for ever: whenever the cache moves, every [`RESYNC_PERIOD`] for all quotas
/// (the first pass too), and a second after a failed write.
pub async fn run(api: Arc<ApiServer>) {
    let mut revision = api.registry.cache().subscribe_revision();
    let mut controller = Controller::default();
    let mut resync_at = Instant::now();
    loop {
        let full = Instant::now() >= resync_at;
        if full {
            resync_at = Instant::now() + RESYNC_PERIOD;
        }
        let failed = controller.pass(&api.registry, full).await;
        let wait = if failed { RETRY } else { resync_at.saturating_duration_since(Instant::now()) };
        let _ = tokio::time::timeout(wait, revision.changed()).await;
    }
}

/// A namespace and a quota's name.
type QuotaKey = (String, String);

/// What the controller remembers between passes.
#[derive(Default)]
pub struct Controller {
    /// Per namespace and watched resource: each object's uid and what its usage depends on,
    /// by name.
    seen: HashMap<(String, Evaluator), HashMap<String, (String, ObjectState)>>,
    /// Quotas whose last sync failed.
    pending: HashSet<QuotaKey>,
}

impl Controller {
    /// One pass over every quota (all of them when `full`); answers whether a write failed.
    pub async fn pass(&mut self, registry: &Registry, full: bool) -> bool {
        let now = now();
        // The cache once it holds every write this server answered (its own status writes
        // among them: a sync reads the resourceVersion it guards its write with).
        let view = registry.admission_view().await;
        let quotas: Vec<(Value, Quota)> = (&view as &dyn ClusterView)
            .list::<Value>("", "resourcequotas", "")
            .into_iter()
            .filter_map(|v| typed::<Quota>(&v).map(|q| (v, q)))
            .collect();
        let mut by_namespace: BTreeMap<String, Vec<&Quota>> = BTreeMap::new();
        for (_, quota) in &quotas {
            let namespace = quota.metadata.namespace.clone().unwrap_or_default();
            by_namespace.entry(namespace).or_default().push(quota);
        }
        let mut dirty = std::mem::take(&mut self.pending);
        let mut seen = HashMap::new();
        for (namespace, quotas) in &by_namespace {
            let watched: Vec<(&Quota, Vec<Evaluator>)> =
                quotas.iter().map(|q| (*q, controller::evaluators(q))).collect();
            let evaluators: BTreeSet<&Evaluator> = watched.iter().flat_map(|(_, e)| e).collect();
            for evaluator in evaluators {
                let objects = objects(&view, evaluator, namespace, now);
                let key = (namespace.clone(), evaluator.clone());
                let replenished = self.seen.get(&key).is_some_and(|before| {
                    before.iter().any(|(name, was)| objects.get(name) != Some(was))
                });
                if replenished {
                    for (quota, _) in watched.iter().filter(|(_, e)| e.contains(evaluator)) {
                        let name = quota.metadata.name.clone().unwrap_or_default();
                        dirty.insert((namespace.clone(), name));
                    }
                }
                seen.insert(key, objects);
            }
        }
        self.seen = seen;
        let mut failed = false;
        for (value, quota) in &quotas {
            let key = (
                quota.metadata.namespace.clone().unwrap_or_default(),
                quota.metadata.name.clone().unwrap_or_default(),
            );
            if !(full || dirty.contains(&key) || controller::needs_sync(quota)) {
                continue;
            }
            let Some(status) = controller::sync(quota, &view, now) else { continue };
            match write_status(registry, value, &status).await {
                Ok(()) => {
                    tracing::debug!(namespace = %key.0, quota = %key.1, "quota status synced");
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::debug!(namespace = %key.0, quota = %key.1, error = %e.message, "quota sync failed; retrying");
                    self.pending.insert(key);
                    failed = true;
                }
            }
        }
        failed
    }
}

/// The objects of `evaluator`'s resource in `namespace`: uid and state, by name.
fn objects(
    view: &CacheView<'_>,
    evaluator: &Evaluator,
    namespace: &str,
    now: Timestamp,
) -> HashMap<String, (String, ObjectState)> {
    let view: &dyn ClusterView = view;
    view.list::<Value>(evaluator.group(), evaluator.resource(), namespace)
        .iter()
        .filter_map(|object| {
            let name = meta_str(object, "name")?.to_string();
            let uid = meta_str(object, "uid").unwrap_or_default().to_string();
            let item = evaluator.item(object).ok()?;
            Some((name, (uid, evaluator.state(&item, now))))
        })
        .collect()
}

/// Writes `status` as the quota's (`quota` as read: its resourceVersion guards the write).
async fn write_status(
    registry: &Registry,
    quota: &Value,
    status: &ResourceQuotaStatus,
) -> Result<(), StatusError> {
    let info = registry
        .catalog()
        .lookup("", "v1", "resourcequotas")
        .ok_or_else(|| StatusError::internal("the catalog has no resourcequotas"))?;
    let (Some(namespace), Some(name)) = (meta_str(quota, "namespace"), meta_str(quota, "name"))
    else {
        return Ok(());
    };
    let mut body = quota.clone();
    if let Some(map) = body.as_object_mut() {
        let status =
            serde_json::to_value(status).map_err(|e| StatusError::internal(e.to_string()))?;
        map.insert("status".into(), status);
    }
    registry
        .update(&info, Some(namespace), name, Subresource::Status, body, WriteOptions::default())
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use krust_api::{Catalog, ResourceInfo};
    use krust_store::Store;
    use krust_store::embedded::EmbeddedStore;
    use serde_json::json;

    use super::*;
    use crate::admission::{Admission, Selection};
    use crate::registry::{DeleteOptions, ServiceRanges};

    /// A registry over a fresh embedded store whose only admission plugin is ResourceQuota,
    /// with the namespace `ns`.
    async fn registry(dir: &tempfile::TempDir) -> Arc<Registry> {
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
        Arc::new(registry)
    }

    fn info(registry: &Registry, plural: &str) -> ResourceInfo {
        registry.catalog().lookup("", "v1", plural).unwrap()
    }

    fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
               "spec": {"containers": [{"name": "c", "image": "i", "resources": {
                   "requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}}]}})
    }

    async fn create_pod(registry: &Registry, name: &str, dry_run: bool) -> Result<(), StatusError> {
        let opts = WriteOptions { dry_run, ..WriteOptions::default() };
        registry.create(&info(registry, "pods"), Some("ns"), pod(name), opts).await.map(|_| ())
    }

    async fn status(registry: &Registry) -> Value {
        let quota =
            registry.get(&info(registry, "resourcequotas"), Some("ns"), "compute").await.unwrap();
        quota["status"].clone()
    }

    #[tokio::test]
    async fn quotas_are_synced_charged_and_replenished() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(&dir).await;
        let mut controller = Controller::default();
        assert!(!controller.pass(&registry, true).await, "nothing to do without quotas");
        let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
            "spec": {"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}}});
        let quotas = info(&registry, "resourcequotas");
        registry.create(&quotas, Some("ns"), quota, WriteOptions::default()).await.unwrap();
        // Until the controller gave it a status, the quota covers nothing.
        create_pod(&registry, "early", false).await.unwrap();
        assert!(!controller.pass(&registry, false).await);
        assert_eq!(
            status(&registry).await,
            json!({"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"},
                   "used": {"pods": "1", "requests.cpu": "100m", "limits.memory": "256Mi"}})
        );
        // Admission charges what it admits; a dry run is checked but not charged.
        create_pod(&registry, "dry", true).await.unwrap();
        create_pod(&registry, "second", false).await.unwrap();
        assert_eq!(status(&registry).await["used"]["pods"], "2");
        let refused = create_pod(&registry, "third", false).await.unwrap_err();
        assert_eq!(
            (refused.code(), refused.message.as_str()),
            (
                403,
                "pods \"third\" is forbidden: exceeded quota: compute, requested: pods=1, used: pods=2, limited: pods=2"
            )
        );
        let refused = create_pod(&registry, "third", true).await.unwrap_err();
        assert_eq!(refused.code(), 403, "dry runs are refused alike");
        // A pass without a change writes nothing; a deletion gives the usage back.
        assert!(!controller.pass(&registry, false).await);
        let opts = DeleteOptions::default();
        registry.delete(&info(&registry, "pods"), Some("ns"), "early", &opts).await.unwrap();
        assert!(!controller.pass(&registry, false).await);
        assert_eq!(
            status(&registry).await["used"],
            json!({"pods": "1", "requests.cpu": "100m", "limits.memory": "256Mi"})
        );
        // Concurrent creates never charge past the limit: one of five fits.
        let creates = (0..5).map(|i| {
            let registry = Arc::clone(&registry);
            tokio::spawn(async move { create_pod(&registry, &format!("race-{i}"), false).await })
        });
        let results = futures::future::join_all(creates).await;
        let admitted = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
        assert_eq!(admitted, 1);
        assert_eq!(status(&registry).await["used"]["pods"], "2");
        // A changed spec is followed at once.
        let mut changed = registry.get(&quotas, Some("ns"), "compute").await.unwrap();
        changed["spec"]["hard"] = json!({"pods": "5"});
        registry
            .update(
                &quotas,
                Some("ns"),
                "compute",
                Subresource::Main,
                changed,
                WriteOptions::default(),
            )
            .await
            .unwrap();
        assert!(!controller.pass(&registry, false).await);
        assert_eq!(status(&registry).await, json!({"hard": {"pods": "5"}, "used": {"pods": "2"}}));
    }

    #[tokio::test]
    async fn a_drifted_usage_is_corrected_by_the_full_resync() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(&dir).await;
        let quotas = info(&registry, "resourcequotas");
        let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute"},
            "spec": {"hard": {"count/configmaps": "3"}}});
        registry.create(&quotas, Some("ns"), quota, WriteOptions::default()).await.unwrap();
        let mut controller = Controller::default();
        controller.pass(&registry, false).await;
        let mut drifted = registry.get(&quotas, Some("ns"), "compute").await.unwrap();
        drifted["status"]["used"]["count/configmaps"] = json!("2");
        registry
            .update(
                &quotas,
                Some("ns"),
                "compute",
                Subresource::Status,
                drifted,
                WriteOptions::default(),
            )
            .await
            .unwrap();
        controller.pass(&registry, false).await;
        assert_eq!(status(&registry).await["used"]["count/configmaps"], "2", "no event, no sync");
        controller.pass(&registry, true).await;
        assert_eq!(status(&registry).await["used"]["count/configmaps"], "0");
    }
}
