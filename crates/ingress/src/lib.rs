//! krust's built-in Ingress controller (as k3s ships Traefik, but inside the binary): an API
//! client that serves the Ingresses of its IngressClass through an HTTP and HTTPS reverse
//! proxy on the host, straight to the backends' ready endpoints.
//!
//! `class.rs` (which Ingresses are served) and `routes.rs` (the routing table) are pure;
//! `tls.rs` chooses certificates by server name; `proxy.rs` holds the acceptor and the
//! workers that relay, `client.rs` and `connect.rs` their connections to endpoints; `sync.rs`
//! the watches that rebuild the table and write the Ingresses' status.

pub mod class;
mod client;
mod connect;
pub mod proxy;
pub mod routes;
mod sync;
pub mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::networking::v1::{IngressClass, IngressClassSpec};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

pub use kube::Config;

/// The controller name of krust's IngressClasses.
pub const CONTROLLER: &str = "krust.dev/ingress";
/// The IngressClass made at start when missing, as the cluster's default.
pub const CLASS: &str = "krust";

/// Why the Ingress controller cannot run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API client could not be made.
    #[error("cannot make the ingress controller's API client: {0}")]
    Client(#[source] kube::Error),
    /// A listener could not be bound.
    #[error("cannot serve ingress traffic on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The default certificate could not be made.
    #[error(transparent)]
    Certificate(#[from] tls::CertificateError),
    /// The TLS configuration was refused.
    #[error("cannot configure TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// A proxy worker could not be started.
    #[error("cannot start a proxy worker: {0}")]
    Worker(#[source] std::io::Error),
}

/// Where the proxy listens and what it reports.
#[derive(Debug, Clone)]
pub struct Options {
    /// The plain HTTP listener (`0.0.0.0:80` in `krust server` by default).
    pub http: SocketAddr,
    /// The HTTPS listener (`0.0.0.0:443` by default).
    pub https: SocketAddr,
    /// The addresses served Ingresses' `status.loadBalancer.ingress` lists (IPs, or host names).
    pub addresses: Vec<String>,
    /// How many proxy workers (threads with a runtime of their own) relay; 0: one per two
    /// cores (the proxy shares the node with the API server and the pods).
    pub workers: usize,
}

/// Runs the Ingress controller, an API client through `config`, until the process ends:
/// binds both listeners (failing if either cannot be bound), makes the IngressClass `krust`
/// when there is none (retried until the API answers), then serves Ingresses as they change.
pub async fn run(config: Config, options: Options) -> Result<(), Error> {
    let client = krust_client::client(config).map_err(Error::Client)?;
    let bind = |address: SocketAddr| async move {
        tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| Error::Bind { address, source })
    };
    let (http, https) = (bind(options.http).await?, bind(options.https).await?);
    tokio::spawn(ensure_class(client.clone()));

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let resolver = Arc::new(tls::Resolver {
        certificates: RwLock::new(Arc::new(tls::Certificates::default())),
        default: Arc::new(tls::default_certificate(&provider)?),
    });
    let acceptor = acceptor(provider.clone(), resolver.clone())?;
    let routes = Arc::new(proxy::Routes::default());
    let workers = match options.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2)),
        n => n,
    };
    let (handoff, queues) = proxy::Workers::new(workers);
    for (index, queue) in queues.into_iter().enumerate() {
        let (routes, acceptor) = (routes.clone(), acceptor.clone());
        let worker = move || async move {
            proxy::work(Arc::new(proxy::Worker::new(routes)), queue, acceptor).await
        };
        spawn_thread(format!("ingress-{index}"), worker)?;
    }
    let (http, https) =
        (http.into_std().map_err(Error::Worker)?, https.into_std().map_err(Error::Worker)?);
    spawn_thread("ingress-accept".into(), move || async move {
        let listen = tokio::net::TcpListener::from_std;
        match (listen(http), listen(https)) {
            (Ok(http), Ok(https)) => {
                tokio::join!(
                    proxy::accept(http, "http", handoff.clone()),
                    proxy::accept(https, "https", handoff)
                );
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "ingress: cannot listen");
            }
        }
    })?;
    tracing::info!(http = %options.http, https = %options.https, workers, "ingress serving");
    let targets = sync::Targets {
        routes,
        resolver,
        addresses: options.addresses,
        controller: CONTROLLER.to_string(),
        provider,
    };
    sync::run(client, targets).await;
    Ok(())
}

/// The HTTPS listeners' TLS: certificates from `resolver`, ALPN `h2` then `http/1.1`.
fn acceptor(
    provider: Arc<rustls::crypto::CryptoProvider>,
    resolver: Arc<tls::Resolver>,
) -> Result<tokio_rustls::TlsAcceptor, Error> {
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}

/// Runs `task` on a thread of its own named `name`, with a current-thread runtime of its own:
/// the proxy's workers (a connection and the connections it opens to endpoints stay on one
/// thread, as in nginx's worker processes) and its acceptor, which never wait behind the API
/// server's work.
fn spawn_thread<F, T>(name: String, task: F) -> Result<(), Error>
where
    F: FnOnce() -> T + Send + 'static,
    T: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Worker)?;
    std::thread::Builder::new()
        .name(name)
        .spawn(move || runtime.block_on(task()))
        .map_err(Error::Worker)?;
    Ok(())
}

/// Makes the IngressClass `krust` (the cluster's default) unless it exists, retrying with
/// back-off until the API answers; an operator's later edits (such as removing the default
/// mark) stay, and a deleted class is not made again until the next start.
async fn ensure_class(client: kube::Client) {
    let api: Api<IngressClass> = Api::all(client);
    let class = IngressClass {
        metadata: ObjectMeta {
            name: Some(CLASS.into()),
            annotations: Some(BTreeMap::from([(class::DEFAULT_CLASS.into(), "true".into())])),
            ..Default::default()
        },
        spec: Some(IngressClassSpec { controller: Some(CONTROLLER.into()), ..Default::default() }),
    };
    let mut delay = Duration::from_millis(500);
    loop {
        let result = match api.get_opt(CLASS).await {
            Ok(Some(_)) => return,
            Ok(None) => api.create(&PostParams::default(), &class).await.map(|_| true),
            Err(e) => Err(e),
        };
        match result {
            Ok(_) => {
                tracing::info!("ingress: created the default IngressClass {CLASS}");
                return;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => return,
            Err(e) => {
                tracing::warn!(error = %e, "ingress: cannot make the IngressClass {CLASS}; retrying")
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
