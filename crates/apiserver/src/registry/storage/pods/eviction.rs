//! `pods/eviction`: a delete that honours PodDisruptionBudgets, as upstream's `EvictionREST`
//! (`pkg/registry/core/pod/storage/eviction.go`).
//!
//! A pod that is terminal, pending or already being deleted is deleted at once. Otherwise the
//! PDBs of its namespace whose selector matches it are found in the watch cache: none, the pod
//! is deleted; more than one, 500 as upstream; one, its budget is checked and decremented
//! (the PDB's status written with conflict retry), then the pod deleted. The budget comes from
//! the PDB's status when the disruption controller has processed its current generation,
//! else it is computed here from the pods of the cache ([`Budget::compute`]).

use async_trait::async_trait;
use chrono::Utc;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use krust_api::StatusError;
use krust_api::selector::LabelSelector;
use serde_json::{Value, json};

use crate::registry::options::Query;
use crate::registry::storage::{SubresourceHandler, SubresourceRequest, success};
use crate::registry::{DeleteOptions, Registry, timestamp};

/// The eviction handler.
pub struct Eviction;

/// How many pods may be disrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Pods that should exist.
    pub expected: i32,
    /// Ready pods.
    pub current_healthy: i32,
    /// Ready pods the budget requires.
    pub desired_healthy: i32,
    /// `current_healthy - desired_healthy`, at least 0.
    pub disruptions_allowed: i32,
}

/// `GetScaledValueFromIntOrPercent` with rounding up: an int, or a percent of `total`.
pub fn scaled(value: &IntOrString, total: i32) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let scaled = (percent * i64::from(total) + 99) / 100;
            Ok(i32::try_from(scaled).unwrap_or(i32::MAX))
        }
    }
}

impl Budget {
    /// The budget of `pdb` over the pods it selects (`ready`: whether each is ready), as the
    /// disruption controller computes it (the expected count is the number of pods selected).
    pub fn compute(pdb: &PodDisruptionBudget, ready: &[bool]) -> Result<Self, String> {
        let expected = i32::try_from(ready.len()).unwrap_or(i32::MAX);
        let current_healthy =
            i32::try_from(ready.iter().filter(|r| **r).count()).unwrap_or(i32::MAX);
        let spec = pdb.spec.as_ref();
        let desired_healthy = match (
            spec.and_then(|s| s.max_unavailable.as_ref()),
            spec.and_then(|s| s.min_available.as_ref()),
        ) {
            (Some(max), _) => (expected - scaled(max, expected)?).max(0),
            (None, Some(min)) => scaled(min, expected)?,
            (None, None) => 0,
        };
        Ok(Self {
            expected,
            current_healthy,
            desired_healthy,
            disruptions_allowed: (current_healthy - desired_healthy).max(0),
        })
    }

    /// The budget the PDB's status holds, when its controller has seen its current spec.
    pub fn from_status(pdb: &PodDisruptionBudget) -> Option<Self> {
        let status = pdb.status.as_ref()?;
        let generation = pdb.metadata.generation.unwrap_or(0);
        (status.observed_generation.unwrap_or(0) >= generation && generation > 0).then_some(Self {
            expected: status.expected_pods,
            current_healthy: status.current_healthy,
            desired_healthy: status.desired_healthy,
            disruptions_allowed: status.disruptions_allowed,
        })
    }
}

/// Whether a pod is `Ready`.
fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Upstream's `canIgnorePDB`: terminal and pending pods, and pods being deleted.
fn can_ignore_budget(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed" | "Pending"))
        || pod.metadata.deletion_timestamp.is_some()
}

