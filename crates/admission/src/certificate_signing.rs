//! CertificateSigning, as upstream's `plugin/pkg/admission/certificates/signing`: an update
//! of `certificatesigningrequests/status` that changes `status.certificate` or
//! `status.conditions` needs the `sign` verb on the request's signer (`signers` of
//! `certificates.k8s.io`, named for the signer or `<domain>/*`; see
//! [`signer_authorization`](crate::signer_authorization)), read from the stored request.
//!
//! The server's own writes (its CSR signer, without a requester) are not checked.

use std::sync::Arc;

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use krust_api::StatusError;
use krust_auth::Authorizer;
use serde_json::Value;

use crate::{
    Attributes, ClusterView, Operation, Plugin, Validating, forbidden, signer_authorization, typed,
};

/// Upstream's name.
pub const NAME: &str = "CertificateSigning";

/// The plugin, with the authorizer it asks.
pub struct CertificateSigning {
    authorizer: Arc<dyn Authorizer>,
}

impl CertificateSigning {
    /// The plugin asking `authorizer` (the server's, `system:masters` included).
    pub fn new(authorizer: Arc<dyn Authorizer>) -> Self {
        Self { authorizer }
    }
}

impl Plugin for CertificateSigning {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl Validating for CertificateSigning {
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
            || attributes.subresource != "status"
        {
            return Ok(());
        }
        let Some(user) = attributes.user else { return Ok(()) };
        let (Some(old_csr), Some(csr)) = (
            old.and_then(typed::<CertificateSigningRequest>),
            object.and_then(typed::<CertificateSigningRequest>),
        ) else {
            return Err(forbidden(
                attributes,
                object,
                "expected type CertificateSigningRequest, got: <nil>",
            ));
        };
        let certificate = |c: &CertificateSigningRequest| {
            c.status.as_ref().and_then(|s| s.certificate.as_ref()).map(|b| b.0.clone())
        };
        let conditions = |c: &CertificateSigningRequest| {
            c.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default()
        };
        if certificate(&old_csr).unwrap_or_default() == certificate(&csr).unwrap_or_default()
            && conditions(&old_csr) == conditions(&csr)
        {
            return Ok(());
        }
        let signer = old_csr.spec.signer_name;
        if signer_authorization::authorized(self.authorizer.as_ref(), user, "sign", &signer) {
            return Ok(());
        }
        Err(forbidden(
            attributes,
            object,
            &format!("user not permitted to sign requests with signerName {signer:?}"),
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

    fn csr(status: Value) -> Value {
        json!({"metadata": {"name": "req"}, "spec": {"request": "", "signerName": "example.com/s"},
            "status": status})
    }

    #[test]
    fn issuing_needs_sign_on_the_signer() {
        let signer = UserInfo { name: "signer".into(), ..UserInfo::default() };
        let jane = UserInfo { name: "jane".into(), ..UserInfo::default() };
        let plugin =
            CertificateSigning::new(Arc::new(Grants::new(&[("signer", "sign", "example.com/s")])));
        let issued = json!({"certificate": "Zm9v"});
        let failed = json!({"conditions": [{"type": "Failed", "status": "True"}]});
        let cases: &[(&str, &UserInfo, Value, Value, Option<&str>)] = &[
            ("the signer may issue", &signer, json!({}), issued.clone(), None),
            (
                "others may not issue",
                &jane,
                json!({}),
                issued.clone(),
                Some(
                    r#"certificatesigningrequests.certificates.k8s.io "req" is forbidden: user not permitted to sign requests with signerName "example.com/s""#,
                ),
            ),
            (
                "others may not add conditions",
                &jane,
                json!({}),
                failed,
                Some(
                    r#"certificatesigningrequests.certificates.k8s.io "req" is forbidden: user not permitted to sign requests with signerName "example.com/s""#,
                ),
            ),
            ("a status write that changes neither passes", &jane, issued.clone(), issued, None),
        ];
        for (case, user, old, new, refusal) in cases {
            let mut attributes = create("certificates.k8s.io", "certificatesigningrequests", "");
            attributes.operation = Operation::Update;
            attributes.subresource = "status";
            attributes.user = Some(*user);
            let got = plugin.validate(
                &attributes,
                Some(&csr(new.clone())),
                Some(&csr(old.clone())),
                &Objects::default(),
            );
            match refusal {
                None => assert!(got.is_ok(), "{case}: {got:?}"),
                Some(message) => assert_eq!(got.unwrap_err().message, *message, "{case}"),
            }
        }
    }

    #[test]
    fn the_servers_own_signer_is_not_checked() {
        let plugin = CertificateSigning::new(Arc::new(Grants::new(&[])));
        let mut attributes = create("certificates.k8s.io", "certificatesigningrequests", "");
        attributes.operation = Operation::Update;
        attributes.subresource = "status";
        let new = csr(json!({"certificate": "Zm9v"}));
        assert!(
            plugin
                .validate(&attributes, Some(&new), Some(&csr(json!({}))), &Objects::default())
                .is_ok()
        );
    }
}
