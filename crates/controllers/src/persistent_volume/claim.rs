//! What a claim's sync does, as upstream's `syncClaim` decides it (`pv_controller.go`):
//! `syncUnboundClaim` for a claim whose binding never completed, `syncBoundClaim` for one
//! annotated `pv.kubernetes.io/bind-completed`. Pure: the caller resolves the volume the claim
//! names, snapshots volumes and classes, and carries the answer out (`mod.rs`).
//!
//! An unbound claim naming no volume gets the best match (`matching.rs`); finding none, a
//! claim without a class gets the default class, one whose class binds on first consumer
//! waits for the scheduler, one whose class names a provisioner waits for it (dynamic
//! provisioning is external: krust provisions nothing itself), and one without a class stays
//! `Pending`. A claim naming a volume is bound to it when the volume is free and satisfies
//! it, or when the volume is already reserved for it (a binding the scheduler or the user
//! started). A bound claim whose volume is gone or bound elsewhere is `Lost`.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;

use super::matching::{self, InvalidSelector};
use super::objects::{
    ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_SELECTED_NODE, claim_class, claim_has_class,
    claim_key, default_class, has_annotation, is_volume_bound_to_claim, uid, volume_name,
};
use super::{Note, reason};

/// What a claim's sync reads besides the claim.
pub struct Inputs<'s, 'a> {
    /// The volume the claim names, when it names one that exists.
    pub named: Option<&'a PersistentVolume>,
    /// Every volume (searched for a claim naming none).
    pub volumes: &'s [&'a PersistentVolume],
    /// Every class.
    pub classes: &'s [&'a StorageClass],
    /// The pods using the claim that are not scheduled yet, by name, sorted.
    pub unscheduled_pods: &'s [String],
}

/// What to do for a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum Action<'a> {
    /// Bind the claim and the volume: the volume's `claimRef`, its phase, the claim's
    /// `volumeName` and annotations, its status, each written only if it changes.
    Bind(&'a PersistentVolume),
    /// Record the event, if any, and report the claim `Pending` (its capacity and access modes
    /// cleared).
    Pending(Option<Note>),
    /// Report the claim `Lost`, with the event when its phase changes.
    Lost(Note),
    /// Give the claim, which names no class, the default class (upstream's retroactive
    /// default).
    AssignClass(String),
    /// Annotate the claim for the external provisioner named, then record that it waits for it.
    ExternalProvisioning(String),
    /// Record the event only.
    Event(Note),
    /// Record the event; the claim is in a state that should never be, the sync fails.
    Invalid(Note),
}

/// Why a claim cannot be synced now (retried).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The claim's selector cannot be read.
    #[error(transparent)]
    Selector(#[from] InvalidSelector),
    /// The claim's class does not say how it binds.
    #[error("VolumeBindingMode not set for StorageClass {0:?}")]
    NoBindingMode(String),
}

/// The binding mode that delays binding until a pod using the claim is scheduled.
pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";

/// Whether `claim` binds on first consumer: its class exists and says so (upstream's
/// `IsDelayBindingMode`; a missing class binds at once).
pub fn delays_binding(
    claim: &PersistentVolumeClaim,
    classes: &[&StorageClass],
) -> Result<bool, Refusal> {
    let name = claim_class(claim);
    if name.is_empty() {
        return Ok(false);
    }
    let Some(class) = classes.iter().find(|c| c.metadata.name.as_deref() == Some(name)) else {
        return Ok(false);
    };
    match class.volume_binding_mode.as_deref() {
        Some(mode) => Ok(mode == WAIT_FOR_FIRST_CONSUMER),
        None => Err(Refusal::NoBindingMode(name.to_string())),
    }
}

/// What to do for `claim`.
pub fn sync<'a>(
    claim: &PersistentVolumeClaim,
    inputs: &Inputs<'_, 'a>,
) -> Result<Action<'a>, Refusal> {
    if has_annotation(&claim.metadata, ANN_BIND_COMPLETED) {
        Ok(sync_bound(claim, inputs.named))
    } else {
        sync_unbound(claim, inputs)
    }
}

