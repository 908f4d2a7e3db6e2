//! The storage object in-use protection controllers (upstream's `pvc-protection-controller`
//! and `pv-protection-controller`): the other half of the StorageObjectInUseProtection
//! admission plugin, which puts a finalizer on every claim and volume. Each controller adds
//! its finalizer to the objects that lack it, and removes it from an object being deleted
//! once nothing uses it: a claim when no scheduled pod uses it ([`claims`]), a volume when
//! it is no longer bound ([`volumes`]). Until then the object stays, `Terminating`.
//!
//! The finalizers are written with updates guarded by the cached resourceVersion (the
//! controllers' roles grant `update`, not `patch`, as upstream's); a lost race is tried again
//! from the newer object.

pub mod claim_use;
pub mod claims;
pub mod volumes;

use std::fmt::Debug;
use std::time::Duration;

use kube::api::PostParams;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What to do to an object's protection finalizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// Add it: the object lives and lacks it (made before the admission plugin added it, or
    /// with the plugin off).
    Add,
    /// Remove it: the object is being deleted and nothing uses it.
    Remove,
}

/// What an object needs: whether it is being deleted, carries the finalizer, and is in use
/// (asked only when it is both being deleted and protected, see [`needs_use_check`]).
pub fn change(deleting: bool, protected: bool, in_use: bool) -> Change {
    match (deleting, protected) {
        (false, false) => Change::Add,
        (true, true) if !in_use => Change::Remove,
        _ => Change::None,
    }
}

/// Whether [`change`] depends on the object's use.
pub fn needs_use_check(deleting: bool, protected: bool) -> bool {
    deleting && protected
}

/// Whether `object` carries `finalizer`.
pub fn protected<K: Resource>(object: &K, finalizer: &str) -> bool {
    object.meta().finalizers.iter().flatten().any(|f| f == finalizer)
}

/// Writes `change` of `finalizer` to `object` through `api`, guarded by its
/// resourceVersion.
pub async fn write<K>(api: &Api<K>, object: &K, finalizer: &str, change: Change) -> kube::Result<()>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let mut updated = object.clone();
    let finalizers = updated.meta_mut().finalizers.get_or_insert_with(Vec::new);
    match change {
        Change::None => return Ok(()),
        Change::Add => finalizers.push(finalizer.to_string()),
        Change::Remove => finalizers.retain(|f| f != finalizer),
    }
    match api.replace(&object.name_any(), &PostParams::default(), &updated).await {
        Ok(_) => Ok(()),
        // Gone already: nothing left to protect or release.
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// How soon a failed sync is tried again: soon after a lost race, else after a pause.
fn retry(name: &str, error: &kube::Error) -> Action {
    if matches!(error, kube::Error::Api(s) if s.is_conflict()) {
        return Action::requeue(Duration::from_millis(500));
    }
    tracing::warn!(%name, %error, "storage protection sync failed");
    Action::requeue(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_keeps_its_finalizer_while_it_lives_and_loses_it_once_unused() {
        assert_eq!(change(false, false, false), Change::Add);
        assert_eq!(change(false, true, false), Change::None);
        assert_eq!(change(true, true, true), Change::None);
        assert_eq!(change(true, true, false), Change::Remove);
        // Deleted without it (another finalizer holds it): not this controller's.
        assert_eq!(change(true, false, false), Change::None);
        assert!(needs_use_check(true, true));
        assert!(!needs_use_check(false, true));
        assert!(!needs_use_check(true, false));
    }
}
