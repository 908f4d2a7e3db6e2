//! Who is asking, and what they may do: the decisions of the request chain, without I/O.
//!
//! - [`UserInfo`]: an authenticated identity (name, uid, groups, extra), as upstream's
//!   `user.Info`.
//! - [`Attributes`]: what a request asks to do (verb, resource or non-resource path), as
//!   upstream's `authorizer.Attributes`.
//! - [`authn`]: authenticators (static tokens, service-account and bootstrap tokens) and
//!   impersonation.
//! - [`Authorizer`]: a decision over attributes ([`Decision`]), chained in order; the first
//!   `Allow` or `Deny` wins, as upstream's union authorizer.
//!
//! *Invariant*: no network, disk, clock of its own, async or HTTP. The API server feeds these
//! from its caches and its requests; they are unit-tested as plain functions.

pub mod authn;
pub mod node;
pub mod rbac;

use std::collections::BTreeMap;

/// An authenticated identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name (`system:admin`, `system:serviceaccount:NS:NAME`, `system:node:NAME`).
    pub name: String,
    /// A unique id, when the authenticator knows one.
    pub uid: String,
    /// The groups, including `system:authenticated` (or `system:unauthenticated`).
    pub groups: Vec<String>,
    /// Extra attributes (`authentication.kubernetes.io/pod-name`, ...).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The user name of anonymous requests.
pub const ANONYMOUS: &str = "system:anonymous";
/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group of anonymous requests.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The group that bypasses authorization (the admin kubeconfig's certificate is in it).
pub const MASTERS: &str = "system:masters";

/// What a request asks to do, as the authorizers see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// Who asks.
    pub user: UserInfo,
    /// The verb: for resources get, list, watch, create, update, patch, delete,
    /// deletecollection (and impersonate, escalate, bind, approve, ...); for non-resource
    /// paths the lower-case HTTP method (get, post, put, ...).
    pub verb: String,
    /// Whether this is a request for a resource (else for a non-resource path).
    pub resource_request: bool,
    /// The namespace, empty for cluster-scoped resources and for lists across namespaces.
    pub namespace: String,
    /// The API group (empty for core).
    pub api_group: String,
    /// The API version.
    pub api_version: String,
    /// The resource (plural).
    pub resource: String,
    /// The subresource, empty for none.
    pub subresource: String,
    /// The object's name, empty when the request names none.
    pub name: String,
    /// The URL path (for non-resource requests).
    pub path: String,
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The request is allowed; the reason says why (for audit and reviews).
    Allow(String),
    /// The request is refused outright; later authorizers are not asked.
    Deny(String),
    /// This authorizer neither allows nor denies; the next one is asked.
    NoOpinion(String),
}

impl Decision {
    /// Whether the request is allowed.
    pub fn allowed(&self) -> bool {
        matches!(self, Self::Allow(_))
    }
}

/// Decides whether a request is allowed.
pub trait Authorizer: Send + Sync {
    /// The decision for `attributes`.
    fn authorize(&self, attributes: &Attributes) -> Decision;
}

/// Authorizers asked in order; the first `Allow` or `Deny` wins, `NoOpinion` from all of them
/// is a denial (with their reasons joined).
pub struct Chain(pub Vec<Box<dyn Authorizer>>);

impl Authorizer for Chain {
    fn authorize(&self, attributes: &Attributes) -> Decision {
        let mut reasons = Vec::new();
        for authorizer in &self.0 {
            match authorizer.authorize(attributes) {
                Decision::NoOpinion(reason) => {
                    if !reason.is_empty() {
                        reasons.push(reason);
                    }
                }
                decided => return decided,
            }
        }
        Decision::NoOpinion(reasons.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Decision);

    impl Authorizer for Fixed {
        fn authorize(&self, _: &Attributes) -> Decision {
            self.0.clone()
        }
    }

    #[test]
    fn the_first_decided_authorizer_wins() {
        let chain = Chain(vec![
            Box::new(Fixed(Decision::NoOpinion("a".into()))),
            Box::new(Fixed(Decision::Deny("no".into()))),
            Box::new(Fixed(Decision::Allow("yes".into()))),
        ]);
        assert_eq!(chain.authorize(&Attributes::default()), Decision::Deny("no".into()));
    }

    #[test]
    fn no_opinion_from_all_is_not_allowed_and_keeps_the_reasons() {
        let chain = Chain(vec![
            Box::new(Fixed(Decision::NoOpinion("a".into()))),
            Box::new(Fixed(Decision::NoOpinion("b".into()))),
        ]);
        let decision = chain.authorize(&Attributes::default());
        assert!(!decision.allowed());
        assert_eq!(decision, Decision::NoOpinion("a, b".into()));
    }
}
