//! `krust`: one binary for the whole cluster. This file only wires subcommands to crates.

mod progress;
mod runtime;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// The allocator: mimalloc. The server decodes and drops many short-lived values (every
/// request body, every object it indexes) between long-lived ones (the cache's objects);
/// glibc's allocator fragments under that mix, holding freed memory and spending its time
/// consolidating free lists, which showed as RSS at twice the cached bytes and as
/// milliseconds added to small requests after a load. Built without transparent huge pages
/// (`no_thp`): mimalloc would ask for them on its arenas, and each region it touches would
/// then take 2 MiB (the server's idle RSS fell from 126 to 85 MiB without, a shim's private
/// memory from 7.9 to 2.5 MiB; bench/README.md). Unlike mimalloc's `allow_thp` option, this
/// leaves the processes' THP setting alone, so containers started under a shim inherit none.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A Kubernetes-compatible container orchestrator in one binary.
#[derive(Debug, Parser)]
#[command(name = "krust", version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("KRUST_GIT_COMMIT"), ")"), about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the control plane: the API server and its store, and the controllers.
    Server(Box<ServerArgs>),
    /// Runs the controllers alone, as a client of an API server.
    Controllers(ControllersArgs),
    /// Runs the scheduler alone, as a client of an API server.
    Scheduler(SchedulerArgs),
    /// Says node by node why a pod is pending, and the smallest change that would let it
    /// fit (a toleration, a label, so much CPU freed).
    ExplainPending(ExplainPendingArgs),
    /// Runs the node agent alone, as a client of an API server (started with
    /// `--disable-agent` if on the same host).
    Agent(Box<AgentArgs>),
    /// Manages the node's images (the agent's content store).
    Image {
        #[command(subcommand)]
        which: ImageCommand,
    },
    /// Owns one container for the node agent (started by the agent, not by hand).
    #[command(hide = true)]
    Shim(ShimArgs),
    /// The embedded OCI runtime (youki's libcontainer), with runc's flags.
    Runtime(runtime::RuntimeArgs),
    /// Starts the PID 1 of a pod's shared PID namespace and prints its pid (for the agent).
    #[command(hide = true)]
    PauseHolder,
    /// Is the PID 1 of a pod's shared PID namespace (started by `pause-holder`).
    #[command(hide = true)]
    Pause,
    /// Runs a benchmark and prints its results as JSON.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Where certificates, the admin kubeconfig and the embedded store live.
    #[arg(long, default_value = "/var/lib/krust")]
    data_dir: PathBuf,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// The address pods reach the API server at: the `kubernetes` Service's endpoint. By
    /// default the bind address, or with `0.0.0.0` the address of the default route's
    /// interface; none when bound to loopback.
    #[arg(long)]
    advertise_address: Option<IpAddr>,
    /// The HTTPS port.
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// etcd endpoints (comma-separated URLs); the embedded store when absent.
    #[arg(long, value_delimiter = ',')]
    datastore_endpoint: Vec<String>,
    /// How long to wait at start for etcd to answer before giving up (for example `60s`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    datastore_connect_timeout: Duration,
    /// The embedded store's page cache in MiB (the store file's pages kept in memory).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=65536))]
    embedded_cache_mib: u32,
    /// The ranges service cluster IPs come from: one, or an IPv4 and an IPv6 one for
    /// dual-stack Services (comma separated, the primary family first).
    #[arg(long, default_value = "10.43.0.0/16", value_delimiter = ',')]
    service_cidr: Vec<krust_apiserver::registry::Cidr>,
    /// The range of node ports, as `FIRST-LAST`.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range)]
    service_node_port_range: (u16, u16),
    /// How often history older than one interval is compacted (for example `5m`, `30s`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    etcd_compaction_interval: Duration,
    /// Read-only requests in flight at once, beyond which requests are queued, then answered
    /// 429 (0: no limit). Watches are not counted.
    #[arg(long, default_value_t = 400)]
    max_requests_inflight: usize,
    /// Mutating requests in flight at once, beyond which requests are queued, then answered
    /// 429 (0: no limit).
    #[arg(long, default_value_t = 200)]
    max_mutating_requests_inflight: usize,
    /// Whether requests over the in-flight limits wait in a queue for a slot (up to 15 s, as
    /// upstream's API Priority and Fairness queues them) rather than being answered 429 at
    /// once.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    enable_priority_and_fairness: bool,
    /// The most bytes of objects one list response carries (0: no bound, as upstream). A
    /// larger list without `limit` is answered 413 before its first byte; a larger page ends
    /// early with a continue token, as the API lets a server end pages.
    #[arg(long, default_value_t = 0)]
    max_list_response_bytes: usize,
    /// The longest a client's TLS handshake may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    tls_handshake_timeout: Duration,
    /// The longest reading an HTTP/1 request's head may take, from its first byte (a
    /// kept-alive connection waits `--idle-connection-timeout` for its next request).
    #[arg(long, default_value = "32s", value_parser = parse_duration)]
    request_header_timeout: Duration,
    /// The longest a request's body may take to arrive; then it is answered 408.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    request_body_timeout: Duration,
    /// How long a connection without requests in flight stays open.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    idle_connection_timeout: Duration,
    /// On SIGTERM, how long open connections have to finish their requests (watches end at
    /// once) before the server exits.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    shutdown_grace_period: Duration,
    /// How many connections may be in their TLS handshake at once; past it, the oldest is
    /// dropped.
    #[arg(long, default_value_t = 512)]
    max_pending_handshakes: usize,
    /// How many streams an HTTP/2 connection may have open at once (upstream's flag and
    /// default).
    #[arg(long, default_value_t = 1000)]
    http2_max_streams_per_connection: u32,
    /// A file of static bearer tokens, as upstream's CSV: `token,user,uid,"group1,group2"`.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// A CA file (PEM) that node agents' serving certificates must chain to, for logs,
    /// exec, attach and port-forward. By default the agents' CA
    /// (`<data-dir>/tls/kubelet-ca.crt`), which signs the certificate of the agent `krust
    /// server` runs and those agents ask for (upstream's default is not to check).
    #[arg(long, conflicts_with = "kubelet_insecure_tls")]
    kubelet_certificate_authority: Option<PathBuf>,
    /// Does not check node agents' serving certificates (upstream's default when it has no
    /// `--kubelet-certificate-authority`), for agents serving self-signed ones.
    #[arg(long)]
    kubelet_insecure_tls: bool,
    /// Whether requests without credentials are served as `system:anonymous` (only public
    /// information and discovery); `false` answers them 401.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    anonymous_auth: bool,
    /// The issuer of service-account tokens, also the API server's audience.
    #[arg(long, default_value = "https://kubernetes.default.svc.cluster.local")]
    service_account_issuer: String,
    /// Admission plugins to enable besides the default ones (upstream's names, comma
    /// separated).
    #[arg(long, value_delimiter = ',')]
    enable_admission_plugins: Vec<String>,
    /// Admission plugins to disable, even default ones (upstream's names, comma separated).
    #[arg(long, value_delimiter = ',')]
    disable_admission_plugins: Vec<String>,
    /// The admission plugins' configuration: an `AdmissionConfiguration` file
    /// (`apiserver.config.k8s.io/v1`, YAML or JSON), read at start; krust reads PodSecurity's
    /// entry (its `PodSecurityConfiguration`: defaults and exemptions).
    #[arg(long, value_name = "PATH")]
    admission_control_config_file: Option<PathBuf>,
    /// Runs no controllers in this process (run them with `krust controllers`).
    #[arg(long)]
    disable_controller_manager: bool,
    /// Finished pods kept before the pod garbage collector deletes the oldest.
    #[arg(long, default_value_t = krust_controllers::pod_gc::decide::TERMINATED_THRESHOLD)]
    terminated_pod_gc_threshold: usize,
    /// The ranges LoadBalancer Services get an address each from: an IPv4 one, an IPv6 one,
    /// or both (comma separated); for a family without one they get the ready nodes'
    /// addresses of it.
    #[arg(long, value_delimiter = ',')]
    load_balancer_ip_pool: Vec<krust_apiserver::registry::Cidr>,
    /// Runs no local-path provisioner and creates no `local-path` default StorageClass.
    #[arg(long)]
    disable_local_storage: bool,
    /// The directory on each node that local-path volumes are made in (the in-process node
    /// agent keeps them there too); `<data-dir>/storage` by default.
    #[arg(long)]
    default_local_storage_path: Option<PathBuf>,
    /// Runs no node agent in this process (run one with `krust agent`).
    #[arg(long)]
    disable_agent: bool,
    /// Runs no scheduler in this process (run one with `krust scheduler`).
    #[arg(long)]
    disable_scheduler: bool,
    /// Runs no Ingress controller in this process.
    #[arg(long)]
    disable_ingress: bool,
    /// Where the Ingress controller serves HTTP.
    #[arg(long, default_value = "0.0.0.0:80")]
    ingress_http_address: std::net::SocketAddr,
    /// Where the Ingress controller serves HTTPS.
    #[arg(long, default_value = "0.0.0.0:443")]
    ingress_https_address: std::net::SocketAddr,
    /// The Ingress proxy's worker threads (as nginx's `worker_processes`); 0: one per two
    /// cores.
    #[arg(long, default_value_t = 0)]
    ingress_workers: usize,
    /// The in-process scheduler's configuration: a `KubeSchedulerConfiguration` file
    /// (`kubescheduler.config.k8s.io/v1`, YAML or JSON).
    #[arg(long)]
    scheduler_config: Option<PathBuf>,
    #[command(flatten)]
    node: NodeArgs,
}

