//! The default RBAC policy at start, and ClusterRole aggregation for ever (upstream runs the
//! aggregation in the controller-manager; it moves to the controllers crate with the others).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use krust_api::{ResourceInfo, StatusError};
use krust_auth::rbac::aggregation::{aggregated_rules, needs_update};
use krust_auth::rbac::bootstrap::{self, BindingReconcile};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ApiServer;
use crate::authz::index::CLUSTER_ROLES;
use crate::registry::{DeleteOptions, Registry, Subresource, WriteOptions};

fn info(registry: &Registry, plural: &str) -> Result<ResourceInfo, StatusError> {
    registry
        .catalog()
        .lookup(krust_auth::rbac::GROUP, "v1", plural)
        .ok_or_else(|| StatusError::internal(format!("the catalog has no {plural}")))
}

fn to_value<T: Serialize>(object: &T) -> Result<Value, StatusError> {
    serde_json::to_value(object).map_err(|e| StatusError::internal(e.to_string()))
}

fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, StatusError> {
    serde_json::from_value(value).map_err(|e| StatusError::internal(e.to_string()))
}

/// Reads a default object by name; `None` when it does not exist.
async fn existing<T: DeserializeOwned>(
    registry: &Registry,
    info: &ResourceInfo,
    name: &str,
) -> Result<Option<T>, StatusError> {
    match registry.get(info, None, name).await {
        Ok(value) => from_value(value).map(Some),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the default ClusterRoles and ClusterRoleBindings: creates the missing ones and adds
/// what the existing ones lack (unless annotated `autoupdate: "false"`), as upstream's
/// `rbac/bootstrap-roles` start hook does.
pub async fn bootstrap_policy(registry: &Registry) -> Result<(), StatusError> {
    let roles = info(registry, "clusterroles")?;
    let opts = WriteOptions::default;
    for expected in bootstrap::cluster_roles() {
        let name = expected.metadata.name.clone().unwrap_or_default();
        match existing::<ClusterRole>(registry, &roles, &name).await? {
            None => match registry.create(&roles, None, to_value(&expected)?, opts()).await {
                Ok(_) => tracing::debug!(clusterrole = %name, "created"),
                Err(e) if e.is_already_exists() => {}
                Err(e) => return Err(e),
            },
            Some(current) => {
                if let Some(fixed) = bootstrap::reconcile_cluster_role(&current, &expected) {
                    let body = to_value(&fixed)?;
                    registry.update(&roles, None, &name, Subresource::Main, body, opts()).await?;
                    tracing::info!(clusterrole = %name, "reconciled");
                }
            }
        }
    }
    let bindings = info(registry, "clusterrolebindings")?;
    for expected in bootstrap::cluster_role_bindings() {
        let name = expected.metadata.name.clone().unwrap_or_default();
        let Some(current) = existing::<ClusterRoleBinding>(registry, &bindings, &name).await?
        else {
            match registry.create(&bindings, None, to_value(&expected)?, opts()).await {
                Ok(_) => tracing::debug!(clusterrolebinding = %name, "created"),
                Err(e) if e.is_already_exists() => {}
                Err(e) => return Err(e),
            }
            continue;
        };
        match bootstrap::reconcile_binding(&current, &expected) {
            BindingReconcile::Keep => {}
            BindingReconcile::Update(fixed) => {
                let body = to_value(&fixed)?;
                registry.update(&bindings, None, &name, Subresource::Main, body, opts()).await?;
                tracing::info!(clusterrolebinding = %name, "reconciled");
            }
            BindingReconcile::Recreate(fixed) => {
                registry.delete(&bindings, None, &name, &DeleteOptions::default()).await?;
                registry.create(&bindings, None, to_value(&fixed)?, opts()).await?;
                tracing::info!(clusterrolebinding = %name, "recreated with its default roleRef");
            }
        }
    }
    Ok(())
}

/// One aggregation pass: writes the aggregated rules into every ClusterRole with an
/// `aggregationRule` whose rules differ. Answers how many were written.
pub async fn aggregate(api: &ApiServer) -> Result<usize, StatusError> {
    let info = info(&api.registry, "clusterroles")?;
    let policy = api.authz.policy();
    let all: Vec<&ClusterRole> = policy.cluster_roles().map(Arc::as_ref).collect();
    let mut written = 0;
    for role in &all {
        let Some(rules) = aggregated_rules(role, &all) else { continue };
        if !needs_update(role, &rules) {
            continue;
        }
        let name = role.metadata.name.clone().unwrap_or_default();
        let mut updated = (*role).clone();
        updated.rules = Some(rules);
        let body = to_value(&updated)?;
        api.registry
            .update(&info, None, &name, Subresource::Main, body, WriteOptions::default())
            .await?;
        tracing::debug!(clusterrole = %name, "aggregated");
        written += 1;
    }
    Ok(written)
}

/// Runs aggregation passes for ever: whenever ClusterRoles changed, and again after a
/// failed pass (a conflict with a concurrent write is retried from the newer state).
pub async fn run_aggregation(api: Arc<ApiServer>) {
    let Some(cache) = api.registry.cache().resource(CLUSTER_ROLES) else {
        tracing::error!("no clusterrole cache; aggregation is off");
        return;
    };
    let mut revision = api.registry.cache().subscribe_revision();
    let mut seen = None;
    loop {
        let changed = cache.snapshot().1;
        if seen != Some(changed) {
            seen = Some(changed);
            if let Err(e) = aggregate(&api).await {
                if !(e.is_conflict() || e.is_already_exists() || e.is_not_found()) {
                    tracing::warn!(error = %e.message, "clusterrole aggregation failed");
                }
                seen = None;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), revision.changed()).await;
    }
}
