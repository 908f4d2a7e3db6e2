//! What field ownership needs of the built-in types, read from upstream's protobuf messages
//! and the markers in their comments, as structured-merge-diff reads upstream's OpenAPI:
//! `+listType` and `+listMapKey` say how a list is owned (a Service's ports by `port` and
//! `protocol`), `+mapType=atomic` and `+structType=atomic` that a map or a structure is owned
//! whole (a `nodeSelector`, a `LabelSelector`). Lists without a marker follow their strategic
//! merge patch strategy, as kube-openapi's conversion does; the caller knows that one.

use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};

use prost_reflect::{FieldDescriptor, Kind, MessageDescriptor};

use super::schema::ListKind;
use crate::openapi::docs;
use crate::protobuf::names::field_of_member;
use crate::protobuf::schema;
use crate::protobuf::special::Special;

/// A message of the descriptor pool, by index: `Copy`, so that a walk through types is cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId(u32);

/// What ownership needs of one member of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltinField {
    /// The message of its value (of a list's items, of a map's values); `None` for scalars
    /// and the types with a JSON form of their own (`Quantity`, `Time`, ...).
    pub message: Option<MessageId>,
    /// Whether it is a map, whose members are its keys.
    pub map: bool,
    /// How a list is owned, when its comment says (`+listType`).
    pub list: Option<ListKind>,
    /// Whether its value is owned whole (`+mapType=atomic`, or a message marked
    /// `+structType=atomic`).
    pub atomic: bool,
}

/// Every message of the pool, and their indices by full name.
struct Messages {
    all: Vec<MessageDescriptor>,
    ids: HashMap<String, u32>,
}

static MESSAGES: LazyLock<Messages> = LazyLock::new(|| {
    let all: Vec<MessageDescriptor> =
        schema::pool().map(|pool| pool.all_messages().collect()).unwrap_or_default();
    let ids = all
        .iter()
        .enumerate()
        .filter_map(|(i, m)| Some((m.full_name().to_string(), u32::try_from(i).ok()?)))
        .collect();
    Messages { all, ids }
});

/// The members found so far, by message: each is worked out once. Names a message does not
/// have are not kept (they come from clients, so there is no bound to them).
type Known = HashMap<MessageId, HashMap<String, BuiltinField>>;
static KNOWN: LazyLock<RwLock<Known>> = LazyLock::new(Default::default);

fn id_of(message: &MessageDescriptor) -> Option<MessageId> {
    MESSAGES.ids.get(message.full_name()).copied().map(MessageId)
}

/// The message of objects of `kind` in `api_version`, if it is a built-in kind.
pub fn kind(api_version: &str, kind: &str) -> Option<MessageId> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    id_of(&crate::openapi::builtin::kind_message(group, version, kind)?)
}

/// The message of every object's `metadata`.
pub fn object_meta() -> Option<MessageId> {
    MESSAGES.ids.get("apimachinery.pkg.apis.meta.v1.ObjectMeta").copied().map(MessageId)
}

/// Member `member` of `message`, if the message has it.
pub fn field(message: MessageId, member: &str) -> Option<BuiltinField> {
    let known = KNOWN.read().unwrap_or_else(PoisonError::into_inner);
    if let Some(found) = known.get(&message).and_then(|fields| fields.get(member)) {
        return Some(found.clone());
    }
    drop(known);
    let found = look_up(message, member)?;
    KNOWN
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(message)
        .or_default()
        .insert(member.to_string(), found.clone());
    Some(found)
}

/// The default of member `member` of `message` that its comment gives (`+default="TCP"`).
pub fn default_of(message: MessageId, member: &str) -> Option<serde_json::Value> {
    let (_, doc) = field_and_doc(message, member)?;
    serde_json::from_str(doc.marker("default")?).ok()
}

