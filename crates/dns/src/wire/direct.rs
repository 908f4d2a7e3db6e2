//! The common request answered without building messages: a standard query with one
//! question of class IN about a cluster name, read straight from the request's bytes, its
//! answer written straight into the response's bytes (what `wire::handle` and
//! `wire::encode` would send, without their allocations). Anything else returns `false` and
//! goes the general way: several questions, a compressed or unusual question name, EDNS
//! other than version 0, another additional record, a name to forward, an answer longer
//! than the client takes.

use crate::answer::{self, Data, Outcome, QueryType, Record};
use crate::records::Records;

use super::{MAX_UDP_PAYLOAD, Zone};

/// The longest name in text, without the final dot (RFC 1035: 255 bytes on the wire).
const MAX_NAME: usize = 253;
/// The header's length.
const HEADER: usize = 12;
/// The pointer to the question's name, which starts right after the header.
const QUESTION_NAME: [u8; 2] = [0xc0, HEADER as u8];

const CLASS_IN: u16 = 1;
const TYPE_OPT: u16 = 41;

/// A request read far enough to answer it.
struct Question<'a> {
    request: &'a [u8],
    /// Where the question section ends in `request`.
    question_end: usize,
    /// The name in text: lower-case, labels joined by dots, no final dot.
    name: [u8; MAX_NAME],
    name_len: usize,
    qtype: QueryType,
    /// Whether the request had an OPT record (the answer then has one).
    edns: bool,
    /// The largest UDP answer the client takes.
    udp_limit: usize,
}

impl Question<'_> {
    fn name(&self) -> &str {
        // Only ASCII letters, digits, '-' and '_' were copied in.
        std::str::from_utf8(&self.name[..self.name_len]).unwrap_or_default()
    }

    fn flags(&self) -> u16 {
        u16::from_be_bytes([self.request[2], self.request[3]])
    }
}

/// Writes into `out` the answer to `request` from the cluster's records, when it is the
/// common kind (see the module's comment), and says whether it did. `tcp`: the answer is
/// not bounded by the client's UDP size.
pub fn answer(
    records: &Records,
    zone: &Zone,
    request: &[u8],
    tcp: bool,
    out: &mut Vec<u8>,
) -> bool {
    let Some(question) = read(request) else { return false };
    let outcome = answer::answer(records, &zone.domain, question.name(), question.qtype);
    out.clear();
    if !write(&question, zone, &outcome, out) {
        return false;
    }
    out.len() <= if tcp { usize::from(u16::MAX) } else { question.udp_limit }
}

/// Reads a standard query with one plain question and at most an OPT record.
fn read(request: &[u8]) -> Option<Question<'_>> {
    let header = request.get(..HEADER)?;
    let flags = u16::from_be_bytes([header[2], header[3]]);
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    // A query (QR clear), opcode QUERY, one question, no answers or authorities.
    if flags & 0xf800 != 0 || count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let mut name = [0u8; MAX_NAME];
    let mut name_len = 0;
    let mut at = HEADER;
    loop {
        let len = usize::from(*request.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers and extended label types go the general way.
        if len > 63 {
            return None;
        }
        let label = request.get(at..at + len)?;
        let dot = usize::from(name_len > 0);
        if name_len + dot + len > MAX_NAME
            || !label.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return None;
        }
        if dot == 1 {
            name[name_len] = b'.';
        }
        for (slot, byte) in name[name_len + dot..].iter_mut().zip(label) {
            *slot = byte.to_ascii_lowercase();
        }
        name_len += dot + len;
        at += len;
    }
    let fixed = request.get(at..at + 4)?;
    let qtype = u16::from_be_bytes([fixed[0], fixed[1]]);
    if name_len == 0 || u16::from_be_bytes([fixed[2], fixed[3]]) != CLASS_IN {
        return None;
    }
    let question_end = at + 4;
    let mut edns = false;
    let mut udp_limit = 512;
    let mut end = question_end;
    if count(10) == 1 {
        // The OPT record: the root name, its type, the client's UDP size as its class, then
        // extended rcode, version and flags, and options.
        let opt = request.get(end..end + 11)?;
        if opt[0] != 0 || u16::from_be_bytes([opt[1], opt[2]]) != TYPE_OPT || opt[6] != 0 {
            return None;
        }
        let payload = u16::from_be_bytes([opt[3], opt[4]]);
        udp_limit = usize::from(payload.clamp(512, MAX_UDP_PAYLOAD));
        end += 11 + usize::from(u16::from_be_bytes([opt[9], opt[10]]));
        edns = true;
    }
    if end != request.len() {
        return None;
    }
    let qtype = match qtype {
        1 => QueryType::A,
        28 => QueryType::Aaaa,
        33 => QueryType::Srv,
        12 => QueryType::Ptr,
        5 => QueryType::Cname,
        6 => QueryType::Soa,
        255 => QueryType::Any,
        _ => QueryType::Other,
    };
    Some(Question { request, question_end, name, name_len, qtype, edns, udp_limit })
}

