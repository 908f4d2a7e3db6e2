//! Continue tokens of paginated lists, in upstream's shape: base64 of
//! `{"v":"meta.k8s.io/v1","rv":<revision>,"start":"<key after the prefix>"}`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use krust_api::StatusError;
use krust_store::Revision;
use serde_json::{Value, json};

/// A decoded continue token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinueToken {
    /// The revision the list is read at; -1 continues at the latest revision (an inconsistent
    /// continuation after compaction).
    pub revision: Revision,
    /// The key, relative to the list's prefix, to continue strictly after.
    pub after: String,
}

impl ContinueToken {
    /// Encodes the token.
    pub fn encode(&self) -> String {
        let body = json!({"v": "meta.k8s.io/v1", "rv": self.revision, "start": format!("{}\u{0}", self.after)});
        URL_SAFE.encode(body.to_string())
    }

    /// Decodes a token, refusing anything malformed with 400.
    pub fn decode(token: &str) -> Result<Self, StatusError> {
        let bad = || {
            StatusError::bad_request(
                "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
            )
        };
        let bytes = URL_SAFE
            .decode(token)
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
            .map_err(|_| bad())?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if value.get("v").and_then(Value::as_str) != Some("meta.k8s.io/v1") {
            return Err(bad());
        }
        let revision = value
            .get("rv")
            .and_then(Value::as_i64)
            .filter(|r| *r == -1 || *r > 0)
            .ok_or_else(bad)?;
        let start = value.get("start").and_then(Value::as_str).ok_or_else(bad)?;
        let after = start.strip_suffix('\u{0}').unwrap_or(start);
        if after.contains("..") || after.starts_with('/') {
            return Err(bad());
        }
        Ok(Self { revision, after: after.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let token = ContinueToken { revision: 42, after: "default/web".into() };
        assert_eq!(ContinueToken::decode(&token.encode()), Ok(token));
        assert_eq!(ContinueToken::decode("not-a-token").map_err(|e| e.code()), Err(400));
    }
}
