//! The nf_tables ruleset of the service proxy, in the spirit of upstream kube-proxy's
//! nftables mode, and the messages that change it.
//!
//! ```text
//! table ip <table>   (and on a dual-stack node the same as `table ip6 <table>`, ipv6_addr keys)
//!   map service-ips       { ipv4_addr . inet_proto . inet_service : verdict }  -> goto svc/...
//!   map service-nodeports { inet_proto . inet_service : verdict }              -> goto external/...
//!   chain prerouting  (nat, dstnat)  jump services
//!   chain output      (nat, dstnat)  jump services
//!   chain services    ip daddr . meta l4proto . th dport vmap @service-ips
//!                     fib daddr type local meta l4proto . th dport vmap @service-nodeports
//!   chain postrouting (nat, srcnat)  mark & 0x4000 masquerade; pod network -> elsewhere masquerade
//!   map no-endpoint-services { ipv4_addr . inet_proto . inet_service : verdict } -> goto reject
//!   chain filter-forward, filter-output (filter)  ... vmap @no-endpoint-services (not to local addresses)
//!   chain reject      reject (ICMP port unreachable)
//!   chain external/NS/NAME/PROTO/PORT  mark |= 0x4000; goto svc/... (or goto local/..., unmarked):
//!                                      node ports, and external and load-balancer addresses
//!                                      (elements of service-ips)
//!   chain svc/NS/NAME/PROTO/PORT       dnat to numgen random mod 2^30 map @eps/svc/...
//!   map eps/svc/NS/NAME/PROTO/PORT     { integer (ranges) : ipv4_addr . inet_service }: the
//!                                      endpoints, each on an equal share of the numbers
//!   chain local/NS/NAME/PROTO/PORT     the same over this node's endpoints (externalTrafficPolicy: Local)
//!   set hairpin                        { ipv4_addr . ipv4_addr }: each endpoint twice; a
//!                                      connection from an endpoint to itself is masqueraded
//!   With sessionAffinity: ClientIP, instead:
//!   chain svc/...                      ip saddr @affinity/... goto ep/... (one rule each), then
//!                                      numgen random mod N-i == 0 goto ep/... (one rule each)
//!   chain ep/NS/NAME/PROTO/PORT/IP:PORT   update @affinity/...; dnat to IP:PORT
//!   set affinity/SECONDS/ep/...        clients of the endpoint: svc/... first sends them
//!                                      back, ep/... renews them
//! ```
//!
//! A Service port is programmed only while it has ready endpoints (without, its cluster IPs
//! refuse connections, as upstream's); a change touches only its own map elements and chains,
//! so one endpoint changed is one small transaction whatever the number of Services. Without
//! affinity, a change of endpoints changes only the elements of the port's endpoint map and
//! of the hairpin set, no rule: the kernel then has no need to check the table's jumps again
//! at commit, which would walk every chain of every Service.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::plan::{PortKey, ServicePort};
use krust_nftables::expr::{self, REG0};
use krust_nftables::family::octets;
use krust_nftables::message::Attrs;
use krust_nftables::{Batch, Family, Hook, Verdict};

/// The map from cluster IP, protocol and port to a Service port's chain.
pub const SERVICE_IPS: &str = "service-ips";
/// The map from protocol and node port to a Service port's node port chain.
pub const NODE_PORTS: &str = "service-nodeports";
/// The map from cluster IP, protocol and port of Service ports without endpoints to `reject`.
pub const NO_ENDPOINTS: &str = "no-endpoint-services";
/// The chain that refuses connections.
const REJECT: &str = "reject";
/// The chain both NAT hooks jump to.
pub const SERVICES: &str = "services";
/// The mark of connections to masquerade.
pub const MASQUERADE_MARK: u32 = 0x4000;
/// `RTN_LOCAL`.
const LOCAL_ADDRESS: u32 = 2;
/// The set of endpoint address pairs (each endpoint twice) whose connections are hairpin.
pub const HAIRPIN: &str = "hairpin";
/// The random numbers endpoints share: a power of two far above any endpoint count, so that
/// equal shares of it are equal to within one part in a billion.
const PICK_RANGE: u32 = 1 << 30;
/// `inet_service`, as `nft` names the type.
const INET_SERVICE: u32 = 13;

