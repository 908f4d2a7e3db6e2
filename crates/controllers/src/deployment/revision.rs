//! The annotations a Deployment and its ReplicaSets carry (upstream's `deployment/util`):
//! revisions, the replica counts a set was sized for, and the template hash that names a set.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;

/// The revision of a Deployment and of each of its ReplicaSets.
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// The revisions a ReplicaSet had before it was rolled back to.
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the set was last sized.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus surge when the set was last sized.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// The label that tells a Deployment's ReplicaSets (and their pods) apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// How long the revision history annotation may grow.
const REVISION_HISTORY_LIMIT_CHARS: usize = 2000;

/// Annotations of a Deployment never copied to its sets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// A set's revision (0 when it has none).
pub fn revision(rs: &ReplicaSet) -> i64 {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// An integer annotation of a set.
pub fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    rs.metadata.annotations.as_ref()?.get(key)?.parse().ok()
}

/// Sets the replica annotations; answers whether they changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (key, value) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let value = value.to_string();
        if annotations.get(key) != Some(&value) {
            annotations.insert(key.to_string(), value);
            changed = true;
        }
    }
    changed
}

/// Copies the Deployment's annotations to its new set and gives the set `new_revision`,
/// keeping the revisions it had in its history when it is rolled back to. Answers whether
/// the set changed. A set about to be made also gets its replica annotations.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
    max_surge: i32,
) -> bool {
    let mut changed = false;
    let annotations = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (key, value) in d.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&key.as_str()) {
            continue;
        }
        if annotations.get(key) != Some(value) {
            annotations.insert(key.clone(), value.clone());
            changed = true;
        }
    }
    let old = annotations.get(REVISION).cloned();
    let old_revision: i64 = old.as_deref().and_then(|r| r.parse().ok()).unwrap_or(0);
    if old_revision < new_revision {
        annotations.insert(REVISION.to_string(), new_revision.to_string());
        changed = true;
        if let Some(old) = old {
            let history = annotations.get(REVISION_HISTORY).cloned().unwrap_or_default();
            let mut revisions: Vec<&str> = history.split(',').filter(|r| !r.is_empty()).collect();
            revisions.push(&old);
            while revisions.join(",").len() > REVISION_HISTORY_LIMIT_CHARS && revisions.len() > 1 {
                revisions.remove(0);
            }
            annotations.insert(REVISION_HISTORY.to_string(), revisions.join(","));
        }
    }
    if !exists {
        let replicas = replicas_of(d);
        changed |= set_replicas_annotations(rs, replicas, replicas + max_surge);
    }
    changed
}

/// The Deployment's `spec.replicas` (1 when unset).
pub fn replicas_of(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// The template hash of `template` (with the collision count folded in, when set), as
/// upstream spells it: a 32-bit FNV-1a of the template, in the safe alphabet of generated
/// names.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(&semantic(template)).unwrap_or_default();
    if let Some(count) = collision_count {
        bytes.extend_from_slice(&count.to_le_bytes());
    }
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    safe_encode(&hash.to_string())
}

/// Upstream's `rand.SafeEncodeString`: each character mapped into an alphabet without
/// vowels or look-alikes, so that no word or confusable name is spelled.
fn safe_encode(s: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes().map(|b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()])).collect()
}

/// Whether two templates are equal but for the template hash label, as upstream compares
/// them (`Semantic.DeepEqual` of Go structs): an empty list or object equals an absent one,
/// and so does the zero value of a field Go keeps without a pointer (`stdin: false`), which
/// clients differ in sending. A zero that means something (`runAsUser: 0`,
/// `automountServiceAccountToken: false`) is kept.
pub fn equal_ignoring_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let strip = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH);
        }
        semantic(&t)
    };
    strip(a) == strip(b)
}

/// The template as JSON without zero values.
fn semantic(template: &PodTemplateSpec) -> serde_json::Value {
    let mut value = serde_json::to_value(template).unwrap_or_default();
    drop_zeros(&mut value);
    value
}

/// Fields of a pod template that Go holds without a pointer, so that their zero value is the
/// same as their absence.
const PLAIN_FIELDS: &[&str] = &[
    "generation",
    "stdin",
    "stdinOnce",
    "tty",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "readOnly",
    "hostPort",
    "subPath",
    "subPathExpr",
];

/// Removes members that are absent in Go's eyes (`null`, `[]`, `{}`, and the zero value of a
/// [`PLAIN_FIELDS`] member), deepest first; answers whether `value` itself is empty.
fn drop_zeros(value: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::Null => true,
        Value::Array(items) => {
            for item in items.iter_mut() {
                drop_zeros(item);
            }
            items.is_empty()
        }
        Value::Object(members) => {
            members.retain(|key, v| {
                let plain_zero = PLAIN_FIELDS.contains(&key.as_str())
                    && matches!(v, Value::Bool(false) | Value::String(_) | Value::Number(_))
                    && (v == &Value::Bool(false)
                        || v.as_str() == Some("")
                        || v.as_f64() == Some(0.0));
                !plain_zero && !drop_zeros(v)
            });
            members.is_empty()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn template(image: &str, hash: Option<&str>) -> PodTemplateSpec {
        let mut labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        if let Some(h) = hash {
            labels.insert(POD_TEMPLATE_HASH.into(), h.into());
        }
        PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
            spec: Some(k8s_openapi::api::core::v1::PodSpec {
                containers: vec![k8s_openapi::api::core::v1::Container {
                    name: "c".into(),
                    image: Some(image.into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn hashes_are_stable_and_change_with_the_template_and_collisions() {
        let a = template("nginx:1", None);
        assert_eq!(template_hash(&a, None), template_hash(&a, None));
        assert_ne!(template_hash(&a, None), template_hash(&template("nginx:2", None), None));
        assert_ne!(template_hash(&a, None), template_hash(&a, Some(1)));
        assert!(
            template_hash(&a, None).bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
        );
    }

    #[test]
    fn templates_compare_without_the_hash_label() {
        assert!(equal_ignoring_hash(&template("nginx:1", Some("abc")), &template("nginx:1", None)));
        let mut explicit = template("nginx:1", None);
        if let Some(c) = explicit.spec.as_mut().and_then(|s| s.containers.first_mut()) {
            c.stdin = Some(false);
        }
        assert!(equal_ignoring_hash(&explicit, &template("nginx:1", Some("abc"))));
        assert!(!equal_ignoring_hash(
            &template("nginx:1", Some("abc")),
            &template("nginx:2", None)
        ));
    }

    #[test]
    fn a_rolled_back_set_keeps_its_old_revisions() {
        let d = Deployment {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([
                    ("team".to_string(), "a".to_string()),
                    (REVISION.to_string(), "2".to_string()),
                ])),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                annotations: Some(BTreeMap::from([(REVISION.to_string(), "1".to_string())])),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(set_new_replica_set_annotations(&d, &mut rs, 3, true, 1));
        let a = rs.metadata.annotations.unwrap_or_default();
        assert_eq!(a.get(REVISION).map(String::as_str), Some("3"));
        assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("1"));
        assert_eq!(a.get("team").map(String::as_str), Some("a"));
    }
}
