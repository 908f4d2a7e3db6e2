//! The PVC protection controller (upstream's `pvc-protection-controller`): a claim being
//! deleted keeps `kubernetes.io/pvc-protection` while a scheduled pod uses it
//! ([`claim_use`](super::claim_use)). The pod cache answers first; when it finds no user, a
//! live list of the namespace's pods confirms it before the finalizer goes (the cache may not
//! hold a pod created a moment ago), as upstream does.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use krust_client::Informer;
use krust_client::informer::ByNamespace;

use super::claim_use::{claim_names, pod_uses};
use super::{change, needs_use_check, protected, write};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "pvc-protection-controller";

/// The finalizer it keeps on claims (the admission plugin's).
pub const FINALIZER: &str = "kubernetes.io/pvc-protection";

struct Context {
    client: Client,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
}

/// Runs the controller over the shared claim and pod caches, writing as `client`. A pod's
/// change (its deletion included) wakes the claims it names.
pub fn run(
    client: Client,
    claims: &mut Informer<PersistentVolumeClaim>,
    pods: &mut Informer<Pod>,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx =
        Arc::new(Context { client, pods: pods.store(), pods_by_namespace: pods.by_namespace() });
    Controller::for_shared_stream(claims.subscribe(), claims.store())
        .watches_shared_stream(pods.subscribe(), |pod: Arc<Pod>| {
            let namespace = pod.namespace().unwrap_or_default();
            claim_names(&pod)
                .into_iter()
                .map(|name| ObjectRef::<PersistentVolumeClaim>::new(&name).within(&namespace))
                .collect::<Vec<_>>()
        })
        .with_config(crate::controller_config())
        .run(reconcile, |claim, error, _| super::retry(&claim.name_any(), error), ctx)
        .for_each(|_| futures::future::ready(()))
}

async fn reconcile(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Action, kube::Error> {
    let deleting = claim.metadata.deletion_timestamp.is_some();
    let protected = protected(claim.as_ref(), FINALIZER);
    let namespace = claim.namespace().unwrap_or_default();
    let in_use = needs_use_check(deleting, protected) && in_use(&ctx, &namespace, &claim).await?;
    let change = change(deleting, protected, in_use);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    tracing::debug!(claim = %claim.name_any(), %namespace, ?change, "pvc protection");
    write(&claims, claim.as_ref(), FINALIZER, change).await?;
    Ok(Action::await_change())
}

/// Whether a pod uses `claim`: the cache first, then, if it knows of none, a live list.
async fn in_use(
    ctx: &Context,
    namespace: &str,
    claim: &PersistentVolumeClaim,
) -> Result<bool, kube::Error> {
    let cached = ctx.pods_by_namespace.objects(namespace, &ctx.pods);
    if cached.iter().any(|pod| pod_uses(pod, claim)) {
        return Ok(true);
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let live = pods.list(&ListParams::default()).await?;
    Ok(live.items.iter().any(|pod| pod_uses(pod, claim)))
}
