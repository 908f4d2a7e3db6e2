//! The server side of a SPDY/3.1 connection, as kubectl's streaming clients use it: the
//! client opens every stream, and this side answers each at once and exchanges its bytes.
//!
//! One task reads frames and hands each stream's bytes to its bounded channel; one task
//! writes what the streams send. Flow-control windows are neither kept nor granted:
//! kubectl's SPDY library (spdystream) ignores them both ways, so TCP is the only
//! back-pressure, as upstream. What the streams' readers have not taken yet counts against
//! the connection's byte budget ([`SESSION_BUDGET`]), whatever the number of streams: past
//! it, the connection is not read until a reader takes some. A client that stops reading
//! stalls the writers. Memory stays bounded by the budget and the channels, never by what a
//! peer sends or refuses to take.

pub mod dictionary;
pub mod frame;
pub mod headers;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

use super::Activity;
use frame::Frame;
pub use headers::Headers;

/// The largest frame accepted from a peer (kubectl sends at most 32 KiB of data at once).
const MAX_FRAME: usize = 128 * 1024;
/// The most bytes put in one `DATA` frame.
const MAX_DATA: usize = super::CHUNK;
/// Frames from one stream's peer waiting for its reader (at most 1 MiB).
const STREAM_BACKLOG: usize = 8;
/// Bytes from the peer that all of a connection's streams together hold for their readers.
/// A stream nobody reads (a port-forward pair whose second stream never comes) holds its
/// share until its reader is dropped (for that pair, when it expires); the other streams
/// wait for the budget meanwhile, as they would wait behind that stream's full backlog
/// without it.
pub const SESSION_BUDGET: usize = 8 << 20;
// A frame always fits in the budget.
const _: () = assert!(MAX_FRAME <= SESSION_BUDGET);

/// One stream a peer opened.
pub struct Stream {
    /// Its id.
    pub id: u32,
    /// The headers it was opened with.
    pub headers: Headers,
    /// The peer's bytes; they end when the peer finishes or resets the stream.
    pub incoming: Incoming,
    /// Writes to the peer.
    pub writer: StreamWriter,
    /// Turns true when the peer resets the stream.
    pub reset: watch::Receiver<bool>,
}

/// The bytes a stream's peer sent, each piece counted against the connection's budget until
/// its reader takes it.
pub struct Incoming(mpsc::Receiver<(Bytes, OwnedSemaphorePermit)>);

impl Incoming {
    /// The next piece; `None` once the peer finished or reset the stream.
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.0.recv().await.map(|(bytes, _budget)| bytes)
    }
}

/// The sending half of a stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    commands: mpsc::Sender<Command>,
}

/// The connection is gone.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the SPDY connection is closed")]
pub struct Closed;

impl StreamWriter {
    /// Sends `data` (in frames of at most `CHUNK` bytes), waiting while the peer is slow.
    pub async fn write(&self, mut data: Bytes) -> Result<(), Closed> {
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_DATA));
            self.send(Frame::Data { stream: self.id, fin: false, data: chunk }).await?;
        }
        Ok(())
    }

    /// Ends this side of the stream (`FIN`).
    pub async fn finish(&self) -> Result<(), Closed> {
        self.send(Frame::Data { stream: self.id, fin: true, data: Bytes::new() }).await
    }

    /// Abandons the stream (`RST_STREAM`).
    pub async fn reset(&self) -> Result<(), Closed> {
        self.send(Frame::RstStream { stream: self.id, status: frame::CANCEL }).await
    }

    async fn send(&self, frame: Frame) -> Result<(), Closed> {
        self.commands.send(Command::Frame(frame)).await.map_err(|_| Closed)
    }
}

/// Resolves when the peer resets a stream (`Stream::reset`) or the connection is gone.
pub async fn reset_or_gone(reset: &mut watch::Receiver<bool>) {
    let _ = reset.wait_for(|r| *r).await;
}

enum Command {
    Frame(Frame),
    /// Answer stream `id` (`SYN_REPLY`, headers compressed by the writer).
    Reply(u32),
    /// `GOAWAY`, then close the connection.
    GoAway,
}

