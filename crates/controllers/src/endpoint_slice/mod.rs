//! The EndpointSlice controller (upstream's `endpointslice-controller`): for every Service
//! with a selector, EndpointSlices (owned by the service) listing the selected pods with
//! their readiness, serving and terminating conditions, node, zone and hostname, under the
//! ports each offers. A service without a selector is left to whoever writes its slices.

pub mod plan;
pub mod tracker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use crate::runtime::owner::controller_of;
use krust_client::informer::ByNamespace;
use krust_client::{Events, Informer};
use tracker::Tracker;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "endpointslice-controller";

struct Context {
    client: Client,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
    slices: Store<EndpointSlice>,
    slices_by_namespace: ByNamespace,
    nodes: Store<Node>,
    tracker: Tracker,
    events: Events,
}

/// Runs the controller, woken by the shared Service, pod and EndpointSlice caches (and
/// reading the node cache for zones), writing as `client`.
pub fn run(
    client: Client,
    services: &mut Informer<Service>,
    pods: &mut Informer<Pod>,
    slices: &mut Informer<EndpointSlice>,
    nodes: &Informer<Node>,
) -> impl Future<Output = ()> + Send + 'static {
    let (service_store, services_by_namespace) = (services.store(), services.by_namespace());
    let (slice_store, slices_by_namespace) = (slices.store(), slices.by_namespace());
    let ctx = Context {
        events: Events::new(client.clone(), NAME),
        client,
        pods: pods.store(),
        pods_by_namespace: pods.by_namespace(),
        slices: slices.store(),
        slices_by_namespace: slices.by_namespace(),
        nodes: nodes.store(),
        tracker: Tracker::default(),
    };
    let mapped = service_store.clone();
    Controller::for_shared_stream(services.subscribe(), service_store)
        .watches_shared_stream(pods.subscribe(), move |pod| {
            services_of(&pod, &mapped, &services_by_namespace, &slice_store, &slices_by_namespace)
        })
        .watches_shared_stream(slices.subscribe(), |slice| service_of(&slice))
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
}

/// The services a pod's change concerns: those of its namespace whose selector matches it
/// now, and those whose slices list it (its labels may no longer match).
fn services_of(
    pod: &Pod,
    services: &Store<Service>,
    services_by_namespace: &ByNamespace,
    slices: &Store<EndpointSlice>,
    slices_by_namespace: &ByNamespace,
) -> Vec<ObjectRef<Service>> {
    let namespace = pod.namespace().unwrap_or_default();
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let mut wanted: Vec<ObjectRef<Service>> = services_by_namespace
        .objects(&namespace, services)
        .into_iter()
        .filter(|svc| selector(svc).is_some_and(|s| s.matches(labels)))
        .map(|svc| ObjectRef::from(svc.as_ref()))
        .collect();
    let uid = pod.metadata.uid.as_deref();
    for slice in slices_by_namespace.objects(&namespace, slices) {
        let lists = slice
            .endpoints
            .iter()
            .any(|e| e.target_ref.as_ref().and_then(|t| t.uid.as_deref()) == uid);
        if let Some(service) = slice.labels().get(plan::SERVICE_NAME).filter(|_| lists) {
            let at = ObjectRef::new(service).within(&namespace);
            if !wanted.contains(&at) {
                wanted.push(at);
            }
        }
    }
    wanted
}

/// The service a slice this controller manages belongs to.
fn service_of(slice: &EndpointSlice) -> Option<ObjectRef<Service>> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(plan::MANAGED_BY).map(String::as_str) != Some(plan::CONTROLLER) {
        return None;
    }
    let service = labels.get(plan::SERVICE_NAME)?;
    Some(ObjectRef::new(service).within(&slice.namespace().unwrap_or_default()))
}

/// A service's selector; `None` for a service without one.
fn selector(service: &Service) -> Option<Selector> {
    let labels = service.spec.as_ref()?.selector.as_ref()?;
    Some(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn error_policy(service: Arc<Service>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(service = %service.name_any(), error = %error, "endpoint slices sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let key = format!("{namespace}/{name}");
    let external = service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName");
    let Some(selector) = selector(&service).filter(|_| !external) else {
        return Ok(Action::await_change());
    };
    if service.metadata.deletion_timestamp.is_some() {
        ctx.tracker.forget(&key);
        return Ok(Action::await_change());
    }
    krust_client::informer::ready(&ctx.pods).await;
    krust_client::informer::ready(&ctx.slices).await;
    krust_client::informer::ready(&ctx.nodes).await;
    let slices = ctx.slices_by_namespace.objects(&namespace, &ctx.slices);
    let mine: Vec<&EndpointSlice> =
        slices.iter().map(AsRef::as_ref).filter(|s| plan::managed_for(s, &name)).collect();
    if ctx.tracker.stale(&key, &mine) {
        // Its events bring the service back; the requeue is for a lost one.
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // Slices of an earlier service of the same name go (the collector would, later).
    let uid = service.metadata.uid.as_deref();
    let (current, foreign): (Vec<&EndpointSlice>, Vec<&EndpointSlice>) = mine
        .into_iter()
        .partition(|s| controller_of(&s.metadata).is_some_and(|o| Some(o.uid.as_str()) == uid));
    let pods = ctx.pods_by_namespace.objects(&namespace, &ctx.pods);
    let empty = Default::default();
    let selected: Vec<&Pod> = pods
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| selector.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
        .collect();
    let zone = |node: &str| ctx.nodes.get(&ObjectRef::new(node)).and_then(|n| plan::zone_of(&n));
    let mut plan = plan::plan(&service, &selected, &current, zone);
    plan.delete.extend(foreign.into_iter().cloned());
    if plan.is_empty() {
        return Ok(Action::await_change());
    }
    match write(&ctx.client, &namespace, plan, Some((&ctx.tracker, &key))).await {
        Ok(()) => Ok(Action::await_change()),
        // Changed or gone meanwhile: its event brings the service back.
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => {
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        // The namespace is going away: nothing may be created in it.
        Err(e) if crate::runtime::namespace_terminating(&e) => Ok(Action::await_change()),
        Err(e) => {
            ctx.events.warning(
                service.object_ref(&()),
                "FailedToUpdateEndpointSlices",
                "UpdateEndpointSlices",
                format!("Error updating Endpoint Slices for Service {namespace}/{name}: {e}"),
            );
            Err(e)
        }
    }
}

/// Carries out a plan: deletions, then updates, then creations, each recorded for
/// `tracker` (with the service's key) as the server answered it, when given.
pub(crate) async fn write(
    client: &Client,
    namespace: &str,
    plan: plan::Plan,
    tracker: Option<(&Tracker, &str)>,
) -> Result<(), kube::Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    for slice in &plan.delete {
        let name = slice.name_any();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: slice.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
        if let Some((tracker, key)) = tracker {
            tracker.deleted(key, &name);
        }
    }
    for slice in &plan.update {
        let written = api.replace(&slice.name_any(), &PostParams::default(), slice).await?;
        if let Some((tracker, key)) = tracker {
            tracker.written(key, &written);
        }
    }
    for slice in &plan.create {
        let written = api.create(&PostParams::default(), slice).await?;
        if let Some((tracker, key)) = tracker {
            tracker.written(key, &written);
        }
    }
    Ok(())
}
