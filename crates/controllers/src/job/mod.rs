//! The Job controller (upstream's `job-controller`): runs a Job's pods to completion.
//! NonIndexed Jobs keep `parallelism` pods until `completions` succeeded; Indexed Jobs give
//! each pod a completion index (annotation, label, `JOB_COMPLETION_INDEX`, hostname). Failed
//! pods are replaced after an exponential back-off until `backoffLimit` (or
//! `backoffLimitPerIndex`), `activeDeadlineSeconds` or a `podFailurePolicy` rule fails the
//! Job; a `successPolicy` may complete it early; suspension deletes its active pods.
//!
//! Pods are tracked with the `batch.kubernetes.io/job-tracking` finalizer: a finished pod is
//! first recorded in `status.uncountedTerminatedPods`, then its finalizer is removed, then it
//! is counted, so that no pod is counted twice or lost, even deleted. The terminal condition
//! comes after `FailureTarget`/`SuccessCriteriaMet`, once no pod is uncounted or terminating.
//! Pods of finished or deleted Jobs, and orphans, lose the finalizer too.
//!
//! `manage.rs` decides (counts, criteria, pods to create and delete), `status.rs` tracks
//! finished pods and conditions, `indexes.rs`, `failure_policy.rs` and `backoff.rs` are
//! upstream's helpers of the same names; this file does the writes.

pub mod backoff;
pub mod failure_policy;
pub mod indexes;
pub mod manage;
pub mod status;

#[cfg(test)]
mod fixtures;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use futures::{StreamExt, stream};
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::replicaset::status::is_ready;
use crate::runtime::expectations::{Expectations, Wait};
use crate::runtime::owner::{self, controller_of, controller_ref, owners_patch};
use crate::runtime::pod_control::{ApiPodControl, PodControl};
use krust_client::Events;
use krust_client::Informer;
use krust_client::informer::ByNamespace;
use manage::{
    Action, Assessment, Inputs, NewPod, TRACKING_FINALIZER, has_finalizer, is_job_finished,
};
use status::{Done, Note};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "job-controller";

/// The value of `spec.managedBy` that leaves a Job to this controller.
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";

/// How often every Job is looked at again even without events.
const RESYNC: Duration = Duration::from_secs(300);

/// How many finalizer removals run at once for pods of finished or deleted Jobs.
const ORPHAN_CONCURRENCY: usize = 8;

/// Pod writes of the Job controller: those of every workload controller, and the removal of
/// the tracking finalizer.
pub trait JobPodControl: PodControl {
    /// Removes the tracking finalizer from `pod` (a pod already gone counts as done).
    fn remove_finalizer(&self, pod: &Pod) -> impl Future<Output = Result<(), kube::Error>> + Send;
}

impl JobPodControl for ApiPodControl {
    async fn remove_finalizer(&self, pod: &Pod) -> Result<(), kube::Error> {
        remove_finalizer(self.client(), pod).await
    }
}

