//! What one pass over a Job decides from its cached pods (upstream's `syncJob` up to and
//! including `manageJob`): the counts, whether the Job has met a terminal criterion, and which
//! pods to create or delete. A plain function of the Job, its pods and the controller's
//! memory (expectations, back-off), tested without a server.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;

use super::backoff::{self, Record};
use super::failure_policy::{self, Action as RuleAction};
use super::indexes::{self, Intervals};
use crate::replicaset::rank::deletion_order;
use crate::replicaset::status::is_ready;
use crate::runtime::owner::{self, controller_of, controller_ref};
use kube::core::SelectorExt;

/// The finalizer that keeps a finished pod until the Job counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// The annotation with an index's counted failures (with `backoffLimitPerIndex`).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";

/// The annotation with an index's ignored failures (with `backoffLimitPerIndex`).
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

/// At most this many pods are created or deleted in one pass (upstream's
/// `MaxPodCreateDeletePerSync`).
pub const BURST: usize = 500;

/// What a pass reads besides the Job.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The pods the Job controls.
    pub pods: &'a [Arc<Pod>],
    /// Whether every create and delete of the last passes shows in the cache.
    pub satisfied: bool,
    /// Uids of pods whose finalizer this controller removed and the cache still shows.
    pub removing: &'a HashSet<String>,
    /// The Job's failures since its last success, as the controller remembers them.
    pub backoff: Record,
    /// Now.
    pub now: Timestamp,
}

/// What the pass does to the Job's pods.
#[derive(Debug, Clone, Default)]
pub enum Action {
    /// Nothing.
    #[default]
    None,
    /// The Job is finishing: its active pods are deleted, their finalizers kept so that
    /// they are counted.
    Terminate(Vec<Arc<Pod>>),
    /// These pods go (suspended, too many, or a repeated index): their finalizer is removed
    /// first, so they are not counted as failures.
    Remove(Vec<Arc<Pod>>),
    /// These pods are created.
    Create(Vec<NewPod>),
    /// Replacements wait for the back-off, this long.
    Backoff(Duration),
}

/// A pod to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewPod {
    /// Its completion index (Indexed Jobs).
    pub index: Option<i32>,
    /// The counted and ignored failures of its index so far (with `backoffLimitPerIndex`).
    pub failures: Option<(i32, i32)>,
}

/// The decision of one pass.
#[derive(Debug, Clone, Default)]
pub struct Assessment {
    /// The status so far: the Job's, with `startTime` set and `uncountedTerminatedPods`
    /// present.
    pub status: JobStatus,
    /// The active pods (neither finished nor being deleted).
    pub active: Vec<Arc<Pod>>,
    /// How many of them are ready.
    pub ready: i32,
    /// Pods being deleted that have not finished.
    pub terminating: i32,
    /// Succeeded pods, counted or not.
    pub succeeded: i32,
    /// Failed pods that count, counted or not.
    pub failed: i32,
    /// The terminal criterion met: `FailureTarget`, `SuccessCriteriaMet`, or `Failed` when
    /// a `FailureTarget` was already recorded.
    pub finished: Option<JobCondition>,
    /// Indexed Jobs: the indexes `completedIndexes` held, and with the new ones.
    pub prev_succeeded_indexes: Intervals,
    /// Indexed Jobs: every succeeded index.
    pub succeeded_indexes: Intervals,
    /// With `backoffLimitPerIndex`: the failed indexes.
    pub failed_indexes: Option<Intervals>,
    /// With `backoffLimitPerIndex`: per index, the failed pod kept until its replacement
    /// exists (it carries the failure count).
    pub delayed: HashMap<i32, Arc<Pod>>,
    /// The back-off record with the newly finished pods.
    pub backoff: Record,
    /// When to look again for `activeDeadlineSeconds`.
    pub requeue: Option<Duration>,
    /// The indexes of pods being deleted that have not finished.
    pub terminating_indexes: std::collections::BTreeSet<i32>,
    /// Whether the pods were managed (suspension is reported only then, as upstream).
    pub managed: bool,
    /// What to do.
    pub action: Action,
}

/// Whether the pod neither finished nor is being deleted.
pub fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !is_finished(pod)
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Whether the pod succeeded or failed.
pub fn is_finished(pod: &Pod) -> bool {
    matches!(phase(pod), Some("Succeeded" | "Failed"))
}

/// Whether the pod is being deleted and has not finished.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !is_finished(pod)
}

/// Whether the pod carries the tracking finalizer.
pub fn has_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

