//! The interim authorization policy, until RBAC: every authenticated user may do everything;
//! anonymous users may only read the public information and discovery documents.
//!
//! This is what upstream grants through the bindings of `system:public-info-viewer`
//! (`/healthz`, `/livez`, `/readyz`, `/version`) and `system:discovery` (`/api`, `/api/*`,
//! `/apis`, `/apis/*`, `/openapi`, `/openapi/*`) to `system:unauthenticated`; the RBAC
//! authorizer replaces this policy with those bindings. Paths that are resources (`/api/v1/pods`)
//! are resource requests, never matched by the non-resource patterns.

use krust_auth::{AUTHENTICATED, Attributes, Authorizer, Decision};

/// Authenticated users: everything; others: `get` of the public non-resource paths.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnonymousPolicy;

/// The non-resource paths anonymous users may get (`*` at the end: any path under it).
const PUBLIC_PATHS: &[&str] = &[
    "/healthz",
    "/livez",
    "/readyz",
    "/version",
    "/version/",
    "/api",
    "/api/*",
    "/apis",
    "/apis/*",
    "/openapi",
    "/openapi/*",
];

/// Whether `path` matches one of `patterns` as RBAC's `nonResourceURLs` match.
fn matches(patterns: &[&str], path: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => path == *p,
    })
}

impl Authorizer for AnonymousPolicy {
    fn authorize(&self, attributes: &Attributes) -> Decision {
        if attributes.user.in_group(AUTHENTICATED) {
            return Decision::Allow("authenticated users may do everything until RBAC".into());
        }
        if !attributes.resource_request
            && matches!(attributes.verb.as_str(), "get" | "head")
            && matches(PUBLIC_PATHS, &attributes.path)
        {
            return Decision::Allow("public information and discovery".into());
        }
        Decision::NoOpinion(String::new())
    }
}

#[cfg(test)]
mod tests {
    use krust_auth::UserInfo;

    use super::*;

    fn anonymous(verb: &str, path: &str, resource: bool) -> Attributes {
        Attributes {
            user: crate::authn::anonymous(),
            verb: verb.into(),
            resource_request: resource,
            path: path.into(),
            resource: if resource { "pods".into() } else { String::new() },
            ..Attributes::default()
        }
    }

    #[test]
    fn anonymous_users_read_only_public_information_and_discovery() {
        let cases = [
            ("get", "/version", false, true),
            ("get", "/healthz", false, true),
            ("get", "/readyz", false, true),
            ("get", "/api", false, true),
            ("get", "/apis/apps/v1", false, true),
            ("get", "/openapi/v3/api/v1", false, true),
            ("post", "/api", false, false),
            ("get", "/metrics", false, false),
            ("get", "/healthz/etcd", false, false),
            ("get", "/foo", false, false),
            ("list", "/api/v1/pods", true, false),
        ];
        for (verb, path, resource, allowed) in cases {
            let decision = AnonymousPolicy.authorize(&anonymous(verb, path, resource));
            assert_eq!(decision.allowed(), allowed, "{verb} {path}");
        }
    }

    #[test]
    fn authenticated_users_may_do_everything_for_now() {
        let user = UserInfo {
            name: "jane".into(),
            groups: vec!["system:authenticated".into()],
            ..UserInfo::default()
        };
        let attributes = Attributes { user, verb: "delete".into(), ..anonymous("", "", true) };
        assert!(AnonymousPolicy.authorize(&attributes).allowed());
    }
}
