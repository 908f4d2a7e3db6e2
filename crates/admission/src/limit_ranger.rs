//! LimitRanger: the LimitRanges of a pod's namespace default its containers' requests and
//! limits (items of type `Container`: `defaultRequest`, `default`) and bound them (`min`,
//! `max`, `maxLimitRequestRatio` per `Container`, and over the whole `Pod`); a
//! PersistentVolumeClaim's storage request is bounded by items of type
//! `PersistentVolumeClaim`. Pods are admitted on create only (their containers cannot change
//! later), claims on create and update. Refusals are worded as upstream's.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, LimitRange, LimitRangeItem, PersistentVolumeClaim, Pod,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use krust_api::StatusError;
use serde_json::Value;

use crate::quantity::Amount;
use crate::{
    Attributes, ClusterView, Mutating, Operation, Plugin, Validating, forbidden, is, typed,
};

/// Upstream's name.
pub const NAME: &str = "LimitRanger";

/// The annotation naming what the plugin set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The plugin.
pub struct LimitRanger;

impl Plugin for LimitRanger {
    fn name(&self) -> &'static str {
        NAME
    }
}

type Resources = BTreeMap<String, Quantity>;

/// What the plugin looks at: pods on create, claims on create and update.
enum Target {
    Pod,
    Claim,
}

fn target(attributes: &Attributes<'_>) -> Option<Target> {
    match attributes.operation {
        Operation::Create if is(attributes, "", "pods") => Some(Target::Pod),
        Operation::Create | Operation::Update if is(attributes, "", "persistentvolumeclaims") => {
            Some(Target::Claim)
        }
        _ => None,
    }
}

/// The namespace's LimitRanges' items, in name order, with upstream's API defaults applied
/// to `Container` items (`default` from `max`, `defaultRequest` from `default`, then `min`).
fn items(cluster: &dyn ClusterView, namespace: &str) -> Vec<LimitRangeItem> {
    let mut ranges: Vec<LimitRange> = cluster.list("", "limitranges", namespace);
    ranges.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    ranges
        .into_iter()
        .flat_map(|r| r.spec.map(|s| s.limits).unwrap_or_default())
        .map(|mut item| {
            if item.type_ == "Container" {
                let mut default = item.default.take().unwrap_or_default();
                for (k, v) in item.max.iter().flatten() {
                    default.entry(k.clone()).or_insert_with(|| v.clone());
                }
                let mut request = item.default_request.take().unwrap_or_default();
                for (k, v) in default.iter().chain(item.min.iter().flatten()) {
                    request.entry(k.clone()).or_insert_with(|| v.clone());
                }
                item.default = Some(default);
                item.default_request = Some(request);
            }
            item
        })
        .collect()
}

impl Mutating for LimitRanger {
    fn admit(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&mut Value>,
        _old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        let (Some(Target::Pod), Some(object)) = (target(attributes), object) else {
            return Ok(());
        };
        let Some(pod) = typed::<Pod>(object) else { return Ok(()) };
        let (mut requests, mut limits) = (Resources::new(), Resources::new());
        for item in items(cluster, attributes.namespace).iter().filter(|i| i.type_ == "Container") {
            requests.extend(item.default_request.clone().unwrap_or_default());
            limits.extend(item.default.clone().unwrap_or_default());
        }
        if requests.is_empty() && limits.is_empty() {
            return Ok(());
        }
        let mut notes = Vec::new();
        let spec = pod.spec.unwrap_or_default();
        for (field, kind, containers) in [
            ("containers", "container", Some(spec.containers)),
            ("initContainers", "init container", spec.init_containers),
        ] {
            let Some(values) =
                object.pointer_mut(&format!("/spec/{field}")).and_then(Value::as_array_mut)
            else {
                continue;
            };
            for (container, value) in containers.iter().flatten().zip(values.iter_mut()) {
                notes.extend(default_container(container, value, kind, &requests, &limits));
            }
        }
        if !notes.is_empty()
            && let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut)
        {
            let annotations =
                meta.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(
                    ANNOTATION.into(),
                    Value::String(format!("LimitRanger plugin set: {}", notes.join("; "))),
                );
            }
        }
        Ok(())
    }
}

