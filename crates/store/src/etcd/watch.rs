//! Watch streams: one etcd watch per store watch, its responses turned into store events by a
//! task that feeds the returned stream.
//!
//! # Progress
//!
//! etcd reports progress two ways. With `progress_notify`, it sends each synced watcher an empty
//! response now and then (every 10 minutes by default); those travel with the watcher's events,
//! in order, and become [`EventKind::Progress`] at once. The task also asks for progress every
//! `interval` (a `WatchProgressRequest`), which etcd answers promptly with its current revision
//! under watch id -1. Older etcd releases (3.4.23 among them; see etcd-io/etcd#15220, fixed
//! on the 3.4 and 3.5 branches later) send that answer outside the watcher's queue, so it may
//! overtake events still queued: the task holds each answer back for a quarter of the interval
//! and drops it if an event at or past its revision arrives meanwhile. Should an event still
//! arrive at or below a progress revision already reported, the stream ends with
//! [`StoreError::Compacted`] at the last revision it reported rather than deliver history out of
//! order: resuming there would miss the event, so the consumer has to list afresh.

use std::time::Duration;

use etcd_client::{
    EventType, GetOptions, KvClient, WatchClient, WatchOptions, WatchRequestSender, WatchResponse,
    WatchResponseStream,
};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;

use super::convert::{
    RevisionError, backend, header_revision, key_value_ref, malformed, revision_error,
};
use super::keys::{PROBE_KEY, prefix_range};
use crate::{Event, EventKind, KeyValue, Result, Revision, StoreError, WatchStream};

/// How long to wait for etcd to tell the compacted revision of a compacted watch (it checks
/// unsynced watchers every 100 ms).
const COMPACTION_REPORT_TIMEOUT: Duration = Duration::from_secs(2);

/// Events buffered between the task and a slow consumer.
const CHANNEL_CAPACITY: usize = 256;

/// The etcd watch id of responses that answer a progress request rather than one watcher.
const PROGRESS_RESPONSE_WATCH_ID: i64 = -1;

