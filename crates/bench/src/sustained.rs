//! `krust bench sustained`: the same stream of ~4 KB updates against a `krust server` on the
//! embedded store and one on etcd, each its own process, sampling every second the server's
//! resident memory (plus etcd's) and the size of the data on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use http::Method;
use serde_json::{Value, json};

use crate::client::ApiClient;
use crate::etcd::Etcd;
use crate::process::{ServerCommand, disk_usage, rss};
use crate::stats::round3;

/// Arguments of `krust bench sustained`.
#[derive(Debug, clap::Args)]
pub struct SustainedBenchArgs {
    /// Objects (ConfigMaps) updated in turn.
    #[arg(long, default_value_t = 1000)]
    pub objects: usize,
    /// Updates in all.
    #[arg(long, default_value_t = 32_000)]
    pub updates: usize,
    /// Bytes of data in each object.
    #[arg(long, default_value_t = 4096)]
    pub object_bytes: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// The servers' compaction interval (as `krust server --etcd-compaction-interval`).
    #[arg(long, default_value = "5m")]
    pub compaction_interval: String,
    /// Seconds to keep sampling after the last update.
    #[arg(long, default_value_t = 10)]
    pub settle: u64,
    /// The krust binary to run as the server (default: this one).
    #[arg(long)]
    pub krust: Option<PathBuf>,
    /// The etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Also write the results to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// A server on `dir` compacting as `args` say.
fn server_command(
    krust: &Path,
    dir: &Path,
    endpoint: Option<&str>,
    args: &SustainedBenchArgs,
) -> anyhow::Result<ServerCommand> {
    let mut command = ServerCommand::new(krust, dir, endpoint)?;
    command.extra =
        vec!["--etcd-compaction-interval".to_string(), args.compaction_interval.clone()];
    Ok(command)
}

const NS: &str = "sustained";
const MIB: f64 = 1024.0 * 1024.0;

fn configmap(i: usize, round: usize, bytes: usize) -> Value {
    let fill: String = std::iter::repeat_n(char::from(b'a' + (round % 26) as u8), bytes).collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:05}")}, "data": {"blob": fill}})
}

/// Creates the objects, then updates them in turn (each client owns a slice of them and sends
/// the resource version it last saw); returns updates/s.
async fn load(client: &ApiClient, args: &SustainedBenchArgs) -> anyhow::Result<Value> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    client.request(Method::POST, "/api/v1/namespaces", Some(&ns)).await?;
    let objects = args.objects.max(args.concurrency);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let (client, bytes) = (client.clone(), args.object_bytes);
        let mine: Vec<usize> = (w..objects).step_by(args.concurrency).collect();
        let updates =
            args.updates / args.concurrency + usize::from(w < args.updates % args.concurrency);
        tasks.push(tokio::spawn(async move {
            let path = format!("/api/v1/namespaces/{NS}/configmaps");
            let mut versions = Vec::new();
            for &i in &mine {
                let created =
                    client.request(Method::POST, &path, Some(&configmap(i, 0, bytes))).await?;
                versions.push(resource_version(&created)?);
            }
            for u in 0..updates {
                let slot = u % mine.len();
                let mut body = configmap(mine[slot], u / mine.len() + 1, bytes);
                body["metadata"]["resourceVersion"] = json!(versions[slot]);
                let updated = client
                    .request(Method::PUT, &format!("{path}/cm-{:05}", mine[slot]), Some(&body))
                    .await?;
                versions[slot] = resource_version(&updated)?;
            }
            anyhow::Ok(updates)
        }));
    }
    let mut done = 0;
    for task in tasks {
        done += task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(
        json!({"updates": done, "seconds": round3(seconds), "per_second": (done as f64 / seconds).round()}),
    )
}

fn resource_version(body: &[u8]) -> anyhow::Result<String> {
    let value: Value = serde_json::from_slice(body)?;
    value["metadata"]["resourceVersion"]
        .as_str()
        .map(str::to_owned)
        .context("response without metadata.resourceVersion")
}

