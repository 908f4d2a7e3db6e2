//! One pass of the Job controller as a plain function (upstream's `syncJob`): which finished
//! pods to count (through `uncountedTerminatedPods`, so that each is counted once even when
//! its finalizer removal and the status write race a crash), which pods to create (with their
//! completion indexes) or delete, and the status with its conditions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use super::failure_policy::{self, Verdict};
use super::indexes;

/// The finalizer that keeps a Job's finished pods until they are counted.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// At most this many pods are created or deleted in one pass.
pub const BURST: usize = 500;
/// The first re-creation delay after a failure, doubled for each further one.
const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest re-creation delay (upstream's `MaxJobBackOff`).
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// An event to record on the Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// A `Warning` (else `Normal`).
    pub warning: bool,
    /// Upstream's reason.
    pub reason: &'static str,
    /// Upstream's message.
    pub message: String,
}

/// What one pass does.
#[derive(Debug, Default)]
pub struct Plan {
    /// Pods to create, each with its completion index (Indexed Jobs) or none.
    pub create: Vec<Option<i32>>,
    /// Active pods to delete (their finalizer removed first: they are not counted).
    pub delete: Vec<Arc<Pod>>,
    /// The status to write before any pod is touched.
    pub status: JobStatus,
    /// Pods whose tracking finalizer goes once the status is written (counted, or ignored).
    pub release: Vec<Arc<Pod>>,
    /// Events.
    pub notes: Vec<Note>,
    /// When to look again, if before a change.
    pub requeue: Option<Duration>,
}

/// How the pass sees one pod.
fn finished_as(pod: &Pod) -> Option<bool> {
    match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => Some(true),
        Some("Failed") => Some(false),
        // A pod deleted before it finished failed, as upstream counts it.
        _ if pod.metadata.deletion_timestamp.is_some() => Some(false),
        _ => None,
    }
}

fn tracked(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && finished_as(pod).is_none()
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether the Job has a condition of `kind` that is true.
pub fn has_condition(job: &Job, kind: &str) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == kind && c.status == "True")
}

/// Whether the Job finished (`Complete` or `Failed`).
pub fn is_finished(job: &Job) -> bool {
    has_condition(job, "Complete") || has_condition(job, "Failed")
}

