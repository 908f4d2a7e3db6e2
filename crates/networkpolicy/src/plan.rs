//! What the node's policy table must hold, from NetworkPolicies, pods and namespaces (pure).
//!
//! Upstream's semantics (`networking.k8s.io/v1`): a pod selected by a policy of its namespace
//! whose `policyTypes` hold `Ingress` (or `Egress`) is isolated in that direction, and then
//! takes only what some rule of those policies allows: the rules add up, none denies. A rule
//! allows its peers (`from`/`to`: pods by pod and namespace selectors, address blocks with
//! exceptions; none listed is everyone) on its ports (a number, a range up to `endPort`, a
//! container port's name; none listed is every port). Replies of allowed connections pass.
//!
//! Each isolated pod of this node gets a chain per direction: a rule per allowed peer set
//! and port, each ending in `accept`; the chain ends in `drop`. Each rule's peers are an
//! address set of their own, shared by every pod the policy selects.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use krust_nftables::Family;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::{NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};

/// A namespace and a name.
pub type Key = (String, String);

/// Labels, as objects carry them.
pub type Labels = BTreeMap<String, String>;

/// A transport protocol a policy port names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (the default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    fn parse(text: Option<&str>) -> Option<Protocol> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }
}

/// A named container port of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// The port's name.
    pub name: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// Its number.
    pub port: u16,
}

/// What policies need of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Its labels.
    pub labels: Labels,
    /// Its addresses (one of each family at most), once it has them.
    pub ips: Vec<IpAddr>,
    /// The node it runs on.
    pub node: String,
    /// Its containers' named ports.
    pub ports: Vec<NamedPort>,
}

/// The pod as policies see it: `None` for pods on the host's network (policies never select
/// them) and pods that ended (their address may be another pod's already).
pub fn pod_view(pod: &Pod) -> Option<PodView> {
    let spec = pod.spec.as_ref()?;
    if spec.host_network == Some(true) {
        return None;
    }
    let status = pod.status.as_ref();
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")) {
        return None;
    }
    let mut ips: Vec<IpAddr> = Vec::new();
    let listed =
        status.and_then(|s| s.pod_ips.as_ref()).into_iter().flatten().map(|p| p.ip.as_str());
    for ip in listed.chain(status.and_then(|s| s.pod_ip.as_deref())) {
        if let Ok(ip) = ip.parse::<IpAddr>()
            && !ips.iter().any(|known| Family::of(*known) == Family::of(ip))
        {
            ips.push(ip);
        }
    }
    let ports = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            Some(NamedPort {
                name: p.name.clone()?,
                protocol: Protocol::parse(p.protocol.as_deref())?,
                port: u16::try_from(p.container_port).ok()?,
            })
        })
        .collect();
    Some(PodView {
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        ips,
        node: spec.node_name.clone().unwrap_or_default(),
        ports,
    })
}

impl PodView {
    /// Its address of `family`, if it has one.
    pub fn ip(&self, family: Family) -> Option<IpAddr> {
        self.ips.iter().copied().find(|ip| Family::of(*ip) == family)
    }
}

/// An address as a number (an IPv4 address's is below 2^32).
fn number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Which addresses a rule matches: the packet's source for ingress, destination for egress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peers {
    /// Every address.
    Any,
    /// The addresses in the named set.
    Set(String),
    /// One address (a peer pod whose port was named).
    Address(IpAddr),
}

/// Which ports a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// The protocol.
    pub protocol: Protocol,
    /// The destination ports, first to last; `None` for all of them.
    pub range: Option<(u16, u16)>,
}

/// One rule of a pod's chain: its peers on its ports are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The peers.
    pub peers: Peers,
    /// The ports; `None` for every port of every protocol.
    pub ports: Option<Ports>,
}

/// The node's whole policy table of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// The family of its addresses.
    pub family: Family,
    /// Address sets by name: ranges `[first, last]` as numbers, sorted and merged.
    pub sets: BTreeMap<String, Vec<(u128, u128)>>,
    /// Pods' chains by name: their rules, before the final drop.
    pub chains: BTreeMap<String, Vec<Rule>>,
    /// Pods of this node isolated for ingress: their address and chain.
    pub ingress: BTreeMap<IpAddr, String>,
    /// Pods of this node isolated for egress: their address and chain.
    pub egress: BTreeMap<IpAddr, String>,
}

