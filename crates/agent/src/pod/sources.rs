//! The ConfigMaps and Secrets a pod refers to (in `env`, `envFrom` and volumes), and where
//! its PersistentVolumeClaims' volumes are on this node, fetched once per start so that the
//! pure code below works on plain maps.

use std::collections::{BTreeMap, HashMap};

use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, ServiceAccount,
};
use kube::api::PostParams;
use kube::{Api, Client};

/// Which kind of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A ConfigMap.
    ConfigMap,
    /// A Secret.
    Secret,
}

/// One source's data, by key.
pub type Data = BTreeMap<String, Vec<u8>>;

/// The referenced objects' data (`None`: it does not exist).
#[derive(Debug, Default, Clone)]
pub struct Sources {
    objects: HashMap<(Kind, String), Option<Data>>,
    /// Service-account tokens of projected volumes, by (audience, expiration seconds).
    tokens: HashMap<(String, i64), Token>,
    /// The host directory of each claim's volume, by claim name, or why there is none.
    claims: HashMap<String, Result<std::path::PathBuf, String>>,
}

/// A service-account token bound to the pod.
#[derive(Debug, Clone)]
pub struct Token {
    /// The token.
    pub token: String,
    obtained: Instant,
    lifetime: Duration,
}

impl Token {
    /// Whether it is young enough to keep (upstream renews after 80% of its life, or 24 h).
    fn fresh(&self) -> bool {
        let renew_after = (self.lifetime * 4 / 5).min(Duration::from_secs(24 * 3600));
        self.obtained.elapsed() < renew_after
    }
}

impl Sources {
    /// The data of one source; `None` when it does not exist.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.objects.get(&(kind, name.to_string())).and_then(Option::as_ref)
    }

    /// Where the volume of claim `name` is on this node, or why it cannot be used.
    pub fn claim(&self, name: &str) -> Result<&std::path::Path, String> {
        match self.claims.get(name) {
            Some(Ok(path)) => Ok(path),
            Some(Err(why)) => Err(why.clone()),
            None => Err(format!("persistentvolumeclaim {name:?} was not looked up")),
        }
    }

    /// The token for a projected `serviceAccountToken` source, if one was obtained.
    pub fn token(&self, audience: &str, expiration_seconds: i64) -> Option<&str> {
        self.tokens.get(&(audience.to_string(), expiration_seconds)).map(|t| t.token.as_str())
    }

    /// Records one source (for tests and for the fetch below).
    pub fn insert(&mut self, kind: Kind, name: &str, data: Option<BTreeMap<String, Vec<u8>>>) {
        self.objects.insert((kind, name.to_string()), data);
    }

    /// Fetches everything `pod` refers to; tokens still fresh in `previous` are kept.
    pub async fn fetch(
        client: &Client,
        pod: &Pod,
        previous: Option<&Sources>,
    ) -> Result<Sources, kube::Error> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let mut sources = Sources::default();
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        for projection in pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.projected.as_ref())
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.service_account_token.as_ref())
        {
            let key = (
                projection.audience.clone().unwrap_or_default(),
                projection.expiration_seconds.unwrap_or(3600),
            );
            if let Some(kept) = previous.and_then(|p| p.tokens.get(&key)).filter(|t| t.fresh()) {
                sources.tokens.insert(key, kept.clone());
                continue;
            }
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: if key.0.is_empty() { vec![] } else { vec![key.0.clone()] },
                    expiration_seconds: Some(key.1),
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: pod.metadata.name.clone(),
                        uid: pod.metadata.uid.clone(),
                    }),
                },
                ..TokenRequest::default()
            };
            let answer: TokenRequest =
                Api::<ServiceAccount>::namespaced(client.clone(), &namespace)
                    .create_subresource("token", &account, &PostParams::default(), &request)
                    .await?;
            let lifetime = answer.spec.expiration_seconds.unwrap_or(key.1).max(600) as u64;
            let token = answer.status.map(|s| s.token).unwrap_or_default();
            sources.tokens.insert(
                key,
                Token { token, obtained: Instant::now(), lifetime: Duration::from_secs(lifetime) },
            );
        }
        for (kind, name) in references(pod) {
            if sources.objects.contains_key(&(kind, name.clone())) {
                continue;
            }
            let data = match kind {
                Kind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), &namespace)
                    .get_opt(&name)
                    .await?
                    .map(|cm| {
                        let mut data: BTreeMap<String, Vec<u8>> = cm
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes()))
                            .collect();
                        data.extend(
                            cm.binary_data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)),
                        );
                        data
                    }),
                Kind::Secret => Api::<Secret>::namespaced(client.clone(), &namespace)
                    .get_opt(&name)
                    .await?
                    .map(|s| {
                        let mut data: BTreeMap<String, Vec<u8>> =
                            s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                        data.extend(
                            s.string_data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k, v.into_bytes())),
                        );
                        data
                    }),
            };
            sources.objects.insert((kind, name), data);
        }
        for name in claim_names(pod) {
            if sources.claims.contains_key(&name) {
                continue;
            }
            let claims = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &namespace);
            let path = match claims.get_opt(&name).await? {
                None => Err(format!("persistentvolumeclaim {name:?} not found")),
                Some(claim) => match bound_volume(&claim) {
                    None => Err(format!("PVC {namespace}/{name} is not bound")),
                    Some(volume) => {
                        let volumes = Api::<PersistentVolume>::all(client.clone());
                        match volumes.get_opt(volume).await? {
                            None => Err(format!("persistentvolume {volume:?} not found")),
                            Some(pv) => host_path(&pv),
                        }
                    }
                },
            };
            sources.claims.insert(name, path);
        }
        Ok(sources)
    }
}

