//! NodeRestriction, as upstream's `plugin/pkg/admission/noderestriction`: what a node
//! (`system:node:NAME` in `system:nodes`) may write, beyond what the Node authorizer can judge
//! from a request's name. Requests of other users pass untouched.
//!
//! A node may:
//! - create only mirror pods bound to itself (the `kubernetes.io/config.mirror` annotation,
//!   `spec.nodeName` itself, its Node as their one controller owner, no service account,
//!   secrets, config maps, claims or cluster trust bundles), and delete only pods bound to
//!   itself;
//! - update the status of, and evict, only pods bound to itself;
//! - create and modify only its own Node, without setting or changing labels under
//!   `node-restriction.kubernetes.io/` or other labels under `kubernetes.io` / `k8s.io`
//!   that the kubelet does not set itself, and without changing its taints or pod CIDRs
//!   after creation;
//! - write only its own Lease in `kube-node-lease` and its own CSINode;
//! - request tokens only bound to pods bound to itself.
//!
//! A mutating plugin, as upstream's (it changes nothing; it runs with the mutating plugins,
//! before the object is defaulted).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use krust_api::StatusError;
use krust_auth::node::{NODE_LEASE_NAMESPACE, node_identity};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{Attributes, ClusterView, Mutating, Operation, Plugin};

/// The annotation of mirror pods.
pub const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The label prefix reserved for the cluster administrator's node isolation.
pub const RESTRICTED_LABEL_PREFIX: &str = "node-restriction.kubernetes.io/";

/// The labels under `kubernetes.io` and `k8s.io` a kubelet sets on its Node, as upstream's
/// `kubeletapis.KubeletLabels`.
const KUBELET_LABELS: &[&str] = &[
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
    "kubernetes.io/os",
    "kubernetes.io/arch",
];
/// Label namespaces a kubelet may use freely.
const KUBELET_LABEL_NAMESPACES: &[&str] = &["kubelet.kubernetes.io", "node.kubernetes.io"];

/// The NodeRestriction admission plugin.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeRestriction;

impl NodeRestriction {
    /// The plugin.
    pub fn new() -> Self {
        Self
    }
}

impl Plugin for NodeRestriction {
    fn name(&self) -> &'static str {
        "NodeRestriction"
    }
}

/// Upstream's `admission.NewForbidden` for the object the request names.
fn forbidden(a: &Attributes<'_>, why: impl std::fmt::Display) -> StatusError {
    crate::forbidden(a, None, &why.to_string())
}

/// A built-in object typed, when there is one.
fn typed<T: DeserializeOwned>(value: Option<&Value>) -> Option<T> {
    value.and_then(crate::typed)
}

/// Whether a node may set `label` on itself, as upstream's `isNodeSelfLabel`.
pub fn is_node_self_label(label: &str) -> bool {
    let Some((namespace, _)) = label.split_once('/') else { return true };
    if KUBELET_LABELS.contains(&label) {
        return true;
    }
    if KUBELET_LABEL_NAMESPACES
        .iter()
        .any(|ns| namespace == *ns || namespace.ends_with(&format!(".{ns}")))
    {
        return true;
    }
    let reserved = |d: &str| namespace == d || namespace.ends_with(&format!(".{d}"));
    !(reserved("kubernetes.io") || reserved("k8s.io"))
}

/// The labels a node may not set or change: those under `node-restriction.kubernetes.io/`
/// and the unsafe ones under `kubernetes.io` and `k8s.io`, sorted.
pub fn forbidden_label_changes(
    new: &BTreeMap<String, String>,
    old: Option<&BTreeMap<String, String>>,
) -> Vec<String> {
    let restricted = |k: &str| k.starts_with(RESTRICTED_LABEL_PREFIX) || !is_node_self_label(k);
    let mut changed: Vec<String> = match old {
        None => new.keys().filter(|k| restricted(k)).cloned().collect(),
        Some(old) => new
            .iter()
            .filter(|(k, v)| old.get(*k) != Some(v))
            .map(|(k, _)| k)
            .chain(old.keys().filter(|k| !new.contains_key(*k)))
            .filter(|k| restricted(k))
            .cloned()
            .collect(),
    };
    changed.sort();
    changed.dedup();
    changed
}