impl Ruleset {
    /// The ruleset of `family` that isolates nothing.
    pub fn empty(family: Family) -> Self {
        Self {
            family,
            sets: BTreeMap::new(),
            chains: BTreeMap::new(),
            ingress: BTreeMap::new(),
            egress: BTreeMap::new(),
        }
    }
}

/// The cluster as policies see it.
#[derive(Debug, Default)]
pub struct Cluster {
    /// NetworkPolicies by namespace and name.
    pub policies: BTreeMap<Key, NetworkPolicySpec>,
    /// Pods by namespace and name.
    pub pods: BTreeMap<Key, PodView>,
    /// Namespaces' labels by name.
    pub namespaces: BTreeMap<String, Labels>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    /// The name in `policyTypes`.
    fn policy_type(self) -> &'static str {
        match self {
            Direction::Ingress => "Ingress",
            Direction::Egress => "Egress",
        }
    }
}

fn selects(selector: &LabelSelector, labels: &Labels) -> bool {
    // An invalid selector (the API server refuses them) selects nothing.
    Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
}

/// The directions a policy isolates: its `policyTypes`, or by default ingress, and egress
/// when it has egress rules.
fn isolates(spec: &NetworkPolicySpec, direction: Direction) -> bool {
    match &spec.policy_types {
        Some(types) if !types.is_empty() => types.iter().any(|t| t == direction.policy_type()),
        _ => match direction {
            Direction::Ingress => true,
            Direction::Egress => spec.egress.is_some(),
        },
    }
}

/// A policy rule's peers and ports, whichever the direction.
struct PolicyRule<'a> {
    peers: Option<&'a Vec<NetworkPolicyPeer>>,
    ports: Option<&'a Vec<NetworkPolicyPort>>,
}

fn rules_of(spec: &NetworkPolicySpec, direction: Direction) -> Vec<PolicyRule<'_>> {
    match direction {
        Direction::Ingress => spec
            .ingress
            .iter()
            .flatten()
            .map(|r| PolicyRule { peers: r.from.as_ref(), ports: r.ports.as_ref() })
            .collect(),
        Direction::Egress => spec
            .egress
            .iter()
            .flatten()
            .map(|r| PolicyRule { peers: r.to.as_ref(), ports: r.ports.as_ref() })
            .collect(),
    }
}

