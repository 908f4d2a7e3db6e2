//! Namespace finalization (upstream's namespace controller, run in-process until the
//! controllers crate exists): a namespace marked for deletion is emptied, resource by resource,
//! then its `kubernetes` finalizer is removed so the registry lets it go.
//!
//! Level-triggered: each pass looks at every terminating namespace, whatever event woke it.

use std::sync::Arc;
use std::time::Duration;

use krust_api::object::{meta_str, path};
use krust_api::{ResourceInfo, StatusError};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::registry::options::{ListOptions, Query};
use crate::registry::{DeleteOptions, Subresource, WriteOptions};

/// The finalizer this pass owns.
const FINALIZER: &str = "kubernetes";

/// Runs passes for ever: after every change the cache sees, and at least every second.
pub async fn run(api: Arc<ApiServer>) {
    let mut revision = api.registry.cache().subscribe_revision();
    loop {
        if let Err(e) = pass(&api).await {
            tracing::warn!(error = %e, "namespace finalization pass failed");
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), revision.changed()).await;
    }
}

fn list_all() -> Result<ListOptions, StatusError> {
    ListOptions::from_query(&Query::parse(Some("resourceVersion=0")), false)
}

/// One pass over every terminating namespace.
pub async fn pass(api: &ApiServer) -> Result<(), StatusError> {
    let registry = &api.registry;
    let Some(ns_info) = registry.catalog().lookup("", "v1", "namespaces").copied() else {
        return Ok(());
    };
    let namespaces = registry.list(&ns_info, None, &list_all()?).await?.items;
    for ns in namespaces {
        if ns.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        let Some(name) = meta_str(&ns, "name").map(str::to_string) else { continue };
        let holds = path(&ns, "spec.finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|v| v == FINALIZER));
        if !holds {
            continue;
        }
        if empty(api, &name).await? {
            let finalizers: Vec<Value> = path(&ns, "spec.finalizers")
                .and_then(Value::as_array)
                .map(|f| f.iter().filter(|v| *v != FINALIZER).cloned().collect())
                .unwrap_or_default();
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "spec": {"finalizers": finalizers}});
            registry
                .update(&ns_info, None, &name, Subresource::Finalize, body, WriteOptions::default())
                .await?;
            tracing::info!(namespace = %name, "namespace emptied and finalized");
        }
    }
    Ok(())
}

/// The namespaced resources, one per storage (shared storages are listed once).
fn namespaced_storages(api: &ApiServer) -> Vec<ResourceInfo> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for info in api.registry.catalog().entries() {
        if info.namespaced()
            && info.verbs.contains(&"deletecollection")
            && !seen.contains(&info.storage_prefix())
        {
            seen.push(info.storage_prefix());
            out.push(*info);
        }
    }
    out
}

/// Deletes what is left in `namespace`; answers whether nothing is left.
async fn empty(api: &ApiServer, namespace: &str) -> Result<bool, StatusError> {
    let mut empty = true;
    let opts =
        DeleteOptions { propagation_policy: Some("Background".into()), ..DeleteOptions::default() };
    for info in namespaced_storages(api) {
        let left =
            api.registry.delete_collection(&info, Some(namespace), &list_all()?, &opts).await?;
        if !left.is_empty() {
            // Deleted now or pending; look again on the next pass.
            let listed = api.registry.list(&info, Some(namespace), &list_all()?).await?;
            empty &= listed.items.is_empty();
        }
    }
    Ok(empty)
}