/// Decides a pass over `job` and its `pods` at `now`.
pub fn plan(job: &Job, pods: &[Arc<Pod>], now: Timestamp) -> Plan {
    let spec = job.spec.clone().unwrap_or_default();
    let mut status = job.status.clone().unwrap_or_default();
    let mut plan = Plan::default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let completions = spec.completions;
    let parallelism = spec.parallelism.unwrap_or(1).max(0);

    // Counting, phase two: what the last pass listed and whose finalizer is gone is counted.
    let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    let still_tracked =
        |uid: &String| pods.iter().any(|p| p.metadata.uid.as_ref() == Some(uid) && tracked(p));
    let (mut succeeded_left, mut failed_left) = (Vec::new(), Vec::new());
    for uid in uncounted.succeeded.take().unwrap_or_default() {
        if still_tracked(&uid) {
            succeeded_left.push(uid);
        } else {
            status.succeeded = Some(status.succeeded.unwrap_or(0) + 1);
        }
    }
    for uid in uncounted.failed.take().unwrap_or_default() {
        if still_tracked(&uid) {
            failed_left.push(uid);
        } else {
            status.failed = Some(status.failed.unwrap_or(0) + 1);
        }
    }
    // Phase one: finished pods still tracked are listed (and their finalizer removed after).
    let mut completed =
        indexes::parse(status.completed_indexes.as_deref(), completions.unwrap_or(0));
    let mut fail_job: Option<String> = None;
    for pod in pods.iter().filter(|p| tracked(p)) {
        let Some(succeeded) = finished_as(pod) else { continue };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let listed = succeeded_left.contains(&uid) || failed_left.contains(&uid);
        plan.release.push(Arc::clone(pod));
        if listed {
            continue;
        }
        if succeeded {
            if indexed && let Some(index) = indexes::of(pod, completions.unwrap_or(0)) {
                completed.insert(index);
            }
            succeeded_left.push(uid);
            continue;
        }
        match failure_policy::judge(spec.pod_failure_policy.as_ref(), pod) {
            Verdict::Ignore => {}
            Verdict::FailJob(message) => {
                fail_job.get_or_insert(message);
                failed_left.push(uid);
            }
            Verdict::FailIndex | Verdict::Count => failed_left.push(uid),
        }
    }
    if indexed {
        status.completed_indexes = indexes::format(&completed);
    }
    let succeeded_total = status.succeeded.unwrap_or(0) + count(&succeeded_left);
    let failed_total = status.failed.unwrap_or(0) + count(&failed_left);
    uncounted.succeeded = (!succeeded_left.is_empty()).then_some(succeeded_left);
    uncounted.failed = (!failed_left.is_empty()).then_some(failed_left);

    let active: Vec<&Arc<Pod>> = pods.iter().filter(|p| is_active(p)).collect();
    let terminating = pods
        .iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_some() && finished_as(p) == Some(false) && tracked(p)
        })
        .count();
    let mut conditions = status.conditions.take().unwrap_or_default();
    let suspended = spec.suspend == Some(true);
    let finished = is_finished(job);

    // Suspension and resumption.
    if !finished {
        let was_suspended = conditions.iter().any(|c| c.type_ == "Suspended" && c.status == "True");
        if suspended && !was_suspended {
            set_condition(
                &mut conditions,
                "Suspended",
                "True",
                "JobSuspended",
                "Job suspended",
                now,
            );
            plan.notes.push(normal("Suspended", "Job suspended".into()));
            status.start_time = None;
        } else if !suspended && was_suspended {
            set_condition(&mut conditions, "Suspended", "False", "JobResumed", "Job resumed", now);
            plan.notes.push(normal("Resumed", "Job resumed".into()));
            status.start_time = Some(Time(now));
        }
        if !suspended && status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
    }

    // A terminal state, decided once.
    let decided = conditions.iter().any(|c| {
        (c.type_ == "FailureTarget" || c.type_ == "SuccessCriteriaMet") && c.status == "True"
    });
    if !finished && !decided {
        let deadline = spec.active_deadline_seconds.filter(|_| !suspended).and_then(|d| {
            let start = status.start_time.as_ref()?.0;
            start.checked_add(SignedDuration::from_secs(d)).ok()
        });
        let complete = if indexed {
            completions.is_some_and(|c| count_set(&completed) >= c)
        } else {
            match completions {
                Some(c) => succeeded_total >= c,
                None => succeeded_total > 0 && active.is_empty(),
            }
        };
        let success_rule =
            indexed.then(|| success_policy_match(job, &completed, succeeded_total)).flatten();
        if let Some(message) = fail_job {
            set_condition(
                &mut conditions,
                "FailureTarget",
                "True",
                "PodFailurePolicy",
                &message,
                now,
            );
            plan.notes.push(warning("PodFailurePolicy", message));
        } else if failed_total > spec.backoff_limit.unwrap_or(6) {
            let message = "Job has reached the specified backoff limit";
            set_condition(
                &mut conditions,
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                message,
                now,
            );
            plan.notes.push(warning("BackoffLimitExceeded", message.into()));
        } else if deadline.is_some_and(|d| d <= now) {
            let message = "Job was active longer than specified deadline";
            set_condition(
                &mut conditions,
                "FailureTarget",
                "True",
                "DeadlineExceeded",
                message,
                now,
            );
            plan.notes.push(warning("DeadlineExceeded", message.into()));
        } else if let Some(rule) = success_rule {
            let message = format!("Matched rules at index {rule}");
            set_condition(
                &mut conditions,
                "SuccessCriteriaMet",
                "True",
                "SuccessPolicy",
                &message,
                now,
            );
        } else if complete {
            let message = "Reached expected number of succeeded pods";
            set_condition(
                &mut conditions,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                message,
                now,
            );
        } else if let Some(d) = deadline {
            plan.requeue = Duration::try_from(d.duration_since(now)).ok();
        }
    }
    let ending = conditions
        .iter()
        .find(|c| {
            (c.type_ == "FailureTarget" || c.type_ == "SuccessCriteriaMet") && c.status == "True"
        })
        .cloned();

    if finished || ending.is_some() || suspended {
        // Nothing new starts; what runs is stopped.
        plan.delete = active.iter().copied().take(BURST).cloned().collect();
    } else {
        plan_pods(
            &mut plan,
            job,
            &active,
            &completed,
            succeeded_total,
            failed_total,
            pods,
            now,
            parallelism,
        );
    }

    // The end, once no pod of the Job is left running or uncounted.
    let settled = uncounted.succeeded.is_none() && uncounted.failed.is_none() && terminating == 0;
    if let Some(ending) =
        ending.filter(|_| !finished && settled && plan.delete.is_empty() && active.is_empty())
    {
        let reason = ending.reason.clone().unwrap_or_default();
        let message = ending.message.clone().unwrap_or_default();
        if ending.type_ == "SuccessCriteriaMet" {
            set_condition(&mut conditions, "Complete", "True", &reason, &message, now);
            status.completion_time = Some(Time(now));
            plan.notes.push(normal("Completed", "Job completed".into()));
        } else {
            set_condition(&mut conditions, "Failed", "True", &reason, &message, now);
        }
    }

    let active_left = active.len().saturating_sub(plan.delete.len());
    status.active = positive(active_left);
    status.ready =
        Some(i32::try_from(active.iter().filter(|p| is_ready(p)).count()).unwrap_or(i32::MAX));
    status.terminating = Some(i32::try_from(terminating).unwrap_or(i32::MAX));
    status.succeeded = status.succeeded.filter(|n| *n > 0);
    status.failed = status.failed.filter(|n| *n > 0);
    status.uncounted_terminated_pods = Some(uncounted);
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    plan.status = status;
    plan
}

