//! Which PersistentVolume a claim may bind, as upstream's `component-helpers/storage/volume`
//! (`FindMatchingVolume`): shared by the volume binder controller and the scheduler's
//! VolumeBinding plugin, so that both choose alike.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use crate::quantity::Amount;
use crate::selector::LabelSelector;

/// The annotation that named a class before `storageClassName` existed.
pub const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

/// A claim's storage class (`""` for none), the beta annotation first, as upstream's
/// `GetPersistentVolumeClaimClass`.
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    if let Some(class) = claim.metadata.annotations.as_ref().and_then(|a| a.get(BETA_STORAGE_CLASS))
    {
        return class;
    }
    claim.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default()
}

/// A volume's storage class (`""` for none), as upstream's `GetPersistentVolumeClass`.
pub fn volume_class(volume: &PersistentVolume) -> &str {
    if let Some(class) =
        volume.metadata.annotations.as_ref().and_then(|a| a.get(BETA_STORAGE_CLASS))
    {
        return class;
    }
    volume.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or_default()
}

/// Whether `volume` is bound (or pre-bound) to `claim`: its claimRef names the claim, with
/// the claim's uid or none.
pub fn is_bound_to(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    let Some(reference) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    let meta = &claim.metadata;
    reference.name == meta.name
        && reference.namespace == meta.namespace
        && reference
            .uid
            .as_deref()
            .is_none_or(|uid| uid.is_empty() || Some(uid) == meta.uid.as_deref())
}

/// The storage a claim asks for.
pub fn requested(claim: &PersistentVolumeClaim) -> Amount {
    claim
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Amount::of(q).ok())
        .unwrap_or_default()
}

/// A volume's capacity.
pub fn capacity(volume: &PersistentVolume) -> Amount {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Amount::of(q).ok())
        .unwrap_or_default()
}

/// Whether the volume offers every access mode the claim asks for.
pub fn access_modes_fit(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let wanted = claim.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default();
    let offered = volume.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default();
    wanted.iter().all(|mode| offered.contains(mode))
}

fn volume_mode_matches(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let mode = |m: Option<&str>| m.unwrap_or("Filesystem").to_string();
    mode(claim.spec.as_ref().and_then(|s| s.volume_mode.as_deref()))
        == mode(volume.spec.as_ref().and_then(|s| s.volume_mode.as_deref()))
}

fn selector_matches(claim: &PersistentVolumeClaim, volume: &PersistentVolume) -> bool {
    let Some(selector) = claim.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return true;
    };
    let Ok(value) = serde_json::to_value(selector) else { return false };
    let Ok(selector) = LabelSelector::from_label_selector(&value) else { return false };
    let labels = volume.metadata.labels.as_ref();
    selector.matches(labels.into_iter().flatten().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// Where a match is looked for.
pub struct Search<'a> {
    /// Whether the volume's node affinity admits the node being considered (the scheduler);
    /// `None` when no node is (the controller).
    pub on_node: Option<&'a dyn Fn(&PersistentVolume) -> bool>,
    /// Volumes not to choose (already chosen for another claim of the pod, or assumed).
    pub excluded: &'a dyn Fn(&str) -> bool,
    /// Whether the claim's binding waits for its first consumer: then only the scheduler
    /// (with a node) binds it to a volume not pre-bound to it.
    pub delay_binding: bool,
}

