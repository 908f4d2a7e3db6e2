//! The JSONPath that custom resource definitions use in `additionalPrinterColumns`,
//! `selectableFields` and the scale subresource's paths: client-go's `jsonpath` without the
//! template parts, enough for `.spec.replicas`, `.items[0]`, `.items[*].name`, `['a.b']` and
//! `.status.conditions[?(@.type=="Ready")].status`.

use serde_json::Value;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// A member of an object.
    Field(String),
    /// An element of an array (negative counts from the end).
    Index(i64),
    /// Every member or element.
    Wildcard,
    /// The elements whose `path` compares as `op` with `literal`.
    Filter { path: Vec<String>, equal: bool, literal: Value },
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

/// Why a path does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSONPath {path:?}: {reason}")]
pub struct JsonPathError {
    path: String,
    reason: &'static str,
}

impl JsonPath {
    /// Parses `.a.b[0]` (an optional surrounding `{...}` is accepted, as kubectl's templates).
    pub fn parse(text: &str) -> Result<Self, JsonPathError> {
        let fail = |reason| JsonPathError { path: text.to_string(), reason };
        let mut s = text.trim();
        if let Some(inner) = s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            s = inner.trim();
        }
        let s = s.strip_prefix('$').unwrap_or(s);
        let bytes = s.as_bytes();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < bytes.len() && bytes[end] != b'.' && bytes[end] != b'[' {
                        end += 1;
                    }
                    let name = &s[start..end];
                    if name.is_empty() {
                        return Err(fail("empty field name"));
                    }
                    steps.push(if name == "*" { Step::Wildcard } else { Step::Field(name.into()) });
                    i = end;
                }
                b'[' => {
                    let close = find_close(s, i).ok_or_else(|| fail("unclosed '['"))?;
                    let inner = s[i + 1..close].trim();
                    steps.push(bracket(inner).ok_or_else(|| fail("unsupported bracket"))?);
                    i = close + 1;
                }
                _ if i == 0 => {
                    // A leading name without a dot, as in `spec.replicas`.
                    let mut end = 0;
                    while end < bytes.len() && bytes[end] != b'.' && bytes[end] != b'[' {
                        end += 1;
                    }
                    steps.push(Step::Field(s[..end].into()));
                    i = end;
                }
                _ => return Err(fail("unexpected character")),
            }
        }
        Ok(Self { steps })
    }

    /// The values the path selects in `obj`, in order.
    pub fn find<'a>(&self, obj: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![obj];
        for step in &self.steps {
            let mut next = Vec::new();
            for value in current {
                match (step, value) {
                    (Step::Field(name), Value::Object(map)) => next.extend(map.get(name)),
                    (Step::Index(i), Value::Array(items)) => {
                        let len = items.len() as i64;
                        let at = if *i < 0 { len + i } else { *i };
                        if (0..len).contains(&at) {
                            next.push(&items[at as usize]);
                        }
                    }
                    (Step::Wildcard, Value::Array(items)) => next.extend(items.iter()),
                    (Step::Wildcard, Value::Object(map)) => next.extend(map.values()),
                    (Step::Filter { path, equal, literal }, Value::Array(items)) => {
                        next.extend(items.iter().filter(|item| {
                            let found = path.iter().try_fold(*item, |v, k| v.get(k));
                            let same = found.is_some_and(|f| loosely_equal(f, literal));
                            same == *equal
                        }));
                    }
                    _ => {}
                }
            }
            current = next;
        }
        current
    }

    /// The path as dotted field names (`spec.replicas`), when it is only fields.
    pub fn dotted(&self) -> Option<String> {
        let mut out = Vec::new();
        for step in &self.steps {
            match step {
                Step::Field(name) if !name.contains('.') => out.push(name.as_str()),
                _ => return None,
            }
        }
        (!out.is_empty()).then(|| out.join("."))
    }
}

fn find_close(s: &str, open: usize) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut depth = 0;
    for (i, c) in s[open..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|r| r.strip_suffix('"')))
}

fn bracket(inner: &str) -> Option<Step> {
    if inner == "*" {
        return Some(Step::Wildcard);
    }
    if let Some(name) = unquote(inner) {
        return Some(Step::Field(name.to_string()));
    }
    if let Ok(i) = inner.parse::<i64>() {
        return Some(Step::Index(i));
    }
    let expr = inner.strip_prefix("?(")?.strip_suffix(')')?.trim();
    let (left, right, equal) = if let Some((l, r)) = expr.split_once("!=") {
        (l, r, false)
    } else {
        let (l, r) = expr.split_once("==")?;
        (l, r, true)
    };
    let path = left.trim().strip_prefix("@.")?.split('.').map(str::to_string).collect();
    let right = right.trim();
    let literal = match unquote(right) {
        Some(text) => Value::String(text.to_string()),
        None => serde_json::from_str(right).ok()?,
    };
    Some(Step::Filter { path, equal, literal })
}

/// Equality as the filter compares: numbers by value, else as JSON.
fn loosely_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    fn find(path: &str, obj: &Value) -> Vec<Value> {
        JsonPath::parse(path).unwrap().find(obj).into_iter().cloned().collect()
    }

    #[test]
    fn paths_select_what_client_go_selects() {
        let obj = json!({
            "spec": {"replicas": 3, "a.b": "dotted", "items": [{"name": "x"}, {"name": "y"}]},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "Synced", "status": "False"},
            ]},
        });
        assert_eq!(find(".spec.replicas", &obj), vec![json!(3)]);
        assert_eq!(find("{.spec.replicas}", &obj), vec![json!(3)]);
        assert_eq!(find("spec.replicas", &obj), vec![json!(3)]);
        assert_eq!(find(".spec['a.b']", &obj), vec![json!("dotted")]);
        assert_eq!(find(".spec.items[1].name", &obj), vec![json!("y")]);
        assert_eq!(find(".spec.items[-1].name", &obj), vec![json!("y")]);
        assert_eq!(find(".spec.items[*].name", &obj), vec![json!("x"), json!("y")]);
        assert_eq!(
            find(".status.conditions[?(@.type==\"Ready\")].status", &obj),
            vec![json!("True")]
        );
        assert_eq!(
            find(".status.conditions[?(@.type!='Ready')].type", &obj),
            vec![json!("Synced")]
        );
        assert!(find(".spec.missing", &obj).is_empty());
        assert!(find(".spec.items[7]", &obj).is_empty());
    }

    #[test]
    fn plain_field_paths_read_as_dotted() {
        assert_eq!(
            JsonPath::parse(".spec.replicas").unwrap().dotted().as_deref(),
            Some("spec.replicas")
        );
        assert_eq!(JsonPath::parse(".spec.items[0]").unwrap().dotted(), None);
        assert!(JsonPath::parse(".spec.[").is_err());
        assert!(JsonPath::parse(".spec..x").is_err());
    }
}
