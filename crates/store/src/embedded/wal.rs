//! The write-ahead log: what makes a batch durable between two durable redb commits.
//!
//! A redb commit that syncs writes a dozen scattered pages (every tree a batch touches, with
//! the free-page records); appending one record to a file and syncing it costs about as much as
//! one `O_DSYNC` write. So most batches are committed to redb without a sync
//! ([`redb::Durability::None`]: visible to readers at once, on disk only after a later durable
//! commit) and made durable by appending their writes to this log first; every so often a
//! batch is committed durably instead (a checkpoint), after which the log is emptied (and the
//! emptying synced).
//!
//! A record holds the revision its batch started from, the batch's writes as the callers
//! asked for them and, when the writer knew it before logging, the revision after the batch.
//! Applying a batch is deterministic (the same writes on the same state give the same
//! outcomes, failed checks included), so replaying the records whose start revision is the
//! file's revision restores every acknowledged write; records from before it are already in
//! the file. Once replay has applied a record, every later record must start exactly where the
//! last one ended, and end where it says it does: anything else is a hard error, never a skip.
//!
//! Each append is synced before the next one starts, so only the last record can be torn (a
//! crash during an append, never answered): it is ignored, and cut off once replay has
//! committed. A damaged record followed by a record of the same generation is corruption, and
//! the log refuses to open.
//!
//! The file is allocated ahead ([`PREALLOCATED`] bytes of zeros) and never shortened below
//! that: an append overwrites blocks that already exist, so its sync writes the record alone,
//! not the file's new size through the filesystem's journal as well (on ext4 that is about a
//! third cheaper than an append to the end of a file). Emptying the log therefore cannot rely on
//! the file's length: the file starts with a header naming the log's *generation*, a random
//! number drawn at every emptying, and every record's checksum is mixed with it. Emptying
//! writes a new header; records of older generations that are still in the file no longer
//! check out and end the log like zeros do.
//!
//! File layout: `magic: [u8; 8], generation: u64, checksum: u64 (FNV-1a of magic and
//! generation)`, then records. Record layout: `len: u32, checksum: u64 (FNV-1a of the payload,
//! xor the generation), payload`; payload: `version: u8, from: i64, count: u32`, then per
//! write `tag: u8, guarded: u8, expected: i64, key_len: u32, key, value_len: u32, value`, then
//! `has_to: u8, to: i64` (little-endian). A log written before the header existed (records
//! from byte 0, checksums not mixed) is still read, replayed and then rewritten in this layout.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::Arc;

use super::apply::Op;
use super::schema::{Context, corrupt};
use crate::{Result, Revision, StoreError};

/// The name of the log file inside the data directory.
pub const FILE_NAME: &str = "store.wal";

const HEADER: usize = 4 + 8;
/// `O_DSYNC` where it is known to be Linux's usual number (the standard library has no
/// constant for it); elsewhere the log calls `fdatasync` after each write instead.
const O_DSYNC: Option<i32> = if cfg!(all(
    target_os = "linux",
    any(
        target_arch = "x86_64",
        target_arch = "x86",
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv64",
        target_arch = "powerpc64",
        target_arch = "s390x"
    )
)) {
    Some(0o10000)
} else {
    None
};
/// The first bytes of a log file with a header.
const MAGIC: [u8; 8] = *b"krustwal";
/// The file header: magic, generation, checksum.
const FILE_HEADER: u64 = 8 + 8 + 8;
/// The size the log file is allocated to (zeros) and kept at when emptied.
pub const PREALLOCATED: u64 = 2 * 1024 * 1024;
/// A log file that grew past this (a very large batch) is shrunk back when emptied.
const SHRINK_ABOVE: u64 = 4 * PREALLOCATED;
/// The version of the record layout, first byte of every payload.
const VERSION: u8 = 2;
/// The bytes after the writes: `has_to: u8, to: i64`.
const TRAILER: usize = 1 + 8;
const TAG_CREATE: u8 = 1;
const TAG_UPDATE: u8 = 2;
const TAG_DELETE: u8 = 3;

