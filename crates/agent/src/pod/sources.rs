//! The ConfigMaps and Secrets a pod refers to (in `env`, `envFrom` and volumes), fetched
//! once per start so that the pure code below works on plain maps.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
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
}

impl Sources {
    /// The data of one source; `None` when it does not exist.
    pub fn get(&self, kind: Kind, name: &str) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.objects.get(&(kind, name.to_string())).and_then(Option::as_ref)
    }

    /// Records one source (for tests and for the fetch below).
    pub fn insert(&mut self, kind: Kind, name: &str, data: Option<BTreeMap<String, Vec<u8>>>) {
        self.objects.insert((kind, name.to_string()), data);
    }

    /// Fetches everything `pod` refers to.
    pub async fn fetch(client: &Client, pod: &Pod) -> Result<Sources, kube::Error> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
        let mut sources = Sources::default();
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
        Ok(sources)
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
