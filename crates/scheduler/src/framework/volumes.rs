//! The scheduler's view of storage: PersistentVolumeClaims, PersistentVolumes and
//! StorageClasses as the watches last reported them, for the VolumeBinding plugin.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;

/// Claims by `namespace/name`, volumes and classes by name.
#[derive(Debug, Default, Clone)]
pub struct Volumes {
    /// Claims by `namespace/name`.
    pub claims: HashMap<String, Arc<PersistentVolumeClaim>>,
    /// Volumes by name, in name order.
    pub volumes: BTreeMap<String, Arc<PersistentVolume>>,
    /// Storage classes by name.
    pub classes: HashMap<String, Arc<StorageClass>>,
}

impl Volumes {
    /// The claim `name` in `namespace`.
    pub fn claim(&self, namespace: &str, name: &str) -> Option<&Arc<PersistentVolumeClaim>> {
        self.claims.get(&format!("{namespace}/{name}"))
    }

    /// Records a claim as now seen.
    pub fn set_claim(&mut self, claim: PersistentVolumeClaim) {
        let meta = &claim.metadata;
        let key = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        );
        self.claims.insert(key, Arc::new(claim));
    }

    /// Forgets a claim.
    pub fn remove_claim(&mut self, claim: &PersistentVolumeClaim) {
        let meta = &claim.metadata;
        let key = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        );
        self.claims.remove(&key);
    }

    /// Records a volume as now seen.
    pub fn set_volume(&mut self, volume: PersistentVolume) {
        let name = volume.metadata.name.clone().unwrap_or_default();
        self.volumes.insert(name, Arc::new(volume));
    }

    /// Forgets a volume.
    pub fn remove_volume(&mut self, volume: &PersistentVolume) {
        self.volumes.remove(volume.metadata.name.as_deref().unwrap_or_default());
    }

    /// Records a storage class as now seen.
    pub fn set_class(&mut self, class: StorageClass) {
        let name = class.metadata.name.clone().unwrap_or_default();
        self.classes.insert(name, Arc::new(class));
    }

    /// Forgets a storage class.
    pub fn remove_class(&mut self, class: &StorageClass) {
        self.classes.remove(class.metadata.name.as_deref().unwrap_or_default());
    }
}
