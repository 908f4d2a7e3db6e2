//! Type checking of objects against their kind's upstream schema: what upstream's decoder
//! refuses when it reads a JSON body into the kind's Go type.
//!
//! The object is walked against the kind's protobuf message ([`crate::protobuf::types`]),
//! with the JSON names the protobuf decoder uses ([`crate::protobuf::names`]), so that this
//! check, field validation ([`crate::fieldcheck`]) and protobuf bodies agree on what a kind's
//! fields are. Each field's value must have its field's type:
//! - strings, booleans and numbers as such; integers must be integers within the range of
//!   their field (`int32`, `int64`, ...), as Go parses them (`1.0` is not an `int32`);
//! - `bytes` fields (`Secret.data`) a string of standard, padded base64;
//! - maps an object (every value of the map's value type), lists an array, messages an
//!   object;
//! - the types with a JSON form of their own ([`Special`]): int-or-string a string or an
//!   `int32`, quantities a string or number in upstream's quantity syntax, times an RFC 3339
//!   string, durations a Go duration string, raw extensions and `fieldsV1` anything.
//!
//! `null` is accepted anywhere, as Go decodes it into the zero value. Members the message does
//! not have are left alone: they are field validation's business.
//!
//! The first problem in document order is reported, worded as upstream's decoder words it
//! (`json: cannot unmarshal number into Go struct field ConfigMap.data of type string`), with
//! the path of the offending value beside it. Kinds with no upstream schema (custom resources)
//! are not checked.

use serde_json::{Map, Value};

use crate::protobuf::special::Special;
use crate::protobuf::types::{self, Field, Kind, MessageId, Scalar, Shape, Types};
use crate::validation::bounded_quote;

/// A value that does not have its field's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TypeError {
    /// Where the value is, as field errors write paths (`data.a`,
    /// `spec.template.spec.containers[0].image`).
    pub path: String,
    /// What is wrong, worded as upstream's decoder words it.
    pub message: String,
}

/// Checks the types of the members of `obj`, an object of `api_version` and `kind`: the
/// first value (in document order) that does not have its field's type. `Ok` when all do, or
/// when no schema is known for the kind.
pub fn check(api_version: &str, kind: &str, obj: &Value) -> Result<(), TypeError> {
    let table = types::types();
    let Some((id, message)) =
        types::message(api_version, kind).and_then(|id| Some((id, table.get(id)?)))
    else {
        return Ok(());
    };
    let Value::Object(members) = obj else {
        return Ok(());
    };
    let mut walk = Walk { table, stack: Vec::new(), go_struct: message.name().to_string() };
    for (name, value) in members {
        if matches!(name.as_str(), "apiVersion" | "kind") {
            // Upstream's type meta: strings, inlined in every kind.
            walk.stack.push(name.clone());
            let result = walk.scalar(&Scalar::String, value, name);
            walk.stack.pop();
            result?;
        } else if let Some(field) = table.field_of_member(id, name) {
            walk.member(message.name(), field, name, value, name)?;
        }
    }
    Ok(())
}

/// The range of an integer type, `None` for other types.
fn integer_range(scalar: Scalar) -> Option<(i128, i128)> {
    match scalar {
        Scalar::Int32 => Some((i32::MIN.into(), i32::MAX.into())),
        Scalar::Int64 => Some((i64::MIN.into(), i64::MAX.into())),
        Scalar::Uint32 => Some((0, u32::MAX.into())),
        Scalar::Uint64 => Some((0, u64::MAX.into())),
        _ => None,
    }
}

/// Go's name of the type of a value of `kind`.
fn go_type(table: &Types, kind: Kind) -> String {
    match kind {
        Kind::Message(id) => {
            let Some(message) = table.get(id) else { return String::new() };
            match message.special() {
                Some(Special::StringList) if message.name() != "ExtraValue" => "[]string".into(),
                _ => {
                    let package = message.package();
                    let package = package.rsplit('.').next().unwrap_or(package);
                    format!("{package}.{}", message.name())
                }
            }
        }
        Kind::Scalar(scalar) => scalar.go_type().to_string(),
    }
}

/// Go's name of the type of a field (maps and lists included).
fn field_go_type(table: &Types, field: &Field) -> String {
    match field.shape {
        Shape::Map => format!("map[string]{}", go_type(table, field.kind)),
        Shape::List => format!("[]{}", go_type(table, field.kind)),
        Shape::Single => go_type(table, field.kind),
    }
}

