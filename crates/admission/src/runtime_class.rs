//! RuntimeClass, as upstream's `plugin/pkg/admission/runtimeclass`: a pod created with a
//! `runtimeClassName` takes its RuntimeClass's `overhead.podFixed` as `spec.overhead`, and its
//! `scheduling` merged into `spec.nodeSelector` and `spec.tolerations`.
//!
//! Refused, in upstream's words: a pod naming a RuntimeClass that does not exist; a pod whose
//! `overhead` differs from its class's (before and after defaulting); a pod that sets an
//! `overhead` its class does not define; a pod whose `nodeSelector` disagrees with its
//! class's. Only creates of pods are looked at.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, Toleration};
use k8s_openapi::api::node::v1::RuntimeClass as Class;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use krust_api::StatusError;
use serde_json::Value;

use crate::quantity::Amount;
use crate::{
    Attributes, ClusterView, Mutating, Operation, Plugin, Validating, forbidden, is, typed,
};

/// Upstream's name.
pub const NAME: &str = "RuntimeClass";

/// Upstream's refusal of an overhead that is not the class's.
pub const OVERHEAD_MISMATCH: &str =
    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead";

/// Upstream's refusal of an overhead without a class that defines one.
pub const OVERHEAD_WITHOUT_CLASS: &str =
    "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead";

/// The plugin.
pub struct RuntimeClass;

impl Plugin for RuntimeClass {
    fn name(&self) -> &'static str {
        NAME
    }
}

type Resources = BTreeMap<String, Quantity>;

/// The pod of a create of `pods` itself, with its spec; `None` for every other write.
fn pod_of(attributes: &Attributes<'_>, object: Option<&Value>) -> Option<PodSpec> {
    if attributes.operation != Operation::Create || !is(attributes, "", "pods") {
        return None;
    }
    let object = object?;
    let runtime = typed::<PodRuntime>(object)?.spec;
    if runtime.is_none_or(|r| r.runtime_class_name.is_none() && r.overhead.is_none()) {
        return None;
    }
    Some(typed::<Pod>(object)?.spec.unwrap_or_default())
}

/// What this plugin reads of every pod before it decodes the whole spec: most pods name no
/// class and carry no overhead, and then it has nothing to do.
#[derive(serde::Deserialize)]
struct PodRuntime {
    spec: Option<RuntimeSpec>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeSpec {
    runtime_class_name: Option<serde::de::IgnoredAny>,
    overhead: Option<serde::de::IgnoredAny>,
}

/// The RuntimeClass a pod names (`None` when it names none); one that does not exist is
/// refused.
fn class_of(
    attributes: &Attributes<'_>,
    object: Option<&Value>,
    spec: &PodSpec,
    cluster: &dyn ClusterView,
) -> Result<Option<Class>, StatusError> {
    let Some(name) = &spec.runtime_class_name else { return Ok(None) };
    match cluster.get::<Class>("node.k8s.io", "runtimeclasses", "", name) {
        Some(class) => Ok(Some(class)),
        None => Err(forbidden(
            attributes,
            object,
            &format!("pod rejected: RuntimeClass {name:?} not found"),
        )),
    }
}

/// Whether two resource lists are semantically equal (quantities compared by value; no list
/// and an empty one are the same, as upstream's `Semantic.DeepEqual`).
pub fn same_resources(a: Option<&Resources>, b: Option<&Resources>) -> bool {
    let empty = Resources::new();
    let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
    a.len() == b.len()
        && a.iter().all(|(name, q)| {
            b.get(name).is_some_and(|r| match (Amount::of(q), Amount::of(r)) {
                (Ok(x), Ok(y)) => x == y,
                _ => q.0 == r.0,
            })
        })
}

/// A toleration as upstream's internal type reads it (absent strings are empty).
#[derive(PartialEq)]
struct Tol<'a> {
    key: &'a str,
    operator: &'a str,
    value: &'a str,
    effect: &'a str,
    seconds: Option<i64>,
}

impl<'a> From<&'a Toleration> for Tol<'a> {
    fn from(t: &'a Toleration) -> Self {
        Self {
            key: t.key.as_deref().unwrap_or_default(),
            operator: t.operator.as_deref().unwrap_or_default(),
            value: t.value.as_deref().unwrap_or_default(),
            effect: t.effect.as_deref().unwrap_or_default(),
            seconds: t.toleration_seconds,
        }
    }
}

