//! The watch hub: the writer publishes each committed batch; every watcher replays the log
//! from its start revision, then follows the hub.
//!
//! A watcher is a task between a broadcast receiver and a bounded channel to its consumer. The
//! writer never waits for watchers: when one falls so far behind that the broadcast channel
//! drops batches it has not seen, it re-reads what it missed from the log table (or ends with
//! [`StoreError::Compacted`] when that history is gone). A watcher subscribes before it reads
//! the log and skips every live event at or below the revision it has delivered through, so
//! there is neither a gap nor a duplicate between replay and live events.

use std::sync::{Arc, Weak};

use redb::Database;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::DbSlot;
use super::read::Snapshot;
use super::schema::{Context, HISTORY, LOG, LogKind, Version, decode_log, decode_version, key_str};
use crate::{Event, EventKind, KeyValue, Result, Revision, StoreError, WatchStream};

/// How many log entries one replay step reads at most.
const REPLAY_CHUNK: usize = 1024;
/// How many events wait for a consumer before its watcher stops reading the hub.
const OUT_BUFFER: usize = 1024;

/// One committed batch of writes.
#[derive(Debug)]
pub(super) struct Batch {
    /// The revision of the batch's last write.
    pub revision: Revision,
    /// The batch's successful writes, in revision order.
    pub events: Vec<Event>,
}

/// The writer's end of the hub; watchers subscribe to it.
pub(super) type Hub = broadcast::Sender<Arc<Batch>>;

/// Starts a watch; see [`Store::watch`](crate::Store::watch).
pub(super) async fn watch(
    slot: &Arc<DbSlot>,
    hub: &Hub,
    prefix: &str,
    after: Revision,
) -> Result<WatchStream> {
    // Subscribe before reading anything, so that no commit falls between replay and live.
    let live = hub.subscribe();
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
    live: broadcast::Receiver<Arc<Batch>>,
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
            let first = tokio::select! {
                received = self.live.recv() => received,
                () = self.out.closed() => return Err(Stop::Gone),
            };
            match first {
                Ok(batch) => self.deliver(&batch).await?,
                Err(RecvError::Lagged(missed)) => {
                    self.lagged(missed);
                    return Ok(());
                }
                Err(RecvError::Closed) => return Err(Stop::Failed(StoreError::Closed)),
            }
            // Take every batch already waiting, then report progress once.
            loop {
                match self.live.try_recv() {
                    Ok(batch) => self.deliver(&batch).await?,
                    Err(TryRecvError::Lagged(missed)) => {
                        self.lagged(missed);
                        return Ok(());
                    }
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
            self.progress().await?;
        }
    }

    /// Notes that the hub dropped batches this watcher had not seen; it re-reads the log next.
    fn lagged(&self, missed: u64) {
        tracing::debug!(missed, through = self.through, "watcher fell behind, re-reading the log");
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
    let version = |key: &[u8], revision: Revision| -> Result<KeyValue> {
        let found = history.get((key, revision)).ctx("read history table")?;
        match found.as_ref().map(|v| decode_version(v.value())).transpose()? {
            Some(Version::Put { create, value }) => Ok(KeyValue {
                key: key_str(key)?.to_owned(),
                value: value.to_vec(),
                create_revision: create,
                mod_revision: revision,
            }),
            _ => Err(super::schema::corrupt(format!("log entry {revision} has no version"))),
        }
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
