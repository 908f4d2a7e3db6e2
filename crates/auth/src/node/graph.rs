//! Which objects each node's pods reference, as upstream's node authorizer graph
//! (`plugin/pkg/auth/authorizer/node/graph.go`), reduced to what its decisions read: for each
//! object, the nodes that reach it through a pod bound to them, counted by pod.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{
    Container, EphemeralContainer, PersistentVolumeClaim, Pod, PodSpec, Volume,
};

/// The kinds of namespaced objects a pod references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// `secrets`.
    Secret,
    /// `configmaps`.
    ConfigMap,
    /// `persistentvolumeclaims`.
    PersistentVolumeClaim,
    /// `serviceaccounts`.
    ServiceAccount,
}

/// What one pod bound to a node references, in its namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodRefs {
    /// The node the pod is bound to (`spec.nodeName`).
    pub node: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The referenced objects, by kind and name.
    pub objects: BTreeSet<(Kind, String)>,
}

/// What `pod` references, or `None` when it is bound to no node (it gives no node access).
///
/// As upstream's graph populator: `spec.serviceAccountName`, `imagePullSecrets`, each
/// container's (init and ephemeral too) `envFrom` and `env[].valueFrom` secrets and config
/// maps, and the volumes: `secret`, `configMap`, `projected` sources, `persistentVolumeClaim`,
/// ephemeral volumes (claim `POD-VOLUME`), and the secret references of the volume plugins
/// that have one (`csi`, `azureFile`, `cephfs`, `cinder`, `flexVolume`, `iscsi`, `rbd`,
/// `scaleIO`, `storageos`).
pub fn pod_refs(pod: &Pod) -> Option<PodRefs> {
    let spec = pod.spec.as_ref()?;
    let node = spec.node_name.as_deref().filter(|n| !n.is_empty())?;
    let mut objects = BTreeSet::new();
    let mut add = |kind: Kind, name: Option<&str>| {
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            objects.insert((kind, name.to_string()));
        }
    };
    add(Kind::ServiceAccount, spec.service_account_name.as_deref());
    for secret in spec.image_pull_secrets.iter().flatten() {
        add(Kind::Secret, Some(&secret.name));
    }
    for container in containers(spec) {
        let (env_from, env) = container;
        for from in env_from.iter().flatten() {
            add(Kind::Secret, from.secret_ref.as_ref().map(|r| r.name.as_str()));
            add(Kind::ConfigMap, from.config_map_ref.as_ref().map(|r| r.name.as_str()));
        }
        for var in env.iter().flatten() {
            let Some(from) = &var.value_from else { continue };
            add(Kind::Secret, from.secret_key_ref.as_ref().map(|r| r.name.as_str()));
            add(Kind::ConfigMap, from.config_map_key_ref.as_ref().map(|r| r.name.as_str()));
        }
    }
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    for volume in spec.volumes.iter().flatten() {
        volume_refs(pod_name, volume, &mut add);
    }
    Some(PodRefs {
        node: node.to_string(),
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        objects,
    })
}

type EnvParts<'a> = (
    &'a Option<Vec<k8s_openapi::api::core::v1::EnvFromSource>>,
    &'a Option<Vec<k8s_openapi::api::core::v1::EnvVar>>,
);

/// The env parts of every container, init container and ephemeral container.
fn containers(spec: &PodSpec) -> impl Iterator<Item = EnvParts<'_>> {
    fn regular(c: &Container) -> EnvParts<'_> {
        (&c.env_from, &c.env)
    }
    fn ephemeral(c: &EphemeralContainer) -> EnvParts<'_> {
        (&c.env_from, &c.env)
    }
    spec.containers
        .iter()
        .map(regular)
        .chain(spec.init_containers.iter().flatten().map(regular))
        .chain(spec.ephemeral_containers.iter().flatten().map(ephemeral))
}

