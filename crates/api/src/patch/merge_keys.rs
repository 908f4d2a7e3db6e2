//! Patch metadata of the built-in types: which lists merge, and on which key.
//!
//! Upstream reads `patchStrategy` and `patchMergeKey` from the tags of Go struct fields. We
//! keep objects as JSON and have no structs, so this module holds the same facts as a small
//! type graph:
//!
//! - [`ROOTS`] maps an object's API group and kind to the name of its top-level type;
//! - [`FIELDS`] maps (type name, field name) to the type of the field's value (for a list,
//!   of its items) and, for lists, the [`ListStrategy`].
//!
//! Walking a JSON path from the root through [`TypeRef::field`] finds the metadata of any
//! list inside an object: `spec.template.spec.containers[].env` of a Deployment goes
//! `Workload` → `WorkloadSpec` → `PodTemplateSpec` → `PodSpec` → `Container`, whose `env`
//! merges on `name`. [`list_strategy`] does that walk for a path given as field names.
//!
//! Everything not in the tables is atomic: lists are replaced whole (what upstream does for
//! untagged fields and for custom resources) and maps are merged key by key. The `metadata`
//! of every object, known kind or not, is `ObjectMeta`.
//!
//! Type names are ours, not upstream's Go names, where one entry serves several types:
//! `Workload` is the shape shared by Deployments, ReplicaSets, StatefulSets, DaemonSets
//! and ReplicationControllers (`spec.template` and `status.conditions`), and
//! `StatusWithConditions` the status of every type whose only tagged status list is
//! `conditions` keyed by `type`.

use ListStrategy::{Atomic, MergeByKey, MergePrimitives};

/// How a list field is merged by a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Replaced whole by the patch's list (untagged fields, upstream's `atomic`).
    Atomic,
    /// A set of primitive values: the patch's values are added, `$deleteFromPrimitiveList`
    /// removes values (`patchStrategy:"merge"` without a merge key).
    MergePrimitives,
    /// A list of objects matched by the value of this key (`patchStrategy:"merge"` with a
    /// `patchMergeKey`).
    MergeByKey(&'static str),
}

/// The patch metadata of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldMeta {
    /// The type of the field's value (for a list, of its items), when known.
    pub ty: TypeRef,
    /// How the field merges when it holds a list.
    pub list: ListStrategy,
    /// Whether upstream tags the field with the `retainKeys` strategy (clients then send
    /// `$retainKeys` directives; the server only has to honour them).
    pub retain_keys: bool,
}

/// A type in the graph of [`FIELDS`], or an unknown one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeRef {
    name: Option<&'static str>,
    root: bool,
}

/// Top-level types: (API group, kind, type name).
pub const ROOTS: &[(&str, &str, &str)] = &[
    ("", "Pod", "Pod"),
    ("", "PodTemplate", "PodTemplate"),
    ("", "ReplicationController", "Workload"),
    ("", "Service", "Service"),
    ("", "Node", "Node"),
    ("", "Namespace", "WithStatusConditions"),
    ("", "PersistentVolumeClaim", "WithStatusConditions"),
    ("apps", "Deployment", "Workload"),
    ("apps", "ReplicaSet", "Workload"),
    ("apps", "StatefulSet", "Workload"),
    ("apps", "DaemonSet", "Workload"),
    ("batch", "Job", "Job"),
    ("batch", "CronJob", "CronJob"),
    ("autoscaling", "HorizontalPodAutoscaler", "WithStatusConditions"),
    ("policy", "PodDisruptionBudget", "WithStatusConditions"),
];

