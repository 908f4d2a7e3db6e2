//! A CRD version's `openAPIV3Schema` parsed into a tree of [`Schema`]s, with upstream's checks
//! of the schema itself: the keywords a CRD may not use (`ValidateCustomResourceDefinitionOpenAPISchema`)
//! and the rules that make a schema structural (`schema/validation.go`, `schema/complete.go`).

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Number, Value};

use super::rules::{self, Rule};
use crate::validation::FieldError;

/// The types a CRD schema may name (upstream's `openapiV3Types`).
const TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];

/// The string formats upstream validates (kube-openapi's default registry, as
/// `StripUnsupportedFormatsPostProcess` keeps them: names without dashes).
const STRING_FORMATS: [&str; 24] = [
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

/// What `additionalProperties` says.
#[derive(Debug)]
pub(crate) enum Additional {
    /// `true` or `false`.
    Allows(bool),
    /// A schema for the values.
    Schema(Box<Schema>),
}

/// A `pattern`, compiled.
#[derive(Debug)]
pub(crate) struct Pattern {
    pub(crate) source: String,
    pub(crate) regex: Regex,
}

/// One schema node: either a node of the structural tree (properties, items,
/// additionalProperties) or a value validation nested in `allOf`, `anyOf`, `oneOf` or `not`.
#[derive(Debug, Default)]
pub(crate) struct Schema {
    /// `type` as written (empty when absent).
    pub(crate) type_name: String,
    pub(crate) nullable: bool,
    /// `format` when upstream validates it (unsupported formats are dropped, as upstream does).
    pub(crate) format: String,
    pub(crate) default: Option<Value>,
    pub(crate) enumeration: Option<Vec<Value>>,
    pub(crate) maximum: Option<Number>,
    pub(crate) exclusive_maximum: bool,
    pub(crate) minimum: Option<Number>,
    pub(crate) exclusive_minimum: bool,
    pub(crate) multiple_of: Option<Number>,
    pub(crate) max_length: Option<u64>,
    pub(crate) min_length: Option<u64>,
    pub(crate) pattern: Option<Pattern>,
    pub(crate) max_items: Option<u64>,
    pub(crate) min_items: Option<u64>,
    pub(crate) unique_items: bool,
    pub(crate) max_properties: Option<u64>,
    pub(crate) min_properties: Option<u64>,
    pub(crate) required: Vec<String>,
    pub(crate) properties: BTreeMap<String, Schema>,
    pub(crate) additional: Option<Additional>,
    pub(crate) items: Option<Box<Schema>>,
    pub(crate) all_of: Vec<Schema>,
    pub(crate) any_of: Vec<Schema>,
    pub(crate) one_of: Vec<Schema>,
    pub(crate) not: Option<Box<Schema>>,
    pub(crate) preserve_unknown: bool,
    pub(crate) embedded: bool,
    pub(crate) int_or_string: bool,
    pub(crate) list_type: Option<String>,
    pub(crate) list_map_keys: Vec<String>,
    pub(crate) map_type: Option<String>,
    pub(crate) rules: Vec<Rule>,
    /// Whether `x-kubernetes-validations` is present (nested ones are not compiled).
    pub(crate) has_validations: bool,
    pub(crate) has_title: bool,
    /// `items` is a list of schemas (refused; upstream then reports no structural error
    /// about the missing items schema).
    pub(crate) items_list: bool,
    pub(crate) has_description: bool,
    /// Whether the schema has any keyword besides `type` (for the int-or-string pattern).
    pub(crate) only_type: bool,
    /// This node or one below it has CEL rules.
    pub(crate) has_rules: bool,
    /// A node below this one has a default.
    pub(crate) has_defaults: bool,
    /// This node or one below it is an embedded resource.
    pub(crate) has_embedded: bool,
    /// This node or one below it is a list of type set or map.
    pub(crate) has_list_checks: bool,
}

impl Schema {
    /// The schema of a member `key` of an object this schema describes.
    pub(crate) fn member(&self, key: &str) -> Option<&Schema> {
        match self.properties.get(key) {
            Some(s) => Some(s),
            None => self.additional_schema(),
        }
    }

    /// The schema of `additionalProperties`, if one.
    pub(crate) fn additional_schema(&self) -> Option<&Schema> {
        match &self.additional {
            Some(Additional::Schema(s)) => Some(s),
            _ => None,
        }
    }

    /// The declared types as kube-openapi joins them in messages (`integer,string` for
    /// `x-kubernetes-int-or-string`).
    pub(crate) fn types(&self) -> &str {
        if self.int_or_string { "integer,string" } else { &self.type_name }
    }

    /// Whether the declared types include `t`.
    pub(crate) fn has_type(&self, t: &str) -> bool {
        if self.int_or_string { t == "integer" || t == "string" } else { self.type_name == t }
    }

    /// Whether this is `{type: <t>}` and nothing else.
    fn is_bare_type(&self, t: &str) -> bool {
        self.only_type && self.type_name == t
    }

    /// Whether `anyOf` is upstream's int-or-string pattern (`[{type: integer}, {type: string}]`).
    fn any_of_is_int_or_string(&self) -> bool {
        self.any_of.len() == 2
            && self.any_of[0].is_bare_type("integer")
            && self.any_of[1].is_bare_type("string")
    }
}

/// Where a schema sits, for the structural rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    Root,
    Item,
    Field,
}

