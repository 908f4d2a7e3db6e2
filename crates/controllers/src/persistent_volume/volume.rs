//! What a volume's sync does, as upstream's `syncVolume` and `reclaimVolume` decide it
//! (`pv_controller.go`). Pure: the caller resolves the claim the volume points at (from the
//! cache, and from the API when the cache does not show it, so that a volume is never released
//! because the cache lags) and carries the answer out (`mod.rs`).
//!
//! A volume no claim points at, or only reserved for a claim (no uid yet), is `Available`; one
//! whose claim is bound to it is `Bound`. One whose claim is gone (or was replaced by another
//! of the same name) is `Released` and reclaimed by its policy: `Retain` keeps it; `Recycle`
//! and `Delete` need a volume plugin that recycles or deletes, and krust runs none, so the
//! volume is `Failed` with upstream's message, unless a provisioner outside the binder made
//! it (its `pv.kubernetes.io/provisioned-by` names no `kubernetes.io/` plugin: it deletes its
//! own volumes, as krust's `krust.io/local-path` does) or it is a CSI volume. One bound by the
//! controller to a claim that got another volume is unbound again.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use super::matching::volume_mode_mismatch;
use super::objects::{
    ANN_DYNAMICALLY_PROVISIONED, ANN_MIGRATED_TO, VOLUME_AVAILABLE, VOLUME_BOUND, VOLUME_FAILED,
    VOLUME_RELEASED, annotation, claim_ref, has_annotation, uid, volume_name, volume_phase,
};
use super::{Note, reason};

/// What to do for a volume.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing: it is as it should be, or the claim's sync finishes the binding.
    Nothing,
    /// Report the phase (the message cleared), if it is not the phase already.
    Phase(&'static str),
    /// The claim is gone: report `Released` unless the volume is `Released` or `Failed`
    /// already, then reclaim it.
    Release(Reclaim),
    /// The volume cannot serve the claim that points at it: record the events on the volume
    /// and on the claim.
    Mismatch {
        /// The event on the volume.
        volume: Note,
        /// The event on the claim.
        claim: Note,
    },
    /// The claim got another volume: undo this volume's side of the binding (all of it if the
    /// controller made it, only the claim's uid if the user reserved the volume), then report
    /// it `Available`.
    Unbind,
}

/// How a released volume is reclaimed.
#[derive(Debug, Clone, PartialEq)]
pub enum Reclaim {
    /// Kept as it is: `Retain`, or someone else (an external provisioner, a migrated CSI
    /// driver) deletes it.
    Keep,
    /// No plugin can: report `Failed` with the note's message, and the event when the phase
    /// changes.
    Fail(Note),
}

