//! What a pod uses, as upstream's pod evaluator (`pkg/quota/v1/evaluator/core/pods.go`) and
//! the pod resource helpers it calls (`PodRequests`, `PodLimits`) count it: its requests and
//! limits summed over its containers (restartable init containers added, other init
//! containers as a floor), plus its overhead; nothing but `count/pods` once it is terminal.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;

use super::resources::{self, ResourceList};
use crate::quantity::Amount;

/// The object count name of pods.
pub const COUNT: &str = "count/pods";

/// The resources the pod evaluator tracks by name (upstream's `podResources`).
pub const RESOURCES: &[&str] = &[
    COUNT,
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// Prefixes of resources the pod evaluator tracks (huge pages).
const PREFIXES: &[&str] = &["hugepages-", "requests.hugepages-"];

/// The resources every container must name once a matching quota limits them (upstream's
/// `validationSet`, kept for compatibility and not to be extended).
const MUST_SPECIFY: &[&str] =
    &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];

/// Whether `name` is a resource of a node's own (`cpu`, `kubernetes.io/...`), not an
/// extended one (upstream's `IsNativeResource`).
fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// Whether a container's resource `name` is an extended resource, charged to quota as
/// `requests.<name>` (upstream's `IsExtendedResourceName`).
fn is_extended(name: &str) -> bool {
    !is_native(name) && !name.starts_with("requests.")
}

/// Whether a quota's resource `name` is an extended resource's (upstream's
/// `isExtendedResourceNameForQuota`): `requests.<extended>`, or a device class's.
fn is_extended_quota_name(name: &str) -> bool {
    let implicit = name.starts_with("requests.deviceclass.resource.kubernetes.io/");
    (!is_native(name) || implicit) && name.starts_with("requests.")
}

/// Whether the pod evaluator tracks the quota resource `name`.
pub fn tracks(name: &str) -> bool {
    RESOURCES.contains(&name)
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || is_extended_quota_name(name)
}

/// Whether a pod is charged for its compute resources (upstream's `QuotaV1Pod`): not once
/// terminal (`Succeeded`, `Failed`), nor once its deletion's grace period has run out.
pub fn counted(pod: &Pod, now: Timestamp) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    if let (Some(deleted), Some(grace)) =
        (&pod.metadata.deletion_timestamp, pod.metadata.deletion_grace_period_seconds)
    {
        let end = deleted.0.as_nanosecond() + i128::from(grace) * 1_000_000_000;
        if now.as_nanosecond() > end {
            return false;
        }
    }
    true
}

/// What a pod uses (upstream's `PodUsageFunc`): `count/pods` always, its compute resources
/// while [`counted`].
pub fn usage(pod: &Pod, now: Timestamp) -> ResourceList {
    let mut result = ResourceList::from([(COUNT.to_string(), Amount::units(1))]);
    if !counted(pod, now) {
        return result;
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let mut requests = pod_total(&spec, |c| c.resources.as_ref().and_then(|r| r.requests.as_ref()));
    let mut limits = pod_total(&spec, |c| c.resources.as_ref().and_then(|r| r.limits.as_ref()));
    // Overhead is added to every request, and to the limits that are set.
    for (name, amount) in resources::parse(spec.overhead.as_ref()) {
        let request = requests.entry(name.clone()).or_insert(Amount::ZERO);
        *request = *request + amount;
        if let Some(limit) = limits.get_mut(&name) {
            *limit = *limit + amount;
        }
    }
    result.extend(compute_usage(&requests, &limits));
    result
}

/// The requests (or limits) of a pod's containers: the containers' and restartable init
/// containers' sum, or, when larger, what an init container needs while it runs (itself
/// plus the restartable init containers started before it).
fn pod_total(
    spec: &PodSpec,
    of: impl Fn(&Container) -> Option<&BTreeMap<String, Quantity>>,
) -> ResourceList {
    let mut total = ResourceList::new();
    for container in &spec.containers {
        total = resources::add(&total, &resources::parse(of(container)));
    }
    let mut restartable = ResourceList::new();
    let mut init = ResourceList::new();
    for container in spec.init_containers.iter().flatten() {
        let own = resources::parse(of(container));
        let running = if container.restart_policy.as_deref() == Some("Always") {
            total = resources::add(&total, &own);
            restartable = resources::add(&restartable, &own);
            restartable.clone()
        } else {
            resources::add(&own, &restartable)
        };
        max_into(&mut init, &running);
    }
    max_into(&mut total, &init);
    total
}

/// `into[k] = max(into[k], from[k])` for every name of `from`.
fn max_into(into: &mut ResourceList, from: &ResourceList) {
    for (k, v) in from {
        let entry = into.entry(k.clone()).or_insert(*v);
        if v > entry {
            *entry = *v;
        }
    }
}

/// The quota resources of requests and limits (upstream's `podComputeUsageHelper`):
/// `pods`, `cpu`/`memory`/`ephemeral-storage` as aliases of their requests, `requests.*`,
/// `limits.*`, huge pages and extended resources.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut result = ResourceList::from([("pods".to_string(), Amount::units(1))]);
    for name in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(request) = requests.get(name) {
            result.insert(name.to_string(), *request);
            result.insert(format!("requests.{name}"), *request);
        }
        if let Some(limit) = limits.get(name) {
            result.insert(format!("limits.{name}"), *limit);
        }
    }
    for (name, request) in requests {
        if name.starts_with("hugepages-") {
            result.insert(name.clone(), *request);
            result.insert(format!("requests.{name}"), *request);
        }
        if is_extended(name) {
            result.insert(format!("requests.{name}"), *request);
        }
    }
    result
}