/// 429 for an eviction the budget has no room for, worded as upstream's.
pub fn no_room(pdb: &str, budget: &Budget) -> StatusError {
    StatusError {
        details: Some(json!({"causes": [{"reason": "DisruptionBudget", "message": format!(
            "The disruption budget {pdb} needs {} healthy pods and has {} currently",
            budget.desired_healthy, budget.current_healthy
        )}]})),
        ..StatusError::new(
            krust_api::Reason::TooManyRequests,
            "Cannot evict pod as it would violate the pod's disruption budget.",
        )
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, StatusError> {
    serde_json::from_value(value)
        .map_err(|e| StatusError::internal(format!("{what} does not decode: {e}")))
}

#[async_trait]
impl SubresourceHandler for Eviction {
    fn verbs(&self) -> &'static [&'static str] {
        &["create"]
    }

    async fn handle(
        &self,
        registry: &Registry,
        request: SubresourceRequest<'_>,
    ) -> Result<(u16, Value), StatusError> {
        let eviction = request.body;
        let name = request.name;
        if let Some(given) = eviction.pointer("/metadata/name").and_then(Value::as_str)
            && !given.is_empty()
            && given != name
        {
            return Err(StatusError::bad_request(
                "name in URL does not match name in Eviction object",
            ));
        }
        let mut options =
            DeleteOptions::from_parts(eviction.get("deleteOptions"), &Query::parse(None))?;
        options.dry_run |= request.dry_run;
        let catalog = registry.catalog();
        let (Some(pods), Some(pdbs)) = (
            catalog.lookup("", "v1", "pods"),
            catalog.lookup("policy", "v1", "poddisruptionbudgets"),
        ) else {
            return Err(StatusError::internal("pods or poddisruptionbudgets are not served"));
        };
        let ns = request.namespace;
        let pod_value = registry.get(&pods, ns, name).await?;
        let pod: Pod = decode(pod_value, "pod")?;
        if !can_ignore_budget(&pod) {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            let matching: Vec<PodDisruptionBudget> = registry
                .cached(&pdbs, ns)
                .into_iter()
                .filter_map(|v| serde_json::from_value::<PodDisruptionBudget>(v).ok())
                .filter(|pdb| {
                    let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
                    let selector = serde_json::to_value(selector).unwrap_or(Value::Null);
                    LabelSelector::from_label_selector(&selector).is_ok_and(|s| {
                        s.matches(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    })
                })
                .collect();
            match matching.as_slice() {
                [] => {}
                [pdb] => {
                    self.take_budget(registry, &pods, &pdbs, ns, pdb, &pod, options.dry_run).await?
                }
                _ => {
                    return Err(StatusError::internal(
                        "Internal error occurred: This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    ));
                }
            }
        }
        registry.delete(&pods, ns, name, &options).await?;
        Ok((201, success(201)))
    }
}

impl Eviction {
    /// Checks the budget of `pdb` and takes one disruption from it (writing its status).
    #[allow(clippy::too_many_arguments)]
    async fn take_budget(
        &self,
        registry: &Registry,
        pods: &krust_api::ResourceInfo,
        pdbs: &krust_api::ResourceInfo,
        ns: Option<&str>,
        pdb: &PodDisruptionBudget,
        pod: &Pod,
        dry_run: bool,
    ) -> Result<(), StatusError> {
        let pdb_name = pdb.metadata.name.clone().unwrap_or_default();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let now = timestamp(Utc::now());
        // Computed outside the retry: the pods of the cache as they are now.
        let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
        let selector = LabelSelector::from_label_selector(
            &serde_json::to_value(selector).unwrap_or(Value::Null),
        )
        .map_err(|e| StatusError::internal(e.to_string()))?;
        let ready_flags: Vec<bool> = registry
            .cached(pods, ns)
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Pod>(v).ok())
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                let labels = p.metadata.labels.clone().unwrap_or_default();
                selector.matches(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            })
            .map(|p| ready(&p))
            .collect();
        let computed = Budget::compute(pdb, &ready_flags).map_err(StatusError::internal)?;
        let pod_ready = ready(pod);
        let policy = pdb.spec.as_ref().and_then(|s| s.unhealthy_pod_eviction_policy.as_deref());
        registry
            .modify(pdbs, ns, &pdb_name, dry_run, |value| {
                let current: PodDisruptionBudget = decode(value.clone(), "poddisruptionbudget")?;
                let budget = Budget::from_status(&current).unwrap_or(computed);
                // An unready pod of a healthy budget goes without taking from it.
                if !pod_ready
                    && (policy == Some("AlwaysAllow")
                        || budget.current_healthy >= budget.desired_healthy)
                {
                    return Ok(());
                }
                if budget.disruptions_allowed <= 0 {
                    return Err(no_room(&pdb_name, &budget));
                }
                if !value.get("status").is_some_and(Value::is_object) {
                    value["status"] = json!({});
                }
                let status = &mut value["status"];
                status["disruptionsAllowed"] = json!(budget.disruptions_allowed - 1);
                status["currentHealthy"] = json!(budget.current_healthy);
                status["desiredHealthy"] = json!(budget.desired_healthy);
                status["expectedPods"] = json!(budget.expected);
                if !status.get("disruptedPods").is_some_and(Value::is_object) {
                    status["disruptedPods"] = json!({});
                }
                status["disruptedPods"][&pod_name] = json!(now);
                Ok(())
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pdb(spec: Value, status: Option<Value>, generation: i64) -> PodDisruptionBudget {
        let mut v = json!({"metadata": {"name": "web", "generation": generation}, "spec": spec});
        if let Some(s) = status {
            v["status"] = s;
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn budgets_are_computed_as_the_disruption_controllers() {
        // (case, spec, ready flags, desired healthy, disruptions allowed)
        let cases = [
            (
                "minAvailable as many as ready",
                json!({"minAvailable": 3}),
                vec![true, true, true],
                3,
                0,
            ),
            ("minAvailable below ready", json!({"minAvailable": 2}), vec![true, true, true], 2, 1),
            (
                "unready pods do not count",
                json!({"minAvailable": 2}),
                vec![true, false, true],
                2,
                0,
            ),
            (
                "minAvailable percent rounds up",
                json!({"minAvailable": "50%"}),
                vec![true, true, true],
                2,
                1,
            ),
            ("maxUnavailable int", json!({"maxUnavailable": 1}), vec![true, true, true], 2, 1),
            (
                "maxUnavailable percent rounds up",
                json!({"maxUnavailable": "34%"}),
                vec![true, true, true],
                1,
                2,
            ),
            ("maxUnavailable 0", json!({"maxUnavailable": 0}), vec![true, true], 2, 0),
            ("neither", json!({}), vec![true], 0, 1),
            ("more desired than ready", json!({"minAvailable": 5}), vec![true], 5, 0),
        ];
        for (case, spec, ready, desired, allowed) in cases {
            let budget = Budget::compute(&pdb(spec, None, 1), &ready).unwrap();
            assert_eq!(
                (budget.desired_healthy, budget.disruptions_allowed),
                (desired, allowed),
                "{case}"
            );
        }
        assert!(Budget::compute(&pdb(json!({"minAvailable": "x%"}), None, 1), &[true]).is_err());
    }

    #[test]
    fn the_status_counts_only_when_current() {
        let status = json!({"observedGeneration": 2, "disruptionsAllowed": 4, "currentHealthy": 5,
            "desiredHealthy": 1, "expectedPods": 5});
        assert_eq!(
            Budget::from_status(&pdb(json!({}), Some(status.clone()), 2))
                .map(|b| b.disruptions_allowed),
            Some(4)
        );
        assert_eq!(
            Budget::from_status(&pdb(json!({}), Some(status), 3)),
            None,
            "an older generation"
        );
        assert_eq!(Budget::from_status(&pdb(json!({}), None, 1)), None);
    }

    #[test]
    fn no_room_is_worded_as_upstreams() {
        let e = no_room(
            "web",
            &Budget { expected: 2, current_healthy: 2, desired_healthy: 2, disruptions_allowed: 0 },
        );
        assert_eq!((e.code(), e.reason.as_str()), (429, "TooManyRequests"));
        assert_eq!(e.message, "Cannot evict pod as it would violate the pod's disruption budget.");
        assert_eq!(
            e.details.unwrap()["causes"][0]["message"],
            "The disruption budget web needs 2 healthy pods and has 2 currently"
        );
    }
}
