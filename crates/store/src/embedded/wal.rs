//! The write-ahead log: what makes a batch durable between two durable redb commits.
//!
//! A redb commit that syncs writes a dozen scattered pages (every tree a batch touches, with
//! the free-page records); appending one record to a file and syncing it costs about as much as
//! one `O_DSYNC` write. So most batches are committed to redb without a sync
//! ([`redb::Durability::None`]: visible to readers at once, on disk only after a later durable
//! commit) and made durable by appending their writes to this log first; every so often a
//! batch is committed durably instead (a checkpoint), after which the log is emptied.
//!
//! A record holds the revision its batch started from and the batch's writes as the callers
//! asked for them. Applying a batch is deterministic (the same writes on the same state give
//! the same outcomes, failed checks included), so replaying the records whose start revision
//! is the file's revision restores every acknowledged write; records from before it are
//! already in the file. A torn record at the end (a crash during an append, never answered)
//! fails its checksum and ends the replay.
//!
//! Record layout: `len: u32, checksum: u64 (FNV-1a of the payload), payload`; payload:
//! `from: i64, count: u32`, then per write `tag: u8, expected: i64, key_len: u32, key,
//! value_len: u32, value` (little-endian).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::commit::Op;
use super::schema::{Context, corrupt};
use crate::{Result, Revision};

/// The name of the log file inside the data directory.
pub const FILE_NAME: &str = "store.wal";

const HEADER: usize = 4 + 8;
const TAG_CREATE: u8 = 1;
const TAG_UPDATE: u8 = 2;
const TAG_DELETE: u8 = 3;
/// `expected` of a delete without a guard.
const UNGUARDED: i64 = i64::MIN;

/// One batch read back from the log.
#[derive(Debug)]
pub(super) struct Record {
    /// The revision before the batch.
    pub from: Revision,
    /// The batch's writes, in order.
    pub ops: Vec<Op>,
}

/// The open log, positioned at its end.
#[derive(Debug)]
pub(super) struct Wal {
    file: File,
    /// Bytes of valid records.
    len: u64,
}

impl Wal {
    /// Opens (or creates) the log and reads its records; a torn tail is cut off.
    pub fn open(path: &Path) -> Result<(Wal, Vec<Record>)> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx("open write-ahead log")?;
        // The file's directory entry must be durable too, or a crash could lose the file with
        // the acknowledged writes in it.
        if let Some(dir) = path.parent() {
            File::open(dir).and_then(|d| d.sync_all()).ctx("sync store directory")?;
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ctx("read write-ahead log")?;
        let (records, valid) = parse(&bytes);
        if valid < bytes.len() {
            tracing::warn!(cut = bytes.len() - valid, "write-ahead log ends in a torn record");
            file.set_len(valid as u64).ctx("truncate write-ahead log")?;
        }
        file.seek(SeekFrom::Start(valid as u64)).ctx("seek write-ahead log")?;
        Ok((Wal { file, len: valid as u64 }, records))
    }

    /// Bytes of records in the log.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends one encoded record ([`encode`]) and waits until it is on disk. On failure the
    /// log is cut back to what it held, so that the record is not replayed.
    pub fn append(&mut self, record: &[u8]) -> Result<()> {
        let written = self.file.write_all(record).and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(error).ctx("append to write-ahead log");
        }
        self.len += record.len() as u64;
        Ok(())
    }

    /// Empties the log, once a durable commit holds everything in it. Not synced: records that
    /// come back after a crash are older than the file's revision and skipped.
    pub fn reset(&mut self) -> Result<()> {
        self.file.set_len(0).ctx("empty write-ahead log")?;
        self.file.seek(SeekFrom::Start(0)).ctx("seek write-ahead log")?;
        self.len = 0;
        Ok(())
    }
}

