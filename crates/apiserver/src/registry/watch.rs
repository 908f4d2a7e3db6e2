//! Watch: a task per watcher that turns the resource cache's events into the events this
//! watcher should see (filtered, with selection changes turned into ADDED and DELETED), with
//! initial events and bookmarks.
//!
//! Each watcher encodes its events for the wire as it makes them and queues the bytes in an
//! `outbox` that the response body reads. What a watcher may hold for a client that does not
//! read is bounded by [`WatchLimits`]: the outbox holds at most `buffer_bytes` of encoded
//! events (one event more when a single event is larger) and `buffer_events` events. An event
//! (initial, replayed or live) that finds no room waits `slow_grace` for the client to read;
//! then, as upstream's cacher does with unresponsive watchers, the watch ends and its queued
//! events are dropped (the client watches again from the last resourceVersion it saw). The
//! resource cache hands each watcher its events through a queue of its own (at most
//! [`WATCHER_QUEUE`](crate::watchcache::WATCHER_QUEUE) events); a watcher that falls that far
//! behind ends as well. A watcher selecting one value of the cache's indexed field (pods'
//! `spec.nodeName`) is handed only the events of objects that had or have that value.
//!
//! Events are selected on each object's precomputed labels and fields and carry the object's
//! shared encoded bytes: a watcher copies no object and encodes none again, it frames the
//! bytes.
//!
//! Every watch ends at its timeout: `timeoutSeconds`, or without one a random duration between
//! `min_request_timeout` and twice that, as upstream spreads re-watches. At the timeout the
//! stream ends cleanly without what was still queued.
//!
//! Between the outbox and the socket there are hyper's buffers (HTTP/1: at most 16 frames of at
//! most [`MAX_FRAME`](crate::http::response::MAX_FRAME) bytes, so 256 KiB; HTTP/2: a send
//! buffer of about 400 KiB per stream), rustls's buffer of encrypted bytes (64 KiB) and the
//! kernel's socket buffers (outside the process). Once a watch ends, its outbox is freed at
//! once; an HTTP/1 connection whose client never reads keeps hyper's and rustls's buffers until
//! the connection closes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use krust_api::ResourceInfo;
use krust_api::StatusError;
use krust_store::{EventKind, Revision};
use serde_json::json;

use super::list::{Narrow, Served, Walk, check_fields, narrowed, serve_selected};
use super::options::{ListOptions, RevisionMatch};
use super::{Registry, cache_error};
use crate::watchcache::{CacheEvent, CachedObject, ListSnapshot, Live, Subscription, WatchStart};

pub use outbox::WatchStream;
use outbox::{Outbox, Push};

/// How often a watcher that asked for bookmarks gets one when nothing else happens.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// What one watch may hold for its client, and how long it lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchLimits {
    /// The most bytes of encoded events queued for a client (one larger event always fits).
    pub buffer_bytes: usize,
    /// The most events queued for a client.
    pub buffer_events: usize,
    /// How long an event waits for room in a full queue before the watch ends.
    pub slow_grace: Duration,
    /// A watch without `timeoutSeconds` ends after a random duration between this and twice
    /// this (upstream's `--min-request-timeout`, 1800 s).
    pub min_request_timeout: Duration,
}

impl Default for WatchLimits {
    fn default() -> Self {
        Self {
            buffer_bytes: 256 * 1024,
            buffer_events: 256,
            slow_grace: Duration::from_secs(2),
            min_request_timeout: Duration::from_secs(1800),
        }
    }
}

impl WatchLimits {
    /// How long a watch lasts: `timeout_seconds` when positive, else a random duration in
    /// `[min_request_timeout, 2 * min_request_timeout)`.
    pub fn timeout(&self, timeout_seconds: Option<u64>) -> Duration {
        match timeout_seconds {
            Some(seconds) if seconds > 0 => Duration::from_secs(seconds),
            _ => self.min_request_timeout.mul_f64(1.0 + random_fraction()),
        }
    }
}

