//! A Job's status after a pass (upstream's end of `syncJob` and
//! `trackJobStatusAndRemoveFinalizers`): the counts once the pod writes are done, the
//! `Suspended` condition, finished pods put in `uncountedTerminatedPods` before their
//! finalizer goes, counted once it went, and the terminal condition (`Failed`/`Complete`)
//! only once nothing is uncounted or terminating, after `FailureTarget` or
//! `SuccessCriteriaMet` recorded the criterion.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::failure_policy;
use super::indexes;
use super::manage::{
    Action, Assessment, condition, has_finalizer, is_failed, is_indexed, is_suspended, normalize,
    true_condition,
};

/// At most this many finished pods wait in `uncountedTerminatedPods` (upstream's
/// `MaxUncountedPods`); the rest are counted by a later pass.
pub const MAX_UNCOUNTED: usize = 500;

/// An event to report about the Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Whether it is a warning.
    pub warning: bool,
    /// Its reason.
    pub reason: String,
    /// Its message.
    pub message: String,
}

impl Note {
    fn normal(reason: &str, message: &str) -> Self {
        Self { warning: false, reason: reason.into(), message: message.into() }
    }
}

/// What the pod writes of a pass achieved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Done {
    /// Pods deleted.
    pub removed: i32,
    /// Of them, ready ones.
    pub removed_ready: i32,
    /// Pods created.
    pub created: i32,
}

/// Sets or updates the condition `type_`; a false condition is not added where there was
/// none. Answers whether the list changed.
pub fn ensure_condition(
    status: &mut JobStatus,
    type_: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let mut wanted = condition(type_, reason, message, now);
    wanted.status = value.into();
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == type_) {
        let same = existing.status == value
            && existing.reason.as_deref().unwrap_or_default() == reason
            && existing.message.as_deref().unwrap_or_default() == message;
        if same {
            return false;
        }
        *existing = wanted;
        return true;
    }
    if value == "False" {
        if conditions.is_empty() {
            status.conditions = None;
        }
        return false;
    }
    conditions.push(wanted);
    true
}

/// After the pod writes: the active, ready and terminating counts, the success criterion
/// (enough completions and nothing active), and suspension; `satisfied` as the pass read it.
pub fn settle(
    job: &Job,
    a: &mut Assessment,
    done: Done,
    satisfied: bool,
    now: Timestamp,
) -> Vec<Note> {
    let mut notes = Vec::new();
    let Some(spec) = job.spec.as_ref() else { return notes };
    let mut active = i32::try_from(a.active.len()).unwrap_or(i32::MAX);
    match &a.action {
        Action::Terminate(_) => {
            if done.removed != active || !satisfied {
                // Pods may still be uncached or carry finalizers: not finished yet.
                a.finished = None;
            }
            active -= done.removed;
            a.terminating += done.removed;
            a.ready -= done.removed_ready;
        }
        Action::Remove(_) => {
            active -= done.removed;
            a.terminating += done.removed;
            a.ready -= done.removed_ready;
        }
        Action::Create(_) => active += done.created,
        Action::None | Action::Backoff(_) => {}
    }
    if !matches!(a.action, Action::Terminate(_)) {
        let complete = match spec.completions {
            None => a.succeeded > 0 && active == 0,
            Some(c) => a.succeeded >= c && active == 0,
        };
        if complete {
            a.finished = Some(condition(
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ));
        } else if a.managed {
            if is_suspended(spec) {
                if ensure_condition(
                    &mut a.status,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                ) {
                    notes.push(Note::normal("Suspended", "Job suspended"));
                }
            } else if ensure_condition(
                &mut a.status,
                "Suspended",
                "False",
                "JobResumed",
                "Job resumed",
                now,
            ) {
                notes.push(Note::normal("Resumed", "Job resumed"));
                // The deadline counts from the resumption, as upstream.
                a.status.start_time =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
            }
        }
    }
    a.status.active = (active > 0).then_some(active);
    a.status.ready = Some(a.ready.max(0));
    a.status.terminating = Some(a.terminating.max(0));
    notes
}

/// What tracking the finished pods does.
#[derive(Debug, Clone, Default)]
pub struct Tracking {
    /// The status to write before any finalizer is removed.
    pub status: JobStatus,
    /// The pods whose finalizer goes.
    pub remove: Vec<Arc<Pod>>,
    /// Uids of the pods that still carry the finalizer (not being removed already).
    pub with_finalizer: HashSet<String>,
    /// The terminal condition to set once nothing is uncounted or terminating.
    pub finished: Option<JobCondition>,
    /// Whether the uncounted lists are full (the rest waits for a later pass).
    pub capped: bool,
}

