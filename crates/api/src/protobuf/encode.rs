//! Objects encoded in the Kubernetes protobuf form, for responses to clients that accept
//! `application/vnd.kubernetes.protobuf` (client-go and kubectl ask for it for built-in kinds).
//!
//! The reverse of [`super::decode`]: the JSON object, as the server serves it, is walked
//! against its kind's upstream message ([`schema`]), with the JSON names of
//! [`super::names`] and the special forms of [`Special`], and written as upstream's Go code
//! writes it:
//! - fields in field-number order, map entries sorted by key (the output is deterministic);
//! - a [`Special`] type as its message: a time as `seconds` and `nanos` (a `Time` keeps
//!   whole seconds, a `MicroTime` microseconds), a quantity as its `string`, an int-or-string
//!   as all three of `type`, `intVal` and `strVal`, a duration as nanoseconds, a raw extension
//!   or `fieldsV1` as the bytes of its JSON (as upstream keeps a `RawExtension` that came as
//!   JSON), a string list as its `items`;
//! - an inlined Go struct ([`super::names::JsonField::Inline`]) as its message field, built from
//!   the members of the parent object that belong to it.
//!
//! What the wire carries is what the JSON has: a member that is absent, or `null`, is not
//! written (Go omits unset pointer fields), except a `null` time or raw extension, which is
//! written as an empty message, the form Go gives a zero time and an empty extension (and
//! which decodes as `null` again). Empty strings, `false` and `0` are written when present.
//! Inside lists and maps a `null` is the element type's zero value, as Go decodes it.
//!
//! Protobuf can only carry what the message has fields for: JSON members without a field in
//! the kind's message are dropped, `apiVersion` and `kind` included (they travel in the
//! envelope, and list items have none, as upstream's protobuf lists). An object with members
//! that are not in upstream's schema (a newer field than the schemas, a typo kept by a
//! non-strict write) loses them in protobuf; such members are not expected in objects this
//! server has validated.
//!
//! # Bodies, lists and watches
//!
//! - [`encode_object`]: a whole body, `k8s\0` and the `runtime.Unknown` envelope around the
//!   message ([`encode_message`]), written as upstream writes it: `typeMeta`, `raw`, and an
//!   empty `contentEncoding` and `contentType`.
//! - [`ListEncoder`]: a list body streamed item by item, from each item's encoded message;
//!   the envelope's `raw` is length-delimited, so the items' lengths are given first
//!   ([`encoded_len`] computes one without building the bytes). Upstream streams protobuf
//!   lists the same way (apimachinery `pkg/runtime/serializer/protobuf/collections.go`,
//!   `streamingEncodeUnknownList`, behind the `StreamingCollectionsEncodingToProtobuf` gate).
//! - [`encode_watch_event`]: one frame of a protobuf watch (media type [`WATCH_MEDIA_TYPE`]).
//!   Upstream frames a protobuf watch with its stream serializer, apimachinery's
//!   `protobuf.RawSerializer`, and `protobuf.LengthDelimitedFramer` (`serializer/
//!   codec_factory.go`): each frame is a four-byte big-endian length and then a
//!   `meta.k8s.io/v1 WatchEvent` message *without* the `k8s\0` prefix or an envelope (the
//!   raw serializer writes the bare message). The event's `object` is a `RawExtension` whose
//!   `raw` is the object as a whole protobuf body, *with* the `k8s\0` prefix and envelope
//!   (apiserver `pkg/endpoints/handlers/response.go`, `watchEncoder.doEncode`, encodes the
//!   object with the negotiated serializer; client-go `rest/watch/decoder.go` decodes it
//!   with the protobuf serializer, which requires the prefix). An `ERROR` event's object is
//!   the `Status`.
//!
//! # Tables
//!
//! Upstream has no protobuf form of `meta.k8s.io/v1 Table`: the Go type is marked
//! `+protobuf=false` (apimachinery `pkg/apis/meta/v1/types.go`), so there is no message in
//! the descriptors, and [`encode_object`] answers [`ProtobufError::UnknownKind`] for it. The
//! API server never gets that far: `RequestScope.AllowsMediaTypeTransform` (apiserver
//! `pkg/endpoints/handlers/rest.go`) allows the `as=Table` transform only for
//! `application/json` and `application/yaml`, so an `Accept` clause asking for a Table in
//! protobuf is skipped during negotiation, and when no other clause matches the answer is
//! 406 Not Acceptable. `PartialObjectMetadata` and `PartialObjectMetadataList` do have
//! messages and are encoded as any kind.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::DateTime;
use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use super::envelope::PREFIX;
use super::names::{JsonField, json_field};
use super::special::Special;
use super::{ProtobufError, schema};

/// The media type of a protobuf watch stream, as upstream answers it.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// Encodes `object`, an object of `api_version` and `kind`, as its kind's upstream protobuf
/// message: the envelope's `raw`, without the prefix or the envelope.
pub fn encode_message(
    api_version: &str,
    kind: &str,
    object: &Value,
) -> Result<Vec<u8>, ProtobufError> {
    let (descriptor, members) = prepare(api_version, kind, object)?;
    let mut out = Vec::new();
    write_members(&mut out, &descriptor, members).map_err(|f| f.error(api_version, kind))?;
    Ok(out)
}

