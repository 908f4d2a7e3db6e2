//! The subresources the registry itself serves as views of the object: `status`, `scale`, and
//! those a resource's strategy merges (`namespaces/finalize`,
//! `certificatesigningrequests/approval`).

use krust_api::object::{path, set_path};
use krust_api::selector::LabelSelector;
use krust_api::validation::FieldError;
use krust_api::{ResourceInfo, StatusError};
use serde_json::{Value, json};

/// Which part of an object a request reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// The object itself; writes keep the stored status when a status subresource exists.
    Main,
    /// `status`: writes change only the status.
    Status,
    /// `scale`: an `autoscaling/v1` Scale view of the replica count.
    Scale,
    /// A part of the object that its strategy replaces ([`Strategy::part_subresources`]).
    ///
    /// [`Strategy::part_subresources`]: krust_api::strategy::Strategy::part_subresources
    Part(&'static str),
}

impl Subresource {
    /// The name in URLs and admission attributes (empty for the object itself).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Main => "",
            Self::Status => "status",
            Self::Scale => "scale",
            Self::Part(name) => name,
        }
    }

    /// Reads a subresource name from a URL; `None` when the registry does not serve it for
    /// `info`.
    pub fn parse(info: &ResourceInfo, name: Option<&str>) -> Option<Self> {
        match name {
            None => Some(Self::Main),
            Some("status") if info.status => Some(Self::Status),
            Some("scale") if info.scale.is_some() => Some(Self::Scale),
            Some(name) => info
                .strategy
                .part_subresources()
                .iter()
                .find(|n| **n == name)
                .map(|n| Self::Part(n)),
        }
    }

    /// What a client sees of a served object through this subresource.
    pub fn view(self, info: &ResourceInfo, obj: Value) -> Value {
        match (self, info.scale) {
            (Self::Scale, Some(scale)) => {
                let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
                let keep = ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"];
                let meta: serde_json::Map<String, Value> = meta
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(k, _)| keep.contains(&k.as_str()))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    })
                    .unwrap_or_default();
                // A selector is a LabelSelector (built-in resources) or already a string
                // (custom resources' `labelSelectorPath`).
                let selector = match path(&obj, scale.selector) {
                    Some(Value::String(text)) => text.clone(),
                    Some(s) => {
                        LabelSelector::from_json(s).map(|s| s.to_string()).unwrap_or_default()
                    }
                    None => String::new(),
                };
                // As upstream encodes a Scale: `spec.replicas` and `status.selector` are
                // `omitempty`, `status.replicas` is always there.
                let replicas = path(&obj, scale.spec_replicas).and_then(Value::as_i64).unwrap_or(0);
                let mut spec = serde_json::Map::new();
                if replicas != 0 {
                    spec.insert("replicas".into(), json!(replicas));
                }
                let observed = path(&obj, scale.status_replicas).and_then(Value::as_i64);
                let mut status = serde_json::Map::new();
                status.insert("replicas".into(), json!(observed.unwrap_or(0)));
                if !selector.is_empty() {
                    status.insert("selector".into(), json!(selector));
                }
                json!({
                    "kind": "Scale",
                    "apiVersion": "autoscaling/v1",
                    "metadata": meta,
                    "spec": spec,
                    "status": status,
                })
            }
            _ => obj,
        }
    }

    /// The new object: `old` changed as the client's `view` of it says (both served).
    pub fn merge(
        self,
        info: &ResourceInfo,
        old: &Value,
        view: Value,
    ) -> Result<Value, StatusError> {
        match self {
            Self::Main => {
                let mut new = view;
                if info.status {
                    carry(&mut new, old, "status");
                }
                Ok(new)
            }
            Self::Status => {
                let mut new = old.clone();
                carry(&mut new, &view, "status");
                if info.strategy.status_keeps_annotations()
                    && let (Some(meta), Some(view_meta)) =
                        (new.get_mut("metadata"), view.get("metadata"))
                {
                    carry(meta, view_meta, "annotations");
                }
                Ok(new)
            }
            Self::Part(name) => info.strategy.merge_subresource(
                name,
                old,
                &view,
                &super::timestamp(chrono::Utc::now()),
            ),
            Self::Scale => {
                let Some(scale) = info.scale else {
                    return Err(StatusError::not_found(info.group, info.plural, "scale"));
                };
                let replicas = path(&view, "spec.replicas").and_then(Value::as_i64).unwrap_or(0);
                if replicas < 0 {
                    let name =
                        path(&view, "metadata.name").and_then(Value::as_str).unwrap_or_default();
                    let error = FieldError::invalid(
                        "spec.replicas",
                        Value::from(replicas),
                        "must be greater than or equal to 0",
                    );
                    return Err(StatusError::invalid("autoscaling", "Scale", name, &[error]));
                }
                let mut new = old.clone();
                set_path(&mut new, scale.spec_replicas, Value::from(replicas));
                Ok(new)
            }
        }
    }
}

/// Copies `field` from `from` into `to` (removing it when `from` has none).
fn carry(to: &mut Value, from: &Value, field: &str) {
    let Some(map) = to.as_object_mut() else { return };
    match from.get(field) {
        Some(v) => map.insert(field.to_string(), v.clone()),
        None => map.remove(field),
    };
}
