//! The built-in resources of Kubernetes 1.33, in discovery order.
//!
//! Core `v1` comes first, then the groups in the order of upstream's aggregated discovery
//! (the group priorities of `pkg/controlplane/apiserver/aggregator.go`: apiregistration
//! first, then apps, events, ...). Within a group the preferred version comes first and
//! within a version resources are sorted by plural, as upstream's discovery lists them.

use super::conversion::{EVENTS_V1, HPA_V1};
use super::{Conversion, ResourceInfo, ScalePaths, Scope, Shared, StorageInfo, SubresourceInfo};
use crate::strategy::{self, Plain, Strategy};

/// The verbs of an ordinary resource.
const ALL: &[&str] =
    &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// The verbs of namespaces: no `deletecollection`.
const NO_COLLECTION_DELETE: &[&str] =
    &["create", "delete", "get", "list", "patch", "update", "watch"];
/// Verbs of subresources that read and write the parent (`status`, `scale`, ...).
const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
/// Verbs of the streaming subresources (`exec`, `attach`, `portforward`).
const CREATE_GET: &[&str] = &["create", "get"];
/// Verbs of the proxy subresources.
const PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];
/// `create` only.
const CREATE: &[&str] = &["create"];

const ALL_CATEGORY: &[&str] = &["all"];
const API_EXTENSIONS: &[&str] = &["api-extensions"];

/// Replicas and selector in the usual places.
const SCALE: ScalePaths = ScalePaths {
    spec_replicas: "spec.replicas",
    status_replicas: "status.replicas",
    selector: "spec.selector",
};

const fn sub(
    name: &'static str,
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> SubresourceInfo {
    SubresourceInfo { name, group, version, kind, verbs }
}

const POD_SUBRESOURCES: &[SubresourceInfo] = &[
    sub("attach", "", "v1", "PodAttachOptions", CREATE_GET),
    sub("binding", "", "v1", "Binding", CREATE),
    sub("ephemeralcontainers", "", "v1", "Pod", GET_PATCH_UPDATE),
    sub("eviction", "policy", "v1", "Eviction", CREATE),
    sub("exec", "", "v1", "PodExecOptions", CREATE_GET),
    sub("log", "", "v1", "Pod", &["get"]),
    sub("portforward", "", "v1", "PodPortForwardOptions", CREATE_GET),
    sub("proxy", "", "v1", "PodProxyOptions", PROXY),
    sub("resize", "", "v1", "Pod", GET_PATCH_UPDATE),
];
const NODE_SUBRESOURCES: &[SubresourceInfo] = &[sub("proxy", "", "v1", "NodeProxyOptions", PROXY)];
const SERVICE_SUBRESOURCES: &[SubresourceInfo] =
    &[sub("proxy", "", "v1", "ServiceProxyOptions", PROXY)];
const SERVICE_ACCOUNT_SUBRESOURCES: &[SubresourceInfo] =
    &[sub("token", "authentication.k8s.io", "v1", "TokenRequest", CREATE)];
const NAMESPACE_SUBRESOURCES: &[SubresourceInfo] =
    &[sub("finalize", "", "v1", "Namespace", &["update"])];
const CSR_SUBRESOURCES: &[SubresourceInfo] =
    &[sub("approval", "certificates.k8s.io", "v1", "CertificateSigningRequest", GET_PATCH_UPDATE)];

/// An entry with upstream's usual shape: all verbs, no subresources, stored as itself, no
/// rules.
const fn res(
    group: &'static str,
    version: &'static str,
    api_version: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    scope: Scope,
) -> ResourceInfo {
    let storage_group = if group.is_empty() { "core" } else { group };
    ResourceInfo {
        group,
        version,
        kind,
        plural,
        singular,
        scope,
        short_names: &[],
        categories: &[],
        verbs: ALL,
        status: false,
        scale: None,
        extra_subresources: &[],
        storage: StorageInfo { group: storage_group, resource: plural, api_version },
        conversion: None,
        strategy: Shared::Static(&Plain),
        definition: "",
    }
}

/// [`res`] with the served (and by default stored) api version spelled out.
macro_rules! res {
    ("", $version:literal, $($rest:tt)*) => {
        res("", $version, $version, $($rest)*)
    };
    ($group:literal, $version:literal, $($rest:tt)*) => {
        res($group, $version, concat!($group, "/", $version), $($rest)*)
    };
}

const NS: Scope = Scope::Namespaced;
const CL: Scope = Scope::Cluster;

/// Builder steps, so that each entry reads as one expression.
impl ResourceInfo {
    fn short(self, short_names: &'static [&'static str]) -> Self {
        Self { short_names, ..self }
    }
    fn cats(self, categories: &'static [&'static str]) -> Self {
        Self { categories, ..self }
    }
    fn verbs(self, verbs: &'static [&'static str]) -> Self {
        Self { verbs, ..self }
    }
    fn with_status(self) -> Self {
        Self { status: true, ..self }
    }
    fn with_scale(self) -> Self {
        Self { scale: Some(SCALE), ..self }
    }
    fn subs(self, extra_subresources: &'static [SubresourceInfo]) -> Self {
        Self { extra_subresources, ..self }
    }
    fn rules(self, strategy: &'static dyn Strategy) -> Self {
        Self { strategy: Shared::Static(strategy), ..self }
    }
    /// Stored with another version's objects (`api_version` is the stored one).
    fn stored_as(
        self,
        group: &'static str,
        resource: &'static str,
        api_version: &'static str,
        conversion: &'static dyn Conversion,
    ) -> Self {
        Self {
            storage: StorageInfo { group, resource, api_version },
            conversion: Some(Shared::Static(conversion)),
            ..self
        }
    }
}