/// A random number in `[0, 1)`, from the standard library's randomly seeded hasher.
fn random_fraction() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    // 53 random bits, the precision of an f64.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// An object appeared (or entered the selection).
    Added,
    /// An object changed.
    Modified,
    /// An object went (or left the selection).
    Deleted,
    /// Progress: the watcher has seen everything up to the object's resourceVersion.
    Bookmark,
    /// The watch failed; the object is a Status.
    Error,
}

impl WatchKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchKind::Added => "ADDED",
            WatchKind::Modified => "MODIFIED",
            WatchKind::Deleted => "DELETED",
            WatchKind::Bookmark => "BOOKMARK",
            WatchKind::Error => "ERROR",
        }
    }
}

/// One event for a client.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// Its type.
    pub kind: WatchKind,
    /// The object (served version), a bookmark's stub or an error's Status.
    pub object: Served,
}

/// Turns an event into the bytes sent for it (one line of JSON, a table row...). The queue
/// counts an item's length, so an encoder should not leave spare capacity in it.
pub type Encoder = Box<dyn Fn(WatchEvent) -> Bytes + Send + Sync>;

/// Why a watcher stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client went away.
    ClientGone,
    /// The client did not keep up: the queue stayed full or the watcher fell out of the
    /// cache's broadcast.
    TooSlow,
    /// Nothing more will come (the cache was rebuilt, the store's history ended or failed);
    /// what is queued is still sent.
    Finished,
}

struct Watcher {
    info: ResourceInfo,
    /// How the cache keeps the resource (to decode events read from the store).
    shape: crate::watchcache::Shape,
    /// The index lookup that narrows the initial objects, if any.
    narrow: Option<Narrow>,
    opts: ListOptions,
    prefix: String,
    limits: WatchLimits,
    encode: Encoder,
    outbox: Outbox,
    /// Set when the server closes every watch.
    closing: tokio::sync::watch::Receiver<bool>,
}

impl Watcher {
    /// What this watcher sees of a cache event, if anything. An object that cannot be
    /// converted to the served version (a failing conversion webhook) is an `ERROR` event.
    fn translate(&self, event: &CacheEvent) -> Option<WatchEvent> {
        if !event.object.key.starts_with(&self.prefix) {
            return None;
        }
        self.translate_selected(event).unwrap_or_else(|e| Some(error_event(&e)))
    }

    fn translate_selected(&self, event: &CacheEvent) -> Result<Option<WatchEvent>, StatusError> {
        let now = serve_selected(&self.info, &self.opts, &event.object)?;
        let before_selected = match &event.prev {
            Some(prev) => serve_selected(&self.info, &self.opts, prev)?.is_some(),
            None => false,
        };
        let kind = match (event.kind, before_selected, now.is_some()) {
            (EventKind::Delete, true, _) => WatchKind::Deleted,
            (EventKind::Delete, false, _) => return Ok(None),
            (_, true, true) => WatchKind::Modified,
            (_, false, true) => WatchKind::Added,
            (_, true, false) => WatchKind::Deleted,
            (_, false, false) => return Ok(None),
        };
        // An object that left the selection is sent as it is now.
        let object = match now {
            Some(object) => object,
            None => self.served(&event.object)?,
        };
        Ok(Some(WatchEvent { kind, object }))
    }

    /// The object as this watcher serves it.
    fn served(&self, object: &Arc<CachedObject>) -> Result<Served, StatusError> {
        match &self.info.conversion {
            None => Ok(Served::Cached(Arc::clone(object))),
            Some(_) => Ok(Served::Value(super::to_served(&self.info, object.value())?)),
        }
    }

    fn bookmark(&self, revision: Revision, initial_end: bool) -> WatchEvent {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        WatchEvent {
            kind: WatchKind::Bookmark,
            object: Served::Value(
                json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": metadata}),
            ),
        }
    }

