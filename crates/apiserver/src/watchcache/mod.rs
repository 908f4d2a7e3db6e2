//! The watch cache: every stored object in memory, per resource, kept current by one watch on
//! the store, so that lists and watches never scan the store.
//!
//! One dispatcher task reads a single store watch over `/registry/` and applies each event to
//! the [`ResourceCache`] its key belongs to ([`apply`](ResourceCache::apply) is synchronous),
//! then publishes the revision the caches have reached. Each resource keeps a window of recent
//! events after a base snapshot (for watches that resume from a resourceVersion, and pages of
//! lists at a fixed revision, rebuilt from the base and the events), bounded by count and bytes
//! per resource and by bytes over all of them ([`HistoryLimits`]; what an object and an event
//! cost is in the doc of `watchcache/resource.rs`). Watches and pages older than a window are served from the
//! store's history. When the store watch fails, every cache is rebuilt from a fresh list and
//! every watcher is closed, as upstream's cacher does.

mod dispatch;
mod object;
mod resource;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use krust_store::{EventKind, Revision, Store, StoreError};
use tokio::sync::{mpsc, oneshot, watch};

pub use dispatch::{Live, Subscription, WATCHER_QUEUE};
pub use object::{CachedObject, Shape};
pub use resource::{
    CacheEvent, HistoryBudget, HistoryLimits, IndexTerm, ListSnapshot, MIN_EVENTS_UNDER_PRESSURE,
    ResourceCache, WatchStart,
};

/// The caches of all resources and the revision they have all reached.
pub struct WatchCache {
    store: Arc<dyn Store>,
    /// The caches by storage prefix; resources of custom resource definitions come and go.
    resources: RwLock<HashMap<String, Arc<ResourceCache>>>,
    revision: watch::Sender<Revision>,
    budget: Arc<HistoryBudget>,
    limits: HistoryLimits,
    /// Changes of the set of resources, carried out by the follower between two events.
    changes: mpsc::UnboundedSender<Change>,
}

/// A resource to start or stop caching, and who waits for it.
enum Change {
    Add(Box<Shape>, oneshot::Sender<Result<(), StoreError>>),
    Remove(String, oneshot::Sender<Result<(), StoreError>>),
}

/// How many keys the cache reads from the store at a time when it fills.
const FILL_PAGE: usize = 10_000;