/// Which pods to create or delete while the Job runs.
#[allow(clippy::too_many_arguments)]
fn plan_pods(
    plan: &mut Plan,
    job: &Job,
    active: &[&Arc<Pod>],
    completed: &BTreeSet<i32>,
    succeeded: i32,
    failed: i32,
    pods: &[Arc<Pod>],
    now: Timestamp,
    parallelism: i32,
) {
    let spec = job.spec.clone().unwrap_or_default();
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let wanted_active = if indexed {
        let left = spec.completions.unwrap_or(0) - count_set(completed);
        parallelism.min(left).max(0)
    } else {
        match spec.completions {
            Some(c) => parallelism.min(c - succeeded).max(0),
            None if succeeded > 0 => 0,
            None => parallelism,
        }
    };
    let wanted = usize::try_from(wanted_active).unwrap_or(0);
    if indexed {
        let completions = spec.completions.unwrap_or(0);
        // One active pod per index: duplicates and pods of completed indexes go.
        let mut seen = BTreeSet::new();
        for pod in active {
            match indexes::of(pod, completions) {
                Some(i) if !completed.contains(&i) && seen.insert(i) => {}
                _ => plan.delete.push(Arc::clone(pod)),
            }
        }
        let room = wanted.saturating_sub(seen.len());
        let pending = (0..completions).filter(|i| !completed.contains(i) && !seen.contains(i));
        let create: Vec<Option<i32>> = pending.take(room.min(BURST)).map(Some).collect();
        if !create.is_empty() {
            plan.create = create;
        }
    } else if active.len() < wanted {
        plan.create = vec![None; (wanted - active.len()).min(BURST)];
    } else if active.len() > wanted {
        // The newest and least ready go first.
        let mut excess: Vec<&Arc<Pod>> = active.to_vec();
        excess.sort_by_key(|p| {
            (is_ready(p), std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0)))
        });
        plan.delete =
            excess.into_iter().take((active.len() - wanted).min(BURST)).map(Arc::clone).collect();
    }
    // After failures, new pods wait their back-off.
    if !plan.create.is_empty() && failed > 0 {
        let exponent = u32::try_from(failed - 1).unwrap_or(0).min(16);
        let delay = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_MAX);
        let last = pods
            .iter()
            .filter(|p| finished_as(p) == Some(false))
            .filter_map(|p| finished_at(p))
            .max();
        if let Some(last) = last {
            let since = Duration::try_from(now.duration_since(last)).unwrap_or_default();
            if since < delay {
                plan.create.clear();
                plan.requeue = Some(plan.requeue.map_or(delay - since, |r| r.min(delay - since)));
            }
        }
    }
}

/// When a failed pod finished: its last container's end, else its `Ready` condition's change.
fn finished_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref()?;
    let ended = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max();
    ended
        .or_else(|| {
            status
                .conditions
                .iter()
                .flatten()
                .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
                .max()
        })
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
}

