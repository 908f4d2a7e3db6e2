//! The TTL-after-finished controller (upstream's `ttl-after-finished-controller`): deletes a
//! finished Job (`Complete` or `Failed`) once `ttlSecondsAfterFinished` passed since it
//! finished, in the foreground (its pods first), after checking the Job afresh from the API
//! (the cache may be behind a change of the TTL).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::{Api, Client, ResourceExt};

use crate::job::manage::true_condition;
use krust_client::Informer;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "ttl-after-finished-controller";

/// When a Job is due for deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Not at all: no TTL, not finished, or already being deleted.
    Never,
    /// In this long.
    In(Duration),
    /// Now.
    Now,
}

/// When `job` is to be deleted, seen at `now`: its TTL after the transition time of its
/// `Complete` or `Failed` condition.
pub fn due(job: &Job, now: Timestamp) -> Due {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
        return Due::Never;
    };
    if job.metadata.deletion_timestamp.is_some() {
        return Due::Never;
    }
    let Some(status) = job.status.as_ref() else { return Due::Never };
    let finished = true_condition(status, "Complete").or_else(|| true_condition(status, "Failed"));
    let Some(at) = finished.and_then(|c| c.last_transition_time.as_ref()) else {
        return Due::Never;
    };
    let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
    let elapsed = Duration::try_from(now.duration_since(at.0)).unwrap_or(Duration::ZERO);
    match ttl.checked_sub(elapsed).filter(|left| !left.is_zero()) {
        Some(left) => Due::In(left),
        None => Due::Now,
    }
}

struct Context {
    client: Client,
}

/// Runs the controller over the shared Job cache, deleting as `client`.
pub fn run(client: Client, jobs: &mut Informer<Job>) -> impl Future<Output = ()> + Send + 'static {
    Controller::for_shared_stream(jobs.subscribe(), jobs.store())
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(Context { client }))
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(job: Arc<Job>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(job = %job.name_any(), error = %error, "ttl-after-finished sync failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    match due(&job, Timestamp::now()) {
        Due::Never => return Ok(Action::await_change()),
        Due::In(left) => return Ok(Action::requeue(left + Duration::from_millis(100))),
        Due::Now => {}
    }
    let namespace = job.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(fresh) = jobs.get_opt(&job.name_any()).await? else {
        return Ok(Action::await_change());
    };
    match due(&fresh, Timestamp::now()) {
        Due::Never => return Ok(Action::await_change()),
        Due::In(left) => return Ok(Action::requeue(left + Duration::from_millis(100))),
        Due::Now => {}
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    tracing::debug!(job = %fresh.name_any(), %namespace, "deleting a finished job past its ttl");
    match jobs.delete(&fresh.name_any(), &params).await {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn job(ttl: Option<i32>, finished: Option<(&str, i64)>) -> Job {
        Job {
            spec: Some(JobSpec { ttl_seconds_after_finished: ttl, ..Default::default() }),
            status: Some(JobStatus {
                conditions: finished.map(|(type_, t)| {
                    vec![JobCondition {
                        type_: type_.into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(at(t))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_finished_job_is_due_its_ttl_after_it_finished() {
        assert_eq!(due(&job(None, Some(("Complete", 0))), at(100)), Due::Never);
        assert_eq!(due(&job(Some(10), None), at(100)), Due::Never);
        assert_eq!(
            due(&job(Some(10), Some(("Complete", 0))), at(4)),
            Due::In(Duration::from_secs(6))
        );
        assert_eq!(due(&job(Some(10), Some(("Failed", 0))), at(10)), Due::Now);
        assert_eq!(due(&job(Some(0), Some(("Complete", 0))), at(0)), Due::Now);
        let mut deleting = job(Some(0), Some(("Complete", 0)));
        deleting.metadata.deletion_timestamp = Some(Time(at(1)));
        assert_eq!(due(&deleting, at(5)), Due::Never);
    }
}
