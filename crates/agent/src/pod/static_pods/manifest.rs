//! A static pod's manifest: one Pod in a file, YAML or JSON, decoded and given the defaults
//! the kubelet gives file pods (upstream's `pkg/kubelet/config/common.go`, `applyDefaults`):
//! a UID hashed from the pod, the node and the file; the name suffixed with `-<node>`; the
//! `default` namespace; `spec.nodeName`; the `kubernetes.io/config.*` annotations; a
//! toleration of every `NoExecute` taint. Pure: the folder reads the bytes, the caller picks
//! the time it was first seen.

use std::path::Path;

use k8s_openapi::api::core::v1::{Pod, PodStatus, Toleration};
use serde_json::Value;

/// The hash of a static pod's manifest (its UID), on the pod and on its mirror.
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
/// Where a pod came from: `file` for static pods (`api` pods carry none).
pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
/// When the agent first saw the pod (RFC 3339 with nanoseconds).
pub const CONFIG_SEEN: &str = "kubernetes.io/config.seen";
/// The source of pods from manifest files.
pub const FILE_SOURCE: &str = "file";
/// The largest manifest read (upstream's `maxConfigLength`, 10 MiB).
pub const MAX_MANIFEST: u64 = 10 << 20;

/// Why a file is no static pod.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The file is larger than [`MAX_MANIFEST`].
    #[error("the manifest is larger than {MAX_MANIFEST} bytes")]
    TooLarge,
    /// Neither JSON nor YAML, or not shaped as a Pod.
    #[error("couldn't parse as pod ({0}), please check config file")]
    Parse(String),
    /// Another kind of object.
    #[error("couldn't parse as pod (the object is a {kind} of {api_version}, not a v1 Pod)")]
    NotAPod {
        /// Its `kind`.
        kind: String,
        /// Its `apiVersion`.
        api_version: String,
    },
    /// A pod the API server would refuse (the first failing field, worded as upstream's).
    #[error("invalid pod: {0}")]
    Invalid(String),
    /// A pod that needs an API object (a Secret, a ConfigMap, ...), which a node may not
    /// give a pod of its own.
    #[error("static pods may not reference {0}")]
    References(&'static str),
}

/// Decodes the manifest `data` of file `source` into the static pod of node `node`, with
/// upstream's defaults (but `kubernetes.io/config.seen`, see [`set_seen`]).
pub fn decode(data: &[u8], source: &Path, node: &str) -> Result<Pod, ManifestError> {
    if data.len() as u64 > MAX_MANIFEST {
        return Err(ManifestError::TooLarge);
    }
    let value: Value = match serde_json::from_slice(data) {
        Ok(value) => value,
        Err(_) => {
            let text =
                std::str::from_utf8(data).map_err(|e| ManifestError::Parse(e.to_string()))?;
            serde_saphyr::from_str(text).map_err(|e| ManifestError::Parse(e.to_string()))?
        }
    };
    let field = |name: &str| value.get(name).and_then(Value::as_str).unwrap_or_default();
    let (kind, api_version) = (field("kind"), field("apiVersion"));
    if kind.is_empty() {
        return Err(ManifestError::Parse("Object 'Kind' is missing".into()));
    }
    if kind != "Pod" || api_version != "v1" {
        return Err(ManifestError::NotAPod { kind: kind.into(), api_version: api_version.into() });
    }
    let mut pod: Pod =
        serde_json::from_value(value).map_err(|e| ManifestError::Parse(e.to_string()))?;
    if pod.metadata.name.as_deref().is_none_or(str::is_empty) {
        return Err(ManifestError::Invalid("name is needed for the pod".into()));
    }
    apply_defaults(&mut pod, source, node);
    validate(&pod)?;
    if let Some(what) = api_reference(&pod) {
        return Err(ManifestError::References(what));
    }
    Ok(pod)
}

