//! The group-commit writer: one thread owns every write transaction.
//!
//! Callers send [`Request`]s over a channel and wait on a oneshot. The writer takes every
//! request waiting and checks them in order (each successful write takes the next revision; a
//! failed check answers its caller alone, see [`super::apply`]), makes the batch durable once
//! (an append to the write-ahead log, or a durable redb commit at a checkpoint, see
//! [`super::wal`]) and answers the callers; a logged batch's inserts into redb's tables run
//! while they wake. While a commit is being synced, new requests queue up and form the next
//! batch, so the cost of one sync is shared by every writer waiting.
//!
//! A logged batch's redb transaction stays open for the batches that follow it closely (an
//! [`Open`] transaction): it is committed, without a sync, once no request comes for a moment,
//! once it is a millisecond old or large, or as soon as a reader waits for it. Reads wait until
//! every write acknowledged before them is visible ([`super::visibility`]), and watchers
//! receive a transaction's events when it commits.
//!
//! The hand-offs are kept off the path to the next commit: with cores to spare
//! ([`super::EmbeddedOptions::helper_threads`]), the callers of a large batch are woken by a
//! replier thread while the writer gathers the next batch, and after a commit of
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

use super::apply::{Applied, Op, Tables, apply, check_batch};
use super::read::{Snapshot, stored_revision};
use super::schema::{Context, LogKind, META, META_COMPACTED, META_REVISION, decode_log};
use super::visibility::Visibility;
use super::wal::{self, LogOpener, Record, Wal};
use super::watch::read_log;
use super::watch::{Batch, Hub};
use super::{DbSlot, Health, open_file};
use crate::{Event, KeyValue, Result, Revision, StoreError};

/// What the writer thread receives.
#[derive(Debug)]
pub(super) enum Request {
    /// Apply a write, answer with the key as written (or as deleted).
    Write { op: Op, reply: oneshot::Sender<Result<KeyValue>> },
    /// Compact up to `revision`, answer once done.
    Compact { revision: Revision, reply: oneshot::Sender<Result<()>> },
    /// Commit what is queued, make the file complete and close it; answer once done.
    Close { reply: oneshot::Sender<()> },
    /// Commit the open transaction now: a reader waits for the writes it holds.
    Commit,
}

impl Request {
    /// Roughly how many bytes the request adds to a transaction.
    fn size(&self) -> usize {
        match self {
            Request::Write { op, .. } => op.size(),
            Request::Compact { .. } | Request::Close { .. } | Request::Commit => 0,
        }
    }
}

/// The most value bytes one commit takes (beyond the first request).
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Batches logged and answered whose redb transaction is still open: the batches that follow
/// join it until it is committed (see [`Open::is_due`]).
pub(super) struct Open {
    txn: WriteTransaction,
    /// The revision before its first write.
    from: Revision,
    /// Its writes, published to watchers once it commits.
    events: Vec<Event>,
    batches: usize,
    bytes: usize,
    began: Instant,
}

impl Open {
    /// A new transaction, committed without a sync unless a checkpoint asks for one.
    fn begin(db: &Database, quick_repair: bool, from: Revision) -> Result<Self> {
        let mut txn = db.begin_write().ctx("begin write transaction")?;
        txn.set_quick_repair(quick_repair);
        txn.set_durability(Durability::None).ctx("set commit durability")?;
        Ok(Open { txn, from, events: Vec::new(), batches: 0, bytes: 0, began: Instant::now() })
    }

    /// Whether it is committed now rather than kept for the next batch.
    fn is_due(&self) -> bool {
        self.batches >= MAX_DEFERRED_BATCHES
            || self.bytes >= MAX_DEFERRED_BYTES
            || self.began.elapsed() >= MAX_DEFERRED_AGE
    }
}

/// An open transaction is committed once no request has come for this long...
const DEFER_WINDOW: Duration = Duration::from_micros(200);
/// ... once it is this old (the most it delays watchers)...
const MAX_DEFERRED_AGE: Duration = Duration::from_millis(1);
/// ... or once it holds this many batches or value bytes.
const MAX_DEFERRED_BATCHES: usize = 64;
const MAX_DEFERRED_BYTES: usize = 4 * 1024 * 1024;

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
    /// A batch reached the log but not redb: the database must be reopened (which replays it)
    /// unless the open transaction holding it commits.
    pub wal_ahead: bool,
    /// The transaction holding the last batches, not committed yet.
    pub open: Option<Open>,
    /// Whether large batches are logged and answered by threads of their own
    /// ([`super::EmbeddedOptions::helper_threads`]).
    pub helper_threads: bool,
}

