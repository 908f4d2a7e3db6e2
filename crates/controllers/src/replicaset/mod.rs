//! The ReplicaSet controller (upstream's `replicaset-controller`): keeps `replicas` active
//! pods matching the selector, adopting orphans and releasing pods that no longer match,
//! creating in slow-start batches and deleting the least valuable first, and reports the
//! set's status. Expectations keep it from acting again before its cache shows what it did.

pub mod manage;
pub mod rank;
pub mod status;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::core::SelectorExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use crate::runtime::expectations::{Expectations, Wait};
use crate::runtime::owner::controller_of;
use crate::runtime::pod_control::ApiPodControl;
use krust_client::Events;
use krust_client::Informer;
use krust_client::informer::ByNamespace;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "replicaset-controller";

/// How often every set is looked at again even without events (a pod deleted while the
/// cache re-listed announces nothing).
const RESYNC: Duration = Duration::from_secs(300);

/// What a pass over a set reads and writes through: shared with the ReplicationController
/// controller, which manages its controllers in their ReplicaSet form.
pub(crate) struct Context {
    pub(crate) client: Client,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
    control: ApiPodControl,
    events: Events,
    /// By the set's uid.
    expectations: Arc<Expectations>,
}

impl Context {
    /// Reads pods from the shared cache, writes as `client` (events as `component`).
    pub(crate) fn new(client: Client, pods: &Informer<Pod>, component: &str) -> Self {
        Self {
            control: ApiPodControl::new(client.clone()),
            events: Events::new(client.clone(), component),
            client,
            pods: pods.store(),
            pods_by_namespace: pods.by_namespace(),
            expectations: Arc::new(Expectations::default()),
        }
    }

    /// The expectations, for the pod watch to count events toward.
    pub(crate) fn expectations(&self) -> Arc<Expectations> {
        Arc::clone(&self.expectations)
    }
}

/// What a pass decided for the set's status and when to look again.
pub(crate) struct Synced {
    /// The status the set should report.
    pub(crate) status: ReplicaSetStatus,
    /// When to look again.
    pub(crate) next: Action,
}

/// Runs the controller: woken by the shared ReplicaSet and pod caches, writing as `client`.
pub fn run(
    client: Client,
    sets: &mut Informer<ReplicaSet>,
    pods: &mut Informer<Pod>,
) -> impl Future<Output = ()> + Send + 'static {
    let by_selector = sets.store();
    let ctx = Context::new(client, pods, NAME);
    let (observed, pod_store) = (ctx.expectations(), pods.store());
    Controller::for_shared_stream(sets.subscribe(), sets.store())
        .watches_shared_stream(pods.subscribe(), move |pod| {
            observe(&pod, &pod_store, &observed);
            sets_of(&pod, &by_selector)
        })
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
}

/// Counts a pod's event toward its controller's expectations: its creation is seen, and its
/// deletion once it is gone from the cache or marked for deletion.
pub(crate) fn observe(pod: &Pod, pods: &Store<Pod>, expectations: &Expectations) {
    let Some(owner) = controller_of(&pod.metadata) else { return };
    let gone =
        pod.metadata.deletion_timestamp.is_some() || pods.get(&ObjectRef::from(pod)).is_none();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    expectations.observe(&owner.uid, name, pod.metadata.uid.as_deref().unwrap_or_default(), gone);
}

/// The sets a pod's change concerns: its controller if that is a ReplicaSet, or, for an
/// orphan, every set of its namespace that selects it (it may be adopted).
fn sets_of(pod: &Pod, sets: &Store<ReplicaSet>) -> Vec<ObjectRef<ReplicaSet>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        if owner.kind == "ReplicaSet" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    sets.state()
        .iter()
        .filter(|rs| rs.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|rs| manage::selector(rs).is_some_and(|s| s.matches(labels)))
        .map(|rs| ObjectRef::from(rs.as_ref()))
        .collect()
}