async fn remove_finalizer(client: &Client, pod: &Pod) -> Result<(), kube::Error> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}});
    match Api::<Pod>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Finalizer removals a Job made that the cache does not show yet (upstream's
/// `uidTrackingExpectations`): their pods are neither counted again nor touched again.
#[derive(Debug, Default)]
struct Removals {
    by_job: Mutex<HashMap<String, HashSet<String>>>,
}

impl Removals {
    fn expect(&self, job: &str, pods: impl IntoIterator<Item = String>) {
        if let Ok(mut m) = self.by_job.lock() {
            m.entry(job.to_string()).or_default().extend(pods);
        }
    }

    fn observed(&self, job: &str, pod: &str) {
        if let Ok(mut m) = self.by_job.lock()
            && let Some(set) = m.get_mut(job)
        {
            set.remove(pod);
            if set.is_empty() {
                m.remove(job);
            }
        }
    }

    /// The pending removals of `job`, dropping those the cache shows (`shows(uid)`).
    fn pending(&self, job: &str, shows: impl Fn(&str) -> bool) -> HashSet<String> {
        let Ok(mut m) = self.by_job.lock() else { return HashSet::new() };
        let Some(set) = m.get_mut(job) else { return HashSet::new() };
        set.retain(|uid| !shows(uid));
        let pending = set.clone();
        if set.is_empty() {
            m.remove(job);
        }
        pending
    }

    fn forget(&self, job: &str) {
        if let Ok(mut m) = self.by_job.lock() {
            m.remove(job);
        }
    }
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
    control: ApiPodControl,
    events: Events,
    /// Pod creates and deletes, by the Job's uid.
    expectations: Arc<Expectations>,
    /// Finalizer removals, by the Job's uid.
    removals: Arc<Removals>,
    /// Back-off records, by the Job's uid.
    backoff: Mutex<HashMap<String, backoff::Record>>,
    /// The resourceVersion a Job had when this controller last wrote its status, by uid: a
    /// cached Job still at that version is older than the controller's own write.
    written_over: Mutex<HashMap<String, String>>,
}

/// Runs the controller: woken by the shared Job and pod caches, writing as `client`.
pub fn run(
    client: Client,
    jobs: &mut Informer<Job>,
    pods: &mut Informer<Pod>,
) -> impl Future<Output = ()> + Send + 'static {
    let expectations = Arc::new(Expectations::default());
    let removals = Arc::new(Removals::default());
    let (observed, removed, pod_store) =
        (Arc::clone(&expectations), Arc::clone(&removals), pods.store());
    let ctx = Context {
        control: ApiPodControl::new(client.clone()),
        events: Events::new(client.clone(), NAME),
        client: client.clone(),
        pods: pods.store(),
        pods_by_namespace: pods.by_namespace(),
        expectations,
        removals,
        backoff: Mutex::new(HashMap::new()),
        written_over: Mutex::new(HashMap::new()),
    };
    let orphans = orphans(
        client,
        jobs.store(),
        pods.store(),
        pods.by_namespace(),
        jobs.subscribe(),
        pods.subscribe(),
    );
    let controller = Controller::for_shared_stream(jobs.subscribe(), jobs.store())
        .watches_shared_stream(pods.subscribe(), move |pod| {
            observe(&pod, &pod_store, &observed, &removed);
            job_of(&pod)
        })
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()));
    async move {
        futures::join!(controller, orphans);
    }
}

/// The Job that controls the pod, if a Job does.
fn job_of(pod: &Pod) -> Option<ObjectRef<Job>> {
    let owner = controller_of(&pod.metadata)?;
    (owner.kind == "Job" && owner.api_version == "batch/v1")
        .then(|| ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default()))
}

/// Counts a pod's event toward its Job's expectations: its creation is seen; its deletion
/// once it is gone or marked for deletion; its finalizer's removal once gone or without it.
fn observe(pod: &Pod, pods: &Store<Pod>, expectations: &Expectations, removals: &Removals) {
    let Some(owner) = controller_of(&pod.metadata) else { return };
    let cached = pods.get(&ObjectRef::from(pod));
    let gone = pod.metadata.deletion_timestamp.is_some() || cached.is_none();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    expectations.observe(&owner.uid, name, uid, gone);
    if cached.is_none_or(|p| !has_finalizer(&p)) {
        removals.observed(&owner.uid, uid);
    }
}

fn error_policy(job: Arc<Job>, error: &kube::Error, _: Arc<Context>) -> Requeue {
    tracing::debug!(job = %job.name_any(), error = %error, "job sync failed");
    Requeue::requeue(Duration::from_secs(1))
}

