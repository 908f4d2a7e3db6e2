//! Authentication at the edge: who sends a request, from its client certificate, its bearer
//! token (static token file, service-account JWT, bootstrap token) or nobody (anonymous), then
//! who it acts as (impersonation), and whether it may do what it asks (the authorizer on
//! [`ApiServer`]). The decisions are `krust_auth`'s; this module reads the files, keys, caches
//! and clock they need.
//!
//! Flow, as upstream's filter chain: [`authenticate`] (a bad token is 401, never anonymous) →
//! [`authorize::impersonate`] (each `impersonate` check through the authorizer) →
//! [`authorize::authorize`] (`system:masters` bypasses the authorizer; a denial is 403).
//! Service accounts, pods, secrets and bootstrap token secrets are read from the watch cache,
//! so that a token bound to a deleted pod stops working without a store read per request.
//!
//! Also the create-only virtual resources of authentication ([`endpoints`]): TokenReview and
//! SelfSubjectReview; and the handler of TokenRequest (`serviceaccounts/token`,
//! [`token_request`]), which it adds to the registry ([`Authentication::install`]).

pub mod authorize;
pub mod endpoints;
pub mod token_request;
pub mod tokens;
pub mod x509;

use http::HeaderMap;
use krust_api::StatusError;
use krust_auth::authn::service_account::{self, BoundKind, ObjectKind, TokenError};
use krust_auth::authn::token_file::TokenFile;
use krust_auth::authn::{self as auth, bootstrap};
use krust_auth::{ANONYMOUS, UNAUTHENTICATED, UserInfo};
use serde_json::Value;

use crate::ApiServer;
pub use tokens::ServiceAccountTokens;

/// How requests are authenticated.
pub struct Authentication {
    /// Static tokens (`--token-auth-file`), if any.
    pub token_file: Option<TokenFile>,
    /// The service-account token key, issuer and audiences.
    pub tokens: std::sync::Arc<ServiceAccountTokens>,
    /// Whether requests without credentials run as `system:anonymous` (else 401).
    pub anonymous: bool,
}

impl Authentication {
    /// Adds what authentication serves to the registry: the handler of TokenRequest, which
    /// signs with its key.
    pub fn install(&self, registry: &mut crate::registry::Registry) {
        use crate::registry::storage::Handler;
        let handler = token_request::TokenRequest { tokens: std::sync::Arc::clone(&self.tokens) };
        let storage = registry.storage_mut("", "serviceaccounts");
        storage.handlers.push(("token", Handler::Create(std::sync::Arc::new(handler))));
    }
}

/// The identity of a request: its client certificate's user, else its bearer token's, else
/// `system:anonymous` when anonymous requests are enabled. A bearer token that does not
/// authenticate is 401, as is a request without credentials when anonymous requests are off.
pub fn authenticate(
    api: &ApiServer,
    certificate_user: Option<&UserInfo>,
    headers: &HeaderMap,
) -> Result<UserInfo, StatusError> {
    if let Some(user) = certificate_user {
        return Ok(user.clone());
    }
    if let Some(token) = bearer_token(headers) {
        return match authenticate_token(api, token, None) {
            Ok((user, _)) => Ok(user),
            Err(reason) => {
                tracing::debug!(%reason, "bearer token refused");
                Err(StatusError::unauthorized())
            }
        };
    }
    if api.authn.anonymous {
        return Ok(anonymous());
    }
    Err(StatusError::unauthorized())
}

/// `system:anonymous` in `system:unauthenticated`.
pub fn anonymous() -> UserInfo {
    UserInfo { name: ANONYMOUS.into(), groups: vec![UNAUTHENTICATED.into()], ..UserInfo::default() }
}

