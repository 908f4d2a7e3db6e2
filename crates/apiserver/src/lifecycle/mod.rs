//! The server's own background work: bootstrap objects, namespace finalization, compaction.

pub mod compaction;
pub mod namespace;

use krust_api::StatusError;
use serde_json::json;

use crate::registry::{Registry, WriteOptions};

/// The namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates the namespaces every cluster has, when absent.
pub async fn bootstrap(registry: &Registry) -> Result<(), StatusError> {
    let Some(info) = registry.catalog().lookup("", "v1", "namespaces").copied() else {
        return Err(StatusError::internal("the catalog has no namespaces"));
    };
    for name in SYSTEM_NAMESPACES {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match registry.create(&info, None, ns, WriteOptions::default()).await {
            Ok(_) => tracing::info!(namespace = name, "created"),
            Err(e) if e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
