//! Which address a LoadBalancer Service gets on bare hosts: by default the addresses of the
//! ready nodes, as k3s's service load balancer gives them, or one address of its own from a
//! configured pool. The service proxy answers either on the Service's ports. Pure.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};

/// A pool of load balancer addresses: an IPv4 network and its prefix length.
pub type Pool = (Ipv4Addr, u8);

/// Whether `ip` lies in `pool`.
pub fn in_pool(pool: Pool, ip: Ipv4Addr) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(pool.1.min(32))).unwrap_or(0);
    u32::from(ip) & mask == u32::from(pool.0) & mask
}

/// The pool's addresses a Service may get: all but the network's first and last (its
/// network and broadcast addresses) when it has more than two.
fn pool_addresses(pool: Pool) -> impl Iterator<Item = Ipv4Addr> {
    let prefix = u32::from(pool.1.min(32));
    let size = 1u64 << (32 - prefix);
    let base = u64::from(u32::from(pool.0)) & !(size - 1);
    let (first, last) =
        if size > 2 { (base + 1, base + size - 2) } else { (base, base + size - 1) };
    (first..=last).filter_map(|a| u32::try_from(a).ok().map(Ipv4Addr::from))
}

/// The pool addresses a Service's status holds.
pub fn held(service: &Service, pool: Pool) -> Vec<Ipv4Addr> {
    let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref());
    ingress
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .filter(|ip| in_pool(pool, *ip))
        .collect()
}

/// The pool address `service` should have, other Services holding `taken`: the one it holds,
/// else the one its `spec.loadBalancerIP` asks for (when in the pool and free; one outside
/// the pool, or taken, gets none), else the lowest free one. `None` when none is left.
pub fn pool_address(service: &Service, pool: Pool, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let requested = service.spec.as_ref().and_then(|s| s.load_balancer_ip.as_deref());
    if let Some(requested) = requested.filter(|r| !r.is_empty()) {
        let ip: Ipv4Addr = requested.parse().ok()?;
        return (in_pool(pool, ip) && !taken.contains(&ip)).then_some(ip);
    }
    if let Some(ip) = held(service, pool).into_iter().find(|ip| !taken.contains(ip)) {
        return Some(ip);
    }
    pool_addresses(pool).find(|ip| !taken.contains(ip))
}

/// Whether this controller owns the Service's load balancer: type LoadBalancer without a
/// `loadBalancerClass` (a class names another implementation).
pub fn owned(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_ref()).is_none()
}

/// Whether `service` has the IPv4 family (or names none).
pub fn has_ipv4(service: &Service) -> bool {
    let families = service.spec.as_ref().and_then(|s| s.ip_families.as_ref());
    families.is_none_or(|f| f.is_empty() || f.iter().any(|f| f == "IPv4"))
}

/// The addresses of the ready nodes for `service`: for each of its IP families in order
/// (IPv4 when it names none), each node's InternalIP of that family (else its ExternalIP of
/// it), sorted within the family.
pub fn node_addresses<'a>(
    nodes: impl Iterator<Item = &'a Node> + Clone,
    service: &Service,
) -> Vec<String> {
    let families = service.spec.as_ref().and_then(|s| s.ip_families.clone()).unwrap_or_default();
    let families = if families.is_empty() { vec!["IPv4".to_string()] } else { families };
    let mut out = Vec::new();
    for family in &families {
        let v6 = family == "IPv6";
        let mut of_family: Vec<String> = nodes
            .clone()
            .filter(|node| {
                let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
                conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
            })
            .filter_map(|node| {
                let addresses = node.status.as_ref()?.addresses.as_ref()?;
                let pick = |kind: &str| {
                    addresses.iter().find(|a| {
                        a.type_ == kind
                            && a.address.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6() == v6)
                    })
                };
                Some(pick("InternalIP").or_else(|| pick("ExternalIP"))?.address.clone())
            })
            .collect();
        of_family.sort();
        of_family.dedup();
        out.extend(of_family);
    }
    out
}

