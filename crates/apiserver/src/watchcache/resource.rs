//! The cache of one resource: its objects, a window of recent events, and the object map after
//! each of them.

use std::collections::VecDeque;
use std::sync::{Arc, RwLock};

use imbl::OrdMap;
use krust_store::{Event, EventKind, KeyValue, Revision};
use serde_json::Value;
use tokio::sync::broadcast;

/// How many recent events (and snapshots) a resource keeps for resuming watches and pages.
const WINDOW: usize = 2048;

/// How many events a watcher may fall behind the broadcast before it is closed. The
/// broadcast keeps each event until every watcher has taken it, so this bounds what a slow
/// watcher pins (watchers take events at once and queue them encoded, within their own limits).
const LIVE_BUFFER: usize = 1024;

/// One object as the cache keeps it: decoded once, shared by every reader.
#[derive(Debug)]
pub struct CachedObject {
    /// The storage key.
    pub key: String,
    /// The object in its storage version, with `metadata.resourceVersion` set.
    pub value: Value,
    /// The revision of its last change.
    pub mod_revision: Revision,
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
        Some(Self { key: kv.key, value, mod_revision: kv.mod_revision })
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
    /// Events after `base`, each with the objects after it.
    window: VecDeque<(Arc<CacheEvent>, Objects)>,
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
    state: RwLock<State>,
}

impl ResourceCache {
    /// An empty cache for `prefix`.
    pub fn new(prefix: String) -> Self {
        let (events, _) = broadcast::channel(LIVE_BUFFER);
        let state = State {
            objects: OrdMap::new(),
            base: (0, OrdMap::new()),
            window: VecDeque::new(),
            revision: 0,
            events,
        };
        Self { prefix, state: RwLock::new(state) }
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

    /// Replaces the whole cache with `objects` read at `revision`, closing every watcher.
    pub fn reset(&self, objects: Vec<CachedObject>, revision: Revision) {
        let objects: Objects = objects.into_iter().map(|o| (o.key.clone(), Arc::new(o))).collect();
        let (events, _) = broadcast::channel(LIVE_BUFFER);
        let mut state = self.write();
        *state = State {
            base: (revision, objects.clone()),
            objects,
            window: VecDeque::new(),
            revision,
            events,
        };
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
        let cache_event = Arc::new(CacheEvent { kind, object, prev, revision: event.revision });
        state.revision = event.revision;
        let objects = state.objects.clone();
        state.window.push_back((Arc::clone(&cache_event), objects));
        if state.window.len() > WINDOW
            && let Some((oldest, objects)) = state.window.pop_front()
        {
            state.base = (oldest.revision, objects);
        }
        // A send fails only when nobody watches, which is fine.
        let _ = state.events.send(cache_event);
    }

    /// The objects now, and the revision of this resource's last change.
    pub fn snapshot(&self) -> (ListSnapshot, Revision) {
        let state = self.read();
        (ListSnapshot { objects: state.objects.clone() }, state.revision)
    }

    /// The objects as of `revision`, or `None` when that is older than the window.
    pub fn snapshot_at(&self, revision: Revision) -> Option<ListSnapshot> {
        let state = self.read();
        if revision < state.base.0 {
            return None;
        }
        let objects = state
            .window
            .iter()
            .rev()
            .find(|(event, _)| event.revision <= revision)
            .map_or_else(|| state.base.1.clone(), |(_, objects)| objects.clone());
        Some(ListSnapshot { objects })
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