/// The length of [`encode_message`]'s bytes for the same arguments, computed without
/// building them (for the item lengths a [`ListEncoder`] declares up front).
pub fn encoded_len(api_version: &str, kind: &str, object: &Value) -> Result<usize, ProtobufError> {
    let (descriptor, members) = prepare(api_version, kind, object)?;
    let mut counter = Counter(0);
    write_members(&mut counter, &descriptor, members).map_err(|f| f.error(api_version, kind))?;
    Ok(counter.0)
}

/// Encodes `object` as a whole protobuf body: `k8s\0`, then the `runtime.Unknown` envelope
/// with the object's `apiVersion` and `kind` and the message ([`encode_message`]) as `raw`.
pub fn encode_object(object: &Value) -> Result<Vec<u8>, ProtobufError> {
    let text = |name: &str| object.get(name).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if api_version.is_empty() || kind.is_empty() {
        return Err(ProtobufError::Encode {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            message: "the object has no apiVersion or no kind".into(),
        });
    }
    let (descriptor, members) = prepare(api_version, kind, object)?;
    let layout = layout()?;
    let mut out = Vec::new();
    write_envelope(&mut out, layout, api_version, kind, |out| {
        write_members(out, &descriptor, members)
    })
    .map_err(|f| f.error(api_version, kind))?;
    Ok(out)
}

/// Wraps `message`, an already encoded message of `api_version` and `kind` (from
/// [`encode_message`], or a cache of its results), in the prefix and envelope: the bytes
/// [`encode_object`] writes for the object.
pub fn encode_envelope(
    api_version: &str,
    kind: &str,
    message: &[u8],
) -> Result<Vec<u8>, ProtobufError> {
    let layout = layout()?;
    let mut out = Vec::with_capacity(message.len() + api_version.len() + kind.len() + 24);
    write_envelope(&mut out, layout, api_version, kind, |out| {
        out.put(message);
        Ok(())
    })
    .map_err(|f| f.error(api_version, kind))?;
    Ok(out)
}

/// Encodes one event of a protobuf watch as its frame on the wire: the four-byte big-endian
/// length of a `WatchEvent` message, then the message, whose `type` is `event_type`
/// (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`) and whose `object` holds `object`
/// as a whole protobuf body ([`encode_object`]). See the module documentation for
/// upstream's framing.
pub fn encode_watch_event(event_type: &str, object: &Value) -> Result<Vec<u8>, ProtobufError> {
    watch_event_frame(event_type, &encode_object(object)?)
}

/// The frame of a watch event whose object is already encoded: `body` is the object's whole
/// protobuf body, prefix and envelope included ([`encode_object`], [`encode_envelope`]).
pub fn watch_event_frame(event_type: &str, body: &[u8]) -> Result<Vec<u8>, ProtobufError> {
    let layout = layout()?;
    let mut out = Vec::with_capacity(body.len() + event_type.len() + 16);
    out.put(&[0; 4]);
    tag(&mut out, layout.event_type, LEN);
    bytes(&mut out, event_type.as_bytes());
    tag(&mut out, layout.event_object, LEN);
    out.delimited(|out| {
        tag(out, layout.extension_raw, LEN);
        bytes(out, body);
        Ok(())
    })
    .map_err(|f| f.error("meta.k8s.io/v1", "WatchEvent"))?;
    let length = u32::try_from(out.len() - 4).map_err(|_| ProtobufError::Encode {
        api_version: "meta.k8s.io/v1".into(),
        kind: "WatchEvent".into(),
        message: format!("the event is {} bytes, more than a frame can declare", out.len() - 4),
    })?;
    out[..4].copy_from_slice(&length.to_be_bytes());
    Ok(out)
}

/// Encodes a whole list body from its metadata and its items' encoded messages (in one
/// buffer; [`ListEncoder`] streams the same bytes).
pub fn encode_list<I: AsRef<[u8]>>(
    api_version: &str,
    kind: &str,
    metadata: &Value,
    items: &[I],
) -> Result<Vec<u8>, ProtobufError> {
    let mut list =
        ListEncoder::new(api_version, kind, metadata, items.iter().map(|i| i.as_ref().len()))?;
    let mut out = Vec::with_capacity(list.encoded_len());
    out.extend_from_slice(list.head());
    for item in items {
        out.extend(list.item_header(item.as_ref().len())?);
        out.extend_from_slice(item.as_ref());
    }
    out.extend(list.finish()?);
    Ok(out)
}

