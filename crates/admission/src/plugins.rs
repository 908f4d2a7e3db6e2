//! Which plugins run, and in what order: upstream's names, its order, its default set and its
//! `--enable-admission-plugins` / `--disable-admission-plugins` rules.

use std::collections::BTreeSet;
use std::sync::Arc;

use krust_auth::Authorizer;

use crate::service_account::NameSuffix;
use crate::{
    Chain, PluginConfigs, certificate_approval, certificate_signing,
    certificate_subject_restriction, cluster_trust_bundle_attest, default_ingress_class,
    default_storage_class, default_toleration_seconds, limit_ranger, namespace_lifecycle,
    persistent_volume_claim_resize, pod_security, pod_topology_labels, priority, resource_quota,
    runtime_class, service_account, storage_object_in_use_protection, taint_nodes_by_condition,
};

/// Every plugin upstream knows, in upstream's order (`AllOrderedPlugins`).
pub const ALL_UPSTREAM: &[&str] = &[
    "AlwaysAdmit",
    "NamespaceAutoProvision",
    "NamespaceLifecycle",
    "NamespaceExists",
    "LimitPodHardAntiAffinityTopology",
    "LimitRanger",
    "ServiceAccount",
    "NodeRestriction",
    "TaintNodesByCondition",
    "AlwaysPullImages",
    "ImagePolicyWebhook",
    "PodSecurity",
    "PodNodeSelector",
    "Priority",
    "DefaultTolerationSeconds",
    "PodTolerationRestriction",
    "EventRateLimit",
    "ExtendedResourceToleration",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "OwnerReferencesPermissionEnforcement",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "DenyServiceExternalIPs",
    "PodTopologyLabels",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
    "AlwaysDeny",
];

/// The plugins on unless disabled: upstream's default set (the complement of its
/// `DefaultOffAdmissionPlugins`), plus NodeRestriction, which kubeadm and k3s turn on because
/// nodes hold credentials of their own.
pub const DEFAULT_ENABLED: &[&str] = &[
    "NamespaceLifecycle",
    "NodeRestriction",
    "LimitRanger",
    "ServiceAccount",
    "TaintNodesByCondition",
    "PodSecurity",
    "Priority",
    "DefaultTolerationSeconds",
    "DefaultStorageClass",
    "StorageObjectInUseProtection",
    "PersistentVolumeClaimResize",
    "RuntimeClass",
    "CertificateApproval",
    "CertificateSigning",
    "ClusterTrustBundleAttest",
    "CertificateSubjectRestriction",
    "DefaultIngressClass",
    "PodTopologyLabels",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
    "ResourceQuota",
];

/// The plugins this crate implements (others are named but do nothing yet). PodTopologyLabels
/// is a no-op as upstream's in 1.33 (behind a feature gate that is off), and
/// ClusterTrustBundleAttest has nothing to judge while `clustertrustbundles` are not served.
pub const IMPLEMENTED: &[&str] = &[
    namespace_lifecycle::NAME,
    limit_ranger::NAME,
    service_account::NAME,
    taint_nodes_by_condition::NAME,
    priority::NAME,
    default_toleration_seconds::NAME,
    default_storage_class::NAME,
    storage_object_in_use_protection::NAME,
    pod_security::NAME,
    resource_quota::NAME,
    "NodeRestriction",
    persistent_volume_claim_resize::NAME,
    runtime_class::NAME,
    certificate_approval::NAME,
    certificate_signing::NAME,
    cluster_trust_bundle_attest::NAME,
    certificate_subject_restriction::NAME,
    default_ingress_class::NAME,
    pod_topology_labels::NAME,
];

/// A plugin name upstream does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    /// Named in `--enable-admission-plugins` or `--disable-admission-plugins`.
    #[error("{flag} plugin \"{name}\" is unknown")]
    Unknown {
        /// The flag.
        flag: &'static str,
        /// The name.
        name: String,
    },
}

/// What the flags select: the enabled plugins' names, in upstream's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Every enabled plugin, including those implemented outside this crate (webhooks,
    /// policies) and those not implemented yet.
    pub enabled: Vec<&'static str>,
}

impl Default for Selection {
    /// Upstream's default set.
    fn default() -> Self {
        Self {
            enabled: ALL_UPSTREAM.iter().copied().filter(|n| DEFAULT_ENABLED.contains(n)).collect(),
        }
    }
}

