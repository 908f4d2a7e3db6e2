//! DNS messages on the wire (through `hickory-proto`): a request in, the answer's message
//! out, sized for its transport.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_proto::rr::{DNSClass, Name, RData, Record as WireRecord, RecordType};

use crate::answer::{self, Data, Outcome, QueryType, Record};
use crate::records::Records;

pub mod direct;

/// The largest UDP answer sent to a client that announces a larger buffer (the DNS flag day
/// 2020 value, which avoids IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The cluster's zone.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The cluster domain, such as `cluster.local` (lower-case, no final dot).
    pub domain: String,
    /// The TTL of every answer from the zone, in seconds (CoreDNS's default: 5).
    pub ttl: u32,
}

/// What becomes of a request.
#[derive(Debug)]
pub enum Handling {
    /// Answered from the cluster's records (or refused as malformed).
    Answer(Message),
    /// Not a cluster name: to be forwarded upstream.
    Forward(Message),
    /// Not worth an answer (a response, or less than a header).
    Drop,
}

/// Decides what `request` (its bytes) gets, and the largest answer its client takes over
/// UDP (512 bytes, or its EDNS buffer size up to `MAX_UDP_PAYLOAD`).
pub fn handle(records: &Records, zone: &Zone, request: &[u8]) -> (Handling, usize) {
    let message = match Message::from_vec(request) {
        Ok(m) => m,
        Err(_) if request.len() >= 12 && request[2] & 0x80 == 0 => {
            let id = u16::from_be_bytes([request[0], request[1]]);
            let error = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            return (Handling::Answer(error), 512);
        }
        Err(_) => return (Handling::Drop, 512),
    };
    let limit = match &message.edns {
        Some(edns) => usize::from(edns.max_payload().clamp(512, MAX_UDP_PAYLOAD)),
        None => 512,
    };
    (decide(records, zone, message), limit)
}

fn decide(records: &Records, zone: &Zone, message: Message) -> Handling {
    if message.metadata.message_type != MessageType::Query {
        return Handling::Drop;
    }
    let mut response = response_to(&message);
    if message.metadata.op_code != OpCode::Query {
        response.metadata.response_code = ResponseCode::NotImp;
        return Handling::Answer(response);
    }
    let [query] = message.queries.as_slice() else {
        response.metadata.response_code = ResponseCode::FormErr;
        return Handling::Answer(response);
    };
    if query.query_class() != DNSClass::IN {
        return Handling::Forward(message);
    }
    let name = query.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let qtype = match query.query_type() {
        RecordType::A => QueryType::A,
        RecordType::AAAA => QueryType::Aaaa,
        RecordType::SRV => QueryType::Srv,
        RecordType::PTR => QueryType::Ptr,
        RecordType::CNAME => QueryType::Cname,
        RecordType::SOA => QueryType::Soa,
        RecordType::ANY => QueryType::Any,
        _ => QueryType::Other,
    };
    let outcome = answer::answer(records, &zone.domain, &name, qtype);
    response.metadata.authoritative = true;
    match outcome {
        Outcome::Elsewhere => return Handling::Forward(message),
        Outcome::Found { answers, additionals } => {
            response.answers = answers.iter().filter_map(|r| wire_record(zone, r)).collect();
            response.additionals =
                additionals.iter().filter_map(|r| wire_record(zone, r)).collect();
        }
        Outcome::NoData => response.authorities = soa(zone).into_iter().collect(),
        Outcome::NxDomain => {
            response.metadata.response_code = ResponseCode::NXDomain;
            response.authorities = soa(zone).into_iter().collect();
        }
    }
    Handling::Answer(response)
}

/// An empty response to `request`: its id, question and recursion flag, with EDNS when the
/// request had it.
pub fn response_to(request: &Message) -> Message {
    let mut response = Message::response(request.metadata.id, request.metadata.op_code);
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.checking_disabled = request.metadata.checking_disabled;
    response.queries = request.queries.clone();
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        response.set_edns(edns);
    }
    response
}

