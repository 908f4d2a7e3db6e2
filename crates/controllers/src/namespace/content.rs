//! What the namespace controller decides without the server: which resources it empties,
//! what is left, and the conditions that say so on the namespace.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::discovery::{ApiCapabilities, ApiResource, Scope, verbs};

/// The finalizer the namespace controller owns in `spec.finalizers`.
pub const FINALIZER: &str = "kubernetes";

/// A namespaced resource the controller empties, and whether one `deletecollection` can.
#[derive(Debug, Clone)]
pub struct Deletable {
    /// The resource.
    pub resource: ApiResource,
    /// Whether it supports `deletecollection`; otherwise each object is deleted.
    pub collection: bool,
}

/// The namespaced resources that can be listed and deleted, as upstream filters its
/// preferred namespaced resources.
pub fn deletable(
    resources: impl IntoIterator<Item = (ApiResource, ApiCapabilities)>,
) -> Vec<Deletable> {
    resources
        .into_iter()
        .filter(|(_, caps)| {
            caps.scope == Scope::Namespaced
                && caps.supports_operation(verbs::LIST)
                && caps.supports_operation(verbs::DELETE)
        })
        .map(|(resource, caps)| Deletable {
            collection: caps.supports_operation(verbs::DELETE_COLLECTION),
            resource,
        })
        .collect()
}

/// Whether the namespace is terminating and still held by this controller's finalizer.
pub fn needs_emptying(namespace: &Namespace) -> bool {
    namespace.metadata.deletion_timestamp.is_some()
        && namespace
            .spec
            .as_ref()
            .and_then(|s| s.finalizers.as_ref())
            .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// The namespace's `spec.finalizers` once this controller lets it go.
pub fn finalized(namespace: &Namespace) -> Namespace {
    let mut out = namespace.clone();
    if let Some(finalizers) = out.spec.as_mut().and_then(|s| s.finalizers.as_mut()) {
        finalizers.retain(|f| f != FINALIZER);
    }
    out
}

/// What is left in a namespace after a deletion pass, and what failed.
#[derive(Debug, Default, PartialEq)]
pub struct Remaining {
    /// Discovery failed: the namespace cannot be known empty.
    pub discovery_failure: Option<String>,
    /// Deletions that failed, one message each.
    pub failures: Vec<String>,
    /// Objects left, per resource as `plural.group`.
    pub resources: BTreeMap<String, usize>,
    /// Objects left, per finalizer that holds them.
    pub finalizers: BTreeMap<String, usize>,
}

impl Remaining {
    /// Whether nothing is left and nothing failed: the namespace may be finalized.
    pub fn is_empty(&self) -> bool {
        self.discovery_failure.is_none() && self.failures.is_empty() && self.resources.is_empty()
    }

    /// Counts what is left of one resource; `finalizers` holds each left object's finalizers.
    pub fn count<'a>(
        &mut self,
        resource: &ApiResource,
        finalizers: impl IntoIterator<Item = &'a [String]>,
    ) {
        let mut left = 0;
        for held in finalizers {
            left += 1;
            for f in held {
                *self.finalizers.entry(f.clone()).or_default() += 1;
            }
        }
        if left > 0 {
            // Upstream writes `resource.group`, so core resources end in a dot.
            self.resources.insert(format!("{}.{}", resource.plural, resource.group), left);
        }
    }

    /// The namespace's status conditions that say what blocks its deletion, worded as
    /// upstream's namespace controller words them.
    pub fn conditions(&self, now: Timestamp) -> Vec<NamespaceCondition> {
        let condition =
            |kind: &str, status: bool, reason: &str, message: String| NamespaceCondition {
                type_: kind.to_string(),
                status: if status { "True" } else { "False" }.to_string(),
                last_transition_time: Some(Time(now)),
                reason: Some(reason.to_string()),
                message: Some(message),
            };
        let content: Vec<String> =
            self.resources.iter().map(|(r, n)| format!("{r} has {n} resource instances")).collect();
        let finalizers: Vec<String> =
            self.finalizers.iter().map(|(f, n)| format!("{f} in {n} resource instances")).collect();
        vec![
            match &self.discovery_failure {
                Some(e) => condition(
                    "NamespaceDeletionDiscoveryFailure",
                    true,
                    "DiscoveryFailed",
                    e.clone(),
                ),
                None => condition(
                    "NamespaceDeletionDiscoveryFailure",
                    false,
                    "ResourcesDiscovered",
                    "All resources successfully discovered".into(),
                ),
            },
            condition(
                "NamespaceDeletionGroupVersionParsingFailure",
                false,
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed".into(),
            ),
            if self.failures.is_empty() {
                condition(
                    "NamespaceDeletionContentFailure",
                    false,
                    "ContentDeleted",
                    "All content successfully deleted, may be waiting on finalization".into(),
                )
            } else {
                condition(
                    "NamespaceDeletionContentFailure",
                    true,
                    "ContentDeletionFailed",
                    format!(
                        "Failed to delete all resource types, {} remaining: {}",
                        self.failures.len(),
                        self.failures.join(", ")
                    ),
                )
            },
            if content.is_empty() {
                condition(
                    "NamespaceContentRemaining",
                    false,
                    "ContentRemoved",
                    "All content successfully removed".into(),
                )
            } else {
                condition(
                    "NamespaceContentRemaining",
                    true,
                    "SomeResourcesRemain",
                    format!("Some resources are remaining: {}", content.join(", ")),
                )
            },
            if finalizers.is_empty() {
                condition(
                    "NamespaceFinalizersRemaining",
                    false,
                    "ContentHasNoFinalizers",
                    "All content-preserving finalizers finished".into(),
                )
            } else {
                condition(
                    "NamespaceFinalizersRemaining",
                    true,
                    "SomeFinalizersRemain",
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        finalizers.join(", ")
                    ),
                )
            },
        ]
    }
}

