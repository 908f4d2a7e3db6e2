//! The vocabulary the binder shares with the scheduler, provisioners and users: upstream's
//! annotations (`component-helpers/storage/volume`), phases, and small readers of claims,
//! volumes and classes as upstream's helpers read them (a class named by the beta annotation
//! wins over `storageClassName`; an absent volume mode is `Filesystem`).

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;

/// On a claim: its binding was completed once (its lifecycle passed the initial setup).
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a claim or a volume: the binding was made by a controller, not by the user (pre-bound).
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a claim: the node the scheduler chose, asking for a volume to be provisioned there.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// On a volume: the provisioner that made it (and so may delete it).
pub const ANN_DYNAMICALLY_PROVISIONED: &str = "pv.kubernetes.io/provisioned-by";
/// On a claim or a volume: the CSI driver an in-tree plugin migrated to (the binder stands down).
pub const ANN_MIGRATED_TO: &str = "pv.kubernetes.io/migrated-to";
/// On a claim: the provisioner asked to make its volume.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
/// The beta twin of [`ANN_STORAGE_PROVISIONER`], still written.
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// On a claim or a volume: its class, before `storageClassName` existed (it still wins).
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// On a volume being expanded: the capacity its claim reports until the file system grew.
pub const ANN_PRE_RESIZE_CAPACITY: &str = "volume.alpha.kubernetes.io/pre-resize-capacity";
/// On a class: it is the default one.
pub const ANN_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// The beta twin of [`ANN_DEFAULT_CLASS`].
pub const ANN_BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// A claim waiting for its volume.
pub const CLAIM_PENDING: &str = "Pending";
/// A claim bound to its volume.
pub const CLAIM_BOUND: &str = "Bound";
/// A claim whose volume is gone or bound elsewhere (terminal).
pub const CLAIM_LOST: &str = "Lost";
/// A volume free for any claim.
pub const VOLUME_AVAILABLE: &str = "Available";
/// A volume bound to a claim.
pub const VOLUME_BOUND: &str = "Bound";
/// A volume whose claim is gone, not yet reclaimed.
pub const VOLUME_RELEASED: &str = "Released";
/// A volume whose reclamation failed.
pub const VOLUME_FAILED: &str = "Failed";

/// Whether `meta` carries the annotation `key` (whatever its value, as upstream asks).
pub fn has_annotation(meta: &ObjectMeta, key: &str) -> bool {
    meta.annotations.as_ref().is_some_and(|a| a.contains_key(key))
}

/// The value of the annotation `key` of `meta`.
pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// `namespace/name` of a claim, for logs.
pub fn claim_key(claim: &PersistentVolumeClaim) -> String {
    format!(
        "{}/{}",
        claim.metadata.namespace.as_deref().unwrap_or_default(),
        claim.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The class a claim asks for (`""`: none), as upstream's `GetPersistentVolumeClaimClass`.
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    if let Some(class) = annotation(&claim.metadata, ANN_BETA_STORAGE_CLASS) {
        return class;
    }
    claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default()
}

/// Whether a claim names a class at all, even `""` (upstream's `PersistentVolumeClaimHasClass`).
pub fn claim_has_class(claim: &PersistentVolumeClaim) -> bool {
    has_annotation(&claim.metadata, ANN_BETA_STORAGE_CLASS)
        || claim.spec.as_ref().is_some_and(|s| s.storage_class_name.is_some())
}

/// The class a volume belongs to (`""`: none), as upstream's `GetPersistentVolumeClass`.
pub fn volume_class(volume: &PersistentVolume) -> &str {
    if let Some(class) = annotation(&volume.metadata, ANN_BETA_STORAGE_CLASS) {
        return class;
    }
    volume.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default()
}

/// The storage a claim requests.
pub fn requested(claim: &PersistentVolumeClaim) -> Option<&Quantity> {
    claim.spec.as_ref()?.resources.as_ref()?.requests.as_ref()?.get("storage")
}

/// The storage a volume offers.
pub fn capacity(volume: &PersistentVolume) -> Option<&Quantity> {
    volume.spec.as_ref()?.capacity.as_ref()?.get("storage")
}

/// The access modes a claim asks for.
pub fn claim_modes(claim: &PersistentVolumeClaim) -> &[String] {
    claim.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default()
}

/// The access modes a volume offers.
pub fn volume_modes(volume: &PersistentVolume) -> &[String] {
    volume.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default()
}

/// The volume a claim is bound or pre-bound to (`""`: none).
pub fn volume_name(claim: &PersistentVolumeClaim) -> &str {
    claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or_default()
}

/// The phase a claim reports.
pub fn claim_phase(claim: &PersistentVolumeClaim) -> &str {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

/// The phase a volume reports.
pub fn volume_phase(volume: &PersistentVolume) -> &str {
    volume.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default()
}

/// The claim a volume is bound or reserved for, as `(namespace, name, uid)` (`uid` `""` while
/// only reserved).
pub fn claim_ref(volume: &PersistentVolume) -> Option<(&str, &str, &str)> {
    let claim = volume.spec.as_ref()?.claim_ref.as_ref()?;
    Some((
        claim.namespace.as_deref().unwrap_or_default(),
        claim.name.as_deref().unwrap_or_default(),
        claim.uid.as_deref().unwrap_or_default(),
    ))
}

/// The uid of a claim.
pub fn uid(claim: &PersistentVolumeClaim) -> &str {
    claim.metadata.uid.as_deref().unwrap_or_default()
}

/// Whether `volume` is bound or reserved for `claim`: same namespace and name, and the same
/// uid when the reference has one (upstream's `IsVolumeBoundToClaim`).
pub fn is_volume_bound_to_claim(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some((namespace, name, claim_uid)) = claim_ref(volume) else { return false };
    namespace == claim.metadata.namespace.as_deref().unwrap_or_default()
        && name == claim.metadata.name.as_deref().unwrap_or_default()
        && (claim_uid.is_empty() || claim_uid == uid(claim))
}

/// Whether a class is marked as the default one.
pub fn is_default_class(class: &StorageClass) -> bool {
    [ANN_DEFAULT_CLASS, ANN_BETA_DEFAULT_CLASS]
        .iter()
        .any(|key| annotation(&class.metadata, key) == Some("true"))
}

/// The default class among `classes` (of several, the newest, then the first by name), as
/// upstream's `GetDefaultClass`.
pub fn default_class<'a>(
    classes: impl IntoIterator<Item = &'a StorageClass>,
) -> Option<&'a StorageClass> {
    classes.into_iter().filter(|c| is_default_class(c)).min_by(|a, b| {
        let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(b).cmp(&created(a)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
    })
}
