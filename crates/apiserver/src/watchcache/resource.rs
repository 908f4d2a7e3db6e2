//! The cache of one resource: its objects, and a window of recent events after a base
//! snapshot, from which a watch resumes and a page at a past revision is rebuilt.
//!
//! # What it costs
//!
//! Each [`CachedObject`] knows its [`size`](CachedObject::size): the heap bytes of its decoded
//! JSON (string and key bytes, plus for each map entry the slot it takes, about 130 bytes, and
//! for each array element 80 bytes) and its key; allocator rounding and spare capacity are not
//! counted (they add up to a quarter). A ConfigMap holding 4 KB of data takes about 5 KB.
//!
//! The current objects are the cost of the cache itself. The window adds, per event, the
//! version it replaced (an update's or a delete's previous object; a delete's final state too)
//! and about 100 bytes of bookkeeping: that is what [`HistoryLimits`] bounds, by count and by
//! bytes per resource, and by bytes over all resources (a [`HistoryBudget`] they share; a
//! resource that writes trims its own window when the total is over, down to a floor of
//! [`MIN_EVENTS_UNDER_PRESSURE`] events). The base snapshot shares every node and object with
//! the current map until they change; a page at a past revision is rebuilt from the base and
//! the window's events (the last one rebuilt is kept for the pages that follow), so no
//! snapshot is kept per event. Events older than the window are read from the store's
//! history instead.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use imbl::OrdMap;
use krust_store::{Event, EventKind, KeyValue, Revision};
use serde_json::Value;
use tokio::sync::broadcast;

/// How many events a watcher may fall behind the broadcast before it is closed. The
/// broadcast keeps each event until every watcher has taken it, so this bounds what a slow
/// watcher pins (watchers take events at once and queue them encoded, within their own limits).
const LIVE_BUFFER: usize = 1024;

/// Under a full [`HistoryBudget`], a resource keeps at least this many recent events.
pub const MIN_EVENTS_UNDER_PRESSURE: usize = 64;

/// Bookkeeping bytes per event in the window (the shared event, its slot in the window).
const EVENT_OVERHEAD: usize = 96;

/// How much history the watch cache keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// The most events a resource keeps.
    pub events: usize,
    /// The most bytes of history (see the module doc) a resource keeps.
    pub resource_bytes: usize,
    /// The most bytes of history all resources keep together.
    pub total_bytes: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self { events: 2048, resource_bytes: 8 * 1024 * 1024, total_bytes: 64 * 1024 * 1024 }
    }
}

/// The bytes of history all resources hold, against their common limit.
#[derive(Debug)]
pub struct HistoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl HistoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self { limit, used: AtomicUsize::new(0) }
    }

    /// The bytes of history held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.used() > self.limit
    }

    fn add(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    fn sub(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Approximate heap bytes of a decoded JSON value (see the module doc).
fn heap_size(value: &Value) -> usize {
    // A map entry: the key's `String`, the value, the entry's hash and its index slot.
    const ENTRY: usize = std::mem::size_of::<String>()
        + std::mem::size_of::<Value>()
        + 2 * std::mem::size_of::<usize>();
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.len(),
        Value::Array(items) => {
            items.iter().map(|v| std::mem::size_of::<Value>() + heap_size(v)).sum()
        }
        Value::Object(map) => map.iter().map(|(k, v)| ENTRY + k.len() + heap_size(v)).sum(),
    }
}

/// One object as the cache keeps it: decoded once, shared by every reader.
#[derive(Debug)]
pub struct CachedObject {
    /// The storage key.
    pub key: String,
    /// The object in its storage version, with `metadata.resourceVersion` set.
    pub value: Value,
    /// The revision of its last change.
    pub mod_revision: Revision,
    /// About how many bytes it takes in memory (see the module doc).
    pub size: usize,
}

impl CachedObject {
    /// Decodes a stored value; `None` (logged) when the bytes are not a JSON object.
    pub fn decode(kv: KeyValue) -> Option<Self> {
        let mut value: Value = match serde_json::from_slice(&kv.value) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) | Err(_) => {
                tracing::error!(key = %kv.key, "stored value is not a JSON object; skipped");
                return None;
            }
        };
        krust_api::object::metadata_mut(&mut value)
            .insert("resourceVersion".into(), Value::String(kv.mod_revision.to_string()));
        let size = std::mem::size_of::<Self>() + kv.key.len() + heap_size(&value);
        Some(Self { key: kv.key, value, mod_revision: kv.mod_revision, size })
    }
}

