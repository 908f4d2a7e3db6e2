//! Authentication: who a client is, from its verified client certificate (CN is the user name,
//! O the groups), as upstream's x509 authenticator reads it.

use x509_parser::prelude::{FromDer, X509Certificate};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The user name.
    pub name: String,
    /// The groups.
    pub groups: Vec<String>,
}

/// The user a (verified) client certificate names; `None` when it names nobody.
pub fn user_from_certificate(der: &[u8]) -> Option<User> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let mut groups: Vec<String> =
        subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    groups.push("system:authenticated".into());
    Some(User { name, groups })
}
