//! `krust bench exec`: a command run in a pod through kube-rs's `AttachedProcess` (the
//! WebSocket channel protocol, as client libraries speak it), again and again: each run's
//! time, and the last run's output and exit status. The reference is `runc exec` of the same
//! container, which `bench/stream.py` runs beside it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// Arguments of `krust bench exec`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecBenchArgs {
    /// The cluster's kubeconfig.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The pod's namespace.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The pod.
    #[arg(long)]
    pub pod: String,
    /// The container (the pod's only or default one when absent).
    #[arg(long)]
    pub container: Option<String>,
    /// How many times to run the command.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
    /// The command.
    #[arg(trailing_var_arg = true, required = true)]
    pub command: Vec<String>,
}

/// Runs the benchmark and prints its results as JSON.
pub async fn exec(args: ExecBenchArgs) -> anyhow::Result<()> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("cannot read {}", args.kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .context("cannot use the kubeconfig")?;
    let client = kube::Client::try_from(config).context("cannot build a client")?;
    let pods: Api<Pod> = Api::namespaced(client, &args.namespace);
    let mut params = AttachParams::default().stdout(true).stderr(true).stdin(false);
    if let Some(container) = &args.container {
        params = params.container(container);
    }
    let mut times = Vec::with_capacity(args.runs);
    let (mut stdout, mut stderr, mut status) = (String::new(), String::new(), None);
    for _ in 0..args.runs.max(1) {
        let started = Instant::now();
        let mut process = pods
            .exec(&args.pod, args.command.clone(), &params)
            .await
            .with_context(|| format!("cannot exec in pod {}", args.pod))?;
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(mut reader) = process.stdout() {
            reader.read_to_string(&mut out).await.context("cannot read stdout")?;
        }
        if let Some(mut reader) = process.stderr() {
            reader.read_to_string(&mut err).await.context("cannot read stderr")?;
        }
        let ended = match process.take_status() {
            Some(status) => status.await,
            None => None,
        };
        process.join().await.context("the exec session failed")?;
        times.push(started.elapsed().as_secs_f64());
        (stdout, stderr, status) = (out, err, ended);
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let at =
        |p: f64| sorted[((p * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)];
    let results = json!({
        "runs": times.len(),
        "p50_ms": (at(0.5) * 1e6).round() / 1e3,
        "p99_ms": (at(0.99) * 1e6).round() / 1e3,
        "stdout": stdout,
        "stderr": stderr,
        "status": status.map(|s| serde_json::to_value(s).unwrap_or_default()),
    });
    crate::stats::report(&results, None)
}
