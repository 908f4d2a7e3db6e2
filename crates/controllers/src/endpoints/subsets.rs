//! The Endpoints a Service should have (upstream's `syncService` of the endpoints
//! controller): each selected pod's address, ready or not, under each service port it offers,
//! grouped into subsets of equal ports, at most [`MAX_CAPACITY`] addresses.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
};

use crate::runtime::endpoint::{
    hostname, is_headless, is_ready, pod_ips, publishes_not_ready, should_include, target_port,
};

/// The most addresses one Endpoints object carries (upstream's `maxCapacity`).
pub const MAX_CAPACITY: usize = 1000;
/// The annotation that says addresses were left out.
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// The label of a headless service's Endpoints.
pub const HEADLESS: &str = "service.kubernetes.io/headless";

/// The subsets of `service` over `pods` (the pods its selector matches), and whether
/// addresses were left out over [`MAX_CAPACITY`].
pub fn subsets(service: &Service, pods: &[&Pod]) -> (Vec<EndpointSubset>, bool) {
    let publish = publishes_not_ready(service);
    let family = family(service);
    let service_ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    // Each pod's address with the ports it offers; addresses offering the same ports then
    // share a subset (upstream's `RepackSubsets`).
    let mut by_ports: BTreeMap<Vec<PortKey>, Addresses> = BTreeMap::new();
    for pod in pods.iter().copied().filter(|p| should_include(p, publish)) {
        let Some(ip) = pod_ips(pod).into_iter().find(|ip| is_family(ip, family)) else {
            continue;
        };
        let mut ports: Vec<PortKey> = service_ports
            .iter()
            .filter_map(|port| {
                Some(PortKey {
                    name: port.name.clone().unwrap_or_default(),
                    port: target_port(pod, port)?,
                    protocol: port.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    app_protocol: port.app_protocol.clone(),
                })
            })
            .collect();
        // A pod that offers none of the ports is no endpoint; a headless service without
        // ports lists its pods' addresses alone.
        if ports.is_empty() && !(service_ports.is_empty() && is_headless(service)) {
            continue;
        }
        ports.sort();
        ports.dedup();
        let group = by_ports.entry(ports).or_default();
        let list = if publish || is_ready(pod) { &mut group.ready } else { &mut group.not_ready };
        list.push(address(pod, service, ip));
    }
    repack(by_ports)
}

/// The Endpoints object for `service` with `subsets`, keeping what `current` has beyond
/// them (annotations, resourceVersion) and the service's labels.
pub fn endpoints(
    service: &Service,
    current: Option<&Endpoints>,
    subsets: Vec<EndpointSubset>,
    truncated: bool,
) -> Endpoints {
    let mut wanted = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: service.metadata.name.clone(),
            namespace: service.metadata.namespace.clone(),
            ..Default::default()
        },
        subsets: None,
    });
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    if is_headless(service) {
        labels.insert(HEADLESS.to_string(), String::new());
    } else {
        labels.remove(HEADLESS);
    }
    wanted.metadata.labels = (!labels.is_empty()).then_some(labels);
    let mut annotations = wanted.metadata.annotations.take().unwrap_or_default();
    if truncated {
        annotations.insert(OVER_CAPACITY.to_string(), "truncated".to_string());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    wanted.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    wanted.subsets = (!subsets.is_empty()).then_some(subsets);
    wanted
}

/// Whether `current` already says what `wanted` says.
pub fn unchanged(current: &Endpoints, wanted: &Endpoints) -> bool {
    let empty = |s: &Option<Vec<EndpointSubset>>| s.as_ref().is_none_or(Vec::is_empty);
    (current.subsets == wanted.subsets || (empty(&current.subsets) && empty(&wanted.subsets)))
        && current.metadata.labels == wanted.metadata.labels
        && current.metadata.annotations == wanted.metadata.annotations
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PortKey {
    name: String,
    port: i32,
    protocol: String,
    app_protocol: Option<String>,
}

#[derive(Default)]
struct Addresses {
    ready: Vec<EndpointAddress>,
    not_ready: Vec<EndpointAddress>,
}

/// The subsets of addresses grouped by their ports, sorted, cut to [`MAX_CAPACITY`]
/// addresses with ready ones kept first.
fn repack(by_ports: BTreeMap<Vec<PortKey>, Addresses>) -> (Vec<EndpointSubset>, bool) {
    let mut subsets: Vec<Subset> = by_ports
        .into_iter()
        .map(|(ports, mut group)| {
            sort(&mut group.ready);
            sort(&mut group.not_ready);
            Subset { ready: group.ready, not_ready: group.not_ready, ports }
        })
        .collect();
    let total: usize = subsets.iter().map(|s| s.ready.len() + s.not_ready.len()).sum();
    let truncated = total > MAX_CAPACITY;
    if truncated {
        let mut room = MAX_CAPACITY;
        for subset in &mut subsets {
            subset.ready.truncate(room);
            room -= subset.ready.len();
        }
        for subset in &mut subsets {
            subset.not_ready.truncate(room);
            room -= subset.not_ready.len();
        }
        subsets.retain(|s| !s.ready.is_empty() || !s.not_ready.is_empty());
    }
    let subsets = subsets
        .into_iter()
        .map(|s| EndpointSubset {
            addresses: (!s.ready.is_empty()).then_some(s.ready),
            not_ready_addresses: (!s.not_ready.is_empty()).then_some(s.not_ready),
            ports: (!s.ports.is_empty()).then(|| {
                s.ports
                    .into_iter()
                    .map(|p| EndpointPort {
                        name: (!p.name.is_empty()).then_some(p.name),
                        port: p.port,
                        protocol: Some(p.protocol),
                        app_protocol: p.app_protocol,
                    })
                    .collect()
            }),
        })
        .collect();
    (subsets, truncated)
}

struct Subset {
    ready: Vec<EndpointAddress>,
    not_ready: Vec<EndpointAddress>,
    ports: Vec<PortKey>,
}

fn address_key(a: &EndpointAddress) -> (String, String) {
    let uid = a.target_ref.as_ref().and_then(|t| t.uid.clone()).unwrap_or_default();
    (a.ip.clone(), uid)
}

fn sort(addresses: &mut [EndpointAddress]) {
    addresses.sort_by_key(address_key);
}

fn address(pod: &Pod, service: &Service, ip: &str) -> EndpointAddress {
    EndpointAddress {
        ip: ip.to_string(),
        hostname: hostname(pod, service),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
    }
}

/// The service's primary IP family: its first `ipFamilies`, else IPv4.
pub(crate) fn family(service: &Service) -> &str {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first())
        .map_or("IPv4", String::as_str)
}

