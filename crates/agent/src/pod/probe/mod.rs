//! Probes (liveness, readiness, startup): each running container's probes run on a task of
//! their own, at the probe's period, and publish their verdicts for the pod's worker. The
//! threshold rules are plain code ([`Tracker`]); the checks are `exec` (through the OCI
//! runtime), `httpGet` (`http.rs`), `tcpSocket` and `grpc` (`grpc.rs`) against the pod's
//! address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::Notify;

use crate::events::Type;

pub mod grpc;
pub mod http;

pub use http::Get;

/// The User-Agent of HTTP and gRPC probes, as the kubelet's: `kube-probe/MAJOR.MINOR` of the
/// Kubernetes version served.
pub fn user_agent() -> &'static str {
    static AGENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let (major, minor) = krust_api::KUBERNETES_VERSION;
        format!("kube-probe/{major}.{minor}")
    });
    &AGENT
}

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Restarts the container when it fails.
    Liveness,
    /// Decides whether the container is ready.
    Readiness,
    /// Holds the others back until it succeeds once.
    Startup,
}

impl Kind {
    /// As upstream's messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// Consecutive results against a probe's thresholds (upstream's rules: a verdict changes
/// only after `successThreshold` successes or `failureThreshold` failures in a row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    successes: u32,
    failures: u32,
    /// The current verdict; `None` before the first one.
    pub verdict: Option<bool>,
}

impl Tracker {
    /// A tracker with the probe's thresholds (upstream's defaults: 1 and 3).
    pub fn new(probe: &Probe) -> Tracker {
        Tracker {
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
            successes: 0,
            failures: 0,
            verdict: None,
        }
    }

    /// Records one result; returns the verdict if it changed.
    pub fn record(&mut self, success: bool) -> Option<bool> {
        if success {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let verdict = if self.successes >= self.success_threshold {
            Some(true)
        } else if self.failures >= self.failure_threshold {
            Some(false)
        } else {
            self.verdict
        };
        if verdict != self.verdict {
            self.verdict = verdict;
            return verdict;
        }
        None
    }
}

/// The verdicts of one container run's probes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdicts {
    /// Whether the startup probe has succeeded (true without one).
    pub started: bool,
    /// Whether the readiness probe says ready (true without one, once started).
    pub ready: bool,
    /// Set once the liveness or startup probe has failed: which, and why, for the event and
    /// the restart.
    pub liveness_failed: Option<Failure>,
}

/// A failed liveness or startup probe: the container is restarted.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The probe that failed.
    pub kind: Kind,
    /// Its last check's message.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} probe failed: {}", self.kind.name(), self.message)
    }
}

/// Where a probe's checks go.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pod's address.
    pub ip: String,
    /// The OCI runtime, for `exec`.
    pub runtime: crate::runtime::oci::OciRuntime,
    /// The runtime's root.
    pub runtime_root: std::path::PathBuf,
    /// The container's runtime id.
    pub id: String,
    /// The container's named ports, by name (what probes and hooks may name).
    pub ports: Vec<(String, u16)>,
    /// Where failed checks are recorded (`Unhealthy`), if anywhere.
    pub events: Option<crate::events::Regarding>,
}

impl Get {
    /// The GET an `httpGet` action sends from `target`'s container.
    pub fn of(action: &HTTPGetAction, target: &Target) -> Result<Get, String> {
        Ok(Get {
            https: action.scheme.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("https")),
            host: action
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| target.ip.clone()),
            port: target.port(&action.port)?,
            path: action.path.clone().unwrap_or_else(|| "/".into()),
            headers: action
                .http_headers
                .iter()
                .flatten()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect(),
        })
    }
}