impl NodeRestriction {
    fn pod(
        &self,
        a: &Attributes<'_>,
        node: &str,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        let bound_here = |pod: Option<Pod>| {
            pod.and_then(|p| p.spec).and_then(|s| s.node_name).as_deref() == Some(node)
        };
        match (a.subresource, a.operation) {
            ("", Operation::Create) => {
                let Some(pod) = typed::<Pod>(object) else { return Ok(()) };
                let mirror = pod
                    .metadata
                    .annotations
                    .as_ref()
                    .is_some_and(|a| a.contains_key(MIRROR_POD_ANNOTATION));
                if !mirror {
                    return Err(forbidden(
                        a,
                        format!(
                            "pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
                        ),
                    ));
                }
                let spec = pod.spec.unwrap_or_default();
                if spec.node_name.as_deref() != Some(node) {
                    return Err(forbidden(
                        a,
                        format!(
                            "node {node:?} can only create pods with spec.nodeName set to itself"
                        ),
                    ));
                }
                self.mirror_owner(a, node, &pod.metadata, cluster)?;
                if spec.service_account_name.as_deref().is_some_and(|s| !s.is_empty()) {
                    return Err(forbidden(
                        a,
                        format!(
                            "node {node:?} can not create pods that reference a service account"
                        ),
                    ));
                }
                let trust_bundles = spec
                    .volumes
                    .iter()
                    .flatten()
                    .filter_map(|v| v.projected.as_ref())
                    .flat_map(|p| p.sources.iter().flatten())
                    .any(|s| s.cluster_trust_bundle.is_some());
                let mut probe = pod.metadata.clone();
                probe.namespace = Some(a.namespace.to_string());
                let refs = krust_auth::node::pod_refs(&Pod {
                    metadata: probe,
                    spec: Some(k8s_openapi::api::core::v1::PodSpec {
                        service_account_name: None,
                        ..spec
                    }),
                    status: None,
                });
                if let Some((kind, _)) = refs.and_then(|r| r.objects.into_iter().next()) {
                    let what = match kind {
                        krust_auth::node::Kind::Secret => "secrets",
                        krust_auth::node::Kind::ConfigMap => "configmaps",
                        krust_auth::node::Kind::PersistentVolumeClaim => "persistentvolumeclaims",
                        krust_auth::node::Kind::ServiceAccount => "service accounts",
                    };
                    return Err(forbidden(
                        a,
                        format!("node {node:?} can not create pods that reference {what}"),
                    ));
                }
                if trust_bundles {
                    return Err(forbidden(
                        a,
                        format!(
                            "node {node:?} can not create pods that reference clustertrustbundles"
                        ),
                    ));
                }
                Ok(())
            }
            ("", Operation::Delete) => {
                let existing =
                    typed::<Pod>(old).or_else(|| cluster.get("", "pods", a.namespace, a.name));
                if existing.is_some() && !bound_here(existing) {
                    return Err(forbidden(
                        a,
                        format!(
                            "node {node:?} can only delete pods with spec.nodeName set to itself"
                        ),
                    ));
                }
                Ok(())
            }
            ("", op) => Err(forbidden(
                a,
                format!(
                    "unexpected operation {}, node {node:?} can only create and delete mirror pods",
                    op.as_str()
                ),
            )),
            ("status", Operation::Update) => {
                if !bound_here(typed(old)) {
                    return Err(forbidden(
                        a,
                        format!(
                            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
                        ),
                    ));
                }
                Ok(())
            }
            ("eviction", Operation::Create) => {
                let name = object
                    .and_then(|e| e.pointer("/metadata/name"))
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .unwrap_or(a.name);
                // A missing pod is the eviction's 404 to answer.
                let Some(pod) = cluster.get::<Pod>("", "pods", a.namespace, name) else {
                    return Ok(());
                };
                if !bound_here(Some(pod)) {
                    return Err(forbidden(
                        a,
                        format!("node {node} can only evict pods with spec.nodeName set to itself"),
                    ));
                }
                Ok(())
            }
            (sub, _) => Err(forbidden(
                a,
                format!("unexpected subresource {sub:?}, node {node:?} can only update pod status"),
            )),
        }
    }

    /// A mirror pod's owner: exactly one reference, to the node's own Node object (its
    /// current uid), as controller, without `blockOwnerDeletion` (upstream's
    /// `admitPodCreate`, since the MirrorPodNodeRestriction KEP).
    fn mirror_owner(
        &self,
        a: &Attributes<'_>,
        node: &str,
        pod: &ObjectMeta,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        let owners = pod.owner_references.as_deref().unwrap_or_default();
        let [owner] = owners else {
            let why = if owners.is_empty() {
                format!("node {node:?} can only create pods with an owner reference set to itself")
            } else {
                format!(
                    "node {node:?} can only create pods with a single owner reference set to itself"
                )
            };
            return Err(forbidden(a, why));
        };
        if owner.api_version != "v1" || owner.kind != "Node" || owner.name != node {
            return Err(forbidden(
                a,
                format!("node {node:?} can only create pods with an owner reference set to itself"),
            ));
        }
        if owner.controller != Some(true) {
            return Err(forbidden(
                a,
                format!(
                    "node {node:?} can only create pods with a controller owner reference set to itself"
                ),
            ));
        }
        if owner.block_owner_deletion == Some(true) {
            return Err(forbidden(
                a,
                format!("node {node:?} must not set blockOwnerDeletion on an owner reference"),
            ));
        }
        let Some(registered) = cluster.get::<Node>("", "nodes", "", node) else {
            return Err(StatusError::not_found("", "nodes", node));
        };
        let uid = registered.metadata.uid.unwrap_or_default();
        if owner.uid != uid {
            return Err(forbidden(
                a,
                format!("node {node} UID mismatch: expected {} got {uid}", owner.uid),
            ));
        }
        Ok(())
    }

