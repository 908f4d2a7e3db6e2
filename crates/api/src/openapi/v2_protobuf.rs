//! The `/openapi/v2` document in protobuf, as client-go asks for it
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): the messages of gnostic's
//! `openapi.v2` package (`OpenAPIv2.proto`), encoded from the JSON document field by field.
//!
//! Values with no message of their own (vendor extensions, `default`, `enum`, `example`) are
//! gnostic `Any`s carrying their YAML; their JSON is written, which is YAML too.

use serde_json::{Map, Value};

/// One message being written: fields in order, each `(number << 3 | wire type)` then its
/// value; proto3 scalars at their default value are left out.
#[derive(Default)]
struct Message(Vec<u8>);

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LENGTH: u64 = 2;

impl Message {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    fn key(&mut self, field: u64, wire: u64) {
        self.varint(field << 3 | wire);
    }

    fn bytes(&mut self, field: u64, bytes: &[u8]) {
        self.key(field, LENGTH);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn string(&mut self, field: u64, value: Option<&Value>) {
        if let Some(text) = value.and_then(Value::as_str).filter(|t| !t.is_empty()) {
            self.bytes(field, text.as_bytes());
        }
    }

    fn strings(&mut self, field: u64, value: Option<&Value>) {
        for text in value.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
        {
            self.bytes(field, text.as_bytes());
        }
    }

    fn bool(&mut self, field: u64, value: Option<&Value>) {
        if value.and_then(Value::as_bool) == Some(true) {
            self.key(field, VARINT);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u64, value: Option<&Value>) {
        if let Some(n) = value.and_then(Value::as_i64).filter(|n| *n != 0) {
            self.key(field, VARINT);
            self.varint(n as u64);
        }
    }

    fn double(&mut self, field: u64, value: Option<&Value>) {
        if let Some(n) = value.and_then(Value::as_f64).filter(|n| *n != 0.0) {
            self.key(field, FIXED64);
            self.0.extend_from_slice(&n.to_le_bytes());
        }
    }

    fn message(&mut self, field: u64, message: Message) {
        self.bytes(field, &message.0);
    }

    /// A gnostic `Any` holding `value`'s YAML (its JSON).
    fn any(&mut self, field: u64, value: &Value) {
        let mut any = Message::default();
        any.bytes(2, value.to_string().as_bytes());
        self.message(field, any);
    }

    /// The `x-` members of `object` as `NamedAny`s.
    fn extensions(&mut self, field: u64, object: &Map<String, Value>) {
        for (name, value) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
            let mut named = Message::default();
            named.bytes(1, name.as_bytes());
            named.any(2, value);
            self.message(field, named);
        }
    }

    /// `Named<T>` entries of `object`'s members, each value written by `write`.
    fn named(&mut self, field: u64, object: Option<&Value>, write: impl Fn(&Value) -> Message) {
        for (name, value) in object.and_then(Value::as_object).into_iter().flatten() {
            let mut named = Message::default();
            named.bytes(1, name.as_bytes());
            named.message(2, write(value));
            self.message(field, named);
        }
    }
}

/// `doc`, an OpenAPI v2 document in JSON, as a gnostic `openapi.v2.Document`.
pub fn encode(doc: &Value) -> Vec<u8> {
    let empty = Map::new();
    let o = doc.as_object().unwrap_or(&empty);
    let mut m = Message::default();
    m.string(1, o.get("swagger"));
    if let Some(info) = o.get("info").and_then(Value::as_object) {
        let mut i = Message::default();
        i.string(1, info.get("title"));
        i.string(2, info.get("version"));
        i.string(3, info.get("description"));
        i.extensions(7, info);
        m.message(2, i);
    }
    m.string(3, o.get("host"));
    m.string(4, o.get("basePath"));
    m.strings(5, o.get("schemes"));
    m.strings(6, o.get("consumes"));
    m.strings(7, o.get("produces"));
    if let Some(paths) = o.get("paths").and_then(Value::as_object) {
        let mut p = Message::default();
        p.extensions(1, paths);
        for (name, item) in paths.iter().filter(|(k, _)| !k.starts_with("x-")) {
            let mut named = Message::default();
            named.bytes(1, name.as_bytes());
            named.message(2, path_item(item));
            p.message(2, named);
        }
        m.message(8, p);
    }
    if o.contains_key("definitions") {
        let mut d = Message::default();
        d.named(1, o.get("definitions"), schema);
        m.message(9, d);
    }
    if o.contains_key("parameters") {
        let mut p = Message::default();
        p.named(1, o.get("parameters"), parameter);
        m.message(10, p);
    }
    if o.contains_key("responses") {
        let mut r = Message::default();
        r.named(1, o.get("responses"), response);
        m.message(11, r);
    }
    for requirement in o.get("security").and_then(Value::as_array).into_iter().flatten() {
        let mut s = Message::default();
        s.named(1, Some(requirement), |scopes| {
            let mut array = Message::default();
            array.strings(1, Some(scopes));
            array
        });
        m.message(12, s);
    }
    if o.contains_key("securityDefinitions") {
        let mut s = Message::default();
        s.named(1, o.get("securityDefinitions"), security_definition);
        m.message(13, s);
    }
    m.extensions(16, o);
    m.0
}

fn object(value: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    value.as_object().unwrap_or(&EMPTY)
}

/// A `Schema`.
fn schema(value: &Value) -> Message {
    let o = object(value);
    let mut m = Message::default();
    m.string(1, o.get("$ref"));
    m.string(2, o.get("format"));
    m.string(3, o.get("title"));
    m.string(4, o.get("description"));
    if let Some(default) = o.get("default") {
        m.any(5, default);
    }
    m.double(6, o.get("multipleOf"));
    m.double(7, o.get("maximum"));
    m.bool(8, o.get("exclusiveMaximum"));
    m.double(9, o.get("minimum"));
    m.bool(10, o.get("exclusiveMinimum"));
    m.int64(11, o.get("maxLength"));
    m.int64(12, o.get("minLength"));
    m.string(13, o.get("pattern"));
    m.int64(14, o.get("maxItems"));
    m.int64(15, o.get("minItems"));
    m.bool(16, o.get("uniqueItems"));
    m.int64(17, o.get("maxProperties"));
    m.int64(18, o.get("minProperties"));
    m.strings(19, o.get("required"));
    for value in o.get("enum").and_then(Value::as_array).into_iter().flatten() {
        m.any(20, value);
    }
    match o.get("additionalProperties") {
        Some(Value::Bool(allowed)) => {
            let mut item = Message::default();
            item.key(2, VARINT);
            item.varint(u64::from(*allowed));
            m.message(21, item);
        }
        Some(additional @ Value::Object(_)) => {
            let mut item = Message::default();
            item.message(1, schema(additional));
            m.message(21, item);
        }
        _ => {}
    }
    match o.get("type") {
        Some(Value::String(_)) | Some(Value::Array(_)) => {
            let mut types = Message::default();
            match o.get("type") {
                Some(Value::String(t)) => types.bytes(1, t.as_bytes()),
                other => types.strings(1, other),
            }
            m.message(22, types);
        }
        _ => {}
    }
    match o.get("items") {
        Some(items @ Value::Object(_)) => {
            let mut item = Message::default();
            item.message(1, schema(items));
            m.message(23, item);
        }
        Some(Value::Array(items)) => {
            let mut item = Message::default();
            for each in items {
                item.message(1, schema(each));
            }
            m.message(23, item);
        }
        _ => {}
    }
    for each in o.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        m.message(24, schema(each));
    }
    if o.contains_key("properties") {
        let mut p = Message::default();
        p.named(1, o.get("properties"), schema);
        m.message(25, p);
    }
    m.string(26, o.get("discriminator"));
    m.bool(27, o.get("readOnly"));
    if let Some(example) = o.get("example") {
        m.any(30, example);
    }
    m.extensions(31, o);
    m
}