/// Where the ruleset of one family lives and what it may rely on.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The nf_tables table's name.
    pub table: String,
    /// The table's family.
    pub family: Family,
    /// The node's pod network of that family, masqueraded towards every other address.
    pub pod_cidr: (IpAddr, u8),
    /// The node's name, for the `Local` traffic policies.
    pub node: String,
}

/// Replaces whatever the table held by the empty ruleset: maps, hooks, masquerade.
pub fn skeleton(batch: &mut Batch, layout: &Layout) {
    let family = layout.family;
    // Registers after the address: protocol, then port.
    let after = REG0 + family.address_registers();
    batch.add_table();
    batch.delete_table();
    batch.add_table();
    // ipv4_addr (or ipv6_addr) . inet_proto . inet_service, as `nft` names the types.
    let key_type = (family.address_type() << 12) | (12 << 6) | 13;
    let key_len = family.address_len() + 8;
    batch.add_verdict_map(SERVICE_IPS, 1, key_type, key_len);
    batch.add_verdict_map(NODE_PORTS, 2, (12 << 6) | 13, 8);
    batch.add_chain(SERVICES, None);
    batch.add_rule(
        SERVICES,
        vec![
            family.daddr(REG0),
            expr::meta(expr::META_L4PROTO, after),
            expr::th_dport(after + 1),
            expr::lookup_verdict(SERVICE_IPS, REG0),
        ],
    );
    batch.add_rule(
        SERVICES,
        vec![
            expr::fib_daddr_type(REG0),
            expr::cmp(expr::EQ, REG0, &LOCAL_ADDRESS.to_ne_bytes()),
            expr::meta(expr::META_L4PROTO, REG0 + 1),
            expr::th_dport(REG0 + 2),
            expr::lookup_verdict(NODE_PORTS, REG0 + 1),
        ],
    );
    for (chain, number) in [("prerouting", 0), ("output", 3)] {
        batch.add_chain(chain, Some(Hook { number, priority: -100, kind: "nat" }));
        batch.add_rule(chain, vec![expr::verdict(&Verdict::Jump(SERVICES.into()))]);
    }
    batch.add_verdict_map(NO_ENDPOINTS, 3, key_type, key_len);
    batch.add_set(
        HAIRPIN,
        (family.address_type() << 6) | family.address_type(),
        2 * family.address_len(),
    );
    batch.add_chain(REJECT, None);
    batch.add_rule(REJECT, vec![expr::reject_in(family)]);
    for (chain, number) in [("filter-forward", 2), ("filter-output", 3)] {
        batch.add_chain(chain, Some(Hook { number, priority: 0, kind: "filter" }));
        batch.add_rule(
            chain,
            vec![
                // The cluster DNS address is the host's own: its Service has no endpoints.
                expr::fib_daddr_type(REG0),
                expr::cmp(expr::NEQ, REG0, &LOCAL_ADDRESS.to_ne_bytes()),
                family.daddr(REG0),
                expr::meta(expr::META_L4PROTO, after),
                expr::th_dport(after + 1),
                expr::lookup_verdict(NO_ENDPOINTS, REG0),
            ],
        );
    }
    batch.add_chain("postrouting", Some(Hook { number: 4, priority: 100, kind: "nat" }));
    let mut marked = expr::mark_has(MASQUERADE_MARK, REG0);
    marked.push(expr::masquerade());
    batch.add_rule("postrouting", marked);
    // Hairpin: a Service connection (DNAT-ed) from an endpoint to itself.
    let mut hairpin = vec![
        expr::ct(expr::CT_STATUS, REG0),
        expr::bitwise(REG0, REG0, &expr::CT_STATUS_DNAT.to_ne_bytes(), &0u32.to_ne_bytes()),
        expr::cmp(expr::NEQ, REG0, &0u32.to_ne_bytes()),
    ];
    hairpin.extend([
        family.saddr(REG0),
        family.daddr(after),
        expr::lookup(HAIRPIN, REG0),
        expr::masquerade(),
    ]);
    batch.add_rule("postrouting", hairpin);
    let (network, prefix) = layout.pod_cidr;
    let network = octets(network);
    let mut egress = expr::in_network(family.source_offset(), &network, prefix, expr::EQ, REG0);
    egress.extend(expr::in_network(family.destination_offset(), &network, prefix, expr::NEQ, REG0));
    egress.push(expr::masquerade());
    batch.add_rule("postrouting", egress);
}

