//! Validation of a value against its schema's keywords, as kube-openapi's `validate`
//! package does for custom resources, with its messages (`spec.replicas in body must be of
//! type integer: "string"`) mapped to field errors as apiextensions-apiserver maps them;
//! and the checks upstream runs beside it: embedded resources' `apiVersion` and `kind`
//! (`schema/objectmeta`) and the uniqueness of `x-kubernetes-list-type` `set` and `map`
//! lists (`schema/listtype`).

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use super::formats;
use super::schema::{Additional, Schema};
use crate::validation::{FieldError, FieldErrorKind, bounded_quote};

/// How upstream prints a nil field path.
pub(crate) const NIL_PATH: &str = "<nil>";

/// The largest integer a float64 holds exactly (swag's `IsFloat64AJSONInteger` bound).
const MAX_JSON_FLOAT: f64 = 9_007_199_254_740_992.0;

/// The members the root of a resource has that its schema does not validate here.
const ROOT_META: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Go's `%v` of a float64 (`%g` with the shortest precision): exponent form below 1e-4
/// and from 1e6 on.
pub(crate) fn go_float(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let exp = f.abs().log10().floor() as i32;
    if !(-4..6).contains(&exp) {
        let text = format!("{f:e}");
        match text.split_once('e') {
            Some((mantissa, e)) => {
                let e: i32 = e.parse().unwrap_or_default();
                let sign = if e < 0 { '-' } else { '+' };
                format!("{mantissa}e{sign}{:02}", e.abs())
            }
            None => text,
        }
    } else {
        format!("{f}")
    }
}

/// A bound (`maximum`, `multipleOf`) as kube-openapi prints it against `data`: as an
/// integer when both are integers, else as a float.
fn go_bound(bound: &Number, data: &Number) -> String {
    let f = bound.as_f64().unwrap_or_default();
    if is_integer(data) && f.fract() == 0.0 && f.abs() < 9.2e18 {
        (f as i64).to_string()
    } else {
        go_float(f)
    }
}

fn is_integer(n: &Number) -> bool {
    n.is_i64() || n.is_u64()
}

/// The type kube-openapi sees a JSON value as, and the format it gives it.
fn info(value: &Value) -> (&'static str, &'static str) {
    match value {
        Value::Null => ("null", ""),
        Value::Bool(_) => ("boolean", ""),
        Value::String(_) => ("string", ""),
        Value::Number(n) if is_integer(n) => ("integer", "int64"),
        Value::Number(_) => ("number", "float64"),
        Value::Array(_) => ("array", ""),
        Value::Object(_) => ("object", ""),
    }
}

/// Whether two JSON values are equal as kube-openapi compares an enum's values: numbers by
/// their value.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// Walks a value against its schema, gathering field errors.
pub(crate) struct Validator<'a> {
    /// What every error's field starts with (empty for an object; `<schema path>.default`
    /// when checking a default).
    pub(crate) prefix: &'a str,
    pub(crate) errors: Vec<FieldError>,
}