impl Selection {
    /// Upstream's rule: the default set, plus `enable`, minus `disable` (disable wins); names
    /// must be upstream's.
    pub fn new(enable: &[String], disable: &[String]) -> Result<Self, SelectionError> {
        let known = |flag: &'static str,
                     names: &[String]|
         -> Result<BTreeSet<&'static str>, SelectionError> {
            names
                .iter()
                .map(|n| n.trim())
                .filter(|n| !n.is_empty())
                .map(|n| {
                    ALL_UPSTREAM
                        .iter()
                        .copied()
                        .find(|k| *k == n)
                        .ok_or_else(|| SelectionError::Unknown { flag, name: n.to_string() })
                })
                .collect()
        };
        let enable = known("enable-admission-plugins", enable)?;
        let disable = known("disable-admission-plugins", disable)?;
        let enabled = ALL_UPSTREAM
            .iter()
            .copied()
            .filter(|n| (DEFAULT_ENABLED.contains(n) || enable.contains(n)) && !disable.contains(n))
            .collect();
        Ok(Self { enabled })
    }

    /// Whether `name` is enabled.
    pub fn has(&self, name: &str) -> bool {
        self.enabled.contains(&name)
    }

    /// Enabled names this crate does not implement (yet), for a warning.
    pub fn unimplemented(&self) -> Vec<&'static str> {
        const ELSEWHERE: &[&str] = &[
            "MutatingAdmissionWebhook",
            "ValidatingAdmissionWebhook",
            "ValidatingAdmissionPolicy",
        ];
        self.enabled
            .iter()
            .copied()
            .filter(|n| !IMPLEMENTED.contains(n) && !ELSEWHERE.contains(n))
            .collect()
    }
}

