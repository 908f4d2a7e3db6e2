//! Discovery documents built from the catalog: aggregated (`apidiscovery.k8s.io` v2 and
//! v2beta1), legacy (`APIVersions`, `APIGroupList`, `APIGroup`, `APIResourceList`), the
//! OpenAPI documents (built by `krust_api::openapi`, cached and served in [`openapi`]), and
//! `/version`.

pub mod openapi;

use krust_api::{Catalog, ResourceInfo};
use serde_json::{Value, json};

pub use openapi::OpenApi;

pub use krust_api::KUBERNETES_VERSION;

/// What the binary knows of its own build, for `/version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildInfo {
    /// The crate version (`0.1.0`).
    pub version: String,
    /// The full git commit the binary was built from (empty when unknown).
    pub git_commit: String,
    /// `clean`, `dirty`, or empty when unknown.
    pub git_tree_state: String,
    /// When the commit was made, RFC 3339 (empty when unknown).
    pub build_date: String,
}

impl Default for BuildInfo {
    fn default() -> Self {
        Self {
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: String::new(),
            git_tree_state: String::new(),
            build_date: String::new(),
        }
    }
}

/// The `/version` document: the Kubernetes version served and the build of krust serving it
/// (`gitVersion` is `v1.33.0-krust.<version>`, with the short commit as build metadata).
pub fn version(build: &BuildInfo) -> Value {
    let (major, minor) = KUBERNETES_VERSION;
    let mut git_version = format!("v{major}.{minor}.0-krust.{}", build.version);
    if let Some(short) = build.git_commit.get(..12) {
        git_version.push('+');
        git_version.push_str(short);
    }
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": git_version,
        "gitCommit": build.git_commit,
        "gitTreeState": build.git_tree_state,
        "buildDate": build.build_date,
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn scope(info: &ResourceInfo) -> &'static str {
    if info.namespaced() { "Namespaced" } else { "Cluster" }
}

/// The subresources of a resource as (name, group, version, kind, verbs).
fn subresources(
    info: &ResourceInfo,
) -> Vec<(&'static str, &'static str, &'static str, &'static str, &'static [&'static str])> {
    const RW: &[&str] = &["get", "patch", "update"];
    let mut subs = Vec::new();
    if info.status {
        subs.push(("status", info.group, info.version, info.kind, RW));
    }
    if info.scale.is_some() {
        subs.push(("scale", "autoscaling", "v1", "Scale", RW));
    }
    for extra in info.extra_subresources {
        if !subs.iter().any(|s| s.0 == extra.name) {
            subs.push((extra.name, extra.group, extra.version, extra.kind, extra.verbs));
        }
    }
    subs
}

fn aggregated_resource(info: &ResourceInfo) -> Value {
    let mut resource = json!({
        "resource": info.plural,
        "responseKind": {"group": info.group, "version": info.version, "kind": info.kind},
        "scope": scope(info),
        "singularResource": info.singular,
        "verbs": info.verbs,
    });
    if !info.short_names.is_empty() {
        resource["shortNames"] = json!(info.short_names);
    }
    if !info.categories.is_empty() {
        resource["categories"] = json!(info.categories);
    }
    let subs: Vec<Value> = subresources(info)
        .into_iter()
        .map(|(name, group, version, kind, verbs)| {
            json!({"subresource": name, "responseKind": {"group": group, "version": version, "kind": kind}, "verbs": verbs})
        })
        .collect();
    if !subs.is_empty() {
        resource["subresources"] = Value::Array(subs);
    }
    resource
}

/// The groups to list under `/api` (legacy: only the core group) or `/apis`, each with its
/// versions in preference order.
fn groups(catalog: &Catalog, legacy: bool) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (group, version) in catalog.group_versions() {
        if group.is_empty() != legacy {
            continue;
        }
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, versions)) => versions.push(version),
            None => groups.push((group, vec![version])),
        }
    }
    groups
}

/// The aggregated discovery document for `/api` or `/apis`, as `apiVersion` (`v2` or
/// `v2beta1`).
pub fn aggregated(catalog: &Catalog, legacy: bool, api_version: &str) -> Value {
    let items: Vec<Value> = groups(catalog, legacy)
        .into_iter()
        .map(|(group, versions)| {
            let versions: Vec<Value> = versions
                .into_iter()
                .map(|version| {
                    let resources: Vec<Value> = catalog
                        .entries()
                        .iter()
                        .filter(|e| e.group == group && e.version == version)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": version, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{api_version}"),
        "metadata": {},
        "items": items,
    })
}

/// The legacy `/api` document.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// The legacy `/apis` document.
pub fn api_group_list(catalog: &Catalog) -> Value {
    let groups: Vec<Value> = groups(catalog, false).iter().map(|(g, v)| api_group(g, v)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The `/apis/<group>` document, if the group is served.
pub fn api_group_doc(catalog: &Catalog, group: &str) -> Option<Value> {
    groups(catalog, false).iter().find(|(g, _)| *g == group).map(|(g, v)| api_group(g, v))
}

/// The `/api/v1` or `/apis/<group>/<version>` document, if served.
pub fn api_resource_list(catalog: &Catalog, group: &str, version: &str) -> Option<Value> {
    let all = catalog.entries();
    let entries: Vec<&ResourceInfo> =
        all.iter().filter(|e| e.group == group && e.version == version).collect();
    if entries.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for info in entries {
        let mut resource = json!({
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced(),
            "kind": info.kind,
            "verbs": info.verbs,
        });
        if !info.short_names.is_empty() {
            resource["shortNames"] = json!(info.short_names);
        }
        if !info.categories.is_empty() {
            resource["categories"] = json!(info.categories);
        }
        resources.push(resource);
        for (name, sub_group, sub_version, kind, verbs) in subresources(info) {
            let mut sub = json!({
                "name": format!("{}/{name}", info.plural),
                "singularName": "",
                "namespaced": info.namespaced(),
                "kind": kind,
                "verbs": verbs,
            });
            if (sub_group, sub_version) != (info.group, info.version) {
                sub["group"] = json!(sub_group);
                sub["version"] = json!(sub_version);
            }
            resources.push(sub);
        }
    }
    let group_version =
        if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_discovery_lists_pods_with_their_subresources() {
        let catalog = Catalog::builtin();
        let doc = aggregated(&catalog, true, "v2");
        let Some(pods) = doc
            .pointer("/items/0/versions/0/resources")
            .and_then(Value::as_array)
            .and_then(|r| r.iter().find(|r| r["resource"] == "pods").cloned())
        else {
            return;
        };
        assert_eq!(pods["scope"], "Namespaced");
        assert!(
            pods["subresources"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["subresource"] == "status"))
        );
    }
}
