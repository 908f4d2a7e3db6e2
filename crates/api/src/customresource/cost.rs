//! The cost of CEL rules, as upstream bounds it: estimated when the CRD is written (a rule
//! may cost at most [`STATIC_RULE_LIMIT`] times the number of values it can be evaluated
//! on, all rules of a schema [`STATIC_SCHEMA_LIMIT`]) and measured against the object when
//! it is validated (at most [`PER_CALL_LIMIT`] a rule, [`RUNTIME_BUDGET`] an object).
//!
//! The `cel` crate neither estimates nor counts costs, so both are computed here over the
//! expression with one model close to cel-go's: an identifier, a field selection, a call
//! cost 1, literals and logical operators nothing, a list literal 10, a map literal 30, and
//! a comprehension (`all`, `exists`, `map`, `filter`, ...) its range's size times the cost of
//! one step. The size of a collection is, when estimating, its schema's `maxItems` or
//! `maxProperties` (else as many of the smallest elements as fit in a request), and when
//! measuring, its actual length.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use serde_json::Value;

use super::schema::Schema;

/// The largest request body upstream accepts, from which unbounded sizes are estimated.
const MAX_REQUEST_BYTES: u64 = 3 * 1024 * 1024;
/// Upstream's `StaticEstimatedCostLimit`: the most one rule may be estimated to cost.
pub(crate) const STATIC_RULE_LIMIT: u64 = 10_000_000;
/// Upstream's `StaticEstimatedCRDCostLimit`: the most all rules of a schema may.
pub(crate) const STATIC_SCHEMA_LIMIT: u64 = 100_000_000;
/// Upstream's `PerCallLimit`: the most one evaluation of a rule may cost.
pub(crate) const PER_CALL_LIMIT: u64 = 1_000_000;
/// Upstream's `RuntimeCELCostBudget`: the most all rules may cost on one object.
pub(crate) const RUNTIME_BUDGET: u64 = 10_000_000;

/// The fewest bytes a value of the schema takes in JSON (upstream's `MinSerializedSize`).
pub(crate) fn min_size(s: &Schema) -> u64 {
    match s.type_name.as_str() {
        "boolean" => 4,
        "number" => 3,
        "integer" => 1,
        "string" | "object" | "array" => 2,
        _ => 1,
    }
}

/// How many values of a schema fit in a request (upstream's `maxCardinality`).
pub(crate) fn max_cardinality(s: &Schema) -> u64 {
    MAX_REQUEST_BYTES / (min_size(s) + 1)
}

/// The most elements (or characters) a value of the schema may have.
fn max_elements(s: &Schema) -> u64 {
    match s.type_name.as_str() {
        "array" => s.max_items.unwrap_or_else(|| {
            let item = s.items.as_deref().map_or(1, min_size);
            (MAX_REQUEST_BYTES - 2) / (item + 1)
        }),
        "object" => match s.additional_schema() {
            Some(a) => s.max_properties.unwrap_or((MAX_REQUEST_BYTES - 2) / (min_size(a) + 4)),
            None => s.properties.len().max(1) as u64,
        },
        "string" => s.max_length.unwrap_or(MAX_REQUEST_BYTES - 2),
        _ => 1,
    }
}

/// What an expression is known to be: a value of a schema when estimating, the values it
/// can take in the object when measuring.
#[derive(Clone)]
pub(crate) enum Shape<'a> {
    Schema(&'a Schema),
    Values(Vec<&'a Value>),
    Unknown,
}

impl<'a> Shape<'a> {
    fn select(&self, field: &str) -> Shape<'a> {
        match self {
            Shape::Schema(s) => s.member(field).map_or(Shape::Unknown, Shape::Schema),
            Shape::Values(values) => {
                Shape::Values(values.iter().filter_map(|v| v.get(field)).collect())
            }
            Shape::Unknown => Shape::Unknown,
        }
    }

    fn elements(&self) -> Shape<'a> {
        match self {
            Shape::Schema(s) => match (&s.items, s.additional_schema()) {
                (Some(items), _) => Shape::Schema(items),
                (None, Some(a)) => Shape::Schema(a),
                _ => Shape::Unknown,
            },
            Shape::Values(values) => Shape::Values(
                values
                    .iter()
                    .flat_map(|v| -> Box<dyn Iterator<Item = &'a Value>> {
                        match v {
                            Value::Array(items) => Box::new(items.iter()),
                            Value::Object(map) => Box::new(map.values()),
                            _ => Box::new(std::iter::empty()),
                        }
                    })
                    .collect(),
            ),
            Shape::Unknown => Shape::Unknown,
        }
    }

    fn size(&self) -> u64 {
        match self {
            Shape::Schema(s) => max_elements(s),
            Shape::Values(values) => values
                .iter()
                .map(|v| match v {
                    Value::Array(items) => items.len() as u64,
                    Value::Object(map) => map.len() as u64,
                    Value::String(s) => s.len() as u64,
                    _ => 1,
                })
                .max()
                .unwrap_or(0),
            Shape::Unknown => 1,
        }
    }
}

