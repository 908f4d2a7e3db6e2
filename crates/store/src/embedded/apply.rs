//! What one write does to the tables: a check that decides it (reads only), then the inserts.
//!
//! The writer checks a whole batch first, so that the batch's record can be logged and its
//! callers answered before the inserts run (see [`super::commit`]); replay checks and inserts
//! one write after the other ([`apply`]).

use std::collections::HashMap;

use redb::{ReadableTable, Table, WriteTransaction};

use super::schema::{
    CURRENT, Context, HISTORY, LOG, LogKind, TOMBSTONE, decode_current, encode_current,
    encode_live, encode_log, encode_superseded,
};
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

impl Op {
    /// The key the write changes.
    pub fn key(&self) -> &str {
        match self {
            Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
        }
    }

    /// Roughly how many bytes the write adds to a transaction.
    pub fn size(&self) -> usize {
        match self {
            Op::Create { key, value } | Op::Update { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } => key.len(),
        }
    }
}

/// A write that passed its check: the key as written (or as deleted) and the version it
/// replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Applied {
    pub kind: LogKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl Applied {
    /// The watch event for this write.
    pub fn into_event(self) -> Event {
        let kind = match self.kind {
            LogKind::Create => EventKind::Create,
            LogKind::Update => EventKind::Update,
            LogKind::Delete => EventKind::Delete,
        };
        Event { kind, revision: self.kv.mod_revision, kv: self.kv, prev: self.prev }
    }
}

/// Decides one write against the key's live version (`None`: absent), as revision `next`:
/// what it writes, or the failed check to answer its caller with.
pub(super) fn decide(op: Op, existing: Option<KeyValue>, next: Revision) -> Result<Applied> {
    match (op, existing) {
        (Op::Create { key, .. }, Some(_)) => Err(StoreError::AlreadyExists { key }),
        (Op::Update { key, .. } | Op::Delete { key, .. }, None) => {
            Err(StoreError::NotFound { key })
        }
        (
            Op::Update { key, expected, .. } | Op::Delete { key, expected: Some(expected) },
            Some(old),
        ) if old.mod_revision != expected => {
            Err(StoreError::Conflict { key, expected, actual: old.mod_revision })
        }
        (Op::Create { key, value }, None) => Ok(Applied {
            kind: LogKind::Create,
            kv: KeyValue { key, value, create_revision: next, mod_revision: next },
            prev: None,
        }),
        (Op::Update { key, value, .. }, Some(old)) => Ok(Applied {
            kind: LogKind::Update,
            kv: KeyValue { key, value, create_revision: old.create_revision, mod_revision: next },
            prev: Some(old),
        }),
        (Op::Delete { .. }, Some(old)) => Ok(Applied {
            kind: LogKind::Delete,
            kv: KeyValue { mod_revision: next, ..old.clone() },
            prev: Some(old),
        }),
    }
}

/// The tables every write changes (`meta` is opened only by the transactions that write it:
/// every table a transaction opens costs it time at commit).
pub(super) struct Tables<'txn> {
    pub current: Table<'txn, &'static [u8], &'static [u8]>,
    pub history: Table<'txn, (&'static [u8], i64), &'static [u8]>,
    pub log: Table<'txn, i64, &'static [u8]>,
}

impl<'txn> Tables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(Tables {
            current: txn.open_table(CURRENT).ctx("open current table")?,
            history: txn.open_table(HISTORY).ctx("open history table")?,
            log: txn.open_table(LOG).ctx("open log table")?,
        })
    }

    /// The live version of `key`.
    fn live(&self, key: &str) -> Result<Option<KeyValue>> {
        self.current
            .get(key.as_bytes())
            .ctx("read current table")?
            .map(|v| decode_current(key.as_bytes(), v.value()))
            .transpose()
    }

    /// Writes what `applied` decided: the new version into `current` (or the key out of it),
    /// the version it replaced into `history` compressed, and the new version's `history`
    /// entry as live (its value is `current`'s, see [`super::schema`]).
    pub fn write(&mut self, applied: &Applied) -> Result<()> {
        let KeyValue { key, value, create_revision, mod_revision } = &applied.kv;
        let (k, create, next) = (key.as_bytes(), *create_revision, *mod_revision);
        let superseded = applied.prev.as_ref().map_or(0, |old| old.mod_revision);
        if let Some(old) = &applied.prev {
            let version = encode_superseded(old.create_revision, &old.value);
            self.history
                .insert((k, old.mod_revision), version.as_slice())
                .ctx("write history table")?;
        }
        match applied.kind {
            LogKind::Create | LogKind::Update => {
                let current = encode_current(create, next, value);
                self.current.insert(k, current.as_slice()).ctx("write current table")?;
                let live = encode_live(create);
                self.history.insert((k, next), live.as_slice()).ctx("write history table")?;
            }
            LogKind::Delete => {
                self.current.remove(k).ctx("write current table")?;
                self.history.insert((k, next), TOMBSTONE.as_slice()).ctx("write history table")?;
            }
        }
        let entry = encode_log(applied.kind, superseded, k);
        self.log.insert(next, entry.as_slice()).ctx("write log table")?;
        Ok(())
    }
}

