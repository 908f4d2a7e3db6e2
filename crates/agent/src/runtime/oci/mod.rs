//! The OCI runtime under the shims: youki's `libcontainer`, embedded in this binary (the
//! default), or a runc-compatible binary chosen with `--oci-runtime PATH`.
//!
//! The shim creates, starts and deletes its container through [`OciRuntime`]; with the
//! embedded runtime it does so in its own process, with no runtime process started. Other
//! verbs (`exec` for `kubectl exec` and probes, `delete` of a container whose shim is gone)
//! run the runtime's command line, which for the embedded runtime is `krust runtime`
//! ([`cli`]), speaking runc's flags.

pub mod cli;
pub mod embedded;

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The flag value that names the embedded runtime.
pub const EMBEDDED: &str = "embedded";

/// The OCI runtime that creates the node's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciRuntime {
    /// youki's `libcontainer`, inside `exe` (this binary).
    Embedded {
        /// This binary, whose `runtime` subcommand is the embedded runtime's command line.
        exe: PathBuf,
    },
    /// A runc-compatible binary.
    Binary(PathBuf),
}

/// Where a created container's standard streams go.
#[derive(Debug)]
pub enum ContainerIo {
    /// Pipes (or `/dev/null` for an absent stdin).
    Pipes {
        /// The container's stdin, when it keeps one open.
        stdin: Option<OwnedFd>,
        /// The container's stdout.
        stdout: OwnedFd,
        /// The container's stderr.
        stderr: OwnedFd,
    },
    /// A terminal, whose master end the runtime sends to the socket at this path.
    Console(String),
}

/// One container to create.
#[derive(Debug)]
pub struct Create<'a> {
    /// The runtime's state directory.
    pub root: &'a Path,
    /// The container's id.
    pub id: &'a str,
    /// Its bundle (with `config.json`).
    pub bundle: &'a Path,
    /// Where the container's first process's pid is written.
    pub pid_file: &'a Path,
    /// Where a runtime binary logs (JSON lines; its errors are read from there).
    pub log: &'a Path,
    /// Its standard streams.
    pub io: ContainerIo,
}

impl OciRuntime {
    /// The runtime a `--oci-runtime` value names: [`EMBEDDED`], or a binary's path.
    pub fn from_flag(value: &Path, exe: PathBuf) -> OciRuntime {
        if value == Path::new(EMBEDDED) {
            OciRuntime::Embedded { exe }
        } else {
            OciRuntime::Binary(value.to_path_buf())
        }
    }

    /// The `--oci-runtime` value that names this runtime (passed on to shims).
    pub fn flag(&self) -> &Path {
        match self {
            OciRuntime::Embedded { .. } => Path::new(EMBEDDED),
            OciRuntime::Binary(path) => path,
        }
    }

