//! Which address a LoadBalancer Service gets on bare hosts: by default the addresses of the
//! ready nodes, as k3s's service load balancer gives them, or one address of its own from a
//! configured pool. The service proxy answers either on the Service's ports. Pure.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};

/// A range of load balancer addresses: a network of one family (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    network: IpAddr,
    prefix: u8,
}

/// The ranges load balancer addresses come from: at most one per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    ranges: Vec<Range>,
}

/// Address bits of `ip`'s family, and `ip` as a number.
fn bits_of(ip: IpAddr) -> (u32, u128) {
    match ip {
        IpAddr::V4(v4) => (32, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (128, u128::from(v6)),
    }
}

impl Range {
    /// The network of `ip/prefix`; `None` when the prefix is longer than the family's.
    pub fn new(ip: IpAddr, prefix: u8) -> Option<Range> {
        let (bits, n) = bits_of(ip);
        let host_bits = bits.checked_sub(u32::from(prefix))?;
        let network = n & u128::MAX.checked_shl(host_bits).unwrap_or(0);
        let network = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(network).ok()?)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(network)),
        };
        Some(Range { network, prefix })
    }

    /// Whether the range holds IPv6 addresses.
    pub fn is_ipv6(&self) -> bool {
        self.network.is_ipv6()
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ((bits, n), (_, network)) = (bits_of(ip), bits_of(self.network));
        ip.is_ipv6() == self.is_ipv6()
            && (n ^ network).checked_shr(bits - u32::from(self.prefix)).unwrap_or(0) == 0
    }

    /// The first and last address a Service may get: all but an IPv4 network's first and last
    /// (its network and broadcast addresses) and an IPv6 network's first (its subnet-router
    /// anycast address), when it has more than two.
    fn given(&self) -> (u128, u128) {
        let (bits, network) = bits_of(self.network);
        let last =
            network | u128::MAX.checked_shr(128 - bits + u32::from(self.prefix)).unwrap_or(0);
        match (last - network > 1, self.is_ipv6()) {
            (true, false) => (network + 1, last - 1),
            (true, true) => (network + 1, last),
            (false, _) => (network, last),
        }
    }

    /// Whether a Service may get `ip`: one of [`addresses`](Self::addresses).
    fn gives(&self, ip: IpAddr) -> bool {
        let (first, last) = self.given();
        self.contains(ip) && (first..=last).contains(&bits_of(ip).1)
    }

    /// The addresses a Service may get ([`given`](Self::given)), lowest first.
    fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (first, last) = self.given();
        let v6 = self.is_ipv6();
        (first..=last).map(move |n| match v6 {
            true => IpAddr::V6(Ipv6Addr::from(n)),
            false => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX))),
        })
    }
}

impl Pool {
    /// A pool of `ranges`, or why not: at most one range per family.
    pub fn new(ranges: Vec<Range>) -> Result<Pool, String> {
        if ranges.iter().filter(|r| r.is_ipv6()).count() > 1
            || ranges.iter().filter(|r| !r.is_ipv6()).count() > 1
        {
            return Err("at most one range per IP family (an IPv4 one, an IPv6 one)".into());
        }
        Ok(Pool { ranges })
    }

    /// The range of the family `v6` says, if the pool has one.
    pub fn range(&self, v6: bool) -> Option<Range> {
        self.ranges.iter().copied().find(|r| r.is_ipv6() == v6)
    }
}

/// The addresses in `range` that a Service's status holds.
pub fn held(service: &Service, range: Range) -> Vec<IpAddr> {
    let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref());
    ingress
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .filter(|ip| range.contains(*ip))
        .collect()
}

/// The address in `range` that `service` should have, other Services holding `taken`: the one
/// its `spec.loadBalancerIP` asks for when that is of the range's family (when the range gives
/// it and it is free; one outside the range, taken, or not an address gets none), else the one
/// it holds, else the lowest free one. `None` when none is left.
pub fn pool_address(service: &Service, range: Range, taken: &BTreeSet<IpAddr>) -> Option<IpAddr> {
    let requested = service.spec.as_ref().and_then(|s| s.load_balancer_ip.as_deref());
    if let Some(requested) = requested.filter(|r| !r.is_empty()) {
        let ip: IpAddr = requested.parse().ok()?;
        if ip.is_ipv6() == range.is_ipv6() {
            return (range.gives(ip) && !taken.contains(&ip)).then_some(ip);
        }
    }
    if let Some(ip) = held(service, range).into_iter().find(|ip| !taken.contains(ip)) {
        return Some(ip);
    }
    range.addresses().find(|ip| !taken.contains(ip))
}

/// Whether this controller owns the Service's load balancer: type LoadBalancer without a
/// `loadBalancerClass` (a class names another implementation).
pub fn owned(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_ref()).is_none()
}

/// The IP families of `service` in order, as whether each is IPv6 (IPv4 when it names none).
pub fn families(service: &Service) -> Vec<bool> {
    let names = service.spec.as_ref().and_then(|s| s.ip_families.as_deref()).unwrap_or_default();
    match names.is_empty() {
        true => vec![false],
        false => names.iter().map(|f| f == "IPv6").collect(),
    }
}

