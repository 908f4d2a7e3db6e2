//! A pod's QoS class and its containers' cgroup settings, from requests and limits (pure).

use k8s_openapi::api::core::v1::{Container, Pod};
use krust_api::quantity::Amount;

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
}
