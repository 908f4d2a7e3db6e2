//! The StatefulSet controller (upstream's `statefulset-controller`): pods with stable names,
//! hostnames and claims (`identity.rs`), created and removed in order or in parallel, replaced
//! by a rolling update above the partition (`plan.rs`), with the revision history in
//! ControllerRevisions (`runtime/history.rs`) and the claim retention policy applied.

pub mod identity;
pub mod plan;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, PostParams};
use kube::core::SelectorExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};

use crate::deployment::revision::template_hash;
use crate::runtime::expectations::{Expectations, Wait};
use crate::runtime::history;
use crate::runtime::owner::{self, controller_of};
use crate::runtime::pod_control::{ApiPodControl, PodControl};
use krust_client::informer::ByNamespace;
use krust_client::{Events, Informer};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "statefulset-controller";

/// How often every set is looked at again without events.
const RESYNC: Duration = Duration::from_secs(300);

struct Context {
    client: Client,
    pods: Store<Pod>,
    pods_by_namespace: ByNamespace,
    revisions: Store<ControllerRevision>,
    revisions_by_namespace: ByNamespace,
    control: ApiPodControl,
    events: Events,
    expectations: Arc<Expectations>,
}

/// Runs the controller: woken by the shared StatefulSet and pod caches, writing as `client`.
pub fn run(
    client: Client,
    sets: &mut Informer<StatefulSet>,
    pods: &mut Informer<Pod>,
    revisions: &Informer<ControllerRevision>,
) -> impl Future<Output = ()> + Send + 'static {
    let expectations = Arc::new(Expectations::default());
    let (observed, pod_store) = (Arc::clone(&expectations), pods.store());
    let ctx = Context {
        control: ApiPodControl::new(client.clone()),
        events: Events::new(client.clone(), NAME),
        client,
        pods: pods.store(),
        pods_by_namespace: pods.by_namespace(),
        revisions: revisions.store(),
        revisions_by_namespace: revisions.by_namespace(),
        expectations,
    };
    Controller::for_shared_stream(sets.subscribe(), sets.store())
        .watches_shared_stream(pods.subscribe(), move |pod| {
            crate::replicaset::observe(&pod, &pod_store, &observed);
            set_of(&pod)
        })
        .with_config(crate::controller_config())
        .run(reconcile, error_policy, Arc::new(ctx))
        .for_each(|_| futures::future::ready(()))
}

/// The set a pod's change concerns: its controller if that is a StatefulSet, or, for an
/// orphan named as a set's pod (`NAME-ORDINAL`), the set of that name (it may adopt it).
fn set_of(pod: &Pod) -> Option<ObjectRef<StatefulSet>> {
    let namespace = pod.namespace().unwrap_or_default();
    match controller_of(&pod.metadata) {
        Some(owner) => (owner.kind == "StatefulSet" && owner.api_version.starts_with("apps/"))
            .then(|| ObjectRef::new(&owner.name).within(&namespace)),
        None => {
            let (parent, ordinal) = pod.metadata.name.as_deref()?.rsplit_once('-')?;
            let numbered = !ordinal.is_empty() && ordinal.bytes().all(|b| b.is_ascii_digit());
            numbered.then(|| ObjectRef::new(parent).within(&namespace))
        }
    }
}

/// Claims the set's pods among those of its namespace, as upstream's: pods it controls, and
/// orphans its selector matches that are named as its pods; pods it controls that no longer
/// match are released. A set without a valid selector keeps what it controls.
fn claim_pods(set: &StatefulSet, pods: &[Arc<Pod>]) -> owner::Claimed<Pod> {
    let spec_selector = set.spec.as_ref().map(|s| &s.selector);
    let Some(selector) = spec_selector.and_then(owner::selector) else {
        let uid = set.metadata.uid.as_deref().unwrap_or_default();
        let owned = pods
            .iter()
            .filter(|p| controller_of(&p.metadata).is_some_and(|o| o.uid == uid))
            .cloned()
            .collect();
        return owner::Claimed { owned, adopt: Vec::new(), release: Vec::new() };
    };
    let empty = Default::default();
    owner::claim(pods, &set.metadata, |pod| {
        selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty))
            && identity::ordinal(set, pod).is_some()
    })
}

/// Adopts and releases what `claimed` says, through `control`.
async fn adopt_and_release(
    control: &impl PodControl,
    set: &StatefulSet,
    claimed: &owner::Claimed<Pod>,
) -> Result<(), kube::Error> {
    let me = owner::controller_ref("apps/v1", "StatefulSet", &set.metadata);
    for pod in &claimed.adopt {
        control.set_owners(pod, &owner::adopted(&pod.metadata, &me)).await?;
    }
    for pod in &claimed.release {
        control.set_owners(pod, &owner::released(&pod.metadata, &me.uid)).await?;
    }
    Ok(())
}

