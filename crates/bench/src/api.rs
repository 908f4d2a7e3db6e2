//! `krust bench api`: the API server on the embedded store and on etcd, and the raw stores,
//! in one run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::client::ApiClient;
use crate::etcd::Etcd;
use crate::stats::{Samples, round3};

/// Arguments of `krust bench api`.
#[derive(Debug, clap::Args)]
pub struct ApiBenchArgs {
    /// Objects to create, get and list.
    #[arg(long, default_value_t = 10_000)]
    pub objects: usize,
    /// Watchers for the fan-out measurement.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Concurrent clients for creates and gets.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Concurrent writers for the raw store measurement (each count is one run).
    #[arg(long, value_delimiter = ',', default_value = "16,64,256")]
    pub store_writers: Vec<usize>,
    /// Writes of the single-writer run (and of each `O_DSYNC` floor run beside it).
    #[arg(long, default_value_t = 2000)]
    pub single_writes: usize,
    /// Rate of the paced create run (creates per second).
    #[arg(long, default_value_t = 1000)]
    pub paced_rate: u64,
    /// Measure the raw stores only (no API server runs).
    #[arg(long)]
    pub store_only: bool,
    /// The etcd binary used for the reference runs.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd: PathBuf,
    /// Also write the results to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

const NS: &str = "bench";

/// ConfigMap `i` of the benchmark: a label and 200 bytes of data.
pub(crate) fn configmap(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i:06}"), "labels": {"bench": "yes"}}, "data": {"key": "x".repeat(200)}})
}

/// Runs `n` requests from `concurrency` tasks; `make` builds request `i`.
pub(crate) async fn closed_loop(
    client: &ApiClient,
    n: usize,
    concurrency: usize,
    make: impl Fn(usize) -> (Method, String, Option<Value>) + Send + Sync + 'static,
) -> anyhow::Result<Value> {
    let make = Arc::new(make);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, make) = (client.clone(), Arc::clone(&make));
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            for i in (w..n).step_by(concurrency) {
                let (method, path, body) = make(i);
                let t = Instant::now();
                client.request(method, &path, body.as_ref()).await?;
                samples.push(t.elapsed());
            }
            anyhow::Ok(samples)
        }));
    }
    let mut all = Samples::default();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all.summary(started.elapsed()))
}

/// Creates at a fixed rate for three seconds (an open loop), measuring latency.
async fn paced_creates(client: &ApiClient, rate: u64) -> anyhow::Result<Value> {
    let total = rate * 3;
    let mut ticker = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate.max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..total {
        ticker.tick().await;
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut obj = configmap(i as usize);
            obj["metadata"]["name"] = json!(format!("paced-{i:06}"));
            let t = Instant::now();
            client
                .request(Method::POST, &format!("/api/v1/namespaces/{NS}/configmaps"), Some(&obj))
                .await?;
            anyhow::Ok(t.elapsed())
        }));
    }
    let mut samples = Samples::default();
    for task in tasks {
        samples.push(task.await??);
    }
    let mut summary = samples.summary(started.elapsed());
    summary["target_per_second"] = json!(rate);
    Ok(summary)
}

/// Counts watch events (lines) until `n` arrived.
async fn count_events(mut body: hyper::body::Incoming, n: usize) -> anyhow::Result<()> {
    let mut seen = 0;
    while seen < n {
        let frame = tokio::time::timeout(Duration::from_secs(60), body.frame())
            .await
            .context("watch stalled")?
            .context("watch ended")??;
        if let Some(data) = frame.data_ref() {
            seen += data.iter().filter(|b| **b == b'\n').count();
        }
    }
    Ok(())
}

/// `watchers` watches on the namespace; then `n` creates; measures until every watcher saw all.
async fn fan_out(client: &ApiClient, watchers: usize, n: usize) -> anyhow::Result<Value> {
    let list = client
        .request(Method::GET, &format!("/api/v1/namespaces/{NS}/secrets?limit=1"), None)
        .await?;
    let rv = serde_json::from_slice::<Value>(&list)?["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    let mut bodies = Vec::new();
    for _ in 0..watchers {
        bodies.push(
            client
                .watch(&format!("/api/v1/namespaces/{NS}/secrets?watch=true&resourceVersion={rv}"))
                .await?,
        );
    }
    let started = Instant::now();
    let waits: Vec<_> = bodies.into_iter().map(|b| tokio::spawn(count_events(b, n))).collect();
    let writer = client.clone();
    let create = tokio::spawn(async move {
        closed_loop(&writer, n, 16, |i| {
            let body = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("s-{i:06}")}, "data": {"k": "eA=="}});
            (Method::POST, format!("/api/v1/namespaces/{NS}/secrets"), Some(body))
        })
        .await
    });
    for wait in waits {
        wait.await??;
    }
    let elapsed = started.elapsed();
    create.await??;
    Ok(json!({
        "watchers": watchers,
        "events_per_watcher": n,
        "delivered_per_second": ((watchers * n) as f64 / elapsed.as_secs_f64()).round(),
        "seconds": round3(elapsed.as_secs_f64()),
    }))
}

