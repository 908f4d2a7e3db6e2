//! The disruption controller (upstream's `disruption-controller`): keeps each
//! PodDisruptionBudget's status (expected, healthy and desired pods, disruptions allowed,
//! recently evicted pods, the `DisruptionAllowed` condition) current with the pods it selects,
//! so that the eviction subresource and the scheduler's preemption read the budget from it.
//! The arithmetic is `budget.rs`; this file finds the pods and their controllers' scale.

pub mod budget;

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use crate::runtime::owner::{controller_of, selector};
use krust_client::informer::ByNamespace;
use krust_client::{Events, Informer};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "disruption-controller";

/// How often every budget is looked at again even without events.
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: Client,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    events: Events,
}

/// Runs the controller: woken by the budgets and by the pods they select.
pub fn run(
    client: Client,
    budgets: &mut Informer<PodDisruptionBudget>,
    pods: &mut Informer<Pod>,
    replica_sets: &mut Informer<ReplicaSet>,
    deployments: &mut Informer<Deployment>,
) -> impl Future<Output = ()> + Send + 'static {
    let by_selector = budgets.store();
    let ctx = Context {
        events: Events::new(client.clone(), NAME),
        client,
        pods: pods.store(),
        pods_by_namespace: pods.by_namespace(),
        replica_sets: replica_sets.store(),
        deployments: deployments.store(),
    };
    Controller::for_shared_stream(budgets.subscribe(), budgets.store())
        .watches_shared_stream(pods.subscribe(), move |pod| budgets_of(&pod, &by_selector))
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
}

/// The budgets of a pod's namespace that select it.
fn budgets_of(
    pod: &Pod,
    budgets: &Store<PodDisruptionBudget>,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    let namespace = pod.namespace().unwrap_or_default();
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    budgets
        .state()
        .iter()
        .filter(|b| b.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|b| selects(b, labels))
        .map(|b| ObjectRef::from(b.as_ref()))
        .collect()
}

/// Whether the budget selects pods with `labels` (a missing selector selects none, an empty
/// one every pod of the namespace, as `policy/v1` says).
fn selects(
    budget: &PodDisruptionBudget,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    use kube::core::SelectorExt;
    budget
        .spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .and_then(selector)
        .is_some_and(|s| s.matches(labels))
}

fn error_policy(pdb: Arc<PodDisruptionBudget>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(pdb = %pdb.name_any(), error = %error, "disruption budget sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(
    pdb: Arc<PodDisruptionBudget>,
    ctx: Arc<Context>,
) -> Result<Action, kube::Error> {
    krust_client::informer::ready(&ctx.pods).await;
    krust_client::informer::ready(&ctx.replica_sets).await;
    krust_client::informer::ready(&ctx.deployments).await;
    let namespace = pdb.namespace().unwrap_or_default();
    let empty = Default::default();
    let pods = ctx.pods_by_namespace.objects(&namespace, &ctx.pods);
    let selected: Vec<&Pod> = pods
        .iter()
        .map(AsRef::as_ref)
        .filter(|p| selects(&pdb, p.metadata.labels.as_ref().unwrap_or(&empty)))
        .collect();
    let now = Timestamp::now();
    let scale = if budget::needs_scale(&pdb) {
        let (scale, unmanaged) = expected_scale(&ctx, &namespace, &selected).await;
        if unmanaged {
            ctx.events.warning(
                pdb.object_ref(&()),
                "UnmanagedPods",
                "CalculateExpectedPodCount",
                "Pods selected by this PodDisruptionBudget were found to be unmanaged. As a \
                 result, the status of the PDB cannot be calculated correctly, which may result \
                 in undefined behavior. To account for these pods please set \
                 \".spec.minAvailable\" field of the PDB to an integer value."
                    .to_string(),
            );
        }
        Some(scale)
    } else {
        None
    };
    let wanted = match budget::status(&pdb, &selected, scale, now) {
        Ok(status) => status,
        Err(message) => budget::failed(&pdb, &message, now),
    };
    let changed = pdb.status.as_ref().is_none_or(|current| {
        let strip = |s: &k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus| {
            let mut s = s.clone();
            for c in s.conditions.iter_mut().flatten() {
                c.last_transition_time =
                    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH);
            }
            s
        };
        strip(current) != strip(&wanted)
    });
    if changed {
        let mut updated = (*pdb).clone();
        updated.status = Some(wanted.clone());
        let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), &namespace);
        match api.replace_status(&pdb.name_any(), &PostParams::default(), &updated).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {
                return Ok(Action::await_change());
            }
            Err(e) => return Err(e),
        }
    }
    // Come back when the oldest recorded eviction times out.
    let expiry = wanted
        .disrupted_pods
        .iter()
        .flatten()
        .map(|(_, at)| at.0 + budget::DELETION_TIMEOUT)
        .min()
        .and_then(|at| Duration::try_from(at.duration_since(now)).ok())
        .map(|d| d + Duration::from_secs(1));
    Ok(Action::requeue(expiry.map_or(RESYNC, |d| d.min(RESYNC))))
}

/// The summed scale of the selected pods' controllers (each counted once), as upstream's
/// `getExpectedScale`: a ReplicaSet's, or its Deployment's when a Deployment controls it, a
/// StatefulSet's or a ReplicationController's. Also whether some pods have no such controller.
async fn expected_scale(ctx: &Context, namespace: &str, pods: &[&Pod]) -> (i32, bool) {
    let mut seen = HashSet::new();
    let mut scale = 0i32;
    let mut unmanaged = false;
    for pod in pods {
        let Some(owner) = controller_of(&pod.metadata) else {
            unmanaged = true;
            continue;
        };
        if !seen.insert(owner.uid.clone()) {
            continue;
        }
        let replicas = match (owner.api_version.as_str(), owner.kind.as_str()) {
            ("apps/v1", "ReplicaSet") => {
                let rs = ctx.replica_sets.get(&ObjectRef::new(&owner.name).within(namespace));
                match rs {
                    Some(rs) => {
                        match controller_of(&rs.metadata).filter(|o| o.kind == "Deployment") {
                            Some(d) if seen.insert(d.uid.clone()) => ctx
                                .deployments
                                .get(&ObjectRef::new(&d.name).within(namespace))
                                .map(|d| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
                            Some(_) => Some(0),
                            None => Some(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)),
                        }
                    }
                    None => None,
                }
            }
            ("apps/v1", "StatefulSet") => {
                let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
                api.get_scale(&owner.name).await.ok().and_then(|s| s.spec).and_then(|s| s.replicas)
            }
            ("v1", "ReplicationController") => {
                let api: Api<ReplicationController> =
                    Api::namespaced(ctx.client.clone(), namespace);
                api.get_scale(&owner.name).await.ok().and_then(|s| s.spec).and_then(|s| s.replicas)
            }
            _ => None,
        };
        match replicas {
            Some(n) => scale = scale.saturating_add(n),
            None => unmanaged = true,
        }
    }
    (scale, unmanaged)
}
