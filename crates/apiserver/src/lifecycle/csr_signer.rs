//! The signer of certificate signing requests, as upstream's `csrsigning` controller: each
//! approved, not yet issued CSR for one of the built-in signers is signed by the cluster CA
//! (`<data-dir>/tls/ca.crt` and `ca.key`), or for `kubernetes.io/kubelet-serving` by the agents'
//! CA (`kubelet-ca.crt`, as upstream's `--cluster-signing-kubelet-serving-cert-file`), and its
//! certificate written to `status.certificate`;
//! a request the signer refuses gets a `Failed` condition (`SignerValidationFailure`).
//!
//! Signers (upstream's rules, [`check`]):
//! - `kubernetes.io/kube-apiserver-client`: client certificates, any subject;
//! - `kubernetes.io/kube-apiserver-client-kubelet`: client certificates of nodes
//!   (`CN=system:node:NAME`, `O=system:nodes`), no alternative names;
//! - `kubernetes.io/kubelet-serving`: serving certificates of nodes, DNS names and IP
//!   addresses only.
//!
//! The certificate lasts `spec.expirationSeconds` (default and at most one year, as
//! `--cluster-signing-duration`) and starts five minutes in the past (clock skew), as
//! upstream's. Runs inside the server and calls the registry in-process; it moves to the
//! controllers crate (as an API client) when that crate exists.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use chrono::Utc;
use rcgen::{
    CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::registry::{Subresource, WriteOptions, timestamp};

/// The signers served here.
pub const SIGNERS: [&str; 3] = [
    "kubernetes.io/kube-apiserver-client",
    "kubernetes.io/kube-apiserver-client-kubelet",
    "kubernetes.io/kubelet-serving",
];

/// The longest a signed certificate lasts, and the default (one year).
pub const MAX_SECONDS: i64 = 365 * 24 * 3600;

/// What the signer reads of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The subject's common name.
    pub common_name: String,
    /// The subject's organizations.
    pub organizations: Vec<String>,
    /// DNS names of the alternative names.
    pub dns_names: Vec<String>,
    /// IP addresses of the alternative names.
    pub ip_addresses: usize,
    /// Other alternative names (emails, URIs).
    pub other_names: usize,
    /// `spec.usages`.
    pub usages: Vec<String>,
}

/// Whether `signer` may sign `request`; the refusal is the `Failed` condition's message.
pub fn check(signer: &str, r: &Request) -> Result<(), String> {
    let allowed: &[&str] = match signer {
        "kubernetes.io/kubelet-serving" => {
            &["digital signature", "key encipherment", "server auth"]
        }
        _ => &["digital signature", "key encipherment", "client auth"],
    };
    let required =
        if signer == "kubernetes.io/kubelet-serving" { "server auth" } else { "client auth" };
    if let Some(bad) = r.usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Err(format!("invalid usage for {signer} certificate: {bad}"));
    }
    if !r.usages.iter().any(|u| u == required) {
        return Err(format!("missing required usage for {signer} certificate: {required}"));
    }
    if signer == "kubernetes.io/kube-apiserver-client" {
        return Ok(());
    }
    if !r.common_name.starts_with("system:node:") || r.common_name.len() == "system:node:".len() {
        return Err(format!(
            "subject common name does not begin with system:node: {:?}",
            r.common_name
        ));
    }
    if r.organizations != ["system:nodes"] {
        return Err(format!("subject organization is not system:nodes: {:?}", r.organizations));
    }
    if signer == "kubernetes.io/kube-apiserver-client-kubelet" {
        if !r.dns_names.is_empty() || r.ip_addresses > 0 || r.other_names > 0 {
            return Err(
                "client certificates of nodes may not have subject alternative names".into()
            );
        }
        return Ok(());
    }
    if r.other_names > 0 {
        return Err("serving certificates of nodes may only have DNS names and IP addresses".into());
    }
    if r.dns_names.is_empty() && r.ip_addresses == 0 {
        return Err("serving certificates of nodes need at least one DNS name or IP address".into());
    }
    Ok(())
}

/// How long a certificate lasts: `expirationSeconds`, else the default, at most the cap.
pub fn duration_seconds(requested: Option<i64>) -> i64 {
    requested.unwrap_or(MAX_SECONDS).clamp(600, MAX_SECONDS)
}

fn has_condition(csr: &Value, t: &str) -> bool {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|c| c.get("type").and_then(Value::as_str) == Some(t)))
}

