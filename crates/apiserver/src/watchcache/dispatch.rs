//! Handing a resource's events to its watchers: each watcher has a queue of its own, and a
//! watcher that selects one value of the indexed field (a node agent's
//! `spec.nodeName=NODE`) is handed only the events whose object had or has that value. A
//! thousand node agents then cost, per pod write, what the one or two of them concerned cost.
//!
//! A watcher whose queue is full when an event comes has fallen behind: it is dropped from
//! the dispatch and its receiver reports [`Live::Lagged`], so that its client re-watches from
//! where it got to, as upstream's cacher closes watchers that do not keep up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc;

use super::resource::CacheEvent;

/// How many events a watcher may have waiting before it counts as fallen behind. Its task
/// takes events at once and queues them encoded within its own limits, so this is reached
/// only by a watcher whose client stopped reading.
pub const WATCHER_QUEUE: usize = 1024;

struct Subscriber {
    events: mpsc::Sender<Arc<CacheEvent>>,
    lagged: Arc<AtomicBool>,
}

#[derive(Default)]
struct Subscribers {
    next_id: u64,
    /// Watchers of every event.
    all: HashMap<u64, Subscriber>,
    /// Watchers of one value of the indexed field.
    by_value: HashMap<Box<str>, HashMap<u64, Subscriber>>,
}

/// The watchers of one resource.
#[derive(Default)]
pub struct Dispatch {
    subscribers: Mutex<Subscribers>,
}

/// What a watcher's receiver yields.
#[derive(Debug)]
pub enum Live {
    /// The next event.
    Event(Arc<CacheEvent>),
    /// The watcher fell behind and was dropped.
    Lagged,
    /// The cache was rebuilt: nothing more will come.
    Closed,
}

/// A watcher's end of the dispatch; dropping it unsubscribes.
pub struct Subscription {
    events: mpsc::Receiver<Arc<CacheEvent>>,
    lagged: Arc<AtomicBool>,
    dispatch: Arc<Dispatch>,
    id: u64,
    value: Option<Box<str>>,
}

impl Subscription {
    /// The next event, or why none will come.
    pub async fn recv(&mut self) -> Live {
        match self.events.recv().await {
            Some(event) => Live::Event(event),
            None if self.lagged.load(Ordering::Acquire) => Live::Lagged,
            None => Live::Closed,
        }
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subscribers = self.dispatch.lock();
        match &self.value {
            None => {
                subscribers.all.remove(&self.id);
            }
            Some(value) => {
                if let Some(watchers) = subscribers.by_value.get_mut(value) {
                    watchers.remove(&self.id);
                    if watchers.is_empty() {
                        subscribers.by_value.remove(value);
                    }
                }
            }
        }
    }
}

impl Dispatch {
    fn lock(&self) -> MutexGuard<'_, Subscribers> {
        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Subscribes a watcher: to every event, or (`value`) to the events whose object has or
    /// had that value of the indexed field.
    pub fn subscribe(self: &Arc<Self>, value: Option<&str>) -> Subscription {
        let (tx, events) = mpsc::channel(WATCHER_QUEUE);
        let lagged = Arc::new(AtomicBool::new(false));
        let subscriber = Subscriber { events: tx, lagged: Arc::clone(&lagged) };
        let mut subscribers = self.lock();
        let id = subscribers.next_id;
        subscribers.next_id += 1;
        let value: Option<Box<str>> = value.map(Into::into);
        match &value {
            None => subscribers.all.insert(id, subscriber),
            Some(v) => subscribers.by_value.entry(v.clone()).or_default().insert(id, subscriber),
        };
        drop(subscribers);
        Subscription { events, lagged, dispatch: Arc::clone(self), id, value }
    }

    /// Hands `event` to its watchers; `values` are the indexed field's values before and
    /// after the change.
    pub fn send(&self, event: &Arc<CacheEvent>, values: [Option<&str>; 2]) {
        let mut subscribers = self.lock();
        hand(&mut subscribers.all, event);
        let [before, after] = values;
        for value in [before, after.filter(|a| Some(*a) != before)].into_iter().flatten() {
            if let Some(watchers) = subscribers.by_value.get_mut(value) {
                hand(watchers, event);
            }
        }
    }

    /// Drops every watcher (their receivers report [`Live::Closed`]).
    pub fn close_all(&self) {
        let mut subscribers = self.lock();
        subscribers.all.clear();
        subscribers.by_value.clear();
    }

    /// How many watchers there are.
    pub fn len(&self) -> usize {
        let subscribers = self.lock();
        subscribers.all.len() + subscribers.by_value.values().map(HashMap::len).sum::<usize>()
    }
}

/// Queues `event` for each of `watchers`, dropping those that fell behind or went away.
fn hand(watchers: &mut HashMap<u64, Subscriber>, event: &Arc<CacheEvent>) {
    watchers.retain(|_, watcher| match watcher.events.try_send(Arc::clone(event)) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            watcher.lagged.store(true, Ordering::Release);
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    });
}
