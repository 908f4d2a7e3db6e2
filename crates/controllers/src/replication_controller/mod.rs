//! The ReplicationController controller (upstream's `replication-controller`): the
//! ReplicaSet controller's passes over each ReplicationController in its ReplicaSet form
//! (`conversion.rs`), with the controller reference naming `v1` ReplicationController, and the
//! status written back in the controller's own shape.

pub mod conversion;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::PostParams;
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::replicaset::manage::REPLICATION_CONTROLLER;
use crate::replicaset::{self, Context};
use crate::runtime::owner::controller_of;
use krust_client::Informer;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "replication-controller";

/// Runs the controller: woken by the shared ReplicationController and pod caches, writing as
/// `client`.
pub fn run(
    client: Client,
    controllers: &mut Informer<ReplicationController>,
    pods: &mut Informer<Pod>,
) -> impl Future<Output = ()> + Send + 'static {
    let by_selector = controllers.store();
    let ctx = Context::new(client, pods, NAME);
    let (observed, pod_store) = (ctx.expectations(), pods.store());
    Controller::for_shared_stream(controllers.subscribe(), controllers.store())
        .watches_shared_stream(pods.subscribe(), move |pod| {
            replicaset::observe(&pod, &pod_store, &observed);
            controllers_of(&pod, &by_selector)
        })
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
}

/// The controllers a pod's change concerns: its controller if that is a
/// ReplicationController, or, for an orphan, every one of its namespace that selects it.
fn controllers_of(
    pod: &Pod,
    controllers: &Store<ReplicationController>,
) -> Vec<ObjectRef<ReplicationController>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        if owner.kind == REPLICATION_CONTROLLER.kind && owner.api_version == "v1" {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    controllers
        .state()
        .iter()
        .filter(|rc| rc.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|rc| {
            let selector =
                rc.spec.as_ref().and_then(|s| s.selector.as_ref()).filter(|s| !s.is_empty());
            selector.is_some_and(|s| {
                s.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<Selector>().matches(labels)
            })
        })
        .map(|rc| ObjectRef::from(rc.as_ref()))
        .collect()
}

fn error_policy(rc: Arc<ReplicationController>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(controller = %rc.name_any(), error = %error, "replication controller sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(
    rc: Arc<ReplicationController>,
    ctx: Arc<Context>,
) -> Result<Action, kube::Error> {
    let as_set = conversion::to_replica_set(&rc);
    let synced = replicaset::sync(&as_set, REPLICATION_CONTROLLER, &ctx).await;
    if !replicaset::same_status(as_set.status.as_ref(), &synced.status) {
        let mut updated = (*rc).clone();
        updated.status = Some(conversion::to_controller_status(synced.status));
        let api: Api<ReplicationController> =
            Api::namespaced(ctx.client.clone(), &rc.namespace().unwrap_or_default());
        match api
            .replace_subresource("status", &rc.name_any(), &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {
                return Ok(Action::await_change());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(synced.next)
}
