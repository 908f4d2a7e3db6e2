//! A pod's status from what its containers are doing: phase, conditions and container
//! statuses as upstream's kubelet fills them. Pure: the worker gathers the facts.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::restart::{self, Policy};

/// How one container ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// The exit code.
    pub exit_code: i32,
    /// The killing signal, if any.
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `ContainerStatusUnknown`.
    pub reason: String,
    /// When it started, if it did.
    pub started_at: Option<Time>,
    /// When it ended.
    pub finished_at: Option<Time>,
    /// Why it could not start, or its termination message (`terminationMessagePath`, or
    /// the end of its log under `FallbackToLogsOnError`).
    pub message: Option<String>,
}

/// What one container is doing now.
#[derive(Debug, Clone, PartialEq)]
pub enum Now {
    /// Not running, with upstream's reason (`ContainerCreating`, `PodInitializing`,
    /// `CrashLoopBackOff`, `ErrImagePull`, `CreateContainerConfigError`, ...).
    Waiting {
        /// The reason.
        reason: String,
        /// The details.
        message: Option<String>,
    },
    /// Running since then.
    Running {
        /// When it started.
        started_at: Option<Time>,
        /// Whether its readiness probe (if any) passes.
        ready: bool,
        /// Whether its startup probe (if any) has passed.
        started: bool,
    },
    /// Ended and will not run again.
    Terminated(Ended),
}

/// One container's facts.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerFacts {
    /// Its name.
    pub name: String,
    /// The image the spec names.
    pub image: String,
    /// The image it runs (`sha256:...`), once known.
    pub image_id: String,
    /// The runtime's id of its current (or last) run (`krust://ID`), once it has one.
    pub container_id: Option<String>,
    /// Restarts so far.
    pub restart_count: i32,
    /// What it does now.
    pub now: Now,
    /// How its previous run ended.
    pub last: Option<Ended>,
}

/// A pod's facts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PodFacts {
    /// Init containers, in order.
    pub init: Vec<ContainerFacts>,
    /// App containers, in order.
    pub app: Vec<ContainerFacts>,
    /// Whether the sandbox (namespaces and network) is ready.
    pub sandbox_ready: bool,
    /// The pod's address.
    pub pod_ip: Option<String>,
    /// The node's address.
    pub host_ip: Option<String>,
    /// When the agent first acted on the pod.
    pub start_time: Option<Time>,
    /// `Guaranteed`, `Burstable`, `BestEffort`.
    pub qos_class: String,
}

fn state(now: &Now) -> ContainerState {
    match now {
        Now::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.clone()),
                message: message.clone(),
            }),
            ..ContainerState::default()
        },
        Now::Running { started_at, .. } => ContainerState {
            running: Some(ContainerStateRunning { started_at: started_at.clone() }),
            ..ContainerState::default()
        },
        Now::Terminated(ended) => {
            ContainerState { terminated: Some(terminated(ended)), ..ContainerState::default() }
        }
    }
}

fn terminated(ended: &Ended) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: ended.exit_code,
        signal: ended.signal,
        reason: Some(ended.reason.clone()),
        started_at: ended.started_at.clone(),
        finished_at: ended.finished_at.clone(),
        message: ended.message.clone(),
        ..ContainerStateTerminated::default()
    }
}

fn container_status(c: &ContainerFacts) -> ContainerStatus {
    let (ready, started) = match c.now {
        Now::Running { ready, started, .. } => (ready, started),
        _ => (false, false),
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone(),
        container_id: c.container_id.clone(),
        ready,
        started: Some(started),
        restart_count: c.restart_count,
        state: Some(state(&c.now)),
        last_state: Some(
            c.last
                .as_ref()
                .map(|e| ContainerState {
                    terminated: Some(terminated(e)),
                    ..ContainerState::default()
                })
                .unwrap_or_default(),
        ),
        ..ContainerStatus::default()
    }
}

