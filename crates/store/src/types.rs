//! Plain data that crosses the [`Store`](crate::Store) trait.

use std::pin::Pin;

use futures::Stream;

use crate::StoreError;

/// A global store revision; every write advances it by one. Revision 0 precedes every write.
pub type Revision = i64;

/// One key with its value and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key.
    pub key: String,
    /// The opaque value.
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to the key (for a delete: the delete's own revision).
    pub mod_revision: Revision,
}

/// One page of a [`list`](crate::Store::list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The keys of the page, in key order.
    pub items: Vec<KeyValue>,
    /// Whether keys after the last item also match.
    pub more: bool,
    /// How many matching keys follow the last item, when the backend knows it without reading
    /// them (etcd counts them; the embedded store does not, so that paging through a prefix
    /// stays linear).
    pub remaining: Option<usize>,
    /// The revision the page was read at.
    pub revision: Revision,
}

/// What a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key was created.
    Create,
    /// The key existed and was replaced.
    Update,
    /// The key was deleted; `kv.value` is its last value.
    Delete,
    /// Nothing under the watched prefix changed, but the store reached `revision`.
    Progress,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The key after the change (for a delete: the last value, with the delete's revision).
    /// Empty for [`EventKind::Progress`].
    pub kv: KeyValue,
    /// The value before the change, for updates and deletes.
    pub prev: Option<KeyValue>,
    /// The revision of the change (or of progress).
    pub revision: Revision,
}

/// A stream of watch events; an `Err` item ends it.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Event, StoreError>> + Send>>;
