//! Where a DaemonSet's pods belong (upstream's `NodeShouldRunDaemonPod`): a node whose name,
//! labels (node selector, required node affinity) and taints admit the pod, with the
//! tolerations upstream adds to every daemon pod; and the pod made for one node, pinned to it
//! by node affinity so that the scheduler binds it there.

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::runtime::owner::controller_ref;

/// The label a daemon pod carries with its template's revision hash.
pub const REVISION_HASH: &str = "controller-revision-hash";

/// Whether a node should run the DaemonSet's pod, and whether a pod already there may stay
/// (only `NoExecute` taints evict).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// A pod should run there.
    pub should_run: bool,
    /// A pod there may keep running.
    pub may_stay: bool,
}

/// How `node` fits the DaemonSet's pod.
pub fn fit(ds: &DaemonSet, node: &Node) -> Fit {
    let mut spec = ds.spec.as_ref().and_then(|s| s.template.spec.clone()).unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let placed = spec.node_name.as_deref().is_none_or(|n| n.is_empty() || n == name)
        && selector_matches(&spec, node)
        && affinity_matches(&spec, node);
    let taints: &[Taint] = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let tolerations: &[Toleration] = spec.tolerations.as_deref().unwrap_or_default();
    let tolerated = |effects: &[&str]| {
        taints
            .iter()
            .filter(|t| effects.contains(&t.effect.as_str()))
            .all(|t| tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    Fit {
        should_run: placed && tolerated(&["NoSchedule", "NoExecute"]),
        may_stay: placed && tolerated(&["NoExecute"]),
    }
}

/// Adds the tolerations upstream gives every daemon pod (`AddOrUpdateDaemonPodTolerations`):
/// it stays on nodes that are not ready or unreachable, and is placed on nodes under
/// pressure, unschedulable ones, and (with the host's network) nodes without a pod network.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let present = tolerations.iter().any(|t| {
            t.key.as_deref() == Some(key)
                && t.effect.as_deref() == Some(effect)
                && t.operator.as_deref() == Some("Exists")
                && t.toleration_seconds.is_none()
        });
        if !present {
            tolerations.retain(|t| {
                !(t.key.as_deref() == Some(key) && t.effect.as_deref() == Some(effect))
            });
            tolerations.push(Toleration {
                key: Some(key.to_string()),
                operator: Some("Exists".to_string()),
                effect: Some(effect.to_string()),
                ..Toleration::default()
            });
        }
    }
}

