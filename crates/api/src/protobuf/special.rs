//! Upstream types whose JSON form is not their protobuf message's fields: times, durations,
//! quantities, int-or-string, embedded raw JSON and string lists.

use chrono::{DateTime, SecondsFormat};
use prost_reflect::{DynamicMessage, MessageDescriptor, Value as Field};
use serde_json::Value;

use super::envelope::PREFIX;

/// An upstream type with a JSON form of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `meta/v1.Time`: an RFC 3339 string in seconds, `null` when zero.
    Time,
    /// `meta/v1.MicroTime`: an RFC 3339 string in microseconds, `null` when zero.
    MicroTime,
    /// `meta/v1.Duration`: Go's duration string (`1m30s`).
    Duration,
    /// `util/intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `api/resource.Quantity`: its string.
    Quantity,
    /// `runtime.RawExtension`, `meta/v1.FieldsV1`: JSON kept as bytes.
    RawJson,
    /// `meta/v1.Verbs`, `ExtraValue`: Go string slices, wrapped in a message in protobuf.
    StringList,
}

impl Special {
    /// The special JSON form of messages of this descriptor, if they have one.
    pub fn of(message: &MessageDescriptor) -> Option<Self> {
        Self::of_name(message.full_name(), message.name())
    }

    /// The special JSON form of messages of full name `full` and simple name `name`.
    pub fn of_name(full: &str, name: &str) -> Option<Self> {
        let full = full.strip_prefix("k8s.io.").unwrap_or(full);
        Some(match full {
            "apimachinery.pkg.apis.meta.v1.Time" => Self::Time,
            "apimachinery.pkg.apis.meta.v1.MicroTime" => Self::MicroTime,
            "apimachinery.pkg.apis.meta.v1.Duration" => Self::Duration,
            "apimachinery.pkg.apis.meta.v1.FieldsV1" | "apimachinery.pkg.runtime.RawExtension" => {
                Self::RawJson
            }
            "apimachinery.pkg.apis.meta.v1.Verbs" => Self::StringList,
            "apimachinery.pkg.util.intstr.IntOrString" => Self::IntOrString,
            "apimachinery.pkg.api.resource.Quantity" => Self::Quantity,
            _ if name == "ExtraValue" => Self::StringList,
            _ => return None,
        })
    }

    /// The JSON of `message`, a message of this type.
    pub fn to_json(self, message: &DynamicMessage) -> Result<Value, String> {
        match self {
            Self::Time | Self::MicroTime => {
                let seconds = int(message, "seconds");
                let nanos = int(message, "nanos");
                if seconds.is_none() && nanos.is_none() {
                    return Ok(Value::Null);
                }
                let (seconds, nanos) = (seconds.unwrap_or(0), nanos.unwrap_or(0));
                if self == Self::Time {
                    timestamp(seconds, 0, SecondsFormat::Secs)
                } else {
                    timestamp(seconds, nanos, SecondsFormat::Micros)
                }
            }
            Self::Duration => Ok(Value::String(go_duration(int(message, "duration").unwrap_or(0)))),
            Self::IntOrString => Ok(match int(message, "type").unwrap_or(0) {
                0 => Value::from(int(message, "intVal").unwrap_or(0)),
                _ => Value::from(string(message, "strVal").unwrap_or_default()),
            }),
            Self::Quantity => {
                Ok(Value::from(string(message, "string").unwrap_or_else(|| "0".into())))
            }
            Self::RawJson => raw_json(message),
            Self::StringList => match message.get_field_by_name("items").as_deref() {
                Some(Field::List(items)) => items.iter().map(super::json::element).collect(),
                _ => Ok(Value::Array(Vec::new())),
            },
        }
    }
}

/// The value of singular field `name`, if set.
fn field(message: &DynamicMessage, name: &str) -> Option<Field> {
    if !message.has_field_by_name(name) {
        return None;
    }
    message.get_field_by_name(name).map(|v| v.into_owned())
}

/// An integer field's value, if set.
fn int(message: &DynamicMessage, name: &str) -> Option<i64> {
    match field(message, name)? {
        Field::I32(n) => Some(n.into()),
        Field::I64(n) => Some(n),
        Field::U32(n) => Some(n.into()),
        Field::U64(n) => i64::try_from(n).ok(),
        _ => None,
    }
}

/// A string field's value, if set.
fn string(message: &DynamicMessage, name: &str) -> Option<String> {
    match field(message, name)? {
        Field::String(s) => Some(s),
        _ => None,
    }
}

/// An RFC 3339 UTC timestamp, as Go writes it (years 0 to 9999 only).
fn timestamp(seconds: i64, nanos: i64, format: SecondsFormat) -> Result<Value, String> {
    let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000);
    let time = nanos
        .and_then(|nanos| DateTime::from_timestamp(seconds, nanos))
        .filter(|t| (0..=9999).contains(&chrono::Datelike::year(t)))
        .ok_or_else(|| format!("time {seconds}s {} ns is out of range", nanos.unwrap_or(0)))?;
    Ok(Value::String(time.to_rfc3339_opts(format, true)))
}

/// The JSON held in the message's one bytes field (`raw`, `Raw`); a nested protobuf object
/// (with its own prefix) is decoded as one.
fn raw_json(message: &DynamicMessage) -> Result<Value, String> {
    let raw = message.fields().find_map(|(_, value)| match value {
        Field::Bytes(bytes) => Some(bytes.clone()),
        _ => None,
    });
    match raw.as_deref() {
        None | Some([]) => Ok(Value::Null),
        Some(bytes) if bytes.starts_with(PREFIX) => {
            super::decode(bytes).map_err(|e| format!("embedded object: {e}"))
        }
        Some(bytes) => {
            serde_json::from_slice(bytes).map_err(|e| format!("embedded JSON is invalid: {e}"))
        }
    }
}

/// Go's `time.Duration.String()` of `nanos` nanoseconds (`0s`, `1.5s`, `1m30s`, `1h0m0s`,
/// `250ms`).
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let text = if n < 1_000 {
        format!("{n}ns")
    } else if n < 1_000_000 {
        format!("{}µs", decimal(n, 3))
    } else if n < 1_000_000_000 {
        format!("{}ms", decimal(n, 6))
    } else {
        let seconds = n / 1_000_000_000;
        let (hours, minutes) = (seconds / 3600, seconds / 60 % 60);
        let mut text = String::new();
        if hours > 0 {
            text.push_str(&format!("{hours}h"));
        }
        if hours > 0 || minutes > 0 {
            text.push_str(&format!("{minutes}m"));
        }
        text.push_str(&decimal(n % 60_000_000_000, 9));
        text.push('s');
        text
    };
    format!("{sign}{text}")
}

/// `n / 10^digits` as a decimal without trailing zeros.
fn decimal(n: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let (whole, fraction) = (n / scale, n % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0width$}", width = digits as usize);
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}
