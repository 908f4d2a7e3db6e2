//! What a Service's pods offer as endpoints, shared by the Endpoints and EndpointSlice
//! controllers (upstream's `pkg/controller/util/endpoint`): which pods count, whether they
//! are ready, which port a service port reaches on each, and the hostname they publish.

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Whether `pod` belongs among a service's endpoints (upstream's `ShouldPodBeInEndpoints`):
/// it has an address and has not finished; a pod being deleted only when `include_terminating`.
pub fn should_include(pod: &Pod, include_terminating: bool) -> bool {
    let status = pod.status.as_ref();
    if status.and_then(|s| s.pod_ip.as_deref()).is_none_or(str::is_empty) {
        return false;
    }
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The pod's addresses: `status.podIPs`, or `status.podIP` when that list is empty.
pub fn pod_ips(pod: &Pod) -> Vec<&str> {
    let Some(status) = pod.status.as_ref() else { return Vec::new() };
    let listed: Vec<&str> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|ip| ip.ip.as_str())
        .filter(|ip| !ip.is_empty())
        .collect();
    if !listed.is_empty() {
        return listed;
    }
    status.pod_ip.as_deref().filter(|ip| !ip.is_empty()).into_iter().collect()
}

/// The port a service port reaches on `pod` (upstream's `FindPort`): a number as it is, a
/// name looked up among the containers' ports of the same protocol; `None` when the name is
/// not there (the pod then offers no endpoint for that port).
pub fn target_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => match name.parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port),
        },
    }
}

/// The hostname a pod publishes in a service's records: its `spec.hostname` when its
/// `spec.subdomain` names the service (upstream's rule for both controllers).
pub fn hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == service.metadata.name.as_deref()
        && pod.metadata.namespace == service.metadata.namespace)
        .then(|| hostname.to_string())
}

/// Whether the service is headless (`clusterIP: None`).
pub fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether the service publishes pods that are not ready.
pub fn publishes_not_ready(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.publish_not_ready_addresses) == Some(true)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus, ServiceSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    /// A running pod at `ip` with labels `app=web`, a container port `http` (80), ready or not.
    pub fn pod(name: &str, ip: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-a".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 80,
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    /// A service `web` selecting `app=web`, with the given ports.
    pub fn service(ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-web".into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                cluster_ip: Some("10.43.0.10".into()),
                ports: Some(ports),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }

    pub fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            protocol: Some("TCP".into()),
            target_port: Some(target),
            ..ServicePort::default()
        }
    }

    #[test]
    fn which_pods_count() {
        let mut p = pod("a", "10.42.0.5", true);
        assert!(should_include(&p, false));
        p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert!(!should_include(&p, false));
        assert!(should_include(&p, true));
        let mut done = pod("b", "10.42.0.6", false);
        done.status.as_mut().expect("present").phase = Some("Succeeded".into());
        assert!(!should_include(&done, true));
        let mut unaddressed = pod("c", "", false);
        unaddressed.status.as_mut().expect("present").pod_ips = None;
        assert!(!should_include(&unaddressed, true));
    }

    #[test]
    fn ports_by_number_and_name() {
        let p = pod("a", "10.42.0.5", true);
        assert_eq!(target_port(&p, &port("x", 8080, IntOrString::Int(9000))), Some(9000));
        assert_eq!(target_port(&p, &port("x", 8080, IntOrString::String("http".into()))), Some(80));
        assert_eq!(target_port(&p, &port("x", 8080, IntOrString::String("grpc".into()))), None);
        let mut udp = port("x", 53, IntOrString::String("http".into()));
        udp.protocol = Some("UDP".into());
        assert_eq!(target_port(&p, &udp), None);
        let mut unset = port("x", 8080, IntOrString::Int(0));
        unset.target_port = None;
        assert_eq!(target_port(&p, &unset), Some(8080));
    }

    #[test]
    fn hostname_only_under_its_subdomain() {
        let mut p = pod("a", "10.42.0.5", true);
        let svc = service(vec![]);
        assert_eq!(hostname(&p, &svc), None);
        let spec = p.spec.as_mut().expect("present");
        spec.hostname = Some("a-0".into());
        spec.subdomain = Some("other".into());
        assert_eq!(hostname(&p, &svc), None);
        p.spec.as_mut().expect("present").subdomain = Some("web".into());
        assert_eq!(hostname(&p, &svc).as_deref(), Some("a-0"));
    }
}