/// The DaemonSet's pod for `node`, of template revision `hash`.
pub fn pod_for(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH.to_string(), hash.to_string());
    let mut spec = template.spec.unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    pin_to_node(&mut spec, node);
    let name = ds.metadata.name.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref("apps/v1", "DaemonSet", &ds.metadata)]),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Requires `metadata.name In [node]` of every node selector term (upstream's
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`): the scheduler places the pod on that node.
fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let field = NodeSelectorRequirement {
        key: "metadata.name".into(),
        operator: "In".into(),
        values: Some(vec![node.to_string()]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    let required = node_affinity
        .required_during_scheduling_ignored_during_execution
        .get_or_insert_with(|| NodeSelector { node_selector_terms: Vec::new() });
    if required.node_selector_terms.is_empty() {
        required.node_selector_terms.push(NodeSelectorTerm::default());
    }
    for term in &mut required.node_selector_terms {
        term.match_fields = Some(vec![field.clone()]);
    }
}

/// Whether the pod's `nodeSelector` labels are all on the node.
fn selector_matches(spec: &PodSpec, node: &Node) -> bool {
    let labels = node.metadata.labels.as_ref();
    spec.node_selector.iter().flatten().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Whether the node meets the pod's required node affinity (any term, all of its
/// requirements).
fn affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
    else {
        return true;
    };
    let name = node.metadata.name.clone().unwrap_or_default();
    let labels = node.metadata.labels.clone().unwrap_or_default();
    required.node_selector_terms.iter().any(|term| {
        let expressions = term.match_expressions.iter().flatten();
        let fields = term.match_fields.iter().flatten();
        let has_any = term.match_expressions.as_ref().is_some_and(|e| !e.is_empty())
            || term.match_fields.as_ref().is_some_and(|f| !f.is_empty());
        has_any
            && expressions
                .clone()
                .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
            && fields
                .clone()
                .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(&name)))
    })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => {
            matches!((value.and_then(number), values.first().and_then(|x| number(x))), (Some(v), Some(x)) if v > x)
        }
        "Lt" => {
            matches!((value.and_then(number), values.first().and_then(|x| number(x))), (Some(v), Some(x)) if v < x)
        }
        _ => false,
    }
}

/// Whether a toleration tolerates a taint (upstream's `ToleratesTaint`).
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    let exists = toleration.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        return exists;
    }
    if key != taint.key {
        return false;
    }
    exists
        || toleration.value.as_deref().unwrap_or_default()
            == taint.value.as_deref().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use k8s_openapi::api::core::v1::{NodeSpec, PodTemplateSpec};

    fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: (*k).into(),
                            effect: (*e).into(),
                            ..Taint::default()
                        })
                        .collect(),
                ),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn ds(spec: PodSpec) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                uid: Some("uid-ds".into()),
                ..ObjectMeta::default()
            },
            spec: Some(DaemonSetSpec {
                template: PodTemplateSpec { metadata: None, spec: Some(spec) },
                ..DaemonSetSpec::default()
            }),
            status: None,
        }
    }

    #[test]
    fn selectors_affinity_and_taints() {
        let plain = ds(PodSpec::default());
        assert_eq!(fit(&plain, &node("a", &[], &[])), Fit { should_run: true, may_stay: true });
        let tainted = node("b", &[], &[("dedicated", "NoSchedule")]);
        assert_eq!(fit(&plain, &tainted), Fit { should_run: false, may_stay: true });
        let evicting = node("c", &[], &[("dedicated", "NoExecute")]);
        assert_eq!(fit(&plain, &evicting), Fit { should_run: false, may_stay: false });
        // The tolerations every daemon pod gets: cordoned and not-ready nodes keep theirs.
        let cordoned = node(
            "d",
            &[],
            &[
                ("node.kubernetes.io/unschedulable", "NoSchedule"),
                ("node.kubernetes.io/not-ready", "NoExecute"),
            ],
        );
        assert!(fit(&plain, &cordoned).should_run);
        let selective = ds(PodSpec {
            node_selector: Some([("role".to_string(), "edge".to_string())].into()),
            ..PodSpec::default()
        });
        assert!(!fit(&selective, &node("e", &[], &[])).should_run);
        assert!(fit(&selective, &node("e", &[("role", "edge")], &[])).should_run);
        let tolerant = ds(PodSpec {
            tolerations: Some(vec![Toleration {
                operator: Some("Exists".into()),
                ..Toleration::default()
            }]),
            ..PodSpec::default()
        });
        assert!(fit(&tolerant, &evicting).should_run);
    }

    #[test]
    fn pods_are_pinned_to_their_node_with_the_daemon_tolerations() {
        let pod = pod_for(
            &ds(PodSpec { host_network: Some(true), ..PodSpec::default() }),
            "node-7",
            "abc",
        );
        let spec = pod.spec.as_ref().expect("spec");
        let terms = &spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
            .expect("required affinity")
            .node_selector_terms;
        let field = &terms[0].match_fields.as_ref().expect("fields")[0];
        assert_eq!(
            (field.key.as_str(), field.values.as_deref()),
            ("metadata.name", Some(&["node-7".to_string()][..]))
        );
        let keys: Vec<&str> =
            spec.tolerations.iter().flatten().filter_map(|t| t.key.as_deref()).collect();
        assert!(keys.contains(&"node.kubernetes.io/network-unavailable"));
        assert_eq!(keys.len(), 7);
        assert_eq!(
            pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_HASH)).map(String::as_str),
            Some("abc")
        );
    }
}
