//! krust's service proxy (upstream's kube-proxy in its nftables mode, as one more API
//! client of the node): Services and EndpointSlices watched through the API, programmed into
//! an nf_tables table through netlink (`krust-nftables`), one small transaction per changed Service.
//!
//! `plan.rs` decides what each Service port is (pure), `program.rs` the messages that change
//! the ruleset from what was programmed to that (pure), `sync.rs` keeps the state and applies
//! the batches.

pub mod plan;
pub mod program;
mod sync;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use krust_nftables::Family;

pub use kube::Config;

/// Why the proxy cannot run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API client could not be made.
    #[error("cannot make the service proxy's API client: {0}")]
    Client(#[source] kube::Error),
    /// The netlink socket could not be opened.
    #[error("cannot program nf_tables: {0}")]
    Netlink(#[from] krust_nftables::socket::NetlinkError),
}

/// Where the proxy programs its rules.
#[derive(Debug, Clone)]
pub struct Options {
    /// The nf_tables tables (of family `ip`, and `ip6` on a dual-stack node) the proxy
    /// owns; replaced at start.
    pub table: String,
    /// The node's pod network.
    pub pod_cidr: (Ipv4Addr, u8),
    /// Its IPv6 pod network on a dual-stack node: IPv6 Services are programmed too.
    pub pod_cidr_v6: Option<(Ipv6Addr, u8)>,
    /// The node's name.
    pub node: String,
}

/// Runs the proxy, an API client through `config`, until the process ends.
pub async fn run(config: Config, options: Options) -> Result<(), Error> {
    let client = krust_client::client(config).map_err(Error::Client)?;
    // Pods reach Services on other pods through the host: it must route between them.
    if let Err(e) = std::fs::write("/proc/sys/net/ipv4/ip_forward", "1") {
        tracing::warn!(error = %e, "cannot turn on IPv4 forwarding; pods cannot reach Services");
    }
    let layout = |family, pod_cidr| program::Layout {
        table: options.table.clone(),
        family,
        pod_cidr,
        node: options.node.clone(),
    };
    let (v4, prefix) = options.pod_cidr;
    let mut layouts = vec![layout(Family::Ipv4, (IpAddr::V4(v4), prefix))];
    if let Some((v6, prefix)) = options.pod_cidr_v6 {
        layouts.push(layout(Family::Ipv6, (IpAddr::V6(v6), prefix)));
    }
    sync::run(client, layouts).await
}
