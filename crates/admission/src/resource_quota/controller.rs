//! The pure half of upstream's resource quota controller (`pkg/controller/resourcequota`):
//! a quota's usage measured over the cluster ([`usage`], upstream's `CalculateUsage`), the
//! status it should have ([`sync`], upstream's `syncResourceQuota`: `status.hard` follows
//! `spec.hard`, `status.used` is recomputed for every resource measured and kept for the
//! others), and which quotas need a sync without any event ([`needs_sync`]). The API server
//! runs the loop (when to sync, the status writes).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ResourceQuota as Quota, ResourceQuotaStatus};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;

use super::evaluator::Evaluator;
use super::resources::{self, ResourceList};
use super::scopes;
use crate::ClusterView;
use crate::quantity::Amount;

type Quantities = BTreeMap<String, Quantity>;

/// Whether two lists hold the same names with equal amounts (a missing list is empty; a
/// quantity that does not parse equals only the same text).
fn same(a: Option<&Quantities>, b: Option<&Quantities>) -> bool {
    let (a, b) = (a.cloned().unwrap_or_default(), b.cloned().unwrap_or_default());
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k).is_some_and(|w| match (Amount::of(v), Amount::of(w)) {
                (Ok(x), Ok(y)) => x == y,
                _ => v == w,
            })
        })
}

/// The evaluators that measure what `quota` limits (`status.hard`, else `spec.hard`): what
/// the controller watches to know that usage went down.
pub fn evaluators(quota: &Quota) -> Vec<Evaluator> {
    let hard = quota
        .status
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .or_else(|| quota.spec.as_ref().and_then(|s| s.hard.as_ref()));
    let names: Vec<&String> = hard.into_iter().flatten().map(|(k, _)| k).collect();
    Evaluator::for_names(names.iter().copied())
        .into_iter()
        .filter(|e| names.iter().any(|n| e.tracks(n)))
        .collect()
}

/// Whether `quota` needs a sync whatever happened: its `spec.hard` is not yet its
/// `status.hard`, or a resource it limits that quota measures has no usage yet (upstream's
/// `addQuota` priorities).
pub fn needs_sync(quota: &Quota) -> bool {
    let spec = quota.spec.as_ref().and_then(|s| s.hard.as_ref());
    let status = quota.status.as_ref();
    let hard = status.and_then(|s| s.hard.as_ref());
    if !same(spec, hard) {
        return true;
    }
    let used = status.and_then(|s| s.used.as_ref());
    let missing: Vec<&String> = hard
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| !used.is_some_and(|u| u.contains_key(*k)))
        .collect();
    let evaluators = Evaluator::for_names(missing.iter().copied());
    missing.iter().any(|name| evaluators.iter().any(|e| e.tracks(name)))
}

/// What `quota` uses of every resource of its `spec.hard` that quota measures, over the
/// objects of its namespace in its scopes (upstream's `CalculateUsage`).
pub fn usage(quota: &Quota, cluster: &dyn ClusterView, now: Timestamp) -> ResourceList {
    let namespace = quota.metadata.namespace.as_deref().unwrap_or_default();
    let hard: BTreeSet<String> = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect();
    let evaluators = Evaluator::for_names(&hard);
    let matched: BTreeSet<String> =
        evaluators.iter().flat_map(|e| e.matching_resources(&hard)).collect();
    let selectors = scopes::selectors(quota);
    let mut used = ResourceList::new();
    for evaluator in &evaluators {
        let measured = evaluator.matching_resources(&matched);
        if measured.is_empty() {
            continue;
        }
        let mut stats: ResourceList = measured.iter().map(|n| (n.clone(), Amount::ZERO)).collect();
        for object in
            cluster.list::<serde_json::Value>(evaluator.group(), evaluator.resource(), namespace)
        {
            let Ok(item) = evaluator.item(&object) else { continue };
            let in_scope =
                selectors.iter().all(|s| evaluator.matches_scope(s, &item).unwrap_or(false));
            if in_scope {
                stats = resources::add(&stats, &evaluator.usage(&item, now));
            }
        }
        used = resources::add(&used, &stats);
    }
    resources::mask(&used, &matched)
}