/// How upstream's decoder names a JSON value it cannot store.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(_) => "string".into(),
        Value::Array(_) => "array".into(),
        Value::Object(_) => "object".into(),
    }
}

/// The walk's position: the JSON names of the struct fields above the value (map keys and
/// list indexes are not part of it, as upstream's decoder leaves them out) and the innermost
/// Go struct.
struct Walk {
    table: &'static Types,
    stack: Vec<String>,
    go_struct: String,
}

impl Walk {
    /// Upstream's decoding error for a value described as `value` in a field of `go_type`.
    fn mismatch(&self, value: &str, go_type: &str, path: &str) -> TypeError {
        TypeError {
            path: path.to_string(),
            message: format!(
                "json: cannot unmarshal {value} into Go struct field {}.{} of type {go_type}",
                self.go_struct,
                self.stack.join(".")
            ),
        }
    }

    /// Checks member `name` (`field` of the message of simple name `message`) at `path`.
    fn member(
        &mut self,
        message: &str,
        field: &Field,
        name: &str,
        value: &Value,
        path: &str,
    ) -> Result<(), TypeError> {
        let outer = std::mem::replace(&mut self.go_struct, message.to_string());
        self.stack.push(name.to_string());
        let result = self.field(field, value, path);
        self.stack.pop();
        self.go_struct = outer;
        result
    }

