//! `krust bench scale`: one server loaded to a cluster's size (by default 5,000 nodes and
//! 150,000 pods), on the embedded store and on etcd in the same run, each figure beside its
//! reference.
//!
//! The server is a child process (`krust server`, the binary itself or `--krust`): its
//! resident memory is its own (the client's is apart), it can be stopped with SIGTERM and
//! restarted on the same data, and `krust_apiserver::start` has no in-process shutdown. The
//! client generates every object from its index ([`Layout`]) and keeps none.
//!
//! What is measured, per backend, in order:
//!
//! - namespaces, each with its `default` ServiceAccount, then the server's (and etcd's) RSS as
//!   the baseline; then every node, then the pods, each one a create and a merge patch of its
//!   status (the kubelet's report), from `--concurrency` tasks over `--connections` HTTP/2
//!   connections. Pods per second over the first `window` pods (empty store) and over the
//!   last `window` (full store);
//! - at the early point (1,000 pods) and at full size: the pods of the probe node across all
//!   namespaces (`fieldSelector=spec.nodeName=`) and the pods of the probe namespace, the
//!   median of `--repeats` lists, once the server is idle; both return the same pods at both
//!   points (see [`Layout`]), so their times compare what the store's size costs;
//! - RSS after loading (once a consistent list shows the cache caught up) minus the baseline,
//!   per stored object, against the objects' JSON size;
//! - a list of every pod, read as a stream and discarded, with the server's peak RSS above its
//!   level before (sampled every 10 ms), against writing as many bytes over a loopback TCP
//!   socket to a reader that discards them, and (`ratio_to_tls`, for information) over a TLS
//!   connection on loopback with the server's certificate and cipher;
//! - every pod in pages of 500;
//! - the data's size on disk per pod; SIGTERM to exit; restart on the same data to `/readyz`
//!   and to a list of every pod, against reading the data files once (from a warm page cache);
//!   the ratio takes `/readyz` when the first list after it had every pod (the server answers
//!   once its cache is filled), else that list.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Method;
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::ApiClient;
use crate::etcd::Etcd;
use crate::objects::{Layout, POD_MARKER};
use crate::process::{Server, ServerCommand, disk_usage, rss, settle};
use crate::stats::round3;

/// Arguments of `krust bench scale`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleBenchArgs {
    /// Nodes to create.
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Pods to create (each a create and a status update), spread over the nodes.
    #[arg(long, default_value_t = 150_000)]
    pub pods: usize,
    /// Namespaces the pods are spread over.
    #[arg(long, default_value_t = 50)]
    pub namespaces: usize,
    /// Pods in the store when the probes are first timed (at most a quarter of `--pods`).
    #[arg(long, default_value_t = 1000)]
    pub early_pods: usize,
    /// Concurrent client tasks while loading.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// HTTP/2 connections the tasks share.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Repetitions of each timed probe list (the median is reported).
    #[arg(long, default_value_t = 15)]
    pub repeats: usize,
    /// Run on the embedded store only.
    #[arg(long)]
    pub skip_etcd: bool,
    /// Run on etcd only.
    #[arg(long)]
    pub skip_embedded: bool,
    /// The krust binary to run as the server (default: this one).
    #[arg(long)]
    pub krust: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Keep the data dirs and server logs under this directory (default: a temporary one,
    /// removed at the end).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Also write the results to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

const MIB: f64 = 1024.0 * 1024.0;

/// What the whole run needs.
struct Run {
    args: ScaleBenchArgs,
    layout: Layout,
    /// Pods timed at each end of the load.
    window: usize,
    krust: PathBuf,
}

/// The pods of a list, as far as the checks read them.
#[derive(Debug, Deserialize)]
struct PodList {
    #[serde(default)]
    metadata: ListMeta,
    #[serde(default)]
    items: Vec<PodRef>,
}

#[derive(Debug, Default, Deserialize)]
struct ListMeta {
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PodRef {
    metadata: PodMeta,
    #[serde(default)]
    spec: PodSpecRef,
}

#[derive(Debug, Deserialize)]
struct PodMeta {
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Debug, Default, Deserialize)]
struct PodSpecRef {
    #[serde(rename = "nodeName", default)]
    node_name: String,
}

/// Percent-encodes a query parameter's value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { round3(a / b) } else { 0.0 }
}

