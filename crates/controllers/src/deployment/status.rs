//! A Deployment's status and conditions as upstream's controller reports them
//! (`calculateStatus`, `syncRolloutStatus`), which `kubectl rollout status` reads.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::revision::replicas_of;
use super::sizes::{available, max_unavailable, spec_replicas};

/// The Progressing condition's type and reasons.
pub const PROGRESSING: &str = "Progressing";
/// The Available condition's type.
pub const AVAILABLE: &str = "Available";
/// The rollout finished.
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
/// The rollout moves.
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
/// The rollout passed its progress deadline.
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
/// A new set was made.
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
/// The new set was found.
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
/// The Deployment was paused.
pub const PAUSED: &str = "DeploymentPaused";
/// The Deployment was resumed.
pub const RESUMED: &str = "DeploymentResumed";

fn actual(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

fn ready(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

/// A condition as upstream makes it: both times now.
pub fn condition(
    kind: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets `c` among `conditions` as upstream's `SetDeploymentCondition`: an unchanged status
/// and reason is left alone; an unchanged status keeps its transition time.
pub fn set_condition(conditions: &mut Vec<DeploymentCondition>, mut c: DeploymentCondition) {
    if let Some(current) = conditions.iter().find(|x| x.type_ == c.type_) {
        if current.status == c.status && current.reason == c.reason {
            return;
        }
        if current.status == c.status {
            c.last_transition_time = current.last_transition_time.clone();
        }
    }
    conditions.retain(|x| x.type_ != c.type_);
    conditions.push(c);
}

/// The condition of `kind`, if set.
pub fn get_condition<'a>(
    status: Option<&'a DeploymentStatus>,
    kind: &str,
) -> Option<&'a DeploymentCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

/// The status the sets add up to (upstream's `calculateStatus`).
pub fn calculate(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let available_count: i32 = all.iter().map(|rs| available(rs)).sum();
    let total: i32 = all.iter().map(|rs| spec_replicas(rs)).sum();
    let some = |n: i32| (n != 0).then_some(n);
    let mut conditions = d.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    if available_count >= replicas_of(d) - max_unavailable(d) {
        set_condition(
            &mut conditions,
            condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut conditions,
            condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: some(all.iter().map(|rs| actual(rs)).sum()),
        updated_replicas: some(new_rs.map_or(0, actual)),
        ready_replicas: some(all.iter().map(|rs| ready(rs)).sum()),
        available_replicas: some(available_count),
        unavailable_replicas: some((total - available_count).max(0)),
        collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        conditions: (!conditions.is_empty()).then_some(conditions),
        ..Default::default()
    }
}

/// Whether every replica is updated and available and the status is current.
pub fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let replicas = replicas_of(d);
    status.updated_replicas.unwrap_or(0) == replicas
        && status.replicas.unwrap_or(0) == replicas
        && status.available_replicas.unwrap_or(0) == replicas
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = old.replicas.unwrap_or(0) - old.updated_replicas.unwrap_or(0);
    let new_old = new.replicas.unwrap_or(0) - new.updated_replicas.unwrap_or(0);
    new.updated_replicas.unwrap_or(0) > old.updated_replicas.unwrap_or(0)
        || new_old < old_old
        || new.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
        || new.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0)
}

/// The progress deadline, when the Deployment has one.
pub fn progress_deadline(d: &Deployment) -> Option<i64> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
        .map(i64::from)
}

fn timed_out(d: &Deployment, now: Timestamp) -> bool {
    let Some(c) = get_condition(d.status.as_ref(), PROGRESSING) else { return false };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => {
            let (Some(from), Some(deadline)) = (c.last_update_time.as_ref(), progress_deadline(d))
            else {
                return false;
            };
            now.duration_since(from.0).as_secs() > deadline
        }
    }
}

