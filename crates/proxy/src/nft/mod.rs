//! nf_tables through the kernel's netlink interface: messages (`message.rs`), rule
//! expressions (`expr.rs`) and the socket that applies a batch (`socket.rs`).

pub mod expr;
pub mod message;
pub mod socket;

pub use message::{Batch, Hook, Verdict};
pub use socket::Netlink;
