//! A work queue of distinct items: an item waiting is not added twice, and an item that
//! failed comes back after a back-off that doubles with each failure in a row (5 ms up to a
//! minute), as client-go's rate-limited queue.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// The first retry's delay.
const FIRST_RETRY: Duration = Duration::from_millis(5);
/// The longest retry delay.
const LAST_RETRY: Duration = Duration::from_secs(60);

struct State<T> {
    waiting: VecDeque<T>,
    queued: HashSet<T>,
    failures: HashMap<T, u32>,
}

/// The queue; clones share it.
pub struct Queue<T> {
    state: Arc<Mutex<State<T>>>,
    ready: Arc<Notify>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Self { state: Arc::clone(&self.state), ready: Arc::clone(&self.ready) }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Default for Queue<T> {
    fn default() -> Self {
        let state =
            State { waiting: VecDeque::new(), queued: HashSet::new(), failures: HashMap::new() };
        Self { state: Arc::new(Mutex::new(state)), ready: Arc::new(Notify::new()) }
    }
}

impl<T: Clone + Eq + Hash + Send + 'static> Queue<T> {
    /// Adds `item` unless it is already waiting.
    pub fn add(&self, item: T) {
        let Ok(mut state) = self.state.lock() else { return };
        if state.queued.insert(item.clone()) {
            state.waiting.push_back(item);
            self.ready.notify_one();
        }
    }

    /// The next item, waiting for one.
    pub async fn next(&self) -> T {
        loop {
            let notified = self.ready.notified();
            if let Ok(mut state) = self.state.lock()
                && let Some(item) = state.waiting.pop_front()
            {
                state.queued.remove(&item);
                return item;
            }
            notified.await;
        }
    }

    /// `item` was handled: its back-off starts over.
    pub fn done(&self, item: &T) {
        if let Ok(mut state) = self.state.lock() {
            state.failures.remove(item);
        }
    }

    /// `item` failed: it comes back after its back-off.
    pub fn retry(&self, item: T) {
        let delay = {
            let Ok(mut state) = self.state.lock() else { return };
            let failures = state.failures.entry(item.clone()).or_default();
            *failures = failures.saturating_add(1);
            backoff(*failures)
        };
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(item);
        });
    }

    /// How many items wait.
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.waiting.len()).unwrap_or_default()
    }

    /// Whether no item waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The delay before the retry after `failures` failures in a row.
pub fn backoff(failures: u32) -> Duration {
    FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(20)).min(LAST_RETRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_item_waits_once() {
        let q = Queue::default();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, "a");
        assert_eq!(q.next().await, "b");
        assert!(q.is_empty());
    }

    #[test]
    fn the_back_off_doubles_up_to_a_minute() {
        assert_eq!(backoff(1), Duration::from_millis(5));
        assert_eq!(backoff(2), Duration::from_millis(10));
        assert_eq!(backoff(4), Duration::from_millis(40));
        assert_eq!(backoff(40), Duration::from_secs(60));
    }
}