/// Whether `ip` is an address of `family` (`IPv4` or `IPv6`).
pub(crate) fn is_family(ip: &str, family: &str) -> bool {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => family == "IPv4",
        Ok(std::net::IpAddr::V6(_)) => family == "IPv6",
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::endpoint::tests::{pod, port, service};
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        addresses.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn ready_and_not_ready_addresses_share_a_subset() {
        let svc = service(vec![port("http", 8080, IntOrString::String("http".into()))]);
        let (a, b) = (pod("a", "10.42.0.6", true), pod("b", "10.42.0.5", false));
        let (subsets, truncated) = subsets(&svc, &[&a, &b]);
        assert!(!truncated);
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.6"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.42.0.5"]);
        let ports = subsets[0].ports.as_ref().expect("present");
        assert_eq!((ports[0].name.as_deref(), ports[0].port), (Some("http"), 80));
        let target = subsets[0].addresses.as_ref().expect("present")[0]
            .target_ref
            .as_ref()
            .expect("present");
        assert_eq!(target.name.as_deref(), Some("a"));
    }

    #[test]
    fn pods_without_a_named_port_go_to_their_own_subset() {
        let svc = service(vec![
            port("http", 8080, IntOrString::String("http".into())),
            port("metrics", 9090, IntOrString::Int(9090)),
        ]);
        let a = pod("a", "10.42.0.5", true);
        let mut b = pod("b", "10.42.0.6", true);
        b.spec.as_mut().expect("present").containers[0].ports = None;
        let (subsets, _) = subsets(&svc, &[&a, &b]);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let mut c = pod("c", "10.42.0.7", true);
        c.spec.as_mut().expect("present").containers[0].ports = None;
        let svc_named = service(vec![port("http", 8080, IntOrString::String("http".into()))]);
        let (only_named, _) = super::subsets(&svc_named, &[&c]);
        assert!(only_named.is_empty(), "a pod offering no port is no endpoint");
        // Pod a serves both ports; b only metrics.
        let both = subsets
            .iter()
            .find(|s| s.ports.as_ref().expect("present").len() == 2)
            .expect("present");
        assert_eq!(ips(&both.addresses), ["10.42.0.5"]);
        let metrics = subsets
            .iter()
            .find(|s| s.ports.as_ref().expect("present").len() == 1)
            .expect("present");
        assert_eq!(ips(&metrics.addresses), ["10.42.0.6"]);
    }

    #[test]
    fn publish_not_ready_and_terminating() {
        let mut svc = service(vec![port("http", 80, IntOrString::Int(80))]);
        let mut gone = pod("a", "10.42.0.5", true);
        gone.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let waiting = pod("b", "10.42.0.6", false);
        let (subsets, _) = subsets(&svc, &[&gone, &waiting]);
        assert_eq!(ips(&subsets[0].addresses), Vec::<&str>::new());
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.42.0.6"]);
        svc.spec.as_mut().expect("present").publish_not_ready_addresses = Some(true);
        let (subsets, _) = super::subsets(&svc, &[&gone, &waiting]);
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.5", "10.42.0.6"]);
    }

    #[test]
    fn headless_without_ports_lists_addresses() {
        let mut svc = service(vec![]);
        let a = pod("a", "10.42.0.5", true);
        assert!(subsets(&svc, &[&a]).0.is_empty(), "a service without ports has no subsets");
        svc.spec.as_mut().expect("present").cluster_ip = Some("None".into());
        let (subsets, _) = subsets(&svc, &[&a]);
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.5"]);
        assert!(subsets[0].ports.is_none());
        let e = endpoints(&svc, None, subsets, false);
        assert_eq!(e.metadata.labels.expect("present").get(HEADLESS).map(String::as_str), Some(""));
    }

    #[test]
    fn over_capacity_is_truncated_and_annotated() {
        let svc = service(vec![port("http", 80, IntOrString::Int(80))]);
        let pods: Vec<Pod> = (0..1100)
            .map(|i| {
                pod(&format!("p{i}"), &format!("10.42.{}.{}", i / 250, i % 250 + 1), i % 2 == 0)
            })
            .collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let (subsets, truncated) = subsets(&svc, &refs);
        assert!(truncated);
        assert_eq!(
            subsets[0].addresses.as_ref().expect("present").len(),
            550,
            "every ready one kept"
        );
        assert_eq!(subsets[0].not_ready_addresses.as_ref().expect("present").len(), 450);
        let e = endpoints(&svc, None, subsets, truncated);
        assert_eq!(e.metadata.annotations.expect("present")[OVER_CAPACITY], "truncated");
    }
}
