//! `krust shim`: the small process that owns one running container, so that containers
//! outlive the agent. It creates the container through the OCI runtime with pipes as its
//! stdio, becomes the reaper of the container's process, writes the container's output to
//! its log file in the CRI format, and records how the container ended. The agent reads
//! what it records (`state.json`, `exit.json`) and never needs the shim to answer.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::attach;
use super::console::Console;
use super::oci::{ContainerIo, Create, OciRuntime};
use crate::sys;

/// What the shim is told to run.
#[derive(Debug, Clone)]
pub struct ShimArgs {
    /// The container id for the runtime.
    pub id: String,
    /// The bundle (holds `config.json`; the shim writes its records there).
    pub bundle: PathBuf,
    /// The container's log file.
    pub log: PathBuf,
    /// The OCI runtime.
    pub runtime: OciRuntime,
    /// The runtime's state directory.
    pub runtime_root: PathBuf,
}

/// Written once the container runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Started {
    /// The container's first process, as the host sees it.
    pub pid: i32,
    /// The shim's own process.
    #[serde(default)]
    pub shim_pid: i32,
    /// When it started (RFC 3339).
    pub started_at: String,
}

/// Written once the container has ended, or could not start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exited {
    /// The exit code (128 + the signal for a killed process).
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Whether the kernel's OOM killer ended it.
    pub oom_killed: bool,
    /// When it ended (RFC 3339).
    pub finished_at: String,
    /// Why it could not be created or started (the runtime's words), if so.
    pub error: Option<String>,
}

/// The file the shim records a start in.
pub const STARTED: &str = "state.json";
/// The file the shim records an exit in.
pub const EXITED: &str = "exit.json";

/// Runs the shim to the end of its container.
pub fn run(args: &ShimArgs) -> std::io::Result<()> {
    let _ = sys::new_session();
    sys::become_subreaper().map_err(std::io::Error::other)?;
    let stdio = Stdio::of(&args.bundle);
    let runtime_log = args.bundle.join("runtime.log");
    let pid_file = args.bundle.join("container.pid");
    // The container's output: pipes, or a terminal whose master end the runtime sends to
    // the console socket.
    let mut outputs: Vec<(&str, Box<dyn Read + Send>)> = Vec::new();
    let mut input: Option<fs::File> = None;
    let console =
        if stdio.tty { Some(Console::listen(&args.bundle, "console.sock")?) } else { None };
    let io = match &console {
        Some(console) => ContainerIo::Console(console.path.clone()),
        None => {
            let (stdout_read, stdout_write) = std::io::pipe()?;
            let (stderr_read, stderr_write) = std::io::pipe()?;
            outputs.push(("stdout", Box::new(stdout_read)));
            outputs.push(("stderr", Box::new(stderr_read)));
            let stdin = if stdio.stdin {
                let (stdin_read, stdin_write) = std::io::pipe()?;
                input = Some(fs::File::from(OwnedFd::from(stdin_write)));
                Some(OwnedFd::from(stdin_read))
            } else {
                None
            };
            ContainerIo::Pipes {
                stdin,
                stdout: OwnedFd::from(stdout_write),
                stderr: OwnedFd::from(stderr_write),
            }
        }
    };
    let failed = |message: String| {
        record(
            &args.bundle.join(EXITED),
            &Exited {
                exit_code: 128,
                finished_at: now(),
                error: Some(message),
                ..Exited::default()
            },
        )
    };
    let root = args.runtime_root.as_path();
    // The request (and with it the shim's ends of the container's pipes) is dropped once
    // the container is created: the shim keeps no end the container writes to.
    let created = args.runtime.create(Create {
        root,
        id: &args.id,
        bundle: &args.bundle,
        pid_file: &pid_file,
        log: &runtime_log,
        io,
    });
    let pid = match created {
        Ok(pid) => pid,
        Err(message) => return failed(message),
    };
    let mut terminal = None;
    if let Some(console) = console {
        match console.receive() {
            Ok(master) => {
                let master = Arc::new(master);
                let reader = fs::File::from(master.try_clone()?);
                if stdio.stdin {
                    input = Some(fs::File::from(master.try_clone()?));
                }
                outputs.push(("stdout", Box::new(reader)));
                terminal = Some(master);
            }
            Err(e) => {
                args.runtime.delete(root, &args.id);
                return failed(format!("no terminal from the runtime: {e}"));
            }
        }
    }
    let attachments = attach::Attachments::serve(&args.bundle, input, stdio.stdin_once, terminal)?;
    let log = Arc::new(Mutex::new(LogFile::open(&args.log)?));
    let copiers: Vec<_> = outputs
        .into_iter()
        .map(|(stream, pipe)| {
            let (log, attachments) = (Arc::clone(&log), attachments.clone());
            std::thread::spawn(move || copy_to_log(pipe, stream, &log, &attachments))
        })
        .collect();
    if let Err(message) = args.runtime.start(root, &args.id, &runtime_log) {
        sys::kill(pid, nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::other)?;
        args.runtime.delete(root, &args.id);
        return failed(message);
    }
    record(
        &args.bundle.join(STARTED),
        &Started { pid, shim_pid: std::process::id() as i32, started_at: now() },
    )?;
    let exit = loop {
        match sys::wait_any() {
            Some((reaped, exit)) if reaped == pid => break exit,
            Some(_) => continue,
            None => break sys::Exit::Code(255),
        }
    };
    // The output written just before the exit reaches the log before the exit is recorded,
    // unless a process the container left behind holds its pipes open.
    let deadline = Instant::now() + Duration::from_secs(2);
    for copier in copiers {
        while !copier.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let oom_killed = oom_kills(&args.bundle) > 0;
    let (exit_code, signal) = match exit {
        sys::Exit::Code(code) => (code, None),
        sys::Exit::Signal(signal) => (128 + signal, Some(signal)),
    };
    args.runtime.delete(root, &args.id);
    record(
        &args.bundle.join(EXITED),
        &Exited { exit_code, signal, oom_killed, finished_at: now(), error: None },
    )
}

/// Copies one of the container's streams into its log, a CRI log line per line of output
/// (`TIME STREAM F|P TEXT`; lines over 16 KiB are split into partial ones).
/// The size past which a container's log file is rotated (upstream's
/// `containerLogMaxSize` default: 10 MiB); one rotated file is kept (`N.log.1`).
pub const LOG_MAX_BYTES: u64 = 10 << 20;

/// A container's log file, rotated by size.
struct LogFile {
    path: PathBuf,
    file: fs::File,
    size: u64,
}

impl LogFile {
    fn open(path: &Path) -> std::io::Result<LogFile> {
        let file = fs::OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile { path: path.to_path_buf(), file, size })
    }

    fn write(&mut self, entry: &[u8]) {
        if self.size + entry.len() as u64 > LOG_MAX_BYTES && self.size > 0 {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            if fs::rename(&self.path, &rotated).is_ok()
                && let Ok(fresh) = LogFile::open(&self.path)
            {
                *self = fresh;
            }
        }
        if self.file.write_all(entry).is_ok() {
            self.size += entry.len() as u64;
        }
    }
}

