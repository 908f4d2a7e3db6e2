//! Persistent volumes and claims: defaults, strategies and printers.

use serde_json::{Value, json};

use crate::strategy::Strategy;
use crate::strategy::util::{
    AGE, age, array_at, col, default_field, keep_status, str_at, string_at,
};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `PersistentVolume`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PersistentVolumeStrategy;

/// Rules of `PersistentVolumeClaim`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PersistentVolumeClaimStrategy;

/// `GetAccessModesAsString`: the short forms in a fixed order.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| has(long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class: `spec.storageClassName`, or the beta annotation.
fn storage_class(obj: &Value) -> String {
    let annotation = obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get("volume.beta.kubernetes.io/storage-class"))
        .and_then(Value::as_str);
    annotation.map(str::to_string).unwrap_or_else(|| string_at(obj, "spec.storageClassName"))
}

fn attributes_class(obj: &Value) -> String {
    str_at(obj, "spec.volumeAttributesClassName")
        .filter(|s| !s.is_empty())
        .unwrap_or("<unset>")
        .to_string()
}

fn volume_mode(obj: &Value) -> String {
    str_at(obj, "spec.volumeMode").unwrap_or("<unset>").to_string()
}

fn phase(obj: &Value) -> String {
    if str_at(obj, "metadata.deletionTimestamp").is_some() {
        "Terminating".into()
    } else {
        string_at(obj, "status.phase")
    }
}

fn quantity(obj: &Value, pointer: &str) -> String {
    match obj.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "0".into(),
    }
}

const ACCESS_MODES_DOC: &str = "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes";

impl Strategy for PersistentVolumeStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
            default_field(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            default_field(spec, "volumeMode", json!("Filesystem"));
        }
        if obj.pointer("/status/phase").is_none_or(Value::is_null) {
            crate::object::set_path(obj, "status.phase", json!("Pending"));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({"phase": "Pending"}));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if array_at(obj, "spec.accessModes").is_empty() {
            errors.push(FieldError::required("spec.accessModes"));
        }
        if obj.pointer("/spec/capacity/storage").is_none() {
            errors.push(FieldError::required("spec.capacity"));
        }
        errors
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("name", crate::object::name(obj).unwrap_or_default().to_string())]
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col("Capacity", "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"),
            col("Access Modes", ACCESS_MODES_DOC),
            col("Reclaim Policy", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"),
            col("Status", "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"),
            col("Claim", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"),
            col("StorageClass", "StorageClass of the pv"),
            col("VolumeAttributesClass", "VolumeAttributesClass of the pv"),
            col("Reason", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
            AGE,
            col("VolumeMode", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.").wide(),
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let claim =
            match (str_at(obj, "spec.claimRef.namespace"), str_at(obj, "spec.claimRef.name")) {
                (ns, Some(name)) => format!("{}/{name}", ns.unwrap_or_default()),
                _ => String::new(),
            };
        vec![
            json!(quantity(obj, "/spec/capacity/storage")),
            json!(access_modes(array_at(obj, "spec.accessModes"))),
            json!(string_at(obj, "spec.persistentVolumeReclaimPolicy")),
            json!(phase(obj)),
            json!(claim),
            json!(storage_class(obj)),
            json!(attributes_class(obj)),
            json!(string_at(obj, "status.reason")),
            age(obj, ctx),
            json!(volume_mode(obj)),
        ]
    }
}

impl Strategy for PersistentVolumeClaimStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) {
            default_field(spec, "volumeMode", json!("Filesystem"));
        }
        if obj.pointer("/status/phase").is_none_or(Value::is_null) {
            crate::object::set_path(obj, "status.phase", json!("Pending"));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.insert("status".into(), json!({"phase": "Pending"}));
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if array_at(obj, "spec.accessModes").is_empty() {
            errors.push(FieldError::required("spec.accessModes"));
        }
        if obj.pointer("/spec/resources/requests/storage").is_none() {
            errors.push(FieldError::required("spec.resources[storage]"));
        }
        errors
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("name", crate::object::name(obj).unwrap_or_default().to_string())]
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col("Status", "phase represents the current phase of PersistentVolumeClaim."),
            col("Volume", "volumeName is the binding reference to the PersistentVolume backing this claim."),
            col("Capacity", "capacity represents the actual resources of the underlying volume."),
            col("Access Modes", "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
            col("StorageClass", "StorageClass of the pvc"),
            col("VolumeAttributesClass", "VolumeAttributesClass of the pvc"),
            AGE,
            col("VolumeMode", "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.").wide(),
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let bound = str_at(obj, "spec.volumeName").is_some_and(|v| !v.is_empty());
        let (capacity, modes) = if bound {
            (
                quantity(obj, "/status/capacity/storage"),
                access_modes(array_at(obj, "status.accessModes")),
            )
        } else {
            (String::new(), String::new())
        };
        vec![
            json!(phase(obj)),
            json!(string_at(obj, "spec.volumeName")),
            json!(capacity),
            json!(modes),
            json!(storage_class(obj)),
            json!(attributes_class(obj)),
            age(obj, ctx),
            json!(volume_mode(obj)),
        ]
    }
}
