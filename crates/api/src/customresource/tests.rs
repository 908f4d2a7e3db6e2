use serde_json::{Value, json};

use super::*;

const AT: &str = "spec.versions[0].schema.openAPIV3Schema";

fn compiled(schema: Value) -> StructuralSchema {
    match StructuralSchema::new(&schema, AT) {
        Ok(s) => s,
        Err(errors) => panic!("schema rejected: {:#?}", strings(&errors)),
    }
}

fn rejected(schema: Value) -> Vec<String> {
    match StructuralSchema::new(&schema, AT) {
        Ok(_) => panic!("schema accepted: {schema}"),
        Err(errors) => strings(&errors),
    }
}

fn strings(errors: &[FieldError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// A root schema whose `spec` has the single property `x` of schema `x`.
fn with_x(x: Value) -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {"type": "object", "properties": {"x": x}},
        },
    })
}

fn object(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
}

#[test]
fn a_structural_schema_is_send_sync_and_debug() {
    fn assert<T: Send + Sync + std::fmt::Debug>() {}
    assert::<StructuralSchema>();
}

#[test]
fn schemas_that_are_not_structural_are_rejected_with_upstreams_errors() {
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "a field without a type",
            json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}),
            vec![format!(
                "{AT}.properties[spec].type: Required value: must not be empty for specified object fields"
            )],
        ),
        (
            "a root without a type",
            json!({"properties": {"spec": {"type": "object"}}}),
            vec![format!("{AT}.type: Required value: must not be empty at the root")],
        ),
        (
            "array items without a type",
            json!({"type": "object", "properties": {"a": {"type": "array", "items": {}}}}),
            vec![format!(
                "{AT}.properties[a].items.type: Required value: must not be empty for specified array items"
            )],
        ),
        (
            "an array without items",
            json!({"type": "object", "properties": {"a": {"type": "array"}}}),
            vec![format!("{AT}.properties[a].items: Required value: must be specified")],
        ),
        (
            "a root of another type than object",
            json!({"type": "string"}),
            vec![format!("{AT}.type: Invalid value: \"string\": must be object at the root")],
        ),
        (
            "root metadata with more than name and generateName",
            json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}}),
            vec![format!(
                "{AT}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
            )],
        ),
        (
            "a type in anyOf",
            json!({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string", "maxLength": 3}, {"minLength": 5}]}}}),
            vec![format!(
                "{AT}.properties[a].anyOf[0].type: Forbidden: must be empty to be structural"
            )],
        ),
        (
            "a value validation on a field not specified",
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "allOf": [{"properties": {"b": {"maxLength": 3}}}]}),
            vec![format!(
                "{AT}.properties[b]: Required value: because it is defined in {AT}.allOf[0].properties[b]"
            )],
        ),
        (
            "additionalProperties at the root",
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            vec![format!("{AT}.additionalProperties: Forbidden: must not be used at the root")],
        ),
        (
            "metadata in a nested context",
            json!({"type": "object", "properties": {"metadata": {"type": "object"}}, "not": {"properties": {"metadata": {}}}}),
            vec![format!(
                "{AT}.not.properties[metadata]: Forbidden: must not be specified in a nested context"
            )],
        ),
        (
            "an embedded resource without properties",
            json!({"type": "object", "properties": {"a": {"type": "object", "x-kubernetes-embedded-resource": true}}}),
            vec![format!(
                "{AT}.properties[a].properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields"
            )],
        ),
        (
            "int-or-string with preserve-unknown-fields",
            json!({"type": "object", "properties": {"a": {"x-kubernetes-int-or-string": true, "x-kubernetes-preserve-unknown-fields": true}}}),
            vec![format!(
                "{AT}.properties[a].x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true"
            )],
        ),
    ];
    for (name, schema, want) in cases {
        assert_eq!(rejected(schema), want, "{name}");
    }
}

#[test]
fn keywords_a_crd_may_not_use_are_rejected() {
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "uniqueItems",
            with_x(json!({"type": "array", "items": {"type": "string"}, "uniqueItems": true})),
            vec![format!(
                "{AT}.properties[spec].properties[x].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
            )],
        ),
        (
            "an unknown type",
            with_x(json!({"type": "text"})),
            vec![format!(
                "{AT}.properties[spec].properties[x].type: Unsupported value: \"text\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""
            )],
        ),
        (
            "preserve-unknown-fields false",
            with_x(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": false})),
            vec![format!(
                "{AT}.properties[spec].properties[x].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"
            )],
        ),
        (
            "a map list without keys",
            with_x(
                json!({"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}),
            ),
            vec![format!(
                "{AT}.properties[spec].properties[x].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"
            )],
        ),
        (
            "a map list key neither required nor defaulted",
            with_x(
                json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "properties": {"name": {"type": "string"}}}}),
            ),
            vec![format!(
                "{AT}.properties[spec].properties[x].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
            )],
        ),
        (
            "an unknown list type",
            with_x(
                json!({"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}}),
            ),
            vec![format!(
                "{AT}.properties[spec].properties[x].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\""
            )],
        ),
        (
            "a map type on a string",
            with_x(json!({"type": "string", "x-kubernetes-map-type": "atomic"})),
            vec![format!(
                "{AT}.properties[spec].properties[x].type: Invalid value: \"string\": must be object if x-kubernetes-map-type is specified"
            )],
        ),
        (
            "an invalid pattern",
            with_x(json!({"type": "string", "pattern": "a("})),
            vec![format!(
                "{AT}.properties[spec].properties[x].pattern: Invalid value: \"a(\": must be a valid regular expression, but isn't: error parsing regexp: unclosed group"
            )],
        ),
        (
            "items as a list",
            with_x(json!({"type": "array", "items": [{"type": "string"}]})),
            vec![format!(
                "{AT}.properties[spec].properties[x].items: Forbidden: items must be a schema object and not an array"
            )],
        ),
        (
            "$ref",
            with_x(json!({"type": "string", "$ref": "#/definitions/a"})),
            vec![format!(
                "{AT}.properties[spec].properties[x].$ref: Forbidden: $ref is not supported"
            )],
        ),
        (
            "nullable at the root",
            json!({"type": "object", "nullable": true}),
            vec![format!("{AT}.nullable: Forbidden: nullable cannot be true at the root")],
        ),
    ];
    for (name, schema, want) in cases {
        let got = rejected(schema);
        assert_eq!(got.len(), want.len(), "{name}: {got:#?}");
        for (g, w) in got.iter().zip(&want) {
            assert!(g.starts_with(w.as_str()), "{name}: {g} does not start with {w}");
        }
    }
}

