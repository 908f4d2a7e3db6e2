//! The on-disk layout: table definitions and the byte encodings of their values.
//!
//! Every value is decoded by hand so that corrupt bytes become [`StoreError::Backend`] rather
//! than a panic. Integers are little-endian `i64`.
//!
//! | table     | key                 | value                                        |
//! |-----------|---------------------|----------------------------------------------|
//! | `current` | key                 | `create_rev, mod_rev, value`                       |
//! | `history` | `(key, mod_rev)`    | a version: live, superseded, put or delete (below) |
//! | `log`     | revision            | `kind, superseded, key`                            |
//! | `meta`    | name                | `i64`                                              |
//!
//! `history` holds every version of every key since the compacted revision, plus, for each key,
//! its latest version at the compacted revision (unless that is a delete), so that reads at any
//! revision from the compacted one on find the version they need. `log` holds one entry per
//! write after the compacted revision; `superseded` is the modify revision of the version the
//! write replaced (0 for a create), so that a watch can find the previous value in `history`.
//!
//! A version's value is kept once: while it is live, its `history` entry is `2, create_rev`
//! (live) and the value is `current`'s; the write that replaces or deletes it rewrites the
//! entry as `3, create_rev, deflated value` (superseded). So the file holds each live object
//! once, and the versions compaction has not dropped yet compressed. Formats 1 and 2 wrote
//! every version whole, `0, create_rev, value` (put); those entries read as before. A delete
//! is `1`.
//!
//! The store's revision is the later of `log`'s last entry and `meta`'s `revision`, which is
//! written only by durable commits and compactions (a commit leaves `meta` alone: one table
//! less to change per write). Format 1 wrote `revision` at every commit; it reads the same.

use redb::TableDefinition;

use crate::{KeyValue, Result, Revision, StoreError};

/// `key -> create_rev, mod_rev, value`: the live keys.
pub(super) const CURRENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("current");
/// `(key, mod_rev) -> version`: the versions since the compacted revision.
pub(super) const HISTORY: TableDefinition<(&[u8], i64), &[u8]> = TableDefinition::new("history");
/// `revision -> kind, superseded, key`: one entry per write after the compacted revision.
pub(super) const LOG: TableDefinition<i64, &[u8]> = TableDefinition::new("log");
/// `name -> i64`: the revisions below and the format version.
pub(super) const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// Meta entry: the revision of the last write as of the last durable commit or compaction
/// (the log's last entry is later when there is one).
pub(super) const META_REVISION: &str = "revision";
/// Meta entry: the compacted revision (reads below it fail).
pub(super) const META_COMPACTED: &str = "compacted";
/// Meta entry: the layout version of the file.
pub(super) const META_FORMAT: &str = "format";
/// The layout described in this module.
pub(super) const FORMAT_VERSION: i64 = 3;
/// Every version whole in `history` (reads the same; new writes add live and superseded
/// entries).
pub(super) const FORMAT_VERSION_2: i64 = 2;
/// As format 2, with `meta`'s revision written at every commit.
pub(super) const FORMAT_VERSION_1: i64 = 1;

const REV_LEN: usize = 8;
const TAG_PUT: u8 = 0;
const TAG_TOMBSTONE: u8 = 1;
const TAG_LIVE: u8 = 2;
const TAG_SUPERSEDED: u8 = 3;

/// How hard superseded values are compressed: deflate's fastest level, since every update
/// compresses the value it replaces on the writer's thread.
const DEFLATE_LEVEL: u32 = 1;

/// A backend error for bytes that do not decode.
pub(super) fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Backend { message: format!("corrupt store data: {}", what.into()), source: None }
}

/// Attaches context to redb errors.
pub(super) trait Context<T> {
    /// Maps the error to [`StoreError::Backend`] with `message`.
    fn ctx(self, message: &'static str) -> Result<T>;
}

impl<T, E> Context<T> for std::result::Result<T, E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn ctx(self, message: &'static str) -> Result<T> {
        self.map_err(|e| StoreError::backend(message, e))
    }
}

fn split_rev<'a>(bytes: &'a [u8], what: &str) -> Result<(Revision, &'a [u8])> {
    let (head, rest) = bytes.split_first_chunk::<REV_LEN>().ok_or_else(|| corrupt(what))?;
    Ok((i64::from_le_bytes(*head), rest))
}

/// A stored key as a string.
pub(super) fn key_str(bytes: &[u8]) -> Result<&str> {
    std::str::from_utf8(bytes).map_err(|_| corrupt("key is not UTF-8"))
}

