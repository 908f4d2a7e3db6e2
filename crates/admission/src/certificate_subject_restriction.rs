//! CertificateSubjectRestriction, as upstream's
//! `plugin/pkg/admission/certificates/subjectrestriction`: a CertificateSigningRequest created
//! for the `kubernetes.io/kube-apiserver-client` signer may not ask for the `system:masters`
//! group (an organization of its subject): such a certificate would bypass authorization. A
//! request for that signer that does not parse is refused too.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use krust_api::StatusError;
use serde_json::Value;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

use crate::{Attributes, ClusterView, Operation, Plugin, Validating, forbidden, is, typed};

/// Upstream's name.
pub const NAME: &str = "CertificateSubjectRestriction";

/// The signer of client certificates for the API server.
pub const KUBE_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";

/// The plugin.
pub struct CertificateSubjectRestriction;

impl Plugin for CertificateSubjectRestriction {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// Why a request does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a PEM block of type `CERTIFICATE REQUEST`.
    #[error("PEM block type must be CERTIFICATE REQUEST")]
    NotPem,
    /// The block's DER is not a PKCS#10 request.
    #[error("{0}")]
    Der(String),
}

/// The organizations of the subject of a PEM-encoded PKCS#10 request, as upstream's
/// `ParseCSR` reads them.
pub fn organizations(pem: &[u8]) -> Result<Vec<String>, ParseError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| ParseError::NotPem)?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(ParseError::NotPem);
    }
    let (_, request) = X509CertificationRequest::from_der(&block.contents)
        .map_err(|e| ParseError::Der(e.to_string()))?;
    Ok(request
        .certification_request_info
        .subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect())
}

impl Validating for CertificateSubjectRestriction {
    fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        _old: Option<&Value>,
        _cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if attributes.operation != Operation::Create
            || !is(attributes, "certificates.k8s.io", "certificatesigningrequests")
        {
            return Ok(());
        }
        let Some(csr) = object.and_then(typed::<CertificateSigningRequest>) else {
            return Err(forbidden(
                attributes,
                object,
                "expected type CertificateSigningRequest, got: <nil>",
            ));
        };
        if csr.spec.signer_name != KUBE_APISERVER_CLIENT {
            return Ok(());
        }
        let groups = organizations(&csr.spec.request.0)
            .map_err(|e| forbidden(attributes, object, &format!("failed to parse CSR: {e}")))?;
        if groups.iter().any(|g| g == krust_auth::MASTERS) {
            return Err(forbidden(
                attributes,
                object,
                &format!(
                    "use of {KUBE_APISERVER_CLIENT} signer with system:masters group is not allowed"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use base64::Engine;
    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, create};

    /// `openssl req -new -subj /CN=eve/O=system:masters/O=dev` (P-256).
    const MASTERS_REQUEST: &str = "-----BEGIN CERTIFICATE REQUEST-----
MIHwMIGXAgEAMDUxDDAKBgNVBAMMA2V2ZTEXMBUGA1UECgwOc3lzdGVtOm1hc3Rl
cnMxDDAKBgNVBAoMA2RldjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABEovNZK0
l2/pfFUzXyG0KXluma/QKRiOYAbn7n8b1O3g+lPoQ1ftbcH0pPm4QQAfAKH/ODvm
AlO5PJErUYQprXGgADAKBggqhkjOPQQDAgNIADBFAiEA344B3tsNJtnTUnG1kpA0
LbZB/dMlt0+VIfkOA1iyR4gCIDKK1daY4nuMStTlws644+ZJOefU7fzKgkv3N4QU
KqzN
-----END CERTIFICATE REQUEST-----
";

    fn csr(signer: &str, pem: &str) -> Value {
        let request = base64::engine::general_purpose::STANDARD.encode(pem);
        json!({"metadata": {"name": "req"}, "spec": {"request": request, "signerName": signer,
            "usages": ["client auth"]}})
    }

    #[test]
    fn the_masters_group_is_refused_for_the_client_signer() {
        let cases: &[(&str, Value, Option<&str>)] = &[
            (
                "system:masters for the client signer is refused",
                csr(KUBE_APISERVER_CLIENT, MASTERS_REQUEST),
                Some(
                    r#"certificatesigningrequests.certificates.k8s.io "req" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"#,
                ),
            ),
            ("another signer is not looked at", csr("example.com/s", MASTERS_REQUEST), None),
            (
                "an unparsable request for the client signer is refused",
                csr(KUBE_APISERVER_CLIENT, "not pem"),
                Some(
                    r#"certificatesigningrequests.certificates.k8s.io "req" is forbidden: failed to parse CSR: PEM block type must be CERTIFICATE REQUEST"#,
                ),
            ),
        ];
        for (case, object, refusal) in cases {
            let got = CertificateSubjectRestriction.validate(
                &create("certificates.k8s.io", "certificatesigningrequests", ""),
                Some(object),
                None,
                &Objects::default(),
            );
            match refusal {
                None => assert!(got.is_ok(), "{case}: {got:?}"),
                Some(message) => assert_eq!(got.unwrap_err().message, *message, "{case}"),
            }
        }
    }

    #[test]
    fn organizations_are_read_from_the_subject() {
        assert_eq!(organizations(MASTERS_REQUEST.as_bytes()).unwrap(), ["system:masters", "dev"]);
        let cert = MASTERS_REQUEST.replace("CERTIFICATE REQUEST", "CERTIFICATE");
        assert_eq!(organizations(cert.as_bytes()), Err(ParseError::NotPem));
    }
}
