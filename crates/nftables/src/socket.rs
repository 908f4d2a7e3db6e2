//! The netfilter netlink socket: a batch is sent in one datagram and applied by the kernel
//! while the send runs, so its errors are already queued when `send` returns.

use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

use crate::message::Batch;

/// A batch larger than this enlarges the socket's send buffer first.
const DEFAULT_SEND_BUFFER: usize = 128 << 10;

/// `NLMSG_ERROR`.
const NLMSG_ERROR: u16 = 2;

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket failed.
    #[error("netfilter netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel refused a message: the batch was rolled back.
    #[error("the kernel refused nf_tables message {index} of the batch: {source}")]
    Refused {
        /// The message's place in the batch (1 is the first after the batch's begin).
        index: u32,
        /// The kernel's error.
        source: std::io::Error,
    },
}

/// A netfilter netlink socket.
#[derive(Debug)]
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace.
    pub fn open() -> Result<Self, NetlinkError> {
        let mut socket = Socket::new(NETLINK_NETFILTER)?;
        socket.bind_auto()?;
        socket.set_non_blocking(true)?;
        let _ = socket.set_ext_ack(true);
        Ok(Netlink { socket, seq: 1 })
    }

    /// A new batch for `table` of `family`.
    pub fn batch(&self, family: u8, table: &str) -> Batch {
        Batch::new(family, table, self.seq)
    }

    /// Applies `batch` (all its messages, or none).
    pub fn apply(&mut self, batch: Batch) -> Result<(), NetlinkError> {
        let first = self.seq;
        self.seq = batch.next_seq().wrapping_add(1);
        let bytes = batch.finish();
        if bytes.len() > DEFAULT_SEND_BUFFER {
            // A whole table in one transaction: the socket's buffer must hold it (root may
            // pass `wmem_max`, as `nft` does for large rulesets).
            let _ = nix::sys::socket::setsockopt(
                &self.socket,
                nix::sys::socket::sockopt::SndBufForce,
                &(bytes.len() * 2),
            );
        }
        self.socket.send(&bytes, 0)?;
        let mut refused = None;
        loop {
            let mut buffer = Vec::with_capacity(1 << 16);
            match self.socket.recv(&mut buffer, 0) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
            for (kind, seq, error) in errors(&buffer) {
                if kind == NLMSG_ERROR && error != 0 && refused.is_none() {
                    refused = Some(NetlinkError::Refused {
                        index: seq.wrapping_sub(first),
                        source: std::io::Error::from_raw_os_error(-error),
                    });
                }
            }
        }
        refused.map_or(Ok(()), Err)
    }
}

/// Each message in `buffer`: its type, sequence number and, for `NLMSG_ERROR`, the error.
fn errors(buffer: &[u8]) -> Vec<(u16, u32, i32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 16 <= buffer.len() {
        let word = |i: usize| -> [u8; 4] {
            let mut w = [0; 4];
            w.copy_from_slice(&buffer[i..i + 4]);
            w
        };
        let len = u32::from_ne_bytes(word(at)) as usize;
        let kind = u16::from_ne_bytes([buffer[at + 4], buffer[at + 5]]);
        let seq = u32::from_ne_bytes(word(at + 8));
        let error = if at + 20 <= buffer.len() { i32::from_ne_bytes(word(at + 16)) } else { 0 };
        out.push((kind, seq, error));
        if len < 16 {
            break;
        }
        at += (len + 3) & !3;
    }
    out
}
