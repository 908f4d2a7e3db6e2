//! Translation of etcd's values and errors into the store's.

use crate::{KeyValue, Revision, StoreError};

/// An etcd error the store reports as something other than a backend failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RevisionError {
    /// `mvcc: required revision has been compacted`.
    Compacted,
    /// `mvcc: required revision is a future revision`.
    Future,
}

/// Recognizes etcd's revision errors. etcd reports both as gRPC `OutOfRange` statuses that only
/// their message tells apart (`rpctypes.ErrGRPCCompacted`, `rpctypes.ErrGRPCFutureRev`).
pub(super) fn revision_error(error: &etcd_client::Error) -> Option<RevisionError> {
    let etcd_client::Error::GRpcStatus(status) = error else {
        return None;
    };
    let message = status.message();
    if message.contains("required revision has been compacted") {
        Some(RevisionError::Compacted)
    } else if message.contains("required revision is a future revision") {
        Some(RevisionError::Future)
    } else {
        None
    }
}

/// A failed etcd call, as a backend error naming what was attempted and etcd's reason (for
/// example `etcdserver: mvcc: database space exceeded`), which clients see in the `Status`.
pub(super) fn backend(what: impl std::fmt::Display, error: etcd_client::Error) -> StoreError {
    let message = match &error {
        etcd_client::Error::GRpcStatus(status) => format!("etcd {what}: {}", status.message()),
        other => format!("etcd {what}: {other}"),
    };
    StoreError::backend(message, error)
}

/// A malformed etcd response (a field etcd always sets is missing).
pub(super) fn malformed(what: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { message: format!("malformed etcd response: {what}"), source: None }
}

/// The revision in an optional response header.
pub(super) fn header_revision(
    header: Option<&etcd_client::ResponseHeader>,
    what: &str,
) -> Result<Revision, StoreError> {
    header.map(|h| h.revision()).ok_or_else(|| malformed(format!("{what} without header")))
}

/// An etcd key-value pair as the store's, its key checked to be UTF-8.
pub(super) fn key_value(kv: etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
    let (key, value) = kv.into_key_value();
    Ok(KeyValue { key: utf8_key(key)?, value, create_revision, mod_revision })
}

/// An etcd key-value pair borrowed from a response (watch events only lend theirs).
pub(super) fn key_value_ref(kv: &etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    Ok(KeyValue {
        key: utf8_key(kv.key().to_vec())?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

/// The store's keys are strings; etcd's are bytes that other clients may have written.
fn utf8_key(key: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(key).map_err(|e| {
        let message = format!("etcd key {:?} is not UTF-8", String::from_utf8_lossy(e.as_bytes()));
        StoreError::backend(message, e.utf8_error())
    })
}