/// A `PathItem`.
fn path_item(value: &Value) -> Message {
    let o = object(value);
    let mut m = Message::default();
    m.string(1, o.get("$ref"));
    for (field, verb) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(operation) = o.get(verb) {
            m.message(field, self::operation(operation));
        }
    }
    for each in o.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        m.message(9, parameters_item(each));
    }
    m.extensions(10, o);
    m
}

/// An `Operation`.
fn operation(value: &Value) -> Message {
    let o = object(value);
    let mut m = Message::default();
    m.strings(1, o.get("tags"));
    m.string(2, o.get("summary"));
    m.string(3, o.get("description"));
    m.string(5, o.get("operationId"));
    m.strings(6, o.get("produces"));
    m.strings(7, o.get("consumes"));
    for each in o.get("parameters").and_then(Value::as_array).into_iter().flatten() {
        m.message(8, parameters_item(each));
    }
    if let Some(responses) = o.get("responses").and_then(Value::as_object) {
        let mut r = Message::default();
        for (code, value) in responses.iter().filter(|(k, _)| !k.starts_with("x-")) {
            let mut named = Message::default();
            named.bytes(1, code.as_bytes());
            named.message(2, response_value(value));
            r.message(1, named);
        }
        r.extensions(2, responses);
        m.message(9, r);
    }
    m.strings(10, o.get("schemes"));
    m.bool(11, o.get("deprecated"));
    m.extensions(13, o);
    m
}

/// A `JsonReference`, when `value` is a `$ref`.
fn json_reference(value: &Value) -> Option<Message> {
    let o = object(value);
    o.get("$ref")?;
    let mut m = Message::default();
    m.string(1, o.get("$ref"));
    m.string(2, o.get("description"));
    Some(m)
}

/// A `ParametersItem`: a parameter or a reference to one.
fn parameters_item(value: &Value) -> Message {
    reference_or(value, parameter)
}

/// A gnostic `oneof` of a value (field 1, written by `write`) or a `JsonReference` (field 2).
fn reference_or(value: &Value, write: fn(&Value) -> Message) -> Message {
    let mut m = Message::default();
    match json_reference(value) {
        Some(reference) => m.message(2, reference),
        None => m.message(1, write(value)),
    }
    m
}

