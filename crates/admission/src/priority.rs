//! Priority: a pod's `priorityClassName` becomes its `priority` (and `preemptionPolicy`)
//! from the PriorityClass of that name; a pod without one gets the global default class's
//! (the lowest valued, if several), or priority 0. An unknown class, or a priority that
//! disagrees with the class, is refused. At most one PriorityClass is the global default.

use k8s_openapi::api::scheduling::v1::PriorityClass;
use krust_api::StatusError;
use serde_json::Value;

use crate::{
    Attributes, ClusterView, Mutating, Operation, Plugin, Validating, forbidden, is, typed,
};

/// Upstream's name.
pub const NAME: &str = "Priority";

/// The class for components that must run on every cluster.
pub const SYSTEM_CLUSTER_CRITICAL: (&str, i32) = ("system-cluster-critical", 2_000_000_000);

/// The class for components that must run on every node.
pub const SYSTEM_NODE_CRITICAL: (&str, i32) = ("system-node-critical", 2_000_001_000);

/// The plugin.
pub struct Priority;

impl Plugin for Priority {
    fn name(&self) -> &'static str {
        NAME
    }
}

fn classes(cluster: &dyn ClusterView) -> Vec<PriorityClass> {
    cluster.list("scheduling.k8s.io", "priorityclasses", "")
}

/// The global default class: of those marked `globalDefault`, the lowest valued.
pub fn global_default(classes: &[PriorityClass]) -> Option<&PriorityClass> {
    classes.iter().filter(|c| c.global_default == Some(true)).min_by_key(|c| c.value)
}

/// What this plugin reads of a pod.
#[derive(serde::Deserialize)]
struct PodPriority {
    spec: Option<PrioritySpec>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PrioritySpec {
    priority_class_name: Option<String>,
    priority: Option<i32>,
    preemption_policy: Option<String>,
}

impl Mutating for Priority {
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        _old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if attributes.operation != Operation::Create || !is(attributes, "", "pods") {
            return Ok(());
        }
        let Some(object) = object else { return Ok(()) };
        let Some(pod) = typed::<PodPriority>(object) else { return Ok(()) };
        let spec = pod.spec.unwrap_or_default();
        let classes = classes(cluster);
        let requested = spec.priority_class_name.clone().filter(|n| !n.is_empty());
        let (name, priority, policy) = match &requested {
            None => match global_default(&classes) {
                Some(class) => (
                    class.metadata.name.clone(),
                    class.value,
                    Some(
                        class
                            .preemption_policy
                            .clone()
                            .unwrap_or_else(|| "PreemptLowerPriority".into()),
                    ),
                ),
                None => (None, 0, Some("PreemptLowerPriority".to_string())),
            },
            Some(requested) => {
                let Some(class) =
                    classes.iter().find(|c| c.metadata.name.as_deref() == Some(requested.as_str()))
                else {
                    return Err(forbidden(
                        attributes,
                        Some(object),
                        &format!("no PriorityClass with name {requested} was found"),
                    ));
                };
                (Some(requested.clone()), class.value, class.preemption_policy.clone())
            }
        };
        if let Some(given) = spec.priority
            && given != priority
        {
            return Err(forbidden(
                attributes,
                Some(object),
                &format!(
                    "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
                ),
            ));
        }
        if let (Some(given), Some(policy)) = (&spec.preemption_policy, &policy)
            && given != policy
        {
            return Err(forbidden(
                attributes,
                Some(object),
                &format!(
                    "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                ),
            ));
        }
        let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
            return Ok(());
        };
        if let Some(name) = name {
            spec.insert("priorityClassName".into(), Value::String(name));
        }
        spec.insert("priority".into(), Value::from(priority));
        if let Some(policy) = policy {
            spec.insert("preemptionPolicy".into(), Value::String(policy));
        }
        Ok(())
    }
}

impl Validating for Priority {
    /// Refuses a second global default PriorityClass.
    fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        _old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        if !matches!(attributes.operation, Operation::Create | Operation::Update)
            || !is(attributes, "scheduling.k8s.io", "priorityclasses")
        {
            return Ok(());
        }
        let Some(class) = object.and_then(typed::<PriorityClass>) else { return Ok(()) };
        if class.global_default != Some(true) {
            return Ok(());
        }
        let others = classes(cluster);
        if let Some(existing) = others
            .iter()
            .filter(|c| c.metadata.name != class.metadata.name)
            .find(|c| c.global_default == Some(true))
        {
            let name = existing.metadata.name.clone().unwrap_or_default();
            return Err(forbidden(
                attributes,
                object,
                &format!(
                    "PriorityClass {name} is already marked as default. Only one default can exist"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, create};

    fn cluster(with_default: bool) -> Objects {
        let mut objects = vec![(
            "scheduling.k8s.io",
            "priorityclasses",
            json!({"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"}),
        )];
        if with_default {
            objects.push((
                "scheduling.k8s.io",
                "priorityclasses",
                json!({"metadata": {"name": "base"}, "value": 10, "globalDefault": true}),
            ));
        }
        Objects(objects)
    }

    #[test]
    fn pods_get_the_priority_of_their_class() {
        let cases: &[(&str, bool, Value, Result<(Value, Value, &str), &str>)] = &[
            (
                "a named class resolves",
                false,
                json!({"priorityClassName": "high"}),
                Ok((json!("high"), json!(1000), "Never")),
            ),
            (
                "no class and no default is 0",
                false,
                json!({}),
                Ok((Value::Null, json!(0), "PreemptLowerPriority")),
            ),
            (
                "no class takes the global default",
                true,
                json!({}),
                Ok((json!("base"), json!(10), "PreemptLowerPriority")),
            ),
            (
                "an unknown class is refused",
                false,
                json!({"priorityClassName": "nope"}),
                Err("pods \"p\" is forbidden: no PriorityClass with name nope was found"),
            ),
            (
                "a disagreeing priority is refused",
                false,
                json!({"priorityClassName": "high", "priority": 5}),
                Err(
                    "pods \"p\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name",
                ),
            ),
        ];
        for (case, with_default, spec, expected) in cases {
            let mut pod = json!({"metadata": {"name": "p"}, "spec": spec});
            let got = Priority.admit(
                &create("", "pods", "ns"),
                Some(&mut pod),
                None,
                &cluster(*with_default),
            );
            match (got, expected) {
                (Ok(()), Ok((name, priority, policy))) => {
                    assert_eq!(pod["spec"]["priorityClassName"], *name, "{case}");
                    assert_eq!(pod["spec"]["priority"], *priority, "{case}");
                    assert_eq!(pod["spec"]["preemptionPolicy"], *policy, "{case}");
                }
                (Err(e), Err(message)) => assert_eq!(e.message, *message, "{case}"),
                (got, _) => panic!("{case}: {got:?}"),
            }
        }
    }

    #[test]
    fn a_second_global_default_is_refused() {
        let class = json!({"metadata": {"name": "other"}, "value": 5, "globalDefault": true});
        let got = Priority.validate(
            &create("scheduling.k8s.io", "priorityclasses", ""),
            Some(&class),
            None,
            &cluster(true),
        );
        assert_eq!(
            got.unwrap_err().message,
            "priorityclasses.scheduling.k8s.io \"other\" is forbidden: PriorityClass base is already marked as default. Only one default can exist"
        );
        assert!(
            Priority
                .validate(
                    &create("scheduling.k8s.io", "priorityclasses", ""),
                    Some(&class),
                    None,
                    &cluster(false)
                )
                .is_ok()
        );
    }
}
