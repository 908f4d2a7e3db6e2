//! The Job controller (upstream's `job-controller`): runs a Job's pods to its completions
//! with its parallelism (NonIndexed, or Indexed with a pod per completion index), counts each
//! finished pod exactly once through the `batch.kubernetes.io/job-tracking` finalizer and
//! `uncountedTerminatedPods`, backs off after failures, applies the back-off limit, the active
//! deadline, `podFailurePolicy`, `successPolicy` and `suspend`, and ends the Job with upstream's
//! conditions (`SuccessCriteriaMet` then `Complete`, `FailureTarget` then `Failed`). The pass
//! is decided in `plan.rs`; this file reads the caches and writes.

pub mod failure_policy;
pub mod indexes;
pub mod plan;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;

use crate::runtime::expectations::{Expectations, Wait};
use crate::runtime::owner::{controller_of, controller_ref};
use crate::runtime::pod_control::{ApiPodControl, PodControl};
use krust_client::informer::ByNamespace;
use krust_client::{Events, Informer};
use plan::{Note, TRACKING_FINALIZER};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "job-controller";

/// How often a running Job is looked at again without events.
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: Client,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
    control: ApiPodControl,
    events: Events,
    /// By the Job's uid.
    expectations: Arc<Expectations>,
}

/// Runs the controller: woken by the shared Job and pod caches, writing as `client`.
pub fn run(
    client: Client,
    jobs: &mut Informer<Job>,
    pods: &mut Informer<Pod>,
) -> impl Future<Output = ()> + Send + 'static {
    let expectations = Arc::new(Expectations::default());
    let (observed, pod_store) = (Arc::clone(&expectations), pods.store());
    let ctx = Context {
        control: ApiPodControl::new(client.clone()),
        events: Events::new(client.clone(), NAME),
        client,
        pods: pods.store(),
        pods_by_namespace: pods.by_namespace(),
        expectations,
    };
    Controller::for_shared_stream(jobs.subscribe(), jobs.store())
        .watches_shared_stream(pods.subscribe(), move |pod| {
            crate::replicaset::observe(&pod, &pod_store, &observed);
            let owner = controller_of(&pod.metadata)?;
            (owner.kind == "Job" && owner.api_version.starts_with("batch/"))
                .then(|| ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default()))
        })
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(job: Arc<Job>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(job = %job.name_any(), error = %error, "job sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let _ = ctx.pods.wait_until_ready().await;
    let namespace = job.namespace().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let pods: Vec<Arc<Pod>> = ctx
        .pods_by_namespace
        .objects(&namespace, &ctx.pods)
        .into_iter()
        .filter(|p| controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    let now = Timestamp::now();
    let mut plan = plan::plan(&job, &pods, now);
    if job.metadata.deletion_timestamp.is_some() {
        // A Job being deleted lets its pods go: the collector deletes them.
        plan.create.clear();
        plan.delete.clear();
        plan.release = pods.iter().filter(|p| has_finalizer(p)).cloned().collect();
        ctx.expectations.forget(&uid);
    }
    let live: std::collections::HashSet<&str> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    let in_cache = |name: &str| ctx.pods.get(&ObjectRef::new(name).within(&namespace)).is_some();
    let mut wait = None;
    if let Wait::Pending(left) = ctx.expectations.check(&uid, in_cache, |u| live.contains(u)) {
        // What the last pass did is not in the cache yet: count and report only.
        plan.create.clear();
        plan.delete.clear();
        wait = Some(left);
    }

    let regarding = job.object_ref(&());
    for note in std::mem::take(&mut plan.notes) {
        record(&ctx.events, &regarding, note);
    }
    // The status first: a finished pod is listed as uncounted before its finalizer goes.
    if !plan::same_status(job.status.as_ref(), &plan.status) {
        let mut updated = (*job).clone();
        updated.status = Some(plan.status.clone());
        let api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
        match api
            .replace_subresource("status", &job.name_any(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(Action::await_change()),
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(e),
        }
    }
    let pod_api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let released = join_all(
        plan.release
            .iter()
            .chain(plan.delete.iter())
            .filter(|p| has_finalizer(p))
            .map(|p| release(&pod_api, p)),
    )
    .await;
    if let Some(e) = released.into_iter().find_map(Result::err) {
        return Err(e);
    }
    let mut deleted = Vec::new();
    for pod in &plan.delete {
        let (name, pod_uid) = (pod.name_any(), pod.metadata.uid.clone().unwrap_or_default());
        match ctx.control.delete(&namespace, &name, &pod_uid).await {
            Ok(()) => {
                record(
                    &ctx.events,
                    &regarding,
                    Note {
                        warning: false,
                        reason: "SuccessfulDelete",
                        message: format!("Deleted pod: {name}"),
                    },
                );
                deleted.push(pod_uid);
            }
            Err(e) => tracing::debug!(pod = name, error = %e, "cannot delete a job's pod"),
        }
    }
    let created = create(&ctx, &job, &plan.create, &regarding).await;
    ctx.expectations.expect(&uid, created.iter().cloned(), deleted);
    if plan::is_finished(&job) {
        return Ok(Action::await_change());
    }
    let next = [wait, plan.requeue, Some(RESYNC)].into_iter().flatten().min();
    Ok(next.map_or_else(Action::await_change, Action::requeue))
}

/// Creates the pods `indexes` asks for in slow-start batches (1, 2, 4, ...; a failed batch
/// ends them); answers the names created.
async fn create(
    ctx: &Context,
    job: &Job,
    indexes: &[Option<i32>],
    regarding: &k8s_openapi::api::core::v1::ObjectReference,
) -> Vec<String> {
    let namespace = job.namespace().unwrap_or_default();
    let mut created = Vec::new();
    let mut batch = 1;
    let mut left = indexes;
    while !left.is_empty() {
        let (now, rest) = left.split_at(batch.min(left.len()));
        let results = join_all(now.iter().map(|index| {
            let pod = pod_for(job, *index);
            let namespace = namespace.as_str();
            async move { ctx.control.create(namespace, &pod).await }
        }))
        .await;
        let mut failed = false;
        for result in results {
            match result {
                Ok(pod) => {
                    let name = pod.name_any();
                    record(
                        &ctx.events,
                        regarding,
                        Note {
                            warning: false,
                            reason: "SuccessfulCreate",
                            message: format!("Created pod: {name}"),
                        },
                    );
                    created.push(name);
                }
                Err(e) => {
                    failed = true;
                    record(
                        &ctx.events,
                        regarding,
                        Note {
                            warning: true,
                            reason: "FailedCreate",
                            message: format!("Error creating: {e}"),
                        },
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

/// A new pod of the Job, for a completion `index` of an Indexed Job.
pub fn pod_for(job: &Job, index: Option<i32>) -> Pod {
    let name = job.name_any();
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    finalizers.push(TRACKING_FINALIZER.to_string());
    let mut spec = template.spec;
    if let Some(i) = index {
        labels.insert(indexes::COMPLETION_INDEX.to_string(), i.to_string());
        annotations.insert(indexes::COMPLETION_INDEX.to_string(), i.to_string());
        if let Some(spec) = spec.as_mut() {
            let env = EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: None,
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: format!(
                            "metadata.annotations['{}']",
                            indexes::COMPLETION_INDEX
                        ),
                        api_version: None,
                    }),
                    ..EnvVarSource::default()
                }),
            };
            for container in
                spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten())
            {
                let vars = container.env.get_or_insert_with(Vec::new);
                if !vars.iter().any(|v| v.name == env.name) {
                    vars.push(env.clone());
                }
            }
            if spec.hostname.as_deref().is_none_or(str::is_empty) {
                spec.hostname = Some(format!("{name}-{i}"));
            }
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(match index {
                Some(i) => format!("{name}-{i}-"),
                None => format!("{name}-"),
            }),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref("batch/v1", "Job", &job.metadata)]),
            ..ObjectMeta::default()
        },
        spec,
        status: None,
    }
}

fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

/// Removes the tracking finalizer from `pod`, guarded by its resourceVersion.
async fn release(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    let rest: Vec<&String> =
        pod.metadata.finalizers.iter().flatten().filter(|f| *f != TRACKING_FINALIZER).collect();
    let patch = json!({"metadata": {
        "resourceVersion": pod.metadata.resource_version,
        "finalizers": rest,
    }});
    match api.patch(&pod.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

fn record(events: &Events, regarding: &k8s_openapi::api::core::v1::ObjectReference, note: Note) {
    let action = if note.reason.starts_with("Successful") {
        note.reason.trim_start_matches("Successful")
    } else {
        "Sync"
    };
    if note.warning {
        events.warning(regarding.clone(), note.reason, action, note.message);
    } else {
        events.normal(regarding.clone(), note.reason, action, note.message);
    }
}
