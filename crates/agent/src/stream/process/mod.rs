//! Exec and attach sessions: a process's standard streams, a terminal's size and the
//! process's end, bound to a client's SPDY streams (`spdy.rs`) or WebSocket channels
//! (`websocket.rs`); both end in the same `ProcessStreams`.

mod spdy;
mod websocket;

pub use spdy::over_spdy;
pub use websocket::{channel, over_websocket};

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::{Activity, StreamRequest};

/// Chunks in flight between a process and its client, per stream.
const BACKLOG: usize = 4;

/// The size of a terminal, as clients send it (`{"Width":80,"Height":24}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TerminalSize {
    /// Columns.
    #[serde(rename = "Width")]
    pub width: u16,
    /// Rows.
    #[serde(rename = "Height")]
    pub height: u16,
}

/// How a session's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It exited with this code (0: success).
    Exited(i32),
    /// It could not be run or reached: what went wrong, as the client is told (upstream's
    /// "error executing command in container: ..." or "error attaching to container: ...").
    Failed(String),
}

impl Outcome {
    /// The `Status` the v4 and v5 protocols report on the error stream, as upstream writes it.
    pub fn status(&self, command: &[String]) -> serde_json::Value {
        match self {
            Outcome::Exited(0) => json!({"metadata": {}, "status": "Success"}),
            Outcome::Exited(code) => json!({
                "metadata": {},
                "status": "Failure",
                "message": format!(
                    "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                    command.join(" ")
                ),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            Outcome::Failed(message) => {
                json!({
                    "metadata": {},
                    "status": "Failure",
                    "message": format!("Internal error occurred: {message}"),
                    "reason": "InternalError",
                    "details": {"causes": [{"message": message}]},
                    "code": 500,
                })
            }
        }
    }

    /// What the error stream carries in `version`: the `Status` (v4 and later), or the
    /// failure's message alone (earlier; nothing on success).
    fn report(&self, version: Version, command: &[String]) -> Vec<u8> {
        let status = self.status(command);
        if version >= Version::V4 {
            serde_json::to_vec(&status).unwrap_or_default()
        } else if status["status"] == "Success" {
            Vec::new()
        } else {
            status["message"].as_str().unwrap_or_default().as_bytes().to_vec()
        }
    }
}

/// The channel protocol versions, by their SPDY `X-Stream-Protocol-Version` and WebSocket
/// subprotocol names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// `channel.k8s.io`.
    V1,
    /// `v2.channel.k8s.io`: an error stream.
    V2,
    /// `v3.channel.k8s.io`: terminal resizing.
    V3,
    /// `v4.channel.k8s.io`: the exit code in a `Status`.
    V4,
    /// `v5.channel.k8s.io`: the client can close its input (WebSocket only).
    V5,
}

impl Version {
    /// Every version, newest first.
    pub const ALL: [Version; 5] = [Version::V5, Version::V4, Version::V3, Version::V2, Version::V1];

    /// The protocol's name.
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "channel.k8s.io",
            Version::V2 => "v2.channel.k8s.io",
            Version::V3 => "v3.channel.k8s.io",
            Version::V4 => "v4.channel.k8s.io",
            Version::V5 => "v5.channel.k8s.io",
        }
    }

    /// The version of `name`.
    pub fn from_name(name: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.name() == name.trim())
    }
}

/// A session's streams as the process side holds them.
pub struct ProcessStreams {
    /// The client's input, if it sends any; ends when the client closes it.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    /// The process's output, if the client wants it.
    pub stdout: Option<mpsc::Sender<Bytes>>,
    /// The process's errors, if the client wants them.
    pub stderr: Option<mpsc::Sender<Bytes>>,
    /// The terminal's size as the client changes it (with a terminal only).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    /// How the process ended; the client is told once stdout and stderr are closed.
    pub outcome: oneshot::Sender<Outcome>,
    /// Touched whenever bytes move (for the idle timeout).
    pub activity: Arc<Activity>,
}

/// The client's side of a session: what each transport turns into its protocol.
struct ClientSide {
    stdin: Option<mpsc::Sender<Bytes>>,
    stdout: Option<mpsc::Receiver<Bytes>>,
    stderr: Option<mpsc::Receiver<Bytes>>,
    resize: Option<mpsc::Sender<TerminalSize>>,
    outcome: oneshot::Receiver<Outcome>,
}