/// Whether only failed pods are replaced (not those still terminating): with
/// `podReplacementPolicy: Failed` or a `podFailurePolicy`.
pub fn only_replace_failed(spec: &JobSpec) -> bool {
    spec.pod_replacement_policy.as_deref() == Some("Failed") || spec.pod_failure_policy.is_some()
}

/// Whether the pod counts as failed: it failed, or (unless only failed pods are replaced)
/// it is being deleted without having succeeded.
pub fn is_failed(pod: &Pod, spec: &JobSpec) -> bool {
    if phase(pod) == Some("Failed") {
        return true;
    }
    if only_replace_failed(spec) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && phase(pod) != Some("Succeeded")
}

/// Whether the Job is Indexed.
pub fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed") && spec.completions.is_some()
}

/// Whether the Job is suspended.
pub fn is_suspended(spec: &JobSpec) -> bool {
    spec.suspend == Some(true)
}

/// The condition `type_` true since `now`.
pub fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()).filter(|r: &String| !r.is_empty()),
        message: Some(message.into()).filter(|m: &String| !m.is_empty()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// The true condition of this type, if any.
pub fn true_condition<'a>(status: &'a JobStatus, type_: &str) -> Option<&'a JobCondition> {
    status.conditions.iter().flatten().find(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job is finished (`Complete` or `Failed` true).
pub fn is_job_finished(job: &Job) -> bool {
    job.status.as_ref().is_some_and(|s| {
        true_condition(s, "Complete").is_some() || true_condition(s, "Failed").is_some()
    })
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|v| *v >= 0)
        .unwrap_or(0)
}

/// Which pods of its namespace a Job controls after a pass (upstream's `ClaimPods`).
#[derive(Debug, Clone, Default)]
pub struct Claim {
    /// The pods the Job controls, adopted ones included (as they will be: with the tracking
    /// finalizer and the Job as controller).
    pub mine: Vec<Arc<Pod>>,
    /// Orphans the selector matches: they get the Job as controller and the finalizer.
    pub adopt: Vec<Arc<Pod>>,
    /// Controlled pods the selector no longer matches: they are let go.
    pub release: Vec<Arc<Pod>>,
}

/// Claims the pods of `job`'s namespace: keeps the controlled ones its selector matches,
/// adopts matching orphans that are not being deleted (not while the Job is), releases
/// controlled ones that no longer match. Without a valid selector only the controlled pods
/// count, untouched.
pub fn claim(job: &Job, pods: &[Arc<Pod>]) -> Claim {
    let mut c = Claim::default();
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let selector = job.spec.as_ref().and_then(|s| s.selector.as_ref()).and_then(owner::selector);
    let deleting = job.metadata.deletion_timestamp.is_some();
    let empty = Default::default();
    for pod in pods {
        let matches =
            selector.as_ref().map(|s| s.matches(pod.metadata.labels.as_ref().unwrap_or(&empty)));
        match controller_of(&pod.metadata) {
            Some(owner) if owner.uid != uid => {}
            Some(_) => match matches {
                Some(false) if !deleting => c.release.push(Arc::clone(pod)),
                Some(false) => {}
                _ => c.mine.push(Arc::clone(pod)),
            },
            None if matches == Some(true)
                && !deleting
                && pod.metadata.deletion_timestamp.is_none() =>
            {
                c.adopt.push(Arc::clone(pod));
                let mut adopted = (**pod).clone();
                adopted
                    .metadata
                    .owner_references
                    .get_or_insert_with(Vec::new)
                    .push(controller_ref("batch/v1", "Job", &job.metadata));
                let finalizers = adopted.metadata.finalizers.get_or_insert_with(Vec::new);
                if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
                    finalizers.push(TRACKING_FINALIZER.into());
                }
                c.mine.push(Arc::new(adopted));
            }
            None => {}
        }
    }
    c
}

