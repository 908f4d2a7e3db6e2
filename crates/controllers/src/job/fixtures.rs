//! Jobs and pods for the decision tests.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodSpec, PodStatus,
    PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

use super::backoff::Record;
use super::indexes::COMPLETION_INDEX;
use super::manage::{Assessment, Inputs, TRACKING_FINALIZER, assess};

pub fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub fn job(completions: Option<i32>, parallelism: i32) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("pi".into()),
            namespace: Some("ns".into()),
            uid: Some("job-uid".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(6),
            completion_mode: Some("NonIndexed".into()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(BTreeMap::from([("job-name".into(), "pi".into())])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container { name: "main".into(), ..Default::default() }],
                    restart_policy: Some("Never".into()),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: Some(JobStatus { start_time: Some(Time(at(0))), ..Default::default() }),
    }
}

pub fn indexed(completions: i32, parallelism: i32) -> Job {
    let mut j = job(Some(completions), parallelism);
    if let Some(s) = j.spec.as_mut() {
        s.completion_mode = Some("Indexed".into());
    }
    j
}

/// A pod of the job: `phase` (None: Pending), its index, and a finished container's exit
/// code for terminal phases.
pub fn pod(name: &str, phase: &str, index: Option<i32>) -> Pod {
    let terminal = phase == "Succeeded" || phase == "Failed";
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("{name}-uid")),
            finalizers: Some(vec![TRACKING_FINALIZER.into()]),
            annotations: index.map(|i| BTreeMap::from([(COMPLETION_INDEX.into(), i.to_string())])),
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: "pi".into(),
                uid: "job-uid".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: Some(PodSpec::default()),
        status: Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: terminal.then(|| {
                vec![ContainerStatus {
                    name: "main".into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: if phase == "Failed" { 1 } else { 0 },
                            finished_at: Some(Time(at(1))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
    }
}

pub fn exit(mut pod: Pod, code: i32) -> Pod {
    if let Some(t) = pod
        .status
        .as_mut()
        .and_then(|s| s.container_statuses.as_mut())
        .and_then(|c| c.first_mut())
        .and_then(|c| c.state.as_mut())
        .and_then(|s| s.terminated.as_mut())
    {
        t.exit_code = code;
    }
    pod
}

pub fn without_finalizer(mut pod: Pod) -> Pod {
    pod.metadata.finalizers = None;
    pod
}

pub fn arcs(pods: Vec<Pod>) -> Vec<Arc<Pod>> {
    pods.into_iter().map(Arc::new).collect()
}

pub fn run(job: &Job, pods: &[Arc<Pod>], now: Timestamp) -> Assessment {
    let removing = HashSet::new();
    run_with(job, pods, Record::default(), now, &removing)
}

pub fn run_with(
    job: &Job,
    pods: &[Arc<Pod>],
    backoff: Record,
    now: Timestamp,
    removing: &HashSet<String>,
) -> Assessment {
    assess(job, &Inputs { pods, satisfied: true, removing, backoff, now })
}
