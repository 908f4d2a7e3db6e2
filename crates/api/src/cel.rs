//! JSON values as CEL values, shared by admission policies (`krust-admission`) and the
//! `x-kubernetes-validations` rules of custom resources ([`crate::customresource`]).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// A JSON value as a CEL value: integers become CEL `int` (`uint` past `i64`), other numbers
/// `double`, as upstream's conversion of unstructured objects does.
pub fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => number(n),
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let map: HashMap<String, cel::Value> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::Map(map.into())
        }
    }
}

/// A JSON number as a CEL `int`, `uint` or `double`.
pub(crate) fn number(n: &serde_json::Number) -> cel::Value {
    match n.as_i64() {
        Some(i) => cel::Value::Int(i),
        None => match n.as_u64() {
            Some(u) => cel::Value::UInt(u),
            None => cel::Value::Float(n.as_f64().unwrap_or_default()),
        },
    }
}
