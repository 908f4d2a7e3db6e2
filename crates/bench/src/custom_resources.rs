//! `krust bench custom-resources`: creates and lists of a custom resource against ConfigMaps
//! of the same size, in one run on one `krust server` child process.
//!
//! The custom resource has a structural schema with a few typed fields, a default, a
//! pattern and a CEL rule (so validation, pruning and defaulting are part of what is
//! measured), and data sized so that a stored widget is as large as a stored ConfigMap (a
//! probe of each is created and measured first). Runs alternate (ConfigMaps, widgets,
//! ConfigMaps, widgets) and the better run of each counts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::Method;
use serde_json::{Value, json};

use crate::api::{closed_loop, configmap};
use crate::client::ApiClient;
use crate::process::ServerCommand;
use crate::stats::round3;

/// Arguments of `krust bench custom-resources`.
#[derive(Debug, Clone, clap::Args)]
pub struct CustomResourceBenchArgs {
    /// Objects created (and then listed) per run.
    #[arg(long, default_value_t = 5000)]
    pub objects: usize,
    /// Concurrent clients for creates.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Timed lists of each kind (the median is reported).
    #[arg(long, default_value_t = 30)]
    pub list_repeats: usize,
    /// The krust binary to run as the server (default: this one).
    #[arg(long)]
    pub krust: Option<PathBuf>,
    /// Also write the results to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

const GROUP: &str = "bench.krust.dev";

fn definition() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{GROUP}")},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "data": {"type": "object", "additionalProperties": {"type": "string"}},
                        "spec": {
                            "type": "object",
                            "properties": {
                                "size": {"type": "integer", "minimum": 0, "default": 1},
                                "color": {"type": "string", "enum": ["red", "blue"]},
                                "name": {"type": "string", "pattern": "^[a-z0-9-]+$"},
                            },
                            "x-kubernetes-validations": [
                                {"rule": "self.size < 1000", "message": "size must be below 1000"}
                            ],
                        },
                    },
                }},
            }],
        },
    })
}

/// Widget `i`: the ConfigMap's label, `data` bytes of data, and a small spec.
fn widget(i: usize, data: usize) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"),
        "kind": "Widget",
        "metadata": {"name": format!("w-{i:06}"), "labels": {"bench": "yes"}},
        "data": {"key": "x".repeat(data)},
        "spec": {"color": "blue", "name": format!("w-{i}")},
    })
}

/// The data a widget carries so that it is stored as large as a ConfigMap: a probe of each,
/// with the ConfigMap's 200 bytes, is created and measured.
async fn widget_data(client: &ApiClient) -> anyhow::Result<usize> {
    const PROBE: usize = 200;
    client.create_namespace("probe").await?;
    let cm = client
        .request(Method::POST, "/api/v1/namespaces/probe/configmaps", Some(&configmap(0)))
        .await?;
    let path = format!("/apis/{GROUP}/v1/namespaces/probe/widgets");
    let w = client.request(Method::POST, &path, Some(&widget(0, PROBE))).await?;
    Ok((PROBE + cm.len()).saturating_sub(w.len()))
}