    /// The directory under the agent's data dir where the runtime keeps its containers'
    /// state (the two runtimes' state does not mix).
    pub fn state_dir_name(&self) -> &'static str {
        match self {
            OciRuntime::Embedded { .. } => "youki",
            OciRuntime::Binary(_) => "runc",
        }
    }

    /// The runtime's command line with its state directory `root`, ready for a verb.
    pub fn command(&self, root: &Path) -> Command {
        let mut command = match self {
            OciRuntime::Embedded { exe } => {
                let mut command = Command::new(exe);
                command.arg("runtime");
                command
            }
            OciRuntime::Binary(path) => Command::new(path),
        };
        command.arg("--root").arg(root);
        command
    }

    /// What the runtime is called in messages.
    pub fn name(&self) -> String {
        match self {
            OciRuntime::Embedded { .. } => "the embedded runtime".to_string(),
            OciRuntime::Binary(path) => path.display().to_string(),
        }
    }

    /// Creates a container (its process waits for [`OciRuntime::start`]) and returns its
    /// process id; or the runtime's reason.
    pub fn create(&self, request: Create) -> Result<i32, String> {
        match self {
            OciRuntime::Embedded { .. } => {
                embedded::create(request).map_err(|e| embedded::reason(&e))
            }
            OciRuntime::Binary(path) => {
                let mut command = self.logged(request.root, request.log);
                command
                    .arg("create")
                    .arg("--bundle")
                    .arg(request.bundle)
                    .arg("--pid-file")
                    .arg(request.pid_file);
                match request.io {
                    ContainerIo::Pipes { stdin, stdout, stderr } => {
                        command.stdin(stdin.map_or_else(Stdio::null, Stdio::from));
                        command.stdout(stdout).stderr(stderr);
                    }
                    ContainerIo::Console(socket) => {
                        command.arg("--console-socket").arg(socket);
                        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
                    }
                }
                let status = command.arg(request.id).status();
                // The runtime's ends of the container's pipes close with the command.
                drop(command);
                match status {
                    Ok(status) if status.success() => Ok(read_pid(request.pid_file)),
                    Ok(_) => {
                        self.delete(request.root, request.id);
                        Err(logged_error(request.log).unwrap_or_else(|| {
                            "the OCI runtime failed without saying why".to_string()
                        }))
                    }
                    Err(e) => Err(format!("cannot run {}: {e}", path.display())),
                }
            }
        }
    }

    /// Starts the created container `id`'s process.
    pub fn start(&self, root: &Path, id: &str, log: &Path) -> Result<(), String> {
        match self {
            OciRuntime::Embedded { .. } => {
                embedded::start(root, id).map_err(|e| embedded::reason(&e))
            }
            OciRuntime::Binary(_) => {
                let status = self
                    .logged(root, log)
                    .args(["start", id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                match status {
                    Ok(status) if status.success() => Ok(()),
                    _ => Err(logged_error(log).unwrap_or_else(|| {
                        "the OCI runtime failed without saying why".to_string()
                    })),
                }
            }
        }
    }

    /// Kills what is left of container `id` and removes the runtime's state of it.
    pub fn delete(&self, root: &Path, id: &str) {
        match self {
            OciRuntime::Embedded { .. } => {
                if let Err(e) = embedded::delete(root, id) {
                    tracing::debug!(id, error = %embedded::reason(&e), "cannot delete the container");
                }
            }
            OciRuntime::Binary(_) => {
                let _ = self
                    .command(root)
                    .args(["delete", "--force", id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    /// The command line with JSON logging to `log`.
    fn logged(&self, root: &Path, log: &Path) -> Command {
        let mut command = self.command(root);
        command.arg("--log").arg(log).arg("--log-format").arg("json");
        command
    }
}

fn read_pid(file: &Path) -> i32 {
    fs::read_to_string(file).ok().and_then(|p| p.trim().parse().ok()).unwrap_or(0)
}

/// The last error a runtime wrote to its JSON log `log` (runc's format: one object per line,
/// `level` and `msg`), if any.
pub fn logged_error(log: &Path) -> Option<String> {
    let text = fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|entry| entry["level"] == "error")
        .and_then(|entry| entry["msg"].as_str().map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_names_the_runtime() {
        let exe = PathBuf::from("/usr/bin/krust");
        let embedded = OciRuntime::from_flag(Path::new("embedded"), exe.clone());
        assert_eq!(embedded, OciRuntime::Embedded { exe: exe.clone() });
        assert_eq!(embedded.flag(), Path::new("embedded"));
        let runc = OciRuntime::from_flag(Path::new("runc"), exe);
        assert_eq!(runc.flag(), Path::new("runc"));
        assert_ne!(runc.state_dir_name(), embedded.state_dir_name());
    }

    #[test]
    fn the_embedded_command_line_is_this_binary() {
        let embedded = OciRuntime::Embedded { exe: "/usr/bin/krust".into() };
        let command = embedded.command(Path::new("/run/k"));
        assert_eq!(command.get_program(), "/usr/bin/krust");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args, ["runtime", "--root", "/run/k"]);
    }

    #[test]
    fn a_logged_error_is_the_last_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("log.json");
        fs::write(
            &log,
            "{\"level\":\"error\",\"msg\":\"first\"}\n{\"level\":\"info\",\"msg\":\"x\"}\n\
             {\"level\":\"error\",\"msg\":\"second\"}\nnot json\n",
        )
        .expect("log written");
        assert_eq!(logged_error(&log).as_deref(), Some("second"));
        assert_eq!(logged_error(&dir.path().join("none")), None);
    }
}
