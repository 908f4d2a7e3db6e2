//! The answer to one question about the cluster's names, as upstream's DNS specification
//! (kubernetes/dns, `docs/specification.md`) and CoreDNS's `kubernetes` plugin give them:
//!
//! - `SVC.NS.svc.ZONE`: a Service's cluster IPs; a headless Service's ready endpoints; an
//!   ExternalName Service's CNAME; SRV for each of its ports;
//! - `_PORT._PROTO.SVC.NS.svc.ZONE`: SRV for a named port;
//! - `LABEL.SVC.NS.svc.ZONE`: a headless Service's endpoint, by hostname or dashed address;
//! - `A-B-C-D.NS.pod.ZONE`: the address written in the name;
//! - PTR for Services' cluster IPs and headless Services' endpoints.
//!
//! Names are lower-case and without the final dot. Pure: no I/O, no clock.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::records::{Endpoint, Records, ServiceKind, dashed};

/// The type asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Service location.
    Srv,
    /// Reverse pointer.
    Ptr,
    /// Alias.
    Cname,
    /// Start of authority.
    Soa,
    /// Everything.
    Any,
    /// Another type, which cluster names never have.
    Other,
}

/// The data of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Alias of the named target.
    Cname(String),
    /// The name of an address.
    Ptr(String),
    /// A port and the name that has it.
    Srv {
        /// Priority (always 0).
        priority: u16,
        /// Weight among the records of one name.
        weight: u16,
        /// The port.
        port: u16,
        /// The name with the port.
        target: String,
    },
    /// The zone's start of authority.
    Soa,
}

/// A record: its owner name and data (the TTL is the zone's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, lower-case, without the final dot.
    pub name: String,
    /// Data.
    pub data: Data,
}

/// What the question gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Records, and the addresses of the names they point at.
    Found {
        /// The answer section.
        answers: Vec<Record>,
        /// The additional section.
        additionals: Vec<Record>,
    },
    /// The name exists, without records of the type (NOERROR, empty).
    NoData,
    /// The name does not exist.
    NxDomain,
    /// Not a cluster name: the question goes to the upstream resolvers.
    Elsewhere,
}

/// Answers `name` (lower-case, no final dot) of `qtype` in `zone` (such as `cluster.local`).
pub fn answer(records: &Records, zone: &str, name: &str, qtype: QueryType) -> Outcome {
    if let Some(ip) = reverse_address(name) {
        let names = records.names_of(&ip);
        if names.is_empty() {
            return Outcome::Elsewhere;
        }
        if !matches!(qtype, QueryType::Ptr | QueryType::Any) {
            return Outcome::NoData;
        }
        let answers = names
            .into_iter()
            .map(|((ns, svc), label)| {
                let target = match label {
                    Some(label) => format!("{label}.{svc}.{ns}.svc.{zone}"),
                    None => format!("{svc}.{ns}.svc.{zone}"),
                };
                Record { name: name.to_string(), data: Data::Ptr(target) }
            })
            .collect();
        return Outcome::Found { answers, additionals: vec![] };
    }
    let relative = if name == zone {
        ""
    } else if let Some(r) = name.strip_suffix(zone).and_then(|r| r.strip_suffix('.')) {
        r
    } else {
        return Outcome::Elsewhere;
    };
    let labels: Vec<&str> =
        if relative.is_empty() { vec![] } else { relative.split('.').collect() };
    match labels.as_slice() {
        [] if qtype == QueryType::Soa || qtype == QueryType::Any => {
            found(vec![Record { name: name.to_string(), data: Data::Soa }])
        }
        [] | ["svc"] | ["pod"] | [_, "pod"] => Outcome::NoData,
        [ns, "svc"] if records.has_namespace(ns) => Outcome::NoData,
        [svc, ns, "svc"] => service(records, zone, name, ns, svc, qtype),
        [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
            named_port(records, zone, name, (&port[1..], &proto[1..]), ns, svc, qtype)
        }
        [label, svc, ns, "svc"] => endpoint(records, name, label, ns, svc, qtype),
        [address, _, "pod"] => match pod_address(address) {
            Some(ip) => addresses(name, [ip].into_iter(), qtype),
            None => Outcome::NxDomain,
        },
        _ => Outcome::NxDomain,
    }
}

fn found(answers: Vec<Record>) -> Outcome {
    if answers.is_empty() {
        Outcome::NoData
    } else {
        Outcome::Found { answers, additionals: vec![] }
    }
}

/// The address records of `name` for `qtype` among `ips`.
fn address_records(name: &str, ips: impl Iterator<Item = IpAddr>, qtype: QueryType) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    for ip in ips {
        let data = match (ip, qtype) {
            (IpAddr::V4(v4), QueryType::A | QueryType::Any) => Data::A(v4),
            (IpAddr::V6(v6), QueryType::Aaaa | QueryType::Any) => Data::Aaaa(v6),
            _ => continue,
        };
        let record = Record { name: name.to_string(), data };
        if !out.contains(&record) {
            out.push(record);
        }
    }
    out
}

