//! Sets of fields, as structured-merge-diff keeps them and `FieldsV1` encodes them.
//!
//! A set is a tree: each node is a path element (`f:name` a member, `k:{...}` the item of an
//! associative list with those key values, `v:...` the item of a set, `i:N` an index), and a
//! node is itself in the set (a leaf, or `"."` beside its children) or only holds members.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElement {
    /// A member of an object.
    Field(String),
    /// The item of an associative list whose key fields have these values (JSON, sorted by
    /// field name).
    Key(Vec<(String, String)>),
    /// The item of a set with this value (JSON).
    Value(String),
    /// An item by position (lists without keys, rare).
    Index(usize),
}

impl PathElement {
    /// The element as `FieldsV1` writes it (`f:spec`, `k:{"name":"web"}`).
    pub fn encode(&self) -> String {
        match self {
            Self::Field(name) => format!("f:{name}"),
            Self::Key(keys) => {
                let mut out = String::from("k:{");
                for (i, (name, value)) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(name.clone()).to_string());
                    out.push(':');
                    out.push_str(value);
                }
                out.push('}');
                out
            }
            Self::Value(value) => format!("v:{value}"),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    /// Reads an element of `FieldsV1`.
    pub fn decode(text: &str) -> Option<Self> {
        let (kind, rest) = text.split_at_checked(2)?;
        match kind {
            "f:" => Some(Self::Field(rest.to_string())),
            "v:" => {
                let value: Value = serde_json::from_str(rest).ok()?;
                Some(Self::Value(value.to_string()))
            }
            "i:" => rest.parse().ok().map(Self::Index),
            "k:" => {
                let Value::Object(map) = serde_json::from_str::<Value>(rest).ok()? else {
                    return None;
                };
                let mut keys: Vec<(String, String)> =
                    map.into_iter().map(|(k, v)| (k, v.to_string())).collect();
                keys.sort();
                Some(Self::Key(keys))
            }
            _ => None,
        }
    }

    /// The element as a path prints it (`.spec`, `[name="web"]`, `[="a"]`, `[3]`).
    fn display(&self, out: &mut String) {
        match self {
            Self::Field(name) => {
                let _ = write!(out, ".{name}");
            }
            Self::Key(keys) => {
                out.push('[');
                for (i, (name, value)) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{name}={value}");
                }
                out.push(']');
            }
            Self::Value(value) => {
                let _ = write!(out, "[={value}]");
            }
            Self::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
}

/// A path printed as upstream prints it (`.spec.containers[name="web"].image`).
pub fn display_path(path: &[PathElement]) -> String {
    let mut out = String::new();
    for element in path {
        element.display(&mut out);
    }
    out
}

/// A set of fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// Whether this node itself is in the set.
    pub itself: bool,
    /// Its members.
    pub members: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// Whether the set holds nothing.
    pub fn is_empty(&self) -> bool {
        !self.itself && self.members.values().all(FieldSet::is_empty)
    }

    /// The node of `element`, made when missing.
    pub fn child(&mut self, element: PathElement) -> &mut FieldSet {
        self.members.entry(element).or_default()
    }

    /// Reads `FieldsV1` (`{"f:spec": {"f:replicas": {}}}`).
    pub fn from_fields_v1(value: &Value) -> Option<Self> {
        let Value::Object(map) = value else { return None };
        let mut set = FieldSet { itself: map.is_empty(), members: BTreeMap::new() };
        for (key, child) in map {
            if key == "." {
                set.itself = true;
                continue;
            }
            let element = PathElement::decode(key)?;
            set.members.insert(element, Self::from_fields_v1(child)?);
        }
        Some(set)
    }

    /// Writes `FieldsV1`.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        if self.itself && !self.members.is_empty() {
            map.insert(".".into(), Value::Object(Map::new()));
        }
        for (element, child) in &self.members {
            if !child.is_empty() {
                map.insert(element.encode(), child.to_fields_v1());
            }
        }
        Value::Object(map)
    }

    /// Adds every path of `other`.
    pub fn union(&mut self, other: &FieldSet) {
        self.itself |= other.itself;
        for (element, child) in &other.members {
            self.child(element.clone()).union(child);
        }
    }

    /// Removes every path of `other` (each path alone: a node's members stay unless `other`
    /// names them too).
    pub fn subtract(&mut self, other: &FieldSet) {
        if other.itself {
            self.itself = false;
        }
        for (element, child) in &other.members {
            if let Some(mine) = self.members.get_mut(element) {
                mine.subtract(child);
            }
        }
        self.members.retain(|_, c| !c.is_empty());
    }

    /// The paths of both sets.
    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet { itself: self.itself && other.itself, members: BTreeMap::new() };
        for (element, mine) in &self.members {
            if let Some(theirs) = other.members.get(element) {
                let both = mine.intersection(theirs);
                if !both.is_empty() {
                    out.members.insert(element.clone(), both);
                }
            }
        }
        out
    }

    /// Every path whose node is itself in the set, depth first.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.walk(&mut Vec::new(), &mut out);
        out
    }

    fn walk(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        if self.itself && !prefix.is_empty() {
            out.push(prefix.clone());
        }
        for (element, child) in &self.members {
            prefix.push(element.clone());
            child.walk(prefix, out);
            prefix.pop();
        }
    }

    /// A set of one path.
    pub fn of_path(path: &[PathElement]) -> FieldSet {
        let mut set = FieldSet::default();
        let mut node = &mut set;
        for element in path {
            node = node.child(element.clone());
        }
        node.itself = true;
        set
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_v1_round_trips() {
        let v1 = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}},
                "f:replicas": {},
            },
            "f:finalizers": {"v:\"a\"": {}},
        });
        let set = FieldSet::from_fields_v1(&v1).unwrap();
        assert_eq!(set.to_fields_v1(), v1);
        let paths: Vec<String> = set.paths().iter().map(|p| display_path(p)).collect();
        assert!(paths.contains(&".spec.containers[name=\"web\"].image".to_string()));
        assert!(paths.contains(&".finalizers[=\"a\"]".to_string()));
    }

    #[test]
    fn set_operations() {
        let a = FieldSet::from_fields_v1(&json!({"f:spec": {"f:a": {}, "f:b": {}}})).unwrap();
        let b = FieldSet::from_fields_v1(&json!({"f:spec": {"f:b": {}, "f:c": {}}})).unwrap();
        assert_eq!(a.intersection(&b).to_fields_v1(), json!({"f:spec": {"f:b": {}}}));
        let mut c = a.clone();
        c.subtract(&b);
        assert_eq!(c.to_fields_v1(), json!({"f:spec": {"f:a": {}}}));
        let mut d = a.clone();
        d.union(&b);
        assert_eq!(d.paths().len(), 3);
        let mut e = a.clone();
        e.subtract(&FieldSet::of_path(&[PathElement::Field("spec".into())]));
        assert_eq!(e, a);
        e.subtract(&a);
        assert!(e.is_empty());
    }
}