/// FNV-1a, 64 bits: enough to tell a torn record from a whole one.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Encodes the record of a batch starting after `from`.
pub(super) fn encode(from: Revision, ops: &[Op]) -> Vec<u8> {
    let size: usize = ops
        .iter()
        .map(|op| match op {
            Op::Create { key, value } | Op::Update { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } => key.len(),
        } + 17)
        .sum();
    let mut out = Vec::with_capacity(HEADER + 12 + size);
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&from.to_le_bytes());
    out.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        let (tag, expected, key, value): (u8, i64, &str, &[u8]) = match op {
            Op::Create { key, value } => (TAG_CREATE, 0, key, value),
            Op::Update { key, value, expected } => (TAG_UPDATE, *expected, key, value),
            Op::Delete { key, expected } => (TAG_DELETE, expected.unwrap_or(UNGUARDED), key, &[]),
        };
        out.push(tag);
        out.extend_from_slice(&expected.to_le_bytes());
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    let payload_len = (out.len() - HEADER) as u32;
    let sum = checksum(&out[HEADER..]);
    out[..4].copy_from_slice(&payload_len.to_le_bytes());
    out[4..HEADER].copy_from_slice(&sum.to_le_bytes());
    out
}

/// The whole records at the start of `bytes`, and how many bytes they take.
fn parse(bytes: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut sum = [0; 8];
        sum.copy_from_slice(&header[4..]);
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
        if checksum(payload) != u64::from_le_bytes(sum) {
            break;
        }
        match decode(payload) {
            Ok(record) => records.push(record),
            Err(error) => {
                tracing::warn!(%error, "undecodable write-ahead log record");
                break;
            }
        }
        at += HEADER + len;
    }
    (records, at)
}

/// Reads from a record's payload.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(corrupt("short write-ahead log record"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i64(&mut self) -> Result<i64> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(b))
    }

    fn u32(&mut self) -> Result<usize> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b) as usize)
    }
}

fn decode(payload: &[u8]) -> Result<Record> {
    let mut c = Cursor(payload);
    let from = c.i64()?;
    let count = c.u32()?;
    let mut ops = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        let tag = c.take(1)?[0];
        let expected = c.i64()?;
        let key_len = c.u32()?;
        let key = std::str::from_utf8(c.take(key_len)?)
            .map_err(|_| corrupt("write-ahead log key is not UTF-8"))?
            .to_owned();
        let value_len = c.u32()?;
        let value = c.take(value_len)?.to_vec();
        ops.push(match tag {
            TAG_CREATE => Op::Create { key, value },
            TAG_UPDATE => Op::Update { key, value, expected },
            TAG_DELETE => Op::Delete { key, expected: (expected != UNGUARDED).then_some(expected) },
            _ => return Err(corrupt("bad write-ahead log tag")),
        });
    }
    Ok(Record { from, ops })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops() -> Vec<Op> {
        vec![
            Op::Create { key: "/a".into(), value: b"1".to_vec() },
            Op::Update { key: "/a".into(), value: b"22".to_vec(), expected: 7 },
            Op::Delete { key: "/b".into(), expected: None },
            Op::Delete { key: "/c".into(), expected: Some(3) },
        ]
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(FILE_NAME);
        {
            let (mut wal, records) = Wal::open(&path).expect("open");
            assert!(records.is_empty());
            wal.append(&encode(5, &ops())).expect("append");
            wal.append(&encode(9, &ops()[..1])).expect("append");
        }
        // A crash in the middle of a third append.
        let third = encode(10, &ops());
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&third[..third.len() - 3]).expect("write");
        drop(file);
        let (mut wal, records) = Wal::open(&path).expect("reopen");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].from, 5);
        assert_eq!(format!("{:?}", records[0].ops), format!("{:?}", ops()));
        assert_eq!(records[1].from, 9);
        let kept = wal.len();
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), kept);
        wal.reset().expect("reset");
        assert_eq!(wal.len(), 0);
        let (_, records) = Wal::open(&path).expect("reopen");
        assert!(records.is_empty());
    }
}
