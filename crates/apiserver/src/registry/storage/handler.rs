//! The handlers of subresources served by code of their own rather than as a view of the
//! object ([`Subresource`](crate::registry::Subresource)): what a handler is given, and the
//! registry's writes that handlers share. The handlers live with their resource (`pods/`) and
//! are declared in its [`ResourceStorage`](super::ResourceStorage); the HTTP layer finds them
//! there and dispatches to them generically, after authorization.

use async_trait::async_trait;
use krust_api::{ResourceInfo, StatusError};
use krust_auth::UserInfo;
use krust_store::StoreError;
use serde_json::{Value, json};

use crate::registry::{
    Registry, encode, stamped, store_error, to_served, to_served_all, to_stored,
};

/// One request to a handled subresource.
#[derive(Debug)]
pub struct SubresourceRequest<'a> {
    /// The resource of the URL (`pods`, or `bindings` for the legacy path).
    pub info: &'a ResourceInfo,
    /// The verb (`create`, ...).
    pub verb: &'a str,
    /// The namespace of the URL.
    pub namespace: Option<&'a str>,
    /// The name of the URL (empty for the legacy `bindings`).
    pub name: &'a str,
    /// The decoded body.
    pub body: Value,
    /// Whether nothing is to be stored (`dryRun=All`).
    pub dry_run: bool,
    /// Who asks.
    pub user: Option<&'a UserInfo>,
}

/// A handler of one subresource.
#[async_trait]
pub trait SubresourceHandler: Send + Sync {
    /// The verbs it serves (others are answered 405).
    fn verbs(&self) -> &'static [&'static str];

    /// Serves one request; the answer is its HTTP code and body.
    async fn handle(
        &self,
        registry: &Registry,
        request: SubresourceRequest<'_>,
    ) -> Result<(u16, Value), StatusError>;
}

/// The `Status` a handled create answers with (201, as upstream's `metav1.Status` success).
pub fn success(code: u16) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code})
}

impl Registry {
    /// Changes the stored object with `change` (in the served version), guarded by its
    /// revision and retried on conflicts, without the resource's strategy: what upstream's
    /// handlers do with `GuaranteedUpdate` (binding, PDB status). Answers the stored object.
    pub(crate) async fn modify(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        dry_run: bool,
        change: impl Fn(&mut Value) -> Result<(), StatusError>,
    ) -> Result<Value, StatusError> {
        let key = info.storage_key(namespace, name);
        // A dry run answers what the store holds now; a write starts from the cache's copy,
        // without waiting for the cache to hold this server's writes (as an update does): the
        // pod a binding names came to its scheduler through a watch of that cache, so the copy
        // is current, and one behind costs an attempt.
        // An error found on the cache's copy, and that copy's revision.
        let mut refused = None;
        let mut fresh = dry_run;
        for _ in 0..16 {
            let Some(current) = self.current_for_update(info, &key, fresh).await? else {
                return Err(StatusError::not_found(info.group, info.plural, name));
            };
            // The copy was current after all: its error stands.
            if let Some((at, error)) = refused.take()
                && at == current.revision
            {
                return Err(error);
            }
            let (object, revision, from_store) = (current.object, current.revision, current.fresh);
            // Whether the attempt got as far as writing: what fails from there is answered as
            // it is, never tried again.
            let mut wrote = false;
            let attempt = async {
                let mut obj = to_served(info, object)?;
                change(&mut obj)?;
                if dry_run {
                    return Ok(Some(obj));
                }
                let mut stored = to_stored(info, obj)?;
                let bytes = encode(&mut stored)?;
                wrote = true;
                match self.store.update(&key, bytes, revision).await {
                    Ok(kv) => {
                        self.note_written(kv.mod_revision);
                        Ok(Some(to_served(info, stamped(stored, kv.mod_revision))?))
                    }
                    Err(StoreError::Conflict { .. }) => Ok(None),
                    Err(StoreError::NotFound { .. }) => {
                        Err(StatusError::not_found(info.group, info.plural, name))
                    }
                    Err(e) => Err(store_error(e)),
                }
            };
            match attempt.await {
                Ok(Some(written)) => return Ok(written),
                // Lost a race, or refused a copy that may be behind: again from the store.
                Ok(None) => fresh = true,
                Err(error) if !from_store && !wrote => {
                    refused = Some((revision, error));
                    fresh = true;
                }
                Err(e) => return Err(e),
            }
        }
        Err(StatusError::conflict(
            info.group,
            info.plural,
            name,
            "too many concurrent writes; try again",
        ))
    }

    /// The objects of a resource in `namespace`, from the watch cache (served version).
    pub(crate) fn cached(&self, info: &ResourceInfo, namespace: Option<&str>) -> Vec<Value> {
        let Some(cache) = self.cache.resource(&info.storage_prefix()) else {
            return Vec::new();
        };
        let prefix = info.storage_prefix_in(namespace);
        let (snapshot, _) = cache.snapshot();
        let objects = snapshot.range(&prefix, None).map(|o| o.value()).collect();
        to_served_all(info, objects).unwrap_or_else(|e| {
            tracing::warn!(resource = info.plural, error = %e.message, "conversion failed");
            Vec::new()
        })
    }
}
