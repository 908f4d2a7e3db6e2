//! Label selectors, after upstream's `k8s.io/apimachinery/pkg/labels/selector.go`.

use std::fmt;

use serde_json::{Map, Value};

use super::SelectorError;
use crate::validation::{FieldError, dns1123_subdomain};

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `key=value`.
    Equals,
    /// `key==value`.
    DoubleEquals,
    /// `key!=value`: the label is absent or has another value.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`: the label is absent or has none of the values.
    NotIn,
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key>n`: the label is an integer greater than n.
    GreaterThan,
    /// `key<n`: the label is an integer less than n.
    LessThan,
}

/// One requirement of a label selector: a key, an operator and its values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// A requirement, validated as upstream's `NewRequirement`: the key must be a qualified
    /// name, values valid label values, `in`/`notin` need values, `=`/`==`/`!=` exactly one,
    /// `exists`/`!` none, `>`/`<` one integer. Values are kept sorted and without repeats.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Self, SelectorError> {
        let key = key.into();
        let mut values = values;
        values.sort();
        values.dedup();
        let mut errors = Vec::new();
        if let Some(problem) = key_problem(&key) {
            errors
                .push(FieldError::invalid("key", Value::String(key.clone()), problem).to_string());
        }
        let shown = go_string_slice(&values);
        let count_problem = match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Some("for 'in', 'notin' operators, values set can't be empty")
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                Some("exact-match compatibility requires one single value")
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Some("values set must be empty for exists and does not exist")
            }
            Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
                Some("for 'Gt', 'Lt' operators, exactly one value is required")
            }
            _ => None,
        };
        if let Some(problem) = count_problem {
            errors.push(format!("values: Invalid value: {shown}: {problem}"));
        }
        if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
            for (i, v) in values.iter().enumerate() {
                if v.parse::<i64>().is_err() {
                    errors.push(
                        FieldError::invalid(
                            format!("values[{i}]"),
                            Value::String(v.clone()),
                            "for 'Gt', 'Lt' operators, the value must be an integer",
                        )
                        .to_string(),
                    );
                }
            }
        }
        for (i, v) in values.iter().enumerate() {
            let problems = label_value_problems(v);
            if !problems.is_empty() {
                errors.push(
                    FieldError::invalid(
                        format!("values[{i}][{key}]"),
                        Value::String(v.clone()),
                        problems.join("; "),
                    )
                    .to_string(),
                );
            }
        }
        errors.dedup();
        match errors.len() {
            0 => Ok(Requirement { key, operator, values }),
            1 => Err(SelectorError::Label(errors.remove(0))),
            _ => Err(SelectorError::Label(format!("[{}]", errors.join(", ")))),
        }
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted.
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label value (`None` when the label is absent) satisfies the requirement.
    pub fn matches_value(&self, value: Option<&str>) -> bool {
        let contains = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(contains),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(contains),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = value.and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                let Some(want) = self.values.first().and_then(|v| v.parse::<i64>().ok()) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { have > want } else { have < want }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        match self.operator {
            Operator::Equals => write!(f, "{}={}", self.key, values),
            Operator::DoubleEquals => write!(f, "{}=={}", self.key, values),
            Operator::NotEquals => write!(f, "{}!={}", self.key, values),
            Operator::In => write!(f, "{} in ({})", self.key, values),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, values),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{}", self.key, values),
            Operator::LessThan => write!(f, "{}<{}", self.key, values),
        }
    }
}

/// A label selector: requirements that must all hold.
///
/// The empty selector matches everything. [`LabelSelector::nothing`] (what a missing
/// meta/v1 selector means) matches nothing and prints as the empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object.
    pub fn nothing() -> Self {
        LabelSelector { requirements: Vec::new(), nothing: true }
    }

    /// A selector of these requirements, sorted by key as upstream does.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements, nothing: false }
    }

    /// Parses the string syntax of a `labelSelector` query parameter. The empty string is
    /// the selector that matches everything.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let tokens = lex(selector);
        let requirements = Parser { tokens, position: 0 }.parse()?;
        Ok(Self::from_requirements(requirements))
    }

    /// Reads a selector object: a meta/v1 `LabelSelector` (`matchLabels` and
    /// `matchExpressions`, as in Deployments and Jobs) or, when it has neither of those
    /// keys, a plain map of labels (a ReplicationController's or a Service's `selector`).
    /// `null` is the selector that matches nothing, as a missing meta/v1 selector.
    pub fn from_json(selector: &Value) -> Result<Self, SelectorError> {
        match selector {
            Value::Null => Ok(Self::nothing()),
            Value::Object(map)
                if map.contains_key("matchLabels") || map.contains_key("matchExpressions") =>
            {
                Self::from_label_selector(selector)
            }
            _ => Self::from_map(selector),
        }
    }

    /// Reads a meta/v1 `LabelSelector`, as upstream's `LabelSelectorAsSelector`: `null` matches
    /// nothing, `{}` everything.
    pub fn from_label_selector(selector: &Value) -> Result<Self, SelectorError> {
        let map = match selector {
            Value::Null => return Ok(Self::nothing()),
            Value::Object(map) => map,
            other => {
                return Err(SelectorError::Shape(format!("expected an object, got {other}")));
            }
        };
        let mut requirements = Vec::new();
        if let Some(labels) = map.get("matchLabels").filter(|v| !v.is_null()) {
            for (key, value) in string_map(labels, "matchLabels")? {
                requirements.push(Requirement::new(key, Operator::Equals, vec![value])?);
            }
        }
        let expressions = match map.get("matchExpressions") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(list)) => list.as_slice(),
            Some(other) => {
                return Err(SelectorError::Shape(format!(
                    "matchExpressions must be a list, got {other}"
                )));
            }
        };
        for expression in expressions {
            let key = expression.get("key").and_then(Value::as_str).unwrap_or_default();
            let operator = expression.get("operator").and_then(Value::as_str).unwrap_or_default();
            let operator = match operator {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::BadOperator(other.to_string())),
            };
            let values = match expression.get("values") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(values)) => values
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_string).ok_or_else(|| {
                            SelectorError::Shape(format!(
                                "values of {key:?} must be strings, got {v}"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
                Some(other) => {
                    return Err(SelectorError::Shape(format!(
                        "values of {key:?} must be a list, got {other}"
                    )));
                }
            };
            requirements.push(Requirement::new(key, operator, values)?);
        }
        Ok(Self::from_requirements(requirements))
    }

    /// Reads a plain map of labels, every one required with `=`; `{}` and `null` match
    /// everything (upstream's `SelectorFromValidatedSet`), keys and values are validated.
    pub fn from_map(selector: &Value) -> Result<Self, SelectorError> {
        if selector.is_null() {
            return Ok(Self::everything());
        }
        let requirements = string_map(selector, "selector")?
            .into_iter()
            .map(|(key, value)| Requirement::new(key, Operator::Equals, vec![value]))
            .collect::<Result<_, _>>()?;
        Ok(Self::from_requirements(requirements))
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the selector matches everything (no requirements).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty() && !self.nothing
    }

    /// Whether the selector matches nothing.
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether a set of labels satisfies every requirement.
    pub fn matches<'a>(&self, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> bool {
        if self.nothing {
            return false;
        }
        if self.requirements.is_empty() {
            return true;
        }
        let labels: Vec<(&str, &str)> = labels.into_iter().collect();
        self.requirements.iter().all(|r| {
            let value = labels.iter().find(|(k, _)| *k == r.key).map(|(_, v)| *v);
            r.matches_value(value)
        })
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.matches(crate::object::labels(object))
    }

    /// The value this selector requires `key` to equal (`key=v`, `key==v` or `key in (v)`),
    /// when it does.
    pub fn requires_exact(&self, key: &str) -> Option<&str> {
        self.exact().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The labels this selector requires to have one value each (`key=value`, `key==value`,
    /// `key in (value)`), as `(key, value)`, in the selector's order: what an index of labels
    /// can narrow a list to.
    pub fn exact(&self) -> impl Iterator<Item = (&str, &str)> {
        self.requirements.iter().filter_map(|r| match r.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In if r.values.len() == 1 => {
                r.values.first().map(|v| (r.key.as_str(), v.as_str()))
            }
            _ => None,
        })
    }
}

impl fmt::Display for LabelSelector {
    /// The string syntax, requirements sorted by key and joined with commas.
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

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The entries of a JSON object of strings.
fn string_map(value: &Value, what: &str) -> Result<Vec<(String, String)>, SelectorError> {
    let map: &Map<String, Value> = value
        .as_object()
        .ok_or_else(|| SelectorError::Shape(format!("{what} must be a map, got {value}")))?;
    map.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) => Ok((k.clone(), s.to_string())),
            None => Err(SelectorError::Shape(format!("{what}[{k}] must be a string, got {v}"))),
        })
        .collect()
}

/// Go's `%#v` of a `[]string`, as upstream's field errors print value lists.
fn go_string_slice(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const QUALIFIED_NAME_ERROR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_ERROR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, and the empty string when `allow_empty`.
fn is_label_name(s: &str, allow_empty: bool) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return allow_empty;
    }
    b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Upstream's `IsQualifiedName`: the problems with a label key, joined, if any.