fn mib(bytes: f64) -> f64 {
    round3(bytes / MIB)
}

/// Runs `n` indices of `range` from `concurrency` tasks over `clients`; `work` handles one
/// index and returns the bytes of JSON it stored. Returns the time taken and the bytes.
async fn drive<F, Fut>(
    clients: &[ApiClient],
    range: std::ops::Range<usize>,
    concurrency: usize,
    work: F,
) -> anyhow::Result<(Duration, u64)>
where
    F: Fn(ApiClient, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<u64>> + Send,
{
    let next = Arc::new(AtomicUsize::new(range.start));
    let work = Arc::new(work);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency.max(1) {
        let client = clients[w % clients.len()].clone();
        let (next, work, end) = (Arc::clone(&next), Arc::clone(&work), range.end);
        tasks.push(tokio::spawn(async move {
            let mut bytes = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return anyhow::Ok(bytes);
                }
                bytes += work(client.clone(), i).await?;
            }
        }));
    }
    let mut bytes = 0;
    for task in tasks {
        bytes += task.await??;
    }
    Ok((started.elapsed(), bytes))
}

/// Creates pod `i` and writes its status; returns the size of the pod's final JSON.
async fn load_pod(client: ApiClient, layout: Layout, i: usize) -> anyhow::Result<u64> {
    let (namespace, name) = layout.pod_key(i);
    let (pod, status) = layout.pod(i);
    client
        .request(Method::POST, &format!("/api/v1/namespaces/{namespace}/pods"), Some(&pod))
        .await?;
    let body = Bytes::from(serde_json::to_vec(&status)?);
    let stored = client
        .send(
            Method::PATCH,
            &format!("/api/v1/namespaces/{namespace}/pods/{name}/status"),
            "application/merge-patch+json",
            body,
        )
        .await?;
    Ok(stored.len() as u64)
}

/// Lists `path` `repeats` times (after one untimed list); the median in milliseconds and the
/// pods of the last answer.
async fn probe(client: &ApiClient, path: &str, repeats: usize) -> anyhow::Result<(f64, PodList)> {
    let mut last = client.request(Method::GET, path, None).await?;
    let mut times = Vec::new();
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        last = client.request(Method::GET, path, None).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let list: PodList = serde_json::from_slice(&last).context("a pod list that does not parse")?;
    Ok((round3(times[times.len() / 2]), list))
}

/// The keys of the pods among the first `created` for which `pick` holds.
fn expected(layout: &Layout, created: usize, pick: impl Fn(usize) -> bool) -> HashSet<String> {
    (0..created)
        .filter(|&i| pick(i))
        .map(|i| {
            let (namespace, name) = layout.pod_key(i);
            format!("{namespace}/{name}")
        })
        .collect()
}

fn keys(list: &PodList) -> HashSet<String> {
    list.items.iter().map(|p| format!("{}/{}", p.metadata.namespace, p.metadata.name)).collect()
}

/// Times the two probes (node across namespaces, one namespace) with `created` pods stored,
/// once the server `pid` is idle (so that both points time a list, not the background work
/// the load left, such as a checkpoint of the store), and checks that each returns exactly its
/// pods.
async fn probes(run: &Run, client: &ApiClient, pid: u32, created: usize) -> anyhow::Result<Value> {
    let settled = settle(pid, Duration::from_secs(60)).await;
    let layout = &run.layout;
    let node = layout.node(0);
    let path = format!("/api/v1/pods?fieldSelector={}", encode(&format!("spec.nodeName={node}")));
    let (node_ms, node_list) = probe(client, &path, run.args.repeats).await?;
    let node_exact = keys(&node_list) == expected(layout, created, |i| layout.node_of(i) == 0)
        && node_list.items.iter().all(|p| p.spec.node_name == node)
        && node_list.items.len() == layout.probe_node_pods();
    let namespace = layout.namespace(0);
    let path = format!("/api/v1/namespaces/{namespace}/pods");
    let (ns_ms, ns_list) = probe(client, &path, run.args.repeats).await?;
    let ns_exact = keys(&ns_list) == expected(layout, created, |i| layout.namespace_of(i) == 0);
    Ok(json!({
        "pods_stored": created,
        "seconds_to_idle": round3(settled),
        "node_field_selector": {"node": node, "items": node_list.items.len(), "median_ms": node_ms, "exact": node_exact},
        "namespace": {"namespace": namespace, "items": ns_list.items.len(), "median_ms": ns_ms, "exact": ns_exact},
    }))
}

