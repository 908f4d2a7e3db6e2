//! The service-account token key, with the issuer and the API server's audiences: mints
//! tokens (TokenRequest) and verifies them (each request, TokenReview).

use krust_auth::authn::service_account::{
    Claims, SigningKey, TokenError, TokenSpec, Validation, VerifyingKey,
};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use ring::rand::SystemRandom;

/// How long a verified token's claims are reused without checking its signature again
/// (upstream caches token authentication for 10 s too); never past the token's expiry.
const VERIFIED_TTL: i64 = 10;

/// The most verified tokens remembered; past it, the expired are dropped, then all.
const VERIFIED_MAX: usize = 4096;

/// Signs and verifies service-account tokens.
pub struct ServiceAccountTokens {
    key: SigningKey,
    verifying: VerifyingKey,
    rng: SystemRandom,
    /// Tokens verified for the API server's audiences: their claims, and until when (Unix
    /// seconds) they are reused. A signature check costs about as much as the rest of a
    /// request.
    verified: Mutex<HashMap<String, (Claims, i64)>>,
    /// The `iss` of the tokens.
    pub issuer: String,
    /// The audiences the API server accepts (and gives tokens by default).
    pub api_audiences: Vec<String>,
}

impl ServiceAccountTokens {
    /// Tokens signed by `pkcs8` (a P-256 key's PKCS#8 DER) with `issuer`, which is also the
    /// API server's audience.
    pub fn new(pkcs8: &[u8], issuer: &str) -> Result<Self, TokenError> {
        let rng = SystemRandom::new();
        let key = SigningKey::from_pkcs8(pkcs8, &rng)?;
        let verifying = key.verifying_key();
        Ok(Self {
            key,
            verifying,
            rng,
            verified: Mutex::default(),
            issuer: issuer.to_string(),
            api_audiences: vec![issuer.to_string()],
        })
    }

    /// A signed token for `spec`, issued at `now` (Unix seconds), with a fresh id.
    pub fn issue(&self, spec: &TokenSpec, now: i64) -> Result<(String, Claims), TokenError> {
        let claims = Claims::new(&self.issuer, spec, now, &uuid::Uuid::new_v4().to_string());
        Ok((self.key.sign(&claims, &self.rng)?, claims))
    }

    /// The claims of `token` if this server issued it, it is in its time window at `now` and
    /// names one of `audiences`.
    pub fn verify(
        &self,
        token: &str,
        audiences: &[String],
        now: i64,
    ) -> Result<Claims, TokenError> {
        let for_api = audiences == self.api_audiences.as_slice();
        if for_api
            && let Some((claims, until)) = self.remembered().get(token)
            && now < *until
            && now >= claims.nbf
        {
            return Ok(claims.clone());
        }
        let claims =
            self.verifying.verify(token, &Validation { issuer: &self.issuer, audiences, now })?;
        if for_api {
            let mut verified = self.remembered();
            if verified.len() >= VERIFIED_MAX {
                verified.retain(|_, (_, until)| now < *until);
                if verified.len() >= VERIFIED_MAX {
                    verified.clear();
                }
            }
            let until = (now + VERIFIED_TTL).min(claims.exp);
            verified.insert(token.to_string(), (claims.clone(), until));
        }
        Ok(claims)
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Claims, i64)>> {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use krust_auth::authn::service_account::ObjectRef;

    use super::*;

    #[test]
    fn a_verified_token_is_reused_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let pkcs8 = crate::pki::service_account_key(dir.path()).unwrap();
        let tokens = ServiceAccountTokens::new(&pkcs8, "https://kubernetes.default.svc").unwrap();
        let spec = TokenSpec {
            namespace: "a".into(),
            service_account: ObjectRef { name: "sa".into(), uid: "u".into() },
            audiences: tokens.api_audiences.clone(),
            bound: None,
            expiration_seconds: 600,
        };
        let (token, claims) = tokens.issue(&spec, 1_000).unwrap();
        let audiences = tokens.api_audiences.clone();
        assert_eq!(tokens.verify(&token, &audiences, 1_001).unwrap(), claims);
        assert_eq!(tokens.remembered().len(), 1);
        assert_eq!(tokens.verify(&token, &audiences, 1_005).unwrap(), claims);
        // Past its expiry (and the leeway) it is refused, remembered or not.
        assert!(tokens.verify(&token, &audiences, 1_000 + 600 + 10_000).is_err());
        // Another audience (a TokenReview's) is checked in full and not remembered.
        assert!(tokens.verify(&token, &["other".to_string()], 1_002).is_err());
    }
}
