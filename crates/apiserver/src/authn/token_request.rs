//! TokenRequest (`POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`, `kubectl create
//! token`): a new service-account token, optionally bound to a pod, secret or node. Nothing
//! is stored; the answer is the request with its status filled in. Authentication owns the
//! signing key, so it adds this handler to the service accounts' declaration while the server
//! is put together ([`super::Authentication::install`]).

use std::sync::Arc;

use async_trait::async_trait;
use krust_api::StatusError;
use krust_auth::authn::service_account::{BoundKind, ObjectRef, TokenSpec};
use serde_json::{Value, json};

use super::ServiceAccountTokens;
use crate::registry::Registry;
use crate::registry::storage::{SubresourceHandler, SubresourceRequest};

/// The shortest token a TokenRequest may ask for (upstream: 10 minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The lifetime of a TokenRequest's token when it asks for none (upstream: 1 hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

const GROUP: &str = "authentication.k8s.io";

/// The handler of `serviceaccounts/token`.
pub struct TokenRequest {
    /// The key tokens are signed with.
    pub tokens: Arc<ServiceAccountTokens>,
}

#[async_trait]
impl SubresourceHandler for TokenRequest {
    fn verbs(&self) -> &'static [&'static str] {
        &["create"]
    }

    async fn handle(
        &self,
        registry: &Registry,
        request: SubresourceRequest<'_>,
    ) -> Result<(u16, Value), StatusError> {
        let namespace = request.namespace.unwrap_or_default();
        let answer =
            token_request(registry, &self.tokens, namespace, request.name, request.body).await?;
        Ok((201, answer))
    }
}

/// A new token for service account `namespace/name`, as upstream's TokenRequest REST: the
/// service account must exist; a bound object must exist (with the uid given, if any) and a
/// bound pod must run as that service account.
async fn token_request(
    registry: &Registry,
    tokens: &ServiceAccountTokens,
    namespace: &str,
    name: &str,
    mut body: Value,
) -> Result<Value, StatusError> {
    let catalog = registry.catalog();
    let lookup = |plural: &str| {
        catalog
            .lookup("", "v1", plural)
            .ok_or_else(|| StatusError::internal(format!("{plural} are not served")))
    };
    let sa = registry.get(&lookup("serviceaccounts")?, Some(namespace), name).await?;
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
    let mut audiences = super::endpoints::strings(body.pointer("/spec/audiences"));
    if audiences.is_empty() {
        audiences = tokens.api_audiences.clone();
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
            let object = registry.get(&lookup(plural)?, ns, object_name).await?;
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
        tokens.issue(&spec, now).map_err(|e| StatusError::internal(e.to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

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
