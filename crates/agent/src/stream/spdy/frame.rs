//! SPDY/3.1 frames on the wire: parsed from and written into byte buffers. Pure; header
//! blocks stay compressed here (`headers` reads and writes them).

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// The last frame of a stream in its sender's direction.
pub const FLAG_FIN: u8 = 0x01;
/// A stream its opener will not receive on.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// The largest payload a frame's 24-bit length can carry.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// `RST_STREAM` status: the stream is refused or no longer wanted.
pub const CANCEL: u32 = 5;
/// `RST_STREAM` / `GOAWAY` status: the peer broke the protocol.
pub const PROTOCOL_ERROR: u32 = 1;

const HEADER_LEN: usize = 8;
const STREAM_ID_MASK: u32 = 0x7FFF_FFFF;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes of a stream.
    Data {
        /// The stream.
        stream: u32,
        /// The sender's last frame on it.
        fin: bool,
        /// The bytes.
        data: Bytes,
    },
    /// A peer opens a stream.
    SynStream {
        /// The new stream.
        stream: u32,
        /// The stream it belongs to (server push; unused here).
        associated: u32,
        /// `FLAG_FIN`, `FLAG_UNIDIRECTIONAL`.
        flags: u8,
        /// The compressed header block.
        headers: Bytes,
    },
    /// The answer to a `SynStream`.
    SynReply {
        /// The stream.
        stream: u32,
        /// The sender's last frame on it.
        fin: bool,
        /// The compressed header block.
        headers: Bytes,
    },
    /// A stream is abandoned.
    RstStream {
        /// The stream.
        stream: u32,
        /// Why (`CANCEL`, `PROTOCOL_ERROR`, ...).
        status: u32,
    },
    /// Connection settings (flow-control windows and the like), `(flags, id, value)`.
    Settings(Vec<(u8, u32, u32)>),
    /// A liveness check, answered with the same id.
    Ping(u32),
    /// The sender opens no more streams.
    GoAway {
        /// The last stream it accepted.
        last_stream: u32,
        /// Why.
        status: u32,
    },
    /// More headers for a stream.
    Headers {
        /// The stream.
        stream: u32,
        /// The sender's last frame on it.
        fin: bool,
        /// The compressed header block.
        headers: Bytes,
    },
    /// The receiver of `stream` (0: the whole connection) takes `delta` more bytes.
    WindowUpdate {
        /// The stream.
        stream: u32,
        /// How many more bytes.
        delta: u32,
    },
    /// A control frame of a type this side does not know (ignored, as the protocol says).
    Unknown(u16),
}

/// A frame that breaks the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A control frame of another SPDY version.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// A control frame shorter than its type needs.
    #[error("a SPDY frame of type {kind} is {len} bytes long, too short")]
    Short {
        /// The frame's type.
        kind: u16,
        /// Its length.
        len: usize,
    },
    /// A frame longer than this side accepts.
    #[error("a SPDY frame of {0} bytes is over the limit")]
    TooLong(usize),
}

