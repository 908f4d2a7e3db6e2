//! Field errors and the name rules of upstream's `apimachinery/pkg/util/validation`.

use std::fmt;

use serde_json::Value;

/// The most bytes of a client's value that an error message repeats: longer values are cut
/// there (on a character boundary) and marked with [`TRUNCATED`], so that the answer to a
/// 3 MB invalid value stays small.
pub const MAX_QUOTED_BYTES: usize = 256;

/// What follows a value cut to [`MAX_QUOTED_BYTES`].
pub const TRUNCATED: &str = "...(truncated)";

/// The first [`MAX_QUOTED_BYTES`] of `text` at most, and whether it was cut.
fn bounded_prefix(text: &str) -> (&str, bool) {
    if text.len() <= MAX_QUOTED_BYTES {
        return (text, false);
    }
    let mut end = MAX_QUOTED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// `text` as a message repeats it: at most [`MAX_QUOTED_BYTES`] of it, quoted as Go's `%q`
/// quotes (printable characters kept; quotes, backslashes and control characters escaped)
/// when `quote`, followed by [`TRUNCATED`] when cut.
pub fn bounded_quote(text: &str, quote: bool) -> String {
    let (text, cut) = bounded_prefix(text);
    let mut out = String::with_capacity(text.len() + 2 + TRUNCATED.len());
    if !quote {
        out.push_str(text);
    } else {
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' => {
                    out.push_str(&format!("\\x{:02x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if cut {
        out.push_str(TRUNCATED);
    }
    out
}

/// A JSON value as a field error shows it: its JSON (strings quoted), at most
/// [`MAX_QUOTED_BYTES`] of it, followed by [`TRUNCATED`] when cut.
pub fn bounded_json(value: &Value) -> String {
    match value {
        Value::String(text) => {
            let (text, cut) = bounded_prefix(text);
            let quoted = Value::from(text).to_string();
            if cut { format!("{quoted}{TRUNCATED}") } else { quoted }
        }
        other => bounded_quote(&other.to_string(), false),
    }
}

/// What is wrong with a field; the wording follows upstream's `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldErrorKind {
    /// A required field is missing.
    Required,
    /// A required field is missing, with why.
    RequiredBecause(String),
    /// The value breaks a rule; the string says which.
    Invalid(Value, String),
    /// The value is not one of the supported ones.
    NotSupported(Value, Vec<String>),
    /// The field may not be set or changed.
    Forbidden(String),
    /// The value appears twice where it must be unique.
    Duplicate(Value),
    /// The value is not of the type the field's schema says (upstream's `TypeInvalid`); the
    /// string says which.
    TypeInvalid(Value, String),
    /// The value is longer than the given number of bytes.
    TooLong(usize),
    /// The list or map has more items (the first number, when known) than the second.
    TooMany(Option<usize>, usize),
}

impl FieldErrorKind {
    /// The `reason` of a Status cause (`FieldValueRequired`, ...).
    pub fn reason(&self) -> &'static str {
        match self {
            FieldErrorKind::Required | FieldErrorKind::RequiredBecause(_) => "FieldValueRequired",
            FieldErrorKind::Invalid(..) => "FieldValueInvalid",
            FieldErrorKind::NotSupported(..) => "FieldValueNotSupported",
            FieldErrorKind::Forbidden(..) => "FieldValueForbidden",
            FieldErrorKind::Duplicate(..) => "FieldValueDuplicate",
            FieldErrorKind::TypeInvalid(..) => "FieldValueTypeInvalid",
            FieldErrorKind::TooLong(..) => "FieldValueTooLong",
            FieldErrorKind::TooMany(..) => "FieldValueTooMany",
        }
    }
}

/// One invalid field, with its path such as `metadata.name` or `spec.containers[0].image`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// The field's path.
    pub field: String,
    /// What is wrong.
    pub kind: FieldErrorKind,
}

impl FieldError {
    /// What is wrong, without the field (upstream's `ErrorBody`): the message of a Status
    /// cause, whose `field` says where.
    pub fn body(&self) -> String {
        let full = self.to_string();
        match full.strip_prefix(&self.field).and_then(|rest| rest.strip_prefix(": ")) {
            Some(body) => body.to_string(),
            None => full,
        }
    }

