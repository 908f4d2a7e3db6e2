//! ClusterTrustBundleAttest, as upstream's `plugin/pkg/admission/certificates/ctbattest`:
//! creating or updating a ClusterTrustBundle that names a `spec.signerName` needs the `attest`
//! verb on that signer (`signers` of `certificates.k8s.io`, named for the signer or
//! `<domain>/*`; see [`signer_authorization`](crate::signer_authorization)). Updates that only
//! change what the garbage collector writes (owner references, finalizers; managed fields and
//! the resourceVersion, which the write path sets) are not checked, as upstream's
//! `IsOnlyMutatingGCFields`.
//!
//! krust does not serve `clustertrustbundles` today (upstream serves them only behind the
//! `ClusterTrustBundle` feature gate, off by default in 1.33), so no write reaches this plugin:
//! it is a no-op until the resource is added to the catalog, and then works as it stands. The
//! server's own writes (no requester) are not checked.

use std::sync::Arc;

use k8s_openapi::api::certificates::v1beta1::ClusterTrustBundle;
use krust_api::StatusError;
use krust_auth::Authorizer;
use serde_json::Value;

use crate::{
    Attributes, ClusterView, Operation, Plugin, Validating, forbidden, signer_authorization, typed,
};

/// Upstream's name.
pub const NAME: &str = "ClusterTrustBundleAttest";

/// The plugin, with the authorizer it asks.
pub struct ClusterTrustBundleAttest {
    authorizer: Arc<dyn Authorizer>,
}

impl ClusterTrustBundleAttest {
    /// The plugin asking `authorizer` (the server's, `system:masters` included).
    pub fn new(authorizer: Arc<dyn Authorizer>) -> Self {
        Self { authorizer }
    }
}

impl Plugin for ClusterTrustBundleAttest {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// Whether `new` differs from `old` only in what the garbage collector (and the write path)
/// sets: owner references, finalizers, managed fields, resourceVersion.
pub fn only_gc_fields_change(new: &Value, old: &Value) -> bool {
    let mut copied = new.clone();
    let Some(meta) = copied.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    for field in ["ownerReferences", "finalizers", "managedFields", "resourceVersion", "selfLink"] {
        match old.get("metadata").and_then(|m| m.get(field)) {
            Some(value) => meta.insert(field.to_string(), value.clone()),
            None => meta.remove(field),
        };
    }
    copied == *old
}

impl Validating for ClusterTrustBundleAttest {
    fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        _cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if !matches!(attributes.operation, Operation::Create | Operation::Update)
            || attributes.group != "certificates.k8s.io"
            || attributes.resource != "clustertrustbundles"
        {
            return Ok(());
        }
        let Some(user) = attributes.user else { return Ok(()) };
        let Some(bundle) = object.and_then(typed::<ClusterTrustBundle>) else {
            return Err(forbidden(
                attributes,
                object,
                "expected type ClusterTrustBundle, got: <nil>",
            ));
        };
        let signer = bundle.spec.signer_name.unwrap_or_default();
        if signer.is_empty() {
            return Ok(());
        }
        if attributes.operation == Operation::Update
            && let (Some(new), Some(old)) = (object, old)
            && only_gc_fields_change(new, old)
        {
            return Ok(());
        }
        if signer_authorization::authorized(self.authorizer.as_ref(), user, "attest", &signer) {
            return Ok(());
        }
        Err(forbidden(
            attributes,
            object,
            &format!("user not permitted to attest for signerName {signer:?}"),
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

    fn bundle(signer: Option<&str>, trust: &str) -> Value {
        let mut spec = json!({"trustBundle": trust});
        if let Some(signer) = signer {
            spec["signerName"] = json!(signer);
        }
        json!({"metadata": {"name": "example.com:s:b", "resourceVersion": "5"}, "spec": spec})
    }

    #[test]
    fn bundles_of_a_signer_need_attest_on_it() {
        let jane = UserInfo { name: "jane".into(), ..UserInfo::default() };
        let plugin = ClusterTrustBundleAttest::new(Arc::new(Grants::new(&[(
            "jane",
            "attest",
            "example.com/*",
        )])));
        let mut owned = bundle(Some("other.io/s"), "pem");
        owned["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "x", "name": "o", "uid": "u"}]);
        owned["metadata"]["resourceVersion"] = json!("6");
        let cases: &[(&str, Operation, Value, Option<Value>, Option<&str>)] = &[
            (
                "a bundle without a signer passes",
                Operation::Create,
                bundle(None, "pem"),
                None,
                None,
            ),
            (
                "a granted signer passes",
                Operation::Create,
                bundle(Some("example.com/s"), "pem"),
                None,
                None,
            ),
            (
                "another signer is refused",
                Operation::Create,
                bundle(Some("other.io/s"), "pem"),
                None,
                Some(
                    r#"clustertrustbundles.certificates.k8s.io "example.com:s:b" is forbidden: user not permitted to attest for signerName "other.io/s""#,
                ),
            ),
            (
                "changing the bundle of another signer is refused",
                Operation::Update,
                bundle(Some("other.io/s"), "new pem"),
                Some(bundle(Some("other.io/s"), "pem")),
                Some(
                    r#"clustertrustbundles.certificates.k8s.io "example.com:s:b" is forbidden: user not permitted to attest for signerName "other.io/s""#,
                ),
            ),
            (
                "an update of owner references only passes",
                Operation::Update,
                owned,
                Some(bundle(Some("other.io/s"), "pem")),
                None,
            ),
        ];
        for (case, operation, new, old, refusal) in cases {
            let mut attributes = create("certificates.k8s.io", "clustertrustbundles", "");
            attributes.operation = *operation;
            attributes.user = Some(&jane);
            let got = plugin.validate(&attributes, Some(new), old.as_ref(), &Objects::default());
            match refusal {
                None => assert!(got.is_ok(), "{case}: {got:?}"),
                Some(message) => assert_eq!(got.unwrap_err().message, *message, "{case}"),
            }
        }
    }
}