/// Reads a streamed body to its end, discarding it; returns its bytes and how many times
/// `marker` occurs in it (also across frames).
async fn drain(mut body: hyper::body::Incoming, marker: &[u8]) -> anyhow::Result<(u64, usize)> {
    let finder = memchr::memmem::Finder::new(marker);
    let keep = marker.len().saturating_sub(1);
    let (mut bytes, mut count) = (0u64, 0usize);
    let mut carry: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else { continue };
        bytes += data.len() as u64;
        // A match across the previous frame's end lies within `carry` and this frame's start.
        let mut seam = carry.clone();
        seam.extend_from_slice(&data[..data.len().min(keep)]);
        count += finder.find_iter(&seam).count();
        count += finder.find_iter(data).count();
        if data.len() >= keep {
            carry.clear();
            carry.extend_from_slice(&data[data.len() - keep..]);
        } else {
            carry.extend_from_slice(data);
            let excess = carry.len().saturating_sub(keep);
            carry.drain(..excess);
        }
    }
    Ok((bytes, count))
}

/// Lists every pod without a limit, streaming the answer and discarding it; returns seconds,
/// bytes and pods.
async fn list_all(client: &ApiClient) -> anyhow::Result<(f64, u64, usize)> {
    let started = Instant::now();
    let (status, body) = client.get_streaming("/api/v1/pods").await?;
    if !status.is_success() {
        bail!("list of all pods answered {status}");
    }
    let (bytes, pods) = drain(body, POD_MARKER.as_bytes()).await?;
    Ok((started.elapsed().as_secs_f64(), bytes, pods))
}

/// Writes `bytes` bytes from memory (1 MiB at a time) to `socket`, then shuts it down.
async fn write_from_memory(
    socket: &mut (impl tokio::io::AsyncWrite + Unpin),
    bytes: u64,
) -> anyhow::Result<()> {
    let chunk = vec![b'x'; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        socket.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    socket.shutdown().await?;
    Ok(())
}

/// Reads `socket` to its end, discarding what it reads; returns how many bytes it read.
async fn read_and_discard(socket: &mut (impl tokio::io::AsyncRead + Unpin)) -> anyhow::Result<u64> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut read = 0u64;
    loop {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            return Ok(read);
        }
        read += n as u64;
    }
}

/// The reference of a list: `bytes` written from memory to a loopback TCP socket whose reader
/// discards them; seconds until the reader has them all.
async fn loopback(bytes: u64) -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let reader = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        read_and_discard(&mut socket).await
    });
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(address).await?;
    write_from_memory(&mut socket, bytes).await?;
    let read = reader.await??;
    let seconds = started.elapsed().as_secs_f64();
    if read != bytes {
        bail!("loopback reader got {read} of {bytes} bytes");
    }
    Ok(seconds)
}