/// Writes the response: header, the question as asked, the records, the OPT record.
fn write(question: &Question<'_>, zone: &Zone, outcome: &Outcome, out: &mut Vec<u8>) -> bool {
    let none: &[Record] = &[];
    let (rcode, answers, authority, additionals) = match outcome {
        Outcome::Elsewhere => return false,
        Outcome::Found { answers, additionals } => (0, &answers[..], false, &additionals[..]),
        Outcome::NoData => (0, none, true, none),
        Outcome::NxDomain => (3, none, true, none),
    };
    let counts =
        [1, answers.len(), usize::from(authority), additionals.len() + usize::from(question.edns)];
    // QR, AA and RA set; RD and CD as asked.
    let flags = 0x8000 | 0x0400 | 0x0080 | (question.flags() & 0x0110) | rcode;
    out.extend_from_slice(&question.request[..2]);
    out.extend_from_slice(&flags.to_be_bytes());
    for count in counts {
        let Ok(count) = u16::try_from(count) else { return false };
        out.extend_from_slice(&count.to_be_bytes());
    }
    out.extend_from_slice(&question.request[HEADER..question.question_end]);
    for record in answers {
        if !write_record(question, zone, record, out) {
            return false;
        }
    }
    if authority && !write_soa(zone, out) {
        return false;
    }
    for record in additionals {
        if !write_record(question, zone, record, out) {
            return false;
        }
    }
    if question.edns {
        out.push(0);
        out.extend_from_slice(&TYPE_OPT.to_be_bytes());
        out.extend_from_slice(&MAX_UDP_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0; 6]);
    }
    true
}

/// Writes one record of the zone's TTL; its owner is a pointer when it is the question's
/// name.
fn write_record(question: &Question<'_>, zone: &Zone, record: &Record, out: &mut Vec<u8>) -> bool {
    if record.data == Data::Soa {
        // The apex's, asked for.
        return write_soa(zone, out);
    }
    if record.name == question.name() {
        out.extend_from_slice(&QUESTION_NAME);
    } else if !write_name(&record.name, out) {
        return false;
    }
    let rtype: u16 = match &record.data {
        Data::A(_) => 1,
        Data::Aaaa(_) => 28,
        Data::Cname(_) => 5,
        Data::Ptr(_) => 12,
        Data::Srv { .. } => 33,
        Data::Soa => return false,
    };
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&zone.ttl.to_be_bytes());
    let length_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let written = match &record.data {
        Data::A(ip) => {
            out.extend_from_slice(&ip.octets());
            true
        }
        Data::Aaaa(ip) => {
            out.extend_from_slice(&ip.octets());
            true
        }
        Data::Cname(target) | Data::Ptr(target) => write_name(target, out),
        Data::Srv { priority, weight, port, target } => {
            for n in [priority, weight, port] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            write_name(target, out)
        }
        Data::Soa => false,
    };
    set_length(out, length_at) && written
}