/// The status of a rollout (upstream's `syncRolloutStatus`): [`calculate`], then the
/// Progressing condition from how the rollout moved since the last status.
pub fn rollout(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut status = calculate(d, all, new_rs, now);
    let mut conditions = status.conditions.take().unwrap_or_default();
    if progress_deadline(d).is_none() {
        conditions.retain(|c| c.type_ != PROGRESSING);
    }
    let current = get_condition(d.status.as_ref(), PROGRESSING);
    let done = status.replicas == status.updated_replicas
        && current.is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    let subject = match new_rs.and_then(|rs| rs.metadata.name.as_deref()) {
        Some(name) => format!("ReplicaSet {name:?}"),
        None => format!("Deployment {:?}", d.metadata.name.as_deref().unwrap_or_default()),
    };
    if progress_deadline(d).is_some() && !done {
        status.conditions = Some(conditions.clone());
        if complete(d, &status) {
            set_condition(
                &mut conditions,
                condition(
                    PROGRESSING,
                    "True",
                    NEW_RS_AVAILABLE,
                    format!("{subject} has successfully progressed."),
                    now,
                ),
            );
        } else if progressing(d, &status) {
            let mut c = condition(
                PROGRESSING,
                "True",
                RS_UPDATED,
                format!("{subject} is progressing."),
                now,
            );
            if let Some(current) = current {
                if current.status == "True" {
                    c.last_transition_time = current.last_transition_time.clone();
                }
                conditions.retain(|x| x.type_ != PROGRESSING);
            }
            set_condition(&mut conditions, c);
        } else if timed_out(d, now) {
            set_condition(
                &mut conditions,
                condition(
                    PROGRESSING,
                    "False",
                    TIMED_OUT,
                    format!("{subject} has timed out progressing."),
                    now,
                ),
            );
        }
    }
    // A set's failure to make pods shows on the Deployment.
    let failure = all.iter().find_map(|rs| {
        rs.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
            .cloned()
    });
    match failure {
        Some(f) => set_condition(
            &mut conditions,
            DeploymentCondition {
                type_: "ReplicaFailure".into(),
                status: f.status,
                reason: f.reason,
                message: f.message,
                last_update_time: f.last_transition_time.clone(),
                last_transition_time: f.last_transition_time,
            },
        ),
        None => conditions.retain(|c| c.type_ != "ReplicaFailure"),
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
    use kube::api::ObjectMeta;

    fn d(replicas: i32) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(600),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn rs(replicas: i32, available: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta { name: Some("web-abc".into()), ..Default::default() },
            spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }),
            status: Some(ReplicaSetStatus {
                replicas,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_finished_rollout_says_so_in_upstream_words() {
        let dep = d(2);
        let set = rs(2, 2);
        let s = rollout(&dep, &[&set], Some(&set), Timestamp::now());
        assert!(complete(&dep, &s));
        let p = get_condition(Some(&s), PROGRESSING).cloned().unwrap_or_default();
        assert_eq!(p.reason.as_deref(), Some(NEW_RS_AVAILABLE));
        assert_eq!(
            p.message.as_deref(),
            Some(r#"ReplicaSet "web-abc" has successfully progressed."#)
        );
        let a = get_condition(Some(&s), AVAILABLE).cloned().unwrap_or_default();
        assert_eq!(
            (a.status.as_str(), a.reason.as_deref()),
            ("True", Some("MinimumReplicasAvailable"))
        );
    }

    #[test]
    fn an_unavailable_rollout_is_progressing_and_not_available() {
        let dep = d(2);
        let set = rs(2, 0);
        let s = rollout(&dep, &[&set], Some(&set), Timestamp::now());
        assert_eq!(s.unavailable_replicas, Some(2));
        let a = get_condition(Some(&s), AVAILABLE).cloned().unwrap_or_default();
        assert_eq!(a.status, "False");
        let p = get_condition(Some(&s), PROGRESSING).cloned().unwrap_or_default();
        assert_eq!(p.reason.as_deref(), Some(RS_UPDATED));
    }
}
