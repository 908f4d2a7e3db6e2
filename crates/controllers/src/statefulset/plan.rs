//! One pass of the StatefulSet controller as a plain function (upstream's
//! `updateStatefulSet`): missing ordinals created (in order, each waiting for the one before
//! to be running and ready, under `OrderedReady`; all at once under `Parallel`), failed pods
//! replaced, ordinals beyond the replicas removed from the highest down, and under
//! `RollingUpdate` the highest ordinal at or above the partition that is not of the update
//! revision replaced, one at a time (or `maxUnavailable` at a time).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::identity::{self, REVISION};
use crate::replicaset::status::{is_available, is_ready};
use crate::runtime::int_or_percent::scaled;

/// What one pass does.
#[derive(Debug, Default)]
pub struct Plan {
    /// Ordinals to create, each with whether it takes the update revision.
    pub create: Vec<(i32, bool)>,
    /// Pods to delete: failed ones, ordinals scaled away, and pods replaced by an update.
    pub delete: Vec<Arc<Pod>>,
    /// Which of `delete` are scaled away (their claims go with them under `whenScaled: Delete`).
    pub condemned: Vec<Arc<Pod>>,
    /// The status.
    pub status: StatefulSetStatus,
}

fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(REVISION).map(String::as_str)
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed" | "Succeeded"))
}

fn running_and_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && is_ready(pod)
}

