//! The create-only virtual resources of authentication: nothing is stored, the answer is the
//! request with its status filled in.
//!
//! - `TokenReview` (`POST /apis/authentication.k8s.io/v1/tokenreviews`): who a token is.
//! - `SelfSubjectReview` (`POST /apis/authentication.k8s.io/{v1,v1beta1,v1alpha1}/selfsubjectreviews`,
//!   `kubectl auth whoami`): who the caller is.
//! - `TokenRequest` (`POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`,
//!   `kubectl create token`): a new service-account token, optionally bound to a pod, secret or
//!   node.

use krust_api::StatusError;
use krust_auth::UserInfo;
use krust_auth::authn::service_account::{BoundKind, ObjectRef, TokenSpec};
use serde_json::{Value, json};

use crate::ApiServer;
use crate::http::request_info::ResourceRequest;

/// The shortest token a TokenRequest may ask for (upstream: 10 minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The lifetime of a TokenRequest's token when it asks for none (upstream: 1 hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

const GROUP: &str = "authentication.k8s.io";

/// One of the virtual resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `tokenreviews`.
    TokenReview,
    /// `selfsubjectreviews`.
    SelfSubjectReview,
    /// `serviceaccounts/token`.
    TokenRequest,
}

impl Endpoint {
    /// The endpoint a resource request creates, if it is one of them.
    pub fn of(r: &ResourceRequest) -> Option<Self> {
        if r.verb != "create" {
            return None;
        }
        match (
            r.group.as_str(),
            r.resource.as_str(),
            &r.namespace,
            &r.name,
            r.subresource.as_deref(),
        ) {
            (GROUP, "tokenreviews", None, None, None) if r.version == "v1" => {
                Some(Self::TokenReview)
            }
            (GROUP, "selfsubjectreviews", None, None, None)
                if matches!(r.version.as_str(), "v1" | "v1beta1" | "v1alpha1") =>
            {
                Some(Self::SelfSubjectReview)
            }
            ("", "serviceaccounts", Some(_), Some(_), Some("token")) if r.version == "v1" => {
                Some(Self::TokenRequest)
            }
            _ => None,
        }
    }
}

/// Answers a create of `endpoint` by `user` with the decoded `body`.
pub async fn create(
    api: &ApiServer,
    user: &UserInfo,
    endpoint: Endpoint,
    r: &ResourceRequest,
    body: Value,
) -> Result<Value, StatusError> {
    match endpoint {
        Endpoint::TokenReview => token_review(api, body),
        Endpoint::SelfSubjectReview => Ok(self_subject_review(user, &r.version)),
        Endpoint::TokenRequest => {
            let namespace = r.namespace.as_deref().unwrap_or_default();
            let name = r.name.as_deref().unwrap_or_default();
            token_request(api, namespace, name, body).await
        }
    }
}

