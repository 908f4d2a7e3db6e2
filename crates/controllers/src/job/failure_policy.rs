//! A Job's `podFailurePolicy` and `successPolicy` matched against its pods (upstream's
//! `pod_failure_policy.go` and `success_policy.go`).

use k8s_openapi::api::batch::v1::{
    PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, SuccessPolicy,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition};

use super::indexes::Intervals;

/// What a failed pod's first matching rule says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The whole Job fails, with this message.
    FailJob(String),
    /// The failure is not counted toward the back-off limits.
    Ignore,
    /// The failure counts, as it would without a rule.
    Count,
    /// The pod's index fails at once (with `backoffLimitPerIndex`).
    FailIndex,
}

impl Action {
    /// Whether the failure counts toward `backoffLimit` (and `backoffLimitPerIndex`).
    pub fn counts(&self) -> bool {
        !matches!(self, Action::Ignore)
    }
}

/// The action of the first rule of `policy` that the failed `pod` matches; `None` when no
/// rule does (the failure then counts).
pub fn matching(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Option<Action> {
    let policy = policy?;
    let status = pod.status.as_ref();
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(codes) = &rule.on_exit_codes {
            let containers = status
                .and_then(|s| s.container_statuses.as_deref())
                .and_then(|c| matching_container(c, codes))
                .or_else(|| {
                    status
                        .and_then(|s| s.init_container_statuses.as_deref())
                        .and_then(|c| matching_container(c, codes))
                });
            containers.map(|c| {
                let code = exit_code(c).unwrap_or_default();
                format!(
                    "Container {} for pod {namespace}/{name} failed with exit code {code} matching {} rule at index {index}",
                    c.name, rule.action
                )
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            status
                .and_then(|s| s.conditions.as_deref())
                .and_then(|c| matching_condition(c, patterns))
                .map(|c| {
                    format!(
                        "Pod {namespace}/{name} has condition {} matching {} rule at index {index}",
                        c.type_, rule.action
                    )
                })
        } else {
            None
        };
        let Some(message) = matched else { continue };
        match rule.action.as_str() {
            "FailJob" => return Some(Action::FailJob(message)),
            "Ignore" => return Some(Action::Ignore),
            "Count" => return Some(Action::Count),
            "FailIndex" => return Some(Action::FailIndex),
            // An action this controller does not know: the next rule is tried, as upstream.
            _ => {}
        }
    }
    None
}

/// Whether a failure of `pod` counts toward the limits under `policy`.
pub fn counts(policy: Option<&PodFailurePolicy>, pod: &Pod) -> bool {
    matching(policy, pod).is_none_or(|a| a.counts())
}

fn exit_code(status: &ContainerStatus) -> Option<i32> {
    Some(status.state.as_ref()?.terminated.as_ref()?.exit_code)
}

fn matching_container<'a>(
    statuses: &'a [ContainerStatus],
    codes: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<&'a ContainerStatus> {
    statuses.iter().find(|c| {
        let Some(code) = exit_code(c) else { return false };
        if code == 0 || codes.container_name.as_ref().is_some_and(|n| *n != c.name) {
            return false;
        }
        match codes.operator.as_str() {
            "In" => codes.values.contains(&code),
            "NotIn" => !codes.values.contains(&code),
            _ => false,
        }
    })
}

fn matching_condition<'a>(
    conditions: &'a [PodCondition],
    patterns: &[PodFailurePolicyOnPodConditionsPattern],
) -> Option<&'a PodCondition> {
    conditions.iter().find(|c| patterns.iter().any(|p| p.type_ == c.type_ && p.status == c.status))
}

