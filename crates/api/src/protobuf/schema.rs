//! Which protobuf message an `apiVersion` and `kind` are encoded as.
//!
//! Every API group version has one upstream `generated.proto`; the build compiles them all
//! into one descriptor set (`build.rs`). A kind is the message of its name in its group
//! version's package. Some kinds of `meta.k8s.io/v1` are found under other group versions,
//! as upstream registers them (`metav1.AddToGroupVersion`): the option kinds
//! (`DeleteOptions`, ...) and `WatchEvent` in every group version, and `Status` and the
//! discovery kinds as "unversioned" kinds of `v1` (the `apiVersion` errors are served with).

use std::collections::HashSet;
use std::sync::LazyLock;

use prost_reflect::prost::Message;
use prost_reflect::prost_types::FileDescriptorSet;
use prost_reflect::{DescriptorPool, MessageDescriptor};

/// The encoded `FileDescriptorSet` of every upstream schema.
pub(crate) static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kubernetes.fds"));

/// The descriptors of the schemas krust serves, decoded once, when something first needs
/// reflection (a protobuf body, an OpenAPI document); the checks of JSON bodies read the
/// compact [`super::types`] instead.
static POOL: LazyLock<Option<DescriptorPool>> = LazyLock::new(|| {
    let set = FileDescriptorSet::decode(DESCRIPTORS).ok()?;
    DescriptorPool::from_file_descriptor_set(served(set)).ok()
});

/// The descriptor pool of the upstream schemas krust serves (`None` only if the build wrote a
/// broken one).
pub fn pool() -> Option<&'static DescriptorPool> {
    POOL.as_ref()
}

/// Groups whose every version is kept: `meta.k8s.io`, and the review APIs the server
/// answers outside the catalog (`SelfSubjectReview` in `v1`, `v1beta1` and `v1alpha1`).
const ALWAYS_KEPT: &[&str] = &["meta.k8s.io", "authentication.k8s.io", "authorization.k8s.io"];

/// The files of `set` that a served kind may need (see [`served_files`]).
fn served(set: FileDescriptorSet) -> FileDescriptorSet {
    let keep: HashSet<String> =
        served_files(set.file.iter().map(|f| (f.name(), f.package(), f.dependency.as_slice())))
            .into_iter()
            .map(str::to_string)
            .collect();
    FileDescriptorSet { file: set.file.into_iter().filter(|f| keep.contains(f.name())).collect() }
}

/// The names of the files, of those given as (name, package, imports), that a served kind
/// may need: all but those of the pre-release group versions of [`GROUP_VERSIONS`]
/// (`apps/v1beta1`, ...) that the catalog does not serve, unless a kept file imports them.
/// Every GA version is kept, for the kinds served outside the catalog (reviews,
/// subresources' bodies). Decoded, the unserved beta and alpha half of the schemas would
/// cost megabytes of memory for nothing.
pub(crate) fn served_files<'a, D: AsRef<str> + 'a>(
    files: impl Iterator<Item = (&'a str, &'a str, &'a [D])> + Clone,
) -> HashSet<&'a str> {
    let serving: HashSet<(&str, &str)> =
        crate::catalog::Catalog::builtin().group_versions().into_iter().collect();
    let unserved: HashSet<&str> = GROUP_VERSIONS
        .iter()
        .filter(|(group, version, _)| {
            (version.contains("alpha") || version.contains("beta"))
                && !ALWAYS_KEPT.contains(group)
                && !serving.contains(&(*group, *version))
        })
        .map(|(.., package)| *package)
        .collect();
    let mut keep: HashSet<&str> = files
        .clone()
        .filter(|(_, package, _)| !unserved.contains(package))
        .map(|(name, ..)| name)
        .collect();
    // Imports of kept files are kept, until nothing more is added.
    loop {
        let before = keep.len();
        for (name, _, imports) in files.clone() {
            if keep.contains(name) {
                keep.extend(imports.iter().map(AsRef::as_ref));
            }
        }
        if keep.len() == before {
            return keep;
        }
    }
}

