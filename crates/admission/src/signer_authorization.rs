//! Permission on a signer, as upstream's `certauthorization.IsAuthorizedForSignerName`: shared
//! by CertificateApproval (`approve`), CertificateSigning (`sign`) and
//! ClusterTrustBundleAttest (`attest`).
//!
//! A user may `verb` a signer when the authorizer allows `verb` on the synthetic resource
//! `signers` of `certificates.k8s.io` named for the signer (`example.com/my-signer`), or named
//! for every signer of its domain (`example.com/*`).

use krust_auth::{Authorizer, UserInfo};

/// The API group of the `signers` resource.
pub const GROUP: &str = "certificates.k8s.io";

/// The synthetic resource the permissions name.
pub const RESOURCE: &str = "signers";

/// The authorization attributes of `verb` on the signer named `name`.
pub fn attributes(user: &UserInfo, verb: &str, name: &str) -> krust_auth::Attributes {
    krust_auth::Attributes {
        user: user.clone(),
        verb: verb.to_string(),
        resource_request: true,
        api_group: GROUP.to_string(),
        api_version: "*".to_string(),
        resource: RESOURCE.to_string(),
        name: name.to_string(),
        ..krust_auth::Attributes::default()
    }
}

/// Whether `user` may `verb` the signer `signer_name`: on its own name, or on `<domain>/*`.
pub fn authorized(
    authorizer: &dyn Authorizer,
    user: &UserInfo,
    verb: &str,
    signer_name: &str,
) -> bool {
    if authorizer.authorize(&attributes(user, verb, signer_name)).allowed() {
        return true;
    }
    let domain = signer_name.split_once('/').map_or(signer_name, |(domain, _)| domain);
    authorizer.authorize(&attributes(user, verb, &format!("{domain}/*"))).allowed()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)]

    use super::*;
    use crate::testing::Grants;

    #[test]
    fn the_signer_or_its_whole_domain_is_asked() {
        let user = UserInfo { name: "jane".into(), ..UserInfo::default() };
        let cases: &[(&str, &[(&str, &str, &str)], &str, bool)] = &[
            ("the signer itself", &[("jane", "approve", "example.com/a")], "example.com/a", true),
            ("the domain wildcard", &[("jane", "approve", "example.com/*")], "example.com/a", true),
            ("another signer", &[("jane", "approve", "example.com/b")], "example.com/a", false),
            ("another verb", &[("jane", "sign", "example.com/a")], "example.com/a", false),
            ("another user", &[("joe", "approve", "example.com/a")], "example.com/a", false),
            ("nothing granted", &[], "example.com/a", false),
        ];
        for (case, grants, signer, allowed) in cases {
            assert_eq!(
                authorized(&Grants::new(grants), &user, "approve", signer),
                *allowed,
                "{case}"
            );
        }
    }
}