/// A SPDY connection being served.
pub struct Connection {
    accepted: mpsc::Receiver<Stream>,
    commands: mpsc::Sender<Command>,
    activity: Arc<Activity>,
    /// Held by the reading task: closed when the peer is gone.
    read_open: watch::Receiver<()>,
}

impl Connection {
    /// Serves SPDY on `io` (the connection after its HTTP upgrade).
    pub fn serve<T>(io: T) -> Connection
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(io);
        let (commands, queue) = mpsc::channel(64);
        let (accept, accepted) = mpsc::channel(16);
        let activity = Activity::new();
        let (closed_tx, closed) = watch::channel(false);
        let (reading, read_open) = watch::channel(());
        tokio::spawn(write_frames(write, queue, Arc::clone(&activity), closed_tx));
        let reader = read_frames(read, commands.clone(), accept, Arc::clone(&activity), closed);
        tokio::spawn(async move {
            reader.await;
            drop(reading);
        });
        Connection { accepted, commands, activity, read_open }
    }

    /// The next stream the peer opens; `None` once the connection is gone.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.accepted.recv().await
    }

    /// Resolves once the peer is gone (or this side closed the connection).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static + use<> {
        let mut open = self.read_open.clone();
        async move { while open.changed().await.is_ok() {} }
    }

    /// When bytes last moved on any of its streams.
    pub fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.activity)
    }

    /// Tells the peer that this side is done (`GOAWAY`) once what was written is sent, and
    /// closes the connection.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::GoAway).await;
    }
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut read: R,
    commands: mpsc::Sender<Command>,
    accept: mpsc::Sender<Stream>,
    activity: Arc<Activity>,
    mut closed: watch::Receiver<bool>,
) {
    let mut inflater = headers::Inflater::default();
    // Streams the peer may still send on (`Some`) or reset.
    type Sender = mpsc::Sender<(Bytes, OwnedSemaphorePermit)>;
    let mut streams: HashMap<u32, (Option<Sender>, watch::Sender<bool>)> = HashMap::new();
    let budget = Arc::new(Semaphore::new(SESSION_BUDGET));
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    loop {
        let frame = match frame::parse(&mut buffer, MAX_FRAME) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                buffer.reserve(32 * 1024);
                tokio::select! {
                    read = read.read_buf(&mut buffer) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(_) => continue,
                    },
                    // This side closed the connection: the peer is not read any more.
                    _ = closed.wait_for(|c| *c) => return,
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "closing a SPDY connection");
                let _ = commands.send(Command::GoAway).await;
                return;
            }
        };
        match frame {
            Frame::SynStream { stream: id, flags, headers, .. } => {
                let Ok(headers) = inflater.decode(&headers) else {
                    let _ = commands.send(Command::GoAway).await;
                    return;
                };
                let (data, incoming) = mpsc::channel(STREAM_BACKLOG);
                let (reset_tx, reset) = watch::channel(false);
                // Forget the streams that ended on both sides.
                streams.retain(|_, (data, reset)| data.is_some() || !reset.is_closed());
                let data = (flags & frame::FLAG_FIN == 0).then_some(data);
                streams.insert(id, (data, reset_tx));
                if commands.send(Command::Reply(id)).await.is_err() {
                    return;
                }
                let writer = StreamWriter { id, commands: commands.clone() };
                let incoming = Incoming(incoming);
                let stream = Stream { id, headers, incoming, writer, reset };
                if accept.send(stream).await.is_err() {
                    return;
                }
            }
            Frame::Data { stream: id, fin, data } => {
                activity.touch();
                if let Some((slot @ Some(_), _)) = streams.get_mut(&id) {
                    let delivered = match slot {
                        Some(_) if data.is_empty() => true,
                        Some(sender) if sender.is_closed() => false,
                        Some(sender) => {
                            let bytes = u32::try_from(data.len()).unwrap_or(u32::MAX);
                            let share = tokio::select! {
                                share = Arc::clone(&budget).acquire_many_owned(bytes) => share,
                                // This side closed the connection meanwhile.
                                _ = closed.wait_for(|c| *c) => return,
                            };
                            let Ok(share) = share else { return };
                            // A copy of its own, so that what is charged is what is held (a
                            // slice of the read buffer would hold all of that buffer).
                            let data = Bytes::copy_from_slice(&data);
                            sender.send((data, share)).await.is_ok()
                        }
                        None => false,
                    };
                    // A reader that is gone drops the rest of its stream's bytes.
                    if fin || !delivered {
                        *slot = None;
                    }
                }
            }
            Frame::RstStream { stream: id, .. } => {
                if let Some((_, reset)) = streams.remove(&id) {
                    let _ = reset.send(true);
                }
            }
            Frame::Ping(id) => {
                if commands.send(Command::Frame(Frame::Ping(id))).await.is_err() {
                    return;
                }
            }
            Frame::GoAway { .. } => return,
            Frame::SynReply { .. }
            | Frame::Settings(_)
            | Frame::Headers { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown(_) => {}
        }
    }
}

