//! `krust bench fanout`: what an open registry costs, each figure beside its reference in the
//! same run, on a `krust server` child process (its CPU time and memory are its own):
//!
//! - creates by a user that RBAC authorizes (a service account, through its group bound by a
//!   RoleBinding to `edit` in the namespace, authenticated by a bearer token from the
//!   TokenRequest API) against the admin's creates (`system:masters`, client certificate);
//! - a list of 10,000 ConfigMaps through the API against encoding the same list, as one JSON
//!   value, with `serde_json` in this process;
//! - server CPU per pod create while 1,000 watchers each follow one node's pods
//!   (`fieldSelector=spec.nodeName=`), against the same creates with no watcher; and the
//!   server's RSS with the watchers against without.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::api::{closed_loop, configmap};
use crate::client::ApiClient;
use crate::etcd::Etcd;
use crate::objects::Layout;
use crate::process::{ServerCommand, cpu_seconds, rss};
use crate::stats::round3;

/// Arguments of `krust bench fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutBenchArgs {
    /// Creates of each run comparing the RBAC-authorized user with the admin (two runs each,
    /// alternating).
    #[arg(long, default_value_t = 5000)]
    pub creates: usize,
    /// Concurrent clients for creates.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// ConfigMaps in the listed namespace.
    #[arg(long, default_value_t = 10_000)]
    pub list_objects: usize,
    /// Timed repetitions of the list and of its reference encode (the median is reported).
    #[arg(long, default_value_t = 10)]
    pub list_repeats: usize,
    /// Watchers, each on the pods of its own node (as many nodes as watchers).
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Watches per HTTP/2 connection (servers commonly allow 100 to 250 streams at once).
    #[arg(long, default_value_t = 100)]
    pub watchers_per_connection: usize,
    /// Pod creates of each fan-out run, spread evenly over the watchers' nodes.
    #[arg(long, default_value_t = 10_000)]
    pub pod_creates: usize,
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
    /// Also write the results to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { round3(a / b) } else { 0.0 }
}

fn mib(bytes: u64) -> f64 {
    round3(bytes as f64 / (1024.0 * 1024.0))
}

/// Creates namespace `name` with its `default` ServiceAccount (pods need it).
async fn namespace(client: &ApiClient, name: &str) -> anyhow::Result<()> {
    client.create_namespace(name).await
}

/// A client authenticated as a service account of `ns` whose group is bound to `edit` in
/// `ns` by a RoleBinding, with a token from the TokenRequest API.
async fn rbac_user(admin: &ApiClient, kubeconfig: &str, ns: &str) -> anyhow::Result<ApiClient> {
    let sa =
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bench-editor"}});
    admin
        .request(Method::POST, &format!("/api/v1/namespaces/{ns}/serviceaccounts"), Some(&sa))
        .await?;
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "bench-editors"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": format!("system:serviceaccounts:{ns}")}],
    });
    admin
        .request(
            Method::POST,
            &format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
            Some(&binding),
        )
        .await?;
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 7200}});
    let answer = admin
        .request(
            Method::POST,
            &format!("/api/v1/namespaces/{ns}/serviceaccounts/bench-editor/token"),
            Some(&request),
        )
        .await?;
    let answer: Value = serde_json::from_slice(&answer)?;
    let token = answer["status"]["token"].as_str().context("TokenRequest answered no token")?;
    let user = ApiClient::connect_with_token(kubeconfig, token).await?;
    // The binding takes effect once the policy is rebuilt (and `edit` aggregated).
    let probe =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rbac-probe"}});
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = user.request(Method::POST, &path, Some(&probe)).await {
        if Instant::now() > deadline {
            bail!("the RBAC user cannot create ConfigMaps after 30 s: {e}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(user)
}

/// Creates by the admin and by the RBAC user, alternating, two runs each.
/// Rounds of the RBAC-user against admin creates.
const ROUNDS: usize = 5;

async fn rbac_creates(
    admin: &ApiClient,
    kubeconfig: &str,
    args: &FanoutBenchArgs,
) -> anyhow::Result<Value> {
    const NS: &str = "rbac-bench";
    namespace(admin, NS).await?;
    let user = rbac_user(admin, kubeconfig, NS).await?;
    // The user goes through RBAC, not around it: it may not read nodes.
    let not_admin = user.request(Method::GET, "/api/v1/nodes", None).await.is_err();
    let run = |client: &ApiClient, prefix: &'static str, round: usize| {
        let client = client.clone();
        let (n, concurrency) = (args.creates, args.concurrency);
        async move {
            closed_loop(&client, n, concurrency, move |i| {
                let mut body = configmap(i);
                body["metadata"]["name"] = json!(format!("{prefix}-{round}-{i:06}"));
                (Method::POST, format!("/api/v1/namespaces/{NS}/configmaps"), Some(body))
            })
            .await
        }
    };
    // Rounds alternate which side goes first, so that a machine speeding up or slowing down
    // over the run favours neither; the ratio is the median of the rounds' ratios.
    let (mut admin_runs, mut user_runs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (a, u) = if round % 2 == 0 {
            let a = run(admin, "admin", round).await?;
            (a, run(&user, "user", round).await?)
        } else {
            let u = run(&user, "user", round).await?;
            (run(admin, "admin", round).await?, u)
        };
        let rate = |r: &Value| r["per_second"].as_f64().unwrap_or(0.0);
        ratios.push(rate(&u) / rate(&a).max(1.0));
        admin_runs.push(a);
        user_runs.push(u);
    }
    let mean = |runs: &[Value]| {
        runs.iter().map(|r| r["per_second"].as_f64().unwrap_or(0.0)).sum::<f64>()
            / runs.len().max(1) as f64
    };
    let (admin_rate, user_rate) = (mean(&admin_runs), mean(&user_runs));
    ratios.sort_by(f64::total_cmp);
    let median_ratio = ratios[ratios.len() / 2];
    Ok(json!({
        "user": format!("system:serviceaccount:{NS}:bench-editor (group system:serviceaccounts:{NS} bound to edit by a RoleBinding; bearer token)"),
        "user_cannot_list_nodes": not_admin,
        "admin": admin_runs,
        "rbac_user": user_runs,
        "admin_per_second_mean": admin_rate.round(),
        "rbac_user_per_second_mean": user_rate.round(),
        "ratio": round3(median_ratio),
        "ratio_of_means": ratio(user_rate, admin_rate),
        "round_ratios": ratios.iter().map(|r| round3(*r)).collect::<Vec<_>>(),
        "goal": "ratio (the median of the rounds' ratios) >= 0.9",
    }))
}

/// The median of `times` (milliseconds).
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().map_or(0.0, round3)
}

