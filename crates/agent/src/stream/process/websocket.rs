//! Exec and attach over WebSocket: every message is one channel's bytes behind the
//! channel's number (`channel.k8s.io` to `v5.channel.k8s.io`).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{ClientSide, Outcome, ProcessStreams, SizeDecoder, Version, session};
use crate::stream::{Activity, StreamRequest};

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