fn service_chain(key: &PortKey) -> String {
    format!("svc/{}/{}/{}/{}", key.namespace, key.name, key.protocol_name(), key.port)
}

fn external_chain(key: &PortKey) -> String {
    format!("external/{}/{}/{}/{}", key.namespace, key.name, key.protocol_name(), key.port)
}

fn local_chain(key: &PortKey) -> String {
    format!("local/{}/{}/{}/{}", key.namespace, key.name, key.protocol_name(), key.port)
}

fn endpoint_chain(key: &PortKey, (ip, port): (IpAddr, u16)) -> String {
    let at = std::net::SocketAddr::new(ip, port);
    format!("ep/{}/{}/{}/{}/{at}", key.namespace, key.name, key.protocol_name(), key.port)
}

fn ip_key(ip: IpAddr, protocol: u8, port: u16) -> Vec<u8> {
    let mut key = octets(ip);
    key.extend_from_slice(&node_port_key(protocol, port));
    key
}

/// Protocol and port, each padded to a register.
fn node_port_key(protocol: u8, port: u16) -> Vec<u8> {
    let [high, low] = port.to_be_bytes();
    vec![protocol, 0, 0, 0, high, low, 0, 0]
}

/// An endpoint map's elements: each endpoint's share of the random numbers, `[start, end)`,
/// and its address and port as DNAT reads them (the port padded to a register).
type Shares = Vec<(u32, u32, Vec<u8>)>;

