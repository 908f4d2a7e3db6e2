//! The nf_tables ruleset of the service proxy, in the spirit of upstream kube-proxy's
//! nftables mode, and the messages that change it.
//!
//! ```text
//! table ip <table>
//!   map service-ips       { ipv4_addr . inet_proto . inet_service : verdict }  -> goto svc/...
//!   map service-nodeports { inet_proto . inet_service : verdict }              -> goto nodeport/...
//!   chain prerouting  (nat, dstnat)  jump services
//!   chain output      (nat, dstnat)  jump services
//!   chain services    ip daddr . meta l4proto . th dport vmap @service-ips
//!                     fib daddr type local meta l4proto . th dport vmap @service-nodeports
//!   chain postrouting (nat, srcnat)  mark & 0x4000 masquerade; pod network -> elsewhere masquerade
//!   map no-endpoint-services { ipv4_addr . inet_proto . inet_service : verdict } -> goto reject
//!   chain filter-forward, filter-output (filter)  ... vmap @no-endpoint-services (not to local addresses)
//!   chain reject      reject (ICMP port unreachable)
//!   chain nodeport/NS/NAME/PROTO/PORT  mark |= 0x4000; goto svc/...
//!   chain svc/NS/NAME/PROTO/PORT       numgen random mod N-i == 0 goto ep/... (one rule each)
//!   chain ep/NS/NAME/PROTO/PORT/IP:PORT   ip saddr IP mark |= 0x4000 (hairpin); dnat to IP:PORT
//! ```
//!
//! A Service port is programmed only while it has ready endpoints (without, its cluster IPs
//! refuse connections, as upstream's); a change touches only its own map elements and chains, so one endpoint changed is one small transaction whatever
//! the number of Services.

use std::net::Ipv4Addr;

use crate::nft::expr::{self, REG0};
use crate::nft::{Batch, Hook, Verdict};
use crate::plan::{PortKey, ServicePort};

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

/// Where the ruleset lives and what it may rely on.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The nf_tables table (family `ip`).
    pub table: String,
    /// The node's pod network, masqueraded towards every other address.
    pub pod_cidr: (Ipv4Addr, u8),
}

