//! The `Status` error shape (meta/v1 `Status`) every failed request is answered with.

use serde_json::{Value, json};

use crate::validation::FieldError;

/// What failed, as upstream's `metav1.StatusReason`: in-process callers match on it, and the
/// edge writes it (with the HTTP code) into the `Status` it answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No reason given (`""`).
    Unknown,
    /// 400: the request itself is invalid.
    BadRequest,
    /// 401: no valid credentials.
    Unauthorized,
    /// 403: the requester may not do this.
    Forbidden,
    /// 404: the object (or route) does not exist.
    NotFound,
    /// 405: the verb is not served on the resource.
    MethodNotAllowed,
    /// 406: no form the client accepts can be served.
    NotAcceptable,
    /// 409: the object exists already.
    AlreadyExists,
    /// 409: the write conflicts with the object's current state.
    Conflict,
    /// 410: gone, and will not come back.
    Gone,
    /// 410: the resourceVersion asked for is older than the history kept.
    Expired,
    /// 413: the request is too large.
    RequestEntityTooLarge,
    /// 415: the body's media type is not served.
    UnsupportedMediaType,
    /// 422: the object fails validation (with causes).
    Invalid,
    /// 429: too many requests, or a budget (a PodDisruptionBudget) has no room.
    TooManyRequests,
    /// 500: the server failed.
    InternalError,
    /// 500: the server could not finish in time, and the client may retry.
    ServerTimeout,
    /// 503: the server cannot serve this now.
    ServiceUnavailable,
    /// 504: the request did not finish in time.
    Timeout,
    /// A reason upstream's Status does not define, for answers at the HTTP edge that
    /// upstream's Go server writes itself (`RequestURITooLong`, ...).
    Other(&'static str),
}

impl Reason {
    /// Upstream's name (`""` for [`Reason::Unknown`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unknown => "",
            Reason::BadRequest => "BadRequest",
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::NotFound => "NotFound",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::NotAcceptable => "NotAcceptable",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Gone => "Gone",
            Reason::Expired => "Expired",
            Reason::RequestEntityTooLarge => "RequestEntityTooLarge",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::Invalid => "Invalid",
            Reason::TooManyRequests => "TooManyRequests",
            Reason::InternalError => "InternalError",
            Reason::ServerTimeout => "ServerTimeout",
            Reason::ServiceUnavailable => "ServiceUnavailable",
            Reason::Timeout => "Timeout",
            Reason::Other(name) => name,
        }
    }

    /// The reason named `name` ([`Reason::Unknown`] for a name upstream does not define).
    pub fn from_name(name: &str) -> Self {
        const ALL: [Reason; 19] = [
            Reason::Unknown,
            Reason::BadRequest,
            Reason::Unauthorized,
            Reason::Forbidden,
            Reason::NotFound,
            Reason::MethodNotAllowed,
            Reason::NotAcceptable,
            Reason::AlreadyExists,
            Reason::Conflict,
            Reason::Gone,
            Reason::Expired,
            Reason::RequestEntityTooLarge,
            Reason::UnsupportedMediaType,
            Reason::Invalid,
            Reason::TooManyRequests,
            Reason::InternalError,
            Reason::ServerTimeout,
            Reason::ServiceUnavailable,
            Reason::Timeout,
        ];
        ALL.into_iter().find(|r| r.as_str() == name).unwrap_or(Reason::Unknown)
    }
}

impl Reason {
    /// The HTTP status code the edge answers a failure of this reason with, as upstream's
    /// constructors in `k8s.io/apimachinery/pkg/api/errors` choose it.
    pub fn code(self) -> u16 {
        match self {
            Reason::BadRequest => 400,
            Reason::Unauthorized => 401,
            Reason::Forbidden => 403,
            Reason::NotFound => 404,
            Reason::MethodNotAllowed => 405,
            Reason::NotAcceptable => 406,
            Reason::AlreadyExists | Reason::Conflict => 409,
            Reason::Gone | Reason::Expired => 410,
            Reason::RequestEntityTooLarge => 413,
            Reason::UnsupportedMediaType => 415,
            Reason::Invalid => 422,
            Reason::TooManyRequests => 429,
            Reason::ServiceUnavailable => 503,
            Reason::Timeout => 504,
            Reason::Unknown | Reason::InternalError | Reason::ServerTimeout | Reason::Other(_) => {
                500
            }
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure to answer as a Kubernetes `Status` object: what failed ([`Reason`]), in words
/// and with details. The HTTP status is chosen at the edge ([`code`](Self::code)), from the
/// reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct StatusError {
    /// What failed.
    pub reason: Reason,
    /// Human-readable description.
    pub message: String,
    /// `details` of the Status (name, group, kind, causes), when there are any.
    pub details: Option<Value>,
    /// `metadata.continue`: where an expired paginated list may go on (inconsistently).
    pub continue_token: Option<String>,
    /// The HTTP code, only where it is not the reason's own: a webhook's refusal passed on
    /// as it came, or an answer upstream's Go server writes itself (414, 408).
    pub code_override: Option<u16>,
}

impl StatusError {
    /// An error with a reason and message and no details.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            details: None,
            continue_token: None,
            code_override: None,
        }
    }

    /// An error answered with `code` rather than its reason's code: a refusal passed on as
    /// another component gave it.
    pub fn with_code(code: u16, reason: Reason, message: impl Into<String>) -> Self {
        let code_override = (code != reason.code()).then_some(code);
        Self { code_override, ..Self::new(reason, message) }
    }

