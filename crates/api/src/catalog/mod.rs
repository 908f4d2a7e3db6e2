//! The resource catalog: one [`ResourceInfo`] per served group/version/resource.
//!
//! Everything that differs between resources and is not behaviour lives here as data: names,
//! scope, verbs, subresources, where objects are stored and how a served version converts to
//! the stored one. Behaviour lives in the entry's [`Strategy`].

mod builtin;
pub mod conversion;

use serde_json::Value;

use crate::strategy::Strategy;

/// Whether objects of a resource live in a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Objects live in a namespace.
    Namespaced,
    /// Objects are cluster-wide.
    Cluster,
}

/// The `scale` subresource: where a resource keeps its replica counts and selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalePaths {
    /// Dotted path of the desired replicas (`spec.replicas`).
    pub spec_replicas: &'static str,
    /// Dotted path of the observed replicas (`status.replicas`).
    pub status_replicas: &'static str,
    /// Dotted path of the label selector (`spec.selector`), which may be a map (replication
    /// controllers) or a `LabelSelector`.
    pub selector: &'static str,
}

/// Converts objects between a served version and the version they are stored in.
pub trait Conversion: Send + Sync {
    /// From the served version to the stored one (apiVersion included).
    fn to_stored(&self, obj: Value) -> Value;
    /// From the stored version to the served one (apiVersion included).
    fn to_served(&self, obj: Value) -> Value;
}

/// One served resource in one group version.
#[derive(Clone, Copy)]
pub struct ResourceInfo {
    /// API group; empty for the core group.
    pub group: &'static str,
    /// Version, such as `v1`.
    pub version: &'static str,
    /// Kind, such as `Deployment`.
    pub kind: &'static str,
    /// Plural resource name used in URLs, such as `deployments`.
    pub plural: &'static str,
    /// Singular name, such as `deployment`.
    pub singular: &'static str,
    /// Namespaced or cluster-wide.
    pub scope: Scope,
    /// Short names, such as `deploy`.
    pub short_names: &'static [&'static str],
    /// Categories, such as `all`.
    pub categories: &'static [&'static str],
    /// Verbs allowed on the resource.
    pub verbs: &'static [&'static str],
    /// Whether a `status` subresource exists.
    pub status: bool,
    /// The `scale` subresource, when it exists.
    pub scale: Option<ScalePaths>,
    /// Other subresources served by later components (`log`, `exec`, `binding`, `eviction`,
    /// `proxy`, ...), with their kinds and verbs, for discovery.
    pub extra_subresources: &'static [SubresourceInfo],
    /// Group and resource of the storage this version shares with others (for example
    /// `events.k8s.io/v1` events live with core `v1` events).
    pub storage: StorageInfo,
    /// Conversion between this version and the stored one; `None` when they are the same.
    pub conversion: Option<&'static dyn Conversion>,
    /// The resource's rules.
    pub strategy: &'static dyn Strategy,
}

/// A subresource as discovery shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubresourceInfo {
    /// Name, such as `log`.
    pub name: &'static str,
    /// Group of the kind it answers with (empty for core).
    pub group: &'static str,
    /// Version of that kind.
    pub version: &'static str,
    /// Kind it answers with, such as `Binding`.
    pub kind: &'static str,
    /// Verbs.
    pub verbs: &'static [&'static str],
}

/// Where the objects of a resource are stored: `/registry/<group>/<resource>/...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageInfo {
    /// Storage group (`core` for the core group).
    pub group: &'static str,
    /// Storage resource.
    pub resource: &'static str,
    /// The version objects are stored in, as an apiVersion (`v1`, `autoscaling/v2`).
    pub api_version: &'static str,
}

impl std::fmt::Debug for ResourceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceInfo")
            .field("group", &self.group)
            .field("version", &self.version)
            .field("plural", &self.plural)
            .finish_non_exhaustive()
    }
}

impl ResourceInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether objects live in namespaces.
    pub fn namespaced(&self) -> bool {
        self.scope == Scope::Namespaced
    }

    /// The key prefix of all objects of this resource, ending in `/`.
    pub fn storage_prefix(&self) -> String {
        format!("/registry/{}/{}/", self.storage.group, self.storage.resource)
    }

    /// The key prefix of the objects in one namespace (or all, for cluster-scoped ones).
    pub fn storage_prefix_in(&self, namespace: Option<&str>) -> String {
        match (self.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => format!("{}{ns}/", self.storage_prefix()),
            _ => self.storage_prefix(),
        }
    }

    /// The key of one object.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.storage_prefix_in(namespace))
    }
}

/// Every served resource, looked up by URL parts or by kind.
#[derive(Debug)]
pub struct Catalog {
    entries: Vec<ResourceInfo>,
}

impl Catalog {
    /// The built-in resources of Kubernetes 1.33 that krust serves.
    pub fn builtin() -> Self {
        Self { entries: builtin::entries() }
    }

    /// All entries, in discovery order.
    pub fn entries(&self) -> &[ResourceInfo] {
        &self.entries
    }

    /// The entry for a group, version and plural from a URL.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceInfo> {
        self.entries.iter().find(|e| e.group == group && e.version == version && e.plural == plural)
    }

    /// The entry for a group, version and kind.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<&ResourceInfo> {
        self.entries.iter().find(|e| e.group == group && e.version == version && e.kind == kind)
    }

    /// The group versions served, in discovery order, each with its preferred flag.
    pub fn group_versions(&self) -> Vec<(&'static str, &'static str)> {
        let mut seen = Vec::new();
        for e in &self.entries {
            if !seen.contains(&(e.group, e.version)) {
                seen.push((e.group, e.version));
            }
        }
        seen
    }
}