impl Validator<'_> {
    /// The field of an error at kube-openapi's path `name`.
    fn field(&self, name: &str) -> String {
        let name = name.strip_prefix('.').unwrap_or(name);
        match (self.prefix.is_empty(), name.is_empty()) {
            (_, true) => self.prefix.to_string(),
            (true, false) => name.to_string(),
            (false, false) => format!("{}.{}", self.prefix, name),
        }
    }

    fn invalid(&mut self, name: &str, value: Value, message: String) {
        self.errors.push(FieldError::invalid(self.field(name), value, message));
    }

    fn type_invalid(&mut self, name: &str, type_name: &str, got: &str) {
        let message =
            format!("{name} in body must be of type {type_name}: {}", bounded_quote(got, true));
        let field = self.field(name);
        self.errors.push(FieldError {
            field,
            kind: FieldErrorKind::TypeInvalid(Value::from(got), message),
        });
    }

    /// An error kube-openapi reports without a field (anyOf, oneOf, allOf, not, number
    /// ranges): upstream reports it at the prefix, `<nil>` (a nil path) for an object.
    fn composite(&mut self, message: String) {
        let field = if self.prefix.is_empty() { NIL_PATH } else { self.prefix };
        self.errors.push(FieldError::invalid(field, Value::from(""), message));
    }

    /// Validates `value` at kube-openapi path `name` (empty at the root) against `s`;
    /// `root` skips the members of a resource's root validated elsewhere. On an update,
    /// `old` is the old value correlated with this one: a value equal to it is not
    /// validated (upstream's ratcheting: its errors would only be warnings).
    pub(crate) fn check(
        &mut self,
        s: &Schema,
        value: &Value,
        old: Option<&Value>,
        name: &mut String,
        root: bool,
    ) {
        if old.is_some_and(|o| o == value) {
            return;
        }
        self.check_type(s, value, name);
        if value.is_null() {
            self.check_enum(s, value, name);
            return;
        }
        self.check_composition(s, value, name);
        match value {
            Value::String(text) => {
                self.check_string(s, value, text, name);
                if !s.format.is_empty()
                    && !["int32", "int64", "float", "double"].contains(&s.format.as_str())
                    && !formats::is_valid(&s.format, text)
                {
                    self.type_invalid(name, &s.format, text);
                }
            }
            Value::Number(n) => self.check_number(s, value, n, name),
            Value::Array(items) => {
                let old_items = old.and_then(Value::as_array).map(Vec::as_slice);
                self.check_array(s, items, old_items, name)
            }
            _ => {}
        }
        self.check_enum(s, value, name);
        if let Value::Object(map) = value {
            self.check_object(s, map, old.and_then(Value::as_object), name, root);
        }
    }

    fn check_type(&mut self, s: &Schema, value: &Value, name: &str) {
        let types = s.types();
        if types.is_empty() && s.format.is_empty() {
            return;
        }
        if value.is_null() {
            if !types.is_empty() && !s.nullable {
                self.type_invalid(name, types, "null");
            }
            return;
        }
        let (sch_type, format) = info(value);
        let float_int = sch_type == "number"
            && value.as_f64().is_some_and(|f| f.fract() == 0.0 && f.abs() <= MAX_JSON_FLOAT)
            && s.has_type("integer");
        let int_float = sch_type == "integer" && s.has_type("number");
        let stringy = value.is_string() || value.is_array();
        let has_format = !s.format.is_empty();
        let numeric = s.has_type("number") || s.has_type("integer");
        let format_fits = s.has_type(sch_type) || format == s.format || float_int || int_float;
        if has_format && !stringy && !format_fits {
            self.type_invalid(name, &s.format, format);
            return;
        }
        if has_format && stringy && !numeric {
            return;
        }
        if !(s.has_type(sch_type) || float_int || int_float) {
            self.type_invalid(name, types, sch_type);
        }
    }

    /// Whether `value` validates against `s`, with its errors.
    fn sub(&self, s: &Schema, value: &Value, name: &str) -> Vec<FieldError> {
        let mut v = Validator { prefix: self.prefix, errors: Vec::new() };
        v.check(s, value, None, &mut name.to_string(), false);
        v.errors
    }

    fn check_composition(&mut self, s: &Schema, value: &Value, name: &str) {
        if !s.any_of.is_empty() {
            let mut first_failure = None;
            let mut valid = false;
            for alternative in &s.any_of {
                let errors = self.sub(alternative, value, name);
                if errors.is_empty() {
                    valid = true;
                    break;
                }
                first_failure.get_or_insert(errors);
            }
            if !valid {
                self.composite(format!("{name:?} must validate at least one schema (anyOf)"));
                self.errors.extend(first_failure.unwrap_or_default());
            }
        }
        if !s.one_of.is_empty() {
            let mut first_failure = None;
            let mut valid = 0;
            for alternative in &s.one_of {
                let errors = self.sub(alternative, value, name);
                if errors.is_empty() {
                    valid += 1;
                } else {
                    first_failure.get_or_insert(errors);
                }
            }
            if valid != 1 {
                let found = if valid == 0 {
                    "Found none valid".to_string()
                } else {
                    format!("Found {valid} valid alternatives")
                };
                self.composite(format!(
                    "{name:?} must validate one and only one schema (oneOf). {found}"
                ));
                if valid == 0 {
                    self.errors.extend(first_failure.unwrap_or_default());
                }
            }
        }
        if !s.all_of.is_empty() {
            let mut valid = 0;
            for part in &s.all_of {
                let errors = self.sub(part, value, name);
                if errors.is_empty() {
                    valid += 1;
                }
                self.errors.extend(errors);
            }
            if valid != s.all_of.len() {
                let none = if valid == 0 { ". None validated" } else { "" };
                self.composite(format!("{name:?} must validate all the schemas (allOf){none}"));
            }
        }
        if let Some(not) = &s.not
            && self.sub(not, value, name).is_empty()
        {
            self.composite(format!("{name:?} must not validate the schema (not)"));
        }
    }

    fn check_string(&mut self, s: &Schema, value: &Value, text: &str, name: &str) {
        if let Some(max) = s.max_length
            && text.chars().count() as u64 > max
        {
            let field = self.field(name);
            self.errors.push(FieldError { field, kind: FieldErrorKind::TooLong(max as usize) });
            return;
        }
        if let Some(min) = s.min_length
            && (text.chars().count() as u64) < min
        {
            let message = format!("{name} in body should be at least {min} chars long");
            self.invalid(name, value.clone(), message);
            return;
        }
        if let Some(pattern) = &s.pattern
            && !pattern.regex.is_match(text)
        {
            let message = format!("{name} in body should match '{}'", pattern.source);
            self.invalid(name, value.clone(), message);
        }
    }

    fn check_number(&mut self, s: &Schema, value: &Value, n: &Number, name: &str) {
        let data = n.as_f64().unwrap_or_default();
        self.check_range(s, n, name);
        if let Some(factor) = &s.multiple_of {
            let multiple = match (n.as_i64(), factor.as_i64()) {
                (Some(i), Some(f)) if f != 0 => i % f == 0,
                _ => {
                    let f = factor.as_f64().unwrap_or(1.0);
                    let ratio = if f < 1.0 { (1.0 / f) * data } else { data / f };
                    (ratio - ratio.round()).abs() < 1e-9
                }
            };
            if !multiple {
                let message =
                    format!("{name} in body should be a multiple of {}", go_bound(factor, n));
                self.invalid(name, value.clone(), message);
            }
        }
        let below = |bound: &Number| match (n.as_i64(), bound.as_i64()) {
            (Some(i), Some(b)) => i.cmp(&b),
            _ => data
                .partial_cmp(&bound.as_f64().unwrap_or_default())
                .unwrap_or(std::cmp::Ordering::Equal),
        };
        if let Some(min) = &s.minimum {
            let order = below(min);
            let fails = if s.exclusive_minimum { order.is_le() } else { order.is_lt() };
            if fails {
                let relation =
                    if s.exclusive_minimum { "greater than" } else { "greater than or equal to" };
                let message = format!("{name} in body should be {relation} {}", go_bound(min, n));
                self.invalid(name, value.clone(), message);
            }
        }
        if let Some(max) = &s.maximum {
            let order = below(max);
            let fails = if s.exclusive_maximum { order.is_ge() } else { order.is_gt() };
            if fails {
                let relation =
                    if s.exclusive_maximum { "less than" } else { "less than or equal to" };
                let message = format!("{name} in body should be {relation} {}", go_bound(max, n));
                self.invalid(name, value.clone(), message);
            }
        }
    }

    /// kube-openapi's `IsValueValidAgainstRange`: the value fits its type and format
    /// (`int32`, `int64`, `float`).
    fn check_range(&mut self, s: &Schema, n: &Number, name: &str) {
        let (type_name, format) = match s.type_name.as_str() {
            "integer" if !s.int_or_string => (
                "integer",
                if s.format == "int32" || s.format == "int64" { &*s.format } else { "" },
            ),
            "number" => (
                "number",
                if s.format == "float" || s.format == "double" { &*s.format } else { "" },
            ),
            _ => return,
        };
        let fits = match type_name {
            "integer" => {
                let as_i64 = match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => Some(i),
                    (None, Some(_), _) => None,
                    (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => Some(f as i64),
                    _ => None,
                };
                match (as_i64, format) {
                    (Some(i), "int32") => i32::try_from(i).is_ok(),
                    (Some(_), _) => true,
                    (None, _) => false,
                }
            }
            _ => format != "float" || n.as_f64().is_some_and(|f| f.abs() <= f64::from(f32::MAX)),
        };
        if !fits {
            let message = if format.is_empty() {
                format!("Checked value must be of type {type_name} (default format) in {name}")
            } else {
                format!("Checked value must be of type {type_name} with format {format} in {name}")
            };
            self.composite(message);
        }
    }

    fn check_array(
        &mut self,
        s: &Schema,
        items: &[Value],
        old: Option<&[Value]>,
        name: &mut String,
    ) {
        if let Some(item_schema) = &s.items {
            let len = name.len();
            let correlation = Correlation::new(s, old);
            for (i, item) in items.iter().enumerate() {
                let _ = write!(name, "[{i}]");
                let old_item = correlation.as_ref().and_then(|c| c.get(s, item));
                self.check(item_schema, item, old_item, name, false);
                name.truncate(len);
            }
        }
        let size = items.len();
        if let Some(min) = s.min_items
            && (size as u64) < min
        {
            let message = format!("{name} in body should have at least {min} items");
            self.invalid(name, Value::from(size), message);
        }
        if let Some(max) = s.max_items
            && size as u64 > max
        {
            let field = self.field(name);
            let kind = FieldErrorKind::TooMany(Some(size), max as usize);
            self.errors.push(FieldError { field, kind });
        }
        if s.unique_items {
            let duplicated =
                items.iter().enumerate().any(|(i, a)| items[..i].iter().any(|b| json_equal(a, b)));
            if duplicated {
                let message = format!("{name} in body shouldn't contain duplicates");
                self.invalid(name, Value::from(""), message);
            }
        }
    }

    fn check_enum(&mut self, s: &Schema, value: &Value, name: &str) {
        let Some(values) = &s.enumeration else { return };
        if values.iter().any(|e| json_equal(e, value)) {
            return;
        }
        let supported: Vec<String> = values
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        let field = self.field(name);
        self.errors.push(FieldError {
            field,
            // Upstream prints a nil value as the string "null".
            kind: FieldErrorKind::NotSupported(
                if value.is_null() { Value::from("null") } else { value.clone() },
                supported,
            ),
        });
    }

    fn check_object(
        &mut self,
        s: &Schema,
        map: &Map<String, Value>,
        old: Option<&Map<String, Value>>,
        name: &mut String,
        root: bool,
    ) {
        let size = map.len();
        if let Some(min) = s.min_properties
            && (size as u64) < min
        {
            let message = format!("{name} in body should have at least {min} properties");
            self.invalid(name, Value::from(size), message);
        }
        if let Some(max) = s.max_properties
            && size as u64 > max
        {
            let field = self.field(name);
            let kind = FieldErrorKind::TooMany(Some(size), max as usize);
            self.errors.push(FieldError { field, kind });
        }
        let len = name.len();
        for (k, v) in map {
            if root && ROOT_META.contains(&k.as_str()) {
                continue;
            }
            let sub = match (s.properties.get(k), &s.additional) {
                (Some(p), _) => p,
                (None, Some(Additional::Schema(a))) => a,
                (None, Some(Additional::Allows(false))) => {
                    let message = format!("{name}.{k} in body is a forbidden property");
                    self.invalid(name, Value::from(k.as_str()), message);
                    continue;
                }
                _ => continue,
            };
            if !name.is_empty() {
                name.push('.');
            }
            name.push_str(k);
            self.check(sub, v, old.and_then(|o| o.get(k)), name, false);
            name.truncate(len);
        }
        for k in &s.required {
            let elsewhere = root && ROOT_META.contains(&k.as_str());
            if !elsewhere && !map.contains_key(k) {
                let field = self.field(&format!("{name}.{k}"));
                self.errors.push(FieldError::required(field));
            }
        }
    }
}