/// A durable redb commit (a checkpoint) at least every this many commits...
const CHECKPOINT_COMMITS: usize = 1024;
/// ... or once the write-ahead log holds this many bytes.
const CHECKPOINT_BYTES: u64 = 1024 * 1024;

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
        // With cores to spare, large batches are answered on a thread of their own (so that
        // the next batch does not wait for the wake-ups of the last one's callers) and logged
        // on another while the writer applies them. On two cores those hand-offs cost more
        // than they save (bench/README.md): the writer does both itself.
        let (replier, logger) = if self.helper_threads {
            (Replier::start(), Logger::start(Arc::clone(&self.wal)))
        } else {
            (None, None)
        };
        self.logger = logger;
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
                let first = if let Some(open) = &self.open {
                    // The open transaction takes the next request if it comes soon, and while
                    // it is young enough.
                    let left = MAX_DEFERRED_AGE.saturating_sub(open.began.elapsed());
                    match self.requests.recv_timeout(left.min(DEFER_WINDOW)) {
                        Ok(request) => Some(request),
                        Err(RecvTimeoutError::Timeout) => {
                            self.commit_open();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => None,
                    }
                } else {
                    self.requests.recv().ok()
                };
                match first {
                    Some(request) => batch.push(request),
                    None => break,
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
            let mut commit_asked = false;
            for request in batch {
                match request {
                    Request::Write { op, reply } => writes.push((op, reply)),
                    Request::Compact { revision, reply } => {
                        self.queue_compaction(&mut compaction, revision, reply);
                    }
                    Request::Close { reply } => closing = Some(reply),
                    Request::Commit => commit_asked = true,
                }
            }
            last_writes = writes.len();
            if !writes.is_empty() || compaction.is_some() {
                let started = Instant::now();
                self.commit(writes, &mut compaction, replier.as_ref());
                last_commit = started.elapsed();
            }
            if commit_asked {
                self.commit_open();
            }
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
        let Some(db) = self.db.clone() else { return Ok(()) };
        let mut open = match self.open.take() {
            Some(open) => open,
            None => Open::begin(&db, self.quick_repair, self.revision)?,
        };
        open_meta(&open.txn)?.insert(META_REVISION, self.revision).ctx("write meta table")?;
        open.txn.set_durability(Durability::Immediate).ctx("set commit durability")?;
        self.commit_txn(open, self.revision)?;
        self.since_checkpoint = 0;
        self.wal().reset()
    }

    /// Commits the open transaction, if any; a failure is handled as a failed batch's.
    fn commit_open(&mut self) {
        let Some(open) = self.open.take() else {
            // Every acknowledged write is visible: a reader's request is answered.
            self.visibility.commit_not_needed();
            return;
        };
        if let Err(error) = self.commit_txn(open, self.revision) {
            tracing::error!(error = error_chain(&error), "store commit failed");
            self.health.failed(&error);
            self.close_if_broken();
        }
    }

    /// Commits `open`, which holds the writes up to `revision`, makes them visible and sends
    /// them to the watchers.
    fn commit_txn(&mut self, open: Open, revision: Revision) -> Result<()> {
        let Open { txn, from, events, .. } = open;
        let started = std::time::Instant::now();
        txn.commit().ctx("commit write transaction")?;
        let took = started.elapsed();
        if took > std::time::Duration::from_millis(20) {
            tracing::debug!(took_ms = took.as_millis() as u64, revision, "slow store commit");
        }
        self.wal_ahead = false;
        self.visibility.publish(revision);
        // Checking for watchers after the commit is safe: a watcher that subscribes later
        // reads these writes from the log.
        if !events.is_empty() && self.hub.has_watchers() {
            self.hub.publish(Batch { from, revision, events });
        }
        Ok(())
    }

    /// Commits `open` (holding the writes up to `revision`) if it is due, else keeps it open
    /// for the next batch.
    fn commit_if_due(&mut self, open: Open, revision: Revision) -> Result<()> {
        if open.is_due() {
            self.commit_txn(open, revision)
        } else {
            self.open = Some(open);
            Ok(())
        }
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

    /// Checks one batch, makes it durable, answers, writes it (committing or keeping its
    /// transaction open).
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
            Ok(compacted) => {
                self.health.recovered();
                self.compacted = compacted;
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
        // What the open transaction holds was answered: commit it if the file still takes it.
        if let Some(open) = self.open.take()
            && let Err(error) = self.commit_txn(open, self.revision)
        {
            tracing::warn!(error = error_chain(&error), "cannot commit the open transaction");
        }
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
            // Nothing is open to commit: reopening publishes what it replays.
            Request::Commit => {}
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
        if self.helper_threads {
            self.logger = Logger::start(Arc::clone(&self.wal));
        }
        let snapshot = Snapshot::begin(&db)?;
        let (revision, compacted) = (snapshot.revision, snapshot.compacted);
        drop(snapshot);
        // Watchers have every write up to the visible revision; those after it (the open
        // transaction's, a failed batch's) are sent from the log.
        // Below the compacted revision the log is gone: a watcher behind it re-reads and ends
        // with `Compacted`, as it would have anyway.
        let mut after = self.visibility.visible().max(compacted);
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

    /// Checks the batch, logs it (or, at a checkpoint, commits it durably), answers the
    /// callers and writes it; the outer error fails the whole batch. Returns the compacted
    /// revision.
    ///
    /// A small batch is checked, logged, answered, then written into redb's tables while its
    /// callers wake. A large one is handed to the logger first and checked and written while
    /// the log syncs (its record cannot say the revision after the batch, not known yet: the
    /// next record's start checks it on replay), then answered.
    fn transact(
        &mut self,
        ops: Vec<Op>,
        compact_to: Option<Revision>,
        replies: &mut Option<Vec<Reply>>,
        replier: Option<&Replier>,
    ) -> Result<Revision> {
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
        let bytes: usize = ops.iter().map(Op::size).sum();
        let overlap = ops.len() >= OVERLAP_WRITES;
        // A log broken before this batch refuses its append without writing anything.
        let was_broken = self.wal().is_broken();
        // From here an error drops the open transaction: the batches it held are in the log
        // (`wal_ahead`) and reopening the file replays them. Everything that can fail before
        // the batch is checked happens before the logger gets the record, so that the result
        // of every job handed to it is collected below.
        let mut open = match self.open.take() {
            Some(open) => open,
            None => Open::begin(&db, self.quick_repair, self.revision)?,
        };
        let deferred = open.batches > 0;
        let start = self.wal().len();
        let mut job = None;
        let mut sealed = None;
        if overlap
            && let Some(logger) = self.logger.as_mut()
            && let Some(draft) = draft.take()
        {
            match logger.begin(draft.seal(None)) {
                Ok(seq) => job = Some(seq),
                Err(record) => sealed = Some(record),
            }
        }
        let checked = self.check(&open.txn, ops).and_then(|(outcomes, revision)| {
            if job.is_some() {
                self.write(&open.txn, &outcomes, None)?;
            }
            Ok((outcomes, revision))
        });
        if let Some(seq) = job {
            match self.logger.as_ref().map_or_else(|| Err(logger_gone()), |l| l.wait(seq)) {
                // Logged but not written: cut back out of the log before answering.
                Ok(Ok(())) => {
                    if let Err(error) = checked {
                        return Err(self.unlog(start, error, deferred));
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
        let (mut outcomes, revision) = match checked {
            Ok(checked) => checked,
            Err(error) => {
                // Nothing was written: the transaction keeps what it held (committed when the
                // failure is handled, if the file still takes it).
                if deferred {
                    self.open = Some(open);
                }
                return Err(error);
            }
        };
        if revision == self.revision && compact_to.is_none() {
            // Every check failed: nothing to make durable or to write (a record logged for it
            // replays to the same failures).
            if deferred {
                self.commit_if_due(open, self.revision)?;
            }
            if let Some(replies) = replies.take() {
                hand_answers(replies, &mut outcomes, replier);
            }
            return Ok(self.compacted);
        }
        if job.is_some() {
            self.wal_ahead = true;
            self.answer_logged(revision, replies, &mut outcomes, replier);
        } else if let Some(mut record) = sealed.or_else(|| draft.map(|d| d.seal(Some(revision)))) {
            // On failure the transaction is dropped (aborted) and the log cut back.
            let appended = self.wal().append(&mut record);
            if let Err(error) = appended {
                return Err(self.append_failed(error, was_broken));
            }
            self.wal_ahead = true;
            self.answer_logged(revision, replies, &mut outcomes, replier);
            // The writes go into redb's tables while the callers wake. From here a failure
            // cannot take the batch back: the log keeps it and reopening the file replays it.
            self.write(&open.txn, &outcomes, None)?;
        } else {
            // A checkpoint: written and committed durably with what the transaction held, the
            // log emptied, then answered.
            let compacted = self.write(&open.txn, &outcomes, compact_to)?;
            if compact_to.is_some() {
                // Compaction may empty the log: the revision goes to `meta` with it.
                let mut meta = open_meta(&open.txn)?;
                meta.insert(META_COMPACTED, compacted).ctx("write meta table")?;
                meta.insert(META_REVISION, revision).ctx("write meta table")?;
            }
            open.txn.set_durability(Durability::Immediate).ctx("set commit durability")?;
            let applied = outcomes.iter().filter_map(|outcome| outcome.as_ref().ok());
            open.events.extend(applied.cloned().map(Applied::into_event));
            self.commit_txn(open, revision)?;
            self.revision = revision;
            self.since_checkpoint = 0;
            if let Err(error) = self.wal().reset() {
                // The log is broken now: the next batch fails and reopens the store.
                tracing::warn!(error = error_chain(&error), "cannot empty the write-ahead log");
            }
            if let Some(replies) = replies.take() {
                hand_answers(replies, &mut outcomes, replier);
            }
            return Ok(compacted);
        }
        self.revision = revision;
        self.since_checkpoint += 1;
        open.batches += 1;
        open.bytes += bytes;
        open.events.extend(outcomes.into_iter().filter_map(Result::ok).map(Applied::into_event));
        self.commit_if_due(open, revision)?;
        Ok(self.compacted)
    }

    /// Checks `ops` in `txn` from the writer's revision on (reads only): the outcomes and the
    /// revision after them.
    fn check(
        &self,
        txn: &WriteTransaction,
        ops: Vec<Op>,
    ) -> Result<(Vec<Result<Applied>>, Revision)> {
        let tables = Tables::open(txn)?;
        // The log's last entry, when there is one, is the store's revision: the writer's copy
        // must agree.
        let logged = tables.log.last().ctx("read log table")?.map(|(rev, _)| rev.value());
        if logged.is_some_and(|logged| logged != self.revision) {
            return Err(StoreError::Backend {
                message: "store revision changed behind the writer".into(),
                source: None,
            });
        }
        check_batch(&tables, ops, self.revision)
    }

    /// The batch up to `revision` is durable: answers its callers (who wake while redb
    /// commits it; readers wait for that commit, see `Visibility`).
    fn answer_logged(
        &self,
        revision: Revision,
        replies: &mut Option<Vec<Reply>>,
        outcomes: &mut [Result<Applied>],
        replier: Option<&Replier>,
    ) {
        if let Some(replies) = replies.take() {
            self.visibility.acknowledge(revision);
            hand_answers(replies, outcomes, replier);
        }
    }

    /// Writes a checked batch's successful writes (and a compaction chunk towards
    /// `compact_to`) in `txn`; returns the compacted revision after it.
    fn write(
        &self,
        txn: &WriteTransaction,
        outcomes: &[Result<Applied>],
        compact_to: Option<Revision>,
    ) -> Result<Revision> {
        let mut tables = Tables::open(txn)?;
        for applied in outcomes.iter().filter_map(|outcome| outcome.as_ref().ok()) {
            tables.write(applied)?;
        }
        match compact_to {
            Some(target) => compact_chunk(&mut tables, self.compacted, target, self.compact_chunk),
            None => Ok(self.compacted),
        }
    }

    /// A batch whose record is in the log failed before it reached redb: cuts the record back
    /// out (to `start`, the log's length before it) so that no replay applies a batch
    /// answered with an error. Returns the error to answer with: `error` when the cut
    /// worked, [`StoreError::OutcomeUnknown`] otherwise (the log is broken and the store is
    /// reopened, which replays the batch). `deferred`: the transaction dropped with the batch held earlier batches (only in the log
    /// now, so the file must still be reopened).
    fn unlog(&mut self, start: u64, error: StoreError, deferred: bool) -> StoreError {
        let cut = self.wal().cut(start);
        match cut {
            Ok(()) => {
                self.wal_ahead = deferred;
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
