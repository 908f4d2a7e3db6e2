//! SPDY/3 header blocks: name/value pairs (32-bit counts and lengths), compressed with zlib
//! and the protocol's preset dictionary, one compression context per direction for the
//! whole connection.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::DICTIONARY;

/// The largest decompressed header block accepted (a bound against zlib bombs).
pub const MAX_BLOCK: usize = 256 * 1024;

/// A header block that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The zlib stream is corrupt or names another dictionary.
    #[error("SPDY header block: {0}")]
    Zlib(String),
    /// The decompressed block is over `MAX_BLOCK`.
    #[error("SPDY header block over {MAX_BLOCK} bytes")]
    TooLarge,
    /// The pairs are cut short or not UTF-8.
    #[error("SPDY header block is malformed")]
    Malformed,
}

/// Header pairs, names in lower case; a value may hold several, separated by NUL.
pub type Headers = Vec<(String, String)>;

/// The value of header `name`, if present.
pub fn get<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Reads the peer's header blocks.
pub struct Inflater(Decompress);

impl Default for Inflater {
    fn default() -> Self {
        Inflater(Decompress::new(true))
    }
}

impl Inflater {
    /// Decompresses and reads one header block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(4096);
            }
            let before = self.0.total_in();
            match self.0.decompress_vec(input, &mut out, FlushDecompress::Sync) {
                Ok(status) => {
                    input = &input[(self.0.total_in() - before) as usize..];
                    if out.len() > MAX_BLOCK {
                        return Err(HeaderError::TooLarge);
                    }
                    // Done once the input is used and the output buffer was not filled.
                    if (input.is_empty() && out.len() < out.capacity())
                        || status == Status::StreamEnd
                    {
                        break;
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    input = &input[(self.0.total_in() - before) as usize..];
                    self.0
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| HeaderError::Zlib(e.to_string()))?;
                }
                Err(e) => return Err(HeaderError::Zlib(e.to_string())),
            }
        }
        parse_pairs(&out)
    }
}

fn parse_pairs(mut raw: &[u8]) -> Result<Headers, HeaderError> {
    let take = |raw: &mut &[u8]| -> Result<u32, HeaderError> {
        let (n, rest) = raw.split_first_chunk::<4>().ok_or(HeaderError::Malformed)?;
        *raw = rest;
        Ok(u32::from_be_bytes(*n))
    };
    let count = take(&mut raw)?;
    let mut headers = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        let mut pair = [String::new(), String::new()];
        for part in &mut pair {
            let len = take(&mut raw)? as usize;
            if raw.len() < len {
                return Err(HeaderError::Malformed);
            }
            let (text, rest) = raw.split_at(len);
            *part = std::str::from_utf8(text).map_err(|_| HeaderError::Malformed)?.to_string();
            raw = rest;
        }
        let [name, value] = pair;
        headers.push((name.to_ascii_lowercase(), value));
    }
    Ok(headers)
}

/// Writes this side's header blocks.
pub struct Deflater(Compress);

impl Default for Deflater {
    fn default() -> Self {
        let mut compress = Compress::new(Compression::default(), true);
        // The dictionary is a constant the zlib backend always takes.
        let _ = compress.set_dictionary(DICTIONARY);
        Deflater(compress)
    }
}

impl Deflater {
    /// Encodes and compresses one header block (sync-flushed, so the peer reads it whole).
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            for part in [name.to_ascii_lowercase().as_bytes(), value.as_bytes()] {
                raw.extend_from_slice(&(part.len() as u32).to_be_bytes());
                raw.extend_from_slice(part);
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before = self.0.total_in();
            if self.0.compress_vec(input, &mut out, FlushCompress::Sync).is_err() {
                break;
            }
            input = &input[(self.0.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_through_one_context_per_direction() {
        let (mut deflater, mut inflater) = (Deflater::default(), Inflater::default());
        for i in 0..5 {
            let port = i.to_string();
            let block = deflater.encode(&[("streamType", "data"), ("port", &port)]);
            assert_eq!(
                inflater.decode(&block),
                Ok(vec![("streamtype".into(), "data".into()), ("port".into(), port)])
            );
        }
        // The first block names the preset dictionary (FDICT), as peers expect.
        let first = Deflater::default().encode(&[]);
        assert_eq!(first[1] & 0x20, 0x20);
    }

    #[test]
    fn the_dictionary_is_the_specs() {
        assert_eq!(DICTIONARY.len(), super::super::dictionary::LEN);
        let (mut a, mut b) = (1u32, 0u32);
        for byte in DICTIONARY {
            a = (a + *byte as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, super::super::dictionary::ADLER32);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(Inflater::default().decode(b"not zlib at all").is_err());
        let mut deflater = Deflater::default();
        let mut block = deflater.encode(&[("a", "b")]);
        block.truncate(block.len() / 2);
        assert!(Inflater::default().decode(&block).is_err());
    }

    #[test]
    fn a_bomb_is_refused() {
        let mut deflater = Deflater::default();
        let huge = "x".repeat(MAX_BLOCK + 1);
        let block = deflater.encode(&[("big", &huge)]);
        assert_eq!(Inflater::default().decode(&block), Err(HeaderError::TooLarge));
    }
}
