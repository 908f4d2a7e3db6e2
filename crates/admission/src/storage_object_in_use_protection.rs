//! StorageObjectInUseProtection: new PersistentVolumeClaims and PersistentVolumes carry the
//! finalizers (`kubernetes.io/pvc-protection`, `kubernetes.io/pv-protection`) that keep them
//! while a pod uses them; the protection controllers remove them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use krust_api::StatusError;
use serde::Deserialize;
use serde_json::Value;

use crate::{Attributes, ClusterView, Mutating, Operation, Plugin, is};

/// Upstream's name.
pub const NAME: &str = "StorageObjectInUseProtection";

/// The finalizer of claims.
pub const PVC_FINALIZER: &str = "kubernetes.io/pvc-protection";

/// The finalizer of volumes.
pub const PV_FINALIZER: &str = "kubernetes.io/pv-protection";

/// The plugin.
pub struct StorageObjectInUseProtection;

impl Plugin for StorageObjectInUseProtection {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl Mutating for StorageObjectInUseProtection {
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        _old: Option<&Value>,
        _cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if attributes.operation != Operation::Create {
            return Ok(());
        }
        let finalizer = if is(attributes, "", "persistentvolumeclaims") {
            PVC_FINALIZER
        } else if is(attributes, "", "persistentvolumes") {
            PV_FINALIZER
        } else {
            return Ok(());
        };
        let Some(object) = object else { return Ok(()) };
        let meta: ObjectMeta = object
            .get("metadata")
            .and_then(|m| ObjectMeta::deserialize(m).ok())
            .unwrap_or_default();
        if meta.finalizers.iter().flatten().any(|f| f == finalizer) {
            return Ok(());
        }
        let metadata = krust_api::object::metadata_mut(object);
        let list = metadata.entry("finalizers").or_insert_with(|| Value::Array(Vec::new()));
        if !list.is_array() {
            *list = Value::Array(Vec::new());
        }
        if let Some(list) = list.as_array_mut() {
            list.push(Value::String(finalizer.into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, create};

    #[test]
    fn claims_and_volumes_get_their_finalizer_once() {
        let cases: &[(&str, &str, Value, Value)] = &[
            ("a claim", "persistentvolumeclaims", json!({"name": "c"}), json!([PVC_FINALIZER])),
            ("a volume", "persistentvolumes", json!({"name": "v"}), json!([PV_FINALIZER])),
            (
                "a claim with the finalizer",
                "persistentvolumeclaims",
                json!({"name": "c", "finalizers": ["x", PVC_FINALIZER]}),
                json!(["x", PVC_FINALIZER]),
            ),
            ("a pod", "pods", json!({"name": "p"}), Value::Null),
        ];
        for (case, resource, meta, expected) in cases {
            let mut obj = json!({"metadata": meta});
            StorageObjectInUseProtection
                .admit(&create("", resource, "ns"), Some(&mut obj), None, &Objects::default())
                .unwrap();
            assert_eq!(obj["metadata"]["finalizers"], *expected, "{case}");
        }
    }
}
