//! Resources as the scheduler counts them: millicores, bytes and whole units, summed over a
//! pod's containers as upstream's `resourcehelper.PodRequests` does (init containers run one at
//! a time, sidecars keep running beside everything started after them, the pod's overhead on
//! top).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use krust_api::quantity::Amount;

/// CPU a container without a CPU request is counted as when nodes are scored (upstream's
/// `DefaultMilliCPURequest`), so that such pods still spread.
pub const DEFAULT_MILLI_CPU: i64 = 100;
/// Memory a container without a memory request is counted as when nodes are scored.
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

/// Amounts of the resources a node has and pods ask for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in thousandths of a core.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Local ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// How many pods (a node's allocatable only).
    pub pods: i64,
    /// Extended resources and huge pages (`nvidia.com/gpu`, `hugepages-2Mi`), in units.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// The amounts of a resource list; quantities that do not parse count as zero (the API
    /// server validated them).
    pub fn of(list: Option<&BTreeMap<String, Quantity>>) -> Self {
        let mut resources = Resources::default();
        for (name, quantity) in list.into_iter().flatten() {
            let Ok(amount) = Amount::of(quantity) else { continue };
            let units = clamp(amount.value());
            match name.as_str() {
                "cpu" => resources.milli_cpu = clamp(amount.milli_value()),
                "memory" => resources.memory = units,
                "ephemeral-storage" => resources.ephemeral_storage = units,
                "pods" => resources.pods = units,
                _ if is_scalar(name) => {
                    resources.scalar.insert(name.clone(), units);
                }
                _ => {}
            }
        }
        resources
    }

    /// Adds `other` to these amounts.
    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_add(other.ephemeral_storage);
        self.pods = self.pods.saturating_add(other.pods);
        for (name, amount) in &other.scalar {
            let sum = self.scalar.entry(name.clone()).or_default();
            *sum = sum.saturating_add(*amount);
        }
    }

    /// Takes `other` off these amounts.
    pub fn subtract(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.saturating_sub(other.ephemeral_storage);
        self.pods = self.pods.saturating_sub(other.pods);
        for (name, amount) in &other.scalar {
            if let Some(sum) = self.scalar.get_mut(name) {
                *sum = sum.saturating_sub(*amount);
            }
        }
    }

    /// Each resource at the larger of the two amounts.
    pub fn max(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (name, amount) in &other.scalar {
            let at = self.scalar.entry(name.clone()).or_default();
            *at = (*at).max(*amount);
        }
    }

    /// Whether nothing is asked for.
    pub fn is_empty(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }

    /// The amount of a named resource (`cpu` in millicores).
    pub fn get(&self, name: &str) -> i64 {
        match name {
            "cpu" => self.milli_cpu,
            "memory" => self.memory,
            "ephemeral-storage" => self.ephemeral_storage,
            "pods" => self.pods,
            _ => self.scalar.get(name).copied().unwrap_or(0),
        }
    }
}

fn clamp(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// Whether a resource is counted by name as a scalar: extended resources (a domain other than
/// `kubernetes.io`), huge pages and attachable volumes.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

/// What a pod asks of its node: the amounts the fit filter compares with what is free, and the
/// amounts scoring uses, where a container without a CPU or memory request counts the defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRequests {
    /// Requests as declared.
    pub requests: Resources,
    /// CPU for scoring, in millicores.
    pub non_zero_milli_cpu: i64,
    /// Memory for scoring, in bytes.
    pub non_zero_memory: i64,
}

