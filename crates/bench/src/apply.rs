//! `krust bench apply`: server-side apply of an unchanged Deployment against a plain update
//! (PUT) of the same object, one client in a loop, on one `krust server` child process.
//! Runs alternate (updates, applies, updates, applies) and the better run of each counts.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};

use crate::process::ServerCommand;
use crate::stats::round3;

/// Arguments of `krust bench apply`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplyBenchArgs {
    /// Requests per run.
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// The krust binary to run as the server (default: this one).
    #[arg(long)]
    pub krust: Option<PathBuf>,
    /// Also write the results to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

const NS: &str = "apply-bench";

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                    {"name": "sidecar", "image": "busybox", "args": ["sleep", "infinity"]},
                ]},
            },
        },
    })
}

fn per_second(n: usize, started: Instant) -> f64 {
    round3(n as f64 / started.elapsed().as_secs_f64())
}

/// Runs the benchmark.
pub async fn apply(args: ApplyBenchArgs) -> anyhow::Result<()> {
    if args.requests == 0 {
        bail!("--requests must be positive");
    }
    let krust = match &args.krust {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find the krust binary")?,
    };
    let tmp = tempfile::tempdir()?;
    let server = ServerCommand::new(&krust, &tmp.path().join("server"), None)?.start().await?;
    let client = server.client.clone();
    client.create_namespace(NS).await?;
    let path = format!("/apis/apps/v1/namespaces/{NS}/deployments/web");
    let config = Bytes::from(serde_json::to_vec(&deployment())?);
    let apply_path = format!("{path}?fieldManager=bench");
    client.send(Method::PATCH, &apply_path, "application/apply-patch+yaml", config.clone()).await?;
    // The object as an updater holds it: read once, sent back unchanged (no resourceVersion,
    // so every update is unconditional).
    let mut current: Value =
        serde_json::from_slice(&client.request(Method::GET, &path, None).await?)?;
    if let Some(meta) = current.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.shift_remove("resourceVersion");
    }
    let update_body = Bytes::from(serde_json::to_vec(&current)?);
    let (mut updates, mut applies) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let started = Instant::now();
        for _ in 0..args.requests {
            client.send(Method::PUT, &path, "application/json", update_body.clone()).await?;
        }
        updates.push(per_second(args.requests, started));
        let started = Instant::now();
        for _ in 0..args.requests {
            client
                .send(Method::PATCH, &apply_path, "application/apply-patch+yaml", config.clone())
                .await?;
        }
        applies.push(per_second(args.requests, started));
    }
    server.terminate().await?;
    let best = |runs: &[f64]| runs.iter().copied().fold(0.0, f64::max);
    let ratio = if best(&updates) > 0.0 { round3(best(&applies) / best(&updates)) } else { 0.0 };
    let results = json!({
        "requests": args.requests,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "machine_cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "server": "krust server (embedded store) as a child process of the benchmark",
        "updates_per_second": updates,
        "applies_per_second": applies,
        "ratio": ratio,
        "goals": [
            {"figure": "applies/s of an unchanged Deployment over plain updates/s", "value": ratio, "goal": ">= 0.5", "met": ratio >= 0.5},
        ],
    });
    crate::stats::report(&results, args.output.as_deref())?;
    Ok(())
}