/// How long a read waits for the cache to reach a revision before giving up.
const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// Why the cache could not answer.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache did not reach the revision in time.
    #[error("timed out waiting for the watch cache to reach revision {0}")]
    NotFresh(Revision),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WatchCache {
    /// Creates caches for the given resources (one per storage prefix
    /// `/registry/<group>/<resource>/`), fills them from the store and starts following it,
    /// with the default history limits.
    pub async fn start(
        store: Arc<dyn Store>,
        shapes: impl IntoIterator<Item = Shape>,
    ) -> Result<Arc<Self>, StoreError> {
        Self::start_with(store, shapes, HistoryLimits::default()).await
    }

    /// [`start`](Self::start), keeping history within `limits`.
    pub async fn start_with(
        store: Arc<dyn Store>,
        shapes: impl IntoIterator<Item = Shape>,
        limits: HistoryLimits,
    ) -> Result<Arc<Self>, StoreError> {
        let budget = Arc::new(HistoryBudget::new(limits.total_bytes));
        let resources = shapes
            .into_iter()
            .map(|shape| {
                let cache = ResourceCache::with_limits(shape, limits, Arc::clone(&budget));
                (cache.prefix().to_string(), Arc::new(cache))
            })
            .collect();
        let (revision, _) = watch::channel(0);
        let (changes, receiver) = mpsc::unbounded_channel();
        let cache = Arc::new(Self {
            store,
            resources: RwLock::new(resources),
            revision,
            budget,
            limits,
            changes,
        });
        let start = cache.relist().await?;
        let follower = Arc::clone(&cache);
        tokio::spawn(async move { follower.follow(start, receiver).await });
        Ok(cache)
    }

    /// The cache of one storage prefix.
    pub fn resource(&self, storage_prefix: &str) -> Option<Arc<ResourceCache>> {
        self.resources().get(storage_prefix).cloned()
    }

    fn resources(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<ResourceCache>>> {
        self.resources.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn resources_mut(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<ResourceCache>>> {
        self.resources.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts caching a resource (a custom resource's storage), or caches it anew when its
    /// shape changed (its watchers are closed and re-watch): its objects are read at the
    /// revision the caches have reached, between two events, so none is missed or applied
    /// twice. Returns once the cache serves it.
    pub async fn add(&self, shape: Shape) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let change = Change::Add(Box::new(shape), done);
        self.changes.send(change).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Stops caching the resource of `storage_prefix`, closing its watchers.
    pub async fn remove(&self, storage_prefix: &str) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let change = Change::Remove(storage_prefix.to_string(), done);
        self.changes.send(change).map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Carries out a change of the set of resources at `revision`, the follower's.
    async fn change(&self, change: Change, revision: Revision) {
        match change {
            Change::Add(shape, done) => {
                let _ = done.send(self.fill(*shape, revision).await);
            }
            Change::Remove(prefix, done) => {
                if let Some(cache) = self.resources_mut().remove(&prefix) {
                    cache.reset(Vec::new(), revision);
                }
                let _ = done.send(Ok(()));
            }
        }
    }

    /// Reads the objects of `shape`'s prefix at `revision` into a new cache, which replaces
    /// the prefix's cache, if any.
    async fn fill(&self, shape: Shape, revision: Revision) -> Result<(), StoreError> {
        let prefix = shape.info.storage_prefix();
        let mut objects = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page =
                self.store.list(&prefix, after.as_deref(), FILL_PAGE, Some(revision)).await?;
            after = page.items.last().map(|kv| kv.key.clone()).or(after);
            objects
                .extend(page.items.into_iter().filter_map(|kv| CachedObject::decode(kv, &shape)));
            if !page.more || after.is_none() {
                break;
            }
        }
        let cache = ResourceCache::with_limits(shape, self.limits, Arc::clone(&self.budget));
        cache.reset(objects, revision);
        if let Some(old) = self.resources_mut().insert(prefix, Arc::new(cache)) {
            old.reset(Vec::new(), revision);
        }
        Ok(())
    }

    /// The bytes of history (events' replaced versions and bookkeeping) all caches hold.
    pub fn history_bytes(&self) -> usize {
        self.budget.used()
    }

    /// The revision every cache has reached.
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// A receiver of the revision every cache has reached.
    pub fn subscribe_revision(&self) -> watch::Receiver<Revision> {
        self.revision.subscribe()
    }

    /// Waits until the caches have reached `revision`.
    pub async fn wait_for(&self, revision: Revision) -> Result<(), CacheError> {
        let mut rx = self.revision.subscribe();
        let reached = tokio::time::timeout(FRESHNESS_WAIT, rx.wait_for(|r| *r >= revision)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(CacheError::NotFresh(revision)),
        }
    }

    /// Waits until the caches have seen every write the store had acknowledged when this was
    /// called (a consistent read from the cache).
    pub async fn wait_consistent(&self) -> Result<Revision, CacheError> {
        let current = self.store.current_revision().await?;
        self.wait_for(current).await?;
        Ok(self.revision().max(current))
    }

    /// Reads every key under `/registry/` in one pass (pages at one revision) and resets every
    /// cache to it. Returns the revision of the read. Each page is decoded on every core while
    /// the next one is read.
    async fn relist(&self) -> Result<Revision, StoreError> {
        let mut by_prefix = Grouped::default();
        let mut after: Option<String> = None;
        let mut revision = None;
        let mut decoding: Option<tokio::task::JoinHandle<Vec<CachedObject>>> = None;
        loop {
            let page = self.store.list("/registry/", after.as_deref(), FILL_PAGE, revision).await;
            if let Some(decoded) = decoding.take() {
                by_prefix.extend(decoded.await.unwrap_or_default());
            }
            let page = page?;
            revision = Some(page.revision);
            after = page.items.last().map(|kv| kv.key.clone()).or(after);
            let items: Vec<(Shape, krust_store::KeyValue)> = page
                .items
                .into_iter()
                .filter_map(|kv| {
                    Some((self.resources().get(prefix_of(&kv.key))?.shape().clone(), kv))
                })
                .collect();
            decoding = Some(tokio::task::spawn_blocking(move || decode_all(items)));
            if !page.more || after.is_none() {
                break;
            }
        }
        if let Some(decoded) = decoding.take() {
            by_prefix.extend(decoded.await.unwrap_or_default());
        }
        let mut by_prefix = by_prefix.into_map();
        let revision = revision.unwrap_or(0);
        let (objects, bytes, json) = by_prefix
            .values()
            .flatten()
            .fold((0, 0, 0), |(n, b, j), o| (n + 1, b + o.size, j + o.json.len()));
        for (prefix, cache) in self.resources().iter() {
            cache.reset(by_prefix.remove(prefix.as_str()).unwrap_or_default(), revision);
        }
        tracing::info!(revision, objects, bytes, json_bytes = json, "watch cache filled");
        self.revision.send_replace(revision);
        Ok(revision)
    }

    /// Follows the store from `revision` for ever, relisting when the watch breaks, and
    /// carries out the changes of the set of resources between events.
    async fn follow(
        self: Arc<Self>,
        mut revision: Revision,
        mut changes: mpsc::UnboundedReceiver<Change>,
    ) {
        loop {
            match self.store.watch("/registry/", revision).await {
                Ok(mut events) => loop {
                    let item = tokio::select! {
                        biased;
                        Some(change) = changes.recv() => {
                            self.change(change, revision).await;
                            continue;
                        }
                        item = events.next() => item,
                    };
                    let Some(item) = item else { break };
                    match item {
                        Ok(event) => {
                            if event.kind != EventKind::Progress
                                && let Some(cache) = self.resource(prefix_of(&event.kv.key))
                            {
                                cache.apply(&event);
                            }
                            if event.revision > revision {
                                revision = event.revision;
                                self.revision.send_replace(revision);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "store watch failed; relisting");
                            break;
                        }
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cannot watch the store; relisting"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            match self.relist().await {
                Ok(r) => revision = r,
                Err(e) => tracing::warn!(error = %e, "relist failed; retrying"),
            }
        }
    }
}

/// Objects grouped by storage prefix. They arrive in key order, so an object's prefix is
/// usually its predecessor's: only a change of prefix is looked up.
#[derive(Default)]
struct Grouped {
    /// The groups no object has been added to since the prefix last changed.
    done: HashMap<String, Vec<CachedObject>>,
    /// The group objects are being added to.
    open: Option<(String, Vec<CachedObject>)>,
}

impl Grouped {
    fn extend(&mut self, objects: Vec<CachedObject>) {
        for object in objects {
            let prefix = prefix_of(&object.key);
            if !matches!(&self.open, Some((open, _)) if open.as_str() == prefix) {
                let group = self.done.remove(prefix).unwrap_or_default();
                if let Some((closed, group)) = self.open.replace((prefix.to_string(), group)) {
                    self.done.insert(closed, group);
                }
            }
            if let Some((_, group)) = &mut self.open {
                group.push(object);
            }
        }
    }

    /// The groups by prefix.
    fn into_map(mut self) -> HashMap<String, Vec<CachedObject>> {
        if let Some((prefix, group)) = self.open.take() {
            self.done.insert(prefix, group);
        }
        self.done
    }
}

/// Decodes stored objects on every core, keeping their order.
fn decode_all(items: Vec<(Shape, krust_store::KeyValue)>) -> Vec<CachedObject> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from).max(1);
    let per_thread = items.len().div_ceil(threads).max(1);
    let mut chunks: Vec<Vec<(Shape, krust_store::KeyValue)>> = Vec::new();
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        chunks.push(items.by_ref().take(per_thread).collect());
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .into_iter()
                        .filter_map(|(shape, kv)| CachedObject::decode(kv, &shape))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    })
}

/// The storage prefix `/registry/<group>/<resource>/` a key belongs to.
pub fn prefix_of(key: &str) -> &str {
    let mut slashes = key.match_indices('/').skip(3);
    match slashes.next() {
        Some((i, _)) => &key[..=i],
        None => key,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_belongs_to_its_resource_prefix() {
        assert_eq!(prefix_of("/registry/core/pods/default/web"), "/registry/core/pods/");
        assert_eq!(prefix_of("/registry/core/namespaces/default"), "/registry/core/namespaces/");
    }
}
