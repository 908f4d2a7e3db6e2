//! Each message of the schemas compiled, on first use, into what the encoder needs while it
//! reads an object's JSON: for every JSON member the field it fills (looking through inlined
//! messages, [`super::names`]), that field's number, shape and value kind, and the special
//! JSON form of the message ([`Special`]). The encoder then never touches a descriptor (no
//! name lookups, no reference counts shared between the threads that encode a list).

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use super::names::{JsonField, json_field};
use super::schema;
use super::special::Special;

/// A scalar protobuf type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Uint32,
    Uint64,
    Sint32,
    Sint64,
    Fixed32,
    Sfixed32,
    Fixed64,
    Sfixed64,
    Float,
    Double,
}

impl Scalar {
    /// The wire type its values are written with.
    pub fn wire_type(self) -> u32 {
        use super::wire::{FIXED32, FIXED64, LEN, VARINT};
        match self {
            Self::Double | Self::Fixed64 | Self::Sfixed64 => FIXED64,
            Self::Float | Self::Fixed32 | Self::Sfixed32 => FIXED32,
            Self::String | Self::Bytes => LEN,
            _ => VARINT,
        }
    }
}

/// What a field (or a list element, or a map value) holds.
#[derive(Debug, Clone)]
pub enum Value {
    /// A scalar.
    Scalar(Scalar),
    /// An enum, by its value names.
    Enum(Box<[(Box<str>, i32)]>),
    /// A message: its plan's id ([`Plans::get`]).
    Message(usize),
}

/// How many values a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One.
    Single,
    /// A list, one tag per element.
    Repeated,
    /// A list of scalars in one length-delimited run.
    Packed,
    /// A map with keys of this type (entries: key = 1, value = 2).
    Map(Scalar),
}

/// A field of a message.
#[derive(Debug, Clone)]
pub struct Field {
    /// Its number.
    pub number: u32,
    /// How many values it holds.
    pub shape: Shape,
    /// What each value is (for a map, the entry's value).
    pub value: Value,
}

/// A message field whose message's members sit in the parent's JSON object (Go's embedded
/// structs); Go writes it whether or not any of them is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InlineGroup {
    /// The group that holds it: 0 is the message itself, `n` is `groups[n - 1]`.
    pub parent: u8,
    /// Its field number in that group's message.
    pub number: u32,
}

/// The fields of a special form, by number and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecialFields {
    /// `Time`, `MicroTime`: `seconds` and `nanos`.
    Time { seconds: (u32, Scalar), nanos: (u32, Scalar), micro: bool },
    /// `Duration`: `duration` in nanoseconds.
    Duration { duration: (u32, Scalar) },
    /// `IntOrString`: `type`, `intVal`, `strVal`.
    IntOrString { kind: (u32, Scalar), int: (u32, Scalar), text: (u32, Scalar) },
    /// `Quantity`: `string`.
    Quantity { string: u32 },
    /// `RawExtension`, `FieldsV1`: the JSON's bytes.
    RawJson { raw: u32 },
    /// `Verbs`, `ExtraValue`: the strings, as `items`.
    StringList { items: u32 },
}

/// A message, compiled.
#[derive(Debug)]
pub struct MessagePlan {
    /// Its special JSON form, if it has one (then `members` is empty).
    pub special: Option<SpecialFields>,
    /// Each JSON member, sorted by name: the group it goes to and the field it fills.
    pub members: Vec<(Box<str>, u8, Field)>,
    /// Its inlined messages, in the order they were found.
    pub groups: Vec<InlineGroup>,
}

impl MessagePlan {
    /// The group and field of JSON member `name`.
    pub fn member(&self, name: &str) -> Option<(u8, &Field)> {
        let at = self.members.binary_search_by(|(member, ..)| (**member).cmp(name)).ok()?;
        let (_, group, field) = &self.members[at];
        Some((*group, field))
    }
}

/// Every message's plan, made when first asked for.
#[derive(Debug)]
pub struct Plans {
    /// Each message's id, by full name.
    ids: HashMap<String, usize>,
    /// Each message's descriptor, by id.
    descriptors: Vec<MessageDescriptor>,
    /// Each message's plan, by id.
    plans: Vec<OnceLock<MessagePlan>>,
}

static PLANS: LazyLock<Option<Plans>> = LazyLock::new(|| {
    let descriptors: Vec<MessageDescriptor> = schema::pool()?.all_messages().collect();
    let ids = descriptors.iter().enumerate().map(|(i, m)| (m.full_name().to_owned(), i)).collect();
    let plans = descriptors.iter().map(|_| OnceLock::new()).collect();
    Some(Plans { ids, descriptors, plans })
});

/// The plans (`None` only if the build wrote broken descriptors).
pub fn plans() -> Option<&'static Plans> {
    PLANS.as_ref()
}

impl Plans {
    /// The id of `message`.
    pub fn id(&self, message: &MessageDescriptor) -> Option<usize> {
        self.ids.get(message.full_name()).copied()
    }

