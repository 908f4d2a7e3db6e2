//! What a request asks for, read from its method and path alone (upstream's `RequestInfo`).

use http::Method;

/// A request for an API resource, or for something else the server answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A resource request.
    Resource(ResourceRequest),
    /// `/api` or `/apis`: the group lists (aggregated when asked).
    DiscoveryRoot {
        /// `true` for `/api`, `false` for `/apis`.
        legacy: bool,
    },
    /// `/apis/<group>`: one group.
    DiscoveryGroup(String),
    /// `/api/v1` or `/apis/<group>/<version>`: the resources of a group version.
    DiscoveryVersion {
        /// The group (empty for core).
        group: String,
        /// The version.
        version: String,
    },
    /// Anything else (`/version`, `/healthz`, `/openapi/...`), by path.
    Other(String),
}

/// The parts of a resource request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    /// The verb: get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'static str,
    /// API group (empty for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// The namespace in the path, if any.
    pub namespace: Option<String>,
    /// The plural resource.
    pub resource: String,
    /// The object's name, if any.
    pub name: Option<String>,
    /// The subresource, if any.
    pub subresource: Option<String>,
}

/// Reads the target of a request; `watch` tells whether the query asks to watch.
pub fn parse(method: &Method, path: &str, watch: bool) -> Target {
    let parts: Vec<&str> = path.trim_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Target::DiscoveryRoot { legacy: true },
        ["apis"] => return Target::DiscoveryRoot { legacy: false },
        ["api", version] => {
            return Target::DiscoveryVersion { group: String::new(), version: version.to_string() };
        }
        ["apis", group] => return Target::DiscoveryGroup(group.to_string()),
        ["apis", group, version] => {
            return Target::DiscoveryVersion {
                group: group.to_string(),
                version: version.to_string(),
            };
        }
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Target::Other(path.to_string()),
    };
    // The legacy `/watch/` prefix means the same as `?watch=true`.
    let (watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (watch, rest),
    };
    let (namespace, rest): (Option<&str>, &[&str]) = match rest {
        // `/namespaces/<ns>` and `/namespaces/<ns>/<subresource>` address the namespace itself
        // (status, finalize); `/namespaces/<ns>/<resource>...` a namespaced resource.
        ["namespaces", ns, resource, tail @ ..] if !is_namespace_subresource(resource, tail) => {
            (Some(*ns), &rest[2..])
        }
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return Target::Other(path.to_string()),
    };
    let verb = match (method.as_str(), name.is_some()) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    };
    Target::Resource(ResourceRequest {
        verb,
        group: group.to_string(),
        version: version.to_string(),
        namespace: namespace.map(str::to_string),
        resource: resource.to_string(),
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
    })
}

/// Whether `/namespaces/<ns>/<segment>` names a subresource of the namespace itself.
fn is_namespace_subresource(segment: &str, tail: &[&str]) -> bool {
    tail.is_empty() && matches!(segment, "status" | "finalize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(method: Method, path: &str) -> ResourceRequest {
        match parse(&method, path, false) {
            Target::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_resources_carry_their_namespace() {
        let r = resource(Method::GET, "/api/v1/namespaces/default/pods/web");
        assert_eq!(
            (r.verb, r.namespace.as_deref(), r.resource.as_str()),
            ("get", Some("default"), "pods")
        );
        assert_eq!(r.name.as_deref(), Some("web"));
    }

    #[test]
    fn a_namespace_is_addressed_as_a_cluster_resource() {
        let r = resource(Method::GET, "/api/v1/namespaces/default");
        assert_eq!(
            (r.namespace, r.resource.as_str(), r.name.as_deref()),
            (None, "namespaces", Some("default"))
        );
        let r = resource(Method::PUT, "/api/v1/namespaces/default/finalize");
        assert_eq!(
            (r.resource.as_str(), r.subresource.as_deref()),
            ("namespaces", Some("finalize"))
        );
    }

    #[test]
    fn subresources_and_groups_are_read() {
        let r = resource(Method::PUT, "/apis/apps/v1/namespaces/x/deployments/web/scale");
        assert_eq!(
            (r.group.as_str(), r.verb, r.subresource.as_deref()),
            ("apps", "update", Some("scale"))
        );
    }

    #[test]
    fn the_watch_prefix_and_collection_verbs_are_recognised() {
        assert_eq!(resource(Method::GET, "/api/v1/watch/namespaces/x/pods").verb, "watch");
        assert_eq!(resource(Method::DELETE, "/api/v1/namespaces/x/pods").verb, "deletecollection");
        assert_eq!(resource(Method::GET, "/apis/apps/v1/deployments").verb, "list");
    }

    #[test]
    fn discovery_paths_are_not_resources() {
        assert_eq!(parse(&Method::GET, "/api", false), Target::DiscoveryRoot { legacy: true });
        assert_eq!(parse(&Method::GET, "/apis/apps", false), Target::DiscoveryGroup("apps".into()));
        assert_eq!(parse(&Method::GET, "/version", false), Target::Other("/version".into()));
    }
}
