//! Bootstrap tokens (`abcdef.0123456789abcdef`), checked against their Secret
//! (`kube-system/bootstrap-token-<id>`, type `bootstrap.kubernetes.io/token`) as upstream's
//! bootstrap token authenticator: the secret matches, the token is not expired and is meant for
//! authentication. The user is `system:bootstrap:<id>` in `system:bootstrappers` and the
//! secret's extra groups.
//!
//! *Invariant*: the caller finds the Secret (by [`secret_name`]) and passes the clock in.

use base64::Engine;
use serde_json::Value;

use crate::UserInfo;

/// The namespace bootstrap token Secrets live in.
pub const NAMESPACE: &str = "kube-system";
/// The type of bootstrap token Secrets.
pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The group every bootstrap token user is in.
pub const GROUP: &str = "system:bootstrappers";
/// The user-name prefix of bootstrap token users.
pub const USER_PREFIX: &str = "system:bootstrap:";

/// Why a bootstrap token does not authenticate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// Not of the form `[a-z0-9]{6}.[a-z0-9]{16}`: not a bootstrap token at all.
    #[error("not a bootstrap token")]
    NotBootstrapToken,
    /// The Secret is of another type, being deleted, or has no data.
    #[error("secret {0} is not a usable bootstrap token secret")]
    UnusableSecret(String),
    /// The token's id or secret does not match the Secret's.
    #[error("the token does not match secret {0}")]
    Mismatch(String),
    /// Past its `expiration` (or the expiration is unreadable).
    #[error("bootstrap token {0} has expired")]
    Expired(String),
    /// `usage-bootstrap-authentication` is not `"true"`.
    #[error("bootstrap token {0} is not usable for authentication")]
    NotForAuthentication(String),
    /// An extra group does not start with `system:bootstrappers:` or has invalid characters.
    #[error("bootstrap token {id} has an invalid extra group {group:?}")]
    InvalidGroup {
        /// The token id.
        id: String,
        /// The group.
        group: String,
    },
}

/// The id and secret of a bootstrap token, when `token` is one.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let valid = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (valid(id, 6) && valid(secret, 16)).then_some((id, secret))
}

/// The name of the Secret of a bootstrap token, when `token` is one.
pub fn secret_name(token: &str) -> Option<String> {
    parse(token).map(|(id, _)| format!("bootstrap-token-{id}"))
}

/// A data member of a Secret, decoded (base64 in `data`, or plain in `stringData`).
fn data(secret: &Value, key: &str) -> Option<String> {
    if let Some(encoded) = secret.pointer(&format!("/data/{key}")).and_then(Value::as_str) {
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
        return String::from_utf8(bytes).ok();
    }
    secret.pointer(&format!("/stringData/{key}")).and_then(Value::as_str).map(str::to_string)
}

