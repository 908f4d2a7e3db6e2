//! Watch: a task per watcher that turns the resource cache's events into the events this
//! watcher should see (filtered, with selection changes turned into ADDED and DELETED), with
//! initial events and bookmarks.

use std::sync::Arc;
use std::time::Duration;

use krust_api::ResourceInfo;
use krust_api::StatusError;
use krust_store::{EventKind, Revision};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::list::{check_fields, selected};
use super::options::{ListOptions, RevisionMatch};
use super::{Registry, cache_error, to_served};
use crate::watchcache::{CacheEvent, CachedObject, WatchStart};

/// How often a watcher that asked for bookmarks gets one when nothing else happens.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// How many events wait for a slow client before the watch ends.
const CLIENT_BUFFER: usize = 256;

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
    pub object: Value,
}

struct Watcher {
    info: ResourceInfo,
    opts: ListOptions,
    prefix: String,
    tx: mpsc::Sender<WatchEvent>,
}

impl Watcher {
    /// What this watcher sees of a cache event, if anything.
    fn translate(&self, event: &CacheEvent) -> Option<WatchEvent> {
        if !event.object.key.starts_with(&self.prefix) {
            return None;
        }
        let now = to_served(&self.info, event.object.value.clone());
        let now_selected = selected(&self.info, &self.opts, &now);
        let before_selected = event.prev.as_ref().is_some_and(|p| {
            selected(&self.info, &self.opts, &to_served(&self.info, p.value.clone()))
        });
        let kind = match (event.kind, before_selected, now_selected) {
            (EventKind::Delete, true, _) => WatchKind::Deleted,
            (EventKind::Delete, false, _) => return None,
            (_, true, true) => WatchKind::Modified,
            (_, false, true) => WatchKind::Added,
            (_, true, false) => WatchKind::Deleted,
            (_, false, false) => return None,
        };
        Some(WatchEvent { kind, object: now })
    }

    fn bookmark(&self, revision: Revision, initial_end: bool) -> WatchEvent {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        WatchEvent {
            kind: WatchKind::Bookmark,
            object: json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": metadata}),
        }
    }
}

impl Registry {
    /// Starts a watch; events arrive on the returned channel until the client goes, the
    /// timeout passes or the cache is rebuilt.
    pub async fn watch(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        opts: ListOptions,
    ) -> Result<mpsc::Receiver<WatchEvent>, StatusError> {
        check_fields(info, &opts)?;
        let cache = Arc::clone(self.resource_cache(info)?);
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
        let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
        let watcher = Watcher { info: *info, prefix: info.storage_prefix_in(namespace), opts, tx };
        let reached = self.cache.revision();
        let (snapshot, snapshot_revision, replay, live) = match cache.watch_from(resume_from) {
            WatchStart::TooOld { oldest } => {
                // Older than the cache's window (for example just after a restart): follow the
                // store's own history instead, which reaches back to the last compaction.
                let rv = resume_from.unwrap_or_default();
                match self.store.watch(&watcher.prefix, rv).await {
                    Ok(stream) => {
                        tokio::spawn(follow_store(watcher, stream));
                    }
                    Err(krust_store::StoreError::Compacted { .. }) => {
                        let status =
                            StatusError::gone(format!("too old resource version: {rv} ({oldest})"))
                                .to_status();
                        // The watch itself succeeds and carries the error, as upstream's cacher does.
                        let _ = watcher
                            .tx
                            .try_send(WatchEvent { kind: WatchKind::Error, object: status });
                    }
                    Err(e) => return Err(super::store_error(e)),
                }
                return Ok(rx);
            }
            WatchStart::Ready { snapshot, snapshot_revision, replay, live } => {
                (snapshot, snapshot_revision, replay, live)
            }
        };
        let revision_rx = self.cache.subscribe_revision();
        tokio::spawn(async move {
            if initial {
                for object in snapshot.range(&watcher.prefix, None) {
                    let served = to_served(&watcher.info, object.value.clone());
                    if selected(&watcher.info, &watcher.opts, &served)
                        && watcher
                            .tx
                            .send(WatchEvent { kind: WatchKind::Added, object: served })
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                if watcher.opts.send_initial_events == Some(true) && watcher.opts.bookmarks {
                    let end = watcher.bookmark(reached.max(snapshot_revision), true);
                    if watcher.tx.send(end).await.is_err() {
                        return;
                    }
                }
            }
            for event in &replay {
                if let Some(out) = watcher.translate(event)
                    && watcher.tx.send(out).await.is_err()
                {
                    return;
                }
            }
            follow(watcher, live, revision_rx).await;
        });
        Ok(rx)
    }
}

/// Forwards events read from the store's history (a watch older than the cache's window)
/// until the client goes, the timeout passes or the history is gone.
async fn follow_store(watcher: Watcher, mut stream: krust_store::WatchStream) {
    use futures::StreamExt;
    let timeout = Duration::from_secs(watcher.opts.timeout_seconds.unwrap_or(30 * 60).max(1));
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut last_bookmark = tokio::time::Instant::now();
    loop {
        let item = tokio::select! {
            () = watcher.tx.closed() => return,
            () = &mut deadline => return,
            item = stream.next() => item,
        };
        let event = match item {
            Some(Ok(event)) => event,
            Some(Err(krust_store::StoreError::Compacted { requested, compacted })) => {
                let status = StatusError::gone(format!(
                    "too old resource version: {requested} ({compacted})"
                ))
                .to_status();
                let _ =
                    watcher.tx.send(WatchEvent { kind: WatchKind::Error, object: status }).await;
                return;
            }
            Some(Err(_)) | None => return,
        };
        if event.kind == EventKind::Progress {
            if watcher.opts.bookmarks && last_bookmark.elapsed() >= BOOKMARK_INTERVAL {
                last_bookmark = tokio::time::Instant::now();
                if watcher.tx.send(watcher.bookmark(event.revision, false)).await.is_err() {
                    return;
                }
            }
            continue;
        }
        let Some(object) = CachedObject::decode(event.kv) else { continue };
        let prev = event.prev.and_then(CachedObject::decode).map(Arc::new);
        let cache_event = CacheEvent {
            kind: event.kind,
            object: Arc::new(object),
            prev,
            revision: event.revision,
        };
        if let Some(out) = watcher.translate(&cache_event)
            && watcher.tx.send(out).await.is_err()
        {
            return;
        }
    }
}

/// Forwards live events (and bookmarks) until the client goes or the timeout passes.
async fn follow(
    watcher: Watcher,
    mut live: broadcast::Receiver<Arc<CacheEvent>>,
    revision: tokio::sync::watch::Receiver<Revision>,
) {
    let deadline = tokio::time::sleep(Duration::from_secs(
        watcher.opts.timeout_seconds.unwrap_or(30 * 60).max(1),
    ));
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_bookmark = 0;
    loop {
        tokio::select! {
            biased;
            () = watcher.tx.closed() => return,
            received = live.recv() => match received {
                Ok(event) => {
                    if let Some(out) = watcher.translate(&event)
                        && watcher.tx.send(out).await.is_err()
                    {
                        return;
                    }
                }
                // Fell behind or the cache was rebuilt: end the watch; the client re-watches.
                Err(_) => return,
            },
            () = &mut deadline => return,
            _ = ticker.tick(), if watcher.opts.bookmarks => {
                let reached = *revision.borrow();
                if reached > last_bookmark && live.is_empty() {
                    last_bookmark = reached;
                    if watcher.tx.send(watcher.bookmark(reached, false)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