/// Takes one whole frame off the front of `buffer`: `None` until all of it is there.
/// Frames longer than `max_payload` are refused before they are buffered.
pub fn parse(buffer: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, FrameError> {
    if buffer.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([0, buffer[5], buffer[6], buffer[7]]) as usize;
    if len > max_payload {
        return Err(FrameError::TooLong(len));
    }
    if buffer.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let head = buffer.split_to(HEADER_LEN);
    let flags = head[4];
    let mut payload = buffer.split_to(len).freeze();
    let first = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if first & 0x8000_0000 == 0 {
        return Ok(Some(Frame::Data {
            stream: first & STREAM_ID_MASK,
            fin: flags & FLAG_FIN != 0,
            data: payload,
        }));
    }
    let version = ((first >> 16) & 0x7FFF) as u16;
    if version != VERSION {
        return Err(FrameError::Version(version));
    }
    let kind = (first & 0xFFFF) as u16;
    let need = |n: usize| if len < n { Err(FrameError::Short { kind, len }) } else { Ok(()) };
    let fin = flags & FLAG_FIN != 0;
    let frame = match kind {
        1 => {
            need(10)?;
            let stream = payload.get_u32() & STREAM_ID_MASK;
            let associated = payload.get_u32() & STREAM_ID_MASK;
            payload.advance(2); // priority and slot
            Frame::SynStream { stream, associated, flags, headers: payload }
        }
        2 => {
            need(4)?;
            Frame::SynReply { stream: payload.get_u32() & STREAM_ID_MASK, fin, headers: payload }
        }
        3 => {
            need(8)?;
            Frame::RstStream {
                stream: payload.get_u32() & STREAM_ID_MASK,
                status: payload.get_u32(),
            }
        }
        4 => {
            need(4)?;
            let count = payload.get_u32() as usize;
            need(4 + count.saturating_mul(8))?;
            let entries = (0..count)
                .map(|_| {
                    let id = payload.get_u32();
                    ((id >> 24) as u8, id & 0xFF_FFFF, payload.get_u32())
                })
                .collect();
            Frame::Settings(entries)
        }
        6 => {
            need(4)?;
            Frame::Ping(payload.get_u32())
        }
        7 => {
            need(8)?;
            Frame::GoAway {
                last_stream: payload.get_u32() & STREAM_ID_MASK,
                status: payload.get_u32(),
            }
        }
        8 => {
            need(4)?;
            Frame::Headers { stream: payload.get_u32() & STREAM_ID_MASK, fin, headers: payload }
        }
        9 => {
            need(8)?;
            Frame::WindowUpdate {
                stream: payload.get_u32() & STREAM_ID_MASK,
                delta: payload.get_u32() & STREAM_ID_MASK,
            }
        }
        other => Frame::Unknown(other),
    };
    Ok(Some(frame))
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32(((flags as u32) << 24) | (len as u32 & 0xFF_FFFF));
}

/// Appends `frame` to `out`. A `Data` frame's bytes must fit in `MAX_PAYLOAD`.
pub fn encode(frame: &Frame, out: &mut BytesMut) {
    let flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
    match frame {
        Frame::Data { stream, fin, data } => {
            out.put_u32(stream & STREAM_ID_MASK);
            out.put_u32(((flag(*fin) as u32) << 24) | (data.len() as u32 & 0xFF_FFFF));
            out.extend_from_slice(data);
        }
        Frame::SynStream { stream, associated, flags, headers } => {
            control(out, 1, *flags, 10 + headers.len());
            out.put_u32(*stream);
            out.put_u32(*associated);
            out.put_u16(0);
            out.extend_from_slice(headers);
        }
        Frame::SynReply { stream, fin, headers } => {
            control(out, 2, flag(*fin), 4 + headers.len());
            out.put_u32(*stream);
            out.extend_from_slice(headers);
        }
        Frame::RstStream { stream, status } => {
            control(out, 3, 0, 8);
            out.put_u32(*stream);
            out.put_u32(*status);
        }
        Frame::Settings(entries) => {
            control(out, 4, 0, 4 + 8 * entries.len());
            out.put_u32(entries.len() as u32);
            for (flags, id, value) in entries {
                out.put_u32(((*flags as u32) << 24) | (id & 0xFF_FFFF));
                out.put_u32(*value);
            }
        }
        Frame::Ping(id) => {
            control(out, 6, 0, 4);
            out.put_u32(*id);
        }
        Frame::GoAway { last_stream, status } => {
            control(out, 7, 0, 8);
            out.put_u32(*last_stream);
            out.put_u32(*status);
        }
        Frame::Headers { stream, fin, headers } => {
            control(out, 8, flag(*fin), 4 + headers.len());
            out.put_u32(*stream);
            out.extend_from_slice(headers);
        }
        Frame::WindowUpdate { stream, delta } => {
            control(out, 9, 0, 8);
            out.put_u32(*stream);
            out.put_u32(*delta);
        }
        Frame::Unknown(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(frame: Frame) {
        let mut out = BytesMut::new();
        encode(&frame, &mut out);
        let whole = out.clone();
        // Incomplete input waits for more, at every cut.
        for cut in 0..whole.len() {
            let mut partial = BytesMut::from(&whole[..cut]);
            assert_eq!(parse(&mut partial, MAX_PAYLOAD), Ok(None), "cut at {cut} of {frame:?}");
        }
        assert_eq!(parse(&mut out, MAX_PAYLOAD), Ok(Some(frame)));
        assert!(out.is_empty());
    }

    #[test]
    fn every_frame_type_round_trips() {
        round_trip(Frame::Data { stream: 1, fin: true, data: Bytes::from_static(b"hello") });
        round_trip(Frame::Data { stream: 3, fin: false, data: Bytes::new() });
        round_trip(Frame::SynStream {
            stream: 5,
            associated: 0,
            flags: FLAG_FIN,
            headers: Bytes::from_static(b"\x78\xbb"),
        });
        round_trip(Frame::SynReply { stream: 5, fin: false, headers: Bytes::from_static(b"x") });
        round_trip(Frame::RstStream { stream: 7, status: CANCEL });
        round_trip(Frame::Settings(vec![(0, 7, 65536), (1, 4, 100)]));
        round_trip(Frame::Ping(9));
        round_trip(Frame::GoAway { last_stream: 11, status: 0 });
        round_trip(Frame::Headers { stream: 13, fin: true, headers: Bytes::from_static(b"h") });
        round_trip(Frame::WindowUpdate { stream: 0, delta: 1 << 20 });
    }

    #[test]
    fn a_known_data_frame_is_read_byte_for_byte() {
        let mut wire = BytesMut::from(&[0, 0, 0, 3, 1, 0, 0, 2, b'h', b'i'][..]);
        assert_eq!(
            parse(&mut wire, MAX_PAYLOAD),
            Ok(Some(Frame::Data { stream: 3, fin: true, data: Bytes::from_static(b"hi") }))
        );
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        // Another version.
        let mut wire = BytesMut::from(&[0x80, 2, 0, 1, 0, 0, 0, 0][..]);
        assert_eq!(parse(&mut wire, MAX_PAYLOAD), Err(FrameError::Version(2)));
        // A SYN_STREAM too short for its fields.
        let mut wire = BytesMut::from(&[0x80, 3, 0, 1, 0, 0, 0, 2, 0, 0][..]);
        assert_eq!(parse(&mut wire, MAX_PAYLOAD), Err(FrameError::Short { kind: 1, len: 2 }));
        // SETTINGS claiming more entries than it has.
        let mut wire = BytesMut::from(&[0x80, 3, 0, 4, 0, 0, 0, 4, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        assert!(matches!(parse(&mut wire, MAX_PAYLOAD), Err(FrameError::Short { .. })));
        // Over the limit, refused from its header alone.
        let mut wire = BytesMut::from(&[0, 0, 0, 1, 0, 0x10, 0, 0][..]);
        assert_eq!(parse(&mut wire, 1024), Err(FrameError::TooLong(0x10_0000)));
        // An unknown control type is skipped whole.
        let mut wire = BytesMut::from(&[0x80, 3, 0, 42, 0, 0, 0, 1, 7, 0, 0, 0, 6, 0, 0, 0, 0][..]);
        assert_eq!(parse(&mut wire, MAX_PAYLOAD), Ok(Some(Frame::Unknown(42))));
        assert!(matches!(parse(&mut wire, MAX_PAYLOAD), Ok(Some(Frame::Data { .. }))));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small deterministic fuzz: every frame decoded from noise or an error.
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..20_000 {
            let mut noise = Vec::new();
            for _ in 0..(seed % 64) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                noise.push(seed as u8);
            }
            if noise.len() > 1 && seed.is_multiple_of(2) {
                noise[0] = 0x80;
                noise[1] = 3;
            }
            let mut buffer = BytesMut::from(&noise[..]);
            while let Ok(Some(_)) = parse(&mut buffer, 4096) {}
        }
    }
}
