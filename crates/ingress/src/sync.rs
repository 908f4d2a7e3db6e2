//! The watches and the loop: IngressClasses, Ingresses, Services, EndpointSlices and Secrets
//! kept in reflector stores; every burst of changes rebuilds the routing table and the
//! certificates (swapped whole for the listeners) and brings the served Ingresses' status to
//! the addresses the proxy listens on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::class;
use crate::proxy::Shared;
use crate::routes::{self, Inputs, Key, Table};
use crate::tls::{Certificates, Resolver};

fn key_of<K: Resource>(object: &K) -> Key {
    (
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default(),
    )
}

/// A store of `api`'s objects and a stream that yields on each change.
fn reflect<K>(api: Api<K>) -> (Store<K>, impl Stream<Item = ()> + Send)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .filter_map(|event| async move {
            match event {
                Ok(_) => Some(()),
                Err(e) => {
                    tracing::warn!(error = %e, "ingress: a watch failed");
                    None
                }
            }
        });
    (reader, changes)
}

/// What the loop writes to.
pub struct Targets {
    /// The listeners' routing table.
    pub shared: Arc<Shared>,
    /// The HTTPS listener's certificates.
    pub resolver: Arc<Resolver>,
    /// The addresses written into served Ingresses' status.
    pub addresses: Vec<String>,
    /// The controller name of this controller's IngressClasses.
    pub controller: String,
}

/// Runs the watches and the loop until the process ends.
pub async fn run(client: kube::Client, targets: Targets) {
    let (classes, a) = reflect(Api::<IngressClass>::all(client.clone()));
    let (ingresses, b) = reflect(Api::<Ingress>::all(client.clone()));
    let (services, c) = reflect(Api::<Service>::all(client.clone()));
    let (slices, d) = reflect(Api::<EndpointSlice>::all(client.clone()));
    let (secrets, e) = reflect(Api::<Secret>::all(client.clone()));
    let mut changes =
        futures::stream::select_all([a.boxed(), b.boxed(), c.boxed(), d.boxed(), e.boxed()]);
    let ready = async {
        for result in [
            classes.wait_until_ready().await,
            ingresses.wait_until_ready().await,
            services.wait_until_ready().await,
            slices.wait_until_ready().await,
            secrets.wait_until_ready().await,
        ] {
            if result.is_err() {
                return false;
            }
        }
        true
    };
    let mut ready = std::pin::pin!(ready);
    // The stores fill as the streams are driven: drive them until every first list is in.
    loop {
        tokio::select! {
            done = &mut ready => { if !done { return; } break; }
            change = changes.next() => if change.is_none() { return; },
        }
    }
    loop {
        apply(&classes, &ingresses, &services, &slices, &secrets, &targets, &client).await;
        if changes.next().await.is_none() {
            return;
        }
        while let Some(Some(())) = changes.next().now_or_never() {}
    }
}

async fn apply(
    classes: &Store<IngressClass>,
    ingresses: &Store<Ingress>,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    secrets: &Store<Secret>,
    targets: &Targets,
    client: &kube::Client,
) {
    let classes = classes.state();
    let class_refs: Vec<&IngressClass> = classes.iter().map(|c| c.as_ref()).collect();
    let served: BTreeMap<Key, Arc<Ingress>> = ingresses
        .state()
        .into_iter()
        .filter(|i| class::ours(i, &class_refs, &targets.controller))
        .map(|i| (key_of(i.as_ref()), i))
        .collect();
    let inputs = Inputs {
        ingresses: served
            .iter()
            .map(|(k, i)| (k.clone(), i.spec.clone().unwrap_or_default()))
            .collect(),
        services: services
            .state()
            .iter()
            .map(|s| (key_of(s.as_ref()), routes::service_view(s)))
            .collect(),
        slices: slices
            .state()
            .iter()
            .filter_map(|s| Some((key_of(s.as_ref()), routes::slice_view(s)?)))
            .collect(),
    };
    let table = Table::build(&inputs);
    let tls: HashMap<Key, (Vec<u8>, Vec<u8>)> = secrets
        .state()
        .iter()
        .filter(|s| table.tls.values().any(|k| *k == key_of(s.as_ref())))
        .filter_map(|s| {
            let data = s.data.as_ref()?;
            Some((
                key_of(s.as_ref()),
                (data.get("tls.crt")?.0.clone(), data.get("tls.key")?.0.clone()),
            ))
        })
        .collect();
    let certificates = Certificates::new(table.tls.iter(), &tls);
    *targets.resolver.certificates.write().unwrap_or_else(|e| e.into_inner()) =
        Arc::new(certificates);
    *targets.shared.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);

    // Status: the served Ingresses list the proxy's addresses.
    for (key, ingress) in &served {
        let current: Vec<String> = ingress
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip.clone())
            .collect();
        if current == targets.addresses {
            continue;
        }
        let ips: Vec<serde_json::Value> =
            targets.addresses.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
        let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": ips}}});
        let api: Api<Ingress> = Api::namespaced(client.clone(), &key.0);
        match api
            .patch_status(&ingress.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(ingress = %format!("{}/{}", key.0, key.1), error = %e, "ingress: cannot write the status")
            }
        }
    }
}