    /// Queues an event (initial, replayed or live); when the queue stays full for
    /// `slow_grace`, the client is too slow. (A watcher stuck on a client would also hold its
    /// place in the cache's broadcast, and with it every later event of the resource.) An
    /// `ERROR` event is the watch's last (an object that could not be converted ends it, as
    /// upstream's watch ends when an event fails to encode).
    async fn send(&self, event: WatchEvent) -> Result<(), End> {
        let last = event.kind == WatchKind::Error;
        match self.outbox.push((self.encode)(event), Some(self.limits.slow_grace)).await {
            Push::Queued if last => Err(End::Finished),
            Push::Queued => Ok(()),
            Push::Full => Err(End::TooSlow),
            Push::Gone => Err(End::ClientGone),
        }
    }

    /// Runs `work` until it ends, the watch's timeout passes or the server closes its
    /// watches, then ends the stream: cleanly after what is queued when nothing more will come
    /// (or the server closes), at once otherwise.
    async fn run(&self, timeout: Duration, work: impl Future<Output = End>) {
        let closing = async {
            let _ = self.closing.clone().wait_for(|closing| *closing).await;
            End::Finished
        };
        let work = async {
            tokio::select! {
                end = work => end,
                end = closing => end,
            }
        };
        let end = tokio::time::timeout(timeout, work).await;
        match end {
            Ok(End::Finished) => self.outbox.close(),
            Ok(End::ClientGone) => {}
            Ok(End::TooSlow) => {
                tracing::info!(
                    resource = self.info.plural,
                    prefix = %self.prefix,
                    "closing a watch whose client does not keep up"
                );
                self.outbox.abort();
            }
            // At its timeout a watch ends without what is still queued, as upstream's does.
            Err(_elapsed) => self.outbox.abort(),
        }
    }
}

impl Registry {
    /// Starts a watch: the returned stream yields each event encoded by `encode` until the
    /// client goes, the timeout passes, the client falls too far behind or the cache is
    /// rebuilt.
    pub async fn watch(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        opts: ListOptions,
        encode: Encoder,
    ) -> Result<WatchStream, StatusError> {
        check_fields(info, &opts)?;
        let cache = self.resource_cache(info)?;
        // Where the watch starts, and whether it begins with the current objects.
        let (resume_from, initial) = match (opts.revision, opts.send_initial_events) {
            (RevisionMatch::Latest, initial) => {
                self.cache.wait_consistent().await.map_err(cache_error)?;
                (None, initial.unwrap_or(true))
            }
            (RevisionMatch::Any, initial) => (None, initial.unwrap_or(true)),
            (RevisionMatch::NotOlderThan(rv) | RevisionMatch::Exact(rv), Some(true)) => {
                self.cache.wait_for(rv).await.map_err(cache_error)?;
                (None, true)
            }
            (RevisionMatch::NotOlderThan(rv) | RevisionMatch::Exact(rv), _) => {
                self.cache.wait_for(rv).await.map_err(cache_error)?;
                (Some(rv), false)
            }
        };
        let limits = self.watch_limits;
        let timeout = limits.timeout(opts.timeout_seconds);
        let (outbox, stream) = outbox::channel(limits.buffer_bytes, limits.buffer_events);
        let watcher = Watcher {
            info: info.clone(),
            shape: cache.shape().clone(),
            narrow: narrowed(info, &cache, &opts),
            prefix: info.storage_prefix_in(namespace),
            opts,
            limits,
            encode,
            outbox,
            closing: self.closing.subscribe(),
        };
        let reached = self.cache.revision();
        // A watch of one value of the indexed field (a node's pods) is handed only its events.
        let value = cache
            .shape()
            .indexed_field()
            .filter(|_| info.conversion.is_none())
            .and_then(|field| watcher.opts.fields.requires_exact(field));
        match cache.watch_from(resume_from, value) {
            WatchStart::TooOld { oldest } => {
                // Older than the cache's window (for example just after a restart): follow the
                // store's own history instead, which reaches back to the last compaction.
                let rv = resume_from.unwrap_or_default();
                match self.store.watch(&watcher.prefix, rv).await {
                    Ok(history) => {
                        tokio::spawn(async move {
                            let work = follow_store(&watcher, history);
                            watcher.run(timeout, work).await;
                        });
                    }
                    Err(krust_store::StoreError::Compacted { .. }) => {
                        let status =
                            StatusError::gone(format!("too old resource version: {rv} ({oldest})"))
                                .to_status();
                        // The watch itself succeeds and carries the error, as upstream's cacher does.
                        let error = (watcher.encode)(WatchEvent {
                            kind: WatchKind::Error,
                            object: Served::Value(status),
                        });
                        let _ = watcher.outbox.try_push(error);
                        watcher.outbox.close();
                    }
                    Err(e) => return Err(super::store_error(e)),
                }
            }
            WatchStart::Ready { snapshot, snapshot_revision, replay, live } => {
                let revision_rx = self.cache.subscribe_revision();
                let initial = initial.then_some((snapshot, reached.max(snapshot_revision)));
                tokio::spawn(async move {
                    let work = follow_cache(&watcher, initial, replay, live, revision_rx);
                    watcher.run(timeout, work).await;
                });
            }
        }
        Ok(stream)
    }
}

