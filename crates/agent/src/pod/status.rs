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
    /// Its IPv6 address on a dual-stack node (after the IPv4 one in `podIPs`).
    pub pod_ip6: Option<String>,
    /// The node's address.
    pub host_ip: Option<String>,
    /// Its IPv6 address on a dual-stack node (after the IPv4 one in `hostIPs`).
    pub host_ip6: Option<String>,
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

/// `init`: an init container that is not a sidecar, ready once it has succeeded (as
/// upstream's kubelet reports it).
fn container_status(c: &ContainerFacts, init: bool) -> ContainerStatus {
    let (ready, started) = match &c.now {
        Now::Running { ready, started, .. } => (*ready, *started),
        Now::Terminated(e) => (init && e.exit_code == 0, false),
        Now::Waiting { .. } => (false, false),
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

/// The pod's status from its facts, keeping each condition's last transition while its value
/// holds. It holds the agent's own conditions only: others' (readiness gates, DisruptionTarget)
/// stay as their owners set them, since the status is written as a strategic merge patch,
/// which merges conditions by type.
pub fn status(pod: &Pod, facts: &PodFacts) -> PodStatus {
    let spec = pod.spec.as_ref();
    let restart_policy = Policy::of_pod(spec.and_then(|s| s.restart_policy.as_deref()));
    let sidecars: Vec<bool> = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|inits| inits.iter().map(restart::is_sidecar).collect())
        .unwrap_or_default();
    let previous = pod.status.as_ref();
    let phase = phase(restart_policy, facts, &sidecars);
    let terminal = phase == "Succeeded" || phase == "Failed";
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let reported = previous.and_then(|p| p.conditions.as_deref()).unwrap_or_default();
    let condition = |decided: Decided| {
        let status = if decided.value { "True" } else { "False" };
        let since = crate::transition_time(
            reported
                .iter()
                .map(|c| (c.type_.as_str(), c.status.as_str(), c.last_transition_time.as_ref())),
            decided.type_,
            status,
            &now,
        );
        PodCondition {
            type_: decided.type_.to_string(),
            status: status.to_string(),
            reason: decided.reason.map(str::to_string),
            message: decided.message,
            last_transition_time: Some(since),
            ..PodCondition::default()
        }
    };
    let gates = spec.and_then(|s| s.readiness_gates.as_deref()).unwrap_or_default();
    let gates: Vec<&str> = gates.iter().map(|g| g.condition_type.as_str()).collect();
    let containers_ready = containers_ready(facts, &sidecars, phase);
    let conditions = vec![
        condition(Decided::new("PodReadyToStartContainers", facts.sandbox_ready && !terminal)),
        condition(initialized(facts, &sidecars, phase)),
        condition(ready(&containers_ready, &gates, reported)),
        condition(containers_ready),
        // A pod on this node was scheduled, by the scheduler or by its nodeName (upstream's
        // kubelet reports it too).
        condition(Decided::new("PodScheduled", true)),
    ];
    let pod_ips = facts.pod_ip.as_ref().map(|ip| {
        std::iter::once(ip).chain(&facts.pod_ip6).map(|ip| PodIP { ip: ip.clone() }).collect()
    });
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        host_ip: facts.host_ip.clone(),
        host_ips: facts.host_ip.as_ref().map(|ip| {
            std::iter::once(ip)
                .chain(&facts.host_ip6)
                .map(|ip| k8s_openapi::api::core::v1::HostIP { ip: ip.clone() })
                .collect()
        }),
        pod_ip: facts.pod_ip.clone(),
        pod_ips,
        start_time: facts.start_time.clone(),
        qos_class: Some(facts.qos_class.clone()),
        init_container_statuses: (!facts.init.is_empty()).then(|| {
            facts
                .init
                .iter()
                .zip(&sidecars)
                .map(|(c, sidecar)| container_status(c, !sidecar))
                .collect()
        }),
        container_statuses: Some(facts.app.iter().map(|c| container_status(c, false)).collect()),
        ..previous.cloned().unwrap_or_default()
    }
}