fn addresses(name: &str, ips: impl Iterator<Item = IpAddr>, qtype: QueryType) -> Outcome {
    found(address_records(name, ips, qtype))
}

fn ready(records: &Records, ns: &str, svc: &str) -> Vec<Endpoint> {
    records
        .slices_of(ns, svc)
        .flat_map(|slice| slice.endpoints.iter().filter(|e| e.ready).cloned())
        .collect()
}

fn service(
    records: &Records,
    zone: &str,
    name: &str,
    ns: &str,
    svc: &str,
    qtype: QueryType,
) -> Outcome {
    let Some(record) = records.service(ns, svc) else { return Outcome::NxDomain };
    match (&record.kind, qtype) {
        (ServiceKind::ExternalName(target), QueryType::A | QueryType::Aaaa)
        | (ServiceKind::ExternalName(target), QueryType::Cname | QueryType::Any) => {
            found(vec![Record { name: name.to_string(), data: Data::Cname(target.clone()) }])
        }
        (ServiceKind::ExternalName(_), _) => Outcome::NoData,
        (ServiceKind::ClusterIp(ips), QueryType::Srv) => {
            let answers = record
                .ports
                .iter()
                .map(|p| srv(name, 100, p.port, name.to_string()))
                .collect::<Vec<_>>();
            with_additionals(answers, address_records(name, ips.iter().copied(), QueryType::Any))
        }
        (ServiceKind::ClusterIp(ips), _) => addresses(name, ips.iter().copied(), qtype),
        (ServiceKind::Headless, QueryType::Srv) => {
            let ports: Vec<u16> =
                records.slices_of(ns, svc).flat_map(|s| s.ports.iter().map(|p| p.port)).collect();
            headless_srv(name, zone, ns, svc, &ready(records, ns, svc), &ports)
        }
        (ServiceKind::Headless, _) => {
            addresses(name, ready(records, ns, svc).iter().flat_map(|e| e.addresses.clone()), qtype)
        }
    }
}

fn srv(name: &str, weight: u16, port: u16, target: String) -> Record {
    Record { name: name.to_string(), data: Data::Srv { priority: 0, weight, port, target } }
}

fn with_additionals(answers: Vec<Record>, additionals: Vec<Record>) -> Outcome {
    if answers.is_empty() { Outcome::NoData } else { Outcome::Found { answers, additionals } }
}

/// SRV records of a headless Service: one per ready endpoint and port, each pointing at the
/// endpoint's own name, whose addresses go in the additional section.
fn headless_srv(
    name: &str,
    zone: &str,
    ns: &str,
    svc: &str,
    endpoints: &[Endpoint],
    ports: &[u16],
) -> Outcome {
    let mut answers = Vec::new();
    let mut additionals = Vec::new();
    let count = (endpoints.len() * ports.len()).max(1);
    let weight = u16::try_from((100 / count).max(1)).unwrap_or(1);
    for endpoint in endpoints {
        let Some(label) = endpoint.label() else { continue };
        let target = format!("{label}.{svc}.{ns}.svc.{zone}");
        for port in ports {
            let record = srv(name, weight, *port, target.clone());
            if !answers.contains(&record) {
                answers.push(record);
            }
        }
        for record in address_records(&target, endpoint.addresses.iter().copied(), QueryType::Any) {
            if !additionals.contains(&record) {
                additionals.push(record);
            }
        }
    }
    with_additionals(answers, additionals)
}

fn named_port(
    records: &Records,
    zone: &str,
    name: &str,
    (port, proto): (&str, &str),
    ns: &str,
    svc: &str,
    qtype: QueryType,
) -> Outcome {
    let Some(record) = records.service(ns, svc) else { return Outcome::NxDomain };
    let matches = |p: &crate::records::Port| p.name == port && p.protocol == proto;
    let outcome = match &record.kind {
        ServiceKind::ExternalName(_) => return Outcome::NxDomain,
        ServiceKind::ClusterIp(ips) => {
            let target = format!("{svc}.{ns}.svc.{zone}");
            let answers = record
                .ports
                .iter()
                .filter(|p| matches(p))
                .map(|p| srv(name, 100, p.port, target.clone()))
                .collect::<Vec<_>>();
            with_additionals(answers, address_records(&target, ips.iter().copied(), QueryType::Any))
        }
        ServiceKind::Headless => {
            let ports: Vec<u16> = records
                .slices_of(ns, svc)
                .flat_map(|s| s.ports.iter().filter(|p| matches(p)).map(|p| p.port))
                .collect();
            if ports.is_empty() {
                return Outcome::NxDomain;
            }
            headless_srv(name, zone, ns, svc, &ready(records, ns, svc), &ports)
        }
    };
    match (outcome, qtype) {
        (Outcome::NoData, _) if !record.ports.iter().any(matches) => Outcome::NxDomain,
        (found @ Outcome::Found { .. }, QueryType::Srv | QueryType::Any) => found,
        (Outcome::Found { .. }, _) => Outcome::NoData,
        (other, _) => other,
    }
}

