//! The cluster as admission plugins see it: the watch cache's objects, in their storage
//! version, as the cache holds them (encoded JSON, shared, no copy).

use std::sync::Arc;

use bytes::Bytes;
use krust_admission::ClusterView;
use krust_api::Catalog;

use crate::watchcache::WatchCache;

/// A [`ClusterView`] over the watch cache; reads take a snapshot of one resource's cache (a
/// persistent map: O(1)) and clone only the objects answered.
pub struct CacheView<'a> {
    cache: &'a Arc<WatchCache>,
    catalog: &'a Catalog,
}

impl<'a> CacheView<'a> {
    /// A view of `cache`, finding resources in `catalog`.
    pub fn new(cache: &'a Arc<WatchCache>, catalog: &'a Catalog) -> Self {
        Self { cache, catalog }
    }

    /// The storage prefix of `group`/`resource` in `namespace` (all when empty), and the
    /// resource's whole prefix.
    fn prefixes(&self, group: &str, resource: &str, namespace: &str) -> Option<(String, String)> {
        let entries = self.catalog.entries();
        let info = entries.iter().find(|i| i.group == group && i.plural == resource)?;
        let namespace = Some(namespace).filter(|n| !n.is_empty());
        Some((info.storage_prefix_in(namespace), info.storage_prefix()))
    }
}

impl ClusterView for CacheView<'_> {
    fn get_json(&self, group: &str, resource: &str, namespace: &str, name: &str) -> Option<Bytes> {
        let (prefix, whole) = self.prefixes(group, resource, namespace)?;
        let (snapshot, _) = self.cache.resource(&whole)?.snapshot();
        snapshot.get(&format!("{prefix}{name}")).map(|o| o.json.clone())
    }

    fn list_json(&self, group: &str, resource: &str, namespace: &str) -> Vec<Bytes> {
        let Some((prefix, whole)) = self.prefixes(group, resource, namespace) else {
            return Vec::new();
        };
        let Some(cache) = self.cache.resource(&whole) else { return Vec::new() };
        let (snapshot, _) = cache.snapshot();
        snapshot.range(&prefix, None).map(|o| o.json.clone()).collect()
    }
}