/// Puts finished pods in `uncountedTerminatedPods` (or an Indexed Job's succeeded indexes)
/// and picks the pods whose finalizer may go; records `FailureTarget`/`SuccessCriteriaMet`.
pub fn track(job: &Job, pods: &[Arc<Pod>], a: &Assessment, removing: &HashSet<String>) -> Tracking {
    let mut t = Tracking { status: a.status.clone(), ..Default::default() };
    let Some(spec) = job.spec.as_ref() else { return t };
    let indexed = is_indexed(spec);
    let completions = spec.completions.unwrap_or(0);
    let policy = spec.pod_failure_policy.as_ref();
    let uid_of = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    let mut pods: Vec<Arc<Pod>> = pods.to_vec();
    if indexed {
        pods.sort_by_key(|p| indexes::index_of(p).unwrap_or(-1));
    }
    t.with_finalizer = pods
        .iter()
        .filter(|p| has_finalizer(p) && !removing.contains(&uid_of(p)))
        .map(|p| uid_of(p))
        .collect();
    clean_uncounted(&mut t.status, &t.with_finalizer);
    let original = a.status.uncounted_terminated_pods.clone().unwrap_or_default();
    let was_succeeded: HashSet<String> = original.succeeded.into_iter().flatten().collect();
    let was_failed: HashSet<String> = original.failed.into_iter().flatten().collect();
    let failing = a.finished.as_ref().is_some_and(|c| c.type_ != "SuccessCriteriaMet");
    let mut new_indexes = Vec::new();
    let uncounted = t.status.uncounted_terminated_pods.get_or_insert_with(Default::default);
    for pod in &pods {
        let uid = uid_of(pod);
        if !has_finalizer(pod) || removing.contains(&uid) {
            continue;
        }
        let failed = is_failed(pod, spec);
        if !can_remove_finalizer(job, a, pod, failed) {
            continue;
        }
        t.remove.push(Arc::clone(pod));
        let succeeded = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded");
        if succeeded && !was_failed.contains(&uid) {
            if indexed {
                if let Some(ix) = indexes::valid_index(pod, completions)
                    && !a.prev_succeeded_indexes.has(ix)
                {
                    new_indexes.push(ix);
                }
            } else if !was_succeeded.contains(&uid) {
                uncounted.succeeded.get_or_insert_with(Vec::new).push(uid);
            }
        } else if (failed || failing)
            && !was_failed.contains(&uid)
            && (!indexed || indexes::valid_index(pod, completions).is_some())
            && failure_policy::counts(policy, pod)
        {
            uncounted.failed.get_or_insert_with(Vec::new).push(uid);
        }
        let waiting = new_indexes.len()
            + uncounted.succeeded.as_ref().map_or(0, Vec::len)
            + uncounted.failed.as_ref().map_or(0, Vec::len);
        if waiting >= MAX_UNCOUNTED {
            t.capped = true;
            break;
        }
    }
    normalize(uncounted);
    if indexed {
        let succeeded = a.succeeded_indexes.with(new_indexes);
        let text = succeeded.to_string();
        t.status.succeeded =
            Some(i32::try_from(succeeded.total()).unwrap_or(i32::MAX)).filter(|n| *n > 0);
        t.status.completed_indexes = Some(text).filter(|s| !s.is_empty());
        t.status.failed_indexes = a.failed_indexes.as_ref().map(ToString::to_string);
    }
    t.finished = a.finished.clone();
    if let Some(cond) = t.finished.clone() {
        let reason = cond.reason.as_deref().unwrap_or_default();
        let message = cond.message.as_deref().unwrap_or_default();
        let now = cond.last_transition_time.as_ref().map_or_else(Timestamp::now, |t| t.0);
        match cond.type_.as_str() {
            "FailureTarget" => {
                t.status.conditions.get_or_insert_with(Vec::new).push(cond.clone());
                t.finished = Some(condition("Failed", reason, message, now));
            }
            "SuccessCriteriaMet" => {
                if true_condition(&t.status, "SuccessCriteriaMet").is_none() {
                    t.status.conditions.get_or_insert_with(Vec::new).push(cond.clone());
                }
                t.finished = Some(condition("Complete", reason, message, now));
            }
            _ => {}
        }
    }
    t
}

/// Whether the pod's finalizer may go: the Job is deleted or finishing, the pod succeeded,
/// or it failed and (with `backoffLimitPerIndex`) its replacement does not wait for it.
fn can_remove_finalizer(job: &Job, a: &Assessment, pod: &Pod, failed: bool) -> bool {
    let succeeded = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded");
    if job.metadata.deletion_timestamp.is_some() || a.finished.is_some() || succeeded {
        return true;
    }
    if !failed {
        return false;
    }
    match indexes::index_of(pod).and_then(|ix| a.delayed.get(&ix)) {
        Some(kept) => kept.metadata.uid != pod.metadata.uid,
        None => true,
    }
}