async fn write_frames<W: AsyncWrite + Unpin>(
    mut write: W,
    mut queue: mpsc::Receiver<Command>,
    activity: Arc<Activity>,
    closed: watch::Sender<bool>,
) {
    let mut deflater = headers::Deflater::default();
    let mut out = BytesMut::with_capacity(64 * 1024);
    let mut closing = false;
    while let Some(command) = queue.recv().await {
        let mut next = Some(command);
        // Take what else is queued into the same write.
        while let Some(command) = next.take() {
            match command {
                Command::Frame(frame) => {
                    if matches!(frame, Frame::Data { .. }) {
                        activity.touch();
                    }
                    frame::encode(&frame, &mut out);
                }
                Command::Reply(id) => {
                    let headers = Bytes::from(deflater.encode(&[]));
                    frame::encode(&Frame::SynReply { stream: id, fin: false, headers }, &mut out);
                }
                Command::GoAway => {
                    frame::encode(&Frame::GoAway { last_stream: 0, status: 0 }, &mut out);
                    closing = true;
                    break;
                }
            }
            if out.len() < 256 * 1024 {
                next = queue.try_recv().ok();
            }
        }
        if write.write_all(&out).await.is_err() || write.flush().await.is_err() {
            return;
        }
        out.clear();
        if closing {
            let _ = write.shutdown().await;
            let _ = closed.send(true);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's side of a connection, enough to drive the server in tests.
    struct Peer {
        io: tokio::io::DuplexStream,
        deflater: headers::Deflater,
        inflater: headers::Inflater,
        buffer: BytesMut,
    }

    impl Peer {
        async fn send(&mut self, frame: Frame) {
            let mut out = BytesMut::new();
            frame::encode(&frame, &mut out);
            self.io.write_all(&out).await.expect("as the test sets up");
        }

        async fn open(&mut self, id: u32, headers: &[(&str, &str)]) {
            let headers = Bytes::from(self.deflater.encode(headers));
            self.send(Frame::SynStream { stream: id, associated: 0, flags: 0, headers }).await;
        }

        async fn next(&mut self) -> Option<Frame> {
            loop {
                if let Some(frame) =
                    frame::parse(&mut self.buffer, frame::MAX_PAYLOAD).expect("as the test sets up")
                {
                    return Some(frame);
                }
                if self.io.read_buf(&mut self.buffer).await.expect("as the test sets up") == 0 {
                    return None;
                }
            }
        }
    }

    fn pair() -> (Connection, Peer) {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let peer = Peer {
            io: theirs,
            deflater: headers::Deflater::default(),
            inflater: headers::Inflater::default(),
            buffer: BytesMut::new(),
        };
        (Connection::serve(ours), peer)
    }

    #[tokio::test]
    async fn streams_are_answered_and_carry_bytes_both_ways() {
        let (mut connection, mut peer) = pair();
        peer.open(1, &[("streamType", "stdin")]).await;
        let mut stream = connection.accept().await.expect("as the test sets up");
        assert_eq!(headers::get(&stream.headers, "streamtype"), Some("stdin"));
        let Some(Frame::SynReply { stream: 1, headers, .. }) = peer.next().await else {
            panic!("no reply")
        };
        assert_eq!(peer.inflater.decode(&headers), Ok(vec![]));

        peer.send(Frame::Data { stream: 1, fin: false, data: Bytes::from_static(b"in") }).await;
        peer.send(Frame::Data { stream: 1, fin: true, data: Bytes::new() }).await;
        assert_eq!(stream.incoming.recv().await.as_deref(), Some(&b"in"[..]));
        assert_eq!(stream.incoming.recv().await, None);

        stream.writer.write(Bytes::from_static(b"out")).await.expect("as the test sets up");
        stream.writer.finish().await.expect("as the test sets up");
        let data = Frame::Data { stream: 1, fin: false, data: Bytes::from_static(b"out") };
        assert_eq!(peer.next().await, Some(data));
        assert_eq!(
            peer.next().await,
            Some(Frame::Data { stream: 1, fin: true, data: Bytes::new() })
        );

        peer.send(Frame::Ping(7)).await;
        assert_eq!(peer.next().await, Some(Frame::Ping(7)));

        connection.close().await;
        assert_eq!(peer.next().await, Some(Frame::GoAway { last_stream: 0, status: 0 }));
        assert_eq!(peer.next().await, None);
    }

    #[tokio::test]
    async fn a_reset_ends_the_stream_and_says_so() {
        let (mut connection, mut peer) = pair();
        peer.open(3, &[("streamType", "data")]).await;
        let mut stream = connection.accept().await.expect("as the test sets up");
        peer.send(Frame::RstStream { stream: 3, status: frame::CANCEL }).await;
        assert_eq!(stream.incoming.recv().await, None);
        stream.reset.wait_for(|r| *r).await.expect("as the test sets up");
    }

    #[tokio::test]
    async fn large_writes_are_split_and_no_window_is_kept() {
        let (mut connection, mut peer) = pair();
        peer.open(5, &[]).await;
        let mut stream = connection.accept().await.expect("as the test sets up");
        let _reply = peer.next().await;
        let big = Bytes::from(vec![7u8; 100 * 1024]);
        let writer = stream.writer.clone();
        let sent = tokio::spawn(async move { writer.write(big).await });
        let mut got = 0;
        while got < 100 * 1024 {
            let Some(Frame::Data { data, .. }) = peer.next().await else { panic!() };
            assert!(data.len() <= MAX_DATA);
            got += data.len();
        }
        sent.await.expect("as the test sets up").expect("as the test sets up");
        // No window is kept: more than SPDY's default window reaches the stream at once.
        for _ in 0..3 {
            let chunk = Bytes::from(vec![1u8; 40 * 1024]);
            peer.send(Frame::Data { stream: 5, fin: false, data: chunk }).await;
        }
        for _ in 0..3 {
            assert_eq!(stream.incoming.recv().await.map(|b| b.len()), Some(40 * 1024));
        }
    }

    #[tokio::test]
    async fn what_no_reader_takes_is_bounded_by_the_session_budget() {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let mut connection = Connection::serve(ours);
        let (mut from_server, mut to_server) = tokio::io::split(theirs);
        const PIECE: usize = 64 * 1024;
        let filled = SESSION_BUDGET / (STREAM_BACKLOG * PIECE);
        let ids: Vec<u32> = (0..=filled as u32).map(|i| 2 * i + 1).collect();
        let writer = tokio::spawn(async move {
            let mut deflater = headers::Deflater::default();
            let mut out = BytesMut::new();
            for &id in &ids {
                let headers = Bytes::from(deflater.encode(&[]));
                frame::encode(
                    &Frame::SynStream { stream: id, associated: 0, flags: 0, headers },
                    &mut out,
                );
            }
            // Every stream but the last gets a full backlog; together they fill the budget.
            for &id in &ids {
                let frames = if id == *ids.last().expect("as the test sets up") {
                    1
                } else {
                    STREAM_BACKLOG
                };
                for _ in 0..frames {
                    let data = Bytes::from(vec![0u8; PIECE]);
                    frame::encode(&Frame::Data { stream: id, fin: false, data }, &mut out);
                }
            }
            frame::encode(&Frame::Ping(9), &mut out);
            to_server.write_all(&out).await.expect("as the test sets up");
            to_server
        });
        let mut streams = Vec::new();
        for _ in 0..=filled {
            streams.push(connection.accept().await.expect("as the test sets up"));
        }
        let mut buffer = BytesMut::new();
        let mut ping = async || loop {
            if let Some(frame) =
                frame::parse(&mut buffer, frame::MAX_PAYLOAD).expect("as the test sets up")
            {
                if matches!(frame, Frame::Ping(9)) {
                    return;
                }
                continue;
            }
            from_server.read_buf(&mut buffer).await.expect("as the test sets up");
        };
        let early = tokio::time::timeout(std::time::Duration::from_millis(300), ping()).await;
        assert!(early.is_err(), "the connection was read past its budget");
        // A reader takes a piece: the budget lets the last stream's frame in, then the ping.
        assert_eq!(streams[0].incoming.recv().await.map(|b| b.len()), Some(PIECE));
        tokio::time::timeout(std::time::Duration::from_secs(5), ping())
            .await
            .expect("the connection is read again once a reader took its piece");
        assert_eq!(streams[filled].incoming.recv().await.map(|b| b.len()), Some(PIECE));
        drop(writer);
    }

    /// Plays what a real kubectl sent into a connection; returns the streams and each one's
    /// bytes up to its end.
    async fn replay(recorded: &[u8]) -> Vec<(Headers, Vec<u8>)> {
        let (mut connection, mut peer) = pair();
        peer.io.write_all(recorded).await.expect("as the test sets up");
        let mut streams = Vec::new();
        while let Ok(Some(stream)) =
            tokio::time::timeout(std::time::Duration::from_millis(200), connection.accept()).await
        {
            streams.push(stream);
        }
        let mut seen = Vec::new();
        for mut stream in streams {
            let mut bytes = Vec::new();
            while let Ok(Some(chunk)) =
                tokio::time::timeout(std::time::Duration::from_millis(200), stream.incoming.recv())
                    .await
            {
                bytes.extend_from_slice(&chunk);
            }
            seen.push((stream.headers, bytes));
        }
        seen
    }

    #[tokio::test]
    async fn kubectls_exec_streams_are_read() {
        let seen = replay(include_bytes!("testdata/kubectl-1.27-exec-stdin.bin")).await;
        let kinds: Vec<&str> = seen
            .iter()
            .map(|(h, _)| headers::get(h, "streamtype").expect("as the test sets up"))
            .collect();
        assert_eq!(kinds, ["error", "stdin", "stdout", "stderr"]);
        assert_eq!(seen[1].1, b"hello\n");
    }

    #[tokio::test]
    async fn kubectls_port_forward_streams_are_read() {
        let seen = replay(include_bytes!("testdata/kubectl-1.27-port-forward.bin")).await;
        let header = |i: usize, name: &str| {
            headers::get(&seen[i].0, name).expect("as the test sets up").to_string()
        };
        assert_eq!(
            (header(0, "streamtype"), header(1, "streamtype")),
            ("error".into(), "data".into())
        );
        assert_eq!((header(0, "port"), header(0, "requestid")), ("8080".into(), "0".into()));
        assert_eq!(header(1, "requestid"), "0");
        assert!(seen[1].1.starts_with(b"GET /index.html HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn garbage_closes_the_connection() {
        let (mut connection, mut peer) = pair();
        peer.io.write_all(&[0x80, 9, 0, 1, 0, 0, 0, 0]).await.expect("as the test sets up");
        assert_eq!(peer.next().await, Some(Frame::GoAway { last_stream: 0, status: 0 }));
        assert!(connection.accept().await.is_none());
    }
}
