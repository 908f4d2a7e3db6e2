//! A ReplicaSet's status as upstream's controller computes it, from the pods it controls.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The condition a failed create or delete sets.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Whether the pod's `Ready` condition is true.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Since when the pod has been ready.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

fn ready_condition(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Whether the pod has been ready for `min_ready` by `now`.
pub fn is_available(pod: &Pod, min_ready: Duration, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready.is_zero() {
        return true;
    }
    ready_since(pod)
        .is_some_and(|since| now.duration_since(since).as_secs() >= min_ready.as_secs() as i64)
}

/// The set's `minReadySeconds`.
pub fn min_ready(rs: &ReplicaSet) -> Duration {
    let seconds = rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// The status for the set's active pods `pods`; `failure` is the reason and message of a
/// create or delete that failed in this pass.
pub fn status(
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    failure: Option<(&str, String)>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let template_labels: BTreeMap<String, String> = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let fully_labeled = pods
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = pods.iter().filter(|p| is_ready(p)).count();
    let available = pods.iter().filter(|p| is_available(p, min_ready(rs), now)).count();
    let count = |n: usize| (n > 0).then(|| i32::try_from(n).unwrap_or(i32::MAX));
    let mut conditions: Vec<ReplicaSetCondition> =
        rs.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    match failure {
        Some((reason, message)) => {
            if !conditions.iter().any(|c| c.type_ == REPLICA_FAILURE) {
                conditions.push(ReplicaSetCondition {
                    type_: REPLICA_FAILURE.into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    message: Some(message),
                    last_transition_time: Some(Time(now)),
                });
            }
        }
        None => conditions.retain(|c| c.type_ != REPLICA_FAILURE),
    }
    ReplicaSetStatus {
        replicas: i32::try_from(pods.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: count(fully_labeled),
        ready_replicas: count(ready),
        available_replicas: count(available),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        ..Default::default()
    }
}

/// How soon a ready pod turns available, when one is still within `minReadySeconds`.
pub fn next_available(rs: &ReplicaSet, pods: &[Arc<Pod>], now: Timestamp) -> Option<Duration> {
    let min = min_ready(rs);
    if min.is_zero() {
        return None;
    }
    pods.iter()
        .filter(|p| is_ready(p) && !is_available(p, min, now))
        .filter_map(|p| ready_since(p))
        .map(|since| {
            let waited = u64::try_from(now.duration_since(since).as_secs()).unwrap_or(0);
            min.saturating_sub(Duration::from_secs(waited)) + Duration::from_secs(1)
        })
        .min()
}
