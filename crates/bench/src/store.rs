//! The raw store benchmark: writes/s and watch events/s of one backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use krust_store::Store;
use serde_json::{Value, json};

use crate::stats::Samples;

/// Concurrent writers (what a busy API server sends the store).
const WRITERS: usize = 64;

/// Creates `n` keys from [`WRITERS`] tasks and measures writes/s and latency.
async fn writes(store: &Arc<dyn Store>, prefix: &str, n: usize) -> anyhow::Result<Value> {
    let value = vec![b'x'; 512];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (store, value, prefix) = (Arc::clone(store), value.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            for i in (w..n).step_by(WRITERS) {
                let t = Instant::now();
                store.create(&format!("{prefix}{i:08}"), value.clone()).await?;
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

/// Writes `n` keys while one watcher follows the prefix; measures events/s at the watcher.
async fn watch_events(store: &Arc<dyn Store>, prefix: &str, n: usize) -> anyhow::Result<Value> {
    let start = store.current_revision().await?;
    let mut events = store.watch(prefix, start).await?;
    let started = Instant::now();
    let writer = {
        let (store, prefix) = (Arc::clone(store), prefix.to_string());
        tokio::spawn(async move { writes(&store, &prefix, n).await })
    };
    let mut seen = 0;
    while seen < n {
        match tokio::time::timeout(Duration::from_secs(60), events.next()).await {
            Ok(Some(Ok(event))) if event.kind != krust_store::EventKind::Progress => seen += 1,
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) | Err(_) => anyhow::bail!("watch ended after {seen} of {n} events"),
        }
    }
    let elapsed = started.elapsed();
    writer.await??;
    Ok(json!({"events": n, "per_second": (n as f64 / elapsed.as_secs_f64()).round()}))
}

/// Runs the store benchmark on one backend.
pub async fn run(store: Arc<dyn Store>, n: usize) -> anyhow::Result<Value> {
    Ok(json!({
        "writes": writes(&store, "/bench/writes/", n).await?,
        "watch": watch_events(&store, "/bench/watch/", n).await?,
    }))
}