/// Sets the defaults a container lacks; answers the annotation's notes.
fn default_container(
    container: &Container,
    value: &mut Value,
    kind: &str,
    requests: &Resources,
    limits: &Resources,
) -> Vec<String> {
    let resources = container.resources.clone().unwrap_or_default();
    let mut notes = Vec::new();
    for (field, defaults, have, word) in [
        ("requests", requests, resources.requests.unwrap_or_default(), "request"),
        ("limits", limits, resources.limits.unwrap_or_default(), "limit"),
    ] {
        let missing: Vec<(&String, &Quantity)> =
            defaults.iter().filter(|(k, _)| !have.contains_key(*k)).collect();
        if missing.is_empty() {
            continue;
        }
        let Some(container) = value.as_object_mut() else { continue };
        let resources =
            container.entry("resources").or_insert_with(|| Value::Object(Default::default()));
        let Some(resources) = resources.as_object_mut() else { continue };
        let list = resources.entry(field).or_insert_with(|| Value::Object(Default::default()));
        let Some(list) = list.as_object_mut() else { continue };
        for (k, v) in &missing {
            list.insert((*k).clone(), Value::String(v.0.clone()));
        }
        let names: Vec<&str> = missing.iter().map(|(k, _)| k.as_str()).collect();
        notes.push(format!("{} {word} for {kind} {}", names.join(", "), container_name(container)));
    }
    notes
}

fn container_name(container: &serde_json::Map<String, Value>) -> &str {
    container.get("name").and_then(Value::as_str).unwrap_or_default()
}

impl Validating for LimitRanger {
    fn validate(
        &self,
        attributes: &Attributes<'_>,
        object: Option<&Value>,
        _old: Option<&Value>,
        cluster: &dyn ClusterView,
    ) -> Result<(), StatusError> {
        let (Some(target), Some(object)) = (target(attributes), object) else {
            return Ok(());
        };
        let items = items(cluster, attributes.namespace);
        if items.is_empty() {
            return Ok(());
        }
        let errors = match target {
            Target::Pod => typed::<Pod>(object).map(|p| check_pod(&items, &p)).unwrap_or_default(),
            Target::Claim => typed::<PersistentVolumeClaim>(object)
                .map(|c| check_claim(&items, &c))
                .unwrap_or_default(),
        };
        match errors.as_slice() {
            [] => Ok(()),
            [one] => Err(forbidden(attributes, Some(object), one)),
            many => Err(forbidden(attributes, Some(object), &format!("[{}]", many.join(", ")))),
        }
    }
}

/// Every violation of `items` by a pod, as upstream's `PodValidateLimitFunc` words them.
pub fn check_pod(items: &[LimitRangeItem], pod: &Pod) -> Vec<String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut errors = Vec::new();
    let containers: Vec<&Container> =
        spec.containers.iter().chain(spec.init_containers.iter().flatten()).collect();
    for item in items {
        match item.type_.as_str() {
            "Container" => {
                for container in &containers {
                    let resources = container.resources.clone().unwrap_or_default();
                    let requests = amounts(resources.requests.as_ref());
                    let limits = amounts(resources.limits.as_ref());
                    bound("Container", item, &requests, &limits, &mut errors);
                }
            }
            "Pod" => {
                let (requests, limits) = pod_totals(&spec);
                bound("Pod", item, &requests, &limits, &mut errors);
            }
            _ => {}
        }
    }
    errors
}

/// Every violation of `items` by a claim's storage request.
pub fn check_claim(items: &[LimitRangeItem], claim: &PersistentVolumeClaim) -> Vec<String> {
    let requests = amounts(
        claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref()),
    );
    let mut errors = Vec::new();
    for item in items.iter().filter(|i| i.type_ == "PersistentVolumeClaim") {
        let kind = "PersistentVolumeClaim";
        for (name, enforced) in parsed(item.min.as_ref()) {
            if let Err(e) = min(kind, &name, enforced, &requests, &BTreeMap::new()) {
                errors.push(e);
            }
        }
        for (name, enforced) in parsed(item.max.as_ref()) {
            match requests.get(&name) {
                None => errors.push(format!(
                    "maximum {name} usage per {kind} is {enforced}.  No request is specified"
                )),
                Some(req) if req.milli_value() > enforced.milli_value() => errors.push(format!(
                    "maximum {name} usage per {kind} is {enforced}, but request is {req}"
                )),
                Some(_) => {}
            }
        }
    }
    errors
}

type Amounts = BTreeMap<String, Amount>;

fn amounts(list: Option<&Resources>) -> Amounts {
    parsed(list).collect()
}

