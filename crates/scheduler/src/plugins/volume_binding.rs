//! VolumeBinding: a pod's PersistentVolumeClaims decide where it may run, as upstream's
//! plugin (`pkg/scheduler/framework/plugins/volumebinding`).
//!
//! - PreFilter: every claim must exist and not be going away; an unbound claim whose class
//!   binds at once (not `WaitForFirstConsumer`) is left to the volume binder, and the pod
//!   waits.
//! - Filter: a bound claim's volume must admit the node (its node affinity); each claim that
//!   waits for its first consumer needs an available volume the node can reach (the same
//!   choice as the binder's, [`krust_api::persistent_volume::find_matching`]), or a class
//!   whose provisioner can make one there.
//! - Reserve sets the chosen volumes aside (assumed), so that the next pods do not choose
//!   them; Unreserve gives them back.
//! - PreBind writes the choice: a chosen volume's `claimRef` (the binder then binds the
//!   claim to it), or the claim's `volume.kubernetes.io/selected-node` annotation for a
//!   provisioner; then waits until every claim is bound.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use krust_api::persistent_volume::{Search, claim_class, find_matching};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use crate::framework::labels::any_term_matches;
use crate::framework::{
    BindError, BindFuture, ClusterEvent, CycleState, NodeInfo, Plugin, PodInfo, Points, Reason,
    Rejection, Snapshot,
};

/// The plugin's name.
pub const NAME: &str = "VolumeBinding";

/// The annotation that tells a provisioner which node the scheduler chose.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";

/// The annotation a volume gets when the scheduler or binder, not its author, bound it.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";

/// The annotation the binder puts on a claim once its binding is complete.
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";

/// The provisioner of classes whose volumes are made by hand.
const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// How long PreBind waits for the claims to be bound (upstream's `bindTimeoutSeconds`).
const BIND_TIMEOUT: Duration = Duration::from_secs(600);

/// How often PreBind looks at the claims while it waits.
const BIND_POLL: Duration = Duration::from_millis(500);

/// The plugin, with the volumes it has set aside for pods being bound.
#[derive(Default)]
pub struct VolumeBinding {
    /// Volume name → the `namespace/name` of the claim it is set aside for.
    assumed: Mutex<HashMap<String, String>>,
}

/// What PreFilter found for a pod.
struct PodVolumes {
    /// Volumes its bound claims are bound to.
    bound: Vec<Arc<PersistentVolume>>,
    /// Whether a bound claim's volume does not exist.
    missing_volume: bool,
    /// Unbound claims that wait for their first consumer, with their class's provisioner
    /// and allowed topologies.
    delayed: Vec<Delayed>,
    /// Every volume, to choose from.
    volumes: Vec<Arc<PersistentVolume>>,
    /// Volumes set aside for other pods when the cycle began.
    assumed: HashMap<String, String>,
    /// What Filter chose, by node, for Reserve.
    chosen: Mutex<HashMap<String, Choice>>,
}

struct Delayed {
    claim: Arc<PersistentVolumeClaim>,
    key: String,
    provisioner: Option<String>,
    topologies: Vec<k8s_openapi::api::core::v1::TopologySelectorTerm>,
}

/// For one node: the volume chosen for each delayed claim, and the claims to provision.
#[derive(Clone, Default)]
struct Choice {
    bindings: Vec<(Arc<PersistentVolumeClaim>, Arc<PersistentVolume>)>,
    provisions: Vec<Arc<PersistentVolumeClaim>>,
}

/// What Reserve set aside, for PreBind and Unreserve.
struct Reserved(Choice);

/// The names of the claims a pod uses: its `persistentVolumeClaim` volumes and the claims of
/// its generic ephemeral volumes (`<pod>-<volume>`).
pub fn claim_names(pod: &PodInfo) -> Vec<String> {
    let pod_name = pod.pod.metadata.name.as_deref().unwrap_or_default();
    let volumes = pod.pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default();
    volumes
        .iter()
        .filter_map(|v| match (&v.persistent_volume_claim, &v.ephemeral) {
            (Some(claim), _) => Some(claim.claim_name.clone()),
            (None, Some(_)) => Some(format!("{pod_name}-{}", v.name)),
            _ => None,
        })
        .collect()
}

