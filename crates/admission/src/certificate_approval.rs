//! CertificateApproval, as upstream's `plugin/pkg/admission/certificates/approval`: approving
//! or denying a CertificateSigningRequest (an update of `certificatesigningrequests/approval`)
//! needs, beyond `update` on that subresource, the `approve` verb on the request's signer
//! (`signers` of `certificates.k8s.io`, named for the signer or `<domain>/*`; see
//! [`signer_authorization`](crate::signer_authorization)). The signer is read from the stored
//! request, so an approval cannot smuggle in another one.
//!
//! The server's own writes (no requester) are not checked.

use std::sync::Arc;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use krust_api::StatusError;
use krust_auth::Authorizer;
use serde_json::Value;

use crate::{
    Attributes, ClusterView, Operation, Plugin, Validating, forbidden, signer_authorization, typed,
};

/// Upstream's name.
pub const NAME: &str = "CertificateApproval";

/// The plugin, with the authorizer it asks.
pub struct CertificateApproval {
    authorizer: Arc<dyn Authorizer>,
}

impl CertificateApproval {
    /// The plugin asking `authorizer` (the server's, `system:masters` included).
    pub fn new(authorizer: Arc<dyn Authorizer>) -> Self {
        Self { authorizer }
    }
}

impl Plugin for CertificateApproval {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl Validating for CertificateApproval {
    fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        _cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if attributes.operation != Operation::Update
            || attributes.group != "certificates.k8s.io"
            || attributes.resource != "certificatesigningrequests"
            || attributes.subresource != "approval"
        {
            return Ok(());
        }
        let Some(user) = attributes.user else { return Ok(()) };
        let Some(csr) = old.and_then(typed::<CertificateSigningRequest>) else {
            return Err(forbidden(
                attributes,
                object,
                "expected type CertificateSigningRequest, got: <nil>",
            ));
        };
        let signer = csr.spec.signer_name;
        if signer_authorization::authorized(self.authorizer.as_ref(), user, "approve", &signer) {
            return Ok(());
        }
        Err(forbidden(
            attributes,
            object,
            &format!("user not permitted to approve requests with signerName {signer:?}"),
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use krust_auth::UserInfo;
    use serde_json::json;

    use super::*;
    use crate::testing::{Grants, Objects, create};

    fn csr(signer: &str) -> Value {
        json!({"metadata": {"name": "req"}, "spec": {"request": "", "signerName": signer,
            "usages": ["client auth"]}, "status": {}})
    }

    #[test]
    fn approving_needs_approve_on_the_signer() {
        let jane = UserInfo { name: "jane".into(), ..UserInfo::default() };
        let plugin = CertificateApproval::new(Arc::new(Grants::new(&[
            ("jane", "approve", "example.com/mine"),
            ("jane", "approve", "corp.example/*"),
        ])));
        let approved = |signer: &str| {
            let mut c = csr(signer);
            c["status"]["conditions"] = json!([{"type": "Approved", "status": "True"}]);
            c
        };
        let cases: &[(&str, Option<&UserInfo>, &str, &str, Option<&str>)] = &[
            ("the named signer", Some(&jane), "approval", "example.com/mine", None),
            ("the domain wildcard", Some(&jane), "approval", "corp.example/any", None),
            (
                "another signer is refused",
                Some(&jane),
                "approval",
                "kubernetes.io/kube-apiserver-client",
                Some(
                    r#"certificatesigningrequests.certificates.k8s.io "req" is forbidden: user not permitted to approve requests with signerName "kubernetes.io/kube-apiserver-client""#,
                ),
            ),
            (
                "the server's own writes pass",
                None,
                "approval",
                "kubernetes.io/kube-apiserver-client",
                None,
            ),
            (
                "other subresources pass",
                Some(&jane),
                "status",
                "kubernetes.io/kube-apiserver-client",
                None,
            ),
        ];
        for (case, user, subresource, signer, refusal) in cases {
            let mut attributes = create("certificates.k8s.io", "certificatesigningrequests", "");
            attributes.operation = Operation::Update;
            attributes.subresource = subresource;
            attributes.name = "req";
            attributes.user = *user;
            let got = plugin.validate(
                &attributes,
                Some(&approved(signer)),
                Some(&csr(signer)),
                &Objects::default(),
            );
            match refusal {
                None => assert!(got.is_ok(), "{case}: {got:?}"),
                Some(message) => {
                    let e = got.unwrap_err();
                    assert_eq!((e.code(), e.message.as_str()), (403, *message), "{case}");
                }
            }
        }
    }

    #[test]
    fn the_stored_signer_is_checked_not_the_new_one() {
        let jane = UserInfo { name: "jane".into(), ..UserInfo::default() };
        let plugin = CertificateApproval::new(Arc::new(Grants::new(&[(
            "jane",
            "approve",
            "example.com/mine",
        )])));
        let mut attributes = create("certificates.k8s.io", "certificatesigningrequests", "");
        attributes.operation = Operation::Update;
        attributes.subresource = "approval";
        attributes.user = Some(&jane);
        let got = plugin.validate(
            &attributes,
            Some(&csr("example.com/mine")),
            Some(&csr("example.com/theirs")),
            &Objects::default(),
        );
        assert!(got.unwrap_err().message.ends_with(r#"signerName "example.com/theirs""#));
    }
}