/// Decides a pass over `job`.
pub fn assess(job: &Job, inputs: &Inputs<'_>) -> Assessment {
    let mut a = Assessment::default();
    let Some(spec) = job.spec.as_ref() else { return a };
    let now = inputs.now;
    let pods = inputs.pods;
    let indexed = is_indexed(spec);
    let completions = spec.completions.unwrap_or(0);
    let per_index = indexed && spec.backoff_limit_per_index.is_some();
    let policy = spec.pod_failure_policy.as_ref();

    let mut status = job.status.clone().unwrap_or_default();
    let uncounted = status.uncounted_terminated_pods.get_or_insert_with(Default::default);
    let uncounted_succeeded: HashSet<String> =
        uncounted.succeeded.iter().flatten().cloned().collect();
    let uncounted_failed: HashSet<String> = uncounted.failed.iter().flatten().cloned().collect();
    normalize(uncounted);

    a.active = pods.iter().filter(|p| is_active(p)).cloned().collect();
    a.ready = count(a.active.iter().filter(|p| is_ready(p)).count());
    a.terminating = count(pods.iter().filter(|p| is_terminating(p)).count());
    a.terminating_indexes = indexes::indexes_of(pods.iter().filter(|p| is_terminating(p)));
    let uncounted_pod = |p: &Pod, uncounted: &HashSet<String>| {
        let uid = p.metadata.uid.as_deref().unwrap_or_default();
        has_finalizer(p)
            && !uncounted.contains(uid)
            && !inputs.removing.contains(uid)
            && (!indexed || indexes::valid_index(p, completions).is_some())
    };
    let new_succeeded: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| uncounted_pod(p, &uncounted_succeeded) && phase(p) == Some("Succeeded"))
        .cloned()
        .collect();
    let new_failed: Vec<Arc<Pod>> = pods
        .iter()
        .filter(|p| uncounted_pod(p, &uncounted_failed) && is_failed(p, spec))
        .cloned()
        .collect();
    a.succeeded = status
        .succeeded
        .unwrap_or(0)
        .saturating_add(count(new_succeeded.len()))
        .saturating_add(count(uncounted_succeeded.len()));
    a.failed = status
        .failed
        .unwrap_or(0)
        .saturating_add(count(
            new_failed.iter().filter(|p| failure_policy::counts(policy, p)).count(),
        ))
        .saturating_add(count(uncounted_failed.len()));
    if status.start_time.is_none() && !is_suspended(spec) {
        status.start_time = Some(Time(now));
    }
    a.backoff = inputs.backoff.next(&new_succeeded, &new_failed);

    a.finished = true_condition(&status, "SuccessCriteriaMet").cloned();
    if a.finished.is_none() {
        if let Some(target) = true_condition(&status, "FailureTarget") {
            a.finished = Some(condition(
                "Failed",
                target.reason.as_deref().unwrap_or_default(),
                target.message.as_deref().unwrap_or_default(),
                now,
            ));
        } else if let Some(message) = fail_job_message(spec, pods) {
            a.finished = Some(condition("FailureTarget", "PodFailurePolicy", &message, now));
        }
    }
    if a.finished.is_none() {
        let limit = spec.backoff_limit.unwrap_or(6);
        if a.failed > limit || past_backoff_limit_on_failure(spec, pods) {
            a.finished = Some(condition(
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            ));
        } else if let Some(left) = deadline_left(spec, &status, now) {
            if left.is_zero() {
                a.finished = Some(condition(
                    "FailureTarget",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                ));
            } else {
                a.requeue = Some(left);
            }
        }
    }

    if indexed {
        a.prev_succeeded_indexes =
            Intervals::parse(status.completed_indexes.as_deref().unwrap_or_default(), completions);
        a.succeeded_indexes = a.prev_succeeded_indexes.with(pods.iter().filter_map(|p| {
            (phase(p) == Some("Succeeded") && has_finalizer(p))
                .then(|| indexes::valid_index(p, completions))
                .flatten()
        }));
        a.succeeded = count(a.succeeded_indexes.total());
        if per_index {
            let failed =
                Intervals::parse(status.failed_indexes.as_deref().unwrap_or_default(), completions)
                    .with(pods.iter().filter_map(|p| {
                        (has_finalizer(p) && is_index_failed(spec, p))
                            .then(|| indexes::valid_index(p, completions))
                            .flatten()
                    }));
            if a.finished.is_none() {
                let total = count(failed.total());
                if spec.max_failed_indexes.is_some_and(|m| total > m) {
                    a.finished = Some(condition(
                        "FailureTarget",
                        "MaxFailedIndexesExceeded",
                        "Job has exceeded the specified maximal number of failed indexes",
                        now,
                    ));
                } else if total > 0 && total + a.succeeded >= completions {
                    a.finished = Some(condition(
                        "FailureTarget",
                        "FailedIndexes",
                        "Job has failed indexes",
                        now,
                    ));
                }
            }
            a.failed_indexes = Some(failed);
            a.delayed = delayed_deletions(spec, &a, inputs);
        }
        if a.finished.is_none()
            && let Some(message) = failure_policy::success_policy_met(
                spec.success_policy.as_ref(),
                completions,
                &a.succeeded_indexes,
            )
        {
            a.finished = Some(condition("SuccessCriteriaMet", "SuccessPolicy", &message, now));
        }
    }
    a.status = status;

    if a.finished.is_some() {
        a.action = Action::Terminate(a.active.clone());
    } else if inputs.satisfied && job.metadata.deletion_timestamp.is_none() {
        a.managed = true;
        a.action = manage(spec, &a, now);
    }
    a
}