/// A list body (`PodList`, `ConfigMapList`, ...) written piece by piece, for lists streamed
/// from per-item encodings without holding the whole body.
///
/// The envelope's `raw` (the list message) is length-delimited, so its length, and with it
/// every item's, must be known before the first byte: the encoder is made with the list's
/// metadata (the `ListMeta` JSON) and the length of each item's message ([`encoded_len`], or
/// the length of cached [`encode_message`] bytes). It then gives [`ListEncoder::head`] (the
/// prefix, the envelope up to `raw`, and the list's metadata), the header of each item
/// ([`ListEncoder::item_header`], to be followed by the item's message) and, after the last
/// item, the envelope's end ([`ListEncoder::finish`]). The field numbers of `metadata` and
/// `items` come from the list kind's message.
#[derive(Debug, Clone)]
pub struct ListEncoder {
    /// The prefix, the envelope up to `raw`'s content, and the `metadata` field.
    head: Vec<u8>,
    /// The envelope's fields after `raw`.
    tail: Vec<u8>,
    /// The field number of `items`.
    items: u32,
    /// The declared length of each item's message.
    lengths: Vec<usize>,
    /// How many items have had their header.
    written: usize,
    /// The length of the whole body.
    total: usize,
    /// The list's `apiVersion`, for errors.
    api_version: String,
    /// The list's `kind`, for errors.
    kind: String,
}

impl ListEncoder {
    /// An encoder of a list of `api_version` and `kind` (the list kind, `ConfigMapList`),
    /// whose metadata is `metadata` (a `ListMeta` object, or `null` for an empty one) and
    /// whose items' messages have the lengths `item_lengths`, in order.
    pub fn new(
        api_version: &str,
        kind: &str,
        metadata: &Value,
        item_lengths: impl IntoIterator<Item = usize>,
    ) -> Result<Self, ProtobufError> {
        let fail = |message: String| ProtobufError::Encode {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            message,
        };
        let descriptor =
            schema::message(api_version, kind).ok_or_else(|| unknown(api_version, kind))?;
        let field = |name: &str| {
            descriptor
                .get_field_by_name(name)
                .ok_or_else(|| fail(format!("the message has no {name}")))
        };
        let (meta_field, items_field) = (field("metadata")?, field("items")?);
        let Kind::Message(list_meta) = meta_field.kind() else {
            return Err(fail("its metadata is not a message".into()));
        };
        if list_meta.name() != "ListMeta" || meta_field.is_list() {
            return Err(fail("its metadata is not a ListMeta".into()));
        }
        if !items_field.is_list() || !matches!(items_field.kind(), Kind::Message(_)) {
            return Err(fail("its items are not a repeated message".into()));
        }
        let empty = Map::new();
        let members = match metadata {
            Value::Object(members) => members,
            Value::Null => &empty,
            _ => return Err(fail("metadata: expected an object".into())),
        };
        let mut list_meta_bytes = Vec::new();
        tag(&mut list_meta_bytes, meta_field.number(), LEN);
        list_meta_bytes
            .delimited(|out| write_members(out, &list_meta, members))
            .map_err(|f| f.at("metadata").error(api_version, kind))?;

        let lengths: Vec<usize> = item_lengths.into_iter().collect();
        let header = tag_len(items_field.number(), LEN);
        let raw_len = lengths.iter().fold(list_meta_bytes.len(), |total, len| {
            total + header + varint_len(*len as u64) + len
        });
        let layout = layout()?;
        let mut head = Vec::with_capacity(list_meta_bytes.len() + 32);
        head.put(PREFIX);
        write_type_meta(&mut head, layout, api_version, kind);
        tag(&mut head, layout.unknown_raw, LEN);
        head.varint(raw_len as u64);
        head.put(&list_meta_bytes);
        let mut tail = Vec::with_capacity(4);
        write_envelope_tail(&mut tail, layout);
        let total = head.len() + raw_len - list_meta_bytes.len() + tail.len();
        Ok(Self {
            head,
            tail,
            items: items_field.number(),
            lengths,
            written: 0,
            total,
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        })
    }

    /// The length of the whole body (for `Content-Length`).
    pub fn encoded_len(&self) -> usize {
        self.total
    }

    /// The bytes before the first item: the prefix, the envelope up to the list message, and
    /// the list's metadata.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The bytes before the next item's message, which is `message_len` bytes long: the
    /// `items` field's tag and length. An error when the length is not the one declared for
    /// that item, or when every declared item was already written.
    pub fn item_header(&mut self, message_len: usize) -> Result<Vec<u8>, ProtobufError> {
        let index = self.written;
        match self.lengths.get(index) {
            Some(declared) if *declared == message_len => {}
            Some(declared) => {
                return Err(self.fail(format!(
                    "item {index} is {message_len} bytes long, but {declared} were declared"
                )));
            }
            None => {
                return Err(self.fail(format!("only {} items were declared", self.lengths.len())));
            }
        }
        self.written += 1;
        let mut header = Vec::with_capacity(6);
        tag(&mut header, self.items, LEN);
        header.varint(message_len as u64);
        Ok(header)
    }