fn parsed(list: Option<&Resources>) -> impl Iterator<Item = (String, Amount)> + '_ {
    list.into_iter().flatten().filter_map(|(k, v)| Amount::of(v).ok().map(|a| (k.clone(), a)))
}

/// A pod's requests and limits: the containers' sums, or an init container's when larger.
fn pod_totals(spec: &k8s_openapi::api::core::v1::PodSpec) -> (Amounts, Amounts) {
    let mut requests = Amounts::new();
    let mut limits = Amounts::new();
    for container in &spec.containers {
        let resources = container.resources.clone().unwrap_or_default();
        for (total, list) in [(&mut requests, resources.requests), (&mut limits, resources.limits)]
        {
            for (k, v) in amounts(list.as_ref()) {
                let entry = total.entry(k).or_insert(Amount::ZERO);
                *entry = if entry.is_zero() { v } else { *entry + v };
            }
        }
    }
    for container in spec.init_containers.iter().flatten() {
        let resources = container.resources.clone().unwrap_or_default();
        for (total, list) in [(&mut requests, resources.requests), (&mut limits, resources.limits)]
        {
            for (k, v) in amounts(list.as_ref()) {
                let entry = total.entry(k).or_insert(v);
                if v > *entry {
                    *entry = v;
                }
            }
        }
    }
    (requests, limits)
}

/// Checks min, max and maxLimitRequestRatio of one item.
fn bound(
    kind: &str,
    item: &LimitRangeItem,
    requests: &Amounts,
    limits: &Amounts,
    errors: &mut Vec<String>,
) {
    for (name, enforced) in parsed(item.min.as_ref()) {
        if let Err(e) = min(kind, &name, enforced, requests, limits) {
            errors.push(e);
        }
    }
    for (name, enforced) in parsed(item.max.as_ref()) {
        if let Err(e) = max(kind, &name, enforced, requests, limits) {
            errors.push(e);
        }
    }
    for (name, enforced) in parsed(item.max_limit_request_ratio.as_ref()) {
        if let Err(e) = ratio(kind, &name, enforced, requests, limits) {
            errors.push(e);
        }
    }
}

