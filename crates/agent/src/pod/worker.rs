//! One pod's worker: makes what the pod object says happen on this node, step by step
//! (sandbox, volumes, init containers in order, app containers, restarts with back-off),
//! reports what really happens as the pod's status, and on deletion stops the containers
//! within the grace period, removes everything it made and then the pod object.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::Signal;
use tokio::sync::watch;

use super::container::{self, Context};
use super::image_pull::{Pulled, Pulls};
use super::resources;
use super::restart::{self, AfterExit, InitGate, Policy, Step};
use super::sandbox::{self, Sandbox};
use super::sources::Sources;
use super::static_pods::Link;
use super::status::{self, ContainerFacts, Ended, Now, PodFacts};
use super::stop::Stop;
use super::volumes;
use super::{hooks, probe};
use crate::Agent;
use crate::events::{Regarding, Type};
use crate::runtime::seccomp::{self, Choice, Seccomp};
use crate::runtime::{self, Exited, Observed, container_id};

/// The most of a termination message file that is read (upstream's
/// `MaxContainerTerminationMessageLength`).
const MAX_TERMINATION_MESSAGE: u64 = 4096;
/// How much of the end of a log is read for a termination message from the log.
const LOG_TAIL_READ: u64 = 64 * 1024;

/// The file in a pod's directory that says its app containers are done for good.
const FINISHING: &str = "finishing";

/// How often volumes from ConfigMaps and Secrets are brought up to date.
const VOLUME_SYNC: Duration = Duration::from_secs(30);

/// The worker of one pod (by uid).
pub struct Worker {
    agent: Arc<Agent>,
    uid: String,
    dir: PathBuf,
    start_time: Time,
    /// Why a container that should run does not (image, config or create errors).
    waiting: HashMap<String, (String, Option<String>)>,
    /// Restarts in the current back-off window, per container.
    restarts: HashMap<String, u32>,
    sandbox: Option<Sandbox>,
    volumes: Option<HashMap<String, PathBuf>>,
    /// The status last written, and the uid of the pod object it went to (a static pod's
    /// mirror, `None` while it has none).
    published: Option<(Option<String>, serde_json::Value)>,
    /// A static pod's hold on its mirror pod; `None` for a pod of the API.
    mirror: Option<Link>,
    /// Whether the sandbox of an ended pod was let go.
    released: bool,
    /// Whether the app containers are done for good: the sidecars are being stopped, and
    /// nothing starts again.
    finishing: bool,
    /// When the volumes from ConfigMaps and Secrets were last brought up to date.
    volumes_synced: Instant,
    /// What the pod's volumes and environment were last made from.
    sources: Option<Sources>,
    /// The probes' verdicts, and the tasks running them, per container run.
    board: Arc<probe::Board>,
    probers: HashMap<(String, u32), tokio::task::JoinHandle<()>>,
    /// Container runs being killed after a failed liveness probe.
    killing: std::collections::HashSet<(String, u32)>,
    /// The containers' image pulls and their back-off.
    pulls: Pulls,
    /// How the container runs that have ended did (exit, times, termination message), by
    /// container and attempt, worked out once: an ended run does not change.
    ended_runs: std::sync::Mutex<HashMap<(String, u32), Ended>>,
}

impl Worker {
    /// A worker for the pod `uid`, its state under `dir`.
    pub fn new(agent: Arc<Agent>, uid: String) -> Worker {
        let dir = agent.pods_dir.join(&uid);
        let start_time = fs::metadata(&dir)
            .and_then(|m| m.created().or_else(|_| m.modified()))
            .ok()
            .and_then(|t| k8s_openapi::jiff::Timestamp::try_from(t).ok())
            .map(Time)
            .ok_or(())
            .unwrap_or_else(|_| Time(k8s_openapi::jiff::Timestamp::now()));
        let sandbox = sandbox::read(&dir);
        let finishing = dir.join(FINISHING).exists();
        Worker {
            agent,
            uid,
            dir,
            start_time,
            waiting: HashMap::new(),
            restarts: HashMap::new(),
            sandbox,
            volumes: None,
            published: None,
            mirror: None,
            volumes_synced: Instant::now(),
            released: false,
            finishing,
            sources: None,
            board: Arc::default(),
            probers: HashMap::new(),
            killing: std::collections::HashSet::new(),
            pulls: Pulls::default(),
            ended_runs: std::sync::Mutex::default(),
        }
    }

    /// The worker of a static pod, which reports through its mirror pod (kept by `mirror`)
    /// and deletes no object when it ends.
    pub fn with_mirror(mut self, mirror: Link) -> Worker {
        self.mirror = Some(mirror);
        self
    }

