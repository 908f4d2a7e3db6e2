//! The Endpoints controller (upstream's `endpoint-controller`): for every Service with a
//! selector, an Endpoints object of the same name listing the selected pods' addresses, ready
//! and not ready, under the ports each offers. Endpoints whose Service is gone are deleted;
//! a Service without a selector keeps the Endpoints its owner writes.

pub mod subsets;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use krust_client::informer::ByNamespace;
use krust_client::{Events, Informer};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "endpoint-controller";

/// Endpoints that carry this annotation were a leader-election lock, never a service's.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

struct Context {
    client: Client,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
    endpoints: Store<Endpoints>,
    events: Events,
}

/// Runs the controller, woken by the shared Service, pod and Endpoints caches, writing as
/// `client`.
pub fn run(
    client: Client,
    services: &mut Informer<Service>,
    pods: &mut Informer<Pod>,
    endpoints: &mut Informer<Endpoints>,
) -> impl Future<Output = ()> + Send + 'static {
    let (service_store, by_namespace) = (services.store(), services.by_namespace());
    let endpoint_store = endpoints.store();
    let ctx = Context {
        events: Events::new(client.clone(), NAME),
        client: client.clone(),
        pods: pods.store(),
        pods_by_namespace: pods.by_namespace(),
        endpoints: endpoints.store(),
    };
    let orphans =
        delete_orphans(client, services.subscribe(), service_store.clone(), endpoint_store.clone());
    let (mapped_services, mapped_endpoints) = (service_store.clone(), endpoint_store);
    let controller = Controller::for_shared_stream(services.subscribe(), service_store)
        .watches_shared_stream(pods.subscribe(), move |pod| {
            services_of(&pod, &mapped_services, &by_namespace, &mapped_endpoints)
        })
        .watches_shared_stream(endpoints.subscribe(), |e| {
            Some(ObjectRef::new(&e.name_any()).within(&e.namespace().unwrap_or_default()))
        })
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()));
    async move {
        tokio::join!(controller, orphans);
    }
}

/// The services a pod's change concerns: those of its namespace whose selector matches it
/// now, and those whose Endpoints list it (its labels may no longer match).
fn services_of(
    pod: &Pod,
    services: &Store<Service>,
    by_namespace: &ByNamespace,
    endpoints: &Store<Endpoints>,
) -> Vec<ObjectRef<Service>> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    by_namespace
        .objects(&namespace, services)
        .into_iter()
        .filter(|svc| {
            selector(svc).is_some_and(|s| s.matches(labels)) || {
                let at = ObjectRef::new(&svc.name_any()).within(&namespace);
                endpoints.get(&at).is_some_and(|e| lists(&e, name))
            }
        })
        .map(|svc| ObjectRef::from(svc.as_ref()))
        .collect()
}

/// Whether `endpoints` lists the pod `name`.
fn lists(endpoints: &Endpoints, name: &str) -> bool {
    endpoints.subsets.iter().flatten().any(|s| {
        s.addresses
            .iter()
            .chain(s.not_ready_addresses.iter())
            .flatten()
            .any(|a| a.target_ref.as_ref().and_then(|t| t.name.as_deref()) == Some(name))
    })
}

/// A service's selector; `None` for a service without one, whose endpoints its owner writes.
fn selector(service: &Service) -> Option<Selector> {
    let labels = service.spec.as_ref()?.selector.as_ref()?;
    Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn error_policy(service: Arc<Service>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(service = %service.name_any(), error = %error, "endpoints sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let Some(selector) = selector(&service) else { return Ok(Action::await_change()) };
    krust_client::informer::ready(&ctx.pods).await;
    krust_client::informer::ready(&ctx.endpoints).await;
    if service.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let pods = ctx.pods_by_namespace.objects(&namespace, &ctx.pods);
    let empty = Default::default();
    let selected: Vec<&Pod> = pods
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
        .collect();
    let (subsets, truncated) = subsets::subsets(&service, &selected);
    let current = ctx.endpoints.get(&ObjectRef::new(&name).within(&namespace));
    let wanted = subsets::endpoints(&service, current.as_deref(), subsets, truncated);
    if current.as_deref().is_some_and(|c| subsets::unchanged(c, &wanted)) {
        return Ok(Action::await_change());
    }
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    let written = match current {
        Some(_) => api.replace(&name, &PostParams::default(), &wanted).await,
        None => api.create(&PostParams::default(), &wanted).await,
    };
    match written {
        Ok(_) => Ok(Action::await_change()),
        // Changed, created or deleted meanwhile: its event brings the service back.
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        // The namespace is going away: nothing may be created in it.
        Err(e) if crate::runtime::namespace_terminating(&e) => Ok(Action::await_change()),
        Err(e) => {
            ctx.events.warning(
                service.object_ref(&()),
                "FailedToUpdateEndpoint",
                "UpdateEndpoint",
                format!("Failed to update endpoint {namespace}/{name}: {e}"),
            );
            Err(e)
        }
    }
}

/// Deletes Endpoints whose Service is gone: when a service's deletion is seen, and those the
/// cache shows without a Service at start (upstream's `checkLeftoverEndpoints`). Leader-election
/// locks are left alone. A service missing from the cache is confirmed gone with the API before
/// its Endpoints go.
async fn delete_orphans(
    client: Client,
    services: impl futures::Stream<Item = Arc<Service>> + Send,
    service_store: Store<Service>,
    endpoint_store: Store<Endpoints>,
) {
    // The cache's subscription is drained at once, so that it never waits for this task.
    let (queue, mut touched) = tokio::sync::mpsc::unbounded_channel();
    let drain = services.for_each(move |s| {
        let _ = queue.send(
            ObjectRef::<Endpoints>::new(&s.name_any()).within(&s.namespace().unwrap_or_default()),
        );
        futures::future::ready(())
    });
    let work = async move {
        krust_client::informer::ready(&service_store).await;
        krust_client::informer::ready(&endpoint_store).await;
        for orphan in endpoint_store.state() {
            delete_orphan(&client, &orphan, &service_store).await;
        }
        while let Some(at) = touched.recv().await {
            if let Some(orphan) = endpoint_store.get(&at) {
                delete_orphan(&client, &orphan, &service_store).await;
            }
        }
    };
    tokio::join!(drain, work);
}

/// Deletes `endpoints` if no Service of its name exists (in the cache, and then in the API).
async fn delete_orphan(client: &Client, endpoints: &Endpoints, services: &Store<Service>) {
    let (namespace, name) = (endpoints.namespace().unwrap_or_default(), endpoints.name_any());
    if services.get(&ObjectRef::new(&name).within(&namespace)).is_some()
        || endpoints.annotations().contains_key(LEADER_ANNOTATION)
    {
        return;
    }
    match Api::<Service>::namespaced(client.clone(), &namespace).get_opt(&name).await {
        Ok(None) => {}
        Ok(Some(_)) => return,
        Err(e) => {
            tracing::warn!(%namespace, endpoints = %name, error = %e, "cannot tell whether the service is gone");
            return;
        }
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: endpoints.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match Api::<Endpoints>::namespaced(client.clone(), &namespace).delete(&name, &params).await {
        Ok(_) => {
            tracing::debug!(%namespace, endpoints = %name, "deleted the endpoints of a deleted service")
        }
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
        Err(e) => {
            tracing::warn!(%namespace, endpoints = %name, error = %e, "cannot delete the endpoints of a deleted service")
        }
    }
}