/// Compares without an early exit, so that timing does not tell how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn valid_extra_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    !rest.is_empty()
        && rest.len() <= 256
        && rest
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
        && rest.bytes().last().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The user `token` authenticates as, given its Secret (the object named [`secret_name`] in
/// [`NAMESPACE`]) and the time `now` (Unix seconds).
pub fn authenticate(token: &str, secret: &Value, now: i64) -> Result<UserInfo, BootstrapError> {
    let (id, token_secret) = parse(token).ok_or(BootstrapError::NotBootstrapToken)?;
    let name = format!("bootstrap-token-{id}");
    let unusable = || BootstrapError::UnusableSecret(name.clone());
    if secret.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null())
        || secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE)
    {
        return Err(unusable());
    }
    let stored_secret = data(secret, "token-secret").ok_or_else(unusable)?;
    if !constant_time_eq(stored_secret.as_bytes(), token_secret.as_bytes())
        || data(secret, "token-id").as_deref() != Some(id)
    {
        return Err(BootstrapError::Mismatch(name));
    }
    if let Some(expiration) = data(secret, "expiration") {
        let expired = match chrono::DateTime::parse_from_rfc3339(&expiration) {
            Ok(at) => at.timestamp() <= now,
            Err(_) => true,
        };
        if expired {
            return Err(BootstrapError::Expired(id.to_string()));
        }
    }
    if data(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(BootstrapError::NotForAuthentication(id.to_string()));
    }
    let mut groups = vec![GROUP.to_string()];
    if let Some(extra) = data(secret, "auth-extra-groups").filter(|e| !e.is_empty()) {
        for group in extra.split(',') {
            let group = group.trim();
            if !valid_extra_group(group) {
                return Err(BootstrapError::InvalidGroup {
                    id: id.to_string(),
                    group: group.to_string(),
                });
            }
            groups.push(group.to_string());
        }
    }
    groups.sort();
    groups.dedup();
    Ok(UserInfo { name: format!("{USER_PREFIX}{id}"), groups, ..UserInfo::default() })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const TOKEN: &str = "abcdef.0123456789abcdef";
    const NOW: i64 = 1_700_000_000; // 2023-11-14T22:13:20Z

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn secret(extra: &[(&str, &str)]) -> Value {
        let mut data = json!({
            "token-id": b64("abcdef"),
            "token-secret": b64("0123456789abcdef"),
            "usage-bootstrap-authentication": b64("true"),
        });
        for (k, v) in extra {
            data[*k] = json!(b64(v));
        }
        json!({
            "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
            "type": SECRET_TYPE,
            "data": data,
        })
    }

    #[test]
    fn only_tokens_of_the_bootstrap_form_are_bootstrap_tokens() {
        assert_eq!(parse(TOKEN), Some(("abcdef", "0123456789abcdef")));
        assert_eq!(secret_name(TOKEN).as_deref(), Some("bootstrap-token-abcdef"));
        for other in [
            "abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef.x",
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn a_matching_secret_authenticates_with_the_bootstrap_groups() {
        let user = authenticate(
            TOKEN,
            &secret(&[
                ("expiration", "2030-01-01T00:00:00Z"),
                ("auth-extra-groups", "system:bootstrappers:kubeadm:default-node-token"),
            ]),
            NOW,
        )
        .expect("authenticated");
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            ["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"]
        );
    }

    #[test]
    fn tokens_are_refused_as_upstream_refuses_them() {
        let mut wrong_type = secret(&[]);
        wrong_type["type"] = json!("Opaque");
        let mut deleting = secret(&[]);
        deleting["metadata"]["deletionTimestamp"] = json!("2023-01-01T00:00:00Z");
        let cases = [
            (
                "a secret of another type",
                wrong_type,
                BootstrapError::UnusableSecret("bootstrap-token-abcdef".into()),
            ),
            (
                "a secret being deleted",
                deleting,
                BootstrapError::UnusableSecret("bootstrap-token-abcdef".into()),
            ),
            (
                "another token secret",
                secret(&[("token-secret", "ffffffffffffffff")]),
                BootstrapError::Mismatch("bootstrap-token-abcdef".into()),
            ),
            (
                "another token id",
                secret(&[("token-id", "zzzzzz")]),
                BootstrapError::Mismatch("bootstrap-token-abcdef".into()),
            ),
            (
                "an expired token",
                secret(&[("expiration", "2023-01-01T00:00:00Z")]),
                BootstrapError::Expired("abcdef".into()),
            ),
            (
                "an unreadable expiration",
                secret(&[("expiration", "tomorrow")]),
                BootstrapError::Expired("abcdef".into()),
            ),
            (
                "a token not for authentication",
                secret(&[("usage-bootstrap-authentication", "false")]),
                BootstrapError::NotForAuthentication("abcdef".into()),
            ),
            (
                "an extra group outside system:bootstrappers",
                secret(&[("auth-extra-groups", "system:masters")]),
                BootstrapError::InvalidGroup {
                    id: "abcdef".into(),
                    group: "system:masters".into(),
                },
            ),
        ];
        for (case, secret, expected) in cases {
            assert_eq!(authenticate(TOKEN, &secret, NOW), Err(expected), "{case}");
        }
    }
}
