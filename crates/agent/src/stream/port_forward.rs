//! Port-forward sessions, relayed to TCP connections the caller dials inside the pod's
//! network: over SPDY (kubectl, also tunnelled through a WebSocket), each forwarded
//! connection arrives as a pair of streams (`streamType: error` and `streamType: data`,
//! joined by `requestID`); over WebSocket channels (client libraries), each port of the
//! request is one connection on a pair of channels.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::spdy::{self, headers};
use super::{Activity, STREAM_CREATION_TIMEOUT};

/// Pairs opened but not completed, past which a client's new streams are refused. kubectl
/// opens a pair for each local connection, and a burst of them (a browser, a load test) can
/// have hundreds opening at once on a loaded machine: upstream's kubelet keeps any number,
/// each for at most the stream creation timeout. This bound stops a client that opens streams
/// without end; the bytes they hold are bounded apart, by the connection's budget
/// (`spdy::SESSION_BUDGET`).
const MAX_PENDING: usize = 256;

/// How a forwarded connection is dialed: the port in, a connection (or the reason there is
/// none) out.
pub trait Dial: Fn(u16) -> Self::Connecting + Send + Sync + 'static {
    /// The dial in progress.
    type Connecting: Future<Output = Result<TcpStream, String>> + Send;
}

impl<F, Fut> Dial for F
where
    F: Fn(u16) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<TcpStream, String>> + Send,
{
    type Connecting = Fut;
}

#[derive(Default)]
struct Pair {
    port: u16,
    error: Option<spdy::Stream>,
    data: Option<spdy::Stream>,
}

/// How long a forwarded connection's client side may still send once the pod closed its
/// side (as containerd's).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Serves port-forward on `connection` until the client goes or `stop` resolves (the
/// session was idle too long, or the pod is gone); the connections it relays end with it.
pub async fn over_spdy<D: Dial>(
    mut connection: spdy::Connection,
    dial: D,
    stop: impl Future<Output = ()>,
) {
    let dial = Arc::new(dial);
    let mut pending: HashMap<String, (Instant, Pair)> = HashMap::new();
    let mut relays = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            stream = connection.accept() => match stream {
                Some(stream) => stream,
                None => break,
            },
            () = &mut stop => break,
            Some(_) = relays.join_next(), if !relays.is_empty() => continue,
            () = tokio::time::sleep(STREAM_CREATION_TIMEOUT) => {
                expire(&mut pending).await;
                continue;
            }
        };
        expire(&mut pending).await;
        let kind = headers::get(&stream.headers, "streamtype").unwrap_or_default().to_string();
        let port = headers::get(&stream.headers, "port").and_then(|p| p.trim().parse::<u16>().ok());
        let (Some(port @ 1..), "error" | "data") = (port, kind.as_str()) else {
            tracing::warn!(
                stream = stream.id,
                kind,
                ?port,
                "port-forward: stream refused (bad port or type)"
            );
            let _ = stream.writer.reset().await;
            continue;
        };
        // Without a requestID (old clients), the data stream follows its error stream.
        let request = match headers::get(&stream.headers, "requestid") {
            Some(id) => id.to_string(),
            None if kind == "data" => stream.id.saturating_sub(2).to_string(),
            None => stream.id.to_string(),
        };
        if !pending.contains_key(&request) && pending.len() >= MAX_PENDING {
            tracing::warn!(request, port, "port-forward: too many connections opening; refused");
            let _ = stream.writer.reset().await;
            continue;
        }
        let (_, pair) =
            pending.entry(request.clone()).or_insert_with(|| (Instant::now(), Pair::default()));
        pair.port = port;
        if kind == "error" {
            pair.error = Some(stream);
        } else {
            pair.data = Some(stream);
        }
        if pair.error.is_some() && pair.data.is_some() {
            let Some((_, Pair { port, error: Some(error), data: Some(data) })) =
                pending.remove(&request)
            else {
                continue;
            };
            let dial = Arc::clone(&dial);
            relays.spawn(async move {
                match dial(port).await {
                    Ok(tcp) => relay(tcp, data, error).await,
                    Err(message) => {
                        tracing::warn!(port, %message, "port-forward: dialing the pod failed");
                        let _ = error.writer.write(Bytes::from(message)).await;
                        let _ = error.writer.finish().await;
                        let _ = data.writer.finish().await;
                    }
                }
            });
        }
    }
    relays.abort_all();
    connection.close().await;
}

/// Resets the pairs whose second stream did not come in time.
async fn expire(pending: &mut HashMap<String, (Instant, Pair)>) {
    let late: Vec<String> = pending
        .iter()
        .filter(|(_, (opened, _))| opened.elapsed() >= STREAM_CREATION_TIMEOUT)
        .map(|(request, _)| request.clone())
        .collect();
    for request in late {
        if let Some((_, pair)) = pending.remove(&request) {
            tracing::warn!(
                request,
                port = pair.port,
                "port-forward: a connection's second stream did not come in time; reset"
            );
            for stream in [pair.error, pair.data].into_iter().flatten() {
                let _ = stream.writer.reset().await;
            }
        }
    }
}

