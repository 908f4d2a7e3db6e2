//! krust's NetworkPolicy enforcement, one more API client of the node (as upstream leaves it
//! to network plugins such as kube-router): NetworkPolicies, pods and namespaces watched
//! through the API; the node's isolated pods and what each may send and receive programmed
//! into an nf_tables table through netlink (`krust-nftables`).
//!
//! `plan.rs` decides the node's ruleset (pure), `program.rs` the transaction that puts it in
//! place (pure), `sync.rs` keeps the views and applies it.

pub mod plan;
pub mod program;
mod sync;

use krust_nftables::Family;
pub use kube::Config;

/// Why NetworkPolicy cannot be enforced.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API client could not be made.
    #[error("cannot make the network policy agent's API client: {0}")]
    Client(#[source] kube::Error),
    /// The netlink socket could not be opened.
    #[error("cannot program nf_tables: {0}")]
    Netlink(#[from] krust_nftables::socket::NetlinkError),
}

/// Where the node's policies are programmed.
#[derive(Debug, Clone)]
pub struct Options {
    /// The nf_tables tables (of family `ip`, and `ip6` with `ipv6`) it owns; replaced at
    /// start.
    pub table: String,
    /// The node's name: its pods are the ones it isolates.
    pub node: String,
    /// Whether the node's pods have IPv6 addresses too (a dual-stack node): their IPv6
    /// traffic is held to the same policies.
    pub ipv6: bool,
}

/// Enforces NetworkPolicy for the node's pods, an API client through `config`, until the
/// process ends.
pub async fn run(config: Config, options: Options) -> Result<(), Error> {
    let client = krust_client::client(config).map_err(Error::Client)?;
    // Pods of one bridge reach each other without routing: only `br_netfilter` shows their
    // packets to the forward hook, where the policies are.
    if let Err(e) = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1") {
        tracing::warn!(
            error = %e,
            "cannot pass bridged traffic to nf_tables (br_netfilter); policies between pods \
             of this node are not enforced"
        );
    }
    let mut families = vec![Family::Ipv4];
    if options.ipv6 {
        if let Err(e) = std::fs::write("/proc/sys/net/bridge/bridge-nf-call-ip6tables", "1") {
            tracing::warn!(
                error = %e,
                "cannot pass bridged IPv6 traffic to nf_tables; policies between pods of this \
                 node are not enforced over IPv6"
            );
        }
        families.push(Family::Ipv6);
    }
    sync::run(client, options.table, options.node, families).await
}
