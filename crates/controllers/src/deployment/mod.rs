//! The Deployment controller (upstream's `deployment-controller`): a Deployment owns a
//! ReplicaSet per pod template; the current template's set is scaled up and the others down,
//! at the pace of the strategy (RollingUpdate: within `maxSurge` and `maxUnavailable`;
//! Recreate: the old pods gone first). Revisions live in the sets' annotations, so that
//! `kubectl rollout history|undo` read and restore them; old sets beyond
//! `revisionHistoryLimit` are deleted; status and the Progressing and Available conditions
//! are what `kubectl rollout status` waits on.

pub mod revision;
pub mod sizes;
pub mod status;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, Preconditions};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use crate::runtime::owner::{self, controller_of, controller_ref};
use krust_client::Events;
use krust_client::Informer;
use krust_client::informer::ByNamespace;
use revision::{POD_TEMPLATE_HASH, replicas_of};
use sizes::{max_surge, spec_replicas};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "deployment-controller";

/// How often every Deployment is looked at again even without events.
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: Client,
    events: Events,
    sets: Store<ReplicaSet>,
    sets_by_namespace: ByNamespace,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
}

/// Runs the controller: woken by the shared Deployment and ReplicaSet caches (a set's
/// status follows its pods), reading pods from the shared pod cache, writing as `client`.
pub fn run(
    client: Client,
    deployments: &mut Informer<Deployment>,
    sets: &mut Informer<ReplicaSet>,
    pods: &mut Informer<Pod>,
) -> impl Future<Output = ()> + Send + 'static {
    let by_selector = deployments.store();
    let (set_store, pod_store) = (sets.store(), pods.store());
    let ctx = Context {
        events: Events::new(client.clone(), NAME),
        client,
        sets: sets.store(),
        sets_by_namespace: sets.by_namespace(),
        pods: pods.store(),
        pods_by_namespace: pods.by_namespace(),
    };
    Controller::for_shared_stream(deployments.subscribe(), deployments.store())
        .watches_shared_stream(sets.subscribe(), move |rs| deployments_of(&rs, &by_selector))
        .watches_shared_stream(pods.subscribe(), move |pod| {
            gone_pod_owner(&pod, &pod_store, &set_store)
        })
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
}

fn selector(d: &Deployment) -> Option<Selector> {
    owner::selector(&d.spec.as_ref()?.selector)
}

/// The Deployments a set's change concerns: its controller, or for an orphan every
/// Deployment of its namespace that selects it.
fn deployments_of(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<ObjectRef<Deployment>> {
    let namespace = rs.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(&rs.metadata) {
        if owner.kind == "Deployment" && owner.api_version.starts_with("apps/") {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    let empty = Default::default();
    let labels = rs.metadata.labels.as_ref().unwrap_or(&empty);
    deployments
        .state()
        .iter()
        .filter(|d| d.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|d| selector(d).is_some_and(|s| s.matches(labels)))
        .map(|d| ObjectRef::from(d.as_ref()))
        .collect()
}

/// The Deployment that a pod's deletion concerns: a Recreate rollout waits for the last
/// old pod to go, which no set's status announces. Other pod changes wake nothing.
fn gone_pod_owner(
    pod: &Pod,
    pods: &Store<Pod>,
    sets: &Store<ReplicaSet>,
) -> Option<ObjectRef<Deployment>> {
    if pods.get(&ObjectRef::from(pod)).is_some() {
        return None;
    }
    let namespace = pod.namespace()?;
    let owner = controller_of(&pod.metadata).filter(|o| o.kind == "ReplicaSet")?;
    let rs = sets.get(&ObjectRef::new(&owner.name).within(&namespace))?;
    let deployment = controller_of(&rs.metadata).filter(|o| o.kind == "Deployment")?;
    Some(ObjectRef::new(&deployment.name).within(&namespace))
}

fn error_policy(d: Arc<Deployment>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(deployment = %d.name_any(), error = %error, "deployment sync failed");
    Action::requeue(Duration::from_secs(1))
}

/// One sync's view: the Deployment (as updated by this sync) and the writes it goes through.
struct Sync<'a> {
    ctx: &'a Context,
    d: Deployment,
    namespace: String,
    now: Timestamp,
    /// The revision annotation changed in `d` and is not written yet.
    revision_changed: bool,
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    // Acting on caches still filling would make every set again.
    krust_client::informer::ready(&ctx.sets).await;
    krust_client::informer::ready(&ctx.pods).await;
    let namespace = d.namespace().unwrap_or_default();
    let mut sync = Sync {
        ctx: &ctx,
        d: (*d).clone(),
        namespace,
        now: Timestamp::now(),
        revision_changed: false,
    };
    let Some(selector) = selector(&d) else {
        // Upstream refuses to act on a Deployment that selects everything.
        return Ok(Action::await_change());
    };
    let sets = sync.claim(&selector).await?;
    if d.metadata.deletion_timestamp.is_some() {
        let (new_rs, old) = split(&sync.d, &sets);
        sync.write_status(sync.status(new_rs.as_ref(), &old, false)).await?;
        return Ok(Action::await_change());
    }
    sync.paused_condition().await?;
    let paused = d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    let refs: Vec<&ReplicaSet> = sets.iter().collect();
    if paused || sizes::is_scaling_event(&sync.d, &refs) {
        return sync.scale(sets, paused).await;
    }
    if sizes::is_rolling(&d) { sync.rolling(sets).await } else { sync.recreate(sets).await }
}

/// The set of the current template, if any, and the others.
fn split(d: &Deployment, sets: &[ReplicaSet]) -> (Option<ReplicaSet>, Vec<ReplicaSet>) {
    let template = d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut ordered: Vec<&ReplicaSet> = sets.iter().collect();
    ordered.sort_by_key(|rs| {
        (rs.metadata.creation_timestamp.as_ref().map(|t| t.0), rs.metadata.name.clone())
    });
    let new_rs = ordered
        .iter()
        .find(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| revision::equal_ignoring_hash(t, &template))
        })
        .map(|rs| (*rs).clone());
    let new_name = new_rs.as_ref().and_then(|rs| rs.metadata.name.clone());
    let old = sets.iter().filter(|rs| rs.metadata.name != new_name).cloned().collect();
    (new_rs, old)
}