/// One of the agent's conditions, decided: what the pod's status will say of it.
#[derive(Debug, Clone, PartialEq)]
struct Decided {
    type_: &'static str,
    value: bool,
    reason: Option<&'static str>,
    message: Option<String>,
}

impl Decided {
    fn new(type_: &'static str, value: bool) -> Self {
        Self { type_, value, reason: None, message: None }
    }

    fn because(mut self, reason: &'static str, message: Option<String>) -> Self {
        self.reason = Some(reason);
        self.message = message;
        self
    }
}

/// Names as upstream's messages list them (Go's `[a b]`).
fn listed(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// `Initialized`, as upstream's `GeneratePodInitializedCondition`: every init container has
/// succeeded and every sidecar has started; or the app containers have started before, so a
/// restarting sidecar does not make a running pod uninitialized; or the pod has succeeded.
fn initialized(facts: &PodFacts, sidecars: &[bool], phase: &str) -> Decided {
    let decided = Decided::new("Initialized", true);
    if phase == "Succeeded" {
        return decided.because("PodCompleted", None);
    }
    if facts.app.iter().any(|c| !matches!(c.now, Now::Waiting { .. })) {
        return decided;
    }
    let incomplete: Vec<&str> = facts
        .init
        .iter()
        .zip(sidecars)
        .filter(|(c, sidecar)| match &c.now {
            Now::Running { started, .. } => !(**sidecar && *started),
            Now::Terminated(e) => **sidecar || e.exit_code != 0,
            Now::Waiting { .. } => true,
        })
        .map(|(c, _)| c.name.as_str())
        .collect();
    if incomplete.is_empty() {
        return decided;
    }
    let message = format!("containers with incomplete status: {}", listed(&incomplete));
    Decided::new("Initialized", false).because("ContainersNotInitialized", Some(message))
}

/// `ContainersReady`, as upstream's `GenerateContainersReadyCondition`: every app container
/// and every sidecar runs and is ready; false, with the phase as the reason, once the pod
/// has ended.
fn containers_ready(facts: &PodFacts, sidecars: &[bool], phase: &str) -> Decided {
    let not_ready = Decided::new("ContainersReady", false);
    match phase {
        "Succeeded" => return not_ready.because("PodCompleted", None),
        "Failed" => return not_ready.because("PodFailed", None),
        _ => {}
    }
    let sidecars = facts.init.iter().zip(sidecars).filter(|(_, s)| **s).map(|(c, _)| c);
    let unready: Vec<&str> = sidecars
        .chain(&facts.app)
        .filter(|c| !matches!(c.now, Now::Running { ready: true, .. }))
        .map(|c| c.name.as_str())
        .collect();
    if facts.app.is_empty() {
        not_ready.because("ContainersNotReady", None)
    } else if unready.is_empty() {
        Decided::new("ContainersReady", true)
    } else {
        let message = format!("containers with unready status: {}", listed(&unready));
        not_ready.because("ContainersNotReady", Some(message))
    }
}

/// `Ready`, as upstream's `GeneratePodReadyCondition`: the containers are ready and every
/// readiness gate's condition (set by others) is True.
fn ready(containers: &Decided, gates: &[&str], reported: &[PodCondition]) -> Decided {
    if !containers.value {
        return Decided { type_: "Ready", ..containers.clone() };
    }
    let unready: Vec<String> = gates
        .iter()
        .filter_map(|gate| match reported.iter().find(|c| c.type_ == *gate) {
            None => Some(format!(
                "corresponding condition of pod readiness gate \"{gate}\" does not exist."
            )),
            Some(c) if c.status != "True" => Some(format!(
                "the status of pod readiness gate \"{gate}\" is not \"True\", but {}",
                c.status
            )),
            Some(_) => None,
        })
        .collect();
    if unready.is_empty() {
        Decided::new("Ready", true)
    } else {
        Decided::new("Ready", false).because("ReadinessGatesNotReady", Some(unready.join(", ")))
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
        let state = container_status(&facts, false).state.expect("state");
        assert_eq!(state.terminated.and_then(|t| t.message).as_deref(), Some("bye"));
    }

    fn conditions_of(pod: &Pod, facts: &PodFacts) -> Vec<(String, String, Option<String>)> {
        let conditions = status(pod, facts).conditions.expect("conditions");
        conditions.into_iter().map(|c| (c.type_, c.status, c.reason)).collect()
    }

    fn condition<'a>(
        conditions: &'a [(String, String, Option<String>)],
        type_: &str,
    ) -> (&'a str, Option<&'a str>) {
        let c = conditions.iter().find(|c| c.0 == type_).expect(type_);
        (c.1.as_str(), c.2.as_deref())
    }

    #[test]
    fn a_finished_pod_stays_initialized_after_its_sidecar_stopped() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [
                    {"name": "setup", "image": "i"},
                    {"name": "s", "image": "i", "restartPolicy": "Always"},
                ],
                "containers": [{"name": "a", "image": "i"}],
            },
        }))
        .expect("pod");
        let mut facts = PodFacts {
            init: vec![running("setup"), running("s")],
            app: vec![running("a")],
            ..PodFacts::default()
        };
        facts.init[0].now = Now::Terminated(ended(0));
        facts.init[1].now = Now::Terminated(ended(143));
        facts.app[0].now = Now::Terminated(ended(0));
        let conditions = conditions_of(&pod, &facts);
        assert_eq!(condition(&conditions, "Initialized"), ("True", Some("PodCompleted")));
        assert_eq!(condition(&conditions, "ContainersReady"), ("False", Some("PodCompleted")));
        assert_eq!(condition(&conditions, "Ready"), ("False", Some("PodCompleted")));
        let statuses = status(&pod, &facts).init_container_statuses.expect("init statuses");
        assert!(statuses[0].ready, "an init container that succeeded is ready");
        assert!(!statuses[1].ready, "a stopped sidecar is not");

        facts.app[0].now = Now::Terminated(ended(1));
        let conditions = conditions_of(&pod, &facts);
        assert_eq!(condition(&conditions, "Initialized"), ("True", None));
        assert_eq!(condition(&conditions, "Ready"), ("False", Some("PodFailed")));

        // Before the app containers start, an init container that runs holds Initialized.
        facts.init[0] = running("setup");
        facts.app[0].now = Now::Waiting { reason: "PodInitializing".into(), message: None };
        let status = status(&pod, &facts);
        let initialized = status.conditions.iter().flatten().find(|c| c.type_ == "Initialized");
        let initialized = initialized.expect("Initialized");
        assert_eq!(initialized.status, "False");
        assert_eq!(
            initialized.message.as_deref(),
            Some("containers with incomplete status: [setup s]")
        );
    }

    #[test]
    fn readiness_gates_hold_the_pod_not_ready() {
        let pod = |gate: Option<&str>| -> Pod {
            let conditions: Vec<serde_json::Value> = gate
                .map(|status| serde_json::json!({"type": "example.com/lb", "status": status}))
                .into_iter()
                .collect();
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "spec": {
                    "readinessGates": [{"conditionType": "example.com/lb"}],
                    "containers": [{"name": "a", "image": "i"}],
                },
                "status": {"conditions": conditions},
            }))
            .expect("pod")
        };
        let facts =
            PodFacts { app: vec![running("a")], sandbox_ready: true, ..PodFacts::default() };
        for (gate, ready) in [(None, false), (Some("False"), false), (Some("True"), true)] {
            let status = status(&pod(gate), &facts);
            let conditions = status.conditions.expect("conditions");
            let of = |t: &str| conditions.iter().find(|c| c.type_ == t).expect(t);
            assert_eq!(of("ContainersReady").status, "True");
            assert_eq!(of("Ready").status == "True", ready, "gate {gate:?}");
            if !ready {
                assert_eq!(of("Ready").reason.as_deref(), Some("ReadinessGatesNotReady"));
            }
            // The gate's own condition is left to its owner.
            assert!(!conditions.iter().any(|c| c.type_ == "example.com/lb"));
        }
    }
}