/// How the node agent runs its node (shared by `krust server` and `krust agent`).
#[derive(Debug, clap::Args)]
struct NodeArgs {
    /// The node's name; the host's name by default.
    #[arg(long)]
    node_name: Option<String>,
    /// The node's pod network, from which each pod gets its address: an IPv4 range, and
    /// for dual-stack pods an IPv6 one after it (comma separated), at least as large.
    #[arg(long, default_value = "10.42.0.0/24", value_delimiter = ',')]
    pod_cidr: Vec<krust_apiserver::registry::Cidr>,
    /// The bridge the pods are attached to.
    #[arg(long, default_value = "krust0")]
    bridge: String,
    /// The cluster DNS addresses: written into pods' resolv.conf and served by the node's
    /// DNS server. By default the service range's tenth address (`krust server`), else
    /// 10.43.0.10.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<std::net::Ipv4Addr>,
    /// Runs no DNS server on this node (pods still get `--cluster-dns` as their nameserver).
    #[arg(long)]
    disable_dns: bool,
    /// Runs no service proxy on this node (Services' addresses then carry no traffic here).
    #[arg(long)]
    disable_proxy: bool,
    /// Enforces no NetworkPolicy on this node's pods.
    #[arg(long)]
    disable_network_policy: bool,
    /// The resolvers names outside the cluster are forwarded to, `IP` or `IP:PORT` (comma
    /// separated); by default the host's, from /etc/resolv.conf.
    #[arg(long, value_delimiter = ',', value_parser = parse_dns_upstream)]
    dns_upstream: Vec<std::net::SocketAddr>,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// CPU held back from pods, in millicores.
    #[arg(long, default_value_t = 0)]
    reserved_cpu_millis: u64,
    /// Memory held back from pods (besides the 100Mi eviction threshold), in MiB.
    #[arg(long, default_value_t = 0)]
    reserved_memory_mib: u64,
    /// Local disk held back from pods (allocatable `ephemeral-storage`), in MiB.
    #[arg(long, default_value_t = 0)]
    reserved_ephemeral_storage_mib: u64,
    /// The hard eviction thresholds behind the node's pressure conditions, as the
    /// kubelet's (`memory.available<100Mi,nodefs.available<10%,pid.available<10%`; a
    /// signal left out is off once any is given).
    #[arg(long)]
    eviction_hard: Option<krust_agent::node::machine::Thresholds>,
    /// Runs containers that ask for no seccomp profile under the runtime's default
    /// (`RuntimeDefault`) rather than unconfined, as the kubelet's `--seccomp-default`.
    #[arg(long)]
    seccomp_default: bool,
    /// The registry configuration, in k3s' `registries.yaml` format (mirrors, credentials
    /// and TLS settings by host); `<agent data dir>/registries.yaml` by default.
    #[arg(long)]
    private_registry: Option<PathBuf>,
    /// A folder of static pod manifests (one Pod per file, YAML or JSON; names starting with
    /// a dot are skipped), run by the agent itself and mirrored into the API, as the
    /// kubelet's `--pod-manifest-path` (`staticPodPath`); it may also name a single file.
    #[arg(long)]
    pod_manifest_path: Option<PathBuf>,
    /// Disk usage (percent) of the images' filesystem at which unused images are removed,
    /// as the kubelet's; 100 turns image garbage collection off.
    #[arg(long, default_value_t = 85)]
    image_gc_high_threshold: u8,
    /// Disk usage (percent) that image garbage collection frees down to.
    #[arg(long, default_value_t = 80)]
    image_gc_low_threshold: u8,
    /// How long an unused image is kept after it was first seen.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    minimum_image_ttl_duration: std::time::Duration,
    /// Extra node labels, `KEY=VALUE` (comma separated).
    #[arg(long, value_delimiter = ',')]
    node_label: Vec<String>,
    /// The OCI runtime: `embedded` (youki's libcontainer, in this binary), or the path of
    /// a runc-compatible binary such as `runc`.
    #[arg(long, default_value = "embedded")]
    oci_runtime: PathBuf,
    /// The port of the agent's HTTPS endpoint, which the API server reaches for logs.
    #[arg(long, default_value_t = 10250)]
    agent_port: u16,
    /// The node's address, and on a dual-stack node its IPv6 address after it (comma
    /// separated); the IPv4 address of the default route's interface when absent.
    #[arg(long, value_delimiter = ',')]
    node_ip: Vec<IpAddr>,
    /// How long an exec, attach or port-forward session may pass without a byte moving
    /// before it is closed (upstream's default: 4h).
    #[arg(long, default_value = "4h", value_parser = parse_duration)]
    streaming_connection_idle_timeout: Duration,
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// The kubeconfig to reach the API server with; its user must be `system:node:NAME` in
    /// `system:nodes` (the server writes one to `<data-dir>/agent.kubeconfig`).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Where the agent keeps pods, images and logs.
    #[arg(long, default_value = "/var/lib/krust/agent")]
    data_dir: PathBuf,
    /// A folder of image archives imported at start (the airgap path).
    #[arg(long)]
    images: Option<PathBuf>,
    /// The directory local-path volumes are made in on this node (the agent creates and
    /// removes their directories); the same as the provisioner's.
    #[arg(long, default_value = "/var/lib/krust/storage")]
    default_local_storage_path: PathBuf,
    /// The `kubernetes` service's cluster IP, given to pods in their environment.
    #[arg(long, default_value = "10.43.0.1")]
    kubernetes_service_ip: std::net::Ipv4Addr,
    /// The endpoint's serving certificate (PEM); when absent, one the cluster issues (see
    /// `--rotate-server-certificates`), else a self-signed one.
    #[arg(long, requires = "tls_private_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The key of `--tls-cert-file`.
    #[arg(long, requires = "tls_cert_file")]
    tls_private_key_file: Option<PathBuf>,
    /// Without `--tls-cert-file`, asks the cluster for the endpoint's serving certificate (a
    /// `kubernetes.io/kubelet-serving` CertificateSigningRequest, which krust's controllers
    /// approve for the node's own name and addresses) and renews it before it expires, as
    /// upstream's `serverTLSBootstrap`; `false` serves a self-signed one.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    rotate_server_certificates: bool,
    #[command(flatten)]
    node: NodeArgs,
    #[command(flatten)]
    simulate: SimulateArgs,
}

