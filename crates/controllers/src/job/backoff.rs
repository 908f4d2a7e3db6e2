//! The back-off before a failed Job's pods are replaced (upstream's `backoff_utils.go`):
//! 10 s after the first failure since the last success, doubling with each further one, at
//! most 6 minutes. Counted per Job from the pods the controller sees finish; per index (with
//! `backoffLimitPerIndex`) from the failure count the index's last failed pod carries.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// The first delay (upstream's `DefaultJobPodFailureBackOff`).
pub const INITIAL: Duration = Duration::from_secs(10);

/// The longest delay (upstream's `MaxJobPodFailureBackOff`).
pub const MAX: Duration = Duration::from_secs(360);

/// Failures since the last success of one Job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Failed pods since the last succeeded one.
    pub failures: u32,
    /// When the last of them finished.
    pub last_failure: Option<Timestamp>,
}

impl Record {
    /// The record once the newly finished pods are counted.
    pub fn next(self, succeeded: &[Arc<Pod>], failed: &[Arc<Pod>]) -> Record {
        let mut failed_at: Vec<Timestamp> = failed.iter().map(|p| finished_at(p)).collect();
        failed_at.sort();
        let last_success = succeeded.iter().map(|p| finished_at(p)).max();
        match last_success {
            None => match failed_at.last() {
                None => self,
                Some(last) => Record {
                    failures: self.failures + u32::try_from(failed_at.len()).unwrap_or(u32::MAX),
                    last_failure: Some(*last),
                },
            },
            Some(success) => {
                let after: Vec<&Timestamp> = failed_at.iter().filter(|t| **t > success).collect();
                Record {
                    failures: u32::try_from(after.len()).unwrap_or(u32::MAX),
                    last_failure: after.last().map(|t| **t),
                }
            }
        }
    }

    /// How long to wait before creating pods at `now`; zero when it may.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        remaining(self.failures, self.last_failure, now)
    }
}

/// The delay after `failures` consecutive failures, the last at `last`, left at `now`.
pub fn remaining(failures: u32, last: Option<Timestamp>, now: Timestamp) -> Duration {
    let Some(last) = last.filter(|_| failures > 0) else { return Duration::ZERO };
    let mut delay = INITIAL;
    for _ in 1..failures {
        delay *= 2;
        if delay >= MAX {
            delay = MAX;
            break;
        }
    }
    let elapsed = now.duration_since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    delay.saturating_sub(elapsed)
}

/// When a pod finished, as upstream estimates it: its containers' last finish, else when it
/// turned not ready, else its deletion less its grace period, else its creation.
pub fn finished_at(pod: &Pod) -> Timestamp {
    let status = pod.status.as_ref();
    let containers = status.and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    if !containers.is_empty() {
        let finished: Option<Vec<Timestamp>> = containers
            .iter()
            .map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
            .collect();
        if let Some(latest) = finished.and_then(|f| f.into_iter().max()) {
            return latest;
        }
    }
    let not_ready = status
        .and_then(|s| s.conditions.as_deref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .filter(|c| c.status == "False")
        .and_then(|c| c.last_transition_time.as_ref());
    if let Some(t) = not_ready {
        return t.0;
    }
    if let Some(deleted) = &pod.metadata.deletion_timestamp {
        let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
        return deleted.0 - k8s_openapi::jiff::SignedDuration::from_secs(grace);
    }
    pod.metadata.creation_timestamp.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn finished(seconds: i64) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta::default(),
            spec: None,
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            finished_at: Some(Time(at(seconds))),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn the_delay_doubles_from_ten_seconds_up_to_six_minutes() {
        let cases = [(0, 0), (1, 10), (2, 20), (3, 40), (5, 160), (6, 320), (7, 360), (30, 360)];
        for (failures, seconds) in cases {
            let left = remaining(failures, Some(at(0)), at(0));
            assert_eq!(left, Duration::from_secs(seconds), "{failures} failures");
        }
        assert_eq!(remaining(2, Some(at(0)), at(15)), Duration::from_secs(5));
        assert_eq!(remaining(2, Some(at(0)), at(25)), Duration::ZERO);
    }

    #[test]
    fn a_success_resets_the_count_to_the_failures_after_it() {
        let record = Record { failures: 3, last_failure: Some(at(0)) };
        let next = record.next(&[], &[finished(5)]);
        assert_eq!(next, Record { failures: 4, last_failure: Some(at(5)) });
        let next = record.next(&[finished(10)], &[finished(5), finished(12), finished(14)]);
        assert_eq!(next.failures, 2);
        assert_eq!(next.last_failure, Some(at(14)));
        assert_eq!(record.next(&[finished(10)], &[]), Record::default());
        assert_eq!(record.next(&[], &[]), record);
    }
}
