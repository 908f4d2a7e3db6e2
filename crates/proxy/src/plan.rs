//! What the proxy programs for each Service port: its cluster IPs, node port and ready
//! endpoints, from small views of Services and EndpointSlices. Pure.

use std::collections::BTreeMap;
use std::net::IpAddr;

use krust_nftables::Family;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How long a client keeps its endpoint under `sessionAffinity: ClientIP` when the Service
/// does not say (upstream's default: three hours).
pub const DEFAULT_AFFINITY_SECONDS: u32 = 10_800;

/// A namespace and a name.
pub type Key = (String, String);

/// One port of one Service: namespace, name, IP protocol number and port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// 6 (TCP), 17 (UDP) or 132 (SCTP).
    pub protocol: u8,
    /// The Service port.
    pub port: u16,
}

impl PortKey {
    /// `tcp`, `udp` or `sctp`.
    pub fn protocol_name(&self) -> &'static str {
        protocol_name(self.protocol)
    }
}

/// What one Service port is programmed as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Its cluster IPs (of the family being programmed).
    pub cluster_ips: Vec<IpAddr>,
    /// Its node port, for NodePort and LoadBalancer Services.
    pub node_port: Option<u16>,
    /// Its external addresses: `spec.externalIPs` and the load balancer's ingress addresses,
    /// answered on the Service port like the node port.
    pub external_ips: Vec<IpAddr>,
    /// The ready endpoints cluster traffic goes to, with their target ports, sorted: all of
    /// them, or this node's with `internalTrafficPolicy: Local`.
    pub endpoints: Vec<(IpAddr, u16)>,
    /// With `sessionAffinity: ClientIP`, how long (seconds) a client keeps its endpoint.
    pub affinity: Option<u32>,
    /// With `externalTrafficPolicy: Local`, this node's ready endpoints, which alone take
    /// node-port traffic; `None` when node-port traffic goes to `endpoints`.
    pub external: Option<Vec<(IpAddr, u16)>>,
}

/// A Service port as the spec has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// The port's name (empty for a single unnamed port).
    pub name: String,
    /// IP protocol number.
    pub protocol: u8,
    /// The Service port.
    pub port: u16,
    /// The node port.
    pub node_port: Option<u16>,
}

/// The part of a Service the proxy reads; `None` for Services it leaves alone (headless,
/// ExternalName).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Cluster IPs, of both families on a dual-stack Service.
    pub cluster_ips: Vec<IpAddr>,
    /// Ports.
    pub ports: Vec<PortSpec>,
    /// External addresses.
    pub external_ips: Vec<IpAddr>,
    /// `sessionAffinity: ClientIP`: the timeout in seconds.
    pub affinity: Option<u32>,
    /// `internalTrafficPolicy: Local`.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`.
    pub external_local: bool,
}

/// The part of an EndpointSlice the proxy reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceView {
    /// The Service it belongs to.
    pub service: Key,
    /// Its ports: name, protocol number, port.
    pub ports: Vec<(String, u8, u16)>,
    /// Its ready endpoints (IPv4 or IPv6, as the slice's address type), with the node each
    /// is on.
    pub ready: Vec<(IpAddr, Option<String>)>,
}

/// The IP protocol number of a Kubernetes protocol name (TCP when absent).
pub fn protocol_number(name: Option<&str>) -> Option<u8> {
    match name.unwrap_or("TCP") {
        "TCP" => Some(6),
        "UDP" => Some(17),
        "SCTP" => Some(132),
        _ => None,
    }
}

/// `tcp`, `udp` or `sctp`.
pub fn protocol_name(number: u8) -> &'static str {
    match number {
        17 => "udp",
        132 => "sctp",
        _ => "tcp",
    }
}

