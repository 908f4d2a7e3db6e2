//! Service-account tokens: JWTs with upstream's claims, signed ES256 by a key the API server
//! keeps, and checked as upstream's `serviceaccount` token authenticator checks them.
//!
//! The flow: the API server builds [`Claims`] with [`Claims::new`] (its clock and a fresh id
//! passed in), signs them with [`SigningKey::sign`], and on each request verifies a token with
//! [`VerifyingKey::verify`] (signature, issuer, time window, audiences), then asks
//! [`check_bound_objects`] whether the service account and the object the token is bound to
//! still exist with the uids the token names; [`user_info`] is the identity.
//!
//! *Invariant*: no clock, randomness or lookup of its own: `now` (Unix seconds), the random
//! source and the object lookup are parameters.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SecureRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Deserializer, Serialize};

use crate::UserInfo;

/// The issuer of the API server's tokens (upstream's default with kubeadm), also its audience.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// How far a token's time claims may be off the clock (upstream's `jwt.DefaultLeeway`).
pub const LEEWAY_SECONDS: i64 = 60;

/// The user-name prefix of service accounts.
pub const USER_PREFIX: &str = "system:serviceaccount:";

/// The group of all service accounts.
pub const ALL_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

/// A reference to an object a token names: its name and uid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's name.
    pub name: String,
    /// The object's uid.
    pub uid: String,
}

/// The `kubernetes.io` claim: the service account and the object the token is bound to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    /// The namespace of the service account (and of a bound pod or secret).
    pub namespace: String,
    /// The service account.
    pub serviceaccount: ObjectRef,
    /// The pod the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// The secret the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    /// The node the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// The claims of a service-account token, as upstream writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Audiences (a JWT may carry one as a plain string).
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Expiry, Unix seconds.
    pub exp: i64,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Issuer.
    pub iss: String,
    /// The token's id (upstream's credential id is `JTI=<jti>`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jti: String,
    /// The service account and bound objects.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
    /// Not before, Unix seconds.
    pub nbf: i64,
    /// `system:serviceaccount:NS:NAME`.
    pub sub: String,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(one) => vec![one],
        OneOrMany::Many(many) => many,
    })
}

/// The kinds of objects a token may be bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundKind {
    /// A pod (`kubectl create token --bound-object-kind Pod`).
    Pod,
    /// A secret.
    Secret,
    /// A node.
    Node,
}

impl BoundKind {
    /// The kind named in a TokenRequest's `boundObjectRef`, if tokens can be bound to it.
    pub fn parse(kind: &str) -> Option<Self> {
        match kind {
            "Pod" => Some(Self::Pod),
            "Secret" => Some(Self::Secret),
            "Node" => Some(Self::Node),
            _ => None,
        }
    }
}

/// What a new token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// The service account's namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: ObjectRef,
    /// The audiences.
    pub audiences: Vec<String>,
    /// The object the token is bound to, with its kind.
    pub bound: Option<(BoundKind, ObjectRef)>,
    /// How long the token is valid, in seconds.
    pub expiration_seconds: i64,
}

impl Claims {
    /// The claims of a token for `spec`, issued by `issuer` at `now` (Unix seconds), with
    /// the id `jti`.
    pub fn new(issuer: &str, spec: &TokenSpec, now: i64, jti: &str) -> Self {
        let mut kubernetes = KubernetesClaims {
            namespace: spec.namespace.clone(),
            serviceaccount: spec.service_account.clone(),
            ..KubernetesClaims::default()
        };
        match &spec.bound {
            Some((BoundKind::Pod, r)) => kubernetes.pod = Some(r.clone()),
            Some((BoundKind::Secret, r)) => kubernetes.secret = Some(r.clone()),
            Some((BoundKind::Node, r)) => kubernetes.node = Some(r.clone()),
            None => {}
        }
        Self {
            aud: spec.audiences.clone(),
            exp: now + spec.expiration_seconds,
            iat: now,
            iss: issuer.to_string(),
            jti: jti.to_string(),
            kubernetes,
            nbf: now,
            sub: username(&spec.namespace, &spec.service_account.name),
        }
    }
}

/// `system:serviceaccount:NS:NAME`.
pub fn username(namespace: &str, name: &str) -> String {
    format!("{USER_PREFIX}{namespace}:{name}")
}