/// The items of an old list by their keys, to find the old item a new item corresponds
/// to: the one with the same keys in a list of type map; none in other lists (upstream
/// correlates only map lists).
pub(crate) struct Correlation<'a> {
    by_key: HashMap<String, &'a Value>,
}

/// The text of an item's map keys.
fn list_key(schema: &Schema, item: &Value) -> String {
    let mut key = String::new();
    for k in &schema.list_map_keys {
        let _ = write!(key, "{},", item.get(k).unwrap_or(&Value::Null));
    }
    key
}

impl<'a> Correlation<'a> {
    /// Indexes `old`, the old version of a list of schema `schema` (none unless a map list).
    pub(crate) fn new(schema: &Schema, old: Option<&'a [Value]>) -> Option<Self> {
        let old = old?;
        if schema.list_type.as_deref() != Some("map") || schema.list_map_keys.is_empty() {
            return None;
        }
        let mut by_key = HashMap::with_capacity(old.len());
        for item in old {
            by_key.entry(list_key(schema, item)).or_insert(item);
        }
        Some(Self { by_key })
    }

    /// The old item with the keys of `item`.
    pub(crate) fn get(&self, schema: &Schema, item: &Value) -> Option<&'a Value> {
        self.by_key.get(&list_key(schema, item)).copied()
    }
}