/// The chain of the selected plugins this crate implements, in upstream's order.
/// `configs` holds the configurations of the plugins that take one
/// (`--admission-control-config-file`); `suffix` makes the random part of generated names
/// (`kube-api-access-XXXXX`); `authorizer` is the server's (`system:masters` included), which
/// the certificate plugins ask about signers, as upstream's plugins that want an authorizer.
pub fn build(
    selection: &Selection,
    configs: &PluginConfigs,
    suffix: NameSuffix,
    authorizer: Arc<dyn Authorizer>,
) -> Chain {
    let mut chain = Chain::default();
    for name in &selection.enabled {
        match *name {
            namespace_lifecycle::NAME => {
                chain.mutating.push(Box::new(namespace_lifecycle::NamespaceLifecycle));
            }
            limit_ranger::NAME => {
                chain.mutating.push(Box::new(limit_ranger::LimitRanger));
                chain.validating.push(Box::new(limit_ranger::LimitRanger));
            }
            service_account::NAME => {
                let plugin = service_account::ServiceAccount::new(Arc::clone(&suffix));
                chain.mutating.push(Box::new(plugin));
            }
            taint_nodes_by_condition::NAME => {
                chain.mutating.push(Box::new(taint_nodes_by_condition::TaintNodesByCondition));
            }
            pod_security::NAME => {
                chain
                    .validating
                    .push(Box::new(pod_security::PodSecurity::new(configs.pod_security.clone())));
            }
            priority::NAME => {
                chain.mutating.push(Box::new(priority::Priority));
                chain.validating.push(Box::new(priority::Priority));
            }
            default_toleration_seconds::NAME => {
                chain.mutating.push(Box::new(default_toleration_seconds::DefaultTolerationSeconds));
            }
            default_storage_class::NAME => {
                chain.mutating.push(Box::new(default_storage_class::DefaultStorageClass));
            }
            storage_object_in_use_protection::NAME => chain
                .mutating
                .push(Box::new(storage_object_in_use_protection::StorageObjectInUseProtection)),
            "NodeRestriction" => {
                chain.mutating.push(Box::new(crate::node_restriction::NodeRestriction::new()));
            }
            persistent_volume_claim_resize::NAME => chain
                .validating
                .push(Box::new(persistent_volume_claim_resize::PersistentVolumeClaimResize)),
            runtime_class::NAME => {
                chain.mutating.push(Box::new(runtime_class::RuntimeClass));
                chain.validating.push(Box::new(runtime_class::RuntimeClass));
            }
            certificate_approval::NAME => chain.validating.push(Box::new(
                certificate_approval::CertificateApproval::new(Arc::clone(&authorizer)),
            )),
            certificate_signing::NAME => chain.validating.push(Box::new(
                certificate_signing::CertificateSigning::new(Arc::clone(&authorizer)),
            )),
            cluster_trust_bundle_attest::NAME => chain.validating.push(Box::new(
                cluster_trust_bundle_attest::ClusterTrustBundleAttest::new(Arc::clone(&authorizer)),
            )),
            certificate_subject_restriction::NAME => chain
                .validating
                .push(Box::new(certificate_subject_restriction::CertificateSubjectRestriction)),
            default_ingress_class::NAME => {
                chain.mutating.push(Box::new(default_ingress_class::DefaultIngressClass));
            }
            pod_topology_labels::NAME => {
                chain.mutating.push(Box::new(pod_topology_labels::PodTopologyLabels::new(
                    pod_topology_labels::ENABLED_BY_DEFAULT,
                )))
            }
            resource_quota::NAME => chain.quota = Some(resource_quota::ResourceQuota),
            _ => {}
        }
    }
    chain
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use super::*;

    /// An authorizer allowing nothing.
    fn nobody() -> Arc<dyn Authorizer> {
        Arc::new(krust_auth::Chain(Vec::new()))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn selections_follow_upstream_rules() {
        let cases: &[(&str, &[&str], &[&str], &str, bool)] = &[
            ("the defaults hold LimitRanger", &[], &[], "LimitRanger", true),
            ("disabling removes a default", &[], &["LimitRanger"], "LimitRanger", false),
            (
                "enabling adds a default-off plugin",
                &["AlwaysPullImages"],
                &[],
                "AlwaysPullImages",
                true,
            ),
            ("krust turns NodeRestriction on", &[], &[], "NodeRestriction", true),
            ("disable wins over enable", &["Priority"], &["Priority"], "Priority", false),
            ("default-off stays off", &[], &[], "AlwaysPullImages", false),
        ];
        for (case, enable, disable, name, on) in cases {
            let s = Selection::new(&names(enable), &names(disable)).unwrap();
            assert_eq!(s.has(name), *on, "{case}");
        }
    }

    #[test]
    fn an_unknown_name_is_refused_with_upstreams_message() {
        let e = Selection::new(&names(&["Nope"]), &[]).unwrap_err();
        assert_eq!(e.to_string(), "enable-admission-plugins plugin \"Nope\" is unknown");
    }

    #[test]
    fn the_chain_keeps_upstreams_order() {
        let s = Selection::new(&[], &[]).unwrap();
        let configs = PluginConfigs::default();
        let chain = build(&s, &configs, Arc::new(|| "abcde".to_string()), nobody());
        let order: Vec<&str> = chain.mutating.iter().map(|p| p.name()).collect();
        assert_eq!(
            order,
            [
                "NamespaceLifecycle",
                "LimitRanger",
                "ServiceAccount",
                "NodeRestriction",
                "TaintNodesByCondition",
                "Priority",
                "DefaultTolerationSeconds",
                "DefaultStorageClass",
                "StorageObjectInUseProtection",
                "RuntimeClass",
                "DefaultIngressClass",
                "PodTopologyLabels"
            ]
        );
        let order: Vec<&str> = chain.validating.iter().map(|p| p.name()).collect();
        assert_eq!(
            order,
            [
                "LimitRanger",
                "PodSecurity",
                "Priority",
                "PersistentVolumeClaimResize",
                "RuntimeClass",
                "CertificateApproval",
                "CertificateSigning",
                "ClusterTrustBundleAttest",
                "CertificateSubjectRestriction"
            ]
        );
        assert!(chain.quota.is_some(), "ResourceQuota is on by default");
        let off = Selection::new(&[], &names(&["ResourceQuota"])).unwrap();
        assert!(build(&off, &configs, Arc::new(|| "abcde".to_string()), nobody()).quota.is_none());
    }

    #[test]
    fn every_default_plugin_is_implemented() {
        assert_eq!(Selection::default().unimplemented(), Vec::<&str>::new());
        assert_eq!(Selection::new(&[], &[]).unwrap().unimplemented(), Vec::<&str>::new());
        let more = Selection::new(&names(&["AlwaysPullImages"]), &[]).unwrap();
        assert_eq!(more.unimplemented(), ["AlwaysPullImages"]);
    }
}