    /// The HTTP status code the edge answers with.
    pub fn code(&self) -> u16 {
        self.code_override.unwrap_or_else(|| self.reason.code())
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest, message)
    }

    /// 404 NotFound for a named object of `resource` in `group`.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        let qualified = qualified(group, resource);
        Self {
            details: Some(json!({"name": name, "group": group, "kind": resource})),
            ..Self::new(Reason::NotFound, format!("{qualified} \"{name}\" not found"))
        }
    }

    /// 409 AlreadyExists.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        let qualified = qualified(group, resource);
        Self {
            details: Some(json!({"name": name, "group": group, "kind": resource})),
            ..Self::new(Reason::AlreadyExists, format!("{qualified} \"{name}\" already exists"))
        }
    }

    /// 409 Conflict for an update against a stale resourceVersion.
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        let qualified = qualified(group, resource);
        Self {
            details: Some(json!({"name": name, "group": group, "kind": resource})),
            ..Self::new(
                Reason::Conflict,
                format!("Operation cannot be fulfilled on {qualified} \"{name}\": {why}"),
            )
        }
    }

    /// 422 Invalid with one cause per field error.
    pub fn invalid(group: &str, kind: &str, name: &str, errors: &[FieldError]) -> Self {
        let qualified = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let list: Vec<String> = errors.iter().map(FieldError::to_string).collect();
        let message = match list.as_slice() {
            [one] => format!("{qualified} \"{name}\" is invalid: {one}"),
            _ => format!("{qualified} \"{name}\" is invalid: [{}]", list.join(", ")),
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field}))
            .collect();
        Self {
            details: Some(json!({"name": name, "group": group, "kind": kind, "causes": causes})),
            ..Self::new(Reason::Invalid, message)
        }
    }

    /// 422 Invalid for bad list or watch options.
    pub fn invalid_options(message: impl Into<String>) -> Self {
        Self::new(
            Reason::Invalid,
            format!("ListOptions.meta.k8s.io \"\" is invalid: {}", message.into()),
        )
    }

    /// 410 Gone, for a resourceVersion older than the kept history.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(Reason::Expired, message)
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(Reason::MethodNotAllowed, message)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            Reason::UnsupportedMediaType,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            Reason::RequestEntityTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Reason::InternalError, message)
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Reason::Forbidden, message)
    }

    /// Whether the object was not found.
    pub fn is_not_found(&self) -> bool {
        self.reason == Reason::NotFound
    }

    /// Whether the write conflicted with the object's current state (a stale
    /// resourceVersion, or a precondition).
    pub fn is_conflict(&self) -> bool {
        self.reason == Reason::Conflict
    }

    /// Whether the object exists already.
    pub fn is_already_exists(&self) -> bool {
        self.reason == Reason::AlreadyExists
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(Reason::Unauthorized, "Unauthorized")
    }

    /// The `Status` object, with its members in upstream's order: kind, apiVersion, metadata,
    /// status, message, reason, details, code (clients compare error bodies byte for byte).
    pub fn to_status(&self) -> Value {
        let mut details = self.details.clone();
        if let Some(map) = details.as_mut().and_then(Value::as_object_mut)
            && map.get("group").and_then(Value::as_str) == Some("")
        {
            map.remove("group");
        }
        let metadata = match &self.continue_token {
            Some(token) => json!({"continue": token}),
            None => json!({}),
        };
        let mut status = serde_json::Map::new();
        status.insert("kind".into(), json!("Status"));
        status.insert("apiVersion".into(), json!("v1"));
        status.insert("metadata".into(), metadata);
        status.insert("status".into(), json!("Failure"));
        status.insert("message".into(), json!(self.message));
        if self.reason != Reason::Unknown {
            status.insert("reason".into(), json!(self.reason.as_str()));
        }
        if let Some(details) = details {
            status.insert("details".into(), details);
        }
        status.insert("code".into(), json!(self.code()));
        Value::Object(status)
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() { resource.to_string() } else { format!("{resource}.{group}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_lists_its_members_in_upstreams_order() {
        let status = StatusError::already_exists("apps", "deployments", "web").to_status();
        let text = serde_json::to_string(&status).unwrap_or_default();
        assert_eq!(
            text,
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"web\" already exists","reason":"AlreadyExists","details":{"name":"web","group":"apps","kind":"deployments"},"code":409}"#
        );
    }

    #[test]
    fn a_core_status_drops_the_empty_group() {
        let status = StatusError::not_found("", "pods", "web").to_status();
        assert_eq!(status["details"], json!({"name": "web", "kind": "pods"}));
    }

    #[test]
    fn the_code_is_chosen_from_the_reason_unless_a_refusal_came_with_its_own() {
        assert_eq!(StatusError::not_found("", "pods", "web").code(), 404);
        assert_eq!(StatusError::gone("too old").code(), 410);
        assert_eq!(StatusError::new(Reason::Timeout, "slow").code(), 504);
        let same = StatusError::with_code(403, Reason::Forbidden, "no");
        assert_eq!((same.code(), same.code_override), (403, None));
        // a webhook's refusal keeps the code it was given
        let passed = StatusError::with_code(418, Reason::Unknown, "teapot");
        assert_eq!(passed.code(), 418);
        assert_eq!(passed.to_status()["code"], 418);
        assert!(passed.to_status().get("reason").is_none());
    }
}
