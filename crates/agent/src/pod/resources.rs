//! A pod's QoS class and its containers' cgroup settings, from requests and limits (pure).

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use krust_api::quantity::Amount;

use super::restart::is_sidecar;

pub use crate::sys::CgroupLimits;

/// Upstream's QoS classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// Every container limits CPU and memory, with requests equal to limits.
    Guaranteed,
    /// Some request or limit, but not Guaranteed.
    Burstable,
    /// No request or limit at all.
    BestEffort,
}

impl Qos {
    /// The name in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Qos::Guaranteed => "Guaranteed",
            Qos::Burstable => "Burstable",
            Qos::BestEffort => "BestEffort",
        }
    }
}

fn amount(container: &Container, limits: bool, resource: &str) -> Option<Amount> {
    let resources = container.resources.as_ref()?;
    let map = if limits { resources.limits.as_ref() } else { resources.requests.as_ref() };
    map?.get(resource).and_then(|q| Amount::of(q).ok())
}

/// The pod's QoS class, as upstream computes it.
pub fn qos(pod: &Pod) -> Qos {
    let Some(spec) = pod.spec.as_ref() else { return Qos::BestEffort };
    let containers: Vec<&Container> =
        spec.containers.iter().chain(spec.init_containers.iter().flatten()).collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        for resource in ["cpu", "memory"] {
            let request = amount(c, false, resource);
            let limit = amount(c, true, resource);
            if request.as_ref().is_some_and(|r| !r.is_zero())
                || limit.as_ref().is_some_and(|l| !l.is_zero())
            {
                any = true;
            }
            match (request, limit) {
                (_, None) => guaranteed = false,
                (Some(r), Some(l)) if r != l => guaranteed = false,
                _ => {}
            }
        }
    }
    if !any {
        Qos::BestEffort
    } else if guaranteed {
        Qos::Guaranteed
    } else {
        Qos::Burstable
    }
}

/// A container's cgroup settings: (memory limit in bytes, CPU shares, CPU quota per 100 ms).
pub fn cgroup(container: &Container) -> (Option<i64>, u64, Option<i64>) {
    let memory = amount(container, true, "memory").map(|m| m.value() as i64).filter(|m| *m > 0);
    let request_millis = amount(container, false, "cpu")
        .or_else(|| amount(container, true, "cpu"))
        .map_or(0, |c| c.milli_value() as u64);
    // Upstream's MilliCPUToShares: 1024 per core, at least 2.
    let shares = (request_millis * 1024 / 1000).max(2);
    let quota = amount(container, true, "cpu")
        .map(|c| c.milli_value() as i64 * 100_000 / 1000)
        .filter(|q| *q > 0)
        .map(|q| q.max(1000));
    (memory, shares, quota)
}

/// The OOM score adjustment of a container of a pod in `qos` (upstream's policy).
pub fn oom_score_adj(qos: Qos, container: &Container, memory_capacity: u64) -> i32 {
    match qos {
        Qos::Guaranteed => -997,
        Qos::BestEffort => 1000,
        Qos::Burstable => {
            let request = amount(container, false, "memory").map_or(0, |m| m.value().max(0) as u64);
            if memory_capacity == 0 {
                return 999;
            }
            let adj = 1000 - (1000 * request / memory_capacity) as i64;
            adj.clamp(2, 999) as i32
        }
    }
}

/// The pod-level cgroup parent of a pod in `qos` (upstream's `kubepods` layout).
pub fn cgroup_parent(qos: Qos, pod_uid: &str) -> String {
    match qos {
        Qos::Guaranteed => format!("/kubepods/pod{pod_uid}"),
        Qos::Burstable => format!("/kubepods/burstable/pod{pod_uid}"),
        Qos::BestEffort => format!("/kubepods/besteffort/pod{pod_uid}"),
    }
}

/// The CFS period the quotas are per (upstream's default, 100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;

/// Upstream's `MilliCPUToShares`: 1024 per core, between 2 and 262,144.
fn shares(millis: u64) -> u64 {
    (millis.saturating_mul(1024) / 1000).clamp(2, 262_144)
}

