//! Evaluators: how quota measures one resource (upstream's `quota.Evaluator`s of
//! `pkg/quota/v1/evaluator/core` and the generic object counter). Pods, services and
//! persistent volume claims have their own rules; config maps, secrets, replication
//! controllers and resource quotas are counted under a legacy name too; any other resource
//! is counted as `count/<resource>.<group>`.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, Pod, ResourceQuota, ScopedResourceSelectorRequirement, Service,
};
use k8s_openapi::jiff::Timestamp;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::resources::{self, ResourceList};
use super::{QuotaError, pods, scopes};
use crate::Operation;
use crate::quantity::Amount;

/// The resources quota never looks at (upstream's `ignoredResources`): virtual resources and
/// events.
const IGNORED: &[(&str, &str)] = &[
    ("", "bindings"),
    ("", "componentstatuses"),
    ("", "events"),
    ("events.k8s.io", "events"),
    ("authentication.k8s.io", "tokenreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "localsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
];

/// Core resources counted under a legacy name besides `count/<resource>`.
const LEGACY_COUNTS: &[(&str, &str)] = &[
    ("configmaps", "configmaps"),
    ("resourcequotas", "resourcequotas"),
    ("replicationcontrollers", "replicationcontrollers"),
    ("secrets", "secrets"),
];

/// The resources of services (upstream's `serviceResources`).
const SERVICE_RESOURCES: &[&str] =
    &["count/services", "services", "services.nodeports", "services.loadbalancers"];

/// The resources of claims, also per storage class (upstream's `pvcResources`).
const CLAIM_RESOURCES: &[&str] = &["persistentvolumeclaims", "requests.storage"];

/// What joins a storage class name to a claim resource in a quota resource name:
/// `gold.storageclass.storage.k8s.io/requests.storage`.
pub const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// The annotation that named a claim's storage class before `spec.storageClassName`.
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// How quota measures one resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Evaluator {
    /// Pods: compute resources, `pods`, `count/pods`; the only one with scopes.
    Pods,
    /// Services: `services`, `services.loadbalancers`, `services.nodeports`.
    Services,
    /// Persistent volume claims: `persistentvolumeclaims`, `requests.storage`, also per
    /// storage class.
    Claims,
    /// Objects counted, as `count/<resource>[.<group>]` (and a legacy name for some).
    Count {
        /// API group (empty for core).
        group: String,
        /// Plural resource name.
        resource: String,
        /// The legacy name (`configmaps`, `secrets`, ...), if any.
        alias: Option<&'static str>,
    },
}

/// An object decoded once for its evaluator.
#[derive(Debug, Clone)]
pub enum Item {
    /// A pod.
    Pod(Box<Pod>),
    /// A service.
    Service(Box<Service>),
    /// A persistent volume claim.
    Claim(Box<PersistentVolumeClaim>),
    /// Any other object (only counted).
    Object,
}

/// What of an object its usage depends on besides its existence: what the quota controller
/// compares to know that usage went down (upstream's default update filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectState {
    /// A pod: whether it is charged for compute resources.
    Pod {
        /// See [`pods::counted`].
        counted: bool,
    },
    /// A service: its type as quota sees it (`NodePort`, `LoadBalancer`, else empty).
    Service {
        /// The type.
        kind: String,
    },
    /// A claim: the storage its volume was given.
    Claim {
        /// `status.allocatedResources.storage`.
        allocated: Option<String>,
    },
    /// Any other object: only its existence counts.
    Object,
}

fn decode<T: DeserializeOwned>(value: &Value, expected: &'static str) -> Result<T, QuotaError> {
    T::deserialize(value).map_err(|e| QuotaError::Decode { expected, reason: e.to_string() })
}

/// Whether quota ignores `group`/`resource`.
pub fn ignored(group: &str, resource: &str) -> bool {
    IGNORED.contains(&(group, resource))
}

/// The object count name of `group`/`resource` (upstream's `ObjectCountQuotaResourceNameFor`).
pub fn count_name(group: &str, resource: &str) -> String {
    if group.is_empty() { format!("count/{resource}") } else { format!("count/{resource}.{group}") }
}

impl Evaluator {
    /// The evaluator of writes to `group`/`resource`; `None` for the resources quota ignores.
    pub fn for_resource(group: &str, resource: &str) -> Option<Self> {
        if ignored(group, resource) {
            return None;
        }
        Some(match (group, resource) {
            ("", "pods") => Self::Pods,
            ("", "services") => Self::Services,
            ("", "persistentvolumeclaims") => Self::Claims,
            _ => Self::Count {
                group: group.to_string(),
                resource: resource.to_string(),
                alias: LEGACY_COUNTS
                    .iter()
                    .find(|(r, _)| group.is_empty() && *r == resource)
                    .map(|(_, alias)| *alias),
            },
        })
    }