fn endpoint(
    records: &Records,
    name: &str,
    label: &str,
    ns: &str,
    svc: &str,
    qtype: QueryType,
) -> Outcome {
    match records.service(ns, svc) {
        Some(record) if record.kind == ServiceKind::Headless => {}
        _ => return Outcome::NxDomain,
    }
    let mut ips = Vec::new();
    for endpoint in ready(records, ns, svc) {
        let named = endpoint.hostname.as_deref().map(str::to_ascii_lowercase).as_deref()
            == Some(label)
            || endpoint.addresses.iter().any(|ip| dashed(ip) == label);
        if named {
            ips.extend(endpoint.addresses.iter().copied());
        }
    }
    if ips.is_empty() {
        return Outcome::NxDomain;
    }
    addresses(name, ips.into_iter(), qtype)
}

/// The address a pod name spells: `10-42-0-5` or `fd00--5`.
fn pod_address(label: &str) -> Option<IpAddr> {
    if label.bytes().filter(|b| *b == b'-').count() == 3
        && let Ok(v4) = label.replace('-', ".").parse::<Ipv4Addr>()
    {
        return Some(IpAddr::V4(v4));
    }
    label.replace('-', ":").parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The address a full reverse name (`5.0.42.10.in-addr.arpa`, 32 nibbles of `ip6.arpa`)
/// stands for; `None` for other names, partial reverse names included.
pub fn reverse_address(name: &str) -> Option<IpAddr> {
    if let Some(rest) = name.strip_suffix(".in-addr.arpa") {
        let octets: Vec<u8> = rest.split('.').map(|o| o.parse().ok()).collect::<Option<_>>()?;
        let [d, c, b, a] = octets.as_slice() else { return None };
        return Some(IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)));
    }
    let rest = name.strip_suffix(".ip6.arpa")?;
    let nibbles: Vec<u8> = rest
        .split('.')
        .map(|n| u8::from_str_radix(n, 16).ok().filter(|_| n.len() == 1))
        .collect::<Option<_>>()?;
    if nibbles.len() != 32 {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, pair) in nibbles.rchunks(2).enumerate() {
        bytes[i] = (pair[1] << 4) | pair[0];
    }
    Some(IpAddr::V6(Ipv6Addr::from(bytes)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::records::{Port, ServiceRecord, SliceRecord};

    const ZONE: &str = "cluster.local";

    fn cluster() -> Records {
        let mut r = Records::default();
        let port = |name: &str, port| Port { name: name.into(), protocol: "tcp".into(), port };
        r.put_service(
            ("default".into(), "web".into()),
            ServiceRecord {
                kind: ServiceKind::ClusterIp(vec!["10.43.0.20".parse().unwrap()]),
                ports: vec![port("http", 80), port("metrics", 9090)],
            },
        );
        r.put_service(
            ("default".into(), "db".into()),
            ServiceRecord { kind: ServiceKind::Headless, ports: vec![port("pg", 5432)] },
        );
        r.put_slice(
            ("default".into(), "db-x1".into()),
            SliceRecord {
                service: ("default".into(), "db".into()),
                endpoints: vec![
                    Endpoint {
                        addresses: vec!["10.42.0.5".parse().unwrap()],
                        hostname: Some("db-0".into()),
                        ready: true,
                    },
                    Endpoint {
                        addresses: vec!["10.42.0.6".parse().unwrap()],
                        hostname: None,
                        ready: true,
                    },
                    Endpoint {
                        addresses: vec!["10.42.0.7".parse().unwrap()],
                        hostname: Some("db-2".into()),
                        ready: false,
                    },
                ],
                ports: vec![port("pg", 5432)],
            },
        );
        r.put_service(
            ("default".into(), "search".into()),
            ServiceRecord {
                kind: ServiceKind::ExternalName("www.example.com".into()),
                ports: vec![],
            },
        );
        r
    }

    fn ask(name: &str, qtype: QueryType) -> Outcome {
        answer(&cluster(), ZONE, name, qtype)
    }

    fn data(outcome: Outcome) -> Vec<Data> {
        match outcome {
            Outcome::Found { answers, .. } => answers.into_iter().map(|r| r.data).collect(),
            other => panic!("expected records, got {other:?}"),
        }
    }

    fn a(ip: &str) -> Data {
        Data::A(ip.parse().unwrap())
    }

    #[test]
    fn a_cluster_ip_service_answers_its_address() {
        assert_eq!(data(ask("web.default.svc.cluster.local", QueryType::A)), vec![a("10.43.0.20")]);
        assert_eq!(ask("web.default.svc.cluster.local", QueryType::Aaaa), Outcome::NoData);
        assert_eq!(ask("nope.default.svc.cluster.local", QueryType::A), Outcome::NxDomain);
        assert_eq!(ask("web.other.svc.cluster.local", QueryType::A), Outcome::NxDomain);
    }

    #[test]
    fn a_headless_service_answers_its_ready_endpoints() {
        assert_eq!(
            data(ask("db.default.svc.cluster.local", QueryType::A)),
            vec![a("10.42.0.5"), a("10.42.0.6")]
        );
        assert_eq!(
            data(ask("db-0.db.default.svc.cluster.local", QueryType::A)),
            vec![a("10.42.0.5")]
        );
        assert_eq!(
            data(ask("10-42-0-6.db.default.svc.cluster.local", QueryType::A)),
            vec![a("10.42.0.6")]
        );
        // Not ready: no name.
        assert_eq!(ask("db-2.db.default.svc.cluster.local", QueryType::A), Outcome::NxDomain);
        // Endpoints of a service with a cluster IP have no names.
        assert_eq!(ask("x.web.default.svc.cluster.local", QueryType::A), Outcome::NxDomain);
    }

    #[test]
    fn srv_records_name_ports() {
        let Outcome::Found { answers, additionals } =
            ask("_http._tcp.web.default.svc.cluster.local", QueryType::Srv)
        else {
            panic!("no SRV")
        };
        assert_eq!(
            answers[0].data,
            Data::Srv {
                priority: 0,
                weight: 100,
                port: 80,
                target: "web.default.svc.cluster.local".into()
            }
        );
        assert_eq!(answers.len(), 1);
        assert_eq!(additionals[0].data, a("10.43.0.20"));
        assert_eq!(
            ask("_nope._tcp.web.default.svc.cluster.local", QueryType::Srv),
            Outcome::NxDomain
        );
        assert_eq!(
            ask("_http._udp.web.default.svc.cluster.local", QueryType::Srv),
            Outcome::NxDomain
        );
        assert_eq!(data(ask("web.default.svc.cluster.local", QueryType::Srv)).len(), 2);
        let targets: Vec<_> = data(ask("_pg._tcp.db.default.svc.cluster.local", QueryType::Srv))
            .into_iter()
            .map(|d| match d {
                Data::Srv { target, port: 5432, .. } => target,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            targets,
            vec!["db-0.db.default.svc.cluster.local", "10-42-0-6.db.default.svc.cluster.local"]
        );
    }

    #[test]
    fn external_names_are_aliases() {
        assert_eq!(
            data(ask("search.default.svc.cluster.local", QueryType::A)),
            vec![Data::Cname("www.example.com".into())]
        );
    }

    #[test]
    fn reverse_names_of_services_and_endpoints() {
        assert_eq!(
            data(ask("20.0.43.10.in-addr.arpa", QueryType::Ptr)),
            vec![Data::Ptr("web.default.svc.cluster.local".into())]
        );
        assert_eq!(
            data(ask("5.0.42.10.in-addr.arpa", QueryType::Ptr)),
            vec![Data::Ptr("db-0.db.default.svc.cluster.local".into())]
        );
        assert_eq!(ask("9.9.9.9.in-addr.arpa", QueryType::Ptr), Outcome::Elsewhere);
        assert_eq!(
            reverse_address(
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa"
            ),
            Some("fd00::1".parse().unwrap())
        );
        assert_eq!(reverse_address("0.42.10.in-addr.arpa"), None);
    }

    #[test]
    fn pod_names_spell_their_address() {
        assert_eq!(
            data(ask("10-42-0-9.default.pod.cluster.local", QueryType::A)),
            vec![a("10.42.0.9")]
        );
        assert_eq!(ask("bad.default.pod.cluster.local", QueryType::A), Outcome::NxDomain);
    }

    #[test]
    fn the_zone_and_what_lies_outside() {
        assert_eq!(data(ask("cluster.local", QueryType::Soa)), vec![Data::Soa]);
        assert_eq!(ask("cluster.local", QueryType::A), Outcome::NoData);
        assert_eq!(ask("default.svc.cluster.local", QueryType::A), Outcome::NoData);
        assert_eq!(ask("nobody.svc.cluster.local", QueryType::A), Outcome::NxDomain);
        assert_eq!(ask("what.cluster.local", QueryType::A), Outcome::NxDomain);
        assert_eq!(ask("example.com", QueryType::A), Outcome::Elsewhere);
        assert_eq!(ask("notcluster.local", QueryType::A), Outcome::Elsewhere);
    }
}
