//! The PersistentVolume binder (upstream's `persistentvolume-binder`,
//! `pkg/controller/volume/persistentvolume`): binds claims to volumes and keeps both sides of
//! a binding consistent, as two loops like upstream's two work queues, one claim and one
//! volume at a time each (a sync is not reentrant: two at once could give one volume to two
//! claims; the resourceVersion guard on every write would refuse the second, but only after
//! the fact).
//!
//! - Claims (`claim.rs`): an unbound claim is bound to the best volume (`matching.rs`) or to
//!   the one it names, or to the one the scheduler or the user reserved for it; it waits for
//!   its first consumer when its class says so, for a provisioner when its class names one
//!   (the binder provisions nothing itself; krust's own is [`crate::local_path`]), or stays
//!   `Pending`; a bound claim whose volume is gone or taken is `Lost`.
//! - Volumes (`volume.rs`): `Available`, `Bound`, or `Released` once their claim is gone, then
//!   reclaimed by policy (`Retain` keeps them; `Delete` is left to the provisioner that made
//!   the volume; otherwise `Delete` and `Recycle` need a plugin krust does not have, so they
//!   become `Failed` as upstream's do without one).
//!
//! The writes (`binding.rs`) go through the API as the `persistent-volume-binder` service
//! account, each guarded by the resourceVersion it was decided on. Claims and volumes are
//! looked at again every 15 s (upstream's `--pvclaimbinder-sync-period`), so that a volume
//! created later binds a claim that waited; a volume's change also wakes the claims it may
//! serve at once. Events (`recorder.rs`) are upstream's, repeats held back.
//!
//! The `kubernetes.io/pvc-protection` and `kubernetes.io/pv-protection` finalizers the
//! StorageObjectInUseProtection admission plugin adds are not this controller's but
//! [`crate::volume_protection`]'s: a deleted claim goes once no pod uses it, and its volume
//! is released then.

pub mod binding;
pub mod claim;
pub mod matching;
pub mod objects;
pub mod quantity;
pub mod recorder;
pub mod volume;

#[cfg(test)]
pub(crate) mod fixtures;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::PostParams;
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use krust_client::Informer;
use krust_client::informer::ByNamespace;

use binding::NoCapacity;
use objects::{
    ANN_BIND_COMPLETED, CLAIM_BOUND, CLAIM_LOST, CLAIM_PENDING, VOLUME_AVAILABLE, VOLUME_BOUND,
    VOLUME_FAILED, VOLUME_RELEASED, claim_class, claim_key, claim_phase, claim_ref, has_annotation,
    uid, volume_class, volume_name, volume_phase,
};
use recorder::Recorder;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "persistent-volume-binder";

/// How often every claim and volume is looked at again (upstream's
/// `--pvclaimbinder-sync-period`).
pub const RESYNC: Duration = Duration::from_secs(15);

/// How soon a sync that lost a race (a conflict) is tried again.
const RETRY_CONFLICT: Duration = Duration::from_millis(500);

/// How soon a sync that failed otherwise is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// An event to record, as upstream words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// Upstream's reason.
    pub reason: &'static str,
    /// Upstream's message.
    pub message: String,
}

impl Note {
    /// A `Normal` event.
    pub fn normal(reason: &'static str, message: String) -> Self {
        Self { warning: false, reason, message }
    }

    /// A `Warning` event.
    pub fn warning(reason: &'static str, message: String) -> Self {
        Self { warning: true, reason, message }
    }
}

