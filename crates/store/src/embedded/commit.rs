//! The group-commit writer: one thread owns every write transaction.
//!
//! Callers send [`Request`]s over a channel and wait on a oneshot. The writer takes every
//! request waiting, applies them in order in one redb write transaction (each successful write
//! takes the next revision; a failed check answers its caller alone), makes the batch durable
//! once (an append to the write-ahead log, or a durable redb commit at a checkpoint, see
//! [`super::wal`]) and answers the callers; a logged batch is then committed to redb (without
//! a sync) while they wake, and its events are published to the watch hub. Reads wait until
//! every write acknowledged before them is visible ([`super::visibility`]). While a commit is
//! being synced, new requests queue up and form the next batch, so the cost of one sync is
//! shared by every writer waiting.
//!
//! The hand-offs are kept off the path to the next commit: the callers of a large batch are
//! woken by a replier thread while the writer gathers the next batch, and after a commit of
//! several writes the writer waits briefly (an eighth of that commit, at most 200 us) for its
//! callers to come back, so that a closed loop of writers keeps sharing one commit instead of
//! splitting into a small batch and a large one.
//!
//! Compaction runs on the same thread, in chunks of at most `compact_chunk` log entries per
//! transaction so that writes are never stalled for long.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};
use tokio::sync::oneshot;

use super::read::{Snapshot, stored_revision};
use super::schema::{
    CURRENT, Context, HISTORY, LOG, LogKind, META, META_COMPACTED, META_REVISION, TOMBSTONE,
    decode_current, decode_log, encode_current, encode_log, encode_put,
};
use super::visibility::Visibility;
use super::wal::{self, LogOpener, Record, Wal};
use super::watch::read_log;
use super::watch::{Batch, Hub};
use super::{DbSlot, Health, open_file};
use crate::{Event, EventKind, KeyValue, Result, Revision, StoreError};

/// A write, as a caller asks for it.
#[derive(Debug)]
pub(super) enum Op {
    /// [`Store::create`](crate::Store::create).
    Create { key: String, value: Vec<u8> },
    /// [`Store::update`](crate::Store::update).
    Update { key: String, value: Vec<u8>, expected: Revision },
    /// [`Store::delete`](crate::Store::delete).
    Delete { key: String, expected: Option<Revision> },
}

/// What the writer thread receives.
#[derive(Debug)]
pub(super) enum Request {
    /// Apply a write, answer with the key as written (or as deleted).
    Write { op: Op, reply: oneshot::Sender<Result<KeyValue>> },
    /// Compact up to `revision`, answer once done.
    Compact { revision: Revision, reply: oneshot::Sender<Result<()>> },
    /// Commit what is queued, make the file complete and close it; answer once done.
    Close { reply: oneshot::Sender<()> },
}

impl Request {
    /// Roughly how many bytes the request adds to a transaction.
    fn size(&self) -> usize {
        match self {
            Request::Write {
                op: Op::Create { key, value } | Op::Update { key, value, .. },
                ..
            } => key.len() + value.len(),
            Request::Write { op: Op::Delete { key, .. }, .. } => key.len(),
            Request::Compact { .. } | Request::Close { .. } => 0,
        }
    }
}

/// The most value bytes one commit takes (beyond the first request).
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// A successful write, before commit.
struct Applied {
    kind: EventKind,
    kv: KeyValue,
    prev: Option<KeyValue>,
}

/// A compaction under way, with everyone waiting for it.
struct Compaction {
    target: Revision,
    waiters: Vec<(Revision, oneshot::Sender<Result<()>>)>,
}

/// The state of the writer thread.
pub(super) struct Writer {
    /// The open database; `None` after an I/O failure, until it is reopened.
    pub db: Option<Arc<Database>>,
    /// Where readers find the database; the writer empties and refills it when reopening.
    pub slot: Arc<DbSlot>,
    /// The database file, for reopening.
    pub path: PathBuf,
    /// redb's cache size, for reopening.
    pub cache_size: usize,
    pub requests: Receiver<Request>,
    /// The revisions acknowledged and visible to readers.
    pub visibility: Arc<Visibility>,
    pub hub: Arc<Hub>,
    /// Where the outcome of the last commit is recorded.
    pub health: Arc<Health>,
    pub max_batch: usize,
    pub quick_repair: bool,
    /// How many log entries one transaction compacts at most.
    pub compact_chunk: usize,
    /// Revision of the last committed write.
    pub revision: Revision,
    /// Committed compacted revision.
    pub compacted: Revision,
    /// The write-ahead log that makes batches durable between durable commits.
    pub wal: Arc<Mutex<Wal>>,
    /// Appends the record of a large batch while the writer applies it (started by `run`).
    pub logger: Option<Logger>,
    /// Where the write-ahead log lives, for reopening.
    pub wal_path: PathBuf,
    /// Wraps the log's file when it is (re)opened.
    pub log_opener: LogOpener,
    /// Commits since the last durable one.
    pub since_checkpoint: usize,
    /// A batch reached the log but not redb: the database must be reopened (which replays it).
    pub wal_ahead: bool,
}

