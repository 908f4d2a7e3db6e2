//! What a CronJob's sync decides (upstream's `cronjob_controllerv2` `syncCronJob`), as plain
//! functions of the CronJob, the Jobs it owns and the time: which active Jobs finished, whether
//! a run is due (and which scheduled time it is for), the Job it creates, and the finished
//! Jobs beyond the history limits.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::schedule::Schedule;
use crate::runtime::owner::controller_ref;

/// The annotation a Job records its scheduled time in.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// Missed runs past which upstream warns `TooManyMissedTimes`.
const MISSED_WARNING: usize = 100;

/// An event to record on the CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// A `Warning` (else `Normal`).
    pub warning: bool,
    /// Upstream's reason.
    pub reason: &'static str,
    /// Upstream's message.
    pub message: String,
}

impl Note {
    fn normal(reason: &'static str, message: String) -> Self {
        Self { warning: false, reason, message }
    }

    fn warning(reason: &'static str, message: String) -> Self {
        Self { warning: true, reason, message }
    }
}

/// How a Job ended, if it did: `Complete` or `Failed`.
pub fn finished(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().filter(|c| c.status == "True").find_map(|c| match c.type_.as_str() {
        "Complete" => Some("Complete"),
        "Failed" => Some("Failed"),
        _ => None,
    })
}

/// The active list and last success after looking at the owned `jobs`: finished Jobs leave
/// the list (`SawCompletedJob`), unfinished ones missing from it are reported
/// (`UnexpectedJob`). Listed Jobs absent from `jobs` are returned apart: the caller confirms
/// with the API that they are gone (`MissingJob`) before dropping them.
pub fn reconcile_active(
    cronjob: &CronJob,
    jobs: &[&Job],
) -> (Vec<ObjectReference>, Option<Time>, Vec<ObjectReference>, Vec<Note>) {
    let status = cronjob.status.clone().unwrap_or_default();
    let mut active = status.active.unwrap_or_default();
    let mut last_success = status.last_successful_time;
    let mut notes = Vec::new();
    for job in jobs {
        let uid = job.metadata.uid.as_deref();
        let listed = active.iter().any(|r| r.uid.as_deref() == uid);
        let name = job.metadata.name.clone().unwrap_or_default();
        match finished(job) {
            None if !listed => notes.push(Note::warning(
                "UnexpectedJob",
                format!("Saw a job that the controller did not create or forgot: {name}"),
            )),
            None => {}
            Some(condition) => {
                if listed {
                    active.retain(|r| r.uid.as_deref() != uid);
                    notes.push(Note::normal(
                        "SawCompletedJob",
                        format!("Saw completed job: {name}, condition: {condition}"),
                    ));
                }
                let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
                if condition == "Complete"
                    && let Some(at) = completed
                    && last_success.as_ref().is_none_or(|last| last.0 < at.0)
                {
                    last_success = Some(at);
                }
            }
        }
    }
    let (present, missing): (Vec<ObjectReference>, Vec<ObjectReference>) = active
        .into_iter()
        .partition(|r| jobs.iter().any(|j| j.metadata.uid.as_ref() == r.uid.as_ref()));
    (present, last_success, missing, notes)
}

/// Whether a run is due now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Due {
    /// No scheduled time has passed since the last run.
    No,
    /// The most recent scheduled time, passed and not run yet.
    Run(Timestamp),
}

/// The most recent scheduled time in `(earliest, now]` (upstream's
/// `mostRecentScheduleTime`), where `earliest` is the last run or the CronJob's creation,
/// moved up to `now - startingDeadlineSeconds` when that is later; with a warning when more
/// than a hundred were missed.
pub fn due(
    cronjob: &CronJob,
    schedule: &Schedule,
    zone: &TimeZone,
    now: Timestamp,
) -> (Due, Option<Note>) {
    let status = cronjob.status.as_ref();
    let mut earliest = status
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cronjob.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    if let Some(deadline) = starting_deadline(cronjob)
        && let Ok(bound) = now.checked_sub(jiff::SignedDuration::from_secs(deadline))
        && bound > earliest
    {
        earliest = bound;
    }
    let mut missed = 0usize;
    let mut latest = None;
    let mut at = earliest;
    while let Some(next) = schedule.next(at, zone).filter(|t| *t <= now) {
        missed += 1;
        latest = Some(next);
        at = next;
        if missed > MISSED_WARNING {
            break;
        }
    }
    if missed <= MISSED_WARNING {
        return (latest.map_or(Due::No, Due::Run), None);
    }
    // Too many to walk: the latest lies in the last window that holds any.
    let note = Note::warning(
        "TooManyMissedTimes",
        format!(
            "too many missed start times: > {MISSED_WARNING}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"
        ),
    );
    for hours in [1i64, 24, 24 * 32, 24 * 367, 24 * 367 * 5] {
        let Ok(from) = now.checked_sub(jiff::SignedDuration::from_hours(hours)) else { continue };
        let mut at = from.max(earliest);
        let mut found = None;
        while let Some(next) = schedule.next(at, zone).filter(|t| *t <= now) {
            found = Some(next);
            at = next;
        }
        if let Some(found) = found {
            return (Due::Run(found), Some(note));
        }
    }
    (latest.map_or(Due::No, Due::Run), Some(note))
}