impl Cluster {
    /// The pods (with addresses of `family`) a peer names, for a policy of `namespace`.
    fn peer_pods<'a>(
        &'a self,
        namespace: &'a str,
        peer: &'a NetworkPolicyPeer,
        family: Family,
    ) -> impl Iterator<Item = &'a PodView> + 'a {
        self.pods.iter().filter_map(move |((ns, _), pod)| {
            pod.ip(family)?;
            let namespace_matches = match &peer.namespace_selector {
                Some(selector) => {
                    self.namespaces.get(ns).is_some_and(|labels| selects(selector, labels))
                }
                None => ns == namespace,
            };
            let pod_matches =
                peer.pod_selector.as_ref().is_none_or(|selector| selects(selector, &pod.labels));
            (namespace_matches && pod_matches).then_some(pod)
        })
    }

    /// The address ranges of `family` of a rule's peers.
    fn peer_ranges(
        &self,
        namespace: &str,
        peers: &[NetworkPolicyPeer],
        family: Family,
    ) -> Vec<(u128, u128)> {
        let mut ranges = Vec::new();
        for peer in peers {
            if let Some(block) = &peer.ip_block {
                ranges.extend(block_ranges(&block.cidr, block.except.iter().flatten(), family));
            } else if peer.pod_selector.is_some() || peer.namespace_selector.is_some() {
                for pod in self.peer_pods(namespace, peer, family) {
                    if let Some(ip) = pod.ip(family) {
                        ranges.push((number(ip), number(ip)));
                    }
                }
            }
        }
        merge(ranges)
    }

    /// The node's ruleset of `family`: a pod is isolated in each family it has an address
    /// of, and its peers are theirs of the same family.
    pub fn ruleset(&self, node: &str, family: Family) -> Ruleset {
        let mut ruleset = Ruleset::empty(family);
        if self.policies.is_empty() {
            return ruleset;
        }
        for ((namespace, name), pod) in &self.pods {
            let Some(ip) = pod.ip(family).filter(|_| pod.node == node) else { continue };
            for direction in [Direction::Ingress, Direction::Egress] {
                let selecting: Vec<(&Key, &NetworkPolicySpec)> = self
                    .policies
                    .range((namespace.clone(), String::new())..)
                    .take_while(|((ns, _), _)| ns == namespace)
                    .filter(|(_, spec)| {
                        isolates(spec, direction)
                            && spec.pod_selector.as_ref().is_none_or(|s| selects(s, &pod.labels))
                    })
                    .collect();
                if selecting.is_empty() {
                    continue;
                }
                let chain = format!("{}/{namespace}/{name}", direction.name());
                let mut rules = Vec::new();
                for (key, spec) in selecting {
                    for (index, rule) in rules_of(spec, direction).into_iter().enumerate() {
                        rules.extend(self.rule(&mut ruleset, key, index, &rule, direction, pod));
                    }
                }
                match direction {
                    Direction::Ingress => ruleset.ingress.insert(ip, chain.clone()),
                    Direction::Egress => ruleset.egress.insert(ip, chain.clone()),
                };
                ruleset.chains.insert(chain, rules);
            }
        }
        ruleset
    }

    /// The chain rules of one policy rule for `pod`, making its peer set if needed.
    fn rule(
        &self,
        ruleset: &mut Ruleset,
        (namespace, policy): &Key,
        index: usize,
        rule: &PolicyRule<'_>,
        direction: Direction,
        pod: &PodView,
    ) -> Vec<Rule> {
        let peers = match rule.peers.filter(|p| !p.is_empty()) {
            None => Peers::Any,
            Some(list) => {
                let set = format!("{}/{namespace}/{policy}/{index}", direction.name());
                if !ruleset.sets.contains_key(&set) {
                    let ranges = self.peer_ranges(namespace, list, ruleset.family);
                    ruleset.sets.insert(set.clone(), ranges);
                }
                Peers::Set(set)
            }
        };
        let Some(ports) = rule.ports.filter(|p| !p.is_empty()) else {
            return vec![Rule { peers, ports: None }];
        };
        let mut rules = Vec::new();
        for port in ports {
            let Some(protocol) = Protocol::parse(port.protocol.as_deref()) else { continue };
            match &port.port {
                None => rules.push(Rule {
                    peers: peers.clone(),
                    ports: Some(Ports { protocol, range: None }),
                }),
                Some(IntOrString::Int(number)) => {
                    let Ok(first) = u16::try_from(*number) else { continue };
                    let last = port.end_port.and_then(|e| u16::try_from(e).ok()).unwrap_or(first);
                    rules.push(Rule {
                        peers: peers.clone(),
                        ports: Some(Ports { protocol, range: Some((first, last.max(first))) }),
                    });
                }
                Some(IntOrString::String(name)) => match direction {
                    // The pod's own port of that name.
                    Direction::Ingress => {
                        let named =
                            pod.ports.iter().find(|p| &p.name == name && p.protocol == protocol);
                        if let Some(named) = named {
                            rules.push(Rule {
                                peers: peers.clone(),
                                ports: Some(Ports {
                                    protocol,
                                    range: Some((named.port, named.port)),
                                }),
                            });
                        }
                    }
                    // Each peer pod's port of that name (address blocks name no port).
                    Direction::Egress => {
                        let family = ruleset.family;
                        rules.extend(
                            self.named_egress(namespace, rule.peers, name, protocol, family),
                        );
                    }
                },
            }
        }
        rules
    }

    fn named_egress(
        &self,
        namespace: &str,
        peers: Option<&Vec<NetworkPolicyPeer>>,
        name: &str,
        protocol: Protocol,
        family: Family,
    ) -> Vec<Rule> {
        let candidates: Vec<&PodView> = match peers.filter(|p| !p.is_empty()) {
            None => self.pods.values().filter(|p| p.ip(family).is_some()).collect(),
            Some(list) => list
                .iter()
                .filter(|peer| peer.ip_block.is_none())
                .flat_map(|peer| self.peer_pods(namespace, peer, family))
                .collect(),
        };
        let mut seen = BTreeSet::new();
        candidates
            .into_iter()
            .filter_map(|peer| {
                let ip = peer.ip(family)?;
                let named = peer.ports.iter().find(|p| p.name == name && p.protocol == protocol)?;
                seen.insert((ip, named.port)).then_some(Rule {
                    peers: Peers::Address(ip),
                    ports: Some(Ports { protocol, range: Some((named.port, named.port)) }),
                })
            })
            .collect()
    }
}

