//! `krust runtime`: the embedded runtime's command line, with runc's flags for the verbs a
//! node uses (`create`, `start`, `exec`, `kill`, `delete`, `state`). The agent runs it for
//! `exec` (sessions and probes) and to delete a container whose shim is gone; people run it
//! to look into a node's containers. Like runc, a failure exits 255 after logging the
//! reason as a JSON line (`level`, `msg`) to `--log`, and `exec` exits with the process's
//! own exit code.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};

use super::embedded::{self, Error, Exec};
use super::{ContainerIo, Create};
use crate::runtime::console::Console;
use crate::sys;

/// One invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The state directory (runc's `--root`).
    pub root: PathBuf,
    /// Where failures are logged, as JSON lines.
    pub log: Option<PathBuf>,
    /// What to do.
    pub verb: Verb,
}

/// What an invocation does.
#[derive(Debug, Clone)]
pub enum Verb {
    /// Creates a container from `bundle`, its process waiting for `start`.
    Create {
        /// The container's id.
        id: String,
        /// Its bundle.
        bundle: PathBuf,
        /// Where its process's id is written.
        pid_file: Option<PathBuf>,
        /// Where the master end of its terminal is sent, when it has one.
        console_socket: Option<PathBuf>,
    },
    /// Starts a created container.
    Start {
        /// The container's id.
        id: String,
    },
    /// Runs a process in a running container, in the foreground.
    Exec {
        /// The container's id.
        id: String,
        /// On a terminal, which this process copies to and from its own stdio.
        tty: bool,
        /// The command and its arguments.
        args: Vec<String>,
    },
    /// Sends a signal.
    Kill {
        /// The container's id.
        id: String,
        /// A number or a name (`TERM`, `SIGTERM`).
        signal: String,
        /// To all of the container's processes.
        all: bool,
    },
    /// Removes a container (killing it first with `force`).
    Delete {
        /// The container's id.
        id: String,
        /// Whether a running container is killed first.
        force: bool,
    },
    /// Prints a container's state as JSON.
    State {
        /// The container's id.
        id: String,
    },
}

/// Runs `invocation`; returns the process's exit code.
pub fn run(invocation: &Invocation) -> i32 {
    match verb(&invocation.root, &invocation.verb) {
        Ok(code) => code,
        Err(error) => {
            let reason = embedded::reason(&error);
            eprintln!("krust runtime: {reason}");
            if let Some(log) = &invocation.log {
                log_error(log, &reason);
            }
            255
        }
    }
}

fn verb(root: &Path, verb: &Verb) -> Result<i32, Error> {
    fs::create_dir_all(root).map_err(|source| Error::File {
        what: format!("cannot create {}", root.display()),
        source,
    })?;
    match verb {
        Verb::Create { id, bundle, pid_file, console_socket } => {
            let pid_file = pid_file.clone().unwrap_or_else(|| bundle.join("container.pid"));
            let io = match console_socket {
                Some(socket) => ContainerIo::Console(socket.display().to_string()),
                None => {
                    let own = |fd: std::io::Result<OwnedFd>| {
                        fd.map_err(|source| Error::File {
                            what: "cannot pass on this process's stdio".into(),
                            source,
                        })
                    };
                    ContainerIo::Pipes {
                        stdin: Some(own(std::io::stdin().as_fd().try_clone_to_owned())?),
                        stdout: own(std::io::stdout().as_fd().try_clone_to_owned())?,
                        stderr: own(std::io::stderr().as_fd().try_clone_to_owned())?,
                    }
                }
            };
            // Only a runtime binary logs there; the embedded one returns its errors.
            let log = bundle.join("runtime.log");
            embedded::create(Create { root, id, bundle, pid_file: &pid_file, log: &log, io })?;
            Ok(0)
        }
        Verb::Start { id } => embedded::start(root, id).map(|()| 0),
        Verb::Exec { id, tty, args } => exec(root, id, *tty, args),
        Verb::Kill { id, signal, all } => embedded::kill(root, id, signal, *all).map(|()| 0),
        // As runc's: deleting a container that is not there is an error, unless forced.
        Verb::Delete { id, force } => match root.join(id).exists() {
            true => embedded::delete(root, id).map(|()| 0),
            false if *force => Ok(0),
            false => Err(Error::NotFound(id.clone())),
        },
        Verb::State { id } => {
            let state = embedded::state(root, id)?;
            println!("{}", serde_json::to_string_pretty(&state).unwrap_or_default());
            Ok(0)
        }
    }
}