/// The token of an `Authorization: Bearer <token>` header (other schemes: none).
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?.trim();
    let mut parts = value.splitn(3, ' ');
    let (scheme, token) = (parts.next()?, parts.next()?);
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The user a bearer token authenticates, in `system:authenticated`, and the audiences it is
/// valid for: among `audiences` when given (TokenReview), else among the API server's. The
/// error says why no authenticator took it.
pub fn authenticate_token(
    api: &ApiServer,
    token: &str,
    audiences: Option<&[String]>,
) -> Result<(UserInfo, Vec<String>), String> {
    let tokens = &api.authn.tokens;
    let wanted = audiences.unwrap_or(&tokens.api_audiences);
    // Tokens that know no audience are for the API server's audiences only.
    let agnostic = || -> Result<Vec<String>, String> {
        let common: Vec<String> =
            wanted.iter().filter(|a| tokens.api_audiences.contains(a)).cloned().collect();
        if common.is_empty() {
            return Err("token audiences are not the API server's".into());
        }
        Ok(common)
    };
    if let Some(user) = api.authn.token_file.as_ref().and_then(|f| f.authenticate(token)) {
        return Ok((auth::authenticated(user), agnostic()?));
    }
    match tokens.verify(token, wanted, now()) {
        Ok(claims) => {
            service_account::check_bound_objects(&claims, |kind, ns, name| {
                live_uid(api, kind, ns, name)
            })
            .map_err(|e| e.to_string())?;
            let audiences = claims.aud.iter().filter(|a| wanted.contains(a)).cloned().collect();
            return Ok((auth::authenticated(service_account::user_info(&claims)), audiences));
        }
        Err(TokenError::OtherIssuer(_) | TokenError::Malformed(_)) => {}
        Err(e) => return Err(e.to_string()),
    }
    if let Some(name) = bootstrap::secret_name(token) {
        let secret = cached(api, "secrets", Some(bootstrap::NAMESPACE), &name, Value::clone)
            .ok_or("invalid bearer token")?;
        let user = bootstrap::authenticate(token, &secret, now()).map_err(|e| e.to_string())?;
        return Ok((auth::authenticated(user), agnostic()?));
    }
    Err("invalid bearer token".into())
}

/// The time now, Unix seconds.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The uid of a live service account or bound object, from the watch cache.
fn live_uid(api: &ApiServer, kind: ObjectKind, namespace: &str, name: &str) -> Option<String> {
    let (plural, namespace) = match kind {
        ObjectKind::ServiceAccount => ("serviceaccounts", Some(namespace)),
        ObjectKind::Bound(BoundKind::Pod) => ("pods", Some(namespace)),
        ObjectKind::Bound(BoundKind::Secret) => ("secrets", Some(namespace)),
        ObjectKind::Bound(BoundKind::Node) => ("nodes", None),
    };
    /// Only the uid of an object: read without decoding the rest (this runs for every
    /// request a service account makes).
    #[derive(serde::Deserialize)]
    struct Uid {
        metadata: Meta,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        uid: String,
    }
    let info = api.registry.catalog().lookup("", "v1", plural)?;
    let cache = api.registry.cache().resource(&info.storage_prefix())?;
    let (snapshot, _) = cache.snapshot();
    let object = snapshot.get(&info.storage_key(namespace, name))?;
    object.decode_as::<Uid>().ok().map(|o| o.metadata.uid)
}

/// `read` of a core v1 object in the watch cache, `None` when it is not there.
fn cached<R>(
    api: &ApiServer,
    plural: &str,
    namespace: Option<&str>,
    name: &str,
    read: impl FnOnce(&Value) -> R,
) -> Option<R> {
    let info = api.registry.catalog().lookup("", "v1", plural)?;
    let cache = api.registry.cache().resource(&info.storage_prefix())?;
    let (snapshot, _) = cache.snapshot();
    snapshot.get(&info.storage_key(namespace, name)).map(|o| read(&o.value()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_authorization_headers_carry_a_token() {
        let cases = [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("  Bearer abc  ", Some("abc")),
            ("Bearer ", None),
            ("Basic dXNlcjpwYXNz", None),
            ("Bearer", None),
        ];
        for (header, expected) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, header.parse().expect("header value"));
            assert_eq!(bearer_token(&headers), expected, "{header:?}");
        }
    }
}
