//! Structural schemas of CustomResourceDefinitions, as upstream's
//! `apiextensions-apiserver/pkg/apiserver/schema` implements them over unstructured objects:
//!
//! - [`StructuralSchema::new`] parses a version's `openAPIV3Schema` once, checking what
//!   upstream's CRD validation checks of it: the keywords a CRD may not use, the structural
//!   rules (every field typed, value validations in `allOf`/`anyOf`/`oneOf`/`not` only
//!   about fields specified beside them, root `metadata` limited to `name` and
//!   `generateName`), list and map types, defaults (pruned, valid against their schema) and
//!   the `x-kubernetes-validations` CEL rules, which it compiles (syntax, fields their
//!   schema declares, estimated cost).
//! - [`StructuralSchema::prune`] drops unknown fields, [`StructuralSchema::apply_defaults`]
//!   fills defaults, [`StructuralSchema::validate`] and
//!   [`StructuralSchema::validate_update`] check an object (keywords, formats, list types,
//!   embedded resources, CEL rules with their runtime cost, ratcheting on update), with
//!   upstream's paths and messages.
//! - [`StructuralSchema::status_subresource_errors`] and
//!   [`StructuralSchema::selectable_fields_errors`]: the checks of a CRD version that
//!   depend on its schema beyond it.
//!
//! Per request the object is only walked: nothing is compiled again and the object is not
//! copied (CEL rules see converted copies of the values at their nodes only).
//!
//! The modules: `schema` (parsing, structural rules), `validate` (kube-openapi's keywords,
//! list types, embedded resources), `formats`, `prune`, `defaults`, `rules` (CEL),
//! `library` (the parts of Kubernetes' CEL library the `cel` crate lacks), `cost`.

mod cost;
mod defaults;
mod formats;
mod library;
mod prune;
mod rules;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

use serde_json::Value;

use crate::validation::{FieldError, FieldErrorKind};
use schema::{Parser, Schema, child, key};
use validate::Validator;

/// A CRD version's schema, parsed and checked once, applied to every object of the version.
#[derive(Debug)]
pub struct StructuralSchema {
    root: Schema,
}

impl StructuralSchema {
    /// Parses a CRD version's `schema.openAPIV3Schema`. Errors are field errors with paths
    /// below `path` (e.g. `spec.versions[0].schema.openAPIV3Schema`), as upstream reports
    /// them: the structural rules (sorted), then, when the schema is structural, its
    /// defaults; then the keywords; then the CEL rules that do not compile; then rules
    /// over the cost limits.
    pub fn new(schema: &Value, path: &str) -> Result<Self, Vec<FieldError>> {
        let mut parser = Parser::default();
        let root = parser.parse_root(schema, path);
        let mut errors = schema::structural_errors(&root, path);
        if errors.is_empty() && parser.errors.is_empty() {
            default_errors(&root, path, false, &mut errors);
        }
        errors.append(&mut parser.errors);
        errors.append(&mut parser.rule_errors);
        cost_errors(&root, path, &mut errors);
        if errors.is_empty() { Ok(Self { root }) } else { Err(errors) }
    }

    /// The checks upstream adds to a version's `openAPIV3Schema` (at `path`) when the
    /// version has the status subresource: the root may only be of type object and use
    /// the keywords that stay meaningful once `properties.status` is taken out for the
    /// subresource.
    pub fn status_subresource_errors(schema: &Value, path: &str) -> Vec<FieldError> {
        /// The keywords allowed at the root (upstream's `allowedFieldsAtRootSchema`), with
        /// the Go field names upstream's message lists.
        const ALLOWED: [(&str, &str); 22] = [
            ("description", "Description"),
            ("type", "Type"),
            ("format", "Format"),
            ("title", "Title"),
            ("maximum", "Maximum"),
            ("exclusiveMaximum", "ExclusiveMaximum"),
            ("minimum", "Minimum"),
            ("exclusiveMinimum", "ExclusiveMinimum"),
            ("maxLength", "MaxLength"),
            ("minLength", "MinLength"),
            ("pattern", "Pattern"),
            ("maxItems", "MaxItems"),
            ("minItems", "MinItems"),
            ("uniqueItems", "UniqueItems"),
            ("multipleOf", "MultipleOf"),
            ("required", "Required"),
            ("items", "Items"),
            ("properties", "Properties"),
            ("externalDocs", "ExternalDocs"),
            ("example", "Example"),
            ("x-kubernetes-preserve-unknown-fields", "XPreserveUnknownFields"),
            ("x-kubernetes-validations", "XValidations"),
        ];
        let Some(map) = schema.as_object() else { return Vec::new() };
        for (k, v) in map {
            let zero = match v {
                Value::Null => true,
                Value::Bool(b) => !b,
                Value::String(s) => s.is_empty(),
                Value::Array(a) => a.is_empty(),
                Value::Object(o) => o.is_empty(),
                Value::Number(_) => false,
            };
            if zero {
                continue;
            }
            if k == "type" {
                if v.as_str() != Some("object") {
                    return vec![FieldError::invalid(
                        child(path, "type"),
                        v.clone(),
                        r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#,
                    )];
                }
                continue;
            }
            if !ALLOWED.iter().any(|(name, _)| name == k) {
                let names: Vec<&str> = ALLOWED.iter().map(|(_, go)| *go).collect();
                return vec![FieldError::invalid(
                    path,
                    schema.clone(),
                    format!(
                        "only [{}] fields are allowed at the root of the schema if the status subresource is enabled",
                        names.join(" ")
                    ),
                )];
            }
        }
        Vec::new()
    }

