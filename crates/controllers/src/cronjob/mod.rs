//! The CronJob controller (upstream's `cronjob-controller`, its v2): runs each CronJob's Job
//! at the most recent scheduled time not run yet, in the CronJob's time zone, honouring
//! `suspend`, `startingDeadlineSeconds` and the concurrency policy; keeps the active list,
//! the last schedule and success times, and deletes finished Jobs beyond the history limits.
//! It wakes again at the next scheduled time. Decisions are in `decide.rs`, schedules in
//! `schedule.rs`.

pub mod decide;
pub mod schedule;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use crate::runtime::owner::controller_of;
use decide::{Due, Note};
use krust_client::informer::ByNamespace;
use krust_client::{Events, Informer};
use schedule::Schedule;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "cronjob-controller";

struct Context {
    client: Client,
    jobs: Store<Job>,
    jobs_by_namespace: ByNamespace,
    events: Events,
}

/// Runs the controller, woken by the shared CronJob and Job caches, writing as `client`.
pub fn run(
    client: Client,
    cronjobs: &mut Informer<CronJob>,
    jobs: &mut Informer<Job>,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Context {
        events: Events::new(client.clone(), NAME),
        client,
        jobs: jobs.store(),
        jobs_by_namespace: jobs.by_namespace(),
    };
    Controller::for_shared_stream(cronjobs.subscribe(), cronjobs.store())
        .watches_shared_stream(jobs.subscribe(), |job| {
            let owner = controller_of(&job.metadata)?;
            (owner.kind == "CronJob" && owner.api_version.starts_with("batch/"))
                .then(|| ObjectRef::new(&owner.name).within(&job.namespace().unwrap_or_default()))
        })
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(cronjob: Arc<CronJob>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(cronjob = %cronjob.name_any(), error = %error, "cronjob sync failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(cronjob: Arc<CronJob>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    krust_client::informer::ready(&ctx.jobs).await;
    let namespace = cronjob.namespace().unwrap_or_default();
    let regarding = cronjob.object_ref(&());
    let note = |n: Note| {
        if n.warning {
            ctx.events.warning(regarding.clone(), n.reason, "Sync", n.message);
        } else {
            ctx.events.normal(regarding.clone(), n.reason, "Sync", n.message);
        }
    };
    let uid = cronjob.metadata.uid.as_deref();
    let owned = ctx.jobs_by_namespace.objects(&namespace, &ctx.jobs);
    let owned: Vec<&Job> = owned
        .iter()
        .map(AsRef::as_ref)
        .filter(|j| controller_of(&j.metadata).is_some_and(|o| Some(o.uid.as_str()) == uid))
        .collect();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);

    let (mut active, last_success, missing, notes) = decide::reconcile_active(&cronjob, &owned);
    notes.into_iter().for_each(&note);
    // A listed Job the cache lacks may just be newer than the cache: ask the API.
    for listed in missing {
        let name = listed.name.clone().unwrap_or_default();
        match jobs.get_opt(&name).await? {
            Some(job) if job.metadata.uid == listed.uid => active.push(listed),
            _ => note(Note {
                warning: false,
                reason: "MissingJob",
                message: format!("Active job went missing: {name}"),
            }),
        }
    }
    let mut status = cronjob.status.clone().unwrap_or_default();
    status.last_successful_time = last_success;
    let mut next = None;
    if cronjob.metadata.deletion_timestamp.is_none() {
        next = run_if_due(&cronjob, &jobs, &mut active, &mut status, &note).await?;
    }
    status.active = (!active.is_empty()).then_some(active);
    if cronjob.status.as_ref() != Some(&status) {
        let mut updated = (*cronjob).clone();
        updated.status = Some(status);
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), &namespace);
        match api
            .replace_subresource("status", &cronjob.name_any(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => return Ok(Action::await_change()),
            // Changed meanwhile: look again (a Job just made is found by its name then).
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(e),
        }
    }
    for job in decide::beyond_history(&cronjob, &owned) {
        let name = job.name_any();
        match jobs.delete(&name, &DeleteParams::background()).await {
            Ok(_) => note(Note {
                warning: false,
                reason: "SuccessfulDelete",
                message: format!("Deleted job {name}"),
            }),
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(next.map_or_else(Action::await_change, Action::requeue))
}

/// Creates the Job of the most recent scheduled time if it is due and allowed, updating the
/// active list and the last schedule time; answers how long until the next scheduled time.
async fn run_if_due(
    cronjob: &CronJob,
    jobs: &Api<Job>,
    active: &mut Vec<ObjectReference>,
    status: &mut CronJobStatus,
    note: &impl Fn(Note),
) -> Result<Option<Duration>, kube::Error> {
    let spec = cronjob.spec.clone().unwrap_or_default();
    let zone = match spec.time_zone.as_deref() {
        Some(name) => match TimeZone::get(name) {
            Ok(zone) => zone,
            Err(e) => {
                note(Note {
                    warning: true,
                    reason: "UnknownTimeZone",
                    message: format!("invalid timeZone: {name:?}: {e}"),
                });
                return Ok(None);
            }
        },
        None => TimeZone::system(),
    };
    let schedule: Schedule = match spec.schedule.parse() {
        Ok(schedule) => schedule,
        Err(e) => {
            note(Note {
                warning: true,
                reason: "UnparseableSchedule",
                message: format!("unparseable schedule: {:?} : {e}", spec.schedule),
            });
            return Ok(None);
        }
    };
    let now = Timestamp::now();
    let until_next = schedule.next(now, &zone).map(|t| {
        Duration::try_from(t.duration_since(now)).unwrap_or_default() + Duration::from_millis(100)
    });
    if spec.suspend == Some(true) {
        return Ok(None);
    }
    let (due, warning) = decide::due(cronjob, &schedule, &zone, now);
    if let Some(warning) = warning {
        note(warning);
    }
    let Due::Run(scheduled) = due else { return Ok(until_next) };
    if decide::too_late(cronjob, scheduled, now) {
        let at = scheduled.to_zoned(zone.clone()).strftime("%a, %d %b %Y %H:%M:%S %z").to_string();
        note(Note {
            warning: true,
            reason: "MissSchedule",
            message: format!("Missed scheduled time to start a job: {at}"),
        });
        return Ok(until_next);
    }
    let name = decide::job_name(cronjob, scheduled);
    let ran = active.iter().any(|r| r.name.as_deref() == Some(name.as_str()))
        || status.last_schedule_time.as_ref().is_some_and(|t| t.0 == scheduled);
    if ran {
        return Ok(until_next);
    }
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            note(Note {
                warning: false,
                reason: "JobAlreadyActive",
                message: "Not starting job because prior execution is running and concurrency policy is Forbid".into(),
            });
            return Ok(until_next);
        }
        Some("Replace") => {
            for job in std::mem::take(active) {
                let job_name = job.name.clone().unwrap_or_default();
                match jobs.delete(&job_name, &DeleteParams::background()).await {
                    Ok(_) => note(Note {
                        warning: false,
                        reason: "SuccessfulDelete",
                        message: format!("Deleted job {job_name}"),
                    }),
                    Err(kube::Error::Api(s)) if s.is_not_found() => {}
                    Err(e) => {
                        active.push(job);
                        return Err(e);
                    }
                }
            }
        }
        _ => {}
    }
    let job = decide::job_for(cronjob, scheduled, &zone);
    match jobs.create(&PostParams::default(), &job).await {
        Ok(created) => {
            note(Note {
                warning: false,
                reason: "SuccessfulCreate",
                message: format!("Created job {name}"),
            });
            active.push(decide::reference(&created));
        }
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            // Made by an earlier pass whose status write was lost: take it back if it is ours.
            let existing = jobs.get(&name).await?;
            let ours = controller_of(&existing.metadata).map(|o| o.uid.as_str())
                == cronjob.metadata.uid.as_deref();
            if !ours {
                note(Note {
                    warning: true,
                    reason: "FailedCreate",
                    message: format!(
                        "Error creating job: job {name} already exists and is not owned by this CronJob"
                    ),
                });
                return Ok(until_next);
            }
            if decide::finished(&existing).is_none()
                && !active.iter().any(|r| r.uid == existing.metadata.uid)
            {
                active.push(decide::reference(&existing));
            }
        }
        Err(e) if crate::runtime::namespace_terminating(&e) => {
            return Ok(None);
        }
        Err(e) => {
            note(Note {
                warning: true,
                reason: "FailedCreate",
                message: format!("Error creating job: {e}"),
            });
            return Err(e);
        }
    }
    status.last_schedule_time = Some(Time(scheduled));
    Ok(until_next)
}
