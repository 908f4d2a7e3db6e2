//! The restart rules of a pod's containers, as upstream's kubelet applies them: the policy
//! each container runs under, how far the init containers let the pod go, and what follows
//! the end of a run (done, a back-off wait, or a restart). Plain functions of what the
//! worker observed; the worker (`worker.rs`) acts on their answers.

use std::time::Duration;

use k8s_openapi::api::core::v1::Container;

/// How long a container must run for its back-off to start over (upstream: 10 minutes).
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// A container's restart policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Started again whenever it ends.
    Always,
    /// Started again when it fails.
    OnFailure,
    /// Never started again.
    Never,
}

impl Policy {
    /// The pod's `spec.restartPolicy` (unset or unknown is `Always`, the API's default).
    pub fn of_pod(raw: Option<&str>) -> Policy {
        match raw {
            Some("OnFailure") => Policy::OnFailure,
            Some("Never") => Policy::Never,
            _ => Policy::Always,
        }
    }

    /// The policy of an init container of a pod with policy `pod`: a sidecar
    /// (`restartPolicy: Always` on the init container) always restarts; the others are
    /// retried on failure unless the pod never restarts.
    pub fn of_init(c: &Container, pod: Policy) -> Policy {
        if is_sidecar(c) {
            Policy::Always
        } else if pod == Policy::Never {
            Policy::Never
        } else {
            Policy::OnFailure
        }
    }

    /// Whether a run that ended (`succeeded` or not) is started again.
    pub fn restarts(self, succeeded: bool) -> bool {
        match self {
            Policy::Always => true,
            Policy::OnFailure => !succeeded,
            Policy::Never => false,
        }
    }
}

/// Whether init container `c` is a sidecar: started in order, then kept running beside the
/// app containers.
pub fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Where a container stands after one step of the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// It runs.
    Running,
    /// It ended with success and is not started again.
    Succeeded,
    /// It ended in failure and is not started again.
    Failed,
    /// Not there yet; look again after this long.
    Wait(Duration),
}

/// What the step of one init container means for the rest of the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitGate {
    /// Done with this one (succeeded, or a sidecar that runs): the next may start.
    Open,
    /// Not done yet: the next waits.
    Closed,
    /// Failed for good (a pod that never restarts): nothing more starts.
    Failed,
}

/// Whether init container `c`, after `step`, lets the next one start; `started`: whether
/// its startup probe (if any) has passed, which a sidecar needs too.
pub fn init_gate(c: &Container, step: Step, started: bool) -> InitGate {
    match (step, is_sidecar(c)) {
        (Step::Running, true) if started => InitGate::Open,
        (Step::Succeeded, false) => InitGate::Open,
        (Step::Failed, _) => InitGate::Failed,
        _ => InitGate::Closed,
    }
}

/// The run of a container that ended, as the worker observed it.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    /// Exit code 0 and no start error.
    pub succeeded: bool,
    /// How long it ran.
    pub ran: Duration,
    /// How long ago it ended.
    pub since: Duration,
}

/// What follows the end of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Not started again: the container stays terminated.
    Done {
        /// Whether the run succeeded.
        succeeded: bool,
    },
    /// CrashLoopBackOff: started again later.
    BackOff {
        /// The whole back-off of this restart.
        delay: Duration,
        /// What is left of it.
        left: Duration,
    },
    /// Started again now.
    Restart {
        /// The restarts of the back-off window, this one included.
        restarts: u32,
    },
}

/// What follows the end of run `ended` under `policy`, when `restarts` restarts happened in
/// the current back-off window; a pod that has ended (`terminal`) restarts nothing.
pub fn after_exit(policy: Policy, ended: Ended, restarts: u32, terminal: bool) -> AfterExit {
    if terminal || !policy.restarts(ended.succeeded) {
        return AfterExit::Done { succeeded: ended.succeeded };
    }
    let n = if ended.ran >= BACKOFF_RESET { 0 } else { restarts };
    let delay = backoff_delay(n);
    if ended.since < delay {
        return AfterExit::BackOff { delay, left: delay - ended.since };
    }
    AfterExit::Restart { restarts: n + 1 }
}