/// The ranges `[first, last]` of a CIDR of `family` without its exceptions; a block of
/// the other family gives none in this family's table.
pub fn block_ranges<'a>(
    cidr: &str,
    except: impl IntoIterator<Item = &'a String>,
    family: Family,
) -> Vec<(u128, u128)> {
    let Some(block) = parse_cidr(cidr, family) else { return vec![] };
    let mut ranges = vec![block];
    for hole in except.into_iter().filter_map(|c| parse_cidr(c, family)) {
        ranges = ranges
            .into_iter()
            .flat_map(|(first, last)| {
                let mut parts = Vec::with_capacity(2);
                if hole.1 < first || hole.0 > last {
                    parts.push((first, last));
                } else {
                    if hole.0 > first {
                        parts.push((first, hole.0 - 1));
                    }
                    if hole.1 < last {
                        parts.push((hole.1 + 1, last));
                    }
                }
                parts
            })
            .collect();
    }
    ranges
}

/// The first and last address of a CIDR of `family`, as numbers.
fn parse_cidr(text: &str, family: Family) -> Option<(u128, u128)> {
    let (address, prefix) = text.split_once('/')?;
    let address: IpAddr = address.parse().ok()?;
    if Family::of(address) != family {
        return None;
    }
    let bits: u32 = if family == Family::Ipv4 { 32 } else { 128 };
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= bits)?;
    let host = u128::MAX.checked_shr(128 - (bits - prefix)).unwrap_or(0);
    let first = number(address) & !host;
    Some((first, first | host))
}

