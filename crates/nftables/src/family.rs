//! What differs between an IPv4 and an IPv6 ruleset: the table's family, the size and type
//! of addresses, and where they sit in the network header.

use std::net::IpAddr;

use crate::expr::{self, NETWORK};
use crate::message::Attrs;

/// A table's address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// `ip` (`NFPROTO_IPV4`).
    Ipv4,
    /// `ip6` (`NFPROTO_IPV6`).
    Ipv6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Family::Ipv4 } else { Family::Ipv6 }
    }

    /// `NFPROTO_IPV4` or `NFPROTO_IPV6`.
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Ipv4 => 2,
            Family::Ipv6 => 10,
        }
    }

    /// Bytes of an address.
    pub fn address_len(self) -> u32 {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 16,
        }
    }

    /// 32-bit registers an address fills.
    pub fn address_registers(self) -> u32 {
        self.address_len() / 4
    }

    /// The type id `nft` prints addresses by (`ipv4_addr`, `ipv6_addr`).
    pub fn address_type(self) -> u32 {
        match self {
            Family::Ipv4 => 7,
            Family::Ipv6 => 8,
        }
    }

    /// Where the source address sits in the network header.
    pub fn source_offset(self) -> u32 {
        match self {
            Family::Ipv4 => 12,
            Family::Ipv6 => 8,
        }
    }

    /// Where the destination address sits in the network header.
    pub fn destination_offset(self) -> u32 {
        match self {
            Family::Ipv4 => 16,
            Family::Ipv6 => 24,
        }
    }

    /// Loads the source address into `dreg` and the registers after it.
    pub fn saddr(self, dreg: u32) -> Attrs {
        expr::payload(NETWORK, self.source_offset(), self.address_len(), dreg)
    }

    /// Loads the destination address into `dreg` and the registers after it.
    pub fn daddr(self, dreg: u32) -> Attrs {
        expr::payload(NETWORK, self.destination_offset(), self.address_len(), dreg)
    }
}

/// The bytes of `ip`, as a register or key holds them.
pub fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}
