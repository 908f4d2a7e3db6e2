//! The frame of every protobuf body: the prefix `k8s\0` and a `runtime.Unknown` message
//! (`typeMeta` = 1 with `apiVersion` = 1 and `kind` = 2, `raw` = 2, `contentEncoding` = 3,
//! `contentType` = 4).

use ::protobuf::Message;
use k8s_rs_pb::apimachinery::pkg::runtime::Unknown;

use super::ProtobufError;

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
        let unknown =
            Unknown::parse_from_bytes(rest).map_err(|e| ProtobufError::Envelope(e.to_string()))?;
        let envelope = Self {
            api_version: unknown.typeMeta.apiVersion().to_owned(),
            kind: unknown.typeMeta.kind().to_owned(),
            raw: unknown.raw().to_vec(),
            content_encoding: unknown.contentEncoding().to_owned(),
            content_type: unknown.contentType().to_owned(),
        };
        if envelope.api_version.is_empty() || envelope.kind.is_empty() {
            return Err(ProtobufError::MissingTypeMeta);
        }
        Ok(envelope)
    }
}
