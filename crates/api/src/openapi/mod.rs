//! The OpenAPI documents of the served resources: `/openapi/v2` (Swagger 2.0, every group
//! version) and `/openapi/v3/<group version>` (OpenAPI 3.0, one group version each), built
//! from plain data: the catalog's entries and the CustomResourceDefinition objects. The HTTP
//! side (caching, ETags) is the API server's.
//!
//! - Built-in kinds: [`builtin`] turns upstream's protobuf messages (the descriptor set the
//!   protobuf encoding uses) into definitions named as upstream names them
//!   (`io.k8s.api.apps.v1.Deployment`), with the descriptions of the schemas' comments
//!   ([`docs`]).
//! - Custom resources: [`custom`] publishes each served version's `openAPIV3Schema`.
//! - [`paths`]: every resource's operations.
//!
//! The two flavours differ as upstream's: v2 has `definitions` and `#/definitions/` references
//! (a field's description beside its `$ref`), v3 has `components.schemas` and
//! `#/components/schemas/` references (wrapped in `allOf` when the field has a description).

pub mod builtin;
pub mod custom;
pub mod docs;
pub mod paths;
pub mod v2_protobuf;

#[cfg(test)]
mod tests;

use prost_reflect::MessageDescriptor;
use serde_json::{Map, Value, json};

use crate::catalog::ResourceInfo;
use builtin::Collector;

/// OpenAPI v2 (Swagger) or v3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Swagger 2.0: `definitions`.
    V2,
    /// OpenAPI 3.0: `components.schemas`.
    V3,
}

impl Flavor {
    /// The prefix of references to definitions.
    pub fn prefix(self) -> &'static str {
        match self {
            Flavor::V2 => "#/definitions/",
            Flavor::V3 => "#/components/schemas/",
        }
    }
}

/// What the documents describe.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The catalog's entries, built-in and custom.
    pub entries: &'a [ResourceInfo],
    /// The CustomResourceDefinition objects that custom entries name.
    pub definitions: &'a [Value],
    /// The Kubernetes version served (`v1.33.0`), the documents' `info.version`.
    pub version: &'a str,
}

impl Served<'_> {
    /// The group versions served, in discovery order.
    pub fn group_versions(&self) -> Vec<(&'static str, &'static str)> {
        let mut seen = Vec::new();
        for e in self.entries {
            if !seen.contains(&(e.group, e.version)) {
                seen.push((e.group, e.version));
            }
        }
        seen
    }

    /// The `/openapi/v2` document.
    pub fn v2(&self) -> Value {
        let (paths, definitions) = self.build(Flavor::V2, |_| true);
        json!({
            "definitions": definitions,
            "info": {"title": "Kubernetes", "version": self.version},
            "paths": paths,
            "security": [{"BearerToken": []}],
            "securityDefinitions": {"BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey",
            }},
            "swagger": "2.0",
        })
    }

    /// The `/openapi/v3/<path>` document of one group version, if served.
    pub fn v3(&self, group: &str, version: &str) -> Option<Value> {
        if !self.entries.iter().any(|e| e.group == group && e.version == version) {
            return None;
        }
        let (paths, schemas) = self.build(Flavor::V3, |e| e.group == group && e.version == version);
        Some(json!({
            "components": {
                "schemas": schemas,
                "securitySchemes": {"BearerToken": {
                    "description": "Bearer Token authentication",
                    "in": "header",
                    "name": "authorization",
                    "type": "apiKey",
                }},
            },
            "info": {"title": "Kubernetes", "version": self.version},
            "openapi": "3.0.0",
            "paths": paths,
            "security": [{"BearerToken": []}],
        }))
    }

    /// The paths and definitions of the entries `include` selects.
    fn build(
        &self,
        flavor: Flavor,
        include: impl Fn(&ResourceInfo) -> bool,
    ) -> (Map<String, Value>, Map<String, Value>) {
        let mut collector = Collector::new(flavor);
        let mut paths = Map::new();
        let mut group_versions = Vec::new();
        for info in self.entries.iter().filter(|e| include(e)) {
            let (kind, list) = if info.definition.is_empty() {
                let Some(kind) = collector.add_kind(info.group, info.version, info.kind) else {
                    continue;
                };
                let list_kind = format!("{}List", info.kind);
                let list = collector.add_kind(info.group, info.version, &list_kind);
                let list = list.unwrap_or_else(|| kind.clone());
                (kind, list)
            } else {
                let Some(definition) = self
                    .definitions
                    .iter()
                    .find(|d| crate::object::name(d) == Some(info.definition))
                else {
                    continue;
                };
                custom::add(&mut collector, info, definition)
            };
            let scale = info.scale.and_then(|_| collector.add_kind("autoscaling", "v1", "Scale"));
            let subresources: Vec<_> = info
                .extra_subresources
                .iter()
                .map(|sub| (*sub, collector.add_kind(sub.group, sub.version, sub.kind)))
                .collect();
            let kinds = paths::Kinds {
                kind: &kind,
                list: &list,
                scale: scale.as_deref(),
                subresources: &subresources,
            };
            paths::add(&mut paths, flavor, info, &kinds);
            if !group_versions.contains(&(info.group, info.version)) {
                group_versions.push((info.group, info.version));
            }
        }
        for name in ["Status", "DeleteOptions", "Patch", "WatchEvent"] {
            if let Some(message) = meta_message(name) {
                collector.add_message(&message);
            }
        }
        collector.add_gvk(paths::STATUS, "", "v1", "Status");
        collector.add_gvk(paths::DELETE_OPTIONS, "", "v1", "DeleteOptions");
        for (group, version) in group_versions {
            collector.add_gvk(paths::DELETE_OPTIONS, group, version, "DeleteOptions");
        }
        (paths, collector.into_definitions())
    }
}

/// A message of `meta/v1`.
pub(crate) fn meta_message(name: &str) -> Option<MessageDescriptor> {
    crate::protobuf::schema::pool()?
        .get_message_by_name(&format!("apimachinery.pkg.apis.meta.v1.{name}"))
}