/// Whether `volume`'s required node affinity admits `node` (a volume without one admits
/// every node).
pub fn admits(volume: &PersistentVolume, labels: &BTreeMap<String, String>, node: &str) -> bool {
    let required = volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref());
    match required {
        Some(selector) => any_term_matches(&selector.node_selector_terms, labels, node),
        None => true,
    }
}

/// Whether a class's allowed topologies admit a node (none: every node).
fn topology_admits(
    terms: &[k8s_openapi::api::core::v1::TopologySelectorTerm],
    labels: &BTreeMap<String, String>,
) -> bool {
    terms.is_empty()
        || terms.iter().any(|term| {
            term.match_label_expressions
                .iter()
                .flatten()
                .all(|e| labels.get(&e.key).is_some_and(|v| e.values.iter().any(|x| x == v)))
        })
}

fn node_labels(node: &NodeInfo) -> BTreeMap<String, String> {
    node.node.as_ref().and_then(|n| n.metadata.labels.clone()).unwrap_or_default()
}

impl PodVolumes {
    /// The choice for the delayed claims on `node`, or why there is none.
    fn choose(&self, labels: &BTreeMap<String, String>, node: &str) -> Option<Choice> {
        let mut choice = Choice::default();
        for delayed in &self.delayed {
            let taken = |name: &str| {
                choice.bindings.iter().any(|(_, v)| v.metadata.name.as_deref() == Some(name))
                    || self.assumed.get(name).is_some_and(|claim| *claim != delayed.key)
            };
            let on_node = |v: &PersistentVolume| admits(v, labels, node);
            let search = Search { on_node: Some(&on_node), excluded: &taken, delay_binding: true };
            let found =
                find_matching(&delayed.claim, self.volumes.iter().map(AsRef::as_ref), &search)
                    .and_then(|v| self.volumes.iter().find(|x| x.metadata.name == v.metadata.name));
            match (found, &delayed.provisioner) {
                (Some(volume), _) => choice.bindings.push((delayed.claim.clone(), volume.clone())),
                (None, Some(_)) if topology_admits(&delayed.topologies, labels) => {
                    choice.provisions.push(delayed.claim.clone());
                }
                _ => return None,
            }
        }
        Some(choice)
    }
}