/// A pod's effective amount of something its containers have (`value`): its running
/// containers' (app containers and sidecars) together, or one init container's if larger.
fn effective(spec: &PodSpec, value: impl Fn(&Container) -> i64) -> i64 {
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let running = spec.containers.iter().chain(inits.iter().filter(|c| is_sidecar(c)));
    let sum: i64 = running.map(&value).sum();
    inits.iter().map(value).fold(sum, i64::max)
}

/// The pod's effective CPU request in millicores ([`effective`]). A container without a CPU
/// request but with a limit requests its limit.
pub fn cpu_request_millis(pod: &Pod) -> u64 {
    let Some(spec) = pod.spec.as_ref() else { return 0 };
    let request = |c: &Container| {
        amount(c, false, "cpu").or_else(|| amount(c, true, "cpu")).map_or(0, |a| a.milli_value())
    };
    effective(spec, |c| request(c) as i64).max(0) as u64
}

/// What the node gives its pods together (upstream's node allocatable, enforced on
/// `/kubepods` as its `enforce-node-allocatable=pods` default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodsShare {
    /// The allocatable CPU, in millicores: `/kubepods` weighs as much.
    pub cpu_millis: u64,
    /// The memory the pods may use together, in bytes: capacity less the reserved amounts
    /// (not less the eviction threshold, so that the agent evicts before the kernel kills).
    pub memory_limit: u64,
}