pub fn key_problem(key: &str) -> Option<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                problems.extend(
                    dns1123_subdomain(prefix).into_iter().map(|p| format!("prefix part {p}")),
                );
            }
            *name
        }
        _ => {
            return Some(format!(
                "a qualified name {QUALIFIED_NAME_ERROR} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".into());
    } else if name.len() > QUALIFIED_NAME_MAX {
        problems.push(format!("name part must be no more than {QUALIFIED_NAME_MAX} characters"));
    }
    if !is_label_name(name, false) {
        problems.push(format!("name part {QUALIFIED_NAME_ERROR}"));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Upstream's `IsValidLabelValue`.
pub fn label_value_problems(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        problems.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !is_label_name(value, true) {
        problems.push(LABEL_VALUE_ERROR.to_string());
    }
    problems
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Identifier,
    In,
    NotIn,
    Equals,
    DoubleEquals,
    NotEquals,
    DoesNotExist,
    GreaterThan,
    LessThan,
    OpenParen,
    CloseParen,
    Comma,
    End,
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

/// Upstream's lexer: whitespace separates, `=`, `!`, `(`, `)`, `,`, `>`, `<` (and `==`,
/// `!=`) are symbols, anything else runs into an identifier (`in` and `notin` are keywords).
fn lex(input: &str) -> Vec<(Token, String)> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\r' | '\n') {
            i += 1;
        }
        let Some(&c) = chars.get(i) else {
            tokens.push((Token::End, String::new()));
            return tokens;
        };
        if is_special(c) {
            let next = chars.get(i + 1).copied();
            let (token, len) = match (c, next) {
                ('!', Some('=')) => (Token::NotEquals, 2),
                ('=', Some('=')) => (Token::DoubleEquals, 2),
                ('!', _) => (Token::DoesNotExist, 1),
                ('=', _) => (Token::Equals, 1),
                ('(', _) => (Token::OpenParen, 1),
                (')', _) => (Token::CloseParen, 1),
                (',', _) => (Token::Comma, 1),
                ('>', _) => (Token::GreaterThan, 1),
                _ => (Token::LessThan, 1),
            };
            tokens.push((token, chars[i..i + len].iter().collect()));
            i += len;
            continue;
        }
        let start = i;
        while i < chars.len()
            && !is_special(chars[i])
            && !matches!(chars[i], ' ' | '\t' | '\r' | '\n')
        {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let token = match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier,
        };
        tokens.push((token, word));
    }
}

