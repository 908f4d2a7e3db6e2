//! Mirror pods: a static pod's copy in the API (upstream's `pkg/kubelet/pod/mirror_client.go`),
//! so that clients see it and its status. The copy carries `kubernetes.io/config.mirror` (the
//! static pod's hash) and is owned by the Node as its controller, which is all NodeRestriction
//! lets a node create. Pure: which pod mirrors which, what the mirror should look like, and
//! what to do about the one the API holds.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::manifest::CONFIG_HASH;

/// The annotation that makes a pod a mirror pod: the hash of its static pod.
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// A pod's full name: (namespace, name).
pub type FullName = (String, String);

/// The full name of `pod`.
pub fn full_name(pod: &Pod) -> FullName {
    (
        pod.metadata.namespace.clone().unwrap_or_else(|| "default".into()),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// Whether `pod` is a mirror pod (the agent never runs one: its static pod runs instead).
pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// The hash of a static pod (its `kubernetes.io/config.hash`).
pub fn hash(static_pod: &Pod) -> &str {
    static_pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_HASH))
        .map(String::as_str)
        .unwrap_or_default()
}

/// Whether `mirror` mirrors `static_pod`: the same full name, and the static pod's hash (as
/// upstream's `IsMirrorPodOf`).
pub fn is_mirror_of(mirror: &Pod, static_pod: &Pod) -> bool {
    full_name(mirror) == full_name(static_pod)
        && mirror
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_MIRROR))
            .map(String::as_str)
            == Some(hash(static_pod))
}

/// The mirror pod of `static_pod` on node `node` (whose Node object has `node_uid`): the
/// static pod with the mirror annotation, owned by the Node as its controller (without
/// `blockOwnerDeletion`, which NodeRestriction refuses), and without the uid, resource
/// version and status the API server gives it.
pub fn mirror_pod(static_pod: &Pod, node: &str, node_uid: &str) -> Pod {
    let mut mirror = static_pod.clone();
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    mirror.metadata.creation_timestamp = None;
    mirror
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(CONFIG_MIRROR.into(), hash(static_pod).to_string());
    mirror.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.to_string(),
        uid: node_uid.to_string(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    mirror.status = None;
    mirror
}

/// What to do about a static pod's mirror, given what the API holds under its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The mirror is current: report the static pod's status to it (its uid).
    Report(String),
    /// There is none: create it.
    Create,
    /// The pod under the name mirrors another version of the file, or is on its way out
    /// (someone deleted it): delete it at once (by its uid), then create the mirror anew.
    Replace(String),
}

/// What to do about `static_pod`'s mirror when the API holds `current` under its name (upstream's
/// `SyncPod`: a mirror being deleted or of another hash is deleted, a missing one created).
pub fn decide(static_pod: &Pod, current: Option<&Pod>) -> Action {
    let Some(current) = current else { return Action::Create };
    let uid = current.metadata.uid.clone().unwrap_or_default();
    if current.metadata.deletion_timestamp.is_some() || !is_mirror_of(current, static_pod) {
        Action::Replace(uid)
    } else {
        Action::Report(uid)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

    fn static_pod(hash: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web-n1".into()),
                namespace: Some("default".into()),
                uid: Some(hash.into()),
                annotations: Some(BTreeMap::from([
                    (CONFIG_HASH.into(), hash.into()),
                    ("kubernetes.io/config.source".into(), "file".into()),
                ])),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec { node_name: Some("n1".into()), ..PodSpec::default() }),
            status: Some(Default::default()),
        }
    }

    fn in_api(hash: &str, uid: &str) -> Pod {
        let mut m = mirror_pod(&static_pod(hash), "n1", "node-uid");
        m.metadata.uid = Some(uid.into());
        m
    }

    #[test]
    fn the_mirror_is_the_static_pod_annotated_and_owned_by_its_node() {
        let m = mirror_pod(&static_pod("abc"), "n1", "node-uid");
        assert_eq!(m.metadata.uid, None);
        assert_eq!(m.status, None);
        let annotations = m.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(annotations[CONFIG_MIRROR], "abc");
        assert_eq!(annotations[CONFIG_HASH], "abc");
        assert_eq!(annotations["kubernetes.io/config.source"], "file");
        let owners = m.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(owners.len(), 1);
        let owner = &owners[0];
        assert_eq!(
            (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str()),
            ("v1", "Node", "n1")
        );
        assert_eq!(owner.uid, "node-uid");
        assert_eq!((owner.controller, owner.block_owner_deletion), (Some(true), None));
        assert_eq!(m.spec, static_pod("abc").spec);
        assert!(is_mirror(&m) && !is_mirror(&static_pod("abc")));
        assert!(is_mirror_of(&m, &static_pod("abc")));
    }

    #[test]
    fn a_mirror_of_another_hash_or_name_is_not_this_pods() {
        let mut other_name = in_api("abc", "u1");
        other_name.metadata.name = Some("other-n1".into());
        assert!(!is_mirror_of(&other_name, &static_pod("abc")));
        assert!(!is_mirror_of(&in_api("old", "u1"), &static_pod("abc")));
    }

    #[test]
    fn what_to_do_about_the_mirror() {
        let pod = static_pod("abc");
        let mut deleting = in_api("abc", "u2");
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let cases = [
            ("none in the API is created", None, Action::Create),
            (
                "the current one gets the status",
                Some(in_api("abc", "u1")),
                Action::Report("u1".into()),
            ),
            (
                "one of an older file is replaced",
                Some(in_api("old", "u3")),
                Action::Replace("u3".into()),
            ),
            ("one being deleted is replaced at once", Some(deleting), Action::Replace("u2".into())),
        ];
        for (name, current, want) in cases {
            assert_eq!(decide(&pod, current.as_ref()), want, "{name}");
        }
    }
}
