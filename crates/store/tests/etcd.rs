//! The conformance suite and etcd-only checks against [`EtcdStore`] on a real etcd
//! (`/usr/bin/etcd`, or `$ETCD_BIN`), one fresh server per test: etcd's revision and compaction
//! are global, so tests sharing a server would see each other's writes and compactions.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use krust_store::etcd::EtcdStore;
use krust_store::{EventKind, Store, StoreError};
use tempfile::TempDir;

mod conformance;

use conformance::{Fixture, next_change, next_event};

/// How often watches ask etcd for progress in these tests (the default is a second).
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// A fresh etcd and a store on it; the etcd lives as long as the fixture.
async fn fixture() -> Fixture {
    let etcd = Etcd::start().await;
    let store = etcd.connect().await.with_progress_interval(PROGRESS_INTERVAL);
    Fixture { store: Arc::new(store), prefix: "/conformance/".into(), guard: Box::new(etcd) }
}

conformance_tests!(fixture().await);

/// A running etcd, killed on drop.
struct Etcd {
    child: Child,
    endpoint: String,
    dir: TempDir,
}

impl Etcd {
    /// Starts an etcd on free loopback ports and waits until it serves.
    async fn start() -> Etcd {
        let binary = etcd_binary();
        let mut last_log = String::new();
        // Free ports are found by binding port 0 and letting go: another process may take one
        // before etcd binds it, so try a few times.
        for _ in 0..5 {
            let mut etcd = Etcd::spawn(&binary);
            match etcd.wait_ready().await {
                Ok(()) => return etcd,
                Err(log) => last_log = log,
            }
        }
        panic!("etcd at {} did not start; its last log:\n{last_log}", binary.display());
    }

