//! Small helpers the strategies share: reading JSON, resetting status, rendering cells.

use serde_json::{Map, Value, json};

use crate::object::path;
use crate::table::{Column, TableContext, age as age_since};
use crate::validation::FieldError;

/// A string at a dotted path.
pub(crate) fn str_at<'a>(obj: &'a Value, dotted: &str) -> Option<&'a str> {
    path(obj, dotted)?.as_str()
}

/// A string at a dotted path, empty when absent.
pub(crate) fn string_at(obj: &Value, dotted: &str) -> String {
    str_at(obj, dotted).unwrap_or_default().to_string()
}

/// An integer at a dotted path.
pub(crate) fn int_at(obj: &Value, dotted: &str) -> Option<i64> {
    path(obj, dotted)?.as_i64()
}

/// A bool at a dotted path.
pub(crate) fn bool_at(obj: &Value, dotted: &str) -> Option<bool> {
    path(obj, dotted)?.as_bool()
}

/// An array at a dotted path, empty when absent.
pub(crate) fn array_at<'a>(obj: &'a Value, dotted: &str) -> &'a [Value] {
    path(obj, dotted).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// An object at a dotted path.
pub(crate) fn object_at<'a>(obj: &'a Value, dotted: &str) -> Option<&'a Map<String, Value>> {
    path(obj, dotted)?.as_object()
}

/// A mutable value at a dotted path, when present.
pub(crate) fn path_mut<'a>(obj: &'a mut Value, dotted: &str) -> Option<&'a mut Value> {
    dotted.split('.').try_fold(obj, |v, part| v.get_mut(part))
}

/// Applies `f` to every element of the array at `dotted`.
pub(crate) fn each_mut(obj: &mut Value, dotted: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = path_mut(obj, dotted).and_then(Value::as_array_mut) {
        items.iter_mut().for_each(&mut f);
    }
}

/// Sets a field of a JSON object when it is absent or null.
pub(crate) fn default_field(obj: &mut Value, field: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        let slot = map.entry(field).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

/// Replaces `status` with `status`.
pub(crate) fn reset_status(obj: &mut Value, status: Value) {
    if let Some(map) = obj.as_object_mut() {
        map.insert("status".into(), status);
    }
}

/// Keeps the stored `status` on a main-resource update.
pub(crate) fn keep_status(new: &mut Value, old: &Value) {
    if let Some(map) = new.as_object_mut() {
        match old.get("status") {
            Some(status) => map.insert("status".into(), status.clone()),
            None => map.remove("status"),
        };
    }
}

/// The object's age for its `Age` cell.
pub(crate) fn age(obj: &Value, ctx: &TableContext) -> Value {
    Value::String(age_since(str_at(obj, "metadata.creationTimestamp"), ctx.now))
}

/// The time since an RFC 3339 timestamp, or `fallback` when absent.
pub(crate) fn since(timestamp: Option<&str>, ctx: &TableContext, fallback: &str) -> String {
    match timestamp {
        Some(t) if !t.is_empty() => age_since(Some(t), ctx.now),
        _ => fallback.to_string(),
    }
}

/// A JSON integer cell.
pub(crate) fn int_cell(obj: &Value, dotted: &str) -> Value {
    json!(int_at(obj, dotted).unwrap_or(0))
}

/// The `Age` column.
pub(crate) const AGE: Column = crate::table::AGE;

/// A string column with a description.
pub(crate) const fn col(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "string", description)
}

/// An integer column with a description.
pub(crate) const fn int_col(name: &'static str, description: &'static str) -> Column {
    Column::new(name, "integer", description)
}

/// The `Containers` column of workloads (wide).
pub(crate) const CONTAINERS: Column =
    col("Containers", "Names of each container in the template.").wide();
/// The `Images` column of workloads (wide).
pub(crate) const IMAGES: Column =
    col("Images", "Images referenced by each container in the template.").wide();

/// kubectl's `layoutContainerCells`: container names and images, comma-joined.
pub(crate) fn container_cells(containers: &[Value]) -> (Value, Value) {
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c.get("name").and_then(Value::as_str).unwrap_or_default())
        .collect();
    let images: Vec<&str> = containers
        .iter()
        .map(|c| c.get("image").and_then(Value::as_str).unwrap_or_default())
        .collect();
    (json!(names.join(",")), json!(images.join(",")))
}