/// `path.name`, as upstream's `field.Path.Child`.
pub(crate) fn child(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

/// `path[key]`, as upstream's `field.Path.Key` and `Index`.
pub(crate) fn key(path: &str, key: impl std::fmt::Display) -> String {
    format!("{path}[{key}]")
}

#[derive(Clone)]
struct Context {
    /// The resource's root schema.
    root: bool,
    /// Inside `allOf`, `anyOf`, `oneOf` or `not`.
    nested: bool,
    /// The array above whose items `oldSelf` cannot be correlated (upstream's
    /// "uncorrelatable portion of the schema").
    uncorrelatable: Option<String>,
}

/// Parses schemas, gathering the errors of the CRD's schema.
#[derive(Default)]
pub(crate) struct Parser {
    /// Errors of the keywords themselves.
    pub(crate) errors: Vec<FieldError>,
    /// Errors of the CEL rules (reported after the others, as upstream).
    pub(crate) rule_errors: Vec<FieldError>,
}

fn non_negative(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| {
        let f = value.as_f64()?;
        (f >= 0.0 && f.fract() == 0.0 && f < 1e19).then_some(f as u64)
    })
}

impl Parser {
    fn invalid(&mut self, path: String, value: &Value, detail: &str) {
        self.errors.push(FieldError::invalid(path, value.clone(), detail));
    }

    fn forbidden(&mut self, path: String, detail: &str) {
        self.errors.push(FieldError::forbidden(path, detail));
    }

    fn string(&mut self, path: &str, name: &str, value: &Value) -> String {
        match value.as_str() {
            Some(s) => s.to_string(),
            None => {
                self.invalid(child(path, name), value, "must be a string");
                String::new()
            }
        }
    }

    fn boolean(&mut self, path: &str, name: &str, value: &Value) -> bool {
        match value.as_bool() {
            Some(b) => b,
            None => {
                self.invalid(child(path, name), value, "must be a boolean");
                false
            }
        }
    }

    fn number(&mut self, path: &str, name: &str, value: &Value) -> Option<Number> {
        match value {
            Value::Number(n) => Some(n.clone()),
            _ => {
                self.invalid(child(path, name), value, "must be a number");
                None
            }
        }
    }

    fn count(&mut self, path: &str, name: &str, value: &Value) -> Option<u64> {
        let n = non_negative(value);
        if n.is_none() {
            self.invalid(child(path, name), value, "must be a non-negative integer");
        }
        n
    }