impl PodRequests {
    /// The requests of `pod`.
    pub fn of(pod: &Pod) -> Self {
        let Some(spec) = &pod.spec else { return Self::default() };
        let overhead = Resources::of(spec.overhead.as_ref());
        let mut requests = sum(&spec.containers, spec.init_containers.as_deref(), &|c| {
            Resources::of(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
        });
        requests.add(&overhead);
        let mut non_zero = sum(&spec.containers, spec.init_containers.as_deref(), &|c| {
            let declared = c.resources.as_ref().and_then(|r| r.requests.as_ref());
            let mut resources = Resources::of(declared);
            if !declared.is_some_and(|d| d.contains_key("cpu")) {
                resources.milli_cpu = DEFAULT_MILLI_CPU;
            }
            if !declared.is_some_and(|d| d.contains_key("memory")) {
                resources.memory = DEFAULT_MEMORY;
            }
            resources
        });
        non_zero.add(&overhead);
        Self { requests, non_zero_milli_cpu: non_zero.milli_cpu, non_zero_memory: non_zero.memory }
    }
}

/// Upstream's sum: every regular container and sidecar at once, or the largest init step (an
/// init container beside the sidecars started before it), whichever is more.
fn sum(
    containers: &[Container],
    init_containers: Option<&[Container]>,
    requests: &dyn Fn(&Container) -> Resources,
) -> Resources {
    let mut total = Resources::default();
    for container in containers {
        total.add(&requests(container));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for container in init_containers.into_iter().flatten() {
        let own = requests(container);
        let step = if container.restart_policy.as_deref() == Some("Always") {
            total.add(&own);
            sidecars.add(&own);
            sidecars.clone()
        } else {
            let mut step = own;
            step.add(&sidecars);
            step
        };
        init_peak.max(&step);
    }
    total.max(&init_peak);
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"spec": spec})).expect("a pod")
    }

    fn container(name: &str, cpu: Option<&str>, memory: Option<&str>) -> serde_json::Value {
        let mut requests = serde_json::Map::new();
        if let Some(cpu) = cpu {
            requests.insert("cpu".into(), cpu.into());
        }
        if let Some(memory) = memory {
            requests.insert("memory".into(), memory.into());
        }
        serde_json::json!({"name": name, "resources": {"requests": requests}})
    }

    #[test]
    fn pod_requests_follow_upstream() {
        let mut sidecar = container("sidecar", Some("100m"), None);
        sidecar["restartPolicy"] = "Always".into();
        let cases = [
            (
                "regular containers add up",
                serde_json::json!({"containers": [
                    container("a", Some("250m"), Some("64Mi")),
                    container("b", Some("250m"), None)]}),
                (500, 64 << 20),
                (500, (64 << 20) + DEFAULT_MEMORY),
            ),
            (
                "an init container larger than the rest wins",
                serde_json::json!({
                    "initContainers": [container("init", Some("2"), Some("1Gi"))],
                    "containers": [container("a", Some("500m"), Some("64Mi"))]}),
                (2000, 1 << 30),
                (2000, 1 << 30),
            ),
            (
                "a sidecar runs beside later init containers and the regular ones",
                serde_json::json!({
                    "initContainers": [sidecar, container("init", Some("1"), None)],
                    "containers": [container("a", Some("500m"), None)]}),
                (1100, 0),
                (1100, 2 * DEFAULT_MEMORY),
            ),
            (
                "overhead is added on top",
                serde_json::json!({
                    "overhead": {"cpu": "50m", "memory": "10Mi"},
                    "containers": [container("a", Some("100m"), Some("10Mi"))]}),
                (150, 20 << 20),
                (150, 20 << 20),
            ),
            (
                "no requests: nothing declared, defaults for scoring",
                serde_json::json!({"containers": [container("a", None, None)]}),
                (0, 0),
                (DEFAULT_MILLI_CPU, DEFAULT_MEMORY),
            ),
        ];
        for (name, spec, declared, non_zero) in cases {
            let requests = PodRequests::of(&pod(spec));
            assert_eq!(
                (requests.requests.milli_cpu, requests.requests.memory),
                declared,
                "{name}: declared"
            );
            assert_eq!(
                (requests.non_zero_milli_cpu, requests.non_zero_memory),
                non_zero,
                "{name}: for scoring"
            );
        }
    }

    #[test]
    fn resource_lists_read_every_kind() {
        let list: BTreeMap<String, Quantity> = [
            ("cpu", "1500m"),
            ("memory", "1Gi"),
            ("pods", "110"),
            ("ephemeral-storage", "10Gi"),
            ("nvidia.com/gpu", "2"),
            ("hugepages-2Mi", "4Mi"),
            ("storage", "1Gi"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect();
        let resources = Resources::of(Some(&list));
        assert_eq!(resources.milli_cpu, 1500);
        assert_eq!(resources.memory, 1 << 30);
        assert_eq!(resources.pods, 110);
        assert_eq!(resources.get("nvidia.com/gpu"), 2);
        assert_eq!(resources.get("hugepages-2Mi"), 4 << 20);
        assert!(!resources.scalar.contains_key("storage"));
    }
}
