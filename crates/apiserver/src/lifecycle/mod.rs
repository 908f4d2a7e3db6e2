//! The server's own background work: bootstrap objects (namespaces, the default RBAC policy,
//! the system PriorityClasses), serving custom resources, ClusterRole aggregation, ResourceQuota usage, the CSR signer,
//! compaction. Namespace finalization and each namespace's default ServiceAccount and CA
//! ConfigMap are the controllers' (`krust-controllers`), through the API.

pub mod compaction;
pub mod csr_signer;
pub mod custom_resources;
pub mod kubernetes_endpoints;
pub mod priority;
pub mod rbac;
pub mod resource_quota;

use krust_api::StatusError;
use serde_json::json;

use crate::registry::{Registry, ServiceRanges, WriteOptions};

/// The namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the namespaces every cluster has, the `kubernetes` service and the cluster DNS
/// service (`kube-system/kube-dns`, at the service range's tenth address), when absent.
pub async fn bootstrap(
    registry: &Registry,
    ranges: ServiceRanges,
    port: u16,
) -> Result<(), StatusError> {
    let Some(info) = registry.catalog().lookup("", "v1", "namespaces") else {
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
    let Some(services) = registry.catalog().lookup("", "v1", "services") else {
        return Err(StatusError::internal("the catalog has no services"));
    };
    let kubernetes = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ranges.first().map(|ip| ip.to_string()).unwrap_or_default(),
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            "sessionAffinity": "None",
        },
    });
    let mut wanted = vec![("default", "kubernetes", kubernetes)];
    // The node agents serve cluster DNS on an IPv4 address.
    if let Some(primary) = ranges.dns().iter().find(|ip| ip.is_ipv4()) {
        // The cluster DNS: served by every node's agent on this address (no selector, no
        // endpoints), so that pods' `nameserver` is a Service as upstream users expect.
        let dns = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns", "kubernetes.io/cluster-service": "true", "kubernetes.io/name": "KubeDNS"}},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": primary.to_string(),
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
                "sessionAffinity": "None",
            },
        });
        wanted.push(("kube-system", "kube-dns", dns));
    }
    for (namespace, name, service) in wanted {
        match registry.create(&services, Some(namespace), service, WriteOptions::default()).await {
            Ok(_) => tracing::info!(namespace, name, "created service"),
            Err(e) if e.is_already_exists() => {}
            Err(e)
                if e.reason == krust_api::Reason::Invalid
                    && e.message.contains("already allocated") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