/// Whether `ss` tolerates everything `t` does, as upstream's `isSuperset`.
fn is_superset(ss: &Toleration, t: &Toleration) -> bool {
    let (ss, t) = (Tol::from(ss), Tol::from(t));
    if ss == t {
        return true;
    }
    // An empty key with Exists matches every key.
    if t.key != ss.key && (!ss.key.is_empty() || ss.operator != "Exists") {
        return false;
    }
    // An empty effect matches every effect.
    if t.effect != ss.effect && !ss.effect.is_empty() {
        return false;
    }
    if ss.effect == "NoExecute"
        && let Some(limit) = ss.seconds
        && t.seconds.is_none_or(|s| s > limit)
    {
        return false;
    }
    match ss.operator {
        "Equal" | "" => t.operator == "Equal" && t.value == ss.value,
        "Exists" => true,
        _ => false,
    }
}

/// Upstream's `MergeTolerations`: both lists, in order, without the tolerations another one
/// covers (of equal ones, the first is kept).
pub fn merge_tolerations(first: &[Toleration], second: &[Toleration]) -> Vec<Toleration> {
    let all: Vec<&Toleration> = first.iter().chain(second).collect();
    let mut merged: Vec<Toleration> = Vec::new();
    for (i, t) in all.iter().enumerate() {
        if merged.iter().any(|m| is_superset(m, t)) {
            continue;
        }
        if all[i + 1..]
            .iter()
            .any(|later| Tol::from(*t) != Tol::from(*later) && is_superset(later, t))
        {
            continue;
        }
        merged.push((*t).clone());
    }
    merged
}

/// Sets `spec.overhead` from the class, refusing a different one the pod already has.
fn set_overhead(
    attributes: &Attributes<'_>,
    object: &mut Value,
    spec: &PodSpec,
    class: &Class,
) -> Result<(), StatusError> {
    let Some(overhead) = &class.overhead else { return Ok(()) };
    if spec.overhead.is_some()
        && !same_resources(overhead.pod_fixed.as_ref(), spec.overhead.as_ref())
    {
        return Err(forbidden(attributes, Some(object), OVERHEAD_MISMATCH));
    }
    let Some(target) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    match overhead.pod_fixed.as_ref().map(serde_json::to_value) {
        Some(Ok(fixed)) => {
            target.insert("overhead".into(), fixed);
        }
        Some(Err(_)) | None => {
            target.remove("overhead");
        }
    }
    Ok(())
}

/// Merges the class's `scheduling` into the pod's node selector and tolerations, refusing a
/// node selector that disagrees with the class's.
fn set_scheduling(
    attributes: &Attributes<'_>,
    object: &mut Value,
    spec: &PodSpec,
    class: &Class,
) -> Result<(), StatusError> {
    let Some(scheduling) = &class.scheduling else { return Ok(()) };
    let wanted = scheduling.node_selector.clone().unwrap_or_default();
    let selector = match &spec.node_selector {
        None => scheduling.node_selector.clone(),
        Some(selector) => {
            let mut selector = selector.clone();
            for (key, class_value) in &wanted {
                if let Some(pod_value) = selector.get(key)
                    && pod_value != class_value
                {
                    return Err(forbidden(
                        attributes,
                        Some(object),
                        &format!(
                            "conflict: runtimeClass.scheduling.nodeSelector[{key}] = {class_value}; pod.spec.nodeSelector[{key}] = {pod_value}"
                        ),
                    ));
                }
                selector.insert(key.clone(), class_value.clone());
            }
            Some(selector)
        }
    };
    let tolerations = merge_tolerations(
        spec.tolerations.as_deref().unwrap_or_default(),
        scheduling.tolerations.as_deref().unwrap_or_default(),
    );
    let Some(target) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(Ok(selector)) = selector.map(serde_json::to_value) {
        target.insert("nodeSelector".into(), selector);
    }
    if !tolerations.is_empty()
        && let Ok(tolerations) = serde_json::to_value(tolerations)
    {
        target.insert("tolerations".into(), tolerations);
    }
    Ok(())
}

impl Mutating for RuntimeClass {
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        _old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        let Some(object) = object else { return Ok(()) };
        let Some(spec) = pod_of(attributes, Some(object)) else { return Ok(()) };
        let Some(class) = class_of(attributes, Some(object), &spec, cluster)? else {
            return Ok(());
        };
        set_overhead(attributes, object, &spec, &class)?;
        set_scheduling(attributes, object, &spec, &class)
    }
}

