//! What field ownership needs of the built-in types, read from upstream's protobuf messages
//! and the markers in their comments, as structured-merge-diff reads upstream's OpenAPI:
//! `+listType` and `+listMapKey` say how a list is owned (a Service's ports by `port` and
//! `protocol`), `+mapType=atomic` and `+structType=atomic` that a map or a structure is owned
//! whole (a `nodeSelector`, a `LabelSelector`). Lists without a marker follow their strategic
//! merge patch strategy, as kube-openapi's conversion does; the caller knows that one.

use super::schema::ListKind;
use crate::protobuf::schema::APIEXTENSIONS;
use crate::protobuf::types::{self, Field, Kind, Shape};

pub use crate::protobuf::types::MessageId;

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

/// The message of objects of `kind` in `api_version`, if it is a built-in kind (the
/// definitions of `apiextensions.k8s.io` included).
pub fn kind(api_version: &str, kind: &str) -> Option<MessageId> {
    types::message(api_version, kind).or_else(|| {
        let (group, version) = api_version.rsplit_once('/')?;
        let package = (group == "apiextensions.k8s.io").then_some(APIEXTENSIONS)?;
        types::types().by_full_name(&format!("{package}{version}.{kind}"))
    })
}

/// The message of every object's `metadata`.
pub fn object_meta() -> Option<MessageId> {
    types::types().by_full_name("apimachinery.pkg.apis.meta.v1.ObjectMeta")
}

/// Member `member` of `message`, if the message has it.
pub fn field(message: MessageId, member: &str) -> Option<BuiltinField> {
    let field = types::types().field_of_member(message, member)?;
    let value = structure(field.kind);
    Some(match field.shape {
        Shape::Map => BuiltinField {
            message: value,
            map: true,
            list: None,
            atomic: field.marker("mapType") == Some("atomic"),
        },
        Shape::List => {
            let list = match field.marker("listType") {
                Some("atomic") => Some(ListKind::Atomic),
                Some("set") => Some(ListKind::Set),
                Some("map") => {
                    let keys: Vec<String> =
                        field.markers_named("listMapKey").map(str::to_string).collect();
                    (!keys.is_empty()).then_some(ListKind::Map(keys))
                }
                _ => None,
            };
            BuiltinField { message: value, map: false, list, atomic: false }
        }
        Shape::Single => {
            let atomic = match field.kind {
                Kind::Message(id) => {
                    types::types().get(id).is_some_and(|m| m.marker("structType") == Some("atomic"))
                }
                Kind::Scalar(_) => false,
            };
            BuiltinField { message: value, map: false, list: None, atomic }
        }
    })
}

/// The default of member `member` of `message` that its comment gives (`+default="TCP"`).
pub fn default_of(message: MessageId, member: &str) -> Option<serde_json::Value> {
    let field: &Field = types::types().field_of_member(message, member)?;
    serde_json::from_str(field.marker("default")?).ok()
}

/// The message of a value of `kind` when its members are fields of their own: not for
/// scalars, the types with a JSON form of their own, nor the schema types whose JSON is any
/// value.
fn structure(kind: Kind) -> Option<MessageId> {
    let Kind::Message(id) = kind else { return None };
    let message = types::types().get(id)?;
    let plain = message.special().is_none()
        && !message.name().starts_with("JSONSchemaPropsOr")
        && message.name() != "JSON";
    plain.then_some(id)
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
