//! What the local-path provisioner does, as plain functions of a claim, its class, its
//! selected node and a volume: the volume to create for a claim (or why none can be), the
//! volumes to delete, and the default class. The caller (`mod.rs`) reads the caches and
//! carries the answers out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ObjectMeta;

use crate::persistent_volume::objects::{
    ANN_BETA_STORAGE_PROVISIONER, ANN_DEFAULT_CLASS, ANN_DYNAMICALLY_PROVISIONED,
    ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, VOLUME_RELEASED, annotation, claim_class,
    claim_modes, requested, uid, volume_name, volume_phase,
};
use crate::persistent_volume::{Note, reason};

/// The provisioner's name, as classes name it.
pub const PROVISIONER: &str = "krust.io/local-path";
/// The default class's name (k3s's).
pub const CLASS: &str = "local-path";
/// On a volume: the node whose agent keeps its directory.
pub const NODE_LABEL: &str = "krust.io/local-path-node";
/// The node label a volume's node affinity selects.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The event of a claim that cannot be provisioned.
pub const FAILED: &str = reason::PROVISIONING_FAILED;
/// The access modes a directory on one node can offer.
const MODES: &[&str] = &["ReadWriteOnce", "ReadWriteOncePod"];

/// What to do for a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Provision {
    /// Nothing: not this provisioner's, not asked yet, or bound already.
    Skip,
    /// Create this volume (an existing volume of its name means it was created before).
    Create(Box<PersistentVolume>),
    /// The claim cannot be served: record the warning.
    Refuse(Note),
}

/// The name of the volume made for the claim of uid `claim_uid` (as upstream's external
/// provisioners name it).
pub fn volume_name_for(claim_uid: &str) -> String {
    format!("pvc-{claim_uid}")
}

/// What to do for `claim`, whose class is `class` (`None`: not found), whose selected node is
/// `node` (`None`: not cached; its name is then the hostname), directories being made in
/// `storage_path`.
pub fn provision(
    claim: &PersistentVolumeClaim,
    class: Option<&StorageClass>,
    node: Option<&Node>,
    storage_path: &str,
) -> Provision {
    let asked = [ANN_STORAGE_PROVISIONER, ANN_BETA_STORAGE_PROVISIONER]
        .iter()
        .any(|key| annotation(&claim.metadata, key) == Some(PROVISIONER));
    let ours = class.is_some_and(|c| c.provisioner == PROVISIONER);
    if !asked
        || !ours
        || !volume_name(claim).is_empty()
        || claim.metadata.deletion_timestamp.is_some()
        || uid(claim).is_empty()
    {
        return Provision::Skip;
    }
    let refuse = |message: String| Provision::Refuse(Note::warning(FAILED, message));
    if claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()) == Some("Block") {
        return refuse(format!("{PROVISIONER} provisions only Filesystem volumes, not Block"));
    }
    let modes = claim_modes(claim);
    if let Some(mode) = modes.iter().find(|m| !MODES.contains(&m.as_str())) {
        return refuse(format!(
            "{PROVISIONER} provisions only ReadWriteOnce and ReadWriteOncePod volumes, not {mode}"
        ));
    }
    let Some(size) = requested(claim) else {
        return refuse("the claim requests no storage".into());
    };
    let Some(node_name) = annotation(&claim.metadata, ANN_SELECTED_NODE).filter(|n| !n.is_empty())
    else {
        return refuse(format!(
            "{PROVISIONER} needs a selected node (the class's volumeBindingMode must be \
             WaitForFirstConsumer)"
        ));
    };
    let hostname = node
        .and_then(|n| n.metadata.labels.as_ref()?.get(HOSTNAME_LABEL))
        .map_or(node_name, String::as_str);
    let namespace = claim.metadata.namespace.clone().unwrap_or_default();
    let name = claim.metadata.name.clone().unwrap_or_default();
    let claim_uid = uid(claim).to_string();
    let volume = volume_name_for(&claim_uid);
    let path = format!("{}/{volume}_{namespace}_{name}", storage_path.trim_end_matches('/'));
    let policy = class.and_then(|c| c.reclaim_policy.clone()).unwrap_or_else(|| "Delete".into());
    Provision::Create(Box::new(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(volume),
            labels: Some(BTreeMap::from([(NODE_LABEL.to_string(), node_name.to_string())])),
            annotations: Some(BTreeMap::from([(
                ANN_DYNAMICALLY_PROVISIONED.to_string(),
                PROVISIONER.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), size.clone())])),
            access_modes: Some(modes.to_vec()),
            storage_class_name: Some(claim_class(claim).to_string()),
            persistent_volume_reclaim_policy: Some(policy),
            volume_mode: Some("Filesystem".into()),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(namespace),
                name: Some(name),
                uid: Some(claim_uid),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource { path, type_: Some("DirectoryOrCreate".into()) }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![hostname.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }))
}

