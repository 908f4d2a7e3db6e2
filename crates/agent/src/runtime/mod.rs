//! Containers on this node: each runs under its own `krust shim` process, which the agent
//! starts detached and then only observes through the files the shim writes. So a
//! container outlives the agent, and a restarted agent finds it where it was left.

pub mod attach;
pub mod console;
pub mod exec;
pub mod oci;
#[cfg(test)]
pub mod recording;
pub mod seccomp;
pub mod shim;
pub mod spec;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::BoxFuture;
use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;

use crate::sys;
pub use shim::{Exited, Started};

/// What the agent knows of one container instance (one attempt of a pod's container).
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Its shim is setting it up.
    Creating,
    /// It runs.
    Running(Started),
    /// It ended, or never started (`error`).
    Exited(Exited),
}

/// A container's life as the pod logic drives it: started under its shim, observed through
/// what the shim records, signalled. [`Runtime`] does it with `krust shim` processes; the
/// tests' [`recording::RecordingContainers`] pretends, so that the pod logic is unit-tested
/// without root.
pub trait Containers: Send + Sync + std::fmt::Debug {
    /// Starts the container whose bundle (with `config.json`) is `bundle`, logging to `log`,
    /// and waits until it runs or failed.
    fn start<'a>(
        &'a self,
        id: &'a str,
        bundle: &'a Path,
        log: &'a Path,
    ) -> BoxFuture<'a, std::io::Result<Observed>>;
    /// What is known of the container of `bundle`.
    fn observe(&self, bundle: &Path) -> Observed;
    /// Sends `signal` to the container of `bundle`, if it runs.
    fn signal(&self, bundle: &Path, signal: Signal);
}

impl Containers for Runtime {
    fn start<'a>(
        &'a self,
        id: &'a str,
        bundle: &'a Path,
        log: &'a Path,
    ) -> BoxFuture<'a, std::io::Result<Observed>> {
        Box::pin(self.start_shim(id, bundle, log))
    }

    fn observe(&self, bundle: &Path) -> Observed {
        observe(bundle)
    }

    fn signal(&self, bundle: &Path, signal: Signal) {
        self::signal(bundle, signal);
    }
}

/// The OCI runtime and the shims that drive it.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The OCI runtime.
    pub runtime: oci::OciRuntime,
    /// The runtime's state directory.
    pub root: PathBuf,
    /// This binary, run as `krust shim`.
    pub shim: PathBuf,
}

impl Runtime {
    /// Starts the container whose bundle (with `config.json`) is `bundle` under a new shim,
    /// and waits until the shim says it runs or failed.
    async fn start_shim(&self, id: &str, bundle: &Path, log: &Path) -> std::io::Result<Observed> {
        let mut child = tokio::process::Command::new(&self.shim)
            .arg("shim")
            .arg("--id")
            .arg(id)
            .arg("--bundle")
            .arg(bundle)
            .arg("--log")
            .arg(log)
            .arg("--runtime")
            .arg(self.runtime.flag())
            .arg("--runtime-root")
            .arg(&self.root)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(fs::File::create(bundle.join("shim.log"))?)
            .kill_on_drop(false)
            .spawn()?;
        // The shim writes a line on stdout each time it records the container's state; the
        // bundle is read again then. Polling stays, slower, for a shim that ended first.
        let mut records = child.stdout.take();
        // The shim lives as long as its container; reap it whenever it ends.
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match observe(bundle) {
                Observed::Creating if tokio::time::Instant::now() < deadline => {
                    let Some(stdout) = records.as_mut() else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    let mut line = [0u8; 1];
                    let read = stdout.read(&mut line);
                    if let Ok(Ok(0) | Err(_)) =
                        tokio::time::timeout(Duration::from_millis(100), read).await
                    {
                        records = None;
                    }
                }
                Observed::Creating => {
                    return Ok(Observed::Exited(Exited {
                        exit_code: 128,
                        error: Some("the container did not start within 60s".into()),
                        finished_at: shim::now(),
                        ..Exited::default()
                    }));
                }
                observed => return Ok(observed),
            }
        }
    }
}

/// The OCI runtime's id of run `attempt` of container `name` of pod `uid`.
pub fn container_id(uid: &str, name: &str, attempt: u32) -> String {
    format!("{}-{name}-{attempt}", uid.get(..13).unwrap_or(uid))
}

/// What the shim of `bundle` has recorded.
pub fn observe(bundle: &Path) -> Observed {
    if let Some(exited) = read::<Exited>(&bundle.join(shim::EXITED)) {
        return Observed::Exited(exited);
    }
    match read::<Started>(&bundle.join(shim::STARTED)) {
        Some(started) if sys::alive(started.pid) || shim_running(started.shim_pid, bundle) => {
            Observed::Running(started)
        }
        Some(_) => Observed::Exited(Exited {
            // The container and its shim are both gone without a record: the node rebooted
            // or someone killed them. Upstream reports this the same way.
            exit_code: 137,
            finished_at: shim::now(),
            error: Some("ContainerStatusUnknown".into()),
            ..Exited::default()
        }),
        None => Observed::Creating,
    }
}

/// Whether process `pid` is the shim of `bundle` (not another process that took its pid).
fn shim_running(pid: i32, bundle: &Path) -> bool {
    pid > 0
        && sys::alive(pid)
        && fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*bundle.to_string_lossy()))
}

/// Sends `signal` to the container of `bundle`, if it runs.
pub fn signal(bundle: &Path, signal: Signal) {
    if let Observed::Running(started) = observe(bundle) {
        let _ = sys::kill(started.pid, signal);
    }
}

fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    fs::read(path).ok().and_then(|raw| serde_json::from_slice(&raw).ok())
}
