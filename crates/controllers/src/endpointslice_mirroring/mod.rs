//! The EndpointSlice mirroring controller (upstream's `endpointslicemirroring-controller`):
//! the Endpoints of a Service without a selector, written by hand or by another controller,
//! are mirrored into EndpointSlices (owned by the Endpoints), so that the service proxy and
//! cluster DNS, which read slices, serve them too. Endpoints labelled
//! `endpointslice.kubernetes.io/skip-mirror: "true"` are left alone; mirrored slices of an
//! Endpoints whose Service gained a selector or went away are deleted (the garbage collector
//! deletes those of a deleted Endpoints).

pub mod plan;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};

use crate::endpoint_slice;
use crate::endpoint_slice::plan::{MANAGED_BY, SERVICE_NAME};
use crate::runtime::owner::controller_of;
use krust_client::informer::ByNamespace;
use krust_client::{Events, Informer};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "endpointslicemirroring-controller";

struct Context {
    client: Client,
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    slices_by_namespace: ByNamespace,
    events: Events,
}

/// Runs the controller, woken by the shared Endpoints, Service and EndpointSlice caches,
/// writing as `client`.
pub fn run(
    client: Client,
    endpoints: &mut Informer<Endpoints>,
    services: &mut Informer<Service>,
    slices: &mut Informer<EndpointSlice>,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Context {
        events: Events::new(client.clone(), NAME),
        client,
        services: services.store(),
        slices: slices.store(),
        slices_by_namespace: slices.by_namespace(),
    };
    Controller::for_shared_stream(endpoints.subscribe(), endpoints.store())
        .watches_shared_stream(services.subscribe(), |service| {
            Some(ObjectRef::new(&service.name_any()).within(&service.namespace()?))
        })
        .watches_shared_stream(slices.subscribe(), |slice| endpoints_of(&slice))
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
}

/// The Endpoints a slice this controller manages mirrors.
fn endpoints_of(slice: &EndpointSlice) -> Option<ObjectRef<Endpoints>> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(MANAGED_BY).map(String::as_str) != Some(plan::CONTROLLER) {
        return None;
    }
    let name = labels.get(SERVICE_NAME)?;
    Some(ObjectRef::new(name).within(&slice.namespace()?))
}

fn error_policy(endpoints: Arc<Endpoints>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(endpoints = %endpoints.name_any(), %error, "mirroring endpoints failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(endpoints: Arc<Endpoints>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let namespace = endpoints.namespace().unwrap_or_default();
    let name = endpoints.name_any();
    if endpoints.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    krust_client::informer::ready(&ctx.services).await;
    krust_client::informer::ready(&ctx.slices).await;
    let service = ctx.services.get(&ObjectRef::new(&name).within(&namespace));
    let slices = ctx.slices_by_namespace.objects(&namespace, &ctx.slices);
    let mirrored: Vec<&EndpointSlice> = slices
        .iter()
        .map(AsRef::as_ref)
        .filter(|s| endpoints_of(s).is_some_and(|e| e.name == name))
        .collect();
    // Slices of an earlier Endpoints of the same name go.
    let uid = endpoints.metadata.uid.as_deref();
    let (current, foreign): (Vec<&EndpointSlice>, Vec<&EndpointSlice>) = mirrored
        .into_iter()
        .partition(|s| controller_of(&s.metadata).is_some_and(|o| Some(o.uid.as_str()) == uid));
    let desired = if plan::should_mirror(&endpoints, service.as_deref()) {
        plan::desired(&endpoints)
    } else {
        Vec::new()
    };
    let mut plan = plan::plan(desired, &current);
    plan.delete.extend(foreign.into_iter().cloned());
    if plan.is_empty() {
        return Ok(Action::await_change());
    }
    match endpoint_slice::write(&ctx.client, &namespace, plan, None).await {
        Ok(()) => Ok(Action::await_change()),
        // Changed or gone meanwhile: its event brings the Endpoints back.
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => {
            Ok(Action::requeue(Duration::from_millis(200)))
        }
        // The namespace is going away: nothing may be created in it.
        Err(e) if crate::runtime::namespace_terminating(&e) => Ok(Action::await_change()),
        Err(e) => {
            ctx.events.warning(
                endpoints.object_ref(&()),
                "FailedToUpdateEndpointSlices",
                "UpdateEndpointSlices",
                format!("Error mirroring Endpoints {namespace}/{name} to EndpointSlices: {e}"),
            );
            Err(e)
        }
    }
}
