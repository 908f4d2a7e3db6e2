//! The OpenAPI v3 documents kubectl reads: an index of group versions, and per group version
//! the PATCH operations of each kind with the `fieldValidation` parameter, so kubectl leaves
//! field validation to the server. No schemas are published yet, so kubectl computes
//! strategic merge patches from its own built-in types.

use krust_api::{Catalog, ResourceInfo};
use serde_json::{Map, Value, json};

/// A short hash of the catalog, to version the documents' URLs.
fn hash(catalog: &Catalog) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for e in catalog.entries().iter() {
        for b in e.group.bytes().chain(e.version.bytes()).chain(e.plural.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
    }
    format!("{h:016X}")
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

/// The `/openapi/v3` index.
pub fn openapi_v3_index(catalog: &Catalog) -> Value {
    let hash = hash(catalog);
    let mut paths = Map::new();
    for (group, version) in catalog.group_versions() {
        let path = gv_path(group, version);
        paths.insert(
            path.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

fn patch_operation(info: &ResourceInfo) -> Value {
    json!({
        "x-kubernetes-group-version-kind": {"group": info.group, "version": info.version, "kind": info.kind},
        "parameters": [
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ],
        "requestBody": {"content": {
            "application/json-patch+json": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object"}},
            "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
            "application/apply-patch+yaml": {"schema": {"type": "object"}},
        }},
        "responses": {"200": {"description": "OK"}},
    })
}

/// The document of one group version (`api/v1`, `apis/apps/v1`), if served.
pub fn openapi_v3_group_version(catalog: &Catalog, path: &str) -> Option<Value> {
    let (group, version) = match path.trim_matches('/').split('/').collect::<Vec<_>>().as_slice() {
        ["api", version] => (String::new(), version.to_string()),
        ["apis", group, version] => (group.to_string(), version.to_string()),
        _ => return None,
    };
    let all = catalog.entries();
    let entries: Vec<&ResourceInfo> =
        all.iter().filter(|e| e.group == group && e.version == version).collect();
    if entries.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    for info in entries {
        let base = if info.namespaced() {
            format!(
                "/{}/namespaces/{{namespace}}/{}/{{name}}",
                gv_path(info.group, info.version),
                info.plural
            )
        } else {
            format!("/{}/{}/{{name}}", gv_path(info.group, info.version), info.plural)
        };
        if info.verbs.contains(&"patch") {
            paths.insert(base.clone(), json!({"patch": patch_operation(info)}));
            if info.status {
                paths.insert(format!("{base}/status"), json!({"patch": patch_operation(info)}));
            }
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
