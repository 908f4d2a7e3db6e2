//! Which volume a claim gets, as upstream's `findBestMatchForClaim` (`index.go`) and
//! `FindMatchingVolume` (`component-helpers/storage/volume/pv_helpers.go`) choose it, and
//! whether a volume a claim names satisfies it (`checkVolumeSatisfyClaim`).
//!
//! Volumes are grouped by their set of access modes; the sets holding every mode the claim
//! asks for are searched fewest modes first, so a claim gets what is closest to what it asked
//! for. Within a set, a volume reserved for the claim (its `claimRef` names the claim) wins if
//! it is large enough; otherwise the smallest `Available` volume that fits: capacity at least
//! the request, same class, same volume mode, labels matching the claim's selector, not being
//! deleted, not reserved for another claim. A claim whose class binds on first consumer only
//! takes a volume reserved for it (the scheduler chooses the others).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::core::{Selector, SelectorExt};

use super::objects::{
    VOLUME_AVAILABLE, capacity, claim_class, claim_modes, is_volume_bound_to_claim, requested,
    volume_class, volume_modes, volume_phase,
};
use super::quantity;

/// Upstream's short names of the access modes, in its order.
const MODES: [&str; 4] = ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"];

/// A claim's selector that cannot be read (validation refuses these, so only a claim written
/// around it has one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("error creating internal label selector for claim: {claim}: {reason}")]
pub struct InvalidSelector {
    /// The claim, `namespace/name`.
    pub claim: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a volume a claim names cannot be bound to it, worded as upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The volume is being deleted.
    Deleting(String),
    /// Its capacity is below the claim's request.
    TooSmall,
    /// It belongs to another class.
    Class,
    /// Block against file system.
    VolumeMode,
    /// It lacks one of the access modes the claim asks for.
    AccessMode,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Deleting(volume) => write!(f, "the volume is marked for deletion {volume:?}"),
            Mismatch::TooSmall => f.write_str("requested PV is too small"),
            Mismatch::Class => f.write_str("storageClassName does not match"),
            Mismatch::VolumeMode => f.write_str("incompatible volumeMode"),
            Mismatch::AccessMode => f.write_str("incompatible accessMode"),
        }
    }
}

/// Whether the volume modes of a claim and a volume differ (an absent mode is `Filesystem`).
pub fn volume_mode_mismatch(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let claim_mode = claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    let volume_mode = volume.spec.as_ref().and_then(|s| s.volume_mode.as_deref());
    claim_mode.unwrap_or("Filesystem") != volume_mode.unwrap_or("Filesystem")
}

/// Whether `offered` holds every mode of `requested`.
pub fn has_access_modes(offered: &[String], requested: &[String]) -> bool {
    requested.iter().all(|mode| offered.contains(mode))
}

/// Whether `volume`, which `claim` names, satisfies it (upstream's `checkVolumeSatisfyClaim`;
/// sizes compared in whole units, as its `Value()`).
pub fn check_satisfies(
    volume: &PersistentVolume,
    claim: &PersistentVolumeClaim,
) -> Result<(), Mismatch> {
    if volume.metadata.deletion_timestamp.is_some() {
        return Err(Mismatch::Deleting(volume.metadata.name.clone().unwrap_or_default()));
    }
    let units = |nanos: i128| {
        nanos.div_euclid(1_000_000_000) + i128::from(nanos.rem_euclid(1_000_000_000) != 0)
    };
    if units(quantity::value(capacity(volume))) < units(quantity::value(requested(claim))) {
        return Err(Mismatch::TooSmall);
    }
    if volume_class(volume) != claim_class(claim) {
        return Err(Mismatch::Class);
    }
    if volume_mode_mismatch(claim, volume) {
        return Err(Mismatch::VolumeMode);
    }
    if !has_access_modes(volume_modes(volume), claim_modes(claim)) {
        return Err(Mismatch::AccessMode);
    }
    Ok(())
}