    /// Runs until the pod is gone from this node.
    pub async fn run(mut self, mut updates: watch::Receiver<Option<Arc<Pod>>>) {
        let board = Arc::clone(&self.board);
        loop {
            let pod = updates.borrow_and_update().clone();
            let Some(pod) = pod else {
                self.terminate(Duration::ZERO, None).await;
                self.remove().await;
                return;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                let grace = pod
                    .metadata
                    .deletion_grace_period_seconds
                    .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                    .unwrap_or(30);
                self.terminate(Duration::from_secs(grace.max(0) as u64), Some(&pod)).await;
                self.remove().await;
                self.delete_object(&pod).await;
                return;
            }
            if let Some(link) = &mut self.mirror {
                link.sync(&self.agent.client, &self.agent.options.node_name, &pod).await;
            }
            let next = self.sync(&pod).await;
            let mirror_changed = async {
                match &mut self.mirror {
                    Some(link) => link.changed().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(next) => {}
                () = board.changed.notified() => {}
                () = mirror_changed => {}
            }
        }
    }

    fn containers_dir(&self, name: &str) -> PathBuf {
        self.dir.join("containers").join(name)
    }

    fn bundle(&self, name: &str, attempt: u32) -> PathBuf {
        self.containers_dir(name).join(attempt.to_string())
    }

    /// The attempts of container `name` on disk, oldest first.
    fn attempts(&self, name: &str) -> Vec<u32> {
        let mut found: Vec<u32> = fs::read_dir(self.containers_dir(name))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .collect();
        found.sort_unstable();
        found
    }

    fn log_path(&self, pod: &Pod, name: &str, attempt: u32) -> PathBuf {
        let meta = &pod.metadata;
        self.agent
            .logs_dir
            .join(format!(
                "{}_{}_{}",
                meta.namespace.as_deref().unwrap_or_default(),
                meta.name.as_deref().unwrap_or_default(),
                self.uid
            ))
            .join(name)
            .join(format!("{attempt}.log"))
    }

    /// One step towards the pod's spec; returns when to look again.
    async fn sync(&mut self, pod: &Pod) -> Duration {
        let mut next = Duration::from_secs(1);
        if let Err(e) = fs::create_dir_all(&self.dir) {
            tracing::warn!(pod = %self.uid, error = %e, "cannot make the pod's directory");
            return Duration::from_secs(2);
        }
        // The pod's names, for exec, attach and port-forward to find it by them. Written once,
        // and whole (renamed into place): those read it at any time.
        let names = self.dir.join("pod.json");
        if !names.exists() {
            let staged = self.dir.join("pod.json.new");
            let json =
                serde_json::json!({"namespace": pod.metadata.namespace, "name": pod.metadata.name});
            let written = fs::write(&staged, serde_json::to_vec(&json).unwrap_or_default())
                .and_then(|()| fs::rename(&staged, &names));
            if let Err(e) = written {
                tracing::warn!(pod = %self.uid, error = %e, "cannot record the pod's names");
            }
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let restart_policy = Policy::of_pod(spec.restart_policy.as_deref());
        // A static pod's phase is the one this worker worked out (its object stays Pending).
        let phase = match &self.mirror {
            None => pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some(_) => self.published.as_ref().and_then(|(_, s)| s["phase"].as_str()),
        };
        let terminal = matches!(phase, Some("Succeeded" | "Failed"));
        // The sandbox is made while the volumes' sources are read from the API: neither
        // needs the other.
        let make_sandbox = self.sandbox.is_none() && !terminal;
        let read_sources = self.volumes.is_none() && !terminal;
        let sandbox = async {
            if !make_sandbox {
                return None;
            }
            let dir = self.dir.clone();
            let agent = Arc::clone(&self.agent);
            let owned = pod.clone();
            let setup = self.agent.sandbox_setups.acquire().await;
            let created = tokio::task::spawn_blocking(move || {
                sandbox::create(&dir, &owned, &agent.options, agent.host.as_ref())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            drop(setup);
            Some(created)
        };
        let sources = async {
            if !read_sources {
                return None;
            }
            Some(Sources::fetch(&self.agent.client, pod, self.sources.as_ref()).await)
        };
        let (created, fetched) = tokio::join!(sandbox, sources);
        match created {
            None => {}
            Some(Ok(sandbox)) => self.sandbox = Some(sandbox),
            Some(Err(message)) => {
                tracing::warn!(pod = %self.uid, error = %message, "cannot create the pod's sandbox");
                for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
                    self.waiting.insert(
                        c.name.clone(),
                        ("ContainerCreating".into(), Some(format!("sandbox: {message}"))),
                    );
                }
                self.publish(pod).await;
                return Duration::from_secs(2);
            }
        }
        if let Some(fetched) = fetched {
            let sources = match fetched {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(pod = %self.uid, error = %e, "cannot read the pod's sources");
                    return Duration::from_secs(2);
                }
            };
            self.sources = Some(sources.clone());
            match volumes::volumes(
                &self.dir,
                pod,
                &sources,
                self.agent.host.as_ref(),
                self.agent.allocatable,
            ) {
                Ok(v) => self.volumes = Some(v),
                Err(message) => {
                    // As upstream's: the containers wait in ContainerCreating, the pod has a
                    // FailedMount event that says why.
                    self.agent.events.pod(pod, None, Type::Warning, "FailedMount", message.clone());
                    for c in spec.init_containers.iter().flatten().chain(&spec.containers) {
                        self.waiting.insert(
                            c.name.clone(),
                            ("ContainerCreating".into(), Some(message.clone())),
                        );
                    }
                    self.publish(pod).await;
                    return Duration::from_secs(2);
                }
            }
        }
        if self.volumes.is_some() && !terminal && self.volumes_synced.elapsed() >= VOLUME_SYNC {
            // ConfigMap, Secret and projected volumes follow their sources (subPath mounts
            // do not, as upstream's).
            self.volumes_synced = Instant::now();
            if let Ok(sources) =
                Sources::fetch(&self.agent.client, pod, self.sources.as_ref()).await
            {
                if let Err(e) = volumes::volumes(
                    &self.dir,
                    pod,
                    &sources,
                    self.agent.host.as_ref(),
                    self.agent.allocatable,
                ) {
                    tracing::debug!(pod = %self.uid, error = %e, "cannot update the pod's volumes");
                }
                self.sources = Some(sources);
            }
        }
        // Init containers, in order: each must have succeeded (or, a sidecar, be running)
        // before the next starts.
        let inits = spec.init_containers.as_deref().unwrap_or_default();
        if self.finishing {
            // The app containers are done: the sidecars are only watched as they stop.
            for c in inits.iter().filter(|c| restart::is_sidecar(c)) {
                self.step(pod, c, Policy::Always, true).await;
            }
        } else {
            let mut initialized = true;
            let mut failed_for_good = false;
            for c in inits {
                let step = self.step(pod, c, Policy::of_init(c, restart_policy), terminal).await;
                match restart::init_gate(c, step, self.started(c)) {
                    InitGate::Open => continue,
                    InitGate::Closed => {}
                    InitGate::Failed => failed_for_good = true,
                }
                if let Step::Wait(d) = step {
                    next = next.min(d);
                }
                initialized = false;
                break;
            }
            let mut done = failed_for_good;
            if initialized {
                done = !spec.containers.is_empty();
                for c in &spec.containers {
                    let step = self.step(pod, c, restart_policy, terminal).await;
                    if let Step::Wait(d) = step {
                        next = next.min(d);
                    }
                    done &= matches!(step, Step::Succeeded | Step::Failed);
                }
            } else {
                for c in &spec.containers {
                    self.waiting
                        .entry(c.name.clone())
                        .or_insert_with(|| ("PodInitializing".into(), None));
                }
            }
            if done && !terminal {
                self.finish(pod, inits);
            }
        }
        self.publish(pod).await;
        self.release_when_done().await;
        next.max(Duration::from_millis(50))
    }

    /// Once the pod has ended (Succeeded or Failed as last written), its network and
    /// namespaces go (its address returns to the pool), as upstream stops a finished pod's
    /// sandbox; its status, files and logs stay until the pod is deleted.
    async fn release_when_done(&mut self) {
        let ended = self
            .published
            .as_ref()
            .and_then(|(_, s)| s["phase"].as_str())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        if !ended || self.released {
            return;
        }
        self.released = true;
        let (dir, uid, agent) = (self.dir.clone(), self.uid.clone(), Arc::clone(&self.agent));
        let _setup = self.agent.sandbox_setups.acquire().await;
        let _ = tokio::task::spawn_blocking(move || {
            sandbox::release(&dir, &agent.options, &uid, agent.host.as_ref())
        })
        .await;
    }

    /// Moves container `c` one step: starts it when it has not run, restarts it when its
    /// policy and back-off allow. Says where it stands.
    async fn step(&mut self, pod: &Pod, c: &Container, policy: Policy, terminal: bool) -> Step {
        let attempts = self.attempts(&c.name);
        let Some(&last) = attempts.last() else {
            if terminal {
                return Step::Failed;
            }
            return self.start(pod, c, 0).await;
        };
        let bundle = self.bundle(&c.name, last);
        match self.agent.containers.observe(&bundle) {
            Observed::Creating => Step::Wait(Duration::from_millis(100)),
            Observed::Running(_) => {
                self.waiting.remove(&c.name);
                self.watch_probes(pod, c, last);
                Step::Running
            }
            Observed::Exited(exited) => {
                self.stop_probes(&c.name);
                release_rootfs(&bundle, self.agent.host.as_ref());
                let ended = restart::Ended {
                    succeeded: exited.exit_code == 0 && exited.error.is_none(),
                    ran: run_time(&bundle, &exited),
                    since: finished_ago(&exited),
                };
                let restarts = self.restarts.get(&c.name).copied().unwrap_or(0);
                match restart::after_exit(policy, ended, restarts, terminal) {
                    AfterExit::Done { succeeded: true } => return Step::Succeeded,
                    AfterExit::Done { succeeded: false } => return Step::Failed,
                    AfterExit::Restart { restarts } => {
                        self.restarts.insert(c.name.clone(), restarts);
                    }
                    AfterExit::BackOff { delay, left } => {
                        let meta = &pod.metadata;
                        self.event(
                            pod,
                            c,
                            Type::Warning,
                            "BackOff",
                            format!(
                                "Back-off restarting failed container {} in pod {}_{}({})",
                                c.name,
                                meta.name.as_deref().unwrap_or_default(),
                                meta.namespace.as_deref().unwrap_or_default(),
                                self.uid
                            ),
                        );
                        self.waiting.insert(
                            c.name.clone(),
                            (
                                "CrashLoopBackOff".into(),
                                Some(format!(
                                    "back-off {}s restarting failed container={} pod={}_{}({})",
                                    delay.as_secs(),
                                    c.name,
                                    meta.name.as_deref().unwrap_or_default(),
                                    meta.namespace.as_deref().unwrap_or_default(),
                                    self.uid
                                )),
                            ),
                        );
                        return Step::Wait(left);
                    }
                }
                // Keep only the previous run's record (for `--previous`) besides the new one.
                for old in self.attempts(&c.name).into_iter().filter(|a| *a < last) {
                    let _ = fs::remove_dir_all(self.bundle(&c.name, old));
                    let _ = fs::remove_file(self.log_path(pod, &c.name, old));
                }
                self.start(pod, c, last + 1).await
            }
        }
    }

    /// Starts attempt `attempt` of container `c`.
    async fn start(&mut self, pod: &Pod, c: &Container, attempt: u32) -> Step {
        let image = match self.pulls.image(&self.agent, pod, c) {
            Pulled::Ready(image) => image,
            Pulled::Waiting { reason, message, retry } => {
                // A retried pull keeps showing why the last one failed, as upstream's.
                let retrying = reason == "ContainerCreating"
                    && self
                        .waiting
                        .get(&c.name)
                        .is_some_and(|(r, _)| r == "ErrImagePull" || r == "ImagePullBackOff");
                if !retrying {
                    self.waiting.insert(c.name.clone(), (reason.into(), message));
                }
                return Step::Wait(retry);
            }
        };
        let sources = match Sources::fetch(&self.agent.client, pod, self.sources.as_ref()).await {
            Ok(s) => s,
            Err(e) => {
                self.event(pod, c, Type::Warning, "Failed", format!("Error: {e}"));
                self.waiting.insert(
                    c.name.clone(),
                    ("CreateContainerConfigError".into(), Some(e.to_string())),
                );
                return Step::Wait(Duration::from_secs(2));
            }
        };
        self.sources = Some(sources.clone());
        let bundle = self.bundle(&c.name, attempt);
        let rootfs = bundle.join("rootfs");
        let layers = self.agent.images.layer_dirs(&image);
        let mounted = (|| -> Result<(), String> {
            for d in [&rootfs, &bundle.join("fs/upper"), &bundle.join("fs/work")] {
                fs::create_dir_all(d).map_err(|e| e.to_string())?;
            }
            if !self.agent.host.is_mount_point(&rootfs) {
                self.agent
                    .host
                    .mount_overlay(
                        &layers,
                        &bundle.join("fs/upper"),
                        &bundle.join("fs/work"),
                        &rootfs,
                    )
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        })();
        if let Err(message) = mounted {
            self.fail_start(&bundle, "CreateContainerError", message);
            return Step::Wait(Duration::from_secs(5));
        }
        let seccomp = match self.seccomp(pod, c) {
            Ok(seccomp) => seccomp,
            Err((reason, message)) => {
                self.event(pod, c, Type::Warning, "Failed", format!("Error: {message}"));
                self.fail_start(&bundle, reason, message);
                return Step::Wait(Duration::from_secs(2));
            }
        };
        let sandbox = self.sandbox.clone().unwrap_or(Sandbox {
            ip: None,
            ip6: None,
            host_veth: None,
            pid_holder: None,
        });
        let options = &self.agent.options;
        let context = Context {
            pod_ip: sandbox.ip.clone(),
            pod_ip6: sandbox.ip6.clone(),
            host_ip: options.node_ip.map(|ip| ip.to_string()),
            host_ip6: options.node_ip6.map(|ip| ip.to_string()),
            kubernetes_service: options.kubernetes_service.clone(),
            allocatable: self.agent.allocatable,
            namespaces: self.dir.join("ns"),
            etc: self.dir.join("etc"),
            volumes: self.volumes.clone().unwrap_or_default(),
            memory_capacity: self.agent.allocatable.1,
            pid_holder: sandbox.pid_holder,
            seccomp,
        };
        let termination_log = bundle.join("termination-log");
        let _ = fs::write(&termination_log, b"");
        let passwd = fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
        let config = match container::config(
            pod,
            c,
            &image.config,
            &sources,
            &context,
            &container::Instance {
                rootfs: &rootfs,
                termination_log: &termination_log,
                passwd: &passwd,
            },
        ) {
            Ok(config) => config,
            Err(e) => {
                self.event(pod, c, Type::Warning, "Failed", format!("Error: {}", e.0));
                self.fail_start(&bundle, "CreateContainerConfigError", e.0);
                return Step::Wait(Duration::from_secs(2));
            }
        };
        let config = crate::runtime::spec::ContainerConfig {
            oom_score_adj: config.oom_score_adj.max(self.agent.lowest_oom_score_adj),
            ..config
        };
        let raw =
            serde_json::to_vec_pretty(&crate::runtime::spec::config(&config)).unwrap_or_default();
        if let Err(e) = fs::write(bundle.join("config.json"), raw) {
            self.fail_start(&bundle, "CreateContainerError", e.to_string());
            return Step::Wait(Duration::from_secs(2));
        }
        let _ = fs::write(bundle.join("image"), image.status_id());
        let log = self.log_path(pod, &c.name, attempt);
        if let Some(parent) = log.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let id = container_id(&self.uid, &c.name, attempt);
        match self.agent.containers.start(&id, &bundle, &log).await {
            Ok(Observed::Running(_)) => {
                self.waiting.remove(&c.name);
                self.event(
                    pod,
                    c,
                    Type::Normal,
                    "Created",
                    format!("Created container: {}", c.name),
                );
                self.event(
                    pod,
                    c,
                    Type::Normal,
                    "Started",
                    format!("Started container {}", c.name),
                );
                if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
                    let target = self.target(c, attempt);
                    let outcome =
                        tokio::time::timeout(Duration::from_secs(120), hooks::run(hook, &target))
                            .await
                            .unwrap_or_else(|_| Err("the hook did not finish within 120s".into()));
                    if let Err(message) = outcome {
                        tracing::info!(pod = %self.uid, container = %c.name, %message, "FailedPostStartHook: the container is killed");
                        self.event(pod, c, Type::Warning, "FailedPostStartHook", message);
                        self.agent.containers.signal(&bundle, Signal::SIGKILL);
                    }
                }
                Step::Running
            }
            Ok(Observed::Exited(Exited { error: Some(message), .. })) => {
                self.event(pod, c, Type::Warning, "Failed", format!("Error: {message}"));
                self.fail_start(&bundle, "CreateContainerError", message);
                Step::Wait(Duration::from_secs(5))
            }
            Ok(_) => {
                self.waiting.remove(&c.name);
                Step::Wait(Duration::from_millis(100))
            }
            Err(e) => {
                self.fail_start(
                    &bundle,
                    "CreateContainerError",
                    format!("cannot start the shim: {e}"),
                );
                Step::Wait(Duration::from_secs(5))
            }
        }
    }

    /// Runs the probes of a running container's run, and kills the run once its liveness
    /// (or startup) probe has failed: its preStop hook, its stop signal, then SIGKILL after
    /// the grace period (`stop.rs`).
    fn watch_probes(&mut self, pod: &Pod, c: &Container, attempt: u32) {
        if c.liveness_probe.is_none() && c.readiness_probe.is_none() && c.startup_probe.is_none() {
            return;
        }
        let key = (c.name.clone(), attempt);
        if !self.probers.contains_key(&key) {
            self.stop_probes(&c.name);
            let mut target = self.target(c, attempt);
            target.events = Some(Regarding::container(&self.agent.events, pod, &c.name));
            let handle = probe::start(Arc::clone(&self.board), c, attempt, target);
            self.probers.insert(key.clone(), handle);
        }
        let failed = self.board.get(&c.name, attempt).and_then(|v| v.liveness_failed);
        if let Some(failure) = failed
            && self.killing.insert(key)
        {
            tracing::info!(pod = %self.uid, container = %c.name, %failure, "container failed a probe, will be restarted");
            let probe = failure.kind.name().to_lowercase();
            self.event(
                pod,
                c,
                Type::Normal,
                "Killing",
                format!("Container {} failed {probe} probe, will be restarted", c.name),
            );
            // The failing probe's own grace period, as upstream's.
            let failing = match failure.kind {
                probe::Kind::Startup => c.startup_probe.as_ref(),
                _ => c.liveness_probe.as_ref(),
            };
            let grace = failing
                .and_then(|p| p.termination_grace_period_seconds)
                .map(|s| Duration::from_secs(s.max(0) as u64))
                .unwrap_or_else(|| grace_period(pod));
            // As any kill of a container: its preStop hook, its stop signal, then SIGKILL.
            let stop = self.stop_of(pod, c, attempt, grace);
            tokio::spawn(stop.run(Duration::ZERO));
        }
    }

    /// Where probes and hooks of run `attempt` of container `c` go.
    /// The app containers are done for good: stops the sidecars that still run, in the
    /// reverse of their order, each with its preStop hook, within the pod's grace period (as
    /// upstream's). The pod ends once they have stopped. Remembered on disk, so that an
    /// agent started again does not restart them.
    fn finish(&mut self, pod: &Pod, inits: &[Container]) {
        self.finishing = true;
        let _ = fs::write(self.dir.join(FINISHING), b"");
        let grace = grace_period(pod);
        let mut stops = Vec::new();
        for c in inits.iter().rev().filter(|c| restart::is_sidecar(c)) {
            let Some(&last) = self.attempts(&c.name).last() else { continue };
            if matches!(
                self.agent.containers.observe(&self.bundle(&c.name, last)),
                Observed::Running(_)
            ) {
                self.event(
                    pod,
                    c,
                    Type::Normal,
                    "Killing",
                    format!("Stopping container {}", c.name),
                );
                stops.push(self.stop_of(pod, c, last, grace));
            }
        }
        if stops.is_empty() {
            return;
        }
        let deadline = Instant::now() + grace;
        tokio::spawn(async move {
            for mut stop in stops {
                stop.grace = deadline.saturating_duration_since(Instant::now());
                stop.run(Duration::from_secs(10)).await;
            }
        });
    }

    /// How run `attempt` of `c` is stopped within `grace`.
    fn stop_of(&self, pod: &Pod, c: &Container, attempt: u32, grace: Duration) -> Stop {
        let bundle = self.bundle(&c.name, attempt);
        let pre_stop = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()).map(|hook| {
            let mut target = self.target(c, attempt);
            target.events = Some(Regarding::container(&self.agent.events, pod, &c.name));
            (hook, target)
        });
        Stop {
            containers: Arc::clone(&self.agent.containers),
            signal: self.stop_signal(&bundle),
            bundle,
            grace,
            pre_stop,
        }
    }

    /// How the running run of `c` (if any) is stopped within `grace`, announced by a
    /// `Killing` event.
    fn stop_running(&self, pod: &Pod, c: &Container, grace: Duration) -> Option<Stop> {
        let last = *self.attempts(&c.name).last()?;
        if !matches!(
            self.agent.containers.observe(&self.bundle(&c.name, last)),
            Observed::Running(_)
        ) {
            return None;
        }
        self.event(pod, c, Type::Normal, "Killing", format!("Stopping container {}", c.name));
        Some(self.stop_of(pod, c, last, grace))
    }

    /// Whether the current run of `c` has passed its startup probe (or has none).
    fn started(&self, c: &Container) -> bool {
        c.startup_probe.is_none()
            || self
                .attempts(&c.name)
                .last()
                .and_then(|a| self.board.get(&c.name, *a))
                .is_some_and(|v| v.started)
    }

    /// The stop signal of a run's image (its STOPSIGNAL), else SIGTERM.
    fn stop_signal(&self, bundle: &Path) -> Signal {
        fs::read_to_string(bundle.join("image"))
            .ok()
            .and_then(|id| self.agent.images.resolve(id.trim()).ok())
            .and_then(|i| i.config.stop_signal)
            .and_then(|s| parse_signal(&s))
            .unwrap_or(Signal::SIGTERM)
    }

    fn target(&self, c: &Container, attempt: u32) -> probe::Target {
        probe::Target {
            ip: self
                .sandbox
                .as_ref()
                .and_then(|s| s.ip.clone())
                .or_else(|| self.agent.options.node_ip.map(|ip| ip.to_string()))
                .unwrap_or_else(|| "127.0.0.1".into()),
            runtime: self.agent.runtime.runtime.clone(),
            runtime_root: self.agent.runtime.root.clone(),
            id: container_id(&self.uid, &c.name, attempt),
            ports: probe::Target::named_ports(c),
            events: None,
        }
    }

    /// Stops the probes of every run of container `name`.
    fn stop_probes(&mut self, name: &str) {
        self.probers.retain(|(n, _), handle| {
            if n == name {
                handle.abort();
            }
            n != name
        });
        self.board.retain(name, u32::MAX);
    }

    /// Records an event about container `c` of `pod`.
    fn event(&self, pod: &Pod, c: &Container, type_: Type, reason: &'static str, message: String) {
        self.agent.events.pod(pod, Some(&c.name), type_, reason, message);
    }

    /// The seccomp filter of container `c`: the profile it asks for, a `Localhost` one read
    /// from the node's seccomp root. A privileged container runs without one, so its file
    /// is not read (as containerd's). Fails with the waiting reason and message.
    fn seccomp(&self, pod: &Pod, c: &Container) -> Result<Seccomp, (&'static str, String)> {
        let default = if self.agent.options.seccomp_default {
            Choice::RuntimeDefault
        } else {
            Choice::Unconfined
        };
        let choice =
            container::seccomp(pod, c, default).map_err(|e| ("CreateContainerConfigError", e.0))?;
        if c.security_context.as_ref().and_then(|s| s.privileged) == Some(true) {
            return Ok(Seccomp::Unconfined);
        }
        Ok(match choice {
            Choice::Unconfined => Seccomp::Unconfined,
            Choice::RuntimeDefault => Seccomp::RuntimeDefault(self.agent.seccomp_host),
            Choice::Localhost(name) => Seccomp::Localhost(
                seccomp::load(&self.agent.seccomp_root, &name)
                    .map_err(|e| ("CreateContainerError", e.to_string()))?,
            ),
        })
    }

    fn fail_start(&mut self, bundle: &Path, reason: &str, message: String) {
        release_rootfs(bundle, self.agent.host.as_ref());
        let _ = fs::remove_dir_all(bundle);
        self.waiting.insert(bundle_name(bundle), (reason.into(), Some(message)));
    }

    /// What each container is doing, as the status reports it.
    fn facts(&self, pod: &Pod) -> PodFacts {
        let spec = pod.spec.clone().unwrap_or_default();
        let fact = |c: &Container| -> ContainerFacts {
            let attempts = self.attempts(&c.name);
            // Runs whose directories are gone are forgotten with them.
            self.ended_runs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(name, a), _| *name != c.name || attempts.contains(a));
            let ended = |attempt: u32| -> Option<Ended> {
                let mut known = self.ended_runs.lock().unwrap_or_else(|e| e.into_inner());
                let key = (c.name.clone(), attempt);
                if let Some(ended) = known.get(&key) {
                    return Some(ended.clone());
                }
                let bundle = self.bundle(&c.name, attempt);
                match self.agent.containers.observe(&bundle) {
                    Observed::Exited(e) => {
                        let log = self.log_path(pod, &c.name, attempt);
                        Some(known.entry(key).or_insert(ended_of(&bundle, &e, c, &log)).clone())
                    }
                    _ => None,
                }
            };
            let image_id = attempts
                .last()
                .and_then(|a| fs::read_to_string(self.bundle(&c.name, *a).join("image")).ok())
                .unwrap_or_default();
            let current = attempts
                .last()
                .map(|a| (a, self.agent.containers.observe(&self.bundle(&c.name, *a))));
            let waiting = self.waiting.get(&c.name).cloned();
            let (now, last) = match (current, waiting) {
                (Some((a, Observed::Running(run))), _) => (
                    {
                        let probed = c.liveness_probe.is_some()
                            || c.readiness_probe.is_some()
                            || c.startup_probe.is_some();
                        let verdicts = self.board.get(&c.name, *a);
                        let (ready, started) = match (probed, verdicts) {
                            (false, _) => (true, true),
                            (true, Some(v)) => (v.ready && v.started, v.started),
                            (true, None) => (false, c.startup_probe.is_none()),
                        };
                        Now::Running { started_at: parse_time(&run.started_at), ready, started }
                    },
                    attempts.len().checked_sub(2).and_then(|i| ended(attempts[i])),
                ),
                (Some((a, Observed::Exited(_))), Some((reason, message))) => {
                    (Now::Waiting { reason, message }, ended(*a))
                }
                (Some((a, Observed::Exited(_))), None) => (
                    Now::Terminated(ended(*a).unwrap_or_else(unknown_end)),
                    attempts.len().checked_sub(2).and_then(|i| ended(attempts[i])),
                ),
                (Some((_, Observed::Creating)), _) | (None, None) => {
                    (Now::Waiting { reason: "ContainerCreating".into(), message: None }, None)
                }
                (None, Some((reason, message))) => (Now::Waiting { reason, message }, None),
            };
            ContainerFacts {
                name: c.name.clone(),
                image: c.image.clone().unwrap_or_default(),
                image_id,
                container_id: attempts
                    .last()
                    .map(|a| format!("krust://{}", container_id(&self.uid, &c.name, *a))),
                restart_count: attempts.last().copied().unwrap_or(0) as i32,
                now,
                last,
            }
        };
        PodFacts {
            init: spec.init_containers.iter().flatten().map(fact).collect(),
            app: spec.containers.iter().map(fact).collect(),
            sandbox_ready: self.sandbox.is_some(),
            pod_ip: self.sandbox.as_ref().and_then(|s| s.ip.clone()),
            pod_ip6: self.sandbox.as_ref().and_then(|s| s.ip6.clone()),
            host_ip: self.agent.options.node_ip.map(|ip| ip.to_string()),
            host_ip6: self.agent.options.node_ip6.map(|ip| ip.to_string()),
            start_time: Some(self.start_time.clone()),
            qos_class: resources::qos(pod).as_str().to_string(),
        }
    }