/// Decides a pass over `set`, its `pods`, with its `current` and `update` revision names.
pub fn plan(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    current: &str,
    update: &str,
    now: Timestamp,
) -> Plan {
    let spec = set.spec.clone().unwrap_or_default();
    let mut plan = Plan::default();
    let start = identity::start(set);
    let replicas = identity::replicas(set);
    let end = start.saturating_add(replicas);
    let min_ready =
        Duration::from_secs(u64::try_from(spec.min_ready_seconds.unwrap_or(0)).unwrap_or(0));
    let healthy =
        |p: &Pod| !terminating(p) && running_and_ready(p) && is_available(p, min_ready, now);
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let rolling =
        spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate")
            == "RollingUpdate";
    let partition = spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0);

    let mut slots: BTreeMap<i32, Arc<Pod>> = BTreeMap::new();
    let mut condemned: Vec<Arc<Pod>> = Vec::new();
    for pod in pods {
        match identity::ordinal(set, pod) {
            Some(o) if (start..end).contains(&o) => {
                slots.insert(o, Arc::clone(pod));
            }
            Some(_) => condemned.push(Arc::clone(pod)),
            None => {}
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(identity::ordinal(set, p)));

    // Status over every pod the set has.
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        collision_count: set.status.as_ref().and_then(|s| s.collision_count),
        current_revision: Some(current.to_string()),
        update_revision: Some(update.to_string()),
        ..StatefulSetStatus::default()
    };
    let all: Vec<&Arc<Pod>> = slots.values().chain(condemned.iter()).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(all.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    status.replicas = count(&|p| !terminating(p));
    status.ready_replicas = Some(count(&|p| !terminating(p) && running_and_ready(p)));
    status.available_replicas = Some(count(&|p| healthy(p)));
    status.current_replicas = Some(count(&|p| !terminating(p) && revision_of(p) == Some(current)));
    status.updated_replicas = Some(count(&|p| !terminating(p) && revision_of(p) == Some(update)));
    if status.updated_replicas == Some(replicas)
        && status.ready_replicas == Some(replicas)
        && status.replicas == replicas
    {
        status.current_revision = Some(update.to_string());
        status.current_replicas = status.updated_replicas;
    }
    let update_revision_for = |ordinal: i32| !(rolling && ordinal < partition);

    // Replicas: create what is missing, replace what failed.
    let mut blocked = false;
    for ordinal in start..end {
        match slots.get(&ordinal) {
            None => {
                plan.create.push((ordinal, update_revision_for(ordinal)));
                if monotonic {
                    blocked = true;
                    break;
                }
            }
            Some(pod) if finished(pod) && !terminating(pod) => {
                plan.delete.push(Arc::clone(pod));
                if monotonic {
                    blocked = true;
                    break;
                }
            }
            Some(pod) if monotonic && !healthy(pod) => {
                blocked = true;
                break;
            }
            Some(_) => {}
        }
    }
    // Ordinals scaled away, highest first.
    for pod in &condemned {
        if terminating(pod) {
            if monotonic {
                blocked = true;
                break;
            }
            continue;
        }
        if monotonic && blocked {
            break;
        }
        plan.delete.push(Arc::clone(pod));
        plan.condemned.push(Arc::clone(pod));
        if monotonic {
            blocked = true;
            break;
        }
    }
    // The rolling update, from the highest ordinal down to the partition.
    if rolling && !blocked {
        let max_unavailable = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref())
            .map_or(1, |v| scaled(v, replicas, false).unwrap_or(1))
            .max(1);
        let unavailable = slots.values().filter(|p| !healthy(p)).count();
        let mut room = usize::try_from(max_unavailable).unwrap_or(1).saturating_sub(unavailable);
        for ordinal in (start.max(partition)..end).rev() {
            if room == 0 {
                break;
            }
            let Some(pod) = slots.get(&ordinal) else { continue };
            if revision_of(pod) != Some(update) && !terminating(pod) && healthy(pod) {
                plan.delete.push(Arc::clone(pod));
                room -= 1;
            }
        }
    }
    plan.status = status;
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetSpec, StatefulSetUpdateStrategy,
    };
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    fn set(replicas: i32, parallel: bool, partition: Option<i32>) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(replicas),
                pod_management_policy: Some(
                    if parallel { "Parallel" } else { "OrderedReady" }.into(),
                ),
                update_strategy: Some(StatefulSetUpdateStrategy {
                    type_: Some("RollingUpdate".into()),
                    rolling_update: partition.map(|p| RollingUpdateStatefulSetStrategy {
                        partition: Some(p),
                        max_unavailable: None,
                    }),
                }),
                ..StatefulSetSpec::default()
            }),
            status: None,
        }
    }

    fn pod(ordinal: i32, revision: &str, ready: bool) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(format!("web-{ordinal}")),
                labels: Some([(REVISION.to_string(), revision.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(at("2026-01-01T00:00:00Z"))),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        })
    }

    fn now() -> Timestamp {
        at("2026-01-01T00:10:00Z")
    }

    #[test]
    fn ordered_ready_creates_one_at_a_time() {
        let s = set(3, false, None);
        assert_eq!(plan(&s, &[], "r1", "r1", now()).create, [(0, true)]);
        let waiting = [pod(0, "r1", false)];
        assert!(plan(&s, &waiting, "r1", "r1", now()).create.is_empty(), "web-0 is not ready yet");
        let ready = [pod(0, "r1", true)];
        assert_eq!(plan(&s, &ready, "r1", "r1", now()).create, [(1, true)]);
        assert_eq!(
            plan(&set(3, true, None), &[], "r1", "r1", now()).create,
            [(0, true), (1, true), (2, true)]
        );
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal() {
        let s = set(1, false, None);
        let pods = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)];
        let p = plan(&s, &pods, "r1", "r1", now());
        let names: Vec<&str> = p.delete.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
        assert_eq!(names, ["web-2"]);
        assert_eq!(p.condemned.len(), 1);
        let all = plan(&set(1, true, None), &pods, "r1", "r1", now());
        assert_eq!(all.delete.len(), 2);
    }

    #[test]
    fn rolling_update_respects_the_partition() {
        let pods = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)];
        let p = plan(&set(3, false, Some(1)), &pods, "r1", "r2", now());
        let names: Vec<&str> = p.delete.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
        assert_eq!(names, ["web-2"]);
        let pods = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r2", true)];
        let p = plan(&set(3, false, Some(1)), &pods, "r1", "r2", now());
        let names: Vec<&str> = p.delete.iter().filter_map(|p| p.metadata.name.as_deref()).collect();
        assert_eq!(names, ["web-1"]);
        let pods = [pod(0, "r1", true), pod(1, "r2", true), pod(2, "r2", true)];
        let p = plan(&set(3, false, Some(1)), &pods, "r1", "r2", now());
        assert!(p.delete.is_empty(), "web-0 is below the partition");
        assert_eq!(p.status.updated_replicas, Some(2));
        assert_eq!(p.status.current_revision.as_deref(), Some("r1"));
        // Below the partition, a new pod takes the current revision.
        assert_eq!(plan(&set(3, true, Some(1)), &[], "r1", "r2", now()).create[0], (0, false));
    }

    #[test]
    fn the_update_becomes_current_when_every_pod_has_it() {
        let pods = [pod(0, "r2", true), pod(1, "r2", true)];
        let p = plan(&set(2, false, None), &pods, "r1", "r2", now());
        assert_eq!(p.status.current_revision.as_deref(), Some("r2"));
        assert_eq!(
            (p.status.replicas, p.status.ready_replicas, p.status.current_replicas),
            (2, Some(2), Some(2))
        );
    }
}