/// The reference of a list over TLS: `bytes` written from memory by a TLS server with the
/// API server's serving certificate (rustls with ring, as the API server) to a loopback
/// client that decrypts and discards them; seconds until the client has them all.
async fn loopback_tls(bytes: u64, server_dir: &Path) -> anyhow::Result<f64> {
    let tls = server_dir.join("tls");
    let certs = rustls_pemfile::certs(&mut std::fs::read(tls.join("serving.crt"))?.as_slice())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::fs::read(tls.join("serving.key"))?.as_slice())?
        .context("no serving key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    let kubeconfig = std::fs::read_to_string(server_dir.join("admin.kubeconfig"))?;
    let client = crate::client::tls_config(&kubeconfig, false)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let writer = tokio::spawn(async move {
        let (socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let mut socket = tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(socket).await?;
        write_from_memory(&mut socket, bytes).await
    });
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let started = Instant::now();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let mut socket = tokio_rustls::TlsConnector::from(Arc::new(client)).connect(name, tcp).await?;
    let read = read_and_discard(&mut socket).await?;
    let seconds = started.elapsed().as_secs_f64();
    writer.await??;
    if read != bytes {
        bail!("TLS loopback reader got {read} of {bytes} bytes");
    }
    Ok(seconds)
}

/// The list of every pod while the server's RSS is sampled every 10 ms, beside the loopback
/// references, plain and over TLS.
async fn list_all_measured(
    run: &Run,
    client: &ApiClient,
    pid: u32,
    server_dir: &Path,
) -> anyhow::Result<Value> {
    let before = rss(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::Acquire) {
                ticker.tick().await;
                peak.fetch_max(rss(pid), Ordering::Relaxed);
            }
        })
    };
    let listed = list_all(client).await;
    stop.store(true, Ordering::Release);
    sampler.await?;
    let (seconds, bytes, pods) = listed?;
    let extra = peak.load(Ordering::Relaxed).saturating_sub(before);
    let reference = loopback(bytes).await?;
    let reference_tls = loopback_tls(bytes, server_dir).await?;
    Ok(json!({
        "seconds": round3(seconds),
        "bytes": bytes,
        "items": pods,
        "all_listed": pods == run.layout.pods,
        "extra_rss_peak_mib": mib(extra as f64),
        "reference_loopback_seconds": round3(reference),
        "ratio": ratio(seconds, reference),
        "reference_loopback_tls_seconds": round3(reference_tls),
        "ratio_to_tls": ratio(seconds, reference_tls),
        "goal": "ratio <= 3, extra_rss_peak_mib < 64",
    }))
}

/// Every pod in pages of `limit`; checks that each pod comes exactly once.
async fn paging(run: &Run, client: &ApiClient, limit: usize) -> anyhow::Result<Value> {
    let mut seen = HashSet::new();
    let (mut pages, mut items, mut duplicates) = (0usize, 0usize, 0usize);
    let mut token: Option<String> = None;
    let mut parsing = Duration::ZERO;
    let started = Instant::now();
    loop {
        let mut path = format!("/api/v1/pods?limit={limit}");
        if let Some(token) = &token {
            path.push_str(&format!("&continue={}", encode(token)));
        }
        let body = client.request(Method::GET, &path, None).await?;
        let t = Instant::now();
        let page: PodList = serde_json::from_slice(&body).context("a page that does not parse")?;
        parsing += t.elapsed();
        pages += 1;
        items += page.items.len();
        for pod in &page.items {
            if !seen.insert(format!("{}/{}", pod.metadata.namespace, pod.metadata.name)) {
                duplicates += 1;
            }
        }
        token = page.metadata.continue_token.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "limit": limit,
        "pages": pages,
        "items": items,
        "each_once": duplicates == 0 && seen.len() == run.layout.pods,
        "seconds": round3(seconds),
        "client_parse_seconds": round3(parsing.as_secs_f64()),
    }))
}

/// Reads every file under `dir` once, sequentially, into a buffer that is discarded; seconds
/// and bytes. The page cache is warm (the data was just written; dropping it needs root).
fn read_files(dir: &Path) -> anyhow::Result<(f64, u64)> {
    use std::io::Read;
    fn walk(dir: &Path, buffer: &mut [u8], total: &mut u64) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                walk(&entry.path(), buffer, total)?;
            } else if meta.is_file() {
                let mut file = std::fs::File::open(entry.path())?;
                loop {
                    let n = file.read(buffer)?;
                    if n == 0 {
                        break;
                    }
                    *total += n as u64;
                }
            }
        }
        Ok(())
    }
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0;
    let started = Instant::now();
    walk(dir, &mut buffer, &mut total).with_context(|| format!("cannot read {}", dir.display()))?;
    Ok((started.elapsed().as_secs_f64(), total))
}

/// The etcd backend's quota: 8 GiB, the most etcd's documentation suggests.
const ETCD_QUOTA_BYTES: u64 = 8 << 30;

