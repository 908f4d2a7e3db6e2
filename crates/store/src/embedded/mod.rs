//! The embedded backend: a single redb file with MVCC history and group commit.
//!
//! [`EmbeddedStore::open`] opens (or creates) `dir/store.redb` and its write-ahead log
//! `dir/store.wal` ([`wal`]), replaying the log into the file. One writer thread applies every
//! write ([`commit`]): all requests waiting are applied in one transaction and made durable by
//! one fsync before any of their callers is answered: an append to the log (the transaction is
//! then committed to redb without a sync), or, every few hundred commits, a durable redb commit
//! that empties the log. Reads run on redb read transactions
//! ([`read`]), at the current revision or, through the history table, at any revision since the
//! compacted one. Watches replay the log table and then follow an in-memory hub fed by the
//! writer after each commit ([`watch`]). The layout of the file is described in [`schema`].
//!
//! After an I/O failure (a full disk, say) redb refuses every later operation on the open
//! database, so the writer closes it and opens the file again, with back-off, until a probe
//! commit succeeds; writes meanwhile fail at once with [`StoreError::Backend`]. No write is
//! answered with success unless it is durable (in the write-ahead log or a durable commit);
//! one answered before a failed redb commit is replayed from the log when the file is
//! reopened, and reads wait for it, so every acknowledged write survives and is seen.

mod apply;
mod commit;
mod read;
mod schema;
mod visibility;
mod wal;
mod watch;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::Database;
use tokio::sync::oneshot;

use self::apply::Op;
use self::commit::{Request, RequestSender, Writer};
use self::read::read_meta;
use self::schema::{
    CURRENT, Context, FORMAT_VERSION, FORMAT_VERSION_1, FORMAT_VERSION_2, HISTORY, LOG, META,
    META_COMPACTED, META_FORMAT,
};
use self::watch::Hub;
use crate::{KeyValue, Page, Result, Revision, Store, StoreError, WatchStream};

/// The name of the database file inside the data directory.
pub const FILE_NAME: &str = "store.redb";

/// The default size of redb's page cache: small, for a small host.
pub const DEFAULT_CACHE_SIZE: usize = 32 * 1024 * 1024;

/// Tuning knobs of an [`EmbeddedStore`]; [`Default`] suits most uses.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EmbeddedOptions {
    /// How many committed batches the watch hub keeps for watchers that are behind; a watcher
    /// further behind re-reads the log from disk.
    pub watch_buffer: usize,
    /// About how many bytes of keys and values the watch hub keeps, at most (beyond the latest
    /// batch); like `watch_buffer`, a bound on the store's memory, not on what watchers see.
    pub watch_buffer_bytes: usize,
    /// The most writes one commit takes.
    pub max_batch: usize,
    /// Size of redb's page cache, in bytes. Reads of recent keys hit it; the operating system's
    /// page cache serves the rest, so a small cache suits a small host.
    pub cache_size: usize,
    /// Whether commits also save redb's allocator state (and sync twice), which makes opening
    /// the file after a crash almost instant instead of a walk over the whole file.
    pub quick_repair: bool,
    /// How many log entries one commit compacts at most; a larger compaction takes several
    /// commits, so that writes queued behind it wait for one chunk only.
    pub compact_chunk: usize,
    /// Whether the writer hands large batches to threads of its own, one that appends the
    /// batch's log record while the writer applies it and one that wakes its callers while the
    /// writer gathers the next. That pays with cores to spare; on two cores the hand-offs cost
    /// more than they save (bench/README.md), so the default is on only above two cores.
    pub helper_threads: bool,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            watch_buffer: 256,
            watch_buffer_bytes: 8 * 1024 * 1024,
            max_batch: 4096,
            cache_size: DEFAULT_CACHE_SIZE,
            quick_repair: false,
            compact_chunk: 10_000,
            helper_threads: std::thread::available_parallelism().is_ok_and(|cores| cores.get() > 2),
        }
    }
}