/// The file under the log: a seam for tests, which inject failures through it.
pub(super) trait LogFile: Send + std::fmt::Debug {
    /// Writes all of `bytes` at `offset`.
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<()>;
    /// Waits until the file's data (and size) is on disk.
    fn sync_data(&self) -> std::io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> std::io::Result<()>;
}

/// The log's file as a real store opens it: with `O_DSYNC` where known, so that each write
/// returns once its data is on disk, one system call per append (a write and an `fdatasync`
/// cost about a system call and a device flush more).
#[derive(Debug)]
struct SyncedFile(File);

impl LogFile for SyncedFile {
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        FileExt::write_all_at(&self.0, bytes, offset)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        match O_DSYNC {
            // Every write was synchronous.
            Some(_) => Ok(()),
            None => self.0.sync_data(),
        }
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        // `O_DSYNC` does not cover truncation.
        self.0.set_len(len)?;
        self.0.sync_data()
    }
}

impl LogFile for File {
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> std::io::Result<()> {
        FileExt::write_all_at(self, bytes, offset)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        File::sync_data(self)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        File::set_len(self, len)
    }
}

/// Wraps the opened log file (tests wrap it to inject failures); see [`plain_file`].
pub(super) type LogOpener = Arc<dyn Fn(File) -> Box<dyn LogFile> + Send + Sync>;

/// The [`LogOpener`] of a real store: the file itself, every write synchronous.
pub(super) fn plain_file() -> LogOpener {
    Arc::new(|file| Box::new(SyncedFile(file)))
}

/// One batch read back from the log.
#[derive(Debug)]
pub(super) struct Record {
    /// The revision before the batch.
    pub from: Revision,
    /// The revision after the batch, when it was known before the record was logged.
    pub to: Option<Revision>,
    /// The batch's writes, in order.
    pub ops: Vec<Op>,
}

/// The open log.
#[derive(Debug)]
pub(super) struct Wal {
    file: Box<dyn LogFile>,
    /// Where the valid records end (header included): where the next record is written.
    len: u64,
    /// The file's size (at least [`PREALLOCATED`] once emptied).
    size: u64,
    /// Mixed into every record's checksum; drawn anew at every emptying. Zero for a log read
    /// in the layout without a header, until it is emptied.
    generation: u64,
    /// Why appends are refused until the log is opened again (or emptied): the file may hold
    /// bytes past `len` that a crash would leave behind valid records.
    broken: Option<String>,
}