/// The prefix of the packages of `apiextensions.k8s.io`, whose schemas come with the set
/// although custom resource definitions are not served from them.
pub const APIEXTENSIONS: &str = "apiextensions_apiserver.pkg.apis.apiextensions.";

/// The protobuf package of each group version: (group, version, package).
const GROUP_VERSIONS: &[(&str, &str, &str)] = &[
    ("", "v1", "api.core.v1"),
    ("admissionregistration.k8s.io", "v1", "api.admissionregistration.v1"),
    ("admissionregistration.k8s.io", "v1beta1", "api.admissionregistration.v1beta1"),
    ("admissionregistration.k8s.io", "v1alpha1", "api.admissionregistration.v1alpha1"),
    ("apiregistration.k8s.io", "v1", "kube_aggregator.pkg.apis.apiregistration.v1"),
    ("apiregistration.k8s.io", "v1beta1", "kube_aggregator.pkg.apis.apiregistration.v1beta1"),
    ("apps", "v1", "api.apps.v1"),
    ("apps", "v1beta2", "api.apps.v1beta2"),
    ("apps", "v1beta1", "api.apps.v1beta1"),
    ("authentication.k8s.io", "v1", "api.authentication.v1"),
    ("authentication.k8s.io", "v1beta1", "api.authentication.v1beta1"),
    ("authentication.k8s.io", "v1alpha1", "api.authentication.v1alpha1"),
    ("authorization.k8s.io", "v1", "api.authorization.v1"),
    ("authorization.k8s.io", "v1beta1", "api.authorization.v1beta1"),
    ("autoscaling", "v1", "api.autoscaling.v1"),
    ("autoscaling", "v2", "api.autoscaling.v2"),
    ("autoscaling", "v2beta2", "api.autoscaling.v2beta2"),
    ("autoscaling", "v2beta1", "api.autoscaling.v2beta1"),
    ("batch", "v1", "api.batch.v1"),
    ("batch", "v1beta1", "api.batch.v1beta1"),
    ("certificates.k8s.io", "v1", "api.certificates.v1"),
    ("certificates.k8s.io", "v1beta1", "api.certificates.v1beta1"),
    ("certificates.k8s.io", "v1alpha1", "api.certificates.v1alpha1"),
    ("coordination.k8s.io", "v1", "api.coordination.v1"),
    ("coordination.k8s.io", "v1beta1", "api.coordination.v1beta1"),
    ("coordination.k8s.io", "v1alpha2", "api.coordination.v1alpha2"),
    ("discovery.k8s.io", "v1", "api.discovery.v1"),
    ("discovery.k8s.io", "v1beta1", "api.discovery.v1beta1"),
    ("events.k8s.io", "v1", "api.events.v1"),
    ("events.k8s.io", "v1beta1", "api.events.v1beta1"),
    ("extensions", "v1beta1", "api.extensions.v1beta1"),
    ("flowcontrol.apiserver.k8s.io", "v1", "api.flowcontrol.v1"),
    ("flowcontrol.apiserver.k8s.io", "v1beta3", "api.flowcontrol.v1beta3"),
    ("flowcontrol.apiserver.k8s.io", "v1beta2", "api.flowcontrol.v1beta2"),
    ("flowcontrol.apiserver.k8s.io", "v1beta1", "api.flowcontrol.v1beta1"),
    ("internal.apiserver.k8s.io", "v1alpha1", "api.apiserverinternal.v1alpha1"),
    ("meta.k8s.io", "v1", "apimachinery.pkg.apis.meta.v1"),
    ("meta.k8s.io", "v1beta1", "apimachinery.pkg.apis.meta.v1beta1"),
    ("networking.k8s.io", "v1", "api.networking.v1"),
    ("networking.k8s.io", "v1beta1", "api.networking.v1beta1"),
    ("node.k8s.io", "v1", "api.node.v1"),
    ("node.k8s.io", "v1beta1", "api.node.v1beta1"),
    ("node.k8s.io", "v1alpha1", "api.node.v1alpha1"),
    ("policy", "v1", "api.policy.v1"),
    ("policy", "v1beta1", "api.policy.v1beta1"),
    ("rbac.authorization.k8s.io", "v1", "api.rbac.v1"),
    ("rbac.authorization.k8s.io", "v1beta1", "api.rbac.v1beta1"),
    ("rbac.authorization.k8s.io", "v1alpha1", "api.rbac.v1alpha1"),
    ("resource.k8s.io", "v1", "api.resource.v1"),
    ("resource.k8s.io", "v1beta2", "api.resource.v1beta2"),
    ("resource.k8s.io", "v1beta1", "api.resource.v1beta1"),
    ("resource.k8s.io", "v1alpha3", "api.resource.v1alpha3"),
    ("scheduling.k8s.io", "v1", "api.scheduling.v1"),
    ("scheduling.k8s.io", "v1beta1", "api.scheduling.v1beta1"),
    ("scheduling.k8s.io", "v1alpha1", "api.scheduling.v1alpha1"),
    ("storage.k8s.io", "v1", "api.storage.v1"),
    ("storage.k8s.io", "v1beta1", "api.storage.v1beta1"),
    ("storage.k8s.io", "v1alpha1", "api.storage.v1alpha1"),
    ("storagemigration.k8s.io", "v1beta1", "api.storagemigration.v1beta1"),
];

