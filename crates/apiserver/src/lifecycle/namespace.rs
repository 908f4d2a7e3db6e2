//! Namespace finalization (upstream's namespace controller, run in-process until the
//! controllers crate exists): a namespace marked for deletion is emptied, resource by resource,
//! then its `kubernetes` finalizer is removed so the registry lets it go.
//!
//! Level-triggered: each pass looks at every terminating namespace, whatever event woke it.

use std::collections::BTreeMap;
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

/// Runs passes for ever: when a namespace changed, and every second while one is terminating
/// (its contents may have gone meanwhile). Other writes do not wake it.
pub async fn run(api: Arc<ApiServer>) {
    let Some(namespaces) = api.registry.cache().resource("/registry/core/namespaces/").cloned()
    else {
        tracing::error!("no namespace cache; namespace finalization is off");
        return;
    };
    let mut revision = api.registry.cache().subscribe_revision();
    let mut seen = None;
    let mut terminating = false;
    loop {
        let changed = namespaces.snapshot().1;
        if terminating || seen != Some(changed) {
            seen = Some(changed);
            match pass(&api).await {
                Ok(any) => terminating = any,
                Err(e) => tracing::warn!(error = %e, "namespace finalization pass failed"),
            }
        }
        let wait = if terminating { Duration::from_secs(1) } else { Duration::from_secs(5) };
        let _ = tokio::time::timeout(wait, revision.changed()).await;
    }
}

fn list_all() -> Result<ListOptions, StatusError> {
    ListOptions::from_query(&Query::parse(Some("resourceVersion=0")), false)
}

/// One pass over every terminating namespace; answers whether any is left terminating.
pub async fn pass(api: &ApiServer) -> Result<bool, StatusError> {
    let registry = &api.registry;
    let Some(ns_info) = registry.catalog().lookup("", "v1", "namespaces").copied() else {
        return Ok(false);
    };
    let mut terminating = false;
    let namespaces = registry.list(&ns_info, None, &list_all()?).await?.items.into_values();
    for ns in namespaces {
        if ns.pointer("/metadata/deletionTimestamp").is_none() {
            continue;
        }
        terminating = true;
        let Some(name) = meta_str(&ns, "name").map(str::to_string) else { continue };
        let holds = path(&ns, "spec.finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|v| v == FINALIZER));
        if !holds {
            continue;
        }
        let remaining = empty(api, &name).await?;
        if !remaining.is_empty() {
            report(api, &ns_info, &ns, &remaining).await?;
            continue;
        }
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
    Ok(terminating)
}

/// Writes the conditions that say what blocks the deletion, when they changed.
async fn report(
    api: &ApiServer,
    info: &ResourceInfo,
    ns: &Value,
    remaining: &Remaining,
) -> Result<(), StatusError> {
    let now = crate::registry::timestamp(chrono::Utc::now());
    let conditions = remaining.conditions(&now);
    let unchanged = |old: &Value| {
        let strip = |v: &Value| {
            v.as_array().map(|a| {
                a.iter()
                    .map(|c| (c["type"].clone(), c["status"].clone(), c["message"].clone()))
                    .collect::<Vec<_>>()
            })
        };
        strip(old) == strip(&conditions)
    };
    if ns.pointer("/status/conditions").is_some_and(unchanged) {
        return Ok(());
    }
    let mut updated = ns.clone();
    updated["status"]["conditions"] = conditions;
    let name = meta_str(ns, "name").unwrap_or_default().to_string();
    match api
        .registry
        .update(info, None, &name, Subresource::Status, updated, WriteOptions::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_conflict() || e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
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

/// What is left in a namespace after a deletion pass.
#[derive(Debug, Default, PartialEq)]
struct Remaining {
    /// Objects left, per resource.
    resources: BTreeMap<String, usize>,
    /// Objects left, per finalizer that holds them.
    finalizers: BTreeMap<String, usize>,
}

impl Remaining {
    fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The namespace's status conditions that say what blocks its deletion, as upstream's
    /// namespace controller reports them.
    fn conditions(&self, now: &str) -> Value {
        let condition = |kind: &str, status: bool, reason: &str, message: String| json!({"type": kind, "status": if status { "True" } else { "False" }, "lastTransitionTime": now, "reason": reason, "message": message});
        let content = self
            .resources
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect::<Vec<_>>();
        let finalizers = self
            .finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect::<Vec<_>>();
        json!([
            condition(
                "NamespaceDeletionDiscoveryFailure",
                false,
                "ResourcesDiscovered",
                "All resources successfully discovered".into()
            ),
            condition(
                "NamespaceDeletionGroupVersionParsingFailure",
                false,
                "ParsedGroupVersions",
                "All legacy kube types successfully parsed".into()
            ),
            condition(
                "NamespaceDeletionContentFailure",
                false,
                "ContentDeleted",
                "All content successfully deleted, may be waiting on finalization".into()
            ),
            if content.is_empty() {
                condition(
                    "NamespaceContentRemaining",
                    false,
                    "ContentRemoved",
                    "All content successfully removed".into(),
                )
            } else {
                condition(
                    "NamespaceContentRemaining",
                    true,
                    "SomeResourcesRemain",
                    format!("Some resources are remaining: {}", content.join(", ")),
                )
            },
            if finalizers.is_empty() {
                condition(
                    "NamespaceFinalizersRemaining",
                    false,
                    "ContentHasNoFinalizers",
                    "All content-preserving finalizers finished".into(),
                )
            } else {
                condition(
                    "NamespaceFinalizersRemaining",
                    true,
                    "SomeFinalizersRemain",
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        finalizers.join(", ")
                    ),
                )
            },
        ])
    }
}

/// Deletes what is left in `namespace`; answers what is still there.
async fn empty(api: &ApiServer, namespace: &str) -> Result<Remaining, StatusError> {
    let mut remaining = Remaining::default();
    let opts =
        DeleteOptions { propagation_policy: Some("Background".into()), ..DeleteOptions::default() };
    for info in namespaced_storages(api) {
        let touched =
            api.registry.delete_collection(&info, Some(namespace), &list_all()?, &opts).await?;
        if touched.is_empty() {
            continue;
        }
        // Deleted now or pending; what the cache still shows is looked at again next pass.
        let left =
            api.registry.list(&info, Some(namespace), &list_all()?).await?.items.into_values();
        if left.is_empty() {
            continue;
        }
        let resource = if info.group.is_empty() {
            format!("{}.", info.plural)
        } else {
            format!("{}.{}", info.plural, info.group)
        };
        remaining.resources.insert(resource, left.len());
        for obj in &left {
            for finalizer in
                obj.pointer("/metadata/finalizers").and_then(Value::as_array).into_iter().flatten()
            {
                if let Some(f) = finalizer.as_str() {
                    *remaining.finalizers.entry(f.to_string()).or_default() += 1;
                }
            }
        }
    }
    Ok(remaining)
}