    /// Checks the value of a field: a map, a list or one value.
    fn field(&mut self, field: &Field, value: &Value, path: &str) -> Result<(), TypeError> {
        if value.is_null() {
            return Ok(());
        }
        match (field.shape, value) {
            (Shape::Map, Value::Object(entries)) => {
                for (key, value) in entries {
                    self.value(field.kind, value, &format!("{path}.{key}"))?;
                }
                Ok(())
            }
            (Shape::List, Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.value(field.kind, item, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
            (Shape::Map | Shape::List, _) => {
                Err(self.mismatch(&describe(value), &field_go_type(self.table, field), path))
            }
            (Shape::Single, _) => self.value(field.kind, value, path),
        }
    }

    /// Checks one value of type `kind`.
    fn value(&mut self, kind: Kind, value: &Value, path: &str) -> Result<(), TypeError> {
        if value.is_null() {
            return Ok(());
        }
        let id = match kind {
            Kind::Scalar(scalar) => return self.scalar(&scalar, value, path),
            Kind::Message(id) => id,
        };
        let Some(message) = self.table.get(id) else { return Ok(()) };
        if let Some(special) = message.special() {
            return self.special(special, value, path);
        }
        let Value::Object(members) = value else {
            return Err(self.mismatch(&describe(value), &go_type(self.table, kind), path));
        };
        self.message(id, members, path)
    }

    /// Checks the members of an object of type `id`.
    fn message(
        &mut self,
        id: MessageId,
        members: &Map<String, Value>,
        path: &str,
    ) -> Result<(), TypeError> {
        let table = self.table;
        let Some(message) = table.get(id) else { return Ok(()) };
        for (name, value) in members {
            if let Some(field) = table.field_of_member(id, name) {
                self.member(message.name(), field, name, value, &format!("{path}.{name}"))?;
            }
        }
        Ok(())
    }

    /// Checks a scalar value.
    fn scalar(&self, scalar: &Scalar, value: &Value, path: &str) -> Result<(), TypeError> {
        let scalar = *scalar;
        let fits = match (scalar, value) {
            (_, Value::Null) => true,
            (Scalar::String, Value::String(_)) | (Scalar::Bool, Value::Bool(_)) => true,
            (Scalar::Bytes, Value::String(text)) => {
                return match base64_error(text.as_bytes()) {
                    None => Ok(()),
                    Some(at) => Err(TypeError {
                        path: path.to_string(),
                        message: format!("illegal base64 data at input byte {at}"),
                    }),
                };
            }
            (Scalar::Float32 | Scalar::Float64, Value::Number(_)) => true,
            (_, Value::Number(n)) => match integer_range(scalar) {
                Some((min, max)) => {
                    let n = n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
                    if n.is_some_and(|n| (min..=max).contains(&n)) {
                        true
                    } else {
                        let text = bounded_quote(&value.to_string(), false);
                        return Err(self.mismatch(
                            &format!("number {text}"),
                            scalar.go_type(),
                            path,
                        ));
                    }
                }
                None => false,
            },
            _ => false,
        };
        if fits { Ok(()) } else { Err(self.mismatch(&describe(value), scalar.go_type(), path)) }
    }

    /// Checks a value of a type with a JSON form of its own.
    fn special(&self, special: Special, value: &Value, path: &str) -> Result<(), TypeError> {
        let error = |message: String| TypeError { path: path.to_string(), message };
        match special {
            Special::RawJson => Ok(()),
            // A string, or anything else decoded as an int32.
            Special::IntOrString if value.is_string() => Ok(()),
            Special::IntOrString => self.scalar(&Scalar::Int32, value, path),
            Special::Quantity => {
                let text = match value {
                    Value::String(text) => text.trim().to_string(),
                    other => other.to_string(),
                };
                quantity_error(&text).map_or(Ok(()), |e| Err(error(e.to_string())))
            }
            Special::Time | Special::MicroTime | Special::Duration => {
                let Value::String(text) = value else {
                    return Err(self.mismatch(&describe(value), "string", path));
                };
                let problem = match special {
                    Special::Duration => duration_error(text),
                    _ => time_error(text, special == Special::MicroTime),
                };
                problem.map_or(Ok(()), |e| Err(error(e)))
            }
            Special::StringList => {
                let Value::Array(items) = value else {
                    return Err(self.mismatch(&describe(value), "[]string", path));
                };
                for (i, item) in items.iter().enumerate() {
                    self.scalar(&Scalar::String, item, &format!("{path}[{i}]"))?;
                }
                Ok(())
            }
        }
    }
}

/// Where Go's standard, padded base64 decoder finds `data` invalid (the byte offset it
/// reports), or `None` when it is valid. Line breaks are skipped, as Go skips them.
fn base64_error(data: &[u8]) -> Option<usize> {
    let is_newline = |b: u8| b == b'\n' || b == b'\r';
    let valid = |b: u8| b.is_ascii_alphanumeric() || b == b'+' || b == b'/';
    let mut si = 0;
    loop {
        // One quantum of four characters.
        let mut j = 0;
        while j < 4 {
            if si == data.len() {
                return match j {
                    0 => None,
                    _ => Some(si - j),
                };
            }
            let b = data[si];
            si += 1;
            if valid(b) {
                j += 1;
                continue;
            }
            if is_newline(b) {
                continue;
            }
            if b != b'=' || j < 2 {
                return Some(si - 1);
            }
            if j == 2 {
                // A second `=` must follow.
                while si < data.len() && is_newline(data[si]) {
                    si += 1;
                }
                if si == data.len() {
                    return Some(data.len());
                }
                if data[si] != b'=' {
                    return Some(si - 1);
                }
                si += 1;
            }
            while si < data.len() && is_newline(data[si]) {
                si += 1;
            }
            return (si < data.len()).then_some(si);
        }
    }
}

/// Upstream's quantity parse errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    #[error("unable to parse numeric part of quantity")]
    Numeric,
}

/// Why `text` is not a quantity as upstream's `resource.ParseQuantity` reads one, if it is not.
fn quantity_error(text: &str) -> Option<QuantityError> {
    if text.is_empty() {
        return Some(QuantityError::Format);
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    if matches!(bytes[0], b'+' | b'-') {
        i += 1;
    }
    let start = i;
    let digits = |i: &mut usize| {
        let from = *i;
        while *i < bytes.len() && bytes[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - from
    };
    let mut count = digits(&mut i);
    if i < bytes.len() && bytes[i] == b'.' {
        i += 1;
        count += digits(&mut i);
    }
    if i == start {
        return Some(QuantityError::Format);
    }
    if count == 0 {
        return Some(QuantityError::Numeric);
    }
    let suffix = &text[i..];
    // The suffix: letters, then an optional signed exponent.
    let letters = suffix.bytes().take_while(|b| b"eEinumkKMGTP".contains(b)).count();
    let rest = &suffix[letters..];
    let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    if !rest.bytes().all(|b| b.is_ascii_digit()) {
        return Some(QuantityError::Format);
    }
    const SUFFIXES: &[&str] =
        &["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if SUFFIXES.contains(&suffix) {
        return None;
    }
    let exponent = suffix.strip_prefix(['e', 'E']).map(|e| e.strip_prefix(['+', '-']).unwrap_or(e));
    match exponent {
        Some(e) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => None,
        _ => Some(QuantityError::Suffix),
    }
}

/// Why `text` is not an RFC 3339 time as Go's `time.Parse` reads one, worded as Go words it;
/// `None` when it is one.
fn time_error(text: &str, micro: bool) -> Option<String> {
    let layout =
        if micro { "2006-01-02T15:04:05.999999999Z07:00" } else { "2006-01-02T15:04:05Z07:00" };
    let quoted = bounded_quote(text, true);
    let cannot = |rest: &str, element: &str| {
        Some(format!(
            "parsing time {quoted} as \"{layout}\": cannot parse {} as \"{element}\"",
            bounded_quote(rest, true)
        ))
    };
    let out_of_range = |what: &str| Some(format!("parsing time {quoted}: {what} out of range"));
    let mut rest = text;
    let number = |rest: &mut &str, width: usize| -> Option<u32> {
        let digits = rest.get(..width).filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?;
        *rest = &rest[width..];
        digits.parse().ok()
    };
    let Some(year) = number(&mut rest, 4) else { return cannot(rest, "2006") };
    // (separator, layout element, name in range errors, largest value)
    const FIELDS: [(&str, &str, &str, u32); 5] = [
        ("-", "01", "month", 12),
        ("-", "02", "day", 31),
        ("T", "15", "hour", 23),
        (":", "04", "minute", 59),
        (":", "05", "second", 59),
    ];
    let mut fields = [0u32; 5];
    for (slot, (separator, element, name, max)) in FIELDS.iter().enumerate() {
        let Some(after) = rest.strip_prefix(separator) else { return cannot(rest, separator) };
        rest = after;
        let Some(n) = number(&mut rest, 2) else { return cannot(rest, element) };
        if n > *max || (slot == 0 && n == 0) {
            return out_of_range(name);
        }
        fields[slot] = n;
    }
    let [month, day, ..] = fields;
    // Fractional seconds, accepted whatever the layout says.
    if let Some(fraction) = rest.strip_prefix(['.', ',']) {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            rest = &fraction[digits..];
        }
    }
    if let Some(after) = rest.strip_prefix('Z') {
        rest = after;
    } else {
        let zone = rest.get(..6).filter(|z| {
            let b = z.as_bytes();
            matches!(b[0], b'+' | b'-')
                && b[1].is_ascii_digit()
                && b[2].is_ascii_digit()
                && b[3] == b':'
                && b[4].is_ascii_digit()
                && b[5].is_ascii_digit()
        });
        let Some(zone) = zone else { return cannot(rest, "Z07:00") };
        rest = &rest[zone.len()..];
    }
    if !rest.is_empty() {
        return Some(format!("parsing time {quoted}: extra text: {}", bounded_quote(rest, true)));
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day < 1 || day > days {
        return out_of_range("day");
    }
    None
}

/// Why `text` is not a Go duration (`1h30m`, `250ms`), worded as Go's `time.ParseDuration`
/// words it; `None` when it is one.
fn duration_error(text: &str) -> Option<String> {
    let quoted = bounded_quote(text, true);
    let invalid = || Some(format!("time: invalid duration {quoted}"));
    let mut rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    if rest == "0" {
        return None;
    }
    if rest.is_empty() {
        return invalid();
    }
    while !rest.is_empty() {
        let whole = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut digits = whole;
        let mut after = &rest[whole..];
        if let Some(fraction) = after.strip_prefix('.') {
            let count = fraction.bytes().take_while(u8::is_ascii_digit).count();
            digits += count;
            after = &fraction[count..];
        }
        if digits == 0 {
            return invalid();
        }
        let unit_len = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        let unit = &after[..unit_len];
        if unit.is_empty() {
            return Some(format!("time: missing unit in duration {quoted}"));
        }
        if !matches!(unit, "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h") {
            return Some(format!(
                "time: unknown unit {} in duration {quoted}",
                bounded_quote(unit, true)
            ));
        }
        rest = &after[unit_len..];
    }
    None
}

#[cfg(test)]
mod tests;