/// The phase, by upstream's rules (`getPhase`). Sidecars (`sidecars[i]`: init container
/// `i` restarts always) count while they run, and not once they have stopped: a pod whose
/// app containers are done is Succeeded or Failed only after its sidecars have stopped.
pub fn phase(restart_policy: Policy, facts: &PodFacts, sidecars: &[bool]) -> &'static str {
    let (mut pending_init, mut pending_sidecars, mut failed_init) = (0, 0, 0);
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for (c, sidecar) in facts.init.iter().zip(sidecars) {
        match (&c.now, *sidecar) {
            (Now::Running { started, .. }, true) => {
                running += 1;
                if !started {
                    pending_sidecars += 1;
                }
            }
            (Now::Running { .. }, false) => pending_init += 1,
            (Now::Terminated(e), false) if e.exit_code != 0 => failed_init += 1,
            (Now::Waiting { .. }, false) => match &c.last {
                Some(e) if e.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            },
            (Now::Waiting { .. }, true) if c.last.is_none() => {
                pending_sidecars += 1;
                waiting += 1;
            }
            _ => {}
        }
    }
    // Whether the app containers have started before (upstream: the pod has initialized).
    let initialized_before =
        facts.app.iter().any(|c| !matches!(c.now, Now::Waiting { .. }) || c.last.is_some());
    for c in &facts.app {
        match &c.now {
            Now::Running { .. } => running += 1,
            Now::Terminated(e) => {
                stopped += 1;
                if e.exit_code == 0 {
                    succeeded += 1;
                }
            }
            Now::Waiting { .. } if c.last.is_some() => stopped += 1,
            Now::Waiting { .. } => waiting += 1,
        }
    }
    if failed_init > 0 && restart_policy == Policy::Never {
        "Failed"
    } else if pending_init > 0 || (pending_sidecars > 0 && !initialized_before) || waiting > 0 {
        "Pending"
    } else if running > 0 {
        "Running"
    } else if stopped > 0 {
        if restart_policy == Policy::Always {
            "Running"
        } else if stopped == succeeded {
            "Succeeded"
        } else if restart_policy == Policy::Never {
            "Failed"
        } else {
            "Running"
        }
    } else {
        "Pending"
    }
}

/// The pod's status from its facts, keeping what others own (conditions of readiness gates,
/// DisruptionTarget) and each condition's last transition while its value holds.
pub fn status(pod: &Pod, facts: &PodFacts) -> PodStatus {
    let spec = pod.spec.as_ref();
    let restart_policy = Policy::of_pod(spec.and_then(|s| s.restart_policy.as_deref()));
    let sidecars: Vec<bool> = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|inits| inits.iter().map(restart::is_sidecar).collect())
        .unwrap_or_default();
    let previous = pod.status.as_ref();
    let phase = phase(restart_policy, facts, &sidecars);
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let condition = |type_: &str, value: bool, reason: Option<&str>| {
        let status = if value { "True" } else { "False" };
        let reported = previous.and_then(|p| p.conditions.as_ref()).into_iter().flatten();
        let since = crate::transition_time(
            reported
                .map(|c| (c.type_.as_str(), c.status.as_str(), c.last_transition_time.as_ref())),
            type_,
            status,
            &now,
        );
        PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.filter(|_| !value).map(str::to_string),
            last_transition_time: Some(since),
            ..PodCondition::default()
        }
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    let initialized = facts.init.iter().zip(&sidecars).all(|(c, sidecar)| {
        if *sidecar {
            matches!(c.now, Now::Running { started: true, .. })
        } else {
            matches!(&c.now, Now::Terminated(e) if e.exit_code == 0)
        }
    }) || (terminal
        && facts.init.iter().all(|c| matches!(&c.now, Now::Terminated(e) if e.exit_code == 0)));
    // Every app container and every sidecar runs and is ready.
    let ready = !facts.app.is_empty()
        && facts
            .app
            .iter()
            .chain(facts.init.iter().zip(&sidecars).filter(|(_, s)| **s).map(|(c, _)| c))
            .all(|c| matches!(c.now, Now::Running { ready: true, .. }));
    let not_ready_reason = if terminal { "PodCompleted" } else { "ContainersNotReady" };
    let mut conditions = vec![
        condition("PodReadyToStartContainers", facts.sandbox_ready && !terminal, None),
        condition(
            "Initialized",
            initialized,
            Some(if terminal { "PodCompleted" } else { "ContainersNotInitialized" }),
        ),
        condition("Ready", ready, Some(not_ready_reason)),
        condition("ContainersReady", ready, Some(not_ready_reason)),
        // A pod on this node was scheduled, by the scheduler or by its nodeName (upstream's
        // kubelet reports it too).
        condition("PodScheduled", true, None),
    ];
    // Others' conditions (readiness gates, DisruptionTarget) are kept.
    for kept in previous.and_then(|p| p.conditions.as_ref()).into_iter().flatten() {
        if !conditions.iter().any(|c| c.type_ == kept.type_) {
            conditions.push(kept.clone());
        }
    }
    conditions.sort_by_key(|c| match c.type_.as_str() {
        "PodReadyToStartContainers" => 0,
        "Initialized" => 1,
        "Ready" => 2,
        "ContainersReady" => 3,
        "PodScheduled" => 4,
        _ => 5,
    });
    let pod_ips = facts.pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]);
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: facts.host_ip.clone(),
        host_ips: facts
            .host_ip
            .as_ref()
            .map(|ip| vec![k8s_openapi::api::core::v1::HostIP { ip: ip.clone() }]),
        pod_ip: facts.pod_ip.clone(),
        pod_ips,
        start_time: facts.start_time.clone(),
        qos_class: Some(facts.qos_class.clone()),
        init_container_statuses: (!facts.init.is_empty())
            .then(|| facts.init.iter().map(container_status).collect()),
        container_statuses: Some(facts.app.iter().map(container_status).collect()),
        ..previous.cloned().unwrap_or_default()
    }
}