    /// Writes the pod's status when it differs from what was last written: onto the pod
    /// object, or a static pod's onto its mirror pod (once there is one).
    async fn publish(&mut self, pod: &Pod) {
        let facts = self.facts(pod);
        let (status, target) = match &self.mirror {
            None => (status::status(pod, &facts), Some(self.uid.clone())),
            Some(link) => {
                // The object of a static pod holds no status: the last one worked out (after a
                // restart of the agent, its mirror's) stands in for it (the conditions'
                // transition times).
                let mut shown = pod.clone();
                shown.status = match &self.published {
                    Some((_, last)) => serde_json::from_value(last.clone()).ok(),
                    None => link.status(pod),
                };
                (status::status(&shown, &facts), link.target(pod))
            }
        };
        let Ok(value) = serde_json::to_value(&status) else { return };
        if self.published.as_ref().is_some_and(|(to, last)| *to == target && *last == value) {
            return;
        }
        let Some(uid) = &target else {
            self.published = Some((None, value));
            return;
        };
        let pods: Api<Pod> = Api::namespaced(
            self.agent.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = pod.metadata.name.clone().unwrap_or_default();
        // A strategic merge patch: others' conditions merge by type and stay. The address
        // lists merge by `ip` too, so they are replaced outright (a pod's new address must
        // not sit beside its old one).
        let mut status = value.clone();
        for list in ["podIPs", "hostIPs"] {
            if let Some(ips) = status.get_mut(list).and_then(|l| l.as_array_mut()) {
                ips.push(serde_json::json!({"$patch": "replace"}));
            }
        }
        let patch = serde_json::json!({"metadata": {"uid": uid}, "status": status});
        match pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => self.published = Some((target, value)),
            Err(e) => tracing::debug!(pod = %name, error = %e, "cannot update the pod's status"),
        }
    }