pub(super) fn entries() -> Vec<ResourceInfo> {
    use strategy::{
        admissionregistration as admission, apiextensions, apiregistration, apps, autoscaling,
        batch, certificates, coordination, core, discovery, events, flowcontrol, networking, node,
        policy, rbac, scheduling, storage,
    };

    let list = [
        // Core v1.
        res!("", "v1", "Binding", "bindings", "binding", NS).verbs(CREATE),
        res!("", "v1", "ComponentStatus", "componentstatuses", "componentstatus", CL)
            .short(&["cs"])
            .verbs(&["get", "list"])
            .rules(&core::ComponentStatusStrategy),
        res!("", "v1", "ConfigMap", "configmaps", "configmap", NS)
            .short(&["cm"])
            .rules(&core::ConfigMapStrategy),
        res!("", "v1", "Endpoints", "endpoints", "endpoints", NS)
            .short(&["ep"])
            .rules(&core::EndpointsStrategy),
        res!("", "v1", "Event", "events", "event", NS).short(&["ev"]).rules(&core::EventStrategy),
        res!("", "v1", "LimitRange", "limitranges", "limitrange", NS)
            .short(&["limits"])
            .rules(&core::LimitRangeStrategy),
        res!("", "v1", "Namespace", "namespaces", "namespace", CL)
            .short(&["ns"])
            .verbs(NO_COLLECTION_DELETE)
            .with_status()
            .subs(NAMESPACE_SUBRESOURCES)
            .rules(&core::NamespaceStrategy),
        res!("", "v1", "Node", "nodes", "node", CL)
            .short(&["no"])
            .with_status()
            .subs(NODE_SUBRESOURCES)
            .rules(&core::NodeStrategy),
        res!(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            NS
        )
        .short(&["pvc"])
        .with_status()
        .rules(&core::PersistentVolumeClaimStrategy),
        res!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", CL)
            .short(&["pv"])
            .with_status()
            .rules(&core::PersistentVolumeStrategy),
        res!("", "v1", "Pod", "pods", "pod", NS)
            .short(&["po"])
            .cats(ALL_CATEGORY)
            .with_status()
            .subs(POD_SUBRESOURCES)
            .rules(&core::PodStrategy),
        res!("", "v1", "PodTemplate", "podtemplates", "podtemplate", NS)
            .rules(&core::PodTemplateStrategy),
        res!(
            "",
            "v1",
            "ReplicationController",
            "replicationcontrollers",
            "replicationcontroller",
            NS
        )
        .short(&["rc"])
        .cats(ALL_CATEGORY)
        .with_status()
        .with_scale()
        .rules(&core::ReplicationControllerStrategy),
        res!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", NS)
            .short(&["quota"])
            .with_status()
            .rules(&core::ResourceQuotaStrategy),
        res!("", "v1", "Secret", "secrets", "secret", NS).rules(&core::SecretStrategy),
        res!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", NS)
            .short(&["sa"])
            .subs(SERVICE_ACCOUNT_SUBRESOURCES)
            .rules(&core::ServiceAccountStrategy),
        res!("", "v1", "Service", "services", "service", NS)
            .short(&["svc"])
            .cats(ALL_CATEGORY)
            .with_status()
            .subs(SERVICE_SUBRESOURCES)
            .rules(&core::ServiceStrategy),
        // apiregistration.k8s.io: listed first by the aggregator.
        res!("apiregistration.k8s.io", "v1", "APIService", "apiservices", "apiservice", CL)
            .cats(API_EXTENSIONS)
            .with_status()
            .rules(&apiregistration::ApiServiceStrategy),
        // apps.
        res!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", NS)
            .rules(&apps::ControllerRevisionStrategy),
        res!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", NS)
            .short(&["ds"])
            .cats(ALL_CATEGORY)
            .with_status()
            .rules(&apps::DaemonSetStrategy),
        res!("apps", "v1", "Deployment", "deployments", "deployment", NS)
            .short(&["deploy"])
            .cats(ALL_CATEGORY)
            .with_status()
            .with_scale()
            .rules(&apps::DeploymentStrategy),
        res!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", NS)
            .short(&["rs"])
            .cats(ALL_CATEGORY)
            .with_status()
            .with_scale()
            .rules(&apps::ReplicaSetStrategy),
        res!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", NS)
            .short(&["sts"])
            .cats(ALL_CATEGORY)
            .with_status()
            .with_scale()
            .rules(&apps::StatefulSetStrategy),
        // events.k8s.io: stored with core v1 events.
        res!("events.k8s.io", "v1", "Event", "events", "event", NS)
            .short(&["ev"])
            .stored_as("core", "events", "v1", &EVENTS_V1)
            .rules(&events::EventStrategy),
        // autoscaling: v2 is preferred and stored; v1 converts.
        res!(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            NS
        )
        .short(&["hpa"])
        .cats(ALL_CATEGORY)
        .with_status()
        .rules(&autoscaling::HorizontalPodAutoscalerStrategy),
        res!(
            "autoscaling",
            "v1",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            "horizontalpodautoscaler",
            NS
        )
        .short(&["hpa"])
        .cats(ALL_CATEGORY)
        .with_status()
        .stored_as("autoscaling", "horizontalpodautoscalers", "autoscaling/v2", &HPA_V1)
        .rules(&autoscaling::HorizontalPodAutoscalerStrategy),
        // batch.
        res!("batch", "v1", "CronJob", "cronjobs", "cronjob", NS)
            .short(&["cj"])
            .cats(ALL_CATEGORY)
            .with_status()
            .rules(&batch::CronJobStrategy),
        res!("batch", "v1", "Job", "jobs", "job", NS)
            .cats(ALL_CATEGORY)
            .with_status()
            .rules(&batch::JobStrategy),
        // certificates.k8s.io.
        res!(
            "certificates.k8s.io",
            "v1",
            "CertificateSigningRequest",
            "certificatesigningrequests",
            "certificatesigningrequest",
            CL
        )
        .short(&["csr"])
        .with_status()
        .subs(CSR_SUBRESOURCES)
        .rules(&certificates::CertificateSigningRequestStrategy),
        // networking.k8s.io.
        res!("networking.k8s.io", "v1", "IngressClass", "ingressclasses", "ingressclass", CL)
            .rules(&networking::IngressClassStrategy),
        res!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", NS)
            .short(&["ing"])
            .with_status()
            .rules(&networking::IngressStrategy),
        res!("networking.k8s.io", "v1", "IPAddress", "ipaddresses", "ipaddress", CL)
            .short(&["ip"])
            .rules(&networking::IpAddressStrategy),
        res!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", NS)
            .short(&["netpol"])
            .rules(&networking::NetworkPolicyStrategy),
        res!("networking.k8s.io", "v1", "ServiceCIDR", "servicecidrs", "servicecidr", CL)
            .with_status()
            .rules(&networking::ServiceCidrStrategy),
        // policy.
        res!(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            "poddisruptionbudget",
            NS
        )
        .short(&["pdb"])
        .with_status()
        .rules(&policy::PodDisruptionBudgetStrategy),
        // rbac.authorization.k8s.io.
        res!(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            "clusterrolebinding",
            CL
        )
        .rules(&rbac::CLUSTER_ROLE_BINDING),
        res!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", CL)
            .rules(&rbac::ClusterRoleStrategy),
        res!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", NS)
            .rules(&rbac::ROLE_BINDING),
        res!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", NS)
            .rules(&rbac::RoleStrategy),
        // storage.k8s.io.
        res!("storage.k8s.io", "v1", "CSIDriver", "csidrivers", "csidriver", CL)
            .rules(&storage::CsiDriverStrategy),
        res!("storage.k8s.io", "v1", "CSINode", "csinodes", "csinode", CL)
            .rules(&storage::CsiNodeStrategy),
        res!(
            "storage.k8s.io",
            "v1",
            "CSIStorageCapacity",
            "csistoragecapacities",
            "csistoragecapacity",
            NS
        )
        .rules(&storage::CsiStorageCapacityStrategy),
        res!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", CL)
            .short(&["sc"])
            .rules(&storage::StorageClassStrategy),
        res!(
            "storage.k8s.io",
            "v1",
            "VolumeAttachment",
            "volumeattachments",
            "volumeattachment",
            CL
        )
        .with_status()
        .rules(&storage::VolumeAttachmentStrategy),
        // admissionregistration.k8s.io.
        res!(
            "admissionregistration.k8s.io",
            "v1",
            "MutatingWebhookConfiguration",
            "mutatingwebhookconfigurations",
            "mutatingwebhookconfiguration",
            CL
        )
        .cats(API_EXTENSIONS)
        .rules(&admission::MutatingWebhookConfigurationStrategy),
        res!(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicy",
            "validatingadmissionpolicies",
            "validatingadmissionpolicy",
            CL
        )
        .cats(API_EXTENSIONS)
        .with_status()
        .rules(&admission::ValidatingAdmissionPolicyStrategy),
        res!(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingAdmissionPolicyBinding",
            "validatingadmissionpolicybindings",
            "validatingadmissionpolicybinding",
            CL
        )
        .cats(API_EXTENSIONS)
        .rules(&admission::ValidatingAdmissionPolicyBindingStrategy),
        res!(
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
            "validatingwebhookconfigurations",
            "validatingwebhookconfiguration",
            CL
        )
        .cats(API_EXTENSIONS)
        .rules(&admission::ValidatingWebhookConfigurationStrategy),
        // apiextensions.k8s.io.
        res!(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            "customresourcedefinition",
            CL
        )
        .short(&["crd", "crds"])
        .cats(API_EXTENSIONS)
        .with_status()
        .rules(&apiextensions::CustomResourceDefinitionStrategy),
        // scheduling.k8s.io.
        res!("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", "priorityclass", CL)
            .short(&["pc"])
            .rules(&scheduling::PriorityClassStrategy),
        // coordination.k8s.io.
        res!("coordination.k8s.io", "v1", "Lease", "leases", "lease", NS)
            .rules(&coordination::LeaseStrategy),
        // node.k8s.io.
        res!("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", "runtimeclass", CL)
            .rules(&node::RuntimeClassStrategy),
        // discovery.k8s.io.
        res!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", NS)
            .rules(&discovery::EndpointSliceStrategy),
        // flowcontrol.apiserver.k8s.io.
        res!("flowcontrol.apiserver.k8s.io", "v1", "FlowSchema", "flowschemas", "flowschema", CL)
            .with_status()
            .rules(&flowcontrol::FlowSchemaStrategy),
        res!(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "PriorityLevelConfiguration",
            "prioritylevelconfigurations",
            "prioritylevelconfiguration",
            CL
        )
        .with_status()
        .rules(&flowcontrol::PriorityLevelConfigurationStrategy),
    ];
    list.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use crate::catalog::Catalog;

    #[test]
    fn entries_are_unique_by_group_version_plural_and_kind() {
        let catalog = Catalog::builtin();
        let mut seen = BTreeSet::new();
        let mut kinds = BTreeSet::new();
        for e in catalog.entries().iter() {
            assert!(seen.insert((e.group, e.version, e.plural)), "duplicate {e:?}");
            assert!(kinds.insert((e.group, e.version, e.kind)), "duplicate kind {e:?}");
            assert!(!e.verbs.is_empty());
            assert_eq!(e.plural.to_ascii_lowercase(), e.plural);
        }
        assert!(catalog.entries().len() >= 55);
    }

    #[test]
    fn short_names_point_at_one_resource() {
        let mut owners: BTreeMap<&str, BTreeSet<(&str, &str)>> = BTreeMap::new();
        for e in Catalog::builtin().entries().iter() {
            for short in e.short_names {
                owners.entry(short).or_default().insert((e.group, e.plural));
            }
        }
        for (short, resources) in owners {
            // Core and events.k8s.io events share `ev`, as upstream.
            let allowed = if short == "ev" { 2 } else { 1 };
            assert!(resources.len() <= allowed, "{short} names {resources:?}");
        }
    }

    #[test]
    fn storage_is_shared_only_by_events_and_autoscalers() {
        let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for e in Catalog::builtin().entries().iter() {
            by_key.entry(e.storage_prefix()).or_default().push(e.api_version());
            let stored_as_self = e.storage.api_version == e.api_version();
            assert_eq!(e.conversion.is_none(), stored_as_self, "{e:?}");
            let group = if e.group.is_empty() { "core" } else { e.group };
            if stored_as_self {
                assert_eq!((e.storage.group, e.storage.resource), (group, e.plural));
            }
        }
        let shared: BTreeMap<_, _> = by_key.into_iter().filter(|(_, v)| v.len() > 1).collect();
        assert_eq!(shared.len(), 2, "{shared:?}");
        assert_eq!(shared["/registry/core/events/"], ["v1", "events.k8s.io/v1"]);
        assert_eq!(
            shared["/registry/autoscaling/horizontalpodautoscalers/"],
            ["autoscaling/v2", "autoscaling/v1"]
        );
    }

    #[test]
    fn discovery_order_starts_with_core_and_prefers_autoscaling_v2() {
        let catalog = Catalog::builtin();
        let gvs = catalog.group_versions();
        assert_eq!(gvs[0], ("", "v1"));
        assert_eq!(gvs[1], ("apiregistration.k8s.io", "v1"));
        assert_eq!(gvs[2], ("apps", "v1"));
        let v2 = gvs.iter().position(|gv| *gv == ("autoscaling", "v2"));
        let v1 = gvs.iter().position(|gv| *gv == ("autoscaling", "v1"));
        assert!(v2 < v1);
        let pods = catalog.lookup("", "v1", "pods").expect("pods");
        assert_eq!(pods.short_names, ["po"]);
        assert_eq!(pods.categories, ["all"]);
        assert!(pods.status);
        assert!(
            pods.extra_subresources.iter().any(|s| s.name == "eviction" && s.group == "policy")
        );
        assert_eq!(pods.storage_key(Some("default"), "web"), "/registry/core/pods/default/web");
        let deploy = catalog.by_kind("apps", "v1", "Deployment").expect("deployments");
        assert!(deploy.scale.is_some());
        assert_eq!(deploy.storage.api_version, "apps/v1");
        let ns = catalog.lookup("", "v1", "namespaces").expect("namespaces");
        assert!(!ns.verbs.contains(&"deletecollection"));
        assert_eq!(catalog.lookup("", "v1", "bindings").expect("bindings").verbs, ["create"]);
    }

    #[test]
    fn every_resource_has_rules_and_rows_match_columns() {
        let ctx = crate::table::TableContext { now: chrono::Utc::now() };
        let empty = serde_json::json!({"metadata": {"name": "x"}});
        for e in Catalog::builtin().entries().iter() {
            let columns = e.strategy.columns();
            if e.plural == "bindings" {
                assert!(columns.is_empty());
                continue;
            }
            assert!(!columns.is_empty(), "{e:?} has no strategy of its own");
            assert_eq!(e.strategy.cells(&empty, &ctx).len(), columns.len(), "{e:?}");
            let mut obj = empty.clone();
            e.strategy.default(&mut obj);
            let once = obj.clone();
            e.strategy.default(&mut obj);
            assert_eq!(obj, once, "{e:?} defaulting is not idempotent");
        }
    }
}
