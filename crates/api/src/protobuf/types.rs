//! Upstream's messages as a compact, read-only table: what the checks of every JSON write
//! ([`crate::typecheck`], [`crate::fieldcheck`]) and field ownership
//! ([`crate::field_manager`]) read of a built-in kind's schema.
//!
//! It is read straight from the encoded descriptor set ([`super::schema`]), each name a slice
//! of the set's bytes, beside the ownership markers of the schemas' comments
//! (`+listType`, `+listMapKey`, `+mapType`, `+structType`, `+default`). prost-reflect's pool
//! holds the same messages in about ten times the memory (names, indexes and options of
//! every field, twice); it is built only for what needs reflection: protobuf bodies and the
//! OpenAPI documents. A server whose clients all speak JSON never builds it.

use std::collections::HashMap;
use std::sync::LazyLock;

use super::names::{JsonField, json_field};
use super::schema;
use super::special::Special;
use crate::openapi::docs;

/// A message of the table, by index: `Copy`, so that a walk through types is cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(u32);

/// The Go type of a scalar protobuf field (enums are `int32`s, as in Go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// `string`.
    String,
    /// `bool`.
    Bool,
    /// `int32` (and enums).
    Int32,
    /// `int64`.
    Int64,
    /// `uint32`.
    Uint32,
    /// `uint64`.
    Uint64,
    /// `float32`.
    Float32,
    /// `float64`.
    Float64,
    /// `[]byte`, base64 in JSON.
    Bytes,
}

impl Scalar {
    /// Go's name of the type.
    pub fn go_type(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Bool => "bool",
            Self::Int32 => "int32",
            Self::Int64 => "int64",
            Self::Uint32 => "uint32",
            Self::Uint64 => "uint64",
            Self::Float32 => "float32",
            Self::Float64 => "float64",
            Self::Bytes => "[]uint8",
        }
    }

    /// The scalar of protobuf field type `number` (`FieldDescriptorProto.Type`), `None` for
    /// messages and groups.
    fn of_type(number: u64) -> Option<Self> {
        Some(match number {
            1 => Self::Float64,
            2 => Self::Float32,
            3 | 16 | 18 => Self::Int64,
            4 | 6 => Self::Uint64,
            5 | 14 | 15 | 17 => Self::Int32,
            7 | 13 => Self::Uint32,
            8 => Self::Bool,
            9 => Self::String,
            12 => Self::Bytes,
            _ => return None,
        })
    }
}

/// The type of one value of a field (of a list's items, of a map's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A scalar.
    Scalar(Scalar),
    /// A message of the table.
    Message(MessageId),
}

/// How a field holds its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One value.
    Single,
    /// A list of values (`repeated`).
    List,
    /// A map from strings to values.
    Map,
}

/// A field of a message.
#[derive(Debug)]
pub struct Field {
    /// Its protobuf name.
    pub name: &'static str,
    /// Its values' type (a map's values' type).
    pub kind: Kind,
    /// Whether it holds one value, a list or a map.
    pub shape: Shape,
    /// Its comment's ownership markers, `;`-separated without their `+`.
    markers: Box<str>,
}

impl Field {
    /// The value of marker `name` (`listType=map` → `map`), the first if repeated.
    pub fn marker(&self, name: &str) -> Option<&str> {
        self.markers_named(name).next()
    }

    /// Every value of marker `name`, in order (`listMapKey` may be repeated).
    pub fn markers_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a str> {
        docs::marker_values(&self.markers, name)
    }
}

/// A message.
#[derive(Debug)]
pub struct Message {
    /// Its full name (`api.core.v1.Pod`, `api.core.v1.ConfigMap.DataEntry`).
    full_name: Box<str>,
    /// The length of its package's name, a prefix of the full name.
    package_len: usize,
    /// Its fields, sorted by name.
    fields: Box<[Field]>,
    /// Its comment's ownership markers (`structType=atomic`).
    markers: Box<str>,
}