    /// Stops every container within `grace`, as upstream's kubelet stops a deleted pod: the
    /// app containers (and a running init container) at once, each with its preStop hook,
    /// its stop signal and SIGKILL at the end; then the sidecars one by one in the reverse
    /// of their order. Without the pod (torn down while the agent was away), every run at
    /// once.
    async fn terminate(&mut self, grace: Duration, pod: Option<&Pod>) {
        let deadline = Instant::now() + grace;
        let mut running = Vec::new();
        let remaining = || deadline.saturating_duration_since(Instant::now());
        if let Some(pod) = pod {
            let spec = pod.spec.clone().unwrap_or_default();
            let inits = spec.init_containers.unwrap_or_default();
            let (sidecars, others): (Vec<&Container>, Vec<&Container>) =
                inits.iter().partition(|c| restart::is_sidecar(c));
            let mut first = tokio::task::JoinSet::new();
            for c in spec.containers.iter().chain(others) {
                if let Some(stop) = self.stop_running(pod, c, remaining()) {
                    running.push(stop.bundle.clone());
                    first.spawn(stop.run(Duration::ZERO));
                }
            }
            while first.join_next().await.is_some() {}
            for c in sidecars.into_iter().rev() {
                if let Some(stop) = self.stop_running(pod, c, remaining()) {
                    running.push(stop.bundle.clone());
                    stop.run(Duration::ZERO).await;
                }
            }
        }
        // What is left (every run of a pod unknown here): its stop signal, SIGKILL at the end.
        for entry in fs::read_dir(self.dir.join("containers")).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(last) = self.attempts(&name).last() {
                let bundle = self.bundle(&name, *last);
                if matches!(self.agent.containers.observe(&bundle), Observed::Running(_)) {
                    self.agent.containers.signal(
                        &bundle,
                        if grace.is_zero() { Signal::SIGKILL } else { Signal::SIGTERM },
                    );
                    running.push(bundle);
                }
            }
        }
        let alive = |list: &[PathBuf]| {
            list.iter().any(|b| matches!(self.agent.containers.observe(b), Observed::Running(_)))
        };
        while alive(&running) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for bundle in &running {
            self.agent.containers.signal(bundle, Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(&running) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Give the shims their last moment to record the exit and delete the container.
        let deadline = Instant::now() + Duration::from_secs(2);
        while running
            .iter()
            .any(|b| !matches!(self.agent.containers.observe(b), Observed::Exited(_)))
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Removes everything the pod had on this node (netlink and mounts: on a blocking
    /// thread).
    async fn remove(&mut self) {
        let (dir, uid, agent) = (self.dir.clone(), self.uid.clone(), Arc::clone(&self.agent));
        let _setup = self.agent.sandbox_setups.acquire().await;
        let removed = tokio::task::spawn_blocking(move || {
            for entry in fs::read_dir(dir.join("containers")).into_iter().flatten().flatten() {
                for attempt in fs::read_dir(entry.path()).into_iter().flatten().flatten() {
                    release_rootfs(&attempt.path(), agent.host.as_ref());
                }
            }
            sandbox::destroy(&dir, &agent.options, &uid, agent.host.as_ref());
            let _ = fs::remove_dir_all(&dir);
            for entry in fs::read_dir(&agent.logs_dir).into_iter().flatten().flatten() {
                if entry.file_name().to_string_lossy().ends_with(&uid) {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        })
        .await;
        if let Err(e) = removed {
            tracing::warn!(pod = %self.uid, error = %e, "cannot remove the pod's files");
        }
        self.sandbox = None;
    }

    /// Deletes the pod object once its containers are gone (only the same pod: by uid). A
    /// static pod has none (its mirror goes once the pod is no longer wanted: `pod::run`).
    async fn delete_object(&self, pod: &Pod) {
        if self.mirror.is_some() {
            return;
        }
        let pods: Api<Pod> = Api::namespaced(
            self.agent.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(e) = pods.delete(&name, &params).await {
            tracing::debug!(pod = %name, error = %e, "cannot delete the pod object");
        }
    }
}

/// The pod's `terminationGracePeriodSeconds` (30 when unset).
fn grace_period(pod: &Pod) -> Duration {
    let seconds = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds);
    Duration::from_secs(seconds.unwrap_or(30).max(0) as u64)
}

fn bundle_name(bundle: &Path) -> String {
    bundle
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Unmounts an ended container's root file system and drops its writable layer.
fn release_rootfs(bundle: &Path, host: &dyn crate::host::Host) {
    let rootfs = bundle.join("rootfs");
    if host.is_mount_point(&rootfs) {
        let _ = host.unmount(&rootfs);
    }
    let _ = fs::remove_dir_all(bundle.join("fs"));
}

fn parse_time(raw: &str) -> Option<Time> {
    raw.parse::<k8s_openapi::jiff::Timestamp>().ok().map(Time)
}

fn started_of(bundle: &Path) -> Option<runtime::Started> {
    fs::read(bundle.join(runtime::shim::STARTED))
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
}

fn ended_of(bundle: &Path, e: &Exited, c: &Container, log: &Path) -> Ended {
    let reason = match e.error.as_deref() {
        Some("ContainerStatusUnknown") => "ContainerStatusUnknown".to_string(),
        Some(_) => "StartError".to_string(),
        None => status::ended_reason(e.exit_code, e.oom_killed).to_string(),
    };
    Ended {
        exit_code: e.exit_code,
        signal: e.signal,
        reason,
        started_at: started_of(bundle).and_then(|s| parse_time(&s.started_at)),
        finished_at: parse_time(&e.finished_at),
        message: termination_message(bundle, e, c, log),
    }
}

/// The message of a run that ended, as upstream's: why it could not start; else what it
/// wrote to its `terminationMessagePath` (at most 4 KiB); else, under
/// `FallbackToLogsOnError` and when it failed, the end of its log.
fn termination_message(bundle: &Path, e: &Exited, c: &Container, log: &Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    if let Some(error) = &e.error {
        return (error != "ContainerStatusUnknown").then(|| error.clone());
    }
    let mut message = Vec::new();
    if let Ok(file) = fs::File::open(bundle.join("termination-log")) {
        let _ = file.take(MAX_TERMINATION_MESSAGE).read_to_end(&mut message);
    }
    let fallback = c.termination_message_policy.as_deref() == Some("FallbackToLogsOnError");
    if message.is_empty()
        && fallback
        && e.exit_code != 0
        && let Ok(mut file) = fs::File::open(log)
    {
        // The last 80 lines fit in this much of the file unless they are long; then the
        // last 2 KiB of output are in it anyway.
        let from = file.seek(SeekFrom::End(0)).unwrap_or(0).saturating_sub(LOG_TAIL_READ);
        let mut tail = Vec::new();
        if file.seek(SeekFrom::Start(from)).is_ok() && file.read_to_end(&mut tail).is_ok() {
            message = crate::server::logs::message_tail(&tail, from == 0);
        }
    }
    (!message.is_empty()).then(|| String::from_utf8_lossy(&message).into_owned())
}

fn unknown_end() -> Ended {
    Ended {
        exit_code: 137,
        signal: None,
        reason: "ContainerStatusUnknown".into(),
        started_at: None,
        finished_at: None,
        message: None,
    }
}

fn run_time(bundle: &Path, e: &Exited) -> Duration {
    let started = started_of(bundle).and_then(|s| parse_time(&s.started_at));
    match (started, parse_time(&e.finished_at)) {
        (Some(s), Some(f)) => Duration::try_from(f.0.duration_since(s.0)).unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

fn finished_ago(e: &Exited) -> Duration {
    parse_time(&e.finished_at)
        .and_then(|f| {
            Duration::try_from(k8s_openapi::jiff::Timestamp::now().duration_since(f.0)).ok()
        })
        .unwrap_or_default()
}

fn parse_signal(name: &str) -> Option<Signal> {
    let name = name.trim().to_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse().ok().or_else(|| {
        name.trim_start_matches("SIG").parse::<i32>().ok().and_then(|n| Signal::try_from(n).ok())
    })
}

#[cfg(test)]
mod scenarios;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals() {
        assert_eq!(parse_signal("SIGQUIT"), Some(Signal::SIGQUIT));
        assert_eq!(parse_signal("int"), Some(Signal::SIGINT));
        assert_eq!(parse_signal("bogus"), None);
    }
}