/// Simulated nodes: registered and kept alive, their pods reported Running without
/// containers (as kwok's). For scale tests, benchmarks and capacity planning.
#[derive(Debug, clap::Args)]
struct SimulateArgs {
    /// Simulates this many nodes instead of running this host's agent.
    #[arg(long)]
    simulate: Option<usize>,
    /// The simulated nodes' names are `<prefix>-<i>`.
    #[arg(long, default_value = "sim")]
    simulate_prefix: String,
    /// Each simulated node's CPU.
    #[arg(long, default_value = "4")]
    simulate_cpu: String,
    /// Each simulated node's memory.
    #[arg(long, default_value = "16Gi")]
    simulate_memory: String,
    /// How many pods each simulated node takes.
    #[arg(long, default_value_t = 110)]
    simulate_pods: u32,
    /// Labels of every simulated node, `KEY=VALUE` (comma separated).
    #[arg(long, value_delimiter = ',')]
    simulate_labels: Vec<String>,
    /// Taints of every simulated node, `KEY[=VALUE]:EFFECT` (comma separated).
    #[arg(long, value_delimiter = ',')]
    simulate_taints: Vec<String>,
    /// Spreads the simulated nodes over this many zones (`topology.kubernetes.io/zone`).
    #[arg(long, default_value_t = 0)]
    simulate_zones: usize,
    /// A file of node groups (`groups: [{prefix, count, cpu, memory, pods, labels, taints,
    /// zones}]`, YAML or JSON), simulated besides the `--simulate` ones.
    #[arg(long)]
    simulate_config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Imports the images of a `docker save` or OCI archive.
    Import {
        /// The archive.
        file: PathBuf,
        /// The repository of images an OCI layout names by a tag alone (they become
        /// `BASE:TAG`; as `ctr import --base-name`).
        #[arg(long)]
        base_name: Option<String>,
        /// The agent's data dir.
        #[arg(long, default_value = "/var/lib/krust/agent")]
        data_dir: PathBuf,
    },
    /// Pulls an image from its registry (HTTPS; plain HTTP only on loopback).
    Pull {
        /// The image (`busybox:1.36`, `registry.example.com/app@sha256:...`).
        image: String,
        /// `USER:PASSWORD` for the registry, if it needs one.
        #[arg(long)]
        creds: Option<String>,
        /// The agent's data dir.
        #[arg(long, default_value = "/var/lib/krust/agent")]
        data_dir: PathBuf,
        /// The registry configuration (`registries.yaml`); `<data-dir>/registries.yaml` by
        /// default, as the agent's.
        #[arg(long)]
        private_registry: Option<PathBuf>,
    },
    /// Lists the node's images.
    Ls {
        /// The agent's data dir.
        #[arg(long, default_value = "/var/lib/krust/agent")]
        data_dir: PathBuf,
    },
    /// Removes an image (by name or id).
    Rm {
        /// The image's name or id.
        image: String,
        /// The agent's data dir.
        #[arg(long, default_value = "/var/lib/krust/agent")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ShimArgs {
    #[arg(long)]
    id: String,
    #[arg(long)]
    bundle: PathBuf,
    #[arg(long)]
    log: PathBuf,
    #[arg(long)]
    runtime: PathBuf,
    #[arg(long)]
    runtime_root: PathBuf,
}

#[derive(Debug, clap::Args)]
struct ControllersArgs {
    /// The kubeconfig to reach the API server with; its user needs the
    /// `system:kube-controller-manager` role (the server writes one to
    /// `<data-dir>/controller-manager.kubeconfig`).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The CA bundle published in every namespace as `kube-root-ca.crt`; the kubeconfig's CA
    /// by default.
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    /// Finished pods kept before the pod garbage collector deletes the oldest.
    #[arg(long, default_value_t = krust_controllers::pod_gc::decide::TERMINATED_THRESHOLD)]
    terminated_pod_gc_threshold: usize,
    /// The ranges LoadBalancer Services get an address each from: an IPv4 one, an IPv6 one,
    /// or both (comma separated); for a family without one they get the ready nodes'
    /// addresses of it.
    #[arg(long, value_delimiter = ',')]
    load_balancer_ip_pool: Vec<krust_apiserver::registry::Cidr>,
    /// Runs no local-path provisioner and creates no `local-path` default StorageClass.
    #[arg(long)]
    disable_local_storage: bool,
    /// The directory on each node that local-path volumes are made in.
    #[arg(long, default_value = "/var/lib/krust/storage")]
    default_local_storage_path: PathBuf,
}

#[derive(Debug, clap::Args)]
struct SchedulerArgs {
    /// The kubeconfig to reach the API server with; its user needs the
    /// `system:kube-scheduler` role (the server writes one to `<data-dir>/scheduler.kubeconfig`).
    #[arg(long)]
    kubeconfig: PathBuf,
    /// A `KubeSchedulerConfiguration` file (`kubescheduler.config.k8s.io/v1`, YAML or JSON):
    /// profiles by `schedulerName`, their plugins, weights and plugin arguments.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct ExplainPendingArgs {
    /// The pending pod.
    pod: String,
    /// Its namespace; the kubeconfig context's by default.
    #[arg(short, long)]
    namespace: Option<String>,
    /// The kubeconfig; `$KUBECONFIG` or `~/.kube/config` by default.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The scheduler's configuration, when it is not the default one.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The API server (create, get, list, watch fan-out) and the raw store, on the embedded
    /// store and on etcd.
    Api(krust_bench::ApiBenchArgs),
    /// A sustained stream of ~4 KB updates against a server on the embedded store and one on
    /// etcd (separate processes), sampling memory and disk every second.
    Sustained(krust_bench::SustainedBenchArgs),
    /// One server loaded to a cluster's size (5,000 nodes and 150,000 pods by default), on
    /// the embedded store and on etcd: load rate, memory per object, lists, field selectors,
    /// paging, disk, shutdown and restart, each beside its reference.
    Scale(krust_bench::ScaleBenchArgs),
    /// What an open registry costs: creates by an RBAC-authorized user against the admin's, a
    /// list of 10,000 ConfigMaps against a plain encode, and server CPU per write with 1,000
    /// node-selecting watchers against none.
    Fanout(krust_bench::FanoutBenchArgs),
    /// Creates and lists of a custom resource (with a schema, a default and a CEL rule)
    /// against ConfigMaps of the same size.
    CustomResources(krust_bench::CustomResourceBenchArgs),
    /// Server-side apply of an unchanged Deployment against a plain update of it.
    Apply(krust_bench::ApplyBenchArgs),
    /// What the controllers cost on simulated nodes: a Deployment scaled up and rolled,
    /// against a plain client's direct creates, with the controllers' requests and memory.
    Controllers(krust_bench::ControllersBenchArgs),
    /// Exec latency through kube-rs's `AttachedProcess` (WebSocket) against a running
    /// cluster: a command run again and again in one pod, with its output and exit status.
    Exec(krust_bench::ExecBenchArgs),
    /// Scheduling throughput and latency on 1,000 and 5,000 registered nodes, against a
    /// plain client binding round robin in the same run.
    Scheduler(krust_bench::SchedulerBenchArgs),
}

/// Reads `--load-balancer-ip-pool`: at most one range per IP family; `None` when empty.
fn load_balancer_pool(
    cidrs: &[krust_apiserver::registry::Cidr],
) -> anyhow::Result<Option<krust_controllers::service_lb::decide::Pool>> {
    use krust_controllers::service_lb::decide::{Pool, Range};
    if cidrs.is_empty() {
        return Ok(None);
    }
    let ranges = cidrs
        .iter()
        .map(|c| Range::new(c.network(), c.prefix()))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| anyhow::anyhow!("--load-balancer-ip-pool: a prefix is too long"))?;
    Pool::new(ranges).map(Some).map_err(|e| anyhow::anyhow!("--load-balancer-ip-pool: {e}"))
}

