//! Building responses: JSON objects, Status errors, streamed watches.

use std::convert::Infallible;

use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use krust_api::StatusError;
use serde_json::Value;

/// The response body type of the server.
pub type Body = BoxBody<Bytes, Infallible>;

/// A JSON response.
pub fn json(code: StatusCode, value: &Value) -> Response<Body> {
    json_as(code, value, "application/json")
}

/// A JSON response with a specific content type.
pub fn json_as(code: StatusCode, value: &Value, content_type: &str) -> Response<Body> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes_as(code, bytes, content_type)
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

/// A plain-text response (health checks).
pub fn text(code: StatusCode, text: &str) -> Response<Body> {
    bytes_as(code, text.as_bytes().to_vec(), "text/plain; charset=utf-8")
}

/// A Status error response.
pub fn error(e: &StatusError) -> Response<Body> {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(code, &e.to_status())
}

/// A streamed response: one JSON document per line, flushed as each arrives.
pub fn stream(
    lines: impl futures::Stream<Item = Bytes> + Send + Sync + 'static,
    content_type: &str,
) -> Response<Body> {
    let body = StreamBody::new(lines.map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut response = Response::new(BodyExt::boxed(body));
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    response
}