/// The volume `claim` should bind, as upstream's `FindMatchingVolume`: the volume pre-bound
/// to it (when its node affinity admits the node), else the smallest Available volume of
/// its class that is large enough, of its volume mode, offers its access modes, matches its
/// selector and is not pre-bound elsewhere or being deleted.
pub fn find_matching<'v>(
    claim: &PersistentVolumeClaim,
    volumes: impl IntoIterator<Item = &'v PersistentVolume>,
    search: &Search<'_>,
) -> Option<&'v PersistentVolume> {
    let wanted = requested(claim);
    let class = claim_class(claim);
    let mut smallest: Option<(&PersistentVolume, Amount)> = None;
    for volume in volumes {
        let name = volume.metadata.name.as_deref().unwrap_or_default();
        if (search.excluded)(name) {
            continue;
        }
        let pre_bound = is_bound_to(volume, claim);
        if volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_some() && !pre_bound {
            continue;
        }
        let size = capacity(volume);
        if size < wanted
            || !volume_mode_matches(claim, volume)
            || volume.metadata.deletion_timestamp.is_some()
        {
            continue;
        }
        let on_node = search.on_node.is_none_or(|admits| admits(volume));
        if pre_bound {
            return on_node.then_some(volume);
        }
        if search.on_node.is_none() && search.delay_binding {
            continue;
        }
        let available =
            volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Available");
        if !available
            || !selector_matches(claim, volume)
            || volume_class(volume) != class
            || !on_node
            || !access_modes_fit(claim, volume)
        {
            continue;
        }
        if smallest.as_ref().is_none_or(|(_, best)| *best > size) {
            smallest = Some((volume, size));
        }
    }
    smallest.map(|(volume, _)| volume)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn volume(name: &str, size: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"disk": "ssd"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "manual", "hostPath": {"path": "/tmp"}},
            "status": {"phase": "Available"}});
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).expect("a volume")
    }

    fn claim(size: &str, extra: serde_json::Value) -> PersistentVolumeClaim {
        let mut c = json!({
            "metadata": {"name": "data", "namespace": "ns", "uid": "c1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "resources": {"requests": {"storage": size}}}});
        json_patch::merge(&mut c, &extra);
        serde_json::from_value(c).expect("a claim")
    }

    fn find<'v>(c: &PersistentVolumeClaim, vs: &'v [PersistentVolume]) -> Option<&'v str> {
        let search = Search { on_node: None, excluded: &|_| false, delay_binding: false };
        find_matching(c, vs, &search).and_then(|v| v.metadata.name.as_deref())
    }

    #[test]
    fn the_smallest_volume_that_fits_wins() {
        let vs = [
            volume("big", "10Gi", json!({})),
            volume("small", "1Gi", json!({})),
            volume("fits", "2Gi", json!({})),
            volume("other-class", "2Gi", json!({"spec": {"storageClassName": "fast"}})),
            volume("bound", "2Gi", json!({"status": {"phase": "Bound"}})),
            volume("rwx-only", "2Gi", json!({"spec": {"accessModes": ["ReadWriteMany"]}})),
            volume("block", "2Gi", json!({"spec": {"volumeMode": "Block"}})),
        ];
        assert_eq!(find(&claim("2Gi", json!({})), &vs), Some("fits"));
        assert_eq!(find(&claim("20Gi", json!({})), &vs), None);
        let hdd = claim("1Gi", json!({"spec": {"selector": {"matchLabels": {"disk": "hdd"}}}}));
        assert_eq!(find(&hdd, &vs), None);
    }

    #[test]
    fn a_pre_bound_volume_wins_and_is_not_taken_by_others() {
        let mine = json!({"spec": {"claimRef": {"name": "data", "namespace": "ns"}}});
        let theirs = json!({"spec": {"claimRef": {"name": "other", "namespace": "ns"}}});
        let vs = [
            volume("a", "5Gi", json!({})),
            volume("mine", "50Gi", mine),
            volume("theirs", "1Gi", theirs),
        ];
        assert_eq!(find(&claim("1Gi", json!({})), &vs), Some("mine"));
        let stale =
            json!({"spec": {"claimRef": {"name": "data", "namespace": "ns", "uid": "old"}}});
        let vs = [volume("stale", "1Gi", stale)];
        assert_eq!(find(&claim("1Gi", json!({})), &vs), None);
    }

    #[test]
    fn delayed_binding_is_left_to_the_scheduler() {
        let vs = [volume("a", "5Gi", json!({}))];
        let c = claim("1Gi", json!({}));
        let controller = Search { on_node: None, excluded: &|_| false, delay_binding: true };
        assert!(find_matching(&c, &vs, &controller).is_none());
        let admits = |v: &PersistentVolume| v.metadata.name.as_deref() == Some("a");
        let scheduler =
            Search { on_node: Some(&admits), excluded: &|_| false, delay_binding: true };
        assert!(find_matching(&c, &vs, &scheduler).is_some());
        let refuses = |_: &PersistentVolume| false;
        let elsewhere =
            Search { on_node: Some(&refuses), excluded: &|_| false, delay_binding: true };
        assert!(find_matching(&c, &vs, &elsewhere).is_none());
        let taken = Search { on_node: Some(&admits), excluded: &|n| n == "a", delay_binding: true };
        assert!(find_matching(&c, &vs, &taken).is_none());
    }
}
