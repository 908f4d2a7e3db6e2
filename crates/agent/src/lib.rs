//! The node agent: upstream's kubelet as an API client. It registers its Node, renews its
//! Lease, and runs the pods bound to it as real Linux containers: pinned namespaces and a
//! veth on the node's bridge for each pod, an overlay of the image's layers for each
//! container, run by an OCI runtime under a `krust shim` that outlives the agent.
//!
//! It talks to the API server only through its client (its own `system:node:NAME`
//! credentials), inside `krust server` as well as alone (`krust agent`); it never assumes
//! that it shares a process with the server.

pub mod events;
pub mod exchange;
pub mod host;
pub mod image;
pub mod node;
pub mod pod;
pub mod runtime;
pub mod server;
pub mod simulate;
pub mod storage;
pub mod stream;
pub mod sys;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Client, Config};

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The node's name (its host name by default).
    pub node_name: String,
    /// Where the agent keeps pods, images and logs.
    pub data_dir: PathBuf,
    /// Archives imported at start (the airgap path), if any.
    pub airgap_images: Option<PathBuf>,
    /// The pods' network: (network, prefix length).
    pub pod_cidr: (Ipv4Addr, u8),
    /// The pods' IPv6 network on a dual-stack node: each pod's IPv6 address lies at the
    /// same offset as its IPv4 one, so the network holds at least as many addresses.
    pub pod_cidr_v6: Option<(Ipv6Addr, u8)>,
    /// The bridge pods are attached to.
    pub bridge: String,
    /// The node's address.
    pub node_ip: Option<Ipv4Addr>,
    /// Its IPv6 address on a dual-stack node (a second InternalIP, and pods' second host IP).
    pub node_ip6: Option<Ipv6Addr>,
    /// The cluster DNS servers written into pods' `resolv.conf`.
    pub cluster_dns: Vec<Ipv4Addr>,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// The `kubernetes` service's cluster IP, for pods' environment.
    pub kubernetes_service: Option<String>,
    /// What is held back from pods.
    pub reserved: node::machine::Reserved,
    /// The hard eviction thresholds behind the pressure conditions.
    pub eviction_hard: node::machine::Thresholds,
    /// Containers that ask for no seccomp profile get `RuntimeDefault` rather than
    /// `Unconfined` (the kubelet's `--seccomp-default`).
    pub seccomp_default: bool,
    /// The registry configuration (k3s' `registries.yaml`: mirrors, credentials and TLS by
    /// host); no file is an empty one.
    pub private_registry: PathBuf,
    /// When unused images are removed (the kubelet's image GC thresholds).
    pub image_gc: image::gc::Policy,
    /// The folder (or file) of static pod manifests (the kubelet's `staticPodPath`), if any.
    pub pod_manifest_path: Option<PathBuf>,
    /// The directory local-path volumes are made in: the agent creates the directories of
    /// the volumes provisioned on its node there and removes those whose volume is gone.
    pub local_storage_path: PathBuf,
    /// Labels the node registers with besides upstream's well-known ones.
    pub node_labels: BTreeMap<String, String>,
    /// The version the node reports (`kubeletVersion`).
    pub version: String,
    /// The OCI runtime: `embedded` (youki's `libcontainer`), or a runc-compatible binary.
    pub oci_runtime: PathBuf,
    /// The port of the agent's HTTPS endpoint (logs, exec, attach, port-forward).
    pub port: u16,
    /// How long a streaming session may pass without a byte moving.
    pub streaming_idle_timeout: std::time::Duration,
    /// The endpoint's TLS material. When `cert` is empty, the agent asks the cluster for one
    /// if `serving_certificate_from_cluster` (kept in `<data-dir>/pki`), serving a
    /// self-signed one meanwhile, or serves a self-signed one for good.
    pub tls: server::Tls,
    /// Whether a certificate the cluster issues is served when `tls` has none (upstream's
    /// `serverTLSBootstrap`).
    pub serving_certificate_from_cluster: bool,
}

#[cfg(test)]
impl Options {
    /// Options of a node `n1` on 10.42.0.0/24 with its data in `data_dir`, for tests.
    pub(crate) fn example(data_dir: &std::path::Path) -> Options {
        Options {
            node_name: "n1".into(),
            data_dir: data_dir.to_path_buf(),
            airgap_images: None,
            pod_cidr: (std::net::Ipv4Addr::new(10, 42, 0, 0), 24),
            pod_cidr_v6: None,
            bridge: "kr0".into(),
            node_ip: Some(std::net::Ipv4Addr::new(192, 0, 2, 10)),
            node_ip6: None,
            cluster_dns: vec![std::net::Ipv4Addr::new(10, 43, 0, 10)],
            cluster_domain: "cluster.local".into(),
            kubernetes_service: None,
            reserved: Default::default(),
            eviction_hard: Default::default(),
            seccomp_default: false,
            private_registry: data_dir.join("registries.yaml"),
            image_gc: Default::default(),
            pod_manifest_path: None,
            local_storage_path: data_dir.join("storage"),
            node_labels: std::collections::BTreeMap::new(),
            version: "v1.33.0".into(),
            oci_runtime: "embedded".into(),
            port: 10250,
            streaming_idle_timeout: std::time::Duration::from_secs(60),
            tls: crate::server::Tls {
                cert: String::new(),
                key: String::new(),
                client_ca: String::new(),
            },
            serving_certificate_from_cluster: false,
        }
    }
}

