//! nf_tables expressions, each as the `NFTA_LIST_ELEM` a rule holds: its name and data.
//! Register numbers are the 32-bit registers (`NFT_REG32_00` = 8 and up); a value of fewer
//! than four bytes loaded into one is zero-padded by the kernel.

use crate::family::Family;
use crate::message::{Attrs, Verdict, value};

/// The first 32-bit register.
pub const REG0: u32 = 8;
/// The verdict register.
const REG_VERDICT: u32 = 0;

/// `NFT_PAYLOAD_NETWORK_HEADER`.
pub const NETWORK: u32 = 1;
/// `NFT_PAYLOAD_TRANSPORT_HEADER`.
pub const TRANSPORT: u32 = 2;

/// `NFT_META_MARK`.
pub const META_MARK: u32 = 3;
/// `NFT_META_L4PROTO`.
pub const META_L4PROTO: u32 = 16;

/// `NFT_CT_STATE`.
pub const CT_STATE: u32 = 0;
/// `NFT_CT_STATUS`.
pub const CT_STATUS: u32 = 2;
/// The `ct status` bit of a connection whose destination was translated (`IPS_DST_NAT`).
pub const CT_STATUS_DNAT: u32 = 1 << 5;
/// The `ct state` bits of an established connection and of a related one (an ICMP error, an
/// FTP data connection): `NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED)`.
pub const CT_ESTABLISHED_OR_RELATED: u32 = (1 << 1) | (1 << 2);

/// `NFT_CMP_EQ`.
pub const EQ: u32 = 0;
/// `NFT_CMP_NEQ`.
pub const NEQ: u32 = 1;

fn expr(name: &str, data: Attrs) -> Attrs {
    Attrs::new().string(1, name).nested(2, data)
}

/// Loads `len` bytes at `offset` of header `base` into `dreg`.
pub fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> Attrs {
    expr("payload", Attrs::new().u32(1, dreg).u32(2, base).u32(3, offset).u32(4, len))
}

/// Loads the IPv4 source address.
pub fn ip_saddr(dreg: u32) -> Attrs {
    payload(NETWORK, 12, 4, dreg)
}

/// Loads the IPv4 destination address.
pub fn ip_daddr(dreg: u32) -> Attrs {
    payload(NETWORK, 16, 4, dreg)
}

/// Loads the transport destination port (TCP, UDP and SCTP alike).
pub fn th_dport(dreg: u32) -> Attrs {
    payload(TRANSPORT, 2, 2, dreg)
}

/// Loads the meta key `key`.
pub fn meta(key: u32, dreg: u32) -> Attrs {
    expr("meta", Attrs::new().u32(1, dreg).u32(2, key))
}

/// Sets the meta key `key` from `sreg`.
pub fn meta_set(key: u32, sreg: u32) -> Attrs {
    expr("meta", Attrs::new().u32(2, key).u32(3, sreg))
}

/// Compares `sreg` with `data` by `op`; the rule stops when it does not hold.
pub fn cmp(op: u32, sreg: u32, data: &[u8]) -> Attrs {
    expr("cmp", Attrs::new().u32(1, sreg).u32(2, op).nested(3, value(data)))
}

/// `dreg = (sreg & mask) ^ xor` over `mask.len()` bytes.
pub fn bitwise(sreg: u32, dreg: u32, mask: &[u8], xor: &[u8]) -> Attrs {
    let len = u32::try_from(mask.len()).unwrap_or(0);
    expr(
        "bitwise",
        Attrs::new()
            .u32(1, sreg)
            .u32(2, dreg)
            .u32(3, len)
            .nested(4, value(mask))
            .nested(5, value(xor)),
    )
}

/// Loads `data` into `dreg`.
pub fn immediate(dreg: u32, data: &[u8]) -> Attrs {
    expr("immediate", Attrs::new().u32(1, dreg).nested(2, value(data)))
}

/// Ends the rule with `verdict`.
pub fn verdict(verdict: &Verdict) -> Attrs {
    expr("immediate", Attrs::new().u32(1, REG_VERDICT).nested(2, verdict.data()))
}

/// Holds when `sreg` lies in `from..=to` (big-endian bytes, compared as the kernel does).
pub fn range(sreg: u32, from: &[u8], to: &[u8]) -> Attrs {
    expr("range", Attrs::new().u32(1, sreg).u32(2, EQ).nested(3, value(from)).nested(4, value(to)))
}

/// Loads the connection tracking key `key` (`NFT_CT_*`) into `dreg`.
pub fn ct(key: u32, dreg: u32) -> Attrs {
    expr("ct", Attrs::new().u32(1, dreg).u32(2, key))
}

/// Holds when the packet's connection is in any of the `ct state` bits `bits` (three
/// expressions, through `reg`).
pub fn ct_state_in(bits: u32, reg: u32) -> Vec<Attrs> {
    vec![
        ct(CT_STATE, reg),
        bitwise(reg, reg, &bits.to_ne_bytes(), &0u32.to_ne_bytes()),
        cmp(NEQ, reg, &0u32.to_ne_bytes()),
    ]
}

