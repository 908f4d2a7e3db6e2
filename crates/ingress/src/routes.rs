//! The routing table: from the Ingresses this controller serves, their Services and
//! EndpointSlices, which ready endpoints a request's host and path go to (pure).
//!
//! Upstream's rules (`networking.k8s.io/v1`): a rule's host is exact or a `*.` wildcard that
//! stands for exactly one label (`*.foo.com` takes `bar.foo.com`, neither `foo.com` nor
//! `baz.bar.foo.com`); a rule without a host takes every host. Paths are `Exact` or `Prefix`,
//! and a prefix matches element by element (`/foo` takes `/foo` and `/foo/bar`, not `/foobar`;
//! a trailing `/` is ignored); `ImplementationSpecific` is taken as `Prefix`, as ingress-nginx
//! does without regular expressions. The longest matching path wins, `Exact` before `Prefix` at
//! equal length, and the older Ingress wins a tie.
//!
//! A request's host picks its rules, most specific first: the exact host's, then the wildcard's,
//! then those without a host; the first of them whose path matches takes it, else the default
//! backend (the oldest served Ingress's `spec.defaultBackend`), else nothing (404). A backend
//! is a Service port, by number or name, resolved to the EndpointSlices' port of the same name
//! and their ready endpoints; a backend without any (a missing Service or port, no ready pod, a
//! `resource` backend) is a route that answers 503.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::Authority;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{IngressBackend, IngressSpec};

/// A namespace and a name.
pub type Key = (String, String);

/// What the table needs of a Service: its ports by name and number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// Each port: its name (empty when unnamed) and number.
    pub ports: Vec<(String, i32)>,
}

impl ServiceView {
    /// The view of `service`.
    pub fn of(service: &Service) -> ServiceView {
        let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
        ServiceView {
            ports: ports
                .into_iter()
                .flatten()
                .map(|p| (p.name.clone().unwrap_or_default(), p.port))
                .collect(),
        }
    }
}

/// What the table needs of an EndpointSlice: its Service, ports and ready addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceView {
    /// The Service it belongs to (its namespace and `kubernetes.io/service-name`).
    pub service: Key,
    /// Each port: its name (empty when unnamed) and number.
    pub ports: Vec<(String, i32)>,
    /// The ready endpoints' addresses (`conditions.ready` true or unset, as upstream reads it).
    pub ready: Vec<IpAddr>,
}

impl SliceView {
    /// The view of `slice`; `None` without a namespace or Service.
    pub fn of(slice: &EndpointSlice) -> Option<SliceView> {
        let namespace = slice.metadata.namespace.clone()?;
        let service = slice.metadata.labels.as_ref()?.get("kubernetes.io/service-name")?.clone();
        let ports = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| Some((p.name.clone().unwrap_or_default(), p.port?)))
            .collect();
        let ready = slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
            .flat_map(|e| e.addresses.iter())
            .filter_map(|a| a.parse().ok())
            .collect();
        Some(SliceView { service: (namespace, service), ports, ready })
    }
}

/// The Services and EndpointSlices the table resolves backends against.
#[derive(Debug, Default)]
pub struct Backends {
    /// Services by namespace and name.
    pub services: HashMap<Key, ServiceView>,
    /// EndpointSlices by their Service, then by name.
    pub slices: HashMap<Key, BTreeMap<String, SliceView>>,
}

/// Where a matched request goes: the ready endpoints (none: 503), taken in turn.
#[derive(Debug, Default)]
pub struct Upstream {
    /// The endpoints' addresses and ports.
    pub endpoints: Vec<SocketAddr>,
    /// What it is, for logs: `namespace/service:port`.
    pub name: String,
    /// Each endpoint as a URI's authority, made once.
    authorities: Vec<Authority>,
    turn: AtomicUsize,
}