/// A `Parameter`: a body parameter, or one in the header, form, query or path.
fn parameter(value: &Value) -> Message {
    let o = object(value);
    let mut m = Message::default();
    let place = o.get("in").and_then(Value::as_str).unwrap_or_default();
    if place == "body" {
        let mut body = Message::default();
        body.string(1, o.get("description"));
        body.string(2, o.get("name"));
        body.string(3, o.get("in"));
        body.bool(4, o.get("required"));
        if let Some(s) = o.get("schema") {
            body.message(5, schema(s));
        }
        body.extensions(6, o);
        m.message(1, body);
        return m;
    }
    // Form and query parameters have `allowEmptyValue` (5), which moves the rest by one.
    let (field, allow_empty) = match place {
        "header" => (1, false),
        "formData" => (2, true),
        "query" => (3, true),
        _ => (4, false),
    };
    let mut sub = Message::default();
    sub.bool(1, o.get("required"));
    sub.string(2, o.get("in"));
    sub.string(3, o.get("description"));
    sub.string(4, o.get("name"));
    let shift = if allow_empty {
        sub.bool(5, o.get("allowEmptyValue"));
        1
    } else {
        0
    };
    sub.string(5 + shift, o.get("type"));
    sub.string(6 + shift, o.get("format"));
    if let Some(items) = o.get("items") {
        sub.message(7 + shift, primitives_items(items));
    }
    sub.string(8 + shift, o.get("collectionFormat"));
    if let Some(default) = o.get("default") {
        sub.any(9 + shift, default);
    }
    sub.bool(19 + shift, o.get("uniqueItems"));
    for value in o.get("enum").and_then(Value::as_array).into_iter().flatten() {
        sub.any(20 + shift, value);
    }
    sub.extensions(22 + shift, o);
    let mut non_body = Message::default();
    non_body.message(field, sub);
    m.message(2, non_body);
    m
}

/// `PrimitivesItems`: the items of an array parameter.
fn primitives_items(value: &Value) -> Message {
    let o = object(value);
    let mut m = Message::default();
    m.string(1, o.get("type"));
    m.string(2, o.get("format"));
    if let Some(items) = o.get("items") {
        m.message(3, primitives_items(items));
    }
    m.string(4, o.get("collectionFormat"));
    m.extensions(18, o);
    m
}

/// A `ResponseValue`: a response or a reference to one.
fn response_value(value: &Value) -> Message {
    reference_or(value, response)
}

/// A `Response`.
fn response(value: &Value) -> Message {
    let o = object(value);
    let mut m = Message::default();
    m.string(1, o.get("description"));
    if let Some(s) = o.get("schema") {
        let mut item = Message::default();
        item.message(1, schema(s));
        m.message(2, item);
    }
    m.extensions(5, o);
    m
}

/// A `SecurityDefinitionsItem` (API keys and basic authentication).
fn security_definition(value: &Value) -> Message {
    let o = object(value);
    let mut m = Message::default();
    match o.get("type").and_then(Value::as_str) {
        Some("basic") => {
            let mut basic = Message::default();
            basic.string(1, o.get("type"));
            basic.string(2, o.get("description"));
            basic.extensions(3, o);
            m.message(1, basic);
        }
        _ => {
            let mut key = Message::default();
            key.string(1, o.get("type"));
            key.string(2, o.get("name"));
            key.string(3, o.get("in"));
            key.string(4, o.get("description"));
            key.extensions(5, o);
            m.message(2, key);
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn varints_and_strings_are_protobufs() {
        let doc = json!({"swagger": "2.0", "info": {"title": "K", "version": "v1.33.0"}});
        // swagger = 1 ("2.0"), info = 2 {title = 1 ("K"), version = 2 ("v1.33.0")}
        let mut want = vec![0x0a, 3, b'2', b'.', b'0', 0x12, 12, 0x0a, 1, b'K', 0x12, 7];
        want.extend_from_slice(b"v1.33.0");
        assert_eq!(encode(&doc), want);
    }

    #[test]
    fn schemas_carry_types_properties_references_and_extensions() {
        let s = schema(&json!({
            "type": "object",
            "properties": {"a": {"$ref": "#/definitions/A"}},
            "x-kubernetes-map-type": "atomic",
        }));
        let bytes = s.0;
        // type (22) is a TypeItem with "object".
        assert!(bytes.windows(2).any(|w| w == [0xb2, 0x01]), "{bytes:?}");
        assert!(bytes.windows(15).any(|w| w == b"#/definitions/A"));
        assert!(bytes.windows(21).any(|w| w == b"x-kubernetes-map-type"));
        assert!(bytes.windows(8).any(|w| w == b"\"atomic\""));
    }

    #[test]
    fn parameters_go_where_they_are_found() {
        let query = parameter(&json!({"in": "query", "name": "pretty", "type": "string"}));
        // Parameter.non_body_parameter (2) > NonBodyParameter.query (3) > name (4), type (6).
        assert_eq!(query.0[0], 0x12);
        let body = parameter(&json!({"in": "body", "name": "body", "required": true}));
        assert_eq!(body.0[0], 0x0a);
    }
}
