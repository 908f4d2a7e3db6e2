//! The service load balancer for bare hosts (upstream's `service-controller`, with the
//! node addresses k3s's service load balancer gives): a LoadBalancer Service's
//! `status.loadBalancer.ingress` holds the ready nodes' addresses, on which every node's
//! service proxy answers the Service's ports. The choices are in `decide.rs`.

pub mod decide;

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use krust_client::Informer;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "service-controller";

struct Context {
    client: Client,
    nodes: Store<Node>,
}

/// Runs the controller on the shared Service and Node caches, writing as `client`.
pub fn run(
    client: Client,
    services: &mut Informer<Service>,
    nodes: &mut Informer<Node>,
) -> impl Future<Output = ()> + Send + 'static {
    let context = Arc::new(Context { client, nodes: nodes.store() });
    // A node that comes, goes or changes readiness moves every load balancer's addresses.
    let node_changes = nodes.subscribe().map(|_| ());
    Controller::for_shared_stream(services.subscribe(), services.store())
        .reconcile_all_on(node_changes)
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, context)
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(service: Arc<Service>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::warn!(service = %service.name_any(), error = %error, "cannot write the load balancer status");
    Action::requeue(std::time::Duration::from_secs(5))
}

async fn reconcile(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    krust_client::informer::ready(&ctx.nodes).await;
    let nodes = ctx.nodes.state();
    let addresses = decide::node_addresses(nodes.iter().map(|n| n.as_ref()));
    let Some(ingress) = decide::ingress(&service, &addresses) else {
        return Ok(Action::await_change());
    };
    let namespace = service.namespace().unwrap_or_default();
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
    match api
        .patch_status(&service.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Action::await_change()),
        Err(e) => Err(e),
    }
}
