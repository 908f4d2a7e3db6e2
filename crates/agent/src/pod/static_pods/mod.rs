//! Static pods (the kubelet's `staticPodPath`, `--pod-manifest-path`): pods from manifest
//! files, which this agent runs itself with the same worker as the API's pods, and mirrors
//! into the API so that clients see them and their status.
//!
//! The folder is read at start, again whenever inotify says it changed, and every
//! [`CHECK_INTERVAL`] regardless (`folder.rs`);
//! decoding and defaults are `manifest.rs`'s, what a mirror pod is and what to do about the
//! one the API holds `mirror.rs`'s (both pure). A static pod's UID is the hash of its file,
//! so an edit is a new pod: the old one stops, then the new one starts (one pod per full name
//! at a time, as upstream's pod workers). The worker of a static pod keeps its mirror through
//! a [`Link`]: it creates the mirror when the API holds none, replaces one of another hash or
//! on its way out (`kubectl delete pod` deletes only the mirror; the containers keep running),
//! and writes the static pod's status onto it. Mirror pods of no static pod (the file removed,
//! and its pod stopped) are deleted by the loop that feeds the workers (`pod::run`).

pub mod folder;
pub mod manifest;
pub mod mirror;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, PodStatus};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::{Api, Client};
use tokio::sync::watch;

pub use folder::Folder;
use mirror::Action;

