//! A decoded protobuf message as JSON, walked by reflection over its descriptor.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost_reflect::{DynamicMessage, MapKey, MessageDescriptor, ReflectMessage, Value as Field};
use serde_json::{Map, Value};

use super::names::{JsonField, json_field};
use super::special::Special;

/// Decodes `raw` as a `message` and returns its JSON object.
pub fn decode_message(
    message: &MessageDescriptor,
    raw: &[u8],
) -> Result<Map<String, Value>, String> {
    let decoded = DynamicMessage::decode(message.clone(), raw).map_err(|e| e.to_string())?;
    let mut object = Map::new();
    write_fields(&decoded, &mut object)?;
    Ok(object)
}

/// The JSON of any message: its special form, or an object of its fields.
pub fn message_value(message: &DynamicMessage) -> Result<Value, String> {
    if let Some(special) = Special::of(&message.descriptor()) {
        return special.to_json(message);
    }
    let mut object = Map::new();
    write_fields(message, &mut object)?;
    Ok(Value::Object(object))
}

/// Writes the fields of `message` that are set into `object`.
fn write_fields(message: &DynamicMessage, object: &mut Map<String, Value>) -> Result<(), String> {
    let descriptor = message.descriptor();
    for field in descriptor.fields() {
        if !message.has_field(&field) {
            continue;
        }
        let json = json_field(descriptor.name(), field.name());
        let value = message.get_field(&field);
        match (&*value, json) {
            (Field::Message(inlined), JsonField::Inline) => write_fields(inlined, object)?,
            (Field::List(items), _) => {
                let items = items.iter().map(element).collect::<Result<_, _>>()?;
                object.insert(name(json, &field), Value::Array(items));
            }
            (Field::Map(entries), _) => {
                let mut sorted = entries
                    .iter()
                    .map(|(key, value)| Ok((map_key(key), element(value)?)))
                    .collect::<Result<Vec<_>, String>>()?;
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                object.insert(name(json, &field), Value::Object(sorted.into_iter().collect()));
            }
            (value, _) => {
                if let Some(value) = singular(value)? {
                    object.insert(name(json, &field), value);
                }
            }
        }
    }
    Ok(())
}

/// The JSON member name of a field.
fn name(json: JsonField<'_>, field: &prost_reflect::FieldDescriptor) -> String {
    match json {
        JsonField::Named(name) => name.to_owned(),
        JsonField::Inline => field.name().to_owned(),
    }
}

/// A set singular field's JSON, or `None` for an empty string or empty bytes: Go writes
/// every non-pointer field, so those stand for unset fields.
fn singular(value: &Field) -> Result<Option<Value>, String> {
    match value {
        Field::String(s) if s.is_empty() => Ok(None),
        Field::Bytes(b) if b.is_empty() => Ok(None),
        value => element(value).map(Some),
    }
}

/// The JSON of a value (a list element, a map value or a set field).
pub fn element(value: &Field) -> Result<Value, String> {
    Ok(match value {
        Field::U32(n) => (*n).into(),
        Field::U64(n) => (*n).into(),
        Field::I32(n) => (*n).into(),
        Field::I64(n) => (*n).into(),
        Field::F32(x) => float(f64::from(*x))?,
        Field::F64(x) => float(*x)?,
        Field::Bool(b) => (*b).into(),
        Field::String(s) => s.as_str().into(),
        Field::Bytes(bytes) => BASE64.encode(bytes).into(),
        Field::EnumNumber(n) => (*n).into(),
        Field::Message(message) => message_value(message)?,
        Field::List(items) => Value::Array(items.iter().map(element).collect::<Result<_, _>>()?),
        Field::Map(_) => return Err("a map inside a list".into()),
    })
}

/// A finite number.
fn float(x: f64) -> Result<Value, String> {
    serde_json::Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| format!("{x} is not a JSON number"))
}

/// A map key as a JSON member name.
fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::String(s) => s.clone(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::Bool(b) => b.to_string(),
    }
}
