//! Client certificates: who a client is, from its verified client certificate (CN is the user
//! name, O the groups), as upstream's x509 authenticator reads it.

use krust_auth::UserInfo;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The user a (verified) client certificate names, in `system:authenticated`; `None` when it
/// names nobody.
pub fn user_from_certificate(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups: Vec<String> =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some(krust_auth::authn::authenticated(UserInfo { name, groups, ..UserInfo::default() }))
}