/// The embedded [`Store`]: redb on local disk, with group commit.
///
/// Dropping the store stops its writer thread (after the batch in progress) and closes the
/// file; watches still open end with [`StoreError::Closed`].
pub struct EmbeddedStore {
    slot: Arc<DbSlot>,
    /// `None` only while dropping.
    requests: Option<RequestSender>,
    writer: Option<JoinHandle<()>>,
    /// The revisions acknowledged and visible, which reads wait to agree.
    visibility: Arc<visibility::Visibility>,
    hub: Arc<Hub>,
    health: Arc<Health>,
}

/// The open database, shared by readers and the writer. Empty while the writer reopens the
/// file after an I/O failure.
#[derive(Debug)]
pub(super) struct DbSlot(RwLock<Option<Arc<Database>>>);

impl DbSlot {
    fn new(db: Arc<Database>) -> Self {
        DbSlot(RwLock::new(Some(db)))
    }

    /// The open database, or an error while it is being reopened.
    pub(super) fn get(&self) -> Result<Arc<Database>> {
        self.0.read().unwrap_or_else(PoisonError::into_inner).clone().ok_or_else(|| {
            StoreError::Backend {
                message: "store file is being reopened after an i/o failure".into(),
                source: None,
            }
        })
    }

    /// Replaces the database (`None`: none until the next `set`).
    pub(super) fn set(&self, db: Option<Arc<Database>>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = db;
    }
}

/// What the writer last learned about the write path, for [`Store::check`].
#[derive(Debug, Default)]
pub(super) struct Health {
    /// Why the last commit failed, until one succeeds.
    failure: Mutex<Option<String>>,
}

impl Health {
    /// Records that a commit failed.
    pub(super) fn failed(&self, error: &StoreError) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
    }

    /// Records that a commit succeeded.
    pub(super) fn recovered(&self) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Fails while the last commit failed.
    fn check(&self) -> Result<()> {
        match &*self.failure.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(why) => Err(StoreError::Backend {
                message: format!("store writes are failing: {why}"),
                source: None,
            }),
            None => Ok(()),
        }
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("revision", &self.visibility.visible())
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens the store in `dir` (created if missing) with default options.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, EmbeddedOptions::default())
    }

    /// Opens the store in `dir` (created if missing).
    pub fn open_with(dir: &Path, options: EmbeddedOptions) -> Result<Self> {
        Self::open_logged(dir, options, wal::plain_file())
    }

    /// Opens the store in `dir`, with the log's file wrapped by `log_opener` (tests inject
    /// failures through it).
    fn open_logged(
        dir: &Path,
        options: EmbeddedOptions,
        log_opener: wal::LogOpener,
    ) -> Result<Self> {
        if !dir.is_dir() {
            std::fs::create_dir_all(dir).ctx("create store directory")?;
            // The new directory's entry must be durable, or a crash could lose the directory
            // with the files (and the acknowledged writes) in it.
            wal::sync_dir(dir)?;
        }
        let path = dir.join(FILE_NAME);
        let db = open_file(&path, options.cache_size)?;
        init(&db)?;
        let wal_path = dir.join(wal::FILE_NAME);
        let (mut log, records) = wal::Wal::open(&wal_path, &log_opener)?;
        commit::replay(&db, records, 0)?;
        log.reset()?;
        let (revision, compacted) = {
            let snapshot = read::Snapshot::begin(&db)?;
            (snapshot.revision, snapshot.compacted)
        };
        let db = Arc::new(db);
        let slot = Arc::new(DbSlot::new(Arc::clone(&db)));
        let visibility = Arc::new(visibility::Visibility::new(revision));
        let hub = Arc::new(Hub::new(options.watch_buffer, options.watch_buffer_bytes));
        let (requests, receiver) = std::sync::mpsc::channel();
        let health = Arc::new(Health::default());
        let writer = commit::spawn(Writer {
            db: Some(db),
            slot: Arc::clone(&slot),
            path,
            cache_size: options.cache_size,
            requests: receiver,
            visibility: Arc::clone(&visibility),
            hub: Arc::clone(&hub),
            health: Arc::clone(&health),
            max_batch: options.max_batch.max(1),
            quick_repair: options.quick_repair,
            compact_chunk: options.compact_chunk.max(1),
            revision,
            compacted,
            wal: Arc::new(Mutex::new(log)),
            logger: None,
            wal_path,
            log_opener,
            since_checkpoint: 0,
            wal_ahead: false,
            open: None,
            helper_threads: options.helper_threads,
        })?;
        Ok(EmbeddedStore {
            slot,
            requests: Some(requests),
            writer: Some(writer),
            visibility,
            hub,
            health,
        })
    }

    async fn write(&self, op: Op) -> Result<KeyValue> {
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        requests.send(Request::Write { op, reply }).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Waits until every write acknowledged so far is visible, asking the writer to commit
    /// the open transaction that holds them.
    async fn caught_up(&self) -> Result<Revision> {
        if self.visibility.ask_commit()
            && let Some(requests) = &self.requests
        {
            // A writer that is gone has nothing open.
            let _ = requests.send(Request::Commit);
        }
        self.visibility.caught_up().await
    }
}