#[test]
fn defaults_must_be_pruned_and_valid() {
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "a default of the wrong type",
            with_x(json!({"type": "integer", "default": "three"})),
            vec![format!(
                "{AT}.properties[spec].properties[x].default: Invalid value: \"string\":  in body must be of type integer: \"string\""
            )],
        ),
        (
            "a default with unknown fields",
            with_x(
                json!({"type": "object", "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": "y"}}),
            ),
            vec![format!(
                "{AT}.properties[spec].properties[x].default: Invalid value: {{\"a\":\"x\",\"b\":\"y\"}}: must not have unknown fields"
            )],
        ),
        (
            "a default breaking a rule",
            with_x(
                json!({"type": "integer", "default": 3, "x-kubernetes-validations": [{"rule": "self > 5"}]}),
            ),
            vec![format!(
                "{AT}.properties[spec].properties[x].default: Invalid value: \"integer\": failed rule: self > 5"
            )],
        ),
    ];
    for (name, schema, want) in cases {
        assert_eq!(rejected(schema), want, "{name}");
    }
    compiled(with_x(json!({"type": "integer", "default": 3, "minimum": 1})));
    compiled(with_x(json!({"x-kubernetes-int-or-string": true, "default": "50%"})));
}

#[test]
fn rules_that_do_not_compile_are_rejected() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "a syntax error",
            json!([{"rule": "self.a ==", "message": "m"}]),
            "x-kubernetes-validations[0].rule: Invalid value: ",
        ),
        (
            "an undeclared variable",
            json!([{"rule": "object.a == 1"}]),
            "undeclared reference to 'object'",
        ),
        (
            "an empty message",
            json!([{"rule": "true", "message": " "}]),
            "x-kubernetes-validations[0].message: Invalid value: \" \": must be non-empty if specified",
        ),
        (
            "an unsupported reason",
            json!([{"rule": "true", "reason": "Nope"}]),
            "x-kubernetes-validations[0].reason: Unsupported value: \"Nope\": supported values: \"FieldValueDuplicate\", \"FieldValueForbidden\", \"FieldValueInvalid\", \"FieldValueRequired\"",
        ),
        (
            "a fieldPath to nothing",
            json!([{"rule": "true", "fieldPath": ".missing"}]),
            "x-kubernetes-validations[0].fieldPath: Invalid value: \".missing\": must be a valid path",
        ),
        (
            "a rule without rule",
            json!([{"message": "m"}]),
            "x-kubernetes-validations[0].rule: Required value: rule is not specified",
        ),
    ];
    for (name, rules, want) in cases {
        let schema = with_x(
            json!({"type": "object", "properties": {"a": {"type": "integer"}}, "x-kubernetes-validations": rules}),
        );
        let got = rejected(schema);
        assert_eq!(got.len(), 1, "{name}: {got:#?}");
        assert!(got[0].contains(want), "{name}: {}", got[0]);
    }
    // Comprehension variables are not undeclared.
    compiled(with_x(
        json!({"type": "array", "maxItems": 100, "items": {"type": "integer"}, "x-kubernetes-validations": [{"rule": "self.all(i, i > 0) && self.exists(j, j == 1)"}]}),
    ));
    // oldSelf below an atomic list cannot be correlated.
    let got = rejected(with_x(
        json!({"type": "array", "items": {"type": "integer", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}),
    ));
    assert_eq!(
        got,
        vec![format!(
            "{AT}.properties[spec].properties[x].items.x-kubernetes-validations[0].rule: Invalid value: \"self == oldSelf\": oldSelf cannot be used on the uncorrelatable portion of the schema within {AT}.properties[spec].properties[x]"
        )]
    );
}

#[test]
fn pruning_drops_unknown_fields_and_reports_their_paths() {
    let schema = compiled(json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "known": {"type": "string"},
                    "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"typed": {"type": "object", "properties": {"b": {"type": "string"}}}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
                },
            },
        },
    }));
    let mut obj = json!({
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "labels": {"a": "b"}},
        "status": {"ready": true},
        "spec": {
            "known": "k",
            "unknown": 1,
            "list": [{"a": "x", "z": 1}, {"a": "y"}],
            "free": {"anything": {"deep": 1}, "typed": {"b": "b", "c": "c"}},
            "labels": {"x": "y"},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1, "labels": {}}, "spec": {}, "extra": 1},
        },
    });
    let pruned = schema.prune(&mut obj);
    assert_eq!(
        pruned,
        vec![
            "spec.free.typed.c",
            "spec.list[0].z",
            "spec.template.extra",
            "spec.template.metadata.bogus",
            "spec.unknown",
            "status",
        ]
    );
    assert_eq!(
        obj,
        json!({
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w", "labels": {"a": "b"}},
            "spec": {
                "known": "k",
                "list": [{"a": "x"}, {"a": "y"}],
                "free": {"anything": {"deep": 1}, "typed": {"b": "b"}},
                "labels": {"x": "y"},
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}},
            },
        })
    );
}