impl Message {
    /// Its full name.
    pub fn full_name(&self) -> &str {
        &self.full_name
    }

    /// Its simple name (`Pod`).
    pub fn name(&self) -> &str {
        self.full_name.rsplit('.').next().unwrap_or_default()
    }

    /// Its package's name (`api.core.v1`).
    pub fn package(&self) -> &str {
        self.full_name.get(..self.package_len).unwrap_or_default()
    }

    /// Its fields, sorted by name.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The field of protobuf name `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        let at = self.fields.binary_search_by(|f| f.name.cmp(name)).ok()?;
        self.fields.get(at)
    }

    /// The value of its comment's marker `name`.
    pub fn marker(&self, name: &str) -> Option<&str> {
        docs::marker_values(&self.markers, name).next()
    }

    /// The JSON form of its own that its values have, if any.
    pub fn special(&self) -> Option<Special> {
        Special::of_name(self.full_name(), self.name())
    }
}

/// The markers field ownership reads; the others (`optional`, `patchStrategy`, ...) are
/// not kept.
const OWNERSHIP_MARKERS: &[&str] = &["listType", "listMapKey", "mapType", "structType", "default"];

/// The messages of the served schemas.
#[derive(Debug, Default)]
pub struct Types {
    messages: Vec<Message>,
    /// Message indices, sorted by full name.
    by_name: Vec<u32>,
}

static TYPES: LazyLock<Types> = LazyLock::new(|| Types::read(schema::DESCRIPTORS));

/// The table of the served schemas (empty only if the build wrote a broken descriptor set).
pub fn types() -> &'static Types {
    &TYPES
}

/// The message an object of `api_version` and `kind` is encoded as, if known (the same one
/// as [`schema::message`]).
pub fn message(api_version: &str, kind: &str) -> Option<MessageId> {
    schema::resolve(api_version, kind, |package, kind| {
        types().by_full_name(&format!("{package}.{kind}"))
    })
}

impl Types {
    /// Message `id`.
    pub fn get(&self, id: MessageId) -> Option<&Message> {
        self.messages.get(id.0 as usize)
    }

    /// The message of full name `name`.
    pub fn by_full_name(&self, name: &str) -> Option<MessageId> {
        let at = self
            .by_name
            .binary_search_by(|&i| {
                self.messages.get(i as usize).map_or("", |m| m.full_name()).cmp(name)
            })
            .ok()?;
        self.by_name.get(at).copied().map(MessageId)
    }

    /// The field of message `id` that JSON member `member` stands for, looking through
    /// inlined messages ([`json_field`] read backwards); `None` when the message has no such
    /// member.
    pub fn field_of_member(&self, id: MessageId, member: &str) -> Option<&Field> {
        let message = self.get(id)?;
        // Most members are the field of their own name; only the renamed and inlined ones
        // need the walk over every field.
        if let Some(field) = message.field(member)
            && json_field(message.name(), field.name) == JsonField::Named(member)
        {
            return Some(field);
        }
        message.fields().iter().find_map(|field| match json_field(message.name(), field.name) {
            JsonField::Named(name) => (name == member).then_some(field),
            JsonField::Inline => match field.kind {
                Kind::Message(inlined) => self.field_of_member(inlined, member),
                Kind::Scalar(_) => None,
            },
        })
    }

