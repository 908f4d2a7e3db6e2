//! nf_tables through the kernel's netlink interface, for the node's service proxy and its
//! NetworkPolicy enforcement: messages (`message.rs`), rule expressions (`expr.rs`), what
//! differs between IPv4 and IPv6 tables (`family.rs`) and the socket that applies a batch
//! (`socket.rs`). No `nft` binary and no libnftnl: the messages
//! are encoded from the kernel's UAPI headers.

pub mod expr;
pub mod family;
pub mod message;
pub mod socket;

pub use family::Family;
pub use message::{Batch, Hook, Verdict};
pub use socket::Netlink;
