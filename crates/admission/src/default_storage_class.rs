//! DefaultStorageClass: a PersistentVolumeClaim created without `storageClassName` gets the
//! default StorageClass's name (the class annotated `storageclass.kubernetes.io/is-default-class:
//! "true"`, or its beta twin; of several, the newest, then the first by name). A claim that
//! names a class, even `""`, keeps it.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use krust_api::StatusError;
use serde_json::Value;

use crate::{Attributes, ClusterView, Mutating, Operation, Plugin, is, typed};

/// Upstream's name.
pub const NAME: &str = "DefaultStorageClass";

/// The annotation marking the default class.
pub const DEFAULT_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// Its beta name, still honoured.
pub const BETA_DEFAULT_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// The plugin.
pub struct DefaultStorageClass;

impl Plugin for DefaultStorageClass {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The default class among `classes`.
pub fn default_class(classes: &[StorageClass]) -> Option<&StorageClass> {
    classes
        .iter()
        .filter(|c| {
            let annotations = c.metadata.annotations.as_ref();
            [DEFAULT_ANNOTATION, BETA_DEFAULT_ANNOTATION]
                .iter()
                .any(|a| annotations.and_then(|m| m.get(*a)).map(String::as_str) == Some("true"))
        })
        .min_by(|a, b| {
            // Newest first, then by name.
            b.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .cmp(&a.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .then_with(|| a.metadata.name.cmp(&b.metadata.name))
        })
}

impl Mutating for DefaultStorageClass {
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        _old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if attributes.operation != Operation::Create
            || !is(attributes, "", "persistentvolumeclaims")
        {
            return Ok(());
        }
        let Some(object) = object else { return Ok(()) };
        let Some(claim) = typed::<PersistentVolumeClaim>(object) else { return Ok(()) };
        if claim.spec.as_ref().and_then(|s| s.storage_class_name.as_ref()).is_some() {
            return Ok(());
        }
        let classes: Vec<StorageClass> = cluster.list("storage.k8s.io", "storageclasses", "");
        let Some(name) = default_class(&classes).and_then(|c| c.metadata.name.clone()) else {
            return Ok(());
        };
        if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("storageClassName".into(), Value::String(name));
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
    fn claims_without_a_class_get_the_default() {
        let class = |name: &str, default: bool, created: &str| {
            let mut c = json!({"metadata": {"name": name, "creationTimestamp": created}, "provisioner": "p"});
            if default {
                c["metadata"]["annotations"] = json!({DEFAULT_ANNOTATION: "true"});
            }
            ("storage.k8s.io", "storageclasses", c)
        };
        let cluster = Objects(vec![
            class("plain", false, "2024-01-03T00:00:00Z"),
            class("old", true, "2024-01-01T00:00:00Z"),
            class("new", true, "2024-01-02T00:00:00Z"),
        ]);
        let cases: &[(&str, Value, Value)] = &[
            ("no class gets the newest default", json!({}), json!("new")),
            ("a named class is kept", json!({"storageClassName": "plain"}), json!("plain")),
            ("an empty class is kept", json!({"storageClassName": ""}), json!("")),
        ];
        for (case, spec, expected) in cases {
            let mut claim = json!({"metadata": {"name": "c"}, "spec": spec});
            DefaultStorageClass
                .admit(
                    &create("", "persistentvolumeclaims", "ns"),
                    Some(&mut claim),
                    None,
                    &cluster,
                )
                .unwrap();
            assert_eq!(claim["spec"]["storageClassName"], *expected, "{case}");
        }
        let mut claim = json!({"metadata": {"name": "c"}, "spec": {}});
        DefaultStorageClass
            .admit(
                &create("", "persistentvolumeclaims", "ns"),
                Some(&mut claim),
                None,
                &Objects::default(),
            )
            .unwrap();
        assert_eq!(claim["spec"].get("storageClassName"), None, "no default class leaves it unset");
    }
}