/// Sorts ranges and merges those that overlap or touch (an interval set refuses overlaps).
pub fn merge(mut ranges: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
    for (first, last) in ranges {
        match merged.last_mut() {
            Some(prev) if first <= prev.1.saturating_add(1) => prev.1 = prev.1.max(last),
            _ => merged.push((first, last)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use k8s_openapi::api::networking::v1::{
        IPBlock, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
    };

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn selector(pairs: &[(&str, &str)]) -> LabelSelector {
        LabelSelector { match_labels: Some(labels(pairs)), ..Default::default() }
    }

    fn pod(ip: &str, node: &str, pairs: &[(&str, &str)]) -> PodView {
        PodView {
            labels: labels(pairs),
            ips: vec![ip.parse().unwrap()],
            node: node.into(),
            ports: vec![NamedPort { name: "http".into(), protocol: Protocol::Tcp, port: 8080 }],
        }
    }

    fn key(ns: &str, name: &str) -> Key {
        (ns.into(), name.into())
    }

    fn cluster() -> Cluster {
        let mut c = Cluster::default();
        c.namespaces.insert("a".into(), labels(&[("team", "a")]));
        c.namespaces.insert("b".into(), labels(&[("team", "b")]));
        c.pods.insert(key("a", "web"), pod("10.42.0.2", "n1", &[("app", "web")]));
        c.pods.insert(key("a", "client"), pod("10.42.0.3", "n1", &[("app", "client")]));
        c.pods.insert(key("b", "client"), pod("10.42.1.4", "n2", &[("app", "client")]));
        c
    }

    fn ip(text: &str) -> u128 {
        number(text.parse().unwrap())
    }

    const V4: Family = Family::Ipv4;

    #[test]
    fn no_policy_isolates_nothing() {
        assert_eq!(cluster().ruleset("n1", V4), Ruleset::empty(V4));
    }

    #[test]
    fn a_default_deny_isolates_every_pod_of_its_namespace_on_this_node() {
        let mut c = cluster();
        c.policies.insert(key("a", "deny"), NetworkPolicySpec::default());
        let r = c.ruleset("n1", V4);
        assert_eq!(r.ingress.len(), 2);
        assert!(r.egress.is_empty());
        assert!(r.chains.values().all(|rules| rules.is_empty()));
        // Another node's pods are that node's to isolate.
        assert!(c.ruleset("n2", V4).ingress.is_empty());
    }

    #[test]
    fn an_ingress_rule_allows_its_selected_peers_on_its_ports() {
        let mut c = cluster();
        c.policies.insert(
            key("a", "web"),
            NetworkPolicySpec {
                pod_selector: Some(selector(&[("app", "web")])),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(selector(&[("app", "client")])),
                        ..Default::default()
                    }]),
                    ports: Some(vec![NetworkPolicyPort {
                        port: Some(IntOrString::String("http".into())),
                        ..Default::default()
                    }]),
                }]),
                ..Default::default()
            },
        );
        let r = c.ruleset("n1", V4);
        let chain = &r.ingress[&"10.42.0.2".parse().unwrap()];
        assert_eq!(chain, "ingress/a/web");
        assert_eq!(
            r.chains[chain],
            vec![Rule {
                peers: Peers::Set("ingress/a/web/0".into()),
                ports: Some(Ports { protocol: Protocol::Tcp, range: Some((8080, 8080)) }),
            }]
        );
        // Only the client of the policy's own namespace.
        assert_eq!(r.sets["ingress/a/web/0"], vec![(ip("10.42.0.3"), ip("10.42.0.3"))]);
    }

    #[test]
    fn namespace_selectors_and_both_selectors_combine_as_upstream() {
        let mut c = cluster();
        let peer = |ns: Option<LabelSelector>, pods: Option<LabelSelector>| NetworkPolicyPeer {
            namespace_selector: ns,
            pod_selector: pods,
            ..Default::default()
        };
        c.policies.insert(
            key("a", "p"),
            NetworkPolicySpec {
                pod_selector: Some(selector(&[("app", "web")])),
                ingress: Some(vec![
                    NetworkPolicyIngressRule {
                        from: Some(vec![peer(Some(selector(&[("team", "b")])), None)]),
                        ports: None,
                    },
                    NetworkPolicyIngressRule {
                        from: Some(vec![peer(
                            Some(LabelSelector::default()),
                            Some(selector(&[("app", "client")])),
                        )]),
                        ports: None,
                    },
                ]),
                ..Default::default()
            },
        );
        let r = c.ruleset("n1", V4);
        let one = |a: &str| (ip(a), ip(a));
        assert_eq!(r.sets["ingress/a/p/0"], vec![one("10.42.1.4")]);
        assert_eq!(r.sets["ingress/a/p/1"], vec![one("10.42.0.3"), one("10.42.1.4")]);
    }

    #[test]
    fn egress_with_ip_blocks_ranges_and_named_ports_of_peers() {
        let mut c = cluster();
        c.policies.insert(
            key("a", "out"),
            NetworkPolicySpec {
                pod_selector: Some(selector(&[("app", "client")])),
                policy_types: Some(vec!["Egress".into()]),
                egress: Some(vec![
                    NetworkPolicyEgressRule {
                        to: Some(vec![NetworkPolicyPeer {
                            ip_block: Some(IPBlock {
                                cidr: "10.0.0.0/8".into(),
                                except: Some(vec!["10.42.0.0/16".into()]),
                            }),
                            ..Default::default()
                        }]),
                        ports: Some(vec![NetworkPolicyPort {
                            protocol: Some("UDP".into()),
                            port: Some(IntOrString::Int(5000)),
                            end_port: Some(5010),
                        }]),
                    },
                    NetworkPolicyEgressRule {
                        to: None,
                        ports: Some(vec![NetworkPolicyPort {
                            port: Some(IntOrString::String("http".into())),
                            ..Default::default()
                        }]),
                    },
                ]),
                ..Default::default()
            },
        );
        let r = c.ruleset("n1", V4);
        assert!(r.ingress.is_empty());
        let chain = &r.chains[&r.egress[&"10.42.0.3".parse().unwrap()]];
        assert_eq!(
            chain[0],
            Rule {
                peers: Peers::Set("egress/a/out/0".into()),
                ports: Some(Ports { protocol: Protocol::Udp, range: Some((5000, 5010)) }),
            }
        );
        assert_eq!(
            r.sets["egress/a/out/0"],
            vec![(ip("10.0.0.0"), ip("10.41.255.255")), (ip("10.43.0.0"), ip("10.255.255.255"))]
        );
        // The named port, resolved on each pod that has it.
        assert_eq!(chain.len(), 1 + 3);
        assert!(chain[1..].iter().all(|r| matches!(r.peers, Peers::Address(_))
            && r.ports == Some(Ports { protocol: Protocol::Tcp, range: Some((8080, 8080)) })));
    }

    #[test]
    fn policy_types_and_defaults() {
        let spec = NetworkPolicySpec::default();
        assert!(isolates(&spec, Direction::Ingress) && !isolates(&spec, Direction::Egress));
        let spec = NetworkPolicySpec { egress: Some(vec![]), ..Default::default() };
        assert!(isolates(&spec, Direction::Egress));
        let spec =
            NetworkPolicySpec { policy_types: Some(vec!["Egress".into()]), ..Default::default() };
        assert!(!isolates(&spec, Direction::Ingress) && isolates(&spec, Direction::Egress));
    }

    #[test]
    fn ranges_subtract_and_merge() {
        assert_eq!(block_ranges("0.0.0.0/0", &[], V4), vec![(0, u128::from(u32::MAX))]);
        assert_eq!(
            block_ranges("10.0.0.0/24", &["10.0.0.0/25".to_string()], V4),
            vec![(ip("10.0.0.128"), ip("10.0.0.255"))]
        );
        assert_eq!(block_ranges("fd00::/8", &[], V4), vec![]);
        assert_eq!(block_ranges("::/0", &[], Family::Ipv6), vec![(0, u128::MAX)]);
        assert_eq!(
            block_ranges("fd00::/64", &["fd00::/65".to_string()], Family::Ipv6),
            vec![(ip("fd00::8000:0:0:0"), ip("fd00::ffff:ffff:ffff:ffff"))]
        );
        assert_eq!(block_ranges("10.0.0.0/8", &[], Family::Ipv6), vec![]);
        assert_eq!(merge(vec![(5, 7), (1, 3), (3, 4), (6, 9)]), vec![(1, 9)]);
        assert_eq!(merge(vec![(5, 7), (1, 3)]), vec![(1, 3), (5, 7)]);
        assert_eq!(merge(vec![(0, u128::MAX), (5, 7)]), vec![(0, u128::MAX)]);
    }

    #[test]
    fn finished_and_host_network_pods_are_not_seen() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                {"name": "dns", "containerPort": 53, "protocol": "UDP"}, {"containerPort": 80}]}]},
            "status": {"phase": "Running", "podIP": "10.42.0.9"}
        }))
        .unwrap();
        let view = pod_view(&pod).unwrap();
        assert_eq!(view.ips, vec!["10.42.0.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            view.ports,
            vec![NamedPort { name: "dns".into(), protocol: Protocol::Udp, port: 53 }]
        );
        let mut done = pod.clone();
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert_eq!(pod_view(&done), None);
        let mut host = pod;
        host.spec.as_mut().unwrap().host_network = Some(true);
        assert_eq!(pod_view(&host), None);
    }
}
