//! IP networks in CIDR notation, of either family: service ranges, pod networks.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A network: its address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// An IP family, as the API names it (`IPv4`, `IPv6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    /// `IPv4` or `IPv6`, the API's spelling (`spec.ipFamilies`, `addressType`).
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The family the API names `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "IPv4" => Some(Family::V4),
            "IPv6" => Some(Family::V6),
            _ => None,
        }
    }

    /// The other family.
    pub fn other(self) -> Self {
        match self {
            Family::V4 => Family::V6,
            Family::V6 => Family::V4,
        }
    }

    /// Address bits: 32 or 128.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(family: Family, n: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX))),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

impl Cidr {
    /// The network of `ip/prefix`, host bits cleared; `None` when the prefix is too long.
    pub fn new(ip: IpAddr, prefix: u8) -> Option<Self> {
        let family = Family::of(ip);
        if prefix > family.bits() {
            return None;
        }
        let host_bits = u32::from(family.bits() - prefix);
        let mask = u128::MAX.checked_shl(host_bits).unwrap_or(0);
        Some(Self { network: from_u128(family, to_u128(ip) & mask), prefix })
    }

    /// The network address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The family.
    pub fn family(&self) -> Family {
        Family::of(self.network)
    }

    /// The number of addresses, saturated at `u128::MAX`.
    pub fn size(&self) -> u128 {
        let host_bits = u32::from(self.family().bits() - self.prefix);
        1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
    }

    /// The address `offset` places into the network, if it lies inside.
    pub fn nth(&self, offset: u128) -> Option<IpAddr> {
        (offset < self.size()).then(|| from_u128(self.family(), to_u128(self.network) + offset))
    }

    /// Where `ip` lies in the network, if it does.
    pub fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        if Family::of(ip) != self.family() {
            return None;
        }
        let offset = to_u128(ip).wrapping_sub(to_u128(self.network));
        (offset < self.size()).then_some(offset)
    }

    /// Whether `ip` lies in the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.offset_of(ip).is_some()
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Why text is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR address: {0}")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let bad = || CidrError(raw.to_string());
        let (ip, prefix) = raw.split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        Cidr::new(ip, prefix).ok_or_else(bad)
    }
}

/// Checks that `cidrs` are one range, or two of different families (the primary first),
/// as upstream's dual-stack flags (`--service-cluster-ip-range`, `--cluster-cidr`) hold.
pub fn check_dual(cidrs: &[Cidr]) -> Result<(), String> {
    let list = || cidrs.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    match cidrs {
        [_] => Ok(()),
        [a, b] if a.family() != b.family() => Ok(()),
        [_, _] => Err(format!("{}: two ranges must be of different IP families", list())),
        [] => Err("no range given".into()),
        _ => Err(format!("{}: at most two ranges (one IPv4, one IPv6)", list())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn host_bits_are_cleared() {
        let v4: Cidr = "10.43.7.9/16".parse().unwrap();
        assert_eq!(v4.to_string(), "10.43.0.0/16");
        let v6: Cidr = "fd00:43::77/112".parse().unwrap();
        assert_eq!(v6.to_string(), "fd00:43::/112");
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("fd00::/129".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
    }

    #[test]
    fn offsets_and_membership() {
        let v6: Cidr = "fd00:43::/112".parse().unwrap();
        assert_eq!(v6.size(), 65536);
        assert_eq!(v6.nth(10), Some("fd00:43::a".parse().unwrap()));
        assert_eq!(v6.nth(65536), None);
        assert_eq!(v6.offset_of("fd00:43::ffff".parse().unwrap()), Some(65535));
        assert!(!v6.contains("fd00:44::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let v4: Cidr = "10.43.0.0/16".parse().unwrap();
        assert_eq!(v4.nth(1), Some("10.43.0.1".parse().unwrap()));
        assert_eq!(v4.nth(65535), Some("10.43.255.255".parse().unwrap()));
        assert_eq!(v4.nth(65536), None);
        let all: Cidr = "::/0".parse().unwrap();
        assert_eq!(all.size(), u128::MAX);
    }

    #[test]
    fn dual_flags_hold_one_range_of_each_family() {
        let cidrs =
            |raw: &str| -> Vec<Cidr> { raw.split(',').map(|c| c.parse().unwrap()).collect() };
        assert!(check_dual(&cidrs("10.43.0.0/16")).is_ok());
        assert!(check_dual(&cidrs("fd00:43::/112,10.43.0.0/16")).is_ok());
        assert!(check_dual(&cidrs("10.43.0.0/16,10.44.0.0/16")).is_err());
        assert!(check_dual(&cidrs("10.43.0.0/16,fd00::/64,10.1.0.0/16")).is_err());
        assert!(check_dual(&[]).is_err());
    }
}