/// The field of `message` that member `member` stands for, and its comment.
fn field_and_doc(message: MessageId, member: &str) -> Option<(FieldDescriptor, docs::Doc)> {
    let descriptor = MESSAGES.all.get(message.0 as usize)?;
    let field = field_of_member(descriptor, member)?;
    let doc = docs::field(field.parent_message().full_name(), field.name());
    Some((field, doc))
}

fn look_up(message: MessageId, member: &str) -> Option<BuiltinField> {
    let (field, doc) = field_and_doc(message, member)?;
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else { return None };
        let value = structure(&entry.map_entry_value_field().kind());
        let atomic = doc.marker("mapType") == Some("atomic");
        return Some(BuiltinField { message: value, map: true, list: None, atomic });
    }
    if field.is_list() {
        let list = match doc.marker("listType") {
            Some("atomic") => Some(ListKind::Atomic),
            Some("set") => Some(ListKind::Set),
            Some("map") => {
                let keys: Vec<String> =
                    doc.markers_named("listMapKey").map(str::to_string).collect();
                (!keys.is_empty()).then_some(ListKind::Map(keys))
            }
            _ => None,
        };
        return Some(BuiltinField {
            message: structure(&field.kind()),
            map: false,
            list,
            atomic: false,
        });
    }
    let kind = field.kind();
    let atomic = match &kind {
        Kind::Message(m) => docs::message(m.full_name()).marker("structType") == Some("atomic"),
        _ => false,
    };
    Some(BuiltinField { message: structure(&kind), map: false, list: None, atomic })
}

/// The message of a value of `kind` when its members are fields of their own: not for
/// scalars, the types with a JSON form of their own, nor the schema types whose JSON is any
/// value.
fn structure(kind: &Kind) -> Option<MessageId> {
    match kind {
        Kind::Message(m)
            if Special::of(m).is_none()
                && !m.name().starts_with("JSONSchemaPropsOr")
                && m.name() != "JSON" =>
        {
            id_of(m)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn path(api_version: &str, kind_name: &str, members: &[&str]) -> BuiltinField {
        let mut message = kind(api_version, kind_name).unwrap();
        let mut found = None;
        for member in members {
            let field = field(message, member).unwrap();
            if let Some(next) = field.message {
                message = next;
            }
            found = Some(field);
        }
        found.unwrap()
    }

    #[test]
    fn list_markers_say_how_lists_are_owned() {
        let ports = path("v1", "Service", &["spec", "ports"]);
        assert_eq!(ports.list, Some(ListKind::Map(vec!["port".into(), "protocol".into()])));
        let containers = path("apps/v1", "Deployment", &["spec", "template", "spec", "containers"]);
        assert_eq!(containers.list, Some(ListKind::Map(vec!["name".into()])));
        let ports = path("v1", "Pod", &["spec", "containers", "ports"]);
        assert_eq!(
            ports.list,
            Some(ListKind::Map(vec!["containerPort".into(), "protocol".into()]))
        );
        let service = kind("v1", "Service").unwrap();
        let spec = field(service, "spec").unwrap().message.unwrap();
        let port = field(spec, "ports").unwrap().message.unwrap();
        assert_eq!(default_of(port, "protocol"), Some(serde_json::json!("TCP")));
        assert_eq!(default_of(port, "port"), None);
        let finalizers = path("v1", "Pod", &["metadata", "finalizers"]);
        assert_eq!(finalizers.list, Some(ListKind::Set));
    }

    #[test]
    fn atomic_maps_and_structures_are_marked() {
        assert!(path("v1", "Pod", &["spec", "nodeSelector"]).atomic);
        assert!(path("v1", "Pod", &["spec", "nodeSelector"]).map);
        assert!(path("apps/v1", "Deployment", &["spec", "selector"]).atomic);
        assert!(!path("v1", "Pod", &["metadata", "labels"]).atomic);
        let limits = path("v1", "Pod", &["spec", "containers", "resources", "limits"]);
        assert!(limits.map && limits.message.is_none());
        assert!(field(kind("v1", "Pod").unwrap(), "nope").is_none());
    }
}