impl Validating for RuntimeClass {
    fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        _old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        let Some(spec) = pod_of(attributes, object) else { return Ok(()) };
        let class = class_of(attributes, object, &spec, cluster)?;
        match class.as_ref().and_then(|c| c.overhead.as_ref()) {
            Some(overhead) => {
                if !same_resources(overhead.pod_fixed.as_ref(), spec.overhead.as_ref()) {
                    return Err(forbidden(attributes, object, OVERHEAD_MISMATCH));
                }
            }
            None => {
                if spec.overhead.is_some() {
                    return Err(forbidden(attributes, object, OVERHEAD_WITHOUT_CLASS));
                }
            }
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

    fn cluster() -> Objects {
        Objects(vec![
            (
                "node.k8s.io",
                "runtimeclasses",
                json!({"metadata": {"name": "kata"}, "handler": "kata",
                    "overhead": {"podFixed": {"cpu": "250m", "memory": "120Mi"}}}),
            ),
            (
                "node.k8s.io",
                "runtimeclasses",
                json!({"metadata": {"name": "gvisor"}, "handler": "runsc",
                    "scheduling": {"nodeSelector": {"runtime": "gvisor"},
                        "tolerations": [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}]}}),
            ),
            (
                "node.k8s.io",
                "runtimeclasses",
                json!({"metadata": {"name": "plain"}, "handler": "runc"}),
            ),
        ])
    }