/// The addresses of the ready nodes of the family `v6` says: each node's InternalIP of it
/// (else its ExternalIP of it), sorted.
pub fn node_addresses<'a>(nodes: impl Iterator<Item = &'a Node>, v6: bool) -> Vec<String> {
    let mut of_family: Vec<String> = nodes
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
    of_family
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
    #![allow(clippy::unwrap_used)]

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
        assert_eq!(families(&service("LoadBalancer", None, &[])), vec![false]);
        let addresses = node_addresses(nodes.iter(), false);
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
        assert_eq!(families(&svc), vec![true, false]);
        assert_eq!(node_addresses(nodes.iter(), true), vec!["2001:db8::9"]);
        assert_eq!(node_addresses(nodes.iter(), false), vec!["192.0.2.3", "192.0.2.9"]);
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn range(network: &str, prefix: u8) -> Range {
        Range::new(ip(network), prefix).unwrap()
    }

    fn asks(address: &str) -> Service {
        let mut s = service("LoadBalancer", None, &[]);
        if let Some(spec) = s.spec.as_mut() {
            spec.load_balancer_ip = Some(address.into());
        }
        s
    }

    #[test]
    fn pool_addresses_are_kept_requested_or_the_lowest_free() {
        let pool = range("192.0.2.3", 29);
        assert_eq!(pool, range("192.0.2.0", 29));
        let taken: BTreeSet<IpAddr> = [ip("192.0.2.1")].into();
        let fresh = service("LoadBalancer", None, &[]);
        assert_eq!(pool_address(&fresh, pool, &taken), Some(ip("192.0.2.2")));
        let holding = service("LoadBalancer", None, &["192.0.2.5"]);
        assert_eq!(pool_address(&holding, pool, &taken), Some(ip("192.0.2.5")));
        assert_eq!(pool_address(&asks("192.0.2.6"), pool, &taken), Some(ip("192.0.2.6")));
        assert_eq!(pool_address(&asks("192.0.2.1"), pool, &taken), None);
        assert_eq!(pool_address(&asks("198.51.100.1"), pool, &taken), None);
        assert_eq!(pool_address(&asks("not an address"), pool, &taken), None);
        // Never the network's own address or its broadcast address, even when asked for.
        assert_eq!(pool_address(&asks("192.0.2.0"), pool, &taken), None);
        assert_eq!(pool_address(&asks("192.0.2.7"), pool, &taken), None);
        // .1 to .6 of a /29: the network and broadcast addresses are never given.
        let full: BTreeSet<IpAddr> = (1..=6).map(|i| ip(&format!("192.0.2.{i}"))).collect();
        assert_eq!(pool_address(&fresh, pool, &full), None);
        assert!(pool.contains(ip("192.0.2.7")) && !pool.contains(ip("192.0.2.8")));
        assert!(!pool.contains(ip("::ffff:192.0.2.1")));
        // A /32 is its one address.
        assert_eq!(pool_address(&fresh, range("192.0.2.9", 32), &taken), Some(ip("192.0.2.9")));
    }

    #[test]
    fn an_ipv6_range_gives_all_but_its_first_address() {
        let pool = range("2001:db8:1::77", 126);
        assert_eq!(pool, range("2001:db8:1::74", 126));
        let fresh = service("LoadBalancer", None, &[]);
        assert_eq!(pool_address(&fresh, pool, &BTreeSet::new()), Some(ip("2001:db8:1::75")));
        let taken: BTreeSet<IpAddr> = [ip("2001:db8:1::75"), ip("2001:db8:1::76")].into();
        assert_eq!(pool_address(&fresh, pool, &taken), Some(ip("2001:db8:1::77")));
        // A requested address of the other family does not bind this range's choice.
        assert_eq!(pool_address(&asks("192.0.2.6"), pool, &taken), Some(ip("2001:db8:1::77")));
        assert_eq!(pool_address(&asks("2001:db8:1::76"), pool, &taken), None);
        assert_eq!(pool_address(&asks("2001:db8:1::74"), pool, &BTreeSet::new()), None);
        assert_eq!(
            pool_address(&asks("2001:db8:1::77"), pool, &BTreeSet::new()),
            Some(ip("2001:db8:1::77"))
        );
        let wide = range("2001:db8::", 64);
        assert!(wide.contains(ip("2001:db8::ffff:1")) && !wide.contains(ip("2001:db8:0:1::")));
        assert_eq!(pool_address(&fresh, wide, &BTreeSet::new()), Some(ip("2001:db8::1")));
    }

    #[test]
    fn a_pool_holds_one_range_per_family() {
        let both = Pool::new(vec![range("192.0.2.0", 29), range("2001:db8::", 120)]).unwrap();
        assert_eq!(both.range(true), Some(range("2001:db8::", 120)));
        assert_eq!(both.range(false), Some(range("192.0.2.0", 29)));
        assert!(Pool::new(vec![range("192.0.2.0", 29), range("198.51.100.0", 29)]).is_err());
        assert_eq!(Pool::new(vec![range("192.0.2.0", 29)]).unwrap().range(true), None);
        assert!(Range::new(ip("192.0.2.0"), 33).is_none());
        // The edges: a whole family, a pair, one address.
        let fresh = service("LoadBalancer", None, &[]);
        let none = BTreeSet::new();
        assert_eq!(pool_address(&fresh, range("203.0.113.9", 0), &none), Some(ip("0.0.0.1")));
        assert!(range("203.0.113.9", 0).contains(ip("255.255.255.255")));
        assert_eq!(pool_address(&fresh, range("::", 0), &none), Some(ip("::1")));
        assert!(range("::", 0).contains(ip("ffff::1")) && !range("::", 0).contains(ip("10.0.0.1")));
        assert_eq!(pool_address(&fresh, range("192.0.2.4", 31), &none), Some(ip("192.0.2.4")));
        let first: BTreeSet<IpAddr> = [ip("192.0.2.4")].into();
        assert_eq!(pool_address(&fresh, range("192.0.2.4", 31), &first), Some(ip("192.0.2.5")));
        assert_eq!(pool_address(&fresh, range("2001:db8::7", 128), &none), Some(ip("2001:db8::7")));
        assert_eq!(
            pool_address(&fresh, range("2001:db8::6", 127), &first),
            Some(ip("2001:db8::6"))
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