/// The namespace and name of a service account's user name; `None` for other users.
pub fn split_username(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix(USER_PREFIX)?;
    let (namespace, name) = rest.split_once(':')?;
    if namespace.is_empty() || name.is_empty() || name.contains(':') {
        return None;
    }
    Some((namespace, name))
}

/// The groups of every service account of `namespace`.
pub fn groups(namespace: &str) -> Vec<String> {
    vec![ALL_SERVICE_ACCOUNTS.to_string(), format!("{ALL_SERVICE_ACCOUNTS}:{namespace}")]
}

/// Why a token is not valid, or a key not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT (three base64url parts with JSON header and claims).
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Issued by someone else: another authenticator may know it.
    #[error("token issued by {0:?}, not by this server")]
    OtherIssuer(String),
    /// The algorithm is not ES256.
    #[error("unsupported signing algorithm {0:?}")]
    Algorithm(String),
    /// The signature does not verify.
    #[error("invalid signature")]
    Signature,
    /// Past its expiry.
    #[error("service account token has expired")]
    Expired,
    /// Before its not-before time, or issued in the future.
    #[error("service account token is not valid yet")]
    NotYetValid,
    /// None of the token's audiences is accepted.
    #[error("token audiences {token:?} is invalid for the target audiences {accepted:?}")]
    Audience {
        /// The token's audiences.
        token: Vec<String>,
        /// The audiences accepted.
        accepted: Vec<String>,
    },
    /// The service account or a bound object is gone.
    #[error("{kind} {namespace}/{name} has been deleted")]
    Deleted {
        /// `service account`, `pod`, `secret` or `node`.
        kind: &'static str,
        /// Its namespace (empty for a node).
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The service account or a bound object was replaced by another of the same name.
    #[error("{kind} UID ({actual}) does not match claim ({claimed})")]
    UidMismatch {
        /// `service account`, `pod`, `secret` or `node`.
        kind: &'static str,
        /// The uid of the live object.
        actual: String,
        /// The uid in the token.
        claimed: String,
    },
    /// The signing key could not be read, or signing failed.
    #[error("service account key: {0}")]
    Key(&'static str),
}

/// The key tokens are signed with (ECDSA P-256), and its id.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

/// The DER prefix of a P-256 public key's SubjectPublicKeyInfo, before its 65-byte point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Upstream's key id: the unpadded base64url SHA-256 of the public key's PKIX DER.
fn key_id(public_point: &[u8]) -> String {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(public_point);
    URL_SAFE_NO_PAD.encode(ring::digest::digest(&ring::digest::SHA256, &der))
}

impl SigningKey {
    /// Reads a PKCS#8 (DER) P-256 private key.
    pub fn from_pkcs8(der: &[u8], rng: &dyn SecureRandom) -> Result<Self, TokenError> {
        let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, rng)
            .map_err(|_| TokenError::Key("not a PKCS#8 ECDSA P-256 private key"))?;
        let kid = key_id(pair.public_key().as_ref());
        Ok(Self { pair, kid })
    }

    /// A new PKCS#8 (DER) P-256 private key.
    pub fn generate_pkcs8(rng: &dyn SecureRandom) -> Result<Vec<u8>, TokenError> {
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, rng)
            .map(|doc| doc.as_ref().to_vec())
            .map_err(|_| TokenError::Key("cannot generate a key"))
    }

    /// The key id written in each token's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, to verify tokens with.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey { public: self.pair.public_key().as_ref().to_vec(), kid: self.kid.clone() }
    }

    /// A signed compact JWS of `claims` (`{"alg":"ES256","kid":...}`).
    pub fn sign(&self, claims: &Claims, rng: &dyn SecureRandom) -> Result<String, TokenError> {
        let header = serde_json::json!({"alg": "ES256", "kid": self.kid});
        let header = serde_json::to_vec(&header).map_err(|_| TokenError::Key("header"))?;
        let payload = serde_json::to_vec(claims).map_err(|_| TokenError::Key("claims"))?;
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let signature = self
            .pair
            .sign(rng, signing_input.as_bytes())
            .map_err(|_| TokenError::Key("signing failed"))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())))
    }
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    /// The issuer it must name.
    pub issuer: &'a str,
    /// Audiences accepted: the token must name at least one.
    pub audiences: &'a [String],
    /// The time now, Unix seconds.
    pub now: i64,
}

/// The public key tokens are verified with.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    public: Vec<u8>,
    kid: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

