//! `krust bench scheduler`: scheduling throughput and latency on nodes registered through the
//! API (no agent), beside the API's own ceiling measured in the same run: a plain client that
//! binds pods round robin through `pods/binding`.
//!
//! For each node count, a `krust server` child runs without a scheduler; `krust scheduler`
//! runs as a second child (its CPU and memory are its own). The pods of each scenario are
//! created by a closed loop while one watch notes when each is seen bound: throughput is the
//! pods over the time from the first create to the last binding seen, and each pod's latency
//! is from its create to its binding seen. The ceiling is measured the same way, with a
//! plain client in this process binding each pod round robin as its watch shows it.
//!
//! - (a) resources only: each pod requests 100m CPU and 128Mi;
//! - (b) resources, plus a required anti-affinity by hostname within groups of 10 pods and a
//!   `DoNotSchedule` topology spread over zones within the same groups.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::api::closed_loop;
use crate::client::ApiClient;
use crate::objects::Layout;
use crate::process::{Killed, ServerCommand, cpu_seconds, rss};
use crate::stats::{Samples, round3};

/// Arguments of `krust bench scheduler`.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerBenchArgs {
    /// Node counts, one cluster each.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 5000])]
    pub nodes: Vec<usize>,
    /// Pods per scenario.
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Requests in flight of the creating and binding clients.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// The krust binary to run as the server and the scheduler (default: this one).
    #[arg(long)]
    pub krust: Option<PathBuf>,
    /// Where the servers keep their data (a temporary folder by default).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Also write the results to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

const NS: &str = "bench-scheduler";

/// Runs the benchmark and prints its results as JSON.
pub async fn scheduler(args: SchedulerBenchArgs) -> anyhow::Result<()> {
    let krust = match &args.krust {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find this binary")?,
    };
    let scratch = tempfile::tempdir().context("cannot make a temporary folder")?;
    let dir = args.work_dir.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    let mut runs = Vec::new();
    for nodes in &args.nodes {
        runs.push(cluster(&args, &krust, &dir.join(format!("nodes-{nodes}")), *nodes).await?);
    }
    let results = json!({
        "pods": args.pods,
        "concurrency": args.concurrency,
        "runs": runs,
        "goals": [
            {"what": "(a) resources only: pods bound per second", "goal": ">= 3000"},
            {"what": "(a) against the bare binding rate", "goal": ">= 0.7"},
            {"what": "(b) with anti-affinity and topology spread: pods bound per second", "goal": ">= 1000"},
        ],
    });
    crate::stats::report(&results, args.output.as_deref())?;
    Ok(())
}

async fn cluster(
    args: &SchedulerBenchArgs,
    krust: &Path,
    dir: &Path,
    nodes: usize,
) -> anyhow::Result<Value> {
    std::fs::create_dir_all(dir)?;
    let mut command = ServerCommand::new(krust, &dir.join("server"), None)?;
    command.log = Some(dir.join("server.log"));
    let server = command.start().await?;
    let admin = server.client.clone();
    admin.create_namespace(NS).await?;
    register(&admin, nodes, args.concurrency).await?;
    let names: Vec<String> = {
        let layout = Layout { pods: 0, nodes, namespaces: 1, early: 1 };
        (0..nodes).map(|n| layout.node(n)).collect()
    };

    let server_pid = server.pid();
    let server_cpu = cpu_seconds(server_pid);
    let mut bare = bare_bindings(&admin, args, names).await?;
    with_server_cpu(&mut bare, args.pods, server_cpu, server_pid);
    delete_pods(&admin).await?;

    let scheduler = start_scheduler(krust, dir)?;
    let pid = scheduler.0.id();
    let cpu_before = cpu_seconds(pid);
    let server_cpu = cpu_seconds(server_pid);
    let mut resources = scenario(&admin, args, "a", &|i| pod(i, false)).await?;
    with_server_cpu(&mut resources, args.pods, server_cpu, server_pid);
    delete_pods(&admin).await?;
    let server_cpu = cpu_seconds(server_pid);
    let mut spread = scenario(&admin, args, "b", &|i| pod(i, true)).await?;
    with_server_cpu(&mut spread, args.pods, server_cpu, server_pid);
    let scheduler_cpu = cpu_seconds(pid) - cpu_before;
    let scheduler_rss = rss(pid);
    delete_pods(&admin).await?;
    drop(scheduler);
    server.terminate().await?;

    let rate = |v: &Value| v["pods_per_second"].as_f64().unwrap_or(0.0);
    let bare_rate = rate(&bare);
    Ok(json!({
        "nodes": nodes,
        "bare_binding": bare,
        "resources_only": resources,
        "anti_affinity_and_spread": spread,
        "ratio_to_bare_binding": if bare_rate > 0.0 { round3(rate(&resources) / bare_rate) } else { 0.0 },
        "scheduler_cpu_seconds": round3(scheduler_cpu),
        "scheduler_rss_mib": round3(scheduler_rss as f64 / 1048576.0),
    }))
}

