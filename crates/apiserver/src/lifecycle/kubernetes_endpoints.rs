//! The endpoints of the `default/kubernetes` Service: every serving API server's advertised
//! address and port, as an Endpoints object and an EndpointSlice, so that pods reach the API
//! through the Service's cluster IP. As upstream's `lease` endpoint reconciler: each server
//! keeps a lease under `/registry/masterleases/<ip>` (renewed every 10 s, lasting 15 s; the
//! store has no TTLs, so the expiry is the value), and writes the addresses of the live leases.
//! A server that stops drops its own lease, and one that died drops out when its lease runs
//! out.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::ApiServer;
use crate::registry::{Registry, Subresource, WriteOptions};
use krust_api::StatusError;
use krust_store::StoreError;

/// Where the leases are kept.
const LEASES: &str = "/registry/masterleases/";
/// How long a lease lasts unless renewed.
const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often a serving server renews its lease and rewrites the endpoints.
const RENEW: Duration = Duration::from_secs(10);

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn internal(e: StoreError) -> StatusError {
    StatusError::internal(format!("the endpoint leases: {e}"))
}

/// Keeps this server's lease and the endpoints current, for ever.
pub async fn run(api: Arc<ApiServer>, ip: IpAddr, port: u16) {
    loop {
        tokio::time::sleep(RENEW).await;
        if let Err(e) = reconcile(&api.registry, ip, port, true).await {
            tracing::warn!(error = %e, "cannot renew the API server's endpoint lease");
        }
    }
}

/// Renews this server's lease (`serving`) or drops it, drops expired ones, and writes the
/// endpoints: the addresses of the live leases.
pub async fn reconcile(
    registry: &Registry,
    ip: IpAddr,
    port: u16,
    serving: bool,
) -> Result<(), StatusError> {
    let store = registry.store();
    let key = format!("{LEASES}{ip}");
    let now = now_ms();
    if serving {
        let expiry = (now + LEASE_TTL.as_millis() as u64).to_string().into_bytes();
        match store.get(&key).await.map_err(internal)? {
            Some(current) => {
                store.update(&key, expiry, current.mod_revision).await.map_err(internal)?;
            }
            None => match store.create(&key, expiry).await {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(internal(e)),
            },
        }
    } else {
        match store.delete(&key, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(internal(e)),
        }
    }
    let mut live: Vec<IpAddr> = Vec::new();
    let page = store.list(LEASES, None, 0, None).await.map_err(internal)?;
    for lease in page.items {
        let Some(address) = lease.key.strip_prefix(LEASES).and_then(|a| a.parse().ok()) else {
            continue;
        };
        let expiry: u64 =
            std::str::from_utf8(&lease.value).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        if expiry > now {
            live.push(address);
        } else {
            // A server that died: its lease goes (unless it was just renewed).
            let _ = store.delete(&lease.key, Some(lease.mod_revision)).await;
        }
    }
    live.sort();
    write(registry, &live, port).await
}

/// Writes both objects unless they already name `addresses` on `port`.
pub async fn write(
    registry: &Registry,
    addresses: &[IpAddr],
    port: u16,
) -> Result<(), StatusError> {
    let labels = json!({"endpointslice.kubernetes.io/skip-mirror": "true"});
    let subsets = if addresses.is_empty() {
        json!([])
    } else {
        json!([{
            "addresses": addresses.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        }])
    };
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": labels},
        "subsets": subsets,
    });
    let ipv4 = addresses.first().is_none_or(|ip| ip.is_ipv4());
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {
            "kubernetes.io/service-name": "kubernetes",
        }},
        "addressType": if ipv4 { "IPv4" } else { "IPv6" },
        "endpoints": addresses
            .iter()
            .filter(|ip| ip.is_ipv4() == ipv4)
            .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
            .collect::<Vec<_>>(),
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
