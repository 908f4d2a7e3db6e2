//! The WebSocket side of the streaming endpoints: the upgrade's answer (RFC 6455), the
//! choice of subprotocol, and the byte tunnel that carries SPDY for kubectl's port-forward
//! (`SPDY/3.1+portforward.k8s.io`).

use base64::Engine;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The subprotocol of SPDY tunnelled through a WebSocket, for port-forward.
pub const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// The largest message accepted from a client.
pub const MAX_MESSAGE: usize = 16 << 20;

/// The `Sec-WebSocket-Accept` answer to a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{}{GUID}", key.trim()).as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The first of the client's subprotocols (`Sec-WebSocket-Protocol`, comma-separated and
/// possibly repeated) that `supported` has.
pub fn choose<'a>(offered: &[String], supported: &[&'a str]) -> Option<&'a str> {
    offered
        .iter()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .find_map(|name| supported.iter().find(|s| **s == name).copied())
}

/// A WebSocket's binary messages as one byte stream both ways (each message carries the
/// next bytes, however the sender cut them).
pub fn tunnel<S>(socket: WebSocketStream<S>) -> DuplexStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut read, mut write) = tokio::io::split(theirs);
    let (mut sink, mut incoming) = socket.split();
    tokio::spawn(async move {
        while let Some(Ok(message)) = incoming.next().await {
            match message {
                Message::Binary(bytes) if write.write_all(&bytes).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = write.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let bytes = bytes::Bytes::copy_from_slice(&buffer[..n]);
                    if sink.send(Message::Binary(bytes)).await.is_err() {
                        return;
                    }
                }
            }
        }
        let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = sink.send(Message::Close(Some(close))).await;
    });
    ours
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // The example of RFC 6455, section 1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn the_clients_first_supported_subprotocol_is_chosen() {
        let offered = vec!["v5.channel.k8s.io, v4.channel.k8s.io".to_string()];
        assert_eq!(
            choose(&offered, &["v4.channel.k8s.io", "v5.channel.k8s.io"]),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(choose(&offered, &["channel.k8s.io"]), None);
        let repeated = vec!["base64.channel.k8s.io".to_string(), "v4.channel.k8s.io".to_string()];
        assert_eq!(choose(&repeated, &["v4.channel.k8s.io"]), Some("v4.channel.k8s.io"));
    }
}