/// Replaces whatever the table held by the empty ruleset: maps, hooks, masquerade.
pub fn skeleton(batch: &mut Batch, layout: &Layout) {
    batch.add_table();
    batch.delete_table();
    batch.add_table();
    // ipv4_addr . inet_proto . inet_service, as `nft` names the types.
    batch.add_verdict_map(SERVICE_IPS, 1, (7 << 12) | (12 << 6) | 13, 12);
    batch.add_verdict_map(NODE_PORTS, 2, (12 << 6) | 13, 8);
    batch.add_chain(SERVICES, None);
    batch.add_rule(
        SERVICES,
        vec![
            expr::ip_daddr(REG0),
            expr::meta(expr::META_L4PROTO, REG0 + 1),
            expr::th_dport(REG0 + 2),
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
    batch.add_verdict_map(NO_ENDPOINTS, 3, (7 << 12) | (12 << 6) | 13, 12);
    batch.add_chain(REJECT, None);
    batch.add_rule(REJECT, vec![expr::reject()]);
    for (chain, number) in [("filter-forward", 2), ("filter-output", 3)] {
        batch.add_chain(chain, Some(Hook { number, priority: 0, kind: "filter" }));
        batch.add_rule(
            chain,
            vec![
                // The cluster DNS address is the host's own: its Service has no endpoints.
                expr::fib_daddr_type(REG0),
                expr::cmp(expr::NEQ, REG0, &LOCAL_ADDRESS.to_ne_bytes()),
                expr::ip_daddr(REG0),
                expr::meta(expr::META_L4PROTO, REG0 + 1),
                expr::th_dport(REG0 + 2),
                expr::lookup_verdict(NO_ENDPOINTS, REG0),
            ],
        );
    }
    batch.add_chain("postrouting", Some(Hook { number: 4, priority: 100, kind: "nat" }));
    let mut marked = expr::mark_has(MASQUERADE_MARK, REG0);
    marked.push(expr::masquerade());
    batch.add_rule("postrouting", marked);
    let (network, prefix) = layout.pod_cidr;
    let mut egress = expr::in_network(12, network.octets(), prefix, expr::EQ, REG0);
    egress.extend(expr::in_network(16, network.octets(), prefix, expr::NEQ, REG0));
    egress.push(expr::masquerade());
    batch.add_rule("postrouting", egress);
}

fn service_chain(key: &PortKey) -> String {
    format!("svc/{}/{}/{}/{}", key.namespace, key.name, key.protocol_name(), key.port)
}

fn node_port_chain(key: &PortKey) -> String {
    format!("nodeport/{}/{}/{}/{}", key.namespace, key.name, key.protocol_name(), key.port)
}

fn endpoint_chain(key: &PortKey, (ip, port): (Ipv4Addr, u16)) -> String {
    format!("ep/{}/{}/{}/{}/{ip}:{port}", key.namespace, key.name, key.protocol_name(), key.port)
}

fn ip_key(ip: Ipv4Addr, protocol: u8, port: u16) -> Vec<u8> {
    let mut key = ip.octets().to_vec();
    key.extend_from_slice(&[protocol, 0, 0, 0]);
    key.extend_from_slice(&port.to_be_bytes());
    key.extend_from_slice(&[0, 0]);
    key
}

fn node_port_key(protocol: u8, port: u16) -> Vec<u8> {
    ip_key(Ipv4Addr::UNSPECIFIED, protocol, port)[4..].to_vec()
}

/// The cluster IPs of a Service port without ready endpoints: connections are refused.
fn refused(port: Option<&ServicePort>) -> &[Ipv4Addr] {
    port.filter(|p| p.endpoints.is_empty()).map_or(&[], |p| &p.cluster_ips)
}

fn refusals(
    batch: &mut Batch,
    key: &PortKey,
    old: Option<&ServicePort>,
    new: Option<&ServicePort>,
) {
    let (old, new) = (refused(old), refused(new));
    for ip in old.iter().filter(|ip| !new.contains(ip)) {
        batch.map_element(NO_ENDPOINTS, &ip_key(*ip, key.protocol, key.port), None);
    }
    for ip in new.iter().filter(|ip| !old.contains(ip)) {
        let goto = Verdict::Goto(REJECT.into());
        batch.map_element(NO_ENDPOINTS, &ip_key(*ip, key.protocol, key.port), Some(&goto));
    }
}

/// The part of a Service port that is programmed: nothing without ready endpoints.
fn programmed(port: Option<&ServicePort>) -> Option<&ServicePort> {
    port.filter(|p| !p.endpoints.is_empty())
}

/// Adds to `batch` what turns the programmed `old` state of `key` into `new`.
pub fn change(
    batch: &mut Batch,
    key: &PortKey,
    old: Option<&ServicePort>,
    new: Option<&ServicePort>,
) {
    refusals(batch, key, old, new);
    let (old, new) = (programmed(old), programmed(new));
    if old == new {
        return;
    }
    let service = service_chain(key);
    let node_port = node_port_chain(key);
    let old_endpoints: &[(Ipv4Addr, u16)] = old.map_or(&[], |p| &p.endpoints);
    let new_endpoints: &[(Ipv4Addr, u16)] = new.map_or(&[], |p| &p.endpoints);
    let old_node_port = old.and_then(|p| p.node_port);
    let new_node_port = new.and_then(|p| p.node_port);

    // What is new first, so that everything a verdict names exists.
    if old.is_none() && new.is_some() {
        batch.add_chain(&service, None);
    }
    if new_node_port.is_some() && old_node_port.is_none() {
        batch.add_chain(&node_port, None);
        let mut rule = expr::mark_or(MASQUERADE_MARK, REG0);
        rule.push(expr::verdict(&Verdict::Goto(service.clone())));
        batch.add_rule(&node_port, rule);
    }
    for endpoint in new_endpoints.iter().filter(|e| !old_endpoints.contains(e)) {
        let chain = endpoint_chain(key, *endpoint);
        batch.add_chain(&chain, None);
        let mut hairpin =
            vec![expr::ip_saddr(REG0), expr::cmp(expr::EQ, REG0, &endpoint.0.octets())];
        hairpin.extend(expr::mark_or(MASQUERADE_MARK, REG0));
        batch.add_rule(&chain, hairpin);
        batch.add_rule(
            &chain,
            vec![
                expr::immediate(REG0, &endpoint.0.octets()),
                expr::immediate(REG0 + 1, &endpoint.1.to_be_bytes()),
                expr::dnat(REG0, REG0 + 1),
            ],
        );
    }
    if new.is_some() && old_endpoints != new_endpoints {
        if old.is_some() {
            batch.flush_chain(&service);
        }
        let count = new_endpoints.len();
        for (i, endpoint) in new_endpoints.iter().enumerate() {
            let goto = expr::verdict(&Verdict::Goto(endpoint_chain(key, *endpoint)));
            let left = u32::try_from(count - i).unwrap_or(u32::MAX);
            if left > 1 {
                batch.add_rule(
                    &service,
                    vec![
                        expr::numgen_random(REG0, left),
                        expr::cmp(expr::EQ, REG0, &0u32.to_ne_bytes()),
                        goto,
                    ],
                );
            } else {
                batch.add_rule(&service, vec![goto]);
            }
        }
    }

    // The map elements.
    let old_ips: &[Ipv4Addr] = old.map_or(&[], |p| &p.cluster_ips);
    let new_ips: &[Ipv4Addr] = new.map_or(&[], |p| &p.cluster_ips);
    for ip in old_ips.iter().filter(|ip| !new_ips.contains(ip)) {
        batch.map_element(SERVICE_IPS, &ip_key(*ip, key.protocol, key.port), None);
    }
    for ip in new_ips.iter().filter(|ip| !old_ips.contains(ip)) {
        let goto = Verdict::Goto(service.clone());
        batch.map_element(SERVICE_IPS, &ip_key(*ip, key.protocol, key.port), Some(&goto));
    }
    if old_node_port != new_node_port {
        if let Some(port) = old_node_port {
            batch.map_element(NODE_PORTS, &node_port_key(key.protocol, port), None);
        }
        if let Some(port) = new_node_port {
            let goto = Verdict::Goto(node_port.clone());
            batch.map_element(NODE_PORTS, &node_port_key(key.protocol, port), Some(&goto));
        }
    }

    // What is gone last, once nothing names it.
    if old_node_port.is_some() && new_node_port.is_none() {
        batch.flush_chain(&node_port);
        batch.delete_chain(&node_port);
    }
    if old.is_some() && new.is_none() {
        batch.flush_chain(&service);
        batch.delete_chain(&service);
    }
    for endpoint in old_endpoints.iter().filter(|e| !new_endpoints.contains(e)) {
        let chain = endpoint_chain(key, *endpoint);
        batch.flush_chain(&chain);
        batch.delete_chain(&chain);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::nft::message::FAMILY_IPV4;

    fn key() -> PortKey {
        PortKey { namespace: "d".into(), name: "web".into(), protocol: 6, port: 80 }
    }

    fn port(endpoints: &[(&str, u16)]) -> ServicePort {
        ServicePort {
            cluster_ips: vec!["10.43.0.20".parse().unwrap()],
            node_port: None,
            endpoints: endpoints.iter().map(|(ip, p)| (ip.parse().unwrap(), *p)).collect(),
        }
    }

    fn messages(old: Option<&ServicePort>, new: Option<&ServicePort>) -> usize {
        let mut batch = Batch::new(FAMILY_IPV4, "t", 1);
        change(&mut batch, &key(), old, new);
        batch.len()
    }

    #[test]
    fn a_new_service_port_is_its_chains_rules_and_element() {
        let new = port(&[("10.42.0.5", 8080), ("10.42.0.6", 8080)]);
        // svc chain, 2 endpoint chains with 2 rules each, 2 svc rules, 1 element.
        assert_eq!(messages(None, Some(&new)), 1 + 2 * 3 + 2 + 1);
        // Without endpoints its cluster IP refuses connections: one element.
        assert_eq!(messages(None, Some(&port(&[]))), 1);
    }

    #[test]
    fn one_endpoint_changed_is_a_small_change() {
        let old = port(&[("10.42.0.5", 8080), ("10.42.0.6", 8080)]);
        let new = port(&[("10.42.0.5", 8080), ("10.42.0.7", 8080)]);
        // New endpoint chain (3), svc flushed and refilled (1 + 2), old chain gone (2).
        assert_eq!(messages(Some(&old), Some(&new)), 3 + 3 + 2);
        assert_eq!(messages(Some(&old), Some(&old)), 0);
    }

    #[test]
    fn a_removed_service_port_leaves_nothing() {
        let old = port(&[("10.42.0.5", 8080)]);
        // Element, svc chain flushed and deleted, endpoint chain flushed and deleted.
        assert_eq!(messages(Some(&old), None), 1 + 2 + 2);
        // Down to no endpoints: the same, and the refusal's element.
        assert_eq!(messages(Some(&old), Some(&port(&[]))), 6);
    }

    #[test]
    fn keys_are_padded_to_registers() {
        assert_eq!(
            ip_key("10.43.0.20".parse().unwrap(), 6, 80),
            vec![10, 43, 0, 20, 6, 0, 0, 0, 0, 80, 0, 0]
        );
        assert_eq!(node_port_key(17, 30053), vec![17, 0, 0, 0, 0x75, 0x65, 0, 0]);
    }
}