    /// Upstream's checks of a version's `selectableFields` (the list, at `path` such as
    /// `spec.versions[0].selectableFields`) against this schema: each `jsonPath` names a
    /// field of the schema (no array notation), not in `metadata`, of type string, integer
    /// or boolean, once; at most 8 of them.
    pub fn selectable_fields_errors(&self, fields: &Value, path: &str) -> Vec<FieldError> {
        const MAX_SELECTABLE_FIELDS: usize = 8;
        let mut errors = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for (i, f) in fields.as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
            let at = child(&key(path, i), "jsonPath");
            let json_path = f.get("jsonPath").and_then(Value::as_str).unwrap_or_default();
            if json_path.is_empty() {
                errors.push(FieldError::required(at));
                continue;
            }
            let (normalized, found) = match rules::field_path(json_path, &self.root, false) {
                Ok(found) => found,
                Err(e) => {
                    errors.push(FieldError::invalid(
                        at,
                        Value::from(json_path),
                        format!("is an invalid path: {e}"),
                    ));
                    continue;
                }
            };
            if normalized.split(['.', '[']).next() == Some("metadata") {
                errors.push(FieldError::invalid(
                    &at,
                    Value::from(json_path),
                    "must not point to fields in metadata",
                ));
            }
            if !matches!(found.type_name.as_str(), "string" | "integer" | "boolean") {
                errors.push(FieldError::invalid(
                    &at,
                    Value::from(json_path),
                    "must point to a field of type string, boolean or integer. Enum string fields and strings with formats are allowed.",
                ));
            }
            if seen.contains(&normalized) {
                errors.push(FieldError::duplicate(at, Value::from(json_path)));
            } else {
                seen.push(normalized);
            }
        }
        if seen.len() > MAX_SELECTABLE_FIELDS {
            errors.push(FieldError {
                field: path.to_string(),
                kind: FieldErrorKind::TooMany(Some(seen.len()), MAX_SELECTABLE_FIELDS),
            });
        }
        errors
    }

    /// Drops the fields the schema does not specify (upstream's pruning), below
    /// `x-kubernetes-preserve-unknown-fields` only those of specified fields; `apiVersion`,
    /// `kind` and `metadata` stay at the root and in embedded resources. Returns the paths
    /// pruned, sorted (`spec.foo`, `spec.items[2].bar`): upstream warns
    /// `unknown field "spec.foo"` for each with `fieldValidation=Warn` and fails with
    /// `Strict`.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        prune::prune(obj, &self.root, true)
    }

    /// Applies the schema's defaults: drops nulls of non-nullable fields without a default,
    /// then sets missing properties of present objects, and nulls of non-nullable fields,
    /// to their defaults (in array items and additionalProperties values too).
    pub fn apply_defaults(&self, obj: &mut Value) {
        defaults::prune_nulls(obj, Some(&self.root));
        defaults::default(obj, &self.root);
    }

    /// Validates the object against the schema's keywords, embedded resources' `apiVersion`
    /// and `kind`, list types, then (when nothing blocking was found) the CEL rules. The
    /// root's `apiVersion`, `kind` and `metadata` are left to the caller.
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        self.check(obj, None)
    }

    /// As [`validate`](Self::validate), and evaluates transition rules (those using
    /// `oldSelf`) where `old` has the same field (object members; items of lists of type
    /// map, by their keys). As upstream's ratcheting, a value equal to its correlated old
    /// value is not validated against the keywords nor rules without `oldSelf` (upstream
    /// warns instead), and list uniqueness is checked only if the old object kept it.
    pub fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        self.check(new, Some(old))
    }

    fn check(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut validator = Validator { prefix: "", errors: Vec::new() };
        validator.check(&self.root, obj, old, &mut String::new(), true);
        let mut errors = validator.errors;
        validate::embedded(&self.root, obj, &mut String::new(), &mut errors);
        // On an update, list uniqueness is checked only when the old object kept it.
        let mut old_list_errors = Vec::new();
        if let Some(old) = old {
            validate::lists(&self.root, old, &mut String::new(), &mut old_list_errors);
        }
        if old_list_errors.is_empty() {
            validate::lists(&self.root, obj, &mut String::new(), &mut errors);
        }
        if self.root.has_rules {
            if errors.iter().any(blocks_rules) {
                errors.push(FieldError::invalid(
                    validate::NIL_PATH,
                    Value::from("null"),
                    "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
                ));
            } else {
                let mut run = rules::Run::new(&mut errors, true);
                rules::validate(&self.root, obj, old, &mut String::new(), true, &mut run);
            }
        }
        errors
    }
}

