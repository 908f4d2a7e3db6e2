//! The messages that replace the node's policy table by a ruleset, in one transaction (pure).
//!
//! ```text
//! table ip <bridge>-policy    (and on a dual-stack node `table ip6`, ipv6_addr keys)
//!   map ingress-pods { ipv4_addr : verdict }    isolated pod -> goto ingress/NS/POD
//!   map egress-pods  { ipv4_addr : verdict }    isolated pod -> goto egress/NS/POD
//!   set ingress/NS/POLICY/RULE, egress/...      a rule's peers (flags interval)
//!   chain egress  (filter, forward, -2)   ct state established,related accept
//!                                         ip saddr vmap @egress-pods
//!   chain ingress (filter, forward, -1)   ct state established,related accept
//!                                         ip daddr vmap @ingress-pods
//!   chain ingress/NS/POD   ip saddr @set [meta l4proto P th dport A-B] accept ...; drop
//!   chain egress/NS/POD    ip daddr @set [meta l4proto P th dport A-B] accept ...; drop
//! ```
//!
//! The egress chain's `accept` ends only its own base chain: the packet still meets the
//! ingress chain after it, so a connection between two isolated pods needs both sides'
//! consent. Pod-to-pod traffic over the node's bridge meets the forward hook through
//! `br_netfilter`; traffic between a pod and its own node (probes, the cluster DNS, the API
//! server) never does, and is always allowed, as upstream's documentation says it is.

use krust_nftables::expr::{self, REG0};
use krust_nftables::family::octets;
use krust_nftables::message::Attrs;
use krust_nftables::{Batch, Family, Hook, Verdict};

use crate::plan::{Peers, Rule, Ruleset};

const INGRESS_PODS: &str = "ingress-pods";
const EGRESS_PODS: &str = "egress-pods";
/// The IP protocol number of ICMPv6.
const ICMPV6: u8 = 58;

/// Replaces whatever the table (of the ruleset's family) held by `ruleset`.
pub fn replace(batch: &mut Batch, ruleset: &Ruleset) {
    let family = ruleset.family;
    let (saddr, daddr) = (family.source_offset(), family.destination_offset());
    batch.add_table();
    batch.delete_table();
    batch.add_table();
    batch.add_verdict_map(INGRESS_PODS, 1, family.address_type(), family.address_len());
    batch.add_verdict_map(EGRESS_PODS, 2, family.address_type(), family.address_len());
    for (name, ranges) in &ruleset.sets {
        batch.add_interval_set(name, family);
        batch.interval_elements(name, family, ranges);
    }
    for name in ruleset.chains.keys() {
        batch.add_chain(name, None);
    }
    for (name, rules) in &ruleset.chains {
        // An ingress chain's peers are the sources, an egress chain's the destinations.
        let peer_offset = if name.starts_with("ingress/") { saddr } else { daddr };
        for rule in rules {
            batch.add_rule(name, rule_expressions(rule, family, peer_offset));
        }
        batch.add_rule(name, vec![expr::verdict(&Verdict::Drop)]);
    }
    for (map, pods) in [(INGRESS_PODS, &ruleset.ingress), (EGRESS_PODS, &ruleset.egress)] {
        for (ip, chain) in pods {
            batch.map_element(map, &octets(*ip), Some(&Verdict::Goto(chain.clone())));
        }
    }
    for (chain, priority, offset, map) in
        [("egress", -2, saddr, EGRESS_PODS), ("ingress", -1, daddr, INGRESS_PODS)]
    {
        batch.add_chain(chain, Some(Hook { number: 2, priority, kind: "filter" }));
        let mut established = expr::ct_state_in(expr::CT_ESTABLISHED_OR_RELATED, REG0);
        established.push(expr::verdict(&Verdict::Accept));
        batch.add_rule(chain, established);
        if family == Family::Ipv6 {
            // Neighbour discovery (ICMPv6 133 to 137), which conntrack does not follow: without
            // it an isolated pod cannot even find its allowed peers' addresses.
            batch.add_rule(
                chain,
                vec![
                    expr::meta(expr::META_L4PROTO, REG0),
                    expr::cmp(expr::EQ, REG0, &[ICMPV6]),
                    expr::payload(expr::TRANSPORT, 0, 1, REG0),
                    expr::range(REG0, &[133], &[137]),
                    expr::verdict(&Verdict::Accept),
                ],
            );
        }
        batch.add_rule(
            chain,
            vec![
                expr::payload(expr::NETWORK, offset, family.address_len(), REG0),
                expr::lookup_verdict(map, REG0),
            ],
        );
    }
}

