//! The pods of this node: those the API binds to it (a watch of `spec.nodeName=NODE`) and
//! the static pods of its manifest folder (`static_pods/`), one worker per pod (by uid), fed
//! the pod's latest version. A pod's directory on disk without a pod in the API (deleted
//! while the agent was away) is torn down. Mirror pods in the watch are never run: they are
//! what the API shows of static pods, and go to their static pod's worker.

pub mod container;
pub mod hooks;
pub mod image_pull;
pub mod locate;
pub mod probe;
pub mod qos_cgroups;
pub mod resources;
pub mod restart;
pub mod sandbox;
pub mod sources;
pub mod static_pods;
pub mod status;
pub mod stop;
pub mod volumes;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{mpsc, watch};

use crate::Agent;
use static_pods::mirror::{FullName, full_name, is_mirror};
use static_pods::{Folder, Link, Seen, Wanted};

/// How often static pods and mirror pods are brought in line without a change to prompt it
/// (a failed deletion of a mirror pod is tried again then).
const STATIC_RESYNC: Duration = Duration::from_secs(10);

/// A running worker.
struct Handle {
    /// Its pod's latest version; `None` once the pod is gone.
    pod: watch::Sender<Option<Arc<Pod>>>,
    /// A static pod's full name, and what the pod watch shows under it.
    mirror: Option<(FullName, watch::Sender<Seen>)>,
}

/// The workers, by pod uid.
struct Workers {
    agent: Arc<Agent>,
    running: HashMap<String, Handle>,
    done: mpsc::UnboundedSender<String>,
}

impl Workers {
    /// Starts the worker of pod `uid` (`None`: only its leftovers on disk are to go).
    fn spawn(&mut self, uid: String, initial: Option<Arc<Pod>>) {
        let worker = worker::Worker::new(Arc::clone(&self.agent), uid.clone());
        self.start(uid, initial, worker, None);
    }

    /// Starts the worker of static pod `pod`, with what the pod watch shows of its mirror.
    fn spawn_static(&mut self, pod: Arc<Pod>, seen: Seen) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let (tx, rx) = watch::channel(seen);
        let worker =
            worker::Worker::new(Arc::clone(&self.agent), uid.clone()).with_mirror(Link::new(rx));
        self.start(uid, Some(Arc::clone(&pod)), worker, Some((full_name(&pod), tx)));
    }

    fn start(
        &mut self,
        uid: String,
        initial: Option<Arc<Pod>>,
        worker: worker::Worker,
        mirror: Option<(FullName, watch::Sender<Seen>)>,
    ) {
        let (tx, rx) = watch::channel(initial);
        let done = self.done.clone();
        let key = uid.clone();
        tokio::spawn(async move {
            worker.run(rx).await;
            let _ = done.send(uid);
        });
        self.running.insert(key, Handle { pod: tx, mirror });
    }

    /// Whether a static pod's worker of full name `name` runs.
    fn runs_static(&self, name: &FullName) -> bool {
        self.running.values().any(|h| h.mirror.as_ref().is_some_and(|(n, _)| n == name))
    }
}

/// What the loop knows of static pods beside their workers.
#[derive(Default)]
struct Statics {
    /// The mirror pods the pod watch shows, by full name.
    mirrors: HashMap<FullName, Arc<Pod>>,
    /// Whether the pod watch has listed the node's pods (before, a mirror may exist unseen).
    listed: bool,
    /// Static pods (by uid) whose workers were told to stop.
    stopping: HashSet<String>,
    /// Orphaned mirror pods (by uid) being deleted, since when.
    deleting: HashMap<String, Instant>,
}

impl Statics {
    fn seen(&self, name: &FullName) -> Seen {
        Seen { listed: self.listed, mirror: self.mirrors.get(name).cloned() }
    }

    /// Brings the static pods' workers and the mirror pods in line with `wanted` (the
    /// folder's pods; `None`: not read yet, so nothing is stopped or deleted): workers of
    /// pods no longer wanted stop, wanted ones start (one per full name at a time: a new
    /// version waits until the old one has stopped), each worker learns what the watch shows
    /// of its mirror, and mirror pods of no static pod are deleted.
    fn reconcile(&mut self, workers: &mut Workers, wanted: &Wanted) {
        if let Some(wanted) = wanted {
            let uids: HashSet<&str> =
                wanted.iter().filter_map(|p| p.metadata.uid.as_deref()).collect();
            for (uid, handle) in &workers.running {
                if handle.mirror.is_some()
                    && !uids.contains(uid.as_str())
                    && self.stopping.insert(uid.clone())
                {
                    let current = handle.pod.borrow().clone();
                    if let Some(pod) = current {
                        tracing::info!(pod = ?full_name(&pod), %uid, "stopping a static pod whose manifest is gone or changed");
                        let _ = handle.pod.send(Some(Arc::new(static_pods::deleted(&pod))));
                    }
                }
            }
            for pod in wanted.iter() {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(handle) = workers.running.get(&uid) {
                    // The same uid (a manifest that names its own) with another content.
                    if !self.stopping.contains(&uid) {
                        handle.pod.send_if_modified(|current| {
                            let changed = current.as_deref() != Some(pod.as_ref());
                            if changed {
                                *current = Some(Arc::clone(pod));
                            }
                            changed
                        });
                    }
                    continue;
                }
                let name = full_name(pod);
                if workers.runs_static(&name) {
                    continue;
                }
                tracing::info!(pod = ?name, %uid, "starting a static pod");
                workers.spawn_static(Arc::clone(pod), self.seen(&name));
            }
        }
        for handle in workers.running.values() {
            if let Some((name, seen)) = &handle.mirror {
                let now = self.seen(name);
                seen.send_if_modified(|old| {
                    let same = old.listed == now.listed
                        && match (&old.mirror, &now.mirror) {
                            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                            (None, None) => true,
                            _ => false,
                        };
                    if !same {
                        *old = now;
                    }
                    !same
                });
            }
        }
        let Some(wanted) = wanted else { return };
        if !self.listed {
            return;
        }
        let wanted_names: HashSet<FullName> = wanted.iter().map(|p| full_name(p)).collect();
        for (name, mirror) in &self.mirrors {
            if wanted_names.contains(name) || workers.runs_static(name) {
                continue;
            }
            let uid = mirror.metadata.uid.clone().unwrap_or_default();
            if self.deleting.get(&uid).is_some_and(|at| at.elapsed() < STATIC_RESYNC) {
                continue;
            }
            self.deleting.insert(uid.clone(), Instant::now());
            tracing::info!(pod = ?name, mirror = %uid, "deleting a mirror pod of no static pod");
            let pods: Api<Pod> = Api::namespaced(workers.agent.client.clone(), &name.0);
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
                ..DeleteParams::default()
            };
            let name = name.1.clone();
            tokio::spawn(async move {
                match pods.delete(&name, &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                    Err(e) => {
                        tracing::warn!(pod = %name, error = %e, "cannot delete a mirror pod")
                    }
                }
            });
        }
        let present: HashSet<&str> =
            self.mirrors.values().filter_map(|m| m.metadata.uid.as_deref()).collect();
        self.deleting.retain(|uid, _| present.contains(uid.as_str()));
    }
}