/// Starts watching `prefix` from `after + 1`.
pub(super) async fn start(
    mut client: WatchClient,
    mut kv: KvClient,
    prefix: &str,
    after: Revision,
    interval: Duration,
) -> Result<WatchStream> {
    let (key, end) = prefix_range(prefix);
    // etcd reads a start revision of 0 as "from now on".
    let start = after.max(0).saturating_add(1);
    let options = WatchOptions::new()
        .with_range(end)
        .with_start_revision(start)
        .with_prev_key()
        .with_progress_notify();
    let (requests, mut responses) = client
        .watch(key.clone(), Some(options))
        .await
        .map_err(|e| backend(format_args!("watch {prefix:?}"), e))?
        .split();
    let created = match responses.next().await {
        Some(Ok(response)) => response,
        Some(Err(e)) => return Err(backend(format_args!("watch {prefix:?}"), e)),
        None => {
            return Err(malformed(format_args!("watch {prefix:?} closed before it started")));
        }
    };
    if created.compact_revision() != 0 {
        return Err(StoreError::Compacted {
            requested: after,
            compacted: created.compact_revision(),
        });
    }
    if !created.created() || created.canceled() {
        return Err(canceled(prefix, &created));
    }

    // etcd creates a watch at a compacted revision and only then cancels it; fail the call
    // itself instead. The store also needs the state at `after` (a replayed update or delete
    // carries the value before it, which etcd reads at the previous revision), so the watch
    // is usable exactly when a read at `after` is (at 1 for `after` 0: nothing precedes it).
    let probe = GetOptions::new().with_count_only().with_revision(after.max(1));
    if let Err(e) = kv.get(key, Some(probe)).await {
        match revision_error(&e) {
            Some(RevisionError::Compacted) => {
                let compacted = match compacted_revision(client, after.max(1)).await {
                    Some(compacted) => compacted,
                    None => after.max(1) + 1,
                };
                return Err(StoreError::Compacted { requested: after, compacted });
            }
            // Nothing to replay yet; the watch waits for the revision.
            Some(RevisionError::Future) => {}
            None => {
                return Err(backend(format_args!("watch {prefix:?}: check start revision"), e));
            }
        }
    }

    let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
    let watcher = Watcher {
        prefix: prefix.to_owned(),
        watch_id: created.watch_id(),
        last: after,
        progress_floor: after,
        pending: None,
        hold: interval / 4,
        tx,
    };
    tokio::spawn(watcher.run(requests, responses, interval));
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// The compaction revision etcd reports to a watch from `requested`, if it is compacted.
pub(super) async fn compacted_revision(
    mut client: WatchClient,
    requested: Revision,
) -> Option<Revision> {
    let options = WatchOptions::new().with_start_revision(requested.max(1));
    // The request side must stay open: etcd ends the stream when the client half-closes it.
    let (_requests, mut responses) = client.watch(PROBE_KEY, Some(options)).await.ok()?.split();
    await_compaction(&mut responses).await
}

/// Reads watch responses until etcd reports the watch compacted.
async fn await_compaction(responses: &mut WatchResponseStream) -> Option<Revision> {
    let report = async {
        while let Some(Ok(response)) = responses.next().await {
            if response.compact_revision() != 0 {
                return Some(response.compact_revision());
            }
            if response.canceled() {
                return None;
            }
        }
        None
    };
    tokio::time::timeout(COMPACTION_REPORT_TIMEOUT, report).await.ok().flatten()
}

fn canceled(prefix: &str, response: &WatchResponse) -> StoreError {
    StoreError::Backend {
        message: format!("etcd canceled watch {prefix:?}: {}", response.cancel_reason()),
        source: None,
    }
}

/// The task behind one watch stream.
struct Watcher {
    prefix: String,
    /// etcd's id of the watch.
    watch_id: i64,
    /// The revision of the last event or progress delivered (or the start).
    last: Revision,
    /// The highest progress revision delivered: no event may come at or below it.
    progress_floor: Revision,
    /// A progress answer held back until the deadline.
    pending: Option<(Revision, Instant)>,
    /// How long progress answers are held back.
    hold: Duration,
    tx: mpsc::Sender<Result<Event>>,
}

impl Watcher {
    async fn run(
        mut self,
        mut requests: WatchRequestSender,
        mut responses: WatchResponseStream,
        interval: Duration,
    ) {
        let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let error = loop {
            let deadline = self.pending.map(|(_, deadline)| deadline);
            tokio::select! {
                biased;
                () = self.tx.closed() => return,
                response = responses.next() => match response {
                    Some(Ok(response)) => match self.handle(response).await {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => break e,
                    },
                    Some(Err(e)) => break backend(format_args!("watch {:?}", self.prefix), e),
                    None => break malformed(format_args!("etcd ended watch {:?}", self.prefix)),
                },
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() =>
                {
                    if let Some((revision, _)) = self.pending.take()
                        && !self.progress(revision).await
                    {
                        return;
                    }
                }
                _ = ticker.tick() => {
                    if let Err(e) = requests.request_progress().await {
                        break backend(format_args!("watch {:?}: request progress", self.prefix), e);
                    }
                }
            }
        };
        // The receiver may be gone; the stream ends either way.
        let _ = self.tx.send(Err(error)).await;
    }

    /// Handles one etcd response; `Ok(false)` when the consumer is gone.
    async fn handle(&mut self, response: WatchResponse) -> Result<bool> {
        if response.compact_revision() != 0 {
            return Err(StoreError::Compacted {
                requested: self.last,
                compacted: response.compact_revision(),
            });
        }
        if response.canceled() {
            return Err(canceled(&self.prefix, &response));
        }
        if response.created() {
            return Ok(true);
        }
        if response.events().is_empty() {
            let revision = header_revision(response.header(), "watch progress")?;
            if response.watch_id() == self.watch_id {
                return Ok(self.progress(revision).await);
            }
            if response.watch_id() == PROGRESS_RESPONSE_WATCH_ID && self.pending.is_none() {
                self.pending = Some((revision, Instant::now() + self.hold));
            }
            return Ok(true);
        }
        let events =
            response.events().iter().map(|event| self.event(event)).collect::<Result<Vec<_>>>()?;
        for event in events {
            if event.revision <= self.progress_floor {
                // The watcher was told it had everything up to the floor, and it had not:
                // resuming from there would skip this event. Only a fresh list repairs that,
                // which is what a compacted resume point makes a watcher do.
                tracing::warn!(
                    prefix = %self.prefix,
                    event = event.revision,
                    progress = self.progress_floor,
                    "etcd sent an event after reporting progress past it (an older etcd, see \
                     etcd-io/etcd#15220); ending the watch as compacted"
                );
                return Err(StoreError::Compacted {
                    requested: self.last,
                    compacted: self.last + 1,
                });
            }
            self.last = self.last.max(event.revision);
            if self.tx.send(Ok(event)).await.is_err() {
                return Ok(false);
            }
        }
        if self.pending.is_some_and(|(revision, _)| revision <= self.last) {
            self.pending = None;
        }
        Ok(true)
    }

    /// Delivers progress at `revision` unless it is stale; `false` when the consumer is gone.
    async fn progress(&mut self, revision: Revision) -> bool {
        if revision <= self.last {
            return true;
        }
        self.last = revision;
        self.progress_floor = revision;
        let kv =
            KeyValue { key: String::new(), value: Vec::new(), create_revision: 0, mod_revision: 0 };
        let event = Event { kind: EventKind::Progress, kv, prev: None, revision };
        self.tx.send(Ok(event)).await.is_ok()
    }

    /// One etcd event as the store's.
    fn event(&self, event: &etcd_client::Event) -> Result<Event> {
        let kv = event.kv().ok_or_else(|| malformed("watch event without key-value"))?;
        let revision = kv.mod_revision();
        // etcd reads the previous value at `revision - 1`; compaction can take it away, which
        // leaves an update or delete unusable (Kubernetes fails the watch too).
        let prev_compacted = || StoreError::Compacted { requested: self.last, compacted: revision };
        let prev = event.prev_kv().map(key_value_ref).transpose()?;
        match event.event_type() {
            EventType::Put => {
                let kv = key_value_ref(kv)?;
                if kv.create_revision == kv.mod_revision {
                    return Ok(Event { kind: EventKind::Create, kv, prev: None, revision });
                }
                let prev = prev.ok_or_else(prev_compacted)?;
                Ok(Event { kind: EventKind::Update, kv, prev: Some(prev), revision })
            }
            EventType::Delete => {
                let prev = prev.ok_or_else(prev_compacted)?;
                let kv = KeyValue { mod_revision: revision, ..prev.clone() };
                Ok(Event { kind: EventKind::Delete, kv, prev: Some(prev), revision })
            }
        }
    }
}