/// The cost of evaluating `e` once, with `vars` what its variables are.
pub(crate) fn cost<'a>(e: &'a IdedExpr, vars: &mut Vec<(&'a str, Shape<'a>)>) -> u64 {
    match &e.expr {
        Expr::Ident(_) => 1,
        Expr::Select(s) => cost(&s.operand, vars).saturating_add(1),
        Expr::Call(call) => {
            let mut total = call.target.as_deref().map_or(0, |t| cost(t, vars));
            for a in &call.args {
                total = total.saturating_add(cost(a, vars));
            }
            let own = match call.func_name.as_str() {
                "_&&_" | "_||_" | "_?_:_" | "!_" => 0,
                "isSorted" | "sum" | "min" | "max" | "indexOf" | "lastIndexOf" | "sort"
                | "distinct" | "reverse" | "join" => {
                    call.target.as_deref().map_or(1, |t| shape(t, vars).size().saturating_add(1))
                }
                _ => 1,
            };
            total.saturating_add(own)
        }
        Expr::List(l) => l.elements.iter().fold(10u64, |t, x| t.saturating_add(cost(x, vars))),
        Expr::Map(m) => m.entries.iter().fold(30u64, |t, entry| match &entry.expr {
            EntryExpr::StructField(f) => t.saturating_add(cost(&f.value, vars)),
            EntryExpr::MapEntry(m) => {
                t.saturating_add(cost(&m.key, vars)).saturating_add(cost(&m.value, vars))
            }
        }),
        Expr::Comprehension(c) => {
            let range = shape(&c.iter_range, vars);
            let n = range.size();
            let mut total = cost(&c.iter_range, vars).saturating_add(cost(&c.accu_init, vars));
            let depth = vars.len();
            vars.push((c.iter_var.as_str(), range.elements()));
            if let Some(v2) = &c.iter_var2 {
                vars.push((v2.as_str(), Shape::Unknown));
            }
            vars.push((c.accu_var.as_str(), Shape::Unknown));
            let step = cost(&c.loop_cond, vars).saturating_add(cost(&c.loop_step, vars));
            total = total.saturating_add(n.saturating_mul(step));
            total = total.saturating_add(cost(&c.result, vars));
            vars.truncate(depth);
            total
        }
        _ => 0,
    }
}

/// What `e` is known to be.
fn shape<'a>(e: &'a IdedExpr, vars: &[(&'a str, Shape<'a>)]) -> Shape<'a> {
    match &e.expr {
        Expr::Ident(name) => {
            vars.iter().rev().find(|(n, _)| n == name).map_or(Shape::Unknown, |(_, s)| s.clone())
        }
        Expr::Select(s) if !s.test => shape(&s.operand, vars).select(&s.field),
        Expr::Call(call) if call.func_name == "_[_]" => {
            call.args.first().map_or(Shape::Unknown, |t| shape(t, vars).elements())
        }
        _ => Shape::Unknown,
    }
}

/// Upstream's wording of a cost over its limit.
pub(crate) fn exceeds(name: &str, cost: u64, limit: u64) -> String {
    let factor = cost as f64 / limit as f64;
    let factor = if factor > 100.0 {
        "more than 100x".to_string()
    } else if factor < 1.5 {
        format!("{factor:.6}x")
    } else {
        format!("{factor:.1}x")
    };
    format!(
        "{name} exceeds budget by factor of {factor} (try simplifying the rule, or adding maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
}