/// Runs the pods of this node for ever.
pub async fn run(agent: Arc<Agent>) {
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", agent.options.node_name));
    let mut events = watcher(pods, config).default_backoff().boxed();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut workers = Workers { agent: Arc::clone(&agent), running: HashMap::new(), done: done_tx };
    // Without a manifest folder there are no static pods (and mirror pods are orphans).
    let (_no_folder, mut wanted) = watch::channel::<Wanted>(Some(Arc::default()));
    if let Some(path) = &agent.options.pod_manifest_path {
        wanted = static_pods::watch(Folder::new(path.clone(), agent.options.node_name.clone()));
    }
    let mut statics = Statics::default();
    statics.reconcile(&mut workers, &wanted.borrow_and_update().clone());
    let mut resync = tokio::time::interval(STATIC_RESYNC);
    let mut listed: HashSet<String> = HashSet::new();
    let mut sweep_disk = false;
    let mut relisting = false;
    let mut qos = qos_cgroups::QosCgroups::default();
    // Whether the pods the QoS-level cgroups weigh may have changed: one came, went or ended
    // (static pods come and go with the folder, looked at on its changes and resyncs).
    let mut qos_stale = true;
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                match event {
                    Ok(watcher::Event::Init) => {
                        listed.clear();
                        relisting = true;
                    }
                    Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => {
                        let Some(uid) = pod.metadata.uid.clone() else { continue };
                        listed.insert(uid.clone());
                        let pod = Arc::new(pod);
                        if is_mirror(&pod) {
                            statics.mirrors.insert(full_name(&pod), pod);
                        } else {
                            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
                            qos_stale |= matches!(phase, Some("Succeeded" | "Failed"));
                            match workers.running.get(&uid) {
                                Some(handle) => { let _ = handle.pod.send(Some(pod)); }
                                None => {
                                    workers.spawn(uid, Some(pod));
                                    qos_stale = true;
                                }
                            }
                        }
                    }
                    Ok(watcher::Event::Delete(pod)) => {
                        if is_mirror(&pod) {
                            let name = full_name(&pod);
                            if statics.mirrors.get(&name).is_some_and(|m| m.metadata.uid == pod.metadata.uid) {
                                statics.mirrors.remove(&name);
                            }
                        } else if let Some(handle) = pod.metadata.uid.as_ref().and_then(|uid| workers.running.get(uid)) {
                            let _ = handle.pod.send(None);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        for (uid, handle) in &workers.running {
                            if handle.mirror.is_none() && !listed.contains(uid) {
                                let _ = handle.pod.send(None);
                            }
                        }
                        statics.mirrors.retain(|_, m| m.metadata.uid.as_ref().is_some_and(|u| listed.contains(u)));
                        statics.listed = true;
                        relisting = false;
                        sweep_disk = true;
                    }
                    Err(e) => tracing::warn!(error = %e, "the pod watch failed; retrying"),
                }
            }
            Some(uid) = done_rx.recv() => {
                workers.running.remove(&uid);
                statics.stopping.remove(&uid);
                qos_stale = true;
            }
            Ok(()) = wanted.changed() => qos_stale = true,
            _ = resync.tick() => qos_stale = true,
        }
        let now = wanted.borrow_and_update().clone();
        statics.reconcile(&mut workers, &now);
        // Before a new pod's worker gets to make the pod's cgroup, as upstream's kubelet.
        if std::mem::take(&mut qos_stale) {
            let pods: Vec<Arc<Pod>> =
                workers.running.values().filter_map(|h| h.pod.borrow().clone()).collect();
            qos.update(agent.host.as_ref(), pods.iter().map(|p| p.as_ref()), agent.pods_share);
        }
        // Pods left on disk from before this agent started, now gone: once both the API's
        // pods and the static pods are known (the static ones have their workers by now).
        if sweep_disk && !relisting && now.is_some() {
            sweep_disk = false;
            for entry in std::fs::read_dir(&agent.pods_dir).into_iter().flatten().flatten() {
                let uid = entry.file_name().to_string_lossy().into_owned();
                if !listed.contains(&uid) && !workers.running.contains_key(&uid) {
                    tracing::info!(pod = %uid, "removing a pod that is no longer bound to this node");
                    workers.spawn(uid, None);
                }
            }
        }
    }
}