/// Whether the run for `scheduled` is past `startingDeadlineSeconds` at `now`.
pub fn too_late(cronjob: &CronJob, scheduled: Timestamp, now: Timestamp) -> bool {
    starting_deadline(cronjob).is_some_and(|deadline| {
        scheduled.checked_add(jiff::SignedDuration::from_secs(deadline)).is_ok_and(|end| end < now)
    })
}

fn starting_deadline(cronjob: &CronJob) -> Option<i64> {
    cronjob.spec.as_ref()?.starting_deadline_seconds
}

/// The name of the Job for `scheduled` (upstream's `getJobName`: the minutes since the epoch).
pub fn job_name(cronjob: &CronJob, scheduled: Timestamp) -> String {
    let name = cronjob.metadata.name.as_deref().unwrap_or_default();
    format!("{name}-{}", scheduled.as_second().div_euclid(60))
}

/// The Job a CronJob creates for `scheduled` (upstream's `getJobFromTemplate2`): the
/// template's labels, annotations and spec, the scheduled time in the CronJob's zone, and
/// the CronJob as its controller.
pub fn job_for(cronjob: &CronJob, scheduled: Timestamp, zone: &TimeZone) -> Job {
    let template = cronjob.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    let stamp = scheduled.to_zoned(zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string();
    annotations.insert(SCHEDULED_TIMESTAMP.to_string(), stamp.replace("+00:00", "Z"));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cronjob, scheduled)),
            namespace: cronjob.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref("batch/v1", "CronJob", &cronjob.metadata)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// A reference to a Job for the active list.
pub fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        namespace: job.metadata.namespace.clone(),
        name: job.metadata.name.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        ..ObjectReference::default()
    }
}

