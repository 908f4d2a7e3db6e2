//! What a ReplicaSet does with the pods of its namespace (upstream's `ClaimPods` and
//! `manageReplicas`), decided as a plain function, and carried out through a [`PodControl`]
//! in slow-start batches.

use std::sync::Arc;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::ObjectMeta;
use kube::core::{Selector, SelectorExt};

use super::rank;
use crate::runtime::owner::{self, controller_ref};
use crate::runtime::pod_control::PodControl;

/// At most this many pods are created or deleted in one pass (upstream's `BurstReplicas`).
pub const BURST: usize = 500;

/// The kind of a set as its pods' controller reference names it: a ReplicaSet, or a
/// ReplicationController managed through its ReplicaSet form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerKind {
    /// Its `apiVersion`.
    pub api_version: &'static str,
    /// Its `kind`.
    pub kind: &'static str,
}

/// `apps/v1` ReplicaSets.
pub const REPLICA_SET: OwnerKind = OwnerKind { api_version: "apps/v1", kind: "ReplicaSet" };
/// `v1` ReplicationControllers.
pub const REPLICATION_CONTROLLER: OwnerKind =
    OwnerKind { api_version: "v1", kind: "ReplicationController" };

/// What one pass does.
#[derive(Debug, Default)]
pub struct Plan {
    /// Orphan pods the selector matches: they get the set as controller.
    pub adopt: Vec<Arc<Pod>>,
    /// Controlled pods the selector no longer matches: they are let go.
    pub release: Vec<Arc<Pod>>,
    /// The active pods the set controls after adoption and release.
    pub active: Vec<Arc<Pod>>,
    /// How many pods to create.
    pub create: usize,
    /// The pods to delete, least valuable first.
    pub delete: Vec<Arc<Pod>>,
}

/// Whether a pod counts toward replicas: not finished and not being deleted.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The set's selector; `None` when it is missing or invalid (the set then does nothing, as
/// validation refuses such sets).
pub fn selector(rs: &ReplicaSet) -> Option<Selector> {
    owner::selector(&rs.spec.as_ref()?.selector)
}

/// Decides a pass of `rs` over the pods of its namespace.
pub fn plan(rs: &ReplicaSet, pods: &[Arc<Pod>], now: Timestamp) -> Plan {
    let mut plan = Plan::default();
    let Some(selector) = selector(rs) else { return plan };
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let empty = Default::default();
    // Only active pods are claimed, as upstream's (finished and deleted ones are left be).
    let claimed = owner::claim(pods.iter().filter(|p| is_active(p)), &rs.metadata, |pod| {
        selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty))
    });
    plan.adopt = claimed.adopt;
    plan.release = claimed.release;
    plan.active = claimed.owned;
    if deleting {
        return plan;
    }
    let wanted =
        usize::try_from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)).unwrap_or(0);
    if plan.active.len() < wanted {
        plan.create = (wanted - plan.active.len()).min(BURST);
    } else if plan.active.len() > wanted {
        let excess = (plan.active.len() - wanted).min(BURST);
        plan.delete = rank::deletion_order(&plan.active, now).into_iter().take(excess).collect();
    }
    plan
}

/// A new pod of the set (of `kind`), from its template.
pub fn pod_from_template(rs: &ReplicaSet, kind: OwnerKind) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{name}-")),
            namespace: rs.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(kind.api_version, kind.kind, &rs.metadata)]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// What a pass did: names created and uids deleted (for expectations), and the first
/// failure, as `(reason, message)` for the `ReplicaFailure` condition.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Names of the pods created.
    pub created: Vec<String>,
    /// Uids of the pods deleted.
    pub deleted: Vec<String>,
    /// Names of the pods deleted.
    pub deleted_names: Vec<String>,
    /// The first failure.
    pub failure: Option<(&'static str, String)>,
}

/// Carries out `plan` for `rs` through `pods`: adoption and release first, then creates in
/// slow-start batches (1, 2, 4, ... at once; a batch with a failure ends them), or deletes.
pub async fn carry_out(
    pods: &impl PodControl,
    rs: &ReplicaSet,
    kind: OwnerKind,
    plan: &Plan,
) -> Outcome {
    let mut outcome = Outcome::default();
    let namespace = rs.metadata.namespace.clone().unwrap_or_default();
    let me = controller_ref(kind.api_version, kind.kind, &rs.metadata);
    for pod in &plan.adopt {
        if let Err(e) = pods.set_owners(pod, &owner::adopted(&pod.metadata, &me)).await {
            tracing::debug!(pod = names(pod).0, error = %e, "cannot adopt pod");
        }
    }
    for pod in &plan.release {
        if let Err(e) = pods.set_owners(pod, &owner::released(&pod.metadata, &me.uid)).await {
            tracing::debug!(pod = names(pod).0, error = %e, "cannot release pod");
        }
    }
    if plan.create > 0 {
        tracing::debug!(
            set = rs.metadata.name.as_deref().unwrap_or_default(),
            create = plan.create,
            "creating replicas"
        );
        let template = pod_from_template(rs, kind);
        let mut left = plan.create;
        let mut batch = 1;
        while left > 0 {
            let size = batch.min(left);
            let results = join_all((0..size).map(|_| pods.create(&namespace, &template))).await;
            let mut failed = false;
            for result in results {
                match result {
                    Ok(pod) => outcome.created.push(pod.metadata.name.unwrap_or_default()),
                    Err(e) => {
                        failed = true;
                        outcome.failure.get_or_insert(("FailedCreate", e.to_string()));
                    }
                }
            }
            if failed {
                break;
            }
            left -= size;
            batch *= 2;
        }
    }
    let namespace = namespace.as_str();
    let deletes =
        join_all(
            plan.delete.iter().map(|pod| {
                let (name, uid) = names(pod);
                async move {
                    (uid.to_string(), name.to_string(), pods.delete(namespace, name, uid).await)
                }
            }),
        )
        .await;
    for (uid, name, result) in deletes {
        match result {
            Ok(()) => {
                outcome.deleted.push(uid);
                outcome.deleted_names.push(name);
            }
            Err(e) => {
                outcome.failure.get_or_insert(("FailedDelete", e.to_string()));
            }
        }
    }
    outcome
}