/// What every part of the agent shares.
pub struct Agent {
    /// The agent's client.
    pub client: Client,
    /// How it runs.
    pub options: Options,
    /// The OCI runtime and its shims (exec, attach and exec probes go through it).
    pub runtime: runtime::Runtime,
    /// The containers' lifecycle: the same shims behind a trait (a fake in tests).
    pub containers: Arc<dyn runtime::Containers>,
    /// The node's kernel, as pods use it.
    pub host: Arc<dyn host::Host>,
    /// The node's images.
    pub images: image::ImageStore,
    /// Events about pods, as the kubelet's.
    pub events: events::Recorder,
    /// How images are fetched from registries.
    pub registry: image::registry::Client,
    /// One pull of an image at a time, by the image as pods name it.
    pub pull_locks:
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// One directory per pod, by uid.
    pub pods_dir: PathBuf,
    /// Container logs, `NAMESPACE_NAME_UID/CONTAINER/ATTEMPT.log`.
    pub logs_dir: PathBuf,
    /// Where `Localhost` seccomp profiles are (`<data-dir>/seccomp`, the kubelet's
    /// `/var/lib/kubelet/seccomp`).
    pub seccomp_root: PathBuf,
    /// What the default seccomp profile depends on: the architecture and the kernel.
    pub seccomp_host: runtime::seccomp::Host,
    /// The node's allocatable CPU (millicores) and memory (bytes).
    pub allocatable: (u64, u64),
    /// What `/kubepods` holds the pods to together.
    pub pods_share: pod::resources::PodsShare,
    /// The lowest OOM score adjustment containers may get here.
    pub lowest_oom_score_adj: i32,
    /// Sandboxes made or removed at once (each takes threads, netlink sockets and mounts).
    pub sandbox_setups: tokio::sync::Semaphore,
}

/// How many sandboxes are made or removed at once.
const SANDBOX_SETUPS: usize = 4;

