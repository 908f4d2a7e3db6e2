//! `krust`: one binary for the whole cluster. This file only wires subcommands to crates.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// A Kubernetes-compatible container orchestrator in one binary.
#[derive(Debug, Parser)]
#[command(name = "krust", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the control plane: the API server and its store.
    Server(ServerArgs),
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
    /// The HTTPS port.
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// etcd endpoints (comma-separated URLs); the embedded store when absent.
    #[arg(long, value_delimiter = ',')]
    datastore_endpoint: Vec<String>,
    /// How often history older than one interval is compacted (for example `5m`, `30s`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    etcd_compaction_interval: Duration,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// The API server (create, get, list, watch fan-out) and the raw store, on the embedded
    /// store and on etcd.
    Api(krust_bench::ApiBenchArgs),
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KRUST_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => server(args).await,
            Command::Bench { which: BenchCommand::Api(args) } => krust_bench::api(args).await,
        }
    })
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let config = krust_apiserver::Config {
        data_dir: args.data_dir,
        bind_address: args.bind_address,
        port: args.port,
        datastore_endpoints: args.datastore_endpoint,
        compaction_interval: args.etcd_compaction_interval,
    };
    let running = krust_apiserver::start(config).await.context("cannot start the API server")?;
    tracing::info!(address = %running.address, kubeconfig = %running.kubeconfig.display(), "API server ready");
    wait_for_signal().await;
    tracing::info!("shutting down");
    Ok(())
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