/// Sends the objects of `initial` as ADDED (then, when asked for, the bookmark that ends the
/// initial events, at the given revision) and the `replay`, then follows the `live` events.
async fn follow_cache(
    watcher: &Watcher,
    initial: Option<(ListSnapshot, Revision)>,
    replay: Vec<Arc<CacheEvent>>,
    live: Subscription,
    revision: tokio::sync::watch::Receiver<Revision>,
) -> End {
    let start = async {
        if let Some((snapshot, at)) = initial {
            let events: Vec<WatchEvent> = initial_objects(watcher, &snapshot).collect();
            drop(snapshot);
            for event in events {
                watcher.send(event).await?;
            }
            if watcher.opts.send_initial_events == Some(true) && watcher.opts.bookmarks {
                watcher.send(watcher.bookmark(at, true)).await?;
            }
        }
        for event in replay {
            if let Some(out) = watcher.translate(&event) {
                watcher.send(out).await?;
            }
        }
        Ok(())
    };
    match start.await {
        Ok(()) => follow(watcher, live, revision).await,
        Err(end) => end,
    }
}

/// The objects of a snapshot this watcher selects, through an index when one narrows them;
/// an object that cannot be converted to the served version is an `ERROR` event.
fn initial_objects<'a>(
    watcher: &'a Watcher,
    snapshot: &'a ListSnapshot,
) -> impl Iterator<Item = WatchEvent> + 'a {
    Walk::objects(snapshot, watcher.narrow.as_ref(), &watcher.prefix, None).filter_map(|o| {
        match serve_selected(&watcher.info, &watcher.opts, o) {
            Ok(object) => object.map(|object| WatchEvent { kind: WatchKind::Added, object }),
            Err(e) => Some(error_event(&e)),
        }
    })
}

/// An `ERROR` event carrying `error` as a Status.
fn error_event(error: &StatusError) -> WatchEvent {
    WatchEvent { kind: WatchKind::Error, object: Served::Value(error.to_status()) }
}

