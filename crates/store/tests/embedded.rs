//! The conformance suite and embedded-only checks (reopen, slow watchers, chunked compaction)
//! against [`EmbeddedStore`].

use std::sync::Arc;

use futures::StreamExt;
use krust_store::embedded::{EmbeddedOptions, EmbeddedStore};
use krust_store::{EventKind, Store, StoreError};

mod conformance;

use conformance::{Fixture, next_change};

fn store_in(dir: &tempfile::TempDir, options: EmbeddedOptions) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open_with(dir.path(), options).expect("open store"))
}

fn fixture_with(options: EmbeddedOptions) -> Fixture {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = store_in(&dir, options);
    Fixture { store, prefix: "/conformance/".into(), guard: Box::new(dir) }
}

async fn fixture() -> Fixture {
    fixture_with(EmbeddedOptions::default())
}

conformance_tests!(fixture().await);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_preserves_everything() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (a1, a2, b1, gone, compacted, last) = {
        let s = EmbeddedStore::open(dir.path()).expect("open");
        let a1 = s.create("/a", b"a1".to_vec()).await.expect("create");
        let b1 = s.create("/b", b"b1".to_vec()).await.expect("create");
        let a2 = s.update("/a", b"a2".to_vec(), a1.mod_revision).await.expect("update");
        s.compact(b1.mod_revision).await.expect("compact");
        let gone = s.delete("/b", None).await.expect("delete");
        let last = s.current_revision().await.expect("revision");
        let compacted = b1.mod_revision;
        (a1, a2, b1, gone, compacted, last)
    };
    let s = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(s.current_revision().await.expect("revision"), last);
    assert_eq!(s.get("/a").await.expect("get"), Some(a2.clone()));
    assert_eq!(s.get("/b").await.expect("get"), None);
    let old = s.list("/", None, 0, Some(compacted)).await.expect("list");
    assert_eq!(old.items, vec![a1.clone(), b1.clone()]);
    assert!(matches!(
        s.list("/", None, 0, Some(compacted - 1)).await,
        Err(StoreError::Compacted { .. })
    ));
    let mut w = s.watch("/", compacted).await.expect("watch");
    let event = next_change(&mut w).await;
    assert_eq!(
        (event.kind, event.kv.clone(), event.prev.clone()),
        (EventKind::Update, a2.clone(), Some(a1.clone()))
    );
    let event = next_change(&mut w).await;
    assert_eq!(
        (event.kind, event.kv.clone(), event.prev.clone()),
        (EventKind::Delete, gone, Some(b1))
    );
    // Revisions go on from where they were.
    let c = s.create("/c", b"c".to_vec()).await.expect("create");
    assert_eq!(c.mod_revision, last + 1);
    let event = next_change(&mut w).await;
    assert_eq!((event.kind, event.kv), (EventKind::Create, c));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_catches_up_from_the_log() {
    let mut options = EmbeddedOptions::default();
    options.watch_buffer = 2;
    slow_watcher_catches_up(options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_catches_up_when_the_hub_is_full_of_bytes() {
    let mut options = EmbeddedOptions::default();
    options.watch_buffer_bytes = 1024;
    slow_watcher_catches_up(options).await;
}

async fn slow_watcher_catches_up(options: EmbeddedOptions) {
    let fx = fixture_with(options);
    let s = &fx.store;
    let r0 = s.current_revision().await.expect("revision");
    let mut w = s.watch("/slow/", r0).await.expect("watch");
    // Far more writes than the hub and the watcher's channel hold, none consumed meanwhile:
    // the writers must not wait for the watcher.
    let mut tasks = Vec::new();
    for task in 0..50 {
        let store = Arc::clone(s);
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                let key = format!("/slow/{task}/{i}");
                store.create(&key, b"x".to_vec()).await.expect("create");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    let last = s.current_revision().await.expect("revision");
    assert_eq!(last, r0 + 2500);
    let mut expected = r0 + 1;
    while expected <= last {
        let event = next_change(&mut w).await;
        assert_eq!((event.kind, event.revision), (EventKind::Create, expected));
        expected += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_in_chunks() {
    let mut options = EmbeddedOptions::default();
    options.compact_chunk = 3;
    let fx = fixture_with(options);
    let s = &fx.store;
    let mut kv = s.create("/k", b"0".to_vec()).await.expect("create");
    let other = s.create("/other", b"x".to_vec()).await.expect("create");
    for i in 1..20 {
        kv = s.update("/k", i.to_string().into_bytes(), kv.mod_revision).await.expect("update");
    }
    let middle = kv.clone();
    for i in 20..30 {
        kv = s.update("/k", i.to_string().into_bytes(), kv.mod_revision).await.expect("update");
    }
    s.compact(middle.mod_revision).await.expect("compact");
    let at = s.list("/", None, 0, Some(middle.mod_revision)).await.expect("list");
    assert_eq!(at.items, vec![middle.clone(), other.clone()]);
    assert!(matches!(
        s.list("/", None, 0, Some(middle.mod_revision - 1)).await,
        Err(StoreError::Compacted { compacted, .. }) if compacted == middle.mod_revision
    ));
    // Compacting to an older revision is a no-op; to a future one an error.
    s.compact(2).await.expect("compact");
    let current = s.current_revision().await.expect("revision");
    assert!(matches!(s.compact(current + 1).await, Err(StoreError::FutureRevision { .. })));
    s.compact(current).await.expect("compact");
    let now = s.list("/", None, 0, Some(current)).await.expect("list");
    assert_eq!(now.items, vec![kv, other]);
    let mut w = s.watch("/", current).await.expect("watch");
    let next = s.delete("/other", None).await.expect("delete");
    let event = w.next().await.expect("open").expect("event");
    assert_eq!((event.kind, event.revision), (EventKind::Delete, next.mod_revision));
}

/// Set in the child process of [`acknowledged_writes_survive_kill`]: the data directory.
const CHILD_DIR: &str = "KRUST_STORE_KILL_TEST_DIR";

/// A writer process is killed with SIGKILL while writing; every write it saw acknowledged must
/// be there after reopening.
#[test]
fn acknowledged_writes_survive_kill() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    if let Ok(dir) = std::env::var(CHILD_DIR) {
        return write_until_killed(std::path::Path::new(&dir));
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "acknowledged_writes_survive_kill", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn writer process");
    let stdout = child.stdout.take().expect("child stdout");
    let mut acknowledged = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        let Some(ack) = line.strip_prefix("ack ") else {
            continue;
        };
        let (key, revision) = ack.split_once(' ').expect("ack line");
        acknowledged.push((key.to_owned(), revision.parse::<i64>().expect("revision")));
        if acknowledged.len() == 300 {
            break;
        }
    }
    child.kill().expect("kill -9 the writer"); // SIGKILL on Unix
    child.wait().expect("reap the writer");
    assert_eq!(acknowledged.len(), 300, "the writer acknowledged writes before dying");

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let s = EmbeddedStore::open(dir.path()).expect("reopen after kill");
        let current = s.current_revision().await.expect("revision");
        for (key, revision) in &acknowledged {
            let kv = s.get(key).await.expect("get").expect("acknowledged key present");
            assert_eq!(kv.mod_revision, *revision, "{key}");
            assert!(*revision <= current);
        }
        // The reopened store takes writes again.
        let next = s.create("/after-kill", b"x".to_vec()).await.expect("create");
        assert_eq!(next.mod_revision, current + 1);
    });
}

/// The child side of [`acknowledged_writes_survive_kill`]: writes forever, printing each ack.
fn write_until_killed(dir: &std::path::Path) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let s: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir).expect("open"));
        let mut tasks = Vec::new();
        for task in 0..8 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = format!("/kill/{task}/{i}");
                    let kv = s.create(&key, vec![7; 512]).await.expect("create");
                    println!("ack {key} {}", kv.mod_revision);
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer task");
        }
    });
}
