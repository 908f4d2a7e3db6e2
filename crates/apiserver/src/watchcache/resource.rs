//! The cache of one resource: its objects, and a window of recent events after a base
//! snapshot, from which a watch resumes and a page at a past revision is rebuilt.
//!
//! # What it costs
//!
//! Each [`CachedObject`] knows its [`size`](CachedObject::size): its JSON bytes (exactly what
//! a client is sent), its key, and its labels and selectable fields with about 32 bytes each;
//! the persistent maps add about 50 bytes per object (a key pointer and a node slot), the index
//! of the indexed field (pods by `spec.nodeName`) about 60 (its term, key and object pointers),
//! and the label index about 80 bytes per label. A pod of 3.8 KB of JSON with three labels takes about 4.5 KB.
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
use krust_store::{Event, EventKind, Revision};

use super::dispatch::{Dispatch, Subscription};
use super::object::{CachedObject, Shape};

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

type Objects = OrdMap<Arc<str>, Arc<CachedObject>>;

/// Objects by (term, key) in order: a term is a field's value, or a label's `key=value`. Each
/// posting holds its object, so that a lookup reads no other map (a key lookup per object
/// compares keys in memory a large cache has cold: it made a node's 30 pods cost 2.7 times
/// more among 150,000 pods than among 1,000).
type Postings = OrdMap<(Arc<str>, Arc<str>), Arc<CachedObject>>;

/// The objects by the indexed field's value, and by each of their labels.
#[derive(Clone)]
struct Indexes {
    /// The indexed field and its postings, if the resource has one.
    field: Option<(&'static str, Postings)>,
    /// Every object by each of its labels (`key=value`).
    labels: Postings,
}

impl Indexes {
    fn new(shape: &Shape) -> Self {
        Self { field: shape.indexed_field().map(|f| (f, OrdMap::new())), labels: OrdMap::new() }
    }

    fn terms(&self, object: &CachedObject) -> (Option<String>, Vec<String>) {
        let field = self.field.as_ref().map(|(f, _)| object.field(f).unwrap_or_default().into());
        let labels = object.labels().map(|(k, v)| format!("{k}={v}")).collect();
        (field, labels)
    }

    fn insert(&mut self, object: &Arc<CachedObject>, terms: &mut Terms) {
        let (field, labels) = self.terms(object);
        if let (Some((_, postings)), Some(value)) = (&mut self.field, field) {
            postings.insert((terms.get(&value), Arc::clone(&object.key)), Arc::clone(object));
        }
        for label in labels {
            self.labels.insert((terms.get(&label), Arc::clone(&object.key)), Arc::clone(object));
        }
    }

    fn remove(&mut self, object: &CachedObject) {
        let (field, labels) = self.terms(object);
        if let (Some((_, postings)), Some(value)) = (&mut self.field, field) {
            postings.remove(&(value.into(), Arc::clone(&object.key)));
        }
        for label in labels {
            self.labels.remove(&(label.into(), Arc::clone(&object.key)));
        }
    }
}

/// The terms of the postings, each kept once however many objects share it (most labels and
/// node names are shared by many objects). Terms no posting holds any more are dropped when
/// the set has doubled since it was last pruned.
#[derive(Default)]
struct Terms {
    set: std::collections::HashSet<Arc<str>>,
    pruned_at: usize,
}

impl Terms {
    fn get(&mut self, term: &str) -> Arc<str> {
        if let Some(shared) = self.set.get(term) {
            return Arc::clone(shared);
        }
        if self.set.len() >= 2 * self.pruned_at.max(1024) {
            self.set.retain(|t| Arc::strong_count(t) > 1);
            self.pruned_at = self.set.len();
        }
        let shared: Arc<str> = term.into();
        self.set.insert(Arc::clone(&shared));
        shared
    }
}

/// What an indexed lookup asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexTerm<'a> {
    /// Objects whose `field` (the resource's indexed field) has `value`.
    Field(&'a str, &'a str),
    /// Objects with the label `key=value`.
    Label(&'a str, &'a str),
}

