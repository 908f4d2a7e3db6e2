//! Serving custom resources: upstream apiextensions-apiserver's naming, establishing and
//! finalizer controllers in one loop over the CustomResourceDefinitions in the watch cache.
//!
//! For each definition it checks its names against the others and the built-in resources,
//! caches its storage and puts its served versions into the catalog (the resource is served
//! from then on, with no restart), then writes `status.acceptedNames` and the conditions
//! `NamesAccepted` and `Established`. A definition being deleted stops taking new objects,
//! has every object of it deleted, then loses the cleanup finalizer; once it is gone its
//! resource leaves the catalog and the cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use krust_api::catalog::custom::{self, CLEANUP_FINALIZER};
use krust_api::catalog::{Conversion, Shared};
use krust_api::object::{meta_str, name};
use krust_api::{ResourceInfo, StatusError};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::conversion_webhook::{WebhookConfig, WebhookConversion};
use crate::registry::{DeleteOptions, Registry, Subresource, WriteOptions};
use crate::watchcache::Shape;

const DEFINITIONS: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// What the loop has put in place for one definition.
struct Served {
    /// The definition's `spec` as JSON, to see when it changes.
    spec: String,
    /// Its storage prefix.
    prefix: String,
}

/// Serves the definitions stored now, before the server answers requests, then follows
/// their changes for ever.
pub async fn run(api: Arc<ApiServer>) {
    let mut served = HashMap::new();
    let mut revision = api.registry.cache().subscribe_revision();
    let mut seen = None;
    loop {
        let Some(cache) = api.registry.cache().resource(DEFINITIONS) else {
            tracing::error!("no customresourcedefinition cache; custom resources are off");
            return;
        };
        let changed = cache.snapshot().1;
        if seen != Some(changed) {
            seen = Some(changed);
            if let Err(e) = reconcile(&api.registry, &mut served).await {
                if !(e.is_conflict() || e.is_not_found()) {
                    tracing::warn!(error = %e.message, "serving custom resources failed");
                }
                seen = None;
            }
        }
        // A definition being deleted waits for its objects, whose changes are not its own:
        // look again soon.
        let wait = if api.registry.catalog().any_terminating() {
            seen = None;
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        let _ = tokio::time::timeout(wait, revision.changed()).await;
    }
}

/// Serves what the definitions in the cache say now; answers once the catalog and the cache
/// hold every established definition's resource.
pub async fn serve_stored(registry: &Registry) -> Result<(), StatusError> {
    if let Err(e) = reconcile(registry, &mut HashMap::new()).await {
        // A definition that cannot be served now is retried by `run`; the others are served.
        tracing::warn!(error = %e.message, "serving stored custom resources");
    }
    Ok(())
}

async fn reconcile(
    registry: &Registry,
    served: &mut HashMap<String, Served>,
) -> Result<(), StatusError> {
    let Some(cache) = registry.cache().resource(DEFINITIONS) else {
        return Err(StatusError::internal("no customresourcedefinition cache"));
    };
    let definitions: Vec<Value> =
        cache.snapshot().0.range(DEFINITIONS, None).map(|o| o.value()).collect();
    let mut first_error = None;
    for definition in &definitions {
        if let Err(e) = reconcile_one(registry, served, definition, &definitions).await {
            first_error.get_or_insert(e);
        }
    }
    let present: Vec<&str> = definitions.iter().filter_map(name).collect();
    let gone: Vec<String> =
        served.keys().filter(|n| !present.contains(&n.as_str())).cloned().collect();
    for definition in gone {
        if let Some(old) = served.remove(&definition) {
            unserve(registry, &definition, &old.prefix).await?;
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn reconcile_one(
    registry: &Registry,
    served: &mut HashMap<String, Served>,
    definition: &Value,
    all: &[Value],
) -> Result<(), StatusError> {
    let Some(def_name) = name(definition).map(str::to_string) else { return Ok(()) };
    let spec = definition.get("spec").map(Value::to_string).unwrap_or_default();
    let names = custom::accept_names(definition, all, registry.catalog());
    if names.conflict.is_none() && served.get(&def_name).is_none_or(|s| s.spec != spec) {
        match custom::entries(definition) {
            Ok(mut entries) => {
                with_webhook_conversion(registry, definition, &mut entries);
                let storage = storage_entry(&entries);
                let prefix = storage.as_ref().map(ResourceInfo::storage_prefix);
                if let Some(storage) = storage {
                    registry
                        .cache()
                        .add(Shape::new(storage))
                        .await
                        .map_err(|e| StatusError::internal(format!("caching {def_name}: {e}")))?;
                }
                registry.catalog().set_custom(&def_name, entries);
                tracing::info!(definition = %def_name, "serving custom resource");
                if let Some(prefix) = prefix {
                    served.insert(def_name.clone(), Served { spec, prefix });
                }
            }
            Err(errors) => {
                let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
                tracing::warn!(definition = %def_name, errors = %text.join("; "), "not served");
            }
        }
    }
    let terminating = meta_str(definition, "deletionTimestamp").is_some();
    registry.catalog().set_terminating(&def_name, terminating);
    if terminating {
        return finalize(registry, definition, &def_name).await;
    }
    write_status(registry, definition, &names).await
}

/// Gives the served versions of a definition whose conversion strategy is `Webhook` the
/// conversion through its webhook (the storage version needs none).
fn with_webhook_conversion(registry: &Registry, definition: &Value, entries: &mut [ResourceInfo]) {
    let Some(config) = WebhookConfig::of_definition(definition) else { return };
    for entry in entries.iter_mut().filter(|e| e.conversion.is_some()) {
        let conversion = WebhookConversion::new(
            entry.api_version(),
            entry.storage.api_version.to_string(),
            config.clone(),
            registry.conversion_webhook_context(),
        );
        entry.conversion = Some(Shared::Owned(Arc::new(conversion) as Arc<dyn Conversion>));
    }
}

/// The catalog entry objects are stored as: the storage version's, whether it is served or
/// not (a definition always has one).
fn storage_entry(entries: &[ResourceInfo]) -> Option<ResourceInfo> {
    let storage = entries.first()?.storage.api_version;
    if let Some(entry) = entries.iter().find(|e| e.api_version() == storage) {
        return Some(entry.clone());
    }
    // The storage version is not served: store with a served entry's names and no
    // conversion.
    let mut entry = entries.first()?.clone();
    entry.version = storage.rsplit('/').next().unwrap_or(entry.version);
    entry.conversion = None;
    Some(entry)
}

async fn unserve(registry: &Registry, definition: &str, prefix: &str) -> Result<(), StatusError> {
    registry.catalog().set_custom(definition, Vec::new());
    registry.catalog().set_terminating(definition, false);
    registry
        .cache()
        .remove(prefix)
        .await
        .map_err(|e| StatusError::internal(format!("uncaching {definition}: {e}")))?;
    tracing::info!(definition, "custom resource no longer served");
    Ok(())
}

/// Deletes every object of a definition being deleted, then removes its cleanup finalizer.
async fn finalize(
    registry: &Registry,
    definition: &Value,
    def_name: &str,
) -> Result<(), StatusError> {
    let finalizers = definition.pointer("/metadata/finalizers").and_then(Value::as_array);
    if !finalizers.is_some_and(|f| f.iter().any(|v| v.as_str() == Some(CLEANUP_FINALIZER))) {
        return Ok(());
    }
    // The storage version's entry: deleting needs no conversion (upstream's finalizer too).
    let info = storage_entry(&registry.catalog().custom(def_name));
    let mut remaining = 0;
    if let Some(info) = &info
        && let Some(cache) = registry.cache().resource(&info.storage_prefix())
    {
        let objects: Vec<Value> =
            cache.snapshot().0.range(&info.storage_prefix(), None).map(|o| o.value()).collect();
        for object in &objects {
            remaining += 1;
            if meta_str(object, "deletionTimestamp").is_some() {
                continue;
            }
            let name = meta_str(object, "name").unwrap_or_default();
            let namespace = meta_str(object, "namespace");
            match registry.delete(info, namespace, name, &DeleteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        tracing::debug!(definition = def_name, remaining, "deleting custom resources");
        let status = with_condition(
            definition,
            condition(
                "Terminating",
                "True",
                "InstanceDeletionInProgress",
                "CustomResource deletion is in progress",
            ),
        );
        return update_status(registry, def_name, definition, status).await;
    }
    let mut updated = definition.clone();
    if let Some(list) = updated.pointer_mut("/metadata/finalizers").and_then(Value::as_array_mut) {
        list.retain(|v| v.as_str() != Some(CLEANUP_FINALIZER));
    }
    let info = definitions_info(registry)?;
    registry
        .update(&info, None, def_name, Subresource::Main, updated, WriteOptions::default())
        .await?;
    Ok(())
}

fn definitions_info(registry: &Registry) -> Result<ResourceInfo, StatusError> {
    registry
        .catalog()
        .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| StatusError::internal("the catalog has no customresourcedefinitions"))
}

/// A condition as upstream writes them.
fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message})
}

/// The definition's status with `new` in place of its condition of the same type; the
/// transition time kept when the status did not change.
fn with_condition(definition: &Value, mut new: Value) -> Value {
    let mut status = definition.get("status").cloned().unwrap_or_else(|| json!({}));
    let now = crate::registry::timestamp(Utc::now());
    let conditions = status
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])))
        .and_then(Value::as_array_mut);
    let Some(conditions) = conditions else { return status };
    let kind = new["type"].clone();
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(old) => {
            let same = old["status"] == new["status"];
            new["lastTransitionTime"] = if same {
                old.get("lastTransitionTime").cloned().unwrap_or_else(|| json!(now))
            } else {
                json!(now)
            };
            *old = new;
        }
        None => {
            new["lastTransitionTime"] = json!(now);
            conditions.push(new);
        }
    }
    status
}

