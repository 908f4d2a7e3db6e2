//! One HTTP/1.1 request on a connection of its own (plain or TLS), for the agent's few
//! outgoing requests: registry pulls, `httpGet` probes and hooks. The connection is driven
//! by a task of its own and closes when the response's body is done.

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Sends `request` over `io` and returns the response (its body still to be read).
pub async fn send<T>(
    io: T,
    request: Request<http_body_util::Empty<Bytes>>,
) -> Result<Response<Incoming>, hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await
}
