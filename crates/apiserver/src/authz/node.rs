//! The Node authorizer's [`Graph`], kept current from the pods and persistent volume claims
//! of the watch cache, so that authorizing a node reads no store.
//!
//! Freshness without a task, as [`PolicyIndex`](super::index::PolicyIndex): each read compares
//! the revisions of the two caches with those the graph was built at; when one moved, the
//! events after the built revision (from the cache's window) are applied one by one: the
//! references of the pod before the change are removed, those after it added. Only a graph
//! older than the window is rebuilt from a snapshot. Each pod's references are kept (a few
//! names per pod), so an update touches only that pod.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use krust_auth::node::{Graph, GraphSource, PodRefs, claim_volume, pod_refs};
use krust_store::{EventKind, Revision};
use serde::de::DeserializeOwned;

use crate::watchcache::{CachedObject, ResourceCache, WatchCache, WatchStart};

/// The storage prefix of pods.
pub const PODS: &str = "/registry/core/pods/";
/// The storage prefix of persistent volume claims.
pub const CLAIMS: &str = "/registry/core/persistentvolumeclaims/";

/// A claim's namespace, name and volume.
type Claim = (String, String, String);

#[derive(Default)]
struct Built {
    revisions: [Revision; 2],
    pods: HashMap<String, PodRefs>,
    claims: HashMap<String, Claim>,
}

/// The current [`Graph`] of a watch cache.
pub struct GraphIndex {
    pods: Option<Arc<ResourceCache>>,
    claims: Option<Arc<ResourceCache>>,
    built: Mutex<Built>,
    current: RwLock<(Arc<Graph>, [Revision; 2])>,
}

/// The object decoded straight from its cached bytes into its type (no `Value` between).
fn typed<T: DeserializeOwned>(object: &CachedObject) -> Option<T> {
    object
        .decode_as()
        .map_err(|e| tracing::warn!(key = %object.key, error = %e, "object does not decode; ignored by the node graph"))
        .ok()
}

fn claim_of(object: &CachedObject) -> Option<Claim> {
    let claim: PersistentVolumeClaim = typed(object)?;
    let volume = claim_volume(&claim)?.to_string();
    Some((claim.metadata.namespace?, claim.metadata.name?, volume))
}

impl Built {
    fn set_pod(&mut self, graph: &mut Graph, key: &str, object: Option<&CachedObject>) {
        if let Some(old) = self.pods.remove(key) {
            graph.remove_pod(&old);
        }
        if let Some(refs) = object.and_then(typed::<Pod>).and_then(|p| pod_refs(&p)) {
            graph.add_pod(&refs);
            self.pods.insert(key.to_string(), refs);
        }
    }

    fn set_claim(&mut self, graph: &mut Graph, key: &str, object: Option<&CachedObject>) {
        if let Some((ns, name, volume)) = self.claims.remove(key) {
            graph.remove_claim(&ns, &name, &volume);
        }
        if let Some(claim) = object.and_then(claim_of) {
            graph.add_claim(&claim.0, &claim.1, &claim.2);
            self.claims.insert(key.to_string(), claim);
        }
    }

    /// Brings one resource (0: pods, 1: claims) to the revision of `cache`.
    fn refresh(&mut self, graph: &mut Graph, which: usize, cache: &ResourceCache) {
        let mut set = |built: &mut Self, key: &str, object: Option<&CachedObject>| match which {
            0 => built.set_pod(graph, key, object),
            _ => built.set_claim(graph, key, object),
        };
        let from = self.revisions[which];
        if from != 0
            && let WatchStart::Ready { replay, snapshot_revision, .. } =
                cache.watch_from(Some(from), None)
        {
            for event in replay {
                let object = (event.kind != EventKind::Delete).then_some(&*event.object);
                set(self, &event.object.key, object);
            }
            self.revisions[which] = snapshot_revision;
            return;
        }
        // First build, or older than the window: from a snapshot.
        let (snapshot, revision) = cache.snapshot();
        let known: Vec<String> = match which {
            0 => self.pods.keys().cloned().collect(),
            _ => self.claims.keys().cloned().collect(),
        };
        for key in known {
            set(self, &key, None);
        }
        for object in snapshot.range(cache.prefix(), None) {
            set(self, &object.key, Some(object));
        }
        self.revisions[which] = revision;
    }
}

