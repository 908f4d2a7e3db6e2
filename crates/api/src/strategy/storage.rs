//! Rules of the `storage.k8s.io` resources: `pkg/apis/storage/v1/defaults.go`,
//! `pkg/registry/storage/*` and their printers.

use serde_json::{Value, json};

use super::Strategy;
use super::util::{AGE, age, array_at, bool_at, col, int_col, keep_status, str_at};
use crate::object::{default_path, path};
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// The annotation marking the default class.
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
/// Its beta twin, still honoured.
const BETA_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Rules of `StorageClass`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StorageClassStrategy;

/// Rules of `VolumeAttachment`.
#[derive(Debug, Clone, Copy, Default)]
pub struct VolumeAttachmentStrategy;

/// Rules of `CSIDriver`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CsiDriverStrategy;

/// Rules of `CSINode`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CsiNodeStrategy;

/// Rules of `CSIStorageCapacity`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CsiStorageCapacityStrategy;

impl Strategy for StorageClassStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        default_path(obj, "reclaimPolicy", json!("Delete"));
        default_path(obj, "volumeBindingMode", json!("Immediate"));
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if str_at(obj, "provisioner").is_none_or(str::is_empty) {
            errors.push(FieldError::required("provisioner"));
        }
        if let Some(p) = str_at(obj, "reclaimPolicy")
            && !["Delete", "Recycle", "Retain"].contains(&p)
        {
            errors.push(FieldError::not_supported(
                "reclaimPolicy",
                json!(p),
                &["Delete", "Recycle", "Retain"],
            ));
        }
        if let Some(m) = str_at(obj, "volumeBindingMode")
            && !["Immediate", "WaitForFirstConsumer"].contains(&m)
        {
            errors.push(FieldError::not_supported(
                "volumeBindingMode",
                json!(m),
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        for (field, what) in [
            ("parameters", "updates to parameters are forbidden."),
            ("provisioner", "updates to provisioner are forbidden."),
            ("reclaimPolicy", "updates to reclaimPolicy are forbidden."),
            ("volumeBindingMode", "field is immutable"),
        ] {
            if new.get(field) != old.get(field) {
                errors.push(FieldError::forbidden(field, what));
            }
        }
        errors
    }

    /// The name column is the class's own: the default class's name reads `NAME (default)`,
    /// as upstream's printer writes it.
    fn owns_name_column(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            crate::table::NAME,
            col("Provisioner", "Indicates the type of the provisioner."),
            col(
                "ReclaimPolicy",
                "Dynamically provisioned PersistentVolumes of this storage class are created with this reclaimPolicy. Defaults to Delete.",
            ),
            col(
                "VolumeBindingMode",
                "VolumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.",
            ),
            Column::new(
                "AllowVolumeExpansion",
                "string",
                "AllowVolumeExpansion shows whether the storage class allow volume expand",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let mut name = str_at(obj, "metadata.name").unwrap_or_default().to_string();
        let annotations = obj.get("metadata").and_then(|m| m.get("annotations"));
        let default = [DEFAULT_CLASS, BETA_DEFAULT_CLASS].iter().any(|key| {
            annotations.and_then(|a| a.get(*key)).and_then(Value::as_str) == Some("true")
        });
        if default {
            name.push_str(" (default)");
        }
        vec![
            json!(name),
            json!(str_at(obj, "provisioner").unwrap_or_default()),
            json!(str_at(obj, "reclaimPolicy").unwrap_or("Delete")),
            json!(str_at(obj, "volumeBindingMode").unwrap_or("Immediate")),
            json!(bool_at(obj, "allowVolumeExpansion").unwrap_or(false)),
            age(obj, ctx),
        ]
    }
}

impl Strategy for VolumeAttachmentStrategy {
    fn prepare_for_create(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for field in ["spec.attacher", "spec.nodeName"] {
            if str_at(obj, field).is_none_or(str::is_empty) {
                errors.push(FieldError::required(field));
            }
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        if new.get("spec") != old.get("spec") {
            errors.push(FieldError::invalid(
                "spec",
                new.get("spec").cloned().unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
        errors
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col(
                "Attacher",
                "Attacher indicates the name of the volume driver that MUST handle this request. This is the name returned by GetPluginName().",
            ),
            col(
                "PV",
                "persistentVolumeName represents the name of the persistent volume to attach.",
            ),
            col("Node", "nodeName represents the node that the volume should be attached to."),
            Column::new(
                "Attached",
                "boolean",
                "attached indicates the volume is successfully attached. This field must only be set by the entity completing the attach operation, i.e. the external-attacher.",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![
            json!(str_at(obj, "spec.attacher").unwrap_or_default()),
            json!(str_at(obj, "spec.source.persistentVolumeName").unwrap_or_default()),
            json!(str_at(obj, "spec.nodeName").unwrap_or_default()),
            json!(bool_at(obj, "status.attached").unwrap_or(false)),
            age(obj, ctx),
        ]
    }
}

impl Strategy for CsiDriverStrategy {
    fn default(&self, obj: &mut Value) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            crate::object::set_path(obj, "spec", json!({}));
        }
        default_path(obj, "spec.attachRequired", json!(true));
        default_path(obj, "spec.podInfoOnMount", json!(false));
        default_path(obj, "spec.storageCapacity", json!(false));
        default_path(obj, "spec.fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
        default_path(obj, "spec.requiresRepublish", json!(false));
        default_path(obj, "spec.seLinuxMount", json!(false));
        if array_at(obj, "spec.volumeLifecycleModes").is_empty() {
            crate::object::set_path(obj, "spec.volumeLifecycleModes", json!(["Persistent"]));
        }
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            Column::new(
                "AttachRequired",
                "boolean",
                "attachRequired indicates this CSI volume driver requires an attach operation (because it implements the CSI ControllerPublishVolume() method), and that the Kubernetes attach detach controller should call the attach volume interface which checks the volumeattachment status and waits until the volume is attached before proceeding to mounting.",
            ),
            col(
                "PodInfoOnMount",
                "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations, if set to true.",
            ),
            col(
                "StorageCapacity",
                "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report by creating CSIStorageCapacity objects with capacity information, if set to true.",
            ),
            col(
                "TokenRequests",
                "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication.",
            ),
            col(
                "RequiresRepublish",
                "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume.",
            ),
            col(
                "Modes",
                "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports.",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let tokens: Vec<&str> = array_at(obj, "spec.tokenRequests")
            .iter()
            .filter_map(|t| t.get("audience").and_then(Value::as_str))
            .map(|a| if a.is_empty() { "<api-server-default>" } else { a })
            .collect();
        let modes: Vec<&str> =
            array_at(obj, "spec.volumeLifecycleModes").iter().filter_map(Value::as_str).collect();
        vec![
            json!(bool_at(obj, "spec.attachRequired").unwrap_or(true)),
            json!(bool_at(obj, "spec.podInfoOnMount").unwrap_or(false)),
            json!(bool_at(obj, "spec.storageCapacity").unwrap_or(false)),
            json!(if tokens.is_empty() { "<unset>".to_string() } else { tokens.join(",") }),
            json!(bool_at(obj, "spec.requiresRepublish").unwrap_or(false)),
            json!(if modes.is_empty() { "<none>".to_string() } else { modes.join(",") }),
            age(obj, ctx),
        ]
    }
}

impl Strategy for CsiNodeStrategy {
    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            int_col(
                "Drivers",
                "Drivers indicates the number of CSI drivers registered on the node",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        vec![json!(array_at(obj, "spec.drivers").len()), age(obj, ctx)]
    }
}

impl Strategy for CsiStorageCapacityStrategy {
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if str_at(obj, "storageClassName").is_none_or(str::is_empty) {
            errors.push(FieldError::required("storageClassName"));
        }
        errors
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[
            col(
                "StorageClassName",
                "storageClassName represents the name of the StorageClass that the reported capacity applies to.",
            ),
            col(
                "Capacity",
                "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields.",
            ),
            AGE,
        ];
        COLUMNS
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        let capacity = match path(obj, "capacity") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "<unset>".into(),
        };
        vec![
            json!(str_at(obj, "storageClassName").unwrap_or_default()),
            json!(capacity),
            age(obj, ctx),
        ]
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[test]
    fn the_default_class_reads_as_default_in_its_row() {
        let ctx = TableContext {
            now: Utc.with_ymd_and_hms(2025, 1, 1, 0, 10, 0).single().expect("time"),
        };
        let class = |annotations: Value| {
            json!({"metadata": {"name": "local-path", "annotations": annotations,
                                "creationTimestamp": "2025-01-01T00:00:00Z"},
                   "provisioner": "krust.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"})
        };
        let strategy = StorageClassStrategy;
        let default = strategy
            .cells(&class(json!({"storageclass.kubernetes.io/is-default-class": "true"})), &ctx);
        assert_eq!(default.len(), strategy.columns().len());
        assert_eq!(
            default,
            [
                json!("local-path (default)"),
                json!("krust.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("10m"),
            ]
        );
        let beta = class(json!({"storageclass.beta.kubernetes.io/is-default-class": "true"}));
        assert_eq!(strategy.cells(&beta, &ctx)[0], json!("local-path (default)"));
        let not = class(json!({"storageclass.kubernetes.io/is-default-class": "false"}));
        assert_eq!(strategy.cells(&not, &ctx)[0], json!("local-path"));
    }
}