/// Counts the uncounted pods that no longer carry the finalizer (`with_finalizer` has the
/// uids that do). Answers whether the status changed.
pub fn clean_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let uncounted = status.uncounted_terminated_pods.get_or_insert_with(Default::default);
    let mut changed = false;
    let mut counted = |list: &mut Option<Vec<String>>| {
        let before = list.as_ref().map_or(0, Vec::len);
        if let Some(l) = list.as_mut() {
            l.retain(|uid| with_finalizer.contains(uid));
        }
        let after = list.as_ref().map_or(0, Vec::len);
        changed |= before != after;
        i32::try_from(before - after).unwrap_or(0)
    };
    let succeeded = counted(&mut uncounted.succeeded);
    let failed = counted(&mut uncounted.failed);
    normalize(uncounted);
    let add = |n: Option<i32>, more: i32| Some(n.unwrap_or(0) + more).filter(|n| *n > 0);
    if succeeded > 0 {
        status.succeeded = add(status.succeeded, succeeded);
    }
    if failed > 0 {
        status.failed = add(status.failed, failed);
    }
    changed
}

/// After the finalizers went: counts what lost them and, when the Job met its criterion and
/// nothing is uncounted or terminating, sets the terminal condition (and `completionTime`).
/// Answers whether the Job finished now.
pub fn conclude(
    status: &mut JobStatus,
    with_finalizer: &HashSet<String>,
    t: &Tracking,
    terminating: i32,
    now: Timestamp,
) -> bool {
    clean_uncounted(status, with_finalizer);
    let Some(finished) = t.finished.as_ref().filter(|_| !t.capped) else { return false };
    let uncounted = status.uncounted_terminated_pods.as_ref();
    let waiting = uncounted.map_or(0, |u| {
        u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
    });
    if waiting > 0 || terminating > 0 {
        return false;
    }
    let reason = finished.reason.as_deref().unwrap_or_default();
    let message = finished.message.as_deref().unwrap_or_default();
    ensure_condition(status, &finished.type_, "True", reason, message, now);
    if finished.type_ == "Complete" {
        status.completion_time = finished.last_transition_time.clone();
    }
    true
}