impl Target {
    /// The number `port` stands for: a number, or the name of one of the container's ports
    /// (upstream's `ResolveContainerPort`).
    pub fn port(&self, port: &IntOrString) -> Result<u16, String> {
        match port {
            IntOrString::Int(number) => u16::try_from(*number)
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("invalid port number: {number}")),
            IntOrString::String(text) => match text.parse::<u16>() {
                Ok(number) if number > 0 => Ok(number),
                _ => self
                    .ports
                    .iter()
                    .find(|(name, _)| name == text)
                    .map(|(_, number)| *number)
                    .ok_or_else(|| format!("couldn't find port: {text} in the container's ports")),
            },
        }
    }

    /// The named ports of `container`.
    pub fn named_ports(container: &Container) -> Vec<(String, u16)> {
        container
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone()?, u16::try_from(p.container_port).ok()?)))
            .collect()
    }
}

/// The verdicts of every running container of a pod, by container name and run.
#[derive(Debug, Default)]
pub struct Board {
    verdicts: Mutex<HashMap<(String, u32), Verdicts>>,
    /// Woken when a verdict changes.
    pub changed: Notify,
}

impl Board {
    /// The verdicts of run `attempt` of container `name`, if its probes run.
    pub fn get(&self, name: &str, attempt: u32) -> Option<Verdicts> {
        self.verdicts.lock().ok()?.get(&(name.to_string(), attempt)).cloned()
    }

    fn set(&self, name: &str, attempt: u32, update: impl FnOnce(&mut Verdicts)) {
        if let Ok(mut all) = self.verdicts.lock()
            && let Some(v) = all.get_mut(&(name.to_string(), attempt))
        {
            let before = v.clone();
            update(v);
            if *v != before {
                self.changed.notify_one();
            }
        }
    }

    /// Forgets the runs of `name` other than `attempt`.
    pub fn retain(&self, name: &str, attempt: u32) {
        if let Ok(mut all) = self.verdicts.lock() {
            all.retain(|(n, a), _| n != name || *a == attempt);
        }
    }
}