/// Fields: (type name, field name, type of the value or of list items, list strategy,
/// retainKeys). Only fields that lead to a tagged list, or are one, are listed; upstream
/// lists that are atomic (tolerations, command, args, envFrom, containerStatuses,
/// Endpoints subsets, EndpointSlice endpoints, taints, ...) need no entry.
pub const FIELDS: &[(&str, &str, Option<&str>, ListStrategy, bool)] = &[
    // Pod, PodTemplate and the templates of workloads.
    ("Pod", "spec", Some("PodSpec"), Atomic, false),
    ("Pod", "status", Some("PodStatus"), Atomic, false),
    ("PodTemplate", "template", Some("PodTemplateSpec"), Atomic, false),
    ("PodTemplateSpec", "metadata", Some("ObjectMeta"), Atomic, false),
    ("PodTemplateSpec", "spec", Some("PodSpec"), Atomic, false),
    ("Workload", "spec", Some("WorkloadSpec"), Atomic, false),
    ("Workload", "status", Some("StatusWithConditions"), Atomic, false),
    ("WorkloadSpec", "template", Some("PodTemplateSpec"), Atomic, false),
    ("Job", "spec", Some("JobSpec"), Atomic, false),
    ("Job", "status", Some("StatusWithConditions"), Atomic, false),
    ("JobSpec", "template", Some("PodTemplateSpec"), Atomic, false),
    ("CronJob", "spec", Some("CronJobSpec"), Atomic, false),
    ("CronJobSpec", "jobTemplate", Some("JobTemplateSpec"), Atomic, false),
    ("JobTemplateSpec", "metadata", Some("ObjectMeta"), Atomic, false),
    ("JobTemplateSpec", "spec", Some("JobSpec"), Atomic, false),
    ("WithStatusConditions", "status", Some("StatusWithConditions"), Atomic, false),
    ("StatusWithConditions", "conditions", None, MergeByKey("type"), false),
    // core/v1 PodSpec.
    ("PodSpec", "containers", Some("Container"), MergeByKey("name"), false),
    ("PodSpec", "initContainers", Some("Container"), MergeByKey("name"), false),
    ("PodSpec", "ephemeralContainers", Some("Container"), MergeByKey("name"), false),
    ("PodSpec", "volumes", None, MergeByKey("name"), true),
    ("PodSpec", "imagePullSecrets", None, MergeByKey("name"), false),
    ("PodSpec", "hostAliases", None, MergeByKey("ip"), false),
    ("PodSpec", "topologySpreadConstraints", None, MergeByKey("topologyKey"), false),
    ("PodSpec", "resourceClaims", None, MergeByKey("name"), true),
    ("PodSpec", "schedulingGates", None, MergeByKey("name"), false),
    // core/v1 Container (and EphemeralContainer, which has the same tags).
    ("Container", "ports", None, MergeByKey("containerPort"), false),
    ("Container", "env", None, MergeByKey("name"), false),
    ("Container", "volumeMounts", None, MergeByKey("mountPath"), false),
    ("Container", "volumeDevices", None, MergeByKey("devicePath"), false),
    // core/v1 PodStatus.
    ("PodStatus", "conditions", None, MergeByKey("type"), false),
    ("PodStatus", "podIPs", None, MergeByKey("ip"), false),
    ("PodStatus", "hostIPs", None, MergeByKey("ip"), false),
    ("PodStatus", "resourceClaimStatuses", None, MergeByKey("name"), true),
    // core/v1 Service.
    ("Service", "spec", Some("ServiceSpec"), Atomic, false),
    ("Service", "status", Some("StatusWithConditions"), Atomic, false),
    ("ServiceSpec", "ports", None, MergeByKey("port"), false),
    // core/v1 Node.
    ("Node", "spec", Some("NodeSpec"), Atomic, false),
    ("Node", "status", Some("NodeStatus"), Atomic, false),
    ("NodeSpec", "podCIDRs", None, MergePrimitives, false),
    ("NodeStatus", "conditions", None, MergeByKey("type"), false),
    ("NodeStatus", "addresses", None, MergeByKey("type"), false),
    // meta/v1 ObjectMeta, reached from every object's `metadata`.
    ("ObjectMeta", "finalizers", None, MergePrimitives, false),
    ("ObjectMeta", "ownerReferences", None, MergeByKey("uid"), false),
];

impl TypeRef {
    /// A type nothing is known about: lists are atomic, maps merge.
    pub const UNKNOWN: TypeRef = TypeRef { name: None, root: false };

    /// The top-level type of objects of `kind` in the group of `api_version`
    /// (`apps/v1` → `apps`, `v1` → the core group). Unknown kinds still have `metadata`.
    pub fn root(api_version: &str, kind: &str) -> Self {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        let name = ROOTS.iter().find(|(g, k, _)| *g == group && *k == kind).map(|(_, _, t)| *t);
        TypeRef { name, root: true }
    }

    /// A named type of [`FIELDS`] (`"PodSpec"`, `"Container"`, ...).
    pub fn named(name: &'static str) -> Self {
        TypeRef { name: Some(name), root: false }
    }

    /// The type's name, when known.
    pub fn name(self) -> Option<&'static str> {
        self.name
    }

    /// The metadata of `field` of this type.
    pub fn field(self, field: &str) -> FieldMeta {
        if self.root && field == "metadata" {
            return FieldMeta {
                ty: TypeRef::named("ObjectMeta"),
                list: Atomic,
                retain_keys: false,
            };
        }
        let found = self
            .name
            .and_then(|name| FIELDS.iter().find(|(parent, f, ..)| *parent == name && *f == field));
        match found {
            Some((_, _, ty, list, retain_keys)) => FieldMeta {
                ty: TypeRef { name: *ty, root: false },
                list: *list,
                retain_keys: *retain_keys,
            },
            None => FieldMeta { ty: TypeRef::UNKNOWN, list: Atomic, retain_keys: false },
        }
    }
}