/// The event of a created volume.
pub fn succeeded(volume: &str) -> Note {
    Note::normal(
        reason::PROVISIONING_SUCCEEDED,
        format!("Successfully provisioned volume {volume}"),
    )
}

/// Whether `volume` is to be deleted: this provisioner made it, its claim is gone (the binder
/// reported it `Released`) and its reclaim policy is `Delete`. The node's agent removes its
/// directory once the volume is gone.
pub fn deletes(volume: &PersistentVolume) -> bool {
    let policy = volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    annotation(&volume.metadata, ANN_DYNAMICALLY_PROVISIONED) == Some(PROVISIONER)
        && volume_phase(volume) == VOLUME_RELEASED
        && policy == Some("Delete")
        && volume.metadata.deletion_timestamp.is_none()
}

/// The default class the provisioner creates when no class of its name exists:
/// `WaitForFirstConsumer` (the scheduler chooses the node, then the volume is made there),
/// reclaim policy `Delete`, marked as the default class.
pub fn default_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(CLASS.into()),
            annotations: Some(BTreeMap::from([(
                ANN_DEFAULT_CLASS.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistent_volume::fixtures::{RWO, RWX, claim, of_class, phase, policy, volume};

    fn asked(mut c: PersistentVolumeClaim, node: Option<&str>) -> PersistentVolumeClaim {
        let annotations = c.metadata.annotations.get_or_insert_default();
        annotations.insert(ANN_STORAGE_PROVISIONER.into(), PROVISIONER.into());
        if let Some(node) = node {
            annotations.insert(ANN_SELECTED_NODE.into(), node.into());
        }
        c
    }

    fn ours() -> StorageClass {
        default_class()
    }

    fn node(name: &str, hostname: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: hostname
                    .map(|h| BTreeMap::from([(HOSTNAME_LABEL.to_string(), h.to_string())])),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn local(name: &str) -> PersistentVolumeClaim {
        of_class(claim(name, "1Gi", &[RWO]), CLASS)
    }

    fn refusal(p: &Provision) -> Option<&str> {
        match p {
            Provision::Refuse(note) if note.warning && note.reason == FAILED => {
                Some(note.message.as_str())
            }
            _ => None,
        }
    }

    fn created(p: Provision) -> PersistentVolume {
        match p {
            Provision::Create(v) => *v,
            other => panic!("a volume is created, not {other:?}"),
        }
    }

    /// The values of the first expression of the volume's required node affinity.
    fn affinity(v: &PersistentVolume) -> Option<(String, String, Vec<String>)> {
        let terms = v.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?;
        let e = terms.node_selector_terms.first()?.match_expressions.as_ref()?.first()?;
        Some((e.key.clone(), e.operator.clone(), e.values.clone()?))
    }

    #[test]
    fn claims_provisioned_skipped_or_refused() {
        let other = StorageClass { provisioner: "example.com/nfs".into(), ..ours() };
        let mut bound = asked(local("c"), Some("n1"));
        if let Some(spec) = bound.spec.as_mut() {
            spec.volume_name = Some("pvc-uid-c".into());
        }
        let mut block = asked(local("c"), Some("n1"));
        if let Some(spec) = block.spec.as_mut() {
            spec.volume_mode = Some("Block".into());
        }
        let mut no_size = asked(local("c"), Some("n1"));
        if let Some(spec) = no_size.spec.as_mut() {
            spec.resources = None;
        }
        let shared = asked(of_class(claim("c", "1Gi", &[RWO, RWX]), CLASS), Some("n1"));
        // (case, claim, class, whether a volume is made, words of the refusal)
        type Case = (&'static str, PersistentVolumeClaim, Option<StorageClass>, bool, &'static str);
        let cases: Vec<Case> = vec![
            ("an asked claim with a node", asked(local("c"), Some("n1")), Some(ours()), true, ""),
            ("a claim not yet asked", local("c"), Some(ours()), false, ""),
            ("another provisioner's class", asked(local("c"), Some("n1")), Some(other), false, ""),
            ("a claim whose class is gone", asked(local("c"), Some("n1")), None, false, ""),
            ("a bound claim", bound, Some(ours()), false, ""),
            ("a block claim", block, Some(ours()), false, "not Block"),
            ("a shared claim", shared, Some(ours()), false, "not ReadWriteMany"),
            (
                "a claim without a node",
                asked(local("c"), None),
                Some(ours()),
                false,
                "selected node",
            ),
            ("a claim without a size", no_size, Some(ours()), false, "no storage"),
        ];
        for (case, c, class, made, refused) in cases {
            let p = provision(&c, class.as_ref(), None, "/var/lib/krust/storage");
            assert_eq!(matches!(p, Provision::Create(_)), made, "{case}: {p:?}");
            if refused.is_empty() {
                assert_eq!(refusal(&p), None, "{case}");
            } else {
                assert!(refusal(&p).is_some_and(|m| m.contains(refused)), "{case}: {p:?}");
            }
        }
    }

    #[test]
    fn the_volume_serves_the_claim_on_its_node() {
        let c = asked(local("data"), Some("n1"));
        let v = created(provision(
            &c,
            Some(&ours()),
            Some(&node("n1", Some("host-1"))),
            "/srv/storage/",
        ));
        assert_eq!(v.metadata.name.as_deref(), Some("pvc-uid-data"));
        let labels = v.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(NODE_LABEL).map(String::as_str), Some("n1"));
        let annotations = v.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(
            annotations.get(ANN_DYNAMICALLY_PROVISIONED).map(String::as_str),
            Some(PROVISIONER)
        );
        assert_eq!(
            affinity(&v),
            Some((HOSTNAME_LABEL.into(), "In".into(), vec!["host-1".to_string()]))
        );
        let spec = v.spec.unwrap_or_default();
        let host_path = spec.host_path.unwrap_or_default();
        assert_eq!(host_path.path, "/srv/storage/pvc-uid-data_ns_data");
        assert_eq!(host_path.type_.as_deref(), Some("DirectoryOrCreate"));
        assert_eq!(spec.storage_class_name.as_deref(), Some(CLASS));
        assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(spec.access_modes, Some(vec![RWO.to_string()]));
        assert_eq!(
            spec.capacity.and_then(|c| c.get("storage").cloned()).map(|q| q.0),
            Some("1Gi".to_string())
        );
        let claim_ref = spec.claim_ref.unwrap_or_default();
        assert_eq!(
            (
                claim_ref.kind.as_deref(),
                claim_ref.api_version.as_deref(),
                claim_ref.namespace.as_deref(),
                claim_ref.name.as_deref(),
                claim_ref.uid.as_deref()
            ),
            (Some("PersistentVolumeClaim"), Some("v1"), Some("ns"), Some("data"), Some("uid-data"))
        );
    }

    #[test]
    fn a_node_without_a_hostname_label_is_selected_by_name_and_the_class_policy_holds() {
        let c = asked(local("data"), Some("n1"));
        let retained = StorageClass { reclaim_policy: Some("Retain".into()), ..ours() };
        let v = created(provision(&c, Some(&retained), Some(&node("n1", None)), "/s"));
        assert_eq!(
            affinity(&v),
            Some((HOSTNAME_LABEL.into(), "In".into(), vec!["n1".to_string()]))
        );
        let policy = v.spec.and_then(|s| s.persistent_volume_reclaim_policy);
        assert_eq!(policy.as_deref(), Some("Retain"));
        let uncached = created(provision(&c, Some(&ours()), None, "/s"));
        assert_eq!(
            affinity(&uncached),
            Some((HOSTNAME_LABEL.into(), "In".into(), vec!["n1".to_string()])),
            "a node not cached is selected by name"
        );
    }

    #[test]
    fn only_released_volumes_of_ours_with_the_delete_policy_are_deleted() {
        let ours = |mut v: PersistentVolume| {
            v.metadata
                .annotations
                .get_or_insert_default()
                .insert(ANN_DYNAMICALLY_PROVISIONED.into(), PROVISIONER.into());
            v
        };
        let released = || phase(policy(volume("v", "1Gi", &[RWO]), "Delete"), "Released");
        assert!(deletes(&ours(released())), "ours, released, Delete");
        assert!(!deletes(&released()), "not ours");
        let bound = phase(policy(volume("v", "1Gi", &[RWO]), "Delete"), "Bound");
        assert!(!deletes(&ours(bound)), "still bound");
        assert!(!deletes(&ours(phase(volume("v", "1Gi", &[RWO]), "Released"))), "Retain");
    }

    #[test]
    fn the_default_class_waits_for_the_first_consumer() {
        let class = default_class();
        assert_eq!(class.metadata.name.as_deref(), Some(CLASS));
        assert_eq!(class.provisioner, PROVISIONER);
        assert_eq!(class.volume_binding_mode.as_deref(), Some("WaitForFirstConsumer"));
        assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
        let annotations = class.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations.get(ANN_DEFAULT_CLASS).map(String::as_str), Some("true"));
    }
}
