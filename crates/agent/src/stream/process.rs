//! Exec and attach sessions: a process's standard streams, a terminal's size and the
//! process's end, bound to a client's SPDY streams or WebSocket channels.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::spdy::{self, headers};
use super::{Activity, StreamRequest};
use std::sync::Arc;

/// How long a SPDY client has to open the streams it asked for (upstream's
/// `streamCreationTimeout`).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// It could not be run, in the runtime's words.
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
            Outcome::Failed(why) => {
                let message = format!("error executing command in container: {why}");
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

/// Binds a session to the SPDY streams the client opens on `connection`: it waits (at most
/// `STREAM_CREATION_TIMEOUT`) for the streams `request` implies, then serves them until the
/// process ends or `stop` resolves, and closes the connection. The returned future is the
/// session's life.
pub async fn over_spdy<F>(
    mut connection: spdy::Connection,
    version: Version,
    request: &StreamRequest,
    activity: Arc<Activity>,
    stop: F,
) -> Result<(ProcessStreams, impl Future<Output = ()> + use<F>), String>
where
    F: Future<Output = ()>,
{
    let mut expected = vec!["error"];
    for (on, kind) in
        [(request.stdin, "stdin"), (request.stdout, "stdout"), (request.stderr, "stderr")]
    {
        if on {
            expected.push(kind);
        }
    }
    if request.tty && version >= Version::V3 {
        expected.push("resize");
    }
    let mut streams: Vec<(String, spdy::Stream)> = Vec::new();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    while streams.len() < expected.len() {
        let accepted = tokio::time::timeout_at(deadline, connection.accept()).await;
        let stream = match accepted {
            Ok(Some(stream)) => stream,
            Ok(None) => {
                return Err("the client closed the connection before creating its streams".into());
            }
            Err(_) => {
                connection.close().await;
                return Err("timed out waiting for client to create streams".into());
            }
        };
        let kind = headers::get(&stream.headers, "streamtype").unwrap_or_default().to_string();
        if !expected.contains(&kind.as_str()) {
            let _ = stream.writer.reset().await;
            continue;
        }
        streams.push((kind, stream));
    }
    let (process, client) = session(request, true, activity);
    let mut take =
        |kind: &str| streams.iter().position(|(k, _)| k == kind).map(|i| streams.swap_remove(i).1);
    let (stdin, stdout, stderr) = (take("stdin"), take("stdout"), take("stderr"));
    let (resize, error) = (take("resize"), take("error"));
    let command = request.command.clone();
    let flow = async move {
        let ClientSide { stdin: to_process, stdout: out, stderr: err, resize: sizes, outcome } =
            client;
        if let (Some(mut from_client), Some(to_process)) = (stdin, to_process) {
            tokio::spawn(async move {
                while let Some(bytes) = from_client.incoming.recv().await {
                    if to_process.send(bytes).await.is_err() {
                        break;
                    }
                }
            });
        }
        if let (Some(mut from_client), Some(sizes)) = (resize, sizes) {
            tokio::spawn(async move {
                let mut decoder = SizeDecoder::default();
                while let Some(bytes) = from_client.incoming.recv().await {
                    for size in decoder.push(&bytes) {
                        if sizes.send(size).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
        let relay = |stream: Option<spdy::Stream>, output: Option<mpsc::Receiver<Bytes>>| async move {
            let (Some(stream), Some(mut output)) = (stream, output) else { return };
            while let Some(bytes) = output.recv().await {
                if stream.writer.write(bytes).await.is_err() {
                    return;
                }
            }
            let _ = stream.writer.finish().await;
        };
        tokio::join!(relay(stdout, out), relay(stderr, err));
        let ended = outcome.await.unwrap_or_else(|_| Outcome::Failed("the session ended".into()));
        if let Some(error) = error {
            let report = ended.report(version, &command);
            if !report.is_empty() {
                let _ = error.writer.write(Bytes::from(report)).await;
            }
            let _ = error.writer.finish().await;
        }
    };
    let client_gone = connection.closed();
    let life = async move {
        tokio::select! {
            () = flow => {}
            () = stop => {}
            () = client_gone => {}
        }
        connection.close().await;
    };
    Ok((process, life))
}

/// WebSocket channel numbers.
pub mod channel {
    /// The client's input.
    pub const STDIN: u8 = 0;
    /// The process's output.
    pub const STDOUT: u8 = 1;
    /// The process's errors.
    pub const STDERR: u8 = 2;
    /// How the process ended.
    pub const ERROR: u8 = 3;
    /// Terminal sizes.
    pub const RESIZE: u8 = 4;
    /// v5: `[CLOSE, n]` closes channel `n`.
    pub const CLOSE: u8 = 255;
}

/// Binds a session to a WebSocket speaking channel protocol `version`; the returned future
/// is the session's life, which ends with a close frame once the process ended, or with
/// the connection dropped when `stop` resolves first.
pub fn over_websocket<S, F>(
    socket: WebSocketStream<S>,
    version: Version,
    request: &StreamRequest,
    activity: Arc<Activity>,
    stop: F,
) -> (ProcessStreams, impl Future<Output = ()> + use<S, F>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Future<Output = ()>,
{
    let (process, client) = session(request, version >= Version::V3, activity);
    let command = request.command.clone();
    let flow = async move {
        let ClientSide { stdin, stdout, stderr, resize, outcome } = client;
        let (has_stdout, has_stderr) = (stdout.is_some(), stderr.is_some());
        let (mut sink, mut incoming) = socket.split();
        let reader = async move {
            let (mut stdin, mut decoder) = (stdin, SizeDecoder::default());
            while let Some(Ok(message)) = incoming.next().await {
                // The Python client sends text messages for text input.
                let data = match message {
                    Message::Binary(data) => data,
                    Message::Text(text) => Bytes::from(text.as_str().as_bytes().to_vec()),
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Some((&channel, bytes)) = data.split_first() else { continue };
                match channel {
                    channel::STDIN => {
                        if let Some(to_process) = &stdin
                            && !bytes.is_empty()
                            && to_process.send(data.slice(1..)).await.is_err()
                        {
                            stdin = None;
                        }
                    }
                    channel::RESIZE => {
                        for size in decoder.push(bytes) {
                            if let Some(sizes) = &resize {
                                let _ = sizes.send(size).await;
                            }
                        }
                    }
                    channel::CLOSE
                        if version >= Version::V5 && bytes.first() == Some(&channel::STDIN) =>
                    {
                        stdin = None;
                    }
                    _ => {}
                }
            }
        };
        let writer = async move {
            // Upstream opens with an empty message on the first channel the client reads.
            let first = [(has_stdout, channel::STDOUT), (has_stderr, channel::STDERR)]
                .into_iter()
                .find_map(|(on, channel)| on.then_some(channel))
                .unwrap_or(channel::ERROR);
            if sink.send(Message::Binary(framed(first, &[]))).await.is_err() {
                return;
            }
            let mut outputs = futures::stream::select(
                tagged(stdout, channel::STDOUT),
                tagged(stderr, channel::STDERR),
            );
            let mut open = true;
            while let Some(message) = outputs.next().await {
                if sink.send(Message::Binary(message)).await.is_err() {
                    open = false;
                    break;
                }
            }
            // A client that is gone takes no more output: the process's writes fail.
            drop(outputs);
            let ended =
                outcome.await.unwrap_or_else(|_| Outcome::Failed("the session ended".into()));
            if open {
                let report = ended.report(version, &command);
                if !report.is_empty() {
                    let _ = sink.send(Message::Binary(framed(channel::ERROR, &report))).await;
                }
                let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
                let _ = sink.send(Message::Close(Some(close))).await;
            }
        };
        // The session ends with the process's report, or when the client goes.
        tokio::select! {
            () = writer => {}
            () = reader => {}
        }
    };
    let life = async move {
        tokio::select! {
            () = flow => {}
            () = stop => {}
        }
    };
    (process, life)
}

/// A process's output as WebSocket messages of `channel`.
fn tagged(
    output: Option<mpsc::Receiver<Bytes>>,
    channel: u8,
) -> impl futures::Stream<Item = Bytes> + Unpin {
    Box::pin(futures::stream::unfold(output, move |output| async move {
        let mut output = output?;
        let bytes = output.recv().await?;
        Some((framed(channel, &bytes), Some(output)))
    }))
}

fn framed(channel: u8, bytes: &[u8]) -> Bytes {
    let mut message = Vec::with_capacity(bytes.len() + 1);
    message.push(channel);
    message.extend_from_slice(bytes);
    Bytes::from(message)
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
