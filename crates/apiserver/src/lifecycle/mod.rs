//! The server's own background work: bootstrap objects (namespaces, the default RBAC policy,
//! the system PriorityClasses), ClusterRole aggregation, ResourceQuota usage, the CSR signer,
//! compaction. Namespace finalization and each namespace's default ServiceAccount and CA
//! ConfigMap are the controllers' (`krust-controllers`), through the API.

pub mod compaction;
pub mod csr_signer;
pub mod priority;
pub mod rbac;
pub mod resource_quota;

use krust_api::StatusError;
use serde_json::json;

use crate::registry::{Registry, ServiceRanges, WriteOptions};

/// The namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the namespaces every cluster has, and the `kubernetes` service, when absent.
pub async fn bootstrap(
    registry: &Registry,
    ranges: ServiceRanges,
    port: u16,
) -> Result<(), StatusError> {
    let Some(info) = registry.catalog().lookup("", "v1", "namespaces").copied() else {
        return Err(StatusError::internal("the catalog has no namespaces"));
    };
    for name in SYSTEM_NAMESPACES {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match registry.create(&info, None, ns, WriteOptions::default()).await {
            Ok(_) => tracing::info!(namespace = name, "created"),
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
    }
    let Some(services) = registry.catalog().lookup("", "v1", "services").copied() else {
        return Err(StatusError::internal("the catalog has no services"));
    };
    let kubernetes = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ranges.first().to_string(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
        },
    });
    match registry.create(&services, Some("default"), kubernetes, WriteOptions::default()).await {
        Ok(_) => tracing::info!("created service default/kubernetes"),
        Err(e) if e.is_already_exists() => {}
        Err(e)
            if e.reason == krust_api::Reason::Invalid
                && e.message.contains("already allocated") => {}
        Err(e) => return Err(e),
    }
    Ok(())
}