    fn pod(spec: Value) -> Value {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "i"}]);
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    fn admit(object: &mut Value) -> Result<(), String> {
        RuntimeClass
            .admit(&create("", "pods", "ns"), Some(object), None, &cluster())
            .map_err(|e| e.message)
    }

    fn validate(object: &Value) -> Result<(), String> {
        RuntimeClass
            .validate(&create("", "pods", "ns"), Some(object), None, &cluster())
            .map_err(|e| e.message)
    }

    #[test]
    fn pods_take_their_class_overhead_and_scheduling() {
        let cases: &[(&str, Value, Result<Value, &str>)] = &[
            (
                "the class's overhead is set",
                json!({"runtimeClassName": "kata"}),
                Ok(json!({"overhead": {"cpu": "250m", "memory": "120Mi"}})),
            ),
            (
                "the same overhead in other words passes",
                json!({"runtimeClassName": "kata", "overhead": {"cpu": "0.25", "memory": "120Mi"}}),
                Ok(json!({"overhead": {"cpu": "250m", "memory": "120Mi"}})),
            ),
            (
                "another overhead is refused",
                json!({"runtimeClassName": "kata", "overhead": {"cpu": "1"}}),
                Err(
                    r#"pods "p" is forbidden: pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"#,
                ),
            ),
            (
                "a missing class is refused",
                json!({"runtimeClassName": "nope"}),
                Err(r#"pods "p" is forbidden: pod rejected: RuntimeClass "nope" not found"#),
            ),
            (
                "scheduling is merged",
                json!({"runtimeClassName": "gvisor", "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "a", "operator": "Exists"}]}),
                Ok(json!({"nodeSelector": {"disk": "ssd", "runtime": "gvisor"},
                    "tolerations": [{"key": "a", "operator": "Exists"},
                        {"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}]})),
            ),
            (
                "a pod without a selector takes the class's",
                json!({"runtimeClassName": "gvisor"}),
                Ok(json!({"nodeSelector": {"runtime": "gvisor"},
                    "tolerations": [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}]})),
            ),
            (
                "a disagreeing selector is refused",
                json!({"runtimeClassName": "gvisor", "nodeSelector": {"runtime": "runc"}}),
                Err(
                    r#"pods "p" is forbidden: conflict: runtimeClass.scheduling.nodeSelector[runtime] = gvisor; pod.spec.nodeSelector[runtime] = runc"#,
                ),
            ),
            (
                "a class without either changes nothing",
                json!({"runtimeClassName": "plain"}),
                Ok(json!({})),
            ),
            ("no class changes nothing", json!({}), Ok(json!({}))),
        ];
        for (case, spec, expected) in cases {
            let mut object = pod(spec.clone());
            match (admit(&mut object), expected) {
                (Ok(()), Ok(fields)) => {
                    for (field, value) in fields.as_object().unwrap() {
                        assert_eq!(object["spec"][field], *value, "{case}: {field}");
                    }
                    if fields.get("overhead").is_none() {
                        assert_eq!(object["spec"].get("overhead"), spec.get("overhead"), "{case}");
                    }
                }
                (Err(got), Err(want)) => assert_eq!(got, *want, "{case}"),
                (got, _) => panic!("{case}: {got:?}"),
            }
        }
    }

    #[test]
    fn validation_checks_the_overhead_against_the_class() {
        let cases: &[(&str, Value, Result<(), &str>)] = &[
            (
                "the class's overhead passes",
                json!({"runtimeClassName": "kata", "overhead": {"cpu": "250m", "memory": "120Mi"}}),
                Ok(()),
            ),
            (
                "an overhead dropped after admission is refused",
                json!({"runtimeClassName": "kata"}),
                Err(
                    r#"pods "p" is forbidden: pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"#,
                ),
            ),
            (
                "an overhead without a class is refused",
                json!({"overhead": {"cpu": "1"}}),
                Err(
                    r#"pods "p" is forbidden: pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"#,
                ),
            ),
            (
                "an overhead with a class that defines none is refused",
                json!({"runtimeClassName": "plain", "overhead": {"cpu": "1"}}),
                Err(
                    r#"pods "p" is forbidden: pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"#,
                ),
            ),
            (
                "a missing class is refused",
                json!({"runtimeClassName": "nope"}),
                Err(r#"pods "p" is forbidden: pod rejected: RuntimeClass "nope" not found"#),
            ),
            ("a plain pod passes", json!({}), Ok(())),
        ];
        for (case, spec, expected) in cases {
            assert_eq!(validate(&pod(spec.clone())), expected.map_err(str::to_string), "{case}");
        }
    }

    #[test]
    fn tolerations_merge_as_upstreams() {
        let t = |v: Value| -> Toleration { typed(&v).unwrap() };
        let cases: &[(&str, Vec<Value>, Vec<Value>, Vec<Value>)] = &[
            (
                "disjoint lists are concatenated",
                vec![json!({"key": "a", "operator": "Exists"})],
                vec![json!({"key": "b", "operator": "Exists"})],
                vec![
                    json!({"key": "a", "operator": "Exists"}),
                    json!({"key": "b", "operator": "Exists"}),
                ],
            ),
            (
                "equal tolerations are kept once",
                vec![json!({"key": "a", "operator": "Equal", "value": "x"})],
                vec![json!({"key": "a", "operator": "Equal", "value": "x"})],
                vec![json!({"key": "a", "operator": "Equal", "value": "x"})],
            ),
            (
                "a later superset replaces a narrower one",
                vec![
                    json!({"key": "a", "operator": "Equal", "value": "x", "effect": "NoSchedule"}),
                ],
                vec![json!({"key": "a", "operator": "Exists"})],
                vec![json!({"key": "a", "operator": "Exists"})],
            ),
            (
                "an empty key with Exists covers everything",
                vec![json!({"operator": "Exists"})],
                vec![json!({"key": "b", "operator": "Exists", "effect": "NoExecute"})],
                vec![json!({"operator": "Exists"})],
            ),
            (
                "a shorter NoExecute limit does not cover a longer one",
                vec![
                    json!({"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}),
                ],
                vec![
                    json!({"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}),
                ],
                vec![
                    json!({"key": "a", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}),
                ],
            ),
        ];
        for (case, first, second, expected) in cases {
            let first: Vec<Toleration> = first.iter().cloned().map(t).collect();
            let second: Vec<Toleration> = second.iter().cloned().map(t).collect();
            let expected: Vec<Toleration> = expected.iter().cloned().map(t).collect();
            assert_eq!(merge_tolerations(&first, &second), expected, "{case}");
        }
    }

    #[test]
    fn updates_and_subresources_are_not_looked_at() {
        let mut attributes = create("", "pods", "ns");
        attributes.operation = Operation::Update;
        let mut object = pod(json!({"runtimeClassName": "nope"}));
        assert!(RuntimeClass.admit(&attributes, Some(&mut object), None, &cluster()).is_ok());
        let mut status = create("", "pods", "ns");
        status.subresource = "status";
        assert!(RuntimeClass.validate(&status, Some(&object), None, &cluster()).is_ok());
    }
}