fn copy_to_log(
    pipe: impl Read,
    stream: &str,
    log: &Mutex<LogFile>,
    attachments: &attach::Attachments,
) {
    const MAX_LINE: usize = 16 * 1024;
    let tee = Tee { inner: pipe, stream, attachments };
    let mut reader = BufReader::with_capacity(MAX_LINE, tee);
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let mut partial = true;
        while line.len() < MAX_LINE {
            let Ok(buffer) = reader.fill_buf() else { return };
            if buffer.is_empty() {
                break;
            }
            let room = MAX_LINE - line.len();
            let take = buffer.len().min(room);
            if let Some(newline) = buffer[..take].iter().position(|b| *b == b'\n') {
                line.extend_from_slice(&buffer[..newline]);
                reader.consume(newline + 1);
                partial = false;
                break;
            }
            line.extend_from_slice(&buffer[..take]);
            reader.consume(take);
        }
        if line.is_empty() && partial {
            return;
        }
        let mut entry =
            format!("{} {stream} {} ", now_nanos(), if partial { "P" } else { "F" }).into_bytes();
        entry.extend_from_slice(&line);
        entry.push(b'\n');
        if let Ok(mut file) = log.lock() {
            file.write(&entry);
        }
    }
}

/// A reader that also passes what it reads to the attached clients.
struct Tee<'a, R> {
    inner: R,
    stream: &'a str,
    attachments: &'a attach::Attachments,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buffer)?;
        if n > 0 {
            self.attachments.broadcast(self.stream, &buffer[..n]);
        }
        Ok(n)
    }
}

/// How the container's input and output are set up, from its bundle's `config.json`.
#[derive(Debug, Clone, Copy, Default)]
struct Stdio {
    tty: bool,
    stdin: bool,
    stdin_once: bool,
}

impl Stdio {
    fn of(bundle: &Path) -> Stdio {
        let config: serde_json::Value = fs::read(bundle.join("config.json"))
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_default();
        let stdin = config["annotations"][super::spec::STDIN_ANNOTATION].as_str();
        Stdio {
            tty: config["process"]["terminal"] == true,
            stdin: stdin.is_some(),
            stdin_once: stdin == Some("once"),
        }
    }
}

/// How many times the OOM killer acted in the container's memory cgroup (v1 or v2).
fn oom_kills(bundle: &Path) -> u64 {
    let Some(path) = fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|c| {
            c["linux"]["cgroupsPath"].as_str().map(|p| p.trim_start_matches('/').to_string())
        })
    else {
        return 0;
    };
    let counters = [
        (format!("/sys/fs/cgroup/memory/{path}/memory.oom_control"), "oom_kill "),
        (format!("/sys/fs/cgroup/{path}/memory.events"), "oom_kill "),
    ];
    counters
        .iter()
        .filter_map(|(file, key)| {
            let text = fs::read_to_string(file).ok()?;
            text.lines().find_map(|l| l.strip_prefix(key)).and_then(|n| n.trim().parse().ok())
        })
        .max()
        .unwrap_or(0)
}

/// Writes `value` to `path` atomically (a reader sees all of it or nothing), then says so on
/// stdout: the agent waiting for a container to start reads that line rather than polling
/// the bundle. Nobody may be reading any more (the agent restarted, or took its answer):
/// that is no failure.
fn record<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    fs::write(&partial, serde_json::to_vec(value)?)?;
    fs::rename(&partial, path)?;
    let _ = std::io::stdout().write_all(b"\n");
    Ok(())
}

/// Now, in RFC 3339 with seconds (as the API's times).
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn now_nanos() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