/// Every container must name the cpu and memory requests and limits a matching quota
/// limits (upstream's `Constraints`): `must specify limits.cpu for: a,b; memory for: c`.
pub fn constraints(required: &BTreeSet<String>, pod: &Pod) -> Result<(), String> {
    let required: BTreeSet<&str> =
        required.iter().map(String::as_str).filter(|n| MUST_SPECIFY.contains(n)).collect();
    if required.is_empty() {
        return Ok(());
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for container in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        let resources = container.resources.clone().unwrap_or_default();
        let usage = compute_usage(
            &resources::parse(resources.requests.as_ref()),
            &resources::parse(resources.limits.as_ref()),
        );
        for name in required.iter().filter(|n| !usage.contains_key(**n)) {
            missing.entry(name).or_default().insert(container.name.clone());
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(name, containers)| {
            format!("{name} for: {}", containers.iter().cloned().collect::<Vec<_>>().join(","))
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::*;

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    #[test]
    fn pod_usage_follows_upstreams_helpers() {
        let cases: &[(&str, Value, &str)] = &[
            (
                "one container: requests alias cpu and memory",
                json!({"containers": [{"name": "c", "resources": {
                    "requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"cpu": "200m", "memory": "128Mi"}}}]}),
                "count/pods=1,cpu=100m,limits.cpu=200m,limits.memory=128Mi,memory=64Mi,pods=1,requests.cpu=100m,requests.memory=64Mi",
            ),
            (
                "containers are summed, an init container is a floor",
                json!({"containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "200m"}}}],
                  "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}]}),
                "count/pods=1,cpu=500m,memory=1Gi,pods=1,requests.cpu=500m,requests.memory=1Gi",
            ),
            (
                "a restartable init container adds to the containers",
                json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}],
                  "initContainers": [{"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}}]}),
                "count/pods=1,cpu=200m,pods=1,requests.cpu=200m",
            ),
            (
                "overhead adds to requests and to set limits",
                json!({"overhead": {"cpu": "10m", "memory": "1Mi"},
                  "containers": [{"name": "a", "resources": {"limits": {"cpu": "1"}}}]}),
                "count/pods=1,cpu=10m,limits.cpu=1010m,memory=1Mi,pods=1,requests.cpu=10m,requests.memory=1Mi",
            ),
            (
                "extended resources and huge pages",
                json!({"containers": [{"name": "a", "resources": {
                    "requests": {"example.com/gpu": "2", "hugepages-2Mi": "4Mi"},
                    "limits": {"example.com/gpu": "2", "hugepages-2Mi": "4Mi"}}}]}),
                "count/pods=1,hugepages-2Mi=4Mi,pods=1,requests.example.com/gpu=2,requests.hugepages-2Mi=4Mi",
            ),
            (
                "nothing asked: the pod itself",
                json!({"containers": [{"name": "a"}]}),
                "count/pods=1,pods=1",
            ),
        ];
        for (case, spec, expected) in cases {
            assert_eq!(resources::pretty(&usage(&pod(spec.clone()), now())), *expected, "{case}");
        }
    }

    #[test]
    fn terminal_and_long_deleted_pods_count_only_as_objects() {
        let mut p =
            pod(json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}));
        p.status = serde_json::from_value(json!({"phase": "Succeeded"})).unwrap();
        assert_eq!(resources::pretty(&usage(&p, now())), "count/pods=1");
        p.status = None;
        p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            Timestamp::from_second(1_700_000_000 - 60).unwrap(),
        ));
        p.metadata.deletion_grace_period_seconds = Some(30);
        assert!(!counted(&p, now()), "grace ran out");
        p.metadata.deletion_grace_period_seconds = Some(120);
        assert!(counted(&p, now()), "within its grace");
    }

    #[test]
    fn missing_requests_and_limits_are_named_per_container() {
        let p = pod(json!({"containers": [
            {"name": "b", "resources": {"requests": {"cpu": "1"}}},
            {"name": "a"}],
          "initContainers": [{"name": "i", "resources": {"limits": {"memory": "1Gi"}}}]}));
        let required: BTreeSet<String> =
            ["requests.cpu", "limits.memory", "pods"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            constraints(&required, &p).unwrap_err(),
            "must specify limits.memory for: a,b; requests.cpu for: a,i"
        );
        let only_pods: BTreeSet<String> = ["pods".to_string()].into();
        assert_eq!(constraints(&only_pods, &p), Ok(()));
    }

    #[test]
    fn quota_names_of_pods() {
        for (name, tracked) in [
            ("requests.cpu", true),
            ("count/pods", true),
            ("hugepages-2Mi", true),
            ("requests.example.com/gpu", true),
            ("requests.kubernetes.io/thing", false),
            ("services", false),
            ("requests.storage", false),
        ] {
            assert_eq!(tracks(name), tracked, "{name}");
        }
    }
}