fn min(
    kind: &str,
    name: &str,
    enforced: Amount,
    requests: &Amounts,
    limits: &Amounts,
) -> Result<(), String> {
    let Some(req) = requests.get(name) else {
        return Err(format!(
            "minimum {name} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if req.milli_value() < enforced.milli_value() {
        return Err(format!("minimum {name} usage per {kind} is {enforced}, but request is {req}"));
    }
    if let Some(lim) = limits.get(name)
        && lim.milli_value() < enforced.milli_value()
    {
        return Err(format!("minimum {name} usage per {kind} is {enforced}, but limit is {lim}"));
    }
    Ok(())
}

fn max(
    kind: &str,
    name: &str,
    enforced: Amount,
    requests: &Amounts,
    limits: &Amounts,
) -> Result<(), String> {
    let Some(lim) = limits.get(name) else {
        return Err(format!(
            "maximum {name} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if lim.milli_value() > enforced.milli_value() {
        return Err(format!("maximum {name} usage per {kind} is {enforced}, but limit is {lim}"));
    }
    if let Some(req) = requests.get(name)
        && req.milli_value() > enforced.milli_value()
    {
        return Err(format!("maximum {name} usage per {kind} is {enforced}, but request is {req}"));
    }
    Ok(())
}

fn ratio(
    kind: &str,
    name: &str,
    enforced: Amount,
    requests: &Amounts,
    limits: &Amounts,
) -> Result<(), String> {
    let req = requests.get(name).map(Amount::milli_value).filter(|v| *v != 0);
    let lim = limits.get(name).map(Amount::milli_value).filter(|v| *v != 0);
    let Some(req) = req else {
        return Err(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    };
    let Some(lim) = lim else {
        return Err(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    };
    let observed = lim as f64 / req as f64;
    if observed * 1000.0 > enforced.milli_value() as f64 {
        return Err(format!(
            "{name} max limit to request ratio per {kind} is {enforced}, but provided ratio is {observed:.6}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::type_complexity)]

    use serde_json::json;

    use super::*;
    use crate::testing::{Objects, create};

    fn cluster(limits: Value) -> Objects {
        Objects(vec![(
            "",
            "limitranges",
            json!({"metadata": {"name": "lr", "namespace": "ns"}, "spec": {"limits": limits}}),
        )])
    }

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]}})
    }

    #[test]
    fn container_defaults_land_on_containers_without_them() {
        let cluster = cluster(
            json!([{"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m", "memory": "64Mi"}}]),
        );
        let cases: &[(&str, Value, Value, Option<&str>)] = &[
            (
                "an empty container gets every default",
                json!({}),
                json!({"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}),
                Some(
                    "LimitRanger plugin set: cpu, memory request for container c; cpu limit for container c",
                ),
            ),
            (
                "what a container sets is kept",
                json!({"requests": {"cpu": "200m"}, "limits": {"cpu": "1"}}),
                json!({"requests": {"cpu": "200m", "memory": "64Mi"}, "limits": {"cpu": "1"}}),
                Some("LimitRanger plugin set: memory request for container c"),
            ),
        ];
        for (case, resources, expected, note) in cases {
            let mut obj = pod(resources.clone());
            LimitRanger.admit(&create("", "pods", "ns"), Some(&mut obj), None, &cluster).unwrap();
            assert_eq!(obj["spec"]["containers"][0]["resources"], *expected, "{case}");
            assert_eq!(obj["metadata"]["annotations"][ANNOTATION].as_str(), *note, "{case}");
        }
    }

    #[test]
    fn max_defaults_the_limit_and_min_the_request() {
        let cluster =
            cluster(json!([{"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]));
        let mut obj = pod(json!({}));
        LimitRanger.admit(&create("", "pods", "ns"), Some(&mut obj), None, &cluster).unwrap();
        assert_eq!(
            obj["spec"]["containers"][0]["resources"],
            json!({"requests": {"cpu": "2", "memory": "1Mi"}, "limits": {"cpu": "2"}})
        );
    }

    #[test]
    fn violations_are_refused_with_upstreams_messages() {
        let cases: &[(&str, Value, Value, Option<&str>)] = &[
            (
                "a request under the container minimum",
                json!([{"type": "Container", "min": {"cpu": "100m"}}]),
                json!({"requests": {"cpu": "50m"}}),
                Some(
                    "pods \"x\" is forbidden: minimum cpu usage per Container is 100m, but request is 50m",
                ),
            ),
            (
                "no request under a minimum",
                json!([{"type": "Container", "min": {"cpu": "100m"}}]),
                json!({}),
                Some(
                    "pods \"x\" is forbidden: minimum cpu usage per Container is 100m.  No request is specified",
                ),
            ),
            (
                "a limit over the maximum",
                json!([{"type": "Container", "max": {"memory": "1Gi"}}]),
                json!({"limits": {"memory": "2Gi"}}),
                Some(
                    "pods \"x\" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi",
                ),
            ),
            (
                "a ratio over the maximum",
                json!([{"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]),
                json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "300m"}}),
                Some(
                    "pods \"x\" is forbidden: cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000",
                ),
            ),
            (
                "the pod's total over the pod maximum",
                json!([{"type": "Pod", "max": {"cpu": "1"}}]),
                json!({"requests": {"cpu": "500m"}, "limits": {"cpu": "1500m"}}),
                Some("pods \"x\" is forbidden: maximum cpu usage per Pod is 1, but limit is 1500m"),
            ),
            (
                "two violations are listed together",
                json!([{"type": "Container", "min": {"cpu": "100m", "memory": "1Gi"}}]),
                json!({"requests": {"cpu": "50m", "memory": "1Mi"}}),
                Some(
                    "pods \"x\" is forbidden: [minimum cpu usage per Container is 100m, but request is 50m, minimum memory usage per Container is 1Gi, but request is 1Mi]",
                ),
            ),
            (
                "within bounds passes",
                json!([{"type": "Container", "min": {"cpu": "0.1"}, "max": {"cpu": "1"}}]),
                json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "1000m"}}),
                None,
            ),
        ];
        for (case, limits, resources, message) in cases {
            let got = LimitRanger.validate(
                &create("", "pods", "ns"),
                Some(&pod(resources.clone())),
                None,
                &cluster(limits.clone()),
            );
            assert_eq!(got.err().map(|e| e.message).as_deref(), *message, "{case}");
        }
    }

    #[test]
    fn claims_are_bounded_by_their_items() {
        let cluster =
            cluster(json!([{"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}]));
        let claim = json!({"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": "5Gi"}}}});
        let got = LimitRanger.validate(
            &create("", "persistentvolumeclaims", "ns"),
            Some(&claim),
            None,
            &cluster,
        );
        assert_eq!(
            got.unwrap_err().message,
            "persistentvolumeclaims \"c\" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 5Gi"
        );
    }
}
