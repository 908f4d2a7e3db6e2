//! Shared caches: one reflector per resource type, watched once with the controller
//! manager's own client and read by every controller that needs that type (upstream's shared
//! informers). A controller subscribes to be woken by the cache's changes, deletions
//! included, and reads the cache's `Store`; it never lists or gets what a cache holds.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::channel::mpsc;
use futures::{SinkExt, Stream, StreamExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

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
}

impl<K> Default for Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn default() -> Self {
        let (store, writer) = reflector::store();
        Self { store, writer, subscribers: Vec::new() }
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

    /// A stream of the objects that were added, changed or deleted (as last seen), and of
    /// every object again after a re-list, for a controller's trigger. Subscribers are taken
    /// before [`Informer::run`].
    pub fn subscribe(&mut self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (sender, receiver) = mpsc::channel(BUFFER);
        self.subscribers.push(sender);
        receiver
    }

    /// Watches `api` into the cache for ever, re-listing with back-off after errors, and
    /// hands each touched object to every subscriber (the cache is updated first).
    pub fn run(self, api: Api<K>) -> impl Future<Output = ()> + Send + 'static {
        let kind = K::kind(&()).to_string();
        let subscribers = self.subscribers;
        watcher(api, watcher::Config::default())
            .default_backoff()
            .reflect(self.writer)
            .touched_objects()
            .for_each(move |touched| {
                let kind = kind.clone();
                let object = touched.map(Arc::new);
                let mut senders = subscribers.clone();
                async move {
                    match object {
                        Ok(object) => {
                            for sender in &mut senders {
                                let _ = sender.send(Arc::clone(&object)).await;
                            }
                        }
                        Err(e) => tracing::warn!(kind, error = %e, "watch failed; re-listing"),
                    }
                }
            })
    }
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
