//! Claims, volumes and classes for the decision tests.

use k8s_openapi::api::core::v1::{
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimStatus, PersistentVolumeSpec, PersistentVolumeStatus,
    VolumeResourceRequirements,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

pub const RWO: &str = "ReadWriteOnce";
pub const ROX: &str = "ReadOnlyMany";
pub const RWX: &str = "ReadWriteMany";

/// An `Available` volume of `size` with `modes`, no class, reclaim policy `Retain`.
pub fn volume(name: &str, size: &str, modes: &[&str]) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(format!("pv-uid-{name}")),
            resource_version: Some("1".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some([("storage".to_string(), Quantity(size.into()))].into()),
            access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
            persistent_volume_reclaim_policy: Some("Retain".into()),
            ..Default::default()
        }),
        status: Some(PersistentVolumeStatus {
            phase: Some("Available".into()),
            ..Default::default()
        }),
    }
}

/// A claim `ns/name` (uid `uid-NAME`) for `size` with `modes`, no class named, no status.
pub fn claim(name: &str, size: &str, modes: &[&str]) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("7".into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(modes.iter().map(|m| m.to_string()).collect()),
            resources: Some(VolumeResourceRequirements {
                requests: Some([("storage".to_string(), Quantity(size.into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// A class with `provisioner` and binding `mode`.
pub fn storage_class(name: &str, provisioner: &str, mode: &str) -> StorageClass {
    StorageClass {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        provisioner: provisioner.into(),
        volume_binding_mode: Some(mode.into()),
        reclaim_policy: Some("Delete".into()),
        ..Default::default()
    }
}

/// `class` marked as the default, created at `second`.
pub fn as_default(mut class: StorageClass, second: i64) -> StorageClass {
    class.metadata.annotations =
        Some([("storageclass.kubernetes.io/is-default-class".to_string(), "true".into())].into());
    class.metadata.creation_timestamp =
        Some(Time(Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH)));
    class
}

/// `v` reserved for (or bound to, with a `uid`) the claim `ns/claim`.
pub fn reserved(mut v: PersistentVolume, claim: &str, uid: &str) -> PersistentVolume {
    if let Some(spec) = v.spec.as_mut() {
        spec.claim_ref = Some(ObjectReference {
            kind: Some("PersistentVolumeClaim".into()),
            api_version: Some("v1".into()),
            namespace: Some("ns".into()),
            name: Some(claim.into()),
            uid: (!uid.is_empty()).then(|| uid.to_string()),
            ..Default::default()
        });
    }
    v
}

/// `v` in `class`.
pub fn in_class(mut v: PersistentVolume, class: &str) -> PersistentVolume {
    if let Some(spec) = v.spec.as_mut() {
        spec.storage_class_name = Some(class.into());
    }
    v
}

/// `v` reporting `phase`.
pub fn phase(mut v: PersistentVolume, phase: &str) -> PersistentVolume {
    v.status = Some(PersistentVolumeStatus { phase: Some(phase.into()), ..Default::default() });
    v
}

/// `v` with the reclaim `policy`.
pub fn policy(mut v: PersistentVolume, policy: &str) -> PersistentVolume {
    if let Some(spec) = v.spec.as_mut() {
        spec.persistent_volume_reclaim_policy = Some(policy.into());
    }
    v
}

/// `v` labelled `key=value`.
pub fn labelled(mut v: PersistentVolume, key: &str, value: &str) -> PersistentVolume {
    v.metadata.labels.get_or_insert_default().insert(key.into(), value.into());
    v
}

/// `v` in raw block mode.
pub fn block(mut v: PersistentVolume) -> PersistentVolume {
    if let Some(spec) = v.spec.as_mut() {
        spec.volume_mode = Some("Block".into());
    }
    v
}

/// `v` being deleted.
pub fn deleting(mut v: PersistentVolume) -> PersistentVolume {
    v.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
    v
}

/// `v` annotated `key=value`.
pub fn volume_annotated(mut v: PersistentVolume, key: &str, value: &str) -> PersistentVolume {
    v.metadata.annotations.get_or_insert_default().insert(key.into(), value.into());
    v
}

/// `c` asking for `class`.
pub fn of_class(mut c: PersistentVolumeClaim, class: &str) -> PersistentVolumeClaim {
    if let Some(spec) = c.spec.as_mut() {
        spec.storage_class_name = Some(class.into());
    }
    c
}

/// `c` selecting volumes with `selector`.
pub fn selecting(mut c: PersistentVolumeClaim, selector: LabelSelector) -> PersistentVolumeClaim {
    if let Some(spec) = c.spec.as_mut() {
        spec.selector = Some(selector);
    }
    c
}

/// `c` naming the volume `volume`.
pub fn naming(mut c: PersistentVolumeClaim, volume: &str) -> PersistentVolumeClaim {
    if let Some(spec) = c.spec.as_mut() {
        spec.volume_name = Some(volume.into());
    }
    c
}

/// `c` annotated `key=value`.
pub fn annotated(mut c: PersistentVolumeClaim, key: &str, value: &str) -> PersistentVolumeClaim {
    c.metadata.annotations.get_or_insert_default().insert(key.into(), value.into());
    c
}

/// `c` bound to `volume` as the binder leaves it.
pub fn bound(c: PersistentVolumeClaim, volume: &str) -> PersistentVolumeClaim {
    let mut c = annotated(naming(c, volume), "pv.kubernetes.io/bind-completed", "yes");
    c.status =
        Some(PersistentVolumeClaimStatus { phase: Some("Bound".into()), ..Default::default() });
    c
}

/// `c` reporting `phase`.
pub fn reporting(mut c: PersistentVolumeClaim, phase: &str) -> PersistentVolumeClaim {
    c.status.get_or_insert_default().phase = Some(phase.into());
    c
}