/// A durable redb commit (a checkpoint) at least every this many commits...
const CHECKPOINT_COMMITS: usize = 1024;
/// ... or once the write-ahead log holds this many bytes.
const CHECKPOINT_BYTES: u64 = 1024 * 1024;

/// The tables every write changes (`meta` is opened only by the transactions that write it:
/// every table a transaction opens costs it time at commit).
struct Tables<'txn> {
    current: Table<'txn, &'static [u8], &'static [u8]>,
    history: Table<'txn, (&'static [u8], i64), &'static [u8]>,
    log: Table<'txn, i64, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(Tables {
            current: txn.open_table(CURRENT).ctx("open current table")?,
            history: txn.open_table(HISTORY).ctx("open history table")?,
            log: txn.open_table(LOG).ctx("open log table")?,
        })
    }
}

fn open_meta(txn: &WriteTransaction) -> Result<Table<'_, &'static str, i64>> {
    txn.open_table(META).ctx("open meta table")
}

/// A fresh copy of a batch-wide failure for each caller (errors are not `Clone`), with the
/// messages of its sources (the I/O error a caller needs to see).
fn batch_error(error: &StoreError) -> StoreError {
    let message = match error {
        StoreError::Closed => return StoreError::Closed,
        StoreError::OutcomeUnknown { message } => {
            return StoreError::OutcomeUnknown { message: message.clone() };
        }
        StoreError::Backend { message, source: Some(source) } => {
            format!("{message}: {}", error_chain(source.as_ref()))
        }
        StoreError::Backend { message, source: None } => message.clone(),
        other => error_chain(other),
    };
    StoreError::Backend { message: format!("commit failed: {message}"), source: None }
}

/// An error's message followed by those of its sources.
pub(super) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The first wait before reopening the database after an I/O failure.
const REOPEN_FIRST_DELAY: Duration = Duration::from_millis(10);
/// The longest wait between two attempts to reopen the database.
const REOPEN_MAX_DELAY: Duration = Duration::from_secs(2);

/// The wait before the next attempt to reopen: doubling from [`REOPEN_FIRST_DELAY`] up to
/// [`REOPEN_MAX_DELAY`].
fn next_delay(delay: Duration) -> Duration {
    (delay * 2).clamp(REOPEN_FIRST_DELAY, REOPEN_MAX_DELAY)
}

