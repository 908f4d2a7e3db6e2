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
//! answered with success unless its commit returned, so every acknowledged write survives.

mod commit;
mod read;
mod schema;
mod wal;
mod watch;

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::Database;
use tokio::sync::oneshot;

use self::commit::{Op, Request, RequestSender, Writer};
use self::read::read_meta;
use self::schema::{
    CURRENT, Context, FORMAT_VERSION, HISTORY, LOG, META, META_COMPACTED, META_FORMAT,
    META_REVISION,
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
    revision: Arc<AtomicI64>,
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
            .field("revision", &self.revision.load(Ordering::Acquire))
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
        let published = Arc::new(AtomicI64::new(revision));
        let hub = Arc::new(Hub::new(options.watch_buffer, options.watch_buffer_bytes));
        let (requests, receiver) = std::sync::mpsc::channel();
        let health = Arc::new(Health::default());
        let writer = commit::spawn(Writer {
            db: Some(db),
            slot: Arc::clone(&slot),
            path,
            cache_size: options.cache_size,
            requests: receiver,
            published: Arc::clone(&published),
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
        })?;
        Ok(EmbeddedStore {
            slot,
            requests: Some(requests),
            writer: Some(writer),
            revision: published,
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
            0 => {
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
        (read_meta(&meta, META_REVISION)?, read_meta(&meta, META_COMPACTED)?)
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
        watch::watch(&self.slot, &self.hub, prefix, after).await
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.revision.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        requests.send(Request::Compact { revision, reply }).map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn check(&self) -> Result<()> {
        self.health.check()?;
        // A real read: the meta table, through a read transaction, as every read begins.
        read::Snapshot::begin(&*self.slot.get()?).map(|_| ())
    }
}
