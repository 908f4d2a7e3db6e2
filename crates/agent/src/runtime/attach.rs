//! Attaching to a container's first process (`kubectl attach`). The shim holds the
//! container's input (a pipe, or a terminal's master end) and copies its output to every
//! attached client as well as to the log; clients reach it on a Unix socket in the bundle,
//! `attach.sock`, through a tiny framed protocol: a kind byte, a 32-bit big-endian length,
//! the bytes.
//!
//! This module has both ends: `Runtime::attach` (async, in the agent) and `Attachments`
//! (threads, in the shim).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Runtime;
use crate::stream::{Outcome, ProcessStreams, StreamRequest};

/// The socket's name in the bundle.
pub const SOCKET: &str = "attach.sock";

/// Frame kinds.
mod kind {
    /// Client to shim: input bytes.
    pub const STDIN: u8 = 0;
    /// Shim to client: output bytes.
    pub const STDOUT: u8 = 1;
    /// Shim to client: error bytes.
    pub const STDERR: u8 = 2;
    /// Client to shim: the client closed its input.
    pub const CLOSE_STDIN: u8 = 3;
    /// Client to shim: the terminal's size, rows and columns (16 bits each).
    pub const RESIZE: u8 = 4;
}

/// The largest frame either end accepts.
const MAX_FRAME: usize = 1 << 20;

fn frame(kind: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + bytes.len());
    out.push(kind);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// A path to `name` in `dir` short enough for a Unix socket, whatever `dir`'s length:
/// through the open directory's descriptor.
fn socket_path(dir: &std::fs::File) -> String {
    format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd())
}

