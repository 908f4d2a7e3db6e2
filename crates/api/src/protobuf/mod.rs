//! Request bodies in the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! decoded into the JSON object a JSON client would have sent; and objects encoded in it for
//! responses, lists and watches ([`encode`]).
//!
//! A body is the four bytes `k8s\0` followed by a `runtime.Unknown` envelope ([`envelope`]):
//! the object's `apiVersion` and `kind`, and `raw`, the object itself as a protobuf message of
//! the upstream type. The message's schema comes from upstream's `generated.proto` files,
//! which the build compiles (`build.rs`, with `protox`) into a descriptor set ([`schema`]
//! picks the descriptor for an `apiVersion` and `kind`); [`json`] walks the decoded message by
//! reflection and writes the JSON; [`special`] has the few upstream types with a JSON form
//! of their own (times, quantities, int-or-string, raw extensions, ...) and [`names`] the
//! few fields whose protobuf and JSON names differ, or that JSON inlines. The checks of JSON
//! bodies and field ownership read the same schemas from a compact table of their own
//! ([`types`]), without the descriptor pool.
//!
//! Upstream's Go types decide some things that the wire does not carry; the choices:
//! - A field the sender left unset is absent on the wire and absent here.
//! - Go writes every non-pointer field, set or not; an empty string (or empty bytes) is
//!   therefore taken as unset and left out, as Go's JSON (`omitempty`) leaves it out.
//!   Numbers and booleans are kept even when zero: `replicas: 0` must stay.
//! - A message that is present is written even when empty (`status: {}`), as Go writes
//!   struct fields; an empty `Time` is `null` (Go's zero time).

pub mod encode;
pub mod envelope;
pub mod json;
pub mod names;
mod plan;
pub mod schema;
pub mod special;
mod transcode;
pub mod types;
mod wire;

#[cfg(test)]
mod encode_tests;
#[cfg(test)]
mod tests;

pub use encode::{
    ListEncoder, MessageEncoder, WATCH_MEDIA_TYPE, encode_envelope, encode_list, encode_message,
    encode_object, encode_watch_event, encoded_len, watch_event_frame,
};

use serde_json::Value;

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Why a protobuf body could not be decoded, or an object could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("the body does not start with the Kubernetes protobuf prefix \"k8s\\x00\"")]
    MissingPrefix,
    /// The `runtime.Unknown` envelope is not a valid protobuf message.
    #[error("cannot decode the protobuf envelope: {0}")]
    Envelope(String),
    /// The envelope names no `apiVersion` or no `kind`.
    #[error("the protobuf envelope has no apiVersion or no kind")]
    MissingTypeMeta,
    /// The envelope's `raw` is compressed or otherwise encoded.
    #[error("unsupported content encoding {0:?} in the protobuf envelope")]
    ContentEncoding(String),
    /// No protobuf schema is known for the object's `apiVersion` and `kind`.
    #[error("no protobuf schema is known for {api_version}, Kind={kind}")]
    UnknownKind {
        /// The envelope's `apiVersion`.
        api_version: String,
        /// The envelope's `kind`.
        kind: String,
    },
    /// The object does not decode as its kind's message, or holds a value with no JSON form.
    #[error("cannot decode {kind} ({api_version}) from protobuf: {message}")]
    Object {
        /// The envelope's `apiVersion`.
        api_version: String,
        /// The envelope's `kind`.
        kind: String,
        /// What went wrong.
        message: String,
    },
    /// The object does not fit its kind's message (a value of the wrong type, an invalid
    /// time, ...), or has no `apiVersion` or `kind` to encode it by.
    #[error("cannot encode {kind} ({api_version}) as protobuf: {message}")]
    Encode {
        /// The object's `apiVersion`.
        api_version: String,
        /// The object's `kind`.
        kind: String,
        /// What went wrong, after the path of the offending value.
        message: String,
    },
}

impl ProtobufError {
    /// Whether the body is well formed but of a kind this server has no protobuf schema for
    /// (answered 415, as any unsupported media type, rather than 400); when encoding, whether
    /// the object's kind has no protobuf form (custom resources, `Table`: answered in another
    /// media type the client accepts, or 406).
    pub fn is_unsupported_kind(&self) -> bool {
        matches!(self, Self::UnknownKind { .. })
    }
}

/// Decodes a protobuf request body into the JSON object it stands for, `apiVersion` and
/// `kind` included.
pub fn decode(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = envelope::Envelope::decode(bytes)?;
    let object_error = |message: String| ProtobufError::Object {
        api_version: envelope.api_version.clone(),
        kind: envelope.kind.clone(),
        message,
    };
    if !envelope.content_encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(envelope.content_encoding));
    }
    let media = envelope.content_type.split(';').next().unwrap_or_default().trim();
    let fields = if media.is_empty() || media == MEDIA_TYPE {
        let Some(message) = schema::message(&envelope.api_version, &envelope.kind) else {
            return Err(ProtobufError::UnknownKind {
                api_version: envelope.api_version,
                kind: envelope.kind,
            });
        };
        json::decode_message(&message, &envelope.raw).map_err(object_error)?
    } else if media == "application/json" {
        match serde_json::from_slice(&envelope.raw) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err(object_error("the embedded JSON is not an object".into())),
            Err(e) => return Err(object_error(format!("the embedded JSON is invalid: {e}"))),
        }
    } else {
        return Err(object_error(format!("unsupported content type {media:?} in the envelope")));
    };
    let mut object = serde_json::Map::with_capacity(fields.len() + 2);
    object.insert("apiVersion".into(), Value::String(envelope.api_version));
    object.insert("kind".into(), Value::String(envelope.kind));
    for (key, value) in fields {
        if key != "apiVersion" && key != "kind" {
            object.insert(key, value);
        }
    }
    Ok(Value::Object(object))
}
