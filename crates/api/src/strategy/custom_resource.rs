//! Objects of custom resources: upstream's `customResourceStrategy` and its table convertor
//! (apiextensions-apiserver `pkg/registry/customresource`).

use serde_json::Value;

use super::Strategy;
use crate::catalog::intern;
use crate::customresource::StructuralSchema;
use crate::jsonpath::JsonPath;
use crate::table::{Column, TableContext, age};
use crate::validation::FieldError;

/// An `additionalPrinterColumns` entry.
#[derive(Debug)]
pub struct PrinterColumn {
    column: Column,
    path: JsonPath,
}

impl PrinterColumn {
    /// A column named `name` of OpenAPI type `kind`, showing what `path` selects.
    pub fn new(
        name: &str,
        kind: &str,
        format: &str,
        description: &str,
        priority: i32,
        path: JsonPath,
    ) -> Self {
        let column = Column {
            name: intern(name),
            kind: intern(kind),
            format: intern(format),
            description: intern(description),
            priority: u8::try_from(priority.max(0)).unwrap_or(u8::MAX),
        };
        Self { column, path }
    }

    /// The cell of `obj`: the first value the path selects, typed as the column says (a
    /// `date` as its age), several joined with commas, `null` (`<none>`) when none.
    fn cell(&self, obj: &Value, ctx: &TableContext) -> Value {
        let found = self.path.find(obj);
        let Some(first) = found.first() else { return Value::Null };
        if found.len() > 1 {
            let texts: Vec<String> = found.iter().map(|v| text(v)).collect();
            return Value::String(texts.join(","));
        }
        match (self.column.kind, first) {
            ("date", Value::String(t)) => Value::String(age(Some(t), ctx.now)),
            ("integer", Value::Number(_)) | ("number", Value::Number(_)) => (*first).clone(),
            ("boolean", Value::Bool(_)) => (*first).clone(),
            (_, v) => Value::String(text(v)),
        }
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A `selectableFields` entry: the field selector name (`spec.color`) and where it is read.
#[derive(Debug)]
pub struct SelectableField {
    /// The name field selectors use.
    pub name: &'static str,
    /// Where its value is read.
    pub path: JsonPath,
}

/// The rules of one served version of a custom resource.
#[derive(Debug)]
pub struct CustomResourceStrategy {
    schema: Option<StructuralSchema>,
    /// The schema as the definition holds it, for field ownership.
    raw_schema: Option<Value>,
    status: bool,
    columns: Vec<Column>,
    printer: Vec<PrinterColumn>,
    selectable: Vec<SelectableField>,
    deprecation: Option<String>,
}

impl CustomResourceStrategy {
    /// The strategy of a version with `schema`, a `status` subresource or not, its printer
    /// columns and selectable fields.
    pub fn new(
        schema: Option<StructuralSchema>,
        raw_schema: Option<Value>,
        status: bool,
        printer: Vec<PrinterColumn>,
        selectable: Vec<SelectableField>,
    ) -> Self {
        let mut printer = printer;
        if printer.is_empty() {
            // Upstream's default column of a version without printer columns.
            let path = JsonPath::parse(".metadata.creationTimestamp");
            if let Ok(path) = path {
                printer.push(PrinterColumn::new(
                    "Age",
                    "date",
                    "",
                    "Custom resource definition column (in JSONPath format): .metadata.creationTimestamp",
                    0,
                    path,
                ));
            }
        }
        let columns = printer.iter().map(|p| p.column).collect();
        Self { schema, raw_schema, status, columns, printer, selectable, deprecation: None }
    }

    /// The same, answering every request with `warning` (a deprecated version).
    pub fn deprecated(self, warning: String) -> Self {
        Self { deprecation: Some(warning), ..self }
    }
}

impl Strategy for CustomResourceStrategy {
    fn default(&self, obj: &mut Value) {
        if let Some(schema) = &self.schema {
            schema.prune(obj);
            schema.apply_defaults(obj);
        }
    }

    fn default_on_read(&self, obj: &mut Value) -> bool {
        let Some(schema) = &self.schema else { return false };
        let before = obj.clone();
        schema.apply_defaults(obj);
        *obj != before
    }

    fn unknown_fields(&self, obj: &Value) -> Option<Vec<String>> {
        let schema = self.schema.as_ref()?;
        let mut copy = obj.clone();
        Some(schema.prune(&mut copy))
    }

    fn ownership_schema(&self) -> Option<&Value> {
        self.raw_schema.as_ref()
    }

    fn strategic_merge(&self) -> bool {
        false
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        if self.status
            && let Some(map) = obj.as_object_mut()
        {
            map.remove("status");
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        self.schema.as_ref().map(|s| s.validate(obj)).unwrap_or_default()
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        self.schema.as_ref().map(|s| s.validate_update(new, old)).unwrap_or_default()
    }

    fn allow_unconditional_update(&self) -> bool {
        false
    }

    fn deprecation_warning(&self) -> Option<&str> {
        self.deprecation.as_deref()
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn generation_counts_status(&self) -> bool {
        !self.status
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        self.selectable
            .iter()
            .map(|f| {
                // A missing (or not scalar) field selects as the empty string, as upstream.
                let text = match f.path.find(obj).into_iter().next() {
                    Some(Value::String(s)) => s.clone(),
                    Some(v @ (Value::Bool(_) | Value::Number(_))) => v.to_string(),
                    _ => String::new(),
                };
                (f.name, text)
            })
            .collect()
    }

    fn selectable_paths(&self) -> Option<&'static [&'static str]> {
        None
    }

    fn columns(&self) -> &[Column] {
        &self.columns
    }

    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        self.printer.iter().map(|p| p.cell(obj, ctx)).collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::Utc;
    use serde_json::json;

    use super::*;

    #[test]
    fn printer_columns_read_their_paths() {
        let printer = vec![
            PrinterColumn::new(
                "Replicas",
                "integer",
                "",
                "",
                0,
                JsonPath::parse(".spec.replicas").unwrap(),
            ),
            PrinterColumn::new(
                "Color",
                "string",
                "",
                "",
                1,
                JsonPath::parse(".spec.color").unwrap(),
            ),
            PrinterColumn::new(
                "Ready",
                "string",
                "",
                "",
                0,
                JsonPath::parse(".status.conditions[?(@.type==\"Ready\")].status").unwrap(),
            ),
        ];
        let strategy = CustomResourceStrategy::new(None, None, true, printer, Vec::new());
        assert_eq!(strategy.columns()[1].priority, 1);
        let obj = json!({"spec": {"replicas": 2},
                         "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let cells = strategy.cells(&obj, &TableContext { now: Utc::now() });
        assert_eq!(cells, vec![json!(2), Value::Null, json!("True")]);
    }

    #[test]
    fn selectable_fields_are_read_as_text() {
        let selectable = vec![SelectableField {
            name: "spec.color",
            path: JsonPath::parse(".spec.color").unwrap(),
        }];
        let strategy = CustomResourceStrategy::new(None, None, false, Vec::new(), selectable);
        let fields = strategy.selectable_fields(&json!({"spec": {"color": "blue"}}));
        assert_eq!(fields, vec![("spec.color", "blue".to_string())]);
        assert_eq!(
            strategy.selectable_fields(&json!({"spec": {}})),
            vec![("spec.color", String::new())]
        );
    }
}