/// A failure to start the agent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be built.
    #[error("cannot build the API client: {0}")]
    Client(#[source] kube::Error),
    /// The image store could not be opened.
    #[error(transparent)]
    Images(#[from] image::ImageError),
    /// TLS could not be configured.
    #[error("cannot configure TLS: {0}")]
    Tls(#[source] rustls::Error),
    /// The endpoint's serving certificate is unusable.
    #[error("the endpoint's serving certificate")]
    ServingCertificate(#[source] server::certificate::CertificateError),
    /// The registry configuration cannot be used.
    #[error(transparent)]
    Registries(#[from] image::registry::config::ConfigError),
    /// A directory could not be made.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the agent for ever.
pub async fn run(config: Config, options: Options) -> Result<(), Error> {
    let client = krust_client::client(config).map_err(Error::Client)?;
    let pods_dir = options.data_dir.join("pods");
    let logs_dir = options.data_dir.join("logs");
    let seccomp_root = options.data_dir.join("seccomp");
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("krust"));
    let oci = runtime::oci::OciRuntime::from_flag(&options.oci_runtime, exe.clone());
    let runtime_root = options.data_dir.join(oci.state_dir_name());
    for dir in [&pods_dir, &logs_dir, &seccomp_root, &runtime_root] {
        std::fs::create_dir_all(dir).map_err(|source| Error::Dir { path: dir.clone(), source })?;
    }
    let images = image::ImageStore::open(&options.data_dir.join("images"))?;
    images.sweep();
    if let Some(folder) = &options.airgap_images {
        import_folder(&images, folder);
    }
    let readings = node::machine::read(&options.data_dir);
    let allocatable = (
        (readings.cpus * 1000).saturating_sub(options.reserved.cpu_millis),
        readings.memory_total.saturating_sub(options.reserved.memory),
    );
    let pods_share = pod::resources::PodsShare {
        cpu_millis: allocatable.0,
        memory_limit: readings.memory_total.saturating_sub(
            options.reserved.memory.saturating_sub(options.eviction_hard.memory_amount()),
        ),
    };
    let host = Arc::new(host::Linux { exe: exe.clone() });
    let runtime = runtime::Runtime { root: runtime_root, runtime: oci, shim: exe };
    let containers = Arc::new(runtime.clone());
    let agent = Arc::new(Agent {
        client: client.clone(),
        options: options.clone(),
        runtime,
        containers,
        host,
        images,
        events: events::Recorder::start(client.clone(), options.node_name.clone()),
        registry: image::registry::Client::from_file(&options.private_registry)?,
        pull_locks: std::sync::Mutex::default(),
        pods_dir,
        logs_dir,
        seccomp_root,
        seccomp_host: runtime::seccomp::Host::current(),
        allocatable,
        pods_share,
        lowest_oom_score_adj: sys::lowest_oom_score_adj(),
        sandbox_setups: tokio::sync::Semaphore::new(SANDBOX_SETUPS),
    });
    let subject = server::certificate::Subject {
        node: options.node_name.clone(),
        addresses: options
            .node_ip
            .map(std::net::IpAddr::V4)
            .into_iter()
            .chain(options.node_ip6.map(std::net::IpAddr::V6))
            .collect(),
        cluster: server::certificate::cluster_of(&options.tls.client_ca),
    };
    let from_cluster = options.tls.cert.is_empty() && options.serving_certificate_from_cluster;
    let pki = options.data_dir.join("pki");
    let (served, issued) = serving_certificate(&options, from_cluster.then_some((&pki, &subject)))?;
    let served = Arc::new(served);
    let address = std::net::SocketAddr::from(([0, 0, 0, 0], options.port));
    let endpoint = Arc::clone(&agent);
    // The agent's parts end with this future (dropped when the agent stops), not after it.
    let mut parts = tokio::task::JoinSet::new();
    if from_cluster {
        let keeping =
            server::certificate::keep(client.clone(), subject, pki, Arc::clone(&served), issued);
        parts.spawn(keeping);
    }
    let client_ca = options.tls.client_ca.clone();
    parts.spawn(async move {
        if let Err(e) = server::serve(endpoint, address, served, &client_ca).await {
            tracing::error!(error = %e, "the agent's endpoint stopped: logs are unavailable");
        }
    });
    parts.spawn(storage::run(
        client.clone(),
        options.node_name.clone(),
        options.local_storage_path.clone(),
    ));
    parts.spawn(node::run(client, options));
    parts.spawn(image::gc::run(Arc::clone(&agent)));
    pod::run(agent).await;
    Ok(())
}

/// The certificate the endpoint starts with: the one it was given, else the one the cluster
/// issued and the agent kept (`kept`: its folder and what it must be valid for), else a
/// self-signed one (replaced by the cluster's when the agent asks for one). With it, the
/// kept certificate when that is the one served.
fn serving_certificate(
    options: &Options,
    kept: Option<(&std::path::Path, &server::certificate::Subject)>,
) -> Result<(server::certificate::Served, Option<server::certificate::Issued>), Error> {
    let failed = Error::ServingCertificate;
    let mut issued = None;
    let (cert, key) = if !options.tls.cert.is_empty() {
        (options.tls.cert.clone(), options.tls.key.clone())
    } else if let Some(kept) = kept.and_then(|(dir, subject)| {
        server::certificate::kept(dir, subject, std::time::SystemTime::now())
    }) {
        issued = Some(kept.clone());
        kept.pem()
    } else {
        server::self_signed(&options.node_name, options.node_ip).map_err(failed)?
    };
    let served = server::certificate::Served::new(&cert, &key).map_err(failed)?;
    Ok((served, issued))
}

/// Imports every archive in `folder` (`.tar`, `.tar.gz` is not unpacked: archives are
/// plain tars) that is not imported yet.
fn import_folder(images: &image::ImageStore, folder: &std::path::Path) {
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "tar") {
            match images.import(&path, None) {
                Ok(imported) => {
                    for image in imported {
                        tracing::info!(archive = %path.display(), image = %image.names.join(","), "imported an image");
                    }
                }
                Err(e) => {
                    tracing::warn!(archive = %path.display(), error = %e, "cannot import an image archive")
                }
            }
        }
    }
}

/// A condition's last transition time: the previous one while its status holds, else now.
/// `previous` lists the conditions last reported as (type, status, lastTransitionTime).
pub(crate) fn transition_time<'a>(
    previous: impl IntoIterator<Item = (&'a str, &'a str, Option<&'a Time>)>,
    type_: &str,
    status: &str,
    now: &Time,
) -> Time {
    previous
        .into_iter()
        .find(|(t, _, _)| *t == type_)
        .filter(|(_, s, _)| *s == status)
        .and_then(|(_, _, since)| since.cloned())
        .unwrap_or_else(|| now.clone())
}

/// The node's address: the first IPv4 address of the interface the default route uses,
/// else of any interface that is up and not loopback.
pub fn node_ip() -> Option<Ipv4Addr> {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let default_iface = routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[1] == "00000000")
        .map(|f| f[0].to_string());
    let addresses: Vec<(String, Ipv4Addr)> = nix::ifaddrs::getifaddrs()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let ip = a.address?.as_sockaddr_in()?.ip();
            (!ip.is_loopback()).then(|| (a.interface_name.clone(), ip))
        })
        .collect();
    default_iface
        .and_then(|iface| addresses.iter().find(|(n, _)| *n == iface).map(|(_, ip)| *ip))
        .or_else(|| addresses.first().map(|(_, ip)| *ip))
}
