//! Shared caches: one reflector per resource type, watched once with the controller
//! manager's own client and read by every controller that needs that type (upstream's shared
//! informers). A controller subscribes to be woken by the cache's changes, deletions
//! included, and reads the cache's `Store`; it never lists or gets what a cache holds.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, RwLock};

use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt, TryStreamExt};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

use crate::trimmed::{Trimmed, untrimmed};

/// Objects a subscriber may fall behind by before the cache waits for it.
const BUFFER: usize = 1024;

/// The shared cache of one resource type, before it runs.
pub struct Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store: Store<K>,
    writer: reflector::store::Writer<K>,
    subscribers: Vec<mpsc::Sender<Arc<K>>>,
    by_namespace: ByNamespace,
}

/// The names of a cache's objects by namespace, so that a controller reads its namespace's
/// objects without walking the whole cache. Kept as the cache changes; a name whose object is
/// gone from the cache is skipped when read.
#[derive(Clone, Default)]
pub struct ByNamespace {
    names: Arc<RwLock<HashMap<String, HashSet<String>>>>,
}

impl ByNamespace {
    fn touch<K: Resource>(&self, object: &K, present: bool) {
        let Some((namespace, name)) = namespaced_name(object) else { return };
        let Ok(mut names) = self.names.write() else { return };
        if present {
            add(&mut names, namespace, name);
        } else if let Some(set) = names.get_mut(namespace) {
            set.remove(name);
            if set.is_empty() {
                names.remove(namespace);
            }
        }
    }

    /// Makes the index again from what `store` holds (after a list).
    fn rebuild<K>(&self, store: &Store<K>)
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let mut names = HashMap::new();
        for object in store.state() {
            if let Some((namespace, name)) = namespaced_name(object.as_ref()) {
                add(&mut names, namespace, name);
            }
        }
        if let Ok(mut kept) = self.names.write() {
            *kept = names;
        }
    }

    /// The cached objects of `namespace`.
    pub fn objects<K>(&self, namespace: &str, store: &Store<K>) -> Vec<Arc<K>>
    where
        K: Resource<DynamicType = ()> + Clone + 'static,
    {
        let Ok(names) = self.names.read() else { return Vec::new() };
        names
            .get(namespace)
            .into_iter()
            .flatten()
            .filter_map(|name| store.get(&ObjectRef::new(name).within(namespace)))
            .collect()
    }
}

/// A namespaced object's namespace and name.
fn namespaced_name<K: Resource>(object: &K) -> Option<(&str, &str)> {
    Some((object.meta().namespace.as_deref()?, object.meta().name.as_deref()?))
}

fn add(names: &mut HashMap<String, HashSet<String>>, namespace: &str, name: &str) {
    names.entry(namespace.to_string()).or_default().insert(name.to_string());
}

impl<K> Default for Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn default() -> Self {
        let (store, writer) = reflector::store();
        Self { store, writer, subscribers: Vec::new(), by_namespace: ByNamespace::default() }
    }
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// The cache's contents (filled once [`Store::wait_until_ready`] returns).
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// The cache's objects by namespace.
    pub fn by_namespace(&self) -> ByNamespace {
        self.by_namespace.clone()
    }

    /// A stream of the objects that were added, changed or deleted (as last seen), and of
    /// every object again after a re-list, for a controller's trigger. Subscribers are taken
    /// before [`Informer::run`].
    pub fn subscribe(&mut self) -> impl Stream<Item = Arc<K>> + Send + use<K> {
        let (sender, receiver) = mpsc::channel(BUFFER);
        self.subscribers.push(sender);
        receiver
    }

    /// Watches `api` into the cache for ever, re-listing with back-off after errors, and
    /// hands each touched object to every subscriber (the cache is updated first). The cache
    /// holds objects without their `managedFields` ([`Trimmed`]), as upstream's controller
    /// manager trims them from its informers: no controller reads them, and an update that
    /// sends none keeps the stored ones.
    pub fn run(self, api: Api<Trimmed<K>>) -> impl Future<Output = ()> + Send + 'static {
        let kind = K::kind(&()).to_string();
        let subscribers = self.subscribers;
        let (store, index) = (self.store.clone(), self.by_namespace.clone());
        let events = watcher(api, watcher::Config::default()).map_ok(untrimmed);
        events.default_backoff().reflect(self.writer).for_each(move |event| {
            // The index follows the events, not the store: a list's objects reach the
            // store only all at once when the list is done, so the index is made again
            // from the store then.
            let touched = match event {
                Ok(watcher::Event::Apply(object)) => {
                    index.touch(&object, true);
                    Ok(Some(object))
                }
                Ok(watcher::Event::Delete(object)) => {
                    index.touch(&object, false);
                    Ok(Some(object))
                }
                Ok(watcher::Event::InitApply(object)) => Ok(Some(object)),
                Ok(watcher::Event::InitDone) => {
                    index.rebuild(&store);
                    Ok(None)
                }
                Ok(watcher::Event::Init) => Ok(None),
                Err(e) => Err(e),
            };
            let kind = kind.clone();
            let mut senders = subscribers.clone();
            async move {
                match touched {
                    Ok(Some(object)) => {
                        let object = Arc::new(object);
                        for sender in &mut senders {
                            let _ = sender.send(Arc::clone(&object)).await;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(kind, error = %e, "watch failed; re-listing"),
                }
            }
        })
    }
}

/// Waits until `store` holds its first list. Use this rather than
/// [`Store::wait_until_ready`] alone: kube's readiness signal wakes only the task that polled it
/// last, so with several controllers waiting on one shared cache the others would sleep for
/// ever. Each waiter here looks again every 100 ms until it sees the cache ready.
pub async fn ready<K>(store: &Store<K>)
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let again = std::time::Duration::from_millis(100);
    while tokio::time::timeout(again, store.wait_until_ready()).await.is_err() {}
}

/// A private cache of the objects named `name` in every namespace (a field-selected watch,
/// so it holds one object per namespace), with the stream of those that changed or went
/// away, for a controller's trigger. Unlike a shared cache's subscription, deletions wake it.
pub fn named<K>(
    api: Api<K>,
    name: &str,
) -> (Store<K>, impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(api, config).default_backoff().reflect(writer).touched_objects();
    (store, stream)
}
