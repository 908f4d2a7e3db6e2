//! ReplicationControllers in their ReplicaSet form and back (upstream's
//! `replication/conversion.go`): the selector map becomes `matchLabels`; the status fields and
//! conditions carry over one to one.

use k8s_openapi::api::apps::v1::{
    ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{
    ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// The ReplicaSet that manages as `rc` does.
pub fn to_replica_set(rc: &ReplicationController) -> ReplicaSet {
    let spec = rc.spec.clone().unwrap_or_default();
    let status = rc.status.clone();
    ReplicaSet {
        metadata: rc.metadata.clone(),
        spec: Some(ReplicaSetSpec {
            replicas: spec.replicas,
            min_ready_seconds: spec.min_ready_seconds,
            selector: LabelSelector { match_labels: spec.selector, match_expressions: None },
            template: spec.template,
        }),
        status: status.map(|s| ReplicaSetStatus {
            replicas: s.replicas,
            fully_labeled_replicas: s.fully_labeled_replicas,
            ready_replicas: s.ready_replicas,
            available_replicas: s.available_replicas,
            observed_generation: s.observed_generation,
            conditions: s.conditions.map(|c| {
                c.into_iter()
                    .map(|c| ReplicaSetCondition {
                        type_: c.type_,
                        status: c.status,
                        reason: c.reason,
                        message: c.message,
                        last_transition_time: c.last_transition_time,
                    })
                    .collect()
            }),
            ..ReplicaSetStatus::default()
        }),
    }
}

/// A ReplicaSet status as the ReplicationController's.
pub fn to_controller_status(status: ReplicaSetStatus) -> ReplicationControllerStatus {
    ReplicationControllerStatus {
        replicas: status.replicas,
        fully_labeled_replicas: status.fully_labeled_replicas,
        ready_replicas: status.ready_replicas,
        available_replicas: status.available_replicas,
        observed_generation: status.observed_generation,
        conditions: status.conditions.map(|c| {
            c.into_iter()
                .map(|c| ReplicationControllerCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_transition_time: c.last_transition_time,
                })
                .collect()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ReplicationControllerSpec;

    #[test]
    fn round_trip() {
        let rc = ReplicationController {
            spec: Some(ReplicationControllerSpec {
                replicas: Some(3),
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ..ReplicationControllerSpec::default()
            }),
            status: Some(ReplicationControllerStatus {
                replicas: 2,
                ready_replicas: Some(1),
                conditions: Some(vec![ReplicationControllerCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    ..ReplicationControllerCondition::default()
                }]),
                ..ReplicationControllerStatus::default()
            }),
            ..ReplicationController::default()
        };
        let rs = to_replica_set(&rc);
        let spec = rs.spec.as_ref().expect("a spec");
        assert_eq!(spec.selector.match_labels, rc.spec.as_ref().and_then(|s| s.selector.clone()));
        assert_eq!(spec.replicas, Some(3));
        let back = to_controller_status(rs.status.expect("a status"));
        assert_eq!(Some(back), rc.status);
    }
}
