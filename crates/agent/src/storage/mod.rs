//! The directories of local-path volumes (k3s's provisioner runs a helper pod for this; here
//! the node's agent does it). The provisioner (`krust-controllers`' `local_path`) labels each
//! volume it makes with the node the scheduler chose; this agent watches the volumes labelled
//! with its node and keeps, in its storage path, one directory per volume:
//!
//! - a volume's directory is created with mode 0777 (as k3s's setup helper makes it), so that
//!   pods running as any user can write to it;
//! - a `pvc-*` directory directly inside the storage path that no volume has any more is
//!   removed with what it holds (the provisioner deletes a volume once its claim is gone and
//!   no pod uses it).
//!
//! It acts only on a complete list of the volumes: after the watch's first list, and after
//! every later change or re-list, never on an empty cache or while a list fails (which would
//! remove every directory). Nothing outside the storage path, and nothing inside it not named
//! `pvc-*`, is ever removed. Which directories to create and remove is `plan.rs`'s.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

/// How often the directories are compared with the volumes again (a removal that failed is
/// tried again then).
const RESYNC: Duration = Duration::from_secs(60);

/// The mode of a volume's directory (k3s's setup helper's `mkdir -m 0777`).
const MODE: u32 = 0o777;

/// A directory that could not be read, created or removed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The storage directory could not be listed or created.
    #[error("cannot read storage directory {path}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A volume's directory could not be created.
    #[error("cannot create volume directory {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A volume's directory could not be removed.
    #[error("cannot remove volume directory {path}")]
    Remove {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The names of the directories directly inside `root` (symbolic links and files are not
/// directories); none when `root` does not exist yet.
pub fn present(root: &Path) -> Result<BTreeSet<String>, Error> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(source) => return Err(Error::List { path: root.to_path_buf(), source }),
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::List { path: root.to_path_buf(), source })?;
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
            names.insert(name.to_string());
        }
    }
    Ok(names)
}

/// Carries `plan` out in `root`: every failure is reported, the rest still done.
pub fn apply(root: &Path, plan: &plan::Plan) -> Vec<Error> {
    let mut errors = Vec::new();
    if !plan.create.is_empty()
        && let Err(source) = std::fs::create_dir_all(root)
    {
        errors.push(Error::List { path: root.to_path_buf(), source });
        return errors;
    }
    for name in &plan.create {
        let path = root.join(name);
        let created = match std::fs::create_dir(&path) {
            // A pod's `DirectoryOrCreate` may have made it a moment ago, with its own mode.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        };
        // The mode is set apart from the creation, which the process's umask would narrow.
        let result = created
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(MODE)));
        match result {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created a local-path volume's directory")
            }
            Err(source) => errors.push(Error::Create { path, source }),
        }
    }
    for name in &plan.remove {
        let path = root.join(name);
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a deleted local-path volume's directory")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => errors.push(Error::Remove { path, source }),
        }
    }
    errors
}

/// Compares the directories in `root` with `volumes` (a complete list) and acts.
fn reconcile(volumes: &BTreeMap<String, PersistentVolume>, node: &str, root: &Path) {
    let present = match present(root) {
        Ok(present) => present,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the local-path volumes' directories");
            return;
        }
    };
    let plan = plan::plan(volumes.values(), node, root, &present);
    for e in apply(root, &plan) {
        let cause = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
        tracing::warn!(error = %e, cause, "local-path volume directory");
    }
}

/// The node's local-path volumes as the watch shows them: the last complete list with the
/// changes since, and a list being read. Pure, so that when the directories may be compared
/// with it is tested without a server.
#[derive(Debug, Default)]
pub struct Cache {
    volumes: BTreeMap<String, PersistentVolume>,
    listing: Option<BTreeMap<String, PersistentVolume>>,
    complete: bool,
}

impl Cache {
    /// Applies one event of the watch; answers whether the directories are to be compared
    /// with the volumes now: only once a list was read whole, never while one is read.
    pub fn apply(&mut self, event: watcher::Event<PersistentVolume>) -> bool {
        match event {
            watcher::Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(volume) => {
                if let Some(listing) = self.listing.as_mut() {
                    listing.insert(volume.name_any(), volume);
                }
                false
            }
            watcher::Event::InitDone => match self.listing.take() {
                Some(listed) => {
                    self.volumes = listed;
                    self.complete = true;
                    true
                }
                // The end of a list that failed: nothing new.
                None => false,
            },
            watcher::Event::Apply(volume) => {
                self.volumes.insert(volume.name_any(), volume);
                self.complete
            }
            watcher::Event::Delete(volume) => {
                self.volumes.remove(&volume.name_any());
                self.complete
            }
        }
    }