/// Adds the API server's CPU time over a scenario, per pod, to its figures: steadier than
/// the throughput on a machine whose two cores the server, scheduler and bench share.
/// `before` is the server's CPU seconds at the scenario's start.
fn with_server_cpu(result: &mut Value, pods: usize, before: f64, server_pid: u32) {
    let per_pod_ms = (cpu_seconds(server_pid) - before) * 1000.0 / pods.max(1) as f64;
    result["server_cpu_ms_per_pod"] = json!(round3(per_pod_ms));
}

/// Registers the nodes, Ready and without the taint a new node gets at creation.
async fn register(admin: &ApiClient, nodes: usize, concurrency: usize) -> anyhow::Result<()> {
    let layout = Arc::new(Layout { pods: 0, nodes, namespaces: 1, early: 1 });
    let make = Arc::clone(&layout);
    closed_loop(admin, nodes, concurrency, move |n| {
        (Method::POST, "/api/v1/nodes".to_string(), Some(make.node_object(n)))
    })
    .await?;
    let untaint = json!({"spec": {"taints": null}});
    let body = serde_json::to_vec(&untaint)?;
    for n in 0..nodes {
        let path = format!("/api/v1/nodes/{}", layout.node(n));
        admin
            .send(Method::PATCH, &path, "application/merge-patch+json", body.clone().into())
            .await?;
    }
    Ok(())
}

/// A pod of scenario (a), or of (b) when `spread`; `schedulerName` is left to the default.
fn pod(i: usize, spread: bool) -> Value {
    let group = format!("g{}", i / 10);
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("p-{i}"), "labels": {"app": "bench", "group": group}},
        "spec": {"containers": [{"name": "c", "image": "registry.example.com/app:1",
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}]},
    });
    if spread {
        let selector = json!({"matchLabels": {"group": group}});
        pod["spec"]["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": selector, "topologyKey": "kubernetes.io/hostname"}]}});
        pod["spec"]["topologySpreadConstraints"] = json!([{"maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": selector}]);
    }
    pod
}

/// The API's ceiling for any scheduler: a plain client that binds each pod round robin as
/// soon as its watch shows it, measured as a scheduler is (pods created for no scheduler).
async fn bare_bindings(
    admin: &ApiClient,
    args: &SchedulerBenchArgs,
    nodes: Vec<String>,
) -> anyhow::Result<Value> {
    let watch = admin.watch(&format!("/api/v1/namespaces/{NS}/pods?watch=true")).await?;
    let binder = tokio::spawn(bind_round_robin(admin.clone(), watch, nodes, args.concurrency));
    let result = scenario(admin, args, "bare", &|i| {
        let mut pod = pod(i, false);
        pod["spec"]["schedulerName"] = json!("bench-nobody");
        pod
    })
    .await;
    binder.abort();
    result
}

/// Binds every new pod the watch shows, round robin over `nodes`, `concurrency` at a time.
async fn bind_round_robin(
    admin: ApiClient,
    mut body: hyper::body::Incoming,
    nodes: Vec<String>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut buffer = Vec::new();
    let mut next = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else { continue };
        buffer.extend_from_slice(data);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
            let pod = &event["object"];
            if event["type"] != "ADDED" || pod["spec"]["nodeName"].is_string() {
                continue;
            }
            let Some(name) = pod["metadata"]["name"].as_str().map(str::to_string) else { continue };
            let node = nodes[next % nodes.len().max(1)].clone();
            next += 1;
            let permit = Arc::clone(&in_flight).acquire_owned().await?;
            let admin = admin.clone();
            tokio::spawn(async move {
                let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
                let path = format!("/api/v1/namespaces/{NS}/pods/{name}/binding");
                let _ = admin.request(Method::POST, &path, Some(&binding)).await;
                drop(permit);
            });
        }
    }
    Ok(())
}

