//! Objects encoded in the Kubernetes protobuf form, for responses to clients that accept
//! `application/vnd.kubernetes.protobuf` (client-go and kubectl ask for it for built-in kinds).
//!
//! The reverse of [`super::decode`]: the object's JSON text, as the server keeps and serves
//! it, is read against its kind's upstream message ([`super::plan`], compiled once from the
//! [`schema`]) in one pass ([`super::transcode`]), with the JSON names of [`super::names`]
//! and the special forms of [`super::special::Special`], and written as upstream's Go code
//! writes it:
//! - fields in field-number order, map entries sorted by key (the output is deterministic);
//! - a special type as its message: a time as `seconds` and `nanos` (a `Time` keeps
//!   whole seconds, a `MicroTime` microseconds), a quantity as its `string`, an int-or-string
//!   as all three of `type`, `intVal` and `strVal`, a duration as nanoseconds, a raw extension
//!   or `fieldsV1` as the bytes of its JSON (as upstream keeps a `RawExtension` that came as
//!   JSON), a string list as its `items`;
//! - an inlined Go struct ([`super::names::JsonField::Inline`]) as its message field, built from
//!   the members of the parent object that belong to it.
//!
//! Objects held as `serde_json::Value` are written to text first; lists and watches encode
//! the cached text of each object through a [`MessageEncoder`].
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

use std::sync::LazyLock;

use prost_reflect::{Kind, MessageDescriptor};
use serde_json::Value;

use super::envelope::PREFIX;
use super::plan::{Plans, plans};
use super::transcode::{Failure, transcode};
use super::wire::{self, LEN};
use super::{ProtobufError, schema};

/// The media type of a protobuf watch stream, as upstream answers it.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// The encoder of objects of one `apiVersion` and `kind` as their message, found once for
/// the many objects of a list or a watch.
#[derive(Debug, Clone)]
pub struct MessageEncoder {
    /// The compiled messages.
    plans: &'static Plans,
    /// The kind's message.
    plan: usize,
    /// The objects' `apiVersion`, for errors.
    api_version: String,
    /// The objects' `kind`, for errors.
    kind: String,
}

impl MessageEncoder {
    /// The encoder of `kind` objects of `api_version`: [`ProtobufError::UnknownKind`] when no
    /// message is known for them.
    pub fn new(api_version: &str, kind: &str) -> Result<Self, ProtobufError> {
        let descriptor =
            schema::message(api_version, kind).ok_or_else(|| unknown(api_version, kind))?;
        let (plans, plan) = plan_of(&descriptor).ok_or_else(|| unknown(api_version, kind))?;
        Ok(Self { plans, plan, api_version: api_version.to_owned(), kind: kind.to_owned() })
    }

    /// The message of the object whose JSON text is `json`: the envelope's `raw`, without
    /// the prefix or the envelope.
    pub fn encode(&self, json: &[u8]) -> Result<Vec<u8>, ProtobufError> {
        let mut out = Vec::with_capacity(json.len());
        self.encode_into(json, &mut out)?;
        Ok(out)
    }

    /// [`MessageEncoder::encode`], appending to `out`.
    pub fn encode_into(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), ProtobufError> {
        transcode(self.plans, self.plan, json, out).map_err(|f| self.error(f))
    }

    /// The error of a failure to encode one of these objects.
    fn error(&self, failure: Failure) -> ProtobufError {
        ProtobufError::Encode {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            message: failure.describe(),
        }
    }
}

/// The plans and the id of `message`'s plan.
fn plan_of(message: &MessageDescriptor) -> Option<(&'static Plans, usize)> {
    let plans = plans()?;
    Some((plans, plans.id(message)?))
}