#[test]
fn a_root_preserving_unknown_fields_prunes_nothing_unknown() {
    let schema = compiled(json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    let mut obj = object(json!({"a": 1}));
    let before = obj.clone();
    assert!(schema.prune(&mut obj).is_empty());
    assert_eq!(obj, before);
}

#[test]
fn defaults_fill_missing_fields_and_non_nullable_nulls() {
    let schema = compiled(json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer", "default": 1},
                    "mode": {"type": "string", "default": "auto"},
                    "note": {"type": "string"},
                    "maybe": {"type": "string", "nullable": true, "default": "d"},
                    "nested": {"type": "object", "properties": {"deep": {"type": "boolean", "default": true}}},
                    "absent": {"type": "object", "properties": {"deep": {"type": "boolean", "default": true}}},
                    "ports": {"type": "array", "items": {"type": "object", "default": {}, "properties": {"port": {"type": "integer", "default": 80}}}},
                    "env": {"type": "object", "additionalProperties": {"type": "string", "default": "unset"}},
                    "withDefaultObject": {"type": "object", "default": {}, "properties": {"inner": {"type": "integer", "default": 7}}},
                },
            },
        },
    }));
    let mut obj = object(json!({
        "mode": null,
        "note": null,
        "maybe": null,
        "nested": {},
        "ports": [{}, null, {"port": 443}],
        "env": {"A": null, "B": "b"},
    }));
    schema.apply_defaults(&mut obj);
    assert_eq!(
        obj["spec"],
        json!({
            "replicas": 1,
            "mode": "auto",
            "maybe": null,
            "nested": {"deep": true},
            "ports": [{"port": 80}, {"port": 80}, {"port": 443}],
            "env": {"A": "unset", "B": "b"},
            "withDefaultObject": {"inner": 7},
        })
    );
}

