//! Reading request bodies: a size limit, and JSON, YAML or Kubernetes protobuf into a JSON
//! value.

use bytes::{Bytes, BytesMut};
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use krust_api::StatusError;
use serde_json::Value;

/// The largest request body accepted (upstream: 3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How much of an oversized body is read and dropped before answering 413, so that the
/// client sees the answer rather than a closed connection.
const DRAIN_BYTES: usize = 64 * 1024 * 1024;

/// How long the body of a request may take to arrive, put into the request's extensions when
/// its handling starts; without it, a body may take for ever.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    /// When reading must be done.
    pub at: tokio::time::Instant,
    /// The limit it was computed from, for the answer.
    pub limit: std::time::Duration,
}

/// Reads a whole body, refusing one larger than [`MAX_BODY_BYTES`] with 413 and one that did
/// not arrive by the request's [`Deadline`] with 408 (the caller closes the connection).
pub async fn read(req: Request<Incoming>) -> Result<Bytes, StatusError> {
    let deadline = req.extensions().get::<Deadline>().copied();
    let body = read_body(req.into_body());
    match deadline {
        None => body.await,
        Some(deadline) => tokio::time::timeout_at(deadline.at, body).await.unwrap_or_else(|_| {
            Err(StatusError::with_code(
                408,
                krust_api::Reason::Timeout,
                format!(
                    "Timeout: the request body did not arrive within {}s",
                    deadline.limit.as_secs_f64()
                ),
            ))
        }),
    }
}

async fn read_body(mut body: Incoming) -> Result<Bytes, StatusError> {
    let mut buffer = BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| StatusError::bad_request(format!("cannot read the request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len();
        if seen <= MAX_BODY_BYTES {
            buffer.extend_from_slice(&data);
        } else if seen > DRAIN_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(StatusError::too_large(MAX_BODY_BYTES));
    }
    Ok(buffer.freeze())
}

/// Decodes a body as JSON, or as YAML or Kubernetes protobuf when the content type says so.
///
/// A protobuf body of a kind with no known protobuf schema is answered 415, as upstream
/// answers a media type a kind does not support; a malformed one 400.
pub fn decode(content_type: &str, bytes: &[u8]) -> Result<Value, StatusError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    match media {
        "application/yaml"
        | "application/x-yaml"
        | "text/yaml"
        | "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| StatusError::bad_request("the YAML body is not valid UTF-8"))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| {
                StatusError::bad_request(format!("error converting YAML to JSON: {e}"))
            })
        }
        "" | "application/json" | "*/*" => serde_json::from_slice(bytes).map_err(|e| {
            StatusError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
        krust_api::protobuf::MEDIA_TYPE => krust_api::protobuf::decode(bytes).map_err(|e| {
            if e.is_unsupported_kind() {
                StatusError::unsupported_media_type(content_type)
            } else {
                StatusError::bad_request(e.to_string())
            }
        }),
        other => Err(StatusError::unsupported_media_type(other)),
    }
}

/// The paths of the members a body names twice, for field validation; JSON bodies only (YAML
/// and protobuf bodies are not searched).
pub fn duplicate_fields(content_type: &str, bytes: &[u8]) -> Vec<String> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let json = matches!(
        media,
        "" | "application/json"
            | "*/*"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
            | "application/json-patch+json"
    );
    if json { krust_api::fieldcheck::duplicate_fields(bytes) } else { Vec::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_bodies_decode_and_garbage_is_a_bad_request() {
        assert_eq!(
            decode("application/json", br#"{"a":1}"#).ok(),
            Some(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            decode("application/yaml", b"a: 1\nb: [x]\n").ok(),
            Some(serde_json::json!({"a": 1, "b": ["x"]}))
        );
        assert_eq!(decode("application/json", b"{nope").map_err(|e| e.code()), Err(400));
        assert_eq!(decode("application/yaml", b"a: [unclosed").map_err(|e| e.code()), Err(400));
        assert_eq!(decode("text/plain", b"x").map_err(|e| e.code()), Err(415));
    }

    #[test]
    fn protobuf_bodies_decode_and_unknown_kinds_are_unsupported() {
        const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
        // `runtime.Unknown{typeMeta: {apiVersion, kind}, raw}` around a `Namespace` whose
        // metadata has `name: "x"`.
        let envelope = |api_version: &[u8], kind: &[u8], raw: &[u8]| {
            let type_meta = [
                &[0x0a, api_version.len() as u8][..],
                api_version,
                &[0x12, kind.len() as u8],
                kind,
            ]
            .concat();
            [
                &b"k8s\0"[..],
                &[0x0a, type_meta.len() as u8],
                &type_meta,
                &[0x12, raw.len() as u8],
                raw,
            ]
            .concat()
        };
        let namespace = envelope(b"v1", b"Namespace", &[0x0a, 0x03, 0x0a, 0x01, b'x']);
        assert_eq!(
            decode(PROTOBUF, &namespace).ok(),
            Some(
                serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
            )
        );
        let widget = envelope(b"example.com/v1", b"Widget", &[]);
        assert_eq!(decode(PROTOBUF, &widget).map_err(|e| e.code()), Err(415));
        let garbage = envelope(b"v1", b"Namespace", &[0x0a, 0x7f]);
        assert_eq!(decode(PROTOBUF, &garbage).map_err(|e| e.code()), Err(400));
        assert_eq!(decode(PROTOBUF, b"{}").map_err(|e| e.code()), Err(400));
    }
}