    fn node(
        &self,
        a: &Attributes<'_>,
        node: &str,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> Result<(), StatusError> {
        let name = typed::<Node>(object)
            .and_then(|n| n.metadata.name)
            .unwrap_or_else(|| a.name.to_string());
        if name != node {
            return Err(forbidden(
                a,
                format!("node {node:?} is not allowed to modify node {name:?}"),
            ));
        }
        if a.operation == Operation::Delete || !a.subresource.is_empty() {
            return Ok(());
        }
        let Some(new) = typed::<Node>(object) else { return Ok(()) };
        let old = typed::<Node>(old);
        let new_labels = new.metadata.labels.clone().unwrap_or_default();
        let old_labels = old.as_ref().map(|o| o.metadata.labels.clone().unwrap_or_default());
        let bad = forbidden_label_changes(&new_labels, old_labels.as_ref());
        if !bad.is_empty() {
            let verb = if old.is_some() { "modify" } else { "set" };
            return Err(forbidden(
                a,
                format!("is not allowed to {verb} labels: {}", bad.join(", ")),
            ));
        }
        if let Some(old) = old {
            let (new_spec, old_spec) = (new.spec.unwrap_or_default(), old.spec.unwrap_or_default());
            if new_spec.taints != old_spec.taints {
                return Err(forbidden(a, format!("node {node:?} is not allowed to modify taints")));
            }
            if new_spec.pod_cidrs != old_spec.pod_cidrs && old_spec.pod_cidrs.is_some() {
                return Err(forbidden(
                    a,
                    format!("node {node:?} is not allowed to modify podCIDRs"),
                ));
            }
        }
        Ok(())
    }

    fn token(
        &self,
        a: &Attributes<'_>,
        node: &str,
        object: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        let bound = object.and_then(|o| o.pointer("/spec/boundObjectRef"));
        let Some(bound) = bound else {
            return Err(forbidden(a, "node requested token not bound to a pod"));
        };
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind != "Pod" {
            return Err(forbidden(
                a,
                format!("node requested token bound to a {kind}, only pods are allowed"),
            ));
        }
        let name = bound.get("name").and_then(Value::as_str).unwrap_or_default();
        let pod = cluster.get::<Pod>("", "pods", a.namespace, name);
        let Some(pod) = pod else {
            return Err(forbidden(
                a,
                format!("node requested token bound to a pod {name:?} that does not exist"),
            ));
        };
        if pod.spec.and_then(|s| s.node_name).as_deref() != Some(node) {
            return Err(forbidden(
                a,
                "node requested token bound to a pod scheduled on a different node",
            ));
        }
        if let Some(uid) = bound.get("uid").and_then(Value::as_str).filter(|u| !u.is_empty())
            && pod.metadata.uid.as_deref() != Some(uid)
        {
            return Err(forbidden(
                a,
                "the UID in the bound object reference does not match the UID in record",
            ));
        }
        Ok(())
    }
}

impl Mutating for NodeRestriction {
    fn admit(
        &self,
        a: &Attributes<'_>,
        object: Option<&mut Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        let Some(user) = a.user else { return Ok(()) };
        let Some(node) = node_identity(user) else { return Ok(()) };
        if node.is_empty() {
            return Err(forbidden(
                a,
                format!("could not determine node from user {:?}", user.name),
            ));
        }
        let object = object.map(|o| &*o);
        match (a.group, a.resource) {
            ("", "pods") => self.pod(a, node, object, old, cluster),
            ("", "nodes") => self.node(a, node, object, old),
            ("", "serviceaccounts") if a.subresource == "token" => {
                self.token(a, node, object, cluster)
            }
            ("coordination.k8s.io", "leases") => {
                let name = object
                    .and_then(|o| o.pointer("/metadata/name"))
                    .and_then(Value::as_str)
                    .unwrap_or(a.name);
                if a.namespace != NODE_LEASE_NAMESPACE || name != node {
                    return Err(forbidden(
                        a,
                        "can only access node lease with the same name as the requesting node",
                    ));
                }
                Ok(())
            }
            ("storage.k8s.io", "csinodes") => {
                if a.name != node {
                    return Err(forbidden(
                        a,
                        format!("node {node:?} is not allowed to modify CSINode {:?}", a.name),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
