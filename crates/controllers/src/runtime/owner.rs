//! Owner references as workload controllers use them: the controller reference an owner puts
//! on what it makes, and who controls an object.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use kube::core::Selector;
use serde_json::{Value, json};

/// The reference that makes an object controlled by the owner `(api_version, kind, meta)`:
/// `controller` and `blockOwnerDeletion` set, as upstream's `NewControllerRef`.
pub fn controller_ref(api_version: &str, kind: &str, owner: &ObjectMeta) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone().unwrap_or_default(),
        uid: owner.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The object's controller reference, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|o| o.controller == Some(true))
}

/// A workload's selector; `None` when it is empty or invalid (the workload then selects
/// nothing, as validation refuses such selectors).
pub fn selector(selector: &LabelSelector) -> Option<Selector> {
    if selector.match_labels.as_ref().is_none_or(|l| l.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    {
        return None;
    }
    Selector::try_from(selector.clone()).ok()
}

/// `meta`'s owner references with `controller` added: what an adoption writes.
pub fn adopted(meta: &ObjectMeta, controller: &OwnerReference) -> Vec<OwnerReference> {
    let mut owners = meta.owner_references.clone().unwrap_or_default();
    owners.push(controller.clone());
    owners
}

/// `meta`'s owner references without those to `uid`: what a release writes.
pub fn released(meta: &ObjectMeta, uid: &str) -> Vec<OwnerReference> {
    meta.owner_references.iter().flatten().filter(|o| o.uid != uid).cloned().collect()
}

/// What a controller claims among the objects of its namespace (upstream's
/// `ControllerRefManager.ClaimObject`).
#[derive(Debug)]
pub struct Claimed<T> {
    /// The objects it controls after adoption and release (adopted ones included).
    pub owned: Vec<Arc<T>>,
    /// Orphans it matches, to adopt.
    pub adopt: Vec<Arc<T>>,
    /// Objects it controls but no longer matches, to release.
    pub release: Vec<Arc<T>>,
}

/// Claims among `objects` for the controller `owner`, which wants the objects `matches`
/// accepts: those it controls and matches stay; those it controls and no longer matches are
/// released, and orphans it matches (not being deleted) adopted, unless the owner is being
/// deleted; objects another controller controls are left alone.
pub fn claim<'a, T: Resource + 'a>(
    objects: impl IntoIterator<Item = &'a Arc<T>>,
    owner: &ObjectMeta,
    matches: impl Fn(&T) -> bool,
) -> Claimed<T> {
    let uid = owner.uid.as_deref().unwrap_or_default();
    let deleting = owner.deletion_timestamp.is_some();
    let mut claimed = Claimed { owned: Vec::new(), adopt: Vec::new(), release: Vec::new() };
    for object in objects {
        let wanted = matches(object);
        match controller_of(object.meta()) {
            Some(controller) if controller.uid != uid => {}
            Some(_) if wanted => claimed.owned.push(Arc::clone(object)),
            Some(_) if !deleting => claimed.release.push(Arc::clone(object)),
            Some(_) => {}
            None if wanted && !deleting && object.meta().deletion_timestamp.is_none() => {
                claimed.adopt.push(Arc::clone(object));
                claimed.owned.push(Arc::clone(object));
            }
            None => {}
        }
    }
    claimed
}

/// The merge patch that sets an object's owner references to `owners`, guarded by its uid
/// and resourceVersion: it fails on another object of the same name, or on one changed
/// meanwhile (a concurrent adoption or cut-off).
pub fn owners_patch(meta: &ObjectMeta, owners: &[OwnerReference]) -> Value {
    json!({"metadata": {
        "uid": meta.uid,
        "resourceVersion": meta.resource_version,
        "ownerReferences": if owners.is_empty() { Value::Null } else { json!(owners) },
    }})
}