/// Runs `args` in container `id` and waits for it. On a terminal, this process copies
/// between its own stdio and the process's terminal, and passes its own terminal's size on
/// whenever it gets `SIGWINCH` (as runc does in the foreground).
fn exec(root: &Path, id: &str, tty: bool, args: &[String]) -> Result<i32, Error> {
    let file = |what: &str| {
        let what = what.to_string();
        move |source| Error::File { what, source }
    };
    let console = match tty {
        true => Some(
            Console::listen(&root.join(id), &format!("exec-{}.sock", std::process::id()))
                .map_err(file("cannot listen for the terminal"))?,
        ),
        false => None,
    };
    let pid = embedded::exec(&Exec {
        root,
        id,
        args,
        console_socket: console.as_ref().map(|c| c.path.as_str()),
    })?;
    let master = match &console {
        Some(console) => {
            Some(Arc::new(console.receive().map_err(file("no terminal from the container"))?))
        }
        None => None,
    };
    drop(console);
    if master.is_some() {
        raw(std::io::stdin());
    }
    // Signals wait for a thread of their own from here on (every thread started after
    // this inherits the mask; the container's process was started before it).
    let mut signals = SigSet::empty();
    for signal in [Signal::SIGWINCH, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(signal);
    }
    let _ = signals.thread_block();
    {
        let master = master.clone();
        std::thread::spawn(move || {
            if let Some(master) = &master {
                copy_size(master);
            }
            while let Ok(signal) = signals.wait() {
                match (signal, &master) {
                    (Signal::SIGWINCH, Some(master)) => copy_size(master),
                    (Signal::SIGWINCH, None) => {}
                    (signal, _) => {
                        let _ = sys::kill(pid, signal);
                    }
                }
            }
        });
    }
    let output = match &master {
        Some(master) => {
            let input = master.try_clone().map_err(file("cannot copy the terminal"))?;
            let output = master.try_clone().map_err(file("cannot copy the terminal"))?;
            std::thread::spawn(move || {
                let _ = copy(std::io::stdin().lock(), fs::File::from(input));
            });
            Some(std::thread::spawn(move || {
                let _ = copy(fs::File::from(output), std::io::stdout().lock());
            }))
        }
        None => None,
    };
    let code = match sys::wait_for(pid) {
        Some(sys::Exit::Code(code)) => code,
        Some(sys::Exit::Signal(signal)) => 128 + signal,
        None => 255,
    };
    // What the process wrote just before it ended is still on its way out of the terminal.
    if let Some(output) = output {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !output.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = std::io::stdout().flush();
    Ok(code)
}

/// Copies until the end of `from` (a terminal's master reads `EIO` once its last process
/// is gone, which counts as the end).
fn copy(mut from: impl Read, mut to: impl Write) -> std::io::Result<()> {
    let mut buffer = [0u8; 8192];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => return Ok(()),
            Err(e) => return Err(e),
        };
        to.write_all(&buffer[..n])?;
        to.flush()?;
    }
}

/// Puts this process's own terminal (when stdin is one) in raw mode, as runc does: what
/// arrives (Ctrl-C too) passes unchanged to the process's terminal, which interprets it.
fn raw(stdin: impl AsFd) {
    use rustix::termios::{OptionalActions, tcgetattr, tcsetattr};
    if let Ok(mut mode) = tcgetattr(&stdin) {
        mode.make_raw();
        let _ = tcsetattr(&stdin, OptionalActions::Now, &mode);
    }
}

/// Gives the process's terminal this process's own terminal's size (when stdin is one).
fn copy_size(master: &OwnedFd) {
    if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdin())
        && size.ws_row > 0
    {
        let _ = sys::set_terminal_size(master, size.ws_row, size.ws_col);
    }
}

/// Appends `reason` to `log` as runc would log an error.
fn log_error(log: &Path, reason: &str) {
    let entry = serde_json::json!({
        "level": "error",
        "msg": reason,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(file, "{entry}");
    }
}
