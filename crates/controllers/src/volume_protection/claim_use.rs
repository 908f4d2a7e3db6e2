//! Which pods use a claim, as the PVC protection controller decides it.

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};

/// Whether `pod` uses `claim`, as upstream decides it: only a scheduled pod counts (a node
/// agent does not start a pod whose claim is being deleted); it uses the claim when a volume
/// names it, or when one of its generic ephemeral volumes is the claim (named
/// `POD-VOLUME` and controlled by the pod) and the pod is not shut down.
pub fn pod_uses(pod: &Pod, claim: &PersistentVolumeClaim) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    if spec.node_name.as_deref().unwrap_or_default().is_empty() {
        return false;
    }
    let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    spec.volumes.iter().flatten().any(|volume| {
        if volume.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == claim_name) {
            return true;
        }
        volume.ephemeral.is_some()
            && !shut_down(pod)
            && ephemeral_claim_name(pod_name, &volume.name) == claim_name
            && controlled_by(claim, pod)
    })
}

/// The claim names of `pod`'s volumes: those its claim volumes name and those of its generic
/// ephemeral volumes.
pub fn claim_names(pod: &Pod) -> Vec<String> {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    volumes
        .into_iter()
        .flatten()
        .filter_map(|volume| match (&volume.persistent_volume_claim, &volume.ephemeral) {
            (Some(claim), _) => Some(claim.claim_name.clone()),
            (None, Some(_)) => Some(ephemeral_claim_name(pod_name, &volume.name)),
            (None, None) => None,
        })
        .collect()
}

/// The name of the claim of a generic ephemeral volume (upstream's `ephemeral.VolumeClaimName`).
fn ephemeral_claim_name(pod: &str, volume: &str) -> String {
    format!("{pod}-{volume}")
}

/// Whether `pod` is `claim`'s controller (an ephemeral volume's claim is the pod's own).
fn controlled_by(claim: &PersistentVolumeClaim, pod: &Pod) -> bool {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && owner.uid == uid)
}

/// Whether the node agent is done with `pod`: it was deleted with no grace left (force
/// deleted, or its containers are gone), or it ended (`Succeeded`, `Failed`).
fn shut_down(pod: &Pod) -> bool {
    let meta = &pod.metadata;
    if meta.deletion_timestamp.is_some() && meta.deletion_grace_period_seconds == Some(0) {
        return true;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        EphemeralVolumeSource, PersistentVolumeClaimVolumeSource, PodSpec, PodStatus, Volume,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn claim(name: &str) -> PersistentVolumeClaim {
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
            ..PersistentVolumeClaim::default()
        }
    }

    fn pod(node: &str, volumes: Vec<Volume>, phase: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("pod-uid".into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: (!node.is_empty()).then(|| node.to_string()),
                volumes: Some(volumes),
                ..PodSpec::default()
            }),
            status: Some(PodStatus { phase: Some(phase.into()), ..PodStatus::default() }),
        }
    }

    fn claim_volume(claim: &str) -> Volume {
        Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                read_only: None,
            }),
            ..Volume::default()
        }
    }

    fn ephemeral_volume(name: &str) -> Volume {
        Volume {
            name: name.into(),
            ephemeral: Some(EphemeralVolumeSource::default()),
            ..Volume::default()
        }
    }

    #[test]
    fn only_scheduled_pods_that_name_the_claim_use_it() {
        let c = claim("data-0");
        assert!(pod_uses(&pod("node-1", vec![claim_volume("data-0")], "Running"), &c));
        // A finished pod still holds a named claim until it is deleted, as upstream's.
        assert!(pod_uses(&pod("node-1", vec![claim_volume("data-0")], "Succeeded"), &c));
        assert!(!pod_uses(&pod("", vec![claim_volume("data-0")], "Pending"), &c));
        assert!(!pod_uses(&pod("node-1", vec![claim_volume("other")], "Running"), &c));
        assert_eq!(claim_names(&pod("", vec![claim_volume("data-0")], "")), ["data-0"]);
    }

    #[test]
    fn an_ephemeral_claim_is_used_by_its_own_running_pod() {
        let mut c = claim("web-scratch");
        let running = pod("node-1", vec![ephemeral_volume("scratch")], "Running");
        assert_eq!(claim_names(&running), ["web-scratch"]);
        // Not the pod's own claim: a claim of the same name made by someone else.
        assert!(!pod_uses(&running, &c));
        c.metadata.owner_references = Some(vec![OwnerReference {
            uid: "pod-uid".into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        assert!(pod_uses(&running, &c));
        let finished = pod("node-1", vec![ephemeral_volume("scratch")], "Failed");
        assert!(!pod_uses(&finished, &c));
        let mut forced = running.clone();
        forced.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        forced.metadata.deletion_grace_period_seconds = Some(0);
        assert!(!pod_uses(&forced, &c));
    }
}