    /// The bytes after the last item: the envelope's remaining fields. An error when fewer
    /// items were written than declared.
    pub fn finish(self) -> Result<Vec<u8>, ProtobufError> {
        if self.written != self.lengths.len() {
            return Err(self.fail(format!(
                "{} items were declared, {} written",
                self.lengths.len(),
                self.written
            )));
        }
        Ok(self.tail)
    }

    /// An encoding error of this list.
    fn fail(&self, message: String) -> ProtobufError {
        ProtobufError::Encode {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            message,
        }
    }
}

/// The message of `api_version` and `kind`, and the members of `object`.
fn prepare<'v>(
    api_version: &str,
    kind: &str,
    object: &'v Value,
) -> Result<(MessageDescriptor, &'v Map<String, Value>), ProtobufError> {
    let descriptor =
        schema::message(api_version, kind).ok_or_else(|| unknown(api_version, kind))?;
    match object {
        Value::Object(members) => Ok((descriptor, members)),
        _ => Err(ProtobufError::Encode {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            message: "the object is not a JSON object".into(),
        }),
    }
}

/// The error for a kind with no known message.
fn unknown(api_version: &str, kind: &str) -> ProtobufError {
    ProtobufError::UnknownKind { api_version: api_version.to_owned(), kind: kind.to_owned() }
}

/// Why a value could not be encoded, and where it is.
#[derive(Debug)]
struct Failure {
    /// What is wrong with the value.
    message: String,
    /// The value's path, innermost segment first (`[0]`, `containers`, `spec`).
    path: Vec<String>,
}

impl Failure {
    /// A failure of the value being encoded.
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), path: Vec::new() }
    }

    /// The same failure, seen from the member or index `segment` of the enclosing value.
    fn at(mut self, segment: impl Into<String>) -> Self {
        self.path.push(segment.into());
        self
    }

    /// The error of an object of `api_version` and `kind`.
    fn error(self, api_version: &str, kind: &str) -> ProtobufError {
        let mut path = String::new();
        for segment in self.path.iter().rev() {
            if !path.is_empty() && !segment.starts_with('[') {
                path.push('.');
            }
            path.push_str(segment);
        }
        let message =
            if path.is_empty() { self.message } else { format!("{path}: {}", self.message) };
        ProtobufError::Encode {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            message,
        }
    }
}

/// Where encoded bytes go: a buffer, or a counter of their length.
trait Sink {
    /// Writes `bytes` as they are.
    fn put(&mut self, bytes: &[u8]);
    /// Writes `value` as a base-128 varint.
    fn varint(&mut self, value: u64);
    /// Writes the length of what `content` writes, then that.
    fn delimited(
        &mut self,
        content: impl FnOnce(&mut Self) -> Result<(), Failure>,
    ) -> Result<(), Failure>;
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.push(value as u8);
    }

    /// One byte is set aside for the length, enough below 128 bytes; a longer content is
    /// moved up to make room for its length.
    fn delimited(
        &mut self,
        content: impl FnOnce(&mut Self) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let at = self.len();
        self.push(0);
        content(self)?;
        let len = self.len() - at - 1;
        if len < 0x80 {
            self[at] = len as u8;
        } else {
            let mut length = Vec::with_capacity(10);
            length.varint(len as u64);
            self.splice(at..at + 1, length);
        }
        Ok(())
    }
}

/// A sink that only counts.
struct Counter(usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }

    fn varint(&mut self, value: u64) {
        self.0 += varint_len(value);
    }

    fn delimited(
        &mut self,
        content: impl FnOnce(&mut Self) -> Result<(), Failure>,
    ) -> Result<(), Failure> {
        let before = std::mem::replace(&mut self.0, 0);
        content(self)?;
        let len = self.0;
        self.0 = before + varint_len(len as u64) + len;
        Ok(())
    }
}

/// The length of `value` as a varint.
fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Wire type: varint.
const VARINT: u32 = 0;
/// Wire type: eight bytes.
const FIXED64: u32 = 1;
/// Wire type: length-delimited.
const LEN: u32 = 2;
/// Wire type: four bytes.
const FIXED32: u32 = 5;

/// Writes the tag of field `number` with wire type `wire`.
fn tag(sink: &mut impl Sink, number: u32, wire: u32) {
    sink.varint((u64::from(number) << 3) | u64::from(wire));
}

/// The length of a tag.
fn tag_len(number: u32, wire: u32) -> usize {
    varint_len((u64::from(number) << 3) | u64::from(wire))
}

/// Writes length-delimited `data` (after its tag).
fn bytes(sink: &mut impl Sink, data: &[u8]) {
    sink.varint(data.len() as u64);
    sink.put(data);
}