/// The index of the first `successPolicy` rule the succeeded indexes satisfy.
fn success_policy_match(job: &Job, completed: &BTreeSet<i32>, succeeded: i32) -> Option<usize> {
    let spec = job.spec.as_ref()?;
    let policy = spec.success_policy.as_ref()?;
    let completions = spec.completions.unwrap_or(0);
    policy.rules.iter().position(|rule| {
        let named = rule.succeeded_indexes.as_deref().map(|t| indexes::parse(Some(t), completions));
        let among = match &named {
            Some(set) => {
                if !set.is_subset(completed) && rule.succeeded_count.is_none() {
                    return false;
                }
                count_set(&set.intersection(completed).copied().collect())
            }
            None => succeeded,
        };
        match rule.succeeded_count {
            Some(n) => among >= n,
            None => named.is_some(),
        }
    })
}

fn count(v: &[String]) -> i32 {
    i32::try_from(v.len()).unwrap_or(i32::MAX)
}

fn count_set(s: &BTreeSet<i32>) -> i32 {
    i32::try_from(s.len()).unwrap_or(i32::MAX)
}

fn positive(n: usize) -> Option<i32> {
    (n > 0).then(|| i32::try_from(n).unwrap_or(i32::MAX))
}

fn normal(reason: &'static str, message: String) -> Note {
    Note { warning: false, reason, message }
}

fn warning(reason: &'static str, message: String) -> Note {
    Note { warning: true, reason, message }
}

/// Sets the condition `kind`, keeping its transition time when its status stays.
fn set_condition(
    conditions: &mut Vec<JobCondition>,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let fresh = JobCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == kind) {
        Some(existing) if existing.status == status => {
            existing.reason = fresh.reason;
            existing.message = fresh.message;
        }
        Some(existing) => *existing = fresh,
        None => conditions.push(fresh),
    }
}

