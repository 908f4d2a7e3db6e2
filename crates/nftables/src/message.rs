//! nf_tables netlink messages, encoded by hand from the kernel's UAPI
//! (`linux/netfilter/nf_tables.h`, `nfnetlink.h`): a batch of table, chain, rule, set and
//! set-element messages that the kernel applies as one transaction.
//!
//! Integers inside nf_tables attributes are big-endian; nested attributes carry
//! `NLA_F_NESTED`. Pure: bytes in, bytes out.

/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS: u16 = 10;
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLA_F_NESTED: u16 = 0x8000;

/// `NFPROTO_IPV4`.
pub const FAMILY_IPV4: u8 = 2;

/// The most ranges one set-element message carries: a range is at most two elements of
/// about 40 bytes each (an IPv6 key with its data), and the element list is one attribute,
/// whose length is 16 bits.
pub const ELEMENTS_PER_MESSAGE: usize = 256;

/// nf_tables message types (`nf_tables_msg_types`).
#[derive(Debug, Clone, Copy)]
#[repr(u16)]
enum Kind {
    NewTable = 0,
    DelTable = 2,
    NewChain = 3,
    DelChain = 5,
    NewRule = 6,
    DelRule = 8,
    NewSet = 9,
    DelSet = 11,
    NewSetElem = 12,
    DelSetElem = 14,
}

/// Attributes being built: type-length-value records, each padded to four bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Attrs(Vec<u8>);

impl Attrs {
    /// No attributes yet.
    pub fn new() -> Self {
        Attrs(Vec::new())
    }

    /// Adds an attribute holding `value`.
    pub fn bytes(mut self, kind: u16, value: &[u8]) -> Self {
        let len = u16::try_from(4 + value.len()).unwrap_or(u16::MAX);
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(value);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }

    /// Adds a big-endian `u32`.
    pub fn u32(self, kind: u16, value: u32) -> Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    /// Adds a big-endian `u64`.
    pub fn u64(self, kind: u16, value: u64) -> Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    /// Adds a NUL-terminated string.
    pub fn string(self, kind: u16, value: &str) -> Self {
        let mut bytes = value.as_bytes().to_vec();
        bytes.push(0);
        self.bytes(kind, &bytes)
    }

    /// Adds `inner` nested under `kind`.
    pub fn nested(self, kind: u16, inner: Attrs) -> Self {
        self.bytes(kind | NLA_F_NESTED, &inner.0)
    }

    /// Adds each of `items` as an `NFTA_LIST_ELEM` of a list under `kind`.
    pub fn list(self, kind: u16, items: impl IntoIterator<Item = Attrs>) -> Self {
        let list = items.into_iter().fold(Attrs::new(), |list, item| list.nested(1, item));
        self.nested(kind, list)
    }
}

/// A jump target or final decision (`nft_verdicts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Drop the packet (`NF_DROP`).
    Drop,
    /// Accept the packet (`NF_ACCEPT`).
    Accept,
    /// Continue in `chain`, then come back.
    Jump(String),
    /// Continue in `chain`, never back.
    Goto(String),
    /// Back to the calling chain.
    Return,
}

impl Verdict {
    /// The verdict as `NFTA_DATA_VERDICT` data.
    pub fn data(&self) -> Attrs {
        let (code, chain): (i32, Option<&str>) = match self {
            Verdict::Drop => (0, None),
            Verdict::Accept => (1, None),
            Verdict::Jump(c) => (-3, Some(c)),
            Verdict::Goto(c) => (-4, Some(c)),
            Verdict::Return => (-5, None),
        };
        let mut verdict = Attrs::new().u32(1, code as u32);
        if let Some(chain) = chain {
            verdict = verdict.string(2, chain);
        }
        Attrs::new().nested(2, verdict)
    }
}

/// Plain data (`NFTA_DATA_VALUE`).
pub fn value(bytes: &[u8]) -> Attrs {
    Attrs::new().bytes(1, bytes)
}

/// A base chain's hook.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    /// `NF_INET_*`: 0 prerouting, 1 input, 2 forward, 3 output, 4 postrouting.
    pub number: u32,
    /// Priority (-100 for DNAT, 100 for SNAT).
    pub priority: i32,
    /// `nat` or `filter`.
    pub kind: &'static str,
}

/// A batch of messages, applied by the kernel all or nothing.
#[derive(Debug)]
pub struct Batch {
    bytes: Vec<u8>,
    seq: u32,
    family: u8,
    table: String,
    messages: usize,
    next_set_id: u32,
}

