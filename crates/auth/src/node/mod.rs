//! The Node authorizer, as upstream's `plugin/pkg/auth/authorizer/node`: a node
//! (`system:node:NAME` in `system:nodes`) may read the secrets, config maps, claims, volumes
//! and service accounts its own pods reference, and otherwise what the `system:node` role's
//! rules allow.
//!
//! Decision structure, as upstream's: the authorizer answers only for nodes; for the
//! resources it subdivides (secrets, config maps, persistent volume claims and volumes,
//! service accounts, node leases, CSINodes) it allows what the [`Graph`] (or the name) permits
//! and has no opinion otherwise, with upstream's reason; every other request is allowed when
//! the rules of the `system:node` ClusterRole ([`node_rules`]) allow it. It is chained before
//! RBAC, which binds nobody to `system:node` (upstream stopped binding the group in 1.8): a
//! node's other rights come from here.
//!
//! The API server keeps a [`Graph`] current from its watch cache ([`GraphSource`]); nothing
//! here reads a store. Writes the authorizer cannot judge by name (creating a Lease or a
//! CSINode, the labels of its own Node, mirror pods) are NodeRestriction admission's.

pub mod graph;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::rbac::bootstrap;
use crate::rbac::matching::rule_allows;
use crate::{Attributes, Authorizer, Decision, UserInfo};
pub use graph::{Graph, Kind, PodRefs, claim_volume, pod_refs};

/// The group every node is in.
pub const NODES_GROUP: &str = "system:nodes";
/// The user name prefix of nodes.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The namespace of node leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Whether `user` is a node, and its name: `None` for a user that is not a node,
/// `Some("")` for a member of `system:nodes` whose name is not `system:node:NAME`; as
/// upstream's `NodeIdentity`.
pub fn node_identity(user: &UserInfo) -> Option<&str> {
    if !user.in_group(NODES_GROUP) {
        return None;
    }
    Some(user.name.strip_prefix(NODE_USER_PREFIX).unwrap_or_default())
}

/// The rules of the default `system:node` ClusterRole, which the authorizer applies to nodes
/// for the resources it does not subdivide.
pub fn node_rules() -> Vec<PolicyRule> {
    bootstrap::cluster_roles()
        .into_iter()
        .find(|r| r.metadata.name.as_deref() == Some("system:node"))
        .and_then(|r| r.rules)
        .unwrap_or_default()
}

/// A source of the current graph.
pub trait GraphSource: Send + Sync {
    /// The graph now.
    fn current(&self) -> Arc<Graph>;
}

/// The Node authorizer over the graphs of `S`.
pub struct NodeAuthorizer<S> {
    source: S,
    rules: Vec<PolicyRule>,
}

impl<S: GraphSource> NodeAuthorizer<S> {
    /// An authorizer over `source`, with the `system:node` role's rules.
    pub fn new(source: S) -> Self {
        Self { source, rules: node_rules() }
    }

    /// Allowed when the graph links `node` to the object the request names.
    fn related(&self, node: &str, a: &Attributes, kind: Option<Kind>) -> Decision {
        if a.name.is_empty() {
            return Decision::NoOpinion("No Object name found".into());
        }
        let graph = self.source.current();
        let reached = match kind {
            Some(kind) => graph.reaches(node, kind, &a.namespace, &a.name),
            None => graph.reaches_volume(node, &a.name),
        };
        if reached {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(format!(
                "no relationship found between node '{node}' and this object"
            ))
        }
    }

    /// Secrets and config maps: read one named object in a namespace.
    fn read_namespaced(&self, node: &str, a: &Attributes, kind: Kind) -> Decision {
        if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
            return Decision::NoOpinion("can only read resources of this type".into());
        }
        if !a.subresource.is_empty() {
            return Decision::NoOpinion(format!("cannot read subresource {}", a.subresource));
        }
        if a.namespace.is_empty() {
            return Decision::NoOpinion("can only read namespaced object of this type".into());
        }
        self.related(node, a, Some(kind))
    }

    /// Claims and volumes: get one object.
    fn get(&self, node: &str, a: &Attributes, kind: Option<Kind>) -> Decision {
        if a.verb != "get" {
            return Decision::NoOpinion("can only get individual resources of this type".into());
        }
        if !a.subresource.is_empty() {
            return Decision::NoOpinion(format!("cannot get subresource {}", a.subresource));
        }
        self.related(node, a, kind)
    }

    fn claim(&self, node: &str, a: &Attributes) -> Decision {
        if a.subresource != "status" {
            return self.get(node, a, Some(Kind::PersistentVolumeClaim));
        }
        if !matches!(a.verb.as_str(), "update" | "patch") {
            return Decision::NoOpinion("can only get or update status of this type".into());
        }
        self.related(node, a, Some(Kind::PersistentVolumeClaim))
    }

    fn service_account(&self, node: &str, a: &Attributes) -> Decision {
        match (a.verb.as_str(), a.subresource.as_str()) {
            ("create", "token") | ("get", "") => self.related(node, a, Some(Kind::ServiceAccount)),
            _ => {
                Decision::NoOpinion("can only create tokens for individual service accounts".into())
            }
        }
    }

    fn lease(node: &str, a: &Attributes) -> Decision {
        if !matches!(a.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
            return Decision::NoOpinion(
                "can only get, create, update, patch, or delete a node lease".into(),
            );
        }
        if a.namespace != NODE_LEASE_NAMESPACE {
            return Decision::NoOpinion(format!(
                "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
            ));
        }
        // The name of a create is NodeRestriction's to check.
        if a.verb != "create" && a.name != node {
            return Decision::NoOpinion(
                "can only access node lease with the same name as the requesting node".into(),
            );
        }
        Decision::Allow(String::new())
    }

    fn csi_node(node: &str, a: &Attributes) -> Decision {
        if !matches!(a.verb.as_str(), "get" | "create" | "update" | "patch" | "delete") {
            return Decision::NoOpinion(
                "can only get, create, update, patch, or delete a CSINode".into(),
            );
        }
        if !a.subresource.is_empty() {
            return Decision::NoOpinion("cannot authorize CSINode subresources".into());
        }
        if a.verb != "create" && a.name != node {
            return Decision::NoOpinion(
                "can only access CSINode with the same name as the requesting node".into(),
            );
        }
        Decision::Allow(String::new())
    }
}

impl<S: GraphSource> Authorizer for NodeAuthorizer<S> {
    fn authorize(&self, a: &Attributes) -> Decision {
        let Some(node) = node_identity(&a.user) else {
            return Decision::NoOpinion(String::new());
        };
        if node.is_empty() {
            return Decision::NoOpinion(format!("unknown node for user {:?}", a.user.name));
        }
        if a.resource_request {
            match (a.api_group.as_str(), a.resource.as_str()) {
                ("", "secrets") => return self.read_namespaced(node, a, Kind::Secret),
                ("", "configmaps") => return self.read_namespaced(node, a, Kind::ConfigMap),
                ("", "persistentvolumeclaims") => return self.claim(node, a),
                ("", "persistentvolumes") => return self.get(node, a, None),
                ("", "serviceaccounts") => return self.service_account(node, a),
                ("coordination.k8s.io", "leases") => return Self::lease(node, a),
                ("storage.k8s.io", "csinodes") => return Self::csi_node(node, a),
                _ => {}
            }
        }
        if self.rules.iter().any(|rule| rule_allows(a, rule)) {
            Decision::Allow(String::new())
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}