/// Starts the probes of run `attempt` of `container`; they stop when `stop` is dropped
/// or the container stops running.
pub fn start(
    board: Arc<Board>,
    container: &Container,
    attempt: u32,
    target: Target,
) -> tokio::task::JoinHandle<()> {
    let name = container.name.clone();
    let startup = container.startup_probe.clone();
    let readiness = container.readiness_probe.clone();
    let liveness = container.liveness_probe.clone();
    if let Ok(mut all) = board.verdicts.lock() {
        all.insert(
            (name.clone(), attempt),
            Verdicts {
                started: startup.is_none(),
                ready: readiness.is_none() && startup.is_none(),
                liveness_failed: None,
            },
        );
    }
    tokio::spawn(async move {
        if let Some(probe) = &startup {
            if !run_until(&board, &name, attempt, probe, Kind::Startup, &target).await {
                return;
            }
            board.set(&name, attempt, |v| {
                v.started = true;
                if readiness.is_none() {
                    v.ready = true;
                }
            });
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (kind, probe) in [(Kind::Readiness, readiness), (Kind::Liveness, liveness)] {
            if let Some(probe) = probe {
                let (board, name, target) = (Arc::clone(&board), name.clone(), target.clone());
                tasks.spawn(async move {
                    run_until(&board, &name, attempt, &probe, kind, &target).await
                });
            }
        }
        while tasks.join_next().await.is_some() {}
    })
}

/// Runs one probe at its period. A startup probe returns true once it succeeds; a liveness
/// probe returns once it fails; a readiness probe runs for ever. Returns false when the
/// container's run is forgotten.
async fn run_until(
    board: &Board,
    name: &str,
    attempt: u32,
    probe: &Probe,
    kind: Kind,
    target: &Target,
) -> bool {
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    let initial = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
    tokio::time::sleep(initial).await;
    let mut tracker = Tracker::new(probe);
    loop {
        if board.get(name, attempt).is_none() {
            return false;
        }
        let (success, message) = check(probe, target, timeout).await;
        if !success && let Some(events) = &target.events {
            events.record(
                Type::Warning,
                "Unhealthy",
                format!("{} probe failed: {message}", kind.name()),
            );
        }
        if let Some(verdict) = tracker.record(success) {
            match kind {
                Kind::Startup if verdict => return true,
                Kind::Startup => {
                    board.set(name, attempt, |v| {
                        v.liveness_failed =
                            Some(Failure { kind: Kind::Startup, message: message.clone() })
                    });
                    return false;
                }
                Kind::Readiness => board.set(name, attempt, |v| v.ready = verdict),
                Kind::Liveness if !verdict => {
                    board.set(name, attempt, |v| {
                        v.liveness_failed =
                            Some(Failure { kind: Kind::Liveness, message: message.clone() })
                    });
                    return false;
                }
                Kind::Liveness => {}
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// One check of `probe`; (success, what failed).
async fn check(probe: &Probe, target: &Target, timeout: Duration) -> (bool, String) {
    let attempt = async {
        if let Some(exec) = &probe.exec {
            return exec_in(target, exec.command.as_deref().unwrap_or_default()).await;
        }
        if let Some(http) = &probe.http_get {
            return match Get::of(http, target) {
                Ok(get) => http::get(&get).await,
                Err(e) => (false, e),
            };
        }
        if let Some(grpc) = &probe.grpc {
            let Ok(port) = u16::try_from(grpc.port) else {
                return (false, format!("invalid port number: {}", grpc.port));
            };
            return grpc::check(&target.ip, port, grpc.service.as_deref().unwrap_or_default())
                .await;
        }
        if let Some(tcp) = &probe.tcp_socket {
            let port = match target.port(&tcp.port) {
                Ok(port) => port,
                Err(e) => return (false, e),
            };
            let host = tcp.host.clone().unwrap_or_else(|| target.ip.clone());
            return match tokio::net::TcpStream::connect((host.as_str(), port)).await {
                Ok(_) => (true, String::new()),
                Err(e) => (false, format!("dial tcp {host}:{port}: {e}")),
            };
        }
        (false, "the probe has no handler (exec, httpGet, tcpSocket or grpc)".into())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => {
            (false, format!("timeout: the probe did not answer within {}s", timeout.as_secs()))
        }
    }
}

/// Runs `command` in the target container through the OCI runtime; (success, its output
/// when it failed).
pub async fn exec_in(target: &Target, command: &[String]) -> (bool, String) {
    let output = tokio::process::Command::from(target.runtime.command(&target.runtime_root))
        .arg("exec")
        .arg(&target.id)
        .args(command)
        .stdin(std::process::Stdio::null())
        .output()
        .await;
    match output {
        Ok(o) if o.status.success() => (true, String::new()),
        Ok(o) => {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            (
                false,
                format!("command exited with {}: {}", o.status.code().unwrap_or(-1), text.trim()),
            )
        }
        Err(e) => (false, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_name_ports_by_number_or_by_the_containers_port_names() {
        let target = Target {
            ip: "10.42.0.2".into(),
            runtime: crate::runtime::oci::OciRuntime::Binary("runc".into()),
            runtime_root: "/run/runc".into(),
            id: "c".into(),
            ports: vec![("http".into(), 8080)],
            events: None,
        };
        assert_eq!(target.port(&IntOrString::Int(80)), Ok(80));
        assert_eq!(target.port(&IntOrString::String("8081".into())), Ok(8081));
        assert_eq!(target.port(&IntOrString::String("http".into())), Ok(8080));
        assert!(target.port(&IntOrString::String("metrics".into())).is_err());
        assert!(target.port(&IntOrString::Int(70000)).is_err());
    }

    #[test]
    fn thresholds_decide_verdicts() {
        let probe =
            Probe { success_threshold: Some(2), failure_threshold: Some(2), ..Probe::default() };
        let mut t = Tracker::new(&probe);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.verdict, Some(false));
    }

    #[test]
    fn defaults_are_one_success_three_failures() {
        let mut t = Tracker::new(&Probe::default());
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert_eq!(t.record(true), Some(true));
    }
}