/// The bytes of `response`, truncated (TC set, records dropped) when longer than `limit`.
pub fn encode(response: &Message, limit: usize) -> Option<Vec<u8>> {
    let bytes = response.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    let mut truncated = response.truncate();
    truncated.metadata.id = response.metadata.id;
    truncated.metadata.message_type = MessageType::Response;
    truncated.to_vec().ok()
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(format!("{text}.")).ok()
}

/// The zone's SOA record (upstream's CoreDNS shape: `ns.dns.ZONE hostmaster.ZONE`).
fn soa(zone: &Zone) -> Option<WireRecord> {
    let apex = name(&zone.domain)?;
    let data = SOA::new(
        name(&format!("ns.dns.{}", zone.domain))?,
        name(&format!("hostmaster.{}", zone.domain))?,
        1,
        7200,
        1800,
        86400,
        zone.ttl,
    );
    Some(WireRecord::from_rdata(apex, zone.ttl, RData::SOA(data)))
}

fn wire_record(zone: &Zone, record: &Record) -> Option<WireRecord> {
    let data = match &record.data {
        Data::A(ip) => RData::A(A(*ip)),
        Data::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        Data::Cname(target) => RData::CNAME(CNAME(name(target)?)),
        Data::Ptr(target) => RData::PTR(PTR(name(target)?)),
        Data::Srv { priority, weight, port, target } => {
            RData::SRV(SRV::new(*priority, *weight, *port, name(target)?))
        }
        Data::Soa => return soa(zone),
    };
    Some(WireRecord::from_rdata(name(&record.name)?, zone.ttl, data))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::records::{Key, ServiceKind, ServiceRecord};
    use hickory_proto::op::Query;

    fn zone() -> Zone {
        Zone { domain: "cluster.local".into(), ttl: 5 }
    }

    fn records() -> Records {
        let mut r = Records::default();
        let key: Key = ("default".into(), "web".into());
        r.put_service(
            key,
            ServiceRecord {
                kind: ServiceKind::ClusterIp(vec!["10.43.0.20".parse().unwrap()]),
                ports: vec![],
            },
        );
        r
    }

    fn query(text: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(text).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    #[test]
    fn cluster_names_are_answered_with_the_zone_ttl() {
        let Handling::Answer(m) =
            handle(&records(), &zone(), &query("Web.Default.svc.cluster.local.", RecordType::A)).0
        else {
            panic!("not answered")
        };
        assert_eq!(m.metadata.id, 7);
        assert!(m.metadata.authoritative && m.metadata.recursion_available);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 5);
        assert_eq!(m.queries[0].name().to_ascii(), "Web.Default.svc.cluster.local.");
    }

    #[test]
    fn unknown_names_get_nxdomain_with_the_soa() {
        let Handling::Answer(m) =
            handle(&records(), &zone(), &query("x.default.svc.cluster.local.", RecordType::A)).0
        else {
            panic!("not answered")
        };
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn other_names_are_forwarded_and_garbage_refused() {
        assert!(matches!(
            handle(&records(), &zone(), &query("example.com.", RecordType::A)).0,
            Handling::Forward(_)
        ));
        assert!(matches!(handle(&records(), &zone(), &[0, 9, 1]).0, Handling::Drop));
        // A header that promises a question the bytes do not hold.
        let garbage = [0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff];
        let (Handling::Answer(m), 512) = handle(&records(), &zone(), &garbage) else {
            panic!("malformed requests are answered")
        };
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(m.metadata.id, 9);
    }

    #[test]
    fn long_udp_answers_are_truncated() {
        let mut m = Message::response(3, OpCode::Query);
        for i in 0..100u8 {
            m.add_answer(WireRecord::from_rdata(
                Name::from_ascii("a.b.").unwrap(),
                5,
                RData::A(A::new(10, 0, 0, i)),
            ));
        }
        let bytes = encode(&m, 512).unwrap();
        let back = Message::from_vec(&bytes).unwrap();
        assert!(back.metadata.truncation);
        assert!(back.answers.is_empty());
        assert_eq!(back.metadata.id, 3);
    }
}