/// The zone's SOA record (CoreDNS's shape: `ns.dns.ZONE hostmaster.ZONE`, serial 1, then
/// 7200, 1800, 86400 and the zone's TTL), owned by the zone's apex.
fn write_soa(zone: &Zone, out: &mut Vec<u8>) -> bool {
    if !write_name(&zone.domain, out) {
        return false;
    }
    out.extend_from_slice(&6u16.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    out.extend_from_slice(&zone.ttl.to_be_bytes());
    let length_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let names = write_labels(&["ns", "dns", &zone.domain], out)
        && write_labels(&["hostmaster", &zone.domain], out);
    for n in [1, 7200, 1800, 86400, zone.ttl] {
        out.extend_from_slice(&u32::to_be_bytes(n));
    }
    names && set_length(out, length_at)
}

/// Writes `name` (dotted, no final dot) as labels and the root; `false` when it is not a
/// valid name.
fn write_name(name: &str, out: &mut Vec<u8>) -> bool {
    write_labels(&[name], out)
}

/// Writes the names of `parts` one after the other as one name, then the root.
fn write_labels(parts: &[&str], out: &mut Vec<u8>) -> bool {
    let start = out.len();
    for label in parts.iter().flat_map(|part| part.split('.')) {
        let Ok(len) = u8::try_from(label.len()) else { return false };
        if len == 0 || len > 63 {
            return false;
        }
        out.push(len);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out.len() - start <= 255
}

/// Fills in the record data length whose two bytes are at `at`.
fn set_length(out: &mut [u8], at: usize) -> bool {
    let Ok(len) = u16::try_from(out.len() - at - 2) else { return false };
    out[at..at + 2].copy_from_slice(&len.to_be_bytes());
    true
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::net::IpAddr;

    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::records::{Endpoint, Key, Port, ServiceKind, ServiceRecord, SliceRecord};
    use crate::wire::{self, Handling};

    fn zone() -> Zone {
        Zone { domain: "cluster.local".into(), ttl: 5 }
    }

    fn records() -> Records {
        let mut r = Records::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let port = |name: &str, port| Port { name: name.into(), protocol: "tcp".into(), port };
        r.put_service(
            ("default".into(), "web".into()),
            ServiceRecord {
                kind: ServiceKind::ClusterIp(vec![ip("10.43.0.20"), ip("fd00::20")]),
                ports: vec![port("http", 80), port("metrics", 9090)],
            },
        );
        r.put_service(
            ("default".into(), "alias".into()),
            ServiceRecord { kind: ServiceKind::ExternalName("example.com".into()), ports: vec![] },
        );
        r.put_service(
            ("db".into(), "pg".into()),
            ServiceRecord { kind: ServiceKind::Headless, ports: vec![port("", 5432)] },
        );
        let key: Key = ("db".into(), "pg-abcde".into());
        r.put_slice(
            key,
            SliceRecord {
                service: ("db".into(), "pg".into()),
                endpoints: vec![
                    Endpoint {
                        addresses: vec![ip("10.42.0.7")],
                        hostname: Some("pg-0".into()),
                        ready: true,
                    },
                    Endpoint { addresses: vec![ip("10.42.0.8")], hostname: None, ready: true },
                ],
                ports: vec![port("", 5432)],
            },
        );
        r
    }

    fn request(name: &str, qtype: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().unwrap()
    }

    /// What the general way sends for `request`.
    fn general(request: &[u8], tcp: bool) -> Option<Message> {
        let (Handling::Answer(response), limit) = wire::handle(&records(), &zone(), request) else {
            return None;
        };
        let limit = if tcp { usize::from(u16::MAX) } else { limit };
        Some(Message::from_vec(&wire::encode(&response, limit)?).unwrap())
    }

    fn direct(request: &[u8], tcp: bool) -> Option<Message> {
        let mut out = Vec::new();
        answer(&records(), &zone(), request, tcp, &mut out)
            .then(|| Message::from_vec(&out).unwrap())
    }

    #[test]
    fn direct_answers_are_the_general_ones() {
        let cases = [
            ("web.default.svc.cluster.local.", RecordType::A),
            ("WEB.Default.svc.cluster.local.", RecordType::AAAA),
            ("web.default.svc.cluster.local.", RecordType::ANY),
            ("web.default.svc.cluster.local.", RecordType::SRV),
            ("web.default.svc.cluster.local.", RecordType::MX),
            ("_http._tcp.web.default.svc.cluster.local.", RecordType::SRV),
            ("alias.default.svc.cluster.local.", RecordType::A),
            ("pg.db.svc.cluster.local.", RecordType::A),
            ("pg.db.svc.cluster.local.", RecordType::SRV),
            ("pg-0.pg.db.svc.cluster.local.", RecordType::A),
            ("10-42-0-9.db.pod.cluster.local.", RecordType::A),
            ("20.0.43.10.in-addr.arpa.", RecordType::PTR),
            ("7.0.42.10.in-addr.arpa.", RecordType::PTR),
            ("nothing.default.svc.cluster.local.", RecordType::A),
            ("default.svc.cluster.local.", RecordType::A),
            ("cluster.local.", RecordType::SOA),
            ("cluster.local.", RecordType::NS),
        ];
        for (name, qtype) in cases {
            for edns in [None, Some(512), Some(4096)] {
                for tcp in [false, true] {
                    let request = request(name, qtype, edns);
                    let want = general(&request, tcp).unwrap();
                    let got = direct(&request, tcp)
                        .unwrap_or_else(|| panic!("{name} {qtype} not answered directly"));
                    // The direct way points at the question for an owner name: the same
                    // name, in the case it was asked.
                    assert_eq!(
                        got.to_string().to_ascii_lowercase(),
                        want.to_string().to_ascii_lowercase(),
                        "{name} {qtype} {edns:?}"
                    );
                    assert_eq!(got.metadata, want.metadata, "{name} {qtype}");
                    assert_eq!(got.edns, want.edns, "{name} {qtype}");
                }
            }
        }
    }

    #[test]
    fn the_owner_name_points_at_the_question() {
        let request = request("web.default.svc.cluster.local.", RecordType::A, None);
        let mut out = Vec::new();
        assert!(answer(&records(), &zone(), &request, false, &mut out));
        // Header, the question as asked, then the answer: a pointer to offset 12, A, IN,
        // TTL 5, 4 bytes of address.
        let answer_at = request.len();
        assert_eq!(&out[HEADER..answer_at], &request[HEADER..]);
        assert_eq!(&out[answer_at..], &[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 10, 43, 0, 20]);
    }

    #[test]
    fn unusual_requests_go_the_general_way() {
        let mut out = Vec::new();
        let r = records();
        let mut not_direct =
            |request: &[u8]| assert!(!answer(&r, &zone(), request, false, &mut out));
        // A name to forward.
        not_direct(&request("example.com.", RecordType::A, None));
        // A label the general way escapes.
        let mut space = request("wexb.default.svc.cluster.local.", RecordType::A, None);
        space[HEADER + 3] = b' ';
        not_direct(&space);
        // Not a query; truncated; trailing bytes; another class.
        let mut response = request("web.default.svc.cluster.local.", RecordType::A, None);
        response[2] |= 0x80;
        not_direct(&response);
        let whole = request("web.default.svc.cluster.local.", RecordType::A, Some(1232));
        for cut in 0..whole.len() {
            not_direct(&whole[..cut]);
        }
        let mut longer = whole.clone();
        longer.push(0);
        not_direct(&longer);
        let mut chaos = request("web.default.svc.cluster.local.", RecordType::A, None);
        let class_at = chaos.len() - 1;
        chaos[class_at] = 3;
        not_direct(&chaos);
        // EDNS version 1.
        let mut version = whole.clone();
        let version_at = version.len() - 5;
        version[version_at] = 1;
        not_direct(&version);
    }

    #[test]
    fn answers_over_the_udp_size_go_the_general_way() {
        let mut r = Records::default();
        let ips = (0..100).map(|i| IpAddr::from([10, 43, 1, i])).collect();
        r.put_service(
            ("default".into(), "big".into()),
            ServiceRecord { kind: ServiceKind::ClusterIp(ips), ports: vec![] },
        );
        let request = request("big.default.svc.cluster.local.", RecordType::A, None);
        let mut out = Vec::new();
        assert!(!answer(&r, &zone(), &request, false, &mut out));
        assert!(answer(&r, &zone(), &request, true, &mut out));
        assert_eq!(Message::from_vec(&out).unwrap().answers.len(), 100);
    }
}
