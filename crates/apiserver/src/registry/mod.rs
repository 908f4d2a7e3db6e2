//! The generic registry: one implementation of create, get, list, watch, update, patch and
//! delete that serves every resource in the catalog, driven by the resource's
//! [`ResourceInfo`] and [`Strategy`](krust_api::Strategy).
//!
//! Reads come from the watch cache (lists, watches) or the store (gets); writes go to the
//! store, guarded by the object's modify revision, and reach the cache through its watch. An
//! update starts from the cache's copy, which that guard checks.
//! Objects cross this module's boundary in the version the client asked for; in the store and
//! the cache they are in the resource's storage version.

mod continue_token;
mod delete;
mod list;
mod meta;
pub mod options;
pub mod storage;
mod subresource;
mod watch;
mod write;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use krust_api::object::{meta_str, metadata_mut};
use krust_api::{Catalog, ResourceInfo, StatusError};
use krust_store::{KeyValue, Store, StoreError};
use serde_json::Value;

use crate::admission::{Admission, CacheView};
use crate::watchcache::{CacheError, HistoryLimits, Shape, WatchCache};

pub use delete::{DeleteOptions, Deleted, Deletion};
pub use list::{ListItems, ListResult, Served};
pub use meta::timestamp;
pub use options::FieldValidation;
pub use storage::{
    Cidr, Handler, ResourceHooks, ResourceStorage, ServiceAllocator, ServiceRanges, Storages,
    WriteCheck, check_dual,
};
pub use subresource::Subresource;
pub use watch::{Encoder, WatchEvent, WatchKind, WatchLimits, WatchStream};
pub use write::{WriteOptions, Written, field_manager_required};

/// The largest object the registry stores (upstream's etcd limit is 1.5 MiB).
pub const MAX_OBJECT_BYTES: usize = 3 * 1024 * 1024 / 2;

/// Serves every resource of the catalog over one store and one watch cache.
pub struct Registry {
    store: Arc<dyn Store>,
    cache: Arc<WatchCache>,
    catalog: Arc<Catalog>,
    /// What each resource declares beyond its strategy: hooks, write checks, handlers.
    storages: Storages,
    /// What each watch may hold for its client, and how long it lasts.
    watch_limits: WatchLimits,
    /// The most bytes of items one list response may carry (`None`: no bound).
    list_limit: Option<usize>,
    /// The admission stage every write passes (dry runs and the server's own writes too).
    admission: Admission,
    /// Set when the server shuts down: every watch ends.
    closing: tokio::sync::watch::Sender<bool>,
    /// The highest revision this registry wrote: admission reads the watch cache once it has
    /// reached it, so a write sees every earlier write answered by this server (a pod
    /// created right after its namespace finds the namespace).
    written: AtomicI64,
    /// The HTTPS client of custom resources' conversion webhooks.
    conversion_client: Arc<crate::admission::webhook::Client>,
}

impl Registry {
    /// A registry over `store`, with caches of every resource of `catalog`; services are
    /// allocated addresses and ports from `ranges`.
    pub async fn new(
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        ranges: ServiceRanges,
    ) -> Result<Self, StoreError> {
        Self::new_with(store, catalog, ranges, HistoryLimits::default()).await
    }

    /// [`new`](Self::new), with the watch cache keeping history within `history`.
    pub async fn new_with(
        store: Arc<dyn Store>,
        catalog: Arc<Catalog>,
        ranges: ServiceRanges,
        history: HistoryLimits,
    ) -> Result<Self, StoreError> {
        let cache =
            WatchCache::start_with(Arc::clone(&store), Shape::of_catalog(&catalog), history)
                .await?;
        Ok(Self {
            store,
            cache,
            catalog,
            storages: storage::builtin(ranges),
            watch_limits: WatchLimits::default(),
            list_limit: None,
            admission: Admission::default(),
            closing: tokio::sync::watch::channel(false).0,
            written: AtomicI64::new(0),
            conversion_client: Arc::default(),
        })
    }

    /// Ends every watch, now and from now on (the server shuts down): each stream ends
    /// cleanly after what it has queued, and its client watches again.
    pub fn close_watches(&self) {
        self.closing.send_replace(true);
    }

    /// Runs every write through `admission` (none by default).
    pub fn set_admission(&mut self, admission: Admission) {
        self.admission = admission;
    }

    /// The admission stage.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Notes that this registry wrote at `revision`.
    fn note_written(&self, revision: krust_store::Revision) {
        self.written.fetch_max(revision, Ordering::AcqRel);
    }

