//! A process started in a running container (`kubectl exec`) through the OCI runtime's
//! `exec`, its standard streams bound to a session: pipes, or a terminal whose master end
//! the runtime hands over on a console socket.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{Runtime, shim};
use crate::stream::{Activity, Outcome, ProcessStreams, StreamRequest, TerminalSize};
use crate::sys;

/// How long output may still come after the process ended, while none moves.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

impl Runtime {
    /// Runs `request.command` in container `id` with the session's streams, and reports how
    /// it ended.
    pub async fn exec(&self, id: &str, request: &StreamRequest, streams: ProcessStreams) {
        let ProcessStreams { stdin, stdout, stderr, resize, outcome, activity } = streams;
        let scratch = std::env::temp_dir();
        let token = format!("krust-exec-{}-{}", std::process::id(), random_suffix());
        let log = scratch.join(format!("{token}.log"));
        let console = scratch.join(format!("{token}.sock"));
        let ended = self
            .run_exec(id, request, &log, &console, (stdin, stdout, stderr, resize), &activity)
            .await;
        let _ = std::fs::remove_file(&log);
        let _ = outcome.send(ended);
    }

    async fn run_exec(
        &self,
        id: &str,
        request: &StreamRequest,
        log: &Path,
        console: &Path,
        (stdin, stdout, stderr, resize): Parts,
        activity: &Arc<Activity>,
    ) -> Outcome {
        let mut command = tokio::process::Command::new(&self.runtime);
        command
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(log)
            .arg("--log-format")
            .arg("json")
            .arg("exec");
        let socket = if request.tty {
            let _ = std::fs::remove_file(console);
            match tokio::net::UnixListener::bind(console) {
                Ok(listener) => {
                    command.arg("--tty").arg("--console-socket").arg(console);
                    Some(ConsoleSocket { listener, path: console.to_path_buf() })
                }
                Err(e) => return Outcome::Failed(format!("cannot make a console socket: {e}")),
            }
        } else {
            None
        };
        command.arg(id).args(&request.command);
        let piped = |on: bool| if on && !request.tty { Stdio::piped() } else { Stdio::null() };
        command
            .stdin(piped(stdin.is_some()))
            .stdout(piped(stdout.is_some()))
            .stderr(piped(stderr.is_some()));
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Outcome::Failed(format!("cannot run {}: {e}", self.runtime.display()));
            }
        };
        let mut pumps = Vec::new();
        if let Some(socket) = socket {
            let master = tokio::select! {
                master = socket.receive() => master,
                status = child.wait() => Err(std::io::Error::other(format!(
                    "the runtime ended ({}) before it sent the terminal",
                    status.map(|s| s.to_string()).unwrap_or_default()
                ))),
            };
            let master = match master {
                Ok(master) => Arc::new(master),
                Err(e) => {
                    let _ = child.wait().await;
                    return Outcome::Failed(shim::logged_error(log).unwrap_or(e.to_string()));
                }
            };
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
                tokio::spawn(resize_terminal(master, resize));
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
            Ok(status) => match (status.code(), shim::logged_error(log)) {
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

/// The socket the runtime sends a terminal's master end to; removed when dropped.
struct ConsoleSocket {
    listener: tokio::net::UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    async fn receive(&self) -> std::io::Result<OwnedFd> {
        let (stream, _) = self.listener.accept().await?;
        loop {
            stream.readable().await?;
            match sys::receive_fd(&stream) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                received => return received,
            }
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies a session's input into a pipe until either ends (the pipe then closes: the
/// process reads its end).
pub async fn to_pipe(
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
pub async fn pipe_to(
    mut pipe: impl AsyncRead + Unpin,
    out: mpsc::Sender<Bytes>,
    activity: Arc<Activity>,
) {
    let mut buffer = BytesMut::with_capacity(32 * 1024);
    loop {
        buffer.reserve(32 * 1024);
        match pipe.read_buf(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                activity.touch();
                if out.send(buffer.split().freeze()).await.is_err() {
                    return;
                }
            }
        }
    }
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

async fn resize_terminal(master: Arc<OwnedFd>, mut sizes: mpsc::Receiver<TerminalSize>) {
    while let Some(size) = sizes.recv().await {
        let _ = sys::set_terminal_size(master.as_ref(), size.height, size.width);
    }
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
