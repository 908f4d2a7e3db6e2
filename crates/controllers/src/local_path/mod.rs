//! The local-path provisioner (as k3s's `local-path-provisioner`): makes a `hostPath` volume
//! in a directory of the node the scheduler chose for each claim of a class whose provisioner
//! is [`plan::PROVISIONER`], and deletes the volumes it made once their claims are gone.
//!
//! - At start it creates the default class [`plan::CLASS`] (`WaitForFirstConsumer`,
//!   `Delete`, marked default) unless a class of that name exists: a user's edit is kept.
//! - Claims: the binder asks for a volume by annotating the claim
//!   `volume.kubernetes.io/storage-provisioner` once the scheduler chose a node
//!   (`volume.kubernetes.io/selected-node`); this controller then creates `pvc-<claim uid>`,
//!   bound to the claim by its `claimRef` and pinned to the node by node affinity (the binder
//!   completes the binding). An existing volume of that name means it was made before.
//! - Volumes: one it made whose claim is gone (`Released`) with the `Delete` policy is
//!   deleted. The directory itself is the node agent's: it creates the directories of the
//!   volumes labelled with its node and removes those whose volume is gone, so this
//!   controller needs no access to the node's disk.
//!
//! The decisions are `plan.rs`'s; this module reads the shared caches and writes as the
//! `local-path-provisioner` service account.

pub mod plan;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use krust_client::Informer;

use crate::persistent_volume::objects::{ANN_SELECTED_NODE, annotation, claim_class, claim_key};
use crate::persistent_volume::recorder::Recorder;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "local-path-provisioner";

/// How soon a refused claim is looked at again (its event is held back meanwhile).
const RETRY_REFUSED: Duration = Duration::from_secs(60);

/// How soon a failed sync, or a failed creation of the default class, is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Why a sync failed (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A volume could not be created.
    #[error("cannot create volume {volume} for claim {claim}")]
    Create {
        /// The volume.
        volume: String,
        /// The claim, `namespace/name`.
        claim: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// A released volume could not be deleted.
    #[error("cannot delete volume {volume}")]
    Delete {
        /// The volume.
        volume: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
}

/// What the syncs read and write through.
struct Context {
    client: Client,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    nodes: Store<Node>,
    claims: Store<PersistentVolumeClaim>,
    events: Recorder,
    storage_path: String,
}

/// Runs the provisioner over the shared caches, writing as `client`: creates the default
/// class if absent, then provisions claims and deletes released volumes, with directories
/// under `storage_path` on the chosen node.
pub fn run(
    client: Client,
    claims: &mut Informer<PersistentVolumeClaim>,
    volumes: &mut Informer<PersistentVolume>,
    classes: &Informer<StorageClass>,
    nodes: &Informer<Node>,
    storage_path: String,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        events: Recorder::new(client.clone(), NAME),
        client: client.clone(),
        volumes: volumes.store(),
        classes: classes.store(),
        nodes: nodes.store(),
        claims: claims.store(),
        storage_path,
    });
    let claim_loop = Controller::for_shared_stream(claims.subscribe(), claims.store())
        .with_config(crate::controller_config())
        .run(reconcile_claim, error_policy, Arc::clone(&ctx))
        .for_each(|_| futures::future::ready(()));
    let volume_loop = Controller::for_shared_stream(volumes.subscribe(), volumes.store())
        .with_config(crate::controller_config())
        .run(reconcile_volume, error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    async move {
        futures::join!(ensure_default_class(client), claim_loop, volume_loop);
    }
}

/// Creates the default class unless a class of its name exists (never replacing it), trying
/// again until the server answers.
async fn ensure_default_class(client: Client) {
    let api: Api<StorageClass> = Api::all(client);
    loop {
        match api.create(&PostParams::default(), &plan::default_class()).await {
            Ok(_) => {
                tracing::info!(class = plan::CLASS, "created the default storage class");
                return;
            }
            Err(kube::Error::Api(status)) if status.is_already_exists() => return,
            Err(e) => {
                tracing::warn!(class = plan::CLASS, error = %e, "cannot create the default storage class; again soon");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

fn error_policy<K: Resource>(object: Arc<K>, error: &Error, _: Arc<Context>) -> Requeue {
    let name = object.meta().name.clone().unwrap_or_default();
    let cause = std::error::Error::source(error).map(ToString::to_string).unwrap_or_default();
    tracing::warn!(%name, error = %error, cause, "local-path sync failed");
    Requeue::requeue(RETRY)
}

/// Waits until every cache the syncs read holds its first list.
async fn caches_ready(ctx: &Context) {
    krust_client::informer::ready(&ctx.claims).await;
    krust_client::informer::ready(&ctx.volumes).await;
    krust_client::informer::ready(&ctx.classes).await;
    krust_client::informer::ready(&ctx.nodes).await;
}

async fn reconcile_claim(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    caches_ready(&ctx).await;
    let class = ctx.classes.get(&ObjectRef::new(claim_class(&claim)));
    let node = annotation(&claim.metadata, ANN_SELECTED_NODE)
        .filter(|n| !n.is_empty())
        .and_then(|n| ctx.nodes.get(&ObjectRef::new(n)));
    match plan::provision(&claim, class.as_deref(), node.as_deref(), &ctx.storage_path) {
        plan::Provision::Skip => Ok(Requeue::await_change()),
        plan::Provision::Refuse(note) => {
            tracing::debug!(claim = %claim_key(&claim), message = %note.message, "cannot provision");
            ctx.events.record(claim.object_ref(&()), &note);
            Ok(Requeue::requeue(RETRY_REFUSED))
        }
        plan::Provision::Create(volume) => {
            let name = volume.name_any();
            if ctx.volumes.get(&ObjectRef::new(&name)).is_some() {
                return Ok(Requeue::await_change());
            }
            let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
            match api.create(&PostParams::default(), &volume).await {
                Ok(_) => {
                    let node = volume
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(plan::NODE_LABEL))
                        .cloned()
                        .unwrap_or_default();
                    tracing::info!(claim = %claim_key(&claim), volume = %name, %node, "provisioned a local-path volume");
                    ctx.events.record(claim.object_ref(&()), &plan::succeeded(&name));
                }
                Err(kube::Error::Api(status)) if status.is_already_exists() => {}
                Err(source) => {
                    return Err(Error::Create { volume: name, claim: claim_key(&claim), source });
                }
            }
            Ok(Requeue::await_change())
        }
    }
}

async fn reconcile_volume(
    volume: Arc<PersistentVolume>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    caches_ready(&ctx).await;
    if !plan::deletes(&volume) {
        return Ok(Requeue::await_change());
    }
    let name = volume.name_any();
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: volume.metadata.uid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => tracing::info!(volume = %name, "deleted a released local-path volume"),
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        Err(kube::Error::Api(status)) if status.is_conflict() => {
            // Another volume of that name now: not the one that was released.
        }
        Err(source) => return Err(Error::Delete { volume: name, source }),
    }
    Ok(Requeue::await_change())
}