/// The status `quota` should have (upstream's `syncResourceQuota`): `hard` as `spec.hard`,
/// `used` recomputed for what quota measures and kept for the rest, only names of `hard`;
/// `None` when that is its status already.
pub fn sync(
    quota: &Quota,
    cluster: &dyn ClusterView,
    now: Timestamp,
) -> Option<ResourceQuotaStatus> {
    let hard = quota.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
    let status = quota.status.clone().unwrap_or_default();
    let mut used = status.used.clone().unwrap_or_default();
    used.extend(resources::to_quantities(&usage(quota, cluster, now)));
    used.retain(|k, _| hard.contains_key(k));
    let dirty = !same(Some(&hard), status.hard.as_ref())
        || (status.hard.is_none() && !hard.is_empty())
        || !same(Some(&used), status.used.as_ref());
    dirty.then_some(ResourceQuotaStatus { hard: Some(hard), used: Some(used) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::*;
    use crate::testing::Objects;

    fn quota(spec: Value, status: Value) -> Quota {
        serde_json::from_value(json!({
            "metadata": {"name": "q", "namespace": "ns"}, "spec": spec, "status": status,
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn pod(name: &str, cpu: &str, extra: Value) -> (&'static str, &'static str, Value) {
        let mut pod = json!({"metadata": {"name": name, "namespace": "ns"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu}, "limits": {"memory": "256Mi"}}}]}});
        if let (Some(pod), Some(extra)) = (pod.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                pod.insert(k.clone(), v.clone());
            }
        }
        ("", "pods", pod)
    }

    fn cluster() -> Objects {
        Objects(vec![
            pod("a", "100m", json!({})),
            pod("b", "250m", json!({})),
            pod("done", "1", json!({"status": {"phase": "Succeeded"}})),
            pod("elsewhere", "1", json!({"metadata": {"name": "elsewhere", "namespace": "other"}})),
            ("", "configmaps", json!({"metadata": {"name": "one", "namespace": "ns"}})),
            ("apps", "deployments", json!({"metadata": {"name": "d", "namespace": "ns"}})),
            (
                "",
                "services",
                json!({"metadata": {"name": "s", "namespace": "ns"}, "spec": {"type": "NodePort", "ports": [{"port": 1}]}}),
            ),
        ])
    }

    #[test]
    fn usage_is_measured_over_the_namespace() {
        let q = quota(
            json!({"hard": {"pods": "10", "count/pods": "10", "requests.cpu": "2", "limits.memory": "1Gi",
                "configmaps": "5", "count/deployments.apps": "1", "services.nodeports": "3", "unknown": "1"}}),
            json!({}),
        );
        assert_eq!(
            resources::pretty(&usage(&q, &cluster(), now())),
            "configmaps=1,count/deployments.apps=1,count/pods=3,limits.memory=512Mi,pods=2,requests.cpu=350m,services.nodeports=1"
        );
    }

    #[test]
    fn scoped_quotas_count_matching_pods_only() {
        let q = quota(
            json!({"hard": {"pods": "10", "configmaps": "3"}, "scopes": ["NotBestEffort"]}),
            json!({}),
        );
        assert_eq!(resources::pretty(&usage(&q, &cluster(), now())), "configmaps=0,pods=2");
    }

    #[test]
    fn sync_sets_hard_and_used_once() {
        let q = quota(json!({"hard": {"pods": "10", "unknown": "1"}}), json!({}));
        assert!(needs_sync(&q));
        let status = sync(&q, &cluster(), now()).unwrap();
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({"hard": {"pods": "10", "unknown": "1"}, "used": {"pods": "2"}})
        );
        let synced = quota(
            json!({"hard": {"pods": "10", "unknown": "1"}}),
            serde_json::to_value(&status).unwrap(),
        );
        assert!(!needs_sync(&synced), "a name quota does not measure needs no usage");
        assert_eq!(sync(&synced, &cluster(), now()), None);
        // A changed spec is followed; used values of names gone are dropped.
        let changed =
            quota(json!({"hard": {"configmaps": "1"}}), serde_json::to_value(&status).unwrap());
        assert!(needs_sync(&changed));
        assert_eq!(
            serde_json::to_value(sync(&changed, &cluster(), now()).unwrap()).unwrap(),
            json!({"hard": {"configmaps": "1"}, "used": {"configmaps": "1"}})
        );
        // A usage that drifted (a charge whose object was never stored) is corrected.
        let drifted = quota(
            json!({"hard": {"pods": "10"}}),
            json!({"hard": {"pods": "10"}, "used": {"pods": "3"}}),
        );
        assert!(!needs_sync(&drifted));
        assert_eq!(
            serde_json::to_value(sync(&drifted, &cluster(), now()).unwrap()).unwrap(),
            json!({"hard": {"pods": "10"}, "used": {"pods": "2"}})
        );
        // Equal amounts written differently are no change.
        let same_amount = quota(
            json!({"hard": {"cpu": "1"}}),
            json!({"hard": {"cpu": "1000m"}, "used": {"cpu": "350m"}}),
        );
        assert!(!needs_sync(&same_amount));
        assert_eq!(sync(&same_amount, &cluster(), now()), None);
    }

    #[test]
    fn a_quota_watches_the_resources_it_limits() {
        let q = quota(
            json!({"hard": {"requests.cpu": "1", "secrets": "2", "count/jobs.batch": "1"}}),
            json!({}),
        );
        let watched: Vec<String> =
            evaluators(&q).iter().map(|e| format!("{}/{}", e.group(), e.resource())).collect();
        assert_eq!(watched, ["/pods", "/secrets", "batch/jobs"]);
    }
}