/// The strategy of the list at `path` (field names from the object's root; list indices
/// are left out, and segments such as `[]` or `0` are skipped) in an object of `kind`.
///
/// `list_strategy("apps/v1", "Deployment", &["spec", "template", "spec", "containers",
/// "env"])` is `MergeByKey("name")`.
pub fn list_strategy(api_version: &str, kind: &str, path: &[&str]) -> ListStrategy {
    let mut ty = TypeRef::root(api_version, kind);
    let mut list = Atomic;
    for segment in path {
        if segment.is_empty() || *segment == "[]" || segment.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let meta = ty.field(segment);
        ty = meta.ty;
        list = meta.list;
    }
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_paths_find_upstream_merge_keys() {
        let cases: &[(&str, &str, &str, &[&str], ListStrategy)] = &[
            (
                "pod containers merge on name",
                "v1",
                "Pod",
                &["spec", "containers"],
                MergeByKey("name"),
            ),
            (
                "deployment template containers merge on name",
                "apps/v1",
                "Deployment",
                &["spec", "template", "spec", "containers"],
                MergeByKey("name"),
            ),
            (
                "container env merges on name",
                "apps/v1",
                "StatefulSet",
                &["spec", "template", "spec", "initContainers", "[]", "env"],
                MergeByKey("name"),
            ),
            (
                "container ports merge on containerPort",
                "v1",
                "Pod",
                &["spec", "containers", "0", "ports"],
                MergeByKey("containerPort"),
            ),
            (
                "volume mounts merge on mountPath",
                "apps/v1",
                "DaemonSet",
                &["spec", "template", "spec", "containers", "volumeMounts"],
                MergeByKey("mountPath"),
            ),
            (
                "cronjob pod templates are reached through the job template",
                "batch/v1",
                "CronJob",
                &["spec", "jobTemplate", "spec", "template", "spec", "volumes"],
                MergeByKey("name"),
            ),
            (
                "pod template volumes merge on name",
                "v1",
                "PodTemplate",
                &["template", "spec", "volumes"],
                MergeByKey("name"),
            ),
            (
                "replication controller templates are pod templates",
                "v1",
                "ReplicationController",
                &["spec", "template", "spec", "imagePullSecrets"],
                MergeByKey("name"),
            ),
            (
                "service ports merge on port",
                "v1",
                "Service",
                &["spec", "ports"],
                MergeByKey("port"),
            ),
            (
                "finalizers are a set",
                "v1",
                "ConfigMap",
                &["metadata", "finalizers"],
                MergePrimitives,
            ),
            (
                "owner references merge on uid in any kind",
                "example.com/v1",
                "Widget",
                &["metadata", "ownerReferences"],
                MergeByKey("uid"),
            ),
            (
                "template metadata has object meta tags",
                "apps/v1",
                "Deployment",
                &["spec", "template", "metadata", "finalizers"],
                MergePrimitives,
            ),
            (
                "node addresses merge on type",
                "v1",
                "Node",
                &["status", "addresses"],
                MergeByKey("type"),
            ),
            ("node pod cidrs are a set", "v1", "Node", &["spec", "podCIDRs"], MergePrimitives),
            (
                "pod conditions merge on type",
                "v1",
                "Pod",
                &["status", "conditions"],
                MergeByKey("type"),
            ),
            (
                "deployment conditions merge on type",
                "apps/v1",
                "Deployment",
                &["status", "conditions"],
                MergeByKey("type"),
            ),
            (
                "job conditions merge on type",
                "batch/v1",
                "Job",
                &["status", "conditions"],
                MergeByKey("type"),
            ),
            ("tolerations are atomic", "v1", "Pod", &["spec", "tolerations"], Atomic),
            ("container args are atomic", "v1", "Pod", &["spec", "containers", "args"], Atomic),
            (
                "container envFrom is atomic",
                "v1",
                "Pod",
                &["spec", "containers", "envFrom"],
                Atomic,
            ),
            ("endpoints subsets are atomic", "v1", "Endpoints", &["subsets"], Atomic),
            (
                "endpoint slice endpoints are atomic",
                "discovery.k8s.io/v1",
                "EndpointSlice",
                &["endpoints"],
                Atomic,
            ),
            (
                "custom resource lists are atomic",
                "example.com/v1",
                "Widget",
                &["spec", "items"],
                Atomic,
            ),
            (
                "a built-in kind name in another group is not the built-in",
                "example.com/v1",
                "Deployment",
                &["spec", "template", "spec", "containers"],
                Atomic,
            ),
            ("env is only keyed inside containers", "v1", "Pod", &["spec", "env"], Atomic),
        ];
        for (name, api_version, kind, path, want) in cases {
            assert_eq!(list_strategy(api_version, kind, path), *want, "{name}");
        }
    }

    #[test]
    fn volumes_carry_the_retain_keys_strategy() {
        let meta = TypeRef::named("PodSpec").field("volumes");
        assert!(meta.retain_keys);
        assert_eq!(meta.list, MergeByKey("name"));
    }

    #[test]
    fn every_referenced_type_has_fields_or_is_a_leaf() {
        for (_, _, root) in ROOTS {
            assert!(FIELDS.iter().any(|(t, ..)| t == root), "root {root} has no fields");
        }
        for (parent, field, ty, ..) in FIELDS {
            if let Some(ty) = ty {
                assert!(
                    FIELDS.iter().any(|(t, ..)| t == ty),
                    "{parent}.{field}: {ty} has no fields"
                );
            }
        }
    }
}