#[test]
fn values_are_validated_against_each_keyword() {
    let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
        (
            "type integer",
            json!({"type": "integer"}),
            json!("a"),
            vec![
                "spec.x: Invalid value: \"string\": spec.x in body must be of type integer: \"string\"",
            ],
        ),
        ("an integral float is an integer", json!({"type": "integer"}), json!(3.0), vec![]),
        ("an integer is a number", json!({"type": "number"}), json!(3), vec![]),
        (
            "type object",
            json!({"type": "object"}),
            json!([1]),
            vec![
                "spec.x: Invalid value: \"array\": spec.x in body must be of type object: \"array\"",
            ],
        ),
        (
            "null on a non-nullable field",
            json!({"type": "string"}),
            json!(null),
            vec![
                "spec.x: Invalid value: \"null\": spec.x in body must be of type string: \"null\"",
            ],
        ),
        (
            "null on a nullable field",
            json!({"type": "string", "nullable": true}),
            json!(null),
            vec![],
        ),
        (
            "int-or-string takes an integer",
            json!({"x-kubernetes-int-or-string": true}),
            json!(3),
            vec![],
        ),
        (
            "int-or-string takes a string",
            json!({"x-kubernetes-int-or-string": true}),
            json!("3%"),
            vec![],
        ),
        (
            "int-or-string refuses a bool",
            json!({"x-kubernetes-int-or-string": true}),
            json!(true),
            vec![
                "spec.x: Invalid value: \"boolean\": spec.x in body must be of type integer,string: \"boolean\"",
            ],
        ),
        (
            "format date-time",
            json!({"type": "string", "format": "date-time"}),
            json!("yesterday"),
            vec![
                "spec.x: Invalid value: \"yesterday\": spec.x in body must be of type date-time: \"yesterday\"",
            ],
        ),
        (
            "format date-time valid",
            json!({"type": "string", "format": "date-time"}),
            json!("2024-01-02T03:04:05Z"),
            vec![],
        ),
        (
            "format date",
            json!({"type": "string", "format": "date"}),
            json!("2024-13-01"),
            vec![
                "spec.x: Invalid value: \"2024-13-01\": spec.x in body must be of type date: \"2024-13-01\"",
            ],
        ),
        (
            "format byte",
            json!({"type": "string", "format": "byte"}),
            json!("!!"),
            vec!["spec.x: Invalid value: \"!!\": spec.x in body must be of type byte: \"!!\""],
        ),
        (
            "format uuid",
            json!({"type": "string", "format": "uuid"}),
            json!("123e4567-e89b-12d3-a456-426614174000"),
            vec![],
        ),
        (
            "format uuid invalid",
            json!({"type": "string", "format": "uuid"}),
            json!("nope"),
            vec!["spec.x: Invalid value: \"nope\": spec.x in body must be of type uuid: \"nope\""],
        ),
        (
            "format ipv4",
            json!({"type": "string", "format": "ipv4"}),
            json!("10.0.0.300"),
            vec![
                "spec.x: Invalid value: \"10.0.0.300\": spec.x in body must be of type ipv4: \"10.0.0.300\"",
            ],
        ),
        (
            "an unknown format is ignored",
            json!({"type": "string", "format": "color"}),
            json!("blue"),
            vec![],
        ),
        (
            "format int32 bounds the value",
            json!({"type": "integer", "format": "int32"}),
            json!(5_000_000_000_i64),
            vec![
                "<nil>: Invalid value: \"\": Checked value must be of type integer with format int32 in spec.x",
            ],
        ),
        (
            "a float for an integer",
            json!({"type": "integer"}),
            json!(1.5),
            vec![
                "spec.x: Invalid value: \"number\": spec.x in body must be of type integer: \"number\"",
                "<nil>: Invalid value: \"\": Checked value must be of type integer (default format) in spec.x",
            ],
        ),
        (
            "a huge float for an int64",
            json!({"type": "integer", "format": "int64"}),
            json!(1.0e19),
            vec![
                "spec.x: Invalid value: \"float64\": spec.x in body must be of type int64: \"float64\"",
                "<nil>: Invalid value: \"\": Checked value must be of type integer with format int64 in spec.x",
            ],
        ),
        (
            "enum",
            json!({"type": "string", "enum": ["a", "b"]}),
            json!("c"),
            vec!["spec.x: Unsupported value: \"c\": supported values: \"a\", \"b\""],
        ),
        ("enum of numbers", json!({"type": "integer", "enum": [1, 2]}), json!(2), vec![]),
        (
            "null against an enum",
            json!({"type": "string", "nullable": true, "enum": ["a"]}),
            json!(null),
            vec!["spec.x: Unsupported value: \"null\": supported values: \"a\""],
        ),
        (
            "pattern",
            json!({"type": "string", "pattern": "^a+$"}),
            json!("ab"),
            vec!["spec.x: Invalid value: \"ab\": spec.x in body should match '^a+$'"],
        ),
        (
            "maximum",
            json!({"type": "integer", "maximum": 10}),
            json!(11),
            vec!["spec.x: Invalid value: 11: spec.x in body should be less than or equal to 10"],
        ),
        (
            "exclusive maximum",
            json!({"type": "integer", "maximum": 10, "exclusiveMaximum": true}),
            json!(10),
            vec!["spec.x: Invalid value: 10: spec.x in body should be less than 10"],
        ),
        (
            "minimum",
            json!({"type": "number", "minimum": 0.5}),
            json!(0.25),
            vec![
                "spec.x: Invalid value: 0.25: spec.x in body should be greater than or equal to 0.5",
            ],
        ),
        (
            "exclusive minimum",
            json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true}),
            json!(0),
            vec!["spec.x: Invalid value: 0: spec.x in body should be greater than 0"],
        ),
        (
            "multipleOf",
            json!({"type": "integer", "multipleOf": 3}),
            json!(7),
            vec!["spec.x: Invalid value: 7: spec.x in body should be a multiple of 3"],
        ),
        (
            "maxLength",
            json!({"type": "string", "maxLength": 3}),
            json!("abcd"),
            vec!["spec.x: Too long: may not be more than 3 bytes"],
        ),
        (
            "maxLength counts characters",
            json!({"type": "string", "maxLength": 3}),
            json!("ééé"),
            vec![],
        ),
        (
            "minLength",
            json!({"type": "string", "minLength": 3}),
            json!("ab"),
            vec!["spec.x: Invalid value: \"ab\": spec.x in body should be at least 3 chars long"],
        ),
        (
            "maxItems",
            json!({"type": "array", "items": {"type": "integer"}, "maxItems": 2}),
            json!([1, 2, 3]),
            vec!["spec.x: Too many: 3: must have at most 2 items"],
        ),
        (
            "minItems",
            json!({"type": "array", "items": {"type": "integer"}, "minItems": 2}),
            json!([1]),
            vec!["spec.x: Invalid value: 1: spec.x in body should have at least 2 items"],
        ),
        (
            "items",
            json!({"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}}),
            json!([{"name": "a"}, {"name": 2}]),
            vec![
                "spec.x[1].name: Invalid value: \"integer\": spec.x[1].name in body must be of type string: \"integer\"",
            ],
        ),
        (
            "maxProperties",
            json!({"type": "object", "additionalProperties": {"type": "string"}, "maxProperties": 1}),
            json!({"a": "1", "b": "2"}),
            vec!["spec.x: Too many: 2: must have at most 1 item"],
        ),
        (
            "minProperties",
            json!({"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 2}),
            json!({"a": "1"}),
            vec!["spec.x: Invalid value: 1: spec.x in body should have at least 2 properties"],
        ),
        (
            "additionalProperties",
            json!({"type": "object", "additionalProperties": {"type": "integer"}}),
            json!({"a": 1, "b": "2"}),
            vec![
                "spec.x.b: Invalid value: \"string\": spec.x.b in body must be of type integer: \"string\"",
            ],
        ),
        (
            "required",
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}),
            json!({}),
            vec!["spec.x.a: Required value"],
        ),
        (
            "anyOf",
            json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}),
            json!({}),
            vec![
                "<nil>: Invalid value: \"\": \"spec.x\" must validate at least one schema (anyOf)",
                "spec.x.a: Required value",
            ],
        ),
        (
            "anyOf satisfied",
            json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "anyOf": [{"required": ["a"]}, {"required": ["b"]}]}),
            json!({"b": "x"}),
            vec![],
        ),
        (
            "oneOf with two valid",
            json!({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}, "oneOf": [{"required": ["a"]}, {"required": ["b"]}]}),
            json!({"a": "x", "b": "y"}),
            vec![
                "<nil>: Invalid value: \"\": \"spec.x\" must validate one and only one schema (oneOf). Found 2 valid alternatives",
            ],
        ),
        (
            "allOf",
            json!({"type": "integer", "allOf": [{"minimum": 1}, {"maximum": 5}]}),
            json!(9),
            vec![
                "spec.x: Invalid value: 9: spec.x in body should be less than or equal to 5",
                "<nil>: Invalid value: \"\": \"spec.x\" must validate all the schemas (allOf)",
            ],
        ),
        (
            "not",
            json!({"type": "string", "not": {"enum": ["forbidden"]}}),
            json!("forbidden"),
            vec!["<nil>: Invalid value: \"\": \"spec.x\" must not validate the schema (not)"],
        ),
        (
            "int-or-string anyOf pattern",
            json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": "^\\d+%$"}),
            json!("5"),
            vec!["spec.x: Invalid value: \"5\": spec.x in body should match '^\\d+%$'"],
        ),
        (
            "a set with duplicates",
            json!({"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"}),
            json!(["a", "b", "a", "a"]),
            vec!["spec.x[2]: Duplicate value: \"a\""],
        ),
        (
            "a set of objects with members in another order",
            json!({"type": "array", "items": {"type": "object", "x-kubernetes-map-type": "atomic", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}, "x-kubernetes-list-type": "set"}),
            json!([{"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1, "b": 3}]),
            vec!["spec.x[1]: Duplicate value: {\"b\":2,\"a\":1}"],
        ),
        (
            "a map list with duplicate keys",
            json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}}),
            json!([{"name": "a", "v": 1}, {"name": "b"}, {"name": "a", "v": 2}]),
            vec!["spec.x[2]: Duplicate value: {\"name\":\"a\"}"],
        ),
        (
            "an embedded resource without apiVersion and kind",
            json!({"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}),
            json!({"metadata": {}}),
            vec!["spec.x.apiVersion: Required value", "spec.x.kind: Required value"],
        ),
        (
            "an embedded resource with a bad kind",
            json!({"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}),
            json!({"apiVersion": "v1", "kind": "Not_A_Kind"}),
            vec![
                "spec.x.kind: Invalid value: \"Not_A_Kind\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            ],
        ),
    ];
    for (name, x, value, want) in cases {
        let schema = compiled(with_x(x));
        let got = strings(&schema.validate(&object(json!({"x": value}))));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn the_root_metadata_api_version_and_kind_are_left_to_the_caller() {
    let schema = compiled(json!({
        "type": "object",
        "required": ["spec", "metadata"],
        "properties": {"metadata": {"type": "object"}, "spec": {"type": "object"}},
    }));
    let obj = json!({"apiVersion": 1, "kind": [], "metadata": "x"});
    assert_eq!(strings(&schema.validate(&obj)), vec!["spec: Required value"]);
}

#[test]
fn cel_rules_see_self_and_report_upstreams_messages() {
    let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
        (
            "a passing rule",
            json!([{"rule": "self.replicas <= self.max"}]),
            json!({"replicas": 1, "max": 2}),
            vec![],
        ),
        (
            "a failing rule",
            json!([{"rule": "self.replicas <= self.max"}]),
            json!({"replicas": 3, "max": 2}),
            vec!["spec: Invalid value: \"object\": failed rule: self.replicas <= self.max"],
        ),
        (
            "a message",
            json!([{"rule": "self.replicas <= self.max", "message": "too many replicas"}]),
            json!({"replicas": 3, "max": 2}),
            vec!["spec: Invalid value: \"object\": too many replicas"],
        ),
        (
            "a messageExpression",
            json!([{"rule": "self.replicas <= self.max", "messageExpression": "'replicas ' + string(self.replicas) + ' over ' + string(self.max)"}]),
            json!({"replicas": 3, "max": 2}),
            vec!["spec: Invalid value: \"object\": replicas 3 over 2"],
        ),
        (
            "a reason and a fieldPath",
            json!([{"rule": "has(self.name)", "reason": "FieldValueRequired", "fieldPath": ".name", "message": "name is needed"}]),
            json!({"replicas": 1}),
            vec!["spec.name: Required value: name is needed"],
        ),
        (
            "a forbidden reason",
            json!([{"rule": "!has(self.max)", "reason": "FieldValueForbidden", "message": "no max"}]),
            json!({"max": 1}),
            vec!["spec: Forbidden: no max"],
        ),
        (
            "an evaluation error",
            json!([{"rule": "self.replicas / self.max == 1"}]),
            json!({"replicas": 1, "max": 0}),
            vec![
                "spec: Invalid value: \"object\": division by zero evaluating rule: self.replicas / self.max == 1",
            ],
        ),
        (
            "an absent field",
            json!([{"rule": "self.max == 1"}]),
            json!({"replicas": 1}),
            vec![
                "spec: Invalid value: \"object\": no such key: max evaluating rule: self.max == 1",
            ],
        ),
        (
            "a number field is a double",
            json!([{"rule": "self.ratio > 0.5"}]),
            json!({"ratio": 1}),
            vec![],
        ),
        (
            "strings extension",
            json!([{"rule": "self.name.lowerAscii() == 'web'"}]),
            json!({"name": "WEB"}),
            vec![],
        ),
        (
            "regex matches",
            json!([{"rule": "self.name.matches('^w')"}]),
            json!({"name": "xyz"}),
            vec!["spec: Invalid value: \"object\": failed rule: self.name.matches('^w')"],
        ),
    ];
    for (name, rules, spec, want) in cases {
        let schema = compiled(json!({
            "type": "object",
            "properties": {"spec": {
                "type": "object",
                "properties": {
                    "replicas": {"type": "integer"},
                    "max": {"type": "integer"},
                    "ratio": {"type": "number"},
                    "name": {"type": "string"},
                },
                "x-kubernetes-validations": rules,
            }},
        }));
        let got = strings(&schema.validate(&object(spec)));
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn cel_rules_on_scalars_items_and_maps_have_their_paths() {
    let schema = compiled(json!({
        "type": "object",
        "x-kubernetes-validations": [{"rule": "self.metadata.name.startsWith('w')", "message": "bad name"}],
        "properties": {"spec": {
            "type": "object",
            "properties": {
                "list": {"type": "array", "items": {"type": "integer", "x-kubernetes-validations": [{"rule": "self % 2 == 0", "message": "must be even"}]}},
                "map": {"type": "object", "additionalProperties": {"type": "string", "x-kubernetes-validations": [{"rule": "self != ''", "message": "empty"}]}},
            },
        }},
    }));
    let mut obj = object(json!({"list": [2, 3], "map": {"a": "x", "b": ""}}));
    obj["metadata"]["name"] = json!("q");
    assert_eq!(
        strings(&schema.validate(&obj)),
        vec![
            "<nil>: Invalid value: \"object\": bad name",
            "spec.list[1]: Invalid value: \"integer\": must be even",
            "spec.map[b]: Invalid value: \"string\": empty",
        ]
    );
}

#[test]
fn blocking_errors_keep_rules_from_running() {
    let schema = compiled(with_x(json!({
        "type": "integer",
        "maximum": 100,
        "x-kubernetes-validations": [{"rule": "self > 5"}],
    })));
    assert_eq!(
        strings(&schema.validate(&object(json!({"x": "a"})))),
        vec![
            "spec.x: Invalid value: \"string\": spec.x in body must be of type integer: \"string\"",
            "<nil>: Invalid value: \"null\": some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
        ]
    );
    // A non-blocking error (maximum) lets rules run.
    assert_eq!(
        strings(&schema.validate(&object(json!({"x": 101})))),
        vec!["spec.x: Invalid value: 101: spec.x in body should be less than or equal to 100"]
    );
    assert_eq!(
        strings(&schema.validate(&object(json!({"x": 1})))),
        vec!["spec.x: Invalid value: \"integer\": failed rule: self > 5"]
    );
}

#[test]
fn transition_rules_run_on_update_where_the_old_object_has_the_field() {
    let schema = compiled(json!({
        "type": "object",
        "properties": {"spec": {
            "type": "object",
            "properties": {
                "mode": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "mode is immutable"}]},
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                        "x-kubernetes-validations": [{"rule": "self.port >= oldSelf.port", "message": "ports only grow"}],
                    },
                },
            },
        }},
    }));
    let old = object(
        json!({"mode": "a", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}),
    );
    let new = object(
        json!({"mode": "b", "ports": [{"name": "https", "port": 8443}, {"name": "http", "port": 79}, {"name": "new", "port": 1}]}),
    );
    // On create, transition rules do not run.
    assert!(schema.validate(&new).is_empty());
    assert_eq!(
        strings(&schema.validate_update(&new, &old)),
        vec![
            "spec.mode: Invalid value: \"string\": mode is immutable",
            "spec.ports[1]: Invalid value: \"object\": ports only grow",
        ]
    );
    // A field the old object lacks is not compared.
    let old = object(json!({}));
    assert!(schema.validate_update(&new, &old).is_empty());
}

#[test]
fn error_kinds_have_upstreams_reasons() {
    assert_eq!(
        FieldErrorKind::TypeInvalid(Value::from("string"), String::new()).reason(),
        "FieldValueTypeInvalid"
    );
    assert_eq!(FieldErrorKind::TooLong(1).reason(), "FieldValueTooLong");
    assert_eq!(FieldErrorKind::TooMany(None, 1).reason(), "FieldValueTooMany");
    let e = FieldError { field: "a".into(), kind: FieldErrorKind::TooLong(1) };
    assert_eq!(e.to_string(), "a: Too long: may not be more than 1 byte");
}

#[test]
fn floats_print_as_go_prints_them() {
    for (f, want) in
        [(10.0, "10"), (0.5, "0.5"), (1e6, "1e+06"), (123456.0, "123456"), (1e-5, "1e-05")]
    {
        assert_eq!(validate::go_float(f), want);
    }
}

#[test]
fn updates_ratchet_errors_of_unchanged_values() {
    let schema = compiled(json!({
        "type": "object",
        "properties": {"spec": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]{1,3}$"},
                "size": {"type": "integer", "x-kubernetes-validations": [{"rule": "self < 10", "message": "too big"}]},
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            },
        }},
    }));
    let old = object(json!({"name": "toolong", "size": 20, "tags": ["a", "a"]}));
    // Nothing changed: nothing reported, although the old object is invalid.
    assert!(schema.validate_update(&old, &old).is_empty());
    // Another field changed: the unchanged invalid ones still ratchet.
    let mut new = old.clone();
    new["spec"]["extra"] = json!(1);
    assert!(schema.validate_update(&new, &old).is_empty());
    // Changed values are validated.
    let new = object(json!({"name": "longer", "size": 30, "tags": ["b", "b"]}));
    assert_eq!(
        strings(&schema.validate_update(&new, &old)),
        vec![
            "spec.name: Invalid value: \"longer\": spec.name in body should match '^[a-z]{1,3}$'",
            "spec.size: Invalid value: \"integer\": too big"
        ]
    );
    // List uniqueness is checked when the old object had unique lists.
    let old = object(json!({"tags": ["a"]}));
    assert_eq!(
        strings(&schema.validate_update(&new, &old)),
        vec![
            "spec.name: Invalid value: \"longer\": spec.name in body should match '^[a-z]{1,3}$'",
            "spec.tags[1]: Duplicate value: \"b\"",
            "spec.size: Invalid value: \"integer\": too big",
        ]
    );
}