impl VerifyingKey {
    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The claims of `token` when it is ours, signed by this key, within its time window
    /// (with [`LEEWAY_SECONDS`]) and for one of the accepted audiences. Whether its objects
    /// still exist is [`check_bound_objects`]'s question.
    ///
    /// A JWT of another issuer is [`TokenError::OtherIssuer`] (checked before the signature,
    /// so that the caller can pass it to other authenticators).
    pub fn verify(&self, token: &str, validation: &Validation<'_>) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("not three dot-separated parts"));
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD.decode(part).map_err(|_| TokenError::Malformed("not base64url"))
        };
        let header: Header = serde_json::from_slice(&decode(header)?)
            .map_err(|_| TokenError::Malformed("the header is not JSON"))?;
        let payload_bytes = decode(payload)?;
        let issuer = serde_json::from_slice::<serde_json::Value>(&payload_bytes)
            .ok()
            .and_then(|v| v.get("iss").and_then(|i| i.as_str().map(str::to_string)))
            .ok_or(TokenError::Malformed("the claims name no issuer"))?;
        if issuer != validation.issuer {
            return Err(TokenError::OtherIssuer(issuer));
        }
        if header.alg != "ES256" {
            return Err(TokenError::Algorithm(header.alg));
        }
        let signing_input_len = token.len() - signature.len() - 1;
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(&token.as_bytes()[..signing_input_len], &decode(signature)?)
            .map_err(|_| TokenError::Signature)?;
        let claims: Claims = serde_json::from_slice(&payload_bytes)
            .map_err(|_| TokenError::Malformed("the claims are not a service-account token's"))?;
        let now = validation.now;
        if now > claims.exp + LEEWAY_SECONDS {
            return Err(TokenError::Expired);
        }
        if now + LEEWAY_SECONDS < claims.nbf || now + LEEWAY_SECONDS < claims.iat {
            return Err(TokenError::NotYetValid);
        }
        if !claims.aud.iter().any(|a| validation.audiences.contains(a)) {
            return Err(TokenError::Audience {
                token: claims.aud.clone(),
                accepted: validation.audiences.to_vec(),
            });
        }
        if split_username(&claims.sub).is_none() {
            return Err(TokenError::Malformed("the subject is not a service account"));
        }
        Ok(claims)
    }
}

/// The kinds of objects [`check_bound_objects`] looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// The token's service account.
    ServiceAccount,
    /// A bound object.
    Bound(BoundKind),
}

impl ObjectKind {
    fn describe(self) -> &'static str {
        match self {
            Self::ServiceAccount => "service account",
            Self::Bound(BoundKind::Pod) => "pod",
            Self::Bound(BoundKind::Secret) => "secret",
            Self::Bound(BoundKind::Node) => "node",
        }
    }
}