/// Upstream's static cost limits of the rules: per rule, then for the whole schema (the
/// rules contributing most named).
fn cost_errors(root: &Schema, path: &str, errors: &mut Vec<FieldError>) {
    let mut costs = Vec::new();
    rules::cost_errors(root, path, Some(1), &mut costs, errors);
    let total = costs.iter().fold(0u64, |t, (_, c)| t.saturating_add(*c));
    if total > cost::STATIC_SCHEMA_LIMIT {
        costs.sort_by_key(|c| std::cmp::Reverse(c.1));
        for (at, _) in costs.iter().filter(|(_, c)| *c >= cost::STATIC_SCHEMA_LIMIT / 100).take(4) {
            errors.push(FieldError::forbidden(
                at,
                "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
            ));
        }
        errors.push(FieldError::forbidden(
            path,
            cost::exceeds(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                total,
                cost::STATIC_SCHEMA_LIMIT,
            ),
        ));
    }
}

/// Whether an error keeps upstream from evaluating CEL rules (`hasBlockingErr`): a wrong
/// type, a missing field, a value not supported, too long or too many.
fn blocks_rules(error: &FieldError) -> bool {
    matches!(
        error.kind,
        FieldErrorKind::NotSupported(..)
            | FieldErrorKind::Required
            | FieldErrorKind::RequiredBecause(_)
            | FieldErrorKind::TooLong(_)
            | FieldErrorKind::TooMany(..)
            | FieldErrorKind::TypeInvalid(..)
    )
}

/// Upstream's `ValidateDefaults`: every default (but those inside the root's `metadata`) is
/// pruned already and valid against its schema, CEL rules included.
fn default_errors(s: &Schema, path: &str, inside_meta: bool, errors: &mut Vec<FieldError>) {
    if let (Some(default), false) = (&s.default, inside_meta) {
        let at = child(path, "default");
        let mut pruned = default.clone();
        prune::prune(&mut pruned, s, s.embedded);
        if &pruned != default {
            errors.push(FieldError::invalid(&at, default.clone(), "must not have unknown fields"));
        }
        let mut validator = Validator { prefix: &at, errors: Vec::new() };
        validator.check(s, default, None, &mut String::new(), false);
        if validator.errors.is_empty() {
            let mut cel_path = at.clone();
            let mut run = rules::Run::new(errors, false);
            rules::validate(s, default, Some(default), &mut cel_path, false, &mut run);
        } else {
            errors.append(&mut validator.errors);
        }
    }
    if let Some(items) = &s.items {
        default_errors(items, &child(path, "items"), inside_meta, errors);
    }
    let root = path_is_root(path, s);
    for (k, p) in &s.properties {
        let meta = inside_meta || (root && k == "metadata");
        default_errors(p, &key(&child(path, "properties"), k), meta, errors);
    }
}

/// Whether `path` is the schema's root: the only node whose path does not end in a
/// `properties[...]`, `items` or `additionalProperties` step.
fn path_is_root(path: &str, _s: &Schema) -> bool {
    !(path.ends_with(']') || path.ends_with(".items") || path.ends_with(".additionalProperties"))
}