/// Forwards events read from the store's history (a watch older than the cache's window)
/// until the client goes, falls behind or the history is gone.
async fn follow_store(watcher: &Watcher, mut history: krust_store::WatchStream) -> End {
    use futures::StreamExt;
    let mut last_bookmark = tokio::time::Instant::now();
    loop {
        let item = tokio::select! {
            () = watcher.outbox.gone() => return End::ClientGone,
            item = history.next() => item,
        };
        let event = match item {
            Some(Ok(event)) => event,
            Some(Err(krust_store::StoreError::Compacted { requested, compacted })) => {
                let status = StatusError::gone(format!(
                    "too old resource version: {requested} ({compacted})"
                ))
                .to_status();
                return match watcher
                    .send(WatchEvent { kind: WatchKind::Error, object: Served::Value(status) })
                    .await
                {
                    Ok(()) => End::Finished,
                    Err(end) => end,
                };
            }
            Some(Err(_)) | None => return End::Finished,
        };
        if event.kind == EventKind::Progress {
            if watcher.opts.bookmarks && last_bookmark.elapsed() >= BOOKMARK_INTERVAL {
                last_bookmark = tokio::time::Instant::now();
                // A bookmark is only a hint: skip it when the queue is full.
                if let Push::Gone = watcher
                    .outbox
                    .try_push((watcher.encode)(watcher.bookmark(event.revision, false)))
                {
                    return End::ClientGone;
                }
            }
            continue;
        }
        let shape = &watcher.shape;
        let Some(object) = CachedObject::decode(event.kv, shape) else { continue };
        let prev = event.prev.and_then(|kv| CachedObject::decode(kv, shape)).map(Arc::new);
        let cache_event = CacheEvent {
            kind: event.kind,
            object: Arc::new(object),
            prev,
            revision: event.revision,
        };
        if let Some(out) = watcher.translate(&cache_event)
            && let Err(end) = watcher.send(out).await
        {
            return end;
        }
    }
}

/// Forwards live events (and bookmarks) until the client goes or falls behind, or the cache
/// is rebuilt.
async fn follow(
    watcher: &Watcher,
    mut live: Subscription,
    revision: tokio::sync::watch::Receiver<Revision>,
) -> End {
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_bookmark = 0;
    loop {
        tokio::select! {
            biased;
            () = watcher.outbox.gone() => return End::ClientGone,
            received = live.recv() => match received {
                Live::Event(event) => {
                    if let Some(out) = watcher.translate(&event)
                        && let Err(end) = watcher.send(out).await
                    {
                        return end;
                    }
                }
                // Fell behind: the client re-watches from where it got to.
                Live::Lagged => return End::TooSlow,
                // The cache was rebuilt.
                Live::Closed => return End::Finished,
            },
            _ = ticker.tick(), if watcher.opts.bookmarks => {
                let reached = *revision.borrow();
                if reached > last_bookmark && live.is_empty() {
                    last_bookmark = reached;
                    let bookmark = (watcher.encode)(watcher.bookmark(reached, false));
                    // A bookmark is only a hint: skip it when the queue is full.
                    if let Push::Gone = watcher.outbox.try_push(bookmark) {
                        return End::ClientGone;
                    }
                }
            }
        }
    }
}

/// The queue between a watcher's task and its response body, bounded in bytes and events.
mod outbox {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::Notify;

