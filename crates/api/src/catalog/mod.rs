//! The resource catalog: one [`ResourceInfo`] per served group/version/resource.
//!
//! Everything that differs between resources and is not behaviour lives here as data: names,
//! scope, verbs, subresources, where objects are stored and how a served version converts to
//! the stored one. Behaviour lives in the entry's [`Strategy`].

mod builtin;
pub mod conversion;
pub mod custom;
mod intern;

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, RwLock};

use serde_json::Value;

use crate::strategy::Strategy;

pub use intern::{intern, intern_list};

/// A part of an entry that behaves (a strategy, a conversion): static for the built-in
/// resources, owned for those added while the server runs (custom resources).
pub enum Shared<T: ?Sized + 'static> {
    /// Compiled in.
    Static(&'static T),
    /// Made at run time, dropped with the last entry that holds it.
    Owned(Arc<T>),
}

impl<T: ?Sized> Clone for Shared<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Static(t) => Self::Static(t),
            Self::Owned(t) => Self::Owned(Arc::clone(t)),
        }
    }
}

impl<T: ?Sized> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Self::Static(t) => t,
            Self::Owned(t) => t,
        }
    }
}

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
    fn to_stored(&self, obj: Value) -> Result<Value, ConversionError>;
    /// From the stored version to the served one (apiVersion included).
    fn to_served(&self, obj: Value) -> Result<Value, ConversionError>;
    /// Several objects from the stored version to the served one, in one go where the
    /// conversion can (a webhook is called once per list, as upstream's).
    fn to_served_all(&self, objects: Vec<Value>) -> Result<Vec<Value>, ConversionError> {
        objects.into_iter().map(|o| self.to_served(o)).collect()
    }
}

/// Why an object could not be converted: the message a client is given (with a 500, as
/// upstream answers a failed conversion webhook).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConversionError(pub String);

/// One served resource in one group version. Its names are `&'static` (built-in ones are
/// literals, custom resources' are [`intern`]ed), so that an entry clones cheaply.
#[derive(Clone)]
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
    pub conversion: Option<Shared<dyn Conversion>>,
    /// The resource's rules.
    pub strategy: Shared<dyn Strategy>,
    /// The name of the CustomResourceDefinition that serves it; empty for built-in ones.
    pub definition: &'static str,
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

/// Every served resource, looked up by URL parts or by kind: the built-in ones, then those of
/// custom resource definitions, which come and go while the server runs.
#[derive(Debug)]
pub struct Catalog {
    builtin: Vec<ResourceInfo>,
    /// Custom resources' entries by definition name.
    custom: RwLock<BTreeMap<String, Vec<ResourceInfo>>>,
    /// Definitions being deleted: their resources take no new objects.
    terminating: RwLock<std::collections::BTreeSet<String>>,
    /// Built-in then custom entries, replaced whole when a definition changes, so that a reader
    /// holds a consistent list without a lock.
    entries: RwLock<Arc<[ResourceInfo]>>,
}

impl Catalog {
    /// The built-in resources of Kubernetes 1.33 that krust serves.
    pub fn builtin() -> Self {
        let builtin = builtin::entries();
        let entries = RwLock::new(Arc::from(builtin.clone()));
        Self { builtin, custom: RwLock::default(), terminating: RwLock::default(), entries }
    }

    /// All entries, in discovery order: the built-in ones, then custom ones by group and
    /// version priority.
    pub fn entries(&self) -> Arc<[ResourceInfo]> {
        Arc::clone(&self.entries.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The entry for a group, version and plural from a URL.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<ResourceInfo> {
        self.entries()
            .iter()
            .find(|e| e.group == group && e.version == version && e.plural == plural)
            .cloned()
    }

    /// The entry for a group, version and kind.
    pub fn by_kind(&self, group: &str, version: &str, kind: &str) -> Option<ResourceInfo> {
        self.entries()
            .iter()
            .find(|e| e.group == group && e.version == version && e.kind == kind)
            .cloned()
    }

    /// The group versions served, in discovery order.
    pub fn group_versions(&self) -> Vec<(&'static str, &'static str)> {
        let mut seen = Vec::new();
        for e in self.entries().iter() {
            if !seen.contains(&(e.group, e.version)) {
                seen.push((e.group, e.version));
            }
        }
        seen
    }

    /// Serves `entries` for the custom resource definition `definition`, replacing what it
    /// served before (none: it serves nothing).
    pub fn set_custom(&self, definition: &str, entries: Vec<ResourceInfo>) {
        let mut custom = self.custom.write().unwrap_or_else(|e| e.into_inner());
        if entries.is_empty() {
            custom.remove(definition);
        } else {
            custom.insert(definition.to_string(), entries);
        }
        self.rebuild(&custom);
    }

    /// Makes the list readers see from the built-in entries and `custom`; a terminating
    /// definition's resources offer only reads and deletes.
    fn rebuild(&self, custom: &BTreeMap<String, Vec<ResourceInfo>>) {
        const TERMINATING_VERBS: &[&str] = &["delete", "deletecollection", "get", "list", "watch"];
        let terminating = self.terminating.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut all: Vec<ResourceInfo> = custom
            .values()
            .flatten()
            .cloned()
            .map(|mut e| {
                if terminating.contains(e.definition) {
                    e.verbs = TERMINATING_VERBS;
                }
                e
            })
            .collect();
        all.sort_by(|a, b| {
            a.group
                .cmp(b.group)
                .then_with(|| custom::version_priority(a.version, b.version))
                .then_with(|| a.plural.cmp(b.plural))
        });
        let merged: Vec<ResourceInfo> = self.builtin.iter().cloned().chain(all).collect();
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = Arc::from(merged);
    }

    /// Marks a definition as being deleted, or not.
    pub fn set_terminating(&self, definition: &str, terminating: bool) {
        let custom = self.custom.write().unwrap_or_else(|e| e.into_inner());
        let changed = {
            let mut set = self.terminating.write().unwrap_or_else(|e| e.into_inner());
            if terminating { set.insert(definition.to_string()) } else { set.remove(definition) }
        };
        if changed {
            self.rebuild(&custom);
        }
    }

    /// Whether any definition is being deleted.
    pub fn any_terminating(&self) -> bool {
        !self.terminating.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// Whether the definition that serves `info` is being deleted.
    pub fn is_terminating(&self, info: &ResourceInfo) -> bool {
        !info.definition.is_empty()
            && self.terminating.read().unwrap_or_else(|e| e.into_inner()).contains(info.definition)
    }

    /// The entries a custom resource definition serves now.
    pub fn custom(&self, definition: &str) -> Vec<ResourceInfo> {
        let custom = self.custom.read().unwrap_or_else(|e| e.into_inner());
        custom.get(definition).cloned().unwrap_or_default()
    }
}
