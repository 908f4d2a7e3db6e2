//! Reads: one key or a page of keys, now or as of an older revision.

use std::ops::Bound;

use redb::{Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable};

use super::schema::{
    CURRENT, Context, HISTORY, LOG, META, META_COMPACTED, META_REVISION, Version, decode_current,
    decode_version, key_str, live_value,
};
use crate::{KeyValue, Page, Result, Revision, StoreError};

/// A read transaction with the revisions it sees.
pub(super) struct Snapshot {
    /// The redb read transaction.
    pub txn: ReadTransaction,
    /// The revision of the last write the transaction sees.
    pub revision: Revision,
    /// The compacted revision the transaction sees.
    pub compacted: Revision,
}

impl Snapshot {
    /// Begins a read transaction and reads the revisions.
    pub fn begin(db: &Database) -> Result<Self> {
        let txn = db.begin_read().ctx("begin read transaction")?;
        let meta = txn.open_table(META).ctx("open meta table")?;
        let log = txn.open_table(LOG).ctx("open log table")?;
        let revision = stored_revision(&meta, &log)?;
        let compacted = read_meta(&meta, META_COMPACTED)?;
        drop((meta, log));
        Ok(Snapshot { txn, revision, compacted })
    }

    /// Fails unless `revision` can be read: it must lie between compacted and current.
    pub fn check_revision(&self, revision: Revision) -> Result<()> {
        if revision < self.compacted {
            return Err(StoreError::Compacted { requested: revision, compacted: self.compacted });
        }
        if revision > self.revision {
            return Err(StoreError::FutureRevision { requested: revision, current: self.revision });
        }
        Ok(())
    }
}

/// Reads one meta entry (0 when absent).
pub(super) fn read_meta(meta: &impl ReadableTable<&'static str, i64>, name: &str) -> Result<i64> {
    Ok(meta.get(name).ctx("read meta table")?.map(|v| v.value()).unwrap_or(0))
}

/// The store's revision: the later of the log's last entry and `meta`'s (see [`super::schema`]).
pub(super) fn stored_revision(
    meta: &impl ReadableTable<&'static str, i64>,
    log: &impl ReadableTable<i64, &'static [u8]>,
) -> Result<Revision> {
    let logged = log.last().ctx("read log table")?.map_or(0, |(rev, _)| rev.value());
    Ok(read_meta(meta, META_REVISION)?.max(logged))
}

/// Reads one key at the current revision.
pub(super) fn get(db: &Database, key: &str) -> Result<Option<KeyValue>> {
    let txn = db.begin_read().ctx("begin read transaction")?;
    let current = txn.open_table(CURRENT).ctx("open current table")?;
    let found = current.get(key.as_bytes()).ctx("read current table")?;
    found.map(|v| decode_current(key.as_bytes(), v.value())).transpose()
}

/// Lists a page of keys; see [`Store::list`](crate::Store::list).
pub(super) fn list(
    db: &Database,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
    revision: Option<Revision>,
) -> Result<Page> {
    let snapshot = Snapshot::begin(db)?;
    let revision = match revision {
        Some(revision) => {
            snapshot.check_revision(revision)?;
            revision
        }
        None => snapshot.revision,
    };
    // The first key to consider: the prefix itself, or whatever follows `start_after`.
    let after = start_after.filter(|s| *s >= prefix).map(str::as_bytes);
    let mut page = Pager { items: Vec::new(), limit, more: false };
    if revision == snapshot.revision {
        let current = snapshot.txn.open_table(CURRENT).ctx("open current table")?;
        list_current(&current, prefix.as_bytes(), after, &mut page)?;
    } else {
        let history = snapshot.txn.open_table(HISTORY).ctx("open history table")?;
        let current = snapshot.txn.open_table(CURRENT).ctx("open current table")?;
        list_history(&history, &current, prefix.as_bytes(), after, revision, &mut page)?;
    }
    let remaining = (!page.more).then_some(0);
    Ok(Page { more: page.more, remaining, items: page.items, revision })
}

/// Collects the items of a page, then notes whether a matching key follows it (without
/// counting them: a count would make paging through a prefix quadratic).
struct Pager {
    items: Vec<KeyValue>,
    limit: usize,
    more: bool,
}

impl Pager {
    /// Whether the page is full; the next matching key only says that more follow.
    fn full(&self) -> bool {
        self.limit != 0 && self.items.len() >= self.limit
    }
}

fn list_current(
    current: &ReadOnlyTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    after: Option<&[u8]>,
    page: &mut Pager,
) -> Result<()> {
    let start = match after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Included(prefix),
    };
    for entry in current.range::<&[u8]>((start, Bound::Unbounded)).ctx("scan current table")? {
        let (key, value) = entry.ctx("scan current table")?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        if page.full() {
            page.more = true;
            break;
        }
        page.items.push(decode_current(key, value.value())?);
    }
    Ok(())
}

fn list_history(
    history: &ReadOnlyTable<(&'static [u8], i64), &'static [u8]>,
    current: &ReadOnlyTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
    after: Option<&[u8]>,
    revision: Revision,
    page: &mut Pager,
) -> Result<()> {
    // One seek to find the next key, one to find its latest version at `revision`.
    let mut last: Option<Vec<u8>> = after.map(<[u8]>::to_vec);
    loop {
        let start = match &last {
            Some(key) => Bound::Excluded((key.as_slice(), i64::MAX)),
            None => Bound::Included((prefix, i64::MIN)),
        };
        let key = {
            let mut range = history
                .range::<(&[u8], i64)>((start, Bound::Unbounded))
                .ctx("scan history table")?;
            let Some(entry) = range.next() else { break };
            let (key, _) = entry.ctx("scan history table")?;
            let (key, _) = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            key.to_vec()
        };
        let mut versions = history
            .range::<(&[u8], i64)>((key.as_slice(), i64::MIN)..=(key.as_slice(), revision))
            .ctx("scan history table")?;
        if let Some(entry) = versions.next_back() {
            let (version_key, value) = entry.ctx("scan history table")?;
            let (_, mod_revision) = version_key.value();
            let found = match decode_version(value.value())? {
                Version::Put { create, value } => Some((create, value.into_owned())),
                Version::Live { create } => {
                    Some((create, live_value(current, &key, mod_revision)?))
                }
                Version::Tombstone => None,
            };
            if let Some((create, value)) = found {
                if page.full() {
                    page.more = true;
                    break;
                }
                page.items.push(KeyValue {
                    key: key_str(&key)?.to_owned(),
                    value,
                    create_revision: create,
                    mod_revision,
                });
            }
        }
        last = Some(key);
    }
    Ok(())
}