/// Encodes a `current` value.
pub(super) fn encode_current(create: Revision, modified: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 * REV_LEN + value.len());
    out.extend_from_slice(&create.to_le_bytes());
    out.extend_from_slice(&modified.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes a `current` entry into a [`KeyValue`].
pub(super) fn decode_current(key: &[u8], bytes: &[u8]) -> Result<KeyValue> {
    let (create_revision, rest) = split_rev(bytes, "short current entry")?;
    let (mod_revision, value) = split_rev(rest, "short current entry")?;
    Ok(KeyValue {
        key: key_str(key)?.to_owned(),
        value: value.to_vec(),
        create_revision,
        mod_revision,
    })
}

/// One version of a key in `history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Version<'a> {
    /// The key held `value`, created at `create`.
    Put {
        /// Create revision of the key.
        create: Revision,
        /// The value.
        value: std::borrow::Cow<'a, [u8]>,
    },
    /// The key's live version, created at `create`: its value is `current`'s.
    Live {
        /// Create revision of the key.
        create: Revision,
    },
    /// The key was deleted.
    Tombstone,
}

/// Encodes a whole version (formats 1 and 2; tests write them to check that they still read).
#[cfg(test)]
pub(super) fn encode_put(create: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + REV_LEN + value.len());
    out.push(TAG_PUT);
    out.extend_from_slice(&create.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Encodes the live version of a key created at `create` (its value is in `current`).
pub(super) fn encode_live(create: Revision) -> [u8; 1 + REV_LEN] {
    let mut out = [TAG_LIVE; 1 + REV_LEN];
    out[1..].copy_from_slice(&create.to_le_bytes());
    out
}

thread_local! {
    /// The writer thread's deflate state, reset for each value rather than allocated (and its
    /// window and hash table zeroed) anew: that was a tenth of the writer's time.
    static DEFLATE: std::cell::RefCell<flate2::Compress> =
        std::cell::RefCell::new(flate2::Compress::new(flate2::Compression::new(DEFLATE_LEVEL), false));
}

/// Encodes a version a later write replaced or deleted: its value deflated.
pub(super) fn encode_superseded(create: Revision, value: &[u8]) -> Vec<u8> {
    // Room for the raw deflate stream's worst case, with margin: incompressible input is
    // stored, 5 bytes of header per block of at most 64 KiB.
    let bound = value.len() + value.len() / 4096 * 5 + 64;
    let mut out = Vec::with_capacity(1 + REV_LEN + bound);
    out.push(TAG_SUPERSEDED);
    out.extend_from_slice(&create.to_le_bytes());
    let finished = DEFLATE.with_borrow_mut(|deflate| {
        deflate.reset();
        let status = deflate.compress_vec(value, &mut out, flate2::FlushCompress::Finish);
        matches!(status, Ok(flate2::Status::StreamEnd))
    });
    if finished {
        return out;
    }
    // Not reached with the bound above; kept so that a value is never stored cut short.
    use std::io::Write;
    out.truncate(1 + REV_LEN);
    let mut encoder =
        flate2::write::DeflateEncoder::new(out, flate2::Compression::new(DEFLATE_LEVEL));
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(value);
    encoder.finish().unwrap_or_default()
}

/// Encodes a delete version.
pub(super) const TOMBSTONE: [u8; 1] = [TAG_TOMBSTONE];

/// Decodes a `history` value.
pub(super) fn decode_version(bytes: &[u8]) -> Result<Version<'_>> {
    match bytes.split_first() {
        Some((&TAG_PUT, rest)) => {
            let (create, value) = split_rev(rest, "short history entry")?;
            Ok(Version::Put { create, value: value.into() })
        }
        Some((&TAG_SUPERSEDED, rest)) => {
            use std::io::Read;
            let (create, deflated) = split_rev(rest, "short history entry")?;
            let mut value = Vec::with_capacity(deflated.len() * 4);
            flate2::read::DeflateDecoder::new(deflated)
                .read_to_end(&mut value)
                .map_err(|e| corrupt(format!("history entry does not inflate: {e}")))?;
            Ok(Version::Put { create, value: value.into() })
        }
        Some((&TAG_LIVE, rest)) => match split_rev(rest, "short history entry")? {
            (create, []) => Ok(Version::Live { create }),
            _ => Err(corrupt("bad live history entry")),
        },
        Some((&TAG_TOMBSTONE, [])) => Ok(Version::Tombstone),
        _ => Err(corrupt("bad history entry")),
    }
}