impl Wal {
    /// Opens (or creates) the log and reads its records. Nothing is cut here: a torn tail is
    /// ignored by the reader and removed by [`Wal::reset`] once replay has committed; until
    /// then appends are refused. A damaged record followed by a whole one fails the open.
    pub fn open(path: &Path, opener: &LogOpener) -> Result<(Wal, Vec<Record>)> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .custom_flags(O_DSYNC.unwrap_or(0))
            .open(path)
            .ctx("open write-ahead log")?;
        // The file's directory entry must be durable too, or a crash could lose the file with
        // the acknowledged writes in it.
        sync_dir(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).ctx("read write-ahead log")?;
        let size = u64::try_from(bytes.len()).map_err(|_| corrupt("write-ahead log too large"))?;
        let (records, valid, generation) = match file_header(&bytes)? {
            Some(generation) => {
                let (records, valid) = parse(&bytes, FILE_HEADER as usize, generation)?;
                (records, valid, generation)
            }
            None => {
                let (records, valid) = parse_headerless(&bytes)?;
                (records, valid, 0)
            }
        };
        // Nothing is cut or appended before replay has committed: appends wait for `reset`.
        let broken = Some("the write-ahead log is not emptied since it was opened".to_owned());
        let len = u64::try_from(valid).map_err(|_| corrupt("write-ahead log too large"))?;
        Ok((Wal { file: opener(file), len, size, generation, broken }, records))
    }

    /// Where the log's records end (its header included): where the next one goes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether appends are refused until the log is opened again.
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// Appends one encoded record ([`Draft::seal`]) at the end of the valid records and waits
    /// until it is on disk. On failure the record is cut back out, so that it is not replayed;
    /// if even that fails, the log is broken (appends refused until reopened).
    pub fn append(&mut self, record: &mut [u8]) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(StoreError::Backend {
                message: format!("write-ahead log unusable until reopened: {why}"),
                source: None,
            });
        }
        let size = u64::try_from(record.len()).map_err(|_| too_large())?;
        mix_generation(record, self.generation);
        let written = self.file.write_all_at(record, self.len).and_then(|()| self.file.sync_data());
        if let Err(error) = written {
            if let Err(cut) = self.file.write_all_at(&[0; HEADER], self.len) {
                self.broken = Some(format!("cannot cut a failed append back: {cut}"));
            }
            return Err(error).ctx("append to write-ahead log");
        }
        self.len += size;
        self.size = self.size.max(self.len);
        Ok(())
    }

    /// Cuts the log back to end at `len` (where a record that must not be replayed starts) by
    /// zeroing that record's header, and syncs the cut. On failure the log is broken: the
    /// record may still be replayed.
    pub fn cut(&mut self, len: u64) -> Result<()> {
        let cut = self.file.write_all_at(&[0; HEADER], len).and_then(|()| self.file.sync_data());
        if let Err(error) = cut {
            self.broken = Some(format!("cannot cut the log back: {error}"));
            return Err(error).ctx("cut write-ahead log back");
        }
        self.len = len;
        Ok(())
    }

    /// Empties the log (synced), once a durable commit holds everything in it: a new
    /// generation in the header, and the file brought back to its allocated size.
    pub fn reset(&mut self) -> Result<()> {
        let generation = next_generation(self.generation);
        let emptied = self.allocate().and_then(|()| {
            self.file.write_all_at(&encode_file_header(generation), 0)?;
            self.file.sync_data()
        });
        if let Err(error) = emptied {
            self.broken = Some(format!("cannot empty the log: {error}"));
            return Err(error).ctx("empty write-ahead log");
        }
        self.generation = generation;
        self.len = FILE_HEADER;
        self.broken = None;
        Ok(())
    }

    /// Brings the file to [`PREALLOCATED`] bytes: zeros written where it is shorter (so that
    /// appends overwrite allocated blocks), cut where a huge batch made it much longer. Synced
    /// by the caller.
    fn allocate(&mut self) -> std::io::Result<()> {
        if self.size > SHRINK_ABOVE {
            self.file.set_len(PREALLOCATED)?;
            self.size = PREALLOCATED;
        }
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        while self.size < PREALLOCATED {
            let n = (PREALLOCATED - self.size).min(ZEROS.len() as u64);
            #[allow(clippy::cast_possible_truncation)] // at most ZEROS.len()
            self.file.write_all_at(&ZEROS[..n as usize], self.size)?;
            self.size += n;
        }
        Ok(())
    }
}

/// The log's generation from its header; `None` for a file without one (empty, or the older
/// layout). A header that starts right but does not check out is corruption.
fn file_header(bytes: &[u8]) -> Result<Option<u64>> {
    let Some(header) = bytes.get(..FILE_HEADER as usize) else { return Ok(None) };
    if header[..8] != MAGIC {
        // A record of the older layout starts with its length and checksum, which match the
        // magic in a byte or two at most by chance; a magic a bit or two off is damage.
        let differing = header[..8].iter().zip(MAGIC).filter(|(a, b)| **a != *b).count();
        if differing > 2 {
            return Ok(None);
        }
    }
    let mut word = [0; 8];
    word.copy_from_slice(&header[8..16]);
    let generation = u64::from_le_bytes(word);
    word.copy_from_slice(&header[16..24]);
    if header[..8] != MAGIC
        || checksum(&header[..16]) != u64::from_le_bytes(word)
        || generation == 0
    {
        return Err(corrupt(
            "the write-ahead log's header is damaged; refusing to open so that no acknowledged \
             write is dropped",
        ));
    }
    Ok(Some(generation))
}