    /// A required field is missing.
    pub fn required(field: impl Into<String>) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Required }
    }
    /// A value breaks a rule.
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Invalid(value, detail.into()) }
    }
    /// A value is not among the supported ones.
    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[&str]) -> Self {
        let supported = supported.iter().map(|s| s.to_string()).collect();
        Self { field: field.into(), kind: FieldErrorKind::NotSupported(value, supported) }
    }
    /// A field may not be set or changed.
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Forbidden(detail.into()) }
    }
    /// A value is longer than allowed.
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::forbidden(field, format!("Too long: must have at most {max} bytes"))
    }

    /// Replaces the error's detail (for required values: says why).
    pub fn with_detail(self, detail: impl Into<String>) -> Self {
        match self.kind {
            FieldErrorKind::Required => {
                Self { kind: FieldErrorKind::RequiredBecause(detail.into()), ..self }
            }
            _ => self,
        }
    }

    /// A value appears twice.
    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Duplicate(value) }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FieldErrorKind::Required => write!(f, "{}: Required value", self.field),
            FieldErrorKind::RequiredBecause(why) => {
                write!(f, "{}: Required value: {}", self.field, why)
            }
            FieldErrorKind::Invalid(v, detail) => {
                write!(f, "{}: Invalid value: {}: {}", self.field, bounded_json(v), detail)
            }
            FieldErrorKind::NotSupported(v, supported) => {
                let quoted: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
                write!(
                    f,
                    "{}: Unsupported value: {}: supported values: {}",
                    self.field,
                    bounded_json(v),
                    quoted.join(", ")
                )
            }
            FieldErrorKind::Forbidden(detail) => write!(f, "{}: Forbidden: {}", self.field, detail),
            FieldErrorKind::Duplicate(v) => {
                write!(f, "{}: Duplicate value: {}", self.field, bounded_json(v))
            }
            FieldErrorKind::TypeInvalid(v, detail) => {
                write!(f, "{}: Invalid value: {}: {}", self.field, bounded_json(v), detail)
            }
            FieldErrorKind::TooLong(max) => {
                let unit = if *max == 1 { "byte" } else { "bytes" };
                write!(f, "{}: Too long: may not be more than {max} {unit}", self.field)
            }
            FieldErrorKind::TooMany(actual, max) => {
                let unit = if *max == 1 { "item" } else { "items" };
                match actual {
                    Some(n) => {
                        write!(f, "{}: Too many: {n}: must have at most {max} {unit}", self.field)
                    }
                    None => write!(f, "{}: Too many: must have at most {max} {unit}", self.field),
                }
            }
        }
    }
}

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn is_label(s: &str) -> bool {
    s.len() <= DNS1123_LABEL_MAX && has_label_shape(s)
}

/// Whether `s` matches `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, of any length (a subdomain's parts
/// have no length limit of their own upstream: only the whole name does).
fn has_label_shape(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Checks a DNS-1123 label (namespaces, services): the problems, empty when valid.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        problems.push(format!("must be no more than {DNS1123_LABEL_MAX} characters"));
    }
    if !is_label(&s[..s.len().min(DNS1123_LABEL_MAX)]) || s.is_empty() {
        problems.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into());
    }
    problems
}

/// Checks a DNS-1123 subdomain (most object names): the problems, empty when valid.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        problems.push(format!("must be no more than {DNS1123_SUBDOMAIN_MAX} characters"));
    }
    if s.is_empty() || !s.split('.').all(has_label_shape) {
        problems.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into());
    }
    problems
}

/// Checks a name that only has to be usable as a path segment (RBAC objects and the like).
pub fn path_segment_name(s: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if s == "." || s == ".." {
        problems.push(format!("may not be '{s}'"));
    }
    for bad in ["/", "%"] {
        if s.contains(bad) {
            problems.push(format!("may not contain '{bad}'"));
        }
    }
    problems
}

/// Which rule an object's name must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain (the default).
    Subdomain,
    /// DNS-1123 label (namespaces, services).
    Label,
    /// Any path segment (RBAC roles and bindings, ...).
    PathSegment,
}

impl NameRule {
    /// The problems with `name` under this rule, empty when valid.
    pub fn check(self, name: &str) -> Vec<String> {
        match self {
            NameRule::Subdomain => dns1123_subdomain(name),
            NameRule::Label => dns1123_label(name),
            NameRule::PathSegment => path_segment_name(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_upstream_rules() {
        assert!(dns1123_subdomain("my-app.v1").is_empty());
        assert!(!dns1123_subdomain("My_App").is_empty());
        assert!(!dns1123_subdomain("").is_empty());
        assert!(!dns1123_subdomain(&"a".repeat(254)).is_empty());
        assert!(dns1123_label("kube-system").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
        assert!(!dns1123_label("-a").is_empty());
        assert!(path_segment_name("system:admin").is_empty());
        assert!(!path_segment_name("a/b").is_empty());
    }

    #[test]
    fn a_huge_value_is_quoted_only_in_part() {
        let huge = "x".repeat(3 * 1024 * 1024);
        let error = FieldError::invalid("metadata.labels", Value::from(huge.as_str()), "bad");
        let text = error.to_string();
        assert!(text.len() < 2 * MAX_QUOTED_BYTES, "{} bytes", text.len());
        assert!(text.starts_with("metadata.labels: Invalid value: \"xxx"), "{text}");
        assert!(text.ends_with(&format!("\"{TRUNCATED}: bad")), "{text}");
        let short = FieldError::invalid("spec.x", Value::from("é\"q"), "bad").to_string();
        assert_eq!(short, "spec.x: Invalid value: \"é\\\"q\": bad");
        // A cut never splits a character.
        let wide = "é".repeat(MAX_QUOTED_BYTES);
        assert!(bounded_quote(&wide, true).ends_with(&format!("é\"{TRUNCATED}")));
        assert_eq!(bounded_json(&serde_json::json!([1, 2])), "[1,2]");
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn a_subdomain_part_may_be_longer_than_a_label() {
        let long = "a".repeat(65);
        assert!(dns1123_subdomain(&long).is_empty());
        assert!(!dns1123_label(&long).is_empty());
        assert!(!dns1123_subdomain(&"a".repeat(254)).is_empty());
        assert!(!dns1123_subdomain("a..b").is_empty());
    }
}
