//! A [`Host`] that changes nothing: it records each call and keeps what would be left on a
//! real host (pinned namespaces, links, mounts, live processes), and fails the calls a test
//! names.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::signal::Signal;

use super::Host;
use crate::sys::{CgroupLimits, PodLink, SysError};

/// One call, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Namespaces of these kinds pinned in a directory.
    Pin(PathBuf, Vec<String>),
    /// A directory's namespaces let go.
    Unpin(PathBuf),
    /// A pod's link made: its host veth and address.
    Attach(String, std::net::Ipv4Addr),
    /// A link removed.
    Detach(String),
    /// A mount (overlay or tmpfs) at a path.
    Mount(PathBuf),
    /// An unmount.
    Unmount(PathBuf),
    /// A cgroup made, with its limits.
    SetCgroup(String, CgroupLimits),
    /// A cgroup removed.
    RemoveCgroup(String),
    /// A PID holder started, with its pid.
    StartPidHolder(u32),
    /// A signal sent.
    Kill(i32, Signal),
}

/// What is left on the pretended host.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Left {
    /// Directories with pinned namespaces.
    pub namespaces: BTreeSet<PathBuf>,
    /// Host veths.
    pub links: BTreeSet<String>,
    /// Mount points.
    pub mounts: BTreeSet<PathBuf>,
    /// Processes started and not killed.
    pub processes: BTreeSet<i32>,
    /// Cgroups made and not removed.
    pub cgroups: BTreeSet<String>,
}

impl Left {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.links.is_empty()
            && self.mounts.is_empty()
            && self.processes.is_empty()
            && self.cgroups.is_empty()
    }
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<Call>,
    left: Left,
    next_pid: u32,
}

/// The recording host.
#[derive(Debug, Default)]
pub struct Recording {
    state: Mutex<State>,
    /// Names of the methods that fail (`"attach"`, `"mount_tmpfs"`, ...).
    failing: Mutex<BTreeSet<&'static str>>,
}

impl Recording {
    /// A host where every call succeeds.
    pub fn new() -> Recording {
        Recording::default()
    }

    /// Makes the method named `name` fail from now on.
    pub fn fail(&self, name: &'static str) {
        self.failing.lock().expect("not poisoned").insert(name);
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().expect("not poisoned").calls.clone()
    }

    /// What is left.
    pub fn left(&self) -> Left {
        self.state.lock().expect("not poisoned").left.clone()
    }

    fn call(
        &self,
        name: &'static str,
        call: Call,
        change: impl FnOnce(&mut Left),
    ) -> Result<(), SysError> {
        if self.failing.lock().expect("not poisoned").contains(name) {
            return Err(SysError::new(name, std::io::Error::other("failed on purpose")));
        }
        let mut state = self.state.lock().expect("not poisoned");
        state.calls.push(call);
        change(&mut state.left);
        Ok(())
    }
}

impl Host for Recording {
    fn pin_namespaces(&self, dir: &Path, _hostname: &str, kinds: &[&str]) -> Result<(), SysError> {
        let kinds = kinds.iter().map(|k| k.to_string()).collect();
        self.call("pin_namespaces", Call::Pin(dir.to_path_buf(), kinds), |left| {
            left.namespaces.insert(dir.to_path_buf());
        })
    }

    fn unpin_namespaces(&self, dir: &Path) -> Result<(), SysError> {
        self.call("unpin_namespaces", Call::Unpin(dir.to_path_buf()), |left| {
            left.namespaces.remove(dir);
        })
    }

    fn attach(&self, _netns: &Path, link: &PodLink) -> Result<(), SysError> {
        let veth = link.host_veth.clone();
        self.call("attach", Call::Attach(veth.clone(), link.address), |left| {
            left.links.insert(veth);
        })
    }

    fn detach(&self, host_veth: &str) -> Result<(), SysError> {
        self.call("detach", Call::Detach(host_veth.to_string()), |left| {
            left.links.remove(host_veth);
        })
    }

    fn mount_overlay(
        &self,
        _lower: &[PathBuf],
        _upper: &Path,
        _work: &Path,
        target: &Path,
    ) -> Result<(), SysError> {
        self.call("mount_overlay", Call::Mount(target.to_path_buf()), |left| {
            left.mounts.insert(target.to_path_buf());
        })
    }

    fn mount_tmpfs(&self, target: &Path, _size: Option<u64>) -> Result<(), SysError> {
        self.call("mount_tmpfs", Call::Mount(target.to_path_buf()), |left| {
            left.mounts.insert(target.to_path_buf());
        })
    }

    fn unmount(&self, target: &Path) -> Result<(), SysError> {
        if !self.is_mount_point(target) {
            return Err(SysError::new("unmount", std::io::Error::from_raw_os_error(22)));
        }
        self.call("unmount", Call::Unmount(target.to_path_buf()), |left| {
            left.mounts.remove(target);
        })
    }

    fn is_mount_point(&self, path: &Path) -> bool {
        self.state.lock().expect("not poisoned").left.mounts.contains(path)
    }

    fn set_cgroup(&self, path: &str, limits: &CgroupLimits) -> Result<(), SysError> {
        let call = Call::SetCgroup(path.to_string(), *limits);
        self.call("set_cgroup", call, |left| {
            left.cgroups.insert(path.to_string());
        })
    }

    fn remove_cgroup(&self, path: &str) {
        let _ = self.call("remove_cgroup", Call::RemoveCgroup(path.to_string()), |left| {
            left.cgroups.retain(|c| c != path && !c.starts_with(&format!("{path}/")));
        });
    }

    fn start_pid_holder(&self) -> Result<u32, String> {
        let pid = {
            let mut state = self.state.lock().expect("not poisoned");
            state.next_pid += 1;
            40_000 + state.next_pid
        };
        self.call("start_pid_holder", Call::StartPidHolder(pid), |left| {
            left.processes.insert(pid as i32);
        })
        .map_err(|e| e.to_string())?;
        Ok(pid)
    }

    fn kill(&self, pid: i32, signal: Signal) -> Result<(), SysError> {
        self.call("kill", Call::Kill(pid, signal), |left| {
            if signal == Signal::SIGKILL {
                left.processes.remove(&pid);
            }
        })
    }
}
