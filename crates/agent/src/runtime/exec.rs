//! A process started in a running container (`kubectl exec`) through the OCI runtime's
//! `exec`, its standard streams bound to a session: pipes, or a terminal whose master end
//! the runtime hands over on a console socket.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{Runtime, oci};
use crate::stream::{Activity, Outcome, ProcessStreams, StreamRequest, TerminalSize};
use crate::sys;

/// How long output may still come after the process ended, while none moves.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

impl Runtime {
    /// Runs `request.command` in container `id` (whose bundle is `bundle`) with the
    /// session's streams, and reports how it ended.
    pub async fn exec(
        &self,
        id: &str,
        bundle: &Path,
        request: &StreamRequest,
        streams: ProcessStreams,
    ) {
        let ProcessStreams { stdin, stdout, stderr, resize, outcome, activity } = streams;
        let log = bundle.join(format!("exec-{}.log", random_suffix()));
        let ended =
            self.run_exec(id, request, &log, (stdin, stdout, stderr, resize), &activity).await;
        let _ = std::fs::remove_file(&log);
        let ended = match ended {
            Outcome::Failed(why) => {
                Outcome::Failed(format!("error executing command in container: {why}"))
            }
            exited => exited,
        };
        let _ = outcome.send(ended);
    }

    async fn run_exec(
        &self,
        id: &str,
        request: &StreamRequest,
        log: &Path,
        (stdin, stdout, stderr, resize): Parts,
        activity: &Arc<Activity>,
    ) -> Outcome {
        let mut command = self.runtime.command(&self.root);
        command.arg("--log").arg(log).arg("--log-format").arg("json");
        // With a terminal the runtime copies between the container's terminal and its own,
        // which is one this side holds the master end of (a runtime in the foreground
        // takes no console socket).
        let terminal = if request.tty {
            match sys::open_terminal(0, 0) {
                Ok(pair) => Some(pair),
                Err(e) => return Outcome::Failed(format!("cannot open a terminal: {e}")),
            }
        } else {
            None
        };
        command.arg("exec");
        if terminal.is_some() {
            command.arg("--tty");
        }
        command.arg(id).args(&request.command);
        let mut command = tokio::process::Command::from(command);
        let stdio = |on: bool| -> std::io::Result<Stdio> {
            match &terminal {
                Some((_, slave)) => Ok(Stdio::from(slave.try_clone()?)),
                None if on => Ok(Stdio::piped()),
                None => Ok(Stdio::null()),
            }
        };
        let wired = (|| -> std::io::Result<()> {
            command.stdin(stdio(stdin.is_some())?);
            command.stdout(stdio(stdout.is_some())?);
            command.stderr(stdio(stderr.is_some())?);
            Ok(())
        })();
        if let Err(e) = wired {
            return Outcome::Failed(format!("cannot set up the process's streams: {e}"));
        }
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Outcome::Failed(format!("cannot run {}: {e}", self.runtime.name()));
            }
        };
        // The runtime holds the slave end now: the master reads the end once it is gone.
        let master = terminal.map(|(master, _slave)| Arc::new(master));
        drop(command);
        let mut pumps = Vec::new();
        if let Some(master) = master {
            let runtime_pid = child.id();
            let wired = (|| -> std::io::Result<()> {
                if let Some(stdout) = stdout {
                    pumps.push(terminal_to(&master, stdout, Arc::clone(activity))?);
                }
                if let Some(stdin) = stdin {
                    to_terminal(&master, stdin, Arc::clone(activity))?;
                }
                Ok(())
            })();
            if let Err(e) = wired {
                let _ = child.kill().await;
                return Outcome::Failed(format!("cannot use the terminal: {e}"));
            }
            if let Some(resize) = resize {
                tokio::spawn(resize_terminal(master, resize, runtime_pid));
            }
        } else {
            if let (Some(input), Some(pipe)) = (stdin, child.stdin.take()) {
                tokio::spawn(to_pipe(input, pipe, Arc::clone(activity)));
            }
            if let (Some(out), Some(pipe)) = (stdout, child.stdout.take()) {
                pumps.push(tokio::spawn(pipe_to(pipe, out, Arc::clone(activity))));
            }
            if let (Some(out), Some(pipe)) = (stderr, child.stderr.take()) {
                pumps.push(tokio::spawn(pipe_to(pipe, out, Arc::clone(activity))));
            }
        }
        let status = child.wait().await;
        for pump in pumps {
            drain(pump, activity).await;
        }
        match status {
            Ok(status) => match (status.code(), oci::logged_error(log)) {
                // The runtime's own failure (it exits 255 and says why).
                (Some(255), Some(why)) => Outcome::Failed(why),
                (Some(code), _) => Outcome::Exited(code),
                (None, _) => {
                    use std::os::unix::process::ExitStatusExt;
                    Outcome::Exited(128 + status.signal().unwrap_or(9))
                }
            },
            Err(e) => Outcome::Failed(e.to_string()),
        }
    }
}