/// `value`'s JSON text (writing a `Value` into a buffer cannot fail).
fn json_text(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Encodes `object`, an object of `api_version` and `kind`, as its kind's upstream protobuf
/// message: the envelope's `raw`, without the prefix or the envelope.
pub fn encode_message(
    api_version: &str,
    kind: &str,
    object: &Value,
) -> Result<Vec<u8>, ProtobufError> {
    MessageEncoder::new(api_version, kind)?.encode(&json_text(object))
}

/// The length of [`encode_message`]'s bytes for the same arguments.
pub fn encoded_len(api_version: &str, kind: &str, object: &Value) -> Result<usize, ProtobufError> {
    encode_message(api_version, kind, object).map(|message| message.len())
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
    let encoder = MessageEncoder::new(api_version, kind)?;
    let json = json_text(object);
    let layout = layout()?;
    let mut out = Vec::with_capacity(json.len());
    write_envelope(&mut out, layout, api_version, kind, |out| {
        transcode(encoder.plans, encoder.plan, &json, out)
    })
    .map_err(|f| encoder.error(f))?;
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
        out.extend_from_slice(message);
        Ok::<_, Failure>(())
    })
    .map_err(|f| encode_error(api_version, kind, f))?;
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
    out.extend_from_slice(&[0; 4]);
    wire::tag(&mut out, layout.event_type, LEN);
    wire::bytes(&mut out, event_type.as_bytes());
    wire::tag(&mut out, layout.event_object, LEN);
    let object = wire::open(&mut out);
    wire::tag(&mut out, layout.extension_raw, LEN);
    wire::bytes(&mut out, body);
    wire::close(&mut out, object);
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
        let metadata = match metadata {
            Value::Object(_) => json_text(metadata),
            Value::Null => b"{}".to_vec(),
            _ => return Err(fail("metadata: expected an object".into())),
        };
        let (plans, list_meta) = plan_of(&list_meta).ok_or_else(|| unknown(api_version, kind))?;
        let mut list_meta_bytes = Vec::new();
        wire::tag(&mut list_meta_bytes, meta_field.number(), LEN);
        wire::delimited(&mut list_meta_bytes, |out| transcode(plans, list_meta, &metadata, out))
            .map_err(|f| fail(f.at("metadata").describe()))?;

        let lengths: Vec<usize> = item_lengths.into_iter().collect();
        let header = wire::tag_len(items_field.number(), LEN);
        let raw_len = lengths.iter().fold(list_meta_bytes.len(), |total, len| {
            total + header + wire::varint_len(*len as u64) + len
        });
        let layout = layout()?;
        let mut head = Vec::with_capacity(list_meta_bytes.len() + 32);
        head.extend_from_slice(PREFIX);
        write_type_meta(&mut head, layout, api_version, kind);
        wire::tag(&mut head, layout.unknown_raw, LEN);
        wire::varint(&mut head, raw_len as u64);
        head.extend_from_slice(&list_meta_bytes);
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
        wire::tag(&mut header, self.items, LEN);
        wire::varint(&mut header, message_len as u64);
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

/// The error for a kind with no known message.
fn unknown(api_version: &str, kind: &str) -> ProtobufError {
    ProtobufError::UnknownKind { api_version: api_version.to_owned(), kind: kind.to_owned() }
}

/// The error of `failure` in an object of `api_version` and `kind`.
fn encode_error(api_version: &str, kind: &str, failure: Failure) -> ProtobufError {
    ProtobufError::Encode {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        message: failure.describe(),
    }
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
fn write_envelope<E>(
    out: &mut Vec<u8>,
    layout: &Layout,
    api_version: &str,
    kind: &str,
    message: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    out.extend_from_slice(PREFIX);
    write_type_meta(out, layout, api_version, kind);
    wire::tag(out, layout.unknown_raw, LEN);
    wire::delimited(out, message)?;
    write_envelope_tail(out, layout);
    Ok(())
}

/// Writes the envelope's `typeMeta`, both of its strings written, as Go writes them.
fn write_type_meta(out: &mut Vec<u8>, layout: &Layout, api_version: &str, kind: &str) {
    wire::tag(out, layout.unknown_type_meta, LEN);
    let len = wire::tag_len(layout.type_meta_api_version, LEN)
        + wire::varint_len(api_version.len() as u64)
        + api_version.len()
        + wire::tag_len(layout.type_meta_kind, LEN)
        + wire::varint_len(kind.len() as u64)
        + kind.len();
    wire::varint(out, len as u64);
    wire::tag(out, layout.type_meta_api_version, LEN);
    wire::bytes(out, api_version.as_bytes());
    wire::tag(out, layout.type_meta_kind, LEN);
    wire::bytes(out, kind.as_bytes());
}

/// Writes the envelope's fields after `raw`: an empty `contentEncoding` and `contentType`
/// (Go writes them although empty).
fn write_envelope_tail(out: &mut Vec<u8>, layout: &Layout) {
    wire::tag(out, layout.unknown_content_encoding, LEN);
    wire::bytes(out, b"");
    wire::tag(out, layout.unknown_content_type, LEN);
    wire::bytes(out, b"");
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
    object: &serde_json::Map<String, Value>,
) -> Result<Vec<u8>, String> {
    let (plans, plan) = plan_of(message).ok_or("no plan")?;
    let json = json_text(&Value::Object(object.clone()));
    let mut out = Vec::new();
    transcode(plans, plan, &json, &mut out)
        .map_err(|f| encode_error("", message.name(), f).to_string())?;
    Ok(out)
}