/// Whether another controller manages the Job (`spec.managedBy`).
fn managed_elsewhere(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.managed_by.as_deref()).is_some_and(|m| m != MANAGED_BY)
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Requeue, kube::Error> {
    // Acting on a cache still filling would create every pod again.
    krust_client::informer::ready(&ctx.pods).await;
    let uid = job.metadata.uid.clone().unwrap_or_default();
    if managed_elsewhere(&job) {
        return Ok(Requeue::await_change());
    }
    if is_job_finished(&job) {
        forget(&ctx, &uid);
        return Ok(Requeue::await_change());
    }
    let mode = job.spec.as_ref().and_then(|s| s.completion_mode.as_deref());
    if mode.is_some_and(|m| m != "NonIndexed" && m != "Indexed") {
        ctx.events.warning(
            job.object_ref(&()),
            "UnknownCompletionMode",
            "Sync",
            "Skipped Job sync because completion mode is unknown".into(),
        );
        return Ok(Requeue::await_change());
    }
    let version = job.metadata.resource_version.clone().unwrap_or_default();
    let stale = ctx.written_over.lock().map(|w| w.get(&uid) == Some(&version)).unwrap_or(false);
    if stale {
        // The cache has not shown the last status written yet; its event wakes the Job.
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    let namespace = job.namespace().unwrap_or_default();
    let now = Timestamp::now();
    let pods = claim(&ctx, &job, &ctx.pods_by_namespace.objects(&namespace, &ctx.pods)).await?;
    let live: HashSet<&str> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    let in_cache = |name: &str| ctx.pods.get(&ObjectRef::new(name).within(&namespace)).is_some();
    let mut wait = None;
    let satisfied = match ctx.expectations.check(&uid, in_cache, |u| live.contains(u)) {
        Wait::Satisfied => true,
        Wait::Pending(left) => {
            wait = Some(left);
            false
        }
    };
    let with_finalizer: HashSet<&str> = pods
        .iter()
        .filter(|p| has_finalizer(p))
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    let removing = ctx.removals.pending(&uid, |u| !with_finalizer.contains(u));
    let record = ctx.backoff.lock().ok().and_then(|b| b.get(&uid).copied()).unwrap_or_default();
    let inputs = Inputs { pods: &pods, satisfied, removing: &removing, backoff: record, now };
    let mut a = manage::assess(&job, &inputs);

    let (done, failure) = carry_out(&ctx, &job, &a).await;
    let regarding = job.object_ref(&());
    let notes = status::settle(&job, &mut a, done, satisfied, now);
    publish(&ctx.events, &regarding, &notes);

    let tracking = status::track(&job, &pods, &a, &removing);
    let original = normalized(job.status.clone());
    let mut current = (*job).clone();
    let mut written = false;
    if tracking.status != original {
        match write_status(&ctx, &current, tracking.status.clone()).await? {
            Some(updated) => {
                current = updated;
                written = true;
                if let Ok(mut b) = ctx.backoff.lock() {
                    b.insert(uid.clone(), a.backoff);
                }
            }
            None => return Ok(Requeue::await_change()),
        }
    }
    let mut with_finalizer = tracking.with_finalizer.clone();
    let mut removal_failed = false;
    if !tracking.remove.is_empty() {
        let uids: Vec<String> =
            tracking.remove.iter().map(|p| p.metadata.uid.clone().unwrap_or_default()).collect();
        ctx.removals.expect(&uid, uids.iter().cloned());
        let results =
            join_all(tracking.remove.iter().map(|p| ctx.control.remove_finalizer(p))).await;
        for (pod_uid, result) in uids.into_iter().zip(results) {
            match result {
                Ok(()) => {
                    with_finalizer.remove(&pod_uid);
                }
                Err(e) => {
                    ctx.removals.observed(&uid, &pod_uid);
                    tracing::debug!(job = %job.name_any(), error = %e, "cannot remove a pod's tracking finalizer");
                    removal_failed = true;
                }
            }
        }
    }
    let mut last = tracking.status.clone();
    let finished = status::conclude(&mut last, &with_finalizer, &tracking, a.terminating, now);
    if last != tracking.status || (finished && !written) {
        let Some(updated) = write_status(&ctx, &current, last.clone()).await? else {
            return Ok(Requeue::await_change());
        };
        current = updated;
        written = true;
    }
    if written {
        let over = job.metadata.resource_version.clone().unwrap_or_default();
        if let Ok(mut w) = ctx.written_over.lock() {
            w.insert(uid.clone(), over);
        }
    }
    if finished && let Some(condition) = &tracking.finished {
        let status = current.status.clone().unwrap_or_default();
        publish(&ctx.events, &regarding, &status::finished_notes(&job, &status, condition));
        forget(&ctx, &uid);
    }
    if failure || removal_failed {
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    let backoff = match a.action {
        Action::Backoff(left) => Some(left.max(Duration::from_secs(1))),
        _ => None,
    };
    let next = [wait, backoff, a.requeue, Some(RESYNC)].into_iter().flatten().min();
    Ok(next.map_or_else(Requeue::await_change, Requeue::requeue))
}

/// The pods `job` controls, after adopting matching orphans (the Job read afresh first, as
/// upstream, so that a Job deleted meanwhile adopts nothing) and releasing pods its selector
/// no longer matches.
async fn claim(ctx: &Context, job: &Job, pods: &[Arc<Pod>]) -> Result<Vec<Arc<Pod>>, kube::Error> {
    let claim = manage::claim(job, pods);
    let me = controller_ref("batch/v1", "Job", &job.metadata);
    for pod in &claim.release {
        let owners = owner::released(&pod.metadata, &me.uid);
        if let Err(e) = ctx.control.set_owners(pod, &owners).await {
            tracing::debug!(pod = %pod.name_any(), error = %e, "cannot release pod");
        }
    }
    if claim.adopt.is_empty() {
        return Ok(claim.mine);
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    let fresh = jobs.get_opt(&job.name_any()).await?;
    let may_adopt = fresh.is_some_and(|f| {
        f.metadata.uid == job.metadata.uid && f.metadata.deletion_timestamp.is_none()
    });
    let mut refused = HashSet::new();
    for pod in &claim.adopt {
        let adopted = may_adopt && {
            let owners = owner::adopted(&pod.metadata, &me);
            let mut finalizers = pod.metadata.finalizers.clone().unwrap_or_default();
            finalizers.push(TRACKING_FINALIZER.to_string());
            let mut patch = owners_patch(&pod.metadata, &owners);
            patch["metadata"]["finalizers"] = json!(finalizers);
            let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
            Api::<Pod>::namespaced(ctx.client.clone(), namespace)
                .patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .inspect_err(
                    |e| tracing::debug!(pod = %pod.name_any(), error = %e, "cannot adopt pod"),
                )
                .is_ok()
        };
        if !adopted {
            refused.insert(pod.metadata.uid.clone());
        }
    }
    Ok(claim.mine.into_iter().filter(|p| !refused.contains(&p.metadata.uid)).collect())
}

/// Drops what the controller remembers of a finished or deleted Job.
fn forget(ctx: &Context, uid: &str) {
    ctx.expectations.forget(uid);
    ctx.removals.forget(uid);
    if let Ok(mut b) = ctx.backoff.lock() {
        b.remove(uid);
    }
    if let Ok(mut w) = ctx.written_over.lock() {
        w.remove(uid);
    }
}

fn normalized(status: Option<JobStatus>) -> JobStatus {
    let mut status = status.unwrap_or_default();
    manage::normalize(status.uncounted_terminated_pods.get_or_insert_with(Default::default));
    status
}

/// Writes `status` as the status of `job` (at its resourceVersion); `None` when the Job
/// changed meanwhile or is gone (its event wakes it again).
async fn write_status(
    ctx: &Context,
    job: &Job,
    status: JobStatus,
) -> Result<Option<Job>, kube::Error> {
    let mut updated = job.clone();
    updated.status = Some(status);
    let namespace = job.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    match jobs
        .replace_subresource("status", &job.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(job) => Ok(Some(job)),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => Ok(None),
        Err(e) => Err(e),
    }
}

fn publish(
    events: &Events,
    regarding: &k8s_openapi::api::core::v1::ObjectReference,
    notes: &[Note],
) {
    for note in notes {
        if note.warning {
            events.warning(regarding.clone(), &note.reason, "Sync", note.message.clone());
        } else {
            events.normal(regarding.clone(), &note.reason, "Sync", note.message.clone());
        }
    }
}

/// Does the pod writes of `a`; answers what they achieved and whether one failed.
async fn carry_out(ctx: &Context, job: &Job, a: &Assessment) -> (Done, bool) {
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let regarding = job.object_ref(&());
    let mut done = Done::default();
    let mut failed = false;
    match &a.action {
        Action::Terminate(pods) | Action::Remove(pods) => {
            let remove_first = matches!(a.action, Action::Remove(_));
            if remove_first {
                let uids = pods.iter().map(|p| p.metadata.uid.clone().unwrap_or_default());
                ctx.expectations.expect(&uid, std::iter::empty(), uids);
            }
            let results =
                join_all(pods.iter().map(|p| delete(&ctx.control, p, remove_first))).await;
            for (pod, result) in pods.iter().zip(results) {
                let name = pod.metadata.name.clone().unwrap_or_default();
                match result {
                    Ok(()) => {
                        done.removed += 1;
                        if is_ready(pod) {
                            done.removed_ready += 1;
                        }
                        ctx.events.normal(
                            regarding.clone(),
                            "SuccessfulDelete",
                            "Delete",
                            format!("Deleted pod: {name}"),
                        );
                    }
                    Err(e) => {
                        failed = true;
                        ctx.expectations.observe(
                            &uid,
                            "",
                            pod.metadata.uid.as_deref().unwrap_or_default(),
                            true,
                        );
                        ctx.events.warning(
                            regarding.clone(),
                            "FailedDelete",
                            "Delete",
                            format!("Error deleting: {e}"),
                        );
                    }
                }
            }
        }
        Action::Create(new) => {
            let (created, error) = create(&ctx.control, job, new).await;
            done.created = i32::try_from(created.len()).unwrap_or(i32::MAX);
            ctx.expectations.expect(&uid, created.iter().cloned(), std::iter::empty());
            for name in &created {
                ctx.events.normal(
                    regarding.clone(),
                    "SuccessfulCreate",
                    "Create",
                    format!("Created pod: {name}"),
                );
            }
            if let Some(e) = error {
                failed = true;
                ctx.events.warning(
                    regarding.clone(),
                    "FailedCreate",
                    "Create",
                    format!("Error creating: {e}"),
                );
            }
        }
        Action::None | Action::Backoff(_) => {}
    }
    (done, failed)
}

/// Deletes a pod, removing its tracking finalizer first when `remove_first` (a pod deleted
/// for suspension or excess is not a failure).
async fn delete(
    control: &impl JobPodControl,
    pod: &Pod,
    remove_first: bool,
) -> Result<(), kube::Error> {
    if remove_first && has_finalizer(pod) {
        control.remove_finalizer(pod).await?;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    control.delete(namespace, name, pod.metadata.uid.as_deref().unwrap_or_default()).await
}

/// Creates the pods of `new` in slow-start batches (1, 2, 4, ...; a batch with a failure
/// ends them). Answers the names created and the first error.
pub async fn create(
    control: &impl PodControl,
    job: &Job,
    new: &[NewPod],
) -> (Vec<String>, Option<kube::Error>) {
    let namespace = job.metadata.namespace.clone().unwrap_or_default();
    let mut created = Vec::new();
    let mut error = None;
    let mut rest = new;
    let mut batch = 1;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(batch.min(rest.len()));
        let pods: Vec<Pod> = now.iter().map(|n| manage::pod_for(job, n)).collect();
        let results = join_all(pods.iter().map(|p| control.create(&namespace, p))).await;
        for result in results {
            match result {
                Ok(pod) => created.push(pod.metadata.name.unwrap_or_default()),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        if error.is_some() {
            break;
        }
        rest = later;
        batch *= 2;
    }
    (created, error)
}

/// Removes the tracking finalizer from pods whose Job is gone or finished, and from orphans
/// (upstream's orphan queue): woken by pod changes and by Jobs that finished or went away.
fn orphans(
    client: Client,
    jobs: Store<Job>,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
    job_events: impl futures::Stream<Item = Arc<Job>> + Send + 'static,
    pod_events: impl futures::Stream<Item = Arc<Pod>> + Send + 'static,
) -> impl Future<Output = ()> + Send + 'static {
    enum Touched {
        Job(Arc<Job>),
        Pod(Arc<Pod>),
    }
    let touched = stream::select(job_events.map(Touched::Job), pod_events.map(Touched::Pod));
    async move {
        krust_client::informer::ready(&jobs).await;
        krust_client::informer::ready(&pods).await;
        touched
            .flat_map(|t| {
                let candidates: Vec<Arc<Pod>> = match t {
                    Touched::Pod(pod) => {
                        let current = pods.get(&ObjectRef::from(pod.as_ref()));
                        current.filter(|p| is_orphaned(p, &jobs)).into_iter().collect()
                    }
                    Touched::Job(job) => {
                        let gone = jobs.get(&ObjectRef::from(job.as_ref())).is_none_or(|cached| {
                            cached.metadata.uid != job.metadata.uid || is_job_finished(&cached)
                        });
                        if gone {
                            let namespace = job.namespace().unwrap_or_default();
                            pods_by_namespace
                                .objects(&namespace, &pods)
                                .into_iter()
                                .filter(|p| controller_of(&p.metadata).is_some_and(|o| Some(&o.uid) == job.metadata.uid.as_ref()))
                                .filter(|p| has_finalizer(p))
                                .collect()
                        } else {
                            Vec::new()
                        }
                    }
                };
                stream::iter(candidates)
            })
            .for_each_concurrent(ORPHAN_CONCURRENCY, |pod| {
                let client = client.clone();
                async move {
                    if let Err(e) = remove_finalizer(&client, &pod).await {
                        tracing::debug!(pod = %pod.name_any(), error = %e, "cannot remove the tracking finalizer of an orphan pod");
                    }
                }
            })
            .await;
    }
}

/// Whether the pod carries the tracking finalizer and no unfinished Job controls it.
fn is_orphaned(pod: &Pod, jobs: &Store<Job>) -> bool {
    if !has_finalizer(pod) {
        return false;
    }
    let Some(owner) = controller_of(&pod.metadata) else { return true };
    if owner.kind != "Job" || owner.api_version != "batch/v1" {
        return false;
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    match jobs.get(&ObjectRef::new(&owner.name).within(namespace)) {
        Some(job) if job.metadata.uid.as_deref() == Some(owner.uid.as_str()) => {
            !managed_elsewhere(&job) && is_job_finished(&job)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    /// Counts creates; they fail from the `fail_from`-th on.
    struct Counting {
        creates: AtomicUsize,
        fail_from: usize,
    }

    impl PodControl for Counting {
        async fn create(&self, _: &str, pod: &Pod) -> Result<Pod, kube::Error> {
            let n = self.creates.fetch_add(1, Ordering::SeqCst);
            if n >= self.fail_from {
                return Err(kube::Error::LinesCodecMaxLineLengthExceeded);
            }
            let mut made = pod.clone();
            made.metadata.name =
                Some(format!("{}{n}", pod.metadata.generate_name.clone().unwrap_or_default()));
            Ok(made)
        }
        async fn delete(&self, _: &str, _: &str, _: &str) -> Result<(), kube::Error> {
            Ok(())
        }
        async fn set_owners(&self, _: &Pod, _: &[OwnerReference]) -> Result<(), kube::Error> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn pods_are_created_in_slow_start_batches_that_stop_at_a_failure() {
        let job = fixtures::indexed(10, 10);
        let new: Vec<NewPod> = (0..10).map(|i| NewPod { index: Some(i), failures: None }).collect();
        let all = Counting { creates: AtomicUsize::new(0), fail_from: usize::MAX };
        let (created, error) = create(&all, &job, &new).await;
        assert_eq!(created.len(), 10);
        assert!(error.is_none());
        assert_eq!(created[3], "pi-3-3");
        // Batches of 1, 2, 4: the third fails after one more create and ends them.
        let failing = Counting { creates: AtomicUsize::new(0), fail_from: 4 };
        let (created, error) = create(&failing, &job, &new).await;
        assert_eq!(failing.creates.load(Ordering::SeqCst), 7);
        assert_eq!(created.len(), 4);
        assert!(error.is_some());
    }

    #[test]
    fn pods_of_finished_or_missing_jobs_are_orphans() {
        let (_, writer) = kube::runtime::reflector::store::<Job>();
        let store = writer.as_reader();
        let pod = fixtures::pod("a", "Succeeded", None);
        assert!(is_orphaned(&pod, &store), "its job is not cached");
        assert!(!is_orphaned(&fixtures::without_finalizer(pod), &store));
    }
}