impl Batch {
    /// A batch for `table` of `family`, its messages numbered from `seq`.
    pub fn new(family: u8, table: &str, seq: u32) -> Self {
        let mut batch = Batch {
            bytes: Vec::new(),
            seq,
            family,
            table: table.to_string(),
            messages: 0,
            next_set_id: 100,
        };
        batch.push(BATCH_BEGIN, 0, 0, Attrs::new());
        batch
    }

    /// The number of messages besides the batch's begin and end.
    pub fn len(&self) -> usize {
        self.messages
    }

    /// Whether the batch holds no message.
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Its size in bytes so far.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The next sequence number.
    pub fn next_seq(&self) -> u32 {
        self.seq
    }

    /// The bytes to send, ended.
    pub fn finish(mut self) -> Vec<u8> {
        self.push(BATCH_END, 0, 0, Attrs::new());
        self.bytes
    }

    fn push(&mut self, kind: u16, flags: u16, family: u8, attrs: Attrs) {
        let (kind, res_id) = match kind {
            BATCH_BEGIN | BATCH_END => (kind, SUBSYS),
            k => ((SUBSYS << 8) | k, 0),
        };
        let len = u32::try_from(16 + 4 + attrs.0.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_ne_bytes());
        self.bytes.extend_from_slice(&kind.to_ne_bytes());
        self.bytes.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        self.bytes.extend_from_slice(&self.seq.to_ne_bytes());
        self.bytes.extend_from_slice(&0u32.to_ne_bytes());
        self.bytes.push(family);
        self.bytes.push(0);
        self.bytes.extend_from_slice(&res_id.to_be_bytes());
        self.bytes.extend_from_slice(&attrs.0);
        self.seq = self.seq.wrapping_add(1);
    }

    fn message(&mut self, kind: Kind, flags: u16, attrs: Attrs) {
        self.messages += 1;
        let family = self.family;
        self.push(kind as u16, flags, family, attrs);
    }

    /// Adds the table if it is missing.
    pub fn add_table(&mut self) {
        let attrs = Attrs::new().string(1, &self.table);
        self.message(Kind::NewTable, NLM_F_CREATE, attrs);
    }

    /// Deletes the table and everything in it.
    pub fn delete_table(&mut self) {
        let attrs = Attrs::new().string(1, &self.table);
        self.message(Kind::DelTable, 0, attrs);
    }

    /// Adds a chain, a base chain when `hook` is given (policy accept).
    pub fn add_chain(&mut self, name: &str, hook: Option<Hook>) {
        let mut attrs = Attrs::new().string(1, &self.table).string(3, name);
        if let Some(hook) = hook {
            attrs = attrs
                .nested(4, Attrs::new().u32(1, hook.number).u32(2, hook.priority as u32))
                .u32(5, 1)
                .string(7, hook.kind);
        }
        self.message(Kind::NewChain, NLM_F_CREATE, attrs);
    }

    /// Empties a chain of its rules.
    pub fn flush_chain(&mut self, name: &str) {
        let attrs = Attrs::new().string(1, &self.table).string(2, name);
        self.message(Kind::DelRule, 0, attrs);
    }

    /// Deletes an empty chain nothing refers to.
    pub fn delete_chain(&mut self, name: &str) {
        let attrs = Attrs::new().string(1, &self.table).string(3, name);
        self.message(Kind::DelChain, 0, attrs);
    }

    /// Appends a rule of `expressions` to `chain`.
    pub fn add_rule(&mut self, chain: &str, expressions: Vec<Attrs>) {
        let attrs = Attrs::new().string(1, &self.table).string(2, chain).list(4, expressions);
        self.message(Kind::NewRule, NLM_F_CREATE | NLM_F_APPEND, attrs);
    }

    /// Adds a verdict map named `name` whose keys are `key_len` bytes (`key_type` is the
    /// type id `nft` prints them by).
    pub fn add_verdict_map(&mut self, name: &str, id: u32, key_type: u32, key_len: u32) {
        let attrs = Attrs::new()
            .string(1, &self.table)
            .string(2, name)
            .u32(3, 0x8) // NFT_SET_MAP
            .u32(4, key_type)
            .u32(5, key_len)
            .u32(6, 0xffff_ff00) // NFT_DATA_VERDICT
            .u32(10, id);
        self.message(Kind::NewSet, NLM_F_CREATE, attrs);
    }

