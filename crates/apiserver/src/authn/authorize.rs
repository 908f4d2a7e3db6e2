//! Authorization at the edge: a request's [`Attributes`] (from `request_info`), the
//! authorizer's decision with `system:masters` bypassing it, upstream's 403 wording, and
//! impersonation checked through the same authorizer.

use http::{HeaderMap, Method};
use krust_api::StatusError;
use krust_auth::authn::impersonation::{self, ImpersonationError};
use krust_auth::{Attributes, Decision, MASTERS, UserInfo};
use serde_json::json;

use crate::ApiServer;
use crate::http::request_info::{self, Target};

/// What `user` asks to do with `method` on `path` (`watch`: the query asks to watch), as
/// upstream's `RequestInfo` reads it.
pub fn attributes(user: &UserInfo, method: &Method, path: &str, watch: bool) -> Attributes {
    let mut attributes =
        Attributes { user: user.clone(), path: path.to_string(), ..Attributes::default() };
    match request_info::parse(method, path, watch) {
        Target::Resource(r) => {
            attributes.resource_request = true;
            attributes.verb = r.verb.to_string();
            attributes.api_group = r.group;
            attributes.api_version = r.version;
            // A namespace is addressed inside itself (`/api/v1/namespaces/x`: namespace x).
            attributes.namespace = match (&r.namespace, r.resource.as_str(), &r.name) {
                (Some(ns), _, _) => ns.clone(),
                (None, "namespaces", Some(name)) => name.clone(),
                _ => String::new(),
            };
            attributes.resource = r.resource;
            attributes.subresource = r.subresource.unwrap_or_default();
            attributes.name = r.name.unwrap_or_default();
        }
        _ => attributes.verb = method.as_str().to_ascii_lowercase(),
    }
    attributes
}

/// Whether the request may go on: `system:masters` always, others when the server's authorizer
/// allows; else 403 with upstream's message.
pub fn authorize(api: &ApiServer, attributes: &Attributes) -> Result<(), StatusError> {
    if attributes.user.in_group(MASTERS) {
        return Ok(());
    }
    match api.authorizer.authorize(attributes) {
        Decision::Allow(_) => Ok(()),
        Decision::Deny(reason) | Decision::NoOpinion(reason) => Err(forbidden(attributes, &reason)),
    }
}

/// Upstream's 403 for a refused request: `pods "x" is forbidden: User "u" cannot get
/// resource "pods" in API group "" in the namespace "ns"[: reason]`, or `forbidden: User "u"
/// cannot get path "/foo"`, with the resource and name as details.
pub fn forbidden(attributes: &Attributes, reason: &str) -> StatusError {
    let a = attributes;
    let user = &a.user.name;
    let mut why = if !a.resource_request {
        format!("User {user:?} cannot {} path {:?}", a.verb, a.path)
    } else {
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", a.namespace)
        };
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            a.verb, a.api_group
        )
    };
    if !reason.is_empty() {
        why = format!("{why}: {reason}");
    }
    if !a.resource_request || a.resource.is_empty() {
        return StatusError {
            details: Some(json!({})),
            ..StatusError::forbidden(format!("forbidden: {why}"))
        };
    }
    let qualified = if a.api_group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    let message = if a.name.is_empty() {
        format!("{qualified} is forbidden: {why}")
    } else {
        format!("{qualified} {:?} is forbidden: {why}", a.name)
    };
    let mut details = json!({"group": a.api_group, "kind": a.resource});
    if !a.name.is_empty() {
        details["name"] = json!(a.name);
    }
    StatusError { details: Some(details), ..StatusError::forbidden(message) }
}

/// The user a request acts as: `user`, or whom its `Impersonate-*` headers name once `user`
/// passed every `impersonate` check (403 at the first refused).
pub fn impersonate(
    api: &ApiServer,
    user: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, StatusError> {
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| impersonation::is_impersonation_header(name.as_str()))
        .map(|(name, value)| {
            (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect();
    if pairs.is_empty() {
        return Ok(user);
    }
    let plan = match impersonation::plan(&user, &pairs) {
        Ok(Some(plan)) => plan,
        Ok(None) => return Ok(user),
        Err(e @ ImpersonationError::NoUser(_)) => {
            return Err(StatusError::internal(e.to_string()));
        }
    };
    for check in &plan.checks {
        authorize(api, check)?;
    }
    tracing::debug!(requester = %user.name, as_user = %plan.user.name, "impersonation");
    Ok(plan.user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anonymous() -> UserInfo {
        crate::authn::anonymous()
    }

    fn message(method: Method, path: &str) -> (String, serde_json::Value) {
        let e = forbidden(&attributes(&anonymous(), &method, path, false), "");
        assert_eq!((e.code(), e.reason.as_str()), (403, "Forbidden"));
        (e.message, e.details.unwrap_or_default())
    }

    #[test]
    fn refusals_are_worded_as_upstreams() {
        let cases = [
            (
                Method::GET,
                "/api/v1/namespaces/default/pods",
                r#"pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" in the namespace "default""#,
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                r#"namespaces is forbidden: User "system:anonymous" cannot list resource "namespaces" in API group "" at the cluster scope"#,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/x",
                r#"pods "x" is forbidden: User "system:anonymous" cannot get resource "pods" in API group "" in the namespace "default""#,
            ),
            (
                Method::GET,
                "/api/v1/namespaces/kube-system",
                r#"namespaces "kube-system" is forbidden: User "system:anonymous" cannot get resource "namespaces" in API group "" in the namespace "kube-system""#,
            ),
            (
                Method::POST,
                "/apis/apps/v1/namespaces/a/deployments/web/scale",
                r#"deployments.apps "web" is forbidden: User "system:anonymous" cannot create resource "deployments/scale" in API group "apps" in the namespace "a""#,
            ),
            (Method::GET, "/foo", r#"forbidden: User "system:anonymous" cannot get path "/foo""#),
        ];
        for (method, path, expected) in cases {
            assert_eq!(message(method, path).0, expected, "{path}");
        }
    }

    #[test]
    fn refusals_name_the_resource_and_object_in_their_details() {
        assert_eq!(
            message(Method::GET, "/apis/apps/v1/namespaces/a/deployments/web").1,
            json!({"group": "apps", "kind": "deployments", "name": "web"})
        );
        assert_eq!(message(Method::GET, "/metrics").1, json!({}));
    }

    #[test]
    fn a_reason_follows_the_message() {
        let a = attributes(&anonymous(), &Method::GET, "/foo", false);
        assert_eq!(
            forbidden(&a, "no RBAC policy matched").message,
            r#"forbidden: User "system:anonymous" cannot get path "/foo": no RBAC policy matched"#
        );
    }
}