    /// The evaluators that measure the quota resources `names`: the built-in ones, and an
    /// object counter for each other `count/<resource>.<group>` named.
    pub fn for_names<'a>(names: impl IntoIterator<Item = &'a String>) -> Vec<Self> {
        let mut evaluators = vec![Self::Pods, Self::Services, Self::Claims];
        evaluators.extend(LEGACY_COUNTS.iter().filter_map(|(r, _)| Self::for_resource("", r)));
        for name in names {
            let Some(rest) = name.strip_prefix("count/") else { continue };
            if evaluators.iter().any(|e| e.tracks(name)) {
                continue;
            }
            let (resource, group) = rest.split_once('.').unwrap_or((rest, ""));
            if let Some(evaluator) = Self::for_resource(group, resource) {
                evaluators.push(evaluator);
            }
        }
        evaluators
    }

    /// The API group of the resource measured.
    pub fn group(&self) -> &str {
        match self {
            Self::Count { group, .. } => group,
            _ => "",
        }
    }

    /// The plural name of the resource measured.
    pub fn resource(&self) -> &str {
        match self {
            Self::Pods => "pods",
            Self::Services => "services",
            Self::Claims => "persistentvolumeclaims",
            Self::Count { resource, .. } => resource,
        }
    }

    /// Whether the evaluator measures the quota resource `name`.
    pub fn tracks(&self, name: &str) -> bool {
        match self {
            Self::Pods => pods::tracks(name),
            Self::Services => SERVICE_RESOURCES.contains(&name),
            Self::Claims => {
                name == "count/persistentvolumeclaims"
                    || CLAIM_RESOURCES.contains(&name)
                    || CLAIM_RESOURCES
                        .iter()
                        .any(|r| name.ends_with(&format!("{STORAGE_CLASS_SUFFIX}{r}")))
            }
            Self::Count { group, resource, alias } => {
                *alias == Some(name) || count_name(group, resource) == name
            }
        }
    }

    /// The names among `names` this evaluator measures (upstream's `MatchingResources`).
    pub fn matching_resources<'a>(
        &self,
        names: impl IntoIterator<Item = &'a String>,
    ) -> BTreeSet<String> {
        names.into_iter().filter(|n| self.tracks(n)).cloned().collect()
    }

    /// Decodes an object of the evaluator's resource.
    pub fn item(&self, object: &Value) -> Result<Item, QuotaError> {
        Ok(match self {
            Self::Pods => Item::Pod(Box::new(decode(object, "Pod")?)),
            Self::Services => Item::Service(Box::new(decode(object, "Service")?)),
            Self::Claims => Item::Claim(Box::new(decode(object, "PersistentVolumeClaim")?)),
            Self::Count { .. } => Item::Object,
        })
    }

    /// Whether a write changes what the evaluator measures (upstream's `Handles`): creates;
    /// updates of services and claims (their type or size may change) and of pods whose
    /// `Terminating` scope changes.
    pub fn handles(&self, operation: Operation, item: &Item, old: Option<&Item>) -> bool {
        match (self, operation) {
            (_, Operation::Create) => true,
            (Self::Services | Self::Claims, Operation::Update) => true,
            (Self::Pods, Operation::Update) => match (item, old) {
                (Item::Pod(new), Some(Item::Pod(old))) => {
                    scopes::is_terminating(new) != scopes::is_terminating(old)
                }
                _ => false,
            },
            _ => false,
        }
    }

    /// Whether the object is in the scope `selector` names (only pods are in any).
    pub fn matches_scope(
        &self,
        selector: &ScopedResourceSelectorRequirement,
        item: &Item,
    ) -> Result<bool, QuotaError> {
        match item {
            Item::Pod(pod) => scopes::pod_matches(selector, pod),
            _ => Ok(false),
        }
    }

    /// Whether `quota` covers the object (upstream's `generic.Matches`): its `status.hard`
    /// names a resource the evaluator measures, and the object is in every scope of it.
    pub fn matches(&self, quota: &ResourceQuota, item: &Item) -> Result<bool, QuotaError> {
        let hard = quota.status.as_ref().and_then(|s| s.hard.as_ref());
        if !hard.into_iter().flatten().any(|(name, _)| self.tracks(name)) {
            return Ok(false);
        }
        for selector in scopes::selectors(quota) {
            if !self.matches_scope(&selector, item)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// What the object uses (upstream's `Usage`).
    pub fn usage(&self, item: &Item, now: Timestamp) -> ResourceList {
        match (self, item) {
            (Self::Pods, Item::Pod(pod)) => pods::usage(pod, now),
            (Self::Services, Item::Service(service)) => service_usage(service),
            (Self::Claims, Item::Claim(claim)) => claim_usage(claim),
            (Self::Count { group, resource, alias }, _) => {
                let mut usage =
                    ResourceList::from([(count_name(group, resource), Amount::units(1))]);
                if let Some(alias) = alias {
                    usage.insert(alias.to_string(), Amount::units(1));
                }
                usage
            }
            _ => ResourceList::new(),
        }
    }

    /// What the object must name for the quota resources `required` to be charged (upstream's
    /// `Constraints`): only pods must name their cpu and memory; the refusal's reason.
    pub fn constraints(&self, required: &BTreeSet<String>, item: &Item) -> Result<(), String> {
        match item {
            Item::Pod(pod) => pods::constraints(required, pod),
            _ => Ok(()),
        }
    }

    /// What the quota controller compares to know that an object's usage went down.
    pub fn state(&self, item: &Item, now: Timestamp) -> ObjectState {
        match item {
            Item::Pod(pod) => ObjectState::Pod { counted: pods::counted(pod, now) },
            Item::Service(service) => ObjectState::Service { kind: quota_service_type(service) },
            Item::Claim(claim) => ObjectState::Claim {
                allocated: claim
                    .status
                    .as_ref()
                    .and_then(|s| s.allocated_resources.as_ref())
                    .and_then(|r| r.get("storage"))
                    .map(|q| q.0.clone()),
            },
            Item::Object => ObjectState::Object,
        }
    }
}

/// A service's type as quota sees it (upstream's `GetQuotaServiceType`).
fn quota_service_type(service: &Service) -> String {
    match service.spec.as_ref().and_then(|s| s.type_.as_deref()) {
        Some(kind @ ("NodePort" | "LoadBalancer")) => kind.to_string(),
        _ => String::new(),
    }
}

/// What a service uses: itself, and its ports as node ports (`NodePort`, `LoadBalancer`)
/// and a load balancer (`LoadBalancer`).
fn service_usage(service: &Service) -> ResourceList {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref()).map_or(0, Vec::len);
    let ports = Amount::units(i64::try_from(ports).unwrap_or(i64::MAX));
    let (node_ports, balancers) = match quota_service_type(service).as_str() {
        "NodePort" => (ports, Amount::ZERO),
        "LoadBalancer" => (ports, Amount::units(1)),
        _ => (Amount::ZERO, Amount::ZERO),
    };
    ResourceList::from([
        ("count/services".to_string(), Amount::units(1)),
        ("services".to_string(), Amount::units(1)),
        ("services.loadbalancers".to_string(), balancers),
        ("services.nodeports".to_string(), node_ports),
    ])
}