#[test]
fn optional_old_self_rules_run_on_create_too() {
    let schema = compiled(with_x(json!({
        "type": "string",
        "x-kubernetes-validations": [{
            "rule": "!oldSelf.hasValue() || self == oldSelf.value()",
            "optionalOldSelf": true,
            "message": "immutable once set",
        }, {
            "rule": "oldSelf.hasValue() || self != 'bad'",
            "optionalOldSelf": true,
            "message": "not bad on create",
        }],
    })));
    assert_eq!(
        strings(&schema.validate(&object(json!({"x": "bad"})))),
        vec!["spec.x: Invalid value: \"string\": not bad on create"]
    );
    assert!(schema.validate(&object(json!({"x": "a"}))).is_empty());
    assert_eq!(
        strings(&schema.validate_update(&object(json!({"x": "b"})), &object(json!({"x": "a"})))),
        vec!["spec.x: Invalid value: \"string\": immutable once set"]
    );
}

#[test]
fn rules_may_only_select_declared_fields() {
    let spec = |rule: &str| {
        json!({
            "type": "object",
            "x-kubernetes-validations": [{"rule": "self.metadata.name != ''"}],
            "properties": {"spec": {
                "type": "object",
                "x-kubernetes-validations": [{"rule": rule}],
                "properties": {
                    "x": {"type": "integer"},
                    "list": {"type": "array", "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                },
            }},
        })
    };
    for ok in [
        "self.x == 100",
        "has(self.x)",
        "self.list.all(i, i.name != '')",
        "self.list[0].name != ''",
        "self.labels.app == 'web'",
        "self.labels['app'] == 'web'",
        "self.free.anything.goes",
        "self.x == oldSelf.x",
    ] {
        compiled(spec(ok));
    }
    let cases = [
        ("self.z == 100", "<input>:1:5: undefined field 'z'"),
        ("has(self.z)", "undefined field 'z'"),
        ("self.list.all(i, i.nope)", "undefined field 'nope'"),
        ("self.x == oldSelf.y", "undefined field 'y'"),
    ];
    for (rule, want) in cases {
        let got = rejected(spec(rule));
        assert_eq!(got.len(), 1, "{rule}: {got:#?}");
        assert!(got[0].contains(want), "{rule}: {}", got[0]);
    }
    let got = rejected(
        json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.metadata.labels.size() > 0"}]}),
    );
    assert!(got[0].contains("undefined field 'labels'"), "{}", got[0]);
}

/// The schema of upstream's e2e tests of validation rules (`crd_validation_rules.go`).
fn e2e_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.x + self.y > 0"},
                    {"rule": "self.firstArray.isSorted() && self.secondArray.isSorted() && ((self.firstArray.sum() + self.secondArray.sum()) % 2 == 0)"},
                    {"rule": "self.largeArray.all(x, self.largeArray.all(y, y == x))"},
                ],
                "properties": {
                    "x": {"type": "integer"},
                    "y": {"type": "integer"},
                    "firstArray": {"type": "array", "maxItems": 1000, "items": {"type": "integer"}},
                    "secondArray": {"type": "array", "maxItems": 1000, "items": {"type": "integer"}},
                    "largeArray": {"type": "array", "maxItems": 725, "items": {"type": "integer"}},
                },
            },
            "status": {
                "type": "object",
                "x-kubernetes-validations": [{"rule": "self.health == 'ok' || self.health == 'unhealthy'"}],
                "properties": {"health": {"type": "string"}},
            },
        },
    })
}