fn rule_expressions(rule: &Rule, family: Family, peer_offset: u32) -> Vec<Attrs> {
    let mut expressions = Vec::new();
    let peer = expr::payload(expr::NETWORK, peer_offset, family.address_len(), REG0);
    match &rule.peers {
        Peers::Any => {}
        Peers::Set(set) => {
            expressions.push(peer);
            expressions.push(expr::lookup(set, REG0));
        }
        Peers::Address(ip) => {
            expressions.push(peer);
            expressions.push(expr::cmp(expr::EQ, REG0, &octets(*ip)));
        }
    }
    if let Some(ports) = rule.ports {
        expressions.push(expr::meta(expr::META_L4PROTO, REG0));
        expressions.push(expr::cmp(expr::EQ, REG0, &[ports.protocol.number()]));
        match ports.range {
            Some((first, last)) if first == last => {
                expressions.push(expr::th_dport(REG0));
                expressions.push(expr::cmp(expr::EQ, REG0, &first.to_be_bytes()));
            }
            Some((first, last)) => {
                expressions.push(expr::th_dport(REG0));
                expressions.push(expr::range(REG0, &first.to_be_bytes(), &last.to_be_bytes()));
            }
            None => {}
        }
    }
    expressions.push(expr::verdict(&Verdict::Accept));
    expressions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Ports, Protocol};
    use krust_nftables::message::FAMILY_IPV4;

    #[test]
    fn an_empty_ruleset_is_the_table_its_maps_and_base_chains() {
        let mut batch = Batch::new(FAMILY_IPV4, "t", 1);
        replace(&mut batch, &Ruleset::empty(Family::Ipv4));
        // Table thrice, two maps, two base chains with two rules each.
        assert_eq!(batch.len(), 3 + 2 + 2 * 3);
        // IPv6's base chains let neighbour discovery through too.
        let mut batch = Batch::new(10, "t", 1);
        replace(&mut batch, &Ruleset::empty(Family::Ipv6));
        assert_eq!(batch.len(), 3 + 2 + 2 * 4);
    }

    #[test]
    fn a_pod_chain_ends_in_drop_after_its_rules() {
        let mut ruleset = Ruleset::empty(Family::Ipv6);
        ruleset.sets.insert("ingress/a/p/0".into(), vec![(1, 2)]);
        ruleset.chains.insert(
            "ingress/a/web".into(),
            vec![Rule {
                peers: Peers::Set("ingress/a/p/0".into()),
                ports: Some(Ports { protocol: Protocol::Tcp, range: Some((80, 90)) }),
            }],
        );
        ruleset.ingress.insert(
            "fd42::2".parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST.into()),
            "ingress/a/web".into(),
        );
        let mut batch = Batch::new(10, "t", 1);
        replace(&mut batch, &ruleset);
        // The IPv6 table (base chains of three rules), the set and its elements, the chain,
        // its rule and drop, the map element.
        assert_eq!(batch.len(), 3 + 2 + 2 * 4 + 2 + 1 + 2 + 1);
        assert_eq!(
            rule_expressions(&ruleset.chains["ingress/a/web"][0], Family::Ipv6, 8).len(),
            2 + 2 + 2 + 1
        );
    }
}