/// The objects one Service port is made of: chains with their rules, endpoint maps, map
/// elements with the chain each goes to, and the endpoints hairpin traffic may meet.
#[derive(Debug, Default, PartialEq)]
struct Objects {
    /// Affinity sets by name, with their family and timeout in milliseconds.
    sets: BTreeMap<String, (Family, u64)>,
    /// Endpoint maps by name, with their family.
    maps: BTreeMap<String, (Family, Shares)>,
    chains: BTreeMap<String, Vec<Vec<Attrs>>>,
    elements: BTreeMap<(&'static str, Vec<u8>), String>,
    hairpin: std::collections::BTreeSet<IpAddr>,
}

/// Each endpoint's equal share of `0..PICK_RANGE`, in order.
fn shares(endpoints: &[(IpAddr, u16)]) -> Shares {
    let count = endpoints.len().max(1) as u64;
    endpoints
        .iter()
        .enumerate()
        .map(|(i, (ip, port))| {
            let bound =
                |i: u64| u32::try_from(i * u64::from(PICK_RANGE) / count).unwrap_or(u32::MAX);
            let mut data = octets(*ip);
            data.extend_from_slice(&port.to_be_bytes());
            data.extend_from_slice(&[0, 0]);
            (bound(i as u64), bound(i as u64 + 1), data)
        })
        .collect()
}

impl Objects {
    /// A chain `name` that sends each new connection to one of `endpoints` at random. Without
    /// `affinity`: one rule, a random number looked up in the port's endpoint map, so that
    /// another set of endpoints changes only the map's elements. With `affinity`, a client
    /// that went to an endpoint in the last `affinity` seconds goes there again: a set of
    /// client addresses per endpoint, renewed by each new connection through the endpoint's
    /// own chain, as upstream's nftables proxy keeps them.
    fn pick(
        &mut self,
        key: &PortKey,
        name: String,
        endpoints: &[(IpAddr, u16)],
        affinity: Option<u32>,
    ) {
        self.hairpin.extend(endpoints.iter().map(|(ip, _)| *ip));
        let Some(seconds) = affinity else {
            let Some(family) = endpoints.first().map(|(ip, _)| Family::of(*ip)) else { return };
            let map = format!("eps/{name}");
            let rule = vec![
                expr::numgen_random(REG0, PICK_RANGE),
                expr::host_to_network(REG0, REG0, 4),
                expr::lookup_data(&map, REG0, REG0),
                expr::dnat_in(family, REG0, REG0 + family.address_registers()),
            ];
            self.maps.insert(map, (family, shares(endpoints)));
            self.chains.insert(name, vec![rule]);
            return;
        };
        let mut rules = Vec::new();
        for endpoint in endpoints {
            let chain = endpoint_chain(key, *endpoint);
            let set = affinity_set(seconds, &chain);
            let family = Family::of(endpoint.0);
            rules.push(vec![
                family.saddr(REG0),
                expr::lookup(&set, REG0),
                expr::verdict(&Verdict::Goto(chain)),
            ]);
            self.sets.insert(set, (family, u64::from(seconds) * 1000));
        }
        for (i, endpoint) in endpoints.iter().enumerate() {
            let chain = endpoint_chain(key, *endpoint);
            let goto = expr::verdict(&Verdict::Goto(chain.clone()));
            let left = u32::try_from(endpoints.len() - i).unwrap_or(u32::MAX);
            rules.push(if left > 1 {
                vec![
                    expr::numgen_random(REG0, left),
                    expr::cmp(expr::EQ, REG0, &0u32.to_ne_bytes()),
                    goto,
                ]
            } else {
                vec![goto]
            });
            let set = affinity_set(seconds, &chain);
            self.chains.entry(chain).or_insert_with(|| endpoint_rules(*endpoint, Some(&set)));
        }
        self.chains.insert(name, rules);
    }
}

/// The set of clients that keep `chain`'s endpoint (the timeout is in its name, so that a
/// changed timeout is a new set).
fn affinity_set(seconds: u32, chain: &str) -> String {
    format!("affinity/{seconds}/{chain}")
}

/// An endpoint's chain: the client recorded in the affinity set if any, then DNAT.
fn endpoint_rules((ip, port): (IpAddr, u16), affinity: Option<&str>) -> Vec<Vec<Attrs>> {
    let family = Family::of(ip);
    let address = octets(ip);
    let mut rules = Vec::new();
    if let Some(set) = affinity {
        rules.push(vec![family.saddr(REG0), expr::set_update(set, REG0)]);
    }
    let port_register = REG0 + family.address_registers();
    let dnat = vec![
        expr::immediate(REG0, &address),
        expr::immediate(port_register, &port.to_be_bytes()),
        expr::dnat_in(family, REG0, port_register),
    ];
    rules.push(dnat);
    rules
}

/// What `port` is made of. Cluster traffic goes to `endpoints`, refused when there are none;
/// node-port traffic to the same (masqueraded) or, with `externalTrafficPolicy: Local`, to
/// this node's endpoints alone (the client's address kept).
fn objects(key: &PortKey, port: Option<&ServicePort>) -> Objects {
    let mut objects = Objects::default();
    let Some(port) = port else { return objects };
    let service = service_chain(key);
    let cluster_target = if port.endpoints.is_empty() {
        (NO_ENDPOINTS, REJECT.to_string())
    } else {
        objects.pick(key, service.clone(), &port.endpoints, port.affinity);
        (SERVICE_IPS, service.clone())
    };
    for ip in &port.cluster_ips {
        objects.elements.insert(
            (cluster_target.0, ip_key(*ip, key.protocol, key.port)),
            cluster_target.1.clone(),
        );
    }
    let external = port.external.as_deref().unwrap_or(&port.endpoints);
    if (port.node_port.is_some() || !port.external_ips.is_empty()) && !external.is_empty() {
        let chain = external_chain(key);
        let rule = if port.external.is_some() {
            let local = local_chain(key);
            objects.pick(key, local.clone(), external, port.affinity);
            vec![expr::verdict(&Verdict::Goto(local))]
        } else {
            let mut rule = expr::mark_or(MASQUERADE_MARK, REG0);
            rule.push(expr::verdict(&Verdict::Goto(service)));
            rule
        };
        objects.chains.insert(chain.clone(), vec![rule]);
        if let Some(node_port) = port.node_port {
            let element = node_port_key(key.protocol, node_port);
            objects.elements.insert((NODE_PORTS, element), chain.clone());
        }
        for ip in &port.external_ips {
            objects
                .elements
                .insert((SERVICE_IPS, ip_key(*ip, key.protocol, key.port)), chain.clone());
        }
    }
    objects
}

/// The order chains are deleted in: those that name others first.
fn deletion_rank(chain: &str) -> u8 {
    if chain.starts_with("external/") {
        0
    } else if chain.starts_with("ep/") {
        2
    } else {
        1
    }
}

/// Adds to `batch` what turns the programmed `old` state of `key` into `new`: only the
/// chains and elements that differ.
pub fn change(
    batch: &mut Batch,
    key: &PortKey,
    old: Option<&ServicePort>,
    new: Option<&ServicePort>,
    hairpin: &mut Hairpin,
) {
    let (old, new) = (objects(key, old), objects(key, new));
    if old == new {
        return;
    }
    // New sets, maps and chains first, chains empty, so that every rule below names what
    // exists.
    for (name, (family, timeout)) in
        new.sets.iter().filter(|(name, _)| !old.sets.contains_key(*name))
    {
        batch.add_address_set(name, *family, *timeout);
    }
    for (name, (family, shares)) in &new.maps {
        match old.maps.get(name) {
            Some(same) if same.1 == *shares => continue,
            Some(_) => batch.flush_set(name),
            None => {
                let data_type = (family.address_type() << 6) | INET_SERVICE;
                batch.add_data_interval_map(name, data_type, family.address_len() + 4);
            }
        }
        batch.data_interval_elements(name, shares);
    }
    for ip in new.hairpin.difference(&old.hairpin) {
        hairpin.add(batch, *ip);
    }
    for ip in old.hairpin.difference(&new.hairpin) {
        hairpin.remove(batch, *ip);
    }
    for name in new.chains.keys().filter(|name| !old.chains.contains_key(*name)) {
        batch.add_chain(name, None);
    }
    for (name, rules) in &new.chains {
        match old.chains.get(name) {
            Some(same) if same == rules => continue,
            Some(_) => batch.flush_chain(name),
            None => {}
        }
        for rule in rules {
            batch.add_rule(name, rule.clone());
        }
    }
    for ((map, element), target) in &old.elements {
        if new.elements.get(&(map, element.clone())) != Some(target) {
            batch.map_element(map, element, None);
        }
    }
    for ((map, element), target) in &new.elements {
        if old.elements.get(&(map, element.clone())) != Some(target) {
            batch.map_element(map, element, Some(&Verdict::Goto(target.clone())));
        }
    }
    // What is gone last, once nothing names it.
    let mut gone: Vec<&String> =
        old.chains.keys().filter(|name| !new.chains.contains_key(*name)).collect();
    gone.sort_by_key(|name| deletion_rank(name));
    for name in gone {
        batch.flush_chain(name);
        batch.delete_chain(name);
    }
    for name in old.sets.keys().filter(|name| !new.sets.contains_key(*name)) {
        batch.delete_set(name);
    }
    for name in old.maps.keys().filter(|name| !new.maps.contains_key(*name)) {
        batch.delete_set(name);
    }
}

/// How many programmed Service ports of a table have each endpoint: an address is in the
/// table's hairpin set while any has it.
#[derive(Debug, Default)]
pub struct Hairpin(BTreeMap<IpAddr, u32>);

/// The hairpin set's key of `ip`: the address twice.
fn pair(ip: IpAddr) -> Vec<u8> {
    let mut key = octets(ip);
    key.extend(octets(ip));
    key
}

impl Hairpin {
    fn add(&mut self, batch: &mut Batch, ip: IpAddr) {
        let count = self.0.entry(ip).or_default();
        *count += 1;
        if *count == 1 {
            batch.set_element(HAIRPIN, &pair(ip), true);
        }
    }