/// Field numbers of the envelope and of the watch event, from the descriptors.
#[derive(Debug)]
struct Layout {
    /// `runtime.Unknown.typeMeta`.
    unknown_type_meta: u32,
    /// `runtime.Unknown.raw`.
    unknown_raw: u32,
    /// `runtime.Unknown.contentEncoding`.
    unknown_content_encoding: u32,
    /// `runtime.Unknown.contentType`.
    unknown_content_type: u32,
    /// `runtime.TypeMeta.apiVersion`.
    type_meta_api_version: u32,
    /// `runtime.TypeMeta.kind`.
    type_meta_kind: u32,
    /// `meta/v1.WatchEvent.type`.
    event_type: u32,
    /// `meta/v1.WatchEvent.object`.
    event_object: u32,
    /// `runtime.RawExtension.raw`.
    extension_raw: u32,
}

/// The layout, looked up once.
static LAYOUT: LazyLock<Result<Layout, String>> = LazyLock::new(|| {
    let pool = schema::pool().ok_or("no protobuf schemas")?;
    let number = |message: &str, field: &str| {
        pool.get_message_by_name(message)
            .and_then(|m| m.get_field_by_name(field))
            .map(|f| f.number())
            .ok_or_else(|| format!("no schema for {message}.{field}"))
    };
    let runtime = "apimachinery.pkg.runtime";
    let event = "apimachinery.pkg.apis.meta.v1.WatchEvent";
    Ok(Layout {
        unknown_type_meta: number(&format!("{runtime}.Unknown"), "typeMeta")?,
        unknown_raw: number(&format!("{runtime}.Unknown"), "raw")?,
        unknown_content_encoding: number(&format!("{runtime}.Unknown"), "contentEncoding")?,
        unknown_content_type: number(&format!("{runtime}.Unknown"), "contentType")?,
        type_meta_api_version: number(&format!("{runtime}.TypeMeta"), "apiVersion")?,
        type_meta_kind: number(&format!("{runtime}.TypeMeta"), "kind")?,
        event_type: number(event, "type")?,
        event_object: number(event, "object")?,
        extension_raw: number(&format!("{runtime}.RawExtension"), "raw")?,
    })
});

/// The layout, or the error of broken descriptors.
fn layout() -> Result<&'static Layout, ProtobufError> {
    LAYOUT.as_ref().map_err(|e| ProtobufError::Envelope(e.clone()))
}

/// Writes the prefix and the envelope around the message that `message` writes.
fn write_envelope(
    out: &mut Vec<u8>,
    layout: &Layout,
    api_version: &str,
    kind: &str,
    message: impl FnOnce(&mut Vec<u8>) -> Result<(), Failure>,
) -> Result<(), Failure> {
    out.put(PREFIX);
    write_type_meta(out, layout, api_version, kind);
    tag(out, layout.unknown_raw, LEN);
    out.delimited(message)?;
    write_envelope_tail(out, layout);
    Ok(())
}

/// Writes the envelope's `typeMeta`, both of its strings written, as Go writes them.
fn write_type_meta(out: &mut Vec<u8>, layout: &Layout, api_version: &str, kind: &str) {
    tag(out, layout.unknown_type_meta, LEN);
    let len = tag_len(layout.type_meta_api_version, LEN)
        + varint_len(api_version.len() as u64)
        + api_version.len()
        + tag_len(layout.type_meta_kind, LEN)
        + varint_len(kind.len() as u64)
        + kind.len();
    out.varint(len as u64);
    tag(out, layout.type_meta_api_version, LEN);
    bytes(out, api_version.as_bytes());
    tag(out, layout.type_meta_kind, LEN);
    bytes(out, kind.as_bytes());
}

/// Writes the envelope's fields after `raw`: an empty `contentEncoding` and `contentType`
/// (Go writes them although empty).
fn write_envelope_tail(out: &mut Vec<u8>, layout: &Layout) {
    tag(out, layout.unknown_content_encoding, LEN);
    bytes(out, b"");
    tag(out, layout.unknown_content_type, LEN);
    bytes(out, b"");
}

/// A field as the encoder sees it: its descriptor and its JSON member's name, `None` when
/// the field's message is inlined in the object.
struct Member {
    /// The field.
    field: FieldDescriptor,
    /// Its JSON name, if not inlined.
    json: Option<String>,
}

/// The members of every message, in field-number order, by the message's full name: found
/// once rather than for every object.
static MEMBERS: LazyLock<HashMap<String, Vec<Member>>> = LazyLock::new(|| {
    let Some(pool) = schema::pool() else { return HashMap::new() };
    pool.all_messages().map(|m| (m.full_name().to_owned(), members_of(&m))).collect()
});

/// The members of `message`, in field-number order.
fn members_of(message: &MessageDescriptor) -> Vec<Member> {
    message
        .fields()
        .map(|field| {
            let json = match json_field(message.name(), field.name()) {
                JsonField::Named(name) => Some(name.to_owned()),
                JsonField::Inline => None,
            };
            Member { field, json }
        })
        .collect()
}

/// Writes the fields of `message` that `object` has members for, in field-number order.
fn write_members<S: Sink>(
    sink: &mut S,
    message: &MessageDescriptor,
    object: &Map<String, Value>,
) -> Result<(), Failure> {
    match MEMBERS.get(message.full_name()) {
        Some(members) => write_fields(sink, members, object),
        None => write_fields(sink, &members_of(message), object),
    }
}

