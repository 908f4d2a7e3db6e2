//! The QoS-level cgroups (`/kubepods`, `burstable`, `besteffort`) that the pods' own cgroups
//! go under, kept in line with the node's pods as they come and go (upstream's QoS container
//! manager). What they hold is worked out in [`resources::qos_cgroups`].

use k8s_openapi::api::core::v1::Pod;

use super::resources::{self, CgroupLimits, PodsShare};
use crate::host::Host;

/// What was last written to the QoS-level cgroups.
#[derive(Debug, Default)]
pub struct QosCgroups {
    written: Option<[(&'static str, CgroupLimits); 3]>,
}

impl QosCgroups {
    /// Writes the QoS-level cgroups for `pods` (the node's; those that have ended are left
    /// out), unless they hold that already.
    pub fn update<'a>(
        &mut self,
        host: &dyn Host,
        pods: impl IntoIterator<Item = &'a Pod>,
        share: PodsShare,
    ) {
        let active = pods.into_iter().filter(|pod| {
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        });
        let wanted = resources::qos_cgroups(active, share);
        if self.written == Some(wanted) {
            return;
        }
        let mut all_written = true;
        for (path, limits) in &wanted {
            if let Err(e) = host.set_cgroup(path, limits) {
                tracing::warn!(cgroup = %path, error = %e, "cannot set a QoS-level cgroup");
                all_written = false;
            }
        }
        self.written = all_written.then_some(wanted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::recording::{Call, Recording};

    fn pod(cpu: &str, phase: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i",
                                     "resources": {"requests": {"cpu": cpu}}}]},
            "status": {"phase": phase},
        }))
        .expect("pod")
    }

    fn burstable_shares(host: &Recording) -> Vec<u64> {
        host.calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::SetCgroup(path, limits) if path == "/kubepods/burstable" => {
                    Some(limits.cpu_shares)
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn written_when_the_pods_change_and_not_again() {
        let host = Recording::new();
        let mut qos = QosCgroups::default();
        let (a, b) = (pod("500m", "Running"), pod("1", "Pending"));
        let share = PodsShare { cpu_millis: 2000, memory_limit: 1 << 30 };
        qos.update(&host, [&a], share);
        qos.update(&host, [&a], share);
        qos.update(&host, [&a, &b], share);
        // A pod that has ended weighs nothing.
        qos.update(&host, [&a, &pod("1", "Succeeded")], share);
        assert_eq!(burstable_shares(&host), [512, 1536, 512]);
        assert_eq!(host.calls().len(), 9);
    }
}