    /// Reads the messages of the served files of `descriptors`, an encoded
    /// `FileDescriptorSet`, and their ownership markers from the schemas' comments.
    fn read(descriptors: &'static [u8]) -> Self {
        let files: Vec<FileRecord> = fields(descriptors)
            .filter_map(|(number, value)| match (number, value) {
                (1, Wire::Bytes(file)) => Some(FileRecord::read(file)),
                _ => None,
            })
            .collect();
        let kept = schema::served_files(
            files.iter().map(|f| (f.name, f.package, f.dependencies.as_slice())),
        );
        let mut raw = Vec::new();
        for file in files.iter().filter(|f| kept.contains(f.name)) {
            for message in &file.messages {
                RawMessage::read(file.package.len(), file.package, message, &mut raw);
            }
        }
        let markers = ownership_markers();
        let mut by_name: Vec<u32> = (0..raw.len()).filter_map(|i| u32::try_from(i).ok()).collect();
        by_name.sort_by(|&a, &b| raw[a as usize].full_name.cmp(&raw[b as usize].full_name));
        let id_of = |type_name: &str| {
            let name = type_name.strip_prefix('.').unwrap_or(type_name);
            let at =
                by_name.binary_search_by(|&i| raw[i as usize].full_name.as_str().cmp(name)).ok()?;
            by_name.get(at).copied().map(MessageId)
        };
        // Each field's kind; map entries' values stand for the maps' entries.
        let kinds: Vec<Vec<Option<Kind>>> = raw
            .iter()
            .map(|m| {
                m.fields
                    .iter()
                    .map(|f| match Scalar::of_type(f.type_number) {
                        Some(scalar) => Some(Kind::Scalar(scalar)),
                        None => id_of(f.type_name).map(Kind::Message),
                    })
                    .collect()
            })
            .collect();
        let entry_value = |id: MessageId| -> Option<Kind> {
            let entry = raw.get(id.0 as usize).filter(|m| m.map_entry)?;
            let at = entry.fields.iter().position(|f| f.name == "value")?;
            kinds.get(id.0 as usize)?.get(at).copied().flatten()
        };
        let messages = raw
            .iter()
            .zip(&kinds)
            .map(|(message, kinds)| {
                let mut fields: Vec<Field> = message
                    .fields
                    .iter()
                    .zip(kinds)
                    .filter_map(|(field, kind)| {
                        let kind = (*kind)?;
                        let (kind, shape) = match (field.repeated, kind) {
                            (true, Kind::Message(entry)) => match entry_value(entry) {
                                Some(value) => (value, Shape::Map),
                                None => (kind, Shape::List),
                            },
                            (true, _) => (kind, Shape::List),
                            (false, _) => (kind, Shape::Single),
                        };
                        let markers = markers_of(&markers, &message.full_name, field.name);
                        Some(Field { name: field.name, kind, shape, markers })
                    })
                    .collect();
                fields.sort_by(|a, b| a.name.cmp(b.name));
                Message {
                    full_name: message.full_name.clone().into_boxed_str(),
                    package_len: message.package_len,
                    fields: fields.into_boxed_slice(),
                    markers: markers_of(&markers, &message.full_name, ""),
                }
            })
            .collect();
        Self { messages, by_name }
    }
}

/// The ownership markers of the schemas' comments, by message full name, then by field name
/// (empty for the message's own), only where there are some. The comments are inflated for
/// this and dropped again.
type Markers = HashMap<String, Vec<(String, Box<str>)>>;

fn ownership_markers() -> Markers {
    let mut markers = Markers::new();
    docs::for_each_comment(|message, field, all| {
        let kept: Vec<&str> = all
            .split(';')
            .filter(|m| OWNERSHIP_MARKERS.contains(&m.split_once('=').map_or(*m, |(n, _)| n)))
            .collect();
        if !kept.is_empty() {
            let fields = markers.entry(message.to_string()).or_default();
            fields.push((field.to_string(), kept.join(";").into_boxed_str()));
        }
    });
    markers
}

/// The markers of field `field` (empty: the message's own) of message `message`.
fn markers_of(markers: &Markers, message: &str, field: &str) -> Box<str> {
    let fields = markers.get(message).map_or(&[][..], Vec::as_slice);
    fields.iter().find(|(f, _)| f == field).map(|(_, m)| m.clone()).unwrap_or_default()
}