/// The versions of `group` that have protobuf schemas.
pub fn versions(group: &str) -> impl Iterator<Item = &'static str> + '_ {
    GROUP_VERSIONS.iter().filter(move |(g, ..)| *g == group).map(|(_, v, _)| *v)
}

/// The package of a group version.
fn package(group: &str, version: &str) -> Option<&'static str> {
    GROUP_VERSIONS.iter().find(|(g, v, _)| *g == group && *v == version).map(|(_, _, p)| *p)
}

/// The message an object of `api_version` and `kind` is encoded as, if known.
pub fn message(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    resolve(api_version, kind, |package, kind| {
        pool()?.get_message_by_name(&format!("{package}.{kind}"))
    })
}

/// The message of `api_version` and `kind`, found with `lookup(package, message name)`: the
/// kind in its group version's package, else the `meta.k8s.io` kinds upstream registers in
/// every group version (options, `WatchEvent`) or as unversioned kinds of `v1`.
pub(crate) fn resolve<T>(
    api_version: &str,
    kind: &str,
    lookup: impl Fn(&str, &str) -> Option<T>,
) -> Option<T> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let find = |group: &str, version: &str| lookup(package(group, version)?, kind);
    find(group, version).or_else(|| {
        if kind.ends_with("Options") {
            return find("meta.k8s.io", version).or_else(|| find("meta.k8s.io", "v1"));
        }
        let unversioned = group.is_empty() && version == "v1" && UNVERSIONED.contains(&kind);
        if unversioned || kind == "WatchEvent" {
            return find("meta.k8s.io", "v1");
        }
        None
    })
}

/// The kinds upstream registers as unversioned kinds of `v1` (`metav1.Unversioned`).
const UNVERSIONED: &[&str] =
    &["Status", "APIVersions", "APIGroupList", "APIGroup", "APIResourceList"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_holds_served_versions_and_what_they_import() {
        assert!(message("apps/v1", "Deployment").is_some());
        assert!(message("v1", "Pod").is_some());
        assert!(message("policy/v1", "Eviction").is_some());
        assert!(message("v1", "Status").is_some());
        assert!(message("meta.k8s.io/v1beta1", "PartialObjectMetadataList").is_some());
        assert!(message("apps/v1", "DeleteOptions").is_some());
        // Served outside the catalog.
        assert!(message("authorization.k8s.io/v1", "SelfSubjectAccessReview").is_some());
        assert!(message("authentication.k8s.io/v1", "TokenReview").is_some());
        assert!(message("authentication.k8s.io/v1beta1", "SelfSubjectReview").is_some());
        assert!(message("authentication.k8s.io/v1alpha1", "SelfSubjectReview").is_some());
        // Not served: not decoded.
        assert!(message("apps/v1beta1", "Deployment").is_none());
        assert!(message("extensions/v1beta1", "Ingress").is_none());
    }
}