/// The API benchmark against one started server.
async fn api_suite(client: &ApiClient, args: &ApiBenchArgs) -> anyhow::Result<Value> {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
    client.request(Method::POST, "/api/v1/namespaces", Some(&ns)).await?;
    let n = args.objects;
    let create = closed_loop(client, n, args.concurrency, |i| {
        (Method::POST, format!("/api/v1/namespaces/{NS}/configmaps"), Some(configmap(i)))
    })
    .await?;
    let get = closed_loop(client, n, args.concurrency, |i| {
        (Method::GET, format!("/api/v1/namespaces/{NS}/configmaps/cm-{i:06}"), None)
    })
    .await?;
    let lists = 20;
    let list = closed_loop(client, lists, 1, |_| {
        (Method::GET, format!("/api/v1/namespaces/{NS}/configmaps"), None)
    })
    .await?;
    let paced = paced_creates(client, args.paced_rate).await?;
    let watch = fan_out(client, args.watchers, 1000).await?;
    Ok(
        json!({"create": create, "get": get, "list_all": list, "paced_create": paced, "watch_fan_out": watch}),
    )
}

async fn start_server(dir: &std::path::Path, endpoints: Vec<String>) -> anyhow::Result<ApiClient> {
    let config = krust_apiserver::Config {
        data_dir: dir.to_path_buf(),
        bind_address: [127, 0, 0, 1].into(),
        port: 0,
        datastore_endpoints: endpoints,
        ..krust_apiserver::Config::default()
    };
    let running = krust_apiserver::start(config).await.context("cannot start the API server")?;
    let kubeconfig = std::fs::read_to_string(&running.kubeconfig)?;
    ApiClient::connect(&kubeconfig).await
}

/// Rounds of each raw-store measurement. In each round the floors and both backends take
/// turns, so that a change in the disk's speed (it moves between runs seconds apart on a
/// shared machine) reaches every side alike.
const ROUNDS: usize = 3;

/// Rounds of the single-writer measurement (short runs: more of them).
const SINGLE_WRITER_ROUNDS: usize = 5;

/// The best of several runs (most per second): the disk is shared, a slow run is noise.
fn best(runs: &[Value]) -> Value {
    runs.iter()
        .max_by(|a, b| per_second(a).total_cmp(&per_second(b)))
        .cloned()
        .unwrap_or(Value::Null)
}

fn per_second(run: &Value) -> f64 {
    run["per_second"].as_f64().unwrap_or(0.0)
}

/// The median of `a[i] / b[i]` over the rounds: each round's sides ran seconds apart.
fn paired_median(a: &[Value], b: &[Value]) -> f64 {
    let mut ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter(|(_, b)| per_second(b) > 0.0)
        .map(|(a, b)| per_second(a) / per_second(b))
        .collect();
    ratios.sort_by(f64::total_cmp);
    match ratios.len() {
        0 => 0.0,
        n if n % 2 == 1 => round3(ratios[n / 2]),
        n => round3((ratios[n / 2 - 1] + ratios[n / 2]) / 2.0),
    }
}

/// A measurement's runs, their best first.
fn runs(runs: Vec<Value>) -> Value {
    json!({"best": best(&runs), "runs": runs})
}