/// Keeps `uncountedTerminatedPods` free of empty lists, so that statuses compare alike.
pub fn normalize(uncounted: &mut UncountedTerminatedPods) {
    if uncounted.succeeded.as_ref().is_some_and(Vec::is_empty) {
        uncounted.succeeded = None;
    }
    if uncounted.failed.as_ref().is_some_and(Vec::is_empty) {
        uncounted.failed = None;
    }
}

/// The message of a failed pod's `FailJob` rule, if one matches.
fn fail_job_message(spec: &JobSpec, pods: &[Arc<Pod>]) -> Option<String> {
    let policy = spec.pod_failure_policy.as_ref()?;
    pods.iter().filter(|p| is_failed(p, spec)).find_map(|p| {
        match failure_policy::matching(Some(policy), p) {
            Some(RuleAction::FailJob(message)) => Some(message),
            _ => None,
        }
    })
}

/// With `restartPolicy: OnFailure`, whether the running pods' restarts reached the limit.
fn past_backoff_limit_on_failure(spec: &JobSpec, pods: &[Arc<Pod>]) -> bool {
    if spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), Some("Running" | "Pending")))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    let limit = spec.backoff_limit.unwrap_or(6);
    if limit == 0 { restarts > 0 } else { restarts >= limit }
}

/// How long the Job may still run under `activeDeadlineSeconds`; `None` without a deadline or
/// while suspended.
fn deadline_left(spec: &JobSpec, status: &JobStatus, now: Timestamp) -> Option<Duration> {
    let deadline = spec.active_deadline_seconds?;
    let start = status.start_time.as_ref()?;
    if is_suspended(spec) {
        return None;
    }
    let allowed = Duration::from_secs(u64::try_from(deadline).unwrap_or(0));
    let elapsed = Duration::try_from(now.duration_since(start.0)).unwrap_or(Duration::ZERO);
    Some(allowed.saturating_sub(elapsed))
}

/// With `backoffLimitPerIndex`: whether the pod's failure fails its index.
pub fn is_index_failed(spec: &JobSpec, pod: &Pod) -> bool {
    if !is_failed(pod, spec) {
        return false;
    }
    let counted = match failure_policy::matching(spec.pod_failure_policy.as_ref(), pod) {
        Some(RuleAction::FailIndex) => return true,
        Some(action) => action.counts(),
        None => true,
    };
    counted
        && annotation_count(pod, INDEX_FAILURE_COUNT) >= spec.backoff_limit_per_index.unwrap_or(0)
}

/// Per index neither succeeded, failed nor active, its last failed pod: kept (finalizer and
/// all) until the replacement carries its failure count.
fn delayed_deletions(
    spec: &JobSpec,
    a: &Assessment,
    inputs: &Inputs<'_>,
) -> HashMap<i32, Arc<Pod>> {
    let completions = spec.completions.unwrap_or(0);
    let active = indexes::indexes_of(&a.active);
    let failed = a.failed_indexes.clone().unwrap_or_default();
    let absolute = |p: &Pod| {
        annotation_count(p, INDEX_FAILURE_COUNT) + annotation_count(p, INDEX_IGNORED_FAILURE_COUNT)
    };
    let mut delayed: HashMap<i32, Arc<Pod>> = HashMap::new();
    for pod in inputs.pods {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        if !has_finalizer(pod) || inputs.removing.contains(uid) || !is_failed(pod, spec) {
            continue;
        }
        let Some(ix) = indexes::valid_index(pod, completions) else { continue };
        if a.succeeded_indexes.has(ix) || failed.has(ix) || active.contains(&ix) {
            continue;
        }
        match delayed.get(&ix) {
            Some(last)
                if !(absolute(last) <= absolute(pod)
                    && backoff::finished_at(pod) >= backoff::finished_at(last)) => {}
            _ => {
                delayed.insert(ix, Arc::clone(pod));
            }
        }
    }
    delayed
}