impl VolumeBinding {
    fn assumed(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.assumed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Plugin for VolumeBinding {
    fn name(&self) -> &'static str {
        NAME
    }

    fn points(&self) -> Points {
        Points::PRE_FILTER | Points::FILTER | Points::RESERVE | Points::PRE_BIND
    }

    fn events(&self) -> &'static [ClusterEvent] {
        &[ClusterEvent::NodeAdd, ClusterEvent::NodeLabel, ClusterEvent::VolumeChange]
    }

    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot<'_>,
    ) -> Result<(), Rejection> {
        let names = claim_names(pod);
        if names.is_empty() {
            return Ok(());
        }
        let empty = crate::framework::Volumes::default();
        let store = snapshot.volumes.unwrap_or(&empty);
        // Volumes seen bound since they were assumed are no longer set aside.
        self.assumed().retain(|volume, _| {
            store
                .volumes
                .get(volume)
                .is_some_and(|v| v.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).is_none())
        });
        let mut found = PodVolumes {
            bound: Vec::new(),
            missing_volume: false,
            delayed: Vec::new(),
            volumes: Vec::new(),
            assumed: self.assumed().clone(),
            chosen: Mutex::default(),
        };
        let unresolvable = |reason| Err(Rejection::unresolvable(NAME, reason));
        for name in names {
            let Some(claim) = store.claim(pod.namespace(), &name) else {
                return unresolvable(Reason::ClaimNotFound(name));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return unresolvable(Reason::ClaimBeingDeleted(name));
            }
            // Bound once the binder completed it (a claim naming a volume is not yet).
            let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
            let completed =
                claim.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(BIND_COMPLETED));
            if let Some(volume_name) = volume_name.filter(|n| !n.is_empty() && completed) {
                match store.volumes.get(volume_name) {
                    Some(volume) => found.bound.push(volume.clone()),
                    None => found.missing_volume = true,
                }
                continue;
            }
            let class = store.classes.get(claim_class(claim));
            let delayed = class
                .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
            let Some(class) = class.filter(|_| delayed) else {
                return unresolvable(Reason::UnboundImmediateClaims);
            };
            found.delayed.push(Delayed {
                claim: claim.clone(),
                key: format!("{}/{name}", pod.namespace()),
                provisioner: Some(class.provisioner.clone()).filter(|p| p != NO_PROVISIONER),
                topologies: class.allowed_topologies.clone().unwrap_or_default(),
            });
        }
        if !found.delayed.is_empty() {
            found.volumes = store.volumes.values().cloned().collect();
        }
        state.write(NAME, found);
        Ok(())
    }

    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<(), Rejection> {
        let Some(found) = state.read::<PodVolumes>(NAME) else { return Ok(()) };
        let labels = node_labels(node);
        if found.bound.iter().any(|v| !admits(v, &labels, &node.name)) {
            return Err(Rejection::unresolvable(NAME, Reason::VolumeNodeAffinityConflict));
        }
        if found.missing_volume {
            return Err(Rejection::unresolvable(NAME, Reason::BoundToMissingVolume));
        }
        if found.delayed.is_empty() {
            return Ok(());
        }
        match found.choose(&labels, &node.name) {
            Some(choice) => {
                found
                    .chosen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(node.name.clone(), choice);
                Ok(())
            }
            None => Err(Rejection::unresolvable(NAME, Reason::NoVolumeToBind)),
        }
    }

    fn reserve(&self, state: &mut CycleState, _pod: &PodInfo, node: &str) -> Result<(), String> {
        let Some(found) = state.read::<PodVolumes>(NAME) else { return Ok(()) };
        if found.delayed.is_empty() {
            return Ok(());
        }
        let choice = found.chosen.lock().unwrap_or_else(PoisonError::into_inner).get(node).cloned();
        let Some(choice) = choice else {
            return Err(format!("no volume choice for node {node:?}"));
        };
        {
            let mut assumed = self.assumed();
            for (claim, volume) in &choice.bindings {
                let name = volume.metadata.name.clone().unwrap_or_default();
                let key = format!(
                    "{}/{}",
                    claim.metadata.namespace.as_deref().unwrap_or_default(),
                    claim.metadata.name.as_deref().unwrap_or_default()
                );
                match assumed.get(&name) {
                    Some(holder) if *holder != key => {
                        return Err(format!("volume {name:?} is set aside for another claim"));
                    }
                    _ => {
                        assumed.insert(name, key);
                    }
                }
            }
        }
        state.write(NAME_RESERVED, Reserved(choice));
        Ok(())
    }

    fn unreserve(&self, state: &mut CycleState, _pod: &PodInfo, _node: &str) {
        let Some(Reserved(choice)) = state.read::<Reserved>(NAME_RESERVED) else { return };
        let mut assumed = self.assumed();
        for (_, volume) in &choice.bindings {
            assumed.remove(volume.metadata.name.as_deref().unwrap_or_default());
        }
    }

    fn pre_bind<'a>(
        &'a self,
        client: &'a Client,
        state: &'a CycleState,
        pod: &'a PodInfo,
        node: &'a str,
    ) -> BindFuture<'a, Result<(), BindError>> {
        Box::pin(async move {
            let Some(Reserved(choice)) = state.read::<Reserved>(NAME_RESERVED) else {
                return Ok(());
            };
            let namespace = pod.namespace();
            let volumes: Api<PersistentVolume> = Api::all(client.clone());
            let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
            let api_error = |e: kube::Error| BindError::Api(e.to_string());
            for (claim, volume) in &choice.bindings {
                let meta = &claim.metadata;
                // Guarded by the volume's resourceVersion: a volume taken meanwhile is a
                // conflict, and the pod is tried again.
                let patch = serde_json::json!({
                    "metadata": {
                        "resourceVersion": volume.metadata.resource_version,
                        "annotations": {BOUND_BY_CONTROLLER: "yes"},
                    },
                    "spec": {"claimRef": {
                        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                        "namespace": meta.namespace, "name": meta.name, "uid": meta.uid,
                        "resourceVersion": meta.resource_version,
                    }},
                });
                let name = volume.metadata.name.as_deref().unwrap_or_default();
                volumes
                    .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(api_error)?;
            }
            for claim in &choice.provisions {
                let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
                let name = claim.metadata.name.as_deref().unwrap_or_default();
                claims
                    .patch(name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                    .map_err(api_error)?;
            }
            // Until the binder (or a provisioner) has bound every claim.
            let names: Vec<&str> = choice
                .bindings
                .iter()
                .map(|(c, _)| c)
                .chain(&choice.provisions)
                .filter_map(|c| c.metadata.name.as_deref())
                .collect();
            let deadline = tokio::time::Instant::now() + BIND_TIMEOUT;
            for name in names {
                loop {
                    let claim = claims.get_opt(name).await.map_err(api_error)?;
                    let Some(claim) = claim else {
                        return Err(BindError::Api(format!(
                            "persistentvolumeclaim {name:?} was deleted"
                        )));
                    };
                    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref())
                        == Some("Bound")
                        && claim
                            .spec
                            .as_ref()
                            .and_then(|s| s.volume_name.as_deref())
                            .is_some_and(|v| !v.is_empty());
                    if bound {
                        break;
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(BindError::Api(format!(
                            "binding volumes: timed out waiting for persistentvolumeclaim {namespace}/{name} to be bound"
                        )));
                    }
                    tokio::time::sleep(BIND_POLL).await;
                }
            }
            Ok(())
        })
    }
}