impl Upstream {
    fn new(name: String, endpoints: Vec<SocketAddr>) -> Upstream {
        let authorities = endpoints
            .iter()
            .filter_map(|e| Authority::try_from(e.to_string().as_str()).ok())
            .collect();
        Upstream { endpoints, name, authorities, turn: AtomicUsize::new(0) }
    }

    /// The endpoints in the order to try them, each with its authority: the one whose turn it
    /// is first, then the others in turn (so a failed connection moves on to the next).
    pub fn pick(&self) -> impl Iterator<Item = (SocketAddr, &Authority)> + '_ {
        let n = self.endpoints.len().min(self.authorities.len());
        let start = if n == 0 { 0 } else { self.turn.fetch_add(1, Ordering::Relaxed) % n };
        (0..n).map(move |i| (self.endpoints[(start + i) % n], &self.authorities[(start + i) % n]))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PathKind {
    Exact,
    Prefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PathRule {
    /// For `Prefix`, without its trailing slashes (`/` becomes empty: it takes every path).
    path: String,
    kind: PathKind,
    upstream: usize,
}

impl PathRule {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathKind::Exact => path == self.path,
            PathKind::Prefix => path
                .strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
        }
    }
}

/// The routing table.
#[derive(Debug, Default)]
pub struct Table {
    upstreams: Vec<Upstream>,
    exact: HashMap<String, Vec<PathRule>>,
    /// Wildcard hosts' rules by what follows their `*` (`.example.com`).
    wildcard: HashMap<String, Vec<PathRule>>,
    any_host: Vec<PathRule>,
    default_backend: Option<usize>,
    /// The TLS Secret of each host (exact, or wildcard as written).
    tls: BTreeMap<String, Key>,
    /// The Services the table's backends name.
    services: HashSet<Key>,
}

/// The rules of `host`'s suffix after its first label (`.example.com` for `a.example.com`),
/// where a wildcard rule for it is kept; `None` when the first label is empty or alone.
fn wildcard_suffix(host: &str) -> Option<&str> {
    let dot = host.find('.')?;
    (dot > 0).then(|| &host[dot..])
}