/// The events of a Job that just finished with `finished`.
pub fn finished_notes(job: &Job, status: &JobStatus, finished: &JobCondition) -> Vec<Note> {
    if finished.type_ != "Complete" {
        return vec![Note {
            warning: true,
            reason: finished.reason.clone().unwrap_or_default(),
            message: finished.message.clone().unwrap_or_default(),
        }];
    }
    let mut notes = Vec::new();
    let completions = job.spec.as_ref().and_then(|s| s.completions);
    if completions.is_some_and(|c| status.succeeded.unwrap_or(0) > c) {
        notes.push(Note {
            warning: true,
            reason: "TooManySucceededPods".into(),
            message: "Too many succeeded pods running after completion count reached".into(),
        });
    }
    notes.push(Note::normal("Completed", "Job completed"));
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::fixtures::*;
    use crate::job::manage::Action;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn uids(list: &Option<Vec<String>>) -> Vec<String> {
        list.clone().unwrap_or_default()
    }

    /// One pass without pod writes: settle, track, then conclude as if every finalizer went.
    fn pass(
        job: &Job,
        pods: &[Arc<Pod>],
        now: Timestamp,
    ) -> (Tracking, JobStatus, bool, Vec<Note>) {
        let mut a = run(job, pods, now);
        let done = match &a.action {
            Action::Terminate(p) | Action::Remove(p) => {
                Done { removed: i32::try_from(p.len()).unwrap_or(0), ..Default::default() }
            }
            Action::Create(n) => {
                Done { created: i32::try_from(n.len()).unwrap_or(0), ..Default::default() }
            }
            _ => Done::default(),
        };
        let notes = settle(job, &mut a, done, true, now);
        let t = track(job, pods, &a, &HashSet::new());
        let mut with = t.with_finalizer.clone();
        for p in &t.remove {
            with.remove(p.metadata.uid.as_deref().unwrap_or_default());
        }
        let mut last = t.status.clone();
        let finished = conclude(&mut last, &with, &t, a.terminating, now);
        (t, last, finished, notes)
    }

    #[test]
    fn finished_pods_are_uncounted_until_their_finalizer_goes() {
        let j = job(Some(3), 2);
        let pods = arcs(vec![
            pod("a", "Succeeded", None),
            pod("b", "Failed", None),
            pod("c", "Running", None),
        ]);
        let (t, last, finished, _) = pass(&j, &pods, at(5));
        let uncounted = t.status.uncounted_terminated_pods.clone().unwrap_or_default();
        assert_eq!(uids(&uncounted.succeeded), ["a-uid"]);
        assert_eq!(uids(&uncounted.failed), ["b-uid"]);
        assert_eq!(t.remove.len(), 2, "the running pod keeps its finalizer");
        assert_eq!((last.succeeded, last.failed), (Some(1), Some(1)));
        assert_eq!(last.uncounted_terminated_pods, Some(Default::default()));
        assert!(!finished);
    }

    #[test]
    fn a_job_completes_after_success_criteria_met() {
        let j = job(Some(2), 2);
        let pods = arcs(vec![pod("a", "Succeeded", None), pod("b", "Succeeded", None)]);
        let (t, last, finished, _) = pass(&j, &pods, at(5));
        let types: Vec<&str> =
            t.status.conditions.iter().flatten().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["SuccessCriteriaMet"]);
        assert!(finished);
        let complete = true_condition(&last, "Complete").cloned().unwrap_or_default();
        assert_eq!(complete.reason.as_deref(), Some("CompletionsReached"));
        assert_eq!(last.completion_time, Some(Time(at(5))));
        assert_eq!(last.succeeded, Some(2));
        let notes = finished_notes(&j, &last, t.finished.as_ref().unwrap_or(&Default::default()));
        assert_eq!(notes, [Note::normal("Completed", "Job completed")]);
    }

    #[test]
    fn failed_waits_for_terminating_pods_after_failure_target() {
        let mut j = job(Some(3), 2);
        if let Some(s) = j.spec.as_mut() {
            s.backoff_limit = Some(0);
        }
        let pods = arcs(vec![pod("a", "Failed", None), pod("b", "Running", None)]);
        let (t, last, finished, _) = pass(&j, &pods, at(5));
        assert!(true_condition(&t.status, "FailureTarget").is_some());
        // b was deleted in this pass and still terminates.
        assert!(!finished);
        assert!(true_condition(&last, "Failed").is_none());
        // Next pass: b is gone; the recorded FailureTarget turns Failed.
        let mut next = j.clone();
        next.status = Some(last);
        let (_, last, finished, _) = pass(&next, &[], at(6));
        assert!(finished);
        let failed = true_condition(&last, "Failed").cloned().unwrap_or_default();
        assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert!(last.completion_time.is_none());
        let notes = finished_notes(&next, &last, &failed);
        assert_eq!(notes[0].reason, "BackoffLimitExceeded");
        assert!(notes[0].warning);
    }

    #[test]
    fn a_pod_deleted_with_its_finalizer_counts_as_failed() {
        let j = job(Some(3), 1);
        let mut gone = pod("a", "Running", None);
        gone.metadata.deletion_timestamp = Some(Time(at(2)));
        let (t, last, _, _) = pass(&j, &arcs(vec![gone]), at(5));
        assert_eq!(uids(&t.status.uncounted_terminated_pods.unwrap_or_default().failed), ["a-uid"]);
        assert_eq!(last.failed, Some(1));
    }

    #[test]
    fn completed_indexes_are_reported_compressed() {
        let j = indexed(6, 6);
        let pods = arcs(vec![
            pod("a", "Succeeded", Some(0)),
            pod("b", "Succeeded", Some(1)),
            pod("c", "Succeeded", Some(2)),
            pod("d", "Succeeded", Some(4)),
            pod("e", "Running", Some(3)),
            pod("f", "Running", Some(5)),
        ]);
        let (t, last, _, _) = pass(&j, &pods, at(5));
        assert_eq!(t.status.completed_indexes.as_deref(), Some("0-2,4"));
        assert_eq!(last.succeeded, Some(4));
        assert_eq!(t.status.uncounted_terminated_pods, Some(Default::default()));
    }

    #[test]
    fn suspension_and_resumption_are_reported_and_resumption_restarts_the_clock() {
        let mut j = job(Some(3), 1);
        if let Some(s) = j.spec.as_mut() {
            s.suspend = Some(true);
        }
        let (t, _, _, notes) = pass(&j, &arcs(vec![pod("a", "Running", None)]), at(5));
        assert_eq!(notes, [Note::normal("Suspended", "Job suspended")]);
        let suspended = true_condition(&t.status, "Suspended").cloned().unwrap_or_default();
        assert_eq!(suspended.reason.as_deref(), Some("JobSuspended"));
        let mut resumed = j.clone();
        resumed.status = Some(t.status);
        if let Some(s) = resumed.spec.as_mut() {
            s.suspend = Some(false);
        }
        let (t, _, _, notes) = pass(&resumed, &[], at(50));
        assert_eq!(notes, [Note::normal("Resumed", "Job resumed")]);
        let condition = t
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Suspended")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_deref()),
            ("False", Some("JobResumed"))
        );
        assert_eq!(t.status.start_time, Some(Time(at(50))));
        assert_eq!(t.status.active, Some(1));
    }
}