/// The volume `claim` should be bound to among `volumes`, if any. `delay_binding`: the claim's
/// class binds on first consumer, so only a volume reserved for the claim is taken. Ties are
/// broken by name, so that the choice does not depend on the cache's order.
pub fn find_best_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    delay_binding: bool,
) -> Result<Option<&'a PersistentVolume>, InvalidSelector> {
    let selector = match claim.spec.as_ref().and_then(|s| s.selector.clone()) {
        Some(selector) => Some(Selector::try_from(selector).map_err(|e| InvalidSelector {
            claim: super::objects::claim_key(claim),
            reason: e.0,
        })?),
        None => None,
    };
    let mut by_modes: BTreeMap<Vec<&str>, Vec<&PersistentVolume>> = BTreeMap::new();
    for volume in volumes {
        by_modes.entry(mode_set(volume_modes(volume))).or_default().push(volume);
    }
    let wanted = claim_modes(claim);
    let mut sets: Vec<(&Vec<&str>, &mut Vec<&PersistentVolume>)> = by_modes
        .iter_mut()
        .filter(|(modes, _)| wanted.iter().all(|m| modes.contains(&m.as_str())))
        .collect();
    sets.sort_by_key(|(modes, _)| modes.len());
    for (_, volumes) in sets {
        volumes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        if let Some(found) = matching_volume(claim, volumes, selector.as_ref(), delay_binding) {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// A set of access modes in upstream's canonical order, without repeats.
fn mode_set(modes: &[String]) -> Vec<&str> {
    let mut set: Vec<&str> = modes.iter().map(String::as_str).collect();
    set.sort_by_key(|m| (MODES.iter().position(|k| k == m).unwrap_or(MODES.len()), *m));
    set.dedup();
    set
}

/// Upstream's `FindMatchingVolume` over one access-mode set, in the controller's path (no node,
/// nothing excluded).
fn matching_volume<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &[&'a PersistentVolume],
    selector: Option<&Selector>,
    delay_binding: bool,
) -> Option<&'a PersistentVolume> {
    let request = quantity::value(requested(claim));
    let class = claim_class(claim);
    let mut smallest: Option<(&PersistentVolume, i128)> = None;
    for &volume in volumes {
        let bound_here = is_volume_bound_to_claim(volume, claim);
        if volume.spec.as_ref().is_some_and(|s| s.claim_ref.is_some()) && !bound_here {
            continue;
        }
        let size = quantity::value(capacity(volume));
        if size < request
            || volume_mode_mismatch(claim, volume)
            || volume.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        if bound_here {
            return Some(volume);
        }
        if delay_binding || volume_phase(volume) != VOLUME_AVAILABLE {
            continue;
        }
        let empty = BTreeMap::new();
        let labels = volume.metadata.labels.as_ref().unwrap_or(&empty);
        if selector.is_some_and(|s| !s.matches(labels)) || volume_class(volume) != class {
            continue;
        }
        if smallest.is_none_or(|(_, best)| best > size) {
            smallest = Some((volume, size));
        }
    }
    smallest.map(|(volume, _)| volume)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistent_volume::fixtures::{
        ROX, RWO, RWX, block, claim, deleting, in_class as class, labelled, of_class, phase,
        reserved, selecting, volume,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    #[test]
    fn the_claim_gets_the_volume_upstream_would_choose() {
        let two = || labelled(volume("two", "2Gi", &[RWO]), "tier", "fast");
        // (case, claim, volumes, binding delayed, volume chosen)
        type Case = (
            &'static str,
            PersistentVolumeClaim,
            Vec<PersistentVolume>,
            bool,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                "the smallest volume that fits",
                claim("c", "1Gi", &[RWO]),
                vec![volume("big", "10Gi", &[RWO]), two(), volume("small", "500Mi", &[RWO])],
                false,
                Some("two"),
            ),
            (
                "an exact fit counts, whatever its notation",
                claim("c", "1024Mi", &[RWO]),
                vec![volume("big", "10Gi", &[RWO]), volume("exact", "1Gi", &[RWO])],
                false,
                Some("exact"),
            ),
            ("none fits", claim("c", "5Gi", &[RWO]), vec![two()], false, None),
            (
                "the fewest access modes first, even if larger",
                claim("c", "1Gi", &[RWO]),
                vec![volume("many", "1Gi", &[RWO, ROX, RWX]), volume("one", "8Gi", &[RWO])],
                false,
                Some("one"),
            ),
            (
                "a superset of the modes when no exact set fits",
                claim("c", "1Gi", &[RWX]),
                vec![volume("one", "1Gi", &[RWO]), volume("many", "1Gi", &[RWX, RWO])],
                false,
                Some("many"),
            ),
            (
                "only volumes of the claim's class",
                claim("c", "1Gi", &[RWO]),
                vec![
                    class(volume("classy", "1Gi", &[RWO]), "fast"),
                    volume("plain", "3Gi", &[RWO]),
                ],
                false,
                Some("plain"),
            ),
            (
                "a claim of a class takes none without it",
                of_class(claim("c", "1Gi", &[RWO]), "fast"),
                vec![
                    volume("plain", "3Gi", &[RWO]),
                    class(volume("classy", "5Gi", &[RWO]), "fast"),
                ],
                false,
                Some("classy"),
            ),
            (
                "only available volumes",
                claim("c", "1Gi", &[RWO]),
                vec![
                    phase(volume("released", "1Gi", &[RWO]), "Released"),
                    volume("free", "2Gi", &[RWO]),
                ],
                false,
                Some("free"),
            ),
            (
                "not a volume reserved for another claim",
                claim("c", "1Gi", &[RWO]),
                vec![
                    reserved(volume("theirs", "1Gi", &[RWO]), "other", ""),
                    volume("free", "2Gi", &[RWO]),
                ],
                false,
                Some("free"),
            ),
            (
                "a volume reserved for the claim wins over a smaller one",
                claim("c", "1Gi", &[RWO]),
                vec![
                    volume("a-small", "1Gi", &[RWO]),
                    reserved(volume("mine", "9Gi", &[RWO]), "c", ""),
                ],
                false,
                Some("mine"),
            ),
            (
                "a volume reserved for the claim's uid wins whatever its phase or class",
                claim("c", "1Gi", &[RWO]),
                vec![class(
                    phase(reserved(volume("mine", "1Gi", &[RWO]), "c", "uid-c"), "Bound"),
                    "x",
                )],
                false,
                Some("mine"),
            ),
            (
                "not a volume reserved for an earlier claim of that name",
                claim("c", "1Gi", &[RWO]),
                vec![reserved(volume("old", "1Gi", &[RWO]), "c", "uid-old")],
                false,
                None,
            ),
            (
                "a reserved volume too small is passed over",
                claim("c", "2Gi", &[RWO]),
                vec![
                    reserved(volume("mine", "1Gi", &[RWO]), "c", ""),
                    volume("free", "2Gi", &[RWO]),
                ],
                false,
                Some("free"),
            ),
            (
                "the volume mode must be the same",
                claim("c", "1Gi", &[RWO]),
                vec![block(volume("raw", "1Gi", &[RWO]))],
                false,
                None,
            ),
            (
                "not a volume being deleted",
                claim("c", "1Gi", &[RWO]),
                vec![deleting(volume("going", "1Gi", &[RWO]))],
                false,
                None,
            ),
            (
                "the selector picks by labels",
                selecting(
                    claim("c", "1Gi", &[RWO]),
                    LabelSelector {
                        match_labels: Some([("tier".to_string(), "fast".to_string())].into()),
                        ..Default::default()
                    },
                ),
                vec![volume("a-plain", "1Gi", &[RWO]), two()],
                false,
                Some("two"),
            ),
            (
                "a selector by expression",
                selecting(
                    claim("c", "1Gi", &[RWO]),
                    LabelSelector {
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "tier".into(),
                            operator: "NotIn".into(),
                            values: Some(vec!["fast".into()]),
                        }]),
                        ..Default::default()
                    },
                ),
                vec![volume("plain", "5Gi", &[RWO]), two()],
                false,
                Some("plain"),
            ),
            (
                "binding on first consumer takes no free volume",
                claim("c", "1Gi", &[RWO]),
                vec![two()],
                true,
                None,
            ),
            (
                "binding on first consumer takes the volume the scheduler reserved",
                claim("c", "1Gi", &[RWO]),
                vec![two(), reserved(volume("chosen", "3Gi", &[RWO]), "c", "uid-c")],
                true,
                Some("chosen"),
            ),
            (
                "equal sizes: the first by name",
                claim("c", "1Gi", &[RWO]),
                vec![volume("b", "1Gi", &[RWO]), volume("a", "1Gi", &[RWO])],
                false,
                Some("a"),
            ),
        ];
        for (case, claim, volumes, delay, want) in cases {
            let found = find_best_match(&claim, &volumes, delay).expect(case);
            assert_eq!(found.and_then(|v| v.metadata.name.as_deref()), want, "{case}");
        }
    }

    #[test]
    fn an_unreadable_selector_is_an_error() {
        let c = selecting(
            claim("c", "1Gi", &[RWO]),
            LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "Near".into(),
                    values: None,
                }]),
                ..Default::default()
            },
        );
        let volumes = [volume("v", "1Gi", &[RWO])];
        let err = find_best_match(&c, &volumes, false).expect_err("refused");
        assert!(
            err.to_string().starts_with("error creating internal label selector for claim: ns/c")
        );
    }

    #[test]
    fn a_named_volume_satisfies_the_claim_or_says_why_not() {
        type Case = (&'static str, PersistentVolume, PersistentVolumeClaim, Result<(), Mismatch>);
        let cases: Vec<Case> = vec![
            ("fits", volume("v", "1Gi", &[RWO, ROX]), claim("c", "1Gi", &[RWO]), Ok(())),
            (
                "deleting",
                deleting(volume("v", "1Gi", &[RWO])),
                claim("c", "1Gi", &[RWO]),
                Err(Mismatch::Deleting("v".into())),
            ),
            (
                "too small",
                volume("v", "1Gi", &[RWO]),
                claim("c", "2Gi", &[RWO]),
                Err(Mismatch::TooSmall),
            ),
            (
                "class",
                class(volume("v", "1Gi", &[RWO]), "x"),
                claim("c", "1Gi", &[RWO]),
                Err(Mismatch::Class),
            ),
            (
                "mode",
                block(volume("v", "1Gi", &[RWO])),
                claim("c", "1Gi", &[RWO]),
                Err(Mismatch::VolumeMode),
            ),
            (
                "access",
                volume("v", "1Gi", &[ROX]),
                claim("c", "1Gi", &[RWO]),
                Err(Mismatch::AccessMode),
            ),
        ];
        for (case, v, c, want) in cases {
            assert_eq!(check_satisfies(&v, &c), want, "{case}");
        }
        assert_eq!(
            Mismatch::Deleting("v".into()).to_string(),
            "the volume is marked for deletion \"v\""
        );
    }
}