/// Copies between one forwarded connection and its data stream. When the pod closes its
/// side, the client's gets `CLOSE_GRACE` more; when the client closes its side, the pod
/// answers until it closes. A reset of the stream, or the connection's end, drops it.
async fn relay(tcp: TcpStream, mut data: spdy::Stream, error: spdy::Stream) {
    let (from_pod, mut to_pod) = tcp.into_split();
    let writer = data.writer.clone();
    let mut reset = data.reset.clone();
    let upstream = async move {
        let _ = super::copy_chunks(from_pod, |bytes| writer.write(bytes)).await;
        let _ = writer.finish().await;
    };
    let downstream = async move {
        while let Some(bytes) = data.incoming.recv().await {
            if to_pod.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to_pod.shutdown().await;
    };
    tokio::pin!(upstream, downstream);
    tokio::select! {
        () = &mut upstream => {
            let _ = tokio::time::timeout(CLOSE_GRACE, &mut downstream).await;
        }
        () = &mut downstream => {
            tokio::select! {
                () = &mut upstream => {}
                () = spdy::reset_or_gone(&mut reset) => {}
            }
        }
        () = spdy::reset_or_gone(&mut reset) => {}
    }
    let _ = error.writer.finish().await;
}

/// Serves port-forward over WebSocket channels, the client libraries' protocol: port `i` of
/// `ports` is data channel `2i` and error channel `2i + 1`, each opened with the port
/// (16 bits, little-endian), and carries one connection. The session ends with a normal
/// close once every port's connection ended, or when the client goes or `stop` resolves.
pub async fn over_websocket<S, D>(
    socket: WebSocketStream<S>,
    ports: Vec<u16>,
    dial: D,
    activity: Arc<Activity>,
    stop: impl Future<Output = ()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    D: Dial,
{
    let (mut sink, mut incoming) = socket.split();
    let (messages, mut outgoing) = mpsc::channel::<Bytes>(16);
    let writer = async move {
        while let Some(message) = outgoing.recv().await {
            if sink.send(Message::Binary(message)).await.is_err() {
                return;
            }
        }
        let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = sink.send(Message::Close(Some(close))).await;
    };
    let session = async move {
        let mut to_pods: Vec<Option<tokio::net::tcp::OwnedWriteHalf>> = Vec::new();
        let mut relays = JoinSet::new();
        for (i, port) in ports.iter().enumerate() {
            let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
            for channel in [data, error] {
                let mut opening = vec![channel];
                opening.extend_from_slice(&port.to_le_bytes());
                if messages.send(Bytes::from(opening)).await.is_err() {
                    return;
                }
            }
            match dial(*port).await {
                Ok(tcp) => {
                    let (from_pod, to_pod) = tcp.into_split();
                    to_pods.push(Some(to_pod));
                    let (messages, activity) = (messages.clone(), Arc::clone(&activity));
                    relays.spawn(async move {
                        let _ = super::copy_chunks(from_pod, |bytes| {
                            activity.touch();
                            let mut message = Vec::with_capacity(bytes.len() + 1);
                            message.push(data);
                            message.extend_from_slice(&bytes);
                            messages.send(Bytes::from(message))
                        })
                        .await;
                    });
                }
                Err(message) => {
                    tracing::warn!(%message, "port-forward: dialing the pod failed");
                    to_pods.push(None);
                    let mut report = vec![error];
                    report.extend_from_slice(message.as_bytes());
                    let _ = messages.send(Bytes::from(report)).await;
                }
            }
        }
        drop(messages);
        let all_ended = async { while relays.join_next().await.is_some() {} };
        let client = async {
            while let Some(Ok(message)) = incoming.next().await {
                let bytes = match message {
                    Message::Binary(bytes) => bytes,
                    Message::Close(_) => return,
                    _ => continue,
                };
                let Some((&channel, payload)) = bytes.split_first() else { continue };
                let slot = to_pods.get_mut(channel as usize / 2);
                if channel % 2 == 0
                    && let Some(Some(to_pod)) = slot
                {
                    activity.touch();
                    if to_pod.write_all(payload).await.is_err()
                        && let Some(slot) = to_pods.get_mut(channel as usize / 2)
                    {
                        *slot = None;
                    }
                }
            }
        };
        tokio::select! {
            () = all_ended => {}
            () = client => {}
        }
    };
    tokio::select! {
        () = async { tokio::join!(session, writer); } => {}
        () = stop => {}
    }
}
