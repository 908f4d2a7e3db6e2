//! A Job's `podFailurePolicy` (upstream's `matchPodFailurePolicy`): the first rule matching a
//! failed pod's container exit codes or conditions decides what its failure means.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::Pod;

/// What a failed pod's failure means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The Job fails, with this message.
    FailJob(String),
    /// The pod's index fails (Indexed Jobs with a per-index back-off limit).
    FailIndex,
    /// The failure is not counted toward the back-off limit.
    Ignore,
    /// Counted as usual (also when no rule matches).
    Count,
}

/// The verdict of `policy` on the failed `pod`.
pub fn judge(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Verdict {
    let Some(policy) = policy else { return Verdict::Count };
    for (index, rule) in policy.rules.iter().enumerate() {
        let Some(matched) = matches(rule, pod) else { continue };
        return match rule.action.as_str() {
            "FailJob" => {
                Verdict::FailJob(format!("{matched} matching FailJob rule at index {index}"))
            }
            "FailIndex" => Verdict::FailIndex,
            "Ignore" => Verdict::Ignore,
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

/// What of `pod` the rule matches, worded for the Job's condition; `None` if nothing.
fn matches(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<String> {
    let pod_name = format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    );
    if let Some(codes) = &rule.on_exit_codes {
        let statuses = pod.status.as_ref();
        let containers = statuses
            .and_then(|s| s.init_container_statuses.as_ref())
            .into_iter()
            .flatten()
            .chain(statuses.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten());
        for status in containers {
            if codes.container_name.as_ref().is_some_and(|n| *n != status.name) {
                continue;
            }
            let Some(code) =
                status.state.as_ref().and_then(|s| s.terminated.as_ref()).map(|t| t.exit_code)
            else {
                continue;
            };
            let listed = codes.values.contains(&code);
            let hit = match codes.operator.as_str() {
                "In" => listed,
                "NotIn" => code != 0 && !listed,
                _ => false,
            };
            if hit {
                return Some(format!(
                    "Container {} for pod {pod_name} failed with exit code {code}",
                    status.name
                ));
            }
        }
    }
    for wanted in rule.on_pod_conditions.iter().flatten() {
        let status = wanted.status.as_str();
        let has = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == wanted.type_ && c.status == status);
        if has {
            return Some(format!("Pod {pod_name} has condition {} matching", wanted.type_));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern,
    };
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodCondition, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn failed(code: i32, condition: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(vec![ContainerStatus {
                    name: "main".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: code,
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..ContainerStatus::default()
                }]),
                conditions: condition.map(|c| {
                    vec![PodCondition {
                        type_: c.into(),
                        status: "True".into(),
                        ..PodCondition::default()
                    }]
                }),
                ..PodStatus::default()
            }),
        }
    }

    fn policy() -> PodFailurePolicy {
        PodFailurePolicy {
            rules: vec![
                PodFailurePolicyRule {
                    action: "Ignore".into(),
                    on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                    }]),
                    ..PodFailurePolicyRule::default()
                },
                PodFailurePolicyRule {
                    action: "FailJob".into(),
                    on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                        container_name: None,
                        operator: "In".into(),
                        values: vec![42],
                    }),
                    ..PodFailurePolicyRule::default()
                },
            ],
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let p = policy();
        assert_eq!(
            judge(Some(&p), &failed(42, None)),
            Verdict::FailJob("Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into())
        );
        assert_eq!(judge(Some(&p), &failed(42, Some("DisruptionTarget"))), Verdict::Ignore);
        assert_eq!(judge(Some(&p), &failed(1, None)), Verdict::Count);
        assert_eq!(judge(None, &failed(42, None)), Verdict::Count);
    }
}