/// Writes the fields of `members` that `object` has members for.
fn write_fields<S: Sink>(
    sink: &mut S,
    members: &[Member],
    object: &Map<String, Value>,
) -> Result<(), Failure> {
    for Member { field, json } in members {
        match json {
            Some(name) => {
                if let Some(value) = object.get(name) {
                    write_field(sink, field, value).map_err(|f| f.at(name.as_str()))?;
                }
            }
            None => {
                let Kind::Message(inlined) = field.kind() else {
                    return Err(Failure::new(format!("inlined {} is not a message", field.name())));
                };
                // Go writes embedded structs whether set or not.
                tag(sink, field.number(), LEN);
                sink.delimited(|sink| write_members(sink, &inlined, object))?;
            }
        }
    }
    Ok(())
}

/// Writes field `field` holding `value`, a member of the JSON object.
fn write_field<S: Sink>(
    sink: &mut S,
    field: &FieldDescriptor,
    value: &Value,
) -> Result<(), Failure> {
    if field.is_map() {
        return match value {
            Value::Null => Ok(()),
            Value::Object(entries) => write_map(sink, field, entries),
            other => Err(mismatch("an object", other)),
        };
    }
    if field.is_list() {
        return match value {
            Value::Null => Ok(()),
            Value::Array(items) if field.is_packed() => write_packed(sink, field, items),
            Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
                write_value(sink, field.number(), &field.kind(), item)
                    .map_err(|f| f.at(format!("[{i}]")))
            }),
            other => Err(mismatch("an array", other)),
        };
    }
    if value.is_null() {
        // Go writes its zero time and an empty extension as an empty message, which decodes
        // as null; any other null is an unset field.
        let kind = field.kind();
        let empty = matches!(
            kind.as_message().and_then(Special::of),
            Some(Special::Time | Special::MicroTime | Special::RawJson)
        );
        if empty {
            tag(sink, field.number(), LEN);
            sink.varint(0);
        }
        return Ok(());
    }
    write_value(sink, field.number(), &field.kind(), value)
}

/// Writes the entries of map field `field`, sorted by key as Go sorts them.
fn write_map<S: Sink>(
    sink: &mut S,
    field: &FieldDescriptor,
    entries: &Map<String, Value>,
) -> Result<(), Failure> {
    let Kind::Message(entry) = field.kind() else {
        return Err(Failure::new("a map field is not a message"));
    };
    let (key_field, value_field) = (entry.map_entry_key_field(), entry.map_entry_value_field());
    let mut sorted: Vec<(&String, &Value)> = entries.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (key, value) in sorted {
        tag(sink, field.number(), LEN);
        sink.delimited(|sink| {
            let key_value = match key_field.kind() {
                Kind::String => Value::String(key.clone()),
                Kind::Bool => Value::Bool(key == "true"),
                _ => key
                    .parse::<serde_json::Number>()
                    .map(Value::Number)
                    .map_err(|_| Failure::new(format!("map key {key:?} is not a number")))?,
            };
            write_value(sink, key_field.number(), &key_field.kind(), &key_value)?;
            write_value(sink, value_field.number(), &value_field.kind(), value)
        })
        .map_err(|f| f.at(key.as_str()))?;
    }
    Ok(())
}

/// Writes packed repeated scalars: one length-delimited run of their values.
fn write_packed<S: Sink>(
    sink: &mut S,
    field: &FieldDescriptor,
    items: &[Value],
) -> Result<(), Failure> {
    if items.is_empty() {
        return Ok(());
    }
    let kind = field.kind();
    tag(sink, field.number(), LEN);
    sink.delimited(|sink| {
        items.iter().enumerate().try_for_each(|(i, item)| {
            write_scalar(sink, &kind, item).map_err(|f| f.at(format!("[{i}]")))
        })
    })
}

/// Writes field `number` of `kind` holding `value`: a set singular field, a list element or
/// a map key or value (where `null` is the zero value).
fn write_value<S: Sink>(
    sink: &mut S,
    number: u32,
    kind: &Kind,
    value: &Value,
) -> Result<(), Failure> {
    let Kind::Message(message) = kind else {
        tag(sink, number, wire_type(kind));
        return write_scalar(sink, kind, value);
    };
    tag(sink, number, LEN);
    if let Some(special) = Special::of(message) {
        return sink.delimited(|sink| write_special(sink, special, message, value));
    }
    match value {
        Value::Object(members) => sink.delimited(|sink| write_members(sink, message, members)),
        Value::Null => {
            sink.varint(0);
            Ok(())
        }
        other => Err(mismatch("an object", other)),
    }
}

/// The wire type of a scalar kind.
fn wire_type(kind: &Kind) -> u32 {
    match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => FIXED64,
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => FIXED32,
        Kind::String | Kind::Bytes | Kind::Message(_) => LEN,
        _ => VARINT,
    }
}