/// A file of the descriptor set: what deciding whether it is served needs, and its
/// messages, still encoded.
struct FileRecord {
    name: &'static str,
    package: &'static str,
    dependencies: Vec<&'static str>,
    messages: Vec<&'static [u8]>,
}

impl FileRecord {
    /// Reads an encoded `FileDescriptorProto`.
    fn read(file: &'static [u8]) -> Self {
        let mut record =
            Self { name: "", package: "", dependencies: Vec::new(), messages: Vec::new() };
        for (number, value) in fields(file) {
            match (number, value) {
                (1, Wire::Bytes(name)) => record.name = text(name),
                (2, Wire::Bytes(package)) => record.package = text(package),
                (3, Wire::Bytes(dependency)) => record.dependencies.push(text(dependency)),
                (4, Wire::Bytes(message)) => record.messages.push(message),
                _ => {}
            }
        }
        record
    }
}

/// A message as the descriptor set has it, nested ones flattened beside it.
struct RawMessage {
    full_name: String,
    package_len: usize,
    map_entry: bool,
    fields: Vec<RawField>,
}

/// A field as the descriptor set has it.
struct RawField {
    name: &'static str,
    repeated: bool,
    type_number: u64,
    type_name: &'static str,
}

impl RawMessage {
    /// Reads an encoded `DescriptorProto` in `scope` (its package, or its outer message's
    /// full name, which starts with the package, of `package_len` bytes) into `out`, then
    /// the messages nested in it.
    fn read(package_len: usize, scope: &str, message: &'static [u8], out: &mut Vec<RawMessage>) {
        let mut this = RawMessage {
            full_name: String::new(),
            package_len,
            map_entry: false,
            fields: Vec::new(),
        };
        let mut nested = Vec::new();
        for (number, value) in fields(message) {
            match (number, value) {
                (1, Wire::Bytes(name)) if scope.is_empty() => this.full_name = text(name).into(),
                (1, Wire::Bytes(name)) => this.full_name = format!("{scope}.{}", text(name)),
                (2, Wire::Bytes(field)) => this.fields.push(RawField::read(field)),
                (3, Wire::Bytes(inner)) => nested.push(inner),
                // `MessageOptions.map_entry`
                (7, Wire::Bytes(options)) => {
                    this.map_entry = fields(options).any(|f| f == (7, Wire::Varint(1)));
                }
                _ => {}
            }
        }
        let scope = this.full_name.clone();
        out.push(this);
        for inner in nested {
            RawMessage::read(package_len, &scope, inner, out);
        }
    }
}

impl RawField {
    /// Reads an encoded `FieldDescriptorProto`.
    fn read(field: &'static [u8]) -> Self {
        let mut this = RawField { name: "", repeated: false, type_number: 0, type_name: "" };
        for (number, value) in fields(field) {
            match (number, value) {
                (1, Wire::Bytes(name)) => this.name = text(name),
                (4, Wire::Varint(label)) => this.repeated = label == 3,
                (5, Wire::Varint(type_number)) => this.type_number = type_number,
                (6, Wire::Bytes(type_name)) => this.type_name = text(type_name),
                _ => {}
            }
        }
        this
    }
}