/// The ingress `service` should have given the nodes' `addresses`, or `None` when its
/// status is not this controller's to write (another class) or already right. A Service that
/// stopped being a LoadBalancer loses the ingress it had.
pub fn ingress(service: &Service, addresses: &[String]) -> Option<Vec<LoadBalancerIngress>> {
    let current: Vec<LoadBalancerIngress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    let wanted: Vec<LoadBalancerIngress> = if owned(service) {
        addresses
            .iter()
            .map(|ip| LoadBalancerIngress {
                ip: Some(ip.clone()),
                ip_mode: Some("VIP".into()),
                ..Default::default()
            })
            .collect()
    } else if service.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
        Vec::new()
    } else {
        return None;
    };
    (wanted != current).then_some(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LoadBalancerStatus, NodeAddress, NodeCondition, NodeStatus, ServiceSpec, ServiceStatus,
    };

    fn node(ip: &str, ready: &str) -> Node {
        Node {
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                }]),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service(kind: &str, class: Option<&str>, ingress: &[&str]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                type_: Some(kind.into()),
                load_balancer_class: class.map(str::to_string),
                ..Default::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(
                        ingress
                            .iter()
                            .map(|ip| LoadBalancerIngress {
                                ip: Some(ip.to_string()),
                                ip_mode: Some("VIP".into()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_load_balancer_gets_the_ready_nodes_addresses() {
        let nodes =
            [node("192.0.2.9", "True"), node("192.0.2.3", "True"), node("192.0.2.5", "False")];
        let addresses = node_addresses(nodes.iter(), &service("LoadBalancer", None, &[]));
        assert_eq!(addresses, vec!["192.0.2.3", "192.0.2.9"]);
        let wanted = ingress(&service("LoadBalancer", None, &[]), &addresses);
        assert_eq!(wanted.map(|w| w.len()), Some(2));
        assert_eq!(
            ingress(&service("LoadBalancer", None, &["192.0.2.3", "192.0.2.9"]), &addresses),
            None
        );
    }

    #[test]
    fn a_dual_stack_load_balancer_gets_the_nodes_addresses_of_each_family() {
        let mut dual = node("192.0.2.9", "True");
        if let Some(addresses) = dual.status.as_mut().and_then(|s| s.addresses.as_mut()) {
            addresses
                .push(NodeAddress { type_: "InternalIP".into(), address: "2001:db8::9".into() });
        }
        let nodes = [dual, node("192.0.2.3", "True")];
        let mut svc = service("LoadBalancer", None, &[]);
        if let Some(spec) = svc.spec.as_mut() {
            spec.ip_families = Some(vec!["IPv6".into(), "IPv4".into()]);
        }
        assert_eq!(
            node_addresses(nodes.iter(), &svc),
            vec!["2001:db8::9", "192.0.2.3", "192.0.2.9"]
        );
    }

    #[test]
    fn pool_addresses_are_kept_requested_or_the_lowest_free() {
        let pool: Pool = (Ipv4Addr::new(192, 0, 2, 0), 29);
        let taken: BTreeSet<Ipv4Addr> = [Ipv4Addr::new(192, 0, 2, 1)].into();
        let fresh = service("LoadBalancer", None, &[]);
        assert_eq!(pool_address(&fresh, pool, &taken), Some(Ipv4Addr::new(192, 0, 2, 2)));
        let holding = service("LoadBalancer", None, &["192.0.2.5"]);
        assert_eq!(pool_address(&holding, pool, &taken), Some(Ipv4Addr::new(192, 0, 2, 5)));
        let asks = |ip: &str| {
            let mut s = service("LoadBalancer", None, &[]);
            if let Some(spec) = s.spec.as_mut() {
                spec.load_balancer_ip = Some(ip.into());
            }
            s
        };
        let asking = asks("192.0.2.6");
        assert_eq!(pool_address(&asking, pool, &taken), Some(Ipv4Addr::new(192, 0, 2, 6)));
        assert_eq!(pool_address(&asks("192.0.2.1"), pool, &taken), None);
        // .1 to .6 of a /29: the network and broadcast addresses are never given.
        let full: BTreeSet<Ipv4Addr> = (1..=6).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
        assert_eq!(pool_address(&fresh, pool, &full), None);
        assert!(
            in_pool(pool, Ipv4Addr::new(192, 0, 2, 7))
                && !in_pool(pool, Ipv4Addr::new(192, 0, 2, 8))
        );
    }

    #[test]
    fn other_classes_are_left_alone_and_former_load_balancers_cleared() {
        let addresses = vec!["192.0.2.3".to_string()];
        assert_eq!(ingress(&service("LoadBalancer", Some("x.io/lb"), &[]), &addresses), None);
        assert_eq!(ingress(&service("ClusterIP", None, &["192.0.2.3"]), &addresses), Some(vec![]));
        assert_eq!(ingress(&service("ClusterIP", None, &[]), &addresses), None);
    }
}