fn error_policy(set: Arc<StatefulSet>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::debug!(statefulset = %set.name_any(), error = %error, "statefulset sync failed");
    Action::requeue(Duration::from_secs(1))
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    krust_client::informer::ready(&ctx.pods).await;
    krust_client::informer::ready(&ctx.revisions).await;
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let hash = template_hash(&spec.template, set.status.as_ref().and_then(|s| s.collision_count));
    let update = format!("{name}-{hash}");
    let claimed = claim_pods(&set, &ctx.pods_by_namespace.objects(&namespace, &ctx.pods));
    adopt_and_release(&ctx.control, &set, &claimed).await?;
    let pods = claimed.owned;

    // History: the update revision exists; the current one is the status's while it exists.
    let owned = ctx.revisions_by_namespace.objects(&namespace, &ctx.revisions);
    let mine: Vec<&ControllerRevision> = owned
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    let prefix = format!("{name}-");
    let used: Vec<&str> = pods
        .iter()
        .filter_map(|p| p.metadata.labels.as_ref()?.get(identity::REVISION))
        .filter_map(|r| r.strip_prefix(&prefix))
        .collect();
    let owner = history::Owner {
        meta: &set.metadata,
        kind: "StatefulSet",
        template: &spec.template,
        limit: spec.revision_history_limit,
    };
    write_history(&ctx, &namespace, history::changes(&owner, &hash, &mine, &used)).await?;
    let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
    let current = current_name
        .as_deref()
        .and_then(|n| mine.iter().find(|r| r.metadata.name.as_deref() == Some(n)))
        .and_then(|r| Some((r.metadata.name.clone()?, template_of(r)?)));
    let (current_name, current_template) =
        current.unwrap_or_else(|| (update.clone(), spec.template.clone()));

    let now = Timestamp::now();
    let mut plan = plan::plan(&set, &pods, &current_name, &update, now);
    let live: std::collections::HashSet<&str> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.metadata.uid.as_deref())
        .collect();
    let in_cache = |pod: &str| ctx.pods.get(&ObjectRef::new(pod).within(&namespace)).is_some();
    let mut wait = None;
    if let Wait::Pending(left) = ctx.expectations.check(&uid, in_cache, |u| live.contains(u)) {
        plan.create.clear();
        plan.delete.clear();
        wait = Some(left);
    }
    let regarding = set.object_ref(&());
    let mut created = Vec::new();
    for (ordinal, take_update) in &plan.create {
        let (template, revision) = if *take_update {
            (&spec.template, update.as_str())
        } else {
            (&current_template, current_name.as_str())
        };
        create_claims(&ctx, &set, *ordinal, &regarding).await?;
        let pod = identity::pod_for(&set, template, revision, *ordinal);
        let pod_name = pod.name_any();
        match ctx.control.create(&namespace, &pod).await {
            Ok(_) => {
                ctx.events.normal(
                    regarding.clone(),
                    "SuccessfulCreate",
                    "Create",
                    format!("create Pod {pod_name} in StatefulSet {name} successful"),
                );
                created.push(pod_name);
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => {
                ctx.events.warning(
                    regarding.clone(),
                    "FailedCreate",
                    "Create",
                    format!("create Pod {pod_name} in StatefulSet {name} failed error: {e}"),
                );
                return Err(e);
            }
        }
    }
    let mut deleted = Vec::new();
    for pod in &plan.delete {
        let pod_name = pod.name_any();
        if identity::delete_when_scaled(&set)
            && plan.condemned.iter().any(|c| c.metadata.uid == pod.metadata.uid)
        {
            own_claims_by_pod(&ctx, &set, pod).await?;
        }
        let pod_uid = pod.metadata.uid.clone().unwrap_or_default();
        match ctx.control.delete(&namespace, &pod_name, &pod_uid).await {
            Ok(()) => {
                ctx.events.normal(
                    regarding.clone(),
                    "SuccessfulDelete",
                    "Delete",
                    format!("delete Pod {pod_name} in StatefulSet {name} successful"),
                );
                deleted.push(pod_uid);
            }
            Err(e) => {
                ctx.events.warning(
                    regarding.clone(),
                    "FailedDelete",
                    "Delete",
                    format!("delete Pod {pod_name} in StatefulSet {name} failed error: {e}"),
                );
                return Err(e);
            }
        }
    }
    ctx.expectations.expect(&uid, created, deleted);

    if set.status.as_ref() != Some(&plan.status) {
        let mut updated = (*set).clone();
        updated.status = Some(plan.status.clone());
        let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &namespace);
        match api.replace_subresource("status", &name, &PostParams::default(), &updated).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(e),
        }
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let waiting_available =
        plan.status.available_replicas < plan.status.ready_replicas && min_ready > 0;
    let available_in =
        waiting_available.then(|| Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1));
    let next = [wait, available_in, Some(RESYNC)].into_iter().flatten().min();
    Ok(next.map_or_else(Action::await_change, Action::requeue))
}