#[test]
fn upstreams_e2e_rules_pass_and_fail_as_there() {
    let schema = compiled(e2e_schema());
    let ok = object(
        json!({"x": 1, "y": 0, "firstArray": [3, 4], "secondArray": [5, 10], "largeArray": [2, 2]}),
    );
    assert!(schema.validate(&ok).is_empty(), "{:#?}", strings(&schema.validate(&ok)));
    let bad = strings(&schema.validate(&object(json!({"x": 0, "y": 0}))));
    assert!(bad.iter().any(|e| e.contains("failed rule")), "{bad:#?}");
    let large = strings(&schema.validate(&object(
        json!({"x": 1, "y": 0, "firstArray": [], "secondArray": [], "largeArray": vec![20; 725]}),
    )));
    assert_eq!(
        large,
        vec![
            "spec: Invalid value: \"object\": 'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: self.largeArray.all(x, self.largeArray.all(y, y == x))"
        ]
    );
    let syntax = rejected(
        json!({"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": [{"rule": "self = 42"}]}}}),
    );
    assert!(syntax[0].contains("Syntax error"), "{syntax:#?}");
    let expensive = rejected(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"x": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": [{"rule": "self.all(s, s == 'string constant')"}]},
        }}}},
    }));
    assert_eq!(
        expensive[0],
        format!(
            "{AT}.properties[spec].properties[x].items.x-kubernetes-validations[0].rule: Forbidden: estimated rule cost exceeds budget by factor of more than 100x (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
        )
    );
    let transition = compiled(with_x(
        json!({"type": "integer", "x-kubernetes-validations": [{"rule": "self > oldSelf"}]}),
    ));
    assert!(transition.validate(&object(json!({"x": 10}))).is_empty());
    let update =
        strings(&transition.validate_update(&object(json!({"x": 9})), &object(json!({"x": 10}))));
    assert_eq!(update, vec!["spec.x: Invalid value: \"integer\": failed rule: self > oldSelf"]);
}