struct State {
    objects: Objects,
    /// The current objects by the indexed field and by label.
    index: Indexes,
    /// The terms of `index`, shared.
    terms: Terms,
    /// Revision and objects at the start of the window.
    base: (Revision, Objects),
    /// Events after `base`, each with the bytes of history it holds.
    window: VecDeque<(Arc<CacheEvent>, usize)>,
    /// The bytes of history the window holds.
    bytes: usize,
    /// Every event up to this revision has been applied (and nothing later exists yet).
    revision: Revision,
}

/// A consistent view of a resource's objects at one revision (cheap to clone: the maps are
/// persistent and shared).
#[derive(Clone)]
pub struct ListSnapshot {
    /// The objects, by key.
    objects: Objects,
    /// The objects by the indexed field and by label (current snapshots only).
    index: Option<Indexes>,
}

impl ListSnapshot {
    /// The objects whose key starts with `prefix`, in key order, strictly after `start_after`.
    pub fn range<'a>(
        &'a self,
        prefix: &'a str,
        start_after: Option<&str>,
    ) -> impl Iterator<Item = &'a Arc<CachedObject>> + 'a {
        use std::ops::Bound;
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded(after),
            _ => Bound::Included(prefix),
        };
        self.objects
            .range::<_, str>((lower, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v)
    }

    /// The objects under `prefix` that `term` names, in key order, strictly after
    /// `start_after`; `None` when this snapshot has no such index (a past snapshot, a field
    /// the resource does not index). Costs what it returns.
    pub fn lookup<'a>(
        &'a self,
        term: IndexTerm<'_>,
        prefix: &'a str,
        start_after: Option<&str>,
    ) -> Option<impl Iterator<Item = &'a Arc<CachedObject>> + 'a> {
        use std::ops::Bound;
        let index = self.index.as_ref()?;
        let (postings, term): (&Postings, Arc<str>) = match term {
            IndexTerm::Field(field, value) => match &index.field {
                Some((indexed, postings)) if *indexed == field => (postings, value.into()),
                _ => return None,
            },
            IndexTerm::Label(key, value) => (&index.labels, format!("{key}={value}").into()),
        };
        let lower = match start_after {
            Some(after) if after >= prefix => Bound::Excluded((Arc::clone(&term), after.into())),
            _ => Bound::Included((Arc::clone(&term), prefix.into())),
        };
        Some(
            postings
                .range((lower, Bound::Unbounded))
                .take_while(move |((t, key), _)| *t == term && key.starts_with(prefix))
                .map(|(_, object)| object),
        )
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> Option<&Arc<CachedObject>> {
        self.objects.get(key)
    }

    /// How many objects there are.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
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
        live: Subscription,
    },
}

/// The cache of one resource (one storage prefix).
pub struct ResourceCache {
    prefix: String,
    shape: Shape,
    limits: HistoryLimits,
    budget: Arc<HistoryBudget>,
    state: RwLock<State>,
    /// The watchers; events are handed to them under the state's write lock, so that a new
    /// watcher's snapshot and its first live event meet without a gap.
    dispatch: Arc<Dispatch>,
    /// The last snapshot rebuilt at a past revision, for the pages that follow.
    rebuilt: Mutex<Option<(Revision, Objects)>>,
}

impl ResourceCache {
    /// An empty cache of the objects of `shape`, with the default limits and a budget of its
    /// own.
    pub fn new(shape: Shape) -> Self {
        let limits = HistoryLimits::default();
        Self::with_limits(shape, limits, Arc::new(HistoryBudget::new(limits.total_bytes)))
    }

    /// An empty cache of the objects of `shape` keeping history within `limits`, sharing
    /// `budget`.
    pub fn with_limits(shape: Shape, limits: HistoryLimits, budget: Arc<HistoryBudget>) -> Self {
        let state = State {
            objects: OrdMap::new(),
            index: Indexes::new(&shape),
            terms: Terms::default(),
            base: (0, OrdMap::new()),
            window: VecDeque::new(),
            bytes: 0,
            revision: 0,
        };
        Self {
            prefix: shape.info.storage_prefix(),
            shape,
            limits,
            budget,
            state: RwLock::new(state),
            dispatch: Arc::default(),
            rebuilt: Mutex::new(None),
        }
    }