/// The delay before restart number `n` of a back-off window: none for the first, then
/// 10 s doubling to 300 s (upstream's CrashLoopBackOff).
pub fn backoff_delay(n: u32) -> Duration {
    if n == 0 { Duration::ZERO } else { Duration::from_secs((10u64 << (n - 1).min(5)).min(300)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(restart_policy: Option<&str>) -> Container {
        Container {
            name: "c".into(),
            restart_policy: restart_policy.map(Into::into),
            ..Container::default()
        }
    }

    fn ended(succeeded: bool, ran: u64, since: u64) -> Ended {
        Ended { succeeded, ran: Duration::from_secs(ran), since: Duration::from_secs(since) }
    }

    #[test]
    fn crash_loop_back_off_grows_to_five_minutes() {
        let delays: Vec<u64> = (0..8).map(|n| backoff_delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn pod_policy_defaults_to_always() {
        assert_eq!(Policy::of_pod(None), Policy::Always);
        assert_eq!(Policy::of_pod(Some("OnFailure")), Policy::OnFailure);
        assert_eq!(Policy::of_pod(Some("Never")), Policy::Never);
    }

    #[test]
    fn init_containers_retry_on_failure_unless_the_pod_never_restarts() {
        let plain = container(None);
        let sidecar = container(Some("Always"));
        for pod in [Policy::Always, Policy::OnFailure] {
            assert_eq!(Policy::of_init(&plain, pod), Policy::OnFailure);
        }
        assert_eq!(Policy::of_init(&plain, Policy::Never), Policy::Never);
        for pod in [Policy::Always, Policy::OnFailure, Policy::Never] {
            assert_eq!(Policy::of_init(&sidecar, pod), Policy::Always);
        }
    }

    #[test]
    fn init_sequence_moves_on_after_success_or_a_running_sidecar() {
        let plain = container(None);
        let sidecar = container(Some("Always"));
        assert_eq!(init_gate(&plain, Step::Succeeded, true), InitGate::Open);
        assert_eq!(init_gate(&plain, Step::Running, true), InitGate::Closed);
        assert_eq!(init_gate(&plain, Step::Wait(Duration::from_secs(1)), true), InitGate::Closed);
        assert_eq!(init_gate(&plain, Step::Failed, true), InitGate::Failed);
        assert_eq!(init_gate(&sidecar, Step::Running, true), InitGate::Open);
        // A sidecar whose startup probe has not passed yet holds the next one back.
        assert_eq!(init_gate(&sidecar, Step::Running, false), InitGate::Closed);
        // A sidecar that exited is restarted, so the sequence waits for it.
        assert_eq!(init_gate(&sidecar, Step::Succeeded, true), InitGate::Closed);
    }

    #[test]
    fn runs_that_are_not_restarted_are_done() {
        assert_eq!(
            after_exit(Policy::Never, ended(false, 1, 0), 0, false),
            AfterExit::Done { succeeded: false }
        );
        assert_eq!(
            after_exit(Policy::OnFailure, ended(true, 1, 0), 0, false),
            AfterExit::Done { succeeded: true }
        );
        // Once the pod has ended, even `Always` restarts nothing.
        assert_eq!(
            after_exit(Policy::Always, ended(false, 1, 0), 0, true),
            AfterExit::Done { succeeded: false }
        );
    }

    #[test]
    fn first_restart_is_immediate_then_backs_off() {
        assert_eq!(
            after_exit(Policy::Always, ended(true, 1, 0), 0, false),
            AfterExit::Restart { restarts: 1 }
        );
        assert_eq!(
            after_exit(Policy::OnFailure, ended(false, 1, 3), 1, false),
            AfterExit::BackOff { delay: Duration::from_secs(10), left: Duration::from_secs(7) }
        );
        assert_eq!(
            after_exit(Policy::OnFailure, ended(false, 1, 10), 1, false),
            AfterExit::Restart { restarts: 2 }
        );
        assert_eq!(
            after_exit(Policy::Always, ended(false, 1, 0), 9, false),
            AfterExit::BackOff { delay: Duration::from_secs(300), left: Duration::from_secs(300) }
        );
    }

    #[test]
    fn ten_minutes_of_running_resets_the_back_off() {
        assert_eq!(
            after_exit(Policy::Always, ended(false, 600, 0), 6, false),
            AfterExit::Restart { restarts: 1 }
        );
        assert_eq!(
            after_exit(Policy::Always, ended(false, 599, 0), 6, false),
            AfterExit::BackOff { delay: Duration::from_secs(300), left: Duration::from_secs(300) }
        );
    }
}