fn split<T>(
    pair: Option<(mpsc::Sender<T>, mpsc::Receiver<T>)>,
) -> (Option<mpsc::Sender<T>>, Option<mpsc::Receiver<T>>) {
    pair.map_or((None, None), |(tx, rx)| (Some(tx), Some(rx)))
}

fn session(
    request: &StreamRequest,
    resizable: bool,
    activity: Arc<Activity>,
) -> (ProcessStreams, ClientSide) {
    let pipe = |on: bool| on.then(|| mpsc::channel(BACKLOG));
    let (stdin_tx, stdin_rx) = split(pipe(request.stdin));
    let (stdout_tx, stdout_rx) = split(pipe(request.stdout));
    let (stderr_tx, stderr_rx) = split(pipe(request.stderr));
    let (resize_tx, resize_rx) = split((request.tty && resizable).then(|| mpsc::channel(BACKLOG)));
    let (outcome_tx, outcome_rx) = oneshot::channel();
    (
        ProcessStreams {
            stdin: stdin_rx,
            stdout: stdout_tx,
            stderr: stderr_tx,
            resize: resize_rx,
            outcome: outcome_tx,
            activity,
        },
        ClientSide {
            stdin: stdin_tx,
            stdout: stdout_rx,
            stderr: stderr_rx,
            resize: resize_tx,
            outcome: outcome_rx,
        },
    )
}

/// Reads terminal sizes from a stream of JSON objects, however the bytes are cut.
#[derive(Default)]
struct SizeDecoder(Vec<u8>);

impl SizeDecoder {
    fn push(&mut self, bytes: &[u8]) -> Vec<TerminalSize> {
        self.0.extend_from_slice(bytes);
        let mut sizes = Vec::new();
        let mut stream = serde_json::Deserializer::from_slice(&self.0).into_iter::<TerminalSize>();
        let mut used = 0;
        loop {
            match stream.next() {
                Some(Ok(size)) => {
                    sizes.push(size);
                    used = stream.byte_offset();
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    // Not a size: dropped, as upstream logs and ignores it.
                    used = self.0.len();
                    break;
                }
                None => {
                    used = stream.byte_offset();
                    break;
                }
            }
        }
        self.0.drain(..used);
        if self.0.len() > 4096 {
            self.0.clear();
        }
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_code_is_reported_as_upstream_does() {
        let command = vec!["sh".to_string(), "-c".to_string(), "exit 7".to_string()];
        let status = Outcome::Exited(7).status(&command);
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0], json!({"reason": "ExitCode", "message": "7"}));
        assert_eq!(
            status["message"],
            "command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7"
        );
        assert_eq!(
            Outcome::Exited(0).report(Version::V4, &command),
            br#"{"metadata":{},"status":"Success"}"#
        );
        assert!(Outcome::Exited(0).report(Version::V2, &command).is_empty());
        assert!(
            Outcome::Exited(7).report(Version::V2, &command).starts_with(b"command terminated")
        );
        assert_eq!(Outcome::Failed("no".into()).status(&command)["code"], 500);
    }

    #[test]
    fn terminal_sizes_are_read_however_they_are_cut() {
        let mut decoder = SizeDecoder::default();
        assert_eq!(decoder.push(br#"{"Width":80,"#), vec![]);
        assert_eq!(
            decoder.push(b"\"Height\":24}\n{\"Width\":100,\"Height\":40}\n"),
            vec![TerminalSize { width: 80, height: 24 }, TerminalSize { width: 100, height: 40 }]
        );
        assert_eq!(decoder.push(b"garbage"), vec![]);
        assert_eq!(
            decoder.push(br#"{"Width":1,"Height":2}"#),
            vec![TerminalSize { width: 1, height: 2 }]
        );
    }

    #[test]
    fn versions_are_named_as_upstream() {
        assert_eq!(Version::from_name(" v4.channel.k8s.io"), Some(Version::V4));
        assert_eq!(Version::from_name("base64.channel.k8s.io"), None);
        assert!(Version::V5 > Version::V4);
    }
}
