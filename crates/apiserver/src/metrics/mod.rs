//! The server's metrics, in the Prometheus text format at `/metrics`, under upstream's names.
//!
//! Requests (`apiserver_request_total`, `apiserver_request_duration_seconds`), requests in
//! flight (`apiserver_current_inflight_requests`), long-running requests
//! (`apiserver_longrunning_requests`), store latency (`etcd_request_duration_seconds`, measured
//! by [`TimedStore`] around the store, whichever backend it is) and the process
//! (`process_*`, read from `/proc`).
//!
//! Label values come from the catalog and from fixed lists, never from raw paths, methods or
//! keys, so the number of series stays bounded whatever clients send.

mod process;
mod store;

use std::sync::Arc;
use std::time::Duration;

use krust_api::ResourceInfo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub use process::ProcessCollector;
pub use store::TimedStore;

use crate::http::inflight::{Inflight, RequestKind};

/// The `Content-Type` of the answer of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upstream's buckets of `apiserver_request_duration_seconds`.
const REQUEST_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Upstream's buckets of `etcd_request_duration_seconds`.
const STORE_BUCKETS: [f64; 20] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 30.0,
];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn store_histogram() -> Histogram {
    Histogram::new(STORE_BUCKETS)
}

/// What a request is, for the labels of the request metrics (upstream's `RequestInfo` as its
/// metrics see it). Every value is one of a fixed set or comes from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    verb: &'static str,
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    subresource: &'static str,
    scope: &'static str,
    component: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CodeLabels {
    #[prometheus(flatten)]
    request: RequestLabels,
    /// Only codes the server answers with: a fixed set.
    code: u16,
}

impl RequestLabels {
    /// A request for a resource of the catalog: `verb` is the request's (get, list, watch,
    /// create, update, patch, delete, deletecollection), reported as upstream does (`LIST`,
    /// `POST`, `APPLY`, ...); `apply` tells a server-side apply patch.
    pub fn resource(
        verb: &str,
        info: &ResourceInfo,
        subresource: Option<&str>,
        namespaced: bool,
        named: bool,
        apply: bool,
    ) -> Self {
        let verb = match verb {
            "get" => "GET",
            "list" => "LIST",
            "watch" => "WATCH",
            "create" => "POST",
            "update" => "PUT",
            "patch" if apply => "APPLY",
            "patch" => "PATCH",
            "delete" | "deletecollection" => "DELETE",
            _ => "other",
        };
        let subresource = match subresource {
            None => "",
            Some("status") => "status",
            Some("scale") => "scale",
            Some("finalize") => "finalize",
            Some(other) => {
                info.extra_subresources.iter().find(|s| s.name == other).map_or("other", |s| s.name)
            }
        };
        let scope = match (named, namespaced) {
            (true, _) => "resource",
            (false, true) => "namespace",
            (false, false) => "cluster",
        };
        Self {
            verb,
            group: info.group,
            version: info.version,
            resource: info.plural,
            subresource,
            scope,
            component: "apiserver",
        }
    }