/// Upstream's `syncUnboundClaim`.
fn sync_unbound<'a>(
    claim: &PersistentVolumeClaim,
    inputs: &Inputs<'_, 'a>,
) -> Result<Action<'a>, Refusal> {
    let wanted = volume_name(claim);
    if wanted.is_empty() {
        let delay = delays_binding(claim, inputs.classes)?;
        if let Some(volume) =
            matching::find_best_match(claim, inputs.volumes.iter().copied(), delay)?
        {
            return Ok(Action::Bind(volume));
        }
        if !claim_has_class(claim)
            && let Some(name) =
                default_class(inputs.classes.iter().copied()).and_then(|c| c.metadata.name.clone())
        {
            return Ok(Action::AssignClass(name));
        }
        let class = claim_class(claim);
        if delay && !has_annotation(&claim.metadata, ANN_SELECTED_NODE) {
            return Ok(Action::Pending(Some(waiting_for_consumer(inputs.unscheduled_pods))));
        }
        if !class.is_empty() {
            return Ok(provision(class, inputs.classes));
        }
        return Ok(Action::Pending(Some(Note::normal(
            reason::FAILED_BINDING,
            "no persistent volumes available for this claim and no storage class is set".into(),
        ))));
    }
    let Some(volume) = inputs.named else {
        // It may be created later.
        return Ok(Action::Pending(None));
    };
    let name = volume.metadata.name.as_deref().unwrap_or_default();
    if volume.spec.as_ref().is_none_or(|s| s.claim_ref.is_none()) {
        return Ok(match matching::check_satisfies(volume, claim) {
            Ok(()) => Action::Bind(volume),
            Err(mismatch) => Action::Pending(Some(Note::warning(
                reason::VOLUME_MISMATCH,
                format!("Cannot bind to requested volume {name:?}: {mismatch}"),
            ))),
        });
    }
    if is_volume_bound_to_claim(volume, claim) {
        // Reserved for this claim (by the user or the scheduler): finish the binding.
        return Ok(Action::Bind(volume));
    }
    let note = Note::warning(
        reason::FAILED_BINDING,
        format!("volume {name:?} already bound to a different claim."),
    );
    if has_annotation(&claim.metadata, ANN_BOUND_BY_CONTROLLER) {
        // Someone removed the claim's bind-completed annotation.
        Ok(Action::Invalid(note))
    } else {
        Ok(Action::Pending(Some(note)))
    }
}

/// Upstream's `syncBoundClaim`.
fn sync_bound<'a>(
    claim: &PersistentVolumeClaim,
    named: Option<&'a PersistentVolume>,
) -> Action<'a> {
    if volume_name(claim).is_empty() {
        return Action::Lost(Note::warning(
            reason::CLAIM_LOST,
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!"
                .into(),
        ));
    }
    let Some(volume) = named else {
        return Action::Lost(Note::warning(
            reason::CLAIM_LOST,
            "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
        ));
    };
    match volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
        // Unbound meanwhile, or the volume's update is not seen yet: bind it again.
        None => Action::Bind(volume),
        // All is well; binding again only fills what is missing.
        Some(r) if r.uid.as_deref().unwrap_or_default() == uid(claim) => Action::Bind(volume),
        Some(_) => Action::Lost(Note::warning(
            reason::CLAIM_MISBOUND,
            "Two claims are bound to the same volume, this one is bound incorrectly".into(),
        )),
    }
}

/// The event of a claim waiting for its first consumer (or for its consumers' scheduling).
fn waiting_for_consumer(unscheduled: &[String]) -> Note {
    match unscheduled {
        [] => Note::normal(
            reason::WAIT_FOR_FIRST_CONSUMER,
            "waiting for first consumer to be created before binding".into(),
        ),
        [pod] => Note::normal(
            reason::WAIT_FOR_POD_SCHEDULED,
            format!("waiting for pod {pod} to be scheduled"),
        ),
        pods => Note::normal(
            reason::WAIT_FOR_POD_SCHEDULED,
            format!("waiting for pods {} to be scheduled", pods.join(",")),
        ),
    }
}