/// Starts the server again on its data and times it to `/readyz` answering 200 and to a list
/// of every pod returning them all.
async fn restart(run: &Run, command: &ServerCommand) -> anyhow::Result<(Server, Value)> {
    let started = Instant::now();
    let mut child = command.spawn()?;
    let deadline = started + Duration::from_secs(600);
    let (client, ready) = loop {
        if let Some(status) = child.0.try_wait()? {
            bail!("restarted server exited: {status}{}", command.log_tail());
        }
        if Instant::now() > deadline {
            bail!("restarted server not ready within 600 s{}", command.log_tail());
        }
        if let Ok(kubeconfig) = std::fs::read_to_string(command.dir.join("admin.kubeconfig"))
            && let Ok(client) = ApiClient::connect(&kubeconfig).await
            && client.request(Method::GET, "/readyz", None).await.is_ok()
        {
            break (client, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut lists = 0;
    let listed = loop {
        let (_, _, pods) = list_all(&client).await?;
        lists += 1;
        if pods == run.layout.pods {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            bail!("restarted server lists {pods} of {} pods", run.layout.pods);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    Ok((
        Server { child, client },
        json!({
            "seconds_to_ready": round3(ready.as_secs_f64()),
            "seconds_to_full_list": round3(listed.as_secs_f64()),
            "first_list_had_every_pod": lists == 1,
        }),
    ))
}

/// The whole measurement against one backend: `etcd` is `Some` for the etcd run.
async fn measure(run: &Run, dir: &Path, etcd: Option<(&Etcd, &Path)>) -> anyhow::Result<Value> {
    let layout = run.layout;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut command =
        ServerCommand::new(&run.krust, &dir.join("server"), etcd.map(|(e, _)| e.url.as_str()))?;
    command.log = Some(dir.join("server.log"));
    let server = command.start().await?;
    let client = server.client.clone();
    let mut clients = vec![client.clone()];
    let kubeconfig = std::fs::read_to_string(command.dir.join("admin.kubeconfig"))?;
    for _ in 1..run.args.connections.max(1) {
        clients.push(ApiClient::connect(&kubeconfig).await?);
    }
    let pid = server.pid();
    let etcd_pid = etcd.map(|(e, _)| e.pid());

    // Namespaces, each with its default ServiceAccount (which pods need to be admitted).
    for k in 0..layout.namespaces {
        client.create_namespace(&layout.namespace(k)).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss(pid);
    let etcd_rss_before = etcd_pid.map(rss);

    // Nodes.
    let (node_time, node_bytes) = drive(&clients, 0..layout.nodes, run.args.concurrency, {
        move |client: ApiClient, n: usize| async move {
            let stored =
                client.request(Method::POST, "/api/v1/nodes", Some(&layout.node_object(n))).await?;
            Ok(stored.len() as u64)
        }
    })
    .await?;

    // Pods, in segments: the first and last `window` are timed; the probes run at `early`.
    let (n, w, early) = (layout.pods, run.window, layout.early);
    let mut bounds = vec![0, early, w, n - w, n];
    bounds.sort_unstable();
    bounds.dedup();
    let (mut start_time, mut end_time, mut all_time) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut pod_bytes = 0;
    let mut early_probes = Value::Null;
    for pair in bounds.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        let (time, bytes) = drive(&clients, a..b, run.args.concurrency, move |client, i| {
            load_pod(client, layout, i)
        })
        .await?;
        pod_bytes += bytes;
        all_time += time;
        if b <= w {
            start_time += time;
        }
        if a >= n - w {
            end_time += time;
        }
        if b == early {
            early_probes = probes(run, &client, pid, early).await?;
        }
    }
    let start_rate = w as f64 / start_time.as_secs_f64();
    let end_rate = w as f64 / end_time.as_secs_f64();
    let load = json!({
        "nodes_seconds": round3(node_time.as_secs_f64()),
        "nodes_per_second": (layout.nodes as f64 / node_time.as_secs_f64()).round(),
        "pods_seconds": round3(all_time.as_secs_f64()),
        "pods_per_second": (n as f64 / all_time.as_secs_f64()).round(),
        "window_pods": w,
        "start_pods_per_second": start_rate.round(),
        "end_pods_per_second": end_rate.round(),
        "ratio_end_over_start": ratio(end_rate, start_rate),
        "goal": "ratio_end_over_start >= 0.9",
        "pod_is": "a create and a merge patch of its status (two writes)",
    });

    // The cache has caught up once a consistent list answers; then memory per object.
    client.request(Method::GET, "/api/v1/pods?limit=1", None).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let objects = (layout.nodes + n) as f64;
    let json_bytes = node_bytes + pod_bytes;
    let per_object = |after: u64, before: u64| after.saturating_sub(before) as f64 / objects;
    let rss_after = rss(pid);
    let rss_per_object = per_object(rss_after, rss_before);
    let json_per_object = json_bytes as f64 / objects;
    let mut memory = json!({
        "objects": layout.nodes + n,
        "json_bytes_loaded": json_bytes,
        "json_bytes_per_object": json_per_object.round(),
        "server_rss_before_mib": mib(rss_before as f64),
        "server_rss_after_mib": mib(rss_after as f64),
        "server_rss_per_object_bytes": rss_per_object.round(),
        "ratio": ratio(rss_per_object, json_per_object),
        "goal": "ratio <= 1.5",
    });
    if let (Some(pid), Some(before)) = (etcd_pid, etcd_rss_before) {
        let after = rss(pid);
        let per = per_object(after, before);
        memory["etcd_rss_before_mib"] = json!(mib(before as f64));
        memory["etcd_rss_after_mib"] = json!(mib(after as f64));
        memory["etcd_rss_per_object_bytes"] = json!(per.round());
        memory["etcd_ratio"] = json!(ratio(per, json_per_object));
    }

    let full_probes = probes(run, &client, pid, n).await?;
    let probe_ratio = |which: &str| {
        ratio(
            full_probes[which]["median_ms"].as_f64().unwrap_or(0.0),
            early_probes[which]["median_ms"].as_f64().unwrap_or(0.0),
        )
    };
    // A namespace that grew with the store, for the record (no reference).
    let big = if layout.namespaces > 1 { layout.namespace(1) } else { layout.namespace(0) };
    let (big_ms, big_list) =
        probe(&client, &format!("/api/v1/namespaces/{big}/pods"), run.args.repeats.min(5)).await?;
    let selectors = json!({
        "early": early_probes,
        "full": full_probes,
        "node_field_selector_ratio": probe_ratio("node_field_selector"),
        "namespace_ratio": probe_ratio("namespace"),
        "goal": "ratios <= 2",
        "large_namespace": {"namespace": big, "items": big_list.items.len(), "median_ms": big_ms},
    });
    drop(big_list);

    let list = list_all_measured(run, &client, pid, &command.dir).await?;
    let pages = paging(run, &client, 500).await?;

    let (data_dir, data_label) = match etcd {
        Some((_, etcd_dir)) => (etcd_dir.to_path_buf(), "etcd data dir"),
        None => (command.dir.join("db"), "server data dir db/ (redb file and write-ahead log)"),
    };
    let disk_bytes = disk_usage(&data_dir);
    let disk = json!({
        "what": data_label,
        "bytes": disk_bytes,
        "mib": mib(disk_bytes as f64),
        "bytes_per_pod": (disk_bytes as f64 / n as f64).round(),
        "ratio_to_live_json": ratio(disk_bytes as f64, json_bytes as f64),
        "goal": "ratio_to_live_json <= 2 (embedded, once compaction has run; the load ends before the first)",
    });

    drop(clients);
    drop(client);
    let shutdown = server.terminate().await?;
    let (read_seconds, read_bytes) = read_files(&data_dir)?;
    let (server, mut restarted) = restart(run, &command).await?;
    // Ready with everything loaded: `/readyz` when the first list after it had every pod (the
    // server serves once its cache is filled), else the first list that had them all.
    let loaded = if restarted["first_list_had_every_pod"] == json!(true) {
        restarted["seconds_to_ready"].as_f64().unwrap_or(0.0)
    } else {
        restarted["seconds_to_full_list"].as_f64().unwrap_or(0.0)
    };
    restarted["reference_read_seconds"] = json!(round3(read_seconds));
    restarted["reference_read_bytes"] = json!(read_bytes);
    restarted["reference_is"] = json!(format!("reading the {data_label} once, page cache warm"));
    restarted["ratio"] = json!(ratio(loaded, read_seconds));
    restarted["ratio_to_full_list"] =
        json!(ratio(restarted["seconds_to_full_list"].as_f64().unwrap_or(0.0), read_seconds));
    restarted["goal"] = json!("ratio <= 3 (ready with every pod loaded, over the read)");
    if etcd.is_some() {
        restarted["note"] = json!("the krust server restarts; etcd keeps running");
    }
    drop(server);

    Ok(json!({
        "objects": {
            "node_json_bytes_avg": (node_bytes as f64 / layout.nodes.max(1) as f64).round(),
            "pod_json_bytes_avg": (pod_bytes as f64 / n as f64).round(),
        },
        "load": load,
        "memory": memory,
        "list_all": list,
        "selectors": selectors,
        "paging": pages,
        "disk": disk,
        "shutdown": {"sigterm_to_exit_seconds": round3(shutdown.as_secs_f64())},
        "restart": restarted,
    }))
}

/// The figures with a goal, one line each, from one backend's results.
fn summary(backend: &str, r: &Value) -> Vec<Value> {
    let f = |v: &Value| v.as_f64().unwrap_or(0.0);
    let line = |figure: &str, value: f64, goal: &str, met: bool| json!({"backend": backend, "figure": figure, "value": value, "goal": goal, "met": met});
    let extra = f(&r["list_all"]["extra_rss_peak_mib"]);
    vec![
        line(
            "load: end pods/s over start pods/s",
            f(&r["load"]["ratio_end_over_start"]),
            ">= 0.9",
            f(&r["load"]["ratio_end_over_start"]) >= 0.9,
        ),
        line(
            "memory: server RSS per object over JSON bytes per object",
            f(&r["memory"]["ratio"]),
            "<= 1.5",
            f(&r["memory"]["ratio"]) <= 1.5,
        ),
        line(
            "list all: seconds over loopback reference",
            f(&r["list_all"]["ratio"]),
            "<= 3",
            f(&r["list_all"]["ratio"]) <= 3.0,
        ),
        line(
            "list all: seconds over a TLS loopback reference (the API is served over TLS only)",
            f(&r["list_all"]["ratio_to_tls"]),
            "<= 3",
            f(&r["list_all"]["ratio_to_tls"]) <= 3.0,
        ),
        line("list all: extra server RSS, MiB", extra, "< 64", extra < 64.0),
        line(
            "field selector (node) at full size over early",
            f(&r["selectors"]["node_field_selector_ratio"]),
            "<= 2",
            f(&r["selectors"]["node_field_selector_ratio"]) <= 2.0,
        ),
        line(
            "one-namespace list at full size over early",
            f(&r["selectors"]["namespace_ratio"]),
            "<= 2",
            f(&r["selectors"]["namespace_ratio"]) <= 2.0,
        ),
        line(
            "disk: bytes allocated over the live objects' JSON bytes",
            f(&r["disk"]["ratio_to_live_json"]),
            "<= 2",
            f(&r["disk"]["ratio_to_live_json"]) <= 2.0,
        ),
        line(
            "restart to ready, every pod loaded, over reading the data once",
            f(&r["restart"]["ratio"]),
            "<= 3",
            f(&r["restart"]["ratio"]) <= 3.0,
        ),
    ]
}

/// Whether every behaviour check of one backend's results held: all pods listed, each probe
/// returned exactly its pods at both points, paging returned every pod once.
fn checks(r: &Value) -> bool {
    let t = |v: &Value| v.as_bool().unwrap_or(false);
    t(&r["list_all"]["all_listed"])
        && ["early", "full"].iter().all(|at| {
            t(&r["selectors"][at]["node_field_selector"]["exact"])
                && t(&r["selectors"][at]["namespace"]["exact"])
        })
        && t(&r["paging"]["each_once"])
}

/// Runs the scale benchmark on the backends asked for and prints (and optionally writes) the
/// results as JSON.
pub async fn scale(args: ScaleBenchArgs) -> anyhow::Result<()> {
    if args.nodes == 0 || args.pods < 4 || args.namespaces == 0 {
        bail!("need at least 1 node, 4 pods and 1 namespace");
    }
    if args.skip_embedded && args.skip_etcd {
        bail!("--skip-embedded and --skip-etcd leave nothing to run");
    }
    let krust = match &args.krust {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the krust binary")?,
    };
    let early = args.early_pods.clamp(1, args.pods / 4);
    let layout = Layout { pods: args.pods, nodes: args.nodes, namespaces: args.namespaces, early };
    let window = (args.pods / 20).max(args.pods.min(4000) / 4).max(1);
    let run = Run { args: args.clone(), layout, window, krust };
    let tmp = match &args.work_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            None
        }
        None => Some(tempfile::tempdir()?),
    };
    let root = match (&tmp, &args.work_dir) {
        (Some(tmp), _) => tmp.path().to_path_buf(),
        (None, Some(dir)) => dir.clone(),
        (None, None) => bail!("no work dir"),
    };
    let mut results = json!({
        "nodes": args.nodes,
        "pods": args.pods,
        "namespaces": args.namespaces,
        "early_pods": early,
        "probe_node_pods": layout.probe_node_pods(),
        "concurrency": args.concurrency,
        "connections": args.connections,
        "repeats": args.repeats,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "server": "krust server as a child process of the benchmark",
    });
    let mut lines = Vec::new();
    let mut all_checks = true;
    if !args.skip_embedded {
        let r = measure(&run, &root.join("embedded"), None).await?;
        lines.extend(summary("embedded", &r));
        all_checks &= checks(&r);
        results["embedded"] = r;
    }
    if !args.skip_etcd {
        let etcd_dir = root.join("etcd-data");
        // etcd's default quota (2 GiB) is less than 150,000 pods with their history between
        // compactions; large clusters raise it, to the 8 GiB etcd's documentation suggests.
        let quota = format!("--quota-backend-bytes={}", ETCD_QUOTA_BYTES);
        let etcd = Etcd::start_with(&args.etcd, &etcd_dir, &[&quota]).await?;
        results["etcd_quota_backend_bytes"] = json!(ETCD_QUOTA_BYTES);
        let r = measure(&run, &root.join("etcd"), Some((&etcd, &etcd_dir))).await?;
        drop(etcd);
        lines.extend(summary("etcd", &r));
        all_checks &= checks(&r);
        results["etcd"] = r;
    }
    if let (Some(embedded), Some(etcd)) = (results.get("embedded"), results.get("etcd")) {
        let f = |v: &Value| v.as_f64().unwrap_or(0.0);
        let etcd_total = f(&etcd["memory"]["server_rss_per_object_bytes"])
            + f(&etcd["memory"]["etcd_rss_per_object_bytes"]);
        results["embedded_over_etcd"] = json!({
            "pods_per_second": ratio(f(&embedded["load"]["pods_per_second"]), f(&etcd["load"]["pods_per_second"])),
            "rss_per_object_over_server_plus_etcd": ratio(f(&embedded["memory"]["server_rss_per_object_bytes"]), etcd_total),
            "list_all_seconds": ratio(f(&embedded["list_all"]["seconds"]), f(&etcd["list_all"]["seconds"])),
            "disk_bytes_per_pod": ratio(f(&embedded["disk"]["bytes_per_pod"]), f(&etcd["disk"]["bytes_per_pod"])),
            "restart_to_full_list": ratio(f(&embedded["restart"]["seconds_to_full_list"]), f(&etcd["restart"]["seconds_to_full_list"])),
        });
    }
    results["goals"] = Value::Array(lines);
    results["checks_passed"] = json!(all_checks);
    crate::stats::report(&results, args.output.as_deref())?;
    if !all_checks {
        bail!("a behaviour check failed (see checks in the output)");
    }
    Ok(())
}