impl Table {
    /// Builds the table from the served Ingresses (keyed by namespace and name), in their order
    /// of precedence (see [`crate::class::served`]), and what their backends resolve against.
    pub fn build<'a>(
        ingresses: impl IntoIterator<Item = (&'a Key, &'a IngressSpec)>,
        backends: &Backends,
    ) -> Table {
        let mut table = Table::default();
        let mut upstream_of: HashMap<(String, String, String), usize> = HashMap::new();
        let mut upstream = |table: &mut Table, namespace: &str, backend: &IngressBackend| {
            let (service, port_ref, name) = match &backend.service {
                Some(service) => {
                    let port = service.port.as_ref();
                    let name = port.and_then(|p| p.name.clone()).filter(|n| !n.is_empty());
                    let number = port.and_then(|p| p.number);
                    let port_ref =
                        name.clone().or(number.map(|n| n.to_string())).unwrap_or_default();
                    table.services.insert((namespace.to_string(), service.name.clone()));
                    (service.name.clone(), port_ref, Some((name, number)))
                }
                // A resource backend (not served here): a route without endpoints.
                None => {
                    let resource = backend.resource.as_ref();
                    let kind = resource.map(|r| r.kind.clone()).unwrap_or_default();
                    let name = resource.map(|r| r.name.clone()).unwrap_or_default();
                    (format!("{kind}/{name}"), "resource".to_string(), None)
                }
            };
            let key = (namespace.to_string(), service, port_ref);
            if let Some(index) = upstream_of.get(&key) {
                return *index;
            }
            let label = format!("{}/{}:{}", key.0, key.1, key.2);
            let endpoints = match name {
                Some((name, number)) => {
                    resolve(backends, &(key.0.clone(), key.1.clone()), name.as_deref(), number)
                }
                None => Vec::new(),
            };
            table.upstreams.push(Upstream::new(label, endpoints));
            let index = table.upstreams.len() - 1;
            upstream_of.insert(key, index);
            index
        };
        for ((namespace, _), spec) in ingresses {
            if table.default_backend.is_none()
                && let Some(backend) = &spec.default_backend
            {
                table.default_backend = Some(upstream(&mut table, namespace, backend));
            }
            // TLS: each listed host gets its entry's Secret; an entry listing no host covers
            // the Ingress's rule hosts (upstream: "defaults to the wildcard host setting").
            let rule_hosts: Vec<String> = spec
                .rules
                .iter()
                .flatten()
                .filter_map(|r| r.host.as_deref())
                .filter(|h| !h.is_empty())
                .map(str::to_ascii_lowercase)
                .collect();
            for tls in spec.tls.iter().flatten() {
                let Some(secret) = tls.secret_name.as_ref().filter(|s| !s.is_empty()) else {
                    continue;
                };
                let listed: Vec<String> = match tls.hosts.as_ref().filter(|h| !h.is_empty()) {
                    Some(hosts) => hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    None => rule_hosts.clone(),
                };
                for host in listed {
                    table.tls.entry(host).or_insert_with(|| (namespace.clone(), secret.clone()));
                }
            }
            for rule in spec.rules.iter().flatten() {
                let Some(http) = &rule.http else { continue };
                let mut paths = Vec::new();
                for path in &http.paths {
                    let index = upstream(&mut table, namespace, &path.backend);
                    let raw = path.path.as_deref().unwrap_or("/");
                    let (kind, path) = if path.path_type == "Exact" {
                        (PathKind::Exact, raw.to_string())
                    } else {
                        (PathKind::Prefix, raw.trim_end_matches('/').to_string())
                    };
                    paths.push(PathRule { path, kind, upstream: index });
                }
                let host = rule.host.as_deref().unwrap_or("").to_ascii_lowercase();
                let list = if host.is_empty() {
                    &mut table.any_host
                } else if let Some(suffix) = host.strip_prefix('*') {
                    table.wildcard.entry(suffix.to_string()).or_default()
                } else {
                    table.exact.entry(host).or_default()
                };
                list.extend(paths);
            }
        }
        // The longest path first, Exact before Prefix at equal length; the older Ingress's
        // rule wins a tie, as the sort is stable.
        let order = |rules: &mut Vec<PathRule>| {
            rules.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.kind.cmp(&b.kind)));
        };
        table.exact.values_mut().for_each(order);
        table.wildcard.values_mut().for_each(order);
        order(&mut table.any_host);
        table
    }

    /// Where a request for `host` (lower case, without port or final dot) and `path` goes, or
    /// `None` (404).
    pub fn route(&self, host: &str, path: &str) -> Option<&Upstream> {
        let path = if path.is_empty() { "/" } else { path };
        let find = |rules: Option<&Vec<PathRule>>| {
            rules.and_then(|rules| rules.iter().find(|r| r.matches(path))).map(|r| r.upstream)
        };
        let matched = find(self.exact.get(host))
            .or_else(|| find(wildcard_suffix(host).and_then(|s| self.wildcard.get(s))))
            .or_else(|| find(Some(&self.any_host)))
            .or(self.default_backend)?;
        self.upstreams.get(matched)
    }

    /// Each host with a TLS Secret (exact, or `*.` wildcard as written) and the Secret.
    pub fn tls(&self) -> &BTreeMap<String, Key> {
        &self.tls
    }

    /// Whether a backend of the table is a port of `service`.
    pub fn names_service(&self, service: &Key) -> bool {
        self.services.contains(service)
    }
}

