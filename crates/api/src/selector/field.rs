//! Field selectors, after upstream's `k8s.io/apimachinery/pkg/fields/selector.go`.

use std::fmt;

use super::SelectorError;

/// The operator of one field requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One requirement of a field selector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRequirement {
    /// The field label, such as `metadata.name` or `spec.nodeName`.
    pub field: String,
    /// The operator.
    pub operator: FieldOperator,
    /// The value, unescaped.
    pub value: String,
}

impl FieldRequirement {
    /// Whether a field's value satisfies the requirement; a missing field reads as the empty
    /// string, as upstream's `fields.Set`.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        let value = value.unwrap_or_default();
        match self.operator {
            FieldOperator::Equals => value == self.value,
            FieldOperator::NotEquals => value != self.value,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{}{}", self.field, op, escape_value(&self.value))
    }
}

/// A field selector: requirements that must all hold. The empty selector matches
/// everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the string syntax of a `fieldSelector` query parameter: terms separated by
    /// unescaped commas, each `field=value`, `field==value` or `field!=value`, with `\,`,
    /// `\=` and `\\` escapes in values. Empty terms are skipped; terms are sorted as
    /// upstream sorts them.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms {
            if term.is_empty() {
                continue;
            }
            let Some((field, operator, value)) = split_term(term) else {
                return Err(SelectorError::Field(format!(
                    "invalid selector: '{selector}'; can't understand '{term}'"
                )));
            };
            let value = unescape_value(value)?;
            requirements.push(FieldRequirement { field: field.to_string(), operator, value });
        }
        Ok(FieldSelector { requirements })
    }

    /// A selector of these requirements.
    pub fn from_requirements(requirements: Vec<FieldRequirement>) -> Self {
        FieldSelector { requirements }
    }

    /// The requirements, for the registry to check field names against what the resource
    /// supports.
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// The field labels the selector names, in order (repeats included).
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.requirements.iter().map(|r| r.field.as_str())
    }

    /// Whether the selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the fields read through `get` satisfy every requirement.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| r.matches_value(get(&r.field).as_deref()))
    }

    /// Checks every field against `supported`; the first other field is refused with
    /// upstream's `field label not supported: <field>`.
    pub fn check_fields(&self, supported: impl Fn(&str) -> bool) -> Result<(), SelectorError> {
        match self.requirements.iter().find(|r| !supported(&r.field)) {
            Some(r) => Err(SelectorError::FieldNotSupported(r.field.clone())),
            None => Ok(()),
        }
    }

    /// The value this selector requires `field` to equal, when it does (upstream's
    /// `RequiresExactMatch`, which lets a registry narrow a list to one name or node).
    pub fn requires_exact(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.field == field && r.operator == FieldOperator::Equals)
            .map(|r| r.value.as_str())
    }
}

impl fmt::Display for FieldSelector {
    /// The string syntax, values escaped, requirements joined with commas.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for FieldSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Escapes `\`, `,` and `=` in a value.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Splits on commas not escaped by a backslash.
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Splits a term at its first operator, trying `!=`, then `==`, then `=` at each position.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for (op, operator) in [
            ("!=", FieldOperator::NotEquals),
            ("==", FieldOperator::Equals),
            ("=", FieldOperator::Equals),
        ] {
            if let Some(value) = rest.strip_prefix(op) {
                return Some((&term[..i], operator, value));
            }
        }
    }
    None
}

/// Undoes [`escape_value`]; unknown escapes and unescaped `,` or `=` are errors.
fn unescape_value(value: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(value.len());
    let mut in_slash = false;
    for c in value.chars() {
        if in_slash {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(SelectorError::Field(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            out.push(c);
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => {
                return Err(SelectorError::Field(format!(
                    "invalid field selector: unescaped character in value: {c}"
                )));
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::Field(
            "invalid field selector: invalid escape sequence: \\".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pod_field(field: &str) -> Option<String> {
        match field {
            "metadata.name" => Some("web-1".into()),
            "spec.nodeName" => Some("node-a".into()),
            "status.phase" => Some("Running".into()),
            "metadata.annotations.note" => Some("a,b=c\\d".into()),
            _ => None,
        }
    }

    #[test]
    fn field_selectors_match_as_upstream() {
        let cases = [
            ("the empty selector matches everything", "", true),
            ("equality matches the same value", "metadata.name=web-1", true),
            ("double equality matches the same value", "metadata.name==web-1", true),
            ("equality fails on another value", "metadata.name=web-2", false),
            ("inequality matches another value", "status.phase!=Pending", true),
            ("inequality fails on the same value", "status.phase!=Running", false),
            ("a missing field reads as empty", "spec.schedulerName=", true),
            ("a missing field differs from a value", "spec.schedulerName!=x", true),
            ("requirements are anded", "spec.nodeName=node-a,status.phase=Running", true),
            (
                "one failing requirement fails all",
                "spec.nodeName=node-a,status.phase=Failed",
                false,
            ),
            (
                "escaped values match the raw value",
                "metadata.annotations.note=a\\,b\\=c\\\\d",
                true,
            ),
            ("empty terms are skipped", "metadata.name=web-1,,", true),
        ];
        for (name, selector, want) in cases {
            let parsed = FieldSelector::parse(selector).unwrap();
            assert_eq!(parsed.matches(pod_field), want, "{name}");
        }
    }

    #[test]
    fn malformed_field_selectors_have_upstream_messages() {
        let cases = [
            (
                "a term without operator is not understood",
                "metadata.name",
                "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            ),
            (
                "an unescaped equals sign in a value is refused",
                "a=b=c",
                "invalid field selector: unescaped character in value: =",
            ),
            (
                "an unknown escape is refused",
                "a=b\\x",
                "invalid field selector: invalid escape sequence: \\x",
            ),
            (
                "a trailing backslash is refused",
                "a=b\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
        ];
        for (name, input, want) in cases {
            let err = FieldSelector::parse(input).unwrap_err();
            assert_eq!(err.to_string(), want, "{name}");
        }
    }

    #[test]
    fn field_selectors_print_and_round_trip() {
        let cases = [
            (
                "terms are sorted",
                "status.phase=Running,metadata.name=a",
                "metadata.name=a,status.phase=Running",
            ),
            ("double equals prints as equals", "a==b", "a=b"),
            ("inequality is kept", "a!=b", "a!=b"),
            ("special characters are escaped", "a=x\\,y\\=z\\\\", "a=x\\,y\\=z\\\\"),
        ];
        for (name, input, want) in cases {
            let parsed = FieldSelector::parse(input).unwrap();
            assert_eq!(parsed.to_string(), want, "{name}");
            assert_eq!(FieldSelector::parse(want).unwrap(), parsed, "{name} round-trips");
        }
    }

    #[test]
    fn requirements_expose_fields_for_validation() {
        let selector = FieldSelector::parse("spec.nodeName=n,metadata.name!=x").unwrap();
        let fields: Vec<&str> = selector.requirements().iter().map(|r| r.field.as_str()).collect();
        assert_eq!(fields, ["metadata.name", "spec.nodeName"]);
        assert_eq!(selector.fields().collect::<Vec<_>>(), fields);
        let supported = |f: &str| matches!(f, "metadata.name" | "metadata.namespace");
        let err = selector.check_fields(supported).unwrap_err();
        assert_eq!(err.to_string(), "field label not supported: spec.nodeName");
        assert_eq!(selector.requires_exact("spec.nodeName"), Some("n"));
        assert_eq!(selector.requires_exact("metadata.name"), None);
    }
}