    /// The plan of message `id`.
    pub fn get(&self, id: usize) -> &MessagePlan {
        self.plans[id].get_or_init(|| self.compile(&self.descriptors[id]))
    }

    /// The plan of `message`.
    fn compile(&self, message: &MessageDescriptor) -> MessagePlan {
        let special = Special::of(message).and_then(|special| special_fields(special, message));
        let mut plan = MessagePlan { special, members: Vec::new(), groups: Vec::new() };
        if plan.special.is_none() {
            self.add_members(&mut plan, message, 0);
        }
        plan.members.sort_by(|a, b| a.0.cmp(&b.0));
        plan.members.dedup_by(|later, earlier| later.0 == earlier.0);
        plan
    }

    /// Adds the members of `message`, whose fields go to `group`, inlined ones included.
    fn add_members(&self, plan: &mut MessagePlan, message: &MessageDescriptor, group: u8) {
        for field in message.fields() {
            match json_field(message.name(), field.name()) {
                JsonField::Named(name) => {
                    if let Some(compiled) = self.field(&field) {
                        plan.members.push((name.into(), group, compiled));
                    }
                }
                JsonField::Inline => {
                    let Kind::Message(inlined) = field.kind() else { continue };
                    plan.groups.push(InlineGroup { parent: group, number: field.number() });
                    let Ok(inner) = u8::try_from(plan.groups.len()) else { continue };
                    self.add_members(plan, &inlined, inner);
                }
            }
        }
    }

    /// `field`, compiled (`None` for a field whose type no descriptor has).
    fn field(&self, field: &FieldDescriptor) -> Option<Field> {
        if field.is_map() {
            let Kind::Message(entry) = field.kind() else { return None };
            let key = scalar(&entry.map_entry_key_field().kind())?;
            let value = self.value(&entry.map_entry_value_field().kind())?;
            return Some(Field { number: field.number(), shape: Shape::Map(key), value });
        }
        let shape = match (field.is_list(), field.is_packed()) {
            (false, _) => Shape::Single,
            (true, true) => Shape::Packed,
            (true, false) => Shape::Repeated,
        };
        Some(Field { number: field.number(), shape, value: self.value(&field.kind())? })
    }

    /// What a value of `kind` is.
    fn value(&self, kind: &Kind) -> Option<Value> {
        Some(match kind {
            Kind::Message(message) => Value::Message(self.id(message)?),
            Kind::Enum(descriptor) => {
                Value::Enum(descriptor.values().map(|v| (v.name().into(), v.number())).collect())
            }
            scalar_kind => Value::Scalar(scalar(scalar_kind)?),
        })
    }
}

/// The scalar type of `kind`, if it is one.
fn scalar(kind: &Kind) -> Option<Scalar> {
    Some(match kind {
        Kind::String => Scalar::String,
        Kind::Bytes => Scalar::Bytes,
        Kind::Bool => Scalar::Bool,
        Kind::Int32 => Scalar::Int32,
        Kind::Int64 => Scalar::Int64,
        Kind::Uint32 => Scalar::Uint32,
        Kind::Uint64 => Scalar::Uint64,
        Kind::Sint32 => Scalar::Sint32,
        Kind::Sint64 => Scalar::Sint64,
        Kind::Fixed32 => Scalar::Fixed32,
        Kind::Sfixed32 => Scalar::Sfixed32,
        Kind::Fixed64 => Scalar::Fixed64,
        Kind::Sfixed64 => Scalar::Sfixed64,
        Kind::Float => Scalar::Float,
        Kind::Double => Scalar::Double,
        Kind::Enum(_) | Kind::Message(_) => return None,
    })
}

/// The fields of `message`, a message of `special`.
fn special_fields(special: Special, message: &MessageDescriptor) -> Option<SpecialFields> {
    let scalar_field = |name: &str| {
        let field = message.get_field_by_name(name)?;
        Some((field.number(), scalar(&field.kind())?))
    };
    let number = |name: &str| message.get_field_by_name(name).map(|f| f.number());
    Some(match special {
        Special::Time | Special::MicroTime => SpecialFields::Time {
            seconds: scalar_field("seconds")?,
            nanos: scalar_field("nanos")?,
            micro: special == Special::MicroTime,
        },
        Special::Duration => SpecialFields::Duration { duration: scalar_field("duration")? },
        Special::IntOrString => SpecialFields::IntOrString {
            kind: scalar_field("type")?,
            int: scalar_field("intVal")?,
            text: scalar_field("strVal")?,
        },
        Special::Quantity => SpecialFields::Quantity { string: number("string")? },
        Special::RawJson => SpecialFields::RawJson {
            raw: message.fields().find(|f| matches!(f.kind(), Kind::Bytes))?.number(),
        },
        Special::StringList => SpecialFields::StringList { items: number("items")? },
    })
}