/// Where Reserve keeps its choice in the cycle's state.
const NAME_RESERVED: &str = "VolumeBinding/reserved";

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;
    use crate::framework::Volumes;
    use crate::framework::snapshot::ImageSpread;
    use crate::plugins::fixtures::{info, node, pod_with};

    fn volume(name: &str, size: &str, host: Option<&str>) -> PersistentVolume {
        let mut v = json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": "local", "local": {"path": "/mnt"}},
            "status": {"phase": "Available"}});
        if let Some(host) = host {
            v["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}});
        }
        serde_json::from_value(v).expect("a volume")
    }

    fn claim(name: &str, class: &str, bound_to: Option<&str>) -> PersistentVolumeClaim {
        let mut c = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "resources": {"requests": {"storage": "1Gi"}}}});
        if let Some(v) = bound_to {
            c["spec"]["volumeName"] = json!(v);
            c["metadata"]["annotations"] = json!({BIND_COMPLETED: "yes"});
            c["status"] = json!({"phase": "Bound"});
        }
        serde_json::from_value(c).expect("a claim")
    }

    fn class(
        name: &str,
        mode: &str,
        provisioner: &str,
    ) -> k8s_openapi::api::storage::v1::StorageClass {
        serde_json::from_value(json!({"metadata": {"name": name}, "provisioner": provisioner,
            "volumeBindingMode": mode}))
        .expect("a class")
    }

    fn store() -> Volumes {
        let mut s = Volumes::default();
        s.set_class(class("local", "WaitForFirstConsumer", NO_PROVISIONER));
        s.set_class(class("now", "Immediate", NO_PROVISIONER));
        s.set_class(class("made", "WaitForFirstConsumer", "rancher.io/local-path"));
        s.set_volume(volume("on-a", "5Gi", Some("a")));
        s.set_volume(volume("on-b", "5Gi", Some("b")));
        s
    }

    fn host(name: &str) -> NodeInfo {
        node(
            name,
            json!({"metadata": {"labels": {"kubernetes.io/hostname": name}},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
            &[],
        )
    }

    fn using(claims: &[&str]) -> PodInfo {
        let volumes: Vec<_> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        info(pod_with(
            json!({"name": "p", "uid": "pod-1"}),
            json!({"containers": [], "volumes": volumes}),
        ))
    }

    /// The nodes of `nodes` the pod may go to, or PreFilter's refusal.
    fn feasible(
        plugin: &VolumeBinding,
        s: &Volumes,
        pod: &PodInfo,
        nodes: &[NodeInfo],
    ) -> Result<Vec<String>, String> {
        let images: HashMap<String, ImageSpread> = HashMap::new();
        let mut snapshot = Snapshot::new(nodes.iter().collect(), &images);
        snapshot.volumes = Some(s);
        let mut state = CycleState::default();
        plugin.pre_filter(&mut state, pod, &snapshot).map_err(|r| r.reasons[0].to_string())?;
        Ok(nodes
            .iter()
            .filter(|n| plugin.filter(&state, pod, n).is_ok())
            .map(|n| n.name.clone())
            .collect())
    }

    #[test]
    fn a_pod_without_claims_is_skipped_at_pre_filter() {
        let plugin = VolumeBinding::default();
        let nodes = [host("a")];
        let images: HashMap<String, ImageSpread> = HashMap::new();
        // No volume caches at all: nothing is read for a pod without claims.
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let mut state = CycleState::default();
        let pod = using(&[]);
        plugin.pre_filter(&mut state, &pod, &snapshot).expect("passes");
        assert!(state.read::<PodVolumes>(NAME).is_none(), "nothing kept for the later points");
        assert!(plugin.filter(&state, &pod, &nodes[0]).is_ok());
        assert_eq!(plugin.reserve(&mut state, &pod, "a"), Ok(()));
        assert!(state.read::<Reserved>(NAME_RESERVED).is_none(), "nothing to write at PreBind");
    }

    #[test]
    fn a_waiting_claim_goes_where_a_volume_is() {
        let mut s = store();
        s.set_claim(claim("data", "local", None));
        let nodes = [host("a"), host("b"), host("c")];
        let plugin = VolumeBinding::default();
        assert_eq!(
            feasible(&plugin, &s, &using(&["data"]), &nodes),
            Ok(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn a_bound_claim_pins_the_pod_to_its_volume() {
        let mut s = store();
        s.set_claim(claim("data", "local", Some("on-b")));
        let nodes = [host("a"), host("b")];
        let plugin = VolumeBinding::default();
        assert_eq!(feasible(&plugin, &s, &using(&["data"]), &nodes), Ok(vec!["b".into()]));
        let images = HashMap::new();
        let mut snapshot = Snapshot::new(nodes.iter().collect(), &images);
        snapshot.volumes = Some(&s);
        let mut state = CycleState::default();
        plugin.pre_filter(&mut state, &using(&["data"]), &snapshot).expect("passes");
        let refused = plugin.filter(&state, &using(&["data"]), &nodes[0]).expect_err("conflict");
        assert_eq!(refused.reasons[0].to_string(), "node(s) had volume node affinity conflict");
    }

    #[test]
    fn claims_that_cannot_be_used_refuse_the_pod() {
        let mut s = store();
        s.set_claim(claim("later", "now", None));
        s.set_claim(claim("gone", "local", Some("nowhere")));
        let nodes = [host("a")];
        let plugin = VolumeBinding::default();
        assert_eq!(
            feasible(&plugin, &s, &using(&["missing"]), &nodes),
            Err("persistentvolumeclaim \"missing\" not found".into())
        );
        assert_eq!(
            feasible(&plugin, &s, &using(&["later"]), &nodes),
            Err("pod has unbound immediate PersistentVolumeClaims".into())
        );
        assert_eq!(feasible(&plugin, &s, &using(&["gone"]), &nodes), Ok(vec![]));
    }

    #[test]
    fn a_provisioner_makes_any_node_fit_and_two_claims_need_two_volumes() {
        let mut s = store();
        s.set_claim(claim("made", "made", None));
        s.set_claim(claim("one", "local", None));
        s.set_claim(claim("two", "local", None));
        let nodes = [host("a"), host("c")];
        let plugin = VolumeBinding::default();
        assert_eq!(
            feasible(&plugin, &s, &using(&["made"]), &nodes),
            Ok(vec!["a".into(), "c".into()])
        );
        // one volume per node: two claims fit nowhere
        assert_eq!(feasible(&plugin, &s, &using(&["one", "two"]), &nodes), Ok(vec![]));
    }

    #[test]
    fn a_reserved_volume_is_not_chosen_again_until_given_back() {
        let mut s = store();
        s.set_claim(claim("data", "local", None));
        let mut other = claim("other", "local", None);
        other.metadata.uid = Some("uid-other".into());
        s.set_claim(other);
        let nodes = [host("a")];
        let plugin = VolumeBinding::default();
        let images = HashMap::new();
        let mut snapshot = Snapshot::new(nodes.iter().collect(), &images);
        snapshot.volumes = Some(&s);
        let first = using(&["data"]);
        let mut state = CycleState::default();
        plugin.pre_filter(&mut state, &first, &snapshot).expect("passes");
        plugin.filter(&state, &first, &nodes[0]).expect("fits");
        plugin.reserve(&mut state, &first, "a").expect("reserved");
        assert_eq!(feasible(&plugin, &s, &using(&["other"]), &nodes), Ok(vec![]));
        plugin.unreserve(&mut state, &first, "a");
        assert_eq!(feasible(&plugin, &s, &using(&["other"]), &nodes), Ok(vec!["a".into()]));
    }
}