/// Decides a batch in order from `revision` on, without writing: each write sees the ones
/// before it in the batch. The outer error is a storage failure (the batch fails), an inner
/// one a failed check (that caller alone). Returns the outcomes and the revision after them.
pub(super) fn check_batch(
    tables: &Tables<'_>,
    ops: Vec<Op>,
    mut revision: Revision,
) -> Result<(Vec<Result<Applied>>, Revision)> {
    // The live version of each key written earlier in the batch (`None`: deleted).
    let mut written: HashMap<String, Option<KeyValue>> = HashMap::new();
    let mut outcomes = Vec::with_capacity(ops.len());
    let several = ops.len() > 1;
    for op in ops {
        let existing = match written.get(op.key()) {
            Some(version) => version.clone(),
            None => tables.live(op.key())?,
        };
        let outcome = decide(op, existing, revision + 1);
        if let Ok(applied) = &outcome {
            revision += 1;
            if several {
                let live = (applied.kind != LogKind::Delete).then(|| applied.kv.clone());
                written.insert(applied.kv.key.clone(), live);
            }
        }
        outcomes.push(outcome);
    }
    Ok((outcomes, revision))
}

/// Checks and writes one write (replay). The outer error is a storage failure, the inner one
/// a failed check.
pub(super) fn apply(
    t: &mut Tables<'_>,
    op: Op,
    revision: &mut Revision,
) -> Result<Result<Applied>> {
    let existing = t.live(op.key())?;
    let outcome = decide(op, existing, *revision + 1);
    if let Ok(applied) = &outcome {
        t.write(applied)?;
        *revision += 1;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8], create: Revision, modified: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_vec(),
            create_revision: create,
            mod_revision: modified,
        }
    }

    #[test]
    fn decides_each_write_against_the_live_version() {
        let create = || Op::Create { key: "k".into(), value: b"v".to_vec() };
        let made = decide(create(), None, 4).expect("absent key is created");
        assert_eq!(made.kv, kv("k", b"v", 4, 4));
        assert!(matches!(
            decide(create(), Some(kv("k", b"v", 4, 4)), 5),
            Err(StoreError::AlreadyExists { .. })
        ));

        let update = |expected| Op::Update { key: "k".into(), value: b"w".to_vec(), expected };
        let updated = decide(update(4), Some(kv("k", b"v", 4, 4)), 6).expect("revision matches");
        assert_eq!((updated.kind, updated.kv.clone()), (LogKind::Update, kv("k", b"w", 4, 6)));
        assert_eq!(updated.prev, Some(kv("k", b"v", 4, 4)));
        assert!(matches!(
            decide(update(3), Some(kv("k", b"v", 4, 4)), 6),
            Err(StoreError::Conflict { expected: 3, actual: 4, .. })
        ));
        assert!(matches!(decide(update(4), None, 6), Err(StoreError::NotFound { .. })));

        let delete = |expected| Op::Delete { key: "k".into(), expected };
        let deleted = decide(delete(None), Some(kv("k", b"w", 4, 6)), 7).expect("unconditional");
        assert_eq!((deleted.kind, deleted.kv), (LogKind::Delete, kv("k", b"w", 4, 7)));
        assert!(matches!(
            decide(delete(Some(5)), Some(kv("k", b"w", 4, 6)), 7),
            Err(StoreError::Conflict { .. })
        ));
    }
}