/// upstream's `UserInfo` of the authentication API.
fn user_info_json(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.groups.is_empty() {
        info["groups"] = json!(user.groups);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

/// Who the caller is.
pub fn self_subject_review(user: &UserInfo, version: &str) -> Value {
    json!({
        "kind": "SelfSubjectReview",
        "apiVersion": format!("{GROUP}/{version}"),
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": user_info_json(user)},
    })
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Who `spec.token` is, for the audiences `spec.audiences` (default: the API server's).
pub fn token_review(api: &ApiServer, mut body: Value) -> Result<Value, StatusError> {
    let token = body.pointer("/spec/token").and_then(Value::as_str).unwrap_or_default();
    if token.is_empty() {
        return Err(StatusError::bad_request(format!(
            "token is required for TokenReview in {GROUP}"
        )));
    }
    let audiences = strings(body.pointer("/spec/audiences"));
    let asked = (!audiences.is_empty()).then_some(audiences.as_slice());
    let status = match super::authenticate_token(api, token, asked) {
        Ok((user, audiences)) => json!({
            "authenticated": true,
            "user": user_info_json(&user),
            "audiences": audiences,
        }),
        Err(error) => json!({"user": {}, "error": error}),
    };
    let Some(map) = body.as_object_mut() else {
        return Err(StatusError::bad_request("a TokenReview must be an object"));
    };
    map.insert("kind".into(), json!("TokenReview"));
    map.insert("apiVersion".into(), json!(format!("{GROUP}/v1")));
    map.entry("metadata").or_insert_with(|| json!({}));
    if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("creationTimestamp".into(), Value::Null);
    }
    map.insert("status".into(), status);
    Ok(body)
}

fn invalid(name: &str, field: &str, value: Value, message: &str) -> StatusError {
    let shown = match &value {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    StatusError {
        details: Some(json!({
            "name": name, "group": GROUP, "kind": "TokenRequest",
            "causes": [{"reason": "FieldValueInvalid", "message": format!("Invalid value: {shown}: {message}"), "field": field}],
        })),
        ..StatusError::new(
            krust_api::Reason::Invalid,
            format!(
                "TokenRequest.{GROUP} {name:?} is invalid: {field}: Invalid value: {shown}: {message}"
            ),
        )
    }
}

/// A new token for service account `namespace/name`, as upstream's TokenRequest REST: the
/// service account must exist; a bound object must exist (with the uid given, if any) and a
/// bound pod must run as that service account.
pub async fn token_request(
    api: &ApiServer,
    namespace: &str,
    name: &str,
    mut body: Value,
) -> Result<Value, StatusError> {
    let catalog = api.registry.catalog();
    let lookup = |plural: &str| {
        catalog
            .lookup("", "v1", plural)
            .ok_or_else(|| StatusError::internal(format!("{plural} are not served")))
    };
    let sa = api.registry.get(&lookup("serviceaccounts")?, Some(namespace), name).await?;
    let expiration = match body.pointer("/spec/expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            invalid(name, "spec.expirationSeconds", v.clone(), "must be an integer")
        })?,
    };
    if expiration < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            json!(expiration),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let mut audiences = strings(body.pointer("/spec/audiences"));
    if audiences.is_empty() {
        audiences = api.authn.tokens.api_audiences.clone();
    }
    let bound_ref = body.pointer("/spec/boundObjectRef").filter(|v| !v.is_null()).cloned();
    let bound = match &bound_ref {
        None => None,
        Some(reference) => {
            let field = |f: &str| reference.get(f).and_then(Value::as_str).unwrap_or_default();
            let (kind, object_name, uid) = (field("kind"), field("name"), field("uid"));
            let bound_kind =
                BoundKind::parse(kind).filter(|_| matches!(field("apiVersion"), "" | "v1"));
            let Some(bound_kind) = bound_kind else {
                return Err(StatusError::bad_request(format!(
                    "cannot bind token for serviceaccount {name:?} to object of kind {:?}",
                    format!("{}, Kind={kind}", field("apiVersion"))
                )));
            };
            let (plural, ns) = match bound_kind {
                BoundKind::Pod => ("pods", Some(namespace)),
                BoundKind::Secret => ("secrets", Some(namespace)),
                BoundKind::Node => ("nodes", None),
            };
            let object = api.registry.get(&lookup(plural)?, ns, object_name).await?;
            let live_uid =
                object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
            if !uid.is_empty() && uid != live_uid {
                return Err(StatusError {
                    details: Some(json!({"name": object_name, "kind": kind})),
                    ..StatusError::new(
                        krust_api::Reason::Conflict,
                        format!(
                            "Operation cannot be fulfilled on {kind} {object_name:?}: the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
                        ),
                    )
                });
            }
            if bound_kind == BoundKind::Pod {
                let runs_as = object
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .unwrap_or("default");
                if runs_as != name {
                    return Err(StatusError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
            }
            Some((
                bound_kind,
                ObjectRef { name: object_name.to_string(), uid: live_uid.to_string() },
            ))
        }
    };
    let spec = TokenSpec {
        namespace: namespace.to_string(),
        service_account: ObjectRef {
            name: name.to_string(),
            uid: sa
                .pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        },
        audiences: audiences.clone(),
        bound: bound.clone(),
        expiration_seconds: expiration,
    };
    let now = super::now();
    let (token, claims) =
        api.authn.tokens.issue(&spec, now).map_err(|e| StatusError::internal(e.to_string()))?;
    let expires = chrono::DateTime::from_timestamp(claims.exp, 0)
        .map(crate::registry::timestamp)
        .unwrap_or_default();
    let Some(map) = body.as_object_mut() else {
        return Err(StatusError::bad_request("a TokenRequest must be an object"));
    };
    map.insert("kind".into(), json!("TokenRequest"));
    map.insert("apiVersion".into(), json!(format!("{GROUP}/v1")));
    map.insert(
        "metadata".into(),
        json!({"name": name, "namespace": namespace, "creationTimestamp": crate::registry::timestamp(chrono::Utc::now())}),
    );
    let mut spec_json =
        json!({"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": null});
    if let (Some(mut reference), Some((_, object))) = (bound_ref, bound) {
        reference["uid"] = json!(object.uid);
        spec_json["boundObjectRef"] = reference;
    }
    map.insert("spec".into(), spec_json);
    map.insert("status".into(), json!({"token": token, "expirationTimestamp": expires}));
    Ok(body)
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::http::request_info::{self, Target};

    fn endpoint(method: Method, path: &str) -> Option<Endpoint> {
        match request_info::parse(&method, path, false) {
            Target::Resource(r) => Endpoint::of(&r),
            _ => None,
        }
    }

    #[test]
    fn only_creates_of_the_virtual_resources_are_dispatched() {
        let cases = [
            (
                Method::POST,
                "/apis/authentication.k8s.io/v1/tokenreviews",
                Some(Endpoint::TokenReview),
            ),
            (
                Method::POST,
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                Some(Endpoint::SelfSubjectReview),
            ),
            (
                Method::POST,
                "/apis/authentication.k8s.io/v1beta1/selfsubjectreviews",
                Some(Endpoint::SelfSubjectReview),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/a/serviceaccounts/robot/token",
                Some(Endpoint::TokenRequest),
            ),
            (Method::GET, "/apis/authentication.k8s.io/v1/tokenreviews", None),
            (Method::POST, "/api/v1/namespaces/a/serviceaccounts", None),
            (Method::GET, "/api/v1/namespaces/a/serviceaccounts/robot/token", None),
        ];
        for (method, path, expected) in cases {
            assert_eq!(endpoint(method.clone(), path), expected, "{method} {path}");
        }
    }

    #[test]
    fn a_self_subject_review_shows_the_callers_user_info() {
        let user = UserInfo {
            name: "jane".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            ..UserInfo::default()
        };
        assert_eq!(
            self_subject_review(&user, "v1"),
            json!({
                "kind": "SelfSubjectReview",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": {"username": "jane", "groups": ["dev", "system:authenticated"]}},
            })
        );
    }

    #[test]
    fn invalid_expirations_are_worded_as_upstreams() {
        let e = invalid(
            "robot",
            "spec.expirationSeconds",
            json!(60),
            "may not specify a duration less than 10 minutes",
        );
        assert_eq!(e.code(), 422);
        assert_eq!(
            e.message,
            r#"TokenRequest.authentication.k8s.io "robot" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"#
        );
    }
}