    /// The cluster as admission sees it: the watch cache, once it holds every write this
    /// registry answered (or after the cache's freshness wait, stale: as upstream's informers
    /// may be).
    pub(crate) async fn admission_view(&self) -> CacheView<'_> {
        let written = self.written.load(Ordering::Acquire);
        if written > self.cache.revision()
            && let Err(e) = self.cache.wait_for(written).await
        {
            tracing::warn!(error = %e, "admission reads a watch cache behind this server's writes");
        }
        CacheView::new(&self.cache, &self.catalog)
    }

    /// The same registry with other limits for watches.
    pub fn with_watch_limits(mut self, limits: WatchLimits) -> Self {
        self.watch_limits = limits;
        self
    }

    /// The same registry with lists bounded to `bytes` of items each (`None`: unbounded): a
    /// larger list without `limit` is refused with 413, a larger page ends early with a
    /// continue token.
    pub fn with_list_limit(mut self, bytes: Option<usize>) -> Self {
        self.list_limit = bytes;
        self
    }

    /// The storage declaration of `group`/`resource`, for a part of the server that adds to
    /// it while the server is put together (made empty when the resource has none yet).
    pub fn storage_mut(
        &mut self,
        group: &'static str,
        resource: &'static str,
    ) -> &mut ResourceStorage {
        self.storages.entry(group, resource)
    }

    /// The handler of `subresource` (`None`: the resource itself) of `info`, if it has one.
    pub fn handler(&self, info: &ResourceInfo, subresource: Option<&str>) -> Option<&Handler> {
        self.storages.handler(info, subresource)
    }

    /// Runs the write check of `info`, if any, for a write with a requester.
    fn check_write(
        &self,
        info: &ResourceInfo,
        opts: &WriteOptions,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), StatusError> {
        let check = self.storages.of(info).and_then(|s| s.write_check.as_ref());
        match (check, &opts.user) {
            (Some(check), Some(user)) => check.check(info, user, new, old),
            _ => Ok(()),
        }
    }

    /// The hooks of a resource, if it has any.
    fn hooks(&self, info: &ResourceInfo) -> Option<&Arc<dyn ResourceHooks>> {
        self.storages.of(info)?.hooks.as_ref()
    }

    /// The catalog served.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// What a conversion webhook of a custom resource needs of this registry.
    pub fn conversion_webhook_context(&self) -> crate::conversion_webhook::WebhookContext {
        crate::conversion_webhook::WebhookContext {
            client: Arc::clone(&self.conversion_client),
            cache: Arc::downgrade(&self.cache),
            catalog: Arc::downgrade(&self.catalog),
        }
    }

    /// The store under the registry.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The watch cache.
    pub fn cache(&self) -> &Arc<WatchCache> {
        &self.cache
    }

    /// Reads one object by name, in the served version of `info`.
    pub async fn get(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, StatusError> {
        let key = info.storage_key(namespace, name);
        match self.store.get(&key).await.map_err(store_error)? {
            Some(kv) => to_served(info, decode(&kv)?),
            None => Err(StatusError::not_found(info.group, info.plural, name)),
        }
    }

    /// Reads the stored object and its key-value; `None` when absent.
    async fn current(&self, key: &str) -> Result<Option<(Value, KeyValue)>, StatusError> {
        match self.store.get(key).await.map_err(store_error)? {
            Some(kv) => Ok(Some((decode(&kv)?, kv))),
            None => Ok(None),
        }
    }

    /// The object an update of `key` starts from (storage version, with its resourceVersion).
    ///
    /// Unless `fresh` is asked, that is the watch cache's copy, as upstream's
    /// `GuaranteedUpdate` starts from the cacher's object: a guess, which the store's revision
    /// check on write settles. It spares the store a read, and with it a commit of the writes
    /// it holds open for the next ones (a read must see every acknowledged write). Otherwise,
    /// or when the cache's copy is not the stored value as it is, the store's. Resources with
    /// hooks (a Service's allocations) always start from the store: what a hook reserves and
    /// gives back is worked out against the old object, which must be current.
    async fn current_for_update(
        &self,
        info: &ResourceInfo,
        key: &str,
        fresh: bool,
    ) -> Result<Option<Current>, StatusError> {
        if !fresh
            && self.hooks(info).is_none()
            && let Some(cached) =
                self.cache.resource(&info.storage_prefix()).and_then(|cache| cache.get(key))
            && cached.verbatim
            && let object @ Value::Object(_) = cached.value()
        {
            return Ok(Some(Current { object, revision: cached.mod_revision, fresh: false }));
        }
        Ok(self.current(key).await?.map(|(object, kv)| Current {
            object,
            revision: kv.mod_revision,
            fresh: true,
        }))
    }
}

/// The object an update starts from.
struct Current {
    /// The object, in its storage version, with its resourceVersion.
    object: Value,
    /// The revision of its last change: the update's precondition in the store.
    revision: krust_store::Revision,
    /// Read from the store now, rather than taken from the watch cache: an error found on a
    /// cached copy may come from its being behind, and is checked again on the store's.
    fresh: bool,
}

