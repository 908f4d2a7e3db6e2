//! A decoded protobuf message as JSON, walked by reflection over its descriptor.

use ::protobuf::MessageDyn;
use ::protobuf::reflect::{MessageDescriptor, ReflectFieldRef, ReflectValueRef};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use super::names::{JsonField, json_field};
use super::special::Special;

/// Decodes `raw` as a `message` and returns its JSON object.
pub fn decode_message(
    message: &MessageDescriptor,
    raw: &[u8],
) -> Result<Map<String, Value>, String> {
    let decoded = message.parse_from_bytes(raw).map_err(|e| e.to_string())?;
    let mut object = Map::new();
    write_fields(&*decoded, &mut object)?;
    Ok(object)
}

/// The JSON of any message: its special form, or an object of its fields.
pub fn message_value(message: &dyn MessageDyn) -> Result<Value, String> {
    if let Some(special) = Special::of(&message.descriptor_dyn()) {
        return special.to_json(message);
    }
    let mut object = Map::new();
    write_fields(message, &mut object)?;
    Ok(Value::Object(object))
}

/// Writes the fields of `message` that are set into `object`.
fn write_fields(message: &dyn MessageDyn, object: &mut Map<String, Value>) -> Result<(), String> {
    let descriptor = message.descriptor_dyn();
    for field in descriptor.fields() {
        let json = json_field(descriptor.name(), field.name());
        let name = match json {
            JsonField::Named(name) => name,
            JsonField::Inline => field.name(),
        };
        match field.get_reflect(message) {
            ReflectFieldRef::Optional(optional) => match (optional.value(), json) {
                (None, _) => {}
                (Some(ReflectValueRef::Message(inlined)), JsonField::Inline) => {
                    write_fields(&*inlined, object)?;
                }
                (Some(value), _) => {
                    if let Some(value) = singular(value)? {
                        object.insert(name.to_owned(), value);
                    }
                }
            },
            ReflectFieldRef::Repeated(items) => {
                if !items.is_empty() {
                    let items = items.into_iter().map(element).collect::<Result<_, _>>()?;
                    object.insert(name.to_owned(), Value::Array(items));
                }
            }
            ReflectFieldRef::Map(entries) => {
                if !entries.is_empty() {
                    let mut sorted = (&entries)
                        .into_iter()
                        .map(|(key, value)| Ok((map_key(key), element(value)?)))
                        .collect::<Result<Vec<_>, String>>()?;
                    sorted.sort_by(|a, b| a.0.cmp(&b.0));
                    object.insert(name.to_owned(), Value::Object(sorted.into_iter().collect()));
                }
            }
        }
    }
    Ok(())
}

/// A set singular field's JSON, or `None` for an empty string or empty bytes: Go writes
/// every non-pointer field, so those stand for unset fields.
fn singular(value: ReflectValueRef<'_>) -> Result<Option<Value>, String> {
    match value {
        ReflectValueRef::String("") | ReflectValueRef::Bytes([]) => Ok(None),
        value => element(value).map(Some),
    }
}

/// The JSON of a value (a list element, a map value or a set field).
pub fn element(value: ReflectValueRef<'_>) -> Result<Value, String> {
    Ok(match value {
        ReflectValueRef::U32(n) => n.into(),
        ReflectValueRef::U64(n) => n.into(),
        ReflectValueRef::I32(n) => n.into(),
        ReflectValueRef::I64(n) => n.into(),
        ReflectValueRef::F32(x) => float(f64::from(x))?,
        ReflectValueRef::F64(x) => float(x)?,
        ReflectValueRef::Bool(b) => b.into(),
        ReflectValueRef::String(s) => s.into(),
        ReflectValueRef::Bytes(bytes) => BASE64.encode(bytes).into(),
        ReflectValueRef::Enum(descriptor, n) => match descriptor.value_by_number(n) {
            Some(value) => value.name().into(),
            None => n.into(),
        },
        ReflectValueRef::Message(message) => message_value(&*message)?,
    })
}

/// A finite number.
fn float(x: f64) -> Result<Value, String> {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| format!("{x} is not a JSON number"))
}

/// A map key as a JSON member name.
fn map_key(key: ReflectValueRef<'_>) -> String {
    match key {
        ReflectValueRef::String(s) => s.to_owned(),
        ReflectValueRef::U32(n) => n.to_string(),
        ReflectValueRef::U64(n) => n.to_string(),
        ReflectValueRef::I32(n) => n.to_string(),
        ReflectValueRef::I64(n) => n.to_string(),
        ReflectValueRef::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}
