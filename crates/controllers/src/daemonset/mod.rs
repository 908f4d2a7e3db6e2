//! The DaemonSet controller (upstream's `daemon-set-controller`): a pod on each node the
//! DaemonSet's template admits (`placement.rs`), pinned there by node affinity for the
//! scheduler to bind; new nodes get theirs, nodes that no longer admit it lose it; a template
//! change rolls out within `maxUnavailable` or `maxSurge` (`plan.rs`), with the revision
//! history kept in ControllerRevisions for `kubectl rollout` (`runtime/history.rs`).

pub mod placement;
pub mod plan;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use crate::deployment::revision::template_hash;
use crate::runtime::expectations::{Expectations, Wait};
use crate::runtime::history;
use crate::runtime::owner::controller_of;
use crate::runtime::pod_control::{ApiPodControl, PodControl};
use krust_client::informer::ByNamespace;
use krust_client::{Events, Informer};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "daemon-set-controller";

/// How often every DaemonSet is looked at again without events.
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: Client,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    revisions_by_namespace: ByNamespace,
    control: ApiPodControl,
    events: Events,
    expectations: Arc<Expectations>,
}

/// Runs the controller: woken by the shared DaemonSet, pod and node caches (every set looks
/// again when a node changes), writing as `client`.
pub fn run(
    client: Client,
    sets: &mut Informer<DaemonSet>,
    pods: &mut Informer<Pod>,
    nodes: &mut Informer<Node>,
    revisions: &Informer<ControllerRevision>,
) -> impl Future<Output = ()> + Send + 'static {
    let expectations = Arc::new(Expectations::default());
    let (observed, pod_store) = (Arc::clone(&expectations), pods.store());
    let all_sets = sets.store();
    let ctx = Context {
        control: ApiPodControl::new(client.clone()),
        events: Events::new(client.clone(), NAME),
        client,
        pods: pods.store(),
        pods_by_namespace: pods.by_namespace(),
        nodes: nodes.store(),
        revisions: revisions.store(),
        revisions_by_namespace: revisions.by_namespace(),
        expectations,
    };
    Controller::for_shared_stream(sets.subscribe(), sets.store())
        .watches_shared_stream(pods.subscribe(), move |pod| {
            crate::replicaset::observe(&pod, &pod_store, &observed);
            let owner = controller_of(&pod.metadata)?;
            (owner.kind == "DaemonSet" && owner.api_version.starts_with("apps/"))
                .then(|| ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default()))
        })
        .watches_shared_stream(nodes.subscribe(), move |_node| {
            all_sets.state().iter().map(|ds| ObjectRef::from(ds.as_ref())).collect::<Vec<_>>()
        })
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(ds: Arc<DaemonSet>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(daemonset = %ds.name_any(), error = %error, "daemonset sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    krust_client::informer::ready(&ctx.pods).await;
    krust_client::informer::ready(&ctx.nodes).await;
    krust_client::informer::ready(&ctx.revisions).await;
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = ds.namespace().unwrap_or_default();
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let hash = template_hash(&template, ds.status.as_ref().and_then(|s| s.collision_count));
    let pods: Vec<Arc<Pod>> = ctx
        .pods_by_namespace
        .objects(&namespace, &ctx.pods)
        .into_iter()
        .filter(|p| controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    sync_history(&ctx, &ds, &hash, &pods).await?;

    let nodes = ctx.nodes.state();
    let now = Timestamp::now();
    let mut plan = plan::plan(&ds, &nodes, &pods, &hash, now);
    let live: std::collections::HashSet<&str> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    let in_cache = |name: &str| ctx.pods.get(&ObjectRef::new(name).within(&namespace)).is_some();
    let mut wait = None;
    if let Wait::Pending(left) = ctx.expectations.check(&uid, in_cache, |u| live.contains(u)) {
        plan.create.clear();
        plan.delete.clear();
        wait = Some(left);
    }
    let regarding = ds.object_ref(&());
    for pod in &plan.failed {
        let node = plan::node_of(pod).unwrap_or_default();
        let message = format!(
            "Found failed daemon pod {namespace}/{} on node {node}, will try to kill it",
            pod.name_any()
        );
        ctx.events.warning(regarding.clone(), "FailedDaemonPod", "Sync", message);
    }
    let deleted = delete(&ctx, &namespace, &plan.delete, &regarding).await;
    let created = create(&ctx, &ds, &hash, &plan.create, &regarding).await;
    ctx.expectations.expect(&uid, created, deleted);

    let mut status = plan.status.clone();
    if status.number_available.is_none() {
        status.number_available = Some(0);
    }
    let mut current = ds.status.clone().unwrap_or_default();
    if current.number_available.is_none() {
        current.number_available = Some(0);
    }
    if current != status {
        let mut updated = (*ds).clone();
        updated.status = Some(status);
        let api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &namespace);
        match api
            .replace_subresource("status", &ds.name_any(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(e),
        }
    }
    let next = [wait, plan.requeue, Some(RESYNC)].into_iter().flatten().min();
    Ok(next.map_or_else(Action::await_change, Action::requeue))
}

/// Brings the ControllerRevisions in line with the template (see `runtime/history.rs`).
async fn sync_history(
    ctx: &Context,
    ds: &DaemonSet,
    hash: &str,
    pods: &[Arc<Pod>],
) -> Result<(), kube::Error> {
    let namespace = ds.namespace().unwrap_or_default();
    let owned = ctx.revisions_by_namespace.objects(&namespace, &ctx.revisions);
    let uid = ds.metadata.uid.as_deref();
    let mine: Vec<&ControllerRevision> = owned
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| controller_of(&r.metadata).is_some_and(|o| Some(o.uid.as_str()) == uid))
        .collect();
    let used: Vec<&str> = pods
        .iter()
        .filter_map(|p| {
            p.metadata.labels.as_ref()?.get(placement::REVISION_HASH).map(String::as_str)
        })
        .collect();
    let spec = ds.spec.clone().unwrap_or_default();
    let owner = history::Owner {
        meta: &ds.metadata,
        kind: "DaemonSet",
        template: &spec.template,
        limit: spec.revision_history_limit,
    };
    let changes = history::changes(&owner, hash, &mine, &used);
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    if let Some(revision) = &changes.create {
        match api.create(&PostParams::default(), revision).await {
            Ok(_) => {}
            // Made by a pass whose cache had not shown it yet.
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(revision) = &changes.renumber {
        match api.replace(&revision.name_any(), &PostParams::default(), revision).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    for revision in &changes.delete {
        match api.delete(&revision.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Deletes `pods`; answers the uids deleted.
async fn delete(
    ctx: &Context,
    namespace: &str,
    pods: &[Arc<Pod>],
    regarding: &ObjectReference,
) -> Vec<String> {
    let results = join_all(pods.iter().map(|pod| async move {
        let (name, uid) = (pod.name_any(), pod.metadata.uid.clone().unwrap_or_default());
        let result = ctx.control.delete(namespace, &name, &uid).await;
        (name, uid, result)
    }))
    .await;
    let mut deleted = Vec::new();
    for (name, uid, result) in results {
        match result {
            Ok(()) => {
                ctx.events.normal(
                    regarding.clone(),
                    "SuccessfulDelete",
                    "Delete",
                    format!("Deleted pod: {name}"),
                );
                deleted.push(uid);
            }
            Err(e) => {
                ctx.events.warning(
                    regarding.clone(),
                    "FailedDelete",
                    "Delete",
                    format!("Error deleting: {e}"),
                );
            }
        }
    }
    deleted
}

/// Creates a pod on each of `nodes` in slow-start batches; answers the names created.
async fn create(
    ctx: &Context,
    ds: &DaemonSet,
    hash: &str,
    nodes: &[String],
    regarding: &ObjectReference,
) -> Vec<String> {
    let namespace = ds.namespace().unwrap_or_default();
    let mut created = Vec::new();
    let mut batch = 1;
    let mut left = nodes;
    while !left.is_empty() {
        let (now, rest) = left.split_at(batch.min(left.len()));
        let results = join_all(now.iter().map(|node| {
            let pod = placement::pod_for(ds, node, hash);
            let namespace = namespace.as_str();
            async move { ctx.control.create(namespace, &pod).await }
        }))
        .await;
        let mut failed = false;
        for result in results {
            match result {
                Ok(pod) => {
                    let name = pod.name_any();
                    ctx.events.normal(
                        regarding.clone(),
                        "SuccessfulCreate",
                        "Create",
                        format!("Created pod: {name}"),
                    );
                    created.push(name);
                }
                Err(e) => {
                    failed = true;
                    ctx.events.warning(
                        regarding.clone(),
                        "FailedCreate",
                        "Create",
                        format!("Error creating: {e}"),
                    );
                }
            }
        }
        if failed {
            break;
        }
        left = rest;
        batch *= 2;
    }
    created
}