/// Whether the signer has work on `csr`: approved, neither denied nor failed, not issued,
/// for one of [`SIGNERS`].
pub fn pending(csr: &Value) -> bool {
    let signer = csr.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or_default();
    SIGNERS.contains(&signer)
        && has_condition(csr, "Approved")
        && !has_condition(csr, "Denied")
        && !has_condition(csr, "Failed")
        && csr.pointer("/status/certificate").and_then(Value::as_str).is_none_or(str::is_empty)
}

/// Reads the PEM request of a CSR object and what the signer checks of it.
fn parse(csr: &Value) -> Result<(CertificateSigningRequestParams, Request), String> {
    let encoded = csr.pointer("/spec/request").and_then(Value::as_str).unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| format!("spec.request is not base64: {e}"))?;
    let pem = String::from_utf8(pem).map_err(|_| "spec.request is not PEM".to_string())?;
    let params = CertificateSigningRequestParams::from_pem(&pem)
        .map_err(|e| format!("unable to parse csr: {e}"))?;
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("unable to parse csr: {e}"))?;
    let (_, parsed) = <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&block.contents)
        .map_err(|e| format!("unable to parse csr: {e}"))?;
    let subject = &parsed.certification_request_info.subject;
    let strings = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.filter_map(|a| a.as_str().ok().map(str::to_string)).collect::<Vec<_>>()
    };
    let mut request = Request {
        common_name: strings(&mut subject.iter_common_name())
            .into_iter()
            .next()
            .unwrap_or_default(),
        organizations: strings(&mut subject.iter_organization()),
        usages: csr
            .pointer("/spec/usages")
            .and_then(Value::as_array)
            .map(|u| u.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        ..Request::default()
    };
    for san in &params.params.subject_alt_names {
        match san {
            SanType::DnsName(name) => request.dns_names.push(name.as_str().to_string()),
            SanType::IpAddress(_) => request.ip_addresses += 1,
            _ => request.other_names += 1,
        }
    }
    Ok((params, request))
}

/// Signs `csr` with `issuer`: the certificate's PEM, or why the signer refuses.
pub fn sign(csr: &Value, issuer: &Issuer<'_, KeyPair>, now: i64) -> Result<String, String> {
    let signer = csr.pointer("/spec/signerName").and_then(Value::as_str).unwrap_or_default();
    let (mut params, request) = parse(csr)?;
    check(signer, &request)?;
    let seconds = duration_seconds(csr.pointer("/spec/expirationSeconds").and_then(Value::as_i64));
    let time = |secs: i64| {
        x509_parser::time::ASN1Time::from_timestamp(secs)
            .map(|t| t.to_datetime())
            .map_err(|e| format!("invalid time: {e}"))
    };
    let p = &mut params.params;
    p.not_before = time(now - 300)?;
    p.not_after = time(now + seconds)?;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = Vec::new();
    p.extended_key_usages = Vec::new();
    for usage in &request.usages {
        match usage.as_str() {
            "digital signature" => p.key_usages.push(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => p.key_usages.push(KeyUsagePurpose::KeyEncipherment),
            "client auth" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => p.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth),
            _ => {}
        }
    }
    p.use_authority_key_identifier_extension = true;
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| "no randomness for a serial number".to_string())?;
    serial[0] &= 0x7f;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let cert = params.signed_by(issuer).map_err(|e| format!("unable to sign: {e}"))?;
    Ok(cert.pem())
}