impl Sync<'_> {
    fn sets_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    fn deployments_api(&self) -> Api<Deployment> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    /// The sets this Deployment controls, adopting orphans its selector matches and
    /// releasing its sets that the selector no longer matches.
    async fn claim(&self, selector: &Selector) -> Result<Vec<ReplicaSet>, kube::Error> {
        let uid = self.d.metadata.uid.clone().unwrap_or_default();
        let me = controller_ref("apps/v1", "Deployment", &self.d.metadata);
        let empty = Default::default();
        let mut owned = Vec::new();
        for rs in self.ctx.sets_by_namespace.objects(&self.namespace, &self.ctx.sets) {
            let matches = selector.matches(rs.metadata.labels.as_ref().unwrap_or(&empty));
            let name = rs.name_any();
            match controller_of(&rs.metadata) {
                Some(owner) if owner.uid != uid => {}
                Some(_) if matches => owned.push((*rs).clone()),
                Some(_) if self.d.metadata.deletion_timestamp.is_none() => {
                    let owners: Vec<_> =
                        rs.owner_references().iter().filter(|o| o.uid != uid).cloned().collect();
                    self.set_owners(&name, &rs, owners).await?;
                }
                Some(_) => {}
                None if matches
                    && self.d.metadata.deletion_timestamp.is_none()
                    && rs.metadata.deletion_timestamp.is_none() =>
                {
                    let mut owners = rs.owner_references().to_vec();
                    owners.push(me.clone());
                    self.set_owners(&name, &rs, owners).await?;
                    owned.push((*rs).clone());
                }
                None => {}
            }
        }
        Ok(owned)
    }

    async fn set_owners(
        &self,
        name: &str,
        rs: &ReplicaSet,
        owners: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    ) -> Result<(), kube::Error> {
        let patch = owner::owners_patch(&rs.metadata, &owners);
        match self.sets_api().patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets the Progressing condition a pause or resume calls for.
    async fn paused_condition(&mut self) -> Result<(), kube::Error> {
        if status::progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let reason = status::get_condition(self.d.status.as_ref(), status::PROGRESSING)
            .and_then(|c| c.reason.clone());
        // A reported lack of progress is not overwritten by a pause.
        if reason.as_deref() == Some(status::TIMED_OUT) {
            return Ok(());
        }
        let condition = match (paused, reason.as_deref()) {
            (true, r) if r != Some(status::PAUSED) => status::condition(
                status::PROGRESSING,
                "Unknown",
                status::PAUSED,
                "Deployment is paused".into(),
                self.now,
            ),
            (false, Some(status::PAUSED)) => status::condition(
                status::PROGRESSING,
                "Unknown",
                status::RESUMED,
                "Deployment is resumed".into(),
                self.now,
            ),
            _ => return Ok(()),
        };
        let mut st = self.d.status.clone().unwrap_or_default();
        let mut conditions = st.conditions.take().unwrap_or_default();
        status::set_condition(&mut conditions, condition);
        st.conditions = Some(conditions);
        self.write_status(st).await
    }

    /// The current template's set and the others; with `create`, the current set is made
    /// when missing. Revisions are brought up to date on the sets and the Deployment.
    async fn new_and_old(
        &mut self,
        sets: &[ReplicaSet],
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), kube::Error> {
        let (existing, old) = split(&self.d, sets);
        let new_revision = old.iter().map(revision::revision).max().unwrap_or(0) + 1;
        let surge = max_surge(&self.d);
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        let new_rs = if let Some(current) = existing {
            let mut copy = current.clone();
            let changed = revision::set_new_replica_set_annotations(
                &self.d,
                &mut copy,
                new_revision,
                true,
                surge,
            );
            let spec = copy.spec.get_or_insert_with(Default::default);
            let min_ready_changed = spec.min_ready_seconds != min_ready;
            spec.min_ready_seconds = min_ready;
            let copy = if changed || min_ready_changed {
                self.sets_api().replace(&copy.name_any(), &PostParams::default(), &copy).await?
            } else {
                current
            };
            if status::progress_deadline(&self.d).is_some()
                && status::get_condition(self.d.status.as_ref(), status::PROGRESSING).is_none()
            {
                let message = format!("Found new replica set {:?}", copy.name_any());
                self.note_progress(status::condition(
                    status::PROGRESSING,
                    "True",
                    status::FOUND_NEW_RS,
                    message,
                    self.now,
                ));
            }
            Some(copy)
        } else if create {
            Some(self.create_new(&old, new_revision).await?)
        } else {
            None
        };
        if let Some(rs) = &new_rs {
            self.set_revision(revision::revision(rs)).await?;
        }
        Ok((new_rs, old))
    }

    /// Makes the set of the current template, named by its hash.
    async fn create_new(
        &mut self,
        old: &[ReplicaSet],
        new_revision: i64,
    ) -> Result<ReplicaSet, kube::Error> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let collisions = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = revision::template_hash(&spec.template, collisions);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", self.d.name_any());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![controller_ref(
                    "apps/v1",
                    "Deployment",
                    &self.d.metadata,
                )]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        revision::set_new_replica_set_annotations(
            &self.d,
            &mut rs,
            new_revision,
            false,
            max_surge(&self.d),
        );
        let all: Vec<&ReplicaSet> = old.iter().chain([&rs]).collect();
        let replicas = sizes::new_rs_replicas(&self.d, &all, &rs);
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(replicas);
        }
        match self.sets_api().create(&PostParams::default(), &rs).await {
            Ok(created) => {
                let message = format!("Created new replica set {name:?}");
                self.note_progress(status::condition(
                    status::PROGRESSING,
                    "True",
                    status::NEW_RS_CREATED,
                    message,
                    self.now,
                ));
                tracing::debug!(deployment = %self.d.name_any(), replicaset = %name, replicas, "scaled up new replica set");
                self.scaling_event(&name, 0, replicas);
                Ok(created)
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                // Ours already, and the cache is behind: use it.
                if let Some(existing) = self.sets_api().get_opt(&name).await?
                    && controller_of(&existing.metadata)
                        .is_some_and(|o| Some(&o.uid) == self.d.metadata.uid.as_ref())
                    && existing
                        .spec
                        .as_ref()
                        .and_then(|s| s.template.as_ref())
                        .is_some_and(|t| revision::equal_ignoring_hash(t, &spec.template))
                {
                    return Ok(existing);
                }
                // A set of that name that is not this template's: a hash collision. Count
                // it, so that the next hash differs.
                let mut st = self.d.status.clone().unwrap_or_default();
                st.collision_count = Some(st.collision_count.unwrap_or(0) + 1);
                self.write_status(st).await?;
                Err(kube::Error::Api(s))
            }
            Err(e) => Err(e),
        }
    }

    /// Records a Progressing condition in this sync's view, written with the status.
    fn note_progress(&mut self, condition: k8s_openapi::api::apps::v1::DeploymentCondition) {
        if status::progress_deadline(&self.d).is_none() {
            return;
        }
        let st = self.d.status.get_or_insert_with(Default::default);
        let mut conditions = st.conditions.take().unwrap_or_default();
        conditions.retain(|c| c.type_ != status::PROGRESSING);
        conditions.push(condition);
        st.conditions = Some(conditions);
    }

    /// Puts the revision on the Deployment; it is written with the status, through the
    /// `status` subresource, as upstream's (so that it does not advance the generation).
    async fn set_revision(&mut self, revision: i64) -> Result<(), kube::Error> {
        let value = revision.to_string();
        if self.d.annotations().get(revision::REVISION) != Some(&value) {
            self.d
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(revision::REVISION.into(), value);
            self.revision_changed = true;
        }
        Ok(())
    }

    /// Records upstream's `ScalingReplicaSet` event on the Deployment.
    fn scaling_event(&self, set: &str, from: i32, to: i32) {
        let direction = if to > from { "up" } else { "down" };
        let note = format!("Scaled {direction} replica set {set} from {from} to {to}");
        self.ctx.events.normal(self.d.object_ref(&()), "ScalingReplicaSet", "Scale", note);
    }

    /// Sizes a set, with the replica annotations of this Deployment.
    async fn scale_set(&self, rs: &ReplicaSet, replicas: i32) -> Result<(), kube::Error> {
        let mut copy = rs.clone();
        let desired = replicas_of(&self.d);
        let annotated =
            revision::set_replicas_annotations(&mut copy, desired, desired + max_surge(&self.d));
        if spec_replicas(rs) == replicas && !annotated {
            return Ok(());
        }
        copy.spec.get_or_insert_with(Default::default).replicas = Some(replicas);
        self.sets_api().replace(&rs.name_any(), &PostParams::default(), &copy).await?;
        tracing::debug!(deployment = %self.d.name_any(), replicaset = %rs.name_any(), from = spec_replicas(rs), to = replicas, "scaled replica set");
        if spec_replicas(rs) != replicas {
            self.scaling_event(&rs.name_any(), spec_replicas(rs), replicas);
        }
        Ok(())
    }

    async fn scale_named(
        &self,
        sets: &[ReplicaSet],
        sizes: &[(String, i32)],
    ) -> Result<bool, kube::Error> {
        for (name, replicas) in sizes {
            if let Some(rs) = sets.iter().find(|rs| rs.metadata.name.as_deref() == Some(name)) {
                self.scale_set(rs, *replicas).await?;
            }
        }
        Ok(!sizes.is_empty())
    }

    /// A scale of the Deployment, or a paused one: sizes spread over the sets, no rollout.
    async fn scale(&mut self, sets: Vec<ReplicaSet>, paused: bool) -> Result<Action, kube::Error> {
        let (new_rs, old) = self.new_and_old(&sets, false).await?;
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        let sizes = sizes::proportional(&self.d, new_rs.as_ref(), &old_refs);
        let all: Vec<ReplicaSet> = old.iter().cloned().chain(new_rs.clone()).collect();
        self.scale_named(&all, &sizes).await?;
        if paused {
            self.cleanup(&old).await?;
        }
        self.write_status(self.status(new_rs.as_ref(), &old, false)).await?;
        Ok(Action::requeue(RESYNC))
    }

    async fn rolling(&mut self, sets: Vec<ReplicaSet>) -> Result<Action, kube::Error> {
        let (new_rs, old) = self.new_and_old(&sets, true).await?;
        let Some(new_rs) = new_rs else { return Ok(Action::await_change()) };
        let all: Vec<&ReplicaSet> = old.iter().chain([&new_rs]).collect();
        let replicas = replicas_of(&self.d);
        if spec_replicas(&new_rs) != replicas {
            let target = if spec_replicas(&new_rs) > replicas {
                replicas
            } else {
                sizes::new_rs_replicas(&self.d, &all, &new_rs)
            };
            if target != spec_replicas(&new_rs) {
                self.scale_set(&new_rs, target).await?;
                return self.finish(Some(&new_rs), &old).await;
            }
        }
        let active_old: Vec<&ReplicaSet> = old.iter().filter(|rs| spec_replicas(rs) > 0).collect();
        let down = sizes::scale_down_old(&self.d, &active_old, &new_rs);
        if self.scale_named(&old, &down).await? {
            return self.finish(Some(&new_rs), &old).await;
        }
        if self.d.status.as_ref().is_some_and(|s| status::complete(&self.d, s)) {
            self.cleanup(&old).await?;
        }
        self.finish(Some(&new_rs), &old).await
    }

    async fn recreate(&mut self, sets: Vec<ReplicaSet>) -> Result<Action, kube::Error> {
        let (mut new_rs, mut old) = self.new_and_old(&sets, false).await?;
        let active_old: Vec<&ReplicaSet> = old.iter().filter(|rs| spec_replicas(rs) > 0).collect();
        if !active_old.is_empty() {
            for rs in active_old {
                self.scale_set(rs, 0).await?;
            }
            return self.finish(new_rs.as_ref(), &old).await;
        }
        if self.old_pods_running(&old) {
            return self.finish(new_rs.as_ref(), &old).await;
        }
        if new_rs.is_none() {
            (new_rs, old) = self.new_and_old(&sets, true).await?;
        }
        if let Some(rs) = &new_rs
            && spec_replicas(rs) != replicas_of(&self.d)
        {
            self.scale_set(rs, replicas_of(&self.d)).await?;
        }
        if self.d.status.as_ref().is_some_and(|s| status::complete(&self.d, s)) {
            self.cleanup(&old).await?;
        }
        self.finish(new_rs.as_ref(), &old).await
    }

    /// Whether a pod of an old set has not finished yet (Recreate waits for them).
    fn old_pods_running(&self, old: &[ReplicaSet]) -> bool {
        let uids: Vec<&str> = old.iter().filter_map(|rs| rs.metadata.uid.as_deref()).collect();
        self.ctx.pods_by_namespace.objects(&self.namespace, &self.ctx.pods).iter().any(|p| {
            controller_of(&p.metadata).is_some_and(|o| uids.contains(&o.uid.as_str()))
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
        })
    }

    /// Deletes the oldest empty sets beyond `revisionHistoryLimit`.
    async fn cleanup(&self, old: &[ReplicaSet]) -> Result<(), kube::Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> =
            old.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).collect();
        let excess = cleanable.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        cleanable.sort_by_key(|rs| revision::revision(rs));
        for rs in cleanable.into_iter().take(excess) {
            let st = rs.status.clone().unwrap_or_default();
            if st.replicas != 0
                || spec_replicas(rs) != 0
                || rs.metadata.generation > st.observed_generation
            {
                continue;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: rs.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match self.sets_api().delete(&rs.name_any(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn status(
        &self,
        new_rs: Option<&ReplicaSet>,
        old: &[ReplicaSet],
        rollout: bool,
    ) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = old.iter().chain(new_rs).collect();
        if rollout {
            status::rollout(&self.d, &all, new_rs, self.now)
        } else {
            status::calculate(&self.d, &all, new_rs, self.now)
        }
    }

    /// Writes the rollout's status and says when to look again: at the progress deadline
    /// while the rollout has not finished.
    async fn finish(
        &mut self,
        new_rs: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<Action, kube::Error> {
        let st = self.status(new_rs, old, true);
        let complete = status::complete(&self.d, &st);
        self.write_status(st).await?;
        // A rollout that has not finished is looked at again when its progress deadline
        // passes (upstream's `requeueStuckDeployment`).
        let progressing = status::get_condition(self.d.status.as_ref(), status::PROGRESSING)
            .filter(|c| c.reason.as_deref() != Some(status::TIMED_OUT));
        let updated = progressing.and_then(|c| c.last_update_time.as_ref());
        let stuck_check = match (status::progress_deadline(&self.d), updated) {
            (Some(deadline), Some(updated)) if !complete => {
                let elapsed = self.now.duration_since(updated.0).as_secs();
                Some(Duration::from_secs(u64::try_from(deadline - elapsed).unwrap_or(0) + 1))
            }
            _ => None,
        };
        Ok(Action::requeue(stuck_check.map_or(RESYNC, |d| d.min(RESYNC))))
    }

    async fn write_status(&mut self, st: DeploymentStatus) -> Result<(), kube::Error> {
        let mut wanted = self.d.clone();
        wanted.status = Some(st);
        if wanted.status == self.d.status && !self.revision_changed {
            return Ok(());
        }
        match self
            .deployments_api()
            .replace_subresource("status", &self.d.name_any(), &PostParams::default(), &wanted)
            .await
        {
            Ok(written) => {
                self.d = written;
                self.revision_changed = false;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }
}
