//! The service load balancer for bare hosts (upstream's `service-controller`): a LoadBalancer
//! Service's `status.loadBalancer.ingress` holds, for each of its IP families, the ready nodes'
//! addresses (as k3s's service load balancer gives them), or with a pool of that family
//! (`--load-balancer-ip-pool`) an address of its own from it; every node's service proxy
//! answers them on the Service's ports. The choices are in `decide.rs`.

pub mod decide;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

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
    services: Store<Service>,
    pool: Option<decide::Pool>,
    /// Pool addresses given and not yet seen in the cache, by Service (namespace, name): two
    /// Services reconciled before the cache shows the first one's status must not get the
    /// same address.
    given: Mutex<HashMap<IpAddr, (String, String)>>,
}

/// Runs the controller on the shared Service and Node caches, writing as `client`; with a
/// `pool`, each LoadBalancer Service gets an address of its own from it.
pub fn run(
    client: Client,
    services: &mut Informer<Service>,
    nodes: &mut Informer<Node>,
    pool: Option<decide::Pool>,
) -> impl Future<Output = ()> + Send + 'static {
    let context = Arc::new(Context {
        client,
        nodes: nodes.store(),
        services: services.store(),
        pool,
        given: Mutex::new(HashMap::new()),
    });
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
    // For each of its families: an address from the pool's range of it, else the nodes'.
    let mut addresses = Vec::new();
    for v6 in decide::families(&service).into_iter().filter(|_| decide::owned(&service)) {
        let Some(range) = ctx.pool.as_ref().and_then(|pool| pool.range(v6)) else {
            addresses
                .extend(decide::node_addresses(ctx.nodes.state().iter().map(|n| n.as_ref()), v6));
            continue;
        };
        match pool_address(&service, range, &ctx) {
            Some(ip) => addresses.push(ip.to_string()),
            None => {
                tracing::warn!(service = %service.name_any(), "the load balancer pool has no address left");
                return Ok(Action::requeue(std::time::Duration::from_secs(30)));
            }
        }
    }
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

/// Picks `service`'s address in `range` against every other Service's (those the cache
/// shows, and those given since), and remembers it as given.
fn pool_address(service: &Service, range: decide::Range, ctx: &Context) -> Option<IpAddr> {
    let key = (service.namespace().unwrap_or_default(), service.name_any());
    let services = ctx.services.state();
    let mut given = ctx.given.lock().unwrap_or_else(|e| e.into_inner());
    // What the cache shows now needs no memory; Services gone give theirs back.
    let holders: HashMap<(String, String), &Arc<Service>> =
        services.iter().map(|s| ((s.namespace().unwrap_or_default(), s.name_any()), s)).collect();
    given.retain(|ip, holder| {
        !range.contains(*ip)
            || holders.get(holder).is_some_and(|s| {
                decide::owned(s)
                    && decide::families(s).contains(&range.is_ipv6())
                    && !decide::held(s, range).contains(ip)
            })
    });
    let mut taken: BTreeSet<IpAddr> = services
        .iter()
        .filter(|s| (s.namespace().unwrap_or_default(), s.name_any()) != key)
        .flat_map(|s| decide::held(s, range))
        .collect();
    taken.extend(given.iter().filter(|(_, holder)| **holder != key).map(|(ip, _)| *ip));
    let ip = decide::pool_address(service, range, &taken)?;
    given.retain(|given_ip, holder| !range.contains(*given_ip) || *holder != key);
    given.insert(ip, key);
    Some(ip)
}
