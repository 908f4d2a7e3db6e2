//! The RBAC objects of the watch cache, decoded once into typed objects and indexed as a
//! [`Policy`], so that authorizing a request reads no store and decodes nothing.
//!
//! Freshness without a task: each read of [`PolicyIndex::current`] compares the revisions of
//! the four RBAC caches (a read lock each) with those the index was built at; when one moved,
//! it rebuilds the [`Policy`] from the caches' snapshots (persistent maps, O(1) to take),
//! decoding only the objects whose revision changed and reusing the others, and swaps it in.
//! A request therefore sees every RBAC write the watch cache has applied.
//!
//! Memory: each RBAC object is held twice, as the cache's JSON value and as the typed object
//! here (an `Arc` shared by every snapshot). A typed object costs about what its JSON value
//! costs, roughly 1.5 to 2 times its encoded size: a binding of one subject about 0.6 KiB, a
//! default ClusterRole of ten rules about 3 KiB; the default policy (about 80 objects) about
//! 150 KiB. Rebuilding the index costs one `Arc` clone per object plus the decode of what
//! changed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use k8s_openapi::Metadata;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use krust_auth::rbac::{Policy, PolicySource};
use krust_store::Revision;
use serde::de::DeserializeOwned;

use crate::watchcache::{ResourceCache, WatchCache};

/// The storage prefixes of the four RBAC resources.
pub const ROLES: &str = "/registry/rbac.authorization.k8s.io/roles/";
/// ClusterRoles.
pub const CLUSTER_ROLES: &str = "/registry/rbac.authorization.k8s.io/clusterroles/";
/// RoleBindings.
pub const ROLE_BINDINGS: &str = "/registry/rbac.authorization.k8s.io/rolebindings/";
/// ClusterRoleBindings.
pub const CLUSTER_ROLE_BINDINGS: &str = "/registry/rbac.authorization.k8s.io/clusterrolebindings/";

/// Decoded objects of one resource, by key, with the revision each was decoded at.
type Decoded<T> = HashMap<String, (Revision, Arc<T>)>;

#[derive(Default)]
struct Built {
    revisions: [Revision; 4],
    roles: Decoded<Role>,
    cluster_roles: Decoded<ClusterRole>,
    role_bindings: Decoded<RoleBinding>,
    cluster_role_bindings: Decoded<ClusterRoleBinding>,
}

/// The current [`Policy`] of a watch cache.
pub struct PolicyIndex {
    caches: [Option<Arc<ResourceCache>>; 4],
    built: Mutex<Built>,
    current: RwLock<(Arc<Policy>, [Revision; 4])>,
}

/// Brings `decoded` to the objects of `cache`: decodes what is new or changed, drops what went.
/// Of each object's metadata only what the policy reads is kept (name, namespace, labels):
/// the managed fields and annotations of the bootstrap roles would double the index.
fn refresh<T>(cache: Option<&Arc<ResourceCache>>, decoded: &mut Decoded<T>)
where
    T: DeserializeOwned + Metadata<Ty = ObjectMeta>,
{
    let Some(cache) = cache else { return };
    let (snapshot, _) = cache.snapshot();
    let mut next = HashMap::with_capacity(decoded.len());
    for object in snapshot.range(cache.prefix(), None) {
        match decoded.remove(&*object.key) {
            Some((revision, typed)) if revision == object.mod_revision => {
                next.insert(object.key.to_string(), (revision, typed));
            }
            _ => match object.decode_as::<T>() {
                Ok(mut typed) => {
                    let meta = std::mem::take(typed.metadata_mut());
                    *typed.metadata_mut() = ObjectMeta {
                        name: meta.name,
                        namespace: meta.namespace,
                        labels: meta.labels,
                        ..ObjectMeta::default()
                    };
                    next.insert(object.key.to_string(), (object.mod_revision, Arc::new(typed)));
                }
                Err(e) => {
                    tracing::warn!(key = %object.key, error = %e, "RBAC object does not decode; ignored")
                }
            },
        }
    }
    *decoded = next;
}

