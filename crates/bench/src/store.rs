//! The raw store benchmark: writes/s and watch events/s of one backend.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use krust_store::Store;
use serde_json::{Value, json};

use crate::stats::Samples;

/// The size of every value the store benchmark writes.
pub const VALUE_BYTES: usize = 512;

/// `O_DSYNC` as Linux numbers it (the standard library has no constant for it).
const O_DSYNC: i32 = 0o10000;

/// The floor of any durable store: `n` appends of [`VALUE_BYTES`] to a file in `dir` opened
/// with `O_DSYNC`, one after the other (each returns once on disk), measured like a writer.
pub fn dsync_floor(dir: &Path, n: usize) -> anyhow::Result<Value> {
    dsync_loop(dir, n, false)
}

/// A lower floor: the same `O_DSYNC` writes over a file whose blocks were written (zeros) and
/// synced first, so that no write changes the file's size (as a log allocated ahead does).
pub fn dsync_overwrite_floor(dir: &Path, n: usize) -> anyhow::Result<Value> {
    dsync_loop(dir, n, true)
}

fn dsync_loop(dir: &Path, n: usize, allocated: bool) -> anyhow::Result<Value> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("dsync-floor");
    if allocated {
        let zeros = std::fs::File::create(&path)?;
        (&zeros).write_all(&vec![0; n * VALUE_BYTES])?;
        zeros.sync_all()?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(!allocated)
        .write(true)
        .custom_flags(O_DSYNC)
        .open(&path)?;
    let value = vec![b'x'; VALUE_BYTES];
    let mut samples = Samples::default();
    let started = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        file.write_all(&value)?;
        samples.push(t.elapsed());
    }
    let summary = samples.summary(started.elapsed());
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(summary)
}

/// Creates `n` keys from `writers` tasks and measures writes/s and latency.
async fn writes(
    store: &Arc<dyn Store>,
    prefix: &str,
    n: usize,
    writers: usize,
) -> anyhow::Result<Value> {
    let value = vec![b'x'; VALUE_BYTES];
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, value, prefix) = (Arc::clone(store), value.clone(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            for i in (w..n).step_by(writers) {
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
async fn watch_events(
    store: &Arc<dyn Store>,
    prefix: &str,
    n: usize,
    writers: usize,
) -> anyhow::Result<Value> {
    let start = store.current_revision().await?;
    let mut events = store.watch(prefix, start).await?;
    let started = Instant::now();
    let writer = {
        let (store, prefix) = (Arc::clone(store), prefix.to_string());
        tokio::spawn(async move { writes(&store, &prefix, n, writers).await })
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

/// `n` writes from one writer (run `round`, on a prefix of its own).
pub async fn single_writer(
    store: &Arc<dyn Store>,
    n: usize,
    round: usize,
) -> anyhow::Result<Value> {
    writes(store, &format!("/bench/single-{round}/"), n, 1).await
}

/// `n` creates from `writers` concurrent writers (run `round`, on a prefix of its own).
pub async fn concurrent_writes(
    store: &Arc<dyn Store>,
    n: usize,
    writers: usize,
    round: usize,
) -> anyhow::Result<Value> {
    let mut run = writes(store, &format!("/bench/writes-{writers}-{round}/"), n, writers).await?;
    run["writers"] = json!(writers);
    Ok(run)
}

/// Watch events/s at one watcher of the prefix while `writers` create `n` keys.
pub async fn watch(store: &Arc<dyn Store>, n: usize, writers: usize) -> anyhow::Result<Value> {
    watch_events(store, "/bench/watch/", n, writers).await
}