    /// The watch failed: a list being read is dropped (it is read again whole), the last
    /// complete one stays.
    pub fn failed(&mut self) {
        self.listing = None;
    }

    /// The volumes, once a list was read whole (`None` before).
    pub fn volumes(&self) -> Option<&BTreeMap<String, PersistentVolume>> {
        self.complete.then_some(&self.volumes)
    }
}

/// Watches the volumes labelled with `node` for ever and keeps their directories in `root`:
/// after each complete list and each change since, and every [`RESYNC`].
pub async fn run(client: Client, node: String, root: PathBuf) {
    let api: Api<PersistentVolume> = Api::all(client);
    let config = watcher::Config::default().labels(&format!("{}={node}", plan::NODE_LABEL));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut cache = Cache::default();
    let mut resync = tokio::time::interval(RESYNC);
    loop {
        let changed = tokio::select! {
            event = events.next() => match event {
                None => return,
                Some(Ok(event)) => cache.apply(event),
                Some(Err(e)) => {
                    cache.failed();
                    tracing::warn!(error = %e, "watching local-path volumes failed; again soon");
                    false
                }
            },
            _ = resync.tick() => cache.volumes().is_some(),
        };
        let Some(volumes) = cache.volumes().filter(|_| changed).cloned() else { continue };
        let (node, root) = (node.clone(), root.clone());
        // Removing a large directory takes a while: not on the runtime's threads.
        let done = tokio::task::spawn_blocking(move || reconcile(&volumes, &node, &root));
        if let Err(e) = done.await {
            tracing::warn!(error = %e, "the local-path directory pass failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(name: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        }
    }

    fn names(cache: &Cache) -> Option<Vec<String>> {
        cache.volumes().map(|v| v.keys().cloned().collect())
    }

    #[test]
    fn the_directories_follow_only_complete_lists() {
        use watcher::Event;
        let mut cache = Cache::default();
        assert!(!cache.apply(Event::Init), "a list begins");
        assert!(!cache.apply(Event::InitApply(volume("pvc-a"))));
        assert_eq!(names(&cache), None, "nothing is known before the first list ends");
        cache.failed();
        assert!(!cache.apply(Event::InitDone), "the failed list is not taken");
        assert_eq!(names(&cache), None);
        assert!(!cache.apply(Event::Init));
        assert!(!cache.apply(Event::InitApply(volume("pvc-a"))));
        assert!(!cache.apply(Event::InitApply(volume("pvc-b"))));
        assert!(cache.apply(Event::InitDone), "a complete list is acted on");
        assert_eq!(names(&cache), Some(vec!["pvc-a".into(), "pvc-b".into()]));
        assert!(cache.apply(Event::Delete(volume("pvc-a"))), "a change is acted on");
        assert_eq!(names(&cache), Some(vec!["pvc-b".into()]));
        // A re-list that fails half-way keeps the last complete list.
        assert!(!cache.apply(Event::Init));
        cache.failed();
        assert!(!cache.apply(Event::InitDone));
        assert_eq!(names(&cache), Some(vec!["pvc-b".into()]));
        // A complete empty list is the truth: every volume is gone.
        assert!(!cache.apply(Event::Init));
        assert!(cache.apply(Event::InitDone));
        assert_eq!(names(&cache), Some(vec![]));
    }

    #[test]
    fn directories_are_created_open_to_all_and_removed_only_when_planned() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let root = dir.path().join("storage");
        assert_eq!(present(&root).expect("a missing root is empty"), BTreeSet::new());
        let plan = plan::Plan { create: vec!["pvc-a_ns_c".into()], remove: Vec::new() };
        assert!(apply(&root, &plan).is_empty());
        let mode =
            std::fs::metadata(root.join("pvc-a_ns_c")).expect("created").permissions().mode();
        assert_eq!(mode & 0o777, 0o777);
        std::fs::write(root.join("pvc-a_ns_c/data"), b"kept").expect("a file in the volume");
        std::fs::write(root.join("pvc-file"), b"a file, not a directory").expect("a file");
        assert_eq!(present(&root).expect("listed"), BTreeSet::from(["pvc-a_ns_c".to_string()]));
        assert!(apply(&root, &plan).is_empty(), "an existing directory is kept");
        assert_eq!(std::fs::read(root.join("pvc-a_ns_c/data")).expect("kept"), b"kept");
        let plan = plan::Plan { create: Vec::new(), remove: vec!["pvc-a_ns_c".into()] };
        assert!(apply(&root, &plan).is_empty());
        assert!(!root.join("pvc-a_ns_c").exists());
        assert!(root.join("pvc-file").exists(), "only what is planned goes");
    }
}
