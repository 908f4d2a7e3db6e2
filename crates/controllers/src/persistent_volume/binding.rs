//! The objects the binder writes, as upstream's `bind`, `unbindVolume`, `updateClaimStatus`,
//! `updateVolumePhase`, `assignDefaultStorageClass` and `setClaimProvisioner` change them:
//! each builder answers the changed object, or `None` when nothing would change, so that a
//! sync writes only what differs. Pure; every write is guarded by the resourceVersion the
//! object was read at, so two binders (or a binder and the scheduler) never both win.
//!
//! A binding is written in upstream's order: the volume's `claimRef` (with the claim's uid and
//! `pv.kubernetes.io/bound-by-controller` when the controller chose the volume), the volume's
//! phase `Bound`, the claim's `volumeName` (with `bound-by-controller` when the controller
//! chose) and `pv.kubernetes.io/bind-completed`, then the claim's status: phase `Bound`, the
//! volume's access modes and, as it becomes bound, its capacity.

use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::objects::{
    ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER,
    ANN_PRE_RESIZE_CAPACITY, ANN_STORAGE_PROVISIONER, annotation, capacity, claim_phase,
    has_annotation, is_volume_bound_to_claim, uid, volume_name, volume_phase,
};
use super::quantity;

/// The annotations' value when the controller sets them.
const YES: &str = "yes";

/// A volume that reports no storage capacity cannot give its claim one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("PersistentVolume {0:?} is without a storage capacity")]
pub struct NoCapacity(pub String);