impl Writer {
    /// Serves requests until every sender is gone.
    pub fn run(mut self) {
        let mut compaction: Option<Compaction> = None;
        // Answers large batches on a thread of its own (when it can be started), so that the
        // next batch does not wait for the wake-ups of the last one's callers.
        let replier = Replier::start();
        self.logger = Logger::start(Arc::clone(&self.wal));
        // How many writes the last commit held and how long it took, to gather the next batch.
        let (mut last_writes, mut last_commit) = (0, Duration::ZERO);
        let mut closing: Option<oneshot::Sender<()>> = None;
        loop {
            if self.db.is_none() && !self.recover() {
                break;
            }
            let mut batch = Vec::new();
            let mut disconnected = false;
            if compaction.is_none() {
                match self.requests.recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            let mut bytes = batch.first().map_or(0, Request::size);
            // Callers answered by the last commit come back one by one: wait a little for
            // them (a fraction of a commit) rather than commit most of them one commit later.
            let gather = gather_deadline(last_writes, last_commit);
            while batch.len() < self.max_batch && bytes < MAX_BATCH_BYTES {
                let next = match self.requests.try_recv() {
                    Err(TryRecvError::Empty) if batch.len() < last_writes => {
                        match gather.map(|d| d.saturating_duration_since(Instant::now())) {
                            Some(left) if !left.is_zero() => match self.requests.recv_timeout(left)
                            {
                                Ok(request) => Ok(request),
                                Err(RecvTimeoutError::Timeout) => Err(TryRecvError::Empty),
                                Err(RecvTimeoutError::Disconnected) => {
                                    Err(TryRecvError::Disconnected)
                                }
                            },
                            _ => Err(TryRecvError::Empty),
                        }
                    }
                    other => other,
                };
                match next {
                    Ok(request) => {
                        bytes += request.size();
                        batch.push(request);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        disconnected = true;
                        break;
                    }
                }
            }
            let mut writes = Vec::with_capacity(batch.len());
            for request in batch {
                match request {
                    Request::Write { op, reply } => writes.push((op, reply)),
                    Request::Compact { revision, reply } => {
                        self.queue_compaction(&mut compaction, revision, reply);
                    }
                    Request::Close { reply } => closing = Some(reply),
                }
            }
            last_writes = writes.len();
            let started = Instant::now();
            self.commit(writes, &mut compaction, replier.as_ref());
            last_commit = started.elapsed();
            if disconnected || closing.is_some() {
                break;
            }
        }
        // A clean shutdown leaves the file complete and the log empty.
        if self.since_checkpoint > 0
            && let Err(error) = self.checkpoint()
        {
            tracing::warn!(
                error = error_chain(&error),
                "no final checkpoint; the log is replayed on open"
            );
        }
        // Every caller is answered before the store's drop returns.
        if let Some(replier) = replier {
            replier.finish();
        }
        if let Some(logger) = self.logger.take() {
            logger.finish();
        }
        if let Some(reply) = closing {
            // The file closes once the last reader lets go of it.
            self.slot.set(None);
            self.db = None;
            let _ = reply.send(());
        }
    }

    /// Commits durably what was committed without a sync, then empties the log.
    fn checkpoint(&mut self) -> Result<()> {
        let Some(db) = &self.db else { return Ok(()) };
        let txn = db.begin_write().ctx("begin checkpoint transaction")?;
        open_meta(&txn)?.insert(META_REVISION, self.revision).ctx("write meta table")?;
        txn.commit().ctx("commit checkpoint transaction")?;
        self.since_checkpoint = 0;
        self.wal().reset()
    }

    /// Answers a compaction request at once when it can, queues it otherwise.
    fn queue_compaction(
        &self,
        compaction: &mut Option<Compaction>,
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    ) {
        if revision > self.revision {
            let error = StoreError::FutureRevision { requested: revision, current: self.revision };
            let _ = reply.send(Err(error));
        } else if revision <= self.compacted {
            let _ = reply.send(Ok(()));
        } else {
            let pending =
                compaction.get_or_insert_with(|| Compaction { target: revision, waiters: vec![] });
            pending.target = pending.target.max(revision);
            pending.waiters.push((revision, reply));
        }
    }

    /// Applies one batch in one transaction, makes it durable, answers, commits, publishes.
    fn commit(
        &mut self,
        writes: Vec<(Op, Reply)>,
        compaction: &mut Option<Compaction>,
        replier: Option<&Replier>,
    ) {
        let (ops, replies): (Vec<Op>, Vec<_>) = writes.into_iter().unzip();
        let target = compaction.as_ref().map(|c| c.target);
        let mut replies = Some(replies);
        match self.transact(ops, target, &mut replies, replier) {
            Ok((mut outcomes, revision, compacted)) => {
                self.health.recovered();
                let from = self.revision;
                self.revision = revision;
                self.compacted = compacted;
                self.visibility.publish(revision);
                self.publish(&outcomes, from, revision);
                if let Some(replies) = replies {
                    hand_answers(replies, &mut outcomes, replier);
                }
                if let Some(pending) = compaction.take() {
                    let (done, waiting): (Vec<_>, Vec<_>) =
                        pending.waiters.into_iter().partition(|(rev, _)| *rev <= compacted);
                    for (_, reply) in done {
                        let _ = reply.send(Ok(()));
                    }
                    if compacted < pending.target {
                        *compaction = Some(Compaction { target: pending.target, waiters: waiting });
                    }
                }
            }
            Err(error) => {
                tracing::error!(error = error_chain(&error), "store commit failed");
                self.health.failed(&error);
                // Callers answered before the failure hold a durable write: reopening the file
                // replays it from the log (`wal_ahead`), and reads wait for that.
                for reply in replies.into_iter().flatten() {
                    let _ = reply.send(Err(batch_error(&error)));
                }
                for (_, reply) in compaction.take().into_iter().flat_map(|c| c.waiters) {
                    let _ = reply.send(Err(batch_error(&error)));
                }
                self.close_if_broken();
            }
        }
    }

    /// After a failed commit: when redb refuses new transactions (it does after any I/O
    /// error), closes the database so that [`Writer::recover`] opens it again.
    fn close_if_broken(&mut self) {
        let Some(db) = &self.db else { return };
        if self.wal_ahead {
            tracing::warn!("a logged batch did not reach the store file, reopening it");
        } else if self.wal().is_broken() {
            tracing::warn!("the write-ahead log is unusable, reopening the store");
        } else {
            match db.begin_write() {
                Ok(txn) => return drop(txn),
                Err(error) => {
                    tracing::warn!(%error, "store file unusable after a failed commit, reopening it");
                }
            }
        }
        self.slot.set(None);
        self.db = None;
    }

    /// Opens the database again (after an I/O failure) and proves it can commit, retrying with
    /// back-off; meanwhile every request fails at once. Returns `false` when the store is being
    /// dropped.
    fn recover(&mut self) -> bool {
        let mut delay = Duration::ZERO;
        loop {
            // Wait, answering requests with the reason writes fail.
            let deadline = Instant::now() + delay;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.requests.recv_timeout(left) {
                    Ok(request) => self.refuse(request),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return false,
                }
            }
            delay = next_delay(delay);
            match self.reopen() {
                Ok(()) => {
                    tracing::info!(revision = self.revision, "store file reopened, writes resume");
                    self.health.recovered();
                    return true;
                }
                Err(error) => {
                    tracing::warn!(
                        error = error_chain(&error),
                        ?delay,
                        "cannot reopen store file yet"
                    );
                    self.health.failed(&error);
                }
            }
        }
    }