/// A Service's view.
pub fn service_view(service: &Service) -> Option<ServiceView> {
    let spec = service.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    let mut cluster_ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.iter())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    cluster_ips.sort();
    cluster_ips.dedup();
    if cluster_ips.is_empty() {
        return None;
    }
    let node_ports = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    let ports = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some(PortSpec {
                name: p.name.clone().unwrap_or_default(),
                protocol: protocol_number(p.protocol.as_deref())?,
                port: u16::try_from(p.port).ok()?,
                node_port: p.node_port.filter(|_| node_ports).and_then(|n| u16::try_from(n).ok()),
            })
        })
        .collect();
    let mut external_ips: Vec<IpAddr> = spec
        .external_ips
        .iter()
        .flatten()
        .cloned()
        .chain(
            service
                .status
                .iter()
                .filter_map(|s| s.load_balancer.as_ref()?.ingress.as_ref())
                .flatten()
                .filter_map(|i| i.ip.clone()),
        )
        .filter_map(|ip| ip.parse().ok())
        .collect();
    external_ips.sort();
    external_ips.dedup();
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_SECONDS)
    });
    Some(ServiceView {
        cluster_ips,
        ports,
        external_ips,
        affinity,
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        external_local: (node_ports || spec.external_ips.as_ref().is_some_and(|e| !e.is_empty()))
            && spec.external_traffic_policy.as_deref() == Some("Local"),
    })
}

/// An EndpointSlice's view; `None` for slices of no Service or of FQDNs.
pub fn slice_view(slice: &EndpointSlice) -> Option<SliceView> {
    if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
        return None;
    }
    let service = slice.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?.clone();
    let namespace = slice.metadata.namespace.clone().unwrap_or_default();
    let ports = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p.name.clone().unwrap_or_default(),
                protocol_number(p.protocol.as_deref())?,
                u16::try_from(p.port?).ok()?,
            ))
        })
        .collect();
    let ready = slice
        .endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .flat_map(|e| {
            e.addresses.iter().filter_map(|a| Some((a.parse().ok()?, e.node_name.clone())))
        })
        .collect();
    Some(SliceView { service: (namespace, service), ports, ready })
}

