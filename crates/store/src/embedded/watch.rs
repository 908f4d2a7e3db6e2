//! The watch hub: the writer publishes each committed batch; every watcher replays the log
//! from its start revision, then follows the hub.
//!
//! The hub keeps the latest committed batches in memory, bounded by count and by bytes; a
//! watcher is a task between the hub and a bounded channel to its consumer. The writer never
//! waits for watchers: when one falls so far behind that the batches after its position have
//! left the hub, it re-reads what it missed from the log table (or ends with
//! [`StoreError::Compacted`] when that history is gone). A watcher subscribes before it reads
//! the log and skips every event at or below the revision it has delivered through, so there
//! is neither a gap nor a duplicate between replay and live events.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use redb::Database;
use tokio::sync::{mpsc, watch as signal};
use tokio_stream::wrappers::ReceiverStream;

use super::DbSlot;
use super::read::Snapshot;
use super::schema::{
    CURRENT, Context, HISTORY, LOG, LogKind, Version, decode_log, decode_version, key_str,
    live_value,
};
use crate::{Event, EventKind, KeyValue, Result, Revision, StoreError, WatchStream};

/// How many log entries one replay step reads at most.
const REPLAY_CHUNK: usize = 1024;
/// How many events wait for a consumer before its watcher stops reading the hub.
const OUT_BUFFER: usize = 1024;
/// What an event costs in the hub besides its keys and values.
const EVENT_OVERHEAD: usize = 128;

/// One committed batch of writes.
#[derive(Debug)]
pub(super) struct Batch {
    /// The revision before the batch's first write.
    pub from: Revision,
    /// The revision of the batch's last write.
    pub revision: Revision,
    /// The batch's successful writes, in revision order.
    pub events: Vec<Event>,
}

impl Batch {
    /// Roughly how many bytes of memory the batch holds.
    fn bytes(&self) -> usize {
        self.events
            .iter()
            .map(|e| {
                let prev = e.prev.as_ref().map_or(0, |p| p.key.len() + p.value.len());
                EVENT_OVERHEAD + e.kv.key.len() + e.kv.value.len() + prev
            })
            .sum()
    }
}

/// The latest committed batches, for watchers that follow the store.
#[derive(Debug)]
pub(super) struct Hub {
    state: Mutex<Buffered>,
    /// Carries the revision of the latest batch; watchers wait on it. Dropped with the hub,
    /// which ends every watcher with [`StoreError::Closed`].
    signal: signal::Sender<Revision>,
    max_batches: usize,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct Buffered {
    batches: VecDeque<Arc<Batch>>,
    bytes: usize,
}

/// The batches after a watcher's position are no longer all in the hub.
struct Lagged;

impl Hub {
    /// A hub keeping at most `max_batches` batches and about `max_bytes` bytes (but always the
    /// latest batch).
    pub fn new(max_batches: usize, max_bytes: usize) -> Self {
        Hub {
            state: Mutex::new(Buffered::default()),
            signal: signal::Sender::new(0),
            max_batches: max_batches.max(1),
            max_bytes,
        }
    }

    /// Whether any watcher follows the hub.
    pub fn has_watchers(&self) -> bool {
        self.signal.receiver_count() > 0
    }

    /// Adds a committed batch, drops the oldest beyond the bounds and wakes the watchers.
    pub fn publish(&self, batch: Batch) {
        let revision = batch.revision;
        {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let batch = Arc::new(batch);
            state.bytes += batch.bytes();
            state.batches.push_back(batch);
            while state.batches.len() > 1
                && (state.batches.len() > self.max_batches || state.bytes > self.max_bytes)
            {
                if let Some(old) = state.batches.pop_front() {
                    state.bytes -= old.bytes();
                }
            }
        }
        self.signal.send_replace(revision);
    }

    /// Starts following: later batches wake the receiver.
    fn subscribe(&self) -> signal::Receiver<Revision> {
        self.signal.subscribe()
    }

    /// The batches holding changes after `through`, oldest first.
    fn after(&self, through: Revision) -> Result<Vec<Arc<Batch>>, Lagged> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let newer = state.batches.partition_point(|b| b.revision <= through);
        match state.batches.get(newer) {
            Some(first) if first.from > through => Err(Lagged),
            _ => Ok(state.batches.range(newer..).cloned().collect()),
        }
    }
}

