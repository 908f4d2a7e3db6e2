//! The messages that replace the node's policy table by a ruleset, in one transaction (pure).
//!
//! ```text
//! table ip <bridge>-policy
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
use krust_nftables::message::Attrs;
use krust_nftables::{Batch, Hook, Verdict};

use crate::plan::{Peers, Rule, Ruleset};

const INGRESS_PODS: &str = "ingress-pods";
const EGRESS_PODS: &str = "egress-pods";
/// `ipv4_addr`, as `nft` names the type.
const IPV4_ADDR: u32 = 7;
/// The IPv4 header's source address offset.
const SADDR: u32 = 12;
/// The IPv4 header's destination address offset.
const DADDR: u32 = 16;

/// Replaces whatever the table held by `ruleset`.
pub fn replace(batch: &mut Batch, ruleset: &Ruleset) {
    batch.add_table();
    batch.delete_table();
    batch.add_table();
    batch.add_verdict_map(INGRESS_PODS, 1, IPV4_ADDR, 4);
    batch.add_verdict_map(EGRESS_PODS, 2, IPV4_ADDR, 4);
    for (name, ranges) in &ruleset.sets {
        batch.add_interval_set(name);
        batch.interval_elements(name, ranges);
    }
    for name in ruleset.chains.keys() {
        batch.add_chain(name, None);
    }
    for (name, rules) in &ruleset.chains {
        // An ingress chain's peers are the sources, an egress chain's the destinations.
        let peer_offset = if name.starts_with("ingress/") { SADDR } else { DADDR };
        for rule in rules {
            batch.add_rule(name, rule_expressions(rule, peer_offset));
        }
        batch.add_rule(name, vec![expr::verdict(&Verdict::Drop)]);
    }
    for (map, pods) in [(INGRESS_PODS, &ruleset.ingress), (EGRESS_PODS, &ruleset.egress)] {
        for (ip, chain) in pods {
            batch.map_element(map, &ip.octets(), Some(&Verdict::Goto(chain.clone())));
        }
    }
    for (chain, priority, offset, map) in
        [("egress", -2, SADDR, EGRESS_PODS), ("ingress", -1, DADDR, INGRESS_PODS)]
    {
        batch.add_chain(chain, Some(Hook { number: 2, priority, kind: "filter" }));
        let mut established = expr::ct_state_in(expr::CT_ESTABLISHED_OR_RELATED, REG0);
        established.push(expr::verdict(&Verdict::Accept));
        batch.add_rule(chain, established);
        batch.add_rule(
            chain,
            vec![expr::payload(expr::NETWORK, offset, 4, REG0), expr::lookup_verdict(map, REG0)],
        );
    }
}

fn rule_expressions(rule: &Rule, peer_offset: u32) -> Vec<Attrs> {
    let mut expressions = Vec::new();
    match &rule.peers {
        Peers::Any => {}
        Peers::Set(set) => {
            expressions.push(expr::payload(expr::NETWORK, peer_offset, 4, REG0));
            expressions.push(expr::lookup(set, REG0));
        }
        Peers::Address(ip) => {
            expressions.push(expr::payload(expr::NETWORK, peer_offset, 4, REG0));
            expressions.push(expr::cmp(expr::EQ, REG0, &ip.octets()));
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
        replace(&mut batch, &Ruleset::default());
        // Table thrice, two maps, two base chains with two rules each.
        assert_eq!(batch.len(), 3 + 2 + 2 * 3);
    }

    #[test]
    fn a_pod_chain_ends_in_drop_after_its_rules() {
        let mut ruleset = Ruleset::default();
        ruleset.sets.insert("ingress/a/p/0".into(), vec![(1, 2)]);
        ruleset.chains.insert(
            "ingress/a/web".into(),
            vec![Rule {
                peers: Peers::Set("ingress/a/p/0".into()),
                ports: Some(Ports { protocol: Protocol::Tcp, range: Some((80, 90)) }),
            }],
        );
        ruleset.ingress.insert(
            "10.0.0.2".parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST),
            "ingress/a/web".into(),
        );
        let mut batch = Batch::new(FAMILY_IPV4, "t", 1);
        replace(&mut batch, &ruleset);
        // + the set and its elements, the chain, its rule and drop, the map element.
        assert_eq!(batch.len(), 3 + 2 + 2 * 3 + 2 + 1 + 2 + 1);
        assert_eq!(
            rule_expressions(&ruleset.chains["ingress/a/web"][0], SADDR).len(),
            2 + 2 + 2 + 1
        );
    }
}