impl GraphIndex {
    /// An index over the pods and claims of `cache` (empty when it has none).
    pub fn new(cache: &WatchCache) -> Self {
        Self {
            pods: cache.resource(PODS),
            claims: cache.resource(CLAIMS),
            built: Mutex::new(Built::default()),
            current: RwLock::new((Arc::new(Graph::default()), [0; 2])),
        }
    }

    fn revisions(&self) -> [Revision; 2] {
        [&self.pods, &self.claims].map(|c| c.as_ref().map_or(0, |c| c.snapshot().1))
    }

    /// Applies what changed since the graph was built. The graph is changed in place
    /// (copied only when a request still reads the previous one).
    fn rebuild(&self) -> Arc<Graph> {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        if current.1 == self.revisions() && current.1 != [0; 2] {
            return Arc::clone(&current.0);
        }
        let graph = Arc::make_mut(&mut current.0);
        if let Some(pods) = &self.pods {
            built.refresh(graph, 0, pods);
        }
        if let Some(claims) = &self.claims {
            built.refresh(graph, 1, claims);
        }
        current.1 = built.revisions;
        Arc::clone(&current.0)
    }
}

impl GraphSource for GraphIndex {
    fn current(&self) -> Arc<Graph> {
        {
            let current = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if current.1 == self.revisions() && current.1 != [0; 2] {
                return Arc::clone(&current.0);
            }
        }
        self.rebuild()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use krust_auth::node::Kind;
    use krust_store::Store;
    use serde_json::json;

    use super::*;
    use crate::watchcache::Shape;

    async fn wait_until(index: &GraphIndex, what: impl Fn(&Graph) -> bool) -> bool {
        for _ in 0..200 {
            if what(&index.current()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn the_graph_follows_pod_and_claim_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(krust_store::embedded::EmbeddedStore::open(&dir.path().join("db")).unwrap());
        let shapes = Shape::of_prefixes(&krust_api::Catalog::builtin(), &[PODS, CLAIMS]);
        let cache = WatchCache::start(Arc::clone(&store), shapes).await.unwrap();
        let index = GraphIndex::new(&cache);
        let pod = |node: &str, secret: &str| {
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "namespace": "a"},
                "spec": {"nodeName": node, "containers": [{"name": "c"}],
                    "volumes": [{"name": "s", "secret": {"secretName": secret}},
                        {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]}}))
            .unwrap()
        };
        let key = format!("{PODS}a/web");
        let kv = store.create(&key, pod("n1", "one")).await.unwrap();
        assert!(wait_until(&index, |g| g.reaches("n1", Kind::Secret, "a", "one")).await);
        store.update(&key, pod("n1", "two"), kv.mod_revision).await.unwrap();
        assert!(wait_until(&index, |g| g.reaches("n1", Kind::Secret, "a", "two")).await);
        assert!(!index.current().reaches("n1", Kind::Secret, "a", "one"), "the old reference goes");
        let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "a"}, "spec": {"volumeName": "pv1"}});
        store
            .create(&format!("{CLAIMS}a/data"), serde_json::to_vec(&claim).unwrap())
            .await
            .unwrap();
        assert!(wait_until(&index, |g| g.reaches_volume("n1", "pv1")).await);
        store.delete(&key, None).await.unwrap();
        assert!(wait_until(&index, |g| !g.reaches("n1", Kind::Secret, "a", "two")).await);
        assert!(!index.current().reaches_volume("n1", "pv1"));
    }
}