/// Signs approved requests as they appear, until the server stops.
pub async fn run(api: Arc<ApiServer>, data_dir: PathBuf) {
    let issuer = |stem| crate::pki::issuer_of(&data_dir, stem).map(|(_, issuer)| issuer);
    let (cluster, agents) = match (issuer("ca"), issuer(crate::pki::KUBELET_CA)) {
        (Ok(cluster), Ok(agents)) => (cluster, agents),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = ?e, "cannot read the signers' CAs; the CSR signer is off");
            return;
        }
    };
    let Some(info) =
        api.registry.catalog().lookup("certificates.k8s.io", "v1", "certificatesigningrequests")
    else {
        return;
    };
    let Some(cache) = api.registry.cache().resource(&info.storage_prefix()) else {
        return;
    };
    let mut revision = api.registry.cache().subscribe_revision();
    let mut seen = None;
    loop {
        let (snapshot, changed) = cache.snapshot();
        if seen != Some(changed) {
            seen = Some(changed);
            let work: Vec<Value> = snapshot
                .range(cache.prefix(), None)
                .map(|o| o.value())
                .filter(pending)
                .filter_map(|o| crate::registry::to_served(&info, o).ok())
                .collect();
            for mut csr in work {
                let name = csr
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let now = timestamp(Utc::now());
                // Agents' serving certificates come from their CA, the rest from the cluster's.
                let serving = csr.pointer("/spec/signerName").and_then(Value::as_str)
                    == Some("kubernetes.io/kubelet-serving");
                let issuer = if serving { &agents } else { &cluster };
                match sign(&csr, issuer, Utc::now().timestamp()) {
                    Ok(pem) => {
                        csr["status"]["certificate"] =
                            json!(base64::engine::general_purpose::STANDARD.encode(pem));
                    }
                    Err(message) => {
                        tracing::info!(csr = %name, %message, "CSR refused by its signer");
                        let failed = json!({"type": "Failed", "status": "True",
                            "reason": "SignerValidationFailure", "message": message,
                            "lastUpdateTime": now, "lastTransitionTime": now});
                        if let Some(conditions) =
                            csr.pointer_mut("/status/conditions").and_then(Value::as_array_mut)
                        {
                            conditions.push(failed);
                        }
                    }
                }
                let written = api
                    .registry
                    .update(&info, None, &name, Subresource::Status, csr, WriteOptions::default())
                    .await;
                match written {
                    Ok(_) => tracing::info!(csr = %name, "CSR signed"),
                    // Changed meanwhile: seen again on the next pass.
                    Err(e) => {
                        tracing::warn!(csr = %name, error = %e.message, "CSR status not written");
                        seen = None;
                    }
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), revision.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cn: &str, o: &[&str], dns: &[&str], usages: &[&str]) -> Request {
        Request {
            common_name: cn.into(),
            organizations: o.iter().map(|s| s.to_string()).collect(),
            dns_names: dns.iter().map(|s| s.to_string()).collect(),
            usages: usages.iter().map(|s| s.to_string()).collect(),
            ..Request::default()
        }
    }

    #[test]
    fn each_signer_signs_only_what_upstreams_does() {
        let client = "kubernetes.io/kube-apiserver-client";
        let kubelet = "kubernetes.io/kube-apiserver-client-kubelet";
        let serving = "kubernetes.io/kubelet-serving";
        let node = "system:node:n1";
        let nodes: &[&str] = &["system:nodes"];
        let cases = [
            ("any client", client, request("jane", &["dev"], &[], &["client auth"]), true),
            (
                "a client without client auth",
                client,
                request("jane", &[], &[], &["digital signature"]),
                false,
            ),
            (
                "a client asking for server auth",
                client,
                request("jane", &[], &[], &["client auth", "server auth"]),
                false,
            ),
            (
                "a node client",
                kubelet,
                request(node, nodes, &[], &["client auth", "digital signature"]),
                true,
            ),
            (
                "a node client not named as a node",
                kubelet,
                request("jane", nodes, &[], &["client auth"]),
                false,
            ),
            (
                "a node client outside system:nodes",
                kubelet,
                request(node, &["dev"], &[], &["client auth"]),
                false,
            ),
            (
                "a node client with names",
                kubelet,
                request(node, nodes, &["n1"], &["client auth"]),
                false,
            ),
            (
                "a node serving certificate",
                serving,
                request(node, nodes, &["n1"], &["server auth", "digital signature"]),
                true,
            ),
            (
                "a serving certificate without names",
                serving,
                request(node, nodes, &[], &["server auth"]),
                false,
            ),
            (
                "a serving certificate for clients",
                serving,
                request(node, nodes, &["n1"], &["client auth"]),
                false,
            ),
        ];
        for (case, signer, request, ok) in cases {
            assert_eq!(
                check(signer, &request).is_ok(),
                ok,
                "{case}: {:?}",
                check(signer, &request)
            );
        }
    }

    #[test]
    fn durations_default_to_a_year_and_are_capped() {
        assert_eq!(duration_seconds(None), MAX_SECONDS);
        assert_eq!(duration_seconds(Some(3600)), 3600);
        assert_eq!(duration_seconds(Some(10 * MAX_SECONDS)), MAX_SECONDS);
    }

    #[test]
    fn pending_requests_are_approved_and_not_issued() {
        let csr = |conditions: Value, cert: &str| {
            json!({"spec": {"signerName": SIGNERS[0]},
            "status": {"conditions": conditions, "certificate": cert}})
        };
        assert!(pending(&csr(json!([{"type": "Approved"}]), "")));
        assert!(!pending(&csr(json!([{"type": "Approved"}]), "Zm9v")));
        assert!(!pending(&csr(json!([]), "")));
        assert!(!pending(&csr(json!([{"type": "Approved"}, {"type": "Failed"}]), "")));
    }
}