    fn strings(&mut self, path: &str, name: &str, value: &Value) -> Vec<String> {
        match value.as_array() {
            Some(items) if items.iter().all(Value::is_string) => {
                items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()
            }
            _ => {
                self.invalid(child(path, name), value, "must be a list of strings");
                Vec::new()
            }
        }
    }

    fn schemas(&mut self, path: &str, name: &str, value: &Value, ctx: &Context) -> Vec<Schema> {
        let Some(items) = value.as_array() else {
            self.invalid(child(path, name), value, "must be a list of schemas");
            return Vec::new();
        };
        let nested = Context { nested: true, ..ctx.clone() };
        let base = child(path, name);
        items.iter().enumerate().map(|(i, v)| self.parse(v, &key(&base, i), &nested)).collect()
    }

    /// Parses the root schema at `path`.
    pub(crate) fn parse_root(&mut self, value: &Value, path: &str) -> Schema {
        let ctx = Context { root: true, nested: false, uncorrelatable: None };
        let root = self.parse(value, path, &ctx);
        if root.nullable {
            self.forbidden(child(path, "nullable"), "nullable cannot be true at the root");
        }
        root
    }

    fn parse(&mut self, value: &Value, path: &str, ctx: &Context) -> Schema {
        let root = ctx.root;
        let ctx = &Context { root: false, ..ctx.clone() };
        let mut s = Schema { only_type: true, ..Schema::default() };
        let Some(map) = value.as_object() else {
            self.invalid(path.to_string(), value, "must be a schema object");
            return s;
        };
        let mut format = String::new();
        let mut validations = None;
        for (name, v) in map {
            // A null keyword is an absent one, as upstream's decoding has it.
            if v.is_null() {
                continue;
            }
            if name != "type" {
                s.only_type = false;
            }
            match name.as_str() {
                "type" => s.type_name = self.string(path, name, v),
                "format" => format = self.string(path, name, v),
                "nullable" => s.nullable = self.boolean(path, name, v),
                "default" => s.default = Some(v.clone()),
                "enum" => match v.as_array() {
                    Some(values) => s.enumeration = Some(values.clone()),
                    None => self.invalid(child(path, name), v, "must be a list"),
                },
                "maximum" => s.maximum = self.number(path, name, v),
                "minimum" => s.minimum = self.number(path, name, v),
                "multipleOf" => s.multiple_of = self.number(path, name, v),
                "exclusiveMaximum" => s.exclusive_maximum = self.boolean(path, name, v),
                "exclusiveMinimum" => s.exclusive_minimum = self.boolean(path, name, v),
                "maxLength" => s.max_length = self.count(path, name, v),
                "minLength" => s.min_length = self.count(path, name, v),
                "maxItems" => s.max_items = self.count(path, name, v),
                "minItems" => s.min_items = self.count(path, name, v),
                "maxProperties" => s.max_properties = self.count(path, name, v),
                "minProperties" => s.min_properties = self.count(path, name, v),
                "pattern" => {
                    let source = self.string(path, name, v);
                    match Regex::new(&source) {
                        Ok(regex) => s.pattern = Some(Pattern { source, regex }),
                        Err(e) => self.invalid(
                            child(path, name),
                            v,
                            &format!(
                                "must be a valid regular expression, but isn't: error parsing regexp: {}",
                                regex_error(&e)
                            ),
                        ),
                    }
                }
                "uniqueItems" => {
                    s.unique_items = self.boolean(path, name, v);
                    if s.unique_items {
                        self.forbidden(
                            child(path, name),
                            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
                        );
                    }
                }
                "required" => s.required = self.strings(path, name, v),
                "properties" => match v.as_object() {
                    Some(props) => {
                        let base = child(path, name);
                        let sub = ctx.clone();
                        for (k, p) in props {
                            let parsed = self.parse(p, &key(&base, k), &sub);
                            s.properties.insert(k.clone(), parsed);
                        }
                    }
                    None => self.invalid(child(path, name), v, "must be an object"),
                },
                "additionalProperties" => match v {
                    Value::Bool(b) => s.additional = Some(Additional::Allows(*b)),
                    _ => {
                        let sub = ctx.clone();
                        let parsed = self.parse(v, &child(path, name), &sub);
                        s.additional = Some(Additional::Schema(Box::new(parsed)));
                    }
                },
                "items" => {
                    if v.is_array() {
                        s.items_list = true;
                        self.forbidden(
                            child(path, name),
                            "items must be a schema object and not an array",
                        );
                    } else {
                        let mut sub = ctx.clone();
                        let list_type = map.get("x-kubernetes-list-type").and_then(Value::as_str);
                        if list_type != Some("map") && sub.uncorrelatable.is_none() {
                            sub.uncorrelatable = Some(path.to_string());
                        }
                        s.items = Some(Box::new(self.parse(v, &child(path, name), &sub)));
                    }
                }
                "allOf" => s.all_of = self.schemas(path, name, v, ctx),
                "anyOf" => s.any_of = self.schemas(path, name, v, ctx),
                "oneOf" => s.one_of = self.schemas(path, name, v, ctx),
                "not" => {
                    let nested = Context { nested: true, ..ctx.clone() };
                    s.not = Some(Box::new(self.parse(v, &child(path, name), &nested)));
                }
                "x-kubernetes-preserve-unknown-fields" => {
                    s.preserve_unknown = self.boolean(path, name, v);
                    if !s.preserve_unknown {
                        self.invalid(child(path, name), v, "must be true or undefined");
                    }
                }
                "x-kubernetes-embedded-resource" => s.embedded = self.boolean(path, name, v),
                "x-kubernetes-int-or-string" => s.int_or_string = self.boolean(path, name, v),
                "x-kubernetes-list-type" => s.list_type = Some(self.string(path, name, v)),
                "x-kubernetes-list-map-keys" => s.list_map_keys = self.strings(path, name, v),
                "x-kubernetes-map-type" => s.map_type = Some(self.string(path, name, v)),
                "x-kubernetes-validations" => {
                    s.has_validations = v.as_array().is_some_and(|a| !a.is_empty());
                    validations = Some(v);
                }
                "title" => s.has_title = v.as_str().is_some_and(|t| !t.is_empty()),
                "description" => s.has_description = v.as_str().is_some_and(|t| !t.is_empty()),
                "id" => self.forbidden(child(path, name), "id is not supported"),
                "$ref" => self.forbidden(child(path, name), "$ref is not supported"),
                "additionalItems" => {
                    self.forbidden(child(path, name), "additionalItems is not supported")
                }
                "patternProperties" => {
                    self.forbidden(child(path, name), "patternProperties is not supported")
                }
                "definitions" => self.forbidden(child(path, name), "definitions is not supported"),
                "dependencies" => {
                    self.forbidden(child(path, name), "dependencies is not supported")
                }
                _ => {}
            }
        }
        s.format = effective_format(&s, format);
        self.check_keywords(&s, path);
        if let Some(v) = validations
            && !ctx.nested
        {
            s.rules = rules::parse_rules(self, v, &s, path, ctx.uncorrelatable.as_deref(), root);
        }
        s.has_rules = !s.rules.is_empty()
            || s.properties.values().any(|p| p.has_rules)
            || s.items.as_ref().is_some_and(|i| i.has_rules)
            || s.additional_schema().is_some_and(|a| a.has_rules);
        let below = |s: &Schema, f: fn(&Schema) -> bool| {
            s.properties.values().any(f)
                || s.items.as_deref().is_some_and(f)
                || s.additional_schema().is_some_and(f)
        };
        s.has_defaults = below(&s, |c| c.default.is_some() || c.has_defaults);
        s.has_embedded = s.embedded || below(&s, |c| c.has_embedded);
        s.has_list_checks = matches!(s.list_type.as_deref(), Some("set" | "map"))
            || below(&s, |c| c.has_list_checks);
        s
    }