/// The Service ports of `service` (`namespace/name`) in the table of `family`, with their
/// ready endpoints of that family from `slices` (the Service's): an endpoint serves a
/// Service port through the slice port of the same name and protocol. `node` is this
/// node's name, for the `Local` traffic policies. A Service without a cluster IP of
/// `family` has nothing there.
pub fn service_ports<'a>(
    (namespace, name): (&str, &str),
    service: &ServiceView,
    slices: impl Iterator<Item = &'a SliceView> + Clone,
    node: &str,
    family: Family,
) -> BTreeMap<PortKey, ServicePort> {
    let mut out = BTreeMap::new();
    let of_family = |ips: &[IpAddr]| -> Vec<IpAddr> {
        ips.iter().copied().filter(|ip| Family::of(*ip) == family).collect()
    };
    let cluster_ips = of_family(&service.cluster_ips);
    if cluster_ips.is_empty() {
        return out;
    }
    let external_ips = of_family(&service.external_ips);
    for spec in &service.ports {
        let mut all: Vec<(IpAddr, u16, bool)> =
            slices
                .clone()
                .flat_map(|slice| {
                    let target = slice
                        .ports
                        .iter()
                        .find(|(n, protocol, _)| *n == spec.name && *protocol == spec.protocol)
                        .map(|(_, _, port)| *port);
                    slice.ready.iter().filter(|(ip, _)| Family::of(*ip) == family).filter_map(
                        move |(ip, on)| Some((*ip, target?, on.as_deref() == Some(node))),
                    )
                })
                .collect();
        all.sort();
        all.dedup();
        let local: Vec<(IpAddr, u16)> =
            all.iter().filter(|e| e.2).map(|(ip, port, _)| (*ip, *port)).collect();
        let endpoints = match service.internal_local {
            true => local.clone(),
            false => all.iter().map(|(ip, port, _)| (*ip, *port)).collect(),
        };
        let key = PortKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
            protocol: spec.protocol,
            port: spec.port,
        };
        let port = ServicePort {
            cluster_ips: cluster_ips.clone(),
            node_port: spec.node_port,
            external_ips: external_ips.clone(),
            affinity: service.affinity,
            endpoints,
            external: service.external_local.then_some(local),
        };
        out.insert(key, port);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn endpoints_serve_ports_by_name_and_protocol() {
        let mut service = ServiceView {
            internal_local: false,
            external_local: false,
            external_ips: vec![],
            affinity: None,
            cluster_ips: vec![ip("10.43.0.20")],
            ports: vec![
                PortSpec { name: "http".into(), protocol: 6, port: 80, node_port: Some(30080) },
                PortSpec { name: "dns".into(), protocol: 17, port: 53, node_port: None },
            ],
        };
        let slices = [
            SliceView {
                service: ("d".into(), "web".into()),
                ports: vec![("http".into(), 6, 8080), ("dns".into(), 17, 5353)],
                ready: vec![(ip("10.42.0.6"), Some("n1".into())), (ip("10.42.0.5"), None)],
            },
            SliceView {
                service: ("d".into(), "web".into()),
                ports: vec![("http".into(), 6, 8081)],
                ready: vec![(ip("10.42.0.7"), Some("n2".into()))],
            },
        ];
        let ports = service_ports(("d", "web"), &service, slices.iter(), "n1", Family::Ipv4);
        let http =
            &ports[&PortKey { namespace: "d".into(), name: "web".into(), protocol: 6, port: 80 }];
        assert_eq!(
            http.endpoints,
            vec![(ip("10.42.0.5"), 8080), (ip("10.42.0.6"), 8080), (ip("10.42.0.7"), 8081)]
        );
        assert_eq!(http.node_port, Some(30080));
        let dns =
            &ports[&PortKey { namespace: "d".into(), name: "web".into(), protocol: 17, port: 53 }];
        assert_eq!(dns.endpoints, vec![(ip("10.42.0.5"), 5353), (ip("10.42.0.6"), 5353)]);
        assert_eq!(http.external, None);

        // The Local policies keep this node's endpoints.
        service.internal_local = true;
        service.external_local = true;
        let ports = service_ports(("d", "web"), &service, slices.iter(), "n1", Family::Ipv4);
        let http =
            &ports[&PortKey { namespace: "d".into(), name: "web".into(), protocol: 6, port: 80 }];
        assert_eq!(http.endpoints, vec![(ip("10.42.0.6"), 8080)]);
        assert_eq!(http.external, Some(vec![(ip("10.42.0.6"), 8080)]));
    }

    #[test]
    fn each_family_gets_its_own_addresses() {
        let service = ServiceView {
            internal_local: false,
            external_local: false,
            external_ips: vec![],
            affinity: None,
            cluster_ips: vec![ip("10.43.0.20"), ip("fd00:43::20")],
            ports: vec![PortSpec { name: String::new(), protocol: 6, port: 80, node_port: None }],
        };
        let slices = [
            SliceView {
                service: ("d".into(), "web".into()),
                ports: vec![(String::new(), 6, 8080)],
                ready: vec![(ip("10.42.0.5"), None)],
            },
            SliceView {
                service: ("d".into(), "web".into()),
                ports: vec![(String::new(), 6, 8080)],
                ready: vec![(ip("fd42::5"), None)],
            },
        ];
        let key = PortKey { namespace: "d".into(), name: "web".into(), protocol: 6, port: 80 };
        let v6 = service_ports(("d", "web"), &service, slices.iter(), "n1", Family::Ipv6);
        assert_eq!(v6[&key].cluster_ips, vec![ip("fd00:43::20")]);
        assert_eq!(v6[&key].endpoints, vec![(ip("fd42::5"), 8080)]);
        let v4 = service_ports(("d", "web"), &service, slices.iter(), "n1", Family::Ipv4);
        assert_eq!(v4[&key].endpoints, vec![(ip("10.42.0.5"), 8080)]);
        // A single-stack Service is not in the other family's table.
        let single = ServiceView { cluster_ips: vec![ip("10.43.0.20")], ..service };
        assert!(service_ports(("d", "web"), &single, slices.iter(), "n1", Family::Ipv6).is_empty());
    }
}