/// Upstream's `provisionClaim` without in-tree plugins: a missing class or an in-tree
/// provisioner (`kubernetes.io/...`, `kubernetes.io/no-provisioner` among them) is a
/// provisioning failure; any other provisioner is external and waited for.
fn provision<'a>(class: &str, classes: &[&StorageClass]) -> Action<'a> {
    let Some(found) = classes.iter().find(|c| c.metadata.name.as_deref() == Some(class)) else {
        return Action::Event(Note::warning(
            reason::PROVISIONING_FAILED,
            format!("storageclass.storage.k8s.io {class:?} not found"),
        ));
    };
    let provisioner = found.provisioner.as_str();
    if provisioner.starts_with("kubernetes.io/") {
        return Action::Event(Note::warning(
            reason::PROVISIONING_FAILED,
            format!("no volume plugin matched name: {provisioner}"),
        ));
    }
    Action::ExternalProvisioning(provisioner.to_string())
}

/// The event recorded once an external provisioner is asked (upstream's words).
pub fn external_provisioning(provisioner: &str) -> Note {
    Note::normal(
        reason::EXTERNAL_PROVISIONING,
        format!(
            "Waiting for a volume to be created either by the external provisioner '{provisioner}' \
             or manually by the system administrator. If volume creation is delayed, please verify \
             that the provisioner is running and correctly registered."
        ),
    )
}

/// The pods of `pods` that use `claim` (directly or through an ephemeral volume, whose claim
/// is named after the pod and the volume), have not finished and are not scheduled, by name,
/// sorted (upstream's `findNonScheduledPodsByPVC`).
pub fn unscheduled_pods<'p>(
    claim: &PersistentVolumeClaim,
    pods: impl IntoIterator<Item = &'p Pod>,
) -> Vec<String> {
    let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let mut names: Vec<String> = pods
        .into_iter()
        .filter(|p| p.metadata.namespace.as_deref().unwrap_or_default() == namespace)
        .filter(|p| {
            p.spec.as_ref().is_some_and(|s| s.node_name.as_deref().unwrap_or_default().is_empty())
        })
        .filter(|p| !terminated(p))
        .filter(|p| uses_claim(p, name))
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}

/// Whether `pod` uses the claim `name`.
fn uses_claim(pod: &Pod, name: &str) -> bool {
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).any(|v| {
        v.persistent_volume_claim.as_ref().is_some_and(|c| c.claim_name == name)
            || (v.ephemeral.is_some() && format!("{pod_name}-{}", v.name) == name)
    })
}

/// Whether `pod` finished, or is being deleted with no container running (upstream's
/// `IsPodTerminated`).
fn terminated(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    if matches!(status.and_then(|s| s.phase.as_deref()), Some("Failed" | "Succeeded")) {
        return true;
    }
    pod.metadata.deletion_timestamp.is_some()
        && status
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .all(|c| c.state.as_ref().is_none_or(|st| st.running.is_none()))
}

