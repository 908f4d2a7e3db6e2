//! The namespace controller (upstream's `namespace-controller`): a namespace marked for
//! deletion is emptied through the API, resource by resource, then its `kubernetes`
//! finalizer is removed (`namespaces/finalize`) so the server lets it go. While something
//! remains, the namespace's conditions say what and why, and the pass is repeated.

pub mod content;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::{Api, Client, ResourceExt};

use content::{Deletable, Remaining};
use krust_client::Informer;

/// The controller's name, its service account's and its role's (`system:controller:NAME`).
pub const NAME: &str = "namespace-controller";

/// How soon a namespace with content left is looked at again, at first; the wait doubles
/// with each pass that leaves content, up to [`LAST_RECHECK`] (upstream backs off too: what
/// remains waits on finalizers or grace periods, which no namespace event announces).
const RECHECK: Duration = Duration::from_millis(500);
const LAST_RECHECK: Duration = Duration::from_secs(8);

/// How long a discovery result is reused before the server is asked again.
const DISCOVERY_TTL: Duration = Duration::from_secs(30);

struct Context {
    client: Client,
    /// The last discovery's resources, and when they were read.
    discovered: Mutex<Option<(Instant, Vec<Deletable>)>>,
    /// Passes in a row that left content, per namespace.
    passes: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// The wait before the next pass over `namespace`, which left content again.
    fn recheck(&self, namespace: &str) -> Duration {
        let Ok(mut passes) = self.passes.lock() else { return LAST_RECHECK };
        let n = passes.entry(namespace.to_string()).or_default();
        *n = n.saturating_add(1);
        RECHECK.saturating_mul(1 << (*n - 1).min(8)).min(LAST_RECHECK)
    }

    fn finished(&self, namespace: &str) {
        if let Ok(mut passes) = self.passes.lock() {
            passes.remove(namespace);
        }
    }

    /// The resources to empty: from the last discovery while it is fresh, unless `fresh`.
    async fn deletable(&self, fresh: bool) -> Result<Vec<Deletable>, kube::Error> {
        if !fresh
            && let Ok(cached) = self.discovered.lock()
            && let Some((at, resources)) = cached.as_ref()
            && at.elapsed() < DISCOVERY_TTL
        {
            return Ok(resources.clone());
        }
        let resources = discover(&self.client).await?;
        if let Ok(mut cached) = self.discovered.lock() {
            *cached = Some((Instant::now(), resources.clone()));
        }
        Ok(resources)
    }
}

/// Runs the controller: woken by the shared namespace cache, writing as `client`.
pub fn run(
    client: Client,
    namespaces: &mut Informer<Namespace>,
) -> impl Future<Output = ()> + Send + 'static {
    Controller::for_shared_stream(namespaces.subscribe(), namespaces.store())
        // Each pass lists every resource of its namespace: a few namespaces at a time.
        .with_config(crate::controller_config().concurrency(4))
        .run(
            reconcile,
            error_policy,
            Arc::new(Context {
                client,
                discovered: Mutex::new(None),
                passes: Mutex::new(HashMap::new()),
            }),
        )
        .for_each(|_| futures::future::ready(()))
}

fn error_policy(namespace: Arc<Namespace>, error: &kube::Error, _: Arc<Context>) -> Action {
    tracing::warn!(namespace = %namespace.name_any(), error = %error, "namespace deletion pass failed");
    Action::requeue(LAST_RECHECK)
}

async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    let name = namespace.name_any();
    if !content::needs_emptying(&namespace) {
        ctx.finished(&name);
        return Ok(Action::await_change());
    }
    let mut remaining = empty(&ctx, &name, false).await;
    if remaining.is_empty() {
        // Before letting the namespace go, make sure no resource appeared since the
        // discovery this pass used (a custom resource made meanwhile).
        remaining = empty(&ctx, &name, true).await;
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    if !remaining.is_empty() {
        report(&namespaces, &namespace, &remaining).await?;
        return Ok(Action::requeue(ctx.recheck(&name)));
    }
    ctx.finished(&name);
    let done = content::finalized(&namespace);
    match namespaces.replace_subresource("finalize", &name, &PostParams::default(), &done).await {
        Ok(_) => tracing::info!(namespace = %name, "namespace emptied and finalized"),
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(kube::Error::Api(s)) if s.is_conflict() => return Ok(Action::requeue(RECHECK)),
        Err(e) => return Err(e),
    }
    Ok(Action::await_change())
}

/// Writes the conditions that say what blocks the deletion, when they changed.
async fn report(
    namespaces: &Api<Namespace>,
    namespace: &Namespace,
    remaining: &Remaining,
) -> Result<(), kube::Error> {
    let conditions = remaining.conditions(Timestamp::now());
    let current =
        namespace.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    if content::same_conditions(current, &conditions) {
        return Ok(());
    }
    let mut updated = namespace.clone();
    updated.status.get_or_insert_with(Default::default).conditions = Some(conditions);
    match namespaces
        .replace_subresource("status", &namespace.name_any(), &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_conflict() || s.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes what is in `namespace`; answers what is still there and what failed.
async fn empty(ctx: &Context, namespace: &str, fresh_discovery: bool) -> Remaining {
    let client = &ctx.client;
    let mut remaining = Remaining::default();
    let resources = match ctx.deletable(fresh_discovery).await {
        Ok(resources) => resources,
        Err(e) => {
            remaining.discovery_failure = Some(e.to_string());
            return remaining;
        }
    };
    for Deletable { resource, collection } in resources {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        // Metadata only: what is there, not what it holds.
        let listed = match api.list_metadata(&ListParams::default()).await {
            Ok(list) if list.items.is_empty() => continue,
            Ok(list) => list.items,
            Err(e) => {
                remaining.failures.push(e.to_string());
                continue;
            }
        };
        let deleted = if collection {
            api.delete_collection(&DeleteParams::background(), &ListParams::default())
                .await
                .map(|_| ())
        } else {
            let names: Vec<String> =
                listed.iter().filter_map(|o| o.metadata.name.clone()).collect();
            delete_each(&api, &names).await
        };
        if let Err(e) = deleted {
            remaining.failures.push(e.to_string());
        }
        // Deleted now or pending on finalizers or a grace period: what is still listed counts.
        match api.list_metadata(&ListParams::default()).await {
            Ok(left) => remaining.count(
                &resource,
                left.items.iter().map(|o| o.metadata.finalizers.as_deref().unwrap_or_default()),
            ),
            Err(e) => remaining.failures.push(e.to_string()),
        }
    }
    remaining
}

/// Deletes each listed object, for resources without `deletecollection`.
async fn delete_each(api: &Api<DynamicObject>, names: &[String]) -> Result<(), kube::Error> {
    for name in names {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The namespaced resources to empty, from the server's discovery (aggregated when served).
async fn discover(client: &Client) -> Result<Vec<Deletable>, kube::Error> {
    Ok(content::deletable(crate::runtime::discovery::resources(client).await?))
}