/// Runs the load against one server while sampling; `pids` are summed for memory.
async fn measure(
    client: &ApiClient,
    pids: &[u32],
    dir: &Path,
    args: &SustainedBenchArgs,
) -> anyhow::Result<Value> {
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (stop, pids, dir) = (Arc::clone(&stop), pids.to_vec(), dir.to_path_buf());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut samples = Vec::new();
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            loop {
                ticker.tick().await;
                let memory: Vec<u64> = pids.iter().map(|&pid| rss(pid)).collect();
                let disk = disk_usage(&dir);
                samples.push((started.elapsed().as_secs(), memory, disk));
                if stop.load(Ordering::Acquire) {
                    return samples;
                }
            }
        })
    };
    let idle_rss: u64 = pids.iter().map(|&pid| rss(pid)).sum();
    let result = load(client, args).await;
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    stop.store(true, Ordering::Release);
    let samples = sampler.await?;
    let load = result?;
    let mib = |b: u64| round3(b as f64 / MIB);
    let total = |memory: &[u64]| memory.iter().sum::<u64>();
    let peak_rss = samples.iter().map(|s| total(&s.1)).max().unwrap_or(0);
    let peak_by_process: Vec<f64> = (0..pids.len())
        .map(|i| mib(samples.iter().filter_map(|s| s.1.get(i).copied()).max().unwrap_or(0)))
        .collect();
    let peak_disk = samples.iter().map(|s| s.2).max().unwrap_or(0);
    let (end_rss, end_disk) = samples.last().map_or((0, 0), |s| (total(&s.1), s.2));
    Ok(json!({
        "load": load,
        "rss_mib": {
            "idle": mib(idle_rss),
            "peak": mib(peak_rss),
            "end": mib(end_rss),
            "peak_by_process": peak_by_process,
        },
        "disk_mib": {"peak": mib(peak_disk), "end": mib(end_disk)},
        "samples": samples.iter().map(|(t, m, d)| json!([t, mib(total(m)), mib(*d)])).collect::<Vec<_>>(),
    }))
}

/// Runs the sustained-update benchmark on both backends and prints (and optionally writes)
/// the results as JSON.
pub async fn sustained(args: SustainedBenchArgs) -> anyhow::Result<()> {
    let krust = match &args.krust {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the krust binary")?,
    };
    let tmp = tempfile::tempdir()?;
    let mut results = json!({
        "objects": args.objects,
        "updates": args.updates,
        "object_bytes": args.object_bytes,
        "concurrency": args.concurrency,
        "compaction_interval": args.compaction_interval,
        "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "samples_are": "[seconds, rss MiB (server, plus etcd for etcd), disk MiB (data dir)]",
        "peak_by_process_is": "[server] or [server, etcd]",
    });

    let dir = tmp.path().join("embedded");
    let server = server_command(&krust, &dir, None, &args)?.start().await?;
    results["embedded"] = measure(&server.client, &[server.pid()], &dir.join("db"), &args).await?;
    drop(server);

    let etcd_dir = tmp.path().join("etcd");
    let etcd = Etcd::start(&args.etcd, &etcd_dir).await?;
    let dir = tmp.path().join("etcd-server");
    let server = server_command(&krust, &dir, Some(&etcd.url), &args)?.start().await?;
    let pids = [server.pid(), etcd.pid()];
    results["etcd"] = measure(&server.client, &pids, &etcd_dir, &args).await?;
    drop(server);
    drop(etcd);

    let ratio = |a: &Value, b: &Value| {
        let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
        if b > 0.0 { round3(a / b) } else { 0.0 }
    };
    results["ratios"] = json!({
        "peak_rss_embedded_over_etcd_server_plus_etcd": ratio(&results["embedded"]["rss_mib"]["peak"], &results["etcd"]["rss_mib"]["peak"]),
        "peak_disk_embedded_over_etcd": ratio(&results["embedded"]["disk_mib"]["peak"], &results["etcd"]["disk_mib"]["peak"]),
        "end_disk_embedded_over_etcd": ratio(&results["embedded"]["disk_mib"]["end"], &results["etcd"]["disk_mib"]["end"]),
        "updates_per_second_embedded_over_etcd": ratio(&results["embedded"]["load"]["per_second"], &results["etcd"]["load"]["per_second"]),
    });
    crate::stats::report(&results, args.output.as_deref())?;
    Ok(())
}