/// The value of the version of `key` at `mod_revision` whose history entry says it is live:
/// `current`'s, which must be that version.
pub(super) fn live_value(
    current: &impl redb::ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
    mod_revision: Revision,
) -> Result<Vec<u8>> {
    let entry = current.get(key).ctx("read current table")?;
    let kv = entry.map(|v| decode_current(key, v.value())).transpose()?;
    match kv {
        Some(kv) if kv.mod_revision == mod_revision => Ok(kv.value),
        _ => Err(corrupt(format!("live version {mod_revision} of a key is not the current one"))),
    }
}

/// What a write did, as recorded in `log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LogKind {
    /// The key was created.
    Create = 1,
    /// The key was replaced.
    Update = 2,
    /// The key was deleted.
    Delete = 3,
}

/// One decoded `log` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LogEntry<'a> {
    /// What the write did.
    pub kind: LogKind,
    /// Modify revision of the version the write replaced (0 for a create).
    pub superseded: Revision,
    /// The key written.
    pub key: &'a [u8],
}

/// Encodes a `log` value.
pub(super) fn encode_log(kind: LogKind, superseded: Revision, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + REV_LEN + key.len());
    out.push(kind as u8);
    out.extend_from_slice(&superseded.to_le_bytes());
    out.extend_from_slice(key);
    out
}

/// Decodes a `log` value.
pub(super) fn decode_log(bytes: &[u8]) -> Result<LogEntry<'_>> {
    let (kind, rest) = bytes.split_first().ok_or_else(|| corrupt("empty log entry"))?;
    let kind = match kind {
        1 => LogKind::Create,
        2 => LogKind::Update,
        3 => LogKind::Delete,
        _ => return Err(corrupt("bad log entry kind")),
    };
    let (superseded, key) = split_rev(rest, "short log entry")?;
    Ok(LogEntry { kind, superseded, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let kv = decode_current(b"k", &encode_current(3, 7, b"v")).expect("decodes");
        assert_eq!((kv.key.as_str(), kv.value.as_slice()), ("k", &b"v"[..]));
        assert_eq!((kv.create_revision, kv.mod_revision), (3, 7));
        assert_eq!(
            decode_version(&encode_put(5, b"x")).expect("decodes"),
            Version::Put { create: 5, value: b"x"[..].into() }
        );
        let value = br#"{"kind":"Pod","metadata":{"name":"web"},"spec":{}}"#.repeat(20);
        let superseded = encode_superseded(6, &value);
        assert!(superseded.len() < value.len() / 4, "{} bytes", superseded.len());
        assert_eq!(
            decode_version(&superseded).expect("decodes"),
            Version::Put { create: 6, value: value.clone().into() }
        );
        assert_eq!(decode_version(&encode_live(7)).expect("decodes"), Version::Live { create: 7 });
        // The deflate state is reused: values of every size, incompressible ones among them
        // (stored blocks, larger than the input), in turn, each still decodes to itself.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for len in [0, 1, 300, 70_000, 5, 300_000, 64] {
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            for each in [noise.clone(), value.repeat(len / value.len() + 1)] {
                assert_eq!(
                    decode_version(&encode_superseded(8, &each)).expect("decodes"),
                    Version::Put { create: 8, value: each.into() }
                );
            }
        }
        assert_eq!(decode_version(&TOMBSTONE).expect("decodes"), Version::Tombstone);
        let bytes = encode_log(LogKind::Update, 9, b"key");
        let entry = decode_log(&bytes).expect("decodes");
        assert_eq!(entry, LogEntry { kind: LogKind::Update, superseded: 9, key: b"key" });
    }

    #[test]
    fn corrupt_bytes_are_errors() {
        assert!(decode_current(b"k", &[1, 2, 3]).is_err());
        assert!(decode_current(&[0xff], &encode_current(1, 1, b"")).is_err());
        assert!(decode_version(&[]).is_err());
        assert!(decode_version(&[0, 1]).is_err());
        assert!(decode_version(&[1, 0]).is_err());
        assert!(decode_version(&[2, 0, 0, 0, 0, 0, 0, 0, 0, 9]).is_err());
        assert!(decode_version(&[3, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe]).is_err());
        assert!(decode_log(&[9; 12]).is_err());
        assert!(decode_log(&[1, 0]).is_err());
    }
}
