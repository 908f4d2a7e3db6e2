//! The frame of every protobuf body: the prefix `k8s\0` and a `runtime.Unknown` message
//! (`typeMeta` = 1 with `apiVersion` = 1 and `kind` = 2, `raw` = 2, `contentEncoding` = 3,
//! `contentType` = 4).

use prost_reflect::DynamicMessage;

use super::{ProtobufError, schema};

/// The four bytes every Kubernetes protobuf body starts with.
pub const PREFIX: &[u8; 4] = b"k8s\0";

/// The decoded `runtime.Unknown` envelope of a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The object's `apiVersion` (`v1`, `apps/v1`, ...).
    pub api_version: String,
    /// The object's `kind`.
    pub kind: String,
    /// The object, encoded as `content_type` says.
    pub raw: Vec<u8>,
    /// How `raw` is compressed; empty when it is not.
    pub content_encoding: String,
    /// How `raw` is serialized; empty means protobuf.
    pub content_type: String,
}

impl Envelope {
    /// Checks the prefix and decodes the envelope after it.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtobufError> {
        let rest = bytes.strip_prefix(PREFIX).ok_or(ProtobufError::MissingPrefix)?;
        let descriptor = schema::pool()
            .and_then(|pool| pool.get_message_by_name("apimachinery.pkg.runtime.Unknown"))
            .ok_or_else(|| ProtobufError::Envelope("no schema for runtime.Unknown".into()))?;
        let unknown = DynamicMessage::decode(descriptor, rest)
            .map_err(|e| ProtobufError::Envelope(e.to_string()))?;
        let type_meta = unknown.get_field_by_name("typeMeta");
        let type_meta = type_meta.as_deref().and_then(|t| t.as_message());
        let text = |message: Option<&DynamicMessage>, name: &str| {
            message
                .and_then(|m| m.get_field_by_name(name))
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        };
        let envelope = Self {
            api_version: text(type_meta, "apiVersion"),
            kind: text(type_meta, "kind"),
            raw: unknown
                .get_field_by_name("raw")
                .and_then(|v| v.as_bytes().map(|b| b.to_vec()))
                .unwrap_or_default(),
            content_encoding: text(Some(&unknown), "contentEncoding"),
            content_type: text(Some(&unknown), "contentType"),
        };
        if envelope.api_version.is_empty() || envelope.kind.is_empty() {
            return Err(ProtobufError::MissingTypeMeta);
        }
        Ok(envelope)
    }
}