/// A string of the descriptor set (names are ASCII; anything else reads as empty).
fn text(bytes: &'static [u8]) -> &'static str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// A field's value on the wire, as far as descriptors need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of an encoded message, in order: (number, value). A malformed message ends
/// the walk where it stops making sense.
fn fields(mut data: &[u8]) -> impl Iterator<Item = (u32, Wire<'_>)> {
    std::iter::from_fn(move || {
        let key = read_varint(&mut data)?;
        let number = u32::try_from(key >> 3).ok()?;
        let value = match key & 7 {
            0 => Wire::Varint(read_varint(&mut data)?),
            1 | 5 => {
                let width = if key & 7 == 1 { 8 } else { 4 };
                data = data.get(width..)?;
                Wire::Fixed
            }
            2 => {
                let len = usize::try_from(read_varint(&mut data)?).ok()?;
                let (bytes, rest) = (data.get(..len)?, data.get(len..)?);
                data = rest;
                Wire::Bytes(bytes)
            }
            _ => return None,
        };
        Some((number, value))
    })
}

/// Reads a base-128 varint off the front of `data`.
fn read_varint(data: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = data.split_first()?;
        *data = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn message_of(api_version: &str, kind: &str) -> &'static Message {
        types().get(message(api_version, kind).unwrap()).unwrap()
    }

    #[test]
    fn the_table_has_the_pools_messages_and_fields() {
        let pool = schema::pool().unwrap();
        let mut messages = 0;
        for descriptor in pool.all_messages() {
            messages += 1;
            let id = types().by_full_name(descriptor.full_name()).unwrap();
            let message = types().get(id).unwrap();
            assert_eq!(message.name(), descriptor.name());
            assert_eq!(message.package(), descriptor.package_name());
            assert_eq!(message.fields().len(), descriptor.fields().len(), "{}", message.full_name);
            for field in descriptor.fields() {
                let ours = message.field(field.name()).unwrap();
                let shape = if field.is_map() {
                    Shape::Map
                } else if field.is_list() {
                    Shape::List
                } else {
                    Shape::Single
                };
                assert_eq!(ours.shape, shape, "{}", field.full_name());
                if let (prost_reflect::Kind::Message(m), Kind::Message(id), false) =
                    (field.kind(), ours.kind, field.is_map())
                {
                    assert_eq!(types().get(id).unwrap().full_name(), m.full_name());
                }
            }
        }
        assert_eq!(messages, types().messages.len());
        assert!(messages > 500, "{messages}");
    }

    #[test]
    fn kinds_shapes_and_markers() {
        let config_map = message_of("v1", "ConfigMap");
        assert_eq!(config_map.package(), "api.core.v1");
        let data = config_map.field("data").unwrap();
        assert_eq!((data.kind, data.shape), (Kind::Scalar(Scalar::String), Shape::Map));
        let binary = config_map.field("binaryData").unwrap();
        assert_eq!((binary.kind, binary.shape), (Kind::Scalar(Scalar::Bytes), Shape::Map));
        let pod_spec = types().by_full_name("api.core.v1.PodSpec").unwrap();
        let containers = types().field_of_member(pod_spec, "containers").unwrap();
        assert_eq!(containers.shape, Shape::List);
        assert_eq!(containers.marker("listType"), Some("map"));
        assert_eq!(containers.markers_named("listMapKey").collect::<Vec<_>>(), ["name"]);
        let selector = types().by_full_name("apimachinery.pkg.apis.meta.v1.LabelSelector");
        assert_eq!(types().get(selector.unwrap()).unwrap().marker("structType"), Some("atomic"));
        // Inlined: a volume's `configMap` is a field of its `volumeSource`.
        let volume = types().by_full_name("api.core.v1.Volume").unwrap();
        assert_eq!(types().field_of_member(volume, "configMap").unwrap().name, "configMap");
        assert!(types().field_of_member(volume, "volumeSource").is_none());
        // Renamed.
        let webhooks = message("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration");
        assert_eq!(
            types().field_of_member(webhooks.unwrap(), "webhooks").unwrap().name,
            "Webhooks"
        );
        assert!(message_of("v1", "Status").special().is_none());
        let time = types().by_full_name("apimachinery.pkg.apis.meta.v1.Time").unwrap();
        assert_eq!(types().get(time).unwrap().special(), Some(Special::Time));
    }

    #[test]
    fn a_malformed_set_reads_as_far_as_it_goes() {
        assert_eq!(fields(&[0x0a, 0x05, b'a']).count(), 0);
        assert_eq!(fields(&[0x08, 0x96, 0x01]).collect::<Vec<_>>(), [(1, Wire::Varint(150))]);
        assert!(Types::read(&[0xff, 0xff]).messages.is_empty());
    }
}