/// Creates the scenario's pods and waits until the watch has seen every one bound.
async fn scenario(
    admin: &ApiClient,
    args: &SchedulerBenchArgs,
    name: &str,
    make: &(dyn Fn(usize) -> Value + Sync),
) -> anyhow::Result<Value> {
    let bound: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = admin.watch(&format!("/api/v1/namespaces/{NS}/pods?watch=true")).await?;
    let seen = Arc::clone(&bound);
    let follower = tokio::spawn(follow(watch, seen));
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let pods: Vec<Value> = (0..args.pods).map(make).collect();
    let pods = Arc::new(pods);
    let stamps = Arc::clone(&created);
    let started = Instant::now();
    closed_loop(admin, args.pods, args.concurrency, move |i| {
        if let Ok(mut stamps) = stamps.lock() {
            stamps.insert(format!("p-{i}"), Instant::now());
        }
        (Method::POST, format!("/api/v1/namespaces/{NS}/pods"), Some(pods[i].clone()))
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let done = bound.lock().map(|b| b.len()).unwrap_or(0);
        if done >= args.pods {
            break;
        }
        if Instant::now() > deadline {
            bail!("scenario {name}: only {done} of {} pods bound", args.pods);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    follower.abort();
    let bound = bound.lock().map(|b| b.clone()).unwrap_or_default();
    let created = created.lock().map(|c| c.clone()).unwrap_or_default();
    let last = bound.values().max().copied().unwrap_or(started);
    let elapsed = last.duration_since(started);
    let mut latencies = Samples::default();
    for (pod, at) in &bound {
        if let Some(created) = created.get(pod) {
            latencies.push(at.saturating_duration_since(*created));
        }
    }
    Ok(json!({
        "pods_per_second": round3(args.pods as f64 / elapsed.as_secs_f64().max(1e-9)),
        "seconds": round3(elapsed.as_secs_f64()),
        "p50_ms": round3(latencies.quantile_ms(0.5)),
        "p99_ms": round3(latencies.quantile_ms(0.99)),
    }))
}

/// Notes when each pod is first seen with a node.
async fn follow(
    mut body: hyper::body::Incoming,
    bound: Arc<Mutex<HashMap<String, Instant>>>,
) -> anyhow::Result<()> {
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Some(data) = frame.data_ref() else { continue };
        buffer.extend_from_slice(data);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
            let pod = &event["object"];
            if event["type"] == "DELETED" || !pod["spec"]["nodeName"].is_string() {
                continue;
            }
            if let Some(name) = pod["metadata"]["name"].as_str()
                && let Ok(mut bound) = bound.lock()
            {
                bound.entry(name.to_string()).or_insert_with(Instant::now);
            }
        }
    }
    Ok(())
}

/// Deletes every pod of the namespace at once (no agent confirms a graceful deletion).
async fn delete_pods(admin: &ApiClient) -> anyhow::Result<()> {
    let path = format!("/api/v1/namespaces/{NS}/pods?gracePeriodSeconds=0");
    admin.request(Method::DELETE, &path, None).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list: Value = serde_json::from_slice(
            &admin
                .request(Method::GET, &format!("/api/v1/namespaces/{NS}/pods?limit=1"), None)
                .await?,
        )?;
        if list["items"].as_array().is_none_or(Vec::is_empty) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the pods were not deleted");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn start_scheduler(krust: &Path, dir: &Path) -> anyhow::Result<Killed> {
    let log = std::fs::File::create(dir.join("scheduler.log"))?;
    let child = std::process::Command::new(krust)
        .arg("scheduler")
        .arg("--kubeconfig")
        .arg(dir.join("server/scheduler.kubeconfig"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start krust scheduler")?;
    Ok(Killed(child))
}
