//! An in-process harness over the registry: no TLS, no sockets, no HTTP. Each [`Harness`] is
//! a [`Registry`] over a fresh embedded store in its own temporary directory, with the builtin
//! catalog and upstream's default admission plugins, and the `default` namespace. Its helpers
//! take a resource as `(group, version, plural)` and answer what the registry answers, errors
//! as the typed [`StatusError`], so that a table test compares `(code, reason)` directly.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use krust_api::{Catalog, PatchType, ResourceInfo, StatusError};
use krust_apiserver::admission::{Admission, Selection};
use krust_apiserver::authz::Authz;
use krust_apiserver::registry::options::{ListOptions, Query};
use krust_apiserver::registry::{
    DeleteOptions, Deleted, Encoder, Registry, ServiceRanges, Subresource, WriteOptions,
};
use krust_apiserver::watchcache::HistoryLimits;
use krust_store::Store;
use krust_store::embedded::EmbeddedStore;
use serde_json::{Value, json};

/// A resource: `(group, version, plural)`.
pub type Gvr = (&'static str, &'static str, &'static str);

/// `v1` ConfigMaps.
pub const CONFIGMAPS: Gvr = ("", "v1", "configmaps");
/// `v1` Namespaces.
pub const NAMESPACES: Gvr = ("", "v1", "namespaces");
/// `apps/v1` Deployments.
pub const DEPLOYMENTS: Gvr = ("apps", "v1", "deployments");

/// The namespace every harness has.
pub const NS: Option<&str> = Some("default");

/// A page of a list: the objects (decoded), the list's resourceVersion and its continue token.
#[derive(Debug)]
pub struct Page {
    /// The objects, in key order.
    pub items: Vec<Value>,
    /// The list's resourceVersion.
    pub revision: i64,
    /// Where the next page starts, if there is one.
    pub continue_token: Option<String>,
}

impl Page {
    /// The names of the objects, in order.
    pub fn names(&self) -> Vec<String> {
        self.items.iter().map(|o| name(o).to_string()).collect()
    }
}

/// One watch event as a client decodes it: its type and its object.
#[derive(Debug, Clone)]
pub struct Event {
    /// `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`.
    pub kind: String,
    /// The object, or the Status of an `ERROR`.
    pub object: Value,
}

/// A registry over a fresh embedded store, with the catalog's every resource.
pub struct Harness {
    /// The registry under test.
    pub registry: Registry,
    /// Where the store lives; removed when the harness is dropped.
    _dir: tempfile::TempDir,
}

impl Harness {
    /// A harness with the watch cache's default history.
    pub async fn new() -> Self {
        Self::with_history(HistoryLimits::default()).await
    }

    /// A harness whose watch cache keeps at most `history`.
    pub async fn with_history(history: HistoryLimits) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path()).expect("an embedded store"));
        let catalog = Arc::new(Catalog::builtin());
        let mut registry = Registry::new_with(store, catalog, ServiceRanges::default(), history)
            .await
            .expect("a registry");
        // As `krust_apiserver::start` wires it: RBAC write checks and the default plugins.
        let authz = Authz::new(registry.cache());
        authz.install(&mut registry);
        registry.set_admission(Admission::new(&Selection::default(), authz.admission_authorizer()));
        let harness = Self { registry, _dir: dir };
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        harness.create(NAMESPACES, None, ns).await.expect("the default namespace");
        harness
    }

    /// The catalog entry of `gvr`.
    pub fn info(&self, (group, version, plural): Gvr) -> ResourceInfo {
        self.registry
            .catalog()
            .lookup(group, version, plural)
            .unwrap_or_else(|| panic!("{group}/{version}/{plural} is not in the catalog"))
    }

    /// Creates `obj`; answers the object as stored.
    pub async fn create(
        &self,
        gvr: Gvr,
        ns: Option<&str>,
        obj: Value,
    ) -> Result<Value, StatusError> {
        self.create_with(gvr, ns, obj, WriteOptions::default()).await
    }

    /// Creates `obj` with `opts` (a dry run, field validation...).
    pub async fn create_with(
        &self,
        gvr: Gvr,
        ns: Option<&str>,
        obj: Value,
        opts: WriteOptions,
    ) -> Result<Value, StatusError> {
        let info = self.info(gvr);
        self.registry.create(&info, ns, obj, opts).await.map(|w| w.object)
    }

    /// Reads one object.
    pub async fn get(&self, gvr: Gvr, ns: Option<&str>, name: &str) -> Result<Value, StatusError> {
        self.registry.get(&self.info(gvr), ns, name).await
    }

    /// Replaces an object with `body` (a PUT).
    pub async fn update(
        &self,
        gvr: Gvr,
        ns: Option<&str>,
        name: &str,
        body: Value,
    ) -> Result<Value, StatusError> {
        self.update_sub(gvr, ns, name, Subresource::Main, body).await
    }

    /// Replaces a subresource of an object with `body` (a PUT to `.../status`, ...).
    pub async fn update_sub(
        &self,
        gvr: Gvr,
        ns: Option<&str>,
        name: &str,
        sub: Subresource,
        body: Value,
    ) -> Result<Value, StatusError> {
        let info = self.info(gvr);
        self.registry
            .update(&info, ns, name, sub, body, WriteOptions::default())
            .await
            .map(|w| w.object)
    }

    /// Patches an object with a patch of type `kind`.
    pub async fn patch(
        &self,
        gvr: Gvr,
        ns: Option<&str>,
        name: &str,
        kind: PatchType,
        body: Value,
    ) -> Result<Value, StatusError> {
        let info = self.info(gvr);
        let bytes = serde_json::to_vec(&body).expect("a JSON value encodes");
        self.registry
            .patch(&info, ns, name, Subresource::Main, kind, &bytes, WriteOptions::default())
            .await
            .map(|w| w.object)
    }

    /// Deletes an object.
    pub async fn delete(
        &self,
        gvr: Gvr,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, StatusError> {
        self.registry.delete(&self.info(gvr), ns, name, opts).await.map(|d| d.outcome)
    }

    /// Deletes every object a list with `query` (a URL query string) selects.
    pub async fn delete_collection(
        &self,
        gvr: Gvr,
        ns: Option<&str>,
        query: &str,
        opts: &DeleteOptions,
    ) -> Result<Vec<Value>, StatusError> {
        let list_opts = ListOptions::from_query(&Query::parse(Some(query)), false)?;
        self.registry.delete_collection(&self.info(gvr), ns, &list_opts, opts).await
    }

    /// Lists with the options of `query` (a URL query string: `labelSelector=...&limit=2`).
    pub async fn list(&self, gvr: Gvr, ns: Option<&str>, query: &str) -> Result<Page, StatusError> {
        let opts = ListOptions::from_query(&Query::parse(Some(query)), false)?;
        let listed = self.registry.list(&self.info(gvr), ns, &opts).await?;
        Ok(Page {
            revision: listed.revision,
            continue_token: listed.continue_token,
            items: listed.items.into_values(),
        })
    }

    /// Watches with the options of `query` and collects the first `n` events, waiting at
    /// most `wait` for them; answers those that came (fewer when the stream ended or the
    /// wait passed).
    pub async fn watch(
        &self,
        gvr: Gvr,
        ns: Option<&str>,
        query: &str,
        n: usize,
        wait: Duration,
    ) -> Result<Vec<Event>, StatusError> {
        let opts = ListOptions::from_query(&Query::parse(Some(query)), true)?;
        let stream = self.registry.watch(&self.info(gvr), ns, opts, json_lines()).await?;
        let mut events = Vec::new();
        let mut stream = Box::pin(stream.take(n));
        let collect = async {
            while let Some(line) = stream.next().await {
                let decoded: Value = serde_json::from_slice(&line).expect("an event is JSON");
                events.push(Event {
                    kind: decoded["type"].as_str().unwrap_or_default().to_string(),
                    object: decoded["object"].clone(),
                });
            }
        };
        let _ = tokio::time::timeout(wait, collect).await;
        Ok(events)
    }
}

/// Encodes each watch event as upstream's JSON stream does: `{"type":..,"object":..}\n`.
fn json_lines() -> Encoder {
    Box::new(|event| {
        let line = json!({"type": event.kind.as_str(), "object": event.object.into_value()});
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        Bytes::from(bytes)
    })
}

/// `(code, reason)` of an error, for comparing with a row's expectation.
pub fn outcome(error: &StatusError) -> (u16, krust_api::Reason) {
    (error.code(), error.reason)
}

/// The name of an object.
pub fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

/// The resourceVersion of an object.
pub fn rv(obj: &Value) -> &str {
    obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or_default()
}

/// A ConfigMap named `name` with `labels` and `data`.
pub fn config_map(name: &str, labels: Value, data: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": data,
    })
}

/// A Deployment named `name` running `image`, with `replicas`.
pub fn deployment(name: &str, image: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    })
}