    /// Answers a request while the database is closed.
    fn refuse(&self, request: Request) {
        let error = || {
            StoreError::Backend {
            message: "store writes are failing, retrying: the store file is being reopened after an i/o failure".into(),
            source: None,
        }
        };
        match request {
            Request::Write { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
            Request::Compact { reply, .. } => {
                let _ = reply.send(Err(error()));
            }
            // Nothing is open to close.
            Request::Close { reply } => {
                let _ = reply.send(());
            }
        }
    }

    /// Opens the file, adopts what it holds and commits a probe.
    ///
    /// A commit that failed may still have reached the disk (the error came after the data was
    /// written): its writes were answered with an error, but the revision moves past them and
    /// watchers receive them from the log, as for any commit.
    fn reopen(&mut self) -> Result<()> {
        // No append through the old handle may run beside the replay: the logger finishes
        // what it holds and stops (it is started again once the log is reopened).
        if let Some(logger) = self.logger.take() {
            logger.finish();
        }
        // Fails while a reader still holds the old database; the next attempt succeeds.
        let db = Arc::new(open_file(&self.path, self.cache_size)?);
        // The log's batches that the file lacks, committed durably: also the probe that writes
        // work again. A file behind what was acknowledged fails before anything is committed,
        // and the log is kept.
        let (mut log, records) = Wal::open(&self.wal_path, &self.log_opener)?;
        // Every acknowledged write, those answered before a failed redb commit included (they
        // are ahead of `self.revision`): the file and the log together must reach them.
        replay(&db, records, self.visibility.acknowledged())?;
        log.reset()?;
        *self.wal() = log;
        self.wal_ahead = false;
        self.since_checkpoint = 0;
        self.logger = Logger::start(Arc::clone(&self.wal));
        let snapshot = Snapshot::begin(&db)?;
        let (revision, compacted) = (snapshot.revision, snapshot.compacted);
        drop(snapshot);
        let mut after = self.revision;
        while after < revision {
            let chunk = read_log(&db, "", after)?;
            let through = chunk.through.min(revision);
            let events: Vec<Event> =
                chunk.events.into_iter().filter(|e| e.revision <= revision).collect();
            if !events.is_empty() && self.hub.has_watchers() {
                self.hub.publish(Batch { from: after, revision: through, events });
            }
            if through <= after {
                break;
            }
            after = through;
        }
        self.revision = revision;
        self.compacted = compacted;
        self.slot.set(Some(Arc::clone(&db)));
        self.db = Some(db);
        self.visibility.publish(revision);
        Ok(())
    }

    /// Sends the batch's events to the watchers, if there are any. Checking for watchers after
    /// the commit is safe: a watcher that subscribes later reads this batch from the log.
    fn publish(&self, outcomes: &[Result<Applied>], from: Revision, revision: Revision) {
        if !self.hub.has_watchers() {
            return;
        }
        let events: Vec<Event> = outcomes
            .iter()
            .filter_map(|outcome| outcome.as_ref().ok())
            .map(|applied| Event {
                kind: applied.kind,
                revision: applied.kv.mod_revision,
                kv: applied.kv.clone(),
                prev: applied.prev.clone(),
            })
            .collect();
        if events.is_empty() {
            return;
        }
        self.hub.publish(Batch { from, revision, events });
    }

    /// Runs the transaction; the outer error aborts the whole batch.
    #[allow(clippy::type_complexity)]
    fn transact(
        &mut self,
        ops: Vec<Op>,
        compact_to: Option<Revision>,
        replies: &mut Option<Vec<Reply>>,
        replier: Option<&Replier>,
    ) -> Result<(Vec<Result<Applied>>, Revision, Revision)> {
        let db = Arc::clone(self.db.as_ref().ok_or_else(|| StoreError::Backend {
            message: "store file is closed after an i/o failure".into(),
            source: None,
        })?);
        // A checkpoint commits durably (redb's `Immediate`: `commit` returns once synced);
        // other batches are logged, then committed without a sync.
        let checkpoint = compact_to.is_some()
            || self.since_checkpoint >= CHECKPOINT_COMMITS
            || self.wal().len() >= CHECKPOINT_BYTES;
        let mut draft = if checkpoint { None } else { Some(wal::encode(self.revision, &ops)?) };
        // A log broken before this batch refuses its append without writing anything.
        let was_broken = self.wal().is_broken();
        // Everything that can fail before the batch is applied happens before the logger gets
        // the record, so that the result of every job handed to it is collected below.
        let mut txn = db.begin_write().ctx("begin write transaction")?;
        txn.set_quick_repair(self.quick_repair);
        // A large batch is logged while it is applied: the log's sync and the work on redb's
        // trees overlap. The transaction is committed only once the record is on disk, so no
        // reader sees a write that is not durable. Its record cannot say the revision after
        // the batch (not known yet): the next record's start checks it on replay.
        let mut job = None;
        let mut sealed = None;
        if ops.len() >= OVERLAP_WRITES && self.logger.is_some() {
            let start = self.wal().len();
            if let (Some(logger), Some(d)) = (self.logger.as_mut(), draft.take()) {
                match logger.begin(d.seal(None)) {
                    Ok(seq) => job = Some((seq, start)),
                    Err(record) => sealed = Some(record),
                }
            }
        }
        let filled = self.fill(&txn, ops, compact_to);
        if let Some((seq, start)) = job {
            match self.logger.as_ref().map_or_else(|| Err(logger_gone()), |l| l.wait(seq)) {
                // Logged but not applied: cut back out of the log before answering.
                Ok(Ok(())) => {
                    if let Err(error) = filled {
                        return Err(self.unlog(start, error));
                    }
                }
                // Not logged (the log was cut back): the transaction is dropped, unapplied.
                Ok(Err(error)) => return Err(self.append_failed(error, was_broken)),
                // Unknown whether it was logged: reopening settles it.
                Err(error) => {
                    self.wal_ahead = true;
                    return Err(StoreError::OutcomeUnknown { message: error_chain(&error) });
                }
            }
        }
        let (mut outcomes, revision, compacted) = filled?;
        if revision == self.revision && compact_to.is_none() {
            // Every check failed: nothing to make durable (a record logged for it replays to
            // the same failures).
            txn.abort().ctx("abort write transaction")?;
        } else if job.is_some() || sealed.is_some() || draft.is_some() {
            let start = match job {
                Some((_, start)) => start,
                None => {
                    let start = self.wal().len();
                    let mut record = match (sealed, draft) {
                        (Some(record), _) => record,
                        (None, Some(draft)) => draft.seal(Some(revision)),
                        (None, None) => unreachable!("checked above"),
                    };
                    // On failure the transaction is dropped (aborted) and the log cut back.
                    let appended = self.wal().append(&mut record);
                    if let Err(error) = appended {
                        return Err(self.append_failed(error, was_broken));
                    }
                    start
                }
            };
            self.wal_ahead = true;
            if let Err(error) = txn.set_durability(Durability::None) {
                return Err(self.unlog(start, StoreError::backend("set commit durability", error)));
            }
            // Durable: the callers are answered now, and wake while redb commits (readers
            // wait for that commit, see `Visibility`). From here a failure cannot take the
            // batch back: the log keeps it and reopening the file replays it.
            if let Some(replies) = replies.take() {
                self.visibility.acknowledge(revision);
                hand_answers(replies, &mut outcomes, replier);
            }
            txn.commit().ctx("commit write transaction")?;
            self.wal_ahead = false;
            self.since_checkpoint += 1;
        } else {
            txn.commit().ctx("commit write transaction")?;
            self.since_checkpoint = 0;
            if let Err(error) = self.wal().reset() {
                // The log is broken now: the next batch fails and reopens the store.
                tracing::warn!(error = error_chain(&error), "cannot empty the write-ahead log");
            }
        }
        Ok((outcomes, revision, compacted))
    }

    /// Applies the batch (and a compaction chunk) in `txn`; returns the outcomes, the revision
    /// and the compacted revision after it.
    #[allow(clippy::type_complexity)]
    fn fill(
        &self,
        txn: &WriteTransaction,
        ops: Vec<Op>,
        compact_to: Option<Revision>,
    ) -> Result<(Vec<Result<Applied>>, Revision, Revision)> {
        let mut revision = self.revision;
        let mut compacted = self.compacted;
        let mut tables = Tables::open(txn)?;
        // The log's last entry, when there is one, is the store's revision: the cached copy
        // must agree.
        let logged = tables.log.last().ctx("read log table")?.map(|(rev, _)| rev.value());
        if logged.is_some_and(|logged| logged != revision) {
            return Err(StoreError::Backend {
                message: "store revision changed behind the writer".into(),
                source: None,
            });
        }
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            outcomes.push(apply(&mut tables, op, &mut revision)?);
        }
        if let Some(target) = compact_to {
            compacted = compact_chunk(&mut tables, compacted, target, self.compact_chunk)?;
            // Compaction may empty the log: the revision goes to `meta` with it.
            let mut meta = open_meta(txn)?;
            meta.insert(META_COMPACTED, compacted).ctx("write meta table")?;
            meta.insert(META_REVISION, revision).ctx("write meta table")?;
        }
        Ok((outcomes, revision, compacted))
    }