/// Writes `status.acceptedNames` and the conditions `NamesAccepted` and `Established`.
async fn write_status(
    registry: &Registry,
    definition: &Value,
    names: &custom::NamesVerdict,
) -> Result<(), StatusError> {
    let def_name = name(definition).unwrap_or_default().to_string();
    let mut current = definition.clone();
    current["status"]["acceptedNames"] = names.accepted.clone();
    let status = match &names.conflict {
        None => {
            let accepted = condition("NamesAccepted", "True", "NoConflicts", "no conflicts found");
            current["status"] = with_condition(&current, accepted);
            let established = condition(
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
            with_condition(&current, established)
        }
        Some((reason, message)) => {
            current["status"] =
                with_condition(&current, condition("NamesAccepted", "False", reason, message));
            let established =
                definition.pointer("/status/conditions").and_then(Value::as_array).is_some_and(
                    |c| c.iter().any(|c| c["type"] == "Established" && c["status"] == "True"),
                );
            if established {
                current["status"].clone()
            } else {
                with_condition(
                    &current,
                    condition("Established", "False", "NotAccepted", "not all names are accepted"),
                )
            }
        }
    };
    update_status(registry, &def_name, definition, status).await
}

async fn update_status(
    registry: &Registry,
    def_name: &str,
    definition: &Value,
    status: Value,
) -> Result<(), StatusError> {
    if definition.get("status") == Some(&status) {
        return Ok(());
    }
    let mut updated = definition.clone();
    updated["status"] = status;
    let info = definitions_info(registry)?;
    registry
        .update(&info, None, def_name, Subresource::Status, updated, WriteOptions::default())
        .await?;
    Ok(())
}
