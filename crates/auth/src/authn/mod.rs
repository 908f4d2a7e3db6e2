//! Authentication decisions: who a credential names, without I/O.
//!
//! - [`token_file`]: static bearer tokens from upstream's CSV token file.
//! - [`service_account`]: service-account JWTs (sign, verify, bound objects).
//! - [`bootstrap`]: bootstrap tokens against their Secret.
//! - [`impersonation`]: `Impersonate-*` headers to checks and the impersonated user.
//!
//! The API server reads files, keys, caches and clocks, and passes them in.

pub mod bootstrap;
pub mod impersonation;
pub mod service_account;
pub mod token_file;

use crate::{AUTHENTICATED, UserInfo};

/// `user` with `system:authenticated` among its groups (every authenticated user is in it,
/// as upstream's group adder makes them).
pub fn authenticated(mut user: UserInfo) -> UserInfo {
    if !user.in_group(AUTHENTICATED) {
        user.groups.push(AUTHENTICATED.to_string());
    }
    user
}