/// Upstream's `applyDefaults` for a file pod: the UID (unless the manifest names one) from
/// the pod as written, the node and the file; then the name, namespace, node, hash
/// annotation, source annotation, the `NoExecute` toleration and the `Pending` phase.
pub fn apply_defaults(pod: &mut Pod, source: &Path, node: &str) {
    if pod.metadata.uid.as_deref().is_none_or(str::is_empty) {
        pod.metadata.uid = Some(uid(pod, source, node));
    }
    let name = pod.metadata.name.clone().unwrap_or_default();
    pod.metadata.name = Some(format!("{name}-{}", node.to_lowercase()));
    if pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        pod.metadata.namespace = Some("default".into());
    }
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_string());
    add_or_update_toleration(
        spec.tolerations.get_or_insert_with(Vec::new),
        Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Toleration::default()
        },
    );
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let annotations = pod.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(CONFIG_HASH.into(), uid);
    annotations.insert(CONFIG_SOURCE.into(), FILE_SOURCE.into());
    pod.status = Some(PodStatus { phase: Some("Pending".into()), ..PodStatus::default() });
}

/// Records when the pod was first seen (`kubernetes.io/config.seen`).
pub fn set_seen(pod: &mut Pod, seen: &str) {
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(CONFIG_SEEN.into(), seen.to_string());
}

/// The UID of a file pod: FNV-1a (128 bits, as upstream's) over the pod as written (its JSON
/// encoding), then `host:<node>` and `file:<path>`, in hex. A change to the file is a new pod.
pub fn uid(pod: &Pod, source: &Path, node: &str) -> String {
    let mut hash = Fnv128a::new();
    hash.write(&serde_json::to_vec(pod).unwrap_or_default());
    hash.write(format!("host:{node}").as_bytes());
    hash.write(format!("file:{}", source.display()).as_bytes());
    format!("{:032x}", hash.0)
}

/// FNV-1a with 128 bits.
struct Fnv128a(u128);

impl Fnv128a {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;

    fn new() -> Self {
        Fnv128a(Self::OFFSET)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u128::from(*b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }
}

/// Upstream's `AddOrUpdateTolerationInPod`: a toleration matching `new` (key, operator, value,
/// effect) is replaced by it, else `new` is added.
fn add_or_update_toleration(tolerations: &mut Vec<Toleration>, new: Toleration) {
    let matches = |t: &Toleration| {
        t.key.as_deref().unwrap_or_default() == new.key.as_deref().unwrap_or_default()
            && t.operator.as_deref().unwrap_or("Equal")
                == new.operator.as_deref().unwrap_or("Equal")
            && t.value.as_deref().unwrap_or_default() == new.value.as_deref().unwrap_or_default()
            && t.effect.as_deref().unwrap_or_default() == new.effect.as_deref().unwrap_or_default()
    };
    match tolerations.iter_mut().find(|t| matches(t)) {
        Some(existing) => *existing = new,
        None => tolerations.push(new),
    }
}

/// What the API server would refuse first in a static pod, as the field error it words (a
/// subset of upstream's `ValidatePodCreate`: names, and the containers every pod needs).
fn validate(pod: &Pod) -> Result<(), ManifestError> {
    let invalid = |field: &str, value: &str, why: &str| {
        Err(ManifestError::Invalid(format!("{field}: Invalid value: {value:?}: {why}")))
    };
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    if !is_dns_subdomain(name) {
        return invalid("metadata.name", name, SUBDOMAIN_RULE);
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    if !is_dns_label(namespace) {
        return invalid("metadata.namespace", namespace, LABEL_RULE);
    }
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.containers.is_empty() {
        return Err(ManifestError::Invalid("spec.containers: Required value".into()));
    }
    let mut seen = std::collections::HashSet::new();
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| ("spec.initContainers", c))
        .chain(spec.containers.iter().map(|c| ("spec.containers", c)));
    let mut index = std::collections::HashMap::<&str, usize>::new();
    for (list, c) in all {
        let i = index.entry(list).or_default();
        let at = format!("{list}[{i}]");
        *i += 1;
        if c.name.is_empty() {
            return Err(ManifestError::Invalid(format!("{at}.name: Required value")));
        }
        if !is_dns_label(&c.name) {
            return invalid(&format!("{at}.name"), &c.name, LABEL_RULE);
        }
        if !seen.insert(c.name.as_str()) {
            return Err(ManifestError::Invalid(format!(
                "{at}.name: Duplicate value: {:?}",
                c.name
            )));
        }
        if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            return Err(ManifestError::Invalid(format!("{at}.image: Required value")));
        }
    }
    Ok(())
}