/// Writes the value of a scalar of `kind` (without its tag); `null` is the zero value.
fn write_scalar<S: Sink>(sink: &mut S, kind: &Kind, value: &Value) -> Result<(), Failure> {
    match kind {
        Kind::String => match value {
            Value::String(text) => bytes(sink, text.as_bytes()),
            Value::Null => bytes(sink, b""),
            other => return Err(mismatch("a string", other)),
        },
        Kind::Bytes => match value {
            Value::String(text) => {
                let data = BASE64
                    .decode(text)
                    .map_err(|e| Failure::new(format!("invalid base64 data: {e}")))?;
                bytes(sink, &data);
            }
            Value::Null => bytes(sink, b""),
            other => return Err(mismatch("a base64 string", other)),
        },
        Kind::Bool => match value {
            Value::Bool(b) => sink.varint(u64::from(*b)),
            Value::Null => sink.varint(0),
            other => return Err(mismatch("a boolean", other)),
        },
        Kind::Int32 => sink.varint(integer(value, i32::MIN.into(), i32::MAX.into())? as i64 as u64),
        Kind::Int64 => sink.varint(integer(value, i64::MIN.into(), i64::MAX.into())? as i64 as u64),
        Kind::Uint32 => sink.varint(integer(value, 0, u32::MAX.into())? as u64),
        Kind::Uint64 => sink.varint(integer(value, 0, u64::MAX.into())? as u64),
        Kind::Sint32 => {
            let n = integer(value, i32::MIN.into(), i32::MAX.into())? as i32;
            sink.varint(u64::from(((n << 1) ^ (n >> 31)) as u32));
        }
        Kind::Sint64 => {
            let n = integer(value, i64::MIN.into(), i64::MAX.into())? as i64;
            sink.varint(((n << 1) ^ (n >> 63)) as u64);
        }
        Kind::Fixed32 => sink.put(&(integer(value, 0, u32::MAX.into())? as u32).to_le_bytes()),
        Kind::Sfixed32 => {
            sink.put(&(integer(value, i32::MIN.into(), i32::MAX.into())? as i32).to_le_bytes());
        }
        Kind::Fixed64 => sink.put(&(integer(value, 0, u64::MAX.into())? as u64).to_le_bytes()),
        Kind::Sfixed64 => {
            sink.put(&(integer(value, i64::MIN.into(), i64::MAX.into())? as i64).to_le_bytes());
        }
        Kind::Float => sink.put(&(float(value)? as f32).to_le_bytes()),
        Kind::Double => sink.put(&float(value)?.to_le_bytes()),
        Kind::Enum(descriptor) => {
            let number = match value {
                Value::String(name) => descriptor
                    .get_value_by_name(name)
                    .map(|v| v.number())
                    .ok_or_else(|| Failure::new(format!("unknown enum value {name:?}")))?,
                other => integer(other, i32::MIN.into(), i32::MAX.into())? as i32,
            };
            sink.varint(number as i64 as u64);
        }
        Kind::Message(_) => return Err(Failure::new("a message where a scalar was expected")),
    }
    Ok(())
}

/// An integer within `min..=max` (`null` is 0).
fn integer(value: &Value, min: i128, max: i128) -> Result<i128, Failure> {
    let n = match value {
        Value::Null => return Ok(0),
        Value::Number(n) => n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from)),
        _ => None,
    };
    let n = n.ok_or_else(|| mismatch("an integer", value))?;
    if n < min || n > max {
        return Err(Failure::new(format!("{n} is out of range")));
    }
    Ok(n)
}

/// A number (`null` is 0).
fn float(value: &Value) -> Result<f64, Failure> {
    match value {
        Value::Null => Ok(0.0),
        Value::Number(n) => n.as_f64().ok_or_else(|| mismatch("a number", value)),
        other => Err(mismatch("a number", other)),
    }
}

/// The failure of a value that is not `expected`.
fn mismatch(expected: &str, value: &Value) -> Failure {
    let found = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    Failure::new(format!("expected {expected}, found {found}"))
}

