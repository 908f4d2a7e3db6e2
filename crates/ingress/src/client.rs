//! The proxy's client to endpoints: HTTP/1.1 over a connection of its own or one kept from an
//! earlier request (keep-alive), per worker. A backend connection is driven by the task of the
//! request it serves (no task, channel or pool lock between a request and its backend, as
//! each worker is a thread of its own): until the answer's head, by the relay; then by the
//! answer's body as the client's connection reads it, which hands the connection back to the
//! worker's idle ones once the body ended on a connection that stays open. Idle connections
//! are tried newest first and checked before use; those idle for a minute are closed.
//!
//! An upgrade (WebSocket) goes over a new connection driven by a task of its own, which then
//! hands the upgraded connection over.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, Connection, SendRequest};

use crate::connect::{ConnectError, Connector, Stream};
use crate::proxy::Body;

/// How long a connection stays idle before it is closed (under nginx's and most servers'
/// keep-alive timeouts, so that the backend rarely closes one as it is being reused).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How many idle connections are kept per endpoint.
const MAX_IDLE: usize = 64;

type Conn = Connection<Stream, Body>;

struct Idle {
    sender: SendRequest<Body>,
    conn: Conn,
    since: Instant,
}

/// Why a request could not be relayed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made; the request was not sent and comes back.
    #[error("{0}")]
    Connect(#[source] ConnectError, Box<Request<Body>>),
    /// The exchange failed after the request was (perhaps partly) sent.
    #[error("the backend failed: {0}")]
    Exchange(#[source] hyper::Error),
}

/// One worker's client: its connector and idle connections by endpoint.
pub struct Client {
    connector: Connector,
    idle: Arc<Mutex<HashMap<SocketAddr, Vec<Idle>>>>,
}

impl Client {
    /// A client with no connections yet.
    pub fn new(connector: Connector) -> Client {
        Client { connector, idle: Arc::default() }
    }

    fn take_idle(&self, endpoint: SocketAddr) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&endpoint)?;
        let found = list.pop();
        if list.is_empty() {
            idle.remove(&endpoint);
        }
        found
    }

    /// Closes the connections idle for longer than [`IDLE_TIMEOUT`].
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, list| {
            list.retain(|i| i.since.elapsed() < IDLE_TIMEOUT);
            !list.is_empty()
        });
    }

    /// Sends `request` (origin-form, with its `Host`) to `endpoint` on an idle connection that
    /// is still open, else on a new one. The answer's body drives its connection.
    pub async fn send(
        &self,
        endpoint: SocketAddr,
        mut request: Request<Body>,
    ) -> Result<Response<Driven>, SendError> {
        while let Some(mut idle) = self.take_idle(endpoint) {
            if idle.since.elapsed() >= IDLE_TIMEOUT || !usable(&mut idle).await {
                continue;
            }
            let Idle { mut sender, conn, .. } = idle;
            let exchange = sender.try_send_request(request);
            match drive(exchange, conn).await {
                (Ok(response), conn) => return Ok(self.driven(endpoint, response, sender, conn)),
                (Err(mut e), _) => match e.take_message() {
                    // Not written: another connection takes it.
                    Some(back) => request = back,
                    None => return Err(SendError::Exchange(e.into_error())),
                },
            }
        }
        let (mut sender, conn) = match self.connect(endpoint).await {
            Ok(parts) => parts,
            Err(e) => return Err(SendError::Connect(e, Box::new(request))),
        };
        let exchange = sender.try_send_request(request);
        match drive(exchange, conn).await {
            (Ok(response), conn) => Ok(self.driven(endpoint, response, sender, conn)),
            (Err(e), _) => Err(SendError::Exchange(e.into_error())),
        }
    }

    /// Sends an upgrade request over a new connection, driven by a task of its own that hands
    /// the connection over when the backend switches protocols.
    pub async fn send_upgrade(
        &self,
        endpoint: SocketAddr,
        request: Request<Body>,
    ) -> Result<Response<Incoming>, SendError> {
        let (mut sender, conn) = match self.connect(endpoint).await {
            Ok(parts) => parts,
            Err(e) => return Err(SendError::Connect(e, Box::new(request))),
        };
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%endpoint, error = %e, "ingress: an upgraded backend connection failed");
            }
        });
        sender.send_request(request).await.map_err(SendError::Exchange)
    }

    async fn connect(
        &self,
        endpoint: SocketAddr,
    ) -> Result<(SendRequest<Body>, Conn), ConnectError> {
        let stream = self.connector.connect(endpoint).await?;
        http1::Builder::new()
            .handshake(stream)
            .await
            .map_err(|e| ConnectError::Handshake { address: endpoint, source: e })
    }

    fn driven(
        &self,
        endpoint: SocketAddr,
        response: Response<Incoming>,
        sender: SendRequest<Body>,
        conn: Option<Conn>,
    ) -> Response<Driven> {
        let (parts, body) = response.into_parts();
        let back = conn.map(|conn| (sender, conn));
        Response::from_parts(
            parts,
            Driven { body, conn: back, endpoint, idle: self.idle.clone(), ended: false },
        )
    }
}

/// Whether an idle connection can take a request now: it was not closed meanwhile and is
/// ready (one poll; one that is not is dropped).
async fn usable(idle: &mut Idle) -> bool {
    poll_fn(|cx| {
        let closed = Pin::new(&mut idle.conn).poll(cx).is_ready();
        Poll::Ready(!closed && matches!(idle.sender.poll_ready(cx), Poll::Ready(Ok(()))))
    })
    .await
}

/// Awaits `exchange`'s answer while driving `conn`; gives back the connection unless it ended.
async fn drive<F, T>(exchange: F, conn: Conn) -> (T, Option<Conn>)
where
    F: Future<Output = T>,
{
    let mut exchange = pin!(exchange);
    let mut conn = Some(conn);
    let answer = poll_fn(|cx| {
        if let Some(c) = conn.as_mut()
            && let Poll::Ready(result) = Pin::new(c).poll(cx)
        {
            if let Err(e) = result {
                tracing::debug!(error = %e, "ingress: a backend connection failed");
            }
            conn = None;
        }
        exchange.as_mut().poll(cx)
    })
    .await;
    (answer, conn)
}

/// An answer's body that drives its backend connection as it is read, and hands the
/// connection back to the idle ones once the body ended.
pub struct Driven {
    body: Incoming,
    conn: Option<(SendRequest<Body>, Conn)>,
    endpoint: SocketAddr,
    idle: Arc<Mutex<HashMap<SocketAddr, Vec<Idle>>>>,
    ended: bool,
}

impl Driven {
    fn release(&mut self) {
        let Some((sender, conn)) = self.conn.take() else { return };
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.entry(self.endpoint).or_default();
        if list.len() < MAX_IDLE {
            list.push(Idle { sender, conn, since: Instant::now() });
        }
    }
}

impl HttpBody for Driven {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some((_, conn)) = this.conn.as_mut()
            && let Poll::Ready(result) = Pin::new(conn).poll(cx)
        {
            if let Err(e) = result {
                tracing::debug!(endpoint = %this.endpoint, error = %e, "ingress: a backend connection failed");
            }
            this.conn = None;
        }
        let frame = Pin::new(&mut this.body).poll_frame(cx);
        if let Poll::Ready(None) = frame {
            this.ended = true;
            this.release();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Driven {
    fn drop(&mut self) {
        // A body never read to its end leaves its connection mid-message: closed with it.
        if self.ended || self.body.is_end_stream() {
            self.release();
        }
    }
}