/// What a watcher sees: a change to one object.
#[derive(Debug, Clone)]
pub struct CacheEvent {
    /// Created, updated or deleted.
    pub kind: EventKind,
    /// The object after the change (for a delete: its last state, at the delete's revision).
    pub object: Arc<CachedObject>,
    /// The object before the change.
    pub prev: Option<Arc<CachedObject>>,
    /// The revision of the change.
    pub revision: Revision,
}

type Objects = OrdMap<String, Arc<CachedObject>>;

struct State {
    objects: Objects,
    /// Revision and objects at the start of the window.
    base: (Revision, Objects),
    /// Events after `base`, each with the bytes of history it holds.
    window: VecDeque<(Arc<CacheEvent>, usize)>,
    /// The bytes of history the window holds.
    bytes: usize,
    /// Every event up to this revision has been applied (and nothing later exists yet).
    revision: Revision,
    events: broadcast::Sender<Arc<CacheEvent>>,
}

/// A consistent view of a resource's objects at one revision.
pub struct ListSnapshot {
    /// The objects, by key.
    objects: Objects,
}

impl ListSnapshot {
    /// The objects whose key starts with `prefix`, in key order, strictly after `start_after`.
    pub fn range<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&str>,
    ) -> impl Iterator<Item = &'a Arc<CachedObject>> + 'a {
        let lower = match start_after {
            Some(after) if after >= prefix => std::ops::Bound::Excluded(after.to_string()),
            _ => std::ops::Bound::Included(prefix.to_string()),
        };
        self.objects
            .range((lower, std::ops::Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> Option<&Arc<CachedObject>> {
        self.objects.get(key)
    }
}

/// Where a new watcher starts.
pub enum WatchStart {
    /// The revision asked for is older than the cache's window.
    TooOld {
        /// The oldest revision a watch can start from.
        oldest: Revision,
    },
    /// Replay these events, then follow the receiver (skipping what was replayed).
    Ready {
        /// Objects at the start, for watches that begin with the current state.
        snapshot: ListSnapshot,
        /// Revision of the snapshot.
        snapshot_revision: Revision,
        /// Events after the requested revision, in order.
        replay: Vec<Arc<CacheEvent>>,
        /// Later events.
        live: broadcast::Receiver<Arc<CacheEvent>>,
    },
}

/// The cache of one resource (one storage prefix).
pub struct ResourceCache {
    prefix: String,
    limits: HistoryLimits,
    budget: Arc<HistoryBudget>,
    state: RwLock<State>,
    /// The last snapshot rebuilt at a past revision, for the pages that follow.
    rebuilt: Mutex<Option<(Revision, Objects)>>,
}

impl ResourceCache {
    /// An empty cache for `prefix`, with the default limits and a budget of its own.
    pub fn new(prefix: String) -> Self {
        let limits = HistoryLimits::default();
        Self::with_limits(prefix, limits, Arc::new(HistoryBudget::new(limits.total_bytes)))
    }

    /// An empty cache for `prefix` keeping history within `limits`, sharing `budget`.
    pub fn with_limits(prefix: String, limits: HistoryLimits, budget: Arc<HistoryBudget>) -> Self {
        let (events, _) = broadcast::channel(LIVE_BUFFER);
        let state = State {
            objects: OrdMap::new(),
            base: (0, OrdMap::new()),
            window: VecDeque::new(),
            bytes: 0,
            revision: 0,
            events,
        };
        Self { prefix, limits, budget, state: RwLock::new(state), rebuilt: Mutex::new(None) }
    }

    /// The storage prefix this cache holds.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn rebuilt(&self) -> std::sync::MutexGuard<'_, Option<(Revision, Objects)>> {
        self.rebuilt.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the whole cache with `objects` read at `revision`, closing every watcher.
    pub fn reset(&self, objects: Vec<CachedObject>, revision: Revision) {
        let objects: Objects = objects.into_iter().map(|o| (o.key.clone(), Arc::new(o))).collect();
        let (events, _) = broadcast::channel(LIVE_BUFFER);
        let mut state = self.write();
        self.budget.sub(state.bytes);
        *state = State {
            base: (revision, objects.clone()),
            objects,
            window: VecDeque::new(),
            bytes: 0,
            revision,
            events,
        };
        drop(state);
        *self.rebuilt() = None;
    }

    /// Applies one store event (create, update or delete) of this resource.
    pub fn apply(&self, event: &Event) {
        let mut state = self.write();
        if event.revision <= state.revision {
            return;
        }
        let Some(object) = CachedObject::decode(event.kv.clone()) else {
            return;
        };
        let object = Arc::new(object);
        let prev = match event.kind {
            EventKind::Delete => state.objects.remove(&object.key),
            _ => state.objects.insert(object.key.clone(), Arc::clone(&object)),
        };
        let kind = match (event.kind, &prev) {
            (EventKind::Delete, _) => EventKind::Delete,
            (_, Some(_)) => EventKind::Update,
            (_, None) => EventKind::Create,
        };
        // What only the window keeps alive: the version replaced, and a deleted object.
        let held = EVENT_OVERHEAD
            + prev.as_ref().map_or(0, |p| p.size)
            + if kind == EventKind::Delete { object.size } else { 0 };
        let cache_event = Arc::new(CacheEvent { kind, object, prev, revision: event.revision });
        state.revision = event.revision;
        state.window.push_back((Arc::clone(&cache_event), held));
        state.bytes += held;
        self.budget.add(held);
        self.trim(&mut state);
        // A send fails only when nobody watches, which is fine.
        let _ = state.events.send(cache_event);
    }

    /// Drops the oldest events (folding them into the base) until the window is within its
    /// limits.
    fn trim(&self, state: &mut State) {
        loop {
            let len = state.window.len();
            let over = len > self.limits.events
                || (len > 1 && state.bytes > self.limits.resource_bytes)
                || (len > MIN_EVENTS_UNDER_PRESSURE && self.budget.over());
            if !over {
                return;
            }
            let Some((oldest, held)) = state.window.pop_front() else { return };
            state.bytes -= held;
            self.budget.sub(held);
            apply_to(&mut state.base.1, &oldest);
            state.base.0 = oldest.revision;
        }
    }

    /// The objects now, and the revision of this resource's last change.
    pub fn snapshot(&self) -> (ListSnapshot, Revision) {
        let state = self.read();
        (ListSnapshot { objects: state.objects.clone() }, state.revision)
    }

    /// The objects as of `revision`, or `None` when that is older than the window.
    pub fn snapshot_at(&self, revision: Revision) -> Option<ListSnapshot> {
        let (mut objects, events) = {
            let state = self.read();
            if revision < state.base.0 {
                return None;
            }
            if revision >= state.revision {
                return Some(ListSnapshot { objects: state.objects.clone() });
            }
            if let Some((at, objects)) = self.rebuilt().as_ref()
                && *at == revision
            {
                return Some(ListSnapshot { objects: objects.clone() });
            }
            let events: Vec<Arc<CacheEvent>> = state
                .window
                .iter()
                .take_while(|(event, _)| event.revision <= revision)
                .map(|(event, _)| Arc::clone(event))
                .collect();
            (state.base.1.clone(), events)
        };
        for event in &events {
            apply_to(&mut objects, event);
        }
        *self.rebuilt() = Some((revision, objects.clone()));
        Some(ListSnapshot { objects })
    }

    /// The bytes of history (see the module doc) this resource holds, and its events.
    pub fn history(&self) -> (usize, usize) {
        let state = self.read();
        (state.bytes, state.window.len())
    }

    /// Starts a watcher that sees every change after `after` (`None`: from the current state).
    pub fn watch_from(&self, after: Option<Revision>) -> WatchStart {
        let state = self.read();
        let live = state.events.subscribe();
        let snapshot = ListSnapshot { objects: state.objects.clone() };
        let replay = match after {
            None => Vec::new(),
            Some(rv) if rv < state.base.0 => return WatchStart::TooOld { oldest: state.base.0 },
            Some(rv) => state
                .window
                .iter()
                .filter(|(event, _)| event.revision > rv)
                .map(|(event, _)| Arc::clone(event))
                .collect(),
        };
        WatchStart::Ready { snapshot, snapshot_revision: state.revision, replay, live }
    }
}

/// Applies an event to a map of objects.
fn apply_to(objects: &mut Objects, event: &CacheEvent) {
    match event.kind {
        EventKind::Delete => {
            objects.remove(&event.object.key);
        }
        _ => {
            objects.insert(event.object.key.clone(), Arc::clone(&event.object));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(kind: EventKind, key: &str, revision: Revision) -> Event {
        let kv = KeyValue {
            key: key.into(),
            value: br#"{"metadata":{"name":"x"}}"#.to_vec(),
            create_revision: revision,
            mod_revision: revision,
        };
        Event { kind, kv, prev: None, revision }
    }

    fn update(key: &str, revision: Revision, data: &str) -> Event {
        let value = serde_json::json!({"metadata": {"name": "x"}, "data": {"d": data}});
        let kv = KeyValue {
            key: key.into(),
            value: serde_json::to_vec(&value).unwrap(),
            create_revision: 1,
            mod_revision: revision,
        };
        Event { kind: EventKind::Update, kv, prev: None, revision }
    }

    fn data_at(cache: &ResourceCache, revision: Revision, key: &str) -> Option<String> {
        let snapshot = cache.snapshot_at(revision)?;
        let object = snapshot.get(key)?;
        Some(object.value["data"]["d"].as_str()?.to_string())
    }

    #[test]
    fn an_object_knows_about_how_many_bytes_it_takes() {
        let kv = update("/registry/core/configmaps/a/x", 5, &"x".repeat(4000)).kv;
        let size = CachedObject::decode(kv).unwrap().size;
        assert!((4000..6000).contains(&size), "{size}");
    }

    #[test]
    fn the_window_is_bounded_by_bytes_and_older_revisions_fall_back_to_the_store() {
        let limits = HistoryLimits { events: 2048, resource_bytes: 20_000, total_bytes: 1 << 30 };
        let budget = Arc::new(HistoryBudget::new(limits.total_bytes));
        let cache = ResourceCache::with_limits("/registry/core/configmaps/".into(), limits, budget);
        cache.reset(Vec::new(), 1);
        let key = "/registry/core/configmaps/a/x";
        for rv in 2..=101 {
            cache.apply(&update(key, rv, &format!("{rv:>1000}")));
        }
        let (bytes, events) = cache.history();
        assert!(bytes <= 20_000, "{bytes}");
        assert!((10..40).contains(&events), "{events} events");
        let oldest = 101 - events as Revision;
        assert!(
            matches!(cache.watch_from(Some(5)), WatchStart::TooOld { oldest: o } if o == oldest)
        );
        assert!(cache.snapshot_at(oldest - 1).is_none());
        // Pages at a revision inside the window are rebuilt, again and again.
        for _ in 0..2 {
            assert_eq!(data_at(&cache, oldest, key).unwrap().trim(), oldest.to_string());
            assert_eq!(data_at(&cache, oldest + 3, key).unwrap().trim(), (oldest + 3).to_string());
        }
        assert_eq!(data_at(&cache, 101, key).unwrap().trim(), "101");
    }

    #[test]
    fn resources_that_write_keep_the_total_history_within_the_shared_budget() {
        let limits = HistoryLimits { events: 2048, resource_bytes: 1 << 30, total_bytes: 400_000 };
        let budget = Arc::new(HistoryBudget::new(limits.total_bytes));
        let caches: Vec<ResourceCache> = ["/registry/core/configmaps/", "/registry/core/secrets/"]
            .into_iter()
            .map(|p| ResourceCache::with_limits(p.into(), limits, Arc::clone(&budget)))
            .collect();
        for cache in &caches {
            cache.reset(Vec::new(), 1);
        }
        let blob = "x".repeat(1000);
        for rv in 2..=1001 {
            let cache = &caches[(rv % 2) as usize];
            cache.apply(&update(&format!("{}a/x", cache.prefix()), rv, &blob));
        }
        let per_event = caches[0].history().0 / caches[0].history().1;
        assert!(budget.used() <= 400_000 + per_event, "{}", budget.used());
        assert!(caches.iter().all(|c| c.history().1 >= MIN_EVENTS_UNDER_PRESSURE));
        assert_eq!(budget.used(), caches[0].history().0 + caches[1].history().0);
        caches[0].reset(Vec::new(), 2000);
        assert_eq!(budget.used(), caches[1].history().0);
    }

    #[test]
    fn snapshots_show_the_objects_as_of_a_revision() {
        let cache = ResourceCache::new("/registry/core/pods/".into());
        cache.reset(Vec::new(), 10);
        cache.apply(&event(EventKind::Create, "/registry/core/pods/a/x", 11));
        cache.apply(&event(EventKind::Create, "/registry/core/pods/a/y", 13));
        cache.apply(&event(EventKind::Delete, "/registry/core/pods/a/x", 14));
        let count = |rv| cache.snapshot_at(rv).unwrap().range("/registry/core/pods/", None).count();
        assert_eq!((count(10), count(11), count(12), count(13), count(14)), (0, 1, 1, 2, 1));
        assert!(cache.snapshot_at(9).is_none());
    }

    #[test]
    fn a_watch_replays_what_followed_its_revision() {
        let cache = ResourceCache::new("/registry/core/pods/".into());
        cache.reset(Vec::new(), 10);
        cache.apply(&event(EventKind::Create, "/registry/core/pods/a/x", 11));
        cache.apply(&event(EventKind::Update, "/registry/core/pods/a/x", 12));
        let WatchStart::Ready { replay, .. } = cache.watch_from(Some(11)) else { panic!() };
        assert_eq!(
            replay.iter().map(|e| (e.kind, e.revision)).collect::<Vec<_>>(),
            [(EventKind::Update, 12)]
        );
        assert!(matches!(cache.watch_from(Some(5)), WatchStart::TooOld { oldest: 10 }));
    }
}