/// A claim's storage class: the beta annotation, else `spec.storageClassName` (upstream's
/// `GetPersistentVolumeClaimClass`).
fn storage_class(claim: &PersistentVolumeClaim) -> Option<String> {
    if let Some(class) = claim.metadata.annotations.as_ref().and_then(|a| a.get(BETA_STORAGE_CLASS))
    {
        return Some(class.clone());
    }
    claim.spec.as_ref().and_then(|s| s.storage_class_name.clone())
}

/// What a claim uses: itself, and the storage it requests (in whole bytes; what its volume
/// was given when more), also under its storage class.
fn claim_usage(claim: &PersistentVolumeClaim) -> ResourceList {
    let mut usage = ResourceList::from([
        ("persistentvolumeclaims".to_string(), Amount::units(1)),
        ("count/persistentvolumeclaims".to_string(), Amount::units(1)),
    ]);
    let class = storage_class(claim).filter(|c| !c.is_empty());
    if let Some(class) = &class {
        usage.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            Amount::units(1),
        );
    }
    let requested = resources::parse(
        claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()),
    )
    .get("storage")
    .map(|a| a.round_up_units());
    let allocated =
        resources::parse(claim.status.as_ref().and_then(|s| s.allocated_resources.as_ref()))
            .get("storage")
            .map(|a| a.round_up_units());
    let storage = match (requested, allocated) {
        (Some(requested), Some(allocated)) if allocated > requested => Some(allocated),
        (requested, _) => requested,
    };
    if let Some(storage) = storage {
        usage.insert("requests.storage".to_string(), storage);
        if let Some(class) = &class {
            usage.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), storage);
        }
    }
    usage
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    fn usage_of(group: &str, resource: &str, object: Value) -> String {
        let evaluator = Evaluator::for_resource(group, resource).unwrap();
        let item = evaluator.item(&object).unwrap();
        resources::pretty(&evaluator.usage(&item, now()))
    }

    #[test]
    fn usage_per_resource() {
        let cases: &[(&str, &str, &str, Value, &str)] = &[
            (
                "a cluster IP service",
                "",
                "services",
                json!({"spec": {"ports": [{"port": 80}]}}),
                "count/services=1,services=1,services.loadbalancers=0,services.nodeports=0",
            ),
            (
                "a load balancer with two ports",
                "",
                "services",
                json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}}),
                "count/services=1,services=1,services.loadbalancers=1,services.nodeports=2",
            ),
            (
                "a node port service",
                "",
                "services",
                json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}}),
                "count/services=1,services=1,services.loadbalancers=0,services.nodeports=1",
            ),
            (
                "a claim of a class",
                "",
                "persistentvolumeclaims",
                json!({"spec": {"storageClassName": "gold", "resources": {"requests": {"storage": "1.5Gi"}}}}),
                "count/persistentvolumeclaims=1,gold.storageclass.storage.k8s.io/persistentvolumeclaims=1,gold.storageclass.storage.k8s.io/requests.storage=1536Mi,persistentvolumeclaims=1,requests.storage=1536Mi",
            ),
            (
                "a claim given more than it asked",
                "",
                "persistentvolumeclaims",
                json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}},
                       "status": {"allocatedResources": {"storage": "2Gi"}}}),
                "count/persistentvolumeclaims=1,persistentvolumeclaims=1,requests.storage=2Gi",
            ),
            (
                "the beta annotation names the class",
                "",
                "persistentvolumeclaims",
                json!({"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
                       "spec": {"storageClassName": "new"}}),
                "count/persistentvolumeclaims=1,old.storageclass.storage.k8s.io/persistentvolumeclaims=1,persistentvolumeclaims=1",
            ),
            (
                "a config map, also by its legacy name",
                "",
                "configmaps",
                json!({}),
                "configmaps=1,count/configmaps=1",
            ),
            ("any other resource", "apps", "deployments", json!({}), "count/deployments.apps=1"),
        ];
        for (case, group, resource, object, expected) in cases {
            assert_eq!(usage_of(group, resource, object.clone()), *expected, "{case}");
        }
    }

    #[test]
    fn evaluators_by_resource_and_by_name() {
        assert_eq!(Evaluator::for_resource("", "events"), None);
        assert_eq!(Evaluator::for_resource("", "pods"), Some(Evaluator::Pods));
        let names: Vec<String> = [
            "count/deployments.apps",
            "count/pods",
            "count/widgets.example.com",
            "count/events",
            "cpu",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let evaluators = Evaluator::for_names(&names);
        let counted: Vec<String> = evaluators
            .iter()
            .filter(|e| !e.matching_resources(&names).is_empty())
            .map(|e| format!("{}/{}", e.group(), e.resource()))
            .collect();
        assert_eq!(
            counted,
            ["/pods", "apps/deployments", "example.com/widgets"],
            "events are ignored, each other count/ gets a counter"
        );
        let claims = Evaluator::Claims;
        let names: Vec<String> = [
            "gold.storageclass.storage.k8s.io/requests.storage",
            "gold.storageclass.storage.k8s.io/persistentvolumeclaims",
            "gold.storageclass.storage.k8s.io/other",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(claims.matching_resources(&names).len(), 2);
    }

    #[test]
    fn writes_handled_per_resource() {
        let pods = Evaluator::Pods;
        let plain = pods.item(&json!({"spec": {"containers": []}})).unwrap();
        let deadline =
            pods.item(&json!({"spec": {"containers": [], "activeDeadlineSeconds": 5}})).unwrap();
        assert!(pods.handles(Operation::Create, &plain, None));
        assert!(!pods.handles(Operation::Update, &plain, Some(&plain)));
        assert!(pods.handles(Operation::Update, &deadline, Some(&plain)));
        let secrets = Evaluator::for_resource("", "secrets").unwrap();
        assert!(secrets.handles(Operation::Create, &Item::Object, None));
        assert!(!secrets.handles(Operation::Update, &Item::Object, Some(&Item::Object)));
        assert!(Evaluator::Services.handles(Operation::Update, &Item::Object, None));
    }
}
