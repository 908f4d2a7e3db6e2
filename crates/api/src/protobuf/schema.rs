//! Which protobuf message an `apiVersion` and `kind` are encoded as.
//!
//! Every API group version has one upstream `generated.proto`, compiled into a descriptor by
//! the `k8s-rs-pb` crate; a kind is the message of its name in its group version's file.
//! The option kinds of `meta.k8s.io` (`DeleteOptions`, ...) are sent under every group
//! version, as upstream registers them in each.

use ::protobuf::reflect::{FileDescriptor, MessageDescriptor};
use k8s_rs_pb as pb;

/// A generated file's descriptor.
type File = fn() -> &'static FileDescriptor;

/// The descriptor file of each group version: (group, version, file).
const GROUP_VERSIONS: &[(&str, &str, File)] = &[
    ("", "v1", pb::api::core::v1::file_descriptor),
    ("admissionregistration.k8s.io", "v1", pb::api::admissionregistration::v1::file_descriptor),
    (
        "admissionregistration.k8s.io",
        "v1beta1",
        pb::api::admissionregistration::v1beta1::file_descriptor,
    ),
    (
        "admissionregistration.k8s.io",
        "v1alpha1",
        pb::api::admissionregistration::v1alpha1::file_descriptor,
    ),
    (
        "apiregistration.k8s.io",
        "v1",
        pb::kube_aggregator::pkg::apis::apiregistration::v1::file_descriptor,
    ),
    (
        "apiregistration.k8s.io",
        "v1beta1",
        pb::kube_aggregator::pkg::apis::apiregistration::v1beta1::file_descriptor,
    ),
    ("apps", "v1", pb::api::apps::v1::file_descriptor),
    ("apps", "v1beta2", pb::api::apps::v1beta2::file_descriptor),
    ("apps", "v1beta1", pb::api::apps::v1beta1::file_descriptor),
    ("authentication.k8s.io", "v1", pb::api::authentication::v1::file_descriptor),
    ("authentication.k8s.io", "v1beta1", pb::api::authentication::v1beta1::file_descriptor),
    ("authentication.k8s.io", "v1alpha1", pb::api::authentication::v1alpha1::file_descriptor),
    ("authorization.k8s.io", "v1", pb::api::authorization::v1::file_descriptor),
    ("authorization.k8s.io", "v1beta1", pb::api::authorization::v1beta1::file_descriptor),
    ("autoscaling", "v1", pb::api::autoscaling::v1::file_descriptor),
    ("autoscaling", "v2", pb::api::autoscaling::v2::file_descriptor),
    ("autoscaling", "v2beta2", pb::api::autoscaling::v2beta2::file_descriptor),
    ("autoscaling", "v2beta1", pb::api::autoscaling::v2beta1::file_descriptor),
    ("batch", "v1", pb::api::batch::v1::file_descriptor),
    ("batch", "v1beta1", pb::api::batch::v1beta1::file_descriptor),
    ("certificates.k8s.io", "v1", pb::api::certificates::v1::file_descriptor),
    ("certificates.k8s.io", "v1beta1", pb::api::certificates::v1beta1::file_descriptor),
    ("certificates.k8s.io", "v1alpha1", pb::api::certificates::v1alpha1::file_descriptor),
    ("coordination.k8s.io", "v1", pb::api::coordination::v1::file_descriptor),
    ("coordination.k8s.io", "v1beta1", pb::api::coordination::v1beta1::file_descriptor),
    ("coordination.k8s.io", "v1alpha2", pb::api::coordination::v1alpha2::file_descriptor),
    ("discovery.k8s.io", "v1", pb::api::discovery::v1::file_descriptor),
    ("discovery.k8s.io", "v1beta1", pb::api::discovery::v1beta1::file_descriptor),
    ("events.k8s.io", "v1", pb::api::events::v1::file_descriptor),
    ("events.k8s.io", "v1beta1", pb::api::events::v1beta1::file_descriptor),
    ("extensions", "v1beta1", pb::api::extensions::v1beta1::file_descriptor),
    ("flowcontrol.apiserver.k8s.io", "v1", pb::api::flowcontrol::v1::file_descriptor),
    ("flowcontrol.apiserver.k8s.io", "v1beta3", pb::api::flowcontrol::v1beta3::file_descriptor),
    ("flowcontrol.apiserver.k8s.io", "v1beta2", pb::api::flowcontrol::v1beta2::file_descriptor),
    ("flowcontrol.apiserver.k8s.io", "v1beta1", pb::api::flowcontrol::v1beta1::file_descriptor),
    (
        "internal.apiserver.k8s.io",
        "v1alpha1",
        pb::api::apiserverinternal::v1alpha1::file_descriptor,
    ),
    ("meta.k8s.io", "v1", pb::apimachinery::pkg::apis::meta::v1::file_descriptor),
    ("meta.k8s.io", "v1beta1", pb::apimachinery::pkg::apis::meta::v1beta1::file_descriptor),
    ("networking.k8s.io", "v1", pb::api::networking::v1::file_descriptor),
    ("networking.k8s.io", "v1beta1", pb::api::networking::v1beta1::file_descriptor),
    ("node.k8s.io", "v1", pb::api::node::v1::file_descriptor),
    ("node.k8s.io", "v1beta1", pb::api::node::v1beta1::file_descriptor),
    ("node.k8s.io", "v1alpha1", pb::api::node::v1alpha1::file_descriptor),
    ("policy", "v1", pb::api::policy::v1::file_descriptor),
    ("policy", "v1beta1", pb::api::policy::v1beta1::file_descriptor),
    ("rbac.authorization.k8s.io", "v1", pb::api::rbac::v1::file_descriptor),
    ("rbac.authorization.k8s.io", "v1beta1", pb::api::rbac::v1beta1::file_descriptor),
    ("rbac.authorization.k8s.io", "v1alpha1", pb::api::rbac::v1alpha1::file_descriptor),
    ("resource.k8s.io", "v1", pb::api::resource::v1::file_descriptor),
    ("resource.k8s.io", "v1beta2", pb::api::resource::v1beta2::file_descriptor),
    ("resource.k8s.io", "v1beta1", pb::api::resource::v1beta1::file_descriptor),
    ("resource.k8s.io", "v1alpha3", pb::api::resource::v1alpha3::file_descriptor),
    ("scheduling.k8s.io", "v1", pb::api::scheduling::v1::file_descriptor),
    ("scheduling.k8s.io", "v1beta1", pb::api::scheduling::v1beta1::file_descriptor),
    ("scheduling.k8s.io", "v1alpha1", pb::api::scheduling::v1alpha1::file_descriptor),
    ("storage.k8s.io", "v1", pb::api::storage::v1::file_descriptor),
    ("storage.k8s.io", "v1beta1", pb::api::storage::v1beta1::file_descriptor),
    ("storage.k8s.io", "v1alpha1", pb::api::storage::v1alpha1::file_descriptor),
    ("storagemigration.k8s.io", "v1beta1", pb::api::storagemigration::v1beta1::file_descriptor),
];

/// The descriptor file of a group version.
fn file(group: &str, version: &str) -> Option<&'static FileDescriptor> {
    GROUP_VERSIONS.iter().find(|(g, v, _)| *g == group && *v == version).map(|(_, _, file)| file())
}

/// The message an object of `api_version` and `kind` is encoded as, if known.
pub fn message(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    if kind.is_empty() || kind.contains('.') {
        return None;
    }
    file(group, version).and_then(|f| f.message_by_package_relative_name(kind)).or_else(|| {
        if !kind.ends_with("Options") {
            return None;
        }
        let meta_version = if version == "v1beta1" { "v1beta1" } else { "v1" };
        file("meta.k8s.io", meta_version)
            .and_then(|f| f.message_by_package_relative_name(kind))
            .or_else(|| file("meta.k8s.io", "v1")?.message_by_package_relative_name(kind))
    })
}
