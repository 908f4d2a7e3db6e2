//! `krust bench controllers`: what the controllers cost, beside a plain client doing the same
//! in the same run. A `krust server` child runs without controllers; `krust controllers` runs
//! as a second child (its memory and CPU are its own). Simulated nodes, driven by this
//! process through the API, do what a kubelet reports and nothing more: each new pod is bound
//! to one of the nodes (round robin) and reported Running and Ready; a pod being deleted is
//! confirmed gone.
//!
//! - Reference: `replicas` pods created directly by a plain client with `concurrency`
//!   requests in flight, until all are ready.
//! - A Deployment scaled from 0 to `replicas` available replicas, then a rolling update of all
//!   of them (the default 25% surge and unavailability): the time of each, and the API
//!   requests the controllers made per replica (the server's request count, less this
//!   process's own requests).
//! - The controllers' resident memory with the pods cached.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Semaphore};

use crate::api::closed_loop;
use crate::client::ApiClient;
use crate::objects::Layout;
use crate::process::{Killed, ServerCommand, cpu_seconds, rss};
use crate::stats::round3;

/// Arguments of `krust bench controllers`.
#[derive(Debug, Clone, clap::Args)]
pub struct ControllersBenchArgs {
    /// Simulated nodes.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Replicas of the Deployment, and pods of the direct reference.
    #[arg(long, default_value_t = 1000)]
    pub replicas: usize,
    /// Requests in flight of the direct reference's client.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// The krust binary to run as the server and the controllers (default: this one).
    #[arg(long)]
    pub krust: Option<PathBuf>,
    /// Where the server keeps its data (a temporary folder by default).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Also write the results to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

const NS: &str = "bench-controllers";

/// Runs the benchmark and prints its results as JSON.
pub async fn controllers(args: ControllersBenchArgs) -> anyhow::Result<()> {
    let krust = match &args.krust {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find this binary")?,
    };
    let scratch = tempfile::tempdir().context("cannot make a temporary folder")?;
    let dir = args.work_dir.clone().unwrap_or_else(|| scratch.path().to_path_buf());
    let results = run(&args, &krust, &dir).await?;
    crate::stats::report(&results, args.output.as_deref())?;
    Ok(())
}

async fn run(args: &ControllersBenchArgs, krust: &Path, dir: &Path) -> anyhow::Result<Value> {
    let mut command = ServerCommand::new(krust, &dir.join("server"), None)?;
    command.log = Some(dir.join("server.log"));
    let server = command.start().await?;
    let admin = server.client.clone();
    let controllers = start_controllers(krust, dir)?;
    let controllers_pid = controllers.0.id();
    let own = Arc::new(AtomicU64::new(0));

    // The namespace; its default account comes from the controllers, which shows they act.
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    admin.request(Method::POST, "/api/v1/namespaces", Some(&ns)).await?;
    wait_until(Duration::from_secs(120), "the namespace's default account", || async {
        let path = format!("/api/v1/namespaces/{NS}/serviceaccounts/default");
        Ok(admin.request(Method::GET, &path, None).await.is_ok())
    })
    .await?;
    let layout = Layout { pods: args.replicas, nodes: args.nodes, namespaces: 1, early: 1 };
    for n in 0..args.nodes {
        admin.request(Method::POST, "/api/v1/nodes", Some(&layout.node_object(n))).await?;
    }
    let nodes: Vec<String> = (0..args.nodes).map(|n| layout.node(n)).collect();
    let kubelet = SimulatedNodes::start(admin.clone(), nodes, Arc::clone(&own)).await?;

    // The reference: a plain client creates the pods.
    let direct = {
        let started = Instant::now();
        let template = pod_template("registry.example.com/web:1");
        let creates = closed_loop(&admin, args.replicas, args.concurrency, move |i| {
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod"});
            pod["metadata"] = json!({"name": format!("direct-{i}"), "labels": {"app": "direct"}});
            pod["spec"] = template["spec"].clone();
            (Method::POST, format!("/api/v1/namespaces/{NS}/pods"), Some(pod))
        })
        .await?;
        own.fetch_add(args.replicas as u64, Ordering::Relaxed);
        let want = args.replicas;
        wait_until(Duration::from_secs(600), "the direct pods ready", || {
            let kubelet = &kubelet;
            async move { Ok(kubelet.ready_with_prefix("direct-").await >= want) }
        })
        .await?;
        let seconds = started.elapsed().as_secs_f64();
        let path = format!("/api/v1/namespaces/{NS}/pods?labelSelector=app%3Ddirect");
        admin.request(Method::DELETE, &path, None).await?;
        own.fetch_add(1, Ordering::Relaxed);
        wait_until(Duration::from_secs(600), "the direct pods gone", || async {
            own.fetch_add(1, Ordering::Relaxed);
            Ok(count(&admin, "app=direct").await? == 0)
        })
        .await?;
        json!({"seconds": round3(seconds), "creates": creates})
    };

    // The Deployment, from 0 to every replica available.
    let requests_before = server_requests(&admin).await?;
    let own_before = own.load(Ordering::Relaxed);
    let cpu_before = cpu_seconds(controllers_pid);
    let started = Instant::now();
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": args.replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": pod_template("registry.example.com/web:1"),
        },
    });
    admin
        .request(
            Method::POST,
            &format!("/apis/apps/v1/namespaces/{NS}/deployments"),
            Some(&deployment),
        )
        .await?;
    own.fetch_add(1, Ordering::Relaxed);
    wait_rollout(&admin, &own, args.replicas).await?;
    let up_seconds = started.elapsed().as_secs_f64();
    let up_requests = server_requests(&admin)
        .await?
        .saturating_sub(requests_before)
        .saturating_sub(own.load(Ordering::Relaxed) - own_before);
    let up_cpu = cpu_seconds(controllers_pid) - cpu_before;

    // A rolling update of every replica.
    let requests_before = server_requests(&admin).await?;
    let own_before = own.load(Ordering::Relaxed);
    let cpu_before = cpu_seconds(controllers_pid);
    let started = Instant::now();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.example.com/web:2"}]}}}});
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/web");
    admin
        .send(
            Method::PATCH,
            &path,
            "application/strategic-merge-patch+json",
            serde_json::to_vec(&patch)?.into(),
        )
        .await?;
    own.fetch_add(1, Ordering::Relaxed);
    wait_rollout(&admin, &own, args.replicas).await?;
    let roll_seconds = started.elapsed().as_secs_f64();
    let roll_requests = server_requests(&admin)
        .await?
        .saturating_sub(requests_before)
        .saturating_sub(own.load(Ordering::Relaxed) - own_before);
    let roll_cpu = cpu_seconds(controllers_pid) - cpu_before;
    let controllers_rss = rss(controllers_pid);
    let server_rss = rss(server.pid());
    let direct_seconds = direct["seconds"].as_f64().unwrap_or(0.0);
    let per_replica = |n: u64| round3(n as f64 / args.replicas.max(1) as f64);
    let results = json!({
        "nodes": args.nodes,
        "replicas": args.replicas,
        "direct_creates": direct,
        "deployment_scale_up": {
            "seconds": round3(up_seconds),
            "controller_requests": up_requests,
            "controller_requests_per_replica": per_replica(up_requests),
            "controllers_cpu_seconds": round3(up_cpu),
            "ratio_to_direct": if direct_seconds > 0.0 { round3(up_seconds / direct_seconds) } else { 0.0 },
        },
        "rolling_update": {
            "seconds": round3(roll_seconds),
            "controller_requests": roll_requests,
            "controller_requests_per_replica": per_replica(roll_requests),
            "controllers_cpu_seconds": round3(roll_cpu),
            "ratio_to_direct": if direct_seconds > 0.0 { round3(roll_seconds / direct_seconds) } else { 0.0 },
        },
        "memory": {
            "controllers_rss_mib": round3(controllers_rss as f64 / 1048576.0),
            "server_rss_mib": round3(server_rss as f64 / 1048576.0),
        },
        "goals": [{
            "what": "Deployment 0 to all available, against direct creates",
            "goal": "<= 1.5",
        }],
    });
    drop(kubelet);
    drop(controllers);
    server.terminate().await?;
    Ok(results)
}