/// Looks the key starting at `sreg` up in the verdict map `set`: a match decides.
pub fn lookup_verdict(set: &str, sreg: u32) -> Attrs {
    expr("lookup", Attrs::new().string(1, set).u32(2, sreg).u32(3, REG_VERDICT))
}

/// Holds when the key at `sreg` is an element of the set `set`.
pub fn lookup(set: &str, sreg: u32) -> Attrs {
    expr("lookup", Attrs::new().string(1, set).u32(2, sreg))
}

/// Looks the key at `sreg` up in the data map `set`: its data goes to `dreg` and the
/// registers after it; no match ends the rule.
pub fn lookup_data(set: &str, sreg: u32, dreg: u32) -> Attrs {
    expr("lookup", Attrs::new().string(1, set).u32(2, sreg).u32(3, dreg))
}

/// Turns the `len` bytes at `sreg`, `u32`s in host order, to network order into `dreg`
/// (what a lookup in an interval set of numbers needs: it compares keys as bytes).
pub fn host_to_network(sreg: u32, dreg: u32, len: u32) -> Attrs {
    expr("byteorder", Attrs::new().u32(1, sreg).u32(2, dreg).u32(3, 1).u32(4, len).u32(5, 4))
}

/// Adds the key at `sreg` to the set `set`, or renews its timeout.
pub fn set_update(set: &str, sreg: u32) -> Attrs {
    expr("dynset", Attrs::new().string(1, set).u32(3, 1).u32(4, sreg))
}

/// A random number below `modulus` into `dreg`.
pub fn numgen_random(dreg: u32, modulus: u32) -> Attrs {
    expr("numgen", Attrs::new().u32(1, dreg).u32(2, modulus).u32(3, 1).u32(4, 0))
}

/// Destination NAT to the IPv4 address in `addr_reg` and the port in `port_reg`.
pub fn dnat(addr_reg: u32, port_reg: u32) -> Attrs {
    dnat_in(Family::Ipv4, addr_reg, port_reg)
}

/// Destination NAT to the `family` address in `addr_reg` and the port in `port_reg`.
pub fn dnat_in(family: Family, addr_reg: u32, port_reg: u32) -> Attrs {
    let nfproto = u32::from(family.nfproto());
    expr("nat", Attrs::new().u32(1, 1).u32(2, nfproto).u32(3, addr_reg).u32(5, port_reg))
}

/// Source NAT to the outgoing interface's address.
pub fn masquerade() -> Attrs {
    expr("masq", Attrs::new())
}

/// Refuses the packet with an ICMP port unreachable (a TCP client sees its connection
/// refused), as upstream answers Services without endpoints.
pub fn reject() -> Attrs {
    reject_in(Family::Ipv4)
}

/// [`reject`] in a table of `family`: ICMPv6's port unreachable is code 4.
pub fn reject_in(family: Family) -> Attrs {
    let code = match family {
        Family::Ipv4 => 3,
        Family::Ipv6 => 4,
    };
    expr("reject", Attrs::new().u32(1, 0).bytes(2, &[code]))
}

/// The type of the destination address (`RTN_LOCAL` = 2 for the host's own) into `dreg`.
pub fn fib_daddr_type(dreg: u32) -> Attrs {
    expr("fib", Attrs::new().u32(1, dreg).u32(2, 3).u32(3, 1 << 1))
}

/// The packet mark or-ed with `bits` (three expressions, through `reg`).
pub fn mark_or(bits: u32, reg: u32) -> Vec<Attrs> {
    vec![
        meta(META_MARK, reg),
        bitwise(reg, reg, &(!bits).to_ne_bytes(), &bits.to_ne_bytes()),
        meta_set(META_MARK, reg),
    ]
}

/// Holds when the packet mark has any of `bits` (three expressions, through `reg`).
pub fn mark_has(bits: u32, reg: u32) -> Vec<Attrs> {
    vec![
        meta(META_MARK, reg),
        bitwise(reg, reg, &bits.to_ne_bytes(), &0u32.to_ne_bytes()),
        cmp(NEQ, reg, &0u32.to_ne_bytes()),
    ]
}

/// Holds when the address at `offset` of the network header lies in (`EQ`) or outside
/// (`NEQ`) `network/prefix`, of either family: `network` holds 4 or 16 bytes (three
/// expressions, through `reg` and the registers after it).
pub fn in_network(offset: u32, network: &[u8], prefix: u8, op: u32, reg: u32) -> Vec<Attrs> {
    let bits = network.len() * 8;
    let mask: Vec<u8> = (0..network.len())
        .map(|i| {
            let set = usize::from(prefix).min(bits).saturating_sub(i * 8).min(8);
            (0xffu16 << (8 - set)) as u8
        })
        .collect();
    let masked: Vec<u8> = network.iter().zip(&mask).map(|(a, m)| a & m).collect();
    let len = u32::try_from(network.len()).unwrap_or(4);
    vec![
        payload(NETWORK, offset, len, reg),
        bitwise(reg, reg, &mask, &vec![0; network.len()]),
        cmp(op, reg, &masked),
    ]
}