    /// Any other request (discovery, health, OpenAPI, unknown paths): only the method.
    pub fn other(method: &http::Method) -> Self {
        let verb = match method.as_str() {
            "GET" => "GET",
            "HEAD" => "HEAD",
            "POST" => "POST",
            "PUT" => "PUT",
            "PATCH" => "PATCH",
            "DELETE" => "DELETE",
            "OPTIONS" => "OPTIONS",
            "CONNECT" => "CONNECT",
            _ => "other",
        };
        Self {
            verb,
            group: "",
            version: "",
            resource: "",
            subresource: "",
            scope: "",
            component: "apiserver",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
    r#type: String,
}

/// The server's metrics; cheap to share.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<CodeLabels, Counter>,
    durations: Family<RequestLabels, Histogram, fn() -> Histogram>,
    longrunning: Family<RequestLabels, Gauge>,
    store: Family<StoreLabels, Histogram, fn() -> Histogram>,
}

/// One long-running request, counted until dropped.
#[derive(Debug)]
pub struct LongRunning(Gauge);

impl Drop for LongRunning {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Reports the requests in flight on each scrape.
#[derive(Debug)]
struct InflightCollector(Arc<Inflight>);

impl Collector for InflightCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(0i64);
        let mut family = encoder.encode_descriptor(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
            None,
            gauge.metric_type(),
        )?;
        for kind in [RequestKind::Mutating, RequestKind::ReadOnly] {
            let value = i64::try_from(self.0.current(kind)).unwrap_or(i64::MAX);
            let labels = [("request_kind", kind.as_str())];
            ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Registers every metric; `inflight` is read on each scrape, `proc_root` (normally
    /// `/proc`) is where the process metrics come from.
    pub fn new(inflight: Arc<Inflight>, proc_root: std::path::PathBuf) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<CodeLabels, Counter>::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, version, resource, scope, component, and HTTP response code.",
            requests.clone(),
        );
        let durations = Family::new_with_constructor(request_histogram as fn() -> Histogram);
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource, subresource, scope and component (for long-running requests: until the response starts).",
            durations.clone(),
        );
        let longrunning = Family::<RequestLabels, Gauge>::default();
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component.",
            longrunning.clone(),
        );
        let store = Family::new_with_constructor(store_histogram as fn() -> Histogram);
        registry.register(
            "etcd_request_duration_seconds",
            "Store request latency in seconds for each operation and object type.",
            store.clone(),
        );
        registry.register_collector(Box::new(InflightCollector(inflight)));
        registry.register_collector(Box::new(ProcessCollector::new(proc_root)));
        Self { registry, requests, durations, longrunning, store }
    }

    /// Counts one answered request and its latency.
    pub fn request(&self, labels: &RequestLabels, code: u16, elapsed: Duration) {
        self.requests.get_or_create(&CodeLabels { request: labels.clone(), code }).inc();
        self.durations.get_or_create(labels).observe(elapsed.as_secs_f64());
    }

    /// Counts a long-running request until the returned guard is dropped.
    pub fn long_running(&self, labels: &RequestLabels) -> LongRunning {
        let gauge = self.longrunning.get_or_create(labels).clone();
        gauge.inc();
        LongRunning(gauge)
    }

    /// Records one store call.
    pub fn store_call(&self, operation: &'static str, r#type: &str, elapsed: Duration) {
        let labels = StoreLabels { operation, r#type: r#type.to_string() };
        self.store.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// Every metric, in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::inflight::Limits;

    fn metrics() -> (Metrics, Arc<Inflight>) {
        let inflight = Arc::new(Inflight::new(Limits::default()));
        (Metrics::new(Arc::clone(&inflight), "/nonexistent".into()), inflight)
    }

    #[test]
    fn requests_are_counted_under_upstreams_names_and_labels() {
        let (metrics, inflight) = metrics();
        let catalog = krust_api::Catalog::builtin();
        let pods = catalog.lookup("", "v1", "pods").expect("pods are in the catalog");
        let list = RequestLabels::resource("list", &pods, None, true, false, false);
        metrics.request(&list, 200, Duration::from_millis(3));
        let apply = RequestLabels::resource("patch", &pods, Some("status"), true, true, true);
        metrics.request(&apply, 201, Duration::from_millis(3));
        let watch = RequestLabels::resource("watch", &pods, None, false, false, false);
        let watching = metrics.long_running(&watch);
        let _slot = inflight.try_acquire(RequestKind::Mutating, false);
        let text = metrics.encode();
        assert!(text.contains(r#"apiserver_request_total{verb="LIST",group="",version="v1",resource="pods",subresource="",scope="namespace",component="apiserver",code="200"} 1"#), "{text}");
        assert!(
            text.contains(r#"verb="APPLY""#)
                && text.contains(r#"subresource="status",scope="resource""#)
        );
        assert!(text.contains("apiserver_request_duration_seconds_bucket{"));
        assert!(text.contains(r#"apiserver_longrunning_requests{verb="WATCH",group="",version="v1",resource="pods",subresource="",scope="cluster",component="apiserver"} 1"#), "{text}");
        assert!(
            text.contains(r#"apiserver_current_inflight_requests{request_kind="mutating"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"apiserver_current_inflight_requests{request_kind="readOnly"} 0"#));
        drop(watching);
        assert!(metrics.encode().contains(r#"scope="cluster",component="apiserver"} 0"#));
    }

    #[test]
    fn odd_methods_and_subresources_do_not_make_new_label_values() {
        let method = http::Method::from_bytes(b"FROBNICATE").expect("an extension method");
        assert_eq!(RequestLabels::other(&method).verb, "other");
        let catalog = krust_api::Catalog::builtin();
        let pods = catalog.lookup("", "v1", "pods").expect("pods are in the catalog");
        let odd = RequestLabels::resource("get", &pods, Some("a-random-thing"), true, true, false);
        assert_eq!(odd.subresource, "other");
    }

    #[test]
    fn store_calls_are_timed_by_operation_and_type() {
        let (metrics, _) = metrics();
        metrics.store_call("get", "pods", Duration::from_millis(1));
        let text = metrics.encode();
        assert!(
            text.contains(r#"etcd_request_duration_seconds_count{operation="get",type="pods"} 1"#),
            "{text}"
        );
    }
}