const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// The first API object `pod` needs, worded as upstream's `HasAPIObjectReference`: a node
/// may not create a mirror pod that references one, nor read one for a pod of its own.
pub fn api_reference(pod: &Pod) -> Option<&'static str> {
    let spec = pod.spec.as_ref()?;
    if spec.service_account_name.as_deref().is_some_and(|s| !s.is_empty()) {
        return Some("serviceaccounts");
    }
    let containers = || {
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .map(|c| (c.env.as_ref(), c.env_from.as_ref()))
            .chain(
                spec.ephemeral_containers
                    .iter()
                    .flatten()
                    .map(|c| (c.env.as_ref(), c.env_from.as_ref())),
            )
    };
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let projected = || {
        volumes.iter().filter_map(|v| v.projected.as_ref()).flat_map(|p| p.sources.iter().flatten())
    };
    let secret_env = containers().any(|(env, from)| {
        env.into_iter()
            .flatten()
            .any(|e| e.value_from.as_ref().is_some_and(|f| f.secret_key_ref.is_some()))
            || from.into_iter().flatten().any(|f| f.secret_ref.is_some())
    });
    let secrets = spec.image_pull_secrets.as_ref().is_some_and(|s| !s.is_empty())
        || secret_env
        || volumes.iter().any(|v| {
            v.secret.is_some()
                || v.azure_file.is_some()
                || v.cephfs.as_ref().is_some_and(|c| c.secret_ref.is_some())
                || v.cinder.as_ref().is_some_and(|c| c.secret_ref.is_some())
                || v.flex_volume.as_ref().is_some_and(|f| f.secret_ref.is_some())
                || v.iscsi.as_ref().is_some_and(|i| i.secret_ref.is_some())
                || v.rbd.as_ref().is_some_and(|r| r.secret_ref.is_some())
                || v.scale_io.is_some()
                || v.storageos.as_ref().is_some_and(|s| s.secret_ref.is_some())
                || v.csi.as_ref().is_some_and(|c| c.node_publish_secret_ref.is_some())
        })
        || projected().any(|s| s.secret.is_some());
    if secrets {
        return Some("secrets");
    }
    let config_maps = containers().any(|(env, from)| {
        env.into_iter()
            .flatten()
            .any(|e| e.value_from.as_ref().is_some_and(|f| f.config_map_key_ref.is_some()))
            || from.into_iter().flatten().any(|f| f.config_map_ref.is_some())
    }) || volumes.iter().any(|v| v.config_map.is_some())
        || projected().any(|s| s.config_map.is_some());
    if config_maps {
        return Some("configmaps");
    }
    if spec.resource_claims.as_ref().is_some_and(|c| !c.is_empty()) {
        return Some("resourceclaims");
    }
    for v in volumes {
        let what = if v.csi.is_some() {
            "csidrivers (via CSI volumes)"
        } else if v.glusterfs.is_some() {
            "endpoints (via glusterFS volumes)"
        } else if v.persistent_volume_claim.is_some() {
            "persistentvolumeclaims"
        } else if v.ephemeral.is_some() {
            "persistentvolumeclaims (via ephemeral volumes)"
        } else if let Some(p) = &v.projected {
            match p.sources.iter().flatten().find_map(|s| {
                if s.service_account_token.is_some() {
                    Some("serviceaccounts (via projected volumes)")
                } else if s.cluster_trust_bundle.is_some() {
                    Some("clustertrustbundles")
                } else {
                    None
                }
            }) {
                Some(what) => what,
                None => continue,
            }
        } else {
            continue;
        };
        return Some(what);
    }
    None
}

#[cfg(test)]
mod tests;
