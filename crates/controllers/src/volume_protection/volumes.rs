//! The PV protection controller (upstream's `pv-protection-controller`): a volume being
//! deleted keeps `kubernetes.io/pv-protection` while it is bound to a claim (its phase is
//! `Bound`, which the volume binder keeps).

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::runtime::controller::{Action, Controller};
use kube::{Api, Client, ResourceExt};

use krust_client::Informer;

use super::{change, protected, write};

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "pv-protection-controller";

/// The finalizer it keeps on volumes (the admission plugin's).
pub const FINALIZER: &str = "kubernetes.io/pv-protection";

/// Whether `volume` is in use: bound to a claim.
pub fn bound(volume: &PersistentVolume) -> bool {
    volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

/// Runs the controller over the shared volume cache, writing as `client`.
pub fn run(
    client: Client,
    volumes: &mut Informer<PersistentVolume>,
) -> impl Future<Output = ()> + Send + 'static {
    Controller::for_shared_stream(volumes.subscribe(), volumes.store())
        .with_config(crate::controller_config())
        .run(
            reconcile,
            |volume, error, _| super::retry(&volume.name_any(), error),
            Arc::new(client),
        )
        .for_each(|_| futures::future::ready(()))
}

async fn reconcile(
    volume: Arc<PersistentVolume>,
    client: Arc<Client>,
) -> Result<Action, kube::Error> {
    let deleting = volume.metadata.deletion_timestamp.is_some();
    let change = change(deleting, protected(volume.as_ref(), FINALIZER), bound(&volume));
    tracing::debug!(volume = %volume.name_any(), ?change, "pv protection");
    let volumes: Api<PersistentVolume> = Api::all(Client::clone(&client));
    write(&volumes, volume.as_ref(), FINALIZER, change).await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PersistentVolumeStatus;

    use super::*;

    #[test]
    fn a_volume_is_in_use_while_bound() {
        let with_phase = |phase: &str| PersistentVolume {
            status: Some(PersistentVolumeStatus {
                phase: Some(phase.into()),
                ..PersistentVolumeStatus::default()
            }),
            ..PersistentVolume::default()
        };
        assert!(bound(&with_phase("Bound")));
        assert!(!bound(&with_phase("Released")));
        assert!(!bound(&with_phase("Available")));
        assert!(!bound(&PersistentVolume::default()));
    }
}
