//! The revisioned key-value store under the API server.
//!
//! One trait, [`Store`], with two backends: [`embedded`] (the default, on disk, built on redb
//! with group commit) and [`etcd`] (a real etcd v3 cluster). Both keep a global revision that
//! every write advances by one, per key a create and a modify revision, a history for watch
//! resumption, and compaction; both answer a compacted revision with [`StoreError::Compacted`].
//!
//! The store knows nothing about HTTP, JSON or Kubernetes objects: keys are strings, values are
//! opaque bytes.

pub mod embedded;
pub mod error;
pub mod etcd;
mod types;

pub use error::StoreError;
pub use types::{Event, EventKind, KeyValue, Page, Revision, WatchStream};

use async_trait::async_trait;

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A revisioned key-value store with watch.
///
/// Every successful write advances the global revision by exactly one and is durable before the
/// call returns. Reads at `revision: None` see every write that returned before they started.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Reads one key at the current revision.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Lists keys that start with `prefix`, in key order, from the first key strictly after
    /// `start_after` (when given), at most `limit` of them (0: no limit), as of `revision`
    /// (`None`: the current revision). A revision older than the compacted one fails with
    /// [`StoreError::Compacted`]; one newer than the current fails with
    /// [`StoreError::FutureRevision`].
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Page>;

    /// Creates `key` if it is absent; fails with [`StoreError::AlreadyExists`] otherwise.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replaces the value of `key` if its modify revision is still `expected`; fails with
    /// [`StoreError::NotFound`] when the key is gone and [`StoreError::Conflict`] when it moved.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;

    /// Deletes `key`, if its modify revision is `expected` (when given). Returns the deleted
    /// value with the revision of the delete as its `mod_revision`.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Streams every change under `prefix` made after `after` (exclusive), in revision order,
    /// then every later change as it happens. Fails with [`StoreError::Compacted`] when history
    /// from `after` on is gone. The stream also reports progress: an [`EventKind::Progress`]
    /// event whenever the store's revision moved without a change under the prefix.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The current global revision (that of the last committed write).
    async fn current_revision(&self) -> Result<Revision>;

    /// Drops history older than `revision`; later reads and watches at an older revision fail
    /// with [`StoreError::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// Checks that the store can serve: a real read, and that its write path is not known to be
    /// broken (the embedded store's last commit failed, or etcd raised an alarm such as
    /// `NOSPACE`). Bounded in time and cheap enough for a readiness probe; an `Err` says what is
    /// wrong, and a later call succeeds again once the store has recovered.
    async fn check(&self) -> Result<()>;

    /// Closes the store at shutdown, once every write it will answer has been made: the
    /// embedded store makes its file complete (so that the next open neither replays its log
    /// nor walks the file to repair it); later calls fail with [`StoreError::Closed`]. Writes
    /// answered before are durable whether or not this runs.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