/// Creates the definition and waits until its resource is served.
async fn install(client: &ApiClient) -> anyhow::Result<()> {
    client
        .request(
            Method::POST,
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            Some(&definition()),
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let path = format!("/apis/{GROUP}/v1/namespaces/default/widgets");
    while client.request(Method::GET, &path, None).await.is_err() {
        if Instant::now() > deadline {
            bail!("the custom resource is not served 30 s after its definition");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The median times of `repeats` lists of each of `paths`, taken in turn (so that neither
/// gains from going first).
async fn list_times(
    client: &ApiClient,
    paths: [&str; 2],
    repeats: usize,
) -> anyhow::Result<[f64; 2]> {
    let mut times = [Vec::new(), Vec::new()];
    // One untimed list of each first: connections and caches warm.
    for path in paths {
        client.request(Method::GET, path, None).await?;
    }
    for _ in 0..repeats.max(1) {
        for (i, path) in paths.iter().enumerate() {
            let t = Instant::now();
            let body = client.request(Method::GET, path, None).await?;
            times[i].push(t.elapsed().as_secs_f64());
            drop(body);
        }
    }
    Ok(times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    }))
}

fn rate(run: &Value) -> f64 {
    run["per_second"].as_f64().unwrap_or(0.0)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { round3(a / b) } else { 0.0 }
}

/// Runs the benchmark.
pub async fn custom_resources(args: CustomResourceBenchArgs) -> anyhow::Result<()> {
    if args.objects == 0 || args.concurrency == 0 {
        bail!("--objects and --concurrency must be positive");
    }
    let krust = match &args.krust {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the krust binary")?,
    };
    let tmp = tempfile::tempdir()?;
    let server = ServerCommand::new(&krust, &tmp.path().join("server"), None)?.start().await?;
    let client = server.client.clone();
    install(&client).await?;
    let data = widget_data(&client).await?;
    let n = args.objects;
    let mut configmaps = Vec::new();
    let mut widgets = Vec::new();
    for round in 0..2 {
        for (ns, kind) in [(format!("cm-{round}"), "configmaps"), (format!("w-{round}"), "widgets")]
        {
            client.create_namespace(&ns).await?;
            let run = if kind == "configmaps" {
                let path = format!("/api/v1/namespaces/{ns}/configmaps");
                closed_loop(&client, n, args.concurrency, move |i| {
                    (Method::POST, path.clone(), Some(configmap(i)))
                })
                .await?
            } else {
                let path = format!("/apis/{GROUP}/v1/namespaces/{ns}/widgets");
                closed_loop(&client, n, args.concurrency, move |i| {
                    (Method::POST, path.clone(), Some(widget(i, data)))
                })
                .await?
            };
            if kind == "configmaps" { configmaps.push(run) } else { widgets.push(run) }
        }
    }
    let best = |runs: &[Value]| runs.iter().map(rate).fold(0.0, f64::max);
    let (cm_rate, w_rate) = (best(&configmaps), best(&widgets));
    let widgets_path = format!("/apis/{GROUP}/v1/namespaces/w-0/widgets");
    let [cm_list, w_list] = list_times(
        &client,
        ["/api/v1/namespaces/cm-0/configmaps", &widgets_path],
        args.list_repeats,
    )
    .await?;
    let sample = client
        .request(Method::GET, &format!("/apis/{GROUP}/v1/namespaces/w-0/widgets/w-000000"), None)
        .await?;
    let cm_sample =
        client.request(Method::GET, "/api/v1/namespaces/cm-0/configmaps/cm-000000", None).await?;
    server.terminate().await?;
    let create_ratio = ratio(w_rate, cm_rate);
    let list_ratio = ratio(cm_list, w_list);
    let results = json!({
        "objects": n,
        "concurrency": args.concurrency,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "server": "krust server (embedded store) as a child process of the benchmark",
        "object_bytes": {"configmap": cm_sample.len(), "widget": sample.len()},
        "creates": {
            "configmap_runs": configmaps,
            "widget_runs": widgets,
            "configmaps_per_second": round3(cm_rate),
            "widgets_per_second": round3(w_rate),
            "ratio": create_ratio,
        },
        "list": {
            "configmaps_seconds": round3(cm_list),
            "widgets_seconds": round3(w_list),
            "ratio": list_ratio,
        },
        "goals": [
            {"figure": "widget creates/s over ConfigMap creates/s", "value": create_ratio, "goal": ">= 0.8", "met": create_ratio >= 0.8},
            {"figure": "widget list speed over ConfigMap list speed", "value": list_ratio, "goal": ">= 0.8", "met": list_ratio >= 0.8},
        ],
    });
    crate::stats::report(&results, args.output.as_deref())?;
    Ok(())
}