/// A list of `list_objects` ConfigMaps through the API against `serde_json::to_vec` of the
/// same list as one value.
async fn list_against_encode(admin: &ApiClient, args: &FanoutBenchArgs) -> anyhow::Result<Value> {
    const NS: &str = "list-bench";
    namespace(admin, NS).await?;
    closed_loop(admin, args.list_objects, args.concurrency, |i| {
        (Method::POST, format!("/api/v1/namespaces/{NS}/configmaps"), Some(configmap(i)))
    })
    .await?;
    let path = format!("/api/v1/namespaces/{NS}/configmaps");
    let mut body = admin.request(Method::GET, &path, None).await?;
    let mut listed = Vec::new();
    for _ in 0..args.list_repeats.max(1) {
        let t = Instant::now();
        body = admin.request(Method::GET, &path, None).await?;
        listed.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let value: Value = serde_json::from_slice(&body).context("a list that does not parse")?;
    let items = value["items"].as_array().map_or(0, Vec::len);
    let mut encoded = Vec::new();
    let mut encoded_bytes = 0;
    for _ in 0..args.list_repeats.max(1) {
        let t = Instant::now();
        let bytes = serde_json::to_vec(&value)?;
        encoded.push(t.elapsed().as_secs_f64() * 1000.0);
        encoded_bytes = bytes.len();
    }
    let (listed, encoded) = (median(listed), median(encoded));
    let protobuf = protobuf_list_against_encode(admin, &path, &body, args.list_repeats).await?;
    Ok(json!({
        "protobuf": protobuf,
        "items": items,
        // The namespace holds the listed ConfigMaps only (no controller publishes its
        // `kube-root-ca.crt` in a benchmarked server).
        "all_listed": items == args.list_objects,
        "bytes": body.len(),
        "list_median_ms": listed,
        "reference_encode_median_ms": encoded,
        "reference_bytes": encoded_bytes,
        "ratio": ratio(listed, encoded),
        "goal": "ratio <= 2",
    }))
}

/// The same list as Kubernetes protobuf (what kubectl and client-go ask for), against
/// encoding the same list (`json`, the list's JSON as listed) into one protobuf body in this
/// process with the server's own encoder, which reads JSON text as the server keeps it.
async fn protobuf_list_against_encode(
    admin: &ApiClient,
    path: &str,
    json: &[u8],
    repeats: usize,
) -> anyhow::Result<Value> {
    const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
    let mut body = admin.get_accepting(path, PROTOBUF).await?;
    let mut listed = Vec::new();
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        body = admin.get_accepting(path, PROTOBUF).await?;
        listed.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let items = krust_api::protobuf::decode(&body)
        .context("a protobuf list that does not decode")?["items"]
        .as_array()
        .map_or(0, Vec::len);
    let encoder = krust_api::protobuf::MessageEncoder::new("v1", "ConfigMapList")?;
    let mut encoded = Vec::new();
    let mut encoded_bytes = 0;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        let message = encoder.encode(json)?;
        let bytes = krust_api::protobuf::encode_envelope("v1", "ConfigMapList", &message)?;
        encoded.push(t.elapsed().as_secs_f64() * 1000.0);
        encoded_bytes = bytes.len();
    }
    let (listed, encoded) = (median(listed), median(encoded));
    Ok(json!({
        "items": items,
        "bytes": body.len(),
        "list_median_ms": listed,
        "reference_encode_median_ms": encoded,
        "reference_bytes": encoded_bytes,
        "ratio": ratio(listed, encoded),
        "goal": "ratio <= 2",
    }))
}