    /// Adds a set of `family` addresses whose elements expire `timeout_ms` after they were
    /// last added or updated.
    pub fn add_address_set(&mut self, name: &str, family: crate::Family, timeout_ms: u64) {
        self.next_set_id += 1;
        let id = self.next_set_id;
        let attrs = Attrs::new()
            .string(1, &self.table)
            .string(2, name)
            .u32(3, 0x10) // NFT_SET_TIMEOUT
            .u32(4, family.address_type())
            .u32(5, family.address_len())
            .u32(10, id)
            .u64(11, timeout_ms);
        self.message(Kind::NewSet, NLM_F_CREATE, attrs);
    }

    /// Adds a set of `family` address ranges (`flags interval`), filled by
    /// [`Batch::interval_elements`].
    pub fn add_interval_set(&mut self, name: &str, family: crate::Family) {
        self.next_set_id += 1;
        let id = self.next_set_id;
        let attrs = Attrs::new()
            .string(1, &self.table)
            .string(2, name)
            .u32(3, 0x4) // NFT_SET_INTERVAL
            .u32(4, family.address_type())
            .u32(5, family.address_len())
            .u32(10, id);
        self.message(Kind::NewSet, NLM_F_CREATE, attrs);
    }

    /// Adds the address ranges `ranges` (each `[first, last]` as numbers, sorted, neither
    /// overlapping nor adjacent) to the interval set `set` of `family` addresses: a start
    /// element, and an end element (`NFT_SET_ELEM_INTERVAL_END`) at the address after the
    /// range unless it runs to the last address.
    pub fn interval_elements(&mut self, set: &str, family: crate::Family, ranges: &[(u128, u128)]) {
        let len = family.address_len() as usize;
        let bytes = |n: u128| n.to_be_bytes()[16 - len..].to_vec();
        let max = u128::MAX >> (128 - 8 * len);
        // In messages of at most `ELEMENTS_PER_MESSAGE` ranges (16-bit attribute lengths).
        for chunk in ranges.chunks(ELEMENTS_PER_MESSAGE) {
            let mut elements = Vec::with_capacity(chunk.len() * 2);
            for &(first, last) in chunk {
                elements.push(Attrs::new().nested(1, value(&bytes(first))));
                if last < max {
                    elements.push(Attrs::new().nested(1, value(&bytes(last + 1))).u32(3, 1));
                }
            }
            let attrs = Attrs::new().string(1, &self.table).string(2, set).list(3, elements);
            self.message(Kind::NewSetElem, NLM_F_CREATE, attrs);
        }
    }

    /// Adds a map named `name` from `u32` keys in ranges (`flags interval`, filled by
    /// [`Batch::data_interval_elements`]) to data of `data_len` bytes (`data_type` is the
    /// type id `nft` prints it by).
    pub fn add_data_interval_map(&mut self, name: &str, data_type: u32, data_len: u32) {
        self.next_set_id += 1;
        let id = self.next_set_id;
        let attrs = Attrs::new()
            .string(1, &self.table)
            .string(2, name)
            .u32(3, 0x8 | 0x4) // NFT_SET_MAP | NFT_SET_INTERVAL
            .u32(4, 4) // integer
            .u32(5, 4)
            .u32(6, data_type)
            .u32(7, data_len)
            .u32(10, id);
        self.message(Kind::NewSet, NLM_F_CREATE, attrs);
    }

    /// Adds to the interval map `set` the ranges `[start, end)` of `elements`, each mapped
    /// to its data: a start element with the data, and an end element
    /// (`NFT_SET_ELEM_INTERVAL_END`) at `end` (ranges may touch: an end and the next start
    /// share their key).
    /// Elements go in messages of at most [`ELEMENTS_PER_MESSAGE`] ranges, so that no
    /// attribute outgrows its 16-bit length.
    pub fn data_interval_elements(&mut self, set: &str, elements: &[(u32, u32, Vec<u8>)]) {
        for chunk in elements.chunks(ELEMENTS_PER_MESSAGE) {
            let elements = chunk.iter().flat_map(|(start, end, data)| {
                [
                    Attrs::new().nested(1, value(&start.to_be_bytes())).nested(2, value(data)),
                    Attrs::new().nested(1, value(&end.to_be_bytes())).u32(3, 1),
                ]
            });
            let attrs = Attrs::new().string(1, &self.table).string(2, set).list(3, elements);
            self.message(Kind::NewSetElem, NLM_F_CREATE, attrs);
        }
    }

