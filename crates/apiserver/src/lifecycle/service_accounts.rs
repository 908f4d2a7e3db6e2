//! What every namespace holds for its pods, as upstream's `serviceaccount` and
//! `root-ca-cert-publisher` controllers keep it: the `default` ServiceAccount and the
//! `kube-root-ca.crt` ConfigMap with the cluster CA. Pods need both (the ServiceAccount
//! admission plugin refuses a pod whose account is missing and mounts the ConfigMap).
//!
//! Level-triggered: each pass looks at every active namespace and creates what is missing
//! (and puts back a changed CA), whatever woke it. Runs in-process for now; it moves to the
//! controllers crate (as an API client) when that crate exists.

use std::sync::Arc;
use std::time::Duration;

use krust_admission::service_account::{DEFAULT_SERVICE_ACCOUNT, ROOT_CA_CONFIG_MAP};
use krust_api::StatusError;
use krust_api::object::{meta_str, path};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::registry::{Subresource, WriteOptions};

/// The description upstream puts on the ConfigMap.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

const NAMESPACES: &str = "/registry/core/namespaces/";
const SERVICE_ACCOUNTS: &str = "/registry/core/serviceaccounts/";
const CONFIG_MAPS: &str = "/registry/core/configmaps/";

/// Runs passes for ever: whenever namespaces, service accounts or config maps changed, and
/// again after a failed pass.
pub async fn run(api: Arc<ApiServer>, ca_pem: String) {
    let cache = api.registry.cache();
    let caches: Vec<_> = [NAMESPACES, SERVICE_ACCOUNTS, CONFIG_MAPS]
        .iter()
        .filter_map(|p| cache.resource(p).cloned())
        .collect();
    if caches.len() != 3 {
        tracing::error!(
            "no namespace, serviceaccount or configmap cache; default accounts are off"
        );
        return;
    }
    let mut revision = cache.subscribe_revision();
    let mut seen = None;
    loop {
        let changed: Vec<_> = caches.iter().map(|c| c.snapshot().1).collect();
        if seen.as_ref() != Some(&changed) {
            seen = Some(changed);
            if let Err(e) = pass(&api, &ca_pem).await {
                tracing::warn!(error = %e.message, "default service account pass failed");
                seen = None;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), revision.changed()).await;
    }
}

/// One pass: the default account and the CA ConfigMap in every active namespace.
pub async fn pass(api: &ApiServer, ca_pem: &str) -> Result<(), StatusError> {
    let registry = &api.registry;
    let lookup = |plural: &str| {
        registry
            .catalog()
            .lookup("", "v1", plural)
            .copied()
            .ok_or_else(|| StatusError::internal(format!("the catalog has no {plural}")))
    };
    let (accounts, config_maps) = (lookup("serviceaccounts")?, lookup("configmaps")?);
    let cache = registry.cache();
    let snapshot = |prefix: &str| cache.resource(prefix).map(|c| c.snapshot().0);
    let (Some(namespaces), Some(sa), Some(cm)) =
        (snapshot(NAMESPACES), snapshot(SERVICE_ACCOUNTS), snapshot(CONFIG_MAPS))
    else {
        return Ok(());
    };
    for ns in namespaces.range(NAMESPACES, None) {
        let ns = ns.value();
        let terminating = ns.pointer("/metadata/deletionTimestamp").is_some()
            || path(&ns, "status.phase").and_then(Value::as_str) == Some("Terminating");
        let Some(name) = meta_str(&ns, "name").filter(|_| !terminating) else { continue };
        if sa.get(&format!("{SERVICE_ACCOUNTS}{name}/{DEFAULT_SERVICE_ACCOUNT}")).is_none() {
            let account = json!({
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": name},
            });
            ignore_gone(
                registry.create(&accounts, Some(name), account, WriteOptions::default()).await,
            )?;
        }
        let wanted = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": ROOT_CA_CONFIG_MAP, "namespace": name,
                "annotations": {"kubernetes.io/description": DESCRIPTION},
            },
            "data": {"ca.crt": ca_pem},
        });
        match cm.get(&format!("{CONFIG_MAPS}{name}/{ROOT_CA_CONFIG_MAP}")) {
            None => {
                let opts = WriteOptions::default();
                ignore_gone(registry.create(&config_maps, Some(name), wanted, opts).await)?;
            }
            Some(current)
                if current.value().pointer("/data/ca.crt").and_then(Value::as_str)
                    != Some(ca_pem) =>
            {
                let mut fixed = current.value();
                fixed["data"] = json!({"ca.crt": ca_pem});
                if let Some(meta) = fixed.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.remove("resourceVersion");
                }
                let opts = WriteOptions::default();
                let written = registry
                    .update(
                        &config_maps,
                        Some(name),
                        ROOT_CA_CONFIG_MAP,
                        Subresource::Main,
                        fixed,
                        opts,
                    )
                    .await;
                ignore_gone(written)?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A write that lost to the namespace going away, or to another writer, is no failure.
fn ignore_gone<T>(result: Result<T, StatusError>) -> Result<(), StatusError> {
    match result {
        Ok(_) => Ok(()),
        Err(e)
            if e.is_not_found()
                || e.is_already_exists()
                || e.is_conflict()
                || e.message.contains("being terminated") =>
        {
            Ok(())
        }
        Err(e) => Err(e),
    }
}