    fn remove(&mut self, batch: &mut Batch, ip: IpAddr) {
        let Some(count) = self.0.get_mut(&ip) else { return };
        *count -= 1;
        if *count == 0 {
            self.0.remove(&ip);
            batch.set_element(HAIRPIN, &pair(ip), false);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use krust_nftables::message::FAMILY_IPV4;

    fn key() -> PortKey {
        PortKey { namespace: "d".into(), name: "web".into(), protocol: 6, port: 80 }
    }

    fn port(endpoints: &[(&str, u16)]) -> ServicePort {
        ServicePort {
            cluster_ips: vec!["10.43.0.20".parse().unwrap()],
            node_port: None,
            external: None,
            external_ips: vec![],
            affinity: None,
            endpoints: endpoints.iter().map(|(ip, p)| (ip.parse().unwrap(), *p)).collect(),
        }
    }

    fn messages(old: Option<&ServicePort>, new: Option<&ServicePort>) -> usize {
        let mut batch = Batch::new(FAMILY_IPV4, "t", 1);
        let mut hairpin = Hairpin::default();
        if let Some(old) = old {
            // What the old state put in the hairpin set.
            change(&mut Batch::new(FAMILY_IPV4, "t", 1), &key(), None, Some(old), &mut hairpin);
        }
        change(&mut batch, &key(), old, new, &mut hairpin);
        batch.len()
    }

    #[test]
    fn a_new_service_port_is_its_chain_rule_map_and_element() {
        let new = port(&[("10.42.0.5", 8080), ("10.42.0.6", 8080)]);
        // The endpoint map and its elements, 2 hairpin elements, svc chain and its rule, 1
        // element.
        assert_eq!(messages(None, Some(&new)), 2 + 2 + 2 + 1);
        // Without endpoints its cluster IP refuses connections: one element.
        assert_eq!(messages(None, Some(&port(&[]))), 1);
    }

    #[test]
    fn one_endpoint_changed_is_map_elements_and_no_rule() {
        let old = port(&[("10.42.0.5", 8080), ("10.42.0.6", 8080)]);
        let new = port(&[("10.42.0.5", 8080), ("10.42.0.7", 8080)]);
        // The map flushed and filled again; one hairpin element in, one out.
        assert_eq!(messages(Some(&old), Some(&new)), 2 + 2);
        assert_eq!(messages(Some(&old), Some(&old)), 0);
        let mut batch = Batch::new(FAMILY_IPV4, "t", 1);
        let mut hairpin = Hairpin::default();
        change(&mut batch, &key(), None, Some(&old), &mut hairpin);
        let objects = objects(&key(), Some(&new));
        let unready = port(&[("10.42.0.5", 8080)]);
        assert_eq!(objects.chains, super::objects(&key(), Some(&unready)).chains);
    }

    #[test]
    fn endpoints_share_the_random_numbers_equally() {
        let three: Vec<(IpAddr, u16)> = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
            .iter()
            .map(|ip| (ip.parse().unwrap(), 80))
            .collect();
        let ranges: Vec<(u32, u32)> = shares(&three).iter().map(|(s, e, _)| (*s, *e)).collect();
        assert_eq!(
            ranges,
            vec![(0, 357_913_941), (357_913_941, 715_827_882), (715_827_882, 1 << 30)]
        );
        assert_eq!(shares(&three)[1].2, vec![10, 0, 0, 2, 0, 80, 0, 0]);
        let six: (IpAddr, u16) = ("fd42::5".parse().unwrap(), 8080);
        assert_eq!(shares(&[six])[0].2.len(), 20);
    }

    #[test]
    fn a_removed_service_port_leaves_nothing() {
        let old = port(&[("10.42.0.5", 8080)]);
        // Element, svc chain flushed and deleted, the hairpin element, the map.
        assert_eq!(messages(Some(&old), None), 1 + 2 + 1 + 1);
        // Down to no endpoints: the same, and the refusal's element.
        assert_eq!(messages(Some(&old), Some(&port(&[]))), 6);
    }

    #[test]
    fn the_hairpin_set_holds_an_endpoint_while_any_port_has_it() {
        let mut hairpin = Hairpin::default();
        let ip: IpAddr = "10.42.0.5".parse().unwrap();
        let mut batch = Batch::new(FAMILY_IPV4, "t", 1);
        hairpin.add(&mut batch, ip);
        hairpin.add(&mut batch, ip);
        hairpin.remove(&mut batch, ip);
        assert_eq!(batch.len(), 1);
        hairpin.remove(&mut batch, ip);
        assert_eq!(batch.len(), 2);
        assert_eq!(pair(ip), vec![10, 42, 0, 5, 10, 42, 0, 5]);
    }

    #[test]
    fn affinity_is_a_set_per_endpoint() {
        let mut sticky = port(&[("10.42.0.5", 8080), ("10.42.0.6", 8080)]);
        sticky.affinity = Some(60);
        let objects = objects(&key(), Some(&sticky));
        assert_eq!(objects.sets.len(), 2);
        assert!(objects.maps.is_empty());
        assert!(objects.sets.keys().all(|s| s.starts_with("affinity/60/ep/d/web/tcp/80/")));
        // Two lookups, then the random pick.
        assert_eq!(objects.chains["svc/d/web/tcp/80"].len(), 4);
        // Dropping affinity deletes the sets and the endpoint chains after the svc chain
        // that uses them is refilled.
        let plain = port(&[("10.42.0.5", 8080), ("10.42.0.6", 8080)]);
        // The map and its elements, the svc chain (1 + 1), two endpoint chains (2 each),
        // two sets.
        assert_eq!(messages(Some(&sticky), Some(&plain)), 2 + 2 + 2 * 2 + 2);
    }

    #[test]
    fn keys_are_padded_to_registers() {
        assert_eq!(
            ip_key("10.43.0.20".parse().unwrap(), 6, 80),
            vec![10, 43, 0, 20, 6, 0, 0, 0, 0, 80, 0, 0]
        );
        assert_eq!(node_port_key(17, 30053), vec![17, 0, 0, 0, 0x75, 0x65, 0, 0]);
        let v6 = ip_key("fd00::14".parse().unwrap(), 6, 80);
        assert_eq!(v6.len(), 24);
        assert_eq!(&v6[16..], &[6, 0, 0, 0, 0, 80, 0, 0]);
    }

    #[test]
    fn ipv6_endpoints_dnat_from_the_registers_after_the_address() {
        let rules = endpoint_rules(("fd42::5".parse().unwrap(), 8080), None);
        assert_eq!(rules.len(), 1);
        let mut expected = vec![
            expr::immediate(REG0, &octets("fd42::5".parse().unwrap())),
            expr::immediate(REG0 + 4, &8080u16.to_be_bytes()),
        ];
        expected.push(expr::dnat_in(Family::Ipv6, REG0, REG0 + 4));
        assert_eq!(rules[0], expected);
        assert_eq!(
            endpoint_chain(&key(), ("fd42::5".parse().unwrap(), 80)),
            "ep/d/web/tcp/80/[fd42::5]:80"
        );
    }
}
