//! Registry authentication: the `WWW-Authenticate` challenge of a 401, and the header that
//! answers it (Docker's token protocol for `Bearer`, plain `Basic` otherwise).

use std::collections::BTreeMap;

use base64::Engine;

use super::keyring::Credential;

/// What a registry asked for in its 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// A token from `realm`, for `service` and `scope`.
    Bearer {
        /// The token endpoint.
        realm: String,
        /// The `service` parameter, if given.
        service: Option<String>,
        /// The `scope` parameter, if given.
        scope: Option<String>,
    },
    /// A user name and password on every request.
    Basic,
}

/// Reads a `WWW-Authenticate` value; `None` when it is neither scheme.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(char::is_whitespace).unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parameters(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `key="value", key=value` pairs (keys lowercased; quoted values may hold commas).
fn parameters(raw: &str) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut rest = raw.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        params.insert(key, value);
        rest = next.trim_start().trim_start_matches(',');
    }
    params
}

/// The token endpoint's URL for pulling `repository`.
pub fn token_url(
    realm: &str,
    service: Option<&str>,
    scope: Option<&str>,
    repository: &str,
) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(service) = service {
        query.append_pair("service", service);
    }
    // The registry's scope names what the failed request needed; a pull needs this one.
    let wanted = format!("repository:{repository}:pull");
    query.append_pair("scope", scope.filter(|s| s.contains(repository)).unwrap_or(&wanted));
    let separator = if realm.contains('?') { '&' } else { '?' };
    format!("{realm}{separator}{}", query.finish())
}

/// The `Authorization` value for a user name and password.
pub fn basic(credential: &Credential) -> String {
    let pair = format!("{}:{}", credential.username, credential.password);
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

/// The token in a token endpoint's answer (`token`, or OAuth's `access_token`).
pub fn token_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    answer.token.or(answer.access_token).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_bearer_and_basic_challenges() {
        let hub = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        assert_eq!(
            parse_challenge(hub),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull".into()),
            })
        );
        let spaced = r#"bearer realm = "https://x/t", scope="repository:a:pull,push", error="insufficient_scope""#;
        let Some(Challenge::Bearer { realm, scope, service }) = parse_challenge(spaced) else {
            panic!("a bearer challenge")
        };
        assert_eq!(
            (realm.as_str(), scope.as_deref(), service),
            ("https://x/t", Some("repository:a:pull,push"), None)
        );
        assert_eq!(parse_challenge(r#"Basic realm="basic-realm""#), Some(Challenge::Basic));
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="s""#), None);
    }

    #[test]
    fn asks_the_token_endpoint_for_a_pull() {
        assert_eq!(
            token_url("https://auth/token", Some("reg"), None, "team/app"),
            "https://auth/token?service=reg&scope=repository%3Ateam%2Fapp%3Apull"
        );
        assert_eq!(
            token_url("https://auth/token?x=1", None, Some("repository:team/app:pull"), "team/app"),
            "https://auth/token?x=1&scope=repository%3Ateam%2Fapp%3Apull"
        );
        assert_eq!(token_of(br#"{"token":"t1","expires_in":300}"#).as_deref(), Some("t1"));
        assert_eq!(token_of(br#"{"access_token":"t2"}"#).as_deref(), Some("t2"));
        assert_eq!(token_of(b"{}"), None);
    }
}