/// The raw stores and the `O_DSYNC` floors, in rounds. Returns the `store` results and their
/// ratios.
async fn raw_stores(
    args: &ApiBenchArgs,
    embedded: &Arc<dyn krust_store::Store>,
    etcd: &Arc<dyn krust_store::Store>,
    dir: &std::path::Path,
) -> anyhow::Result<(Value, Value)> {
    use crate::store::{
        concurrent_writes, dsync_floor, dsync_overwrite_floor, single_writer, watch,
    };
    let n = args.single_writes;
    let (mut appends, mut overwrites) = (Vec::new(), Vec::new());
    let (mut embedded_single, mut etcd_single) = (Vec::new(), Vec::new());
    for round in 0..SINGLE_WRITER_ROUNDS {
        appends.push(dsync_floor(dir, n)?);
        overwrites.push(dsync_overwrite_floor(dir, n)?);
        embedded_single.push(single_writer(embedded, n, round).await?);
        etcd_single.push(single_writer(etcd, n, round).await?);
    }
    let mut store = json!({});
    let mut by_concurrency = Vec::new();
    let (mut embedded_writes, mut etcd_writes) = (Vec::new(), Vec::new());
    for &writers in &args.store_writers {
        let (mut on_embedded, mut on_etcd) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            on_embedded.push(concurrent_writes(embedded, args.objects, writers, round).await?);
            on_etcd.push(concurrent_writes(etcd, args.objects, writers, round).await?);
        }
        by_concurrency.push(json!({
            "writers": writers,
            "embedded_over_etcd": round3(per_second(&best(&on_embedded)) / per_second(&best(&on_etcd)).max(1.0)),
            "embedded_over_etcd_paired_median": paired_median(&on_embedded, &on_etcd),
        }));
        let with_runs = |runs: Vec<Value>| {
            let mut best = best(&runs);
            best["runs"] = Value::Array(runs);
            best
        };
        embedded_writes.push(with_runs(on_embedded));
        etcd_writes.push(with_runs(on_etcd));
    }
    let most = args.store_writers.iter().copied().max().unwrap_or(64);
    for (name, store_, writes, single) in [
        ("embedded", embedded, embedded_writes, &embedded_single),
        ("etcd", etcd, etcd_writes, &etcd_single),
    ] {
        let peak = writes.iter().map(per_second).fold(0.0, f64::max);
        store[name] = json!({
            "writes": writes,
            "peak_writes_per_second": peak,
            "watch": watch(store_, args.objects, most).await?,
            "single_writer": runs(single.clone()),
        });
    }
    let ratio = |a: &Value, b: &Value| {
        let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
        if b > 0.0 { round3(a / b) } else { 0.0 }
    };
    let ratios = json!({
        "single_writer_dsync_floor_over_embedded": paired_median(&appends, &embedded_single),
        "single_writer_dsync_floor_over_embedded_best": ratio(&best(&appends)["per_second"], &best(&embedded_single)["per_second"]),
        "single_writer_overwrite_floor_over_embedded": paired_median(&overwrites, &embedded_single),
        "single_writer_dsync_floor_over_etcd": paired_median(&appends, &etcd_single),
        "single_writer_embedded_over_etcd": paired_median(&embedded_single, &etcd_single),
        "store_peak_writes_embedded_over_etcd": ratio(&store["embedded"]["peak_writes_per_second"], &store["etcd"]["peak_writes_per_second"]),
        "store_watch_embedded_over_etcd": ratio(&store["embedded"]["watch"]["per_second"], &store["etcd"]["watch"]["per_second"]),
        "store_writes_by_concurrency": by_concurrency,
    });
    store["dsync_floor"] =
        json!({"value_bytes": crate::store::VALUE_BYTES, "best": best(&appends), "runs": appends});
    store["dsync_overwrite_floor"] = json!({"value_bytes": crate::store::VALUE_BYTES, "best": best(&overwrites), "runs": overwrites});
    Ok((store, ratios))
}

/// Runs the whole benchmark and prints (and optionally writes) the results as JSON.
pub async fn api(args: ApiBenchArgs) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut results = json!({"objects": args.objects, "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)});

    // Raw stores, both open at once: the floors and the backends take turns in each round.
    let embedded: Arc<dyn krust_store::Store> =
        Arc::new(krust_store::embedded::EmbeddedStore::open(&tmp.path().join("raw-embedded"))?);
    let etcd = Etcd::start(&args.etcd, &tmp.path().join("raw-etcd")).await?;
    let etcd_store: Arc<dyn krust_store::Store> =
        Arc::new(krust_store::etcd::EtcdStore::connect(std::slice::from_ref(&etcd.url)).await?);
    let (store, store_ratios) =
        raw_stores(&args, &embedded, &etcd_store, &tmp.path().join("floor")).await?;
    results["store"] = store;
    drop((embedded, etcd_store, etcd));

    // API server on each backend.
    if !args.store_only {
        let client = start_server(&tmp.path().join("api-embedded"), Vec::new()).await?;
        results["api"]["embedded"] = api_suite(&client, &args).await?;
        let etcd = Etcd::start(&args.etcd, &tmp.path().join("api-etcd")).await?;
        let client =
            start_server(&tmp.path().join("api-etcd-server"), vec![etcd.url.clone()]).await?;
        results["api"]["etcd"] = api_suite(&client, &args).await?;
        drop(etcd);
    }

    let ratio = |a: &Value, b: &Value| {
        let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
        if b > 0.0 { round3(a / b) } else { 0.0 }
    };
    let mut ratios = store_ratios;
    ratios["api_create_embedded_over_etcd"] = json!(ratio(
        &results["api"]["embedded"]["create"]["per_second"],
        &results["api"]["etcd"]["create"]["per_second"]
    ));
    ratios["api_get_embedded_over_etcd"] = json!(ratio(
        &results["api"]["embedded"]["get"]["per_second"],
        &results["api"]["etcd"]["get"]["per_second"]
    ));
    results["ratios"] = ratios;
    crate::stats::report(&results, args.output.as_deref())?;
    Ok(())
}
