//! The endpoints of the `default/kubernetes` Service: this server's advertised address and
//! port, as an Endpoints object and an EndpointSlice (upstream's endpoint reconciler), so that
//! pods reach the API through the Service's cluster IP.

use std::net::IpAddr;

use serde_json::{Value, json};

use crate::registry::{Registry, Subresource, WriteOptions};
use krust_api::StatusError;

/// Writes both objects unless they already say `ip:port`.
pub async fn write(registry: &Registry, ip: IpAddr, port: u16) -> Result<(), StatusError> {
    let labels = json!({"endpointslice.kubernetes.io/skip-mirror": "true"});
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
        "subsets": [{
            "addresses": [{"ip": ip.to_string()}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {
            "kubernetes.io/service-name": "kubernetes",
        }},
        "addressType": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    put(registry, ("", "v1", "endpoints"), endpoints, "subsets").await?;
    put(registry, ("discovery.k8s.io", "v1", "endpointslices"), slice, "endpoints").await
}

/// Creates `desired`, or replaces the existing object when its `field` differs.
async fn put(
    registry: &Registry,
    (group, version, plural): (&str, &str, &str),
    mut desired: Value,
    field: &str,
) -> Result<(), StatusError> {
    let Some(info) = registry.catalog().lookup(group, version, plural).copied() else {
        return Err(StatusError::internal(format!("the catalog has no {plural}")));
    };
    match registry.get(&info, Some("default"), "kubernetes").await {
        Ok(current) if current.get(field) == desired.get(field) => Ok(()),
        Ok(current) => {
            desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
            let opts = WriteOptions::default();
            registry
                .update(&info, Some("default"), "kubernetes", Subresource::Main, desired, opts)
                .await?;
            tracing::info!(resource = plural, "updated default/kubernetes");
            Ok(())
        }
        Err(e) if e.is_not_found() => {
            match registry.create(&info, Some("default"), desired, WriteOptions::default()).await {
                Ok(_) => tracing::info!(resource = plural, "created default/kubernetes"),
                Err(e) if e.is_already_exists() => {}
                Err(e) => return Err(e),
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}
