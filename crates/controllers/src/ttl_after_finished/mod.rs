//! The TTL-after-finished controller (upstream's `ttl-after-finished-controller`): deletes a
//! finished Job `ttlSecondsAfterFinished` after it finished, with its pods (foreground
//! propagation), after checking the Job as the API has it now (its TTL may have changed).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::{Api, Client, ResourceExt};

use krust_client::Informer;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "ttl-after-finished-controller";

/// Runs the controller over the shared Job cache, writing as `client`.
pub fn run(client: Client, jobs: &mut Informer<Job>) -> impl Future<Output = ()> + Send + 'static {
    Controller::for_shared_stream(jobs.subscribe(), jobs.store())
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(client))
        .for_each(|_| futures::future::ready(()))
}

/// When `job` is to be deleted: its finish time plus its TTL; `None` without a TTL or
/// before it finished.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let status = job.status.as_ref()?;
    let finished = status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    let at = status
        .completion_time
        .as_ref()
        .filter(|_| finished.type_ == "Complete")
        .or(finished.last_transition_time.as_ref())?
        .0;
    at.checked_add(SignedDuration::from_secs(i64::from(ttl))).ok()
}

fn error_policy(job: Arc<Job>, error: &kube::Error, _: Arc<Client>) -> Action {
    tracing::debug!(job = %job.name_any(), error = %error, "ttl cleanup failed");
    Action::requeue(Duration::from_secs(5))
}

async fn reconcile(job: Arc<Job>, client: Arc<Client>) -> Result<Action, kube::Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(at) = expires_at(&job) else { return Ok(Action::await_change()) };
    let now = Timestamp::now();
    if at > now {
        let wait = Duration::try_from(at.duration_since(now)).unwrap_or_default();
        return Ok(Action::requeue(wait + Duration::from_millis(500)));
    }
    let api: Api<Job> = Api::namespaced((*client).clone(), &job.namespace().unwrap_or_default());
    // The cache may be behind: the TTL may have been raised or removed meanwhile.
    let Some(fresh) = api.get_opt(&job.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if fresh.metadata.uid != job.metadata.uid || expires_at(&fresh).is_none_or(|t| t > now) {
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&fresh.name_any(), &params).await {
        Ok(_) => tracing::info!(job = %fresh.name_any(), "deleted a finished job past its TTL"),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn expiry_counts_from_the_finish() {
        let at = |s: &str| s.parse::<Timestamp>().expect("a timestamp");
        let mut job = Job {
            spec: Some(JobSpec { ttl_seconds_after_finished: Some(30), ..JobSpec::default() }),
            status: Some(JobStatus::default()),
            ..Job::default()
        };
        assert_eq!(expires_at(&job), None, "not finished");
        job.status = Some(JobStatus {
            completion_time: Some(Time(at("2026-01-01T00:00:00Z"))),
            conditions: Some(vec![JobCondition {
                type_: "Complete".into(),
                status: "True".into(),
                last_transition_time: Some(Time(at("2026-01-01T00:00:05Z"))),
                ..JobCondition::default()
            }]),
            ..JobStatus::default()
        });
        assert_eq!(expires_at(&job), Some(at("2026-01-01T00:00:30Z")));
    }
}