/// The finished Jobs beyond the history limits, oldest first (upstream's
/// `cleanupFinishedJobs`: by start time, then creation).
pub fn beyond_history<'a>(cronjob: &CronJob, jobs: &[&'a Job]) -> Vec<&'a Job> {
    let spec = cronjob.spec.as_ref();
    let limits = [
        ("Complete", spec.and_then(|s| s.successful_jobs_history_limit)),
        ("Failed", spec.and_then(|s| s.failed_jobs_history_limit)),
    ];
    let mut excess = Vec::new();
    for (condition, limit) in limits {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Job> = jobs
            .iter()
            .copied()
            .filter(|j| finished(j) == Some(condition) && j.metadata.deletion_timestamp.is_none())
            .collect();
        done.sort_by_key(|j| {
            let start = j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            (start, j.metadata.creation_timestamp.as_ref().map(|t| t.0), j.metadata.name.clone())
        });
        let over = done.len().saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        excess.extend(done.into_iter().take(over));
    }
    excess
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        CronJobSpec, CronJobStatus, JobCondition, JobStatus, JobTemplateSpec,
    };

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    fn cronjob(schedule: &str, created: &str) -> CronJob {
        CronJob {
            metadata: ObjectMeta {
                name: Some("tick".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-tick".into()),
                creation_timestamp: Some(Time(at(created))),
                ..ObjectMeta::default()
            },
            spec: Some(CronJobSpec {
                schedule: schedule.into(),
                job_template: JobTemplateSpec::default(),
                successful_jobs_history_limit: Some(2),
                failed_jobs_history_limit: Some(1),
                ..CronJobSpec::default()
            }),
            status: None,
        }
    }

    fn job(name: &str, condition: Option<&str>, start: &str) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(JobStatus {
                start_time: Some(Time(at(start))),
                completion_time: condition.filter(|c| *c == "Complete").map(|_| Time(at(start))),
                conditions: condition.map(|c| {
                    vec![JobCondition {
                        type_: c.into(),
                        status: "True".into(),
                        ..JobCondition::default()
                    }]
                }),
                ..JobStatus::default()
            }),
        }
    }

    #[test]
    fn due_runs_the_most_recent_missed_time_once() {
        let every_minute: Schedule = "* * * * *".parse().expect("parses");
        let mut cj = cronjob("* * * * *", "2026-01-01T10:00:30Z");
        let utc = TimeZone::UTC;
        assert_eq!(due(&cj, &every_minute, &utc, at("2026-01-01T10:00:59Z")).0, Due::No);
        assert_eq!(
            due(&cj, &every_minute, &utc, at("2026-01-01T10:03:10Z")).0,
            Due::Run(at("2026-01-01T10:03:00Z"))
        );
        cj.status = Some(CronJobStatus {
            last_schedule_time: Some(Time(at("2026-01-01T10:03:00Z"))),
            ..CronJobStatus::default()
        });
        assert_eq!(due(&cj, &every_minute, &utc, at("2026-01-01T10:03:50Z")).0, Due::No);
        // Down for a day: one run, for the latest time, with a warning.
        let (run, note) = due(&cj, &every_minute, &utc, at("2026-01-02T10:03:50Z"));
        assert_eq!(run, Due::Run(at("2026-01-02T10:03:00Z")));
        assert_eq!(note.map(|n| n.reason), Some("TooManyMissedTimes"));
        // A starting deadline moves the earliest time up.
        if let Some(spec) = cj.spec.as_mut() {
            spec.starting_deadline_seconds = Some(200);
        }
        let (run, note) = due(&cj, &every_minute, &utc, at("2026-01-02T10:03:50Z"));
        assert_eq!((run, note), (Due::Run(at("2026-01-02T10:03:00Z")), None));
        assert!(!too_late(&cj, at("2026-01-02T10:03:00Z"), at("2026-01-02T10:03:50Z")));
        assert!(too_late(&cj, at("2026-01-02T10:03:00Z"), at("2026-01-02T10:06:50Z")));
    }

    #[test]
    fn the_job_for_a_scheduled_time() {
        let cj = cronjob("* * * * *", "2026-01-01T10:00:00Z");
        let job = job_for(&cj, at("2026-01-01T10:03:00Z"), &TimeZone::UTC);
        assert_eq!(job.metadata.name.as_deref(), Some("tick-29454363"));
        let annotations = job.metadata.annotations.expect("annotated");
        assert_eq!(annotations[SCHEDULED_TIMESTAMP], "2026-01-01T10:03:00Z");
        let owner = &job.metadata.owner_references.expect("owned")[0];
        assert_eq!((owner.kind.as_str(), owner.controller), ("CronJob", Some(true)));
    }

    #[test]
    fn finished_jobs_leave_the_active_list() {
        let mut cj = cronjob("* * * * *", "2026-01-01T10:00:00Z");
        let (running, done) = (
            job("a", None, "2026-01-01T10:01:00Z"),
            job("b", Some("Complete"), "2026-01-01T10:02:00Z"),
        );
        let gone = ObjectReference {
            name: Some("c".into()),
            uid: Some("uid-c".into()),
            ..ObjectReference::default()
        };
        cj.status = Some(CronJobStatus {
            active: Some(vec![reference(&running), reference(&done), gone.clone()]),
            ..CronJobStatus::default()
        });
        let (active, last, missing, notes) = reconcile_active(&cj, &[&running, &done]);
        assert_eq!(active, [reference(&running)]);
        assert_eq!(last.map(|t| t.0), Some(at("2026-01-01T10:02:00Z")));
        assert_eq!(missing, [gone]);
        assert_eq!(notes[0].reason, "SawCompletedJob");
        assert_eq!(notes[0].message, "Saw completed job: b, condition: Complete");
    }

    #[test]
    fn history_keeps_the_newest() {
        let cj = cronjob("* * * * *", "2026-01-01T10:00:00Z");
        let jobs = [
            job("ok-1", Some("Complete"), "2026-01-01T10:01:00Z"),
            job("ok-3", Some("Complete"), "2026-01-01T10:03:00Z"),
            job("ok-2", Some("Complete"), "2026-01-01T10:02:00Z"),
            job("bad-1", Some("Failed"), "2026-01-01T10:04:00Z"),
            job("bad-2", Some("Failed"), "2026-01-01T10:05:00Z"),
            job("running", None, "2026-01-01T10:00:00Z"),
        ];
        let refs: Vec<&Job> = jobs.iter().collect();
        let names: Vec<&str> =
            beyond_history(&cj, &refs).iter().filter_map(|j| j.metadata.name.as_deref()).collect();
        assert_eq!(names, ["ok-1", "bad-1"]);
    }
}
