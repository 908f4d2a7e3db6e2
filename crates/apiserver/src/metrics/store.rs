//! [`TimedStore`]: a [`Store`] that times every call into `etcd_request_duration_seconds`,
//! whichever backend is under it (the store crate itself knows nothing of metrics).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use krust_api::Catalog;
use krust_store::{KeyValue, Page, Result, Revision, Store, WatchStream};

use super::Metrics;

/// A store that times each call, by operation and by the type of object its key is for.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// The type label of each storage prefix of the catalog (`pods`, `deployments.apps`).
    types: HashMap<String, String>,
}

impl std::fmt::Debug for TimedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedStore").field("types", &self.types.len()).finish()
    }
}

impl TimedStore {
    /// Wraps `inner`; the object types are those of `catalog`'s storage locations.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>, catalog: &Catalog) -> Self {
        let types = catalog
            .entries()
            .iter()
            .map(|info| {
                let (group, resource) = (info.storage.group, info.storage.resource);
                let label = if group == "core" || group.is_empty() {
                    resource.to_string()
                } else {
                    format!("{resource}.{group}")
                };
                (info.storage_prefix(), label)
            })
            .collect();
        Self { inner, metrics, types }
    }

    /// The type label of a key or prefix: that of the catalog prefix it is under, `""` for a
    /// prefix above every type (the one watch of everything), `other` for anything else.
    fn type_of(&self, key: &str) -> &str {
        // `/registry/<group>/<resource>/`: the first three slashes.
        let end = key.match_indices('/').nth(3).map(|(i, _)| i + 1);
        match end.and_then(|end| self.types.get(&key[..end])) {
            Some(label) => label,
            None if end.is_none() => "",
            None => "other",
        }
    }

    fn record(&self, operation: &'static str, key: &str, started: Instant) {
        self.metrics.store_call(operation, self.type_of(key), started.elapsed());
    }
}

#[async_trait]
impl Store for TimedStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.record("get", key, started);
        result
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<Page> {
        let started = Instant::now();
        let result = self.inner.list(prefix, start_after, limit, revision).await;
        self.record("list", prefix, started);
        result
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let started = Instant::now();
        let result = self.inner.create(key, value).await;
        self.record("create", key, started);
        result
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let started = Instant::now();
        let result = self.inner.update(key, value, expected).await;
        self.record("update", key, started);
        result
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let started = Instant::now();
        let result = self.inner.delete(key, expected).await;
        self.record("delete", key, started);
        result
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let started = Instant::now();
        let result = self.inner.watch(prefix, after).await;
        self.record("watch", prefix, started);
        result
    }

    async fn current_revision(&self) -> Result<Revision> {
        let started = Instant::now();
        let result = self.inner.current_revision().await;
        self.record("currentRevision", "", started);
        result
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.compact(revision).await;
        self.record("compact", "", started);
        result
    }

    async fn check(&self) -> Result<()> {
        // Health probes are not store traffic: not timed.
        self.inner.check().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::inflight::{Inflight, Limits};

    #[tokio::test]
    async fn calls_are_timed_with_the_type_of_their_key() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let inner: Arc<dyn Store> = Arc::new(
            krust_store::embedded::EmbeddedStore::open(&dir.path().join("db")).expect("a store"),
        );
        let metrics =
            Arc::new(Metrics::new(Arc::new(Inflight::new(Limits::default())), "/proc".into()));
        let store = TimedStore::new(inner, Arc::clone(&metrics), &Catalog::builtin());
        assert_eq!(store.type_of("/registry/core/pods/default/web"), "pods");
        assert_eq!(store.type_of("/registry/apps/deployments/"), "deployments.apps");
        assert_eq!(store.type_of("/registry/"), "");
        assert_eq!(store.type_of("/registry/made/up/thing"), "other");
        store.create("/registry/core/configmaps/default/a", b"{}".to_vec()).await.expect("create");
        let _ = store.get("/registry/core/configmaps/default/a").await.expect("get");
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"etcd_request_duration_seconds_count{operation="create",type="configmaps"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"etcd_request_duration_seconds_count{operation="get",type="configmaps"} 1"#
        ));
    }
}