#[test]
fn upstreams_e2e_field_validation_schema_prunes_embedded_metadata() {
    let schema = compiled(json!({
        "type": "object",
        "properties": {"spec": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": true,
                    "properties": {
                        "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
                        "spec": {"type": "object"},
                    },
                },
                "foo": {"type": "string"},
                "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                "ports": {
                    "type": "array",
                    "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                    "x-kubernetes-list-type": "map",
                    "items": {
                        "type": "object",
                        "required": ["containerPort", "protocol"],
                        "properties": {
                            "containerPort": {"type": "integer", "format": "int32"},
                            "hostIP": {"type": "string"},
                            "hostPort": {"type": "integer", "format": "int32"},
                            "name": {"type": "string"},
                            "protocol": {"type": "string"},
                        },
                    },
                },
            },
        }},
    }));
    let mut obj = object(json!({
        "template": {"apiversion": "foo/v1", "kind": "Sub", "metadata": {"unknownSubMeta": "unknown", "name": "subobject", "namespace": "ns"}},
        "foo": "foo1",
        "cronSpec": "* * * * */5",
        "ports": [{"name": "x", "containerPort": 80, "protocol": "TCP"}],
        "unknown": "kept",
    }));
    assert_eq!(
        schema.prune(&mut obj),
        vec!["spec.template.apiversion", "spec.template.metadata.unknownSubMeta"]
    );
    assert_eq!(obj["spec"]["unknown"], json!("kept"));
    assert_eq!(
        obj["spec"]["template"]["metadata"],
        json!({"name": "subobject", "namespace": "ns"})
    );
    assert_eq!(strings(&schema.validate(&obj)), vec!["spec.template.apiVersion: Required value"]);
}