/// The QoS-level cgroups under which the pods' own go, with their settings (upstream's QoS
/// container manager): `/kubepods` weighs as the node's allocatable CPU and holds the pods'
/// memory limit, `burstable` weighs as its pods' CPU requests together, and `besteffort` as
/// little as a cgroup can. `pods` are the node's pods that have not ended.
pub fn qos_cgroups<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    share: PodsShare,
) -> [(&'static str, CgroupLimits); 3] {
    let burstable: u64 =
        pods.into_iter().filter(|pod| qos(pod) == Qos::Burstable).map(cpu_request_millis).sum();
    let weighing = |millis| CgroupLimits {
        cpu_shares: shares(millis),
        cpu_quota: None,
        cpu_period: CPU_PERIOD_US,
        memory_limit: None,
    };
    let memory_limit = i64::try_from(share.memory_limit).ok().filter(|&bytes| bytes > 0);
    [
        ("/kubepods", CgroupLimits { memory_limit, ..weighing(share.cpu_millis) }),
        ("/kubepods/burstable", weighing(burstable)),
        ("/kubepods/besteffort", weighing(0)),
    ]
}

/// The pod's own cgroup settings (upstream's `ResourceConfigForPod`), over its containers'
/// effective requests and limits (the larger of the app containers' and sidecars' sum and
/// any one init container's): CPU shares from the requests (2 for a best-effort pod), a
/// CPU quota and a memory limit when every container has one.
pub fn pod_cgroup(pod: &Pod) -> CgroupLimits {
    let open = CgroupLimits {
        cpu_shares: 2,
        cpu_quota: None,
        cpu_period: CPU_PERIOD_US,
        memory_limit: None,
    };
    let Some(spec) = pod.spec.as_ref() else { return open };
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let every = spec.containers.iter().chain(inits);
    let limit = |resource: &str, scale: fn(&Amount) -> i64| {
        effective(spec, |c| amount(c, true, resource).map_or(0, |a| scale(&a)))
    };
    let millis = |a: &Amount| a.milli_value() as i64;
    let bytes = |a: &Amount| a.value() as i64;
    let request_millis = cpu_request_millis(pod);
    let all_limit = |resource: &str| {
        every.clone().all(|c| amount(c, true, resource).is_some_and(|a| !a.is_zero()))
    };
    let best_effort = qos(pod) == Qos::BestEffort;
    CgroupLimits {
        cpu_period: CPU_PERIOD_US,
        cpu_shares: if best_effort { 2 } else { shares(request_millis) },
        cpu_quota: (!best_effort && all_limit("cpu"))
            .then(|| (limit("cpu", millis) * CPU_PERIOD_US as i64 / 1000).max(1000)),
        memory_limit: (!best_effort && all_limit("memory")).then(|| limit("memory", bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(resources: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]},
        }))
        .expect("pod")
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos(&pod(serde_json::json!({}))), Qos::BestEffort);
        assert_eq!(qos(&pod(serde_json::json!({"requests": {"cpu": "100m"}}))), Qos::Burstable);
        let both = serde_json::json!({"limits": {"cpu": "1", "memory": "64Mi"}});
        assert_eq!(qos(&pod(both)), Qos::Guaranteed);
        let unequal = serde_json::json!({"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "500m"}});
        assert_eq!(qos(&pod(unequal)), Qos::Burstable);
    }

    #[test]
    fn cgroup_settings() {
        let p = pod(
            serde_json::json!({"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m"}}),
        );
        let c = &p.spec.as_ref().expect("spec").containers[0];
        assert_eq!(cgroup(c), (Some(64 << 20), 256, Some(50_000)));
        assert_eq!(oom_score_adj(Qos::Burstable, c, 1 << 30), 999);
    }

    fn limits(cpu_shares: u64, cpu_quota: Option<i64>, memory_limit: Option<i64>) -> CgroupLimits {
        CgroupLimits { cpu_shares, cpu_quota, cpu_period: CPU_PERIOD_US, memory_limit }
    }

    #[test]
    fn the_pods_cgroup_sums_its_containers() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [
                    {"name": "setup", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}},
                    {"name": "side", "restartPolicy": "Always",
                     "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}}},
                ],
                "containers": [
                    {"name": "a", "resources": {"limits": {"cpu": "200m", "memory": "64Mi"}}},
                    {"name": "b", "resources": {"limits": {"cpu": "300m", "memory": "64Mi"}}},
                ],
            },
        }))
        .expect("pod");
        // The init container's 2 CPUs and 1 GiB outweigh the 600m and 160 MiB running later.
        assert_eq!(pod_cgroup(&p), limits(2048, Some(200_000), Some(1 << 30)));
        let small = pod(serde_json::json!({"limits": {"cpu": "250m", "memory": "64Mi"}}));
        assert_eq!(pod_cgroup(&small), limits(256, Some(25_000), Some(64 << 20)));
        // A container without a limit leaves the pod without one.
        let open = pod(serde_json::json!({"requests": {"cpu": "500m"}}));
        assert_eq!(pod_cgroup(&open), limits(512, None, None));
        assert_eq!(pod_cgroup(&pod(serde_json::json!({}))), limits(2, None, None));
    }

    #[test]
    fn qos_cgroups_weigh_their_pods() {
        let burstable = pod(serde_json::json!({"requests": {"cpu": "250m"}}));
        let limited =
            pod(serde_json::json!({"limits": {"cpu": "500m"}, "requests": {"memory": "1Mi"}}));
        let guaranteed = pod(serde_json::json!({"limits": {"cpu": "1", "memory": "64Mi"}}));
        let share = PodsShare { cpu_millis: 1900, memory_limit: 3 << 30 };
        let tiers =
            qos_cgroups([&burstable, &limited, &guaranteed, &pod(serde_json::json!({}))], share);
        let shares: Vec<(&str, u64)> =
            tiers.iter().map(|(path, c)| (*path, c.cpu_shares)).collect();
        assert_eq!(
            shares,
            [("/kubepods", 1945), ("/kubepods/burstable", 768), ("/kubepods/besteffort", 2)]
        );
        // Only `/kubepods` holds the pods' memory; no tier has a CPU quota.
        let memory: Vec<Option<i64>> = tiers.iter().map(|(_, c)| c.memory_limit).collect();
        assert_eq!(memory, [Some(3 << 30), None, None]);
        assert!(tiers.iter().all(|(_, c)| c.cpu_quota.is_none()));
        assert_eq!(qos_cgroups([], share)[1].1.cpu_shares, 2);
    }
}