/// For logs: the claim and whether its binding completed.
pub fn describe(claim: &PersistentVolumeClaim) -> String {
    let completed = has_annotation(&claim.metadata, ANN_BIND_COMPLETED);
    format!("{} (volume {:?}, bind completed: {completed})", claim_key(claim), volume_name(claim))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persistent_volume::fixtures::*;

    fn run<'a>(
        claim: &PersistentVolumeClaim,
        volumes: &'a [PersistentVolume],
        classes: &'a [StorageClass],
        pods: &'a [String],
    ) -> Result<Action<'a>, Refusal> {
        let volume_refs: Vec<&PersistentVolume> = volumes.iter().collect();
        let class_refs: Vec<&StorageClass> = classes.iter().collect();
        let named = volumes.iter().find(|v| v.metadata.name.as_deref() == Some(volume_name(claim)));
        let inputs =
            Inputs { named, volumes: &volume_refs, classes: &class_refs, unscheduled_pods: pods };
        sync(claim, &inputs)
    }

    /// What a case expects, by the names of things rather than borrowed objects.
    #[derive(Debug, PartialEq)]
    enum Want {
        Bind(&'static str),
        Pending(Option<(&'static str, &'static str)>),
        Lost(&'static str, &'static str),
        AssignClass(&'static str),
        External(&'static str),
        Event(&'static str, &'static str),
        Invalid(&'static str),
    }

    fn seen(action: &Action<'_>) -> String {
        match action {
            Action::Bind(v) => format!("Bind({})", v.metadata.name.as_deref().unwrap_or_default()),
            Action::Pending(None) => "Pending(None)".into(),
            Action::Pending(Some(n)) => format!("Pending({}: {})", n.reason, n.message),
            Action::Lost(n) => format!("Lost({}: {})", n.reason, n.message),
            Action::AssignClass(c) => format!("AssignClass({c})"),
            Action::ExternalProvisioning(p) => format!("External({p})"),
            Action::Event(n) => format!("Event({}: {})", n.reason, n.message),
            Action::Invalid(n) => format!("Invalid({}: {})", n.reason, n.message),
        }
    }

    fn expected(want: &Want) -> String {
        match want {
            Want::Bind(v) => format!("Bind({v})"),
            Want::Pending(None) => "Pending(None)".into(),
            Want::Pending(Some((r, m))) => format!("Pending({r}: {m})"),
            Want::Lost(r, m) => format!("Lost({r}: {m})"),
            Want::AssignClass(c) => format!("AssignClass({c})"),
            Want::External(p) => format!("External({p})"),
            Want::Event(r, m) => format!("Event({r}: {m})"),
            Want::Invalid(m) => format!("Invalid(FailedBinding: {m})"),
        }
    }

    #[test]
    fn unbound_claims() {
        let wffc = storage_class("local", "kubernetes.io/no-provisioner", WAIT_FOR_FIRST_CONSUMER);
        let immediate_external = storage_class("nfs", "example.com/nfs", "Immediate");
        let in_tree = storage_class("intree", "kubernetes.io/no-provisioner", "Immediate");
        let no_mode =
            StorageClass { volume_binding_mode: None, ..storage_class("odd", "x.io/y", "") };
        // (case, claim, volumes, classes, pods waiting for scheduling, what is done)
        type Case = (
            &'static str,
            PersistentVolumeClaim,
            Vec<PersistentVolume>,
            Vec<StorageClass>,
            Vec<String>,
            Want,
        );
        let cases: Vec<Case> = vec![
            (
                "binds the smallest volume that fits",
                claim("c", "1Gi", &[RWO]),
                vec![volume("big", "5Gi", &[RWO]), volume("small", "2Gi", &[RWO])],
                vec![],
                vec![],
                Want::Bind("small"),
            ),
            (
                "no volume and no class: pending with upstream's event",
                claim("c", "1Gi", &[RWO]),
                vec![volume("tiny", "1Mi", &[RWO])],
                vec![],
                vec![],
                Want::Pending(Some((
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                ))),
            ),
            (
                "the empty class is no class",
                of_class(claim("c", "1Gi", &[RWO]), ""),
                vec![],
                vec![as_default(storage_class("std", "x.io/y", "Immediate"), 1)],
                vec![],
                Want::Pending(Some((
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                ))),
            ),
            (
                "no class named: the newest default class is given",
                claim("c", "1Gi", &[RWO]),
                vec![],
                vec![
                    as_default(storage_class("old", "x.io/y", "Immediate"), 1),
                    as_default(storage_class("new", "x.io/y", "Immediate"), 2),
                    storage_class("other", "x.io/y", "Immediate"),
                ],
                vec![],
                Want::AssignClass("new"),
            ),
            (
                "a volume is bound before any default class is given",
                claim("c", "1Gi", &[RWO]),
                vec![volume("v", "1Gi", &[RWO])],
                vec![as_default(storage_class("std", "x.io/y", "Immediate"), 1)],
                vec![],
                Want::Bind("v"),
            ),
            (
                "waiting for the first consumer",
                of_class(claim("c", "1Gi", &[RWO]), "local"),
                vec![in_class(volume("v", "1Gi", &[RWO]), "local")],
                vec![wffc.clone()],
                vec![],
                Want::Pending(Some((
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                ))),
            ),
            (
                "waiting for its pod to be scheduled",
                of_class(claim("c", "1Gi", &[RWO]), "local"),
                vec![],
                vec![wffc.clone()],
                vec!["web-0".into()],
                Want::Pending(Some((
                    "WaitForPodScheduled",
                    "waiting for pod web-0 to be scheduled",
                ))),
            ),
            (
                "waiting for its pods to be scheduled",
                of_class(claim("c", "1Gi", &[RWO]), "local"),
                vec![],
                vec![wffc.clone()],
                vec!["a".into(), "b".into()],
                Want::Pending(Some((
                    "WaitForPodScheduled",
                    "waiting for pods a,b to be scheduled",
                ))),
            ),
            (
                "the scheduler reserved a volume for it: bind",
                of_class(claim("c", "1Gi", &[RWO]), "local"),
                vec![reserved(in_class(volume("v", "1Gi", &[RWO]), "local"), "c", "uid-c")],
                vec![wffc.clone()],
                vec![],
                Want::Bind("v"),
            ),
            (
                "the scheduler chose a node for provisioning by an in-tree plugin",
                annotated(
                    of_class(claim("c", "1Gi", &[RWO]), "local"),
                    "volume.kubernetes.io/selected-node",
                    "n1",
                ),
                vec![],
                vec![wffc.clone()],
                vec![],
                Want::Event(
                    "ProvisioningFailed",
                    "no volume plugin matched name: kubernetes.io/no-provisioner",
                ),
            ),
            (
                "an external provisioner is waited for",
                of_class(claim("c", "1Gi", &[RWO]), "nfs"),
                vec![],
                vec![immediate_external],
                vec![],
                Want::External("example.com/nfs"),
            ),
            (
                "an in-tree provisioner krust lacks",
                of_class(claim("c", "1Gi", &[RWO]), "intree"),
                vec![],
                vec![in_tree],
                vec![],
                Want::Event(
                    "ProvisioningFailed",
                    "no volume plugin matched name: kubernetes.io/no-provisioner",
                ),
            ),
            (
                "a class that does not exist",
                of_class(claim("c", "1Gi", &[RWO]), "ghost"),
                vec![],
                vec![],
                vec![],
                Want::Event(
                    "ProvisioningFailed",
                    "storageclass.storage.k8s.io \"ghost\" not found",
                ),
            ),
            (
                "a volume of a class that does not exist still binds",
                of_class(claim("c", "1Gi", &[RWO]), "ghost"),
                vec![in_class(volume("v", "1Gi", &[RWO]), "ghost")],
                vec![],
                vec![],
                Want::Bind("v"),
            ),
            (
                "a named volume that does not exist yet",
                naming(claim("c", "1Gi", &[RWO]), "later"),
                vec![volume("other", "1Gi", &[RWO])],
                vec![],
                vec![],
                Want::Pending(None),
            ),
            (
                "a named free volume that satisfies it",
                naming(claim("c", "1Gi", &[RWO]), "mine"),
                vec![volume("smaller-but-unnamed", "1Gi", &[RWO]), volume("mine", "4Gi", &[RWO])],
                vec![],
                vec![],
                Want::Bind("mine"),
            ),
            (
                "a named free volume too small",
                naming(claim("c", "2Gi", &[RWO]), "mine"),
                vec![volume("mine", "1Gi", &[RWO])],
                vec![],
                vec![],
                Want::Pending(Some((
                    "VolumeMismatch",
                    "Cannot bind to requested volume \"mine\": requested PV is too small",
                ))),
            ),
            (
                "a named volume of another class",
                naming(claim("c", "1Gi", &[RWO]), "mine"),
                vec![in_class(volume("mine", "1Gi", &[RWO]), "fast")],
                vec![],
                vec![],
                Want::Pending(Some((
                    "VolumeMismatch",
                    "Cannot bind to requested volume \"mine\": storageClassName does not match",
                ))),
            ),
            (
                "a named volume reserved for it",
                naming(claim("c", "1Gi", &[RWO]), "mine"),
                vec![reserved(volume("mine", "1Gi", &[RWO]), "c", "")],
                vec![],
                vec![],
                Want::Bind("mine"),
            ),
            (
                "a named volume bound to another claim",
                naming(claim("c", "1Gi", &[RWO]), "theirs"),
                vec![reserved(volume("theirs", "1Gi", &[RWO]), "other", "uid-other")],
                vec![],
                vec![],
                Want::Pending(Some((
                    "FailedBinding",
                    "volume \"theirs\" already bound to a different claim.",
                ))),
            ),
            (
                "bound by the controller to a volume bound elsewhere: should never happen",
                annotated(
                    naming(claim("c", "1Gi", &[RWO]), "theirs"),
                    "pv.kubernetes.io/bound-by-controller",
                    "yes",
                ),
                vec![reserved(volume("theirs", "1Gi", &[RWO]), "other", "uid-other")],
                vec![],
                vec![],
                Want::Invalid("volume \"theirs\" already bound to a different claim."),
            ),
        ];
        for (case, claim, volumes, classes, pods, want) in cases {
            let got = run(&claim, &volumes, &classes, &pods).expect(case);
            assert_eq!(seen(&got), expected(&want), "{case}");
        }
        let odd = of_class(claim("c", "1Gi", &[RWO]), "odd");
        assert_eq!(
            run(&odd, &[], &[no_mode], &[]).expect_err("refused"),
            Refusal::NoBindingMode("odd".into())
        );
    }

    #[test]
    fn bound_claims() {
        let lost = "Bound claim has lost its PersistentVolume. Data on the volume is lost!";
        let cases: Vec<(&str, PersistentVolumeClaim, Vec<PersistentVolume>, Want)> = vec![
            (
                "bound both ways: bind again fills what is missing",
                bound(claim("c", "1Gi", &[RWO]), "v"),
                vec![reserved(volume("v", "1Gi", &[RWO]), "c", "uid-c")],
                Want::Bind("v"),
            ),
            (
                "the volume came unbound: bind it again",
                bound(claim("c", "1Gi", &[RWO]), "v"),
                vec![volume("v", "1Gi", &[RWO])],
                Want::Bind("v"),
            ),
            (
                "the volume is gone",
                bound(claim("c", "1Gi", &[RWO]), "v"),
                vec![],
                Want::Lost("ClaimLost", lost),
            ),
            (
                "the claim lost its volume name",
                annotated(claim("c", "1Gi", &[RWO]), "pv.kubernetes.io/bind-completed", "yes"),
                vec![volume("v", "1Gi", &[RWO])],
                Want::Lost(
                    "ClaimLost",
                    "Bound claim has lost reference to PersistentVolume. Data on the volume is \
                     lost!",
                ),
            ),
            (
                "the volume is bound to another claim",
                bound(claim("c", "1Gi", &[RWO]), "v"),
                vec![reserved(volume("v", "1Gi", &[RWO]), "c", "uid-earlier")],
                Want::Lost(
                    "ClaimMisbound",
                    "Two claims are bound to the same volume, this one is bound incorrectly",
                ),
            ),
        ];
        for (case, claim, volumes, want) in cases {
            let got = run(&claim, &volumes, &[], &[]).expect(case);
            assert_eq!(seen(&got), expected(&want), "{case}");
        }
    }

    #[test]
    fn external_provisioning_is_worded_as_upstream() {
        assert_eq!(
            external_provisioning("example.com/nfs").message,
            "Waiting for a volume to be created either by the external provisioner \
             'example.com/nfs' or manually by the system administrator. If volume creation is \
             delayed, please verify that the provisioner is running and correctly registered."
        );
    }

    #[test]
    fn the_pods_waiting_for_the_claim() {
        use k8s_openapi::api::core::v1::{
            EphemeralVolumeSource, PersistentVolumeClaimVolumeSource, PodSpec, PodStatus, Volume,
        };
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let pod = |name: &str, node: Option<&str>, phase: &str, volume: Volume| Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                volumes: Some(vec![volume]),
                ..Default::default()
            }),
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
        };
        let claim_volume = |claim: &str| Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pods = [
            pod("b-waiting", None, "Pending", claim_volume("c")),
            pod("a-waiting", None, "Pending", claim_volume("c")),
            pod("scheduled", Some("n1"), "Pending", claim_volume("c")),
            pod("done", None, "Failed", claim_volume("c")),
            pod("other", None, "Pending", claim_volume("d")),
            // An ephemeral volume's claim is named `<pod>-<volume>`.
            pod(
                "web",
                None,
                "Pending",
                Volume {
                    name: "scratch".into(),
                    ephemeral: Some(EphemeralVolumeSource::default()),
                    ..Default::default()
                },
            ),
        ];
        assert_eq!(unscheduled_pods(&claim("c", "1Gi", &[RWO]), &pods), ["a-waiting", "b-waiting"]);
        assert_eq!(unscheduled_pods(&claim("web-scratch", "1Gi", &[RWO]), &pods), ["web"]);
    }
}