/// What to do for `volume`, whose `claimRef` resolves to `claim` (`None`: no such claim, or
/// one with another uid).
pub fn sync(volume: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> Action {
    let Some((_, _, claim_uid)) = claim_ref(volume) else {
        return Action::Phase(VOLUME_AVAILABLE);
    };
    if claim_uid.is_empty() {
        // Reserved for a claim not yet bound to it; the claim's sync binds them.
        return Action::Phase(VOLUME_AVAILABLE);
    }
    let Some(claim) = claim.filter(|c| uid(c) == claim_uid) else {
        return Action::Release(reclaim(volume));
    };
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    let bound_to = volume_name(claim);
    if bound_to.is_empty() {
        if volume_mode_mismatch(claim, volume) {
            let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
            return Action::Mismatch {
                volume: Note::warning(
                    reason::VOLUME_MISMATCH,
                    format!(
                        "Cannot bind PersistentVolume to requested PersistentVolumeClaim \
                         {claim_name:?} due to incompatible volumeMode."
                    ),
                ),
                claim: Note::warning(
                    reason::VOLUME_MISMATCH,
                    format!(
                        "Cannot bind PersistentVolume {name:?} to requested \
                         PersistentVolumeClaim due to incompatible volumeMode."
                    ),
                ),
            };
        }
        // The binding is half done (by this controller or the scheduler), or the user
        // unbound the claim: the claim's sync (woken by this volume's change) fixes it.
        return Action::Nothing;
    }
    if bound_to == name {
        return Action::Phase(VOLUME_BOUND);
    }
    let provisioned = has_annotation(&volume.metadata, ANN_DYNAMICALLY_PROVISIONED);
    if provisioned && reclaim_policy(volume) == "Delete" {
        // Provisioned for a claim that got another volume: not needed.
        return Action::Release(reclaim(volume));
    }
    Action::Unbind
}

/// The volume's reclaim policy.
fn reclaim_policy(volume: &PersistentVolume) -> &str {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or_default()
}

/// How upstream's `reclaimVolume` treats a released volume when no in-tree volume plugin is
/// there to recycle or delete it.
pub fn reclaim(volume: &PersistentVolume) -> Reclaim {
    if annotation(&volume.metadata, ANN_MIGRATED_TO).is_some_and(|d| !d.is_empty()) {
        // A CSI driver's external provisioner acts on it.
        return Reclaim::Keep;
    }
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    match reclaim_policy(volume) {
        "Retain" => Reclaim::Keep,
        "Recycle" => Reclaim::Fail(Note::warning(
            reason::VOLUME_FAILED_RECYCLE,
            "No recycler plugin found for the volume!".into(),
        )),
        "Delete" => {
            match annotation(&volume.metadata, ANN_DYNAMICALLY_PROVISIONED)
                .filter(|p| !p.is_empty())
            {
                // An external provisioner deletes the volumes it made.
                Some(p) if !p.starts_with("kubernetes.io/") => Reclaim::Keep,
                Some(p) => Reclaim::Fail(Note::warning(
                    reason::VOLUME_FAILED_DELETE,
                    format!("no volume plugin matched name: {p}"),
                )),
                // A CSI volume is deleted by its driver's provisioner.
                None if volume.spec.as_ref().is_some_and(|s| s.csi.is_some()) => Reclaim::Keep,
                None => Reclaim::Fail(Note::warning(
                    reason::VOLUME_FAILED_DELETE,
                    format!(
                        "error getting deleter volume plugin for volume {name:?}: no volume \
                         plugin matched"
                    ),
                )),
            }
        }
        _ => Reclaim::Fail(Note::warning(
            reason::VOLUME_UNKNOWN_RECLAIM_POLICY,
            "Volume has unrecognized PersistentVolumeReclaimPolicy".into(),
        )),
    }
}

/// Whether a released volume is reported `Released` first: not when it is `Released` or
/// `Failed` already (a failure stays visible while reclaiming is retried).
pub fn marks_released(volume: &PersistentVolume) -> bool {
    !matches!(volume_phase(volume), VOLUME_RELEASED | VOLUME_FAILED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistent_volume::fixtures::*;
    use k8s_openapi::api::core::v1::CSIPersistentVolumeSource;

    fn failed(reason: &'static str, message: &str) -> Reclaim {
        Reclaim::Fail(Note::warning(reason, message.into()))
    }

    #[test]
    fn volumes() {
        let c = || claim("c", "1Gi", &[RWO]);
        let mine = || reserved(volume("v", "1Gi", &[RWO]), "c", "uid-c");
        let deleted_by = |key: &str, by: &str| volume_annotated(policy(mine(), "Delete"), key, by);
        let provisioned_by = |by: &str| deleted_by("pv.kubernetes.io/provisioned-by", by);
        let available = Action::Phase("Available");
        let no_deleter = "error getting deleter volume plugin for volume \"v\": no volume plugin \
                          matched";
        let no_recycler = "No recycler plugin found for the volume!";
        let in_tree = "no volume plugin matched name: kubernetes.io/gce-pd";
        let mode = |message: &str| Note::warning("VolumeMismatch", message.into());
        // (case, volume, the claim it points at, what is done)
        type Case = (&'static str, PersistentVolume, Option<PersistentVolumeClaim>, Action);
        let cases: Vec<Case> = vec![
            ("unused", phase(volume("v", "1Gi", &[RWO]), "Pending"), None, available.clone()),
            (
                "reserved for a claim",
                reserved(volume("v", "1Gi", &[RWO]), "c", ""),
                None,
                available,
            ),
            ("bound both ways", mine(), Some(bound(c(), "v")), Action::Phase("Bound")),
            ("claim gone, retained", mine(), None, Action::Release(Reclaim::Keep)),
            (
                "claim replaced by one of the same name",
                mine(),
                Some(claim("c", "1Gi", &[RWO])).map(|mut x| {
                    x.metadata.uid = Some("uid-new".into());
                    x
                }),
                Action::Release(Reclaim::Keep),
            ),
            (
                "claim gone, deleted by no plugin",
                policy(mine(), "Delete"),
                None,
                Action::Release(failed("VolumeFailedDelete", no_deleter)),
            ),
            (
                "claim gone, recycled by no plugin",
                policy(mine(), "Recycle"),
                None,
                Action::Release(failed("VolumeFailedRecycle", no_recycler)),
            ),
            (
                "claim gone, deleted by its external provisioner",
                provisioned_by("example.com/nfs"),
                None,
                Action::Release(Reclaim::Keep),
            ),
            (
                "claim gone, deleted by krust's local-path provisioner",
                provisioned_by("krust.io/local-path"),
                None,
                Action::Release(Reclaim::Keep),
            ),
            (
                "claim gone, provisioned by an in-tree plugin krust lacks",
                provisioned_by("kubernetes.io/gce-pd"),
                None,
                Action::Release(failed("VolumeFailedDelete", in_tree)),
            ),
            (
                "claim gone, migrated to a CSI driver",
                deleted_by("pv.kubernetes.io/migrated-to", "pd.csi.storage.gke.io"),
                None,
                Action::Release(Reclaim::Keep),
            ),
            (
                "claim gone, unknown policy",
                policy(mine(), "Shred"),
                None,
                Action::Release(failed(
                    "VolumeUnknownReclaimPolicy",
                    "Volume has unrecognized PersistentVolumeReclaimPolicy",
                )),
            ),
            ("binding half done", mine(), Some(c()), Action::Nothing),
            (
                "the claim's volume mode differs",
                block(mine()),
                Some(c()),
                Action::Mismatch {
                    volume: mode(
                        "Cannot bind PersistentVolume to requested PersistentVolumeClaim \"c\" due \
                         to incompatible volumeMode.",
                    ),
                    claim: mode(
                        "Cannot bind PersistentVolume \"v\" to requested PersistentVolumeClaim due \
                         to incompatible volumeMode.",
                    ),
                },
            ),
            ("the claim got another volume", mine(), Some(bound(c(), "other")), Action::Unbind),
            (
                "a provisioned volume the claim did not take",
                provisioned_by("example.com/nfs"),
                Some(bound(c(), "other")),
                Action::Release(Reclaim::Keep),
            ),
        ];
        for (case, v, claim, want) in cases {
            assert_eq!(sync(&v, claim.as_ref()), want, "{case}");
        }
    }

    #[test]
    fn a_csi_volume_is_left_to_its_driver() {
        let mut v = policy(volume("v", "1Gi", &[RWO]), "Delete");
        if let Some(spec) = v.spec.as_mut() {
            spec.csi = Some(CSIPersistentVolumeSource { driver: "d".into(), ..Default::default() });
        }
        assert_eq!(reclaim(&v), Reclaim::Keep);
    }

    #[test]
    fn a_failed_or_released_volume_is_not_marked_again() {
        assert!(marks_released(&volume("v", "1Gi", &[RWO])));
        assert!(!marks_released(&phase(volume("v", "1Gi", &[RWO]), "Released")));
        assert!(!marks_released(&phase(volume("v", "1Gi", &[RWO]), "Failed")));
    }
}
