//! [`Containers`] that run nothing: each started container "runs" until a test ends it or a
//! signal does (any signal ends it, as a process that exits on SIGTERM, unless the test
//! makes it ignore that signal), its shim's records written into its bundle as the shim
//! writes them, and every call recorded. Their pids are above any kernel's `pid_max`, so
//! that code reading the records directly never signals a real process.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures::future::BoxFuture;
use nix::sys::signal::Signal;

use super::{Containers, Exited, Observed, Started, shim};

/// One call, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// A container started, by its id.
    Start(String),
    /// A signal sent to the running container of a bundle.
    Signal(PathBuf, Signal),
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<Call>,
    runs: HashMap<PathBuf, Observed>,
    /// Why the next starts fail, if they do.
    refusal: Option<String>,
    /// Signals the containers live through.
    ignored: BTreeSet<i32>,
    next_pid: i32,
}

/// Containers as a test drives them.
#[derive(Debug, Default)]
pub struct RecordingContainers {
    state: Mutex<State>,
}

impl RecordingContainers {
    /// No containers yet.
    pub fn new() -> RecordingContainers {
        RecordingContainers::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Makes the next starts fail with `message`, as a runtime that cannot create the
    /// container (`None`: they succeed again).
    pub fn refuse(&self, message: Option<&str>) {
        self.state().refusal = message.map(str::to_string);
    }

    /// Makes the containers live through `signal`.
    pub fn ignore(&self, signal: Signal) {
        self.state().ignored.insert(signal as i32);
    }

    /// Ends the container of `bundle` with `code`, as if its process exited.
    pub fn exit(&self, bundle: &Path, code: i32) {
        self.end(bundle, Exited { exit_code: code, finished_at: shim::now(), ..Exited::default() });
    }

    /// The bundles of the containers that run.
    pub fn running(&self) -> Vec<PathBuf> {
        let state = self.state();
        let mut running: Vec<PathBuf> = state
            .runs
            .iter()
            .filter(|(_, o)| matches!(o, Observed::Running(_)))
            .map(|(b, _)| b.clone())
            .collect();
        running.sort();
        running
    }

    fn end(&self, bundle: &Path, exited: Exited) {
        record(bundle, shim::EXITED, &exited);
        self.state().runs.insert(bundle.to_path_buf(), Observed::Exited(exited));
    }
}

/// Writes a record where the shim writes it.
fn record<T: serde::Serialize>(bundle: &Path, name: &str, value: &T) {
    let _ = std::fs::write(bundle.join(name), serde_json::to_vec(value).unwrap_or_default());
}

impl Containers for RecordingContainers {
    fn start<'a>(
        &'a self,
        id: &'a str,
        bundle: &'a Path,
        _log: &'a Path,
    ) -> BoxFuture<'a, std::io::Result<Observed>> {
        let observed = {
            let mut state = self.state();
            state.calls.push(Call::Start(id.to_string()));
            match state.refusal.clone() {
                Some(message) => Observed::Exited(Exited {
                    exit_code: 128,
                    error: Some(message),
                    finished_at: shim::now(),
                    ..Exited::default()
                }),
                None => {
                    state.next_pid += 1;
                    let pid = (1 << 23) + state.next_pid;
                    Observed::Running(Started { pid, shim_pid: pid, started_at: shim::now() })
                }
            }
        };
        match &observed {
            Observed::Running(started) => record(bundle, shim::STARTED, started),
            Observed::Exited(exited) => record(bundle, shim::EXITED, exited),
            Observed::Creating => {}
        }
        self.state().runs.insert(bundle.to_path_buf(), observed.clone());
        Box::pin(async move { Ok(observed) })
    }

    fn observe(&self, bundle: &Path) -> Observed {
        self.state().runs.get(bundle).cloned().unwrap_or(Observed::Creating)
    }

    fn signal(&self, bundle: &Path, signal: Signal) {
        let lives = {
            let mut state = self.state();
            if !matches!(state.runs.get(bundle), Some(Observed::Running(_))) {
                // As the shims' runtime: only a running container is signalled.
                return;
            }
            state.calls.push(Call::Signal(bundle.to_path_buf(), signal));
            signal != Signal::SIGKILL && state.ignored.contains(&(signal as i32))
        };
        if !lives {
            let number = signal as i32;
            self.end(
                bundle,
                Exited {
                    exit_code: 128 + number,
                    signal: Some(number),
                    finished_at: shim::now(),
                    ..Exited::default()
                },
            );
        }
    }
}