/// Renders a `LabelSelector` as `metav1.FormatLabelSelector` does: requirements sorted by
/// key, `<none>` when it selects everything or nothing.
pub(crate) fn format_label_selector(selector: Option<&Value>) -> String {
    let Some(selector) = selector.filter(|s| s.is_object()) else {
        return "<none>".into();
    };
    let mut requirements: Vec<(String, String)> = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            requirements.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or_default())));
        }
    }
    for expr in selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        let mut values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        values.dedup();
        let text = match expr.get("operator").and_then(Value::as_str).unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".into(),
        };
        requirements.push((key.to_string(), text));
    }
    requirements.sort_by(|a, b| a.0.cmp(&b.0));
    let text: Vec<String> = requirements.into_iter().map(|(_, t)| t).collect();
    if text.is_empty() { "<none>".into() } else { text.join(",") }
}

/// Renders a label map as `labels.FormatLabels` does: sorted `k=v`, `<none>` when empty.
pub(crate) fn format_labels(labels: Option<&Value>) -> String {
    let mut pairs: Vec<String> = labels
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    if pairs.is_empty() { "<none>".into() } else { pairs.join(",") }
}

/// Whether a `LabelSelector` matches a label map (`matchLabels` and `matchExpressions`).
pub(crate) fn selector_matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let labels_ok = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let exprs_ok =
        selector.get("matchExpressions").and_then(Value::as_array).into_iter().flatten().all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
            let values: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e.get("operator").and_then(Value::as_str).unwrap_or_default() {
                "In" => label(key).is_some_and(|v| values.contains(&v)),
                "NotIn" => label(key).is_none_or(|v| !values.contains(&v)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        });
    labels_ok && exprs_ok
}

/// Whether a `LabelSelector` selects nothing in particular (no labels, no expressions).
pub(crate) fn selector_is_empty(selector: &Value) -> bool {
    let labels = selector.get("matchLabels").and_then(Value::as_object).is_none_or(Map::is_empty);
    let exprs =
        selector.get("matchExpressions").and_then(Value::as_array).is_none_or(Vec::is_empty);
    labels && exprs
}

/// `field is immutable` for a changed field.
pub(crate) fn immutable(new: &Value, old: &Value, dotted: &str, errors: &mut Vec<FieldError>) {
    let (n, o) = (path(new, dotted), path(old, dotted));
    let null = Value::Null;
    if n.unwrap_or(&null) != o.unwrap_or(&null) {
        errors.push(FieldError::invalid(
            dotted,
            n.cloned().unwrap_or(Value::Null),
            "field is immutable",
        ));
    }
}

/// Checks that an optional integer is not negative.
pub(crate) fn non_negative(obj: &Value, dotted: &str, errors: &mut Vec<FieldError>) {
    if let Some(n) = int_at(obj, dotted).filter(|n| *n < 0) {
        errors.push(FieldError::invalid(dotted, json!(n), "must be greater than or equal to 0"));
    }
}

/// Checks that a field is one of the supported values, when set.
pub(crate) fn supported(obj: &Value, dotted: &str, values: &[&str], errors: &mut Vec<FieldError>) {
    if let Some(v) = str_at(obj, dotted).filter(|v| !values.contains(v)) {
        errors.push(FieldError::not_supported(dotted, json!(v), values));
    }
}

/// The `ConfigMap`/`Secret` key rule of upstream's `IsConfigMapKey`.
pub(crate) fn config_map_key_problems(key: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if key.len() > 253 {
        problems.push("must be no more than 253 characters".into());
    }
    let valid = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        problems.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".into());
    }
    if key == "." {
        problems.push("must not be '.'".into());
    } else if key == ".." {
        problems.push("must not be '..'".into());
    } else if key.starts_with("..") {
        problems.push("must not start with '..'".into());
    }
    problems
}

/// Whether a condition of `type` is `True` in `status.conditions`.
pub(crate) fn condition_true(obj: &Value, kind: &str) -> bool {
    array_at(obj, "status.conditions").iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(kind)
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

/// Parses a resource quantity (`100m`, `1Gi`, `2e3`) into a float, for comparisons.
pub(crate) fn parse_quantity(q: &Value) -> Option<f64> {
    let s = match q {
        Value::String(s) => s.trim(),
        Value::Number(n) => return n.as_f64(),
        _ => return None,
    };
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let base: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    Some(base * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_render_like_kubectl() {
        let sel = json!({
            "matchLabels": {"app": "web", "tier": "fe"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}],
        });
        assert_eq!(format_label_selector(Some(&sel)), "app=web,env in (dev,prod),tier=fe");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
    }

    #[test]
    fn quantities_compare_by_value() {
        assert_eq!(parse_quantity(&json!("1")), parse_quantity(&json!("1000m")));
        assert_eq!(parse_quantity(&json!("1Ki")), Some(1024.0));
        assert_eq!(parse_quantity(&json!("2e3")), Some(2000.0));
        assert_eq!(parse_quantity(&json!("x")), None);
    }
}
