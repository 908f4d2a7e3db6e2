//! krust's cluster DNS (upstream's CoreDNS with its `kubernetes` plugin, as one more API
//! client): Services and EndpointSlices watched through the API, answered on the cluster DNS
//! addresses, other names forwarded to the host's resolvers with a cache.
//!
//! Every node serves its own pods: the addresses sit on a link of the node of their own
//! (`link.rs`), so pods reach them through their route to the bridge.

pub mod answer;
pub mod forward;
mod link;
pub mod records;
mod serve;
mod watch;
pub mod wire;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};

pub use kube::Config;

/// Why the DNS server cannot run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API client could not be made.
    #[error("cannot make the DNS server's API client: {0}")]
    Client(#[source] kube::Error),
    /// The link that holds the addresses could not be set up.
    #[error("{0}")]
    Link(String),
    /// An address could not be bound.
    #[error("cannot serve DNS on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Where and how the DNS server serves.
#[derive(Debug, Clone)]
pub struct Options {
    /// The addresses it answers on (the cluster DNS Service's IPs).
    pub addresses: Vec<IpAddr>,
    /// The port (53).
    pub port: u16,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// The resolvers other names go to.
    pub upstreams: Vec<SocketAddr>,
    /// The link to put `addresses` on; `None` when they are already the host's.
    pub link: Option<String>,
}

/// How long the server waits for its first lists before it answers anyway.
const SYNC_WAIT: Duration = Duration::from_secs(10);
/// How long an address may stay taken before the server gives up.
const BIND_WAIT: Duration = Duration::from_secs(30);

/// Runs the DNS server, an API client through `config`, until the process ends.
pub async fn run(config: Config, options: Options) -> Result<(), Error> {
    let client = krust_client::client(config).map_err(Error::Client)?;
    if let Some(link) = &options.link {
        link::hold(link, &options.addresses).await?;
    }
    let records = Arc::new(RwLock::new(records::Records::default()));
    let synced = watch::follow(client, records.clone());
    if tokio::time::timeout(SYNC_WAIT, synced).await.is_err() {
        tracing::warn!(
            "the DNS server answers before its first lists of Services and EndpointSlices"
        );
    }
    let zone =
        wire::Zone { domain: options.domain.trim_end_matches('.').to_ascii_lowercase(), ttl: 5 };
    let server = Arc::new(serve::Server {
        records,
        zone,
        forwarder: forward::Forwarder::new(options.upstreams.clone()),
    });
    let mut tasks = tokio::task::JoinSet::new();
    for ip in &options.addresses {
        let address = SocketAddr::new(*ip, options.port);
        let (udp, tcp) = bind(address).await?;
        tasks.spawn(serve::udp(server.clone(), udp));
        tasks.spawn(serve::tcp(server.clone(), tcp));
        tracing::info!(%address, upstreams = ?options.upstreams, "cluster DNS serving");
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Binds UDP and TCP on `address`, retrying while it is taken or not yet the host's.
async fn bind(address: SocketAddr) -> Result<(UdpSocket, TcpListener), Error> {
    let deadline = tokio::time::Instant::now() + BIND_WAIT;
    loop {
        let attempt = async {
            let udp = UdpSocket::bind(address).await?;
            let tcp = TcpListener::bind(address).await?;
            Ok::<_, std::io::Error>((udp, tcp))
        };
        match attempt.await {
            Ok(sockets) => return Ok(sockets),
            Err(source) if tokio::time::Instant::now() >= deadline => {
                return Err(Error::Bind { address, source });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}
