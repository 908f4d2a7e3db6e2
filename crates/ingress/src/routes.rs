//! The routing table: from the Ingresses this controller serves, their Services and
//! EndpointSlices, which ready endpoints a request's host and path go to (pure).
//!
//! Upstream's rules (`networking.k8s.io/v1`): a host is exact or a `*.` wildcard that stands
//! for exactly one label; a rule without a host takes every host. Paths are `Exact` or
//! `Prefix` (element-wise: `/foo` takes `/foo` and `/foo/bar`, not `/foobar`;
//! `ImplementationSpecific` is taken as `Prefix` here). The longest matching path wins, `Exact`
//! before `Prefix` at equal length; with no match, the default backend, else 404.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

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

/// The Service as the table sees it.
pub fn service_view(service: &Service) -> ServiceView {
    let ports = service.spec.as_ref().and_then(|s| s.ports.as_ref());
    ServiceView {
        ports: ports
            .into_iter()
            .flatten()
            .map(|p| (p.name.clone().unwrap_or_default(), p.port))
            .collect(),
    }
}

/// What the table needs of an EndpointSlice: its Service, ports and ready addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SliceView {
    /// The Service it belongs to (its namespace and `kubernetes.io/service-name`).
    pub service: Key,
    /// Each port: its name (empty when unnamed) and number.
    pub ports: Vec<(String, i32)>,
    /// The ready endpoints' addresses.
    pub ready: Vec<IpAddr>,
}

