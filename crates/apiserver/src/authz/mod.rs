//! Authorization: RBAC over the watch cache, escalation prevention in the RBAC write path,
//! and the `authorization.k8s.io` reviews.
//!
//! - [`index::PolicyIndex`]: the RBAC objects of the watch cache as a typed, indexed
//!   [`Policy`](krust_auth::rbac::Policy), rebuilt when they change (no store read per request).
//! - [`node::GraphIndex`]: the Node authorizer's graph of pods and what they reference, kept
//!   current from the watch cache.
//! - [`Authz::authorizer`]: the authorizer of the request chain (Node, then RBAC; members of
//!   `system:masters` are let through by the caller, before it).
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
use krust_auth::{Authorizer, Chain};

use crate::registry::Registry;
use crate::watchcache::WatchCache;
use index::PolicyIndex;

/// The authorization state of a server: the policy index and the authorizer over it.
#[derive(Clone)]
pub struct Authz {
    index: Arc<PolicyIndex>,
    authorizer: Arc<dyn Authorizer>,
}

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

    /// Installs escalation prevention on the writes of roles, cluster roles and bindings.
    pub fn install(&self, registry: &mut Registry) {
        let check = Arc::new(escalation::EscalationCheck::new(Arc::clone(&self.index)));
        for prefix in
            [index::ROLES, index::CLUSTER_ROLES, index::ROLE_BINDINGS, index::CLUSTER_ROLE_BINDINGS]
        {
            registry.add_write_check(prefix, check.clone());
        }
    }

    /// The authorizer of the request chain: the Node authorizer, then RBAC. It
    /// does not let `system:masters` through by itself: the caller does, first, as upstream's
    /// privileged-group authorizer. `NoOpinion` from it is a refusal.
    pub fn authorizer(&self) -> Arc<dyn Authorizer> {
        Arc::clone(&self.authorizer)
    }

    /// The current policy.
    pub fn policy(&self) -> Arc<Policy> {
        self.index.current()
    }
}
