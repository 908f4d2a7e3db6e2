//! PersistentVolumeClaimResize, as upstream's `plugin/pkg/admission/storage/persistentvolume/resize`:
//! an update that grows a claim's storage request is refused unless the claim is bound
//! (`status.phase: Bound` before the update) and its StorageClass, the same before and after,
//! sets `allowVolumeExpansion: true`. Shrinking or keeping the size is not this plugin's
//! business (validation's).

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use krust_api::{StatusError, persistent_volume};
use serde_json::Value;

use crate::{Attributes, ClusterView, Operation, Plugin, Validating, forbidden, is, typed};

/// Upstream's name.
pub const NAME: &str = "PersistentVolumeClaimResize";

/// The annotation that named a claim's class before `spec.storageClassName`; it still wins.
pub use krust_api::persistent_volume::BETA_STORAGE_CLASS as BETA_STORAGE_CLASS_ANNOTATION;

/// Upstream's refusal of an unbound claim.
pub const NOT_BOUND: &str = "Only bound persistent volume claims can be expanded";

/// Upstream's refusal of a claim whose class does not allow expansion.
pub const NOT_EXPANDABLE: &str = "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize";

/// The plugin.
pub struct PersistentVolumeClaimResize;

impl Plugin for PersistentVolumeClaimResize {
    fn name(&self) -> &'static str {
        NAME
    }
}

/// The class of a claim, as upstream's `GetPersistentVolumeClaimClass`: the beta annotation
/// when present, else `spec.storageClassName`, else empty.
pub fn claim_class(claim: &PersistentVolumeClaim) -> String {
    krust_api::persistent_volume::claim_class(claim).to_string()
}

/// Whether the class of both `new` and `old` (the same, and not empty) allows expansion.
fn allows_resize(
    new: &PersistentVolumeClaim,
    old: &PersistentVolumeClaim,
    cluster: &dyn ClusterView,
) -> bool {
    let (class, old_class) = (claim_class(new), claim_class(old));
    if class.is_empty() || old_class.is_empty() || class != old_class {
        return false;
    }
    cluster
        .get("storage.k8s.io", "storageclasses", "", &class)
        .and_then(|c| typed::<StorageClass>(&c))
        .and_then(|c| c.allow_volume_expansion)
        .unwrap_or(false)
}

impl Validating for PersistentVolumeClaimResize {
    fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if attributes.operation != Operation::Update
            || !is(attributes, "", "persistentvolumeclaims")
        {
            return Ok(());
        }
        let (Some(new), Some(old)) = (
            object.and_then(typed::<PersistentVolumeClaim>),
            old.and_then(typed::<PersistentVolumeClaim>),
        ) else {
            return Ok(());
        };
        if persistent_volume::requested(&new) <= persistent_volume::requested(&old) {
            return Ok(());
        }
        if old.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
            return Err(forbidden(attributes, object, NOT_BOUND));
        }
        if !allows_resize(&new, &old, cluster) {
            return Err(forbidden(attributes, object, NOT_EXPANDABLE));
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

    fn claim(size: &str, class: Option<&str>, phase: &str) -> Value {
        let mut spec = json!({"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}}});
        if let Some(class) = class {
            spec["storageClassName"] = json!(class);
        }
        json!({"metadata": {"name": "data", "namespace": "ns"}, "spec": spec,
            "status": {"phase": phase}})
    }

    fn cluster() -> Objects {
        let class = |name: &str, expand: Option<bool>| {
            let mut c = json!({"metadata": {"name": name}, "provisioner": "p"});
            if let Some(expand) = expand {
                c["allowVolumeExpansion"] = json!(expand);
            }
            ("storage.k8s.io", "storageclasses", c)
        };
        Objects(vec![
            class("grows", Some(true)),
            class("fixed", Some(false)),
            class("unsaid", None),
        ])
    }

    #[test]
    fn growing_needs_a_bound_claim_of_an_expandable_class() {
        let cases: &[(&str, Value, Value, Option<&str>)] = &[
            (
                "growing a bound claim of an expandable class passes",
                claim("1Gi", Some("grows"), "Bound"),
                claim("2Gi", Some("grows"), "Bound"),
                None,
            ),
            (
                "a class without allowVolumeExpansion refuses",
                claim("1Gi", Some("unsaid"), "Bound"),
                claim("2Gi", Some("unsaid"), "Bound"),
                Some(NOT_EXPANDABLE),
            ),
            (
                "allowVolumeExpansion false refuses",
                claim("1Gi", Some("fixed"), "Bound"),
                claim("2Gi", Some("fixed"), "Bound"),
                Some(NOT_EXPANDABLE),
            ),
            (
                "a claim without a class refuses",
                claim("1Gi", None, "Bound"),
                claim("2Gi", None, "Bound"),
                Some(NOT_EXPANDABLE),
            ),
            (
                "a missing class refuses",
                claim("1Gi", Some("gone"), "Bound"),
                claim("2Gi", Some("gone"), "Bound"),
                Some(NOT_EXPANDABLE),
            ),
            (
                "an unbound claim may not grow",
                claim("1Gi", Some("grows"), "Pending"),
                claim("2Gi", Some("grows"), "Pending"),
                Some(NOT_BOUND),
            ),
            (
                "the same size in other words is not growth",
                claim("1Gi", Some("fixed"), "Pending"),
                claim("1024Mi", Some("fixed"), "Pending"),
                None,
            ),
            (
                "shrinking is not this plugin's business",
                claim("2Gi", Some("fixed"), "Bound"),
                claim("1Gi", Some("fixed"), "Bound"),
                None,
            ),
        ];
        let mut attributes = create("", "persistentvolumeclaims", "ns");
        attributes.operation = Operation::Update;
        for (case, old, new, refusal) in cases {
            let got =
                PersistentVolumeClaimResize.validate(&attributes, Some(new), Some(old), &cluster());
            match refusal {
                None => assert!(got.is_ok(), "{case}: {got:?}"),
                Some(why) => {
                    let e = got.unwrap_err();
                    assert_eq!(e.code(), 403, "{case}");
                    assert_eq!(
                        e.message,
                        format!("persistentvolumeclaims \"data\" is forbidden: {why}"),
                        "{case}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_beta_annotation_names_the_class() {
        let mut c: PersistentVolumeClaim =
            typed(&claim("1Gi", Some("spec-class"), "Bound")).unwrap();
        assert_eq!(claim_class(&c), "spec-class");
        c.metadata.annotations =
            Some([(BETA_STORAGE_CLASS_ANNOTATION.to_string(), "beta".to_string())].into());
        assert_eq!(claim_class(&c), "beta");
    }

    #[test]
    fn creates_and_status_writes_pass() {
        let old = claim("1Gi", Some("fixed"), "Bound");
        let new = claim("2Gi", Some("fixed"), "Bound");
        let created = create("", "persistentvolumeclaims", "ns");
        assert!(
            PersistentVolumeClaimResize.validate(&created, Some(&new), None, &cluster()).is_ok()
        );
        let mut status = create("", "persistentvolumeclaims", "ns");
        status.operation = Operation::Update;
        status.subresource = "status";
        assert!(
            PersistentVolumeClaimResize
                .validate(&status, Some(&new), Some(&old), &cluster())
                .is_ok()
        );
    }
}