    /// A batch whose record is in the log failed before it reached redb: cuts the record back
    /// out (to `start`, the log's length before it) so that no replay applies a batch
    /// answered with an error. Returns the error to answer with: `error` when the cut
    /// worked, [`StoreError::OutcomeUnknown`] otherwise (the log is broken and the store is
    /// reopened, which replays the batch).
    fn unlog(&mut self, start: u64, error: StoreError) -> StoreError {
        let cut = self.wal().cut(start);
        match cut {
            Ok(()) => {
                self.wal_ahead = false;
                error
            }
            Err(cut) => {
                self.wal_ahead = true;
                StoreError::OutcomeUnknown {
                    message: format!(
                        "{}; the logged batch could not be cut back ({}) and is applied when the \
                         store file is reopened",
                        error_chain(&error),
                        error_chain(&cut)
                    ),
                }
            }
        }
    }

    /// After a failed append: the error to answer with. When the log could not be cut back
    /// (it broke during this append), the record may still be on disk and replayed on reopen: the outcome
    /// is unknown.
    fn append_failed(&mut self, error: StoreError, was_broken: bool) -> StoreError {
        if was_broken || !self.wal().is_broken() {
            return error;
        }
        self.wal_ahead = true;
        StoreError::OutcomeUnknown {
            message: format!(
                "{}; the log could not be cut back, so the batch may be applied when the store \
                 file is reopened",
                error_chain(&error)
            ),
        }
    }

