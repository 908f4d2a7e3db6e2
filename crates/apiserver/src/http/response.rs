//! Building responses: JSON objects, Status errors, streamed watches.

use std::convert::Infallible;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use krust_api::StatusError;
use krust_api::protobuf;
use serde_json::Value;

use super::negotiate::Wire;

/// The response body type of the server.
pub type Body = BoxBody<Bytes, Infallible>;

/// A JSON response.
pub fn json(code: StatusCode, value: &Value) -> Response<Body> {
    json_as(code, value, "application/json")
}

/// A JSON response with a specific content type. The body ends with a newline, as upstream's
/// JSON encoder writes it.
pub fn json_as(code: StatusCode, value: &Value, content_type: &str) -> Response<Body> {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes_as(code, bytes, content_type)
}

/// An object in the form the client asked for: protobuf when it asked for protobuf and the
/// object's kind has a protobuf message, JSON otherwise.
pub fn object(code: StatusCode, value: &Value, wire: Wire) -> Response<Body> {
    if wire == Wire::Metadata {
        return json(code, &partial_object_metadata(value));
    }
    if wire == Wire::Protobuf {
        match protobuf::encode_object(value) {
            Ok(bytes) => return bytes_as(code, bytes, protobuf::MEDIA_TYPE),
            Err(e) if e.is_unsupported_kind() => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode an answer in protobuf; sent as JSON")
            }
        }
    }
    json(code, value)
}

/// An object's metadata alone, as a `meta.k8s.io/v1` `PartialObjectMetadata`.
pub fn partial_object_metadata(object: &Value) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
    })
}

/// A response without a body or headers (a `101 Switching Protocols`, to which the caller
/// adds the upgrade's headers).
pub fn bare(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()).boxed());
    *response.status_mut() = code;
    response
}

/// A response with a body and content type.
pub fn bytes_as(code: StatusCode, bytes: Vec<u8>, content_type: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *response.status_mut() = code;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// Adds one `Warning: 299 - "<text>"` header per distinct warning, as upstream sends them
/// (quotes and backslashes escaped; control characters, which a header cannot carry, as
/// spaces).
pub fn with_warnings(mut response: Response<Body>, warnings: &[String]) -> Response<Body> {
    let mut sent: Vec<&String> = Vec::new();
    for text in warnings {
        if sent.contains(&text) {
            continue;
        }
        sent.push(text);
        let mut value = String::with_capacity(text.len() + 8);
        value.push_str("299 - \"");
        for c in text.chars() {
            match c {
                '"' | '\\' => {
                    value.push('\\');
                    value.push(c);
                }
                c if c.is_control() => value.push(' '),
                c => value.push(c),
            }
        }
        value.push('"');
        if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    response
}

/// A plain-text response (health checks).
pub fn text(code: StatusCode, text: &str) -> Response<Body> {
    bytes_as(code, text.as_bytes().to_vec(), "text/plain; charset=utf-8")
}

/// A Status error response.
pub fn error(e: &StatusError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(code, &e.to_status())
}

/// The largest data frame a streamed response hands to hyper. hyper's HTTP/1 connection
/// queues up to 16 frames (and about 400 KiB) for a socket that does not take them, so frames
/// of one TLS record's size bound what it holds to 256 KiB (a large event is passed in slices
/// of one allocation, without copies).
pub const MAX_FRAME: usize = 16 * 1024;

/// A streamed response: one JSON document per line, flushed as each arrives (in frames of at
/// most [`MAX_FRAME`] bytes).
pub fn stream(
    lines: impl futures::Stream<Item = Bytes> + Send + Sync + 'static,
    content_type: &str,
) -> Response<Body> {
    let frames = lines.flat_map(|line| futures::stream::iter(frames_of(line)));
    let body = StreamBody::new(frames.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut response = Response::new(BodyExt::boxed(body));
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    response
}

/// A response whose body is written as `chunks` come (in frames of at most [`MAX_FRAME`]
/// bytes): a list assembled while it is sent.
pub fn streamed(
    code: StatusCode,
    chunks: impl futures::Stream<Item = Bytes> + Send + Sync + 'static,
    content_type: &str,
) -> Response<Body> {
    let frames = chunks.flat_map(|chunk| futures::stream::iter(frames_of(chunk)));
    let body = StreamBody::new(frames.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut response = Response::new(BodyExt::boxed(body));
    *response.status_mut() = code;
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// A body that keeps `guard` alive until it is done or dropped.
struct Held<G> {
    inner: Body,
    _guard: G,
}

impl<G: Unpin> hyper::body::Body for Held<G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        std::pin::Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The response with `guard` held until its body is sent (or the client is gone): for what
/// must last as long as a streamed answer, such as a count of long-running requests.
pub fn hold<G: Send + Sync + Unpin + 'static>(
    response: Response<Body>,
    guard: G,
) -> Response<Body> {
    response.map(|inner| BodyExt::boxed(Held { inner, _guard: guard }))
}

/// `bytes` cut into slices of at most [`MAX_FRAME`] bytes (sharing its allocation).
fn frames_of(mut bytes: Bytes) -> Vec<Bytes> {
    let mut frames = Vec::with_capacity(bytes.len() / MAX_FRAME + 1);
    while bytes.len() > MAX_FRAME {
        frames.push(bytes.split_to(MAX_FRAME));
    }
    frames.push(bytes);
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_lines_go_out_in_frames_of_bounded_size() {
        let line = Bytes::from(vec![b'x'; 2 * MAX_FRAME + 5]);
        let frames = frames_of(line.clone());
        assert_eq!(frames.iter().map(Bytes::len).collect::<Vec<_>>(), [MAX_FRAME, MAX_FRAME, 5]);
        assert_eq!(frames.concat(), line);
        assert_eq!(frames_of(Bytes::from_static(b"{}\n")).len(), 1);
    }

    #[test]
    fn warnings_are_quoted_and_sent_once_each() {
        let warnings = vec![
            "unknown field \"spec.foo\"".to_string(),
            "unknown field \"spec.foo\"".to_string(),
            "a\\b\nc".to_string(),
        ];
        let response = with_warnings(json(StatusCode::OK, &Value::Null), &warnings);
        let sent: Vec<&str> = response
            .headers()
            .get_all(header::WARNING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(sent, [r#"299 - "unknown field \"spec.foo\"""#, r#"299 - "a\\b c""#]);
    }

    #[tokio::test]
    async fn a_held_guard_lives_as_long_as_the_body_and_the_length_is_kept() {
        let guard = std::sync::Arc::new(());
        let response = hold(text(StatusCode::OK, "ok"), std::sync::Arc::clone(&guard));
        assert_eq!(std::sync::Arc::strong_count(&guard), 2);
        assert_eq!(hyper::body::Body::size_hint(response.body()).exact(), Some(2));
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes());
        assert_eq!(bytes.ok().as_deref(), Some(&b"ok"[..]));
        assert_eq!(std::sync::Arc::strong_count(&guard), 1);
    }
}