/// A pod template of the benchmark's workloads.
fn pod_template(image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": image}]},
    })
}

fn start_controllers(krust: &Path, dir: &Path) -> anyhow::Result<Killed> {
    let log = std::fs::File::create(dir.join("controllers.log"))?;
    let child = std::process::Command::new(krust)
        .arg("controllers")
        .arg("--kubeconfig")
        .arg(dir.join("server/controller-manager.kubeconfig"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start krust controllers")?;
    Ok(Killed(child))
}

/// Polls `check` every 50 ms until it answers true, for at most `timeout`.
async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await.unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the Deployment `web` has every replica updated and available.
async fn wait_rollout(admin: &ApiClient, own: &AtomicU64, replicas: usize) -> anyhow::Result<()> {
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/web");
    wait_until(Duration::from_secs(900), "the rollout", || async {
        own.fetch_add(1, Ordering::Relaxed);
        let d: Value = serde_json::from_slice(&admin.request(Method::GET, &path, None).await?)?;
        let n = |f: &str| d["status"][f].as_u64().unwrap_or(0) as usize;
        let current =
            d["status"]["observedGeneration"].as_i64() >= d["metadata"]["generation"].as_i64();
        Ok(current
            && n("updatedReplicas") == replicas
            && n("availableReplicas") == replicas
            && n("replicas") == replicas)
    })
    .await
}

/// How many pods of the namespace match `selector`.
async fn count(admin: &ApiClient, selector: &str) -> anyhow::Result<usize> {
    let path =
        format!("/api/v1/namespaces/{NS}/pods?labelSelector={}", selector.replace('=', "%3D"));
    let list: Value = serde_json::from_slice(&admin.request(Method::GET, &path, None).await?)?;
    Ok(list["items"].as_array().map_or(0, Vec::len))
}

/// Every request the server answered so far (`apiserver_request_total`, all labels).
async fn server_requests(admin: &ApiClient) -> anyhow::Result<u64> {
    let text = admin.request(Method::GET, "/metrics", None).await?;
    let text = String::from_utf8_lossy(&text);
    Ok(text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// Nodes that report what a kubelet would, for the namespace's pods: bound, Running and
/// Ready; deletions confirmed.
struct SimulatedNodes {
    task: tokio::task::JoinHandle<()>,
    ready: Arc<Mutex<HashSet<String>>>,
}

impl Drop for SimulatedNodes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SimulatedNodes {
    async fn start(
        admin: ApiClient,
        nodes: Vec<String>,
        own: Arc<AtomicU64>,
    ) -> anyhow::Result<Self> {
        let ready = Arc::new(Mutex::new(HashSet::new()));
        let path = format!("/api/v1/namespaces/{NS}/pods?watch=true&allowWatchBookmarks=false");
        let (status, body) = admin.get_streaming(&path).await?;
        if !status.is_success() {
            bail!("{path}: {status}");
        }
        own.fetch_add(1, Ordering::Relaxed);
        let state = Arc::clone(&ready);
        let task = tokio::spawn(async move {
            if let Err(e) = Self::follow(admin, body, nodes, state, own).await {
                eprintln!("simulated nodes stopped: {e:#}");
            }
        });
        Ok(Self { task, ready })
    }

    async fn ready_with_prefix(&self, prefix: &str) -> usize {
        self.ready.lock().await.iter().filter(|n| n.starts_with(prefix)).count()
    }

    async fn follow(
        admin: ApiClient,
        mut body: hyper::body::Incoming,
        nodes: Vec<String>,
        ready: Arc<Mutex<HashSet<String>>>,
        own: Arc<AtomicU64>,
    ) -> anyhow::Result<()> {
        let in_flight = Arc::new(Semaphore::new(64));
        let mut buffer = Vec::new();
        let mut next_node = 0usize;
        let mut bound: HashSet<String> = HashSet::new();
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            let Some(data) = frame.data_ref() else { continue };
            buffer.extend_from_slice(data);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else { continue };
                let pod = &event["object"];
                let Some(name) = pod["metadata"]["name"].as_str().map(str::to_string) else {
                    continue;
                };
                if event["type"] == "DELETED" {
                    ready.lock().await.remove(&name);
                    bound.remove(&name);
                    continue;
                }
                let permit = Arc::clone(&in_flight).acquire_owned().await?;
                let admin = admin.clone();
                let own = Arc::clone(&own);
                if pod["metadata"]["deletionTimestamp"].is_string() {
                    tokio::spawn(async move {
                        let path =
                            format!("/api/v1/namespaces/{NS}/pods/{name}?gracePeriodSeconds=0");
                        own.fetch_add(1, Ordering::Relaxed);
                        let _ = admin.request(Method::DELETE, &path, None).await;
                        drop(permit);
                    });
                    continue;
                }
                let is_ready = pod["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
                if is_ready {
                    ready.lock().await.insert(name);
                    continue;
                }
                if pod["spec"]["nodeName"].is_string() || !bound.insert(name.clone()) {
                    continue;
                }
                let node = nodes[next_node % nodes.len().max(1)].clone();
                next_node += 1;
                tokio::spawn(async move {
                    let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
                    let path = format!("/api/v1/namespaces/{NS}/pods/{name}/binding");
                    own.fetch_add(2, Ordering::Relaxed);
                    if admin.request(Method::POST, &path, Some(&binding)).await.is_ok() {
                        let now = rfc3339_now();
                        let status = json!({"status": {"phase": "Running", "startTime": now,
                            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now},
                                           {"type": "ContainersReady", "status": "True", "lastTransitionTime": now}]}});
                        let path = format!("/api/v1/namespaces/{NS}/pods/{name}/status");
                        let body = serde_json::to_vec(&status).unwrap_or_default();
                        let _ = admin
                            .send(Method::PATCH, &path, "application/merge-patch+json", body.into())
                            .await;
                    }
                    drop(permit);
                });
            }
        }
        Ok(())
    }
}

/// Now, as RFC 3339 in UTC to the second.
fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
