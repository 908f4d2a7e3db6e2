//! What this controller wrote to slices and its cache has not shown yet (upstream's
//! `EndpointSliceTracker`). Acting on a cache that misses a slice just created would create
//! its endpoints again; so a service waits until every slice it wrote shows at least the
//! generation written, and every slice it deleted is gone. Entries older than [`TIMEOUT`]
//! are dropped, so that a lost event cannot stall a service.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1::EndpointSlice;

/// How long a write is waited for at most.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Slice name -> the generation written, `None` if deleted.
type Writes = HashMap<String, Option<i64>>;

/// Per service (`namespace/name`): when it last wrote, and what.
#[derive(Debug, Default)]
pub struct Tracker {
    services: Mutex<HashMap<String, (Instant, Writes)>>,
}

impl Tracker {
    /// `service` wrote `slice` (as answered by the server).
    pub fn written(&self, service: &str, slice: &EndpointSlice) {
        let Some(name) = slice.metadata.name.clone() else { return };
        self.record(service, name, Some(slice.metadata.generation.unwrap_or_default()));
    }

    /// `service` deleted the slice `name`.
    pub fn deleted(&self, service: &str, name: &str) {
        self.record(service, name.to_string(), None);
    }

    fn record(&self, service: &str, name: String, generation: Option<i64>) {
        let Ok(mut services) = self.services.lock() else { return };
        let entry =
            services.entry(service.to_string()).or_insert_with(|| (Instant::now(), HashMap::new()));
        entry.0 = Instant::now();
        entry.1.insert(name, generation);
    }

    /// Whether `cached` (the service's slices in the cache) misses something `service`
    /// wrote; what shows is forgotten.
    pub fn stale(&self, service: &str, cached: &[&EndpointSlice]) -> bool {
        let Ok(mut services) = self.services.lock() else { return false };
        let Some((since, writes)) = services.get_mut(service) else { return false };
        if since.elapsed() > TIMEOUT {
            services.remove(service);
            return false;
        }
        writes.retain(|name, generation| {
            let shown = cached.iter().find(|s| s.metadata.name.as_deref() == Some(name));
            match (generation, shown) {
                (Some(g), Some(s)) => s.metadata.generation.unwrap_or_default() < *g,
                (Some(_), None) => true,
                (None, shown) => shown.is_some(),
            }
        });
        let stale = !writes.is_empty();
        if !stale {
            services.remove(service);
        }
        stale
    }

    /// Forgets a service (it is gone).
    pub fn forget(&self, service: &str) {
        if let Ok(mut services) = self.services.lock() {
            services.remove(service);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn slice(name: &str, generation: i64) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                name: Some(name.into()),
                generation: Some(generation),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: Vec::new(),
            ports: None,
        }
    }

    #[test]
    fn waits_for_writes_and_deletions_to_show() {
        let tracker = Tracker::default();
        assert!(!tracker.stale("ns/web", &[]));
        tracker.written("ns/web", &slice("web-a", 2));
        tracker.deleted("ns/web", "web-b");
        let (old, new, gone) = (slice("web-a", 1), slice("web-a", 2), slice("web-b", 1));
        assert!(tracker.stale("ns/web", &[&gone]));
        assert!(tracker.stale("ns/web", &[&old, &gone]));
        assert!(tracker.stale("ns/web", &[&new, &gone]));
        assert!(!tracker.stale("ns/web", &[&new]));
        assert!(!tracker.stale("ns/web", &[]), "what showed is forgotten");
    }
}
