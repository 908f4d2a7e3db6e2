//! The pods bound to this node: one worker per pod (by uid), fed the pod's latest version
//! from a watch of `spec.nodeName=NODE`. A pod's directory on disk without a pod in the
//! API (deleted while the agent was away) is torn down.

pub mod container;
pub mod hooks;
pub mod image_pull;
pub mod locate;
pub mod probe;
pub mod resources;
pub mod sandbox;
pub mod sources;
pub mod status;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{mpsc, watch};

use crate::Agent;

/// Runs the pods of this node for ever.
pub async fn run(agent: Arc<Agent>) {
    let pods: Api<Pod> = Api::all(agent.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", agent.options.node_name));
    let mut events = watcher(pods, config).default_backoff().boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut listed: HashSet<String> = HashSet::new();
    let spawn = |uid: String,
                 initial: Option<Arc<Pod>>,
                 workers: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>| {
        let key = uid.clone();
        let (tx, rx) = watch::channel(initial);
        let worker = worker::Worker::new(Arc::clone(&agent), uid.clone());
        let done = done_tx.clone();
        tokio::spawn(async move {
            worker.run(rx).await;
            let _ = done.send(uid);
        });
        workers.insert(key, tx);
    };
    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                match event {
                    Ok(watcher::Event::Init) => listed.clear(),
                    Ok(watcher::Event::InitApply(pod) | watcher::Event::Apply(pod)) => {
                        let Some(uid) = pod.metadata.uid.clone() else { continue };
                        listed.insert(uid.clone());
                        let pod = Arc::new(pod);
                        match workers.get(&uid) {
                            Some(tx) => { let _ = tx.send(Some(pod)); }
                            None => spawn(uid, Some(pod), &mut workers),
                        }
                    }
                    Ok(watcher::Event::Delete(pod)) => {
                        if let Some(tx) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                            let _ = tx.send(None);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        for (uid, tx) in &workers {
                            if !listed.contains(uid) {
                                let _ = tx.send(None);
                            }
                        }
                        // Pods left on disk from before this agent started, now gone.
                        for entry in std::fs::read_dir(&agent.pods_dir).into_iter().flatten().flatten() {
                            let uid = entry.file_name().to_string_lossy().into_owned();
                            if !listed.contains(&uid) && !workers.contains_key(&uid) {
                                tracing::info!(pod = %uid, "removing a pod that is no longer bound to this node");
                                spawn(uid, None, &mut workers);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "the pod watch failed; retrying"),
                }
            }
            Some(uid) = done_rx.recv() => {
                workers.remove(&uid);
            }
        }
    }
}