/// Opens (or creates) the database file.
pub(super) fn open_file(path: &Path, cache_size: usize) -> Result<Database> {
    redb::Builder::new().set_cache_size(cache_size).create(path).ctx("open store file")
}

/// Creates the tables of a new file, checks the format of an old one; returns the revision and
/// the compacted revision.
fn init(db: &Database) -> Result<(Revision, Revision)> {
    let txn = db.begin_write().ctx("begin write transaction")?;
    let revisions = {
        txn.open_table(CURRENT).ctx("open current table")?;
        txn.open_table(HISTORY).ctx("open history table")?;
        txn.open_table(LOG).ctx("open log table")?;
        let mut meta = txn.open_table(META).ctx("open meta table")?;
        match read_meta(&meta, META_FORMAT)? {
            // New, or written by an earlier version whose entries read the same (format 1 kept
            // `meta`'s revision current; formats 1 and 2 kept every version whole).
            0 | FORMAT_VERSION_1 | FORMAT_VERSION_2 => {
                meta.insert(META_FORMAT, FORMAT_VERSION).ctx("write meta table")?;
            }
            FORMAT_VERSION => {}
            other => {
                return Err(StoreError::Backend {
                    message: format!(
                        "unsupported store format {other} (expected {FORMAT_VERSION})"
                    ),
                    source: None,
                });
            }
        }
        let log = txn.open_table(LOG).ctx("open log table")?;
        (read::stored_revision(&meta, &log)?, read_meta(&meta, META_COMPACTED)?)
    };
    txn.commit().ctx("commit write transaction")?;
    Ok(revisions)
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the channel stops the writer once it has answered what it holds.
        drop(self.requests.take());
        if let Some(writer) = self.writer.take()
            && writer.join().is_err()
        {
            tracing::error!("store writer thread panicked");
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.caught_up().await?;
        // A point read of a B-tree: short enough to run on the async thread.
        read::get(&*self.slot.get()?, key)
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Page> {
        self.caught_up().await?;
        let db = self.slot.get()?;
        let prefix = prefix.to_owned();
        let start_after = start_after.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            read::list(&db, &prefix, start_after.as_deref(), limit, revision)
        })
        .await
        .ctx("list task failed")?
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.write(Op::Create { key: key.to_owned(), value }).await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        self.write(Op::Update { key: key.to_owned(), value, expected }).await
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(Op::Delete { key: key.to_owned(), expected }).await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        self.caught_up().await?;
        watch::watch(&self.slot, &self.hub, prefix, after).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.caught_up().await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        requests.send(Request::Compact { revision, reply }).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn close(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        requests.send(Request::Close { reply }).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)
    }

    async fn check(&self) -> Result<()> {
        self.health.check()?;
        // A real read: the meta table, through a read transaction, as every read begins.
        read::Snapshot::begin(&*self.slot.get()?).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    //! Failures injected through the log's file ([`wal::LogFile`]) and crashes simulated by
    //! copying the data directory of a running store (redb keeps the commits it did not sync
    //! in process memory, so the copy holds what a kill -9 would leave).

    use std::fs::File;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::commit::replay;
    use super::wal::{LogFile, Record};
    use super::*;

    /// What the log's file does wrong, set by the test.
    #[derive(Debug, Default)]
    struct Faults {
        /// How many of the next writes fail.
        fail_writes: AtomicUsize,
        /// Whether cutting a record back out of the log (zeroing its header) fails.
        fail_cuts: AtomicBool,
        /// Whether the next sync takes a while (so that requests queue into one batch).
        stall_sync: AtomicBool,
    }

    #[derive(Debug)]
    struct Faulty {
        file: File,
        faults: Arc<Faults>,
    }

    impl LogFile for Faulty {
        fn write_all_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
            // The log cuts a record back by zeroing its 12-byte header.
            let cut = bytes.len() == 12 && bytes.iter().all(|b| *b == 0);
            if cut && self.faults.fail_cuts.load(Ordering::SeqCst) {
                return Err(std::io::Error::other("injected cut failure"));
            }
            let fail = self
                .faults
                .fail_writes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                return Err(std::io::Error::other("injected write failure"));
            }
            LogFile::write_all_at(&self.file, bytes, offset)
        }

        fn sync_data(&self) -> std::io::Result<()> {
            if self.faults.stall_sync.swap(false, Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(300));
            }
            LogFile::sync_data(&self.file)
        }

        fn set_len(&self, len: u64) -> std::io::Result<()> {
            LogFile::set_len(&self.file, len)
        }
    }

    fn open_faulty(dir: &Path) -> (Arc<EmbeddedStore>, Arc<Faults>) {
        let faults = Arc::new(Faults::default());
        let shared = Arc::clone(&faults);
        let opener: wal::LogOpener = Arc::new(move |file| {
            Box::new(Faulty { file, faults: Arc::clone(&shared) }) as Box<dyn LogFile>
        });
        // The helper threads on, whatever the machine: the tests follow the logger's records.
        let options = EmbeddedOptions { helper_threads: true, ..EmbeddedOptions::default() };
        let store = EmbeddedStore::open_logged(dir, options, opener).expect("open store");
        (Arc::new(store), faults)
    }

    /// Runs `ops` as one batch (of the logger's size when there are 8 or more): a first write
    /// stalls in its log sync while the others queue behind it.
    async fn one_batch(
        store: &Arc<EmbeddedStore>,
        faults: &Faults,
        ops: Vec<Op>,
    ) -> Vec<Result<KeyValue>> {
        faulty_batch(store, faults, ops, |_| {}).await
    }

    /// [`one_batch`], with faults armed (by `arm`) once the first write is in its sync.
    async fn faulty_batch(
        store: &Arc<EmbeddedStore>,
        faults: &Faults,
        ops: Vec<Op>,
        arm: impl FnOnce(&Faults),
    ) -> Vec<Result<KeyValue>> {
        faults.stall_sync.store(true, Ordering::SeqCst);
        let first = Arc::clone(store);
        let stall = tokio::spawn(async move {
            first.write(Op::Create { key: format!("/stall/{}", next_id()), value: vec![] }).await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        arm(faults);
        let tasks: Vec<_> = ops
            .into_iter()
            .map(|op| {
                let store = Arc::clone(store);
                tokio::spawn(async move { store.write(op).await })
            })
            .collect();
        stall.await.expect("stalled write").expect("stalled write succeeds");
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("write task"));
        }
        outcomes
    }

    fn next_id() -> usize {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        NEXT.fetch_add(1, Ordering::SeqCst)
    }

    fn creates(prefix: &str, n: usize) -> Vec<Op> {
        (0..n).map(|i| Op::Create { key: format!("{prefix}/{i}"), value: vec![1; 64] }).collect()
    }

    /// A copy of the data directory as a kill -9 would leave it.
    fn crash_copy(dir: &Path) -> tempfile::TempDir {
        let copy = tempfile::tempdir().expect("temporary directory");
        for name in [FILE_NAME, wal::FILE_NAME] {
            std::fs::copy(dir.join(name), copy.path().join(name)).expect("copy store file");
        }
        copy
    }

    /// Finding 1: overlapped batches (logged by the logger thread) around a failed append and
    /// around a reopen (the logger is stopped and started again) are each answered after their
    /// own record is on disk: a crash right after keeps every acknowledged write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn logger_results_stay_in_step_after_a_failed_append_and_a_reopen() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (store, faults) = open_faulty(dir.path());
        let mut acknowledged = Vec::new();
        let mut collect = |outcomes: Vec<Result<KeyValue>>, ok: bool| {
            for outcome in outcomes {
                assert_eq!(outcome.is_ok(), ok, "{outcome:?}");
                acknowledged.extend(outcome.ok());
            }
        };
        collect(one_batch(&store, &faults, creates("/a", 10)).await, true);
        // The logger's append fails and is cut back: the batch fails, alone.
        let fail_write = |f: &Faults| f.fail_writes.store(1, Ordering::SeqCst);
        collect(faulty_batch(&store, &faults, creates("/b", 10), fail_write).await, false);
        collect(one_batch(&store, &faults, creates("/c", 10)).await, true);
        // An append fails and so does its cut: the log is broken and the store reopened.
        let break_log = |f: &Faults| {
            f.fail_writes.store(1, Ordering::SeqCst);
            f.fail_cuts.store(true, Ordering::SeqCst);
        };
        collect(faulty_batch(&store, &faults, creates("/d", 10), break_log).await, false);
        faults.fail_cuts.store(false, Ordering::SeqCst);
        let mut reopened = false;
        for _ in 0..200 {
            if store.create(&format!("/probe/{}", next_id()), vec![]).await.is_ok() {
                reopened = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(reopened, "the store reopens after the log broke");
        collect(one_batch(&store, &faults, creates("/e", 10)).await, true);
        collect(one_batch(&store, &faults, creates("/f", 12)).await, true);

        let copy = crash_copy(dir.path());
        drop(store);
        let after = EmbeddedStore::open(copy.path()).expect("open after the crash");
        for kv in &acknowledged {
            let got = after.get(&kv.key).await.expect("get").expect("acknowledged key present");
            assert_eq!(got.mod_revision, kv.mod_revision, "{}", kv.key);
        }
        assert!(after.get("/b/0").await.expect("get").is_none());
    }

    /// Overwrites `key`'s row in the current table with bytes that do not decode.
    fn corrupt_row(dir: &Path, key: &str) {
        let db = open_file(&dir.join(FILE_NAME), DEFAULT_CACHE_SIZE).expect("open file");
        let txn = db.begin_write().expect("begin");
        txn.open_table(CURRENT)
            .expect("current table")
            .insert(key.as_bytes(), [1u8, 2, 3].as_slice())
            .expect("insert");
        txn.commit().expect("commit");
    }

    /// Finding 4: an overlapped batch logged by the logger but failing to apply (a corrupt row)
    /// is cut back out of the log before its callers hear of the failure: it is not replayed
    /// later, and the store is not bricked by replaying it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn logged_batch_that_fails_to_apply_is_cut_from_the_log() {
        let dir = tempfile::tempdir().expect("temporary directory");
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store.create("/bad", b"x".to_vec()).await.expect("create");
        }
        corrupt_row(dir.path(), "/bad");
        let (store, faults) = open_faulty(dir.path());
        let mut ops = creates("/ok", 9);
        ops.push(Op::Update { key: "/bad".into(), value: vec![], expected: 1 });
        for outcome in one_batch(&store, &faults, ops).await {
            let error = outcome.expect_err("the batch fails");
            assert!(!matches!(error, StoreError::OutcomeUnknown { .. }), "{error}");
        }
        let next = store.create("/after", vec![]).await.expect("writes go on");
        let copy = crash_copy(dir.path());
        drop(store);
        for dir in [copy.path(), dir.path()] {
            let after = EmbeddedStore::open(dir).expect("opens: the failed batch is not replayed");
            assert!(after.get("/ok/0").await.expect("get").is_none());
            let kv = after.get("/after").await.expect("get").expect("acknowledged");
            assert_eq!(kv.mod_revision, next.mod_revision);
        }
    }

    /// Finding 4: when the failed batch cannot be cut back out of the log, its callers are told
    /// the outcome is unknown (the record may be replayed), not that it failed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn logged_batch_that_cannot_be_cut_back_has_an_unknown_outcome() {
        let dir = tempfile::tempdir().expect("temporary directory");
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store.create("/bad", b"x".to_vec()).await.expect("create");
        }
        corrupt_row(dir.path(), "/bad");
        let (store, faults) = open_faulty(dir.path());
        let mut ops = creates("/ok", 9);
        ops.push(Op::Update { key: "/bad".into(), value: vec![], expected: 1 });
        let fail_cut = |f: &Faults| f.fail_cuts.store(true, Ordering::SeqCst);
        for outcome in faulty_batch(&store, &faults, ops, fail_cut).await {
            let error = outcome.expect_err("the batch fails");
            assert!(matches!(error, StoreError::OutcomeUnknown { .. }), "{error}");
        }
    }

    /// A small batch is checked before it is logged: failing on a corrupt row, it leaves
    /// nothing in the log, so its error is definite even when no cut could be made.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_batch_failing_its_check_is_never_logged() {
        let dir = tempfile::tempdir().expect("temporary directory");
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store.create("/bad", b"x".to_vec()).await.expect("create");
        }
        corrupt_row(dir.path(), "/bad");
        let (store, faults) = open_faulty(dir.path());
        faults.fail_cuts.store(true, Ordering::SeqCst);
        let error = store.update("/bad", vec![], 1).await.expect_err("the row does not decode");
        assert!(!matches!(error, StoreError::OutcomeUnknown { .. }), "{error}");
        faults.fail_cuts.store(false, Ordering::SeqCst);
        store.create("/after", vec![]).await.expect("writes go on");
    }

    /// Writes that no read has asked to see (held in the writer's open transaction) still
    /// reach watchers, in order, and survive a crash taken right after their answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_held_open_reach_watchers_and_survive_a_crash() {
        use futures::StreamExt;

        let dir = tempfile::tempdir().expect("temporary directory");
        let store = EmbeddedStore::open(dir.path()).expect("open");
        let mut watch = store.watch("/held/", 0).await.expect("watch");
        let mut written = Vec::new();
        for i in 0..5 {
            written.push(store.create(&format!("/held/{i}"), vec![7; 32]).await.expect("create"));
        }
        let copy = crash_copy(dir.path());
        for kv in &written {
            let event = tokio::time::timeout(Duration::from_secs(10), watch.next())
                .await
                .expect("the open transaction commits on its own")
                .expect("watch open")
                .expect("event");
            assert_eq!((&event.kv.key, event.revision), (&kv.key, kv.mod_revision));
        }
        let after = EmbeddedStore::open(copy.path()).expect("open after the crash");
        for kv in &written {
            let got = after.get(&kv.key).await.expect("get").expect("acknowledged key present");
            assert_eq!(got.mod_revision, kv.mod_revision);
        }
    }

    /// The revision lives in the log's last entry between durable commits, and in `meta` once
    /// a compaction has emptied the log: both survive a restart and a crash.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_revision_survives_an_emptied_log_and_a_crash() {
        let dir = tempfile::tempdir().expect("temporary directory");
        {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            for i in 0..3 {
                store.create(&format!("/r/{i}"), vec![]).await.expect("create");
            }
            store.compact(3).await.expect("compact everything");
            assert_eq!(store.current_revision().await.expect("revision"), 3);
        }
        let store = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(store.current_revision().await.expect("revision"), 3);
        assert_eq!(store.create("/r/3", vec![]).await.expect("create").mod_revision, 4);
        let copy = crash_copy(dir.path());
        drop(store);
        let after = EmbeddedStore::open(copy.path()).expect("open after a crash");
        assert_eq!(after.current_revision().await.expect("revision"), 4);
        assert_eq!(after.create("/r/4", vec![]).await.expect("create").mod_revision, 5);
    }

    /// A file of format 1 (`meta`'s revision written at every commit) opens and is upgraded.
    #[test]
    fn a_format_1_file_opens_and_is_upgraded() {
        let dir = tempfile::tempdir().expect("temporary directory");
        drop(store_with_one_key(dir.path()));
        {
            let db = open_file(&dir.path().join(FILE_NAME), DEFAULT_CACHE_SIZE).expect("open");
            let txn = db.begin_write().expect("begin");
            txn.open_table(META)
                .expect("meta")
                .insert(META_FORMAT, schema::FORMAT_VERSION_1)
                .expect("insert");
            txn.commit().expect("commit");
        }
        let store = EmbeddedStore::open(dir.path()).expect("format 1 opens");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        assert_eq!(runtime.block_on(store.current_revision()).expect("revision"), 1);
        drop(store);
        let db = open_file(&dir.path().join(FILE_NAME), DEFAULT_CACHE_SIZE).expect("open");
        let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
        let meta = txn.open_table(META).expect("meta");
        assert_eq!(read_meta(&meta, META_FORMAT).expect("format"), FORMAT_VERSION);
    }

    /// A file of format 2 (every version whole in `history`, the live one too) reads the same
    /// at every revision, and writes over its versions keep them readable.
    #[test]
    fn a_format_2_file_reads_the_same_and_takes_new_writes() {
        let dir = tempfile::tempdir().expect("temporary directory");
        drop(store_with_one_key(dir.path()));
        {
            // Rewrite the file as format 2 left it: `/k`'s live version whole in `history`.
            let db = open_file(&dir.path().join(FILE_NAME), DEFAULT_CACHE_SIZE).expect("open");
            let txn = db.begin_write().expect("begin");
            txn.open_table(HISTORY)
                .expect("history")
                .insert((&b"/k"[..], 1), schema::encode_put(1, b"v").as_slice())
                .expect("insert");
            txn.open_table(META)
                .expect("meta")
                .insert(META_FORMAT, schema::FORMAT_VERSION_2)
                .expect("insert");
            txn.commit().expect("commit");
        }
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let store = EmbeddedStore::open(dir.path()).expect("format 2 opens");
            let updated = store.update("/k", b"w".to_vec(), 1).await.expect("update");
            assert_eq!(updated.mod_revision, 2);
            let at = |rev| store.list("/k", None, 0, Some(rev));
            assert_eq!(at(1).await.expect("list at 1").items[0].value, b"v");
            assert_eq!(at(2).await.expect("list at 2").items[0].value, b"w");
            let mut events = store.watch("/k", 1).await.expect("watch");
            let event = futures::StreamExt::next(&mut events).await.expect("an event").expect("ok");
            assert_eq!(event.kv.value, b"w");
            assert_eq!(event.prev.expect("the previous version").value, b"v");
        });
    }

    /// A live version's value is kept once, in `current`; the version a write replaces goes
    /// into `history` compressed.
    #[test]
    fn a_live_value_is_stored_once_and_a_replaced_one_compressed() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let value = br#"{"metadata":{"name":"web"},"spec":{"containers":[]}}"#.repeat(50);
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let store = EmbeddedStore::open(dir.path()).expect("open");
            store.create("/k", value.clone()).await.expect("create");
            store.update("/k", value.clone(), 1).await.expect("update");
            store.close().await.expect("close");
        });
        let db = open_file(&dir.path().join(FILE_NAME), DEFAULT_CACHE_SIZE).expect("open");
        let txn = redb::ReadableDatabase::begin_read(&db).expect("read");
        let history = txn.open_table(HISTORY).expect("history");
        let sizes: Vec<usize> = [1, 2]
            .iter()
            .map(|rev| history.get((&b"/k"[..], *rev)).expect("get").expect("entry").value().len())
            .collect();
        assert!(sizes[0] < value.len() / 4, "the replaced version takes {} bytes", sizes[0]);
        assert_eq!(sizes[1], 9, "the live version is a tag and its create revision");
    }

    /// A store with `/k` created (revision 1) and its database file, closed.
    fn store_with_one_key(dir: &Path) -> Database {
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        runtime.block_on(async {
            let store = EmbeddedStore::open(dir).expect("open");
            store.create("/k", b"v".to_vec()).await.expect("create");
        });
        open_file(&dir.join(FILE_NAME), DEFAULT_CACHE_SIZE).expect("open file")
    }

    fn revision_of(db: &Database) -> Revision {
        read::Snapshot::begin(db).expect("snapshot").revision
    }

    fn update(from: Revision, to: Option<Revision>, expected: Revision) -> Record {
        let ops = vec![Op::Update { key: "/k".into(), value: b"w".to_vec(), expected }];
        Record { from, to, ops }
    }

    /// Finding 2: once replay has applied a record, a later record that does not start where
    /// the last one ended is an error (it was skipped silently), and nothing is committed.
    #[test]
    fn replay_refuses_a_record_that_does_not_chain_after_applying() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = store_with_one_key(dir.path());
        // A prefix from before the file's revision is skipped.
        replay(&db, vec![update(0, None, 0)], 0).expect("stale prefix skipped");
        let records = vec![update(1, Some(2), 1), update(1, None, 1)];
        let error = replay(&db, records, 0).expect_err("out of step");
        assert!(error.to_string().contains("starts at revision 1"), "{error}");
        assert_eq!(revision_of(&db), 1);
        assert_eq!(replay(&db, vec![update(1, Some(2), 1)], 0).expect("chained"), 2);
    }

    /// Finding 2: a record that ends elsewhere than it says (replay diverged from the original
    /// run) is an error; a guarded delete expecting `i64::MIN` replays as the conflict it was.
    #[test]
    fn replay_verifies_each_records_resulting_revision() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = store_with_one_key(dir.path());
        let error = replay(&db, vec![update(1, Some(1), 1)], 0).expect_err("diverged");
        assert!(error.to_string().contains("ends at 1"), "{error}");
        assert_eq!(revision_of(&db), 1);
        let delete = Op::Delete { key: "/k".into(), expected: Some(i64::MIN) };
        let record = Record { from: 1, to: Some(1), ops: vec![delete] };
        assert_eq!(replay(&db, vec![record], 0).expect("a conflict again"), 1);
        assert!(read::get(&db, "/k").expect("get").is_some());
    }

    /// Finding 5: a file and log behind the acknowledged revision fail the reopen before
    /// anything is committed (the caller keeps the log).
    #[test]
    fn replay_behind_acknowledged_revision_commits_nothing() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = store_with_one_key(dir.path());
        let error = replay(&db, vec![update(1, Some(2), 1)], 5).expect_err("behind");
        assert!(error.to_string().contains("behind the acknowledged 5"), "{error}");
        assert_eq!(revision_of(&db), 1);
    }
}