/// Opens one watch, counts it in `opened` once answered, and counts its events (lines) until
/// `expected` arrived.
async fn watch_events(
    client: ApiClient,
    path: String,
    expected: usize,
    opened: Arc<AtomicUsize>,
) -> anyhow::Result<()> {
    let (status, mut body) = client.get_streaming(&path).await?;
    if !status.is_success() {
        bail!("{path}: {status}");
    }
    opened.fetch_add(1, Ordering::Release);
    let mut seen = 0;
    while seen < expected {
        let frame = tokio::time::timeout(Duration::from_secs(120), body.frame())
            .await
            .context("watch stalled")?
            .context("watch ended")??;
        if let Some(data) = frame.data_ref() {
            seen += data.iter().filter(|b| **b == b'\n').count();
        }
    }
    Ok(())
}

/// `pod_creates` pods in `ns`, pod `i` on node `i % nodes`, from `concurrency` clients.
async fn create_pods(
    admin: &ApiClient,
    ns: &'static str,
    args: &FanoutBenchArgs,
) -> anyhow::Result<Value> {
    let nodes = args.watchers.max(1);
    let layout = Layout { pods: args.pod_creates, nodes, namespaces: 1, early: 1 };
    closed_loop(admin, args.pod_creates, args.concurrency, move |i| {
        let (mut pod, _) = layout.pod(i);
        pod["metadata"]["namespace"] = json!(ns);
        pod["spec"]["nodeName"] = json!(layout.node(i % nodes));
        (Method::POST, format!("/api/v1/namespaces/{ns}/pods"), Some(pod))
    })
    .await
}