/// The reason of a run that ended with `exit_code`.
pub fn ended_reason(exit_code: i32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str) -> ContainerFacts {
        ContainerFacts {
            name: name.into(),
            image: "i".into(),
            image_id: String::new(),
            container_id: None,
            restart_count: 0,
            now: Now::Running { started_at: None, ready: true, started: true },
            last: None,
        }
    }

    fn ended(code: i32) -> Ended {
        Ended {
            exit_code: code,
            signal: None,
            reason: ended_reason(code, false).into(),
            started_at: None,
            finished_at: None,
            message: None,
        }
    }

    #[test]
    fn phases() {
        let mut facts = PodFacts { app: vec![running("a")], ..PodFacts::default() };
        assert_eq!(phase(Policy::Always, &facts, &[]), "Running");
        facts.app[0].now = Now::Terminated(ended(0));
        assert_eq!(phase(Policy::Never, &facts, &[]), "Succeeded");
        assert_eq!(phase(Policy::Always, &facts, &[]), "Running");
        facts.app[0].now = Now::Terminated(ended(3));
        assert_eq!(phase(Policy::Never, &facts, &[]), "Failed");
        assert_eq!(phase(Policy::OnFailure, &facts, &[]), "Running");
        facts.app[0].now = Now::Waiting { reason: "CrashLoopBackOff".into(), message: None };
        facts.app[0].last = Some(ended(1));
        assert_eq!(phase(Policy::Always, &facts, &[]), "Running");
        facts.app[0].last = None;
        facts.app[0].now = Now::Waiting { reason: "ContainerCreating".into(), message: None };
        assert_eq!(phase(Policy::Always, &facts, &[]), "Pending");
    }

    #[test]
    fn init_containers_gate_the_pod() {
        let mut facts = PodFacts {
            init: vec![running("init")],
            app: vec![running("a")],
            ..PodFacts::default()
        };
        assert_eq!(phase(Policy::Always, &facts, &[false]), "Pending");
        assert_eq!(phase(Policy::Always, &facts, &[true]), "Running");
        facts.init[0].now = Now::Terminated(ended(1));
        assert_eq!(phase(Policy::Never, &facts, &[false]), "Failed");
        facts.init[0].now = Now::Terminated(ended(0));
        assert_eq!(phase(Policy::Never, &facts, &[false]), "Running");
    }

    #[test]
    fn conditions_and_statuses() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a", "image": "i"}]},
            "status": {"conditions": [{"type": "PodScheduled", "status": "True"}]},
        }))
        .expect("pod");
        let facts = PodFacts {
            app: vec![running("a")],
            sandbox_ready: true,
            pod_ip: Some("10.42.0.5".into()),
            qos_class: "BestEffort".into(),
            ..PodFacts::default()
        };
        let status = status(&pod, &facts);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let conditions = status.conditions.expect("conditions");
        let of = |t: &str| conditions.iter().find(|c| c.type_ == t).map(|c| c.status.clone());
        assert_eq!(of("Ready").as_deref(), Some("True"));
        assert_eq!(of("PodScheduled").as_deref(), Some("True"));
        assert_eq!(of("PodReadyToStartContainers").as_deref(), Some("True"));
        assert_eq!(status.pod_ips.map(|ips| ips[0].ip.clone()).as_deref(), Some("10.42.0.5"));
        let c = &status.container_statuses.expect("statuses")[0];
        assert!(c.ready && c.state.as_ref().is_some_and(|s| s.running.is_some()));
    }

    #[test]
    fn sidecars_count_while_they_run() {
        let mut facts = PodFacts {
            init: vec![running("sidecar")],
            app: vec![running("a")],
            ..PodFacts::default()
        };
        facts.app[0].now = Now::Terminated(ended(0));
        // The app container is done; the pod ends only once its sidecar has stopped.
        assert_eq!(phase(Policy::Never, &facts, &[true]), "Running");
        facts.init[0].now = Now::Terminated(ended(143));
        assert_eq!(phase(Policy::Never, &facts, &[true]), "Succeeded");
        facts.app[0].now = Now::Terminated(ended(2));
        assert_eq!(phase(Policy::OnFailure, &facts, &[true]), "Running");
        assert_eq!(phase(Policy::Never, &facts, &[true]), "Failed");
        // A sidecar not started yet holds the pod in Pending, until the app containers ran.
        facts.init[0].now = Now::Waiting { reason: "ContainerCreating".into(), message: None };
        facts.app[0].now = Now::Waiting { reason: "PodInitializing".into(), message: None };
        assert_eq!(phase(Policy::Always, &facts, &[true]), "Pending");
        facts.init[0].now = Now::Running { started_at: None, ready: true, started: false };
        assert_eq!(phase(Policy::Always, &facts, &[true]), "Pending");
        facts.app[0] = running("a");
        assert_eq!(phase(Policy::Always, &facts, &[true]), "Running");
    }

    #[test]
    fn a_sidecar_that_is_not_ready_keeps_the_pod_not_ready() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "initContainers": [{"name": "s", "image": "i", "restartPolicy": "Always"}],
                "containers": [{"name": "a", "image": "i"}],
            },
        }))
        .expect("pod");
        let mut facts = PodFacts {
            init: vec![running("s")],
            app: vec![running("a")],
            sandbox_ready: true,
            ..PodFacts::default()
        };
        let ready = |facts: &PodFacts| {
            let conditions = status(&pod, facts).conditions.expect("conditions");
            let of = |t: &str| conditions.iter().find(|c| c.type_ == t).map(|c| c.status.clone());
            // Set by the agent when nobody else did (a pod given its nodeName).
            assert_eq!(of("PodScheduled").as_deref(), Some("True"));
            of("Ready").as_deref() == Some("True")
        };
        assert!(ready(&facts));
        facts.init[0].now = Now::Running { started_at: None, ready: false, started: true };
        assert!(!ready(&facts));
    }

    #[test]
    fn termination_messages_are_reported() {
        let facts = ContainerFacts {
            now: Now::Terminated(Ended { message: Some("bye".into()), ..ended(1) }),
            ..running("a")
        };
        let state = container_status(&facts).state.expect("state");
        assert_eq!(state.terminated.and_then(|t| t.message).as_deref(), Some("bye"));
    }
}