    /// The write-ahead log (never contended: only the writer and, while it waits, the logger
    /// use it).
    fn wal(&self) -> std::sync::MutexGuard<'_, Wal> {
        self.wal.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Applies the logged batches that `db` lacks and commits them durably; returns the revision
/// after them.
///
/// The records from before the file's revision (a prefix: those a durable commit already
/// holds) are skipped. From the first record applied on, each must start exactly where the
/// last one ended and end at the revision it names (when it names one): anything else means
/// the log and the file disagree, and fails without committing. So does a resulting revision
/// below `at_least` (the revision already acknowledged), so that the log is kept.
pub(super) fn replay(db: &Database, records: Vec<Record>, at_least: Revision) -> Result<Revision> {
    let mismatch = |message: String| StoreError::Backend { message, source: None };
    let txn = db.begin_write().ctx("begin replay transaction")?;
    let revision = {
        let mut tables = Tables::open(&txn)?;
        let mut meta = open_meta(&txn)?;
        let mut revision = stored_revision(&meta, &tables.log)?;
        let mut replayed = 0;
        for record in records {
            if replayed == 0 && record.from < revision {
                continue;
            }
            if record.from != revision {
                return Err(mismatch(format!(
                    "write-ahead log record starts at revision {} but the store is at {revision}{}",
                    record.from,
                    if replayed == 0 { "" } else { " after replaying the records before it" }
                )));
            }
            for op in record.ops {
                // A failed check fails again, as it did when the batch was first applied.
                let _ = apply(&mut tables, op, &mut revision)?;
            }
            if let Some(to) = record.to
                && to != revision
            {
                return Err(mismatch(format!(
                    "write-ahead log record from revision {} ends at {to} but replaying it \
                     reached {revision}",
                    record.from
                )));
            }
            replayed += 1;
        }
        if revision < at_least {
            return Err(mismatch(format!(
                "store file and write-ahead log reach revision {revision}, behind the \
                 acknowledged {at_least}; the log is kept"
            )));
        }
        if replayed > 0 {
            tracing::info!(replayed, revision, "replayed the write-ahead log");
        }
        meta.insert(META_REVISION, revision).ctx("write meta table")?;
        revision
    };
    txn.commit().ctx("commit replay transaction")?;
    Ok(revision)
}

/// Applies one write. The outer error is a storage failure (abort the batch), the inner one a
/// failed check (answer this caller only).
fn apply(t: &mut Tables<'_>, op: Op, revision: &mut Revision) -> Result<Result<Applied>> {
    let key = match &op {
        Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key.clone(),
    };
    let existing = t
        .current
        .get(key.as_bytes())
        .ctx("read current table")?
        .map(|v| decode_current(key.as_bytes(), v.value()))
        .transpose()?;
    let next = *revision + 1;
    let applied = match (op, existing) {
        (Op::Create { .. }, Some(_)) => return Ok(Err(StoreError::AlreadyExists { key })),
        (Op::Update { .. } | Op::Delete { .. }, None) => {
            return Ok(Err(StoreError::NotFound { key }));
        }
        (Op::Update { expected, .. } | Op::Delete { expected: Some(expected), .. }, Some(old))
            if old.mod_revision != expected =>
        {
            return Ok(Err(StoreError::Conflict { key, expected, actual: old.mod_revision }));
        }
        (Op::Create { value, .. }, None) => {
            let k = key.as_bytes();
            t.current.insert(k, encode_current(next, next, &value).as_slice()).ctx("write")?;
            t.history.insert((k, next), encode_put(next, &value).as_slice()).ctx("write")?;
            t.log.insert(next, encode_log(LogKind::Create, 0, k).as_slice()).ctx("write")?;
            let kv = KeyValue { key, value, create_revision: next, mod_revision: next };
            Applied { kind: EventKind::Create, kv, prev: None }
        }
        (Op::Update { value, .. }, Some(old)) => {
            let k = key.as_bytes();
            let create = old.create_revision;
            let log = encode_log(LogKind::Update, old.mod_revision, k);
            t.current.insert(k, encode_current(create, next, &value).as_slice()).ctx("write")?;
            t.history.insert((k, next), encode_put(create, &value).as_slice()).ctx("write")?;
            t.log.insert(next, log.as_slice()).ctx("write")?;
            let kv = KeyValue { key, value, create_revision: create, mod_revision: next };
            Applied { kind: EventKind::Update, kv, prev: Some(old) }
        }
        (Op::Delete { .. }, Some(old)) => {
            let k = key.as_bytes();
            let log = encode_log(LogKind::Delete, old.mod_revision, k);
            t.current.remove(k).ctx("write")?;
            t.history.insert((k, next), TOMBSTONE.as_slice()).ctx("write")?;
            t.log.insert(next, log.as_slice()).ctx("write")?;
            let kv = KeyValue { mod_revision: next, ..old.clone() };
            Applied { kind: EventKind::Delete, kv, prev: Some(old) }
        }
    };
    *revision = next;
    Ok(Ok(applied))
}

/// Compacts from `from` towards `target`, at most `chunk` log entries; returns the new
/// compacted revision.
///
/// Each log entry at or below the new compacted revision is dropped together with the version
/// it superseded (no read at or after the entry's revision needs it) and, for a delete, its own
/// tombstone (a read that finds no version reads an absent key, as the tombstone would say).
/// What remains of each key's versions at or below the new compacted revision is its latest one.
fn compact_chunk(
    t: &mut Tables<'_>,
    from: Revision,
    target: Revision,
    chunk: usize,
) -> Result<Revision> {
    let mut entries = Vec::new();
    for entry in t.log.range((from + 1)..=target).ctx("scan log table")? {
        let (rev, value) = entry.ctx("scan log table")?;
        let decoded = decode_log(value.value())?;
        entries.push((rev.value(), decoded.kind, decoded.superseded, decoded.key.to_vec()));
        if entries.len() >= chunk {
            break;
        }
    }
    let reached = if entries.len() >= chunk {
        entries.last().map_or(target, |(rev, ..)| *rev)
    } else {
        target
    };
    for (rev, kind, superseded, key) in entries {
        if superseded > 0 {
            t.history.remove((key.as_slice(), superseded)).ctx("compact history")?;
        }
        if kind == LogKind::Delete {
            t.history.remove((key.as_slice(), rev)).ctx("compact history")?;
        }
        t.log.remove(rev).ctx("compact log")?;
    }
    Ok(reached)
}

/// The callers of one commit with their outcomes.
type Answers = Vec<(Reply, Result<KeyValue>)>;

/// Up to this many callers, the writer answers a commit itself: handing them to the replier
/// would cost as much as it saves.
const INLINE_ANSWERS: usize = 2;

/// The longest wait for callers to come back after a commit.
const MAX_GATHER: Duration = Duration::from_micros(200);

/// Until when to wait for more requests, given the last commit: only after a commit of
/// several writes, and for an eighth of its duration at most.
fn gather_deadline(last_writes: usize, last_commit: Duration) -> Option<Instant> {
    (last_writes > 1).then(|| Instant::now() + (last_commit / 8).min(MAX_GATHER))
}

/// Where one caller waits for its write's outcome.
type Reply = oneshot::Sender<Result<KeyValue>>;

/// Answers the callers of a batch with its outcomes, on the replier thread when there are
/// many of them.
fn hand_answers(replies: Vec<Reply>, outcomes: &mut [Result<Applied>], replier: Option<&Replier>) {
    let answers: Answers = replies
        .into_iter()
        .zip(outcomes)
        .map(|(reply, outcome)| {
            let answer = match outcome {
                Ok(applied) => Ok(applied.kv.clone()),
                // A failed write is not published: its error moves to the answer.
                Err(error) => Err(std::mem::replace(error, StoreError::Closed)),
            };
            (reply, answer)
        })
        .collect();
    match replier {
        Some(replier) if answers.len() > INLINE_ANSWERS => replier.answer(answers),
        _ => answer(answers),
    }
}

/// Answers the callers of a commit.
fn answer(answers: Answers) {
    for (reply, outcome) in answers {
        let _ = reply.send(outcome);
    }
}

/// The thread that answers callers of large commits while the writer goes on with the next.
struct Replier {
    answers: mpsc::Sender<Answers>,
    thread: std::thread::JoinHandle<()>,
}

impl Replier {
    /// Starts the thread; `None` (the writer answers itself) when it cannot be started.
    fn start() -> Option<Self> {
        let (answers, receiver) = mpsc::channel::<Answers>();
        let thread =
            std::thread::Builder::new().name("krust-store-replier".into()).spawn(move || {
                while let Ok(batch) = receiver.recv() {
                    answer(batch);
                }
            });
        match thread {
            Ok(thread) => Some(Replier { answers, thread }),
            Err(error) => {
                tracing::warn!(%error, "cannot start the store's replier thread; the writer answers");
                None
            }
        }
    }