/// Checks that the service account and every bound object of `claims` exist with the uids the
/// token names, as upstream's validator; `uid_of(kind, namespace, name)` is the live
/// object's uid, `None` when it does not exist (namespace empty for nodes).
pub fn check_bound_objects(
    claims: &Claims,
    uid_of: impl Fn(ObjectKind, &str, &str) -> Option<String>,
) -> Result<(), TokenError> {
    let k = &claims.kubernetes;
    let mut wanted = vec![(ObjectKind::ServiceAccount, k.namespace.as_str(), &k.serviceaccount)];
    if let Some(pod) = &k.pod {
        wanted.push((ObjectKind::Bound(BoundKind::Pod), k.namespace.as_str(), pod));
    }
    if let Some(secret) = &k.secret {
        wanted.push((ObjectKind::Bound(BoundKind::Secret), k.namespace.as_str(), secret));
    }
    if let Some(node) = &k.node {
        wanted.push((ObjectKind::Bound(BoundKind::Node), "", node));
    }
    for (kind, namespace, reference) in wanted {
        match uid_of(kind, namespace, &reference.name) {
            None => {
                return Err(TokenError::Deleted {
                    kind: kind.describe(),
                    namespace: namespace.to_string(),
                    name: reference.name.clone(),
                });
            }
            Some(uid) if !reference.uid.is_empty() && uid != reference.uid => {
                return Err(TokenError::UidMismatch {
                    kind: kind.describe(),
                    actual: uid,
                    claimed: reference.uid.clone(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// The identity of a verified token: the service account's user name and uid, its groups,
/// and upstream's extras (bound pod, node, and the credential id).
pub fn user_info(claims: &Claims) -> UserInfo {
    let k = &claims.kubernetes;
    let mut extra = BTreeMap::new();
    if let Some(pod) = &k.pod {
        extra.insert("authentication.kubernetes.io/pod-name".to_string(), vec![pod.name.clone()]);
        extra.insert("authentication.kubernetes.io/pod-uid".to_string(), vec![pod.uid.clone()]);
    }
    if let Some(node) = &k.node {
        extra.insert("authentication.kubernetes.io/node-name".to_string(), vec![node.name.clone()]);
        extra.insert("authentication.kubernetes.io/node-uid".to_string(), vec![node.uid.clone()]);
    }
    if !claims.jti.is_empty() {
        extra.insert(
            "authentication.kubernetes.io/credential-id".to_string(),
            vec![format!("JTI={}", claims.jti)],
        );
    }
    UserInfo {
        name: username(&k.namespace, &k.serviceaccount.name),
        uid: k.serviceaccount.uid.clone(),
        groups: groups(&k.namespace),
        extra,
    }
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;

    use super::*;

    fn key() -> SigningKey {
        let rng = SystemRandom::new();
        let der = SigningKey::generate_pkcs8(&rng).expect("generated");
        SigningKey::from_pkcs8(&der, &rng).expect("read back")
    }

    fn spec(bound: Option<(BoundKind, ObjectRef)>) -> TokenSpec {
        TokenSpec {
            namespace: "team".into(),
            service_account: ObjectRef { name: "robot".into(), uid: "sa-1".into() },
            audiences: vec![DEFAULT_ISSUER.into()],
            bound,
            expiration_seconds: 3600,
        }
    }

    const NOW: i64 = 1_700_000_000;

    fn validation(audiences: &[String], now: i64) -> Validation<'_> {
        Validation { issuer: DEFAULT_ISSUER, audiences, now }
    }

    fn sign(key: &SigningKey, claims: &Claims) -> String {
        key.sign(claims, &SystemRandom::new()).expect("signed")
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims_and_identity() {
        let key = key();
        let claims = Claims::new(DEFAULT_ISSUER, &spec(None), NOW, "id-1");
        let token = sign(&key, &claims);
        let aud = vec![DEFAULT_ISSUER.to_string()];
        let verified = key.verifying_key().verify(&token, &validation(&aud, NOW + 10));
        assert_eq!(verified.as_ref(), Ok(&claims));
        assert_eq!(claims.sub, "system:serviceaccount:team:robot");
        assert_eq!((claims.exp, claims.iat, claims.nbf), (NOW + 3600, NOW, NOW));
        let user = user_info(&claims);
        assert_eq!(user.name, "system:serviceaccount:team:robot");
        assert_eq!(user.uid, "sa-1");
        assert_eq!(user.groups, ["system:serviceaccounts", "system:serviceaccounts:team"]);
        assert_eq!(user.extra["authentication.kubernetes.io/credential-id"], ["JTI=id-1"]);
    }

    #[test]
    fn the_header_names_es256_and_upstreams_key_id() {
        let key = key();
        let token = sign(&key, &Claims::new(DEFAULT_ISSUER, &spec(None), NOW, "j"));
        let header = token.split('.').next().expect("header");
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("json");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], key.kid());
        assert_eq!(key.kid().len(), 43, "base64url of a SHA-256");
    }

    #[test]
    fn the_time_window_is_checked_with_a_minute_of_leeway() {
        let key = key();
        let token = sign(&key, &Claims::new(DEFAULT_ISSUER, &spec(None), NOW, "j"));
        let aud = vec![DEFAULT_ISSUER.to_string()];
        let verify = |now| key.verifying_key().verify(&token, &validation(&aud, now));
        let cases = [
            ("just issued", NOW, Ok(())),
            ("at expiry", NOW + 3600, Ok(())),
            ("within the leeway after expiry", NOW + 3600 + 60, Ok(())),
            ("past the leeway after expiry", NOW + 3600 + 61, Err(TokenError::Expired)),
            ("within the leeway before issue", NOW - 60, Ok(())),
            ("before issue", NOW - 61, Err(TokenError::NotYetValid)),
        ];
        for (case, now, expected) in cases {
            assert_eq!(verify(now).map(|_| ()), expected, "{case}");
        }
    }

    #[test]
    fn tokens_for_other_audiences_issuers_or_keys_are_refused() {
        let key = key();
        let claims = Claims::new(DEFAULT_ISSUER, &spec(None), NOW, "j");
        let token = sign(&key, &claims);
        let other_aud = vec!["vault".to_string()];
        assert!(matches!(
            key.verifying_key().verify(&token, &validation(&other_aud, NOW)),
            Err(TokenError::Audience { .. })
        ));
        let aud = vec![DEFAULT_ISSUER.to_string()];
        let foreign = sign(&key, &Claims { iss: "https://elsewhere".into(), ..claims.clone() });
        assert_eq!(
            key.verifying_key().verify(&foreign, &validation(&aud, NOW)),
            Err(TokenError::OtherIssuer("https://elsewhere".into()))
        );
        let other_key = self::key();
        assert_eq!(
            other_key.verifying_key().verify(&token, &validation(&aud, NOW)),
            Err(TokenError::Signature)
        );
        // A changed payload with the old signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = Claims { sub: "system:serviceaccount:kube-system:admin".into(), ..claims };
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        parts[1] = &forged;
        assert_eq!(
            key.verifying_key().verify(&parts.join("."), &validation(&aud, NOW)),
            Err(TokenError::Signature)
        );
        for junk in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
            assert!(
                matches!(
                    key.verifying_key().verify(junk, &validation(&aud, NOW)),
                    Err(TokenError::Malformed(_))
                ),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn a_pod_bound_token_is_valid_while_its_pod_and_service_account_live() {
        let pod = ObjectRef { name: "web".into(), uid: "pod-1".into() };
        let claims = Claims::new(DEFAULT_ISSUER, &spec(Some((BoundKind::Pod, pod))), NOW, "j");
        assert_eq!(claims.kubernetes.pod.as_ref().map(|p| p.uid.as_str()), Some("pod-1"));
        fn live(
            sa: Option<&'static str>,
            pod: Option<&'static str>,
        ) -> impl Fn(ObjectKind, &str, &str) -> Option<String> {
            move |kind, ns, name| {
                assert_eq!(ns, "team");
                match kind {
                    ObjectKind::ServiceAccount if name == "robot" => sa.map(str::to_string),
                    ObjectKind::Bound(BoundKind::Pod) if name == "web" => pod.map(str::to_string),
                    _ => None,
                }
            }
        }
        let cases = [
            ("both live", live(Some("sa-1"), Some("pod-1")), Ok(())),
            (
                "pod deleted",
                live(Some("sa-1"), None),
                Err(TokenError::Deleted {
                    kind: "pod",
                    namespace: "team".into(),
                    name: "web".into(),
                }),
            ),
            (
                "pod recreated under the same name",
                live(Some("sa-1"), Some("pod-2")),
                Err(TokenError::UidMismatch {
                    kind: "pod",
                    actual: "pod-2".into(),
                    claimed: "pod-1".into(),
                }),
            ),
            (
                "service account recreated",
                live(Some("sa-9"), Some("pod-1")),
                Err(TokenError::UidMismatch {
                    kind: "service account",
                    actual: "sa-9".into(),
                    claimed: "sa-1".into(),
                }),
            ),
        ];
        for (case, lookup, expected) in cases {
            assert_eq!(check_bound_objects(&claims, lookup), expected, "{case}");
        }
        let user = user_info(&claims);
        assert_eq!(user.extra["authentication.kubernetes.io/pod-name"], ["web"]);
        assert_eq!(user.extra["authentication.kubernetes.io/pod-uid"], ["pod-1"]);
    }

    #[test]
    fn service_account_user_names_split_into_namespace_and_name() {
        assert_eq!(split_username("system:serviceaccount:ns:sa"), Some(("ns", "sa")));
        for other in [
            "jane",
            "system:serviceaccount:ns",
            "system:serviceaccount::sa",
            "system:serviceaccount:a:b:c",
        ] {
            assert_eq!(split_username(other), None, "{other}");
        }
    }

    #[test]
    fn a_single_string_audience_is_read_as_a_list() {
        let json = serde_json::json!({
            "aud": "one", "exp": 2, "iat": 1, "nbf": 1, "iss": "i",
            "sub": "system:serviceaccount:a:b",
            "kubernetes.io": {"namespace": "a", "serviceaccount": {"name": "b", "uid": "u"}},
        });
        let claims: Claims = serde_json::from_value(json).expect("claims");
        assert_eq!(claims.aud, ["one"]);
    }
}
