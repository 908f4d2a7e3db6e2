//! The listeners: UDP (cluster names answered inline, the common question straight from
//! and into bytes by `wire::direct`; forwarded questions in tasks of their own, at most
//! `FORWARDS_IN_FLIGHT` at once) and TCP (length-framed, at most `TCP_CONNECTIONS`
//! connections, each closed after `TCP_IDLE` without a request).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;

use crate::forward::Forwarder;
use crate::records::Records;
use crate::wire::{self, Handling, Zone};

/// Forwarded UDP questions in flight; more are dropped (their clients ask again).
const FORWARDS_IN_FLIGHT: usize = 1024;
/// Open TCP connections.
const TCP_CONNECTIONS: usize = 256;
/// How long a TCP connection may wait for its next request.
const TCP_IDLE: Duration = Duration::from_secs(10);

/// What the listeners answer from.
#[derive(Debug)]
pub struct Server {
    /// The cluster's records, kept by the watches.
    pub records: Arc<RwLock<Records>>,
    /// The cluster's zone.
    pub zone: Zone,
    /// Where other names go.
    pub forwarder: Forwarder,
}

impl Server {
    /// Writes into `out` the answer to `request` when it is the common kind
    /// (`wire::direct`); says whether it did.
    fn answer_directly(&self, request: &[u8], tcp: bool, out: &mut Vec<u8>) -> bool {
        let records = self.records.read().unwrap_or_else(|e| e.into_inner());
        wire::direct::answer(&records, &self.zone, request, tcp, out)
    }

    fn handle(&self, request: &[u8]) -> (Handling, usize) {
        let records = self.records.read().unwrap_or_else(|e| e.into_inner());
        wire::handle(&records, &self.zone, request)
    }
}

/// Answers questions arriving on `socket`, for ever.
pub async fn udp(server: Arc<Server>, socket: UdpSocket) {
    let socket = Arc::new(socket);
    let permits = Arc::new(Semaphore::new(FORWARDS_IN_FLIGHT));
    let mut buffer = vec![0u8; 65535];
    let mut answer = Vec::with_capacity(512);
    loop {
        let (n, peer) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(e) => {
                tracing::warn!(error = %e, "cannot receive a DNS question");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if server.answer_directly(&buffer[..n], false, &mut answer) {
            let _ = socket.send_to(&answer, peer).await;
            continue;
        }
        match server.handle(&buffer[..n]) {
            (Handling::Answer(response), limit) => {
                if let Some(bytes) = wire::encode(&response, limit) {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
            (Handling::Forward(request), limit) => {
                let Ok(permit) = permits.clone().try_acquire_owned() else { continue };
                let (server, socket) = (server.clone(), socket.clone());
                tokio::spawn(async move {
                    let response = server.forwarder.resolve(&request).await;
                    if let Some(bytes) = wire::encode(&response, limit) {
                        let _ = socket.send_to(&bytes, peer).await;
                    }
                    drop(permit);
                });
            }
            (Handling::Drop, _) => {}
        }
    }
}

/// Accepts connections on `listener`, for ever.
pub async fn tcp(server: Arc<Server>, listener: TcpListener) {
    let permits = Arc::new(Semaphore::new(TCP_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a DNS connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else { continue };
        let server = server.clone();
        tokio::spawn(async move {
            let _ = connection(&server, stream).await;
            drop(permit);
        });
    }
}

async fn connection(server: &Server, mut stream: TcpStream) -> std::io::Result<()> {
    loop {
        let Ok(length) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else {
            return Ok(());
        };
        let mut request = vec![0u8; usize::from(length?)];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut request))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let mut answer = Vec::new();
        if !server.answer_directly(&request, true, &mut answer) {
            let response = match server.handle(&request).0 {
                Handling::Answer(response) => response,
                Handling::Forward(request) => server.forwarder.resolve(&request).await,
                Handling::Drop => return Ok(()),
            };
            let Some(bytes) = wire::encode(&response, usize::from(u16::MAX)) else {
                return Ok(());
            };
            answer = bytes;
        }
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&u16::try_from(answer.len()).unwrap_or(u16::MAX).to_be_bytes());
        framed.extend_from_slice(&answer);
        stream.write_all(&framed).await?;
    }
}
