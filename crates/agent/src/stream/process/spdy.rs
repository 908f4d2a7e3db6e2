//! Exec and attach over SPDY: the client opens one stream per standard stream (`error`,
//! `stdin`, `stdout`, `stderr`, `resize`), named by its `streamType` header.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{ClientSide, Outcome, ProcessStreams, SizeDecoder, Version, session};
use crate::stream::spdy::{self, headers};
use crate::stream::{Activity, STREAM_CREATION_TIMEOUT, StreamRequest};

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