    /// What became of a pushed event.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Push {
        /// It waits for the client.
        Queued,
        /// There was no room for it.
        Full,
        /// The client went away, or the stream was ended.
        Gone,
    }

    struct State {
        items: VecDeque<Bytes>,
        bytes: usize,
        /// No more items will come; the reader ends after what is queued.
        closed: bool,
        /// The reader went away.
        reader_gone: bool,
        reader: Option<Waker>,
    }

    struct Shared {
        state: Mutex<State>,
        /// Woken when the reader takes an item or goes away.
        changed: Notify,
        max_bytes: usize,
        max_items: usize,
    }

    impl Shared {
        fn lock(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// The writing end.
    pub(super) struct Outbox {
        shared: Arc<Shared>,
    }

    /// The events of one watch, encoded for the wire, in order; ends when the watch does.
    pub struct WatchStream {
        shared: Arc<Shared>,
    }

    /// A queue holding at most `max_bytes` (one item more when the queue is empty) and
    /// `max_items`.
    pub(super) fn channel(max_bytes: usize, max_items: usize) -> (Outbox, WatchStream) {
        let state = State {
            items: VecDeque::new(),
            bytes: 0,
            closed: false,
            reader_gone: false,
            reader: None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            changed: Notify::new(),
            max_bytes,
            max_items: max_items.max(1),
        });
        (Outbox { shared: Arc::clone(&shared) }, WatchStream { shared })
    }

    impl Outbox {
        /// Queues `item` when there is room.
        pub(super) fn try_push(&self, item: Bytes) -> Push {
            let mut state = self.shared.lock();
            if state.reader_gone || state.closed {
                return Push::Gone;
            }
            let fits = state.items.is_empty()
                || (state.items.len() < self.shared.max_items
                    && state.bytes + item.len() <= self.shared.max_bytes);
            if !fits {
                return Push::Full;
            }
            state.bytes += item.len();
            state.items.push_back(item);
            if let Some(reader) = state.reader.take() {
                reader.wake();
            }
            Push::Queued
        }

        /// Queues `item`, waiting for room at most `patience` (`None`: as long as it takes).
        pub(super) async fn push(&self, item: Bytes, patience: Option<Duration>) -> Push {
            let wait = async {
                loop {
                    let changed = self.shared.changed.notified();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    match self.try_push(item.clone()) {
                        Push::Full => changed.await,
                        done => return done,
                    }
                }
            };
            match patience {
                None => wait.await,
                Some(patience) => tokio::time::timeout(patience, wait).await.unwrap_or(Push::Full),
            }
        }

        /// Resolves when the reader has gone away.
        pub(super) async fn gone(&self) {
            loop {
                let changed = self.shared.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.shared.lock().reader_gone {
                    return;
                }
                changed.await;
            }
        }

        /// Ends the stream after what is queued.
        pub(super) fn close(&self) {
            let mut state = self.shared.lock();
            state.closed = true;
            if let Some(reader) = state.reader.take() {
                reader.wake();
            }
        }

        /// Ends the stream now, dropping what is queued.
        pub(super) fn abort(&self) {
            let mut state = self.shared.lock();
            state.items = VecDeque::new();
            state.bytes = 0;
            state.closed = true;
            if let Some(reader) = state.reader.take() {
                reader.wake();
            }
        }

        /// Bytes queued now.
        #[cfg(test)]
        pub(super) fn queued_bytes(&self) -> usize {
            self.shared.lock().bytes
        }
    }

    impl Drop for Outbox {
        fn drop(&mut self) {
            self.close();
        }
    }

    impl WatchStream {
        /// Whether the watch has ended (what is queued may still be read).
        #[cfg(test)]
        pub(super) fn is_ended(&self) -> bool {
            self.shared.lock().closed
        }
    }

    impl futures::Stream for WatchStream {
        type Item = Bytes;

        fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
            let mut state = self.shared.lock();
            if let Some(item) = state.items.pop_front() {
                state.bytes -= item.len();
                drop(state);
                self.shared.changed.notify_waiters();
                return Poll::Ready(Some(item));
            }
            if state.closed {
                return Poll::Ready(None);
            }
            state.reader = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    impl Drop for WatchStream {
        fn drop(&mut self) {
            let mut state = self.shared.lock();
            state.reader_gone = true;
            state.items = VecDeque::new();
            state.bytes = 0;
            drop(state);
            self.shared.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use bytes::Bytes;
    use futures::StreamExt;
    use krust_api::Catalog;
    use krust_store::Store;
    use krust_store::embedded::EmbeddedStore;
    use serde_json::json;

    use super::outbox::{self, Push};
    use super::*;
    use crate::registry::options::Query;
    use crate::registry::{ServiceRanges, WriteOptions};
    use crate::watchcache::HistoryLimits;
    use serde_json::Value;

    #[test]
    fn a_watch_without_timeout_lasts_between_once_and_twice_the_minimum() {
        let limits = WatchLimits::default();
        assert_eq!(limits.timeout(Some(7)), Duration::from_secs(7));
        for asked in [None, Some(0)] {
            let timeout = limits.timeout(asked);
            assert!(timeout >= Duration::from_secs(1800) && timeout < Duration::from_secs(3600));
        }
    }

    #[tokio::test]
    async fn the_outbox_holds_at_most_its_bytes_and_items_but_one_large_item_fits() {
        let (outbox, mut stream) = outbox::channel(10, 3);
        assert_eq!(outbox.try_push(Bytes::from_static(b"a very large event")), Push::Queued);
        assert_eq!(outbox.try_push(Bytes::from_static(b"x")), Push::Full);
        assert_eq!(stream.next().await.unwrap().len(), 18);
        for _ in 0..3 {
            assert_eq!(outbox.try_push(Bytes::from_static(b"abc")), Push::Queued);
        }
        assert_eq!(outbox.try_push(Bytes::from_static(b"x")), Push::Full);
        assert_eq!(outbox.queued_bytes(), 9);
        outbox.close();
        assert_eq!(stream.by_ref().count().await, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_push_waits_for_the_reader_then_gives_up_after_its_patience() {
        let (outbox, mut stream) = outbox::channel(4, 8);
        assert_eq!(outbox.try_push(Bytes::from_static(b"abcd")), Push::Queued);
        let patience = Some(Duration::from_secs(1));
        let (pushed, read) =
            tokio::join!(outbox.push(Bytes::from_static(b"efgh"), patience), async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                stream.next().await
            });
        assert_eq!((pushed, read.map(|b| b.len())), (Push::Queued, Some(4)));
        let started = tokio::time::Instant::now();
        assert_eq!(outbox.push(Bytes::from_static(b"ijkl"), patience).await, Push::Full);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test]
    async fn an_aborted_outbox_ends_the_stream_without_what_was_queued() {
        let (outbox, mut stream) = outbox::channel(100, 100);
        assert_eq!(outbox.try_push(Bytes::from_static(b"queued")), Push::Queued);
        outbox.abort();
        assert_eq!(outbox.queued_bytes(), 0);
        assert!(stream.next().await.is_none());
        assert_eq!(outbox.try_push(Bytes::from_static(b"late")), Push::Gone);
    }

    #[tokio::test]
    async fn a_writer_learns_that_the_reader_went_away() {
        let (outbox, stream) = outbox::channel(4, 8);
        assert_eq!(outbox.try_push(Bytes::from_static(b"abcd")), Push::Queued);
        let waiting = outbox.push(Bytes::from_static(b"efgh"), None);
        drop(stream);
        assert_eq!(waiting.await, Push::Gone);
        outbox.gone().await;
    }

    /// A registry over a fresh embedded store, with the `default` namespace.
    async fn registry(dir: &tempfile::TempDir, limits: WatchLimits) -> Registry {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let registry = Registry::new(store, Arc::new(Catalog::builtin()), ServiceRanges::default())
            .await
            .unwrap()
            .with_watch_limits(limits);
        let namespaces = registry.catalog().lookup("", "v1", "namespaces").unwrap();
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        registry.create(&namespaces, None, ns, WriteOptions::default()).await.unwrap();
        registry
    }

    fn lines() -> Encoder {
        Box::new(|event| {
            let object = event.object.into_value();
            let mut line =
                serde_json::to_vec(&json!({"type": event.kind.as_str(), "object": object}))
                    .unwrap();
            line.push(b'\n');
            Bytes::from(line)
        })
    }

    fn config_map(name: &str, bytes: usize) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name},
            "data": {"blob": "x".repeat(bytes)},
        })
    }

    #[tokio::test]
    async fn a_watch_ends_by_itself_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(&dir, WatchLimits::default()).await;
        let info = registry.catalog().lookup("", "v1", "configmaps").unwrap();
        let opts = ListOptions::from_query(&Query::parse(Some("timeoutSeconds=1")), true).unwrap();
        let started = std::time::Instant::now();
        let stream = registry.watch(&info, Some("default"), opts, lines()).await.unwrap();
        // Nothing happens in the namespace; the stream must still end.
        let events = tokio::time::timeout(Duration::from_secs(30), stream.count()).await;
        assert_eq!(events.ok(), Some(0));
        assert!(started.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_watch_whose_client_does_not_read_is_closed() {
        let dir = tempfile::tempdir().unwrap();
        let limits = WatchLimits {
            buffer_bytes: 8 * 1024,
            buffer_events: 100,
            slow_grace: Duration::from_millis(50),
            ..WatchLimits::default()
        };
        let registry = registry(&dir, limits).await;
        let info = registry.catalog().lookup("", "v1", "configmaps").unwrap();
        let opts = ListOptions::from_query(&Query::parse(None), true).unwrap();
        let mut stream = registry.watch(&info, Some("default"), opts, lines()).await.unwrap();
        for i in 0..20 {
            let cm = config_map(&format!("cm-{i}"), 2000);
            registry.create(&info, Some("default"), cm, WriteOptions::default()).await.unwrap();
        }
        // The server gives up on the client, which reads only then: what was queued is gone
        // and the stream ends.
        let ended = async {
            while !stream.is_ended() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), ended).await.unwrap();
        let events: Vec<Bytes> =
            tokio::time::timeout(Duration::from_secs(30), stream.by_ref().collect()).await.unwrap();
        assert!(events.len() < 20, "a stuck watch got all {} events", events.len());
    }

    #[tokio::test]
    async fn watches_and_pages_older_than_the_cache_window_are_served_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let history = HistoryLimits { events: 4, ..HistoryLimits::default() };
        let catalog = Arc::new(Catalog::builtin());
        let registry =
            Registry::new_with(store, catalog, ServiceRanges::default(), history).await.unwrap();
        let namespaces = registry.catalog().lookup("", "v1", "namespaces").unwrap();
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        registry.create(&namespaces, None, ns, WriteOptions::default()).await.unwrap();
        let info = registry.catalog().lookup("", "v1", "configmaps").unwrap();
        let mut revisions = Vec::new();
        for i in 0..10 {
            let cm = config_map(&format!("cm-{i}"), 10);
            let created =
                registry.create(&info, Some("default"), cm, WriteOptions::default()).await.unwrap();
            let rv = created.object["metadata"]["resourceVersion"].as_str().unwrap().to_string();
            revisions.push(rv);
        }
        // Both revisions are older than the cache's window.
        let cache = registry.resource_cache(&info).unwrap();
        let oldest: Revision = revisions[1].parse().unwrap();
        assert!(matches!(cache.watch_from(Some(oldest - 1), None), WatchStart::TooOld { .. }));
        assert!(cache.snapshot_at(oldest).is_none());
        let query = format!("resourceVersion={}&timeoutSeconds=5", revisions[0]);
        let opts = ListOptions::from_query(&Query::parse(Some(&query)), true).unwrap();
        let stream = registry.watch(&info, Some("default"), opts, lines()).await.unwrap();
        let events: Vec<Bytes> =
            tokio::time::timeout(Duration::from_secs(30), stream.take(9).collect()).await.unwrap();
        let names: Vec<String> = events
            .iter()
            .map(|line| {
                let event: Value = serde_json::from_slice(line).unwrap();
                event["object"]["metadata"]["name"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(names, (1..10).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
        let query = format!("resourceVersion={}&resourceVersionMatch=Exact", revisions[1]);
        let opts = ListOptions::from_query(&Query::parse(Some(&query)), false).unwrap();
        let listed = registry.list(&info, Some("default"), &opts).await.unwrap();
        assert_eq!(listed.items.count(), 2);
    }

    #[tokio::test]
    async fn a_watch_whose_client_reads_gets_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let limits = WatchLimits { buffer_bytes: 8 * 1024, ..WatchLimits::default() };
        let registry = registry(&dir, limits).await;
        let info = registry.catalog().lookup("", "v1", "configmaps").unwrap();
        let opts = ListOptions::from_query(&Query::parse(None), true).unwrap();
        let stream = registry.watch(&info, Some("default"), opts, lines()).await.unwrap();
        let reader = tokio::spawn(stream.take(20).count());
        for i in 0..20 {
            let cm = config_map(&format!("cm-{i}"), 2000);
            registry.create(&info, Some("default"), cm, WriteOptions::default()).await.unwrap();
        }
        let read = tokio::time::timeout(Duration::from_secs(30), reader).await.unwrap().unwrap();
        assert_eq!(read, 20);
    }
}