impl Runtime {
    /// Attaches a session to the container whose bundle is `bundle`, until the container
    /// ends or the client goes.
    pub async fn attach(&self, bundle: &Path, request: &StreamRequest, streams: ProcessStreams) {
        let ProcessStreams { stdin, stdout, stderr, resize, outcome, activity } = streams;
        let connected = match std::fs::File::open(bundle) {
            Ok(dir) => tokio::net::UnixStream::connect(socket_path(&dir)).await,
            Err(e) => Err(e),
        };
        let socket = match connected {
            Ok(socket) => socket,
            Err(e) => {
                let _ = outcome.send(Outcome::Failed(format!("error attaching to container: {e}")));
                return;
            }
        };
        let (mut from_shim, mut to_shim) = socket.into_split();
        let (frames, mut outgoing) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        if let Some(mut input) = stdin.filter(|_| request.stdin) {
            let frames = frames.clone();
            let activity = Arc::clone(&activity);
            tokio::spawn(async move {
                while let Some(bytes) = input.recv().await {
                    activity.touch();
                    if frames.send(frame(kind::STDIN, &bytes)).await.is_err() {
                        return;
                    }
                }
                let _ = frames.send(frame(kind::CLOSE_STDIN, &[])).await;
            });
        }
        if let Some(mut sizes) = resize {
            let frames = frames.clone();
            tokio::spawn(async move {
                while let Some(size) = sizes.recv().await {
                    let mut payload = size.height.to_be_bytes().to_vec();
                    payload.extend_from_slice(&size.width.to_be_bytes());
                    if frames.send(frame(kind::RESIZE, &payload)).await.is_err() {
                        return;
                    }
                }
            });
        }
        drop(frames);
        let writer = tokio::spawn(async move {
            while let Some(bytes) = outgoing.recv().await {
                if to_shim.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let relay = async {
            loop {
                let mut head = [0u8; 5];
                if from_shim.read_exact(&mut head).await.is_err() {
                    return;
                }
                let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
                if len > MAX_FRAME {
                    return;
                }
                let mut bytes = vec![0u8; len];
                if from_shim.read_exact(&mut bytes).await.is_err() {
                    return;
                }
                activity.touch();
                let out = match head[0] {
                    kind::STDOUT => stdout.as_ref(),
                    kind::STDERR => stderr.as_ref().or(stdout.as_ref().filter(|_| request.tty)),
                    _ => None,
                };
                if let Some(out) = out
                    && out.send(Bytes::from(bytes)).await.is_err()
                {
                    return;
                }
            }
        };
        let client_gone = async {
            match (&stdout, &stderr) {
                (Some(out), _) | (None, Some(out)) => out.closed().await,
                (None, None) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = relay => {}
            () = client_gone => {}
        }
        writer.abort();
        drop((stdout, stderr));
        let _ = outcome.send(Outcome::Exited(0));
    }
}

/// The shim's end: the clients attached to its container.
#[derive(Clone)]
pub struct Attachments {
    clients: Arc<Mutex<Vec<UnixStream>>>,
    input: Arc<Mutex<Option<std::fs::File>>>,
    once: bool,
    terminal: Option<Arc<std::os::fd::OwnedFd>>,
}

impl Attachments {
    /// Serves attach on `bundle`'s socket: `input` is where clients' bytes go (the
    /// container's stdin pipe or terminal), closed after the first client if `once`
    /// (`stdinOnce`); `terminal` is the master end, resized by clients.
    pub fn serve(
        bundle: &Path,
        input: Option<std::fs::File>,
        once: bool,
        terminal: Option<Arc<std::os::fd::OwnedFd>>,
    ) -> std::io::Result<Attachments> {
        let dir = std::fs::File::open(bundle)?;
        let path = socket_path(&dir);
        let _ = std::fs::remove_file(bundle.join(SOCKET));
        let listener = UnixListener::bind(&path)?;
        let attachments = Attachments {
            clients: Arc::new(Mutex::new(Vec::new())),
            input: Arc::new(Mutex::new(input)),
            once,
            terminal,
        };
        let shared = attachments.clone();
        std::thread::spawn(move || {
            let _dir = dir;
            for client in listener.incoming() {
                let Ok(client) = client else {
                    // Out of descriptors or the like: wait instead of spinning.
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                // Only the node's root (the agent) attaches.
                let root =
                    rustix::net::sockopt::socket_peercred(&client).is_ok_and(|c| c.uid.is_root());
                if !root {
                    continue;
                }
                let _ = client.set_write_timeout(Some(Duration::from_secs(1)));
                if let Ok(writer) = client.try_clone()
                    && let Ok(mut clients) = shared.clients.lock()
                {
                    clients.push(writer);
                }
                let session = shared.clone();
                std::thread::spawn(move || session.serve_client(client));
            }
        });
        Ok(attachments)
    }

    fn serve_client(&self, mut client: UnixStream) {
        let mut had_stdin = false;
        loop {
            let mut head = [0u8; 5];
            if client.read_exact(&mut head).is_err() {
                break;
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            if len > MAX_FRAME {
                break;
            }
            let mut bytes = vec![0u8; len];
            if client.read_exact(&mut bytes).is_err() {
                break;
            }
            match head[0] {
                kind::STDIN => {
                    had_stdin = true;
                    if let Ok(mut input) = self.input.lock()
                        && let Some(file) = input.as_mut()
                    {
                        let _ = file.write_all(&bytes);
                    }
                }
                kind::CLOSE_STDIN => {
                    had_stdin = true;
                    break;
                }
                kind::RESIZE if bytes.len() == 4 => {
                    if let Some(terminal) = &self.terminal {
                        let rows = u16::from_be_bytes([bytes[0], bytes[1]]);
                        let columns = u16::from_be_bytes([bytes[2], bytes[3]]);
                        let _ = crate::sys::set_terminal_size(terminal.as_ref(), rows, columns);
                    }
                }
                _ => {}
            }
        }
        if self.once
            && had_stdin
            && let Ok(mut input) = self.input.lock()
        {
            // `stdinOnce`: the container's input ends with its first client.
            input.take();
        }
    }

    /// Copies output the container wrote on `stream` (`stdout` or `stderr`) to every
    /// attached client; a client that does not take it within a second is dropped.
    pub fn broadcast(&self, stream: &str, bytes: &[u8]) {
        let Ok(mut clients) = self.clients.lock() else { return };
        if clients.is_empty() {
            return;
        }
        let kind = if stream == "stderr" { kind::STDERR } else { kind::STDOUT };
        let framed = frame(kind, bytes);
        // A client that cannot take it is cut off whole (its agent sees the end), never
        // left with half a frame.
        clients.retain_mut(|client| {
            let taken = client.write_all(&framed).is_ok();
            if !taken {
                let _ = client.shutdown(std::net::Shutdown::Both);
            }
            taken
        });
    }
}
