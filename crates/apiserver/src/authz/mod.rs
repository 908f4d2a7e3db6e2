//! Authorization: RBAC over the watch cache, escalation prevention in the RBAC write path,
//! and the `authorization.k8s.io` reviews.
//!
//! - [`index::PolicyIndex`]: the RBAC objects of the watch cache as a typed, indexed
//!   [`Policy`](krust_auth::rbac::Policy), rebuilt when they change (no store read per request).
//! - [`node::GraphIndex`]: the Node authorizer's graph of pods and what they reference, kept
//!   current from the watch cache.
//! - [`Authz::authorizer`]: the authorizer of the request chain (Node, then RBAC; members of
//!   `system:masters` are let through by the caller, before it).
//! - [`Authz::admission_authorizer`]: the same with `system:masters` let through, for the
//!   admission plugins that ask about what a request did not name (signers).
//! - [`escalation::EscalationCheck`]: the registry's check of writes to roles and bindings.
//! - [`review`]: SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectAccessReview,
//!   SelfSubjectRulesReview.
//!
//! The default policy is written at start and aggregated ClusterRoles are kept current by
//! `lifecycle::rbac`.

pub mod escalation;
pub mod index;
pub mod node;
pub mod review;

use std::sync::Arc;

use krust_auth::node::NodeAuthorizer;
use krust_auth::rbac::{Policy, PolicySource, RbacAuthorizer};
use krust_auth::{Attributes, Authorizer, Chain, Decision, MASTERS};

use crate::registry::Registry;
use crate::watchcache::WatchCache;
use index::PolicyIndex;

/// The authorization state of a server: the policy index and the authorizer over it.
#[derive(Clone)]
pub struct Authz {
    index: Arc<PolicyIndex>,
    authorizer: Arc<dyn Authorizer>,
}

/// Allows every request of a `system:masters` member, as upstream's privileged-group
/// authorizer at the head of its chain; no opinion on others.
struct PrivilegedGroup;

impl Authorizer for PrivilegedGroup {
    fn authorize(&self, attributes: &Attributes) -> Decision {
        if attributes.user.in_group(MASTERS) {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}

/// The request chain's authorizer behind [`PrivilegedGroup`].
struct WithMasters(Arc<dyn Authorizer>);

impl Authorizer for WithMasters {
    fn authorize(&self, attributes: &Attributes) -> Decision {
        match PrivilegedGroup.authorize(attributes) {
            Decision::NoOpinion(_) => self.0.authorize(attributes),
            decided => decided,
        }
    }
}

/// The API group of the RBAC resources.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Reads the current policy of a shared index.
struct Shared(Arc<PolicyIndex>);

impl PolicySource for Shared {
    fn current(&self) -> Arc<Policy> {
        self.0.current()
    }
}

impl Authz {
    /// Authorization over the RBAC objects of `cache`.
    pub fn new(cache: &WatchCache) -> Self {
        let index = Arc::new(PolicyIndex::new(cache));
        // Node, then RBAC, as upstream's `--authorization-mode=Node,RBAC`.
        let authorizer: Arc<dyn Authorizer> = Arc::new(Chain(vec![
            Box::new(NodeAuthorizer::new(node::GraphIndex::new(cache))),
            Box::new(RbacAuthorizer(Shared(Arc::clone(&index)))),
        ]));
        Self { index, authorizer }
    }

    /// Installs escalation prevention on the writes of roles, cluster roles and bindings,
    /// in their storage declarations.
    pub fn install(&self, registry: &mut Registry) {
        let check = Arc::new(escalation::EscalationCheck::new(Arc::clone(&self.index)));
        for resource in ["roles", "clusterroles", "rolebindings", "clusterrolebindings"] {
            registry.storage_mut(RBAC_GROUP, resource).write_check = Some(check.clone());
        }
    }

    /// The authorizer of the request chain: the Node authorizer, then RBAC. It
    /// does not let `system:masters` through by itself: the caller does, first, as upstream's
    /// privileged-group authorizer. `NoOpinion` from it is a refusal.
    pub fn authorizer(&self) -> Arc<dyn Authorizer> {
        Arc::clone(&self.authorizer)
    }

    /// The authorizer admission plugins ask (CertificateApproval, CertificateSigning,
    /// ClusterTrustBundleAttest), as upstream's full chain: `system:masters`, then the Node
    /// authorizer, then RBAC.
    pub fn admission_authorizer(&self) -> Arc<dyn Authorizer> {
        Arc::new(WithMasters(Arc::clone(&self.authorizer)))
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<Policy> {
        self.index.current()
    }
}

#[cfg(test)]
mod tests {
    use krust_auth::UserInfo;

    use super::*;

    struct Nobody;

    impl Authorizer for Nobody {
        fn authorize(&self, _: &Attributes) -> Decision {
            Decision::NoOpinion("nobody".into())
        }
    }

    #[test]
    fn admission_asks_with_system_masters_let_through() {
        let authorizer = WithMasters(Arc::new(Nobody));
        let ask = |groups: &[&str]| {
            authorizer.authorize(&Attributes {
                user: UserInfo {
                    name: "u".into(),
                    groups: groups.iter().map(|g| g.to_string()).collect(),
                    ..UserInfo::default()
                },
                verb: "approve".into(),
                resource: "signers".into(),
                ..Attributes::default()
            })
        };
        assert!(ask(&[MASTERS, "system:authenticated"]).allowed());
        assert_eq!(ask(&["system:authenticated"]), Decision::NoOpinion("nobody".into()));
    }
}