    /// Hands the answers of one commit to the thread (or answers them, if it is gone).
    fn answer(&self, answers: Answers) {
        if let Err(mpsc::SendError(answers)) = self.answers.send(answers) {
            answer(answers);
        }
    }

    /// Waits until every answer handed over is sent.
    fn finish(self) {
        drop(self.answers);
        if self.thread.join().is_err() {
            tracing::error!("store replier thread panicked");
        }
    }
}

/// Batches of at least this many writes are logged while they are applied; for fewer, the
/// hand-off to the logger thread costs more than the overlap saves.
const OVERLAP_WRITES: usize = 8;

fn logger_gone() -> StoreError {
    StoreError::Backend { message: "write-ahead log thread stopped".into(), source: None }
}

/// The thread that appends a batch's record to the write-ahead log while the writer applies
/// the batch. Jobs are numbered; each result carries its job's number, and a result for
/// another job is an error, never taken for this job's.
pub(super) struct Logger {
    records: mpsc::Sender<(u64, Vec<u8>)>,
    results: Receiver<(u64, Result<()>)>,
    thread: std::thread::JoinHandle<()>,
    /// The number of the next job.
    next: u64,
}

impl Logger {
    /// Starts the thread; `None` (the writer appends itself) when it cannot be started.
    fn start(wal: Arc<Mutex<Wal>>) -> Option<Self> {
        let (records, jobs) = mpsc::channel::<(u64, Vec<u8>)>();
        let (done, results) = mpsc::channel();
        let thread =
            std::thread::Builder::new().name("krust-store-logger".into()).spawn(move || {
                while let Ok((seq, mut record)) = jobs.recv() {
                    let appended =
                        wal.lock().unwrap_or_else(PoisonError::into_inner).append(&mut record);
                    if done.send((seq, appended)).is_err() {
                        break;
                    }
                }
            });
        match thread {
            Ok(thread) => Some(Logger { records, results, thread, next: 0 }),
            Err(error) => {
                tracing::warn!(%error, "cannot start the store's logger thread; the writer logs");
                None
            }
        }
    }

