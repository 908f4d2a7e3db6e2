//! `x-kubernetes-validations`: CEL rules compiled once with the schema and evaluated with
//! `self` (and `oldSelf` for transition rules) bound to the value at the rule's node, as
//! upstream's `schema/cel` validator does.
//!
//! The `cel` crate does not type-check, so two of cel-go's compile-time checks are made
//! here over the expression: variables other than `self`, `oldSelf` and comprehension
//! variables are undeclared, and fields selected from `self`/`oldSelf` must be declared by
//! the schema (`undefined field 'z'`). Values are typed by their schema as upstream's
//! conversion does: `number` fields are doubles even when integral, `byte` strings bytes,
//! and the root's `metadata` holds only `name` and `generateName`. Not available: cel-go's
//! `duration`/`timestamp` (the crate's `chrono` feature is off) and two-variable comprehensions.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, OnceLock};

use base64::Engine;
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use serde_json::Value;

use super::cost::{self, Shape};
use super::schema::{Parser, Schema, child, key};
use super::validate;
use crate::validation::{FieldError, FieldErrorKind};

/// The longest message a `messageExpression` may produce (upstream's
/// `MaxEvaluatedMessageExpressionSizeBytes`).
const MAX_MESSAGE_BYTES: usize = 5 * 1024;

/// The reasons a rule may give (upstream's `FieldValueErrorReason`).
const REASONS: [&str; 4] =
    ["FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"];

/// Identifiers a rule may use besides `self` and `oldSelf`: type names and namespaces.
const KNOWN_IDENTS: [&str; 18] = [
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
    "optional",
    "math",
    "strings",
    "sets",
    "lists",
    "ip",
    "cel",
];

/// What kind of field error a failed rule is reported as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Invalid,
    Forbidden,
    Required,
    Duplicate,
}

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct Rule {
    source: String,
    program: cel::Program,
    message: Option<String>,
    message_expression: Option<cel::Program>,
    reason: Reason,
    /// The `fieldPath`, as a path relative to the rule's node (`spec.x`, `[key]`).
    field_path: Option<String>,
    uses_old_self: bool,
    /// `optionalOldSelf`: `oldSelf` is an optional, and the rule runs without an old value.
    optional_old_self: bool,
    /// The rule's index in `x-kubernetes-validations`.
    index: usize,
}

impl Rule {
    /// What errors quote of the rule: its message, else its source (upstream's
    /// `ruleErrorString`).
    fn error_string(&self) -> &str {
        self.message.as_deref().unwrap_or(self.source.trim())
    }

    /// The message of a failure without `messageExpression`.
    fn message_or_default(&self) -> String {
        match &self.message {
            Some(m) => m.clone(),
            None => format!("failed rule: {}", self.source.trim()),
        }
    }
}

/// The CEL environment every rule is compiled and evaluated in: the standard library with
/// the strings, lists and math extensions (as far as the `cel` crate has them) and
/// Kubernetes' lists library.
fn env() -> &'static Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        for extension in [cel::extensions::strings, cel::extensions::lists, cel::extensions::math] {
            // An extension clashing with the standard library keeps the standard function.
            let _ = env.add_extension(extension);
        }
        let _ = super::library::lists(&mut env);
        let _ = super::library::quantities(&mut env);
        let _ = super::library::regexes(&mut env);
        let _ = super::library::sets(&mut env);
        let _ = super::library::addresses(&mut env);
        let _ = super::library::urls(&mut env);
        let _ = super::library::bind(&mut env);
        Arc::new(env)
    })
}

fn has_line_break(s: &str) -> bool {
    s.contains('\n')
}