/// Whether two statuses say the same, condition and probe times aside.
pub fn same_status(current: Option<&JobStatus>, wanted: &JobStatus) -> bool {
    let strip = |s: &JobStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_probe_time = None;
            c.last_transition_time = None;
        }
        if s.uncounted_terminated_pods
            .as_ref()
            .is_some_and(|u| u.succeeded.is_none() && u.failed.is_none())
        {
            s.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
        }
        s.ready = s.ready.filter(|n| *n > 0);
        s.terminating = s.terminating.filter(|n| *n > 0);
        s
    };
    current.is_some_and(|c| strip(c) == strip(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    fn job(completions: Option<i32>, parallelism: i32, indexed: bool) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("j".into()),
                uid: Some("uid-j".into()),
                ..ObjectMeta::default()
            },
            spec: Some(JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(2),
                completion_mode: Some(if indexed { "Indexed" } else { "NonIndexed" }.into()),
                ..JobSpec::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, phase: &str, index: Option<i32>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                finalizers: Some(vec![TRACKING_FINALIZER.into()]),
                annotations: index
                    .map(|i| [(indexes::COMPLETION_INDEX.to_string(), i.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus { phase: Some(phase.into()), ..PodStatus::default() }),
        })
    }

    /// Runs passes as the controller would (status written, finalizers removed) until nothing changes.
    fn settle(mut job: Job, mut pods: Vec<Arc<Pod>>, now: Timestamp) -> (Job, Plan) {
        loop {
            let plan = plan(&job, &pods, now);
            let released: Vec<String> =
                plan.release.iter().filter_map(|p| p.metadata.uid.clone()).collect();
            let same = same_status(job.status.as_ref(), &plan.status) && released.is_empty();
            job.status = Some(plan.status.clone());
            pods = pods
                .into_iter()
                .map(|p| {
                    if released.contains(p.metadata.uid.as_ref().expect("uid")) {
                        let mut p = (*p).clone();
                        p.metadata.finalizers = None;
                        Arc::new(p)
                    } else {
                        p
                    }
                })
                .collect();
            if same {
                return (job, plan);
            }
        }
    }

    #[test]
    fn parallelism_bounds_the_active_pods() {
        let j = job(Some(5), 2, false);
        let p = plan(&j, &[], at("2026-01-01T00:00:00Z"));
        assert_eq!(p.create, [None, None]);
        let running = [pod("a", "Running", None), pod("b", "Running", None)];
        assert!(plan(&j, &running, at("2026-01-01T00:00:00Z")).create.is_empty());
        // Four done, one running: one left to run.
        let pods = vec![
            pod("a", "Succeeded", None),
            pod("b", "Succeeded", None),
            pod("c", "Succeeded", None),
            pod("d", "Succeeded", None),
            pod("e", "Running", None),
        ];
        let (_, p) = settle(j.clone(), pods, at("2026-01-01T00:00:00Z"));
        assert!(p.create.is_empty());
        assert_eq!(p.status.succeeded, Some(4));
        assert_eq!(p.status.active, Some(1));
    }

    #[test]
    fn finished_pods_are_counted_once_through_uncounted() {
        let j = job(Some(2), 2, false);
        let pods = vec![pod("a", "Succeeded", None), pod("b", "Running", None)];
        let first = plan(&j, &pods, at("2026-01-01T00:00:00Z"));
        let uncounted = first.status.uncounted_terminated_pods.clone().expect("listed");
        assert_eq!(uncounted.succeeded, Some(vec!["uid-a".to_string()]));
        assert_eq!(first.status.succeeded, None);
        assert_eq!(first.release.len(), 1);
        let (done, _) = settle(j, pods, at("2026-01-01T00:00:00Z"));
        assert_eq!(done.status.as_ref().and_then(|s| s.succeeded), Some(1));
    }

    #[test]
    fn completion_sets_success_criteria_then_complete() {
        let j = job(Some(2), 2, false);
        let pods = vec![pod("a", "Succeeded", None), pod("b", "Succeeded", None)];
        let (done, p) = settle(j, pods, at("2026-01-01T00:00:00Z"));
        assert!(has_condition(&done, "SuccessCriteriaMet"));
        assert!(has_condition(&done, "Complete"));
        assert!(done.status.as_ref().and_then(|s| s.completion_time.as_ref()).is_some());
        assert!(p.notes.is_empty() || p.notes.iter().all(|n| n.reason == "Completed"));
    }

    #[test]
    fn indexed_jobs_create_the_missing_indexes() {
        let j = job(Some(4), 2, true);
        let p = plan(&j, &[], at("2026-01-01T00:00:00Z"));
        assert_eq!(p.create, [Some(0), Some(1)]);
        let pods = vec![
            pod("a", "Succeeded", Some(0)),
            pod("b", "Running", Some(1)),
            pod("c", "Succeeded", Some(3)),
        ];
        let (done, p) = settle(j, pods, at("2026-01-01T00:00:00Z"));
        assert_eq!(p.create, [Some(2)]);
        assert_eq!(
            done.status.as_ref().and_then(|s| s.completed_indexes.clone()).as_deref(),
            Some("0,3")
        );
    }

    #[test]
    fn the_backoff_limit_fails_the_job() {
        let j = job(Some(1), 1, false);
        let pods =
            vec![pod("a", "Failed", None), pod("b", "Failed", None), pod("c", "Failed", None)];
        let (done, _) = settle(j, pods, at("2026-01-01T00:00:00Z"));
        let failed = done
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Failed").cloned())
            .expect("failed");
        assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert!(has_condition(&done, "FailureTarget"));
        assert_eq!(done.status.as_ref().and_then(|s| s.failed), Some(3));
    }

    #[test]
    fn failures_back_off_before_new_pods() {
        let j = job(Some(1), 1, false);
        let mut failed = (*pod("a", "Failed", None)).clone();
        failed.metadata.finalizers = None;
        failed.status.as_mut().expect("status").conditions =
            Some(vec![k8s_openapi::api::core::v1::PodCondition {
                type_: "Ready".into(),
                status: "False".into(),
                last_transition_time: Some(Time(at("2026-01-01T00:00:00Z"))),
                ..Default::default()
            }]);
        let mut j = j;
        j.status = Some(JobStatus { failed: Some(1), ..JobStatus::default() });
        let pods = vec![Arc::new(failed)];
        let early = plan(&j, &pods, at("2026-01-01T00:00:04Z"));
        assert!(early.create.is_empty());
        assert_eq!(early.requeue, Some(Duration::from_secs(6)));
        assert_eq!(plan(&j, &pods, at("2026-01-01T00:00:11Z")).create, [None]);
    }

    #[test]
    fn suspension_deletes_active_pods() {
        let mut j = job(Some(3), 3, false);
        if let Some(spec) = j.spec.as_mut() {
            spec.suspend = Some(true);
        }
        let pods = vec![pod("a", "Running", None)];
        let p = plan(&j, &pods, at("2026-01-01T00:00:00Z"));
        assert_eq!(p.delete.len(), 1);
        assert!(p.create.is_empty());
        assert_eq!(p.notes[0].reason, "Suspended");
        assert!(p.status.start_time.is_none());
    }
}