fn encode_file_header(generation: u64) -> [u8; FILE_HEADER as usize] {
    let mut header = [0; FILE_HEADER as usize];
    header[..8].copy_from_slice(&MAGIC);
    header[8..16].copy_from_slice(&generation.to_le_bytes());
    let sum = checksum(&header[..16]);
    header[16..].copy_from_slice(&sum.to_le_bytes());
    header
}

/// A random generation, never zero and never `previous`.
fn next_generation(previous: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut attempt = 0u64;
    loop {
        // `RandomState` is seeded from the operating system's randomness.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(previous);
        hasher.write_u64(attempt);
        let generation = hasher.finish();
        if generation != 0 && generation != previous {
            return generation;
        }
        attempt += 1;
    }
}

/// Mixes the generation into a sealed record's checksum.
fn mix_generation(record: &mut [u8], generation: u64) {
    if let Some(sum) = record.get_mut(4..HEADER) {
        let mut word = [0; 8];
        word.copy_from_slice(sum);
        sum.copy_from_slice(&(u64::from_le_bytes(word) ^ generation).to_le_bytes());
    }
}

/// Syncs the directory holding `path` (a bare file name lives in `.`).
pub(super) fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).ctx("sync store directory")
}

fn too_large() -> StoreError {
    StoreError::Backend {
        message: "batch too large for the write-ahead log (a length over 4 GiB)".into(),
        source: None,
    }
}

/// A length as the log stores it: fails over `u32::MAX`.
fn length(n: usize) -> Result<[u8; 4]> {
    u32::try_from(n).map(u32::to_le_bytes).map_err(|_| too_large())
}

/// FNV-1a, 64 bits: enough to tell a torn record from a whole one.
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Continues an FNV-1a hash over `bytes`.
fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |hash, b| (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn checksum(bytes: &[u8]) -> u64 {
    fnv(FNV_START, bytes)
}

/// A record without its trailer (the revision after the batch, known only once the batch is
/// applied) and the checksum of what it holds so far.
#[derive(Debug)]
pub(super) struct Draft {
    bytes: Vec<u8>,
    hash: u64,
}

/// Encodes the writes of a batch starting after `from`; [`Draft::seal`] finishes the record.
/// Fails when a length does not fit the log's `u32`s.
pub(super) fn encode(from: Revision, ops: &[Op]) -> Result<Draft> {
    let size: usize = ops
        .iter()
        .map(|op| match op {
            Op::Create { key, value } | Op::Update { key, value, .. } => key.len() + value.len(),
            Op::Delete { key, .. } => key.len(),
        } + 18)
        .sum();
    let mut out = Vec::with_capacity(HEADER + 13 + size + TRAILER);
    out.extend_from_slice(&[0; HEADER]);
    out.push(VERSION);
    out.extend_from_slice(&from.to_le_bytes());
    out.extend_from_slice(&length(ops.len())?);
    for op in ops {
        let (tag, guard, key, value): (u8, Option<i64>, &str, &[u8]) = match op {
            Op::Create { key, value } => (TAG_CREATE, None, key, value),
            Op::Update { key, value, expected } => (TAG_UPDATE, Some(*expected), key, value),
            Op::Delete { key, expected } => (TAG_DELETE, *expected, key, &[]),
        };
        out.push(tag);
        out.push(u8::from(guard.is_some()));
        out.extend_from_slice(&guard.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&length(key.len())?);
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&length(value.len())?);
        out.extend_from_slice(value);
    }
    // The whole payload, trailer included, must fit the header's length.
    length(out.len() - HEADER + TRAILER)?;
    let hash = fnv(FNV_START, &out[HEADER..]);
    Ok(Draft { bytes: out, hash })
}