/// The variables a program names that no comprehension binds.
fn free_variables(program: &cel::Program) -> Vec<String> {
    fn bound<'a>(e: &'a IdedExpr, out: &mut HashSet<&'a str>) {
        match &e.expr {
            Expr::Call(call) => {
                if let Some(t) = &call.target {
                    bound(t, out);
                }
                call.args.iter().for_each(|a| bound(a, out));
            }
            Expr::Comprehension(c) => {
                out.insert(&c.iter_var);
                if let Some(v) = &c.iter_var2 {
                    out.insert(v);
                }
                out.insert(&c.accu_var);
                for sub in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                    bound(sub, out);
                }
            }
            Expr::List(l) => l.elements.iter().for_each(|x| bound(x, out)),
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::StructField(f) => bound(&f.value, out),
                        EntryExpr::MapEntry(m) => {
                            bound(&m.key, out);
                            bound(&m.value, out);
                        }
                    }
                }
            }
            Expr::Select(s) => bound(&s.operand, out),
            _ => {}
        }
    }
    let mut comprehension = HashSet::new();
    bound(program.expression(), &mut comprehension);
    let mut free: Vec<String> = program
        .references()
        .variables()
        .into_iter()
        .filter(|v| {
            *v != "self"
                && *v != "oldSelf"
                && !comprehension.contains(v)
                && !KNOWN_IDENTS.contains(v)
        })
        .map(str::to_string)
        .collect();
    free.sort();
    free
}

/// Compiles `source`, with upstream's wording for what does not compile.
fn compile(source: &str) -> Result<cel::Program, String> {
    let program = env().compile(source).map_err(|e| format!("compilation failed: {e}"))?;
    if let Some(name) = free_variables(&program).first() {
        return Err(format!(
            "compilation failed: ERROR: <input>: undeclared reference to '{name}' (in container '')"
        ));
    }
    Ok(program)
}

/// What a rule's expression is known to be, for checking the fields it selects.
#[derive(Clone, Copy)]
enum Known<'a> {
    /// A value of this schema; `Meta` says which of `apiVersion`, `kind` and `metadata` it
    /// has besides its properties.
    Node(&'a Schema, Meta),
    /// The root's `metadata`: only `name` and `generateName`, as upstream declares it.
    RootMetadata,
    /// Anything (unknown fields preserved, function results, ...).
    Unknown,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Meta {
    None,
    Root,
    Embedded,
}

fn node(s: &Schema, root: bool) -> Known<'_> {
    let meta = if root {
        Meta::Root
    } else if s.embedded {
        Meta::Embedded
    } else {
        Meta::None
    };
    Known::Node(s, meta)
}

/// The first field a program selects that its schema does not declare (upstream's type
/// check: `undefined field 'z'`), with where.
fn undefined_field<'a>(
    e: &'a IdedExpr,
    vars: &mut Vec<(&'a str, Known<'a>)>,
) -> Result<Known<'a>, (u64, String)> {
    match &e.expr {
        Expr::Ident(name) => {
            Ok(vars.iter().rev().find(|(n, _)| n == name).map_or(Known::Unknown, |(_, k)| *k))
        }
        Expr::Select(select) => {
            let operand = undefined_field(&select.operand, vars)?;
            let field = select.field.as_str();
            match operand {
                Known::Node(s, meta) => {
                    if meta != Meta::None && (field == "apiVersion" || field == "kind") {
                        return Ok(Known::Unknown);
                    }
                    if field == "metadata" && meta == Meta::Root {
                        return Ok(Known::RootMetadata);
                    }
                    if field == "metadata" && meta == Meta::Embedded {
                        return Ok(Known::Unknown);
                    }
                    if let Some(p) = s.properties.get(field) {
                        return Ok(node(p, false));
                    }
                    if let Some(a) = s.additional_schema() {
                        return Ok(node(a, false));
                    }
                    let closed = s.type_name == "object"
                        && !s.preserve_unknown
                        && !matches!(s.additional, Some(super::schema::Additional::Allows(true)));
                    if closed {
                        Err((select.operand.id.max(e.id), field.to_string()))
                    } else {
                        Ok(Known::Unknown)
                    }
                }
                Known::RootMetadata => {
                    if field == "name" || field == "generateName" {
                        Ok(Known::Unknown)
                    } else {
                        Err((e.id, field.to_string()))
                    }
                }
                Known::Unknown => Ok(Known::Unknown),
            }
        }
        Expr::Call(call) => {
            if let Some(t) = &call.target {
                undefined_field(t, vars)?;
            }
            let mut args = Vec::with_capacity(call.args.len());
            for a in &call.args {
                args.push(undefined_field(a, vars)?);
            }
            if call.func_name == "_[_]"
                && let Some(Known::Node(s, _)) = args.first()
            {
                if let Some(items) = &s.items {
                    return Ok(node(items, false));
                }
                if let Some(a) = s.additional_schema() {
                    return Ok(node(a, false));
                }
            }
            Ok(Known::Unknown)
        }
        Expr::Comprehension(c) => {
            let range = undefined_field(&c.iter_range, vars)?;
            undefined_field(&c.accu_init, vars)?;
            let element = match range {
                Known::Node(s, _) if s.type_name == "array" => {
                    s.items.as_deref().map_or(Known::Unknown, |i| node(i, false))
                }
                _ => Known::Unknown,
            };
            let depth = vars.len();
            vars.push((c.iter_var.as_str(), element));
            if let Some(v2) = &c.iter_var2 {
                vars.push((v2.as_str(), Known::Unknown));
            }
            vars.push((c.accu_var.as_str(), Known::Unknown));
            let result = [&c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .try_for_each(|sub| undefined_field(sub, vars).map(|_| ()));
            vars.truncate(depth);
            result?;
            Ok(Known::Unknown)
        }
        Expr::List(l) => {
            for x in &l.elements {
                undefined_field(x, vars)?;
            }
            Ok(Known::Unknown)
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                match &entry.expr {
                    EntryExpr::StructField(f) => {
                        undefined_field(&f.value, vars)?;
                    }
                    EntryExpr::MapEntry(m) => {
                        undefined_field(&m.key, vars)?;
                        undefined_field(&m.value, vars)?;
                    }
                }
            }
            Ok(Known::Unknown)
        }
        _ => Ok(Known::Unknown),
    }
}