/// The ready endpoints of a Service port named by `name` or `number`: the Service port, then
/// the slices' port of the same name.
fn resolve(
    backends: &Backends,
    service: &Key,
    name: Option<&str>,
    number: Option<i32>,
) -> Vec<SocketAddr> {
    let Some(view) = backends.services.get(service) else { return Vec::new() };
    let port = view.ports.iter().find(|(n, p)| match name {
        Some(name) => n == name,
        None => Some(*p) == number,
    });
    let Some((port_name, _)) = port else { return Vec::new() };
    let mut endpoints: Vec<SocketAddr> = backends
        .slices
        .get(service)
        .into_iter()
        .flat_map(|slices| slices.values())
        .flat_map(|s| {
            let target = s.ports.iter().find(|(n, _)| n == port_name).map(|(_, p)| *p);
            let target = target.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0);
            s.ready.iter().filter_map(move |ip| Some(SocketAddr::new(*ip, target?)))
        })
        .collect();
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn spec(value: serde_json::Value) -> IngressSpec {
        serde_json::from_value(value).unwrap()
    }

    fn key(ns: &str, name: &str) -> Key {
        (ns.into(), name.into())
    }

    /// Services `a` (10.0.0.1) and `b` (10.0.0.2), each port 80 named `http` to 8080.
    fn backends() -> Backends {
        let mut b = Backends::default();
        for (name, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2")] {
            b.services.insert(key("ns", name), ServiceView { ports: vec![("http".into(), 80)] });
            b.slices.entry(key("ns", name)).or_default().insert(
                format!("{name}-x"),
                SliceView {
                    service: key("ns", name),
                    ports: vec![("http".into(), 8080)],
                    ready: vec![ip.parse().unwrap()],
                },
            );
        }
        b
    }

    fn backend(service: &str, port: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"service": {"name": service, "port": port}})
    }

    fn path(path: &str, kind: &str, service: &str) -> serde_json::Value {
        serde_json::json!({"path": path, "pathType": kind, "backend": backend(service, serde_json::json!({"number": 80}))})
    }

    fn web() -> IngressSpec {
        spec(serde_json::json!({
            "defaultBackend": backend("b", serde_json::json!({"number": 80})),
            "tls": [{"hosts": ["a.test", "*.wild.test"], "secretName": "cert"}],
            "rules": [
                {"host": "a.test", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": backend("a", serde_json::json!({"name": "http"}))},
                    path("/api", "Prefix", "b"),
                    path("/exact", "Exact", "b")]}},
                {"host": "*.wild.test", "http": {"paths": [path("/", "Prefix", "b")]}},
                {"host": "gone.test", "http": {"paths": [path("/", "Prefix", "none")]}}
            ]
        }))
    }

    fn build(ingresses: &[(Key, IngressSpec)], backends: &Backends) -> Table {
        Table::build(ingresses.iter().map(|(k, s)| (k, s)), backends)
    }

    fn to(table: &Table, host: &str, path: &str) -> Option<String> {
        table
            .route(host, path)
            .map(|u| u.endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(","))
    }

    #[test]
    fn hosts_and_paths_route_as_upstream_says() {
        let t = build(&[(key("ns", "web"), web())], &backends());
        assert_eq!(to(&t, "a.test", "/"), Some("10.0.0.1:8080".into()));
        assert_eq!(to(&t, "a.test", ""), Some("10.0.0.1:8080".into()));
        assert_eq!(to(&t, "a.test", "/api"), Some("10.0.0.2:8080".into()));
        assert_eq!(to(&t, "a.test", "/api/"), Some("10.0.0.2:8080".into()));
        assert_eq!(to(&t, "a.test", "/api/v1"), Some("10.0.0.2:8080".into()));
        // Element-wise: /apis is not under /api.
        assert_eq!(to(&t, "a.test", "/apis"), Some("10.0.0.1:8080".into()));
        assert_eq!(to(&t, "a.test", "/exact"), Some("10.0.0.2:8080".into()));
        assert_eq!(to(&t, "a.test", "/exact/"), Some("10.0.0.1:8080".into()));
        assert_eq!(to(&t, "a.test", "/exact/more"), Some("10.0.0.1:8080".into()));
        // A wildcard stands for one label, no more, no less.
        assert_eq!(to(&t, "x.wild.test", "/"), Some("10.0.0.2:8080".into()));
        assert!(t.route("wild.test", "/").is_some_and(|u| u.name == "ns/b:80")); // the default backend
        assert!(t.route("y.x.wild.test", "/").is_some_and(|u| u.name == "ns/b:80"));
        // A Service that does not exist: a route without endpoints (503).
        assert_eq!(to(&t, "gone.test", "/"), Some(String::new()));
        assert!(t.names_service(&key("ns", "none")) && t.names_service(&key("ns", "a")));
        assert!(!t.names_service(&key("other", "a")));
    }

    #[test]
    fn a_trailing_slash_of_a_prefix_is_ignored_and_exact_wins_at_equal_length() {
        let s = spec(serde_json::json!({"rules": [{"host": "h", "http": {"paths": [
            path("/foo/", "Prefix", "a"),
            path("/foo", "Exact", "b"),
            path("/", "ImplementationSpecific", "a")]}}]}));
        let t = build(&[(key("ns", "i"), s)], &backends());
        assert_eq!(to(&t, "h", "/foo"), Some("10.0.0.2:8080".into()));
        assert_eq!(to(&t, "h", "/foo/"), Some("10.0.0.1:8080".into()));
        assert_eq!(to(&t, "h", "/foo/bar"), Some("10.0.0.1:8080".into()));
        assert_eq!(to(&t, "h", "/foobar"), Some("10.0.0.1:8080".into()));
    }

    #[test]
    fn exact_hosts_fall_through_to_wildcards_then_to_rules_without_a_host() {
        let s = spec(serde_json::json!({"rules": [
            {"host": "a.w.test", "http": {"paths": [path("/only", "Exact", "a")]}},
            {"host": "*.w.test", "http": {"paths": [path("/wild", "Prefix", "b")]}},
            {"http": {"paths": [path("/", "Prefix", "a")]}}]}));
        let t = build(&[(key("ns", "i"), s)], &backends());
        let name = |host: &str, p: &str| t.route(host, p).map(|u| u.endpoints[0].to_string());
        assert_eq!(name("a.w.test", "/only"), Some("10.0.0.1:8080".into()));
        assert_eq!(name("a.w.test", "/wild"), Some("10.0.0.2:8080".into()));
        assert_eq!(name("b.w.test", "/wild/x"), Some("10.0.0.2:8080".into()));
        assert_eq!(name("anything", "/x"), Some("10.0.0.1:8080".into()));
    }

    #[test]
    fn without_a_default_backend_an_unknown_host_has_no_route() {
        let mut s = web();
        s.default_backend = None;
        let t = build(&[(key("ns", "web"), s)], &backends());
        assert!(t.route("other.test", "/").is_none());
        assert!(t.route("a.test", "/").is_some());
    }

    #[test]
    fn the_older_ingress_keeps_a_contested_path_and_its_default_backend() {
        let old = spec(
            serde_json::json!({"defaultBackend": backend("a", serde_json::json!({"number": 80})),
            "rules": [{"host": "h", "http": {"paths": [path("/", "Prefix", "a")]}}]}),
        );
        let new = spec(
            serde_json::json!({"defaultBackend": backend("b", serde_json::json!({"number": 80})),
            "rules": [{"host": "h", "http": {"paths": [path("/", "Prefix", "b")]}}]}),
        );
        let t = build(&[(key("z", "old"), old), (key("a", "new"), new)], &backends());
        // Both name Services of their own namespace: `z/a` and `a/b` have no endpoints, so
        // compare by name.
        assert_eq!(t.route("h", "/").map(|u| u.name.as_str()), Some("z/a:80"));
        assert_eq!(t.route("other", "/").map(|u| u.name.as_str()), Some("z/a:80"));
    }

    #[test]
    fn ports_resolve_by_name_or_number_to_the_slices_target_port() {
        let mut b = backends();
        // Service `multi`: port 80 `http` to 8080, port 443 unnamed... two named ports.
        b.services.insert(
            key("ns", "multi"),
            ServiceView { ports: vec![("http".into(), 80), ("admin".into(), 9000)] },
        );
        let slice = |ip: &str, ready: bool| SliceView {
            service: key("ns", "multi"),
            ports: vec![("http".into(), 8080), ("admin".into(), 9090)],
            ready: if ready { vec![ip.parse().unwrap()] } else { vec![] },
        };
        let slices = b.slices.entry(key("ns", "multi")).or_default();
        slices.insert("m-1".into(), slice("10.1.0.1", true));
        slices.insert("m-2".into(), slice("10.1.0.2", true));
        slices.insert("m-3".into(), slice("10.1.0.3", false));
        let s = spec(serde_json::json!({"rules": [{"http": {"paths": [
            {"path": "/admin", "pathType": "Prefix", "backend": backend("multi", serde_json::json!({"name": "admin"}))},
            {"path": "/nine", "pathType": "Prefix", "backend": backend("multi", serde_json::json!({"number": 9000}))},
            {"path": "/missing", "pathType": "Prefix", "backend": backend("multi", serde_json::json!({"number": 81}))},
            {"path": "/", "pathType": "Prefix", "backend": backend("multi", serde_json::json!({"number": 80}))}]}}]}));
        let t = build(&[(key("ns", "i"), s)], &b);
        assert_eq!(to(&t, "h", "/"), Some("10.1.0.1:8080,10.1.0.2:8080".into()));
        assert_eq!(to(&t, "h", "/admin"), Some("10.1.0.1:9090,10.1.0.2:9090".into()));
        assert_eq!(to(&t, "h", "/nine"), Some("10.1.0.1:9090,10.1.0.2:9090".into()));
        assert_eq!(to(&t, "h", "/missing"), Some(String::new()));
    }

    #[test]
    fn endpoints_are_taken_in_turn_and_each_pick_lists_them_all() {
        let mut b = backends();
        b.slices.get_mut(&key("ns", "a")).unwrap().insert(
            "a-y".into(),
            SliceView {
                service: key("ns", "a"),
                ports: vec![("http".into(), 8080)],
                ready: vec!["10.0.0.9".parse().unwrap()],
            },
        );
        let s = spec(serde_json::json!({"rules": [{"http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": backend("a", serde_json::json!({"number": 80}))}]}}]}));
        let t = build(&[(key("ns", "i"), s)], &b);
        let u = t.route("h", "/").unwrap();
        let first: Vec<SocketAddr> = u.pick().map(|(a, _)| a).collect();
        let second: Vec<(SocketAddr, &Authority)> = u.pick().collect();
        assert_eq!(second[0].1.as_str(), second[0].0.to_string());
        let second: Vec<SocketAddr> = second.into_iter().map(|(a, _)| a).collect();
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], second[0]);
        assert_eq!(first[0], second[1]);
        assert_eq!(Upstream::default().pick().count(), 0);
    }

    #[test]
    fn a_resource_backend_is_a_route_without_endpoints() {
        let s = spec(serde_json::json!({"rules": [{"http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "static"}}}]}}]}));
        let t = build(&[(key("ns", "i"), s)], &backends());
        assert_eq!(to(&t, "h", "/"), Some(String::new()));
    }

    #[test]
    fn tls_hosts_come_from_the_list_or_else_the_rules() {
        let s = spec(serde_json::json!({
            "tls": [{"hosts": ["a.test", "*.wild.test"], "secretName": "cert"}, {"secretName": "rest"}],
            "rules": [{"host": "a.test"}, {"host": "b.test"}, {"host": "*.wild.test"}, {}]}));
        let t = build(&[(key("ns", "web"), s)], &backends());
        let tls: Vec<(&str, &str)> =
            t.tls().iter().map(|(h, k)| (h.as_str(), k.1.as_str())).collect();
        assert_eq!(tls, vec![("*.wild.test", "cert"), ("a.test", "cert"), ("b.test", "rest")]);
    }
}
