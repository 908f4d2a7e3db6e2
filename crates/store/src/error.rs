//! Errors of the store, one variant per outcome a caller handles differently.

use crate::Revision;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key exists already (create).
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// The key does not exist (update, delete).
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// The key's modify revision is not the expected one (update, delete).
    #[error("key {key} was modified: expected revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's current modify revision.
        actual: Revision,
    },
    /// The requested revision is older than the compacted revision.
    #[error("revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision still available is `compacted`.
        compacted: Revision,
    },
    /// The requested revision is newer than the current one.
    #[error("revision {requested} is in the future (current {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The current revision.
        current: Revision,
    },
    /// The backend failed (disk, network, corrupt data); retrying may help.
    #[error("store backend failed: {message}")]
    Backend {
        /// What failed.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A write may or may not have been committed: it reached the durable log but could not
    /// be applied, and the log could not be cut back, so it is applied when the store file is
    /// reopened. Read the key to learn the outcome.
    #[error("store write outcome unknown: {message}")]
    OutcomeUnknown {
        /// What failed.
        message: String,
    },
    /// The store is shut down.
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// A backend failure with context.
    pub fn backend(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Backend { message: message.into(), source: Some(Box::new(source)) }
    }
}
