//! What the registry does for a resource beyond its [`Strategy`](krust_api::Strategy), as
//! upstream's per-resource REST storage: work around its writes that needs the store
//! ([`ResourceHooks`]), a check of its writes against who asks ([`WriteCheck`]), and the
//! subresources it serves with handlers of its own ([`Handler`]).
//!
//! Each resource with such work declares one [`ResourceStorage`] in its own module here
//! (`services.rs`, `pods/`, `bindings.rs`); [`builtin`] gathers them. Parts of the server that
//! own what a check needs add theirs while the server is put together (RBAC's escalation check,
//! from `authz`). The registry and the HTTP layer find a resource's declaration by group and
//! resource and never name a resource themselves.

mod bindings;
mod handler;
mod hooks;
pub mod pods;
mod service_families;
mod services;

use std::sync::Arc;

use krust_api::{ResourceInfo, StatusError};
use serde_json::Value;

pub use handler::{SubresourceHandler, SubresourceRequest, success};
pub use hooks::{Reserved, ResourceHooks};
pub use krust_api::cidr::{Cidr, check_dual};
pub use services::{ServiceAllocator, ServiceRanges};

/// A check of a write against who asks for it, run after the object is validated and before
/// it is stored (dry runs too), as upstream's policy-based RBAC storage wraps its resources.
/// Writes without a requester ([`WriteOptions::user`](super::WriteOptions::user) `None`: the
/// server's own) are not checked.
pub trait WriteCheck: Send + Sync {
    /// Whether `user` may store `new` (in the served version) over `old` (`None` for a create).
    fn check(
        &self,
        info: &ResourceInfo,
        user: &krust_auth::UserInfo,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), StatusError>;
}

/// How a subresource (or a resource itself, for the legacy `bindings`) is served.
#[derive(Clone)]
pub enum Handler {
    /// Writes handled by a handler of its own (`pods/binding`, `pods/eviction`).
    Create(Arc<dyn SubresourceHandler>),
    /// A stream read from the object's node agent (`pods/log`), as upstream's
    /// `GetterWithOptions` storage.
    NodeLog,
    /// A connection upgraded and relayed to the object's node agent (`pods/exec`,
    /// `pods/attach`, `pods/portforward`), as upstream's `Connecter` storage.
    NodeConnect,
}

/// The declaration of one resource's storage beyond its strategy.
#[derive(Clone)]
pub struct ResourceStorage {
    /// The resource's API group.
    pub group: &'static str,
    /// The resource (plural).
    pub resource: &'static str,
    /// Work around its writes.
    pub hooks: Option<Arc<dyn ResourceHooks>>,
    /// The check of its writes against their requester.
    pub write_check: Option<Arc<dyn WriteCheck>>,
    /// Its subresources served by handlers, by name (`""`: the resource itself).
    pub handlers: Vec<(&'static str, Handler)>,
}

impl ResourceStorage {
    /// A declaration with nothing in it yet.
    pub fn new(group: &'static str, resource: &'static str) -> Self {
        Self { group, resource, hooks: None, write_check: None, handlers: Vec::new() }
    }

    /// Whether it declares `info`'s resource.
    fn is_of(&self, info: &ResourceInfo) -> bool {
        self.group == info.group && self.resource == info.plural
    }

    /// The handler of `subresource` (`""`: the resource itself).
    fn handler(&self, subresource: &str) -> Option<&Handler> {
        self.handlers.iter().find(|(name, _)| *name == subresource).map(|(_, h)| h)
    }
}

/// The declarations of every resource, a handful: looked up by a scan, with no allocation
/// on a request's path.
#[derive(Clone, Default)]
pub struct Storages(Vec<ResourceStorage>);

impl Storages {
    /// The declaration of `info`'s resource, if it has one.
    pub fn of(&self, info: &ResourceInfo) -> Option<&ResourceStorage> {
        self.0.iter().find(|s| s.is_of(info))
    }

    /// The declaration of `group`/`resource`, made empty when it has none yet.
    pub fn entry(&mut self, group: &'static str, resource: &'static str) -> &mut ResourceStorage {
        let at = match self.0.iter().position(|s| s.group == group && s.resource == resource) {
            Some(at) => at,
            None => {
                self.0.push(ResourceStorage::new(group, resource));
                self.0.len() - 1
            }
        };
        &mut self.0[at]
    }

    /// The handler of `subresource` (`None`: the resource itself) of `info`, if it has one.
    pub fn handler(&self, info: &ResourceInfo, subresource: Option<&str>) -> Option<&Handler> {
        self.of(info)?.handler(subresource.unwrap_or_default())
    }
}

/// The declarations of the built-in resources; services get addresses and ports from
/// `ranges`.
pub fn builtin(ranges: ServiceRanges) -> Storages {
    Storages(vec![services::storage(ranges), pods::storage(), bindings::storage()])
}

#[cfg(test)]
mod tests {
    use krust_api::Catalog;

    use super::*;

    #[test]
    fn each_builtin_declaration_names_a_served_resource_and_its_advertised_subresources() {
        let catalog = Catalog::builtin();
        let storages = builtin(ServiceRanges::default());
        for storage in &storages.0 {
            let entries = catalog.entries();
            let info = entries
                .iter()
                .find(|i| i.group == storage.group && i.plural == storage.resource)
                .unwrap_or_else(|| panic!("{}/{} is not served", storage.group, storage.resource));
            for (name, _) in &storage.handlers {
                assert!(
                    name.is_empty() || info.extra_subresources.iter().any(|s| s.name == *name),
                    "{}/{name} is handled but not advertised",
                    storage.resource
                );
            }
        }
    }

    #[test]
    fn an_entry_added_later_joins_the_declarations() {
        let mut storages = builtin(ServiceRanges::default());
        let catalog = Catalog::builtin();
        let roles = catalog.lookup("rbac.authorization.k8s.io", "v1", "roles").expect("roles");
        assert!(storages.of(&roles).is_none());
        storages.entry("rbac.authorization.k8s.io", "roles");
        assert!(storages.of(&roles).is_some());
        let pods = catalog.lookup("", "v1", "pods").expect("pods");
        assert!(matches!(storages.handler(&pods, Some("log")), Some(Handler::NodeLog)));
        assert!(storages.handler(&pods, Some("status")).is_none());
    }
}