/// Upstream's event reasons (`pkg/controller/volume/events`, and the claim's lost states).
pub mod reason {
    /// A claim cannot be bound (no volume, or its volume is taken).
    pub const FAILED_BINDING: &str = "FailedBinding";
    /// A volume and a claim that point at each other do not fit.
    pub const VOLUME_MISMATCH: &str = "VolumeMismatch";
    /// A claim waits for a pod using it.
    pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
    /// A claim waits for the pods using it to be scheduled.
    pub const WAIT_FOR_POD_SCHEDULED: &str = "WaitForPodScheduled";
    /// A claim waits for an external provisioner.
    pub const EXTERNAL_PROVISIONING: &str = "ExternalProvisioning";
    /// A claim's volume cannot be provisioned.
    pub const PROVISIONING_FAILED: &str = "ProvisioningFailed";
    /// A claim's volume was provisioned (a provisioner's event).
    pub const PROVISIONING_SUCCEEDED: &str = "ProvisioningSucceeded";
    /// A bound claim's volume is gone.
    pub const CLAIM_LOST: &str = "ClaimLost";
    /// A bound claim's volume is bound to another claim.
    pub const CLAIM_MISBOUND: &str = "ClaimMisbound";
    /// A released volume cannot be deleted.
    pub const VOLUME_FAILED_DELETE: &str = "VolumeFailedDelete";
    /// A released volume cannot be recycled.
    pub const VOLUME_FAILED_RECYCLE: &str = "VolumeFailedRecycle";
    /// A released volume's reclaim policy is unknown.
    pub const VOLUME_UNKNOWN_RECLAIM_POLICY: &str = "VolumeUnknownReclaimPolicy";
}

/// Why a sync failed (it is tried again).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A write was refused or did not reach the server.
    #[error("cannot {what}")]
    Write {
        /// What was written.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// A claim could not be read from the API.
    #[error("cannot read claim {claim}")]
    Read {
        /// The claim, `namespace/name`.
        claim: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The claim cannot be synced as it is.
    #[error("cannot sync claim {claim}")]
    Claim {
        /// The claim, `namespace/name`.
        claim: String,
        /// Why.
        #[source]
        source: claim::Refusal,
    },
    /// The volume to bind reports no capacity.
    #[error("cannot bind claim {claim}")]
    Capacity {
        /// The claim, `namespace/name`.
        claim: String,
        /// Why.
        #[source]
        source: NoCapacity,
    },
    /// The claim was bound by the controller to a volume bound to another claim.
    #[error(
        "invalid binding of claim {claim} to volume {volume}: volume already claimed by another \
         claim"
    )]
    Misbound {
        /// The claim, `namespace/name`.
        claim: String,
        /// The volume.
        volume: String,
    },
}

impl Error {
    /// Whether the sync lost a race with another writer (tried again soon).
    fn is_conflict(&self) -> bool {
        matches!(self, Error::Write { source: kube::Error::Api(s), .. } if s.is_conflict())
    }
}

/// What the syncs read and write through.
struct Context {
    client: Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
    events: Recorder,
}

/// Runs the binder over the shared claim, volume, class and pod caches, writing as `client`.
pub fn run(
    client: Client,
    claims: &mut Informer<PersistentVolumeClaim>,
    volumes: &mut Informer<PersistentVolume>,
    classes: &mut Informer<StorageClass>,
    pods: &Informer<Pod>,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        events: Recorder::new(client.clone(), NAME),
        client,
        claims: claims.store(),
        volumes: volumes.store(),
        classes: classes.store(),
        pods: pods.store(),
        pods_by_namespace: pods.by_namespace(),
    });
    let one_at_a_time = kube::runtime::controller::Config::default().concurrency(1);
    let (for_volumes, for_classes) = (claims.store(), claims.store());
    let claim_loop = Controller::for_shared_stream(claims.subscribe(), claims.store())
        .watches_shared_stream(volumes.subscribe(), move |volume| {
            claims_for_volume(&volume, &for_volumes.state())
        })
        .watches_shared_stream(classes.subscribe(), move |_| unbound_claims(&for_classes.state()))
        .with_config(one_at_a_time.clone())
        .run(reconcile_claim, error_policy, Arc::clone(&ctx))
        .for_each(|_| futures::future::ready(()));
    let for_claims = volumes.store();
    let volume_loop = Controller::for_shared_stream(volumes.subscribe(), volumes.store())
        .watches_shared_stream(claims.subscribe(), move |claim| {
            volumes_for_claim(&claim, &for_claims.state())
        })
        .with_config(one_at_a_time)
        .run(reconcile_volume, error_policy, ctx)
        .for_each(|_| futures::future::ready(()));
    async move {
        futures::join!(claim_loop, volume_loop);
    }
}