/// upstream's `manageJob`: the pods to delete or create.
fn manage(spec: &JobSpec, a: &Assessment, now: Timestamp) -> Action {
    let active = count(a.active.len());
    if is_suspended(spec) {
        return Action::Remove(for_removal(spec, &a.active, a.active.len(), now));
    }
    let parallelism = spec.parallelism.unwrap_or(1);
    let want = match spec.completions {
        None if a.succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - a.succeeded).min(parallelism).max(0),
    };
    let excess = usize::try_from(active - want).unwrap_or(0);
    let mut remove = for_removal(spec, &a.active, excess, now);
    if !remove.is_empty() {
        remove.truncate(BURST);
        return Action::Remove(remove);
    }
    let terminating = if only_replace_failed(spec) { a.terminating } else { 0 };
    let missing = want - terminating - active;
    if missing <= 0 {
        return Action::None;
    }
    let per_index = spec.backoff_limit_per_index.is_some() && is_indexed(spec);
    if !per_index {
        let left = a.backoff.remaining(now);
        if !left.is_zero() {
            return Action::Backoff(left);
        }
    }
    let missing = usize::try_from(missing).unwrap_or(0).min(BURST);
    if !is_indexed(spec) {
        return Action::Create(vec![NewPod::default(); missing]);
    }
    let completions = spec.completions.unwrap_or(0);
    let mut taken = a.succeeded_indexes.with(indexes::indexes_of(&a.active));
    if only_replace_failed(spec) {
        taken = taken.with(a.terminating_indexes.iter().copied());
    }
    if let Some(failed) = &a.failed_indexes {
        taken = taken.merge(failed);
    }
    let pending = indexes::first_pending(&taken, missing, completions);
    if !per_index {
        return Action::Create(
            pending.into_iter().map(|i| NewPod { index: Some(i), failures: None }).collect(),
        );
    }
    let policy = spec.pod_failure_policy.as_ref();
    let mut now_ready = Vec::new();
    let mut soonest: Option<Duration> = None;
    for ix in pending {
        let replaced = a.delayed.get(&ix);
        let left = replaced.map_or(Duration::ZERO, |p| {
            let failures = u32::try_from(
                annotation_count(p, INDEX_FAILURE_COUNT)
                    + annotation_count(p, INDEX_IGNORED_FAILURE_COUNT)
                    + 1,
            )
            .unwrap_or(u32::MAX);
            backoff::remaining(failures, Some(backoff::finished_at(p)), now)
        });
        if left.is_zero() {
            let failures = replaced.map_or((0, 0), |p| {
                let (counted, ignored) = (
                    annotation_count(p, INDEX_FAILURE_COUNT),
                    annotation_count(p, INDEX_IGNORED_FAILURE_COUNT),
                );
                if failure_policy::counts(policy, p) {
                    (counted + 1, ignored)
                } else {
                    (counted, ignored + 1)
                }
            });
            now_ready.push(NewPod { index: Some(ix), failures: Some(failures) });
        } else {
            soonest = Some(soonest.map_or(left, |s| s.min(left)));
        }
    }
    match (now_ready.is_empty(), soonest) {
        (false, _) => Action::Create(now_ready),
        (true, Some(left)) => Action::Backoff(left),
        (true, None) => Action::None,
    }
}

/// Upstream's `activePodsForRemoval`: for Indexed Jobs the pods of repeated, missing or out
/// of range indexes, then (for all Jobs) the least valuable, until `at_least` are chosen.
fn for_removal(
    spec: &JobSpec,
    active: &[Arc<Pod>],
    at_least: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    let (mut remove, left) = if is_indexed(spec) {
        indexes::duplicated_for_removal(active, spec.completions.unwrap_or(0), |p| {
            deletion_order(p, now)
        })
    } else {
        (Vec::new(), active.to_vec())
    };
    if remove.len() < at_least {
        let more = at_least - remove.len();
        remove.extend(deletion_order(&left, now).into_iter().take(more));
    }
    remove
}