/// The attributes of a write to `info` (through `sub`), as admission sees them.
#[allow(clippy::too_many_arguments)]
fn attributes<'a>(
    info: &'a ResourceInfo,
    operation: krust_admission::Operation,
    sub: Subresource,
    namespace: Option<&'a str>,
    name: &'a str,
    user: Option<&'a krust_auth::UserInfo>,
    dry_run: bool,
) -> krust_admission::Attributes<'a> {
    let (version, kind) = match sub {
        Subresource::Scale => ("v1", "Scale"),
        _ => (info.version, info.kind),
    };
    krust_admission::Attributes {
        operation,
        group: info.group,
        version,
        kind,
        resource: info.plural,
        subresource: sub.as_str(),
        namespace: namespace.filter(|_| info.namespaced()).unwrap_or_default(),
        name,
        user,
        dry_run,
    }
}

/// Decodes a stored value and sets its resourceVersion.
fn decode(kv: &KeyValue) -> Result<Value, StatusError> {
    let value: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| StatusError::internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    Ok(stamped(value, kv.mod_revision))
}

/// Encodes an object for the store: without resourceVersion, which it takes out of `obj`.
/// Once written, `obj` with the write's revision ([`stamped`]) is what [`decode`] would make of
/// the stored bytes, so a write answers without reading its object back.
fn encode(obj: &mut Value) -> Result<Vec<u8>, StatusError> {
    metadata_mut(obj).remove("resourceVersion");
    let bytes = serde_json::to_vec(&obj).map_err(|e| StatusError::internal(e.to_string()))?;
    if bytes.len() > MAX_OBJECT_BYTES {
        return Err(StatusError::too_large(MAX_OBJECT_BYTES));
    }
    Ok(bytes)
}

/// `obj` (as [`encode`] left it) at the store's `revision`.
fn stamped(mut obj: Value, revision: i64) -> Value {
    metadata_mut(&mut obj).insert("resourceVersion".into(), Value::String(revision.to_string()));
    obj
}

/// Converts a stored object to the version `info` serves.
pub fn to_served(info: &ResourceInfo, obj: Value) -> Result<Value, StatusError> {
    let obj = match &info.conversion {
        Some(conversion) => conversion.to_served(obj).map_err(conversion_error)?,
        None => obj,
    };
    Ok(stamp_served(info, obj))
}

/// Converts stored objects to the version `info` serves, in one go where the conversion can
/// (one call of a conversion webhook for a list).
pub fn to_served_all(info: &ResourceInfo, objects: Vec<Value>) -> Result<Vec<Value>, StatusError> {
    let objects = match &info.conversion {
        Some(conversion) => conversion.to_served_all(objects).map_err(conversion_error)?,
        None => objects,
    };
    Ok(objects.into_iter().map(|o| stamp_served(info, o)).collect())
}

/// Gives a converted object the served `apiVersion` and `kind` and its defaults on read.
fn stamp_served(info: &ResourceInfo, mut obj: Value) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(info.api_version()));
        map.insert("kind".into(), Value::String(info.kind.to_string()));
    }
    info.strategy.default_on_read(&mut obj);
    obj
}

/// Converts an object of the version `info` serves to the storage version.
/// The object must already carry the served `apiVersion` and `kind`.
fn to_stored(info: &ResourceInfo, obj: Value) -> Result<Value, StatusError> {
    match &info.conversion {
        Some(conversion) => conversion.to_stored(obj).map_err(conversion_error),
        None => Ok(obj),
    }
}

/// A failed conversion: upstream answers 500 with the conversion's message.
fn conversion_error(e: krust_api::catalog::ConversionError) -> StatusError {
    StatusError::internal(e.0)
}

/// Maps a store failure that the caller did not expect to a Status.
fn store_error(e: StoreError) -> StatusError {
    match e {
        StoreError::Compacted { requested, compacted } => {
            StatusError::gone(format!("too old resource version: {requested} ({compacted})"))
        }
        StoreError::FutureRevision { requested, current } => {
            too_large(format!("Too large resource version: {requested}, current: {current}"))
        }
        other => StatusError::internal(other.to_string()),
    }
}

/// 504 for a resourceVersion the server has not reached, with the cause clients look for.
fn too_large(message: String) -> StatusError {
    StatusError {
        details: Some(serde_json::json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        })),
        ..StatusError::new(krust_api::Reason::Timeout, message)
    }
}

fn cache_error(e: CacheError) -> StatusError {
    match e {
        CacheError::NotFresh(rv) => too_large(format!(
            "Too large resource version: {rv}, the watch cache has not caught up"
        )),
        CacheError::Store(e) => store_error(e),
    }
}

/// The name of an object, for messages.
fn name_of(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or_default()
}