/// The claims a volume's change concerns: the one it points at (it may have been reserved for
/// it, or be gone, making the claim `Lost`) and, while the volume is free, the unbound claims
/// it could serve (so that a new volume binds a waiting claim without waiting for the resync).
fn claims_for_volume(
    volume: &PersistentVolume,
    claims: &[Arc<PersistentVolumeClaim>],
) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    let mut wanted: Vec<ObjectRef<PersistentVolumeClaim>> = Vec::new();
    if let Some((namespace, name, _)) = claim_ref(volume) {
        wanted.push(ObjectRef::new(name).within(namespace));
    }
    let free = claim_ref(volume).is_none_or(|(_, _, uid)| uid.is_empty());
    if free && volume_phase(volume) == VOLUME_AVAILABLE {
        let name = volume.metadata.name.as_deref().unwrap_or_default();
        let class = volume_class(volume);
        wanted.extend(
            claims
                .iter()
                .filter(|c| !has_annotation(&c.metadata, ANN_BIND_COMPLETED))
                .filter(|c| match volume_name(c) {
                    "" => claim_class(c) == class,
                    named => named == name,
                })
                .map(|c| ObjectRef::from(c.as_ref())),
        );
    }
    wanted
}

/// The claims a class's change concerns: every unbound one (its binding mode or provisioner
/// may have changed, or a default class appeared).
fn unbound_claims(claims: &[Arc<PersistentVolumeClaim>]) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    claims
        .iter()
        .filter(|c| !has_annotation(&c.metadata, ANN_BIND_COMPLETED))
        .map(|c| ObjectRef::from(c.as_ref()))
        .collect()
}

/// The volumes a claim's change concerns (its deletion included): the one it names and those
/// pointing at it.
fn volumes_for_claim(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
) -> Vec<ObjectRef<PersistentVolume>> {
    let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let mut wanted: Vec<ObjectRef<PersistentVolume>> = volumes
        .iter()
        .filter(|v| claim_ref(v).is_some_and(|(ns, n, _)| ns == namespace && n == name))
        .map(|v| ObjectRef::from(v.as_ref()))
        .collect();
    let named = volume_name(claim);
    if !named.is_empty() && !wanted.iter().any(|r| r.name == named) {
        wanted.push(ObjectRef::new(named));
    }
    wanted
}

fn error_policy<K: Resource>(object: Arc<K>, error: &Error, _: Arc<Context>) -> Requeue {
    let name = object.meta().name.clone().unwrap_or_default();
    if error.is_conflict() {
        tracing::debug!(%name, error = %error, "persistent volume sync lost a race; again soon");
        return Requeue::requeue(RETRY_CONFLICT);
    }
    let cause = std::error::Error::source(error).map(ToString::to_string).unwrap_or_default();
    tracing::warn!(%name, error = %error, cause, "persistent volume sync failed");
    Requeue::requeue(RETRY)
}

/// Waits until every cache the syncs read holds its first list.
async fn caches_ready(ctx: &Context) {
    krust_client::informer::ready(&ctx.claims).await;
    krust_client::informer::ready(&ctx.volumes).await;
    krust_client::informer::ready(&ctx.classes).await;
    krust_client::informer::ready(&ctx.pods).await;
}

