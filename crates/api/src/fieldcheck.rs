//! Server-side field validation (`fieldValidation=Strict|Warn|Ignore`): the members of an
//! object that its kind does not have, and the members a JSON body names twice.
//!
//! Upstream finds both while decoding a body into its Go type ("strict decoding"); here the
//! object is walked against the kind's upstream protobuf message ([`crate::protobuf::types`]), with
//! the same JSON names the protobuf decoder writes ([`crate::protobuf::names`]), so that the two agree on
//! what a kind's fields are. Types with a JSON form of their own ([`Special`](crate::protobuf::special::Special): times,
//! quantities, int-or-string, raw extensions, `fieldsV1`, ...) are leaves and accept any JSON;
//! map fields accept any key; repeated fields are walked element by element. Paths are
//! written as upstream writes them: `spec.template.spec.containers[0].imagePullPolice`,
//! `metadata.labels.app`.
//!
//! Kinds with no upstream schema (custom resources, `apiextensions.k8s.io`, which has no
//! protobuf package here) are not checked.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::protobuf::types::{self, Field, Kind, MessageId, Shape, Types};

/// Members every object may have at its top level whether or not its message has them:
/// the type meta, and `status` (tolerated on kinds without one).
const TOP_LEVEL: &[&str] = &["apiVersion", "kind", "status"];

/// The paths of the members of `obj` that an object of `api_version` and `kind` does not
/// have, in document order; `None` when no schema is known for the kind (nothing can be
/// said about its fields).
pub fn unknown_fields(api_version: &str, kind: &str, obj: &Value) -> Option<Vec<String>> {
    let table = types::types();
    let message = types::message(api_version, kind)?;
    let mut unknown = Vec::new();
    if let Value::Object(members) = obj {
        for (name, value) in members {
            match table.field_of_member(message, name) {
                Some(field) => check_field(table, field, value, name, &mut unknown),
                None if TOP_LEVEL.contains(&name.as_str()) => {}
                None => unknown.push(name.clone()),
            }
        }
    }
    Some(unknown)
}

/// Walks the members of an object of type `message` at `path`.
fn check_message(
    table: &Types,
    message: MessageId,
    members: &Map<String, Value>,
    path: &str,
    unknown: &mut Vec<String>,
) {
    for (name, value) in members {
        let child = format!("{path}.{name}");
        match table.field_of_member(message, name) {
            Some(field) => check_field(table, field, value, &child, unknown),
            None => unknown.push(child),
        }
    }
}

/// Walks the value of a field at `path`: each value of a map, each element of a list, or
/// the one value.
fn check_field(table: &Types, field: &Field, value: &Value, path: &str, unknown: &mut Vec<String>) {
    match (field.shape, value) {
        (Shape::Map, Value::Object(entries)) => {
            for (key, value) in entries {
                check_value(table, field.kind, value, &format!("{path}.{key}"), unknown);
            }
        }
        (Shape::List, Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_value(table, field.kind, item, &format!("{path}[{i}]"), unknown);
            }
        }
        (Shape::Map | Shape::List, _) => {}
        (Shape::Single, _) => check_value(table, field.kind, value, path, unknown),
    }
}

/// Walks one value of type `kind`: only objects of messages without a JSON form of their
/// own have members to check; scalars, special types and mismatched JSON are left alone
/// (a value of the wrong type is for validation to refuse, not field validation).
fn check_value(table: &Types, kind: Kind, value: &Value, path: &str, unknown: &mut Vec<String>) {
    if let (Kind::Message(id), Value::Object(members)) = (kind, value)
        && table.get(id).is_some_and(|m| m.special().is_none())
    {
        check_message(table, id, members, path, unknown);
    }
}

/// The paths of the members that a JSON document names more than once, in document order
/// (each repetition once per extra occurrence); empty when the document is not valid JSON
/// (decoding reports that).
pub fn duplicate_fields(json: &[u8]) -> Vec<String> {
    let mut duplicates = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let walk = Walk { path: String::new(), duplicates: &mut duplicates };
    if walk.deserialize(&mut deserializer).is_err() {
        return Vec::new();
    }
    duplicates
}

/// The message upstream reports an unknown member with.
pub fn unknown_field(path: &str) -> String {
    format!("unknown field {}", go_quote(path))
}

/// The message upstream reports a repeated member with.
pub fn duplicate_field(path: &str) -> String {
    format!("duplicate field {}", go_quote(path))
}

/// Upstream's error for a body with strict decoding problems (`problems` as written by
/// [`unknown_field`] and [`duplicate_field`]).
pub fn strict_decoding_error(problems: &[String]) -> String {
    format!("strict decoding error: {}", problems.join(", "))
}

/// `text` quoted as Go's `%q` quotes it, at most [`crate::validation::MAX_QUOTED_BYTES`] of
/// it (a member's name is the client's, and may be long).
fn go_quote(text: &str) -> String {
    crate::validation::bounded_quote(text, true)
}

/// Reads one JSON value at `path`, recording repeated member names.
struct Walk<'a> {
    path: String,
    duplicates: &'a mut Vec<String>,
}

impl Walk<'_> {
    fn child(&mut self, name: &str) -> Walk<'_> {
        let path =
            if self.path.is_empty() { name.to_owned() } else { format!("{}.{name}", self.path) };
        Walk { path, duplicates: &mut *self.duplicates }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let Walk { path, duplicates } = self;
        let mut i = 0usize;
        while items
            .next_element_seed(Walk { path: format!("{path}[{i}]"), duplicates: &mut *duplicates })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut members: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(name) = members.next_key::<String>()? {
            if !seen.insert(name.clone()) {
                let path = self.child(&name).path;
                self.duplicates.push(path);
            }
            members.next_value_seed(self.child(&name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
