//! Names outside the cluster: asked of the upstream resolvers (the host's, from its
//! `resolv.conf`), over UDP and over TCP when the answer was truncated, with a cache.
//!
//! The cache holds at most `CACHE_ENTRIES` answers (each its decoded message, a few hundred
//! bytes), for their smallest TTL (at most an hour); hits are sent with the TTLs counted
//! down. Failures and truncated answers are not cached.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::RData;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::wire::{MAX_UDP_PAYLOAD, response_to};

/// The most answers the cache keeps.
pub const CACHE_ENTRIES: usize = 10_000;
/// The longest an answer is kept.
const MAX_TTL: u32 = 3600;
/// How long one upstream gets to answer over UDP.
const UDP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one upstream gets to answer over TCP.
const TCP_TIMEOUT: Duration = Duration::from_secs(4);

/// The upstream resolvers named by a `resolv.conf`'s text, on port 53, leaving out `own`
/// addresses (this server's, which would loop).
pub fn upstreams_from_resolv_conf(text: &str, own: &[IpAddr]) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver")).then(|| words.next()).flatten()
        })
        .filter_map(|word| word.split('%').next()?.parse::<IpAddr>().ok())
        .filter(|ip| !own.contains(ip))
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    name: String,
    qtype: u16,
    qclass: u16,
    dnssec_ok: bool,
    checking_disabled: bool,
}

#[derive(Debug)]
struct Cached {
    response: Message,
    stored: Instant,
    ttl: u32,
}

/// Forwards questions upstream and caches the answers.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Mutex<HashMap<CacheKey, Cached>>,
}

impl Forwarder {
    /// A forwarder to `upstreams`, tried in order.
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Forwarder { upstreams, cache: Mutex::new(HashMap::new()) }
    }

    /// The answer to `request`: from the cache, else from the first upstream that answers;
    /// SERVFAIL when none does.
    pub async fn resolve(&self, request: &Message) -> Message {
        let Some(key) = cache_key(request) else {
            return failure(request, ResponseCode::FormErr);
        };
        if let Some(hit) = self.cached(&key, request) {
            return hit;
        }
        for upstream in &self.upstreams {
            match ask(*upstream, request).await {
                Ok(answer) => {
                    self.store(key, &answer);
                    return reply(request, answer, 0);
                }
                Err(e) => tracing::debug!(%upstream, error = %e, "upstream did not answer"),
            }
        }
        failure(request, ResponseCode::ServFail)
    }

    fn cached(&self, key: &CacheKey, request: &Message) -> Option<Message> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache.get(key)?;
        let age = u32::try_from(entry.stored.elapsed().as_secs()).unwrap_or(u32::MAX);
        (age < entry.ttl).then(|| reply(request, entry.response.clone(), age))
    }

    fn store(&self, key: CacheKey, answer: &Message) {
        let Some(ttl) = cache_ttl(answer) else { return };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, c| c.stored.elapsed().as_secs() < u64::from(c.ttl));
            if cache.len() >= CACHE_ENTRIES
                && let Some(victim) = cache.keys().next().cloned()
            {
                cache.remove(&victim);
            }
        }
        cache.insert(key, Cached { response: answer.clone(), stored: Instant::now(), ttl });
    }
}

fn cache_key(request: &Message) -> Option<CacheKey> {
    let [query] = request.queries.as_slice() else { return None };
    Some(CacheKey {
        name: query.name().to_ascii().to_ascii_lowercase(),
        qtype: u16::from(query.query_type()),
        qclass: u16::from(query.query_class()),
        dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
        checking_disabled: request.metadata.checking_disabled,
    })
}

/// How long an answer may be cached: its smallest TTL (for a denial, the SOA's minimum),
/// or `None` when it must not be.
fn cache_ttl(answer: &Message) -> Option<u32> {
    let code = answer.metadata.response_code;
    if answer.metadata.truncation || !matches!(code, ResponseCode::NoError | ResponseCode::NXDomain)
    {
        return None;
    }
    let mut ttl = MAX_TTL;
    for record in answer.answers.iter().chain(&answer.authorities) {
        ttl = ttl.min(record.ttl);
        if let RData::SOA(soa) = &record.data
            && answer.answers.is_empty()
        {
            ttl = ttl.min(soa.minimum);
        }
    }
    if answer.answers.is_empty() && answer.authorities.is_empty() {
        ttl = 5;
    }
    (ttl > 0).then_some(ttl)
}

/// `answer` sent to the asker of `request`: its id and question (its letter case), TTLs
/// counted down by `age` seconds.
fn reply(request: &Message, mut answer: Message, age: u32) -> Message {
    answer.metadata.id = request.metadata.id;
    answer.metadata.recursion_desired = request.metadata.recursion_desired;
    answer.queries = request.queries.clone();
    for record in
        answer.answers.iter_mut().chain(&mut answer.authorities).chain(&mut answer.additionals)
    {
        record.ttl = record.ttl.saturating_sub(age);
    }
    answer.edns = None;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD);
        answer.set_edns(edns);
    }
    answer
}