/// The slice as the table sees it; `None` without a Service.
pub fn slice_view(slice: &EndpointSlice) -> Option<SliceView> {
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

/// Where a matched request goes: the ready endpoints (none: 503).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstream {
    /// The endpoints' addresses and ports.
    pub endpoints: Vec<SocketAddr>,
    /// What it is, for logs and errors: `namespace/service:port`.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum PathKind {
    Exact,
    Prefix,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PathRule {
    path: String,
    kind: PathKind,
    upstream: usize,
}

impl PathRule {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            PathKind::Exact => path == self.path,
            PathKind::Prefix => {
                let prefix = self.path.trim_end_matches('/');
                prefix.is_empty()
                    || path == prefix
                    || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

/// The routing table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    upstreams: Vec<Upstream>,
    exact: HashMap<String, Vec<PathRule>>,
    /// Wildcard hosts by the suffix after their `*` (`.example.com`).
    wildcard: Vec<(String, Vec<PathRule>)>,
    any_host: Vec<PathRule>,
    default_backend: Option<usize>,
    /// The TLS Secret of each host (exact or wildcard, as written).
    pub tls: BTreeMap<String, Key>,
}

/// Everything the table is made of.
#[derive(Debug, Default)]
pub struct Inputs {
    /// The Ingresses this controller serves, by namespace and name.
    pub ingresses: BTreeMap<Key, IngressSpec>,
    /// Services by namespace and name.
    pub services: HashMap<Key, ServiceView>,
    /// EndpointSlices by namespace and name.
    pub slices: HashMap<Key, SliceView>,
}

fn wildcard_matches(suffix: &str, host: &str) -> bool {
    // `*.example.com` takes `a.example.com`, not `example.com` nor `a.b.example.com`.
    host.strip_suffix(suffix).is_some_and(|label| !label.is_empty() && !label.contains('.'))
}

impl Table {
    /// Builds the table.
    pub fn build(inputs: &Inputs) -> Table {
        let mut table = Table::default();
        let mut upstream_of: HashMap<(Key, String), usize> = HashMap::new();
        let mut upstream = |table: &mut Table, namespace: &str, backend: &IngressBackend| {
            let service = backend.service.as_ref()?;
            let port = service.port.as_ref()?;
            let port_ref = match (&port.name, port.number) {
                (Some(name), _) if !name.is_empty() => name.clone(),
                (_, Some(number)) => number.to_string(),
                _ => return None,
            };
            let key = ((namespace.to_string(), service.name.clone()), port_ref);
            if let Some(index) = upstream_of.get(&key) {
                return Some(*index);
            }
            let resolved = resolve(inputs, &key.0, port.name.as_deref(), port.number);
            table.upstreams.push(resolved);
            let index = table.upstreams.len() - 1;
            upstream_of.insert(key, index);
            Some(index)
        };
        for ((namespace, _), spec) in &inputs.ingresses {
            if table.default_backend.is_none()
                && let Some(backend) = &spec.default_backend
            {
                table.default_backend = upstream(&mut table, namespace, backend);
            }
            for tls in spec.tls.iter().flatten() {
                let Some(secret) = &tls.secret_name else { continue };
                for host in tls.hosts.iter().flatten() {
                    table
                        .tls
                        .entry(host.to_ascii_lowercase())
                        .or_insert_with(|| (namespace.clone(), secret.clone()));
                }
            }
            for rule in spec.rules.iter().flatten() {
                let Some(http) = &rule.http else { continue };
                let mut paths = Vec::new();
                for path in &http.paths {
                    let Some(index) = upstream(&mut table, namespace, &path.backend) else {
                        continue;
                    };
                    let kind =
                        if path.path_type == "Exact" { PathKind::Exact } else { PathKind::Prefix };
                    let path = path.path.clone().unwrap_or_else(|| "/".into());
                    paths.push(PathRule { path, kind, upstream: index });
                }
                let host = rule.host.as_deref().unwrap_or("").to_ascii_lowercase();
                let list = if host.is_empty() {
                    &mut table.any_host
                } else if let Some(suffix) = host.strip_prefix('*') {
                    match table.wildcard.iter().position(|(s, _)| s == suffix) {
                        Some(at) => &mut table.wildcard[at].1,
                        None => {
                            table.wildcard.push((suffix.to_string(), Vec::new()));
                            let last = table.wildcard.len() - 1;
                            &mut table.wildcard[last].1
                        }
                    }
                } else {
                    table.exact.entry(host).or_default()
                };
                list.extend(paths);
            }
        }
        // The longest path first, Exact before Prefix at equal length; the first Ingress's
        // rule (by namespace and name) wins a tie, as the sort is stable.
        let order = |rules: &mut Vec<PathRule>| {
            rules.sort_by(|a, b| b.path.len().cmp(&a.path.len()).then(a.kind.cmp(&b.kind)));
        };
        table.exact.values_mut().for_each(order);
        table.wildcard.iter_mut().for_each(|(_, rules)| order(rules));
        order(&mut table.any_host);
        table
    }

    /// Where a request for `host` (lower case, without port) and `path` goes, or `None`
    /// (404).
    pub fn route(&self, host: &str, path: &str) -> Option<&Upstream> {
        let by_host = self.exact.get(host).or_else(|| {
            self.wildcard.iter().find(|(suffix, _)| wildcard_matches(suffix, host)).map(|(_, r)| r)
        });
        let matched = by_host
            .and_then(|rules| rules.iter().find(|r| r.matches(path)))
            .or_else(|| self.any_host.iter().find(|r| r.matches(path)))
            .map(|r| r.upstream)
            .or(self.default_backend)?;
        self.upstreams.get(matched)
    }

    /// The TLS Secret for the server name `host`, exact before wildcard.
    pub fn tls_secret(&self, host: &str) -> Option<&Key> {
        self.tls.get(host).or_else(|| {
            self.tls
                .iter()
                .find(|(h, _)| h.strip_prefix('*').is_some_and(|s| wildcard_matches(s, host)))
                .map(|(_, key)| key)
        })
    }
}

/// The ready endpoints of a Service port named by number or name: the Service port, then
/// the slices' port of the same name.
fn resolve(inputs: &Inputs, service: &Key, name: Option<&str>, number: Option<i32>) -> Upstream {
    let label = format!(
        "{}/{}:{}",
        service.0,
        service.1,
        name.map(str::to_string).or(number.map(|n| n.to_string())).unwrap_or_default()
    );
    let Some(view) = inputs.services.get(service) else {
        return Upstream { endpoints: vec![], name: label };
    };
    let port = view.ports.iter().find(|(n, p)| match name.filter(|n| !n.is_empty()) {
        Some(name) => n == name,
        None => Some(*p) == number,
    });
    let Some((port_name, _)) = port else { return Upstream { endpoints: vec![], name: label } };
    let mut endpoints: Vec<SocketAddr> = inputs
        .slices
        .values()
        .filter(|s| &s.service == service)
        .flat_map(|s| {
            let target = s.ports.iter().find(|(n, _)| n == port_name).map(|(_, p)| *p);
            s.ready
                .iter()
                .filter_map(move |ip| Some(SocketAddr::new(*ip, u16::try_from(target?).ok()?)))
        })
        .collect();
    endpoints.sort();
    endpoints.dedup();
    Upstream { endpoints, name: label }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ingress(value: serde_json::Value) -> IngressSpec {
        serde_json::from_value(value).unwrap()
    }

    fn inputs() -> Inputs {
        let mut i = Inputs::default();
        for (name, ip) in [("a", "10.0.0.1"), ("b", "10.0.0.2")] {
            i.services.insert(
                ("ns".into(), name.into()),
                ServiceView { ports: vec![("http".into(), 80)] },
            );
            i.slices.insert(
                ("ns".into(), format!("{name}-x")),
                SliceView {
                    service: ("ns".into(), name.into()),
                    ports: vec![("http".into(), 8080)],
                    ready: vec![ip.parse().unwrap()],
                },
            );
        }
        i.ingresses.insert(
            ("ns".into(), "web".into()),
            ingress(serde_json::json!({
                "defaultBackend": {"service": {"name": "b", "port": {"number": 80}}},
                "tls": [{"hosts": ["a.test", "*.wild.test"], "secretName": "cert"}],
                "rules": [
                    {"host": "a.test", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "a", "port": {"name": "http"}}}},
                        {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "b", "port": {"number": 80}}}},
                        {"path": "/exact", "pathType": "Exact", "backend": {"service": {"name": "b", "port": {"number": 80}}}}]}},
                    {"host": "*.wild.test", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "b", "port": {"number": 80}}}}]}},
                    {"host": "gone.test", "http": {"paths": [
                        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "none", "port": {"number": 80}}}}]}}
                ]
            })),
        );
        i
    }

    fn to(table: &Table, host: &str, path: &str) -> Option<String> {
        table.route(host, path).map(|u| u.endpoints.iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn hosts_and_paths_route_as_upstream_says() {
        let t = Table::build(&inputs());
        assert_eq!(to(&t, "a.test", "/"), Some("10.0.0.1:8080".into()));
        assert_eq!(to(&t, "a.test", "/api"), Some("10.0.0.2:8080".into()));
        assert_eq!(to(&t, "a.test", "/api/v1"), Some("10.0.0.2:8080".into()));
        // Element-wise: /apis is not under /api.
        assert_eq!(to(&t, "a.test", "/apis"), Some("10.0.0.1:8080".into()));
        assert_eq!(to(&t, "a.test", "/exact"), Some("10.0.0.2:8080".into()));
        assert_eq!(to(&t, "a.test", "/exact/more"), Some("10.0.0.1:8080".into()));
        // One label for the wildcard.
        assert_eq!(to(&t, "x.wild.test", "/"), Some("10.0.0.2:8080".into()));
        assert_eq!(to(&t, "wild.test", "/"), Some("10.0.0.2:8080".into())); // the default backend
        // A Service that does not exist: a route without endpoints (503).
        assert_eq!(to(&t, "gone.test", "/"), Some(String::new()));
    }

    #[test]
    fn without_a_default_backend_an_unknown_host_has_no_route() {
        let mut i = inputs();
        i.ingresses.values_mut().for_each(|s| s.default_backend = None);
        let t = Table::build(&i);
        assert_eq!(t.route("other.test", "/"), None);
    }

    #[test]
    fn tls_secrets_by_server_name() {
        let t = Table::build(&inputs());
        let cert = ("ns".to_string(), "cert".to_string());
        assert_eq!(t.tls_secret("a.test"), Some(&cert));
        assert_eq!(t.tls_secret("b.wild.test"), Some(&cert));
        assert_eq!(t.tls_secret("b.test"), None);
    }
}