    /// The storage prefix this cache holds.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How the objects are kept.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// How many watchers follow this resource.
    pub fn watchers(&self) -> usize {
        self.dispatch.len()
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
        let objects: Objects =
            objects.into_iter().map(|o| (Arc::clone(&o.key), Arc::new(o))).collect();
        let mut index = Indexes::new(&self.shape);
        let mut terms = Terms::default();
        for object in objects.values() {
            index.insert(object, &mut terms);
        }
        let mut state = self.write();
        self.budget.sub(state.bytes);
        *state = State {
            base: (revision, objects.clone()),
            objects,
            index,
            terms,
            window: VecDeque::new(),
            bytes: 0,
            revision,
        };
        self.dispatch.close_all();
        drop(state);
        *self.rebuilt() = None;
    }

    /// Applies one store event (create, update or delete) of this resource.
    pub fn apply(&self, event: &Event) {
        if event.revision <= self.read().revision {
            return;
        }
        // Decoding and indexing the object is the costly part: done before the lock.
        let Some(object) = CachedObject::decode(event.kv.clone(), &self.shape) else {
            return;
        };
        let object = Arc::new(object);
        let mut state = self.write();
        if event.revision <= state.revision {
            return;
        }
        let prev = match event.kind {
            EventKind::Delete => state.objects.remove(&object.key),
            _ => state.objects.insert(Arc::clone(&object.key), Arc::clone(&object)),
        };
        if let Some(prev) = &prev {
            state.index.remove(prev);
        }
        if event.kind != EventKind::Delete {
            let state = &mut *state;
            state.index.insert(&object, &mut state.terms);
        }
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
        let field = self.shape.indexed_field();
        let value = |o: &CachedObject| field.and_then(|f| o.field(f)).map(str::to_owned);
        let values = [cache_event.prev.as_deref().and_then(value), value(&cache_event.object)];
        self.dispatch.send(&cache_event, [values[0].as_deref(), values[1].as_deref()]);
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

    /// One object as it is now, by key.
    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.read().objects.get(key).cloned()
    }

    /// The objects now, and the revision of this resource's last change.
    pub fn snapshot(&self) -> (ListSnapshot, Revision) {
        let state = self.read();
        (
            ListSnapshot { objects: state.objects.clone(), index: Some(state.index.clone()) },
            state.revision,
        )
    }