async fn reconcile_claim(
    claim: Arc<PersistentVolumeClaim>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    caches_ready(&ctx).await;
    let named_name = volume_name(&claim);
    let named = (!named_name.is_empty()).then(|| ctx.volumes.get(&ObjectRef::new(named_name)));
    // Only an unbound claim naming no volume searches the volumes (and may wait for its pods):
    // the others cost a look-up by name.
    let searches = !has_annotation(&claim.metadata, ANN_BIND_COMPLETED) && named_name.is_empty();
    let volumes = if searches { ctx.volumes.state() } else { Vec::new() };
    let volume_refs: Vec<&PersistentVolume> = volumes.iter().map(AsRef::as_ref).collect();
    let classes = ctx.classes.state();
    let class_refs: Vec<&StorageClass> = classes.iter().map(AsRef::as_ref).collect();
    let unscheduled = if searches {
        let namespace = claim.metadata.namespace.as_deref().unwrap_or_default();
        let pods = ctx.pods_by_namespace.objects(namespace, &ctx.pods);
        claim::unscheduled_pods(&claim, pods.iter().map(AsRef::as_ref))
    } else {
        Vec::new()
    };
    let inputs = claim::Inputs {
        named: named.as_ref().and_then(|v| v.as_deref()),
        volumes: &volume_refs,
        classes: &class_refs,
        unscheduled_pods: &unscheduled,
    };
    let key = claim_key(&claim);
    let action = claim::sync(&claim, &inputs)
        .map_err(|source| Error::Claim { claim: key.clone(), source })?;
    tracing::trace!(claim = %claim::describe(&claim), ?action, "claim synced");
    let writer = Writer { ctx: &ctx };
    match action {
        claim::Action::Bind(volume) => writer.bind(volume, &claim).await?,
        claim::Action::Pending(note) => {
            if let Some(note) = note {
                ctx.events.record(claim.object_ref(&()), &note);
            }
            writer.claim_status(&claim, CLAIM_PENDING, None).await?;
        }
        claim::Action::Lost(note) => {
            if claim_phase(&claim) != CLAIM_LOST {
                let written = writer.claim_status(&claim, CLAIM_LOST, None).await?;
                tracing::info!(claim = %key, reason = note.reason, "claim lost");
                ctx.events.record(written.object_ref(&()), &note);
            }
        }
        claim::Action::AssignClass(class) => {
            tracing::info!(claim = %key, class, "assigning the default storage class");
            writer.claim(&binding::claim_with_class(&claim, &class)).await?;
        }
        claim::Action::ExternalProvisioning(provisioner) => {
            let written = match binding::claim_with_provisioner(&claim, &provisioner) {
                Some(asked) => writer.claim(&asked).await?,
                None => claim.as_ref().clone(),
            };
            ctx.events.record(written.object_ref(&()), &claim::external_provisioning(&provisioner));
        }
        claim::Action::Event(note) => ctx.events.record(claim.object_ref(&()), &note),
        claim::Action::Invalid(note) => {
            ctx.events.record(claim.object_ref(&()), &note);
            return Err(Error::Misbound { claim: key, volume: named_name.to_string() });
        }
    }
    Ok(Requeue::requeue(RESYNC))
}

async fn reconcile_volume(
    volume: Arc<PersistentVolume>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    caches_ready(&ctx).await;
    let claim = claim_of(&volume, &ctx).await?;
    let action = volume::sync(&volume, claim.as_deref());
    tracing::trace!(volume = %volume.name_any(), ?action, "volume synced");
    let writer = Writer { ctx: &ctx };
    match action {
        volume::Action::Nothing => {}
        volume::Action::Phase(phase) => {
            if let Some(changed) = binding::volume_with_phase(&volume, phase, "") {
                writer.volume_status(&changed).await?;
            }
        }
        volume::Action::Release(reclaim) => {
            let mut current = volume.as_ref().clone();
            if volume::marks_released(&volume)
                && let Some(released) = binding::volume_with_phase(&volume, VOLUME_RELEASED, "")
            {
                let policy = volume
                    .spec
                    .as_ref()
                    .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
                let name = volume.name_any();
                tracing::info!(volume = %name, policy, "volume released, its policy applies");
                current = writer.volume_status(&released).await?;
            }
            if let volume::Reclaim::Fail(note) = reclaim
                && let Some(failed) =
                    binding::volume_with_phase(&current, VOLUME_FAILED, &note.message)
            {
                let written = writer.volume_status(&failed).await?;
                ctx.events.record(written.object_ref(&()), &note);
            }
        }
        volume::Action::Mismatch { volume: on_volume, claim: on_claim } => {
            ctx.events.record(volume.object_ref(&()), &on_volume);
            if let Some(claim) = &claim {
                ctx.events.record(claim.object_ref(&()), &on_claim);
            }
        }
        volume::Action::Unbind => {
            let name = volume.name_any();
            tracing::info!(volume = %name, "its claim is bound to another volume: unbinding");
            let written = writer.volume(&binding::unbind_volume(&volume)).await?;
            if let Some(available) = binding::volume_with_phase(&written, VOLUME_AVAILABLE, "") {
                writer.volume_status(&available).await?;
            }
        }
    }
    Ok(Requeue::requeue(RESYNC))
}