/// A new pod of `job`: its template with the tracking finalizer, the job as controller, and
/// for an index its annotation, label, hostname, environment and name prefix.
pub fn pod_for(job: &Job, new: &NewPod) -> Pod {
    let spec = job.spec.clone().unwrap_or_default();
    let template = spec.template;
    let meta = template.metadata.unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.to_string());
    }
    let mut pod = Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: job.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref("batch/v1", "Job", &job.metadata)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    };
    let Some(index) = new.index else { return pod };
    let value = index.to_string();
    pod.metadata.generate_name = Some(indexes::generate_name(&name, index));
    let annotations = pod.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(indexes::COMPLETION_INDEX.into(), value.clone());
    if let Some((counted, ignored)) = new.failures {
        annotations.insert(INDEX_FAILURE_COUNT.into(), counted.to_string());
        if ignored > 0 {
            annotations.insert(INDEX_IGNORED_FAILURE_COUNT.into(), ignored.to_string());
        }
    }
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(indexes::COMPLETION_INDEX.into(), value);
    if let Some(pod_spec) = pod.spec.as_mut() {
        pod_spec.hostname = Some(format!("{name}-{index}"));
        let env = EnvVar {
            name: indexes::COMPLETION_INDEX_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.labels['{}']", indexes::COMPLETION_INDEX),
                }),
                ..Default::default()
            }),
        };
        let containers =
            pod_spec.init_containers.iter_mut().flatten().chain(pod_spec.containers.iter_mut());
        for container in containers {
            let vars = container.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == indexes::COMPLETION_INDEX_ENV) {
                vars.push(env.clone());
            }
        }
    }
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::fixtures::*;
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
        SuccessPolicy, SuccessPolicyRule,
    };

    fn creates(a: &Assessment) -> Vec<Option<i32>> {
        match &a.action {
            Action::Create(new) => new.iter().map(|n| n.index).collect(),
            other => panic!("expected creates, got {other:?}"),
        }
    }

    fn removes(a: &Assessment) -> Vec<String> {
        match &a.action {
            Action::Remove(pods) | Action::Terminate(pods) => {
                let mut names: Vec<String> =
                    pods.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect();
                names.sort();
                names
            }
            other => panic!("expected deletes, got {other:?}"),
        }
    }

    fn with_status(mut j: Job, f: impl FnOnce(&mut JobStatus)) -> Job {
        f(j.status.get_or_insert_with(Default::default));
        j
    }

    #[test]
    fn matching_orphans_are_adopted_with_the_finalizer_and_mismatches_released() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        let mut j = job(Some(3), 1);
        if let Some(s) = j.spec.as_mut() {
            s.selector = Some(LabelSelector {
                match_labels: Some([("job-name".to_string(), "pi".to_string())].into()),
                ..Default::default()
            });
        }
        let labelled = |mut p: Pod, value: &str| {
            p.metadata.labels = Some([("job-name".to_string(), value.to_string())].into());
            p
        };
        let mut orphan = without_finalizer(labelled(pod("orphan", "Succeeded", None), "pi"));
        orphan.metadata.owner_references = None;
        let mut stranger = labelled(pod("stranger", "Running", None), "pi");
        if let Some(o) = stranger.metadata.owner_references.as_mut() {
            o[0].uid = "other".into();
        }
        let pods = arcs(vec![
            labelled(pod("mine", "Running", None), "pi"),
            labelled(pod("relabeled", "Running", None), "other"),
            orphan,
            stranger,
        ]);
        let c = claim(&j, &pods);
        let names = |v: &[Arc<Pod>]| {
            v.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect::<Vec<_>>()
        };
        assert_eq!(names(&c.mine), ["mine", "orphan"]);
        assert_eq!(names(&c.adopt), ["orphan"]);
        assert_eq!(names(&c.release), ["relabeled"]);
        assert!(has_finalizer(&c.mine[1]));
        // Adopted, its success counts.
        assert_eq!(run(&j, &c.mine, at(1)).succeeded, 1);
    }

    #[test]
    fn a_new_job_starts_parallelism_pods_and_its_start_time() {
        let mut j = job(Some(5), 2);
        j.status = None;
        let a = run(&j, &[], at(0));
        assert_eq!(creates(&a), [None, None]);
        assert_eq!(a.status.start_time, Some(Time(at(0))));
    }

    #[test]
    fn no_more_pods_run_than_completions_are_left() {
        let j = with_status(job(Some(5), 2), |s| s.succeeded = Some(3));
        let pods = arcs(vec![pod("a", "Running", None)]);
        assert_eq!(creates(&run(&j, &pods, at(1))), [None]);
        let j = with_status(job(Some(5), 2), |s| s.succeeded = Some(4));
        let pods = arcs(vec![pod("a", "Running", None), pod("b", "Pending", None)]);
        assert_eq!(removes(&run(&j, &pods, at(1))), ["b"]);
        let j = with_status(job(Some(5), 2), |s| s.succeeded = Some(4));
        let pods = arcs(vec![pod("a", "Running", None)]);
        assert!(matches!(run(&j, &pods, at(1)).action, Action::None));
    }

    #[test]
    fn a_job_without_completions_stops_starting_pods_after_a_success() {
        let j = job(None, 3);
        let pods = arcs(vec![pod("a", "Succeeded", None), pod("b", "Running", None)]);
        let a = run(&j, &pods, at(1));
        assert_eq!(a.succeeded, 1);
        assert!(matches!(a.action, Action::None));
    }

    #[test]
    fn newly_finished_pods_are_counted_with_the_uncounted_ones() {
        let j = with_status(job(Some(5), 2), |s| {
            s.succeeded = Some(1);
            s.uncounted_terminated_pods = Some(UncountedTerminatedPods {
                succeeded: Some(vec!["x-uid".into()]),
                failed: None,
            });
        });
        let pods = arcs(vec![
            pod("x", "Succeeded", None),
            pod("y", "Succeeded", None),
            without_finalizer(pod("z", "Succeeded", None)),
        ]);
        let a = run(&j, &pods, at(1));
        // 1 counted, x uncounted, y new; z was counted already (no finalizer).
        assert_eq!(a.succeeded, 3);
    }

    #[test]
    fn indexed_jobs_start_the_lowest_missing_indexes() {
        let j = with_status(indexed(6, 3), |s| s.completed_indexes = Some("0,2".into()));
        let pods = arcs(vec![pod("a", "Running", Some(1)), pod("b", "Succeeded", Some(3))]);
        let a = run(&j, &pods, at(1));
        assert_eq!(a.succeeded_indexes.to_string(), "0,2,3");
        assert_eq!(a.succeeded, 3);
        assert_eq!(creates(&a), [Some(4), Some(5)]);
    }

    #[test]
    fn repeated_indexes_are_deleted_before_anything_is_created() {
        let j = indexed(4, 4);
        let pods = arcs(vec![
            pod("a", "Running", Some(0)),
            pod("b", "Pending", Some(0)),
            pod("c", "Running", Some(9)),
        ]);
        let a = run(&j, &pods, at(1));
        assert_eq!(removes(&a), ["b", "c"]);
    }

    #[test]
    fn failed_pods_are_replaced_after_the_back_off() {
        let j = job(Some(2), 1);
        let pods = arcs(vec![pod("a", "Failed", None)]);
        // The pod failed at 1 s: the first replacement waits 10 s.
        let a = run(&j, &pods, at(3));
        assert_eq!(a.failed, 1);
        assert_eq!(a.backoff, backoff::Record { failures: 1, last_failure: Some(at(1)) });
        assert!(
            matches!(a.action, Action::Backoff(d) if d == Duration::from_secs(8)),
            "{:?}",
            a.action
        );
        let a = run_with(&j, &[], a.backoff, at(11), &HashSet::new());
        assert_eq!(creates(&a), [None]);
    }

    #[test]
    fn too_many_failures_set_failure_target_and_delete_the_active_pods() {
        let mut j = with_status(job(Some(3), 2), |s| s.failed = Some(1));
        if let Some(s) = j.spec.as_mut() {
            s.backoff_limit = Some(1);
        }
        let pods = arcs(vec![pod("a", "Failed", None), pod("b", "Running", None)]);
        let a = run(&j, &pods, at(5));
        let finished = a.finished.clone().unwrap_or_default();
        assert_eq!(finished.type_, "FailureTarget");
        assert_eq!(finished.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            finished.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
        assert!(matches!(a.action, Action::Terminate(_)));
        assert_eq!(removes(&a), ["b"]);
    }

    #[test]
    fn a_recorded_failure_target_becomes_failed() {
        let j = with_status(job(Some(3), 2), |s| {
            s.conditions = Some(vec![condition("FailureTarget", "DeadlineExceeded", "m", at(1))]);
        });
        let finished = run(&j, &[], at(5)).finished.unwrap_or_default();
        assert_eq!(
            (finished.type_.as_str(), finished.reason.as_deref()),
            ("Failed", Some("DeadlineExceeded"))
        );
    }

    #[test]
    fn the_active_deadline_fails_the_job_or_wakes_it_in_time() {
        let mut j = job(Some(3), 1);
        if let Some(s) = j.spec.as_mut() {
            s.active_deadline_seconds = Some(10);
        }
        let a = run(&j, &[], at(4));
        assert_eq!(a.requeue, Some(Duration::from_secs(6)));
        let finished = run(&j, &[], at(10)).finished.unwrap_or_default();
        assert_eq!(finished.reason.as_deref(), Some("DeadlineExceeded"));
        assert_eq!(
            finished.message.as_deref(),
            Some("Job was active longer than specified deadline")
        );
    }

    #[test]
    fn a_fail_job_rule_fails_the_job_and_an_ignore_rule_does_not_count() {
        let mut j = job(Some(3), 1);
        let rule = |action: &str, code: i32| PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: "In".into(),
                values: vec![code],
            }),
            on_pod_conditions: None,
        };
        if let Some(s) = j.spec.as_mut() {
            s.pod_failure_policy =
                Some(PodFailurePolicy { rules: vec![rule("FailJob", 42), rule("Ignore", 7)] });
        }
        let a = run(&j, &arcs(vec![exit(pod("a", "Failed", None), 42)]), at(2));
        let finished = a.finished.unwrap_or_default();
        assert_eq!(finished.type_, "FailureTarget");
        assert_eq!(finished.reason.as_deref(), Some("PodFailurePolicy"));
        assert_eq!(
            finished.message.as_deref(),
            Some(
                "Container main for pod ns/a failed with exit code 42 matching FailJob rule at index 0"
            )
        );
        let a = run(&j, &arcs(vec![exit(pod("a", "Failed", None), 7)]), at(2));
        assert!(a.finished.is_none());
        assert_eq!(a.failed, 0);
    }

    #[test]
    fn a_suspended_job_deletes_its_active_pods() {
        let mut j = job(Some(3), 2);
        if let Some(s) = j.spec.as_mut() {
            s.suspend = Some(true);
        }
        let pods = arcs(vec![
            pod("a", "Running", None),
            pod("b", "Pending", None),
            pod("c", "Succeeded", None),
        ]);
        let a = run(&j, &pods, at(1));
        assert!(matches!(a.action, Action::Remove(_)));
        assert_eq!(removes(&a), ["a", "b"]);
    }

    #[test]
    fn a_success_policy_meets_the_success_criteria() {
        let mut j = indexed(5, 5);
        if let Some(s) = j.spec.as_mut() {
            s.success_policy = Some(SuccessPolicy {
                rules: vec![SuccessPolicyRule {
                    succeeded_indexes: Some("0".into()),
                    succeeded_count: None,
                }],
            });
        }
        let pods = arcs(vec![pod("a", "Succeeded", Some(0)), pod("b", "Running", Some(1))]);
        let a = run(&j, &pods, at(1));
        let finished = a.finished.unwrap_or_default();
        assert_eq!(finished.type_, "SuccessCriteriaMet");
        assert_eq!(finished.reason.as_deref(), Some("SuccessPolicy"));
        assert_eq!(finished.message.as_deref(), Some("Matched rules at index 0"));
    }

    #[test]
    fn indexes_fail_on_their_own_with_a_backoff_limit_per_index() {
        let mut j = indexed(3, 3);
        if let Some(s) = j.spec.as_mut() {
            s.backoff_limit_per_index = Some(1);
            s.backoff_limit = Some(i32::MAX);
        }
        // Index 0 failed once (count 0 < 1): replaced, carrying the count, after the back-off.
        let pods = arcs(vec![
            pod("a", "Failed", Some(0)),
            pod("b", "Running", Some(1)),
            pod("c", "Running", Some(2)),
        ]);
        let a = run(&j, &pods, at(20));
        assert!(a.delayed.contains_key(&0));
        match &a.action {
            Action::Create(new) => {
                assert_eq!(new, &[NewPod { index: Some(0), failures: Some((1, 0)) }])
            }
            other => panic!("{other:?}"),
        }
        // Its second failure (count 1) fails the index.
        let mut again = pod("d", "Failed", Some(0));
        again
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(INDEX_FAILURE_COUNT.into(), "1".into());
        let pods = arcs(vec![again, pod("b", "Running", Some(1)), pod("c", "Running", Some(2))]);
        let a = run(&j, &pods, at(20));
        assert_eq!(a.failed_indexes.map(|f| f.to_string()).as_deref(), Some("0"));
        assert!(matches!(a.action, Action::None), "{:?}", a.action);
    }

    #[test]
    fn an_index_pod_carries_its_index_everywhere() {
        let pod = pod_for(&indexed(3, 1), &NewPod { index: Some(2), failures: None });
        let meta = &pod.metadata;
        assert_eq!(meta.generate_name.as_deref(), Some("pi-2-"));
        assert_eq!(
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(indexes::COMPLETION_INDEX))
                .map(String::as_str),
            Some("2")
        );
        assert_eq!(
            meta.labels.as_ref().and_then(|a| a.get(indexes::COMPLETION_INDEX)).map(String::as_str),
            Some("2")
        );
        assert_eq!(
            meta.labels.as_ref().and_then(|a| a.get("job-name")).map(String::as_str),
            Some("pi")
        );
        assert_eq!(meta.finalizers.as_deref(), Some(&[TRACKING_FINALIZER.to_string()][..]));
        let owner =
            meta.owner_references.as_ref().and_then(|o| o.first()).cloned().unwrap_or_default();
        assert_eq!(
            (owner.kind.as_str(), owner.controller, owner.block_owner_deletion),
            ("Job", Some(true), Some(true))
        );
        let spec = pod.spec.unwrap_or_default();
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = spec.containers[0].env.clone().unwrap_or_default();
        assert_eq!(env[0].name, "JOB_COMPLETION_INDEX");
        let plain = pod_for(&job(Some(1), 1), &NewPod::default());
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(plain.spec.and_then(|s| s.hostname).is_none());
    }
}
