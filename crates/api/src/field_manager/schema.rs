//! What field ownership needs of a schema: for each member, its type, how a list of it
//! merges and whether a map of it is atomic. Built-in kinds answer from the markers of
//! upstream's messages ([`super::builtin`]), then from the merge keys of
//! [`crate::patch::merge_keys`]; custom resources from their structural schema's
//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`.

use serde_json::Value;

use super::builtin::{self, MessageId};
use crate::patch::merge_keys::{ListStrategy, TypeRef};

/// How a list merges and is owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced and owned whole.
    Atomic,
    /// Items are values, owned one by one.
    Set,
    /// Items are objects identified by these key fields, owned one by one.
    Map(Vec<String>),
}

/// A member's type as ownership sees it.
#[derive(Debug, Clone, Copy)]
pub enum Types<'a> {
    /// A built-in kind's type.
    Builtin {
        /// Its type in the strategic merge patch's graph.
        smp: TypeRef,
        /// Its message, when known.
        message: Option<MessageId>,
        /// Whether it is a map of values of that message (its members are keys).
        map: bool,
    },
    /// A node of a custom resource's schema (`None`: no schema, anything goes); `root` for
    /// the resource itself, whose `metadata` is an ObjectMeta.
    Custom {
        /// The schema node.
        schema: Option<&'a Value>,
        /// Whether it is the resource's root.
        root: bool,
    },
}

/// One member: its type (for a list, its items'), its list kind, whether its map is atomic.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// The type of the member's value, or of its items for a list.
    pub ty: Types<'a>,
    /// How a list value merges.
    pub list: ListKind,
    /// Whether a map value is owned and replaced whole.
    pub atomic_map: bool,
}

impl<'a> Types<'a> {
    /// The type of a built-in kind, or of a custom resource with this schema.
    pub fn of(api_version: &str, kind: &str, schema: Option<&'a Value>) -> Self {
        match schema {
            Some(schema) => Types::Custom { schema: Some(schema), root: true },
            None => Types::Builtin {
                smp: TypeRef::root(api_version, kind),
                message: builtin::kind(api_version, kind),
                map: false,
            },
        }
    }

    /// The member `name`.
    pub fn member(self, name: &str) -> Member<'a> {
        match self {
            Types::Builtin { smp, message, map } => {
                let meta = smp.field(name);
                let smp_list = match meta.list {
                    ListStrategy::Atomic => ListKind::Atomic,
                    ListStrategy::MergePrimitives => ListKind::Set,
                    ListStrategy::MergeByKey(key) => ListKind::Map(vec![key.to_string()]),
                };
                if map {
                    // A member of a map is one of its values.
                    let ty = Types::Builtin { smp: meta.ty, message, map: false };
                    return Member { ty, list: smp_list, atomic_map: false };
                }
                match message.and_then(|m| builtin::field(m, name)) {
                    Some(field) => Member {
                        ty: Types::Builtin { smp: meta.ty, message: field.message, map: field.map },
                        list: field.list.unwrap_or(smp_list),
                        atomic_map: field.atomic,
                    },
                    None => Member {
                        ty: Types::Builtin { smp: meta.ty, message: None, map: false },
                        list: smp_list,
                        atomic_map: false,
                    },
                }
            }
            Types::Custom { schema, root } => {
                if root && name == "metadata" {
                    let smp = TypeRef::root("", "").field("metadata").ty;
                    let ty = Types::Builtin { smp, message: builtin::object_meta(), map: false };
                    return Member { ty, list: ListKind::Atomic, atomic_map: false };
                }
                let node = schema.and_then(|s| {
                    s.get("properties")
                        .and_then(|p| p.get(name))
                        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
                });
                custom_member(node)
            }
        }
    }

    /// The default of member `name` that the schema gives, if any (`+default` markers of
    /// built-in types, `default` of custom resources' schemas).
    pub fn default_of(self, name: &str) -> Option<Value> {
        match self {
            Types::Builtin { message: Some(message), map: false, .. } => {
                builtin::default_of(message, name)
            }
            Types::Builtin { .. } => None,
            Types::Custom { schema, .. } => {
                schema?.get("properties")?.get(name)?.get("default").cloned()
            }
        }
    }

    /// Whether the type is a structure upstream's typed objects always carry (a known
    /// built-in type), so that it is never recorded as added on its own.
    pub fn is_struct(self) -> bool {
        matches!(self, Types::Builtin { smp, message, map: false } if message.is_some() || smp.name().is_some())
    }
}

fn custom_member(node: Option<&Value>) -> Member<'_> {
    let Some(node) = node else {
        return Member {
            ty: Types::Custom { schema: None, root: false },
            list: ListKind::Atomic,
            atomic_map: false,
        };
    };
    let text = |k: &str| node.get(k).and_then(Value::as_str);
    if text("type") == Some("array") {
        let list = match text("x-kubernetes-list-type") {
            Some("set") => ListKind::Set,
            Some("map") => {
                let keys: Vec<String> = node
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|k| k.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default();
                if keys.is_empty() { ListKind::Atomic } else { ListKind::Map(keys) }
            }
            _ => ListKind::Atomic,
        };
        let items = Types::Custom { schema: node.get("items"), root: false };
        return Member { ty: items, list, atomic_map: false };
    }
    let atomic_map = text("x-kubernetes-map-type") == Some("atomic");
    Member {
        ty: Types::Custom { schema: Some(node), root: false },
        list: ListKind::Atomic,
        atomic_map,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use serde_json::json;

    use super::*;

    #[test]
    fn custom_schemas_say_how_lists_and_maps_are_owned() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["port", "protocol"],
                          "items": {"type": "object", "properties": {"port": {"type": "integer"}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic"},
            }},
        }});
        let root = Types::of("example.com/v1", "Widget", Some(&schema));
        let spec = root.member("spec").ty;
        assert_eq!(
            spec.member("ports").list,
            ListKind::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(spec.member("tags").list, ListKind::Set);
        assert_eq!(spec.member("args").list, ListKind::Atomic);
        assert!(spec.member("selector").atomic_map);
        assert!(root.member("metadata").ty.is_struct());
    }
}