fn parse_port_range(raw: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid port range {raw:?} (for example 30000-32767)");
    let (low, high) = raw.split_once('-').ok_or_else(bad)?;
    let (low, high): (u16, u16) =
        (low.parse().map_err(|_| bad())?, high.parse().map_err(|_| bad())?);
    if low == 0 || low > high {
        return Err(bad());
    }
    Ok((low, high))
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let n: u64 = number.parse().map_err(|_| format!("invalid duration {raw:?}"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!("invalid duration unit in {raw:?} (use ms, s, m or h)")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The runtime's command line says its failures itself, and its stderr is an exec'd
    // process's: it logs only when asked through a variable of its own (the agent's
    // `KRUST_LOG` reaches it too). libcontainer reports every cgroup controller it skips.
    let (variable, default_filter) = match cli.command {
        Command::Runtime(_) => ("KRUST_RUNTIME_LOG", "off"),
        _ => ("KRUST_LOG", "info,libcontainer=error,libcgroups=error"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(variable)
                .unwrap_or_else(|_| default_filter.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    raise_open_file_limit();
    // The shim stays small: no async runtime, a thread per stream.
    let cli = match cli.command {
        Command::Shim(args) => return shim(args),
        // Single-threaded, as the runtime needs to start a container.
        Command::Runtime(args) => std::process::exit(runtime::run(args)),
        Command::PauseHolder => {
            let exe = std::env::current_exe().context("cannot find this binary")?;
            let pid = krust_agent::sys::start_pid_namespace_holder(&exe)?;
            println!("{pid}");
            return Ok(());
        }
        Command::Pause => krust_agent::sys::pause(),
        Command::Image { which } => return image(which),
        command => Cli { command },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server(*args).await,
            Command::Controllers(args) => controllers(args).await,
            Command::Scheduler(args) => scheduler(args).await,
            Command::ExplainPending(args) => explain_pending(args).await,
            Command::Agent(args) => agent(*args).await,
            Command::Shim(_)
            | Command::Runtime(_)
            | Command::Image { .. }
            | Command::PauseHolder
            | Command::Pause => Ok(()),
            Command::Bench { which: BenchCommand::Api(args) } => krust_bench::api(args).await,
            Command::Bench { which: BenchCommand::Sustained(args) } => {
                krust_bench::sustained(args).await
            }
            Command::Bench { which: BenchCommand::Scale(args) } => krust_bench::scale(args).await,
            Command::Bench { which: BenchCommand::Fanout(args) } => krust_bench::fanout(args).await,
            Command::Bench { which: BenchCommand::Apply(args) } => krust_bench::apply(args).await,
            Command::Bench { which: BenchCommand::CustomResources(args) } => {
                krust_bench::custom_resources(args).await
            }
            Command::Bench { which: BenchCommand::Controllers(args) } => {
                krust_bench::controllers(args).await
            }
            Command::Bench { which: BenchCommand::Exec(args) } => krust_bench::exec(args).await,
            Command::Bench { which: BenchCommand::Scheduler(args) } => {
                krust_bench::scheduler(args).await
            }
        }
    });
    // Work still running in the background (a store read, a task of a connection that did
    // not close in time) is not waited for: every answered write is durable already.
    runtime.shutdown_background();
    result
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    krust_apiserver::registry::check_dual(&args.service_cidr)
        .map_err(|e| anyhow::anyhow!("--service-cidr {e}"))?;
    let load_balancer_pool = load_balancer_pool(&args.load_balancer_ip_pool)?;
    let service_ranges = krust_apiserver::registry::ServiceRanges {
        cidrs: args.service_cidr.clone(),
        node_ports: args.service_node_port_range,
    };
    // A scheduler configuration that cannot be used stops the start before anything runs.
    let scheduler_config = match args.disable_scheduler {
        true => None,
        false => Some(scheduler_configuration(args.scheduler_config.as_deref())?),
    };
    // So does an admission configuration that cannot be used.
    let admission = krust_apiserver::admission::Selection::new(
        &args.enable_admission_plugins,
        &args.disable_admission_plugins,
    )?;
    let admission_configs =
        admission_configuration(args.admission_control_config_file.as_deref(), &admission)?;
    let config = krust_apiserver::Config {
        data_dir: args.data_dir.clone(),
        bind_address: args.bind_address,
        port: args.port,
        datastore_endpoints: args.datastore_endpoint,
        compaction_interval: args.etcd_compaction_interval,
        datastore_connect_timeout: args.datastore_connect_timeout,
        embedded_cache_bytes: usize::try_from(args.embedded_cache_mib)
            .unwrap_or(usize::MAX)
            .saturating_mul(1024 * 1024),
        build: build_info(),
        service_ranges: service_ranges.clone(),
        connections: krust_apiserver::http::serve::ConnectionLimits {
            tls_handshake: args.tls_handshake_timeout,
            request_header: args.request_header_timeout,
            request_body: args.request_body_timeout,
            idle: args.idle_connection_timeout,
            max_pending_handshakes: args.max_pending_handshakes,
            http2_max_streams: args.http2_max_streams_per_connection,
            ..Default::default()
        },
        inflight: krust_apiserver::http::inflight::Limits {
            read_only: args.max_requests_inflight,
            mutating: args.max_mutating_requests_inflight,
            queue_wait: if args.enable_priority_and_fairness {
                krust_apiserver::http::inflight::QUEUE_WAIT
            } else {
                std::time::Duration::ZERO
            },
        },
        max_list_response_bytes: Some(args.max_list_response_bytes).filter(|&bytes| bytes > 0),
        token_auth_file: args.token_auth_file,
        kubelet_certificate_authority: if args.kubelet_insecure_tls {
            None
        } else {
            Some(
                args.kubelet_certificate_authority
                    .clone()
                    .unwrap_or_else(|| args.data_dir.join("tls").join("kubelet-ca.crt")),
            )
        },
        anonymous_auth: args.anonymous_auth,
        service_account_issuer: args.service_account_issuer,
        admission,
        admission_configs,
        advertise_ip: args.advertise_address.or(if args.bind_address.is_unspecified() {
            krust_agent::node_ip().map(IpAddr::V4)
        } else {
            Some(args.bind_address).filter(|ip| !ip.is_loopback())
        }),
        // The node's credentials are written either way, before the server serves, so that
        // `krust agent --kubeconfig <data-dir>/agent.kubeconfig` can run this host's agent on
        // its own as soon as the server is ready.
        node_name: Some(node_name(&args.node)?),
        ..krust_apiserver::Config::default()
    };
    let running = krust_apiserver::start(config).await.context("cannot start the API server")?;
    tracing::info!(address = %running.address, kubeconfig = %running.kubeconfig.display(), "API server ready");
    // Absolute, as a volume's `hostPath` must be.
    let local_storage = std::path::absolute(
        args.default_local_storage_path.clone().unwrap_or_else(|| args.data_dir.join("storage")),
    )
    .context("cannot resolve --default-local-storage-path")?;
    let mut controllers = None;
    if !args.disable_controller_manager {
        let path = running.controller_manager_kubeconfig.clone();
        let (config, root_ca) = krust_client::config_from_kubeconfig(&path)
            .await
            .context("cannot read the controller manager's kubeconfig")?;
        let identity = server_identity(&args.data_dir)?;
        let options = krust_controllers::Options {
            root_ca,
            identity,
            terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
            load_balancer_pool: load_balancer_pool.clone(),
            local_storage_path: (!args.disable_local_storage)
                .then(|| local_storage.to_string_lossy().into_owned()),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = krust_controllers::run(
                krust_client::acting_as(&config, CONTROLLER_MANAGER),
                options,
                shutdown,
            )
            .await
            {
                tracing::error!(error = %e, "the controllers stopped");
            }
        });
        controllers = Some((stop, task));
    }
    let mut scheduler = None;
    if let Some(configuration) = scheduler_config {
        let (config, _) = krust_client::config_from_kubeconfig(&running.scheduler_kubeconfig)
            .await
            .context("cannot read the scheduler's kubeconfig")?;
        let identity = server_identity(&args.data_dir)?;
        let options = krust_scheduler::Options { identity, configuration };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) =
                krust_scheduler::run(krust_client::acting_as(&config, SCHEDULER), options, shutdown)
                    .await
            {
                tracing::error!(error = %e, "the scheduler stopped");
            }
        });
        scheduler = Some((stop, task));
    }
    let mut options = agent_options(
        &args.node,
        args.data_dir.join("agent"),
        Some(args.data_dir.join("images")),
        service_ranges.first().map(|ip| ip.to_string()),
        service_ranges
            .dns()
            .into_iter()
            .find_map(|ip| match ip {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .unwrap_or(std::net::Ipv4Addr::new(10, 43, 0, 10)),
        local_storage,
    )?;
    let path =
        running.node_kubeconfig.clone().context("the API server wrote no node kubeconfig")?;
    let node_ip = options.node_ip;
    let mut agent = None;
    let mut dns = None;
    let mut proxy = None;
    let mut policy = None;
    if !args.disable_agent {
        let (config, ca) = krust_client::config_from_kubeconfig(&path)
            .await
            .context("cannot read the node agent's kubeconfig")?;
        let addresses: Vec<IpAddr> = options
            .node_ip
            .map(IpAddr::V4)
            .into_iter()
            .chain(options.node_ip6.map(IpAddr::V6))
            .collect();
        let (cert, key) =
            krust_apiserver::pki::node_serving(&args.data_dir, &options.node_name, &addresses)
                .context("cannot issue the node agent's serving certificate")?;
        options.tls = krust_agent::server::Tls { cert, key, client_ca: ca };
        dns = start_dns(&args.node, &options, &config)?;
        proxy = start_proxy(&args.node, &options, &config);
        policy = start_network_policy(&args.node, &options, &config);
        agent = Some(tokio::spawn(async move {
            if let Err(e) =
                krust_agent::run(krust_client::acting_as(&config, KUBELET), options).await
            {
                tracing::error!(error = %e, "the node agent stopped");
            }
        }));
    }
    let ingress = if args.disable_ingress {
        None
    } else {
        let (config, _) = krust_client::config_from_kubeconfig(&running.ingress_kubeconfig)
            .await
            .context("cannot read the ingress controller's kubeconfig")?;
        // Ingresses list the address the proxy listens on, or the node's when it listens on all.
        let listening = args.ingress_http_address.ip();
        let address = if listening.is_unspecified() {
            node_ip.map(|ip| ip.to_string())
        } else {
            Some(listening.to_string())
        };
        let options = krust_ingress::Options {
            http: args.ingress_http_address,
            https: args.ingress_https_address,
            addresses: address.into_iter().collect(),
            workers: args.ingress_workers,
        };
        Some(tokio::spawn(async move {
            if let Err(e) =
                krust_ingress::run(krust_client::acting_as(&config, INGRESS), options).await
            {
                tracing::error!(error = %e, "the ingress controller stopped");
            }
        }))
    };
    wait_for_signal().await;
    tracing::info!(grace = ?args.shutdown_grace_period, "shutting down");
    // The controllers and the agent stop first: they are clients of the server that is
    // going away. The pods' containers keep running under their shims.
    for (stop, mut task) in controllers.into_iter().chain(scheduler) {
        // They release their lease on the way out (bounded), so a successor need not wait.
        let _ = stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
            task.abort();
        }
    }
    // Each ends with its own tasks (and their watches) before the server closes their
    // connections, so that none of them reports the server gone.
    for task in agent.into_iter().chain(proxy).chain(policy).chain(ingress) {
        task.abort();
        let _ = task.await;
    }
    if let Some(dns) = dns {
        dns.stop().await;
    }
    let left = running.shutdown(args.shutdown_grace_period).await;
    if left > 0 {
        tracing::warn!(connections = left, "connections still open at the end of the grace period");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The names the components give in their User-Agent, which the server takes as the field
/// manager of their writes: upstream's names where a component does upstream's job, so that
/// `managedFields` reads as a Kubernetes user expects (`kubelet` for a pod's status).
const CONTROLLER_MANAGER: &str = "kube-controller-manager";
const SCHEDULER: &str = "kube-scheduler";
const KUBELET: &str = "kubelet";
const PROXY: &str = "kube-proxy";
const NETWORK_POLICY: &str = "krust-network-policy";
const DNS: &str = "krust-dns";
const INGRESS: &str = "krust-ingress";

/// The in-server controllers' name in the leader lease: the host's name and an id kept in the
/// data dir, so that a restarted server takes its own lease back at once instead of waiting
/// for it to expire.
fn server_identity(data_dir: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join("controller-manager.id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    let id = krust_client::identity();
    // Private, as everything under the data dir.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(id.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// The scheduler's configuration from `path`, or the default one.
fn scheduler_configuration(
    path: Option<&std::path::Path>,
) -> anyhow::Result<krust_scheduler::Configuration> {
    let Some(path) = path else { return Ok(krust_scheduler::Configuration::default()) };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let configuration = krust_scheduler::Configuration::parse(&text)
        .with_context(|| format!("cannot use {}", path.display()))?;
    configuration.profiles().with_context(|| format!("cannot use {}", path.display()))?;
    Ok(configuration)
}

/// `--admission-control-config-file`: the configurations of the enabled plugins that take one,
/// each from the first entry naming it, embedded or in its own file (relative to the
/// configuration file's folder). As upstream, a disabled plugin's entry is not read; entries of
/// plugins krust reads no configuration for are logged and ignored.
fn admission_configuration(
    path: Option<&std::path::Path>,
    selection: &krust_apiserver::admission::Selection,
) -> anyhow::Result<krust_apiserver::admission::PluginConfigs> {
    use krust_admission::config::{AdmissionConfiguration, CONFIGURABLE, Raw, Source};

    let mut configs = krust_apiserver::admission::PluginConfigs::default();
    let Some(path) = path else { return Ok(configs) };
    let cannot = || format!("cannot use admission configuration {}", path.display());
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read admission configuration {}", path.display()))?;
    let file = AdmissionConfiguration::parse(&text).with_context(cannot)?;
    for entry in file.ignored() {
        tracing::warn!(
            plugin = %entry.name,
            file = %path.display(),
            "krust reads no admission configuration for this plugin; its entry is ignored"
        );
    }
    let folder = path.parent().unwrap_or(std::path::Path::new(""));
    for plugin in CONFIGURABLE.iter().filter(|p| selection.has(p)) {
        match file.source(plugin, folder) {
            None => {}
            Some(Source::Embedded(value)) => {
                configs.set(plugin, Raw::Embedded(value)).with_context(cannot)?;
            }
            Some(Source::File(own)) => {
                let named = || {
                    format!(
                        "cannot use {plugin}'s configuration {} (from admission configuration {})",
                        own.display(),
                        path.display()
                    )
                };
                let text = std::fs::read_to_string(&own).with_context(named)?;
                configs.set(plugin, Raw::Text(&text)).with_context(named)?;
            }
        }
    }
    Ok(configs)
}

async fn scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let configuration = scheduler_configuration(args.config.as_deref())?;
    let (config, _) = krust_client::config_from_kubeconfig(&args.kubeconfig)
        .await
        .with_context(|| format!("cannot use kubeconfig {}", args.kubeconfig.display()))?;
    let options = krust_scheduler::Options { identity: krust_client::identity(), configuration };
    krust_scheduler::run(krust_client::acting_as(&config, SCHEDULER), options, wait_for_signal())
        .await
        .context("the scheduler stopped")
}

async fn explain_pending(args: ExplainPendingArgs) -> anyhow::Result<()> {
    let configuration = scheduler_configuration(args.config.as_deref())?;
    let config = krust_client::config_or_default(args.kubeconfig.as_deref()).await?;
    let namespace = args.namespace.as_deref();
    let text = krust_scheduler::explain_pending(config, namespace, &args.pod, &configuration)
        .await
        .with_context(|| format!("cannot explain pod {}", args.pod))?;
    print!("{text}");
    Ok(())
}

async fn controllers(args: ControllersArgs) -> anyhow::Result<()> {
    let (config, mut root_ca) = krust_client::config_from_kubeconfig(&args.kubeconfig)
        .await
        .with_context(|| format!("cannot use kubeconfig {}", args.kubeconfig.display()))?;
    if let Some(path) = &args.root_ca_file {
        root_ca = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    let options = krust_controllers::Options {
        root_ca,
        identity: krust_client::identity(),
        terminated_pod_gc_threshold: args.terminated_pod_gc_threshold,
        load_balancer_pool: load_balancer_pool(&args.load_balancer_ip_pool)?,
        local_storage_path: match args.disable_local_storage {
            true => None,
            false => Some(
                std::path::absolute(&args.default_local_storage_path)
                    .context("cannot resolve --default-local-storage-path")?
                    .to_string_lossy()
                    .into_owned(),
            ),
        },
    };
    krust_controllers::run(
        krust_client::acting_as(&config, CONTROLLER_MANAGER),
        options,
        wait_for_signal(),
    )
    .await
    .context("the controllers stopped")
}

/// The node's name: `--node-name`, else the host's name in lower case.
fn node_name(node: &NodeArgs) -> anyhow::Result<String> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = node.node_name.clone().unwrap_or_else(|| hostname.trim().to_lowercase());
    anyhow::ensure!(!name.is_empty(), "the host has no name: pass --node-name");
    Ok(name)
}

/// Reads `--node-ip`: an IPv4 address, then an optional IPv6 one.
fn node_addresses(
    ips: &[IpAddr],
) -> anyhow::Result<(Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>)> {
    match ips {
        [] => Ok((None, None)),
        [IpAddr::V4(v4)] => Ok((Some(*v4), None)),
        [IpAddr::V4(v4), IpAddr::V6(v6)] => Ok((Some(*v4), Some(*v6))),
        _ => anyhow::bail!("--node-ip: an IPv4 address, then optionally an IPv6 one"),
    }
}

/// The node's IPv4 pod network and, on a dual-stack node, its IPv6 one.
type PodNetworks = ((std::net::Ipv4Addr, u8), Option<(std::net::Ipv6Addr, u8)>);

/// Reads `--pod-cidr`: an IPv4 range with room for pods (a /30 or larger), then an
/// optional IPv6 one at least as large.
fn pod_networks(cidrs: &[krust_apiserver::registry::Cidr]) -> anyhow::Result<PodNetworks> {
    krust_apiserver::registry::check_dual(cidrs).map_err(|e| anyhow::anyhow!("--pod-cidr {e}"))?;
    let v4 = match cidrs[0].network() {
        IpAddr::V4(network) if (8..=30).contains(&cidrs[0].prefix()) => {
            (network, cidrs[0].prefix())
        }
        _ => anyhow::bail!(
            "--pod-cidr: the first range must be IPv4, from /8 to /30 (for example 10.42.0.0/24)"
        ),
    };
    let v6 = match cidrs.get(1).map(|c| (c.network(), c.prefix())) {
        Some((IpAddr::V6(network), prefix)) => {
            anyhow::ensure!(
                u32::from(128 - prefix) >= u32::from(32 - v4.1),
                "--pod-cidr: the IPv6 range /{prefix} holds fewer addresses than the IPv4 one /{}",
                v4.1
            );
            Some((network, prefix))
        }
        _ => None,
    };
    Ok((v4, v6))
}

fn agent_options(
    node: &NodeArgs,
    data_dir: PathBuf,
    airgap_images: Option<PathBuf>,
    kubernetes_service: Option<String>,
    default_dns: std::net::Ipv4Addr,
    local_storage_path: PathBuf,
) -> anyhow::Result<krust_agent::Options> {
    let node_name = node_name(node)?;
    let (pod_cidr, pod_cidr_v6) = pod_networks(&node.pod_cidr)?;
    let (node_ip, node_ip6) = node_addresses(&node.node_ip)?;
    let mut node_labels = std::collections::BTreeMap::new();
    for label in &node.node_label {
        let (key, value) = label
            .split_once('=')
            .with_context(|| format!("invalid --node-label {label:?} (KEY=VALUE)"))?;
        node_labels.insert(key.to_string(), value.to_string());
    }
    let version = node_version();
    let eviction_hard = node.eviction_hard.unwrap_or_default();
    let private_registry =
        node.private_registry.clone().unwrap_or_else(|| data_dir.join("registries.yaml"));
    let image_gc = krust_agent::image::gc::Policy::new(
        node.image_gc_high_threshold,
        node.image_gc_low_threshold,
        node.minimum_image_ttl_duration,
    )
    .map_err(anyhow::Error::msg)?;
    Ok(krust_agent::Options {
        node_name,
        data_dir,
        airgap_images,
        pod_cidr,
        pod_cidr_v6,
        bridge: node.bridge.clone(),
        node_ip: node_ip.or_else(krust_agent::node_ip),
        node_ip6,
        cluster_dns: if node.cluster_dns.is_empty() {
            vec![default_dns]
        } else {
            node.cluster_dns.clone()
        },
        cluster_domain: node.cluster_domain.clone(),
        kubernetes_service,
        reserved: krust_agent::node::machine::Reserved {
            cpu_millis: node.reserved_cpu_millis,
            // Allocatable memory leaves the eviction threshold out too, as upstream's.
            memory: (node.reserved_memory_mib << 20) + eviction_hard.memory_amount(),
            ephemeral_storage: node.reserved_ephemeral_storage_mib << 20,
        },
        eviction_hard,
        seccomp_default: node.seccomp_default,
        private_registry,
        image_gc,
        pod_manifest_path: node.pod_manifest_path.clone(),
        local_storage_path,
        node_labels,
        version,
        oci_runtime: node.oci_runtime.clone(),
        port: node.agent_port,
        streaming_idle_timeout: node.streaming_connection_idle_timeout,
        tls: krust_agent::server::Tls {
            cert: String::new(),
            key: String::new(),
            client_ca: String::new(),
        },
        serving_certificate_from_cluster: false,
    })
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    if args.simulate.simulate.is_some() || args.simulate.simulate_config.is_some() {
        return simulate(&args).await;
    }
    let mut options = agent_options(
        &args.node,
        args.data_dir,
        args.images,
        Some(args.kubernetes_service_ip.to_string()),
        std::net::Ipv4Addr::new(10, 43, 0, 10),
        std::path::absolute(&args.default_local_storage_path)
            .context("cannot resolve --default-local-storage-path")?,
    )?;
    let (config, ca) = krust_client::config_from_kubeconfig(&args.kubeconfig)
        .await
        .with_context(|| format!("cannot use kubeconfig {}", args.kubeconfig.display()))?;
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
    };
    options.tls.client_ca = ca;
    options.serving_certificate_from_cluster = args.rotate_server_certificates;
    if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_private_key_file) {
        options.tls.cert = read(cert)?;
        options.tls.key = read(key)?;
    }
    let dns = start_dns(&args.node, &options, &config)?;
    let proxy = start_proxy(&args.node, &options, &config);
    let policy = start_network_policy(&args.node, &options, &config);
    let result = tokio::select! {
        result = krust_agent::run(krust_client::acting_as(&config, KUBELET), options) => result.context("the node agent stopped"),
        () = wait_for_signal() => Ok(()),
    };
    for task in proxy.into_iter().chain(policy) {
        task.abort();
        let _ = task.await;
    }
    if let Some(dns) = dns {
        dns.stop().await;
    }
    result
}

/// Starts the node's service proxy (a client of the API with the node's credentials),
/// unless `--disable-proxy`: its nf_tables table is `<bridge>-proxy`.
fn start_proxy(
    node: &NodeArgs,
    agent: &krust_agent::Options,
    config: &krust_proxy::Config,
) -> Option<tokio::task::JoinHandle<()>> {
    if node.disable_proxy {
        return None;
    }
    let options = krust_proxy::Options {
        table: format!("{}-proxy", agent.bridge),
        pod_cidr: agent.pod_cidr,
        pod_cidr_v6: agent.pod_cidr_v6,
        node: agent.node_name.clone(),
    };
    let config = krust_client::acting_as(config, PROXY);
    Some(tokio::spawn(async move {
        if let Err(e) = krust_proxy::run(config, options).await {
            tracing::error!(error = %e, "the service proxy stopped");
        }
    }))
}

/// Starts the node's NetworkPolicy enforcement (a client of the API with the node's
/// credentials), unless `--disable-network-policy`: its nf_tables table is `<bridge>-policy`.
fn start_network_policy(
    node: &NodeArgs,
    agent: &krust_agent::Options,
    config: &krust_networkpolicy::Config,
) -> Option<tokio::task::JoinHandle<()>> {
    if node.disable_network_policy {
        return None;
    }
    let options = krust_networkpolicy::Options {
        table: format!("{}-policy", agent.bridge),
        node: agent.node_name.clone(),
        ipv6: agent.pod_cidr_v6.is_some(),
    };
    let config = krust_client::acting_as(config, NETWORK_POLICY);
    Some(tokio::spawn(async move {
        if let Err(e) = krust_networkpolicy::run(config, options).await {
            tracing::error!(error = %e, "network policy enforcement stopped");
        }
    }))
}

/// Starts the node's DNS server (a client of the API with the node's credentials), unless
/// `--disable-dns`. It answers on the cluster DNS addresses, held by a link named
/// after the bridge; names outside the cluster go to `--dns-upstream` or the host's
/// resolvers. It runs on a thread and runtime of its own, so that its answers never wait
/// behind the rest of the process (a busy agent or API server); it ends with its handle.
fn start_dns(
    node: &NodeArgs,
    agent: &krust_agent::Options,
    config: &krust_dns::Config,
) -> anyhow::Result<Option<ClusterDns>> {
    if node.disable_dns {
        return Ok(None);
    }
    let addresses: Vec<IpAddr> = agent.cluster_dns.iter().copied().map(IpAddr::V4).collect();
    let upstreams = if node.dns_upstream.is_empty() {
        let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        krust_dns::forward::upstreams_from_resolv_conf(&host, &addresses)
    } else {
        node.dns_upstream.clone()
    };
    let link: String = format!("{}-dns", agent.bridge).chars().take(15).collect();
    let options = krust_dns::Options {
        addresses,
        port: 53,
        domain: agent.cluster_domain.clone(),
        upstreams,
        link: Some(link),
    };
    let config = krust_client::acting_as(config, DNS);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the DNS server's runtime")?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("cluster-dns".into())
        .spawn(move || {
            // Its tasks end with its runtime, when it is told to stop (or its handle is gone).
            let served = runtime.block_on(async {
                tokio::select! {
                    served = krust_dns::run(config, options) => served,
                    _ = stopped => Ok(()),
                }
            });
            if let Err(e) = served {
                tracing::error!(error = %e, "the cluster DNS server stopped");
            }
        })
        .context("cannot start the DNS server's thread")?;
    Ok(Some(ClusterDns { stop, thread }))
}

/// The cluster DNS server's thread; it stops when told or when this is dropped.
struct ClusterDns {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ClusterDns {
    /// Stops the server and waits (at most 5 s) until its thread has ended.
    async fn stop(self) {
        let _ = self.stop.send(());
        let joined = tokio::task::spawn_blocking(move || self.thread.join());
        let _ = tokio::time::timeout(Duration::from_secs(5), joined).await;
    }
}

/// A DNS upstream: `IP` (port 53) or `IP:PORT`.
fn parse_dns_upstream(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(address) = text.parse::<std::net::SocketAddr>() {
        return Ok(address);
    }
    text.parse::<IpAddr>()
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .map_err(|_| format!("{text:?} is not an IP or IP:PORT"))
}

/// Runs simulated nodes instead of this host's agent.
async fn simulate(args: &AgentArgs) -> anyhow::Result<()> {
    use krust_agent::simulate::groups;
    let flags = &args.simulate;
    let mut list = Vec::new();
    if let Some(path) = &flags.simulate_config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        list =
            groups::parse_file(&text).with_context(|| format!("cannot use {}", path.display()))?;
    }
    if let Some(count) = flags.simulate.filter(|n| *n > 0) {
        let labels = flags
            .simulate_labels
            .iter()
            .map(|l| groups::parse_label(l))
            .collect::<Result<_, _>>()?;
        list.push(groups::Group {
            prefix: flags.simulate_prefix.clone(),
            count,
            cpu: flags.simulate_cpu.clone(),
            memory: flags.simulate_memory.clone(),
            pods: flags.simulate_pods,
            labels,
            taints: flags.simulate_taints.clone(),
            zones: flags.simulate_zones,
        });
    }
    let nodes = groups::nodes(&list)?;
    if nodes.is_empty() {
        anyhow::bail!("no node to simulate: give --simulate N or --simulate-config FILE");
    }
    let (config, _) = krust_client::config_from_kubeconfig(&args.kubeconfig)
        .await
        .with_context(|| format!("cannot use kubeconfig {}", args.kubeconfig.display()))?;
    let version = node_version();
    let options = krust_agent::simulate::Options { nodes, version };
    tokio::select! {
        result = krust_agent::simulate::run(krust_client::acting_as(&config, KUBELET), options) => {
            result.context("the simulated nodes stopped")
        }
        () = wait_for_signal() => Ok(()),
    }
}

fn shim(args: ShimArgs) -> anyhow::Result<()> {
    krust_agent::runtime::shim::run(&krust_agent::runtime::shim::ShimArgs {
        id: args.id,
        bundle: args.bundle,
        log: args.log,
        runtime: krust_agent::runtime::oci::OciRuntime::from_flag(
            &args.runtime,
            std::env::current_exe().unwrap_or_else(|_| PathBuf::from("krust")),
        ),
        runtime_root: args.runtime_root,
    })
    .context("the shim failed")
}

fn image(which: ImageCommand) -> anyhow::Result<()> {
    use krust_agent::image::registry;
    let store = |data_dir: &std::path::Path| {
        krust_agent::image::ImageStore::open(&data_dir.join("images"))
            .context("cannot open the image store")
    };
    match which {
        ImageCommand::Import { file, base_name, data_dir } => {
            for image in store(&data_dir)?.import(&file, base_name.as_deref())? {
                let names =
                    if image.names.is_empty() { "<none>".into() } else { image.names.join(", ") };
                println!("imported {names} ({})", image.id);
            }
        }
        ImageCommand::Pull { image, creds, data_dir, private_registry } => {
            let store = store(&data_dir)?;
            let keyring = match creds.as_deref().map(|c| c.split_once(':')) {
                None => registry::keyring::Keyring::default(),
                Some(None) => anyhow::bail!("--creds takes USER:PASSWORD"),
                Some(Some((user, password))) => {
                    registry::keyring::Keyring::for_image(&image, user, password)
                }
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?;
            let private_registry =
                private_registry.unwrap_or_else(|| data_dir.join("registries.yaml"));
            let client = registry::Client::from_file(&private_registry)?;
            let progress = registry::Progress::default();
            let pull = registry::pull_with_progress(&client, &store, &image, &keyring, &progress);
            let pulled = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                runtime.block_on(progress::show(&image, &progress, pull))?
            } else {
                runtime.block_on(pull)?
            };
            println!("pulled {} ({})", image, pulled.id);
        }
        ImageCommand::Ls { data_dir } => {
            println!("{:<60} {:<20} {:>10}", "IMAGE", "ID", "SIZE");
            for image in store(&data_dir)?.list()? {
                let id = image
                    .id
                    .trim_start_matches("sha256:")
                    .get(..12)
                    .unwrap_or_default()
                    .to_string();
                let size = format!("{:.1}MB", image.size as f64 / 1e6);
                if image.names.is_empty() {
                    println!("{:<60} {id:<20} {size:>10}", "<none>");
                }
                for name in &image.names {
                    println!("{name:<60} {id:<20} {size:>10}");
                }
            }
        }
        ImageCommand::Rm { image, data_dir } => {
            let removed = store(&data_dir)?.remove(&image)?;
            println!("removed {}", removed.id);
        }
    }
    Ok(())
}

/// Raises the soft limit of open files to the hard limit, as Go programs (and so upstream's
/// components) do at start: a server holds a socket per client and a watch per socket.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open file limit");
        }
    }
}

/// The version nodes report as `kubeletVersion`: the server's `gitVersion`.
fn node_version() -> String {
    krust_apiserver::discovery::version(&build_info())["gitVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The build this binary comes from (set by `build.rs`).
fn build_info() -> krust_apiserver::discovery::BuildInfo {
    krust_apiserver::discovery::BuildInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: env!("KRUST_GIT_COMMIT").to_string(),
        git_tree_state: env!("KRUST_GIT_TREE_STATE").to_string(),
        build_date: env!("KRUST_BUILD_DATE").to_string(),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
