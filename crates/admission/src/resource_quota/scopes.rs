//! Quota scopes: which pods a scoped quota counts (upstream's `podMatchesScopeFunc`).
//! `spec.scopes` are read as `Exists` selectors and combined with `spec.scopeSelector`'s; a
//! quota with any scope counts pods only (every other evaluator matches no scope).

use k8s_openapi::api::core::v1::{
    Pod, PodAffinityTerm, ResourceQuota, ScopedResourceSelectorRequirement,
};

use super::QuotaError;

/// The selectors of a quota's scopes: each of `spec.scopes` as `Exists`, then
/// `spec.scopeSelector.matchExpressions` (upstream's `getScopeSelectorsFromQuota`).
pub fn selectors(quota: &ResourceQuota) -> Vec<ScopedResourceSelectorRequirement> {
    let Some(spec) = &quota.spec else { return Vec::new() };
    let mut selectors: Vec<ScopedResourceSelectorRequirement> = spec
        .scopes
        .iter()
        .flatten()
        .map(|scope| ScopedResourceSelectorRequirement {
            scope_name: scope.clone(),
            operator: "Exists".into(),
            values: None,
        })
        .collect();
    if let Some(selector) = &spec.scope_selector {
        selectors.extend(selector.match_expressions.iter().flatten().cloned());
    }
    selectors
}

/// Whether `pod` is in the scope `selector` names.
pub fn pod_matches(
    selector: &ScopedResourceSelectorRequirement,
    pod: &Pod,
) -> Result<bool, QuotaError> {
    Ok(match selector.scope_name.as_str() {
        "Terminating" => is_terminating(pod),
        "NotTerminating" => !is_terminating(pod),
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => priority_class_matches(selector, pod)?,
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        _ => false,
    })
}

/// Whether a pod runs for a bounded time (`activeDeadlineSeconds` set): upstream's
/// `IsTerminating`.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.active_deadline_seconds).is_some_and(|d| d >= 0)
}

/// Whether a pod is of the `BestEffort` QoS class: as its status says, else computed as
/// upstream's `ComputePodQOS` (no container requests or limits any cpu or memory).
pub fn is_best_effort(pod: &Pod) -> bool {
    if let Some(class) = pod.status.as_ref().and_then(|s| s.qos_class.as_deref())
        && !class.is_empty()
    {
        return class == "BestEffort";
    }
    let Some(spec) = &pod.spec else { return true };
    !spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| {
        let Some(resources) = &c.resources else { return false };
        [&resources.requests, &resources.limits].into_iter().flatten().any(|list| {
            ["cpu", "memory"].iter().any(|name| {
                list.get(*name)
                    .and_then(|q| crate::quantity::Amount::of(q).ok())
                    .is_some_and(|a| !a.is_zero())
            })
        })
    })
}

/// The `PriorityClass` scope: the pod's `priorityClassName` as the value of a label named
/// `PriorityClass`, matched by the selector's operator (`In`, `NotIn`, `Exists`,
/// `DoesNotExist`).
fn priority_class_matches(
    selector: &ScopedResourceSelectorRequirement,
    pod: &Pod,
) -> Result<bool, QuotaError> {
    let class =
        pod.spec.as_ref().and_then(|s| s.priority_class_name.as_deref()).filter(|c| !c.is_empty());
    let values = selector.values.clone().unwrap_or_default();
    match selector.operator.as_str() {
        "Exists" if values.is_empty() => Ok(class.is_some()),
        "DoesNotExist" if values.is_empty() => Ok(class.is_none()),
        "Exists" | "DoesNotExist" => Err(QuotaError::UnexpectedValues),
        "In" | "NotIn" if values.is_empty() => Err(QuotaError::EmptyValues),
        "In" => Ok(class.is_some_and(|c| values.iter().any(|v| v == c))),
        "NotIn" => Ok(!class.is_some_and(|c| values.iter().any(|v| v == c))),
        other => Err(QuotaError::Operator(other.to_string())),
    }
}