type Parts = (
    Option<mpsc::Receiver<Bytes>>,
    Option<mpsc::Sender<Bytes>>,
    Option<mpsc::Sender<Bytes>>,
    Option<mpsc::Receiver<TerminalSize>>,
);

/// Waits for an output pump to pass on what the process wrote before it ended; a process
/// left behind that holds the stream open without writing does not keep the session.
async fn drain(mut pump: tokio::task::JoinHandle<()>, activity: &Activity) {
    loop {
        tokio::select! {
            _ = &mut pump => return,
            () = tokio::time::sleep(DRAIN_GRACE) => {
                if activity.idle() >= DRAIN_GRACE {
                    pump.abort();
                    return;
                }
            }
        }
    }
}

/// Copies a session's input into a pipe until either ends (the pipe then closes: the
/// process reads its end).
async fn to_pipe(
    mut input: mpsc::Receiver<Bytes>,
    mut pipe: impl AsyncWrite + Unpin,
    activity: Arc<Activity>,
) {
    while let Some(bytes) = input.recv().await {
        activity.touch();
        if pipe.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

/// Copies a pipe into a session's stream until either ends.
async fn pipe_to(pipe: impl AsyncRead + Unpin, out: mpsc::Sender<Bytes>, activity: Arc<Activity>) {
    let _ = crate::stream::copy_chunks(pipe, |bytes| {
        activity.touch();
        out.send(bytes)
    })
    .await;
}

/// Copies a terminal's output into a session's stream (on a thread: a terminal is read
/// blocking) until the terminal closes or the client goes.
fn terminal_to(
    master: &OwnedFd,
    out: mpsc::Sender<Bytes>,
    activity: Arc<Activity>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut terminal = std::fs::File::from(master.try_clone()?);
    Ok(tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match terminal.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    activity.touch();
                    if out.blocking_send(Bytes::copy_from_slice(&buffer[..n])).is_err() {
                        return;
                    }
                }
            }
        }
    }))
}

/// Copies a session's input into a terminal (on a thread) until either ends.
fn to_terminal(
    master: &OwnedFd,
    mut input: mpsc::Receiver<Bytes>,
    activity: Arc<Activity>,
) -> std::io::Result<()> {
    let mut terminal = std::fs::File::from(master.try_clone()?);
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        while let Some(bytes) = input.blocking_recv() {
            activity.touch();
            if terminal.write_all(&bytes).is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Applies the client's terminal sizes to the runtime's terminal, and tells the runtime
/// (`SIGWINCH`), which passes the size on to the container's.
async fn resize_terminal(
    master: Arc<OwnedFd>,
    mut sizes: mpsc::Receiver<TerminalSize>,
    runtime_pid: Option<u32>,
) {
    while let Some(size) = sizes.recv().await {
        let _ = sys::set_terminal_size(master.as_ref(), size.height, size.width);
        if let Some(pid) = runtime_pid {
            let _ = sys::kill(pid as i32, nix::sys::signal::Signal::SIGWINCH);
        }
    }
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