fn failure(request: &Message, code: ResponseCode) -> Message {
    let mut response = response_to(request);
    response.metadata.response_code = code;
    response
}

/// The question of `request` put to `upstream` with an id of our own: over UDP, then over
/// TCP when the answer was truncated.
async fn ask(upstream: SocketAddr, request: &Message) -> std::io::Result<Message> {
    let id = (uuid::Uuid::new_v4().as_u128() & 0xffff) as u16;
    let mut question = Message::new(id, MessageType::Query, OpCode::Query);
    question.metadata.recursion_desired = true;
    question.metadata.checking_disabled = request.metadata.checking_disabled;
    question.queries = request.queries.clone();
    let mut edns = Edns::new();
    edns.set_max_payload(MAX_UDP_PAYLOAD);
    edns.flags_mut().dnssec_ok = request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok);
    question.set_edns(edns);
    let bytes = question.to_vec().map_err(std::io::Error::other)?;
    let answer =
        tokio::time::timeout(UDP_TIMEOUT, ask_udp(upstream, &bytes, &question)).await.map_err(
            |_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer over UDP"),
        )??;
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    tokio::time::timeout(TCP_TIMEOUT, ask_tcp(upstream, &bytes, &question))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer over TCP"))?
}

fn answers(question: &Message, answer: &Message) -> bool {
    answer.metadata.id == question.metadata.id
        && answer.metadata.message_type == MessageType::Response
        && answer.queries.len() == question.queries.len()
        && answer.queries.iter().zip(&question.queries).all(|(a, q)| {
            a.name().to_lowercase() == q.name().to_lowercase() && a.query_type() == q.query_type()
        })
}

async fn ask_udp(
    upstream: SocketAddr,
    bytes: &[u8],
    question: &Message,
) -> std::io::Result<Message> {
    let local: SocketAddr = match upstream {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buffer = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buffer).await?;
        // Anything that is not the answer to this question is ignored (a spoofing attempt,
        // or a late answer).
        if let Ok(answer) = Message::from_vec(&buffer[..n])
            && answers(question, &answer)
        {
            return Ok(answer);
        }
    }
}

async fn ask_tcp(
    upstream: SocketAddr,
    bytes: &[u8],
    question: &Message,
) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let length = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut framed = length.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let length = stream.read_u16().await?;
    let mut buffer = vec![0u8; usize::from(length)];
    stream.read_exact(&mut buffer).await?;
    let answer = Message::from_vec(&buffer).map_err(std::io::Error::other)?;
    if !answers(question, &answer) {
        return Err(std::io::Error::other("the upstream answered another question"));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::{A, SOA};
    use hickory_proto::rr::{Name, Record, RecordType};

    #[test]
    fn upstreams_come_from_resolv_conf_without_ourselves() {
        let text = "# generated\nnameserver 10.43.0.10\nnameserver 192.0.2.53\nsearch x\nnameserver fe80::1%eth0\n";
        let own = ["10.43.0.10".parse().unwrap()];
        assert_eq!(
            upstreams_from_resolv_conf(text, &own),
            vec!["192.0.2.53:53".parse().unwrap(), "[fe80::1]:53".parse().unwrap()]
        );
    }

    fn question() -> Message {
        let mut m = Message::new(41, MessageType::Query, OpCode::Query);
        m.add_query(Query::query(Name::from_ascii("Example.COM.").unwrap(), RecordType::A));
        m
    }

    #[test]
    fn answers_are_cached_for_their_smallest_ttl() {
        let mut answer = Message::response(9, OpCode::Query);
        let name = Name::from_ascii("example.com.").unwrap();
        answer.add_answer(Record::from_rdata(name.clone(), 300, RData::A(A::new(192, 0, 2, 1))));
        answer.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A::new(192, 0, 2, 2))));
        assert_eq!(cache_ttl(&answer), Some(60));
        let mut denial = Message::response(9, OpCode::Query);
        denial.metadata.response_code = ResponseCode::NXDomain;
        let soa = SOA::new(name.clone(), name.clone(), 1, 1, 1, 1, 30);
        denial.add_authority(Record::from_rdata(name, 900, RData::SOA(soa)));
        assert_eq!(cache_ttl(&denial), Some(30));
        let mut failed = Message::response(9, OpCode::Query);
        failed.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(cache_ttl(&failed), None);

        let forwarder = Forwarder::new(vec![]);
        let key = cache_key(&question()).unwrap();
        assert_eq!(key.name, "example.com.");
        forwarder.store(key.clone(), &answer);
        let hit = forwarder.cached(&key, &question()).unwrap();
        assert_eq!(hit.metadata.id, 41);
        assert_eq!(hit.queries[0].name().to_ascii(), "Example.COM.");
        assert_eq!(hit.answers.len(), 2);
    }

    #[tokio::test]
    async fn without_upstreams_the_answer_is_servfail() {
        let forwarder = Forwarder::new(vec![]);
        let answer = forwarder.resolve(&question()).await;
        assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(answer.metadata.id, 41);
    }
}