/// How often the manifest folder is looked at besides its inotify events (upstream's: 20 s;
/// a look is a `stat` of each file, cheap enough to make more often).
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How long before a create or delete of a mirror pod that failed (or whose result the pod
/// watch has not shown yet) is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// The static pods of the folder: `None` until it could be read.
pub type Wanted = Option<Arc<Vec<Arc<Pod>>>>;

/// Reads `folder` now, then whenever inotify says it changed, and every [`CHECK_INTERVAL`]
/// besides, in the background: the receiver holds the latest set of static pods, changed
/// only when the set changes.
pub fn watch(folder: Folder) -> watch::Receiver<Wanted> {
    watch_every(folder, CHECK_INTERVAL)
}

/// [`watch`], looking at the folder every `interval` besides its inotify events.
pub fn watch_every(mut folder: Folder, interval: Duration) -> watch::Receiver<Wanted> {
    // Watched before the first read, so that no change falls between the two.
    let mut changes = Changes::of(&folder);
    let first = scan(&mut folder);
    let (tx, rx) = watch::channel(first.clone());
    tokio::spawn(async move {
        let mut last = first;
        loop {
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                () = changes.next() => {}
            }
            if changes.is_none() {
                // The folder may have been made (or made again) since.
                changes = Changes::of(&folder);
            }
            let Some(now) = scan(&mut folder) else { continue };
            if last.as_deref() != Some(&now) {
                last = Some(Arc::clone(&now));
                if tx.send(Some(now)).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The manifest folder's changes (the folder of a single manifest file), followed by a
/// thread blocked on its inotify watch, if one could be made; the folder is read at
/// [`CHECK_INTERVAL`] regardless.
struct Changes(Option<tokio::sync::mpsc::Receiver<()>>);

impl Changes {
    fn of(folder: &Folder) -> Changes {
        let path = folder.path();
        let watched = if path.is_file() { path.parent().unwrap_or(path) } else { path };
        let Ok(watch) = crate::sys::FolderWatch::new(watched) else { return Changes(None) };
        // One pending change stands for any number: the folder is read as a whole.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let spawned = std::thread::Builder::new().name("static-pods".into()).spawn(move || {
            while watch.wait().is_ok() {
                if let Err(tokio::sync::mpsc::error::TrySendError::Closed(())) = tx.try_send(()) {
                    return;
                }
            }
        });
        Changes(spawned.ok().map(|_| rx))
    }

    fn is_none(&self) -> bool {
        self.0.is_none()
    }

    /// Returns once something changed; never without a watch.
    async fn next(&mut self) {
        let Some(changes) = &mut self.0 else { return std::future::pending().await };
        if changes.recv().await.is_none() {
            // The watch broke: the next look at the folder makes another.
            self.0 = None;
        }
    }
}

fn scan(folder: &mut Folder) -> Option<Arc<Vec<Arc<Pod>>>> {
    match folder.scan() {
        Ok(pods) => Some(Arc::new(pods)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the static pod manifests");
            None
        }
    }
}

/// What the pod watch shows under a static pod's name.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Whether the watch has listed the node's pods yet (before, an absent mirror may exist).
    pub listed: bool,
    /// The mirror pod under the name, if any.
    pub mirror: Option<Arc<Pod>>,
}

/// A static pod's worker's hold on its mirror pod.
pub struct Link {
    seen: watch::Receiver<Seen>,
    /// The uid of the mirror this link made, until the watch shows a mirror.
    created: Option<String>,
    last_create: Option<Instant>,
    last_delete: Option<(String, Instant)>,
}

impl Link {
    /// A link fed by the pod watch through `seen`.
    pub fn new(seen: watch::Receiver<Seen>) -> Link {
        Link { seen, created: None, last_create: None, last_delete: None }
    }

    /// Waits until the pod watch shows something new about the mirror.
    pub async fn changed(&mut self) {
        if self.seen.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// The uid of the mirror pod the status of `pod` goes to, if there is one.
    pub fn target(&self, pod: &Pod) -> Option<String> {
        let seen = self.seen.borrow();
        match seen.mirror.as_deref().map(|m| mirror::decide(pod, Some(m))) {
            Some(Action::Report(uid)) => Some(uid),
            Some(_) => None,
            None => self.created.clone(),
        }
    }

    /// The status of the current mirror of `pod`, as the watch shows it.
    pub fn status(&self, pod: &Pod) -> Option<PodStatus> {
        let seen = self.seen.borrow();
        let mirror = seen.mirror.as_deref()?;
        matches!(mirror::decide(pod, Some(mirror)), Action::Report(_))
            .then(|| mirror.status.clone())
            .flatten()
    }

    /// Brings the mirror of `pod` in line: deletes one of another hash or on its way out,
    /// creates a missing one. Failures are logged and tried again after [`RETRY`].
    pub async fn sync(&mut self, client: &Client, node: &str, pod: &Pod) {
        let seen = self.seen.borrow_and_update().clone();
        if !seen.listed {
            return;
        }
        if seen.mirror.is_some() {
            self.created = None;
        }
        let (namespace, name) = mirror::full_name(pod);
        let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
        match mirror::decide(pod, seen.mirror.as_deref()) {
            Action::Report(_) => return,
            // Not again while the last one is recent: the watch has yet to show it, or it
            // failed.
            Action::Create if recent(self.last_create) => return,
            Action::Create => {}
            Action::Replace(uid) => {
                if self
                    .last_delete
                    .as_ref()
                    .is_some_and(|(u, at)| *u == uid && at.elapsed() < RETRY)
                {
                    return;
                }
                self.last_delete = Some((uid.clone(), Instant::now()));
                tracing::info!(pod = %name, %namespace, mirror = %uid, "replacing a mirror pod that is being deleted or mirrors another version");
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
                    ..DeleteParams::default()
                };
                match pods.delete(&name, &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => {
                        tracing::warn!(pod = %name, %namespace, error = %e, "cannot delete a stale mirror pod");
                        return;
                    }
                }
            }
        }
        self.last_create = Some(Instant::now());
        let node_uid = match Api::<Node>::all(client.clone()).get(node).await {
            Ok(n) => n.metadata.uid.unwrap_or_default(),
            Err(e) => {
                tracing::debug!(pod = %name, error = %e, "cannot read the node for a mirror pod");
                return;
            }
        };
        let wanted = mirror::mirror_pod(pod, node, &node_uid);
        match pods.create(&PostParams::default(), &wanted).await {
            Ok(made) => {
                tracing::info!(pod = %name, %namespace, "created a mirror pod");
                self.created = made.metadata.uid;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                tracing::debug!(pod = %name, %namespace, "a pod of the mirror's name exists already")
            }
            Err(e) => {
                tracing::warn!(pod = %name, %namespace, error = %e, "cannot create a mirror pod")
            }
        }
    }
}

fn recent(at: Option<Instant>) -> bool {
    at.is_some_and(|at| at.elapsed() < RETRY)
}

/// The static pod `pod` marked deleted now, with its own grace period: how its worker is told
/// that its file is gone (it stops the containers as for a deleted API pod, and deletes no
/// object).
pub fn deleted(pod: &Pod) -> Pod {
    let mut pod = pod.clone();
    let grace = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
    pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::now(),
    ));
    pod.metadata.deletion_grace_period_seconds = Some(grace);
    pod
}

#[cfg(test)]
mod watch_tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n";

    /// With the periodic look an hour away, only inotify can bring the changes in.
    #[tokio::test]
    async fn a_manifest_written_or_removed_shows_without_waiting_for_the_next_look() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = Folder::new(dir.path().to_path_buf(), "n1".into());
        let mut wanted = watch_every(folder, Duration::from_secs(3600));
        assert_eq!(wanted.borrow_and_update().as_ref().map(|p| p.len()), Some(0));
        std::fs::write(dir.path().join("web.yaml"), POD).expect("write");
        let shown = tokio::time::timeout(Duration::from_secs(30), wanted.changed()).await;
        assert!(shown.is_ok_and(|r| r.is_ok()), "no change seen");
        let pods = wanted.borrow_and_update().clone().expect("read");
        assert_eq!(pods[0].metadata.name.as_deref(), Some("web-n1"));
        std::fs::remove_file(dir.path().join("web.yaml")).expect("remove");
        let shown = tokio::time::timeout(Duration::from_secs(30), wanted.changed()).await;
        assert!(shown.is_ok_and(|r| r.is_ok()), "no removal seen");
        assert_eq!(wanted.borrow().as_ref().map(|p| p.len()), Some(0));
    }
}