fn values<T>(decoded: &Decoded<T>) -> impl Iterator<Item = Arc<T>> + '_ {
    decoded.values().map(|(_, t)| Arc::clone(t))
}

impl PolicyIndex {
    /// An index over the RBAC caches of `cache` (empty when it has none).
    pub fn new(cache: &WatchCache) -> Self {
        let get = |p: &str| cache.resource(p);
        Self {
            caches: [
                get(ROLES),
                get(CLUSTER_ROLES),
                get(ROLE_BINDINGS),
                get(CLUSTER_ROLE_BINDINGS),
            ],
            built: Mutex::new(Built::default()),
            current: RwLock::new((Arc::new(Policy::default()), [0; 4])),
        }
    }

    /// The revisions the four caches are at now.
    fn revisions(&self) -> [Revision; 4] {
        self.caches.each_ref().map(|c| c.as_ref().map_or(0, |c| c.snapshot().1))
    }

    /// Rebuilds the policy from the caches, decoding what changed.
    fn rebuild(&self) -> Arc<Policy> {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        let revisions = self.revisions();
        if built.revisions == revisions && revisions != [0; 4] {
            return self.read().0.clone();
        }
        let [roles, cluster_roles, role_bindings, cluster_role_bindings] = &self.caches;
        refresh(roles.as_ref(), &mut built.roles);
        refresh(cluster_roles.as_ref(), &mut built.cluster_roles);
        refresh(role_bindings.as_ref(), &mut built.role_bindings);
        refresh(cluster_role_bindings.as_ref(), &mut built.cluster_role_bindings);
        built.revisions = revisions;
        let policy = Arc::new(Policy::new(
            values(&built.roles),
            values(&built.cluster_roles),
            values(&built.role_bindings),
            values(&built.cluster_role_bindings),
        ));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) =
            (Arc::clone(&policy), revisions);
        policy
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, (Arc<Policy>, [Revision; 4])> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PolicySource for PolicyIndex {
    fn current(&self) -> Arc<Policy> {
        {
            let current = self.read();
            if current.1 == self.revisions() && current.1 != [0; 4] {
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

    use krust_auth::UserInfo;
    use krust_store::Store;
    use serde_json::json;

    use super::*;
    use crate::watchcache::Shape;

    async fn wait_until(index: &PolicyIndex, what: impl Fn(&Policy) -> bool) -> bool {
        for _ in 0..200 {
            if what(&index.current()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn the_index_follows_rbac_writes_in_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(krust_store::embedded::EmbeddedStore::open(&dir.path().join("db")).unwrap());
        let prefixes = [ROLES, CLUSTER_ROLES, ROLE_BINDINGS, CLUSTER_ROLE_BINDINGS];
        let shapes = Shape::of_prefixes(&krust_api::Catalog::builtin(), &prefixes);
        let cache = WatchCache::start(Arc::clone(&store), shapes).await.unwrap();
        let index = PolicyIndex::new(&cache);
        assert!(index.current().is_empty());

        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "reader"},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "jane-reads", "namespace": "a"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
            "subjects": [{"kind": "User", "name": "jane"}]});
        store
            .create(&format!("{CLUSTER_ROLES}reader"), serde_json::to_vec(&role).unwrap())
            .await
            .unwrap();
        store
            .create(&format!("{ROLE_BINDINGS}a/jane-reads"), serde_json::to_vec(&binding).unwrap())
            .await
            .unwrap();
        let jane = UserInfo { name: "jane".into(), ..UserInfo::default() };
        let holds = |p: &Policy| !p.rules_for(&jane, "a").0.is_empty();
        assert!(wait_until(&index, holds).await, "the binding shows up");
        let first = index.current();
        assert!(Arc::ptr_eq(&first, &index.current()), "no change, no rebuild");

        store.delete(&format!("{ROLE_BINDINGS}a/jane-reads"), None).await.unwrap();
        assert!(wait_until(&index, |p| !holds(p)).await, "the deleted binding goes");
        let reader_kept = Arc::ptr_eq(
            first.cluster_role("reader").unwrap(),
            index.current().cluster_role("reader").unwrap(),
        );
        assert!(reader_kept, "an unchanged object is not decoded again");
    }
}
