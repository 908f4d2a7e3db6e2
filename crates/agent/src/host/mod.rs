//! What the pod logic asks of the node's kernel: pinned namespaces, a pod's link on the
//! bridge, mounts, cgroups and signals. [`Linux`] does it through [`crate::sys`];
//! [`recording::Recording`] (tests only) records it and keeps the set of what is left
//! on the host, so that sandbox and container code is unit-tested without root.

#[cfg(test)]
pub mod recording;

use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use crate::sys::{self, CgroupLimits, PodLink, SysError};

/// The node's kernel, as pods use it.
pub trait Host: Send + Sync + std::fmt::Debug {
    /// Makes new namespaces of `kinds` (`net`, `ipc`, `uts`) pinned to files in `dir`; a new
    /// UTS namespace gets `hostname`.
    fn pin_namespaces(&self, dir: &Path, hostname: &str, kinds: &[&str]) -> Result<(), SysError>;
    /// Lets go of the namespaces pinned in `dir`.
    fn unpin_namespaces(&self, dir: &Path) -> Result<(), SysError>;
    /// Puts the network namespace pinned at `netns` on the bridge, as `link` says.
    fn attach(&self, netns: &Path, link: &PodLink) -> Result<(), SysError>;
    /// Removes a pod's veth pair by its host end.
    fn detach(&self, host_veth: &str) -> Result<(), SysError>;
    /// Mounts an overlay of `lower` (topmost first) under `upper` at `target`.
    fn mount_overlay(
        &self,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<(), SysError>;
    /// Mounts a tmpfs at `target`, of at most `size` bytes when given.
    fn mount_tmpfs(&self, target: &Path, size: Option<u64>) -> Result<(), SysError>;
    /// Unmounts `target`.
    fn unmount(&self, target: &Path) -> Result<(), SysError>;
    /// Whether something is mounted at `path`.
    fn is_mount_point(&self, path: &Path) -> bool;
    /// Makes cgroup `path` (a pod's) with `limits`, in every hierarchy that has them.
    fn set_cgroup(&self, path: &str, limits: &CgroupLimits) -> Result<(), SysError>;
    /// Removes cgroup `path` and those under it, in every hierarchy.
    fn remove_cgroup(&self, path: &str);
    /// Starts the PID 1 of a pod's shared PID namespace; its pid.
    fn start_pid_holder(&self) -> Result<u32, String>;
    /// Sends `signal` to process `pid`.
    fn kill(&self, pid: i32, signal: Signal) -> Result<(), SysError>;
}

/// This machine's kernel.
#[derive(Debug, Clone)]
pub struct Linux {
    /// This binary, whose `pause-holder` starts a PID namespace's PID 1.
    pub exe: PathBuf,
}

impl Host for Linux {
    fn pin_namespaces(&self, dir: &Path, hostname: &str, kinds: &[&str]) -> Result<(), SysError> {
        sys::pin_pod_namespaces(dir, hostname, kinds)
    }

    fn unpin_namespaces(&self, dir: &Path) -> Result<(), SysError> {
        sys::unpin_pod_namespaces(dir)
    }

    fn attach(&self, netns: &Path, link: &PodLink) -> Result<(), SysError> {
        sys::attach_pod(netns, link)
    }

    fn detach(&self, host_veth: &str) -> Result<(), SysError> {
        sys::detach_pod(host_veth)
    }

    fn mount_overlay(
        &self,
        lower: &[PathBuf],
        upper: &Path,
        work: &Path,
        target: &Path,
    ) -> Result<(), SysError> {
        sys::mount_overlay(lower, upper, work, target)
    }

    fn mount_tmpfs(&self, target: &Path, size: Option<u64>) -> Result<(), SysError> {
        sys::mount_tmpfs(target, size)
    }

    fn unmount(&self, target: &Path) -> Result<(), SysError> {
        sys::unmount(target)
    }

    fn is_mount_point(&self, path: &Path) -> bool {
        sys::is_mount_point(path)
    }

    fn set_cgroup(&self, path: &str, limits: &CgroupLimits) -> Result<(), SysError> {
        sys::set_cgroup(path, limits)
    }

    fn remove_cgroup(&self, path: &str) {
        sys::remove_cgroup(path)
    }

    fn start_pid_holder(&self) -> Result<u32, String> {
        let output = std::process::Command::new(&self.exe)
            .arg("pause-holder")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot start the PID namespace's holder: {e}"))?;
        String::from_utf8_lossy(&output.stdout).trim().parse().map_err(|_| {
            format!(
                "the PID namespace's holder failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })
    }

    fn kill(&self, pid: i32, signal: Signal) -> Result<(), SysError> {
        sys::kill(pid, signal)
    }
}
