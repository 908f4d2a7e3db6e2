//! The garbage collector (upstream's `garbagecollector`): objects whose owners are all gone
//! are deleted; an owner deleted with `propagationPolicy: Orphan` has its dependents cut off
//! first, and one deleted with `Foreground` waits until its blocking dependents are gone.
//!
//! Monitors watch the metadata of every resource that can be listed, watched and deleted
//! (found through discovery, again every 30 s, so custom resources join) into one ownership
//! graph (`graph.rs`); changes put work on a queue; workers judge each object
//! (`decide.rs`), confirm a missing owner with a live read before deleting anything, and
//! write as the collector's own service account.

pub mod decide;
pub mod graph;
pub mod queue;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use krust_client::{Trimmed, untrimmed};
use kube::api::{
    DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use kube::discovery::{ApiResource, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;

use decide::{Owner, Propagation, Verdict};
use graph::{FOREGROUND, Graph, Identity, Node, ORPHAN, Work};
use queue::Queue;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "generic-garbage-collector";

/// Resources the collector does not watch (upstream's ignored resources).
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// How often discovery is read again for new or removed resources.
const REDISCOVER: Duration = Duration::from_secs(30);

/// How long the collector waits for every monitor's first list.
const INITIAL_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Workers judging objects at once.
const WORKERS: usize = 8;

/// A change seen by a monitor.
enum Change {
    Observed(Node),
    Deleted(String),
    Relisted {
        api_version: String,
        kind: String,
        seen: HashSet<String>,
    },
    /// A monitor of the first discovery listed once.
    Listed,
}

/// A resource's kind key: `(apiVersion, kind)`.
type KindKey = (String, String);

struct Collector {
    client: Client,
    graph: Mutex<Graph>,
    queue: Queue<Work>,
    /// Every discovered resource by its kind, with whether it is namespaced.
    resources: RwLock<HashMap<KindKey, (ApiResource, bool)>>,
}

/// Runs the collector for ever: monitors read with `root`, writes go as `client`. Every task
/// it starts ends when this future is dropped.
pub async fn run(root: Client, client: Client) {
    let mut tasks = tokio::task::JoinSet::new();
    let collector = Arc::new(Collector {
        client,
        graph: Mutex::new(Graph::default()),
        queue: Queue::default(),
        resources: RwLock::new(HashMap::new()),
    });
    let (changes, mut incoming) = mpsc::channel::<Change>(4096);
    for _ in 0..WORKERS {
        tasks.spawn(work(Arc::clone(&collector)));
    }
    let builder = Arc::clone(&collector);
    let (expect_tx, expect_rx) = tokio::sync::oneshot::channel::<usize>();
    tasks.spawn(async move {
        let expected = expect_rx.await.unwrap_or(0);
        let mut listed = 0;
        let mut synced = expected == 0;
        if synced {
            builder.enqueue(|g| g.synced());
        }
        // A resource that never lists (a broken aggregated API, a refused watch) must not
        // stop collection for good: past this, the graph is judged as it is (upstream's
        // "proceeding anyways").
        let give_up = tokio::time::sleep(INITIAL_SYNC_TIMEOUT);
        tokio::pin!(give_up);
        loop {
            let change = tokio::select! {
                change = incoming.recv() => match change { Some(c) => c, None => return },
                () = &mut give_up, if !synced => {
                    synced = true;
                    tracing::warn!(listed, expected, "garbage collector: not every monitor listed; proceeding");
                    builder.enqueue(|g| g.synced());
                    continue;
                }
            };
            builder.enqueue(|g| match change {
                Change::Observed(node) => g.observe(node),
                Change::Deleted(uid) => g.remove(&uid),
                Change::Relisted { api_version, kind, seen } => {
                    g.retain_listed(&api_version, &kind, &seen)
                }
                Change::Listed => {
                    listed += 1;
                    if listed == expected && !synced {
                        synced = true;
                        tracing::info!(
                            objects = g.len(),
                            "garbage collector: every monitor listed"
                        );
                        g.synced()
                    } else {
                        Vec::new()
                    }
                }
            });
        }
    });
    monitor_resources(root, collector, changes, expect_tx, &mut tasks).await;
}

impl Collector {
    /// Applies a change to the graph and queues the work it answers.
    fn enqueue(&self, change: impl FnOnce(&mut Graph) -> Vec<Work>) {
        let work = match self.graph.lock() {
            Ok(mut graph) => change(&mut graph),
            Err(_) => return,
        };
        for w in work {
            self.queue.add(w);
        }
    }

    fn node(&self, uid: &str) -> Option<Node> {
        self.graph.lock().ok()?.get(uid).cloned()
    }

    fn resource(&self, api_version: &str, kind: &str) -> Option<(ApiResource, bool)> {
        let resources = self.resources.read().ok()?;
        resources.get(&(api_version.to_string(), kind.to_string())).cloned()
    }

    /// The API of the object `identity`, if its kind is served.
    fn api(&self, identity: &Identity) -> Option<Api<DynamicObject>> {
        let (resource, namespaced) = self.resource(&identity.api_version, &identity.kind)?;
        Some(if namespaced {
            Api::namespaced_with(self.client.clone(), &identity.namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        })
    }
}

/// Discovers the resources and keeps one monitor per resource running, for ever.
async fn monitor_resources(
    root: Client,
    collector: Arc<Collector>,
    changes: mpsc::Sender<Change>,
    expect: tokio::sync::oneshot::Sender<usize>,
    tasks: &mut tokio::task::JoinSet<()>,
) {
    let mut monitors: HashMap<KindKey, tokio::task::AbortHandle> = HashMap::new();
    let mut expect = Some(expect);
    loop {
        match discover(&root).await {
            Ok(found) => {
                let watched: HashMap<KindKey, (ApiResource, bool)> = found
                    .iter()
                    .map(|(r, ns)| ((r.api_version.clone(), r.kind.clone()), (r.clone(), *ns)))
                    .collect();
                if let Ok(mut resources) = collector.resources.write() {
                    *resources = watched.clone();
                }
                let first = expect.take();
                let mut started = 0;
                for (key, (resource, _)) in &watched {
                    if !monitors.contains_key(key) {
                        let task = monitor(
                            root.clone(),
                            resource.clone(),
                            changes.clone(),
                            first.is_some(),
                        );
                        monitors.insert(key.clone(), tasks.spawn(task));
                        started += 1;
                    }
                }
                if let Some(first) = first {
                    let _ = first.send(started);
                }
                let gone: Vec<KindKey> =
                    monitors.keys().filter(|k| !watched.contains_key(*k)).cloned().collect();
                for key in gone {
                    if let Some(task) = monitors.remove(&key) {
                        task.abort();
                    }
                    let (api_version, kind) = key;
                    let _ = changes
                        .send(Change::Relisted { api_version, kind, seen: HashSet::new() })
                        .await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "garbage collector: discovery failed"),
        }
        tokio::time::sleep(REDISCOVER).await;
    }
}

/// The resources the collector watches, with whether each is namespaced.
async fn discover(client: &Client) -> Result<Vec<(ApiResource, bool)>, kube::Error> {
    Ok(crate::runtime::discovery::resources(client)
        .await?
        .into_iter()
        .filter(|(r, caps)| {
            [verbs::LIST, verbs::WATCH, verbs::DELETE].iter().all(|v| caps.supports_operation(v))
                && !IGNORED.contains(&(r.group.as_str(), r.plural.as_str()))
        })
        .map(|(r, caps)| (r, caps.scope == Scope::Namespaced))
        .collect())
}

/// Watches one resource's metadata into the graph, for ever.
async fn monitor(
    root: Client,
    resource: ApiResource,
    changes: mpsc::Sender<Change>,
    initial: bool,
) {
    // Decoded without `managedFields`: the graph keeps none of them.
    let api: Api<Trimmed<PartialObjectMeta<DynamicObject>>> = Api::all_with(root, &resource);
    let events = watcher::watcher(api, watcher::Config::default()).map_ok(untrimmed);
    let mut events = events.default_backoff().boxed();
    let mut listing: HashSet<String> = HashSet::new();
    let mut first_list = initial;
    let node = |m: PartialObjectMeta<DynamicObject>| node_of(&resource, m);
    while let Some(event) = events.next().await {
        let change = match event {
            Ok(watcher::Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(watcher::Event::InitApply(m)) => {
                let Some(n) = node(m) else { continue };
                listing.insert(n.identity.uid.clone());
                Change::Observed(n)
            }
            Ok(watcher::Event::Apply(m)) => {
                let Some(n) = node(m) else { continue };
                Change::Observed(n)
            }
            Ok(watcher::Event::Delete(m)) => {
                let Some(uid) = m.metadata.uid else { continue };
                Change::Deleted(uid)
            }
            Ok(watcher::Event::InitDone) => {
                let relisted = Change::Relisted {
                    api_version: resource.api_version.clone(),
                    kind: resource.kind.clone(),
                    seen: std::mem::take(&mut listing),
                };
                if changes.send(relisted).await.is_err() {
                    return;
                }
                if std::mem::take(&mut first_list) {
                    Change::Listed
                } else {
                    continue;
                }
            }
            Err(e) => {
                tracing::debug!(resource = %resource.plural, error = %e, "garbage collector: watch failed");
                continue;
            }
        };
        if changes.send(change).await.is_err() {
            return;
        }
    }
}

/// The graph's node of an object's metadata.
fn node_of(resource: &ApiResource, meta: PartialObjectMeta<DynamicObject>) -> Option<Node> {
    let m = meta.metadata;
    let finalizers = m.finalizers.unwrap_or_default();
    Some(Node {
        identity: Identity {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
            namespace: m.namespace.unwrap_or_default(),
            name: m.name?,
            uid: m.uid?,
        },
        resource_version: m.resource_version.unwrap_or_default(),
        owners: m.owner_references.unwrap_or_default(),
        deleting: m.deletion_timestamp.is_some(),
        orphan: finalizers.iter().any(|f| f == ORPHAN),
        foreground: finalizers.iter().any(|f| f == FOREGROUND),
    })
}

/// A worker: takes work off the queue for ever.
async fn work(collector: Arc<Collector>) {
    loop {
        let item = collector.queue.next().await;
        let result = match &item {
            Work::AttemptToDelete(uid) => attempt_to_delete(&collector, uid).await,
            Work::Orphan(uid) => orphan(&collector, uid).await,
            Work::DeleteDependents(uid) => delete_dependents(&collector, uid).await,
        };
        match result {
            Ok(()) => collector.queue.done(&item),
            Err(e) => {
                tracing::debug!(?item, error = %e, "garbage collector: retrying");
                collector.queue.retry(item);
            }
        }
    }
}

/// Judges an object whose owners may be gone, and deletes it or cuts the dead owners off.
async fn attempt_to_delete(collector: &Collector, uid: &str) -> Result<(), kube::Error> {
    let Some(cached) = collector.node(uid) else { return Ok(()) };
    // Judged on the object as it is now, not as the graph last saw it: it may have been
    // adopted or re-parented meanwhile (upstream reads it again too).
    let Some(api) = collector.api(&cached.identity) else { return Ok(()) };
    let Some(live) = api.get_opt(&cached.identity.name).await? else { return Ok(()) };
    if live.metadata.uid.as_deref() != Some(uid) {
        return Ok(());
    }
    let mut node = cached;
    node.owners = live.metadata.owner_references.clone().unwrap_or_default();
    node.resource_version = live.metadata.resource_version.clone().unwrap_or_default();
    node.deleting = live.metadata.deletion_timestamp.is_some();
    let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
    node.orphan = finalizers.iter().any(|f| f == ORPHAN);
    node.foreground = finalizers.iter().any(|f| f == FOREGROUND);
    let mut owners = Vec::with_capacity(node.owners.len());
    for reference in &node.owners {
        let known = collector.node(&reference.uid);
        let state = match known {
            Some(owner) if owner.deleting_dependents() => Owner::WaitingForDependents,
            Some(_) => Owner::Solid,
            None => lookup_owner(collector, &node, reference).await?,
        };
        owners.push((reference.clone(), state));
    }
    let has_dependents =
        collector.graph.lock().map(|g| !g.dependents(uid).is_empty()).unwrap_or(true);
    match decide::judge(&node, &owners, has_dependents) {
        Verdict::Keep => Ok(()),
        Verdict::CutOff(uids) => cut_off(collector, &node, &uids).await,
        Verdict::Delete(propagation) => delete(collector, &node, propagation).await,
    }
}

/// Reads an owner the graph does not hold, to tell a dangling reference from an owner not
/// seen yet.
async fn lookup_owner(
    collector: &Collector,
    dependent: &Node,
    reference: &OwnerReference,
) -> Result<Owner, kube::Error> {
    let Some((resource, namespaced)) = collector.resource(&reference.api_version, &reference.kind)
    else {
        // A kind the server does not serve (now): keep the dependent.
        return Ok(Owner::Solid);
    };
    let api: Api<DynamicObject> = if namespaced {
        if dependent.identity.namespace.is_empty() {
            // A cluster-scoped object cannot be owned by a namespaced one; leave it be.
            return Ok(Owner::Solid);
        }
        Api::namespaced_with(collector.client.clone(), &dependent.identity.namespace, &resource)
    } else {
        Api::all_with(collector.client.clone(), &resource)
    };
    Ok(match api.get_opt(&reference.name).await? {
        None => Owner::Absent,
        Some(owner) if owner.metadata.uid.as_deref() != Some(reference.uid.as_str()) => {
            Owner::Absent
        }
        Some(owner)
            if owner.metadata.deletion_timestamp.is_some()
                && owner.metadata.finalizers.iter().flatten().any(|f| f == FOREGROUND) =>
        {
            Owner::WaitingForDependents
        }
        Some(_) => Owner::Solid,
    })
}

/// Deletes a garbage object, guarded by its uid.
async fn delete(
    collector: &Collector,
    node: &Node,
    propagation: Propagation,
) -> Result<(), kube::Error> {
    let Some(api) = collector.api(&node.identity) else { return Ok(()) };
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(node.identity.uid.clone()),
            resource_version: Some(node.resource_version.clone()).filter(|rv| !rv.is_empty()),
        }),
        propagation_policy: Some(match propagation {
            Propagation::Background => PropagationPolicy::Background,
            Propagation::Foreground => PropagationPolicy::Foreground,
            Propagation::Orphan => PropagationPolicy::Orphan,
        }),
        ..DeleteParams::default()
    };
    tracing::debug!(kind = %node.identity.kind, name = %node.identity.name, namespace = %node.identity.namespace, propagation = propagation.as_str(), "garbage collector: deleting");
    match api.delete(&node.identity.name, &params).await {
        Ok(_) => Ok(()),
        // Gone already, or another object by that name now.
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the references to `owner_uids` from `node`, guarded by its resourceVersion.
async fn cut_off(
    collector: &Collector,
    node: &Node,
    owner_uids: &[String],
) -> Result<(), kube::Error> {
    let Some(api) = collector.api(&node.identity) else { return Ok(()) };
    let Some(current) = api.get_opt(&node.identity.name).await? else { return Ok(()) };
    if current.metadata.uid.as_deref() != Some(node.identity.uid.as_str()) {
        return Ok(());
    }
    let references = current.metadata.owner_references.unwrap_or_default();
    let kept: Vec<&OwnerReference> =
        references.iter().filter(|o| !owner_uids.contains(&o.uid)).collect();
    if kept.len() == references.len() {
        return Ok(());
    }
    let patch = json!({"metadata": {
        "resourceVersion": current.metadata.resource_version,
        "ownerReferences": if kept.is_empty() { serde_json::Value::Null } else { json!(kept) },
    }});
    ignore_gone(
        api.patch(&node.identity.name, &PatchParams::default(), &Patch::Merge(&patch)).await,
    )
}

/// Removes the finalizer `finalizer` from the object `node`, guarded by its resourceVersion.
async fn remove_finalizer(
    collector: &Collector,
    node: &Node,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let Some(api) = collector.api(&node.identity) else { return Ok(()) };
    let Some(current) = api.get_opt(&node.identity.name).await? else { return Ok(()) };
    if current.metadata.uid.as_deref() != Some(node.identity.uid.as_str()) {
        return Ok(());
    }
    let finalizers = current.metadata.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == finalizer) {
        return Ok(());
    }
    let kept: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
    let patch = json!({"metadata": {
        "resourceVersion": current.metadata.resource_version,
        "finalizers": if kept.is_empty() { serde_json::Value::Null } else { json!(kept) },
    }});
    ignore_gone(
        api.patch(&node.identity.name, &PatchParams::default(), &Patch::Merge(&patch)).await,
    )
}

/// Cuts every dependent off an owner deleted with `Orphan`, then lets the owner go.
async fn orphan(collector: &Collector, uid: &str) -> Result<(), kube::Error> {
    let Some(owner) = collector.node(uid) else { return Ok(()) };
    if !(owner.deleting && owner.orphan) {
        return Ok(());
    }
    let dependents: Vec<Node> = collector
        .graph
        .lock()
        .map(|g| g.dependents(uid).into_iter().cloned().collect())
        .unwrap_or_default();
    for dependent in &dependents {
        cut_off(collector, dependent, &[uid.to_string()]).await?;
    }
    remove_finalizer(collector, &owner, ORPHAN).await
}

/// Deletes the blocking dependents of an owner deleted with `Foreground`; once none is
/// left, lets the owner go.
async fn delete_dependents(collector: &Collector, uid: &str) -> Result<(), kube::Error> {
    let Some(owner) = collector.node(uid) else { return Ok(()) };
    if !owner.deleting_dependents() {
        return Ok(());
    }
    let blocking: Vec<String> = collector
        .graph
        .lock()
        .map(|g| g.blocking_dependents(uid).into_iter().map(|d| d.identity.uid.clone()).collect())
        .unwrap_or_default();
    if blocking.is_empty() {
        return remove_finalizer(collector, &owner, FOREGROUND).await;
    }
    for dependent in blocking {
        collector.queue.add(Work::AttemptToDelete(dependent));
    }
    Ok(())
}

/// A write that lost to the object going away or changing is retried through the graph.
fn ignore_gone<T>(result: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}