/// Checks the fields a compiled program selects from `self` and `oldSelf` against the
/// schema of the rule's node.
fn check_fields(
    program: cel::Program,
    schema: &Schema,
    root: bool,
) -> Result<cel::Program, String> {
    let known = node(schema, root);
    let mut vars = vec![("self", known), ("oldSelf", known)];
    match undefined_field(program.expression(), &mut vars) {
        Ok(_) => Ok(program),
        Err((id, field)) => {
            let source = &program.source_info().source;
            let start = program.source_info().offset_for(id).map_or(0, |(start, _)| start as usize);
            let before: String = source.chars().take(start).collect();
            let line = before.matches('\n').count() + 1;
            let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
            let at = format!("{line}:{column}");
            Err(format!("compilation failed: ERROR: <input>:{at}: undefined field '{field}'"))
        }
    }
}

/// Parses a `fieldPath` against the schema of the rule's node: the normalized path, or why
/// it is not valid (upstream's `ValidFieldPath`).
pub(crate) fn field_path<'a>(
    path: &str,
    schema: &'a Schema,
    allow_arrays: bool,
) -> Result<(String, &'a Schema), String> {
    let mut out = String::new();
    let mut s = schema;
    let mut rest = path;
    let step = |name: &str, s: &mut &Schema, out: &mut String| -> Result<(), String> {
        if !s.properties.is_empty() {
            let next = s.properties.get(name).ok_or("does not refer to a valid field")?;
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(name);
            *s = next;
        } else if let Some(next) = s.additional_schema() {
            let _ = write!(out, "[{name}]");
            *s = next;
        } else {
            return Err("does not refer to a valid field".into());
        }
        Ok(())
    };
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[', ']']).unwrap_or(r.len());
            if end == 0 {
                return Err("unexpected end of JSON path".into());
            }
            step(&r[..end], &mut s, &mut out)?;
            rest = &r[end..];
        } else if rest.starts_with('[') && !allow_arrays {
            return Err("array notation is not allowed".into());
        } else if let Some(r) = rest.strip_prefix("['") {
            let mut end = None;
            let bytes = r.as_bytes();
            for i in 0..bytes.len() {
                if bytes[i] == b'\'' && (i == 0 || bytes[i - 1] != b'\\') {
                    end = Some(i);
                    break;
                }
            }
            let end = end.ok_or("unexpected end of JSON path")?;
            let name = r[..end].replace("\\'", "'").replace("\\\\", "\\");
            step(&name, &mut s, &mut out)?;
            rest = r[end + 1..].strip_prefix(']').ok_or("expected ]")?;
        } else {
            return Err(format!("expected [ or . but got: {rest}"));
        }
    }
    Ok((out, s))
}