/// Whether two condition lists say the same (times aside), so that an unchanged report is
/// not written again.
pub fn same_conditions(a: &[NamespaceCondition], b: &[NamespaceCondition]) -> bool {
    let key = |c: &NamespaceCondition| {
        (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone())
    };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| key(x) == key(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NamespaceSpec;
    use kube::api::ObjectMeta;

    fn caps(scope: Scope, ops: &[&str]) -> ApiCapabilities {
        ApiCapabilities {
            scope,
            subresources: vec![],
            operations: ops.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn resource(group: &str, plural: &str) -> ApiResource {
        ApiResource {
            group: group.into(),
            version: "v1".into(),
            api_version: if group.is_empty() { "v1".into() } else { format!("{group}/v1") },
            kind: String::new(),
            plural: plural.into(),
        }
    }

    #[test]
    fn only_namespaced_listable_deletable_resources_are_emptied() {
        let all = [verbs::LIST, verbs::DELETE, verbs::DELETE_COLLECTION];
        let found = deletable([
            (resource("", "pods"), caps(Scope::Namespaced, &all)),
            (resource("", "nodes"), caps(Scope::Cluster, &all)),
            (resource("", "bindings"), caps(Scope::Namespaced, &[verbs::CREATE])),
            (resource("x.io", "things"), caps(Scope::Namespaced, &[verbs::LIST, verbs::DELETE])),
        ]);
        let names: Vec<_> =
            found.iter().map(|d| (d.resource.plural.as_str(), d.collection)).collect();
        assert_eq!(names, [("pods", true), ("things", false)]);
    }

    #[test]
    fn only_a_terminating_namespace_holding_the_finalizer_is_emptied() {
        let mut ns = Namespace {
            metadata: ObjectMeta { name: Some("a".into()), ..Default::default() },
            spec: Some(NamespaceSpec { finalizers: Some(vec![FINALIZER.into(), "other".into()]) }),
            ..Default::default()
        };
        assert!(!needs_emptying(&ns));
        ns.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        assert!(needs_emptying(&ns));
        let done = finalized(&ns);
        assert_eq!(done.spec.and_then(|s| s.finalizers), Some(vec!["other".to_string()]));
        assert!(!needs_emptying(&finalized(&ns)));
    }

    #[test]
    fn conditions_name_what_remains_as_upstream() {
        let mut left = Remaining::default();
        let held = vec!["example.com/hold".to_string()];
        left.count(&resource("", "configmaps"), [held.as_slice(), &[]]);
        left.count(&resource("", "secrets"), std::iter::empty());
        assert!(!left.is_empty());
        let conditions = left.conditions(Timestamp::UNIX_EPOCH);
        let by_type =
            |t: &str| conditions.iter().find(|c| c.type_ == t).cloned().unwrap_or_default();
        let content = by_type("NamespaceContentRemaining");
        assert_eq!(content.status, "True");
        assert_eq!(
            content.message.as_deref(),
            Some("Some resources are remaining: configmaps. has 2 resource instances")
        );
        let finalizers = by_type("NamespaceFinalizersRemaining");
        assert_eq!(
            finalizers.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
            )
        );
        assert!(Remaining::default().is_empty());
        assert!(same_conditions(&conditions, &left.conditions(Timestamp::now())));
    }
}
