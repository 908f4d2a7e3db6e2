//! The service-account token key, with the issuer and the API server's audiences: mints
//! tokens (TokenRequest) and verifies them (each request, TokenReview).

use krust_auth::authn::service_account::{
    Claims, SigningKey, TokenError, TokenSpec, Validation, VerifyingKey,
};
use ring::rand::SystemRandom;

/// Signs and verifies service-account tokens.
pub struct ServiceAccountTokens {
    key: SigningKey,
    verifying: VerifyingKey,
    rng: SystemRandom,
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
        self.verifying.verify(token, &Validation { issuer: &self.issuer, audiences, now })
    }
}
