//! meta/v1 `Table` rendering of objects, for `kubectl get`.

use chrono::Utc;
use krust_api::ResourceInfo;
use krust_api::object::meta_str;
use krust_api::table::{AGE, Column, NAME, TableContext, age};
use serde_json::{Value, json};

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    /// Nothing.
    None,
    /// The object's metadata (the default).
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Reads the `includeObject` query parameter.
    pub fn parse(raw: Option<&str>) -> Self {
        match raw {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

fn columns(info: &ResourceInfo) -> Vec<Column> {
    let own = info.strategy.columns();
    if info.strategy.owns_name_column() {
        return own.to_vec();
    }
    let mut columns = vec![NAME];
    if own.is_empty() {
        columns.push(AGE);
    } else {
        columns.extend_from_slice(own);
    }
    columns
}

/// One row of the table: the cells of `obj`, and what `include` asks for of it.
pub fn row(info: &ResourceInfo, obj: &Value, include: IncludeObject, ctx: &TableContext) -> Value {
    let mut cells = Vec::new();
    if !info.strategy.owns_name_column() {
        cells.push(Value::from(meta_str(obj, "name").unwrap_or_default()));
    }
    if info.strategy.columns().is_empty() {
        cells.push(Value::from(age(meta_str(obj, "creationTimestamp"), ctx.now)));
    } else {
        cells.extend(info.strategy.cells(obj, ctx));
    }
    let object = match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => super::response::partial_object_metadata(obj),
        IncludeObject::Object => obj.clone(),
    };
    let mut row = json!({"cells": cells});
    if !object.is_null() {
        row["object"] = object;
    }
    row
}

/// The table's column definitions.
fn definitions(info: &ResourceInfo) -> Vec<Value> {
    columns(info)
        .iter()
        .map(|c| {
            json!({"name": c.name, "type": c.kind, "format": c.format, "description": c.description, "priority": c.priority})
        })
        .collect()
}

/// A table of `objects` (served versions) with list metadata.
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    list_meta: Value,
    include: IncludeObject,
) -> Value {
    let ctx = TableContext { now: Utc::now() };
    let rows: Vec<Value> = objects.iter().map(|o| row(info, o, include, &ctx)).collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions(info),
        "rows": rows,
    })
}

/// A table without rows, for a body that streams its rows after it: its JSON, up to where
/// the rows go.
pub fn head(info: &ResourceInfo, list_meta: Value) -> Value {
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": definitions(info),
        "rows": [],
    })
}