/// Writes the fields of `message`, a message of `special`, for its JSON form `value`.
fn write_special<S: Sink>(
    sink: &mut S,
    special: Special,
    message: &MessageDescriptor,
    value: &Value,
) -> Result<(), Failure> {
    let field = |name: &str| {
        message
            .get_field_by_name(name)
            .ok_or_else(|| Failure::new(format!("{} has no field {name}", message.name())))
    };
    let put = |sink: &mut S, name: &str, value: &Value| -> Result<(), Failure> {
        let field = field(name)?;
        write_value(sink, field.number(), &field.kind(), value)
    };
    match special {
        Special::Time | Special::MicroTime => {
            let Some((seconds, nanos)) = timestamp(value, special == Special::MicroTime)? else {
                return Ok(());
            };
            put(sink, "seconds", &seconds.into())?;
            put(sink, "nanos", &nanos.into())
        }
        Special::Duration => match value {
            Value::Null => Ok(()),
            Value::String(text) => put(sink, "duration", &parse_duration(text)?.into()),
            other => Err(mismatch("a duration string", other)),
        },
        Special::IntOrString => {
            // Go writes all three fields: the type, a number (0 for a string) and a string
            // (empty for a number).
            let (zero, empty) = (Value::from(0), Value::String(String::new()));
            let (kind, int, text) = match value {
                Value::String(_) => (1, &zero, value),
                Value::Null => (0, &zero, &empty),
                number => (0, number, &empty),
            };
            put(sink, "type", &kind.into())?;
            put(sink, "intVal", int)?;
            put(sink, "strVal", text)
        }
        Special::Quantity => match value {
            Value::Null => Ok(()),
            Value::String(_) => put(sink, "string", value),
            Value::Number(n) => put(sink, "string", &Value::String(n.to_string())),
            other => Err(mismatch("a quantity", other)),
        },
        Special::RawJson => {
            if value.is_null() {
                return Ok(());
            }
            let raw = message
                .fields()
                .find(|f| matches!(f.kind(), Kind::Bytes))
                .ok_or_else(|| Failure::new(format!("{} has no bytes field", message.name())))?;
            let json = serde_json::to_vec(value).map_err(|e| Failure::new(e.to_string()))?;
            tag(sink, raw.number(), LEN);
            bytes(sink, &json);
            Ok(())
        }
        Special::StringList => match value {
            Value::Null => Ok(()),
            Value::Array(_) => {
                let items = field("items")?;
                write_field(sink, &items, value)
            }
            other => Err(mismatch("an array of strings", other)),
        },
    }
}

/// The seconds and nanoseconds of an RFC 3339 time, as Go's `ProtoTime` gives them: whole
/// seconds for a `Time`, microseconds for a `MicroTime`; `None` for `null` and Go's zero
/// time, which Go writes as an empty message.
fn timestamp(value: &Value, micro: bool) -> Result<Option<(i64, i64)>, Failure> {
    /// `0001-01-01T00:00:00Z`, Go's zero time, in Unix seconds.
    const GO_ZERO: i64 = -62_135_596_800;
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(text) => text,
        other => return Err(mismatch("an RFC 3339 time", other)),
    };
    let time = DateTime::parse_from_rfc3339(text)
        .map_err(|e| Failure::new(format!("invalid time {text:?}: {e}")))?;
    let (seconds, nanos) = (time.timestamp(), i64::from(time.timestamp_subsec_nanos()));
    if seconds == GO_ZERO && nanos == 0 {
        return Ok(None);
    }
    Ok(Some((seconds, if micro { nanos / 1_000 * 1_000 } else { 0 })))
}

/// The nanoseconds of a Go duration string (`1h30m`, `1.5s`, `-250ms`), as Go's
/// `time.ParseDuration` reads it.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    parse_duration(text).map_err(|f| f.message)
}

/// [`parse_go_duration`], failing as the encoder fails.
fn parse_duration(text: &str) -> Result<i64, Failure> {
    let invalid = || Failure::new(format!("invalid duration {text:?}"));
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let whole = &rest[..digits];
        rest = &rest[digits..];
        let mut fraction = "";
        if let Some(after) = rest.strip_prefix('.') {
            let count = after.bytes().take_while(u8::is_ascii_digit).count();
            fraction = &after[..count];
            rest = &after[count..];
        }
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(rest.len());
        let unit: u64 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(Failure::new(format!("missing unit in duration {text:?}"))),
            unit => {
                return Err(Failure::new(format!("unknown unit {unit:?} in duration {text:?}")));
            }
        };
        rest = &rest[unit_len..];
        let mut value: u64 = 0;
        for digit in whole.bytes() {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(digit - b'0')))
                .ok_or_else(invalid)?;
        }
        value = value.checked_mul(unit).ok_or_else(invalid)?;
        // Go keeps the fraction's digits while they fit, and scales them in floating point.
        let (mut numerator, mut scale) = (0u64, 1f64);
        for digit in fraction.bytes() {
            if numerator > ((1 << 63) - 1) / 10 {
                break;
            }
            let next = numerator * 10 + u64::from(digit - b'0');
            if next > 1 << 63 {
                break;
            }
            numerator = next;
            scale *= 10.0;
        }
        if numerator > 0 {
            value = value
                .checked_add((numerator as f64 * (unit as f64 / scale)) as u64)
                .ok_or_else(invalid)?;
        }
        total = total.checked_add(value).ok_or_else(invalid)?;
    }
    let limit = if negative { 1u64 << 63 } else { (1u64 << 63) - 1 };
    if total > limit {
        return Err(invalid());
    }
    Ok(if negative { (total as i64).wrapping_neg() } else { total as i64 })
}

/// Encodes `object` as a message of `message`, for tests of types that no served kind has.
#[cfg(test)]
pub(super) fn encode_as(
    message: &MessageDescriptor,
    object: &Map<String, Value>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    write_members(&mut out, message, object)
        .map_err(|f| f.error("", message.name()).to_string())?;
    Ok(out)
}
