//! The embedded store on a full disk: writes fail with a clear error, then work again by
//! themselves once space is freed, and every acknowledged write survives.
//!
//! Needs root (it mounts an 8 MiB tmpfs); skipped with a message otherwise.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use krust_store::embedded::EmbeddedStore;
use krust_store::{KeyValue, Store, StoreError};

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=` takes it); `None` when not root.
    fn mount(size: &str) -> Option<Tmpfs> {
        let uid = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return None;
        }
        let dir = tempfile::tempdir().expect("temporary directory");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mount)
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs on {}", mount.display());
        Some(Tmpfs { mount, _dir: dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Fills the filesystem of `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create filler");
    let chunk = vec![0xa5u8; 16 * 1024];
    loop {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // Whatever is left (less than a chunk), byte by byte in small pieces.
    while let Ok(n) = file.write(&chunk[..512]) {
        if n == 0 {
            break;
        }
    }
    let _ = file.sync_all();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_resume_after_the_disk_was_full() {
    let Some(fs) = Tmpfs::mount("8m") else {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    };
    let data = fs.mount.join("db");
    let value = |i: usize| vec![(i % 251) as u8; 64 * 1024];
    let mut acknowledged: Vec<KeyValue> = Vec::new();
    {
        let store = EmbeddedStore::open(&data).expect("open store");
        for i in 0..4 {
            acknowledged
                .push(store.create(&format!("/before/{i}"), value(i)).await.expect("create"));
        }
        store.check().await.expect("healthy before the disk fills");

        let filler = fill(&fs.mount);
        // Writes into the space left in the file may still succeed; one soon fails.
        let mut failure = None;
        for i in 0..64 {
            match store.create(&format!("/full/{i}"), value(i)).await {
                Ok(kv) => acknowledged.push(kv),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        let failure = failure.expect("a write fails on a full disk");
        assert!(matches!(failure, StoreError::Backend { .. }), "{failure:?}");
        let message = failure.to_string();
        assert!(message.contains("No space left on device"), "unclear error: {message}");
        assert!(store.check().await.is_err(), "check reports the failing write path");
        // A durable commit of redb on the full disk (compaction is one) may fail too, which
        // makes redb refuse everything until the writer reopens the file.
        let revision = store.current_revision().await.expect("revision");
        match store.compact(revision).await {
            Ok(()) => eprintln!("compaction fit in the file's free pages"),
            Err(error) => eprintln!("compaction failed on the full disk: {error}"),
        }

        std::fs::remove_file(&filler).expect("free space");
        let deadline = Instant::now() + Duration::from_secs(20);
        let resumed = loop {
            match store.create("/after/0", value(0)).await {
                Ok(kv) => break kv,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("not yet: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("writes did not resume after space was freed: {error}"),
            }
        };
        assert!(resumed.mod_revision > acknowledged.last().map_or(0, |kv| kv.mod_revision));
        acknowledged.push(resumed);
        let next = store.create("/after/1", value(1)).await.expect("write after recovery");
        assert_eq!(next.mod_revision, acknowledged.last().map_or(0, |kv| kv.mod_revision) + 1);
        acknowledged.push(next);
        store.check().await.expect("healthy after recovery");
        for kv in &acknowledged {
            assert_eq!(store.get(&kv.key).await.expect("get").as_ref(), Some(kv), "{}", kv.key);
        }
    }
    // And from the file, after a restart.
    let store = EmbeddedStore::open(&data).expect("reopen store");
    for kv in &acknowledged {
        assert_eq!(store.get(&kv.key).await.expect("get").as_ref(), Some(kv), "{}", kv.key);
    }
    let revision = store.current_revision().await.expect("revision");
    assert_eq!(revision, acknowledged.last().map_or(0, |kv| kv.mod_revision));
}