/// Parses and compiles a node's `x-kubernetes-validations`; `schema` is the node (its
/// properties already parsed), `uncorrelatable` the array above whose items `oldSelf`
/// cannot be used.
pub(crate) fn parse_rules(
    parser: &mut Parser,
    value: &Value,
    schema: &Schema,
    path: &str,
    uncorrelatable: Option<&str>,
    root: bool,
) -> Vec<Rule> {
    let base = child(path, "x-kubernetes-validations");
    let Some(list) = value.as_array() else {
        parser.errors.push(FieldError::invalid(base, value.clone(), "must be a list"));
        return Vec::new();
    };
    let mut rules = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let at = key(&base, i);
        let text = |name: &str| entry.get(name).and_then(Value::as_str);
        let source = text("rule").unwrap_or_default();
        let mut ok = true;
        if source.trim().is_empty() {
            parser.errors.push(
                FieldError::required(child(&at, "rule")).with_detail("rule is not specified"),
            );
            continue;
        }
        let message = text("message");
        if let Some(m) = message {
            if m.trim().is_empty() {
                parser.errors.push(FieldError::invalid(
                    child(&at, "message"),
                    Value::from(m),
                    "must be non-empty if specified",
                ));
                ok = false;
            } else if has_line_break(m) {
                parser.errors.push(FieldError::invalid(
                    child(&at, "message"),
                    Value::from(m),
                    "must not contain line breaks",
                ));
                ok = false;
            }
        } else if has_line_break(source) {
            parser.errors.push(
                FieldError::required(child(&at, "message"))
                    .with_detail("message must be specified if rule contains line breaks"),
            );
            ok = false;
        }
        let message_expression = text("messageExpression");
        if message_expression.is_some_and(|m| m.trim().is_empty()) {
            parser.errors.push(
                FieldError::required(child(&at, "messageExpression"))
                    .with_detail("messageExpression must be non-empty if specified"),
            );
            ok = false;
        }
        let reason = match text("reason") {
            None | Some("FieldValueInvalid") => Reason::Invalid,
            Some("FieldValueForbidden") => Reason::Forbidden,
            Some("FieldValueRequired") => Reason::Required,
            Some("FieldValueDuplicate") => Reason::Duplicate,
            Some(other) => {
                parser.errors.push(FieldError::not_supported(
                    child(&at, "reason"),
                    Value::from(other),
                    &REASONS,
                ));
                ok = false;
                Reason::Invalid
            }
        };
        let mut normalized = None;
        if let Some(fp) = text("fieldPath") {
            let fp_path = child(&at, "fieldPath");
            if fp.trim().is_empty() {
                parser.errors.push(FieldError::invalid(
                    fp_path,
                    Value::from(fp),
                    "must be non-empty if specified",
                ));
                ok = false;
            } else if has_line_break(fp) {
                parser.errors.push(FieldError::invalid(
                    fp_path,
                    Value::from(fp),
                    "must not contain line breaks",
                ));
                ok = false;
            } else {
                match field_path(fp.trim(), schema, true) {
                    Ok((p, _)) => normalized = Some(p),
                    Err(e) => {
                        parser.errors.push(FieldError::invalid(
                            fp_path,
                            Value::from(fp),
                            format!("must be a valid path: {e}"),
                        ));
                        ok = false;
                    }
                }
            }
        }
        let program = match compile(source).and_then(|p| check_fields(p, schema, root)) {
            Ok(p) => p,
            Err(e) => {
                parser.rule_errors.push(FieldError::invalid(child(&at, "rule"), entry.clone(), e));
                continue;
            }
        };
        let uses_old_self = program.references().has_variable("oldSelf");
        if uses_old_self {
            if let Some(array) = uncorrelatable {
                parser.rule_errors.push(FieldError::invalid(
                    child(&at, "rule"),
                    Value::from(source),
                    format!(
                        "oldSelf cannot be used on the uncorrelatable portion of the schema within {array}"
                    ),
                ));
                ok = false;
            }
        } else if let Some(optional) = entry.get("optionalOldSelf").and_then(Value::as_bool) {
            parser.rule_errors.push(FieldError::invalid(
                child(&at, "optionalOldSelf"),
                Value::Bool(optional),
                "may not be set if oldSelf is not used in rule",
            ));
            ok = false;
        }
        let message_expression = match message_expression.filter(|m| !m.trim().is_empty()) {
            None => None,
            Some(m) => match compile(m).and_then(|p| check_fields(p, schema, root)) {
                Ok(p) => Some(p),
                Err(e) => {
                    parser.rule_errors.push(FieldError::invalid(
                        child(&at, "messageExpression"),
                        entry.clone(),
                        format!("messageExpression {e}"),
                    ));
                    ok = false;
                    None
                }
            },
        };
        if ok {
            rules.push(Rule {
                source: source.to_string(),
                program,
                message: message.map(|m| m.trim().to_string()),
                message_expression,
                reason,
                field_path: normalized,
                uses_old_self,
                optional_old_self: uses_old_self
                    && entry.get("optionalOldSelf").and_then(Value::as_bool) == Some(true),
                index: i,
            });
        }
    }
    rules
}