/// Server CPU per pod create with no watcher, then with a watcher per node.
async fn fan_out(
    admin: &ApiClient,
    kubeconfig: &str,
    pid: u32,
    args: &FanoutBenchArgs,
) -> anyhow::Result<Value> {
    namespace(admin, "fanout-a").await?;
    namespace(admin, "fanout-b").await?;
    let settle = Duration::from_millis(500);
    let n = args.pod_creates;
    let layout = Layout { pods: 1, nodes: args.watchers.max(1), namespaces: 1, early: 1 };

    tokio::time::sleep(settle).await;
    let rss_before = rss(pid);
    let cpu = cpu_seconds(pid);
    let alone = create_pods(admin, "fanout-a", args).await?;
    tokio::time::sleep(settle).await;
    let cpu_alone = (cpu_seconds(pid) - cpu) / n as f64;
    let rss_without = rss(pid);

    // Watches start after everything so far, so each sees only the next run's pods.
    let list = admin.request(Method::GET, "/api/v1/pods?limit=1", None).await?;
    let list: Value = serde_json::from_slice(&list)?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let per_connection = args.watchers_per_connection.max(1);
    let mut connections = Vec::new();
    let mut watches = Vec::new();
    let opened = Arc::new(AtomicUsize::new(0));
    for w in 0..args.watchers {
        if w % per_connection == 0 {
            connections.push(ApiClient::connect(kubeconfig).await?);
        }
        let client = connections.last().context("no connection")?.clone();
        let expected = (0..n).filter(|i| i % args.watchers.max(1) == w).count();
        let path = format!(
            "/api/v1/pods?watch=true&resourceVersion={rv}&fieldSelector=spec.nodeName%3D{}",
            layout.node(w)
        );
        watches.push(tokio::spawn(watch_events(client, path, expected, Arc::clone(&opened))));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while opened.load(Ordering::Acquire) < args.watchers {
        if Instant::now() > deadline {
            bail!(
                "{} of {} watches open after 60 s",
                opened.load(Ordering::Acquire),
                args.watchers
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(settle).await;
    let rss_watching = rss(pid);
    let cpu = cpu_seconds(pid);
    let started = Instant::now();
    let watched = create_pods(admin, "fanout-b", args).await?;
    for watch in watches {
        watch.await??;
    }
    let delivered = started.elapsed();
    tokio::time::sleep(settle).await;
    let cpu_watched = (cpu_seconds(pid) - cpu) / n as f64;
    let rss_after = rss(pid);
    drop(connections);
    Ok(json!({
        "watchers": args.watchers,
        "pod_creates": n,
        "events_per_watcher": n / args.watchers.max(1),
        "without_watchers": {"creates": alone, "server_cpu_ms_per_write": round3(cpu_alone * 1000.0)},
        "with_watchers": {
            "creates": watched,
            "server_cpu_ms_per_write": round3(cpu_watched * 1000.0),
            "seconds_to_all_delivered": round3(delivered.as_secs_f64()),
        },
        "cpu_ratio": ratio(cpu_watched, cpu_alone),
        "cpu_goal": "cpu_ratio <= 2",
        "server_rss_mib": {
            "before": mib(rss_before),
            "after_creates_without_watchers": mib(rss_without),
            "with_idle_watchers": mib(rss_watching),
            "after_creates_with_watchers": mib(rss_after),
        },
        "server_rss_growth_mib": {
            "creates_without_watchers": mib(rss_without.saturating_sub(rss_before)),
            "creates_with_watchers": mib(rss_after.saturating_sub(rss_watching)),
            "opening_the_watchers": mib(rss_watching.saturating_sub(rss_without)),
        },
        "rss_kib_per_idle_watcher": round3(rss_watching.saturating_sub(rss_without) as f64 / 1024.0 / args.watchers.max(1) as f64),
    }))
}

/// The three measurements against one server.
async fn measure(
    krust: &Path,
    dir: &Path,
    endpoint: Option<&str>,
    args: &FanoutBenchArgs,
) -> anyhow::Result<Value> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut command = ServerCommand::new(krust, &dir.join("server"), endpoint)?;
    command.log = Some(dir.join("server.log"));
    let server = command.start().await?;
    let kubeconfig = std::fs::read_to_string(command.dir.join("admin.kubeconfig"))?;
    let admin = server.client.clone();
    let rbac = rbac_creates(&admin, &kubeconfig, args).await?;
    let list = list_against_encode(&admin, args).await?;
    let fan_out = fan_out(&admin, &kubeconfig, server.pid(), args).await?;
    Ok(json!({"rbac_creates": rbac, "list": list, "watch_fan_out": fan_out}))
}

/// Runs the benchmark on the backends asked for and prints (and optionally writes) the results
/// as JSON.
pub async fn fanout(args: FanoutBenchArgs) -> anyhow::Result<()> {
    if args.skip_embedded && args.skip_etcd {
        bail!("--skip-embedded and --skip-etcd leave nothing to run");
    }
    if args.watchers == 0 || args.pod_creates == 0 || args.creates == 0 {
        bail!("--watchers, --pod-creates and --creates must be positive");
    }
    let krust = match &args.krust {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the krust binary")?,
    };
    let tmp = tempfile::tempdir()?;
    let mut results = json!({
        "creates": args.creates,
        "concurrency": args.concurrency,
        "list_objects": args.list_objects,
        "watchers": args.watchers,
        "pod_creates": args.pod_creates,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "server": "krust server as a child process of the benchmark",
    });
    let mut goals = Vec::new();
    let mut record = |backend: &str, r: &Value| {
        let f = |v: &Value| v.as_f64().unwrap_or(0.0);
        let rbac = f(&r["rbac_creates"]["ratio"]);
        let list = f(&r["list"]["ratio"]);
        let cpu = f(&r["watch_fan_out"]["cpu_ratio"]);
        let protobuf = f(&r["list"]["protobuf"]["ratio"]);
        goals.push(json!({"backend": backend, "figure": "RBAC user creates/s over admin creates/s", "value": rbac, "goal": ">= 0.9", "met": rbac >= 0.9}));
        goals.push(json!({"backend": backend, "figure": "list of ConfigMaps over serde_json encode", "value": list, "goal": "<= 2", "met": list <= 2.0}));
        goals.push(json!({"backend": backend, "figure": "protobuf list of ConfigMaps over a protobuf encode of the same list", "value": protobuf, "goal": "<= 2", "met": protobuf <= 2.0}));
        goals.push(json!({"backend": backend, "figure": "server CPU per write with watchers over without", "value": cpu, "goal": "<= 2", "met": cpu <= 2.0}));
    };
    if !args.skip_embedded {
        let r = measure(&krust, &tmp.path().join("embedded"), None, &args).await?;
        record("embedded", &r);
        results["embedded"] = r;
    }
    if !args.skip_etcd {
        let etcd_dir = tmp.path().join("etcd-data");
        let etcd = Etcd::start(&args.etcd, &etcd_dir).await?;
        let r = measure(&krust, &tmp.path().join("etcd"), Some(&etcd.url), &args).await?;
        drop(etcd);
        record("etcd", &r);
        results["etcd"] = r;
    }
    results["goals"] = Value::Array(goals);
    crate::stats::report(&results, args.output.as_deref())?;
    Ok(())
}