/// The claim `volume` points at, if it exists with the uid the volume holds. The cache is
/// asked first; when it shows no such claim (or one of another uid) and the volume is not
/// released yet, the API is asked (the claim of a binding the scheduler made may not be cached
/// yet, and a volume must not be released for a claim that exists).
async fn claim_of(
    volume: &PersistentVolume,
    ctx: &Context,
) -> Result<Option<Arc<PersistentVolumeClaim>>, Error> {
    let Some((namespace, name, wanted)) = claim_ref(volume) else { return Ok(None) };
    if wanted.is_empty() {
        return Ok(None);
    }
    let cached = ctx.claims.get(&ObjectRef::new(name).within(namespace));
    if cached.as_ref().is_some_and(|claim| uid(claim) == wanted) {
        return Ok(cached);
    }
    if !volume::marks_released(volume) {
        // Released or failed already: nothing the API says would bring the claim back.
        return Ok(None);
    }
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), namespace);
    let fresh = api
        .get_opt(name)
        .await
        .map_err(|source| Error::Read { claim: format!("{namespace}/{name}"), source })?;
    Ok(fresh.map(Arc::new))
}

/// The binder's writes, each a full replacement guarded by the resourceVersion the object was
/// read at.
struct Writer<'a> {
    ctx: &'a Context,
}

impl Writer<'_> {
    /// Binds `claim` and `volume` both ways, in upstream's order, writing only what changes;
    /// stops at the first failure (the next sync finishes).
    async fn bind(
        &self,
        volume: &PersistentVolume,
        claim: &PersistentVolumeClaim,
    ) -> Result<(), Error> {
        let mut volume = volume.clone();
        if let Some(bound) = binding::bind_volume(&volume, claim) {
            volume = self.volume(&bound).await?;
            let (claim, volume) = (claim_key(claim), volume.name_any());
            tracing::info!(%claim, %volume, "claim bound to volume");
        }
        if let Some(bound) = binding::volume_with_phase(&volume, VOLUME_BOUND, "") {
            volume = self.volume_status(&bound).await?;
        }
        let mut claim = claim.clone();
        if let Some(bound) = binding::bind_claim(&claim, &volume) {
            claim = self.claim(&bound).await?;
        }
        self.claim_status(&claim, CLAIM_BOUND, Some(&volume)).await?;
        Ok(())
    }

    /// Writes `claim`'s status as `phase` (with `volume`'s capacity and modes), if it changes;
    /// answers the claim as written.
    async fn claim_status(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        volume: Option<&PersistentVolume>,
    ) -> Result<PersistentVolumeClaim, Error> {
        let changed = binding::claim_with_status(claim, phase, volume)
            .map_err(|source| Error::Capacity { claim: claim_key(claim), source })?;
        let Some(changed) = changed else { return Ok(claim.clone()) };
        let api = self.claims(claim);
        let written = api
            .replace_status(&claim.name_any(), &PostParams::default(), &changed)
            .await
            .map_err(|source| Error::Write {
                what: format!("update the status of claim {}", claim_key(claim)),
                source,
            })?;
        tracing::debug!(claim = %claim_key(claim), phase, "claim entered phase");
        Ok(written)
    }

    /// Writes `claim` (its spec and metadata).
    async fn claim(&self, claim: &PersistentVolumeClaim) -> Result<PersistentVolumeClaim, Error> {
        self.claims(claim).replace(&claim.name_any(), &PostParams::default(), claim).await.map_err(
            |source| Error::Write { what: format!("update claim {}", claim_key(claim)), source },
        )
    }

    /// Writes `volume` (its spec and metadata).
    async fn volume(&self, volume: &PersistentVolume) -> Result<PersistentVolume, Error> {
        let api: Api<PersistentVolume> = Api::all(self.ctx.client.clone());
        api.replace(&volume.name_any(), &PostParams::default(), volume).await.map_err(|source| {
            Error::Write { what: format!("update volume {}", volume.name_any()), source }
        })
    }

    /// Writes `volume`'s status.
    async fn volume_status(&self, volume: &PersistentVolume) -> Result<PersistentVolume, Error> {
        let api: Api<PersistentVolume> = Api::all(self.ctx.client.clone());
        let written = api
            .replace_status(&volume.name_any(), &PostParams::default(), volume)
            .await
            .map_err(|source| Error::Write {
                what: format!("update the status of volume {}", volume.name_any()),
                source,
            })?;
        let (name, phase) = (volume.name_any(), volume_phase(&written));
        tracing::debug!(volume = %name, phase, "volume entered phase");
        Ok(written)
    }

    fn claims(&self, claim: &PersistentVolumeClaim) -> Api<PersistentVolumeClaim> {
        Api::namespaced(
            self.ctx.client.clone(),
            claim.metadata.namespace.as_deref().unwrap_or_default(),
        )
    }
}

