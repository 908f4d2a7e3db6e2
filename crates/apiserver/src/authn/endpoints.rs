//! The create-only virtual resources of authentication: nothing is stored, the answer is the
//! request with its status filled in.
//!
//! - `TokenReview` (`POST /apis/authentication.k8s.io/v1/tokenreviews`): who a token is.
//! - `SelfSubjectReview` (`POST /apis/authentication.k8s.io/{v1,v1beta1,v1alpha1}/selfsubjectreviews`,
//!   `kubectl auth whoami`): who the caller is.
//!
//! TokenRequest (`serviceaccounts/token`), which stores nothing either, is a subresource of
//! service accounts: [`super::token_request`].

use krust_api::StatusError;
use krust_auth::UserInfo;
use serde_json::{Value, json};

use crate::ApiServer;
use crate::http::request_info::ResourceRequest;

const GROUP: &str = "authentication.k8s.io";

/// One of the virtual resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `tokenreviews`.
    TokenReview,
    /// `selfsubjectreviews`.
    SelfSubjectReview,
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

/// The strings of a JSON array (none when it is absent or not an array).
pub(super) fn strings(value: Option<&Value>) -> Vec<String> {
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
            (Method::POST, "/api/v1/namespaces/a/serviceaccounts/robot/token", None),
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
}
