//! Per-resource work the generic registry cannot do from a pure strategy because it needs the
//! store: allocating service cluster IPs and node ports, as upstream wraps a resource's
//! storage. A resource declares its hooks in its [`ResourceStorage`](super::ResourceStorage);
//! the registry calls them around writes.

use async_trait::async_trait;
use krust_api::StatusError;
use krust_store::Store;
use serde_json::Value;

/// What [`ResourceHooks::before_update`] reserved for one attempt: the store keys it created,
/// and nothing it found already reserved.
#[derive(Debug, Default)]
pub struct Reserved {
    /// The keys.
    pub keys: Vec<String>,
}

/// Work done around the writes of one resource.
#[async_trait]
pub trait ResourceHooks: Send + Sync {
    /// Before a new object (validated by its strategy, then seen by validating admission
    /// with what this records, as upstream's `BeginCreate`) is stored: reserve what it needs
    /// and record it in the object. `dry_run` checks without reserving. The object is in the
    /// version the strategy sees, which is the storage version of every resource with hooks
    /// (built-in ones, which have no conversion).
    async fn before_create(
        &self,
        store: &dyn Store,
        obj: &mut Value,
        dry_run: bool,
    ) -> Result<(), StatusError>;

    /// After a create that [`before_create`](Self::before_create) prepared failed
    /// (admission refused it, or the store): release what it reserved.
    async fn create_failed(&self, store: &dyn Store, obj: &Value);

    /// Before validating admission sees an update (as upstream's `BeginUpdate`): reserve what
    /// the new object needs beyond the old one, record it in the new one, and answer what was
    /// reserved (nothing on failure: given back). `dry_run` checks without reserving (and answers nothing reserved).
    async fn before_update(
        &self,
        store: &dyn Store,
        new: &mut Value,
        old: &Value,
        dry_run: bool,
    ) -> Result<Reserved, StatusError>;

    /// After an update that [`before_update`](Self::before_update) prepared was not stored
    /// as `new` (admission refused it; the store refused it: a conflict, retried with a fresh
    /// `old`, or an error; or it removed the last finalizer, so the object went): release what
    /// that call reserved, as upstream's allocation transaction is reverted.
    async fn update_failed(&self, store: &dyn Store, reserved: &Reserved);

    /// After an update was stored: release what only the old object held.
    async fn after_update(&self, store: &dyn Store, new: &Value, old: &Value);

    /// After an object is gone: release what it held.
    async fn after_delete(&self, store: &dyn Store, obj: &Value);
}
