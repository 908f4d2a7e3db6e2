//! Decoding only the members of a stored object that logic reads: a [`Sparse`] decoder keeps
//! the members on its paths and skips the rest without building them, so indexing a 7 KB pod
//! costs a scan of its bytes, not a `Value` of every member (maps, strings and their hashes).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The members to keep, as a tree of member names from the object's root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sparse {
    /// The members below this one that are kept (in the order first named).
    members: Vec<(&'static str, Sparse)>,
    /// Whether this member is kept whole (a path ends here).
    whole: bool,
}

impl Sparse {
    /// A decoder that keeps the members at `paths`: dotted member names from the root
    /// (`spec.nodeName`); a path's member is kept whole, whatever its type.
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a &'static str>) -> Self {
        let mut root = Self::default();
        for path in paths {
            let mut node = &mut root;
            for name in path.split('.') {
                let at = match node.members.iter().position(|(n, _)| *n == name) {
                    Some(at) => at,
                    None => {
                        node.members.push((name, Self::default()));
                        node.members.len() - 1
                    }
                };
                node = &mut node.members[at].1;
            }
            node.whole = true;
        }
        root
    }

    /// Decodes `json`, keeping only the members on this decoder's paths (a value that is not
    /// an object where a path goes on is kept as it is, as a path's end would be).
    pub fn decode(&self, json: &[u8]) -> Result<Value, serde_json::Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let value = self.deserialize(&mut deserializer)?;
        deserializer.end()?;
        Ok(value)
    }

    fn member(&self, name: &str) -> Option<&Sparse> {
        self.members.iter().find(|(n, _)| *n == name).map(|(_, m)| m)
    }
}

impl<'de> DeserializeSeed<'de> for &Sparse {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.whole {
            return serde::Deserialize::deserialize(deserializer);
        }
        deserializer.deserialize_any(SparseVisitor(self))
    }
}

struct SparseVisitor<'s>(&'s Sparse);

impl<'de> Visitor<'de> for SparseVisitor<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(name) = map.next_key_seed(Name)? {
            match self.0.member(&name) {
                Some(member) => {
                    let value = map.next_value_seed(member)?;
                    kept.insert(name.into_owned(), value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl<'de> Visitor<'de> for NameVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn only_the_members_on_the_paths_are_kept() {
        let sparse = Sparse::new(&["metadata.name", "metadata.labels", "spec.nodeName", "kind"]);
        let json = br#"{"kind":"Pod","metadata":{"name":"web","uid":"u","labels":{"a":"b"},
            "managedFields":[{"manager":"m"}]},"spec":{"nodeName":"n1","containers":[{"name":"c"}]},
            "status":{"phase":"Running"}}"#;
        let value = sparse.decode(json).unwrap();
        assert_eq!(
            value,
            json!({"kind":"Pod","metadata":{"name":"web","labels":{"a":"b"}},"spec":{"nodeName":"n1"}})
        );
    }

    #[test]
    fn a_value_where_a_path_goes_on_is_kept_as_it_is() {
        let sparse = Sparse::new(&["spec.nodeName", "status.podIPs"]);
        let value = sparse.decode(br#"{"spec":"odd","status":{"podIPs":[{"ip":"10.0.0.1"}]}}"#);
        assert_eq!(value.unwrap(), json!({"spec":"odd","status":{"podIPs":[{"ip":"10.0.0.1"}]}}));
        let value = sparse.decode(br#"{"spec":[1,{"x":2}],"status":null}"#).unwrap();
        assert_eq!(value, json!({"spec":[1,{"x":2}],"status":null}));
    }

    #[test]
    fn escaped_names_are_matched_by_their_text_and_bad_json_is_an_error() {
        let sparse = Sparse::new(&["spec.nodeName"]);
        let value = sparse.decode(br#"{"sp\u0065c":{"nodeName":"n1","x\n":1}}"#).unwrap();
        assert_eq!(value, json!({"spec":{"nodeName":"n1"}}));
        assert!(sparse.decode(br#"{"spec":{"nodeName":"n1"}"#).is_err());
        assert!(sparse.decode(br#"{"spec":{}} trailing"#).is_err());
        assert!(sparse.decode(br#"{"other":[1,2,}"#).is_err());
    }
}
