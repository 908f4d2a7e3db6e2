//! The root CA publisher (upstream's `root-ca-cert-publisher`): every active namespace has
//! the `kube-root-ca.crt` ConfigMap holding the cluster CA, which pods mount to trust the API
//! server. A changed or deleted ConfigMap is put back.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::service_account::active;
use krust_client::{Informer, informer};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "root-ca-cert-publisher";

/// The ConfigMap's name.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";

/// Its key holding the CA bundle.
pub const KEY: &str = "ca.crt";

/// The description upstream puts on the ConfigMap.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// What the publisher writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Publish {
    /// The namespace has no ConfigMap.
    Create(ConfigMap),
    /// The ConfigMap's bundle differs.
    Update(ConfigMap),
}

/// What to write in `namespace`, holding `existing`, for the bundle `ca`.
pub fn publish(namespace: &Namespace, existing: Option<&ConfigMap>, ca: &str) -> Option<Publish> {
    if !active(namespace) {
        return None;
    }
    let data = BTreeMap::from([(KEY.to_string(), ca.to_string())]);
    match existing {
        None => Some(Publish::Create(ConfigMap {
            metadata: ObjectMeta {
                name: Some(CONFIG_MAP.to_string()),
                namespace: namespace.metadata.name.clone(),
                annotations: Some(BTreeMap::from([(
                    "kubernetes.io/description".to_string(),
                    DESCRIPTION.to_string(),
                )])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        })),
        // Exactly the bundle and nothing else, as upstream keeps it.
        Some(current)
            if current.data.as_ref() != Some(&data)
                || current.binary_data.as_ref().is_some_and(|b| !b.is_empty()) =>
        {
            let mut fixed = current.clone();
            fixed.data = Some(data);
            fixed.binary_data = None;
            fixed
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert("kubernetes.io/description".to_string(), DESCRIPTION.to_string());
            Some(Publish::Update(fixed))
        }
        Some(_) => None,
    }
}

struct Context {
    client: Client,
    config_maps: Store<ConfigMap>,
    ca: String,
}

/// Runs the publisher of the bundle `ca`: woken by the shared namespace cache and by the
/// ConfigMaps it keeps (read with `root`), writing as `client`.
pub fn run(
    root: Client,
    client: Client,
    namespaces: &mut Informer<Namespace>,
    ca: String,
) -> impl Future<Output = ()> + Send + 'static {
    let (config_maps, changed) = informer::named(Api::<ConfigMap>::all(root), CONFIG_MAP);
    Controller::for_shared_stream(namespaces.subscribe(), namespaces.store())
        .watches_stream(changed, |cm| cm.namespace().map(|ns| ObjectRef::new(&ns)))
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(Context { client, config_maps, ca }))
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(namespace: Arc<Namespace>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::warn!(namespace = %namespace.name_any(), error = %error, "cannot publish the root CA");
    Action::requeue(std::time::Duration::from_secs(5))
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let name = namespace.name_any();
    krust_client::informer::ready(&ctx.config_maps).await;
    let existing = ctx.config_maps.get(&ObjectRef::new(CONFIG_MAP).within(&name));
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let written = match publish(&namespace, existing.as_deref(), &ctx.ca) {
        None => return Ok(Action::await_change()),
        Some(Publish::Create(cm)) => api.create(&PostParams::default(), &cm).await,
        Some(Publish::Update(cm)) => api.replace(CONFIG_MAP, &PostParams::default(), &cm).await,
    };
    match written {
        Ok(_) => Ok(Action::await_change()),
        // Another writer won, or the namespace went away or began terminating: the cache
        // wakes this namespace again if there is still something to do.
        Err(kube::Error::Api(s))
            if s.is_already_exists() || s.is_conflict() || s.is_not_found() || s.is_forbidden() =>
        {
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(name: &str) -> Namespace {
        Namespace {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_config_map_is_created_with_the_bundle() {
        let Some(Publish::Create(cm)) = publish(&namespace("a"), None, "CA") else {
            panic!("expected a create");
        };
        assert_eq!(cm.metadata.namespace.as_deref(), Some("a"));
        assert_eq!(cm.data.as_ref().and_then(|d| d.get(KEY)).map(String::as_str), Some("CA"));
        assert_eq!(publish(&namespace("a"), Some(&cm), "CA"), None);
    }

    #[test]
    fn a_changed_bundle_is_put_back() {
        let Some(Publish::Create(mut cm)) = publish(&namespace("a"), None, "CA") else {
            panic!("expected a create");
        };
        cm.data = Some(BTreeMap::from([(KEY.to_string(), "other".to_string())]));
        let Some(Publish::Update(fixed)) = publish(&namespace("a"), Some(&cm), "CA") else {
            panic!("expected an update");
        };
        assert_eq!(fixed.data.as_ref().and_then(|d| d.get(KEY)).map(String::as_str), Some("CA"));
    }
}
