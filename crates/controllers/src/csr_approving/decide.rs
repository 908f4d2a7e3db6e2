//! Whether a node agent's serving certificate request is approved: it must come from the node
//! it names (`CN=system:node:NAME`, `O=system:nodes`, made by `system:node:NAME` in
//! `system:nodes`), ask only for serving usages, and name only the node's own names and
//! addresses (those in its `status.addresses`) that no other node reports. Upstream leaves
//! these requests to an approver outside the cluster (kubelet-csr-approver); krust approves
//! them so that agents serve certificates the API server can check.
//!
//! A node writes its own addresses, so this approval is only as strong as what such a
//! certificate can do: the `kubernetes.io/kubelet-serving` signer has a CA of its own, which
//! only the API server trusts, and only towards agents. A certificate for another node's name
//! or address is never approved, so a node cannot stand in for another. A request that is not
//! approved is left pending, for a person to approve or deny, as upstream's approvers leave
//! what they do not recognise.

use std::net::IpAddr;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;

/// The signer whose requests are approved here.
pub const SIGNER: &str = "kubernetes.io/kubelet-serving";

/// The usages a serving certificate may ask for; `server auth` is required.
const USAGES: [&str; 3] = ["digital signature", "key encipherment", "server auth"];

/// What a request asks for, read from its PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requested {
    /// The subject's common names.
    pub common_names: Vec<String>,
    /// The subject's organizations.
    pub organizations: Vec<String>,
    /// DNS names among the alternative names.
    pub dns_names: Vec<String>,
    /// IP addresses among the alternative names.
    pub ip_addresses: Vec<IpAddr>,
    /// How many other alternative names (emails, URIs) it has.
    pub other_names: usize,
}

/// What is done with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approved.
    Approve,
    /// Not this approver's: another signer's, or decided already.
    NotOurs,
    /// Left pending, for this reason.
    Leave(String),
}

/// Why a request's PEM cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// It is not PEM.
    #[error("not PEM")]
    Pem(#[source] x509_parser::nom::Err<x509_parser::error::PEMError>),
    /// Its PEM block is no certificate request.
    #[error("not a certificate request")]
    Request(#[source] x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// A name in its subject is not text.
    #[error("a name of its subject is not text")]
    Text(#[source] x509_parser::error::X509Error),
}

/// Reads a request's PEM (`spec.request`).
pub fn read(pem: &[u8]) -> Result<Requested, ReadError> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(ReadError::Pem)?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(ReadError::Request)?;
    let info = &csr.certification_request_info;
    let text = |v: Result<&str, _>| v.map(str::to_string).map_err(ReadError::Text);
    let mut requested = Requested {
        common_names: info
            .subject
            .iter_common_name()
            .map(|c| text(c.as_str()))
            .collect::<Result<_, _>>()?,
        organizations: info
            .subject
            .iter_organization()
            .map(|o| text(o.as_str()))
            .collect::<Result<_, _>>()?,
        ..Requested::default()
    };
    for extension in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(names) = extension {
            for name in &names.general_names {
                match name {
                    GeneralName::DNSName(dns) => requested.dns_names.push((*dns).to_string()),
                    GeneralName::IPAddress(bytes) => match ip_of(bytes) {
                        Some(ip) => requested.ip_addresses.push(ip),
                        None => requested.other_names += 1,
                    },
                    _ => requested.other_names += 1,
                }
            }
        }
    }
    Ok(requested)
}

/// A node's addresses, as (type, address).
fn addresses_of(node: &Node) -> impl Iterator<Item = (&str, &str)> {
    node.status
        .iter()
        .flat_map(|s| s.addresses.iter().flatten())
        .map(|a| (a.type_.as_str(), a.address.as_str()))
}

fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// Whether a request is approved, denied or failed already, or issued.
pub fn is_decided(csr: &CertificateSigningRequest) -> bool {
    csr.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .flatten()
            .any(|c| matches!(c.type_.as_str(), "Approved" | "Denied" | "Failed"))
            || s.certificate.as_ref().is_some_and(|c| !c.0.is_empty())
    })
}

/// The node a request is about, by the name its requester gives (`None` when the requester
/// is no node, or the request is not this approver's).
pub fn node_of(csr: &CertificateSigningRequest) -> Option<&str> {
    (csr.spec.signer_name == SIGNER)
        .then(|| csr.spec.username.as_deref()?.strip_prefix("system:node:"))
        .flatten()
        .filter(|name| !name.is_empty())
}