    /// The objects as of `revision`, or `None` when that is older than the window.
    pub fn snapshot_at(&self, revision: Revision) -> Option<ListSnapshot> {
        let (mut objects, events) = {
            let state = self.read();
            if revision < state.base.0 {
                return None;
            }
            if revision >= state.revision {
                let index = Some(state.index.clone());
                return Some(ListSnapshot { objects: state.objects.clone(), index });
            }
            if let Some((at, objects)) = self.rebuilt().as_ref()
                && *at == revision
            {
                return Some(ListSnapshot { objects: objects.clone(), index: None });
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
        Some(ListSnapshot { objects, index: None })
    }

    /// The bytes of history (see the module doc) this resource holds, and its events.
    pub fn history(&self) -> (usize, usize) {
        let state = self.read();
        (state.bytes, state.window.len())
    }

    /// Starts a watcher that sees every change after `after` (`None`: from the current state):
    /// of every object, or (`value`) only of those whose indexed field had or has that value.
    pub fn watch_from(&self, after: Option<Revision>, value: Option<&str>) -> WatchStart {
        let state = self.read();
        let value = value.filter(|_| self.shape.indexed_field().is_some());
        let live = self.dispatch.subscribe(value);
        let index = Some(state.index.clone());
        let snapshot = ListSnapshot { objects: state.objects.clone(), index };
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
            objects.insert(Arc::clone(&event.object.key), Arc::clone(&event.object));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use krust_store::KeyValue;

    fn shape(plural: &str) -> Shape {
        let catalog = krust_api::Catalog::builtin();
        Shape::new(catalog.lookup("", "v1", plural).unwrap())
    }

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
        Some(object.value()["data"]["d"].as_str()?.to_string())
    }

    #[test]
    fn an_object_knows_about_how_many_bytes_it_takes() {
        let kv = update("/registry/core/configmaps/a/x", 5, &"x".repeat(4000)).kv;
        let size = CachedObject::decode(kv, &shape("configmaps")).unwrap().size;
        assert!((4000..5000).contains(&size), "{size}");
    }

    #[test]
    fn the_window_is_bounded_by_bytes_and_older_revisions_fall_back_to_the_store() {
        let limits = HistoryLimits { events: 2048, resource_bytes: 20_000, total_bytes: 1 << 30 };
        let budget = Arc::new(HistoryBudget::new(limits.total_bytes));
        let cache = ResourceCache::with_limits(shape("configmaps"), limits, budget);
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
            matches!(cache.watch_from(Some(5), None), WatchStart::TooOld { oldest: o } if o == oldest)
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
        let caches: Vec<ResourceCache> = ["configmaps", "secrets"]
            .into_iter()
            .map(|p| ResourceCache::with_limits(shape(p), limits, Arc::clone(&budget)))
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
        let cache = ResourceCache::new(shape("pods"));
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
        let cache = ResourceCache::new(shape("pods"));
        cache.reset(Vec::new(), 10);
        cache.apply(&event(EventKind::Create, "/registry/core/pods/a/x", 11));
        cache.apply(&event(EventKind::Update, "/registry/core/pods/a/x", 12));
        let WatchStart::Ready { replay, .. } = cache.watch_from(Some(11), None) else { panic!() };
        assert_eq!(
            replay.iter().map(|e| (e.kind, e.revision)).collect::<Vec<_>>(),
            [(EventKind::Update, 12)]
        );
        assert!(matches!(cache.watch_from(Some(5), None), WatchStart::TooOld { oldest: 10 }));
    }

    fn pod(key: &str, node: &str, revision: Revision, kind: EventKind) -> Event {
        let value = serde_json::json!({"metadata": {"name": "x"}, "spec": {"nodeName": node}});
        let kv = KeyValue {
            key: key.into(),
            value: serde_json::to_vec(&value).unwrap(),
            create_revision: 1,
            mod_revision: revision,
        };
        Event { kind, kv, prev: None, revision }
    }

    #[test]
    fn pods_are_indexed_by_node_and_a_lookup_reads_only_that_node() {
        let cache = ResourceCache::new(shape("pods"));
        cache.reset(Vec::new(), 1);
        cache.apply(&pod("/registry/core/pods/a/x", "n1", 2, EventKind::Create));
        cache.apply(&pod("/registry/core/pods/b/y", "n1", 3, EventKind::Create));
        cache.apply(&pod("/registry/core/pods/a/z", "n2", 4, EventKind::Create));
        // A pod moves to another node (an update), one is deleted.
        cache.apply(&pod("/registry/core/pods/a/z", "n1", 5, EventKind::Update));
        cache.apply(&pod("/registry/core/pods/b/y", "n1", 6, EventKind::Delete));
        let (snapshot, _) = cache.snapshot();
        let keys = |node: &str, prefix: &str, after: Option<&str>| -> Vec<String> {
            let term = IndexTerm::Field("spec.nodeName", node);
            let objects = snapshot.lookup(term, prefix, after).unwrap();
            objects.map(|o| o.key.to_string()).collect()
        };
        let all = "/registry/core/pods/";
        assert_eq!(keys("n1", all, None), ["/registry/core/pods/a/x", "/registry/core/pods/a/z"]);
        assert_eq!(keys("n1", all, Some("/registry/core/pods/a/x")), ["/registry/core/pods/a/z"]);
        assert_eq!(keys("n1", "/registry/core/pods/b/", None), Vec::<String>::new());
        assert!(keys("n2", all, None).is_empty());
        let term = IndexTerm::Field("spec.restartPolicy", "Always");
        assert!(snapshot.lookup(term, all, None).is_none());
        // A past snapshot has no index: callers walk it.
        let term = IndexTerm::Field("spec.nodeName", "n1");
        assert!(cache.snapshot_at(3).unwrap().lookup(term, all, None).is_none());
    }

    #[tokio::test]
    async fn a_watcher_of_one_node_is_handed_only_that_nodes_events() {
        use super::super::dispatch::Live;
        let cache = ResourceCache::new(shape("pods"));
        cache.reset(Vec::new(), 1);
        let WatchStart::Ready { live: mut n1, .. } = cache.watch_from(None, Some("n1")) else {
            panic!()
        };
        let WatchStart::Ready { live: mut every, .. } = cache.watch_from(None, None) else {
            panic!()
        };
        assert_eq!(cache.watchers(), 2);
        cache.apply(&pod("/registry/core/pods/a/x", "n2", 2, EventKind::Create));
        cache.apply(&pod("/registry/core/pods/a/x", "n1", 3, EventKind::Update));
        cache.apply(&pod("/registry/core/pods/a/x", "n3", 4, EventKind::Update));
        let revisions = |live: &mut Subscription| {
            let mut seen = Vec::new();
            while !live.is_empty() {
                match futures::FutureExt::now_or_never(live.recv()) {
                    Some(Live::Event(e)) => seen.push(e.revision),
                    other => panic!("{other:?}"),
                }
            }
            seen
        };
        // Onto n1, then off it (the watcher sees it leave).
        assert_eq!(revisions(&mut n1), [3, 4]);
        assert_eq!(revisions(&mut every), [2, 3, 4]);
        drop(n1);
        assert_eq!(cache.watchers(), 1);
        cache.reset(Vec::new(), 10);
        assert!(matches!(every.recv().await, Live::Closed));
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_dropped_and_told_so() {
        use super::super::dispatch::{Live, WATCHER_QUEUE};
        let cache = ResourceCache::new(shape("pods"));
        cache.reset(Vec::new(), 1);
        let WatchStart::Ready { mut live, .. } = cache.watch_from(None, None) else { panic!() };
        for rv in 0..=WATCHER_QUEUE as Revision {
            cache.apply(&pod("/registry/core/pods/a/x", "n1", 2 + rv, EventKind::Update));
        }
        assert_eq!(cache.watchers(), 0);
        for _ in 0..WATCHER_QUEUE {
            assert!(matches!(live.recv().await, Live::Event(_)));
        }
        assert!(matches!(live.recv().await, Live::Lagged));
    }

    #[test]
    fn objects_are_indexed_by_label() {
        let cache = ResourceCache::new(shape("configmaps"));
        cache.reset(Vec::new(), 1);
        let labelled = |key: &str, labels: serde_json::Value, revision| {
            let value = serde_json::json!({"metadata": {"name": "x", "labels": labels}});
            let kv = KeyValue {
                key: key.into(),
                value: serde_json::to_vec(&value).unwrap(),
                create_revision: 1,
                mod_revision: revision,
            };
            Event { kind: EventKind::Update, kv, prev: None, revision }
        };
        let web = serde_json::json!({"app": "web", "tier": "front"});
        cache.apply(&labelled("/registry/core/configmaps/a/x", web.clone(), 2));
        cache.apply(&labelled("/registry/core/configmaps/b/y", web, 3));
        cache.apply(&labelled(
            "/registry/core/configmaps/a/z",
            serde_json::json!({"app": "db"}),
            4,
        ));
        // y loses its label.
        cache.apply(&labelled("/registry/core/configmaps/b/y", serde_json::json!({}), 5));
        let (snapshot, _) = cache.snapshot();
        let keys = |key, value| -> Vec<String> {
            let term = IndexTerm::Label(key, value);
            let objects = snapshot.lookup(term, "/registry/core/configmaps/", None).unwrap();
            objects.map(|o| o.key.to_string()).collect()
        };
        assert_eq!(keys("app", "web"), ["/registry/core/configmaps/a/x"]);
        assert_eq!(keys("app", "db"), ["/registry/core/configmaps/a/z"]);
        assert_eq!(keys("tier", "front"), ["/registry/core/configmaps/a/x"]);
        assert!(keys("app", "none").is_empty());
    }
}