/// Starts a watch; see [`Store::watch`](crate::Store::watch).
pub(super) async fn watch(
    slot: &Arc<DbSlot>,
    hub: &Arc<Hub>,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream> {
    // Subscribe before reading anything, so that no commit falls between replay and live.
    let live = hub.subscribe();
    let hub = Arc::downgrade(hub);
    let reader = slot.get()?;
    let compacted = tokio::task::spawn_blocking(move || Snapshot::begin(&reader))
        .await
        .ctx("watch task failed")??
        .compacted;
    if after < compacted {
        return Err(StoreError::Compacted { requested: after, compacted });
    }
    let (out, stream) = mpsc::channel(OUT_BUFFER);
    let watcher = Watcher {
        slot: Arc::downgrade(slot),
        hub,
        live,
        prefix: prefix.to_owned(),
        through: after,
        reported: after,
        out,
    };
    tokio::spawn(watcher.run());
    Ok(Box::pin(ReceiverStream::new(stream)))
}

/// Why a watcher stops.
enum Stop {
    /// The consumer dropped the stream.
    Gone,
    /// The stream ends with this error.
    Failed(StoreError),
}

impl From<StoreError> for Stop {
    fn from(error: StoreError) -> Self {
        Stop::Failed(error)
    }
}

struct Watcher {
    /// Weak, so that a watch does not keep a dropped store's file open.
    slot: Weak<DbSlot>,
    /// Weak, so that dropping the store drops the hub, which ends the watch.
    hub: Weak<Hub>,
    /// Wakes the watcher when a batch arrives.
    live: signal::Receiver<Revision>,
    prefix: String,
    /// Every change up to this revision has been delivered.
    through: Revision,
    /// The highest revision the consumer has been told of (event or progress).
    reported: Revision,
    out: mpsc::Sender<Result<Event>>,
}

impl Watcher {
    async fn run(mut self) {
        if let Err(Stop::Failed(error)) = self.serve().await {
            let _ = self.out.send(Err(error)).await;
        }
    }

    async fn serve(&mut self) -> Result<(), Stop> {
        loop {
            self.catch_up().await?;
            self.follow().await?;
        }
    }

    /// Replays the log from `through` to the end.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let db = self.slot.upgrade().ok_or(StoreError::Closed)?.get()?;
            let (prefix, after) = (self.prefix.clone(), self.through);
            let chunk = tokio::task::spawn_blocking(move || read_log(&db, &prefix, after))
                .await
                .ctx("watch task failed")??;
            for event in chunk.events {
                self.send(event).await?;
            }
            self.through = self.through.max(chunk.through);
            if chunk.done {
                return self.progress().await;
            }
        }
    }

    /// Follows the hub until it lags (then the caller catches up from the log).
    async fn follow(&mut self) -> Result<(), Stop> {
        loop {
            // Seen before reading the hub: a batch published after the read wakes the wait.
            self.live.borrow_and_update();
            let hub = self.hub.upgrade().ok_or(StoreError::Closed)?;
            let batches = hub.after(self.through);
            drop(hub);
            match batches {
                Ok(batches) if batches.is_empty() => {}
                Ok(batches) => {
                    for batch in batches {
                        self.deliver(&batch).await?;
                    }
                    self.progress().await?;
                    continue;
                }
                Err(Lagged) => {
                    tracing::debug!(
                        through = self.through,
                        "watcher fell behind the hub, re-reading the log"
                    );
                    return Ok(());
                }
            }
            tokio::select! {
                changed = self.live.changed() => {
                    changed.map_err(|_| Stop::Failed(StoreError::Closed))?;
                }
                () = self.out.closed() => return Err(Stop::Gone),
            }
        }
    }

    async fn deliver(&mut self, batch: &Batch) -> Result<(), Stop> {
        for event in &batch.events {
            if event.revision > self.through && event.kv.key.starts_with(&self.prefix) {
                self.send(event.clone()).await?;
            }
        }
        self.through = self.through.max(batch.revision);
        Ok(())
    }

    async fn send(&mut self, event: Event) -> Result<(), Stop> {
        let revision = event.revision;
        self.out.send(Ok(event)).await.map_err(|_| Stop::Gone)?;
        self.reported = self.reported.max(revision);
        Ok(())
    }

    /// Tells the consumer how far the store has got, if it does not know yet.
    async fn progress(&mut self) -> Result<(), Stop> {
        if self.through > self.reported {
            self.send(progress_event(self.through)).await?;
        }
        Ok(())
    }
}

fn progress_event(revision: Revision) -> Event {
    let kv =
        KeyValue { key: String::new(), value: Vec::new(), create_revision: 0, mod_revision: 0 };
    Event { kind: EventKind::Progress, kv, prev: None, revision }
}