/// What to do with `csr`, given what it asks for (`requested`, `None` when unreadable), the
/// node it names (`node`, `None` when there is none) and the cluster's other nodes.
pub fn decide<'a>(
    csr: &CertificateSigningRequest,
    requested: Option<&Requested>,
    node: Option<&Node>,
    others: impl IntoIterator<Item = &'a Node> + Clone,
) -> Decision {
    if csr.spec.signer_name != SIGNER || is_decided(csr) {
        return Decision::NotOurs;
    }
    let leave = |why: &str| Decision::Leave(why.to_string());
    let Some(name) = node_of(csr) else {
        return leave("its requester is not a node");
    };
    if !csr.spec.groups.iter().flatten().any(|g| g == "system:nodes") {
        return leave("its requester is not in system:nodes");
    }
    let usages = csr.spec.usages.as_deref().unwrap_or_default();
    if usages.iter().any(|u| !USAGES.contains(&u.as_str()))
        || !usages.iter().any(|u| u == "server auth")
    {
        return leave("it asks for other usages than a serving certificate's");
    }
    let Some(requested) = requested else {
        return leave("its request cannot be read");
    };
    let common_name = format!("system:node:{name}");
    if requested.common_names != [common_name] || requested.organizations != ["system:nodes"] {
        return leave(
            "its subject is not its requester's node (CN=system:node:NAME, O=system:nodes)",
        );
    }
    if requested.other_names > 0 {
        return leave("it names something else than DNS names and IP addresses");
    }
    if requested.dns_names.is_empty() && requested.ip_addresses.is_empty() {
        return leave("it names no DNS name or IP address");
    }
    let Some(node) = node else {
        return leave("its node is not registered yet");
    };
    let dns_types = ["Hostname", "InternalDNS", "ExternalDNS"];
    let ip_types = ["InternalIP", "ExternalIP"];
    let reports_name = |node: &Node, dns: &str| {
        addresses_of(node).any(|(t, a)| dns_types.contains(&t) && a.eq_ignore_ascii_case(dns))
    };
    let reports_ip = |node: &Node, ip: IpAddr| {
        addresses_of(node).any(|(t, a)| {
            ip_types.contains(&t) && a.parse::<IpAddr>().is_ok_and(|a| a.to_canonical() == ip)
        })
    };
    for dns in &requested.dns_names {
        if !reports_name(node, dns) {
            return Decision::Leave(format!(
                "the DNS name {dns} is not among the node's addresses"
            ));
        }
        if others.clone().into_iter().any(|other| reports_name(other, dns)) {
            return Decision::Leave(format!("another node reports the DNS name {dns}"));
        }
    }
    for ip in requested.ip_addresses.iter().map(|ip| ip.to_canonical()) {
        if ip.is_unspecified() || ip.is_multicast() {
            return Decision::Leave(format!("the IP address {ip} is no node's"));
        }
        if !reports_ip(node, ip) {
            return Decision::Leave(format!(
                "the IP address {ip} is not among the node's addresses"
            ));
        }
        if others.clone().into_iter().any(|other| reports_ip(other, ip)) {
            return Decision::Leave(format!("another node reports the IP address {ip}"));
        }
    }
    Decision::Approve
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::certificates::v1::{
        CertificateSigningRequestCondition, CertificateSigningRequestSpec,
        CertificateSigningRequestStatus,
    };
    use k8s_openapi::api::core::v1::{NodeAddress, NodeStatus};

    fn csr(user: &str) -> CertificateSigningRequest {
        CertificateSigningRequest {
            spec: CertificateSigningRequestSpec {
                signer_name: SIGNER.into(),
                username: Some(user.into()),
                groups: Some(vec!["system:nodes".into(), "system:authenticated".into()]),
                usages: Some(USAGES.map(String::from).into()),
                ..CertificateSigningRequestSpec::default()
            },
            ..CertificateSigningRequest::default()
        }
    }

    fn requested(node: &str, dns: &[&str], ips: &[&str]) -> Requested {
        Requested {
            common_names: vec![format!("system:node:{node}")],
            organizations: vec!["system:nodes".into()],
            dns_names: dns.iter().map(|d| d.to_string()).collect(),
            ip_addresses: ips.iter().map(|ip| ip.parse().expect("an address")).collect(),
            other_names: 0,
        }
    }

    fn node(addresses: &[(&str, &str)]) -> Node {
        Node {
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .iter()
                        .map(|(t, a)| NodeAddress { type_: t.to_string(), address: a.to_string() })
                        .collect(),
                ),
                ..NodeStatus::default()
            }),
            ..Node::default()
        }
    }

    #[test]
    fn a_node_asking_for_its_own_names_is_approved_and_others_are_left_pending() {
        let a = node(&[("InternalIP", "10.0.0.7"), ("Hostname", "a")]);
        let own = requested("a", &["a"], &["10.0.0.7"]);
        let leaves = |d: Decision| matches!(d, Decision::Leave(_));
        assert_eq!(decide(&csr("system:node:a"), Some(&own), Some(&a), []), Decision::Approve);
        // Another node's name, an address it does not have, no node yet, no node at all.
        assert!(leaves(decide(&csr("system:node:b"), Some(&own), Some(&a), [])));
        let elsewhere = requested("a", &["a"], &["10.0.0.8"]);
        assert!(leaves(decide(&csr("system:node:a"), Some(&elsewhere), Some(&a), [])));
        let foreign_name = requested("a", &["kubernetes.default"], &[]);
        assert!(leaves(decide(&csr("system:node:a"), Some(&foreign_name), Some(&a), [])));
        assert!(leaves(decide(&csr("system:node:a"), Some(&own), None, [])));
        assert!(leaves(decide(&csr("alice"), Some(&own), Some(&a), [])));
        // A client usage, or a subject outside system:nodes.
        let mut client = csr("system:node:a");
        client.spec.usages = Some(vec!["client auth".into()]);
        assert!(leaves(decide(&client, Some(&own), Some(&a), [])));
        let masters = Requested { organizations: vec!["system:masters".into()], ..own.clone() };
        assert!(leaves(decide(&csr("system:node:a"), Some(&masters), Some(&a), [])));
        let email = Requested { other_names: 1, ..own.clone() };
        assert!(leaves(decide(&csr("system:node:a"), Some(&email), Some(&a), [])));
    }

    #[test]
    fn a_name_or_address_another_node_reports_is_never_approved() {
        // Node a wrote node b's address and name into its own status.
        let a = node(&[
            ("InternalIP", "10.0.0.7"),
            ("InternalIP", "10.0.0.9"),
            ("Hostname", "a"),
            ("Hostname", "b"),
        ]);
        let b = node(&[("InternalIP", "10.0.0.9"), ("Hostname", "b")]);
        let leaves = |d: Decision| matches!(d, Decision::Leave(_));
        let own = requested("a", &["a"], &["10.0.0.7"]);
        assert_eq!(decide(&csr("system:node:a"), Some(&own), Some(&a), [&b]), Decision::Approve);
        let b_address = requested("a", &["a"], &["10.0.0.9"]);
        assert!(leaves(decide(&csr("system:node:a"), Some(&b_address), Some(&a), [&b])));
        let b_name = requested("a", &["B"], &[]);
        assert!(leaves(decide(&csr("system:node:a"), Some(&b_name), Some(&a), [&b])));
        let nowhere = requested("a", &["a"], &["0.0.0.0"]);
        let everywhere = node(&[("InternalIP", "0.0.0.0"), ("Hostname", "a")]);
        assert!(leaves(decide(&csr("system:node:a"), Some(&nowhere), Some(&everywhere), [])));
    }

    #[test]
    fn addresses_compare_as_addresses_not_as_text() {
        let v6 =
            node(&[("InternalIP", "fd00:0:0::7"), ("InternalIP", "10.0.0.7"), ("Hostname", "a")]);
        let written_otherwise = requested("a", &["a"], &["fd00::7", "::ffff:10.0.0.7"]);
        assert_eq!(
            decide(&csr("system:node:a"), Some(&written_otherwise), Some(&v6), []),
            Decision::Approve
        );
    }

    #[test]
    fn requests_of_other_signers_or_already_decided_are_not_ours() {
        let a = node(&[("Hostname", "a")]);
        let own = requested("a", &["a"], &[]);
        let mut client = csr("system:node:a");
        client.spec.signer_name = "kubernetes.io/kube-apiserver-client-kubelet".into();
        assert_eq!(decide(&client, Some(&own), Some(&a), []), Decision::NotOurs);
        let mut denied = csr("system:node:a");
        denied.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Denied".into(),
                status: "True".into(),
                ..CertificateSigningRequestCondition::default()
            }]),
            certificate: None,
        });
        assert_eq!(decide(&denied, Some(&own), Some(&a), []), Decision::NotOurs);
    }

    #[test]
    fn a_request_is_read_from_its_pem() {
        let pem = request_pem();
        let requested = read(pem.as_bytes()).expect("a readable request");
        assert_eq!(requested.common_names, ["system:node:a"]);
        assert_eq!(requested.organizations, ["system:nodes"]);
        assert_eq!(requested.dns_names, ["a"]);
        assert_eq!(requested.ip_addresses, ["10.0.0.7".parse::<IpAddr>().expect("an address")]);
        assert!(read(b"not a request").is_err());
    }

    /// A request for `CN=system:node:a, O=system:nodes` with the names `a` and `10.0.0.7`
    /// (made with openssl).
    fn request_pem() -> String {
        include_str!("testdata/node-a.csr").to_string()
    }
}