fn volume_refs(pod_name: &str, v: &Volume, add: &mut impl FnMut(Kind, Option<&str>)) {
    add(Kind::Secret, v.secret.as_ref().and_then(|s| s.secret_name.as_deref()));
    add(Kind::ConfigMap, v.config_map.as_ref().map(|c| c.name.as_str()));
    for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        add(Kind::Secret, source.secret.as_ref().map(|s| s.name.as_str()));
        add(Kind::ConfigMap, source.config_map.as_ref().map(|c| c.name.as_str()));
    }
    add(
        Kind::PersistentVolumeClaim,
        v.persistent_volume_claim.as_ref().map(|c| c.claim_name.as_str()),
    );
    if v.ephemeral.is_some() {
        add(Kind::PersistentVolumeClaim, Some(&format!("{pod_name}-{}", v.name)));
    }
    let name_of = |r: &Option<k8s_openapi::api::core::v1::LocalObjectReference>| {
        r.as_ref().map(|r| r.name.clone())
    };
    let secret_refs = [
        v.csi.as_ref().and_then(|s| name_of(&s.node_publish_secret_ref)),
        v.azure_file.as_ref().map(|s| s.secret_name.clone()),
        v.cephfs.as_ref().and_then(|s| name_of(&s.secret_ref)),
        v.cinder.as_ref().and_then(|s| name_of(&s.secret_ref)),
        v.flex_volume.as_ref().and_then(|s| name_of(&s.secret_ref)),
        v.iscsi.as_ref().and_then(|s| name_of(&s.secret_ref)),
        v.rbd.as_ref().and_then(|s| name_of(&s.secret_ref)),
        v.scale_io.as_ref().map(|s| s.secret_ref.name.clone()),
        v.storageos.as_ref().and_then(|s| name_of(&s.secret_ref)),
    ];
    for name in secret_refs.iter().flatten() {
        add(Kind::Secret, Some(name));
    }
}

/// The persistent volume a claim is bound to (`spec.volumeName`), if any.
pub fn claim_volume(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.spec.as_ref()?.volume_name.as_deref().filter(|v| !v.is_empty())
}

/// An object a node may reach: kind, namespace, name.
type ObjectKey = (Kind, String, String);

/// For each referenced object, the nodes whose pods reference it (counted by pod); for each
/// persistent volume, the claims bound to it. Updated one pod or claim at a time.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    objects: HashMap<ObjectKey, HashMap<String, usize>>,
    volumes: HashMap<String, BTreeSet<(String, String)>>,
}

impl Graph {
    /// Adds the references of one pod.
    pub fn add_pod(&mut self, refs: &PodRefs) {
        for (kind, name) in &refs.objects {
            let nodes =
                self.objects.entry((*kind, refs.namespace.clone(), name.clone())).or_default();
            *nodes.entry(refs.node.clone()).or_default() += 1;
        }
    }

    /// Removes the references of one pod (as added before).
    pub fn remove_pod(&mut self, refs: &PodRefs) {
        for (kind, name) in &refs.objects {
            let key = (*kind, refs.namespace.clone(), name.clone());
            let Some(nodes) = self.objects.get_mut(&key) else { continue };
            if let Some(count) = nodes.get_mut(&refs.node) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    nodes.remove(&refs.node);
                }
            }
            if nodes.is_empty() {
                self.objects.remove(&key);
            }
        }
    }

    /// Records that the claim `namespace/name` is bound to `volume`.
    pub fn add_claim(&mut self, namespace: &str, name: &str, volume: &str) {
        self.volumes
            .entry(volume.to_string())
            .or_default()
            .insert((namespace.to_string(), name.to_string()));
    }

    /// Forgets that the claim `namespace/name` is bound to `volume`.
    pub fn remove_claim(&mut self, namespace: &str, name: &str, volume: &str) {
        if let Some(claims) = self.volumes.get_mut(volume) {
            claims.remove(&(namespace.to_string(), name.to_string()));
            if claims.is_empty() {
                self.volumes.remove(volume);
            }
        }
    }

    /// Whether a pod bound to `node` references the object `kind` `namespace/name`.
    pub fn reaches(&self, node: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        self.objects
            .get(&(kind, namespace.to_string(), name.to_string()))
            .is_some_and(|nodes| nodes.contains_key(node))
    }

    /// Whether a pod bound to `node` references a claim bound to the persistent volume `name`.
    pub fn reaches_volume(&self, node: &str, name: &str) -> bool {
        self.volumes.get(name).is_some_and(|claims| {
            claims
                .iter()
                .any(|(ns, claim)| self.reaches(node, Kind::PersistentVolumeClaim, ns, claim))
        })
    }
}
