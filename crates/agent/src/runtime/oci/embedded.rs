//! The embedded OCI runtime: youki's `libcontainer`, called in this process. A shim calls
//! [`create`], [`start`] and [`delete`] for its container; `krust runtime exec` calls
//! [`exec`].
//!
//! `libcontainer` forks the container's processes from the caller, so a caller must have
//! one thread when it creates (the shim does; `krust runtime` does). The container's first
//! process is the caller's child, which the caller reaps.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::error::LibcontainerError;
use libcontainer::oci_spec::runtime::{LinuxSeccomp, Process, Spec};
use libcontainer::signal::Signal;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

use super::{ContainerIo, Create};

/// What went wrong in the embedded runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `libcontainer` refused or failed.
    #[error(transparent)]
    Container(#[from] LibcontainerError),
    /// A file of the container (its spec, an exec's process) could not be used.
    #[error("{what}: {source}")]
    File {
        /// Which file, and what was done with it.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// There is no container of that id.
    #[error("container {0} does not exist")]
    NotFound(String),
    /// The container is not running, so nothing can be run in it.
    #[error("container {0} is not running")]
    NotRunning(String),
}

/// The whole chain of `error`'s causes on one line, as the pod's status shows it.
pub fn reason(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// Creates the container `request` describes; its process waits for [`start`]. Returns the
/// process's id.
pub fn create(request: Create) -> Result<i32, Error> {
    let mut builder = ContainerBuilder::new(request.id.to_string(), SyscallType::Linux)
        .with_root_path(request.root)?
        .with_pid_file(Some(request.pid_file))?;
    match request.io {
        ContainerIo::Pipes { stdin, stdout, stderr } => {
            let stdin = match stdin {
                Some(stdin) => stdin,
                None => fs::File::open("/dev/null").map(OwnedFd::from).map_err(|source| {
                    Error::File { what: "cannot open /dev/null".into(), source }
                })?,
            };
            builder = builder.with_stdin(stdin).with_stdout(stdout).with_stderr(stderr);
        }
        ContainerIo::Console(socket) => builder = builder.with_console_socket(Some(socket)),
    }
    let container =
        builder.as_init(request.bundle).with_systemd(false).with_detach(true).build()?;
    Ok(container.pid().map_or(0, |pid| pid.as_raw()))
}

/// Starts the created container `id`'s process.
pub fn start(root: &Path, id: &str) -> Result<(), Error> {
    Ok(Container::load(root.join(id))?.start()?)
}

/// Kills what is left of container `id` and removes its state and cgroup.
pub fn delete(root: &Path, id: &str) -> Result<(), Error> {
    Ok(Container::load(root.join(id))?.delete(true)?)
}

/// Sends `signal` (a number, or a name with or without `SIG`) to container `id`'s first
/// process, or to all of its processes with `all`.
pub fn kill(root: &Path, id: &str, signal: &str, all: bool) -> Result<(), Error> {
    let signal = Signal::try_from(signal)
        .map_err(|e| Error::Container(LibcontainerError::Other(e.to_string())))?;
    Ok(Container::load(root.join(id))?.kill(signal, all)?)
}

/// The state of container `id`, as runc's `state` prints it.
pub fn state(root: &Path, id: &str) -> Result<serde_json::Value, Error> {
    let container = Container::load(root.join(id))?;
    Ok(serde_json::json!({
        "ociVersion": "1.0.2",
        "id": id,
        "pid": container.pid().map_or(0, |pid| pid.as_raw()),
        "status": container.status().to_string(),
        "bundle": container.bundle(),
        "created": container.created(),
    }))
}

/// A process to run in a running container.
#[derive(Debug)]
pub struct Exec<'a> {
    /// The runtime's state directory.
    pub root: &'a Path,
    /// The container's id.
    pub id: &'a str,
    /// The command and its arguments.
    pub args: &'a [String],
    /// Whether it runs on a terminal, whose master end is sent to this socket.
    pub console_socket: Option<&'a str>,
}

/// Starts `exec`'s process in its container, as the container's own process runs: its
/// user, groups, working directory, environment, capabilities, no_new_privs and seccomp
/// filter. Returns the process's id; it is the caller's child.
pub fn exec(exec: &Exec) -> Result<i32, Error> {
    let dir = exec.root.join(exec.id);
    let container = Container::load(dir.clone())?;
    if !container.can_exec() {
        return Err(Error::NotRunning(exec.id.to_string()));
    }
    let spec_path = container.bundle().join("config.json");
    let spec = Spec::load(&spec_path).map_err(|e| Error::File {
        what: format!("cannot read {}", spec_path.display()),
        source: std::io::Error::other(e),
    })?;
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(exec.args.to_vec())).set_terminal(Some(exec.console_socket.is_some()));
    let process_file = ProcessFile::write(&dir, &process)?;
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let pid = ContainerBuilder::new(exec.id.to_string(), SyscallType::Linux)
        .with_root_path(exec.root)?
        .with_console_socket(exec.console_socket)
        .with_executor(Confined { seccomp })
        .as_tenant()
        .with_process(Some(&process_file.0))
        .with_detach(true)
        .build()?;
    Ok(pid.as_raw())
}

/// An exec's `process.json`, removed once the process has started.
struct ProcessFile(PathBuf);

impl ProcessFile {
    fn write(dir: &Path, process: &Process) -> Result<ProcessFile, Error> {
        let path = dir.join(format!("exec-{}.json", std::process::id()));
        let text = serde_json::to_vec(process).map_err(std::io::Error::other);
        text.and_then(|text| fs::write(&path, text)).map_err(|source| Error::File {
            what: format!("cannot write {}", path.display()),
            source,
        })?;
        Ok(ProcessFile(path))
    }
}

impl Drop for ProcessFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The executor of exec'd processes: `libcontainer` gives a process it execs in a running
/// container none of the container's seccomp filter, so this one loads it just before the
/// exec, as runc does for `runc exec`. Without `CAP_SYS_ADMIN` a filter needs no_new_privs,
/// which it then sets.
#[derive(Clone)]
struct Confined {
    seccomp: Option<LinuxSeccomp>,
}

impl Executor for Confined {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(seccomp) = &self.seccomp {
            let loaded = libcontainer::seccomp::initialize_seccomp(seccomp).or_else(|_| {
                crate::sys::set_no_new_privs()
                    .map_err(|e| ExecutorError::Other(format!("cannot set no_new_privs: {e}")))?;
                libcontainer::seccomp::initialize_seccomp(seccomp)
                    .map_err(|e| ExecutorError::Other(format!("cannot load seccomp: {e}")))
            });
            loaded?;
        }
        libcontainer::workload::default::get_executor().exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        libcontainer::workload::default::get_executor().validate(spec)
    }
}