#[test]
fn common_rule_idioms_work() {
    let idioms = [
        "self.s.size() <= 5",
        "size(self.s) > 0",
        "self.s.startsWith('a') && self.s.endsWith('c') && self.s.contains('b')",
        "self.s.matches('^[a-z]+$')",
        "self.m.all(k, k.startsWith('x'))",
        "[1, 2].exists_one(x, x == 1)",
        "[1, 2].map(x, x * 2) == [2, 4]",
        "[1, 2].filter(x, x > 1).size() == 1",
        "'xa' in self.m",
        "self.?nope.orValue('d') == 'd'",
        "has(self.i) ? self.i > 0 : true",
        "int('5') == 5 && string(self.i) == '3' && double(self.i) == 3.0",
        "self.i < 3.5",
        "self.s.lowerAscii() == 'abc' && self.s.split('b').size() == 2 && self.s.replace('a', 'z') == 'zbc' && self.s.trim() == 'abc' && self.s.indexOf('b') == 1",
        "type(self.s) == string",
        "self.l.sum() == 3",
        "self.m.size() == 1",
        "self.m.exists(k, self.m[k] == 'y')",
        "'%s-%d'.format(['a', 1]) == 'a-1'",
        "self.s.charAt(0) == 'a'",
        "math.greatest(1, 2) == 2",
        "self.l.all(x, x > 0)",
        "!has(self.nope)",
        "self.s + 'd' == 'abcd'",
        "uint(1) == 1u",
        "self.l[0] == 1",
        "self.i % 2 == 1",
        "[1,2,3].exists(x, x == 2)",
        "self.s.upperAscii() == 'ABC'",
        "self.s.substring(1) == 'bc'",
        "['a','b'].join(',') == 'a,b'",
        "optional.of(1).hasValue()",
        "self.o.x == 1 || !has(self.o.x)",
        "cel.bind(y, self.i + 1, y == 4) && cel.bind(l, self.l, l.size() == 2 && l.all(v, v > 0))",
        "isURL('https://example.com:8443/a/b?x=1&x=2&y') && isURL('/path') && !isURL('example.com') && url('https://user@example.com:8443/a?x=1').getHost() == 'example.com:8443' && url('https://[::1]:80/').getHostname() == '::1' && url('https://example.com:8443/').getPort() == '8443' && url('https://example.com/a%20b').getEscapedPath() == '/a%20b' && url('https://e.com/?x=1&x=2&y').getQuery() == {'x': ['1', '2'], 'y': ['']} && url('http://e.com').getScheme() == 'http'",
        "isIP('10.0.0.1') && isIP('fd00::1') && !isIP('10.0.0.300') && !isIP('::ffff:1.2.3.4') && ip('10.0.0.1').family() == 4 && ip('::1').isLoopback() && ip.isCanonical('fd00::1') && !ip.isCanonical('fd00:0::1')",
        "isCIDR('10.0.0.0/8') && !isCIDR('10.0.0.0/33') && cidr('10.0.0.0/8').containsIP('10.1.2.3') && !cidr('10.0.0.0/8').containsIP('11.0.0.1') && cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16') && cidr('10.1.2.3/8').masked() == cidr('10.0.0.0/8') && cidr('10.0.0.0/8').prefixLength() == 8",
        "lists.range(3) == [0, 1, 2]",
        "[3, 1].sort() == [1, 3] && self.l.distinct().size() == 2",
        "'abc123'.find('[0-9]+') == '123' && 'a1b2'.findAll('[0-9]') == ['1', '2'] && 'a1b2c3'.findAll('[0-9]', 2) == ['1', '2'] && 'abc'.find('x') == ''",
        "sets.contains([1, 2, 3], [2]) && sets.equivalent([1, 2], [2, 1, 1]) && sets.intersects([1], [1, 5]) && !sets.intersects([1], [2])",
        "quantity('1Gi').isGreaterThan(quantity('1Mi')) && isQuantity('100m') && !isQuantity('x') && quantity('1024Mi') == quantity('1Gi') && quantity('1').add(quantity('500m')).compareTo(quantity('1500m')) == 0 && quantity('2k').asInteger() == 2000 && quantity('-1').sign() == -1 && quantity('1.5').asApproximateFloat() == 1.5 && !quantity('1.5').isInteger()",
    ];
    let mut failures = Vec::new();
    for rule in idioms {
        let s = StructuralSchema::new(
            &with_x(json!({
                "type": "object",
                "properties": {
                    "s": {"type": "string", "maxLength": 10},
                    "i": {"type": "integer"},
                    "l": {"type": "array", "maxItems": 10, "items": {"type": "integer"}},
                    "m": {"type": "object", "maxProperties": 10, "additionalProperties": {"type": "string", "maxLength": 10}},
                    "o": {"type": "object", "properties": {"x": {"type": "integer"}}},
                    "nope": {"type": "string"},
                },
                "x-kubernetes-validations": [{"rule": rule}],
            })),
            AT,
        );
        match s {
            Err(e) => failures.push(format!("{rule}: rejected {:?}", strings(&e))),
            Ok(s) => {
                let errs = s.validate(&object(json!({"x": {"s": "abc", "i": 3, "l": [1, 2], "m": {"xa": "y"}, "o": {"x": 1}}})));
                if !errs.is_empty() {
                    failures.push(format!("{rule}: {:?}", strings(&errs)));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_status_subresource_limits_the_roots_keywords() {
    let ok =
        json!({"type": "object", "properties": {"status": {"type": "object"}}, "nullable": false});
    assert!(StructuralSchema::status_subresource_errors(&ok, AT).is_empty());
    let typed = json!({"type": "array"});
    assert_eq!(
        strings(&StructuralSchema::status_subresource_errors(&typed, AT)),
        vec![format!(
            "{AT}.type: Invalid value: \"array\": only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled"
        )]
    );
    let any_of = json!({"type": "object", "anyOf": [{"required": ["spec"]}]});
    let got = strings(&StructuralSchema::status_subresource_errors(&any_of, AT));
    assert_eq!(got.len(), 1);
    assert!(got[0].ends_with("only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled"), "{}", got[0]);
}

#[test]
fn selectable_fields_name_scalar_fields_of_the_schema() {
    let schema = compiled(json!({
        "type": "object",
        "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {
                "color": {"type": "string"},
                "size": {"type": "integer"},
                "ratio": {"type": "number"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            }},
        },
    }));
    let at = "spec.versions[0].selectableFields";
    let fields = json!([
        {"jsonPath": ".spec.color"},
        {"jsonPath": ".spec.size"},
        {"jsonPath": ".spec.color"},
        {"jsonPath": ".spec.ratio"},
        {"jsonPath": ".spec.nope"},
        {"jsonPath": ".spec.labels['a']"},
        {"jsonPath": ""},
    ]);
    assert_eq!(
        strings(&schema.selectable_fields_errors(&fields, at)),
        vec![
            "spec.versions[0].selectableFields[2].jsonPath: Duplicate value: \".spec.color\"",
            "spec.versions[0].selectableFields[3].jsonPath: Invalid value: \".spec.ratio\": must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
            "spec.versions[0].selectableFields[4].jsonPath: Invalid value: \".spec.nope\": is an invalid path: does not refer to a valid field",
            "spec.versions[0].selectableFields[5].jsonPath: Invalid value: \".spec.labels['a']\": is an invalid path: array notation is not allowed",
            "spec.versions[0].selectableFields[6].jsonPath: Required value",
        ]
    );
}

#[test]
fn a_large_map_list_is_correlated_by_key() {
    // Regression: correlating every item by a linear search took seconds at this size.
    let schema = compiled(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {
            "items": {"type": "array", "maxItems": 20000, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"], "items": {
                "type": "object", "required": ["name"],
                "properties": {"name": {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9-]+$"}, "port": {"type": "integer", "minimum": 1, "maximum": 65535, "default": 80}},
                "x-kubernetes-validations": [{"rule": "self.port != 22", "message": "no ssh"}, {"rule": "self.port >= oldSelf.port", "message": "ports only grow"}],
            }},
        }}},
    }));
    let items: Vec<Value> =
        (0..5000).map(|i| json!({"name": format!("item-{i}"), "junk": 1})).collect();
    let mut obj = object(json!({"items": items}));
    assert_eq!(schema.prune(&mut obj).len(), 5000);
    schema.apply_defaults(&mut obj);
    assert_eq!(obj["spec"]["items"][4999]["port"], json!(80));
    assert!(schema.validate(&obj).is_empty());
    let old = obj.clone();
    obj["spec"]["items"][10]["port"] = json!(22);
    obj["spec"]["items"][20]["port"] = json!(79);
    assert_eq!(
        strings(&schema.validate_update(&obj, &old)),
        vec![
            "spec.items[10]: Invalid value: \"object\": no ssh",
            "spec.items[10]: Invalid value: \"object\": ports only grow",
            "spec.items[20]: Invalid value: \"object\": ports only grow",
        ]
    );
}
