//! What a simulated node reports for the pods bound to it: Running and Ready at once, each
//! container running (init containers completed), an address from the node's pod network.

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, HostIP, Pod,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::pod::resources::qos;

/// The addresses of one node's pod network in use: `.1` to `.254` of its /24.
#[derive(Debug, Clone)]
pub struct Addresses {
    network: Ipv4Addr,
    used: Vec<bool>,
}

impl Addresses {
    /// The free addresses of the /24 at `network`.
    pub fn new(network: Ipv4Addr) -> Self {
        Self { network, used: vec![false; 256] }
    }

    /// A free address, if one is left.
    pub fn take(&mut self) -> Option<Ipv4Addr> {
        let host = (1..255).find(|h| !self.used[*h])?;
        self.used[host] = true;
        Some(Ipv4Addr::from(u32::from(self.network) + host as u32))
    }

    /// Gives an address back.
    pub fn release(&mut self, address: Ipv4Addr) {
        let host = u32::from(address).wrapping_sub(u32::from(self.network)) as usize;
        if let Some(slot) = self.used.get_mut(host) {
            *slot = false;
        }
    }
}

/// The status of `pod` running on a node at `host` with address `ip`.
pub fn running(pod: &Pod, host: Ipv4Addr, ip: Ipv4Addr, now: Timestamp) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let condition = |kind: &str| PodCondition {
        type_: kind.to_string(),
        status: "True".to_string(),
        last_transition_time: Some(Time(now)),
        ..PodCondition::default()
    };
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let status = |name: &str, image: &str, state: ContainerState, ready: bool| ContainerStatus {
        name: name.to_string(),
        image: image.to_string(),
        image_id: format!("sim://{image}"),
        container_id: Some(format!("sim://{uid}-{name}")),
        ready,
        started: Some(ready),
        restart_count: 0,
        state: Some(state),
        ..ContainerStatus::default()
    };
    let running = ContainerState {
        running: Some(ContainerStateRunning { started_at: Some(Time(now)) }),
        ..ContainerState::default()
    };
    let completed = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 0,
            reason: Some("Completed".to_string()),
            started_at: Some(Time(now)),
            finished_at: Some(Time(now)),
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    };
    let init: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            let image = c.image.as_deref().unwrap_or_default();
            if crate::pod::restart::is_sidecar(c) {
                status(&c.name, image, running.clone(), true)
            } else {
                status(&c.name, image, completed.clone(), false)
            }
        })
        .collect();
    PodStatus {
        phase: Some("Running".to_string()),
        host_ip: Some(host.to_string()),
        host_ips: Some(vec![HostIP { ip: host.to_string() }]),
        pod_ip: Some(ip.to_string()),
        pod_ips: Some(vec![PodIP { ip: ip.to_string() }]),
        start_time: Some(Time(now)),
        qos_class: Some(qos(pod).as_str().to_string()),
        conditions: Some(
            [
                "PodReadyToStartContainers",
                "Initialized",
                "ContainersReady",
                "Ready",
                "PodScheduled",
            ]
            .into_iter()
            .map(condition)
            .collect(),
        ),
        container_statuses: Some(
            spec.containers
                .iter()
                .map(|c| {
                    status(&c.name, c.image.as_deref().unwrap_or_default(), running.clone(), true)
                })
                .collect(),
        ),
        init_container_statuses: (!init.is_empty()).then_some(init),
        ..PodStatus::default()
    }
}

/// Whether `pod` already shows what the simulator reports (it is not written twice).
pub fn reported(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.pod_ip.is_some()
            && s.conditions
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_taken_and_given_back() {
        let mut addresses = Addresses::new(Ipv4Addr::new(10, 128, 1, 0));
        let first = addresses.take().expect("free");
        assert_eq!(first, Ipv4Addr::new(10, 128, 1, 1));
        assert_eq!(addresses.take(), Some(Ipv4Addr::new(10, 128, 1, 2)));
        addresses.release(first);
        assert_eq!(addresses.take(), Some(first));
        let left = std::iter::from_fn(|| addresses.take()).count();
        assert_eq!(left, 252);
    }

    #[test]
    fn a_running_pod_looks_as_a_kubelet_reports_it() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u1"},
            "spec": {"initContainers": [{"name": "init", "image": "busybox"}],
                     "containers": [{"name": "c", "image": "nginx"}]}
        }))
        .expect("a pod");
        let status = running(
            &pod,
            Ipv4Addr::new(100, 64, 0, 1),
            Ipv4Addr::new(10, 128, 0, 5),
            Timestamp::now(),
        );
        let mut reported_pod = pod.clone();
        reported_pod.status = Some(status.clone());
        assert!(reported(&reported_pod));
        assert!(!reported(&pod));
        assert_eq!(status.pod_ip.as_deref(), Some("10.128.0.5"));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        let init = &status.init_container_statuses.expect("init")[0];
        assert_eq!(
            init.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.reason.as_deref()),
            Some("Completed")
        );
        assert!(status.container_statuses.expect("containers")[0].ready);
    }
}