/// Whether a pod's (anti-)affinity names other namespaces (upstream's
/// `usesCrossNamespacePodAffinity`).
fn uses_cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(affinity) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return false;
    };
    let crosses = |t: &PodAffinityTerm| {
        t.namespaces.as_ref().is_some_and(|n| !n.is_empty()) || t.namespace_selector.is_some()
    };
    let affinity_terms = affinity.pod_affinity.as_ref().map(|a| {
        (
            a.required_during_scheduling_ignored_during_execution.clone(),
            a.preferred_during_scheduling_ignored_during_execution.clone(),
        )
    });
    let anti_terms = affinity.pod_anti_affinity.as_ref().map(|a| {
        (
            a.required_during_scheduling_ignored_during_execution.clone(),
            a.preferred_during_scheduling_ignored_during_execution.clone(),
        )
    });
    [affinity_terms, anti_terms].into_iter().flatten().any(|(required, preferred)| {
        required.iter().flatten().any(crosses)
            || preferred.iter().flatten().any(|w| crosses(&w.pod_affinity_term))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::{Value, json};

    use super::*;

    fn pod(spec: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).unwrap()
    }

    fn selector(scope: &str, operator: &str, values: &[&str]) -> ScopedResourceSelectorRequirement {
        ScopedResourceSelectorRequirement {
            scope_name: scope.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn pods_match_scopes_as_upstream() {
        let best_effort = pod(json!({"containers": [{"name": "c"}]}));
        let burstable =
            pod(json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}],
            "activeDeadlineSeconds": 30, "priorityClassName": "high"}));
        let cases: &[(&str, ScopedResourceSelectorRequirement, &Pod, bool)] = &[
            ("best effort", selector("BestEffort", "Exists", &[]), &best_effort, true),
            ("not best effort", selector("NotBestEffort", "Exists", &[]), &burstable, true),
            (
                "burstable is not best effort",
                selector("BestEffort", "Exists", &[]),
                &burstable,
                false,
            ),
            ("a deadline terminates", selector("Terminating", "Exists", &[]), &burstable, true),
            ("no deadline", selector("NotTerminating", "Exists", &[]), &best_effort, true),
            ("class in", selector("PriorityClass", "In", &["high", "low"]), &burstable, true),
            ("class not in", selector("PriorityClass", "NotIn", &["high"]), &burstable, false),
            (
                "no class is not in",
                selector("PriorityClass", "NotIn", &["high"]),
                &best_effort,
                true,
            ),
            ("a class exists", selector("PriorityClass", "Exists", &[]), &burstable, true),
            ("no class", selector("PriorityClass", "DoesNotExist", &[]), &best_effort, true),
            (
                "affinity in place",
                selector("CrossNamespacePodAffinity", "Exists", &[]),
                &burstable,
                false,
            ),
        ];
        for (case, selector, pod, expected) in cases {
            assert_eq!(pod_matches(selector, pod), Ok(*expected), "{case}");
        }
        assert_eq!(
            pod_matches(&selector("PriorityClass", "Gt", &["1"]), &burstable),
            Err(QuotaError::Operator("Gt".into()))
        );
    }

    #[test]
    fn a_quotas_scopes_and_selector_are_combined() {
        let quota: ResourceQuota = serde_json::from_value(json!({
            "metadata": {"name": "q"},
            "spec": {"scopes": ["BestEffort"], "scopeSelector": {"matchExpressions": [
                {"scopeName": "PriorityClass", "operator": "In", "values": ["low"]}]}}
        }))
        .unwrap();
        let names: Vec<(String, String)> =
            selectors(&quota).into_iter().map(|s| (s.scope_name, s.operator)).collect();
        assert_eq!(
            names,
            [("BestEffort".into(), "Exists".into()), ("PriorityClass".into(), "In".into())]
        );
    }
}
