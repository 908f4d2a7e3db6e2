//! `grpc` probes: one call of the gRPC health protocol (`grpc.health.v1.Health/Check`) over
//! plaintext HTTP/2, as upstream's prober; the probe passes when the service answers
//! `SERVING`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;

/// The largest answer read (grpc-go's default receive limit).
const MAX_ANSWER: usize = 4 << 20;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The health service's answer (`HealthCheckResponse.ServingStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServingStatus {
    Unknown,
    Serving,
    NotServing,
    ServiceUnknown,
}

impl ServingStatus {
    fn name(self) -> &'static str {
        match self {
            ServingStatus::Unknown => "UNKNOWN",
            ServingStatus::Serving => "SERVING",
            ServingStatus::NotServing => "NOT_SERVING",
            ServingStatus::ServiceUnknown => "SERVICE_UNKNOWN",
        }
    }
}

/// Checks `service` ("" for the server as a whole) at `host:port`; (success, why not).
pub async fn check(host: &str, port: u16, service: &str) -> (bool, String) {
    let address =
        if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    match call(host, port, service).await {
        Ok(ServingStatus::Serving) => (true, String::new()),
        Ok(status) => (false, format!("service unhealthy (responded with {:?})", status.name())),
        Err(Failure::Connect(e)) => (false, format!("failed to connect service {address:?}: {e}")),
        Err(Failure::Status(12, _)) => (
            false,
            format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): {address}"
            ),
        ),
        Err(Failure::Status(code, message)) => (
            false,
            format!(
                "health rpc probe failed: rpc error: code = {} desc = {message}",
                code_name(code)
            ),
        ),
        Err(Failure::Protocol(e)) => (false, format!("health rpc probe failed: {e}")),
    }
}

#[derive(Debug)]
enum Failure {
    Connect(String),
    /// A non-OK `grpc-status` and its message.
    Status(u32, String),
    Protocol(String),
}

async fn call(host: &str, port: u16, service: &str) -> Result<ServingStatus, Failure> {
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let authority =
        if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    let request = Request::post(format!("http://{authority}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", super::user_agent())
        .body(http_body_util::Full::new(frame(&request_message(service))))
        .map_err(|e| Failure::Protocol(e.to_string()))?;
    let response =
        sender.send_request(request).await.map_err(|e| Failure::Protocol(e.to_string()))?;
    if response.status() != hyper::StatusCode::OK {
        return Err(Failure::Protocol(format!("unexpected HTTP status {}", response.status())));
    }
    // A trailers-only answer carries its status in the headers.
    if let Some(status) = grpc_status(response.headers()) {
        return status.map(|()| ServingStatus::Unknown);
    }
    let mut body = response.into_body();
    let mut message = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Protocol(e.to_string()))?;
        match frame.into_data() {
            Ok(data) => {
                if message.len() + data.len() > MAX_ANSWER {
                    return Err(Failure::Protocol(format!(
                        "an answer larger than {MAX_ANSWER} bytes"
                    )));
                }
                message.extend_from_slice(&data);
            }
            Err(frame) => trailers = frame.into_trailers().ok(),
        }
    }
    match trailers.as_ref().and_then(grpc_status) {
        Some(Ok(())) => {}
        Some(Err(status)) => return Err(status),
        // As grpc-go: a stream that ends without its status is an internal error.
        None => {
            return Err(Failure::Status(
                13,
                "server closed the stream without sending trailers".into(),
            ));
        }
    }
    let message = unframe(message.freeze())
        .ok_or_else(|| Failure::Protocol("a malformed gRPC message".into()))?;
    Ok(serving_of(&message))
}

/// The `grpc-status` in `headers`, if any: OK, or the failure it names.
fn grpc_status(headers: &hyper::HeaderMap) -> Option<Result<(), Failure>> {
    let code: u32 = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let message = headers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or_default();
    Some(if code == 0 { Ok(()) } else { Err(Failure::Status(code, message.to_string())) })
}

/// `HealthCheckRequest { service }` in protobuf (field 1, a string).
fn request_message(service: &str) -> Vec<u8> {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    message
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A gRPC length-prefixed message (uncompressed).
fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// The message in the first frame of `body`.
fn unframe(mut body: Bytes) -> Option<Bytes> {
    if body.len() < 5 || body[0] != 0 {
        return None;
    }
    body.advance(1);
    let length = body.get_u32() as usize;
    (body.len() >= length).then(|| body.slice(..length))
}

/// `HealthCheckResponse.status` (field 1, an enum); absent is `UNKNOWN`.
fn serving_of(message: &[u8]) -> ServingStatus {
    let mut rest = message;
    while let Some((&tag, after)) = rest.split_first() {
        let (value, after) = match read_varint(after) {
            Some(read) => read,
            None => return ServingStatus::Unknown,
        };
        if tag == 0x08 {
            return match value {
                1 => ServingStatus::Serving,
                2 => ServingStatus::NotServing,
                3 => ServingStatus::ServiceUnknown,
                _ => ServingStatus::Unknown,
            };
        }
        // Only varint fields are expected; anything else ends the read.
        if tag & 0x07 != 0 {
            return ServingStatus::Unknown;
        }
        rest = after;
    }
    ServingStatus::Unknown
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

/// gRPC's name of a status code.
fn code_name(code: u32) -> &'static str {
    match code {
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        13 => "Internal",
        14 => "Unavailable",
        16 => "Unauthenticated",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_in_protobuf() {
        assert_eq!(request_message(""), Vec::<u8>::new());
        assert_eq!(request_message("db"), vec![0x0a, 2, b'd', b'b']);
        let framed = frame(&[0x08, 0x01]);
        assert_eq!(framed.as_ref(), &[0, 0, 0, 0, 2, 0x08, 0x01]);
        let message = unframe(framed).expect("a message");
        assert_eq!(serving_of(&message), ServingStatus::Serving);
        assert_eq!(serving_of(&[0x08, 0x02]), ServingStatus::NotServing);
        assert_eq!(serving_of(&[]), ServingStatus::Unknown);
        assert_eq!(unframe(Bytes::from_static(&[0, 0, 0, 0, 9, 1])), None);
    }

    #[tokio::test]
    async fn a_closed_port_fails_to_connect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("an address").port();
        drop(listener);
        let (ok, message) = check("127.0.0.1", port, "").await;
        assert!(!ok);
        assert!(
            message.starts_with(&format!("failed to connect service \"127.0.0.1:{port}\": ")),
            "{message}"
        );
    }
}