fn error_policy(rs: Arc<ReplicaSet>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(replicaset = %rs.name_any(), error = %error, "replicaset sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let synced = sync(&rs, manage::REPLICA_SET, &ctx).await;
    if !same_status(rs.status.as_ref(), &synced.status) {
        let mut updated = (*rs).clone();
        updated.status = Some(synced.status);
        let sets: Api<ReplicaSet> =
            Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
        match sets
            .replace_subresource("status", &rs.name_any(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            // Gone, or changed meanwhile: its event wakes this set again.
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {
                return Ok(Action::await_change());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(synced.next)
}

/// One pass over the set `rs` (of `kind`): claims, creates and deletes pods, records events,
/// and answers the status it should report.
pub(crate) async fn sync(rs: &ReplicaSet, kind: manage::OwnerKind, ctx: &Context) -> Synced {
    // Acting on a cache still filling would create every pod again.
    krust_client::informer::ready(&ctx.pods).await;
    let namespace = rs.namespace().unwrap_or_default();
    let name = rs.name_any();
    let uid = rs.metadata.uid.clone().unwrap_or_default();
    let now = Timestamp::now();
    let pods = ctx.pods_by_namespace.objects(&namespace, &ctx.pods);
    let mut plan = manage::plan(rs, &pods, now);
    let live: std::collections::HashSet<&str> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    let in_cache = |name: &str| ctx.pods.get(&ObjectRef::new(name).within(&namespace)).is_some();
    let mut wait = None;
    if rs.metadata.deletion_timestamp.is_some() {
        ctx.expectations.forget(&uid);
    } else if let Wait::Pending(left) = ctx.expectations.check(&uid, in_cache, |u| live.contains(u))
    {
        // What the last pass did is not in the cache yet: only adopt, release and report.
        plan.create = 0;
        plan.delete.clear();
        wait = Some(left);
    }
    let outcome = manage::carry_out(&ctx.control, rs, kind, &plan).await;
    ctx.expectations.expect(&uid, outcome.created.iter().cloned(), outcome.deleted.iter().cloned());
    let mut regarding = rs.object_ref(&());
    regarding.api_version = Some(kind.api_version.to_string());
    regarding.kind = Some(kind.kind.to_string());
    for pod in &outcome.created {
        ctx.events.normal(
            regarding.clone(),
            "SuccessfulCreate",
            "Create",
            format!("Created pod: {pod}"),
        );
    }
    for pod in &outcome.deleted_names {
        ctx.events.normal(
            regarding.clone(),
            "SuccessfulDelete",
            "Delete",
            format!("Deleted pod: {pod}"),
        );
    }
    if let Some((reason, message)) = &outcome.failure {
        let (action, verb) =
            if *reason == "FailedCreate" { ("Create", "creating") } else { ("Delete", "deleting") };
        ctx.events.warning(regarding, reason, action, format!("Error {verb}: {message}"));
    }
    if !outcome.created.is_empty() || !outcome.deleted.is_empty() {
        tracing::debug!(set = %name, kind = kind.kind, %namespace, created = outcome.created.len(), deleted = outcome.deleted.len(), "replicas managed");
    }
    let status = status::status(rs, &plan.active, outcome.failure.clone(), now);
    let next = if outcome.failure.is_some() {
        Action::requeue(Duration::from_secs(5))
    } else {
        [wait, status::next_available(rs, &plan.active, now), Some(RESYNC)]
            .into_iter()
            .flatten()
            .min()
            .map_or_else(Action::await_change, Action::requeue)
    };
    Synced { status, next }
}

/// Whether two statuses say the same, condition times aside.
pub(crate) fn same_status(
    current: Option<&k8s_openapi::api::apps::v1::ReplicaSetStatus>,
    wanted: &k8s_openapi::api::apps::v1::ReplicaSetStatus,
) -> bool {
    let Some(current) = current else { return false };
    let strip = |s: &k8s_openapi::api::apps::v1::ReplicaSetStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = None;
        }
        s
    };
    strip(current) == strip(wanted)
}