    fn spawn(binary: &PathBuf) -> Etcd {
        // tmpfs when there is one: etcd fsyncs every write.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }
            .expect("create a data dir for etcd");
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let child = Command::new(binary)
            .arg("--name=test")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=test={peer_url}"))
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("run {}: {e}", binary.display()));
        Etcd { child, endpoint, dir }
    }

    /// Waits until etcd answers; its log when it exits or does not answer in time.
    async fn wait_ready(&mut self) -> std::result::Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("etcd exited with {status}\n{}", self.log()));
            }
            let endpoints = std::slice::from_ref(&self.endpoint);
            let connect =
                tokio::time::timeout(Duration::from_secs(2), EtcdStore::connect(endpoints));
            if let Ok(Ok(_)) = connect.await {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("etcd did not answer within 30 s\n{}", self.log()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }

    async fn connect(&self) -> EtcdStore {
        EtcdStore::connect(std::slice::from_ref(&self.endpoint))
            .await
            .unwrap_or_else(|e| panic!("connect to etcd at {}: {e}", self.endpoint))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn etcd_binary() -> PathBuf {
    let binary = std::env::var_os("ETCD_BIN").map_or_else(|| "/usr/bin/etcd".into(), PathBuf::from);
    assert!(
        binary.is_file(),
        "the etcd store tests need an etcd v3 server binary at {} (Debian/Ubuntu: apt-get install \
         etcd-server; or set ETCD_BIN)",
        binary.display()
    );
    binary
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    listener.local_addr().unwrap().port()
}

// ---- etcd-specific checks, beyond the conformance suite. ----

#[tokio::test]
async fn connect_fails_without_server() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let error = EtcdStore::connect(&[endpoint]).await.unwrap_err();
    assert!(matches!(error, StoreError::Backend { .. }), "{error:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_list_edges() {
    let fx = fixture().await;
    let s = &fx.store;
    for key in ["/p/a", "/p/b", "/p\u{ff}", "/q"] {
        s.create(key, key.as_bytes().to_vec()).await.unwrap();
    }
    let at = s.current_revision().await.unwrap();
    // The empty prefix is every key.
    let everything = s.list("", None, 0, None).await.unwrap();
    assert_eq!(everything.items.len(), 4);
    let page = s.list("", Some("/p/b"), 1, None).await.unwrap();
    assert_eq!(
        (page.items[0].key.as_str(), page.more, page.remaining),
        ("/p\u{ff}", true, Some(1))
    );
    // An empty range still checks and reports the revision.
    s.create("/r", Vec::new()).await.unwrap();
    let past = s.list("/p/", Some("/p/z"), 0, Some(at)).await.unwrap();
    assert_eq!((past.items.len(), past.more, past.revision), (0, false, at));
    let now = s.list("/p/", Some("/p/z"), 0, None).await.unwrap();
    assert_eq!(now.revision, at + 1);
    assert!(matches!(
        s.list("/p/", Some("/p/z"), 0, Some(at + 5)).await,
        Err(StoreError::FutureRevision { requested, current }) if requested == at + 5 && current == at + 1
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_compaction_edges() {
    let fx = fixture().await;
    let s = &fx.store;
    let first = s.create("/c/a", b"1".to_vec()).await.unwrap().mod_revision;
    let second = s.update("/c/a", b"2".to_vec(), first).await.unwrap().mod_revision;
    let third = s.update("/c/a", b"3".to_vec(), second).await.unwrap().mod_revision;
    s.compact(second).await.unwrap();
    // Compacting again, or below, is a no-op; compacting the future fails.
    s.compact(second).await.unwrap();
    s.compact(first).await.unwrap();
    assert!(matches!(s.compact(third + 5).await, Err(StoreError::FutureRevision { .. })));
    // The compacted revision comes from etcd, exactly.
    assert!(matches!(
        s.list("/c/", None, 0, Some(first)).await,
        Err(StoreError::Compacted { requested, compacted }) if requested == first && compacted == second
    ));
    // A watch needs the state at `after`: etcd alone would replay `second` without its
    // previous value.
    for after in [0, first - 1, first] {
        match s.watch("/c/", after).await {
            Err(StoreError::Compacted { requested, compacted }) => {
                assert_eq!((requested, compacted), (after, second));
            }
            other => panic!("expected Compacted, got {:?}", other.map(|_| "a stream")),
        }
    }
    let mut w = s.watch("/c/", second).await.unwrap();
    let event = next_change(&mut w).await;
    assert_eq!((event.kind, event.revision), (EventKind::Update, third));
    assert_eq!(event.prev.unwrap().value, b"2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_progress_interleaves_in_order() {
    let fx = fixture().await;
    let s = &fx.store;
    let r0 = s.current_revision().await.unwrap();
    let mut w = s.watch("/w/", r0).await.unwrap();
    let mut seen = r0;
    for i in 0..10 {
        let inside = s.create(&format!("/w/{i}"), Vec::new()).await.unwrap();
        let outside = s.create(&format!("/x/{i}"), Vec::new()).await.unwrap();
        let mut changed = false;
        // The change, then progress up to the write outside the prefix.
        while !changed || seen < outside.mod_revision {
            let event = next_event(&mut w).await;
            assert!(event.revision > seen, "{event:?} after {seen}");
            seen = event.revision;
            if event.kind != EventKind::Progress {
                assert!(!changed, "{event:?}");
                assert_eq!(event.kv, inside);
                changed = true;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_watch_dropped() {
    let fx = fixture().await;
    let s = &fx.store;
    let watches: Vec<_> = futures::future::join_all((0..20).map(|_| s.watch("/w/", 0))).await;
    drop(watches);
    let kv = s.create("/w/a", Vec::new()).await.unwrap();
    let mut w = s.watch("/w/", 0).await.unwrap();
    assert_eq!(next_change(&mut w).await.kv, kv);
    // The stream ends with an error, not silently, when etcd goes away.
    drop(fx.guard);
    let end = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match w.next().await {
                Some(Ok(event)) => assert_eq!(event.kind, EventKind::Progress),
                other => return other,
            }
        }
    })
    .await
    .expect("the watch ends once etcd is gone");
    assert!(matches!(end, Some(Err(StoreError::Backend { .. }))), "{end:?}");
}

/// A watch catching up on history while progress is requested every few milliseconds: the
/// etcd 3.4 Debian ships answers progress requests ahead of the replay (etcd-io/etcd#15220).
/// Whatever the etcd, the stream never goes back in revision; it may end as compacted instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_progress_never_overtakes_replay() {
    let etcd = Etcd::start().await;
    let store = etcd.connect().await.with_progress_interval(Duration::from_millis(8));
    let s: Arc<dyn Store> = Arc::new(store);
    let r0 = s.current_revision().await.unwrap();
    let mut writers = Vec::new();
    for task in 0..4 {
        let s = Arc::clone(&s);
        writers.push(tokio::spawn(async move {
            for i in 0..100 {
                let dir = if i % 2 == 0 { "w" } else { "x" };
                s.create(&format!("/{dir}/{task}/{i}"), vec![0; 100]).await.unwrap();
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut w = s.watch("/w/", r0).await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let end = s.current_revision().await.unwrap();
    let (mut last, mut changes) = (r0, 0);
    while last < end || changes < 200 {
        let item = tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap();
        match item {
            Some(Ok(event)) => {
                assert!(event.revision > last, "{event:?} after {last}");
                last = event.revision;
                changes += usize::from(event.kind != EventKind::Progress);
            }
            Some(Err(StoreError::Compacted { requested, .. })) => {
                assert_eq!(requested, last);
                return;
            }
            other => panic!("{other:?}"),
        }
    }
}