impl Draft {
    /// The finished record, with the revision after the batch when it is known.
    pub fn seal(mut self, to: Option<Revision>) -> Vec<u8> {
        let start = self.bytes.len();
        self.bytes.push(u8::from(to.is_some()));
        self.bytes.extend_from_slice(&to.unwrap_or(0).to_le_bytes());
        let hash = fnv(self.hash, &self.bytes[start..]);
        // `encode` checked that the payload's length fits.
        let payload_len = u32::try_from(self.bytes.len() - HEADER).unwrap_or(u32::MAX);
        self.bytes[..4].copy_from_slice(&payload_len.to_le_bytes());
        self.bytes[4..HEADER].copy_from_slice(&hash.to_le_bytes());
        self.bytes
    }
}

/// A record's header at `at`, if the bytes hold one: its payload's length and its checksum.
fn record_header(bytes: &[u8], at: usize) -> Option<(usize, u64)> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut sum = [0; 8];
    sum.copy_from_slice(&header[4..]);
    Some((len, u64::from_le_bytes(sum)))
}

/// The record starting at `at` if it is whole and of this generation: its payload and end.
fn record_at(bytes: &[u8], at: usize, generation: u64) -> Option<(&[u8], usize)> {
    let (len, sum) = record_header(bytes, at)?;
    let end = (at + HEADER).checked_add(len)?;
    let payload = bytes.get(at + HEADER..end)?;
    (len > 0 && checksum(payload) ^ generation == sum).then_some((payload, end))
}

/// The records of this generation from `start`, and where they end. The log ends at the first
/// record that does not check out (a torn append, zeros, or a record of an older generation);
/// if a record of this generation follows it, the damage is in the middle and the log is
/// corrupt.
fn parse(bytes: &[u8], start: usize, generation: u64) -> Result<(Vec<Record>, usize)> {
    let mut records = Vec::new();
    let mut at = start;
    loop {
        let Some((payload, end)) = record_at(bytes, at, generation) else {
            check_tail(bytes, at, generation)?;
            return Ok((records, at));
        };
        records.push(decode(payload).map_err(|error| {
            corrupt(format!("write-ahead log record at byte {at} cannot be read: {error}"))
        })?);
        at = end;
    }
}

/// How many payload bytes the search for records after the end may check, at most: far more
/// than a log holds between two checkpoints; past it the log is not trusted.
const TAIL_SCAN_BUDGET: usize = 256 * 1024 * 1024;

/// Fails when a record of this generation lies anywhere after the end of the records read (at
/// `at`): appends only ever happen at the end and cuts only remove the last record, so such a
/// record means damage in the middle (a zeroed sector, a bad length), not a torn tail.
fn check_tail(bytes: &[u8], at: usize, generation: u64) -> Result<()> {
    let mut budget = TAIL_SCAN_BUDGET;
    for offset in at + 1..bytes.len().saturating_sub(HEADER) {
        let Some((len, _)) = record_header(bytes, offset) else { break };
        let start = offset + HEADER;
        let Some(payload) = start.checked_add(len).and_then(|end| bytes.get(start..end)) else {
            continue;
        };
        if payload.first() != Some(&VERSION) {
            continue;
        }
        budget = budget.checked_sub(len).ok_or_else(|| {
            corrupt(format!(
                "write-ahead log damaged at byte {at}, and what follows cannot be checked \
                 for whole records; refusing to open so that no acknowledged write is dropped"
            ))
        })?;
        if record_at(bytes, offset, generation).is_some() {
            return Err(corrupt(format!(
                "write-ahead log record at byte {at} is damaged and a whole record follows at \
                 byte {offset} (only the last record can be torn); refusing to open so that no \
                 acknowledged write is dropped"
            )));
        }
    }
    Ok(())
}