struct Parser {
    tokens: Vec<(Token, String)>,
    position: usize,
}

/// In values, `in` and `notin` are plain identifiers.
#[derive(Clone, Copy, PartialEq)]
enum Context {
    KeyAndOperator,
    Values,
}

impl Parser {
    fn lookahead(&self, context: Context) -> (Token, String) {
        let (token, literal) =
            self.tokens.get(self.position).cloned().unwrap_or((Token::End, String::new()));
        let token = match token {
            Token::In | Token::NotIn if context == Context::Values => Token::Identifier,
            other => other,
        };
        (token, literal)
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.lookahead(context);
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        item
    }

    fn parse(mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement = self.parse_requirement().map_err(|e| {
                        SelectorError::Label(format!("unable to parse requirement: {e}"))
                    })?;
                    requirements.push(requirement);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let (next, literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(SelectorError::Label(format!(
                                    "found '{literal}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::Label(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Token::End => return Ok(requirements),
                _ => {
                    return Err(SelectorError::Label(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    /// One requirement; errors are the text after `unable to parse requirement: `.
    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = inferred {
            return Requirement::new(key, operator, Vec::new()).map_err(|e| e.to_string());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(key, operator, values).map_err(|e| e.to_string())
    }

    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let mut operator = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        if let Some(problem) = key_problem(&literal) {
            return Err(FieldError::invalid("<nil>", Value::String(literal), problem).to_string());
        }
        let (next, _) = self.lookahead(Context::Values);
        if matches!(next, Token::End | Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            _ => {
                return Err(format!("found '{literal}', expected: in, notin, =, ==, !=, gt, lt"));
            }
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenParen {
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (token, _) = self.consume(Context::Values);
                if token != Token::CloseParen {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::CloseParen => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(format!("found '{literal}', expected: ',', ')' or identifier")),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, String> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.push(literal);
                    let (next, literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::CloseParen => return Ok(values),
                        _ => return Err(format!("found '{literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (next, _) = self.lookahead(Context::Values);
                    if next == Token::CloseParen {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if next == Token::Comma {
                        self.consume(Context::Values);
                        values.push(String::new());
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, String> {
        let (token, _) = self.lookahead(Context::Values);
        if matches!(token, Token::End | Token::Comma) {
            return Ok(vec![String::new()]);
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            return Ok(vec![literal]);
        }
        Err(format!("found '{literal}', expected: identifier"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        pairs.to_vec()
    }

    #[test]
    fn selectors_match_as_upstream() {
        let app_web = labels(&[("app", "web"), ("tier", "front"), ("replicas", "3")]);
        let none = labels(&[]);
        type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            ("the empty selector matches everything", "", &app_web, true),
            ("the empty selector matches no labels too", "", &none, true),
            ("equality matches the same value", "app=web", &app_web, true),
            ("double equality matches the same value", "app==web", &app_web, true),
            ("equality fails on another value", "app=db", &app_web, false),
            ("equality fails on a missing label", "app=web", &none, false),
            ("inequality matches another value", "app!=db", &app_web, true),
            ("inequality matches a missing label", "app!=db", &none, true),
            ("inequality fails on the same value", "app!=web", &app_web, false),
            ("in matches a listed value", "app in (db,web)", &app_web, true),
            ("in fails on an unlisted value", "app in (db,cache)", &app_web, false),
            ("in fails on a missing label", "app in (web)", &none, false),
            ("notin matches an unlisted value", "app notin (db)", &app_web, true),
            ("notin matches a missing label", "app notin (db)", &none, true),
            ("notin fails on a listed value", "app notin (web,db)", &app_web, false),
            ("exists matches a present label", "tier", &app_web, true),
            ("exists fails on a missing label", "zone", &app_web, false),
            ("does not exist matches a missing label", "!zone", &app_web, true),
            ("does not exist fails on a present label", "!tier", &app_web, false),
            ("greater than compares integers", "replicas>2", &app_web, true),
            ("greater than is strict", "replicas>3", &app_web, false),
            ("less than compares integers", "replicas<10", &app_web, true),
            ("greater than fails on a non-integer label", "app>1", &app_web, false),
            ("greater than fails on a missing label", "zone>1", &app_web, false),
            ("requirements are anded", "app=web,tier=front", &app_web, true),
            ("one failing requirement fails all", "app=web,tier=back", &app_web, false),
            ("whitespace is ignored", "  app = web ,  tier  ", &app_web, true),
            ("in and notin are values inside parentheses", "app notin (in,notin)", &app_web, true),
            ("an empty exact value does not match a set label", "app=", &app_web, false),
        ];
        for (name, selector, set, want) in cases {
            let parsed = LabelSelector::parse(selector).unwrap();
            assert_eq!(parsed.matches(set.iter().copied()), *want, "{name}");
        }
    }

    #[test]
    fn selectors_print_in_canonical_form() {
        let cases = [
            ("requirements are sorted by key", "b=2,a=1", "a=1,b=2"),
            ("double equals is kept", "a==1", "a==1"),
            ("set values are sorted and unique", "a in (z, x, z)", "a in (x,z)"),
            ("notin prints with parentheses", "a notin (x)", "a notin (x)"),
            ("exists prints the key", "a", "a"),
            ("does not exist prints a bang", "! a", "!a"),
            ("comparisons print without spaces", "a > 1, b < 2", "a>1,b<2"),
            ("inequality prints compactly", "a != b", "a!=b"),
            ("an empty set value is kept", "a in ()", "a in ()"),
            ("a prefixed key is kept", "example.com/app=x", "example.com/app=x"),
        ];
        for (name, input, want) in cases {
            let parsed = LabelSelector::parse(input).unwrap();
            assert_eq!(parsed.to_string(), want, "{name}");
            assert_eq!(LabelSelector::parse(want).unwrap(), parsed, "{name} round-trips");
        }
    }

    #[test]
    fn malformed_selectors_have_upstream_messages() {
        let cases = [
            (
                "a trailing comma wants an identifier",
                "a=b,",
                "found '', expected: identifier after ','",
            ),
            (
                "a leading comma is not a requirement",
                ",a",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            (
                "a missing operator is reported",
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "in needs parentheses",
                "a in b",
                "unable to parse requirement: found 'b' expected: '('",
            ),
            (
                "an unclosed set is reported",
                "a in (b",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "a value cannot be a symbol",
                "a=(",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            ("a bang takes no operator", "!a=b", "found '=', expected: ',' or 'end of string'"),
            (
                "comparisons need integers",
                "a>b",
                "unable to parse requirement: values[0]: Invalid value: \"b\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "keys must be qualified names",
                "-a=b",
                "unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ),
            (
                "values must be label values",
                "a=b$",
                "unable to parse requirement: values[0][a]: Invalid value: \"b$\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ),
            (
                "an empty key prefix is refused",
                "/a=b",
                "unable to parse requirement: <nil>: Invalid value: \"/a\": prefix part must be non-empty",
            ),
        ];
        for (name, input, want) in cases {
            let err = LabelSelector::parse(input).unwrap_err();
            assert_eq!(err.to_string(), want, "{name}");
        }
        let long = format!("a={}", "v".repeat(64));
        let err = LabelSelector::parse(&long).unwrap_err().to_string();
        assert!(
            err.contains("must be no more than 63 characters"),
            "long values are refused: {err}"
        );
    }

    #[test]
    fn selector_objects_convert_as_upstream() {
        let cases = [
            ("null matches nothing", json!(null), "", false),
            ("an empty meta selector matches everything", json!({"matchLabels": {}}), "", true),
            ("an empty map matches everything", json!({}), "", true),
            (
                "match labels become equalities",
                json!({"matchLabels": {"app": "web"}}),
                "app=web",
                true,
            ),
            (
                "expressions become set requirements",
                json!({"matchLabels": {"tier": "front"}, "matchExpressions": [
                    {"key": "app", "operator": "In", "values": ["web", "api"]},
                    {"key": "env", "operator": "NotIn", "values": ["prod"]},
                    {"key": "tier", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"}]}),
                "app in (api,web),env notin (prod),!legacy,tier=front,tier",
                true,
            ),
            (
                "a plain map is a set of equalities",
                json!({"app": "web", "tier": "front"}),
                "app=web,tier=front",
                true,
            ),
            ("a plain map can fail to match", json!({"app": "db"}), "app=db", false),
        ];
        let object = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        for (name, input, printed, matches) in cases {
            let selector = LabelSelector::from_json(&input).unwrap();
            assert_eq!(selector.to_string(), printed, "{name}");
            assert_eq!(selector.matches_object(&object), matches, "{name}");
        }
    }

    #[test]
    fn bad_selector_objects_are_refused() {
        let cases = [
            (
                "an unknown operator is named",
                json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
                "\"Gt\" is not a valid label selector operator",
            ),
            (
                "in without values is refused",
                json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
                "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty",
            ),
            (
                "exists with values is refused",
                json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}),
                "values: Invalid value: []string{\"x\"}: values set must be empty for exists and does not exist",
            ),
            (
                "a non-string label is refused",
                json!({"app": 1}),
                "invalid label selector: selector[app] must be a string, got 1",
            ),
            (
                "an invalid key is refused",
                json!({"matchLabels": {"a b": "x"}}),
                "key: Invalid value: \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ),
        ];
        for (name, input, want) in cases {
            let err = LabelSelector::from_json(&input).unwrap_err();
            assert_eq!(err.to_string(), want, "{name}");
        }
    }

    #[test]
    fn nothing_and_everything_are_told_apart() {
        assert!(LabelSelector::everything().is_empty());
        assert!(!LabelSelector::nothing().is_empty());
        assert!(LabelSelector::nothing().matches_nothing());
        assert!(!LabelSelector::nothing().matches([("a", "b")]));
        assert!(LabelSelector::everything().matches([("a", "b")]));
    }

    #[test]
    fn exact_requirements_can_be_read_back() {
        let selector = LabelSelector::parse("app=web,tier in (front),env!=prod").unwrap();
        assert_eq!(selector.requires_exact("app"), Some("web"));
        assert_eq!(selector.requires_exact("tier"), Some("front"));
        assert_eq!(selector.requires_exact("env"), None);
    }
}