/// A JSON value as a CEL value typed by its schema: `number`s are doubles, `byte` strings
/// bytes; at the resource's root, `metadata` holds only `name` and `generateName`, as
/// upstream declares it to rules.
fn typed(value: &Value, schema: Option<&Schema>, root: bool) -> cel::Value {
    let Some(s) = schema else { return crate::cel::to_cel(value) };
    match value {
        Value::Number(n) if s.type_name == "number" => {
            cel::Value::Float(n.as_f64().unwrap_or_default())
        }
        Value::String(text) if s.format == "byte" => {
            match base64::engine::general_purpose::STANDARD.decode(text) {
                Ok(bytes) => cel::Value::Bytes(Arc::new(bytes)),
                Err(_) => crate::cel::to_cel(value),
            }
        }
        Value::Array(items) => {
            let item = s.items.as_deref();
            cel::Value::List(Arc::new(items.iter().map(|v| typed(v, item, false)).collect()))
        }
        Value::Object(map) => {
            let mut out: HashMap<String, cel::Value> = HashMap::with_capacity(map.len());
            for (k, v) in map {
                let converted = if root && k == "metadata" {
                    let mut meta = HashMap::new();
                    for name in ["name", "generateName"] {
                        if let Some(x) = v.get(name) {
                            meta.insert(name.to_string(), crate::cel::to_cel(x));
                        }
                    }
                    cel::Value::Map(meta.into())
                } else {
                    typed(v, s.member(k), false)
                };
                out.insert(k.clone(), converted);
            }
            cel::Value::Map(out.into())
        }
        _ => crate::cel::to_cel(value),
    }
}