/// One step of a replay.
pub(super) struct LogChunk {
    /// The changes under the prefix.
    pub events: Vec<Event>,
    /// Every change up to this revision has been read.
    pub through: Revision,
    /// Whether the log has been read to its end.
    pub done: bool,
}

/// Reads up to [`REPLAY_CHUNK`] log entries after `after`, keeping those under `prefix`.
pub(super) fn read_log(db: &Database, prefix: &str, after: Revision) -> Result<LogChunk> {
    let snapshot = Snapshot::begin(db)?;
    if after < snapshot.compacted {
        return Err(StoreError::Compacted { requested: after, compacted: snapshot.compacted });
    }
    let log = snapshot.txn.open_table(LOG).ctx("open log table")?;
    let history = snapshot.txn.open_table(HISTORY).ctx("open history table")?;
    let current = snapshot.txn.open_table(CURRENT).ctx("open current table")?;
    let version = |key: &[u8], revision: Revision| -> Result<KeyValue> {
        let found = history.get((key, revision)).ctx("read history table")?;
        let (create, value) = match found.as_ref().map(|v| decode_version(v.value())).transpose()? {
            Some(Version::Put { create, value }) => (create, value.into_owned()),
            Some(Version::Live { create }) => (create, live_value(&current, key, revision)?),
            _ => {
                return Err(super::schema::corrupt(format!("log entry {revision} has no version")));
            }
        };
        Ok(KeyValue {
            key: key_str(key)?.to_owned(),
            value,
            create_revision: create,
            mod_revision: revision,
        })
    };
    let mut events = Vec::new();
    let mut scanned = 0;
    let mut through = after;
    for entry in log.range((after.saturating_add(1))..).ctx("scan log table")? {
        let (revision, value) = entry.ctx("scan log table")?;
        let revision = revision.value();
        let entry = decode_log(value.value())?;
        if entry.key.starts_with(prefix.as_bytes()) {
            let (kind, kv, prev) = match entry.kind {
                LogKind::Create => (EventKind::Create, version(entry.key, revision)?, None),
                LogKind::Update => {
                    let prev = version(entry.key, entry.superseded)?;
                    (EventKind::Update, version(entry.key, revision)?, Some(prev))
                }
                LogKind::Delete => {
                    let prev = version(entry.key, entry.superseded)?;
                    (
                        EventKind::Delete,
                        KeyValue { mod_revision: revision, ..prev.clone() },
                        Some(prev),
                    )
                }
            };
            events.push(Event { kind, kv, prev, revision });
        }
        through = revision;
        scanned += 1;
        if scanned >= REPLAY_CHUNK {
            return Ok(LogChunk { events, through, done: false });
        }
    }
    Ok(LogChunk { events, through: through.max(snapshot.revision), done: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(from: Revision, revision: Revision, value_len: usize) -> Batch {
        let events = ((from + 1)..=revision)
            .map(|r| {
                let kv = KeyValue {
                    key: format!("/k{r}"),
                    value: vec![0; value_len],
                    create_revision: r,
                    mod_revision: r,
                };
                Event { kind: EventKind::Create, kv, prev: None, revision: r }
            })
            .collect();
        Batch { from, revision, events }
    }

    fn revisions(hub: &Hub, through: Revision) -> Option<Vec<Revision>> {
        hub.after(through).ok().map(|bs| bs.iter().map(|b| b.revision).collect())
    }

    #[test]
    fn hub_keeps_at_most_the_count() {
        let hub = Hub::new(2, usize::MAX);
        for r in 1..=4 {
            hub.publish(batch(r - 1, r, 1));
        }
        assert_eq!(revisions(&hub, 2), Some(vec![3, 4]));
        assert_eq!(revisions(&hub, 4), Some(vec![]));
        assert!(revisions(&hub, 1).is_none(), "batch 2 is gone: the watcher lags");
    }

    #[test]
    fn hub_keeps_at_most_the_bytes_but_always_the_latest() {
        let hub = Hub::new(100, 3 * (EVENT_OVERHEAD + 1024 + 4));
        for r in 1..=10 {
            hub.publish(batch(r - 1, r, 1024));
        }
        assert_eq!(revisions(&hub, 7), Some(vec![8, 9, 10]));
        assert!(revisions(&hub, 6).is_none());
        hub.publish(batch(10, 12, 1 << 20));
        assert_eq!(revisions(&hub, 10), Some(vec![12]));
        assert_eq!(revisions(&hub, 11), Some(vec![12]), "a watcher inside a batch is not behind");
        assert!(revisions(&hub, 9).is_none());
    }
}