/// The claims `pod`'s volumes use.
fn claim_names(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.iter().flat_map(|s| s.volumes.iter().flatten());
    volumes
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

/// The volume a claim is bound to, once the binding is complete.
fn bound_volume(claim: &PersistentVolumeClaim) -> Option<&str> {
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    volume.filter(|v| bound && !v.is_empty())
}

/// Where a volume is on the node: the path of a `hostPath` or `local` volume, the kinds a
/// node agent without storage drivers can mount.
fn host_path(volume: &PersistentVolume) -> Result<std::path::PathBuf, String> {
    let spec = volume.spec.as_ref();
    let path = spec
        .and_then(|s| s.host_path.as_ref().map(|h| h.path.as_str()))
        .or_else(|| spec.and_then(|s| s.local.as_ref().map(|l| l.path.as_str())));
    match path {
        Some(path) => Ok(std::path::PathBuf::from(path)),
        None => Err(format!(
            "persistentvolume {:?} is neither hostPath nor local: no driver on this node mounts it",
            volume.metadata.name.as_deref().unwrap_or_default()
        )),
    }
}

/// Every ConfigMap and Secret `pod` names.
fn references(pod: &Pod) -> Vec<(Kind, String)> {
    let mut found = Vec::new();
    let Some(spec) = pod.spec.as_ref() else { return found };
    for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
        for env in c.env.iter().flatten() {
            if let Some(from) = &env.value_from {
                if let Some(r) = &from.config_map_key_ref {
                    found.push((Kind::ConfigMap, r.name.clone()));
                }
                if let Some(r) = &from.secret_key_ref {
                    found.push((Kind::Secret, r.name.clone()));
                }
            }
        }
        for from in c.env_from.iter().flatten() {
            if let Some(r) = &from.config_map_ref {
                found.push((Kind::ConfigMap, r.name.clone()));
            }
            if let Some(r) = &from.secret_ref {
                found.push((Kind::Secret, r.name.clone()));
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            found.push((Kind::ConfigMap, cm.name.clone()));
        }
        if let Some(s) = &v.secret
            && let Some(name) = &s.secret_name
        {
            found.push((Kind::Secret, name.clone()));
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &p.config_map {
                found.push((Kind::ConfigMap, cm.name.clone()));
            }
            if let Some(s) = &p.secret {
                found.push((Kind::Secret, s.name.clone()));
            }
        }
    }
    found
}