/// Evaluates the rules of `schema` and below over `value`, with `old` the correlated old
/// value for transition rules; errors' paths start at `path`. With `ratchet`, rules without
/// `oldSelf` are not evaluated on values equal to their old ones.
pub(crate) fn validate(
    schema: &Schema,
    value: &Value,
    old: Option<&Value>,
    path: &mut String,
    root: bool,
    run: &mut Run<'_>,
) {
    if value.is_null() || !schema.has_rules || run.stopped {
        return;
    }
    let old = old.filter(|o| !o.is_null());
    if !schema.rules.is_empty() {
        evaluate(schema, value, old, path, root, run);
    }
    match value {
        Value::Array(items) => {
            let Some(item_schema) = schema.items.as_deref().filter(|i| i.has_rules) else {
                return;
            };
            let old_items = old.and_then(Value::as_array).map(Vec::as_slice);
            let correlation = validate::Correlation::new(schema, old_items);
            for (i, item) in items.iter().enumerate() {
                let old_item = correlation.as_ref().and_then(|c| c.get(schema, item));
                let len = path.len();
                let _ = write!(path, "[{i}]");
                validate(item_schema, item, old_item, path, false, run);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                if root && (k == "metadata" || k == "apiVersion" || k == "kind") {
                    continue;
                }
                let len = path.len();
                let sub = if let Some(p) = schema.properties.get(k) {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    p
                } else if let Some(a) = schema.additional_schema() {
                    let _ = write!(path, "[{k}]");
                    a
                } else {
                    continue;
                };
                if sub.has_rules {
                    let old_v = old.and_then(|o| o.get(k));
                    validate(sub, v, old_v, path, false, run);
                }
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn evaluate(
    schema: &Schema,
    value: &Value,
    old: Option<&Value>,
    path: &str,
    root: bool,
    run: &mut Run<'_>,
) {
    let unchanged = run.ratchet && old.is_some_and(|o| o == value);
    if unchanged && !schema.rules.iter().any(|r| r.uses_old_self) {
        return;
    }
    let errors = &mut *run.errors;
    // Upstream reports the root's rules at a nil path.
    let at = if path.is_empty() { validate::NIL_PATH } else { path };
    let mut context = cel::Context::with_env(env().clone());
    let self_value = typed(value, Some(schema), root);
    context.add_variable_from_value("self", self_value.clone());
    let old = old.filter(|_| schema.rules.iter().any(|r| r.uses_old_self));
    let old_self = old.map(|o| typed(o, Some(schema), root));
    if let Some(o) = &old_self {
        context.add_variable_from_value("oldSelf", o.clone());
    }
    // Rules with optionalOldSelf see oldSelf as an optional, none without an old value.
    let mut optional_context = None;
    if schema.rules.iter().any(|r| r.optional_old_self) {
        let mut c = cel::Context::with_env(env().clone());
        c.add_variable_from_value("self", self_value);
        let optional = match old_self.map(Box::<dyn cel::common::value::Val>::try_from) {
            Some(Ok(v)) => cel::common::types::CelOptional::of(v),
            _ => cel::common::types::CelOptional::none(),
        };
        c.add_variable_as_val("oldSelf", Box::new(optional));
        optional_context = Some(c);
    }
    let type_value = || Value::from(schema.type_name.as_str());
    // Upstream's ratcheting: a rule without oldSelf that fails on a value equal to the old
    // one only warns.
    for rule in &schema.rules {
        if rule.uses_old_self && old.is_none() && !rule.optional_old_self
            || !rule.uses_old_self && unchanged
        {
            continue;
        }
        let context = match &optional_context {
            Some(c) if rule.optional_old_self => c,
            _ => &context,
        };
        let mut vars = vec![("self", Shape::Values(vec![value]))];
        if let Some(o) = old {
            vars.push(("oldSelf", Shape::Values(vec![o])));
        }
        let spent = cost::cost(rule.program.expression(), &mut vars);
        if spent > cost::PER_CALL_LIMIT {
            errors.push(FieldError::invalid(
                at,
                type_value(),
                format!(
                    "'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: {}",
                    rule.error_string()
                ),
            ));
            run.stopped = true;
            return;
        }
        if spent > run.remaining {
            errors.push(FieldError::invalid(
                at,
                type_value(),
                "validation failed due to running out of cost budget, no further validation rules will be run",
            ));
            run.stopped = true;
            return;
        }
        run.remaining -= spent;
        match rule.program.execute(context) {
            Ok(cel::Value::Bool(true)) => continue,
            Ok(cel::Value::Bool(false)) => {}
            Ok(other) => {
                errors.push(FieldError::invalid(
                    at,
                    type_value(),
                    format!(
                        "rule evaluated to {:?}, not a bool, evaluating rule: {}",
                        other.type_of(),
                        rule.error_string()
                    ),
                ));
                continue;
            }
            Err(e @ cel::ExecutionError::NoSuchOverload(_)) => {
                errors.push(FieldError::invalid(
                    at,
                    type_value(),
                    format!(
                        "'{e}': call arguments did not match a supported operator, function or macro signature for rule: {}",
                        rule.error_string()
                    ),
                ));
                continue;
            }
            Err(e) => {
                errors.push(FieldError::invalid(
                    at,
                    type_value(),
                    format!("{} evaluating rule: {}", go_error(&e), rule.error_string()),
                ));
                continue;
            }
        }
        let field = match &rule.field_path {
            Some(p) => child(path, p),
            None => at.to_string(),
        };
        let detail = rule
            .message_expression
            .as_ref()
            .and_then(|m| evaluate_message(m, context))
            .unwrap_or_else(|| rule.message_or_default());
        // Upstream names the value by its schema type ("string", "object"), never by itself.
        let bad_value = type_value();
        let kind = match rule.reason {
            Reason::Invalid => FieldErrorKind::Invalid(bad_value, detail),
            Reason::Forbidden => FieldErrorKind::Forbidden(detail),
            Reason::Required => FieldErrorKind::RequiredBecause(detail),
            Reason::Duplicate => FieldErrorKind::Duplicate(bad_value),
        };
        errors.push(FieldError { field, kind });
    }
}

/// One evaluation of an object's rules: where errors go, what is left of the runtime cost
/// budget.
pub(crate) struct Run<'e> {
    errors: &'e mut Vec<FieldError>,
    /// Whether rules without `oldSelf` are skipped on values equal to their old ones.
    ratchet: bool,
    remaining: u64,
    /// A limit was hit: no further rule runs.
    stopped: bool,
}

impl<'e> Run<'e> {
    pub(crate) fn new(errors: &'e mut Vec<FieldError>, ratchet: bool) -> Self {
        Self { errors, ratchet, remaining: cost::RUNTIME_BUDGET, stopped: false }
    }
}

/// Upstream's estimate of the rules' costs when the CRD is written: each rule's cost times
/// the number of values of its node an object can hold (`cardinality`, `None` when
/// unbounded), against the per-rule limit; the costs are gathered in `costs` for the
/// schema's total.
pub(crate) fn cost_errors(
    s: &Schema,
    path: &str,
    cardinality: Option<u64>,
    costs: &mut Vec<(String, u64)>,
    errors: &mut Vec<FieldError>,
) {
    for rule in &s.rules {
        let mut vars = vec![("self", Shape::Schema(s)), ("oldSelf", Shape::Schema(s))];
        let per_call = cost::cost(rule.program.expression(), &mut vars);
        let times = cardinality.unwrap_or_else(|| cost::max_cardinality(s));
        let total = per_call.saturating_mul(times);
        let at = child(&key(&child(path, "x-kubernetes-validations"), rule.index), "rule");
        if total > cost::STATIC_RULE_LIMIT {
            errors.push(FieldError::forbidden(
                &at,
                cost::exceeds("estimated rule cost", total, cost::STATIC_RULE_LIMIT),
            ));
        }
        costs.push((at, total));
    }
    if let Some(items) = &s.items {
        let times = cardinality.and_then(|c| s.max_items.map(|m| c.saturating_mul(m)));
        cost_errors(items, &child(path, "items"), times, costs, errors);
    }
    for (k, p) in &s.properties {
        cost_errors(p, &key(&child(path, "properties"), k), cardinality, costs, errors);
    }
    if let Some(a) = s.additional_schema() {
        let times = cardinality.and_then(|c| s.max_properties.map(|m| c.saturating_mul(m)));
        cost_errors(a, &child(path, "additionalProperties"), times, costs, errors);
    }
}

/// An evaluation error as cel-go words the common ones.
fn go_error(e: &cel::ExecutionError) -> String {
    match e {
        cel::ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        cel::ExecutionError::DivisionByZero(_) => "division by zero".into(),
        cel::ExecutionError::RemainderByZero(_) => "modulus by zero".into(),
        cel::ExecutionError::Overflow(..) => "integer overflow".into(),
        cel::ExecutionError::IndexOutOfBounds(cel::Value::Int(i)) => {
            format!("index out of bounds: {i}")
        }
        other => other.to_string(),
    }
}

/// A `messageExpression`'s message, or none when it fails (upstream then falls back to the
/// rule's message).
fn evaluate_message(program: &cel::Program, context: &cel::Context) -> Option<String> {
    match program.execute(context) {
        Ok(cel::Value::String(s)) => {
            let trimmed = s.trim();
            (!trimmed.is_empty() && trimmed.len() <= MAX_MESSAGE_BYTES && !has_line_break(trimmed))
                .then(|| trimmed.to_string())
        }
        _ => None,
    }
}