/// The pod template a revision restores.
fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

async fn write_history(
    ctx: &Context,
    namespace: &str,
    changes: history::Changes,
) -> Result<(), kube::Error> {
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), namespace);
    if let Some(revision) = &changes.create {
        match api.create(&PostParams::default(), revision).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(revision) = &changes.renumber {
        match api.replace(&revision.name_any(), &PostParams::default(), revision).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    for revision in &changes.delete {
        match api.delete(&revision.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Creates the claims of `ordinal` that do not exist yet.
async fn create_claims(
    ctx: &Context,
    set: &StatefulSet,
    ordinal: i32,
    regarding: &ObjectReference,
) -> Result<(), kube::Error> {
    let namespace = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    let pod = identity::pod_name(set, ordinal);
    let name = set.name_any();
    for claim in identity::claims_for(set, ordinal) {
        let claim_name = claim.name_any();
        if api.get_opt(&claim_name).await?.is_some() {
            continue;
        }
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => ctx.events.normal(
                regarding.clone(),
                "SuccessfulCreate",
                "Create",
                format!("create Claim {claim_name} Pod {pod} in StatefulSet {name} success"),
            ),
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => {
                ctx.events.warning(
                    regarding.clone(),
                    "FailedCreate",
                    "Create",
                    format!("create Claim {claim_name} for Pod {pod} in StatefulSet {name} failed error: {e}"),
                );
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Makes a scaled-away pod the owner of its claims, so that they go with it
/// (`whenScaled: Delete`).
async fn own_claims_by_pod(ctx: &Context, set: &StatefulSet, pod: &Pod) -> Result<(), kube::Error> {
    let Some(ordinal) = identity::ordinal(set, pod) else { return Ok(()) };
    let namespace = set.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    for claim in identity::claims_for(set, ordinal) {
        let Some(mut current) = api.get_opt(&claim.name_any()).await? else { continue };
        let owners = current.metadata.owner_references.get_or_insert_with(Vec::new);
        if owners.iter().any(|o| Some(&o.uid) == pod.metadata.uid.as_ref()) {
            continue;
        }
        owners.push(identity::owner_ref(&pod.metadata, "v1", "Pod"));
        match api.replace(&current.name_any(), &PostParams::default(), &current).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};

    use super::*;

    fn set() -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                uid: Some("set-uid".into()),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                selector: LabelSelector {
                    match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
                    ..LabelSelector::default()
                },
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        }
    }

    fn pod(name: &str, app: &str, controller: Option<&str>) -> Arc<Pod> {
        let owners = controller.map(|uid| {
            let owner = ObjectMeta {
                name: Some("owner".into()),
                uid: Some(uid.into()),
                ..ObjectMeta::default()
            };
            vec![owner::controller_ref("apps/v1", "StatefulSet", &owner)]
        });
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([("app".into(), app.into())])),
                owner_references: owners,
                ..ObjectMeta::default()
            },
            ..Pod::default()
        })
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn a_set_adopts_orphans_named_as_its_pods_and_releases_what_it_no_longer_selects() {
        let mut deleting_orphan = (*pod("web-4", "web", None)).clone();
        deleting_orphan.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let pods = vec![
            pod("web-0", "web", None),
            pod("web-1", "web", Some("set-uid")),
            pod("web-2", "db", Some("set-uid")),
            pod("other-0", "web", None),
            pod("web-3", "web", Some("another")),
            Arc::new(deleting_orphan),
            pod("web-x", "web", None),
        ];
        let claimed = claim_pods(&set(), &pods);
        assert_eq!(names(&claimed.adopt), ["web-0"]);
        assert_eq!(names(&claimed.release), ["web-2"]);
        assert_eq!(names(&claimed.owned), ["web-0", "web-1"]);

        // A set being deleted neither adopts nor releases.
        let mut going = set();
        going.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        let claimed = claim_pods(&going, &pods);
        assert!(claimed.adopt.is_empty() && claimed.release.is_empty());
        assert_eq!(names(&claimed.owned), ["web-1"]);
    }

    #[test]
    fn an_orphan_wakes_the_set_it_is_named_after() {
        let orphan = pod("web-12", "web", None);
        assert_eq!(set_of(&orphan), Some(ObjectRef::new("web").within("ns")));
        assert_eq!(set_of(&pod("web-x", "web", None)), None);
        let owned = pod("web-0", "web", Some("set-uid"));
        assert_eq!(set_of(&owned), Some(ObjectRef::new("owner").within("ns")));
    }
}