fn names(pod: &Pod) -> (&str, &str) {
    (
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::PodTemplateSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    /// Counts the writes; creates fail after `fail_after` of them.
    #[derive(Default)]
    struct Counting {
        creates: AtomicUsize,
        deletes: Mutex<Vec<String>>,
        owners: Mutex<Vec<(String, Vec<OwnerReference>)>>,
        fail_after: Option<usize>,
    }

    impl PodControl for Counting {
        async fn create(&self, _: &str, pod: &Pod) -> Result<Pod, kube::Error> {
            let n = self.creates.fetch_add(1, Ordering::SeqCst);
            if self.fail_after.is_some_and(|limit| n >= limit) {
                return Err(kube::Error::LinesCodecMaxLineLengthExceeded);
            }
            let mut made = pod.clone();
            made.metadata.name = Some(format!("web-{n}"));
            Ok(made)
        }
        async fn delete(&self, _: &str, name: &str, _: &str) -> Result<(), kube::Error> {
            self.deletes.lock().map(|mut d| d.push(name.to_string())).ok();
            Ok(())
        }
        async fn set_owners(
            &self,
            pod: &Pod,
            owners: &[OwnerReference],
        ) -> Result<(), kube::Error> {
            let name = pod.metadata.name.clone().unwrap_or_default();
            self.owners.lock().map(|mut o| o.push((name, owners.to_vec()))).ok();
            Ok(())
        }
    }

    fn labels(app: &str) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([("app".to_string(), app.to_string())]))
    }

    fn rs(replicas: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("rs-uid".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                selector: LabelSelector { match_labels: labels("web"), ..Default::default() },
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: labels("web"), ..Default::default() }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(name: &str, app: &str, owner: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("{name}-uid")),
                labels: labels(app),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        uid: uid.into(),
                        controller: Some(true),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn a_new_set_creates_its_replicas_in_slow_start_batches() {
        let set = rs(3);
        let p = plan(&set, &[], Timestamp::now());
        assert_eq!((p.create, p.delete.len()), (3, 0));
        let control = Counting::default();
        let outcome = carry_out(&control, &set, REPLICA_SET, &p).await;
        assert_eq!(control.creates.load(Ordering::SeqCst), 3);
        assert!(control.deletes.lock().map(|d| d.is_empty()).unwrap_or(false));
        assert_eq!(outcome.created.len(), 3);
        assert!(outcome.failure.is_none());
    }

    #[tokio::test]
    async fn a_failed_batch_stops_the_creates() {
        let set = rs(10);
        let p = plan(&set, &[], Timestamp::now());
        // Batches of 1, 2, 4: the third batch fails after one more create.
        let control = Counting { fail_after: Some(4), ..Default::default() };
        let outcome = carry_out(&control, &set, REPLICA_SET, &p).await;
        assert_eq!(control.creates.load(Ordering::SeqCst), 7);
        assert_eq!(outcome.created.len(), 4);
        assert_eq!(outcome.failure.map(|f| f.0), Some("FailedCreate"));
    }

    #[test]
    fn orphans_are_adopted_strangers_left_and_mismatches_released() {
        let set = rs(2);
        let pods = [
            pod("mine", "web", Some("rs-uid")),
            pod("orphan", "web", None),
            pod("other-owner", "web", Some("other")),
            pod("relabeled", "db", Some("rs-uid")),
            pod("unrelated", "db", None),
        ];
        let p = plan(&set, &pods, Timestamp::now());
        let names = |v: &[Arc<Pod>]| {
            v.iter().map(|p| p.metadata.name.clone().unwrap_or_default()).collect::<Vec<_>>()
        };
        assert_eq!(names(&p.adopt), ["orphan"]);
        assert_eq!(names(&p.release), ["relabeled"]);
        assert_eq!(names(&p.active), ["mine", "orphan"]);
        assert_eq!((p.create, p.delete.len()), (0, 0));
    }

    #[tokio::test]
    async fn a_scale_down_deletes_the_excess() {
        let set = rs(1);
        let pods = [
            pod("a", "web", Some("rs-uid")),
            pod("b", "web", Some("rs-uid")),
            pod("c", "web", Some("rs-uid")),
        ];
        let p = plan(&set, &pods, Timestamp::now());
        assert_eq!((p.create, p.delete.len()), (0, 2));
        let control = Counting::default();
        let outcome = carry_out(&control, &set, REPLICA_SET, &p).await;
        assert_eq!(control.creates.load(Ordering::SeqCst), 0);
        assert_eq!(outcome.deleted.len(), 2);
    }

    #[test]
    fn pods_come_from_the_template_with_a_controller_reference() {
        let made = pod_from_template(&rs(1), REPLICA_SET);
        assert_eq!(made.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(made.metadata.labels, labels("web"));
        let owner =
            made.metadata.owner_references.and_then(|o| o.into_iter().next()).unwrap_or_default();
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("ReplicaSet", "rs-uid", Some(true))
        );
    }
}