/// The reference to `claim` a volume bound to it holds (upstream's `GetReference`).
pub fn claim_reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// `volume` bound to `claim` (upstream's `GetBindVolumeToClaim`): its `claimRef` names the
/// claim with its uid, and `bound-by-controller` is set unless the volume was reserved for
/// the claim already.
pub fn bind_volume(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Option<PersistentVolume> {
    let chosen_by_controller = !is_volume_bound_to_claim(volume, claim);
    let mut bound = volume.clone();
    let mut dirty = false;
    let current = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let same = current.is_some_and(|r| {
        r.name == claim.metadata.name
            && r.namespace == claim.metadata.namespace
            && r.uid.as_deref().unwrap_or_default() == uid(claim)
    });
    if !same {
        bound.spec.get_or_insert_default().claim_ref = Some(claim_reference(claim));
        dirty = true;
    }
    if chosen_by_controller {
        dirty |= mark(&mut bound.metadata, ANN_BOUND_BY_CONTROLLER);
    }
    dirty.then_some(bound)
}

/// Sets annotation `key` to `"yes"` unless it is there; whether it was not.
fn mark(meta: &mut ObjectMeta, key: &str) -> bool {
    if has_annotation(meta, key) {
        return false;
    }
    meta.annotations.get_or_insert_default().insert(key.into(), YES.into());
    true
}

/// `volume` reporting `phase` with `message` (upstream's `updateVolumePhase`: nothing when the
/// phase is already that one).
pub fn volume_with_phase(
    volume: &PersistentVolume,
    phase: &str,
    message: &str,
) -> Option<PersistentVolume> {
    if volume_phase(volume) == phase {
        return None;
    }
    let mut changed = volume.clone();
    let status = changed.status.get_or_insert_default();
    status.phase = Some(phase.into());
    status.message = (!message.is_empty()).then(|| message.to_string());
    Some(changed)
}

/// `claim` bound to `volume` (upstream's `bindClaimToVolume`): its `volumeName` names the
/// volume (with `bound-by-controller` when the controller set it) and `bind-completed` is set.
pub fn bind_claim(
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Option<PersistentVolumeClaim> {
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    let mut bound = claim.clone();
    let mut dirty = false;
    if volume_name(claim) != name {
        bound.spec.get_or_insert_default().volume_name = Some(name.into());
        mark(&mut bound.metadata, ANN_BOUND_BY_CONTROLLER);
        dirty = true;
    }
    dirty |= mark(&mut bound.metadata, ANN_BIND_COMPLETED);
    dirty.then_some(bound)
}

/// `claim` reporting `phase` (upstream's `updateClaimStatus`): with a volume, the volume's
/// access modes, and its capacity when the claim becomes that phase (a claim already bound
/// keeps the capacity it reports: after an expansion the file system may differ from the
/// device); without one, neither.
pub fn claim_with_status(
    claim: &PersistentVolumeClaim,
    phase: &str,
    volume: Option<&PersistentVolume>,
) -> Result<Option<PersistentVolumeClaim>, NoCapacity> {
    let mut changed = claim.clone();
    let becoming = claim_phase(claim) != phase;
    let status = changed.status.get_or_insert_default();
    let mut dirty = false;
    if becoming {
        status.phase = Some(phase.into());
        dirty = true;
    }
    match volume {
        None => {
            if status.access_modes.is_some() {
                status.access_modes = None;
                dirty = true;
            }
            if status.capacity.is_some() {
                status.capacity = None;
                dirty = true;
            }
        }
        Some(volume) => {
            let modes = volume.spec.as_ref().and_then(|s| s.access_modes.clone());
            if status.access_modes != modes {
                status.access_modes = modes;
                dirty = true;
            }
            if becoming {
                let Some(offered) = capacity(volume) else {
                    return Err(NoCapacity(volume.metadata.name.clone().unwrap_or_default()));
                };
                let reported = status.capacity.as_ref().and_then(|c| c.get("storage"));
                if let Some(before) = annotation(&volume.metadata, ANN_PRE_RESIZE_CAPACITY) {
                    // The file system has not grown yet: report the size before the expansion.
                    let before = if quantity::nanos(before).is_some() {
                        k8s_openapi::apimachinery::pkg::api::resource::Quantity(before.into())
                    } else {
                        offered.clone()
                    };
                    status.capacity.get_or_insert_default().insert("storage".into(), before);
                    dirty = true;
                } else if reported.is_none_or(|r| quantity::compare(Some(offered), Some(r)).is_ne())
                {
                    status.capacity = volume.spec.as_ref().and_then(|s| s.capacity.clone());
                    dirty = true;
                }
            }
        }
    }
    Ok(dirty.then_some(changed))
}

/// `volume` with the binding undone (upstream's `unbindVolume`): a binding the controller made
/// is removed with its annotation; a volume the user reserved for the claim stays reserved,
/// only the claim's uid is cleared.
pub fn unbind_volume(volume: &PersistentVolume) -> PersistentVolume {
    let mut unbound = volume.clone();
    if has_annotation(&volume.metadata, ANN_BOUND_BY_CONTROLLER) {
        unbound.spec.get_or_insert_default().claim_ref = None;
        if let Some(annotations) = unbound.metadata.annotations.as_mut() {
            annotations.remove(ANN_BOUND_BY_CONTROLLER);
            if annotations.is_empty() {
                unbound.metadata.annotations = None;
            }
        }
    } else if let Some(reference) = unbound.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
        reference.uid = None;
    }
    unbound
}

/// `claim` given the class `class` (upstream's `assignDefaultStorageClass`).
pub fn claim_with_class(claim: &PersistentVolumeClaim, class: &str) -> PersistentVolumeClaim {
    let mut changed = claim.clone();
    changed.spec.get_or_insert_default().storage_class_name = Some(class.into());
    changed
}

/// `claim` annotated for the external `provisioner` (upstream's `setClaimProvisioner`, the
/// beta annotation too), or `None` when it is already.
pub fn claim_with_provisioner(
    claim: &PersistentVolumeClaim,
    provisioner: &str,
) -> Option<PersistentVolumeClaim> {
    if annotation(&claim.metadata, ANN_STORAGE_PROVISIONER) == Some(provisioner) {
        return None;
    }
    let mut changed = claim.clone();
    let annotations = changed.metadata.annotations.get_or_insert_default();
    annotations.insert(ANN_BETA_STORAGE_PROVISIONER.into(), provisioner.into());
    annotations.insert(ANN_STORAGE_PROVISIONER.into(), provisioner.into());
    Some(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistent_volume::fixtures::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn ann<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
        annotation(meta, key)
    }

    #[test]
    fn a_volume_the_controller_chose_is_marked_so() {
        let c = claim("c", "1Gi", &[RWO]);
        let bound = bind_volume(&volume("v", "2Gi", &[RWO]), &c).expect("changed");
        let reference = bound.spec.as_ref().and_then(|s| s.claim_ref.clone()).expect("claimRef");
        assert_eq!(reference.kind.as_deref(), Some("PersistentVolumeClaim"));
        assert_eq!(reference.api_version.as_deref(), Some("v1"));
        assert_eq!(reference.namespace.as_deref(), Some("ns"));
        assert_eq!(reference.name.as_deref(), Some("c"));
        assert_eq!(reference.uid.as_deref(), Some("uid-c"));
        assert_eq!(ann(&bound.metadata, ANN_BOUND_BY_CONTROLLER), Some("yes"));
        assert_eq!(bind_volume(&bound, &c), None, "bound already: nothing to write");
    }

    #[test]
    fn a_volume_reserved_for_the_claim_gets_its_uid_only() {
        let c = claim("c", "1Gi", &[RWO]);
        let bound =
            bind_volume(&reserved(volume("v", "2Gi", &[RWO]), "c", ""), &c).expect("changed");
        assert_eq!(
            bound.spec.as_ref().and_then(|s| s.claim_ref.as_ref()?.uid.as_deref()),
            Some("uid-c")
        );
        assert_eq!(ann(&bound.metadata, ANN_BOUND_BY_CONTROLLER), None);
    }

    #[test]
    fn a_volume_bound_to_an_earlier_claim_of_the_name_is_rebound_by_the_controller() {
        let c = claim("c", "1Gi", &[RWO]);
        let bound = bind_volume(&reserved(volume("v", "2Gi", &[RWO]), "c", "uid-old"), &c)
            .expect("changed");
        assert_eq!(
            bound.spec.as_ref().and_then(|s| s.claim_ref.as_ref()?.uid.as_deref()),
            Some("uid-c")
        );
        assert_eq!(ann(&bound.metadata, ANN_BOUND_BY_CONTROLLER), Some("yes"));
    }

    #[test]
    fn phases_are_written_only_when_they_change() {
        let v = volume("v", "1Gi", &[RWO]);
        assert_eq!(volume_with_phase(&v, "Available", ""), None);
        let failed = volume_with_phase(&v, "Failed", "no plugin").expect("changed");
        let status = failed.status.expect("status");
        assert_eq!(
            (status.phase.as_deref(), status.message.as_deref()),
            (Some("Failed"), Some("no plugin"))
        );
        let released = volume_with_phase(&phase(v, "Failed"), "Released", "").expect("changed");
        assert_eq!(released.status.and_then(|s| s.message), None);
    }

    #[test]
    fn a_claim_the_controller_bound() {
        let c = claim("c", "1Gi", &[RWO]);
        let bound = bind_claim(&c, &volume("v", "2Gi", &[RWO])).expect("changed");
        assert_eq!(volume_name(&bound), "v");
        assert_eq!(ann(&bound.metadata, ANN_BOUND_BY_CONTROLLER), Some("yes"));
        assert_eq!(ann(&bound.metadata, ANN_BIND_COMPLETED), Some("yes"));
        assert_eq!(bind_claim(&bound, &volume("v", "2Gi", &[RWO])), None);
    }

    #[test]
    fn a_claim_that_named_its_volume_is_not_marked_bound_by_the_controller() {
        let c = naming(claim("c", "1Gi", &[RWO]), "v");
        let bound = bind_claim(&c, &volume("v", "2Gi", &[RWO])).expect("changed");
        assert_eq!(ann(&bound.metadata, ANN_BOUND_BY_CONTROLLER), None);
        assert_eq!(ann(&bound.metadata, ANN_BIND_COMPLETED), Some("yes"));
    }

    #[test]
    fn a_claim_becoming_bound_reports_the_volume_s_capacity_and_modes() {
        let v = volume("v", "2Gi", &[RWO, ROX]);
        let c = reporting(claim("c", "1Gi", &[RWO]), "Pending");
        let bound = claim_with_status(&c, "Bound", Some(&v)).expect("capacity").expect("changed");
        let status = bound.status.clone().expect("status");
        assert_eq!(status.phase.as_deref(), Some("Bound"));
        assert_eq!(status.access_modes, Some(vec![RWO.to_string(), ROX.to_string()]));
        assert_eq!(
            status.capacity.and_then(|c| c.get("storage").cloned()),
            Some(Quantity("2Gi".into()))
        );
        assert_eq!(claim_with_status(&bound, "Bound", Some(&v)), Ok(None), "nothing changes");
    }

    #[test]
    fn a_bound_claim_keeps_the_capacity_it_reports() {
        let v = volume("v", "4Gi", &[RWO]);
        let mut c = reporting(claim("c", "1Gi", &[RWO]), "Bound");
        if let Some(status) = c.status.as_mut() {
            status.access_modes = Some(vec![RWO.into()]);
            status.capacity = Some([("storage".to_string(), Quantity("2Gi".into()))].into());
        }
        assert_eq!(claim_with_status(&c, "Bound", Some(&v)), Ok(None));
    }

    #[test]
    fn a_volume_being_expanded_gives_its_size_before_the_expansion() {
        let v = volume_annotated(volume("v", "4Gi", &[RWO]), ANN_PRE_RESIZE_CAPACITY, "2Gi");
        let c = claim("c", "1Gi", &[RWO]);
        let bound = claim_with_status(&c, "Bound", Some(&v)).expect("capacity").expect("changed");
        let capacity =
            bound.status.and_then(|s| s.capacity).and_then(|c| c.get("storage").cloned());
        assert_eq!(capacity, Some(Quantity("2Gi".into())));
    }

    #[test]
    fn a_pending_claim_reports_no_capacity_or_modes() {
        let mut c = reporting(claim("c", "1Gi", &[RWO]), "Bound");
        if let Some(status) = c.status.as_mut() {
            status.access_modes = Some(vec![RWO.into()]);
            status.capacity = Some([("storage".to_string(), Quantity("2Gi".into()))].into());
        }
        let pending = claim_with_status(&c, "Pending", None).expect("ok").expect("changed");
        let status = pending.status.expect("status");
        assert_eq!((status.access_modes, status.capacity), (None, None));
        assert_eq!(
            claim_with_status(&reporting(claim("c", "1Gi", &[RWO]), "Pending"), "Pending", None),
            Ok(None)
        );
    }

    #[test]
    fn a_volume_without_capacity_cannot_bind() {
        let mut v = volume("v", "1Gi", &[RWO]);
        if let Some(spec) = v.spec.as_mut() {
            spec.capacity = None;
        }
        let err =
            claim_with_status(&claim("c", "1Gi", &[RWO]), "Bound", Some(&v)).expect_err("refused");
        assert_eq!(err.to_string(), "PersistentVolume \"v\" is without a storage capacity");
    }

    #[test]
    fn unbinding_undoes_only_what_the_controller_did() {
        let by_controller = volume_annotated(
            reserved(volume("v", "1Gi", &[RWO]), "c", "uid-c"),
            ANN_BOUND_BY_CONTROLLER,
            "yes",
        );
        let undone = unbind_volume(&by_controller);
        assert_eq!(undone.spec.as_ref().and_then(|s| s.claim_ref.clone()), None);
        assert_eq!(undone.metadata.annotations, None);
        let by_user = unbind_volume(&reserved(volume("v", "1Gi", &[RWO]), "c", "uid-c"));
        let reference =
            by_user.spec.as_ref().and_then(|s| s.claim_ref.clone()).expect("still reserved");
        assert_eq!((reference.name.as_deref(), reference.uid), (Some("c"), None));
    }

    #[test]
    fn a_claim_is_annotated_for_its_external_provisioner_once() {
        let c = claim("c", "1Gi", &[RWO]);
        let asked = claim_with_provisioner(&c, "example.com/nfs").expect("changed");
        assert_eq!(ann(&asked.metadata, ANN_STORAGE_PROVISIONER), Some("example.com/nfs"));
        assert_eq!(ann(&asked.metadata, ANN_BETA_STORAGE_PROVISIONER), Some("example.com/nfs"));
        assert_eq!(claim_with_provisioner(&asked, "example.com/nfs"), None);
        let class = claim_with_class(&c, "std");
        assert_eq!(class.spec.and_then(|s| s.storage_class_name).as_deref(), Some("std"));
    }
}