    /// Removes every element of the set or map `set`.
    pub fn flush_set(&mut self, set: &str) {
        let attrs = Attrs::new().string(1, &self.table).string(2, set);
        self.message(Kind::DelSetElem, 0, attrs);
    }

    /// Adds a set named `name` of keys of `key_len` bytes (`key_type` is the type id `nft`
    /// prints them by).
    pub fn add_set(&mut self, name: &str, key_type: u32, key_len: u32) {
        self.next_set_id += 1;
        let id = self.next_set_id;
        let attrs = Attrs::new()
            .string(1, &self.table)
            .string(2, name)
            .u32(4, key_type)
            .u32(5, key_len)
            .u32(10, id);
        self.message(Kind::NewSet, NLM_F_CREATE, attrs);
    }

    /// Adds (`present`) or deletes the element `key` of the set `set`.
    pub fn set_element(&mut self, set: &str, key: &[u8], present: bool) {
        let element = Attrs::new().nested(1, value(key));
        let attrs =
            Attrs::new().string(1, &self.table).string(2, set).list(3, std::iter::once(element));
        match present {
            true => self.message(Kind::NewSetElem, NLM_F_CREATE, attrs),
            false => self.message(Kind::DelSetElem, 0, attrs),
        }
    }

    /// Deletes a set nothing refers to.
    pub fn delete_set(&mut self, name: &str) {
        let attrs = Attrs::new().string(1, &self.table).string(2, name);
        self.message(Kind::DelSet, 0, attrs);
    }

    /// Adds (or with `verdict` `None`, deletes) the element `key` of the map `set`.
    pub fn map_element(&mut self, set: &str, key: &[u8], verdict: Option<&Verdict>) {
        let mut element = Attrs::new().nested(1, value(key));
        if let Some(verdict) = verdict {
            element = element.nested(2, verdict.data());
        }
        let attrs =
            Attrs::new().string(1, &self.table).string(2, set).list(3, std::iter::once(element));
        match verdict {
            Some(_) => self.message(Kind::NewSetElem, NLM_F_CREATE, attrs),
            None => self.message(Kind::DelSetElem, 0, attrs),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn attributes_are_padded_and_nested() {
        let a = Attrs::new().string(1, "abc").nested(2, Attrs::new().u32(1, 7));
        assert_eq!(
            a.0,
            [
                8, 0, 1, 0, b'a', b'b', b'c', 0, // "abc\0"
                12, 0, 2, 0x80, 8, 0, 1, 0, 0, 0, 0, 7, // nested u32, big-endian
            ]
        );
    }

    #[test]
    fn many_ranges_go_in_messages_of_bounded_size() {
        let mut batch = Batch::new(FAMILY_IPV4, "t", 1);
        let ranges: Vec<(u32, u32, Vec<u8>)> =
            (0..2000u32).map(|i| (i * 10, i * 10 + 10, vec![0; 20])).collect();
        batch.data_interval_elements("m", &ranges);
        assert_eq!(batch.len(), 2000usize.div_ceil(ELEMENTS_PER_MESSAGE));
        let ranges: Vec<(u128, u128)> = (0..2000u128).map(|i| (i * 10, i * 10 + 5)).collect();
        let mut batch = Batch::new(10, "t", 1);
        batch.interval_elements("s", crate::Family::Ipv6, &ranges);
        assert_eq!(batch.len(), 2000usize.div_ceil(ELEMENTS_PER_MESSAGE));
        // Every message's length fits its 16-bit attributes.
        let bytes = batch.finish();
        let mut at = 0;
        while at < bytes.len() {
            let len = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            assert!(len < 65_535, "{len}");
            at += len;
        }
    }

    #[test]
    fn a_batch_is_framed_by_begin_and_end() {
        let mut batch = Batch::new(FAMILY_IPV4, "t", 100);
        batch.add_table();
        assert_eq!(batch.len(), 1);
        let bytes = batch.finish();
        // begin (20 bytes), the table (20 + 8), end (20).
        assert_eq!(bytes.len(), 20 + 28 + 20);
        let kind = |at: usize| u16::from_ne_bytes([bytes[at + 4], bytes[at + 5]]);
        assert_eq!(kind(0), BATCH_BEGIN);
        assert_eq!(kind(20), SUBSYS << 8);
        assert_eq!(kind(48), BATCH_END);
        assert_eq!(u32::from_ne_bytes(bytes[28..32].try_into().unwrap()), 101);
    }
}