/// The records of a log in the layout without a header. A bad record is a torn tail only
/// when it is the last thing in the file (its declared end is at or past the end of the file,
/// or only zeros follow it); otherwise the log is corrupt.
fn parse_headerless(bytes: &[u8]) -> Result<(Vec<Record>, usize)> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Some((len, sum)) = record_header(rest, 0) else { break };
        let end = HEADER + len;
        let Some(payload) = rest.get(HEADER..end) else { break };
        if checksum(payload) != sum {
            if rest[end..].iter().all(|b| *b == 0) {
                break;
            }
            return Err(corrupt(format!(
                "write-ahead log record at byte {at} is damaged and {} bytes follow it \
                 (only the last record can be torn); refusing to open so that no acknowledged \
                 write is dropped",
                rest.len() - end
            )));
        }
        let record = decode(payload).map_err(|error| {
            corrupt(format!("write-ahead log record at byte {at} cannot be read: {error}"))
        })?;
        records.push(record);
        at += end;
    }
    Ok((records, at))
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
    let version = c.take(1)?[0];
    if version != VERSION {
        return Err(corrupt(format!(
            "write-ahead log record version {version} (expected {VERSION})"
        )));
    }
    let from = c.i64()?;
    let count = c.u32()?;
    let mut ops = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        let tag = c.take(1)?[0];
        let guarded = match c.take(1)?[0] {
            0 => false,
            1 => true,
            _ => return Err(corrupt("bad write-ahead log guard flag")),
        };
        let expected = c.i64()?;
        let key_len = c.u32()?;
        let key = std::str::from_utf8(c.take(key_len)?)
            .map_err(|_| corrupt("write-ahead log key is not UTF-8"))?
            .to_owned();
        let value_len = c.u32()?;
        let value = c.take(value_len)?.to_vec();
        ops.push(match (tag, guarded) {
            (TAG_CREATE, false) => Op::Create { key, value },
            (TAG_UPDATE, true) => Op::Update { key, value, expected },
            (TAG_DELETE, _) => Op::Delete { key, expected: guarded.then_some(expected) },
            _ => return Err(corrupt("bad write-ahead log tag")),
        });
    }
    let to = match c.take(1)?[0] {
        0 => None,
        1 => Some(c.i64()?),
        _ => return Err(corrupt("bad write-ahead log trailer")),
    };
    if to.is_none() {
        c.take(8)?;
    }
    if !c.0.is_empty() {
        return Err(corrupt("write-ahead log record has trailing bytes"));
    }
    Ok(Record { from, to, ops })
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
            Op::Delete { key: "/d".into(), expected: Some(i64::MIN) },
        ]
    }

    fn record(from: Revision, to: Option<Revision>, ops: &[Op]) -> Vec<u8> {
        encode(from, ops).expect("encode").seal(to)
    }

    fn open(path: &Path) -> Result<(Wal, Vec<Record>)> {
        Wal::open(path, &plain_file())
    }

    /// Writes `bytes` into the log file at `offset`.
    fn write_raw(path: &Path, bytes: &[u8], offset: u64) {
        let file = std::fs::OpenOptions::new().write(true).open(path).expect("open");
        FileExt::write_all_at(&file, bytes, offset).expect("write");
    }

    fn size(path: &Path) -> u64 {
        std::fs::metadata(path).expect("stat").len()
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_ignored_then_cut_by_reset() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(FILE_NAME);
        let end = {
            let (mut wal, records) = open(&path).expect("open");
            assert!(records.is_empty());
            wal.reset().expect("reset");
            assert_eq!(size(&path), PREALLOCATED);
            wal.append(&mut record(5, Some(8), &ops())).expect("append");
            wal.append(&mut record(9, None, &ops()[..1])).expect("append");
            // Appends overwrite the allocated file: its size does not change.
            assert_eq!(size(&path), PREALLOCATED);
            wal.len()
        };
        // A crash in the middle of a third append.
        let third = record(10, None, &ops());
        write_raw(&path, &third[..third.len() - 3], end);
        let (mut wal, records) = open(&path).expect("reopen");
        assert_eq!(records.len(), 2);
        assert_eq!((records[0].from, records[0].to), (5, Some(8)));
        assert_eq!(format!("{:?}", records[0].ops), format!("{:?}", ops()));
        assert_eq!((records[1].from, records[1].to), (9, None));
        assert_eq!(wal.len(), end);
        // Finding 3: nothing is cut before replay has committed, and appends wait for it.
        assert!(wal.is_broken());
        assert!(wal.append(&mut record(11, None, &ops())).is_err());
        wal.reset().expect("reset");
        assert_eq!(wal.len(), FILE_HEADER);
        // The same length as the first record: the second, of the older generation, follows it.
        wal.append(&mut record(11, None, &ops())).expect("append after reset");
        let (_, records) = open(&path).expect("reopen");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].from, 11);
    }

    /// A record cut back (a batch that must not be replayed) ends the log, and the next append
    /// takes its place.
    #[test]
    fn a_cut_record_is_not_read_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(FILE_NAME);
        let (mut wal, _) = open(&path).expect("open");
        wal.reset().expect("reset");
        wal.append(&mut record(1, Some(2), &ops()[..1])).expect("append");
        let start = wal.len();
        wal.append(&mut record(2, Some(7), &ops())).expect("append");
        wal.cut(start).expect("cut");
        let (_, records) = open(&path).expect("reopen");
        assert_eq!(records.len(), 1);
        wal.append(&mut record(2, Some(3), &ops()[..1])).expect("append");
        let (_, records) = open(&path).expect("reopen");
        assert_eq!(records.iter().map(|r| r.to).collect::<Vec<_>>(), [Some(2), Some(3)]);
    }

    /// A log in the layout without a header is read, and emptied into the current layout.
    #[test]
    fn a_log_without_a_header_is_replayed_then_rewritten() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(FILE_NAME);
        let old = [record(1, Some(2), &ops()[..1]), record(2, Some(3), &ops()[..1])].concat();
        std::fs::write(&path, &old).expect("write");
        let (mut wal, records) = open(&path).expect("open");
        assert_eq!(records.len(), 2);
        wal.reset().expect("reset");
        assert!(open(&path).expect("reopen").1.is_empty());
        wal.append(&mut record(3, Some(4), &ops()[..1])).expect("append");
        assert_eq!(open(&path).expect("reopen").1.len(), 1);
    }

    /// A damaged file header refuses to open, the magic's bytes included.
    #[test]
    fn damaged_header_refuses_to_open() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(FILE_NAME);
        for at in [9, 0, 7] {
            let mut header = encode_file_header(7);
            header[at] ^= 1;
            let record = mixed(record(1, Some(2), &ops()[..1]), 7);
            std::fs::write(&path, [header.as_slice(), &record].concat()).expect("write");
            let error = open(&path).expect_err("damaged header");
            assert!(error.to_string().contains("header is damaged"), "{error}");
        }
    }

    /// A record whose header was zeroed (a lost sector) with records after it is damage in
    /// the middle, not the end of the log.
    #[test]
    fn a_zeroed_record_header_in_the_middle_refuses_to_open() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(FILE_NAME);
        let generation = 11;
        let first = mixed(record(1, Some(2), &ops()[..1]), generation);
        let mut second = mixed(record(2, Some(3), &ops()[..1]), generation);
        let third = mixed(record(3, Some(4), &ops()[..1]), generation);
        second[..HEADER].fill(0);
        let header = encode_file_header(generation);
        std::fs::write(&path, [header.as_slice(), &first, &second, &third].concat())
            .expect("write");
        let error = open(&path).expect_err("damage in the middle");
        assert!(error.to_string().contains("whole record follows"), "{error}");
    }

    /// Finding 2: a guarded delete expecting `i64::MIN` stays guarded (no sentinel value).
    #[test]
    fn guarded_delete_of_i64_min_is_not_logged_as_unguarded() {
        let ops = [Op::Delete { key: "/d".into(), expected: Some(i64::MIN) }];
        let bytes = record(1, Some(1), &ops);
        let (records, _) = parse_headerless(&bytes).expect("parse");
        assert!(matches!(records[0].ops[0], Op::Delete { expected: Some(i64::MIN), .. }));
        let ops = [Op::Delete { key: "/d".into(), expected: None }];
        let (records, _) = parse_headerless(&record(1, None, &ops)).expect("parse");
        assert!(matches!(records[0].ops[0], Op::Delete { expected: None, .. }));
    }

    /// A record as the log writes it under `generation`.
    fn mixed(mut record: Vec<u8>, generation: u64) -> Vec<u8> {
        mix_generation(&mut record, generation);
        record
    }

    /// Finding 3: a damaged record followed by more records refuses to open, and the file is
    /// left as it was.
    #[test]
    fn damaged_record_in_the_middle_refuses_to_open() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join(FILE_NAME);
        let generation = 0x5eed;
        let header = encode_file_header(generation);
        let first = mixed(record(1, Some(2), &ops()[..1]), generation);
        let mut second = mixed(record(2, Some(3), &ops()[..1]), generation);
        let third = mixed(record(3, Some(4), &ops()[..1]), generation);
        let last = second.len() - 1;
        second[last] ^= 0x40;
        let file = [header.as_slice(), &first, &second, &third, &[0; 64]].concat();
        std::fs::write(&path, &file).expect("write");
        let error = open(&path).expect_err("a damaged record in the middle");
        assert!(error.to_string().contains("is damaged"), "{error}");
        assert_eq!(std::fs::read(&path).expect("read"), file);

        // The same damage at the end is a torn tail, whether zeros or records of an older
        // generation follow it.
        let older = mixed(record(3, Some(4), &ops()[..1]), generation + 1);
        for tail in [&[0; 64][..], &older] {
            std::fs::write(&path, [header.as_slice(), &first, &second, tail].concat())
                .expect("write");
            assert_eq!(open(&path).expect("torn tail").1.len(), 1);
        }

        // Without a header: damage is a torn tail only when nothing but zeros follows it.
        let second = &second;
        std::fs::write(&path, [first.as_slice(), second, &third].concat()).expect("write");
        assert!(open(&path).is_err());
        let first = record(1, Some(2), &ops()[..1]);
        std::fs::write(&path, [first.as_slice(), second, &[0; 64]].concat()).expect("write");
        assert_eq!(open(&path).expect("zeros after the tail").1.len(), 1);
    }

    /// Finding 3: a record whose checksum holds but which cannot be decoded is an error too.
    #[test]
    fn undecodable_record_refuses_to_open() {
        let mut bytes = record(1, None, &ops()[..1]);
        bytes[HEADER] = 9; // version
        let sum = checksum(&bytes[HEADER..]);
        bytes[4..HEADER].copy_from_slice(&sum.to_le_bytes());
        assert!(parse_headerless(&bytes).is_err());
        let generation = 3;
        let file = [encode_file_header(generation).as_slice(), &mixed(bytes, generation)].concat();
        assert!(parse(&file, FILE_HEADER as usize, generation).is_err());
    }

    /// Finding 7: lengths that do not fit the log's `u32`s are refused, not wrapped.
    #[test]
    fn lengths_over_u32_are_rejected() {
        assert!(length(usize::try_from(u64::from(u32::MAX) + 1).expect("64-bit")).is_err());
        assert_eq!(length(5).expect("small"), 5u32.to_le_bytes());
    }

    /// Finding 8: a failed cut-back after a failed append breaks the log instead of leaving
    /// the record (and later appends at an unexpected offset).
    #[test]
    fn failed_cleanup_breaks_the_log() {
        #[derive(Debug)]
        struct Failing;
        impl LogFile for Failing {
            fn write_all_at(&self, _: &[u8], _: u64) -> std::io::Result<()> {
                Err(std::io::Error::other("injected write failure"))
            }
            fn sync_data(&self) -> std::io::Result<()> {
                Ok(())
            }
            fn set_len(&self, _: u64) -> std::io::Result<()> {
                Err(std::io::Error::other("injected truncate failure"))
            }
        }
        let mut wal = Wal {
            file: Box::new(Failing),
            len: FILE_HEADER,
            size: PREALLOCATED,
            generation: 1,
            broken: None,
        };
        assert!(wal.append(&mut record(1, None, &ops())).is_err());
        assert!(wal.is_broken());
        assert!(wal.reset().is_err());
        assert!(wal.is_broken());
    }
}