/// For the table tests of the trigger mappings: names of the objects referenced.
#[cfg(test)]
fn names<K: Resource>(refs: &[ObjectRef<K>]) -> Vec<String>
where
    K::DynamicType: Default,
{
    let mut names: Vec<String> = refs.iter().map(|r| r.name.clone()).collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn a_volume_wakes_its_claim_and_the_claims_it_could_serve() {
        let claims: Vec<Arc<PersistentVolumeClaim>> = vec![
            Arc::new(claim("plain", "1Gi", &[RWO])),
            Arc::new(of_class(claim("fast", "1Gi", &[RWO]), "fast")),
            Arc::new(naming(claim("named", "1Gi", &[RWO]), "v")),
            Arc::new(naming(claim("named-other", "1Gi", &[RWO]), "w")),
            Arc::new(bound(claim("done", "1Gi", &[RWO]), "x")),
        ];
        assert_eq!(
            names(&claims_for_volume(&volume("v", "1Gi", &[RWO]), &claims)),
            ["named", "plain"]
        );
        assert_eq!(
            names(&claims_for_volume(&in_class(volume("v", "1Gi", &[RWO]), "fast"), &claims)),
            ["fast", "named"]
        );
        let taken = phase(reserved(volume("v", "1Gi", &[RWO]), "done", "uid-done"), "Bound");
        assert_eq!(names(&claims_for_volume(&taken, &claims)), ["done"]);
        let pending = phase(volume("v", "1Gi", &[RWO]), "Pending");
        assert!(claims_for_volume(&pending, &claims).is_empty(), "not available yet");
    }

    #[test]
    fn a_claim_wakes_its_volumes() {
        let volumes: Vec<Arc<PersistentVolume>> = vec![
            Arc::new(reserved(volume("reserved", "1Gi", &[RWO]), "c", "")),
            Arc::new(volume("named", "1Gi", &[RWO])),
            Arc::new(reserved(volume("theirs", "1Gi", &[RWO]), "d", "")),
        ];
        let c = naming(claim("c", "1Gi", &[RWO]), "named");
        assert_eq!(names(&volumes_for_claim(&c, &volumes)), ["named", "reserved"]);
        assert_eq!(names(&volumes_for_claim(&claim("c", "1Gi", &[RWO]), &volumes)), ["reserved"]);
    }

    #[test]
    fn a_class_wakes_the_unbound_claims() {
        let claims: Vec<Arc<PersistentVolumeClaim>> = vec![
            Arc::new(claim("waiting", "1Gi", &[RWO])),
            Arc::new(bound(claim("done", "1Gi", &[RWO]), "x")),
        ];
        assert_eq!(names(&unbound_claims(&claims)), ["waiting"]);
    }
}