/// `path.name` in a field path being built.
fn push_child(path: &mut String, name: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(name);
}

/// Upstream's `objectmeta.Validate`: every embedded resource has a string `apiVersion` and
/// `kind` (its `metadata` is not checked here).
pub(crate) fn embedded(s: &Schema, value: &Value, path: &mut String, errors: &mut Vec<FieldError>) {
    if !s.has_embedded {
        return;
    }
    match value {
        Value::Object(map) => {
            if s.embedded {
                embedded_resource(map, path, errors);
            }
            for (k, v) in map {
                let len = path.len();
                let sub = if let Some(p) = s.properties.get(k) {
                    push_child(path, k);
                    p
                } else if let Some(a) = s.additional_schema() {
                    let _ = write!(path, "[{k}]");
                    a
                } else {
                    continue;
                };
                embedded(sub, v, path, errors);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            if let Some(item) = &s.items {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "[{i}]");
                    embedded(item, v, path, errors);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

fn embedded_resource(map: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    let at = |name: &str| if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
    for name in ["apiVersion", "kind"] {
        if !map.contains_key(name) {
            errors.push(FieldError::required(at(name)));
        }
    }
    if let Some(v) = map.get("apiVersion") {
        match v.as_str() {
            None => {
                errors.push(FieldError::invalid(at("apiVersion"), v.clone(), "must be a string"))
            }
            Some("") => {
                errors.push(FieldError::invalid(at("apiVersion"), v.clone(), "must not be empty"))
            }
            Some(gv) if gv.matches('/').count() > 1 => errors.push(FieldError::invalid(
                at("apiVersion"),
                v.clone(),
                format!("unexpected GroupVersion string: {gv}"),
            )),
            Some(_) => {}
        }
    }
    if let Some(v) = map.get("kind") {
        match v.as_str() {
            None => errors.push(FieldError::invalid(at("kind"), v.clone(), "must be a string")),
            Some("") => {
                errors.push(FieldError::invalid(at("kind"), v.clone(), "must not be empty"))
            }
            Some(kind) => {
                let problems = dns1035_label(&kind.to_lowercase());
                if !problems.is_empty() {
                    errors.push(FieldError::invalid(
                        at("kind"),
                        v.clone(),
                        format!(
                            "may have mixed case, but should otherwise match: {}",
                            problems.join(",")
                        ),
                    ));
                }
            }
        }
    }
}

/// Upstream's `IsDNS1035Label`.
fn dns1035_label(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > 63 {
        problems.push("must be no more than 63 characters".to_string());
    }
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-';
    if !ok {
        problems.push("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".to_string());
    }
    problems
}

/// Upstream's `listtype.ValidateListSetsAndMaps`: no duplicate in a list of type `set`, no
/// two items with the same keys in a list of type `map`.
pub(crate) fn lists(s: &Schema, value: &Value, path: &mut String, errors: &mut Vec<FieldError>) {
    if !s.has_list_checks {
        return;
    }
    match value {
        Value::Array(items) => {
            match s.list_type.as_deref() {
                Some("set") => {
                    let keys: Vec<String> = items.iter().map(canonical).collect();
                    for i in duplicates(&keys) {
                        errors
                            .push(FieldError::duplicate(format!("{path}[{i}]"), items[i].clone()));
                    }
                }
                Some("map") => map_list(s, items, path, errors),
                _ => {}
            }
            if let Some(item) = &s.items {
                for (i, v) in items.iter().enumerate() {
                    let len = path.len();
                    let _ = write!(path, "[{i}]");
                    lists(item, v, path, errors);
                    path.truncate(len);
                }
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                let len = path.len();
                let sub = if let Some(a) = s.additional_schema() {
                    let _ = write!(path, "[{k}]");
                    a
                } else if let Some(p) = s.properties.get(k) {
                    push_child(path, k);
                    p
                } else {
                    continue;
                };
                lists(sub, v, path, errors);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

/// A value's JSON with object members sorted, as Go's encoding writes maps: equal values
/// give equal texts whatever the order of their members.
fn canonical(v: &Value) -> String {
    fn write_canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{}:", Value::from(k.as_str()));
                    write_canonical(&map[k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_canonical(item, out);
                }
                out.push(']');
            }
            other => {
                let _ = write!(out, "{other}");
            }
        }
    }
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

/// The indices of the second occurrence of every value seen more than once.
fn duplicates(keys: &[String]) -> Vec<usize> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(keys.len());
    let mut out = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let times = seen.entry(k).or_insert(0);
        *times += 1;
        if *times == 2 {
            out.push(i);
        }
    }
    out
}

fn map_list(s: &Schema, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
    for (i, x) in items.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            errors.push(FieldError::invalid(
                format!("{path}[{i}]"),
                x.clone(),
                "must be an object for an array of list-type map",
            ));
            return;
        }
    }
    if items.len() <= 1 {
        return;
    }
    let key_objects: Vec<Value> = items
        .iter()
        .map(|x| {
            let mut key = Map::new();
            for k in &s.list_map_keys {
                if let Some(v) = x.get(k) {
                    key.insert(k.clone(), v.clone());
                }
            }
            Value::Object(key)
        })
        .collect();
    let keys: Vec<String> = key_objects.iter().map(canonical).collect();
    for i in duplicates(&keys) {
        errors.push(FieldError::duplicate(format!("{path}[{i}]"), key_objects[i].clone()));
    }
}
