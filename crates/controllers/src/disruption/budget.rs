//! A PodDisruptionBudget's status from the pods it selects, as upstream's disruption
//! controller computes it: how many pods should exist (the pods selected, or the scale of their
//! controllers when the budget is a share or a `maxUnavailable`), how many are healthy (ready,
//! not being deleted, not evicted in the last two minutes), and so how many may be disrupted.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::runtime::int_or_percent;

/// How long an evicted pod is not counted healthy while its deletion is on its way
/// (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

/// Whether the expected pod count comes from the pods' controllers (a `maxUnavailable`, or a
/// `minAvailable` share) rather than from the pods selected.
pub fn needs_scale(pdb: &PodDisruptionBudget) -> bool {
    let Some(spec) = &pdb.spec else { return false };
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// An int, or a percent of `total` rounded up.
fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    int_or_percent::scaled(value, total, true)
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The status of `pdb` over `pods` (those it selects), with `scale` the summed scale of their
/// controllers when [`needs_scale`] says it is needed. An error is the reason the status
/// cannot be computed (then written as a `SyncFailed` condition).
pub fn status(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    scale: Option<i32>,
    now: Timestamp,
) -> Result<PodDisruptionBudgetStatus, String> {
    let selected = i32::try_from(pods.len()).unwrap_or(i32::MAX);
    let spec = pdb.spec.clone().unwrap_or_default();
    let scale = || scale.ok_or_else(|| "the pods' controllers are not known".to_string());
    let (expected, desired) = match (&spec.max_unavailable, &spec.min_available) {
        (Some(max), _) => {
            let expected = scale()?;
            (expected, (expected - scaled(max, expected)?).max(0))
        }
        (None, Some(IntOrString::Int(n))) => (selected, *n),
        (None, Some(share)) => {
            let expected = scale()?;
            (expected, scaled(share, expected)?)
        }
        (None, None) => (selected, 0),
    };
    let previous = pdb.status.clone().unwrap_or_default();
    // Evicted pods stay out of the healthy count until they are seen going, or for two minutes.
    let mut disrupted = BTreeMap::new();
    for (name, at) in previous.disrupted_pods.iter().flatten() {
        let live = pods.iter().any(|p| {
            p.metadata.name.as_deref() == Some(name.as_str())
                && p.metadata.deletion_timestamp.is_none()
        });
        if live && at.0 + DELETION_TIMEOUT > now {
            disrupted.insert(name.clone(), at.clone());
        }
    }
    let healthy = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or_default()))
        .count();
    let healthy = i32::try_from(healthy).unwrap_or(i32::MAX);
    let mut allowed = healthy - desired;
    // A budget that selects nothing yet is safe when its first pods appear.
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    let (state, reason) =
        if allowed > 0 { ("True", "SufficientPods") } else { ("False", "InsufficientPods") };
    Ok(PodDisruptionBudgetStatus {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: pdb.metadata.generation,
        conditions: Some(vec![condition(pdb, &previous, state, reason, "", now)]),
    })
}

/// The status of a budget whose pods could not be counted: nothing may be disrupted.
pub fn failed(
    pdb: &PodDisruptionBudget,
    message: &str,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let previous = pdb.status.clone().unwrap_or_default();
    PodDisruptionBudgetStatus {
        disruptions_allowed: 0,
        observed_generation: pdb.metadata.generation,
        conditions: Some(vec![condition(pdb, &previous, "False", "SyncFailed", message, now)]),
        ..previous
    }
}

/// The `DisruptionAllowed` condition, keeping its transition time while its status holds;
/// it was observed at the budget's current generation, as the status is.
fn condition(
    pdb: &PodDisruptionBudget,
    previous: &PodDisruptionBudgetStatus,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> Condition {
    let earlier = previous
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionAllowed" && c.status == status);
    Condition {
        type_: "DisruptionAllowed".to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: earlier.map_or(Time(now), |c| c.last_transition_time.clone()),
        observed_generation: pdb.metadata.generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pdb(spec: serde_json::Value, status: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "b", "namespace": "ns", "generation": 3},
            "spec": spec, "status": status}))
        .expect("a pdb")
    }

    fn pod(name: &str, ready: bool, deleting: bool) -> Pod {
        let mut pod = serde_json::json!({"metadata": {"name": name}, "status": {"conditions": [
            {"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if deleting {
            pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        }
        serde_json::from_value(pod).expect("a pod")
    }

    #[test]
    fn budgets_count_as_upstream() {
        let pods = [pod("a", true, false), pod("b", true, false), pod("c", false, false)];
        let pods: Vec<&Pod> = pods.iter().collect();
        let now = Timestamp::now();
        // (case, spec, controllers' scale, expected, desired, allowed)
        let cases = [
            ("minAvailable 1", serde_json::json!({"minAvailable": 1}), None, 3, 1, 1),
            ("minAvailable 2", serde_json::json!({"minAvailable": 2}), None, 3, 2, 0),
            ("minAvailable 50%", serde_json::json!({"minAvailable": "50%"}), Some(4), 4, 2, 0),
            ("maxUnavailable 1", serde_json::json!({"maxUnavailable": 1}), Some(3), 3, 2, 0),
            ("maxUnavailable 2", serde_json::json!({"maxUnavailable": 2}), Some(3), 3, 1, 1),
            ("nothing expected", serde_json::json!({"maxUnavailable": 5}), Some(0), 0, 0, 0),
        ];
        for (case, spec, scale, expected, desired, allowed) in cases {
            let got = status(&pdb(spec, serde_json::json!({})), &pods, scale, now).expect(case);
            assert_eq!(
                (got.expected_pods, got.desired_healthy, got.disruptions_allowed),
                (expected, desired, allowed),
                "{case}"
            );
            assert_eq!(got.current_healthy, 2, "{case}");
            assert_eq!(got.observed_generation, Some(3));
        }
        assert!(
            status(
                &pdb(serde_json::json!({"maxUnavailable": 1}), serde_json::json!({})),
                &pods,
                None,
                now
            )
            .is_err()
        );
    }

    #[test]
    fn evicted_pods_are_not_healthy_until_they_go_or_time_out() {
        let now = Timestamp::now();
        let recent = (now - SignedDuration::from_secs(10)).to_string();
        let old = (now - SignedDuration::from_secs(300)).to_string();
        let budget = pdb(
            serde_json::json!({"minAvailable": 1}),
            serde_json::json!({"disruptedPods": {"a": recent, "b": old, "gone": recent}}),
        );
        let pods = [pod("a", true, false), pod("b", true, false), pod("c", true, true)];
        let pods: Vec<&Pod> = pods.iter().collect();
        let got = status(&budget, &pods, None, now).expect("a status");
        assert_eq!(got.current_healthy, 1, "a is disrupted, c is being deleted");
        assert_eq!(got.disruptions_allowed, 0);
        let kept: Vec<&String> = got.disrupted_pods.iter().flatten().map(|(k, _)| k).collect();
        assert_eq!(kept, vec!["a"]);
        let condition = &got.conditions.expect("conditions")[0];
        assert_eq!(
            (condition.status.as_str(), condition.reason.as_str()),
            ("False", "InsufficientPods")
        );
        assert_eq!(condition.observed_generation, Some(3), "the budget's generation");
    }
}