/// Whether the succeeded indexes meet a rule of `policy`: the message of the
/// `SuccessCriteriaMet` condition when they do.
pub fn success_policy_met(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &Intervals,
) -> Option<String> {
    let policy = policy?;
    if succeeded.is_empty() {
        return None;
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        let met = if let Some(required) = &rule.succeeded_indexes {
            let required = Intervals::parse(required, completions);
            if required.is_empty() {
                continue;
            }
            let contained = contained(&required, succeeded);
            contained == required.total()
                || rule
                    .succeeded_count
                    .is_some_and(|c| contained >= usize::try_from(c).unwrap_or(0))
        } else if let Some(count) = rule.succeeded_count {
            succeeded.total() >= usize::try_from(count).unwrap_or(0)
        } else {
            false
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

/// How many indexes of `required` are in `succeeded`.
fn contained(required: &Intervals, succeeded: &Intervals) -> usize {
    let mut count = 0;
    for (rf, rl) in required.intervals() {
        for (sf, sl) in succeeded.intervals() {
            let overlap = rl.min(sl) - rf.max(sf) + 1;
            if overlap > 0 {
                count += usize::try_from(overlap).unwrap_or(0);
            }
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{PodFailurePolicyRule, SuccessPolicyRule};
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn failed(codes: &[(&str, i32)], conditions: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("pi-x".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(
                    codes
                        .iter()
                        .map(|(name, code)| ContainerStatus {
                            name: name.to_string(),
                            state: Some(ContainerState {
                                terminated: Some(ContainerStateTerminated {
                                    exit_code: *code,
                                    ..Default::default()
                                }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| PodCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    fn on_codes(action: &str, operator: &str, values: &[i32]) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: None,
                operator: operator.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        }
    }

    fn on_condition(action: &str, type_: &str) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: type_.into(),
                status: "True".into(),
            }]),
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = PodFailurePolicy {
            rules: vec![
                on_condition("Ignore", "DisruptionTarget"),
                on_codes("FailJob", "In", &[42]),
                on_codes("Count", "NotIn", &[1]),
                on_codes("FailIndex", "In", &[1]),
            ],
        };
        let p = Some(&policy);
        assert_eq!(
            matching(p, &failed(&[("main", 1)], &[("DisruptionTarget", "True")])),
            Some(Action::Ignore)
        );
        assert_eq!(
            matching(p, &failed(&[("main", 42)], &[])),
            Some(Action::FailJob(
                "Container main for pod ns/pi-x failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            ))
        );
        assert_eq!(matching(p, &failed(&[("main", 3)], &[])), Some(Action::Count));
        assert_eq!(matching(p, &failed(&[("main", 1)], &[])), Some(Action::FailIndex));
        assert!(!counts(p, &failed(&[("main", 1)], &[("DisruptionTarget", "True")])));
        assert!(counts(None, &failed(&[("main", 1)], &[])));
    }

    #[test]
    fn exit_code_zero_and_other_containers_never_match() {
        let mut rule = on_codes("FailJob", "NotIn", &[5]);
        let policy = PodFailurePolicy { rules: vec![rule.clone()] };
        assert_eq!(matching(Some(&policy), &failed(&[("main", 0)], &[])), None);
        if let Some(codes) = rule.on_exit_codes.as_mut() {
            codes.container_name = Some("sidecar".into());
        }
        let policy = PodFailurePolicy { rules: vec![rule] };
        assert_eq!(matching(Some(&policy), &failed(&[("main", 3)], &[])), None);
    }

    #[test]
    fn a_condition_rule_names_the_condition() {
        let policy = PodFailurePolicy { rules: vec![on_condition("FailJob", "ConfigIssue")] };
        assert_eq!(
            matching(Some(&policy), &failed(&[], &[("ConfigIssue", "True")])),
            Some(Action::FailJob(
                "Pod ns/pi-x has condition ConfigIssue matching FailJob rule at index 0".into()
            ))
        );
        assert_eq!(matching(Some(&policy), &failed(&[], &[("ConfigIssue", "False")])), None);
    }

    #[test]
    fn success_policies_match_indexes_or_counts() {
        let rule = |indexes: Option<&str>, count: Option<i32>| SuccessPolicyRule {
            succeeded_indexes: indexes.map(String::from),
            succeeded_count: count,
        };
        let policy = SuccessPolicy { rules: vec![rule(Some("0,2"), None), rule(None, Some(3))] };
        let done = |s: &str| success_policy_met(Some(&policy), 5, &Intervals::parse(s, 5));
        assert_eq!(done("0,2").as_deref(), Some("Matched rules at index 0"));
        assert_eq!(done("0,1"), None);
        assert_eq!(done("1,3,4").as_deref(), Some("Matched rules at index 1"));
        let some = SuccessPolicy { rules: vec![rule(Some("1-4"), Some(2))] };
        assert!(success_policy_met(Some(&some), 5, &Intervals::parse("0,3,4", 5)).is_some());
        assert!(success_policy_met(Some(&some), 5, &Intervals::parse("0,3", 5)).is_none());
        assert!(success_policy_met(None, 5, &Intervals::parse("0-4", 5)).is_none());
    }
}
