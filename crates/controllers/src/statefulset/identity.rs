//! A StatefulSet pod's stable identity (upstream's `stateful_set_utils.go`): its name
//! `<set>-<ordinal>`, its identity labels, hostname and subdomain, and its claims
//! `<template>-<set>-<ordinal>` from the volume claim templates.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::runtime::owner::controller_ref;

/// The label naming a pod's revision.
pub const REVISION: &str = "controller-revision-hash";
/// The label naming the pod (for a per-pod Service).
pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
/// The label giving the pod's ordinal.
pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";

/// The set's first ordinal (`spec.ordinals.start`).
pub fn start(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.ordinals.as_ref()).and_then(|o| o.start).unwrap_or(0)
}

/// The set's replicas.
pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

/// The ordinal of a pod of the set, from its name; `None` for a pod not named as the set's.
pub fn ordinal(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    let prefix = format!("{}-", set.metadata.name.as_deref()?);
    let rest = name.strip_prefix(&prefix)?;
    if rest.len() > 1 && rest.starts_with('0') {
        return None;
    }
    rest.parse::<i32>().ok().filter(|o| *o >= 0)
}

/// The pod's name for `ordinal`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.metadata.name.as_deref().unwrap_or_default())
}

/// The claim of `template` for `ordinal`.
pub fn claim_name(set: &StatefulSet, template: &str, ordinal: i32) -> String {
    format!("{template}-{}", pod_name(set, ordinal))
}

/// The pod of `ordinal` from `template` (of the revision `revision`).
pub fn pod_for(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let name = pod_name(set, ordinal);
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME.to_string(), name.clone());
    labels.insert(POD_INDEX.to_string(), ordinal.to_string());
    labels.insert(REVISION.to_string(), revision.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain =
        set.spec.as_ref().and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty());
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    for claim in claim_templates(set) {
        let template = claim.metadata.name.clone().unwrap_or_default();
        volumes.retain(|v| v.name != template);
        volumes.push(Volume {
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(set, &template, ordinal),
                read_only: None,
            }),
            name: template,
            ..Volume::default()
        });
    }
    if volumes.is_empty() {
        spec.volumes = None;
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref("apps/v1", "StatefulSet", &set.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec.as_ref().and_then(|s| s.volume_claim_templates.as_deref()).unwrap_or_default()
}

/// Whether claims are deleted with the set (`whenDeleted: Delete`).
pub fn delete_with_set(set: &StatefulSet) -> bool {
    retention(set).0 == "Delete"
}

/// Whether a scaled-away pod's claims are deleted with it (`whenScaled: Delete`).
pub fn delete_when_scaled(set: &StatefulSet) -> bool {
    retention(set).1 == "Delete"
}

fn retention(set: &StatefulSet) -> (String, String) {
    let policy =
        set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    (
        policy.and_then(|p| p.when_deleted.clone()).unwrap_or_else(|| "Retain".into()),
        policy.and_then(|p| p.when_scaled.clone()).unwrap_or_else(|| "Retain".into()),
    )
}

/// The claims the pod of `ordinal` uses, as they are created: each template with its name,
/// the set's selector labels, and the set as owner when claims go with it.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let selector =
        set.spec.as_ref().and_then(|s| s.selector.match_labels.clone()).unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|template| {
            let mut claim = template.clone();
            let name =
                claim_name(set, template.metadata.name.as_deref().unwrap_or_default(), ordinal);
            let mut labels = claim.metadata.labels.take().unwrap_or_default();
            labels.extend(selector.clone());
            claim.metadata = ObjectMeta {
                name: Some(name),
                namespace: set.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: claim.metadata.annotations.take(),
                owner_references: delete_with_set(set)
                    .then(|| vec![owner_ref(&set.metadata, "apps/v1", "StatefulSet")]),
                ..ObjectMeta::default()
            };
            claim.status = None;
            claim
        })
        .collect()
}

/// A non-controlling owner reference (as upstream sets on retained-policy claims).
pub fn owner_ref(meta: &ObjectMeta, api_version: &str, kind: &str) -> OwnerReference {
    OwnerReference { controller: None, ..controller_ref(api_version, kind, meta) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    fn set() -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("uid".into()),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                service_name: Some("nginx".into()),
                selector: LabelSelector {
                    match_labels: Some([("app".to_string(), "web".to_string())].into()),
                    match_expressions: None,
                },
                volume_claim_templates: Some(vec![PersistentVolumeClaim {
                    metadata: ObjectMeta { name: Some("data".into()), ..ObjectMeta::default() },
                    ..PersistentVolumeClaim::default()
                }]),
                persistent_volume_claim_retention_policy: Some(
                    StatefulSetPersistentVolumeClaimRetentionPolicy {
                        when_deleted: Some("Delete".into()),
                        when_scaled: Some("Retain".into()),
                    },
                ),
                ..StatefulSetSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn names_labels_and_claims() {
        let s = set();
        let pod = pod_for(&s, &PodTemplateSpec::default(), "web-abc", 2);
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        let labels = pod.metadata.labels.as_ref().expect("labels");
        assert_eq!(
            (labels[POD_NAME].as_str(), labels[POD_INDEX].as_str(), labels[REVISION].as_str()),
            ("web-2", "2", "web-abc")
        );
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(
            (spec.hostname.as_deref(), spec.subdomain.as_deref()),
            (Some("web-2"), Some("nginx"))
        );
        let volume = &spec.volumes.as_ref().expect("volumes")[0];
        assert_eq!(
            volume.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()),
            Some("data-web-2")
        );
        assert_eq!(ordinal(&s, &pod), Some(2));
        let claims = claims_for(&s, 2);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("data-web-2"));
        assert_eq!(claims[0].metadata.labels.as_ref().map(|l| l["app"].as_str()), Some("web"));
        assert!(
            claims[0].metadata.owner_references.is_some(),
            "whenDeleted: Delete makes the set its owner"
        );
        assert!(!delete_when_scaled(&s));
    }

    #[test]
    fn ordinals_come_from_names() {
        let s = set();
        let named = |n: &str| Pod {
            metadata: ObjectMeta { name: Some(n.into()), ..ObjectMeta::default() },
            ..Pod::default()
        };
        assert_eq!(ordinal(&s, &named("web-0")), Some(0));
        assert_eq!(ordinal(&s, &named("web-10")), Some(10));
        assert_eq!(ordinal(&s, &named("web-01")), None);
        assert_eq!(ordinal(&s, &named("web-x")), None);
        assert_eq!(ordinal(&s, &named("other-1")), None);
    }
}