    /// Starts appending `record`; returns the job's number, or gives the record back if the
    /// thread is gone.
    fn begin(&mut self, record: Vec<u8>) -> std::result::Result<u64, Vec<u8>> {
        let seq = self.next;
        self.records.send((seq, record)).map_err(|mpsc::SendError((_, record))| record)?;
        self.next += 1;
        Ok(seq)
    }

    /// Waits for job `seq`: its outcome, or an error if the thread is gone or answers for
    /// another job (then whether the record was logged is unknown).
    fn wait(&self, seq: u64) -> Result<Result<()>> {
        let (done, appended) = self.results.recv().map_err(|_| logger_gone())?;
        if done != seq {
            return Err(StoreError::Backend {
                message: format!(
                    "write-ahead log thread answered job {done} while job {seq} waited"
                ),
                source: None,
            });
        }
        Ok(appended)
    }

    /// Stops the thread, once it has finished the jobs it holds.
    fn finish(self) {
        drop(self.records);
        if self.thread.join().is_err() {
            tracing::error!("store logger thread panicked");
        }
    }
}

/// Starts the writer thread.
pub(super) fn spawn(writer: Writer) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("krust-store-writer".into())
        .spawn(move || writer.run())
        .ctx("spawn store writer thread")
}

/// The callers' end of the writer's channel.
pub(super) type RequestSender = mpsc::Sender<Request>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_back_off_doubles_up_to_the_maximum() {
        let mut delay = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..12 {
            delay = next_delay(delay);
            seen.push(delay);
        }
        assert_eq!(seen[0], REOPEN_FIRST_DELAY);
        assert_eq!(seen[1], REOPEN_FIRST_DELAY * 2);
        assert_eq!(seen.last(), Some(&REOPEN_MAX_DELAY));
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn gathering_waits_only_after_a_batch_and_briefly() {
        assert!(gather_deadline(0, Duration::from_millis(1)).is_none());
        assert!(gather_deadline(1, Duration::from_millis(1)).is_none());
        let before = Instant::now();
        let deadline = gather_deadline(16, Duration::from_millis(1)).expect("waits");
        assert!(deadline <= Instant::now() + Duration::from_micros(125));
        let deadline = gather_deadline(16, Duration::from_secs(1)).expect("waits");
        assert!(deadline <= Instant::now() + MAX_GATHER && deadline > before);
    }

    /// Finding 1: the logger's results carry their job's number; a result for another job
    /// (one left uncollected) is an error, never taken as this job's.
    #[test]
    fn logger_results_match_their_jobs() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(wal::FILE_NAME);
        let (mut log, _) = Wal::open(&path, &wal::plain_file()).expect("open log");
        log.reset().expect("header");
        let wal = Arc::new(Mutex::new(log));
        let record = || wal::encode(1, &[]).expect("encode").seal(None);
        let mut logger = Logger::start(Arc::clone(&wal)).expect("logger");
        let first = logger.begin(record()).expect("begin");
        let second = logger.begin(record()).expect("begin");
        assert_ne!(first, second);
        let error = logger.wait(second).expect_err("the first job's result");
        assert!(error.to_string().contains("while job 1 waited"), "{error}");
        logger.finish();
        let mut logger = Logger::start(wal).expect("logger");
        let job = logger.begin(record()).expect("begin");
        logger.wait(job).expect("in step").expect("appended");
        logger.finish();
    }

    #[test]
    fn batch_errors_name_their_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let error = batch_error(&StoreError::backend("commit write transaction", io));
        assert!(error.to_string().contains("commit write transaction: No space left on device"));
        assert!(matches!(batch_error(&StoreError::Closed), StoreError::Closed));
    }
}
