//! NamespaceLifecycle: nothing is created in a namespace that is missing or terminating, and
//! the namespaces every cluster needs (`default`, `kube-system`, `kube-public`) are never
//! deleted. Namespaces are read from the cluster view (the watch cache), as upstream reads its
//! informer.

use krust_api::StatusError;
use serde_json::{Value, json};

use crate::{Attributes, ClusterView, Mutating, Operation, Plugin, forbidden};

/// Upstream's name.
pub const NAME: &str = "NamespaceLifecycle";

/// Namespaces that may not be deleted.
pub const IMMORTAL: [&str; 3] = ["default", "kube-system", "kube-public"];

/// The plugin.
pub struct NamespaceLifecycle;

impl Plugin for NamespaceLifecycle {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// Whether a write is an access review (which never leaks whether a namespace exists).
fn is_access_review(attributes: &Attributes<'_>) -> bool {
    attributes.group == "authorization.k8s.io"
        && matches!(attributes.resource, "localsubjectaccessreviews")
}

/// What this plugin reads of a namespace (read for every write in one, so nothing more).
#[derive(serde::Deserialize)]
struct NamespaceState {
    metadata: Option<StateMeta>,
    status: Option<StateStatus>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateMeta {
    deletion_timestamp: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct StateStatus {
    phase: Option<String>,
}

impl Mutating for NamespaceLifecycle {
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        _old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        let is_namespace = attributes.group.is_empty() && attributes.resource == "namespaces";
        if is_namespace {
            if attributes.operation == Operation::Delete && IMMORTAL.contains(&attributes.name) {
                return Err(forbidden(attributes, None, "this namespace may not be deleted"));
            }
            return Ok(());
        }
        if attributes.namespace.is_empty()
            || attributes.operation == Operation::Delete
            || is_access_review(attributes)
        {
            return Ok(());
        }
        let namespace = cluster.get::<NamespaceState>("", "namespaces", "", attributes.namespace);
        let Some(namespace) = namespace else {
            return Err(StatusError::not_found("", "namespaces", attributes.namespace));
        };
        if attributes.operation != Operation::Create {
            return Ok(());
        }
        let terminating = namespace.metadata.is_some_and(|m| m.deletion_timestamp.is_some())
            || namespace.status.and_then(|s| s.phase).as_deref() == Some("Terminating");
        if !terminating {
            return Ok(());
        }
        let ns = attributes.namespace;
        let mut error = forbidden(
            attributes,
            object.as_deref(),
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        );
        if let Some(details) = error.details.as_mut().and_then(Value::as_object_mut) {
            details.insert(
                "causes".into(),
                json!([{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {ns} is being terminated"),
                    "field": "metadata.namespace",
                }]),
            );
        }
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use super::*;
    use crate::testing::{Objects, create};

    fn cluster() -> Objects {
        Objects(vec![
            (
                "",
                "namespaces",
                json!({"metadata": {"name": "open"}, "status": {"phase": "Active"}}),
            ),
            (
                "",
                "namespaces",
                json!({"metadata": {"name": "closing", "deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Terminating"}}),
            ),
            ("", "namespaces", json!({"metadata": {"name": "bare"}, "status": null})),
        ])
    }

    #[test]
    fn writes_are_judged_by_their_namespace() {
        let pod = || json!({"metadata": {"name": "p"}});
        let cases: &[(&str, Operation, &str, &str, Option<&str>)] = &[
            ("a create in an open namespace passes", Operation::Create, "pods", "open", None),
            ("a namespace without a status is open", Operation::Create, "pods", "bare", None),
            (
                "a create in a missing namespace is not found",
                Operation::Create,
                "pods",
                "gone",
                Some("namespaces \"gone\" not found"),
            ),
            (
                "a create in a terminating namespace is forbidden",
                Operation::Create,
                "pods",
                "closing",
                Some(
                    "pods \"p\" is forbidden: unable to create new content in namespace closing because it is being terminated",
                ),
            ),
            (
                "an update in a terminating namespace passes",
                Operation::Update,
                "pods",
                "closing",
                None,
            ),
            ("a delete in a missing namespace passes", Operation::Delete, "pods", "gone", None),
            ("a cluster-scoped create passes", Operation::Create, "nodes", "", None),
        ];
        for (case, op, resource, ns, message) in cases {
            let attributes = Attributes { operation: *op, ..create("", resource, ns) };
            let mut obj = pod();
            let got = NamespaceLifecycle.admit(&attributes, Some(&mut obj), None, &cluster());
            assert_eq!(got.err().map(|e| e.message).as_deref(), *message, "{case}");
        }
    }

    #[test]
    fn immortal_namespaces_may_not_be_deleted() {
        for (name, refused) in
            [("default", true), ("kube-system", true), ("kube-public", true), ("team", false)]
        {
            let attributes =
                Attributes { operation: Operation::Delete, name, ..create("", "namespaces", "") };
            let got = NamespaceLifecycle.admit(&attributes, None, None, &cluster());
            assert_eq!(got.is_err(), refused, "{name}");
            if let Err(e) = got {
                assert_eq!(
                    e.message,
                    format!(
                        "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                    )
                );
            }
        }
    }
}