    /// The checks `ValidateCustomResourceDefinitionOpenAPISchema` makes of one schema.
    fn check_keywords(&mut self, s: &Schema, path: &str) {
        if s.type_name == "null" {
            self.forbidden(
                child(path, "type"),
                "type cannot be set to null, use nullable as an alternative",
            );
        } else if !s.type_name.is_empty() && !TYPES.contains(&s.type_name.as_str()) {
            self.errors.push(FieldError::not_supported(
                child(path, "type"),
                Value::from(s.type_name.as_str()),
                &TYPES,
            ));
        }
        if let Some(additional) = &s.additional {
            let allows_any = matches!(additional, Additional::Allows(true));
            if !s.properties.is_empty() && !allows_any {
                self.forbidden(
                    child(path, "additionalProperties"),
                    "additionalProperties and properties are mutual exclusive",
                );
            }
        }
        if let Some(map_type) = &s.map_type {
            if s.type_name != "object" {
                self.type_must_be(path, s, "object", "if x-kubernetes-map-type is specified");
            }
            if map_type != "atomic" && map_type != "granular" {
                self.errors.push(FieldError::not_supported(
                    child(path, "x-kubernetes-map-type"),
                    Value::from(map_type.as_str()),
                    &["atomic", "granular"],
                ));
            }
        }
        if let Some(list_type) = &s.list_type {
            if s.type_name != "array" {
                self.type_must_be(path, s, "array", "if x-kubernetes-list-type is specified");
            } else if list_type == "set"
                && let Some(items) = &s.items
            {
                if items.list_type.as_deref().is_some_and(|t| t != "atomic") {
                    self.errors.push(FieldError::invalid(
                        child(&child(path, "items"), "x-kubernetes-list-type"),
                        Value::from(items.list_type.clone()),
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
                if items.map_type.as_deref().is_some_and(|t| t != "atomic") {
                    self.errors.push(FieldError::invalid(
                        child(&child(path, "items"), "x-kubernetes-map-type"),
                        Value::from(items.map_type.clone()),
                        "must be atomic as item of a list with x-kubernetes-list-type=set",
                    ));
                }
            }
            if !["atomic", "set", "map"].contains(&list_type.as_str()) {
                self.errors.push(FieldError::not_supported(
                    child(path, "x-kubernetes-list-type"),
                    Value::from(list_type.as_str()),
                    &["atomic", "set", "map"],
                ));
            }
        }
        if !s.list_map_keys.is_empty() {
            match s.list_type.as_deref() {
                None => self.errors.push(
                    FieldError::required(child(path, "x-kubernetes-list-type"))
                        .with_detail("must be map if x-kubernetes-list-map-keys is non-empty"),
                ),
                Some("map") => {}
                Some(other) => self.invalid(
                    child(path, "x-kubernetes-list-type"),
                    &Value::from(other),
                    "must be map if x-kubernetes-list-map-keys is non-empty",
                ),
            }
        }
        if s.list_type.as_deref() == Some("map") {
            self.check_map_list(s, path);
        }
        if matches!(s.list_type.as_deref(), Some("set" | "map"))
            && s.items.as_ref().is_some_and(|i| i.nullable)
        {
            self.forbidden(
                child(&child(path, "items"), "nullable"),
                &format!(
                    "cannot be nullable when x-kubernetes-list-type is {}",
                    s.list_type.as_deref().unwrap_or_default()
                ),
            );
        }
    }

    fn type_must_be(&mut self, path: &str, s: &Schema, wanted: &str, condition: &str) {
        let detail = format!("must be {wanted} {condition}");
        if s.type_name.is_empty() {
            self.errors.push(FieldError::required(child(path, "type")).with_detail(detail));
        } else {
            self.invalid(child(path, "type"), &Value::from(s.type_name.as_str()), &detail);
        }
    }

    fn check_map_list(&mut self, s: &Schema, path: &str) {
        if s.list_map_keys.is_empty() {
            self.errors.push(
                FieldError::required(child(path, "x-kubernetes-list-map-keys"))
                    .with_detail("must not be empty if x-kubernetes-list-type is map"),
            );
        }
        let Some(items) = &s.items else {
            self.errors.push(
                FieldError::required(child(path, "items"))
                    .with_detail("must have a schema if x-kubernetes-list-type is map"),
            );
            return;
        };
        let items_path = child(path, "items");
        if items.type_name != "object" {
            self.invalid(
                child(&items_path, "type"),
                &Value::from(items.type_name.as_str()),
                "must be object if parent array's x-kubernetes-list-type is map",
            );
            return;
        }
        let keys_value = Value::from(s.list_map_keys.clone());
        let mut seen = Vec::new();
        for k in &s.list_map_keys {
            let Some(prop) = items.properties.get(k) else {
                self.invalid(
                    child(path, "x-kubernetes-list-map-keys"),
                    &keys_value,
                    "entries must all be names of item properties",
                );
                break;
            };
            if !["string", "integer", "number", "boolean"].contains(&prop.type_name.as_str()) {
                self.invalid(
                    child(&key(&child(&items_path, "properties"), k), "type"),
                    &Value::from(items.type_name.as_str()),
                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                );
            }
            if seen.contains(&k) {
                self.invalid(
                    child(path, "x-kubernetes-list-map-keys"),
                    &keys_value,
                    "must not contain duplicate entries",
                );
            }
            seen.push(k);
            let prop_path = key(&child(&items_path, "properties"), k);
            if !items.required.contains(k) && prop.default.is_none() {
                self.errors.push(FieldError::required(child(&prop_path, "default")).with_detail(
                    "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                ));
            }
            if prop.nullable {
                self.forbidden(
                    child(&prop_path, "nullable"),
                    "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                );
            }
        }
    }
}

/// A regex error on one line, without the pattern the crate repeats: its last line.
fn regex_error(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

/// The format upstream validates: string formats it knows (compared without dashes),
/// `int32`/`int64` for integers, `float`/`double` for numbers; others are ignored.
fn effective_format(s: &Schema, format: String) -> String {
    if format.is_empty() {
        return format;
    }
    let keep = match s.type_name.as_str() {
        "" | "string" => STRING_FORMATS.contains(&format.replace('-', "").as_str()),
        "integer" if !s.int_or_string => format == "int32" || format == "int64",
        "number" => format == "float" || format == "double",
        _ => s.int_or_string && STRING_FORMATS.contains(&format.replace('-', "").as_str()),
    };
    if keep { format } else { String::new() }
}

/// Upstream's `validateStructuralInvariants` and `validateStructuralCompleteness`: the
/// errors that make a schema not structural, sorted as upstream sorts them.
pub(crate) fn structural_errors(root: &Schema, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    invariants(root, Level::Root, path, &mut errors);
    completeness(root, Some(root), path, path, &mut errors);
    errors.sort_by_key(|e| e.to_string());
    errors
}

fn invariants(s: &Schema, level: Level, path: &str, errors: &mut Vec<FieldError>) {
    if s.type_name == "array" && s.items.is_none() && !s.items_list {
        errors.push(FieldError::required(child(path, "items")).with_detail("must be specified"));
    }
    if let Some(items) = &s.items {
        invariants(items, Level::Item, &child(path, "items"), errors);
    }
    for (k, p) in &s.properties {
        invariants(p, Level::Field, &key(&child(path, "properties"), k), errors);
    }
    if let Some(additional) = &s.additional {
        if level == Level::Root {
            errors.push(FieldError::forbidden(
                child(path, "additionalProperties"),
                "must not be used at the root",
            ));
        }
        if let Additional::Schema(a) = additional {
            invariants(a, Level::Field, &child(path, "additionalProperties"), errors);
        }
    }
    if s.int_or_string && s.preserve_unknown {
        errors.push(FieldError::invalid(
            child(path, "x-kubernetes-preserve-unknown-fields"),
            Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if s.int_or_string && s.embedded {
        errors.push(FieldError::invalid(
            child(path, "x-kubernetes-embedded-resource"),
            Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    let skip_any_of = s.any_of_is_int_or_string();
    let skip_first_all_of_any_of = s.all_of.first().is_some_and(Schema::any_of_is_int_or_string);
    value_validation(s, skip_any_of, skip_first_all_of_any_of, path, errors);

    let check_metadata = level == Level::Root || s.embedded;
    if s.embedded && s.type_name != "object" {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        if s.type_name.is_empty() {
            errors.push(FieldError::required(child(path, "type")).with_detail(detail));
        } else {
            errors.push(FieldError::invalid(
                child(path, "type"),
                Value::from(s.type_name.as_str()),
                detail,
            ));
        }
    } else if s.type_name.is_empty() && !s.int_or_string && !s.preserve_unknown {
        let detail = match level {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errors.push(FieldError::required(child(path, "type")).with_detail(detail));
    }
    if s.embedded && s.additional.is_some() {
        errors.push(FieldError::forbidden(
            child(path, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if level == Level::Root && !s.type_name.is_empty() && s.type_name != "object" {
        errors.push(FieldError::invalid(
            child(path, "type"),
            Value::from(s.type_name.as_str()),
            "must be object at the root",
        ));
    }
    if check_metadata {
        for name in ["kind", "apiVersion"] {
            if let Some(p) = s.properties.get(name)
                && p.type_name != "string"
            {
                errors.push(FieldError::invalid(
                    child(&key(&child(path, "properties"), name), "type"),
                    Value::from(p.type_name.as_str()),
                    "must be string",
                ));
            }
        }
    }
    if let Some(metadata) = s.properties.get("metadata") {
        let meta_path = key(&child(path, "properties"), "metadata");
        if check_metadata && metadata.type_name != "object" {
            errors.push(FieldError::invalid(
                child(&meta_path, "type"),
                Value::from(metadata.type_name.as_str()),
                "must be object",
            ));
        }
        if level == Level::Root && !is_implicit_metadata(metadata) {
            errors.push(FieldError::forbidden(
                meta_path,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            ));
        }
    }
    if s.embedded && !s.preserve_unknown && s.properties.is_empty() {
        errors.push(FieldError::required(child(path, "properties")).with_detail(
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

/// Whether the root's `metadata` says nothing but its type, a default and the properties
/// `name` and `generateName` (everything else is implied by ObjectMeta).
fn is_implicit_metadata(m: &Schema) -> bool {
    let props_ok = m.properties.keys().all(|k| k == "name" || k == "generateName");
    props_ok
        && !m.nullable
        && m.format.is_empty()
        && !m.has_title
        && !m.has_description
        && m.enumeration.is_none()
        && m.maximum.is_none()
        && m.minimum.is_none()
        && m.multiple_of.is_none()
        && m.max_length.is_none()
        && m.min_length.is_none()
        && m.pattern.is_none()
        && m.max_items.is_none()
        && m.min_items.is_none()
        && !m.unique_items
        && m.max_properties.is_none()
        && m.min_properties.is_none()
        && m.required.is_empty()
        && m.additional.is_none()
        && m.items.is_none()
        && m.all_of.is_empty()
        && m.any_of.is_empty()
        && m.one_of.is_empty()
        && m.not.is_none()
        && !m.preserve_unknown
        && !m.embedded
        && !m.int_or_string
        && m.list_type.is_none()
        && m.list_map_keys.is_empty()
        && m.map_type.is_none()
        && !m.has_validations
}

fn value_validation(
    s: &Schema,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, v) in s.any_of.iter().enumerate() {
            nested(v, false, &key(&child(path, "anyOf"), i), errors);
        }
    }
    for (i, v) in s.all_of.iter().enumerate() {
        nested(v, skip_first_all_of_any_of && i == 0, &key(&child(path, "allOf"), i), errors);
    }
    for (i, v) in s.one_of.iter().enumerate() {
        nested(v, false, &key(&child(path, "oneOf"), i), errors);
    }
    if let Some(not) = &s.not {
        nested(not, false, &child(path, "not"), errors);
    }
}

/// Upstream's `validateNestedValueValidation`: what a value validation in `allOf`, `anyOf`,
/// `oneOf` or `not` may not say.
fn nested(v: &Schema, skip_any_of: bool, path: &str, errors: &mut Vec<FieldError>) {
    value_validation(v, skip_any_of, false, path, errors);
    if let Some(items) = &v.items {
        nested(items, false, &child(path, "items"), errors);
    }
    for (k, p) in &v.properties {
        nested(p, false, &key(&child(path, "properties"), k), errors);
    }
    let forbid = |errors: &mut Vec<FieldError>, name: &str, detail: &str| {
        errors.push(FieldError::forbidden(child(path, name), detail));
    };
    if !v.type_name.is_empty() {
        forbid(errors, "type", "must be empty to be structural");
    }
    if matches!(v.additional, Some(Additional::Schema(_) | Additional::Allows(true))) {
        forbid(errors, "additionalProperties", "must be undefined to be structural");
    }
    if v.default.is_some() {
        forbid(errors, "default", "must be undefined to be structural");
    }
    if v.has_title {
        forbid(errors, "title", "must be empty to be structural");
    }
    if v.has_description {
        forbid(errors, "description", "must be empty to be structural");
    }
    if v.nullable {
        forbid(errors, "nullable", "must be false to be structural");
    }
    if v.preserve_unknown {
        forbid(errors, "x-kubernetes-preserve-unknown-fields", "must be false to be structural");
    }
    if v.embedded {
        forbid(errors, "x-kubernetes-embedded-resource", "must be false to be structural");
    }
    if v.int_or_string {
        forbid(errors, "x-kubernetes-int-or-string", "must be false to be structural");
    }
    if !v.list_map_keys.is_empty() {
        forbid(errors, "x-kubernetes-list-map-keys", "must be empty to be structural");
    }
    if v.list_type.is_some() {
        forbid(errors, "x-kubernetes-list-type", "must be undefined to be structural");
    }
    if v.map_type.is_some() {
        forbid(errors, "x-kubernetes-map-type", "must be undefined to be structural");
    }
    if v.has_validations {
        forbid(errors, "x-kubernetes-validations", "must be empty to be structural");
    }
    if v.properties.contains_key("metadata") {
        errors.push(FieldError::forbidden(
            key(&child(path, "properties"), "metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// Upstream's completeness rule: every property and items a value validation speaks of
/// must be specified in the structural schema beside it. As upstream, only the root's value
/// validations are checked.
fn completeness(
    v: &Schema,
    s: Option<&Schema>,
    s_path: &str,
    v_path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(s) = s else { return };
    if let Some(not) = &v.not {
        nested_completeness(not, Some(s), s_path, &child(v_path, "not"), errors);
    }
    for (name, list) in [("allOf", &v.all_of), ("anyOf", &v.any_of), ("oneOf", &v.one_of)] {
        for (i, sub) in list.iter().enumerate() {
            nested_completeness(sub, Some(s), s_path, &key(&child(v_path, name), i), errors);
        }
    }
}

fn nested_completeness(
    v: &Schema,
    s: Option<&Schema>,
    s_path: &str,
    v_path: &str,
    errors: &mut Vec<FieldError>,
) {
    let Some(s) = s else {
        errors.push(
            FieldError::required(s_path).with_detail(format!("because it is defined in {v_path}")),
        );
        return;
    };
    completeness(v, Some(s), s_path, v_path, errors);
    if let Some(items) = &v.items {
        nested_completeness(
            items,
            s.items.as_deref(),
            &child(s_path, "items"),
            &child(v_path, "items"),
            errors,
        );
    }
    for (k, p) in &v.properties {
        let sp = key(&child(s_path, "properties"), k);
        let vp = key(&child(v_path, "properties"), k);
        match s.properties.get(k) {
            Some(sub) => nested_completeness(p, Some(sub), &sp, &vp, errors),
            None => errors.push(
                FieldError::required(sp).with_detail(format!("because it is defined in {vp}")),
            ),
        }
    }
}
