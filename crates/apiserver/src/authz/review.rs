//! The `authorization.k8s.io/v1` reviews, as upstream's `pkg/registry/authorization`: each is
//! a function from the posted object (and, for the `Self*` ones, the requester) to the
//! answered object. They are create-only and stored nowhere.
//!
//! - `SubjectAccessReview`: may the user of the spec do this?
//! - `LocalSubjectAccessReview`: the same, within the namespace of the URL.
//! - `SelfSubjectAccessReview`: may I do this? (`kubectl auth can-i`)
//! - `SelfSubjectRulesReview`: what may I do in this namespace? (`kubectl auth can-i --list`)

use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, NonResourceAttributes, NonResourceRule, ResourceAttributes,
    ResourceRule, SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
    SubjectAccessReviewSpec, SubjectAccessReviewStatus, SubjectRulesReviewStatus,
};
use krust_api::StatusError;
use krust_api::validation::FieldError;
use krust_auth::rbac::{Policy, aggregate_errors, full_authority};
use krust_auth::{Attributes, Authorizer, Decision, MASTERS, UserInfo};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::http::request_info::ResourceRequest;

/// The group of the reviews.
pub const GROUP: &str = "authorization.k8s.io";

/// Which review a request posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// `subjectaccessreviews`.
    SubjectAccess,
    /// `localsubjectaccessreviews` (namespaced).
    LocalSubjectAccess,
    /// `selfsubjectaccessreviews`.
    SelfSubjectAccess,
    /// `selfsubjectrulesreviews`.
    SelfSubjectRules,
}

impl Review {
    /// The review a resource request is for, if it is one (`authorization.k8s.io/v1`, any
    /// verb: the caller refuses all but create with [`Review::check_verb`]).
    pub fn of(r: &ResourceRequest) -> Option<Self> {
        if r.group != GROUP || r.version != "v1" || r.subresource.is_some() {
            return None;
        }
        Some(match r.resource.as_str() {
            "subjectaccessreviews" => Self::SubjectAccess,
            "localsubjectaccessreviews" => Self::LocalSubjectAccess,
            "selfsubjectaccessreviews" => Self::SelfSubjectAccess,
            "selfsubjectrulesreviews" => Self::SelfSubjectRules,
            _ => return None,
        })
    }

    /// The kind of the review.
    pub fn kind(self) -> &'static str {
        match self {
            Self::SubjectAccess => "SubjectAccessReview",
            Self::LocalSubjectAccess => "LocalSubjectAccessReview",
            Self::SelfSubjectAccess => "SelfSubjectAccessReview",
            Self::SelfSubjectRules => "SelfSubjectRulesReview",
        }
    }

    /// Refuses what is not a create of the right scope, as upstream's routes do.
    pub fn check_request(self, r: &ResourceRequest) -> Result<(), StatusError> {
        let namespaced = self == Self::LocalSubjectAccess;
        if r.verb != "create" || r.name.is_some() || r.namespace.is_some() != namespaced {
            return Err(StatusError::new(
                krust_api::Reason::MethodNotAllowed,
                format!("{} is not supported on {}.{GROUP}", r.verb, r.resource),
            ));
        }
        Ok(())
    }

    /// Answers the posted `body` from `requester`, deciding with `authorizer` and `policy`.
    pub fn answer(
        self,
        authorizer: &dyn Authorizer,
        policy: &Policy,
        requester: &UserInfo,
        namespace: Option<&str>,
        body: Value,
    ) -> Result<Value, StatusError> {
        match self {
            Self::SubjectAccess => to_json(&subject_access_review(authorizer, typed(self, body)?)?),
            Self::LocalSubjectAccess => to_json(&local_subject_access_review(
                authorizer,
                namespace.unwrap_or_default(),
                typed(self, body)?,
            )?),
            Self::SelfSubjectAccess => {
                to_json(&self_subject_access_review(authorizer, requester, typed(self, body)?)?)
            }
            Self::SelfSubjectRules => {
                to_json(&self_subject_rules_review(policy, requester, typed(self, body)?)?)
            }
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Value, StatusError> {
    serde_json::to_value(value).map_err(|e| StatusError::internal(e.to_string()))
}

/// Reads a posted review as its type; `apiVersion` and `kind` default to the URL's.
fn typed<T: DeserializeOwned>(review: Review, mut body: Value) -> Result<T, StatusError> {
    let Some(map) = body.as_object_mut() else {
        return Err(StatusError::bad_request(
            "the body of the request must be a JSON or YAML object",
        ));
    };
    let api_version = format!("{GROUP}/v1");
    for (field, expected) in [("apiVersion", api_version.as_str()), ("kind", review.kind())] {
        match map.get(field).and_then(Value::as_str) {
            None | Some("") => {
                map.insert(field.into(), Value::String(expected.into()));
            }
            Some(given) if given != expected => {
                return Err(StatusError::bad_request(format!(
                    "{field} {given:?} does not match the expected {expected:?}"
                )));
            }
            Some(_) => {}
        }
    }
    T::deserialize(&body).map_err(|e| {
        StatusError::bad_request(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: {e}",
            kind = review.kind()
        ))
    })
}

/// The decision for `attributes`: members of `system:masters` are allowed (upstream's
/// privileged-group authorizer, first in its chain), everyone else as `authorizer` decides.
pub fn decide(authorizer: &dyn Authorizer, attributes: &Attributes) -> Decision {
    if attributes.user.in_group(MASTERS) {
        return Decision::Allow(String::new());
    }
    authorizer.authorize(attributes)
}

/// The attributes of a review: the resource or the non-resource request it asks about.
fn attributes(
    user: UserInfo,
    resource: Option<&ResourceAttributes>,
    non_resource: Option<&NonResourceAttributes>,
) -> Attributes {
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    match (resource, non_resource) {
        (Some(r), _) => Attributes {
            user,
            verb: s(&r.verb),
            resource_request: true,
            namespace: s(&r.namespace),
            api_group: s(&r.group),
            api_version: r.version.clone().filter(|v| !v.is_empty()).unwrap_or_else(|| "*".into()),
            resource: s(&r.resource),
            subresource: s(&r.subresource),
            name: s(&r.name),
            path: String::new(),
        },
        (None, Some(n)) => {
            Attributes { user, verb: s(&n.verb), path: s(&n.path), ..Attributes::default() }
        }
        (None, None) => Attributes { user, ..Attributes::default() },
    }
}

fn status(decision: Decision) -> SubjectAccessReviewStatus {
    let (allowed, denied, reason) = match decision {
        Decision::Allow(r) => (true, false, r),
        Decision::Deny(r) => (false, true, r),
        Decision::NoOpinion(r) => (false, false, r),
    };
    SubjectAccessReviewStatus {
        allowed,
        denied: denied.then_some(true),
        reason: Some(reason).filter(|r| !r.is_empty()),
        evaluation_error: None,
    }
}

/// Upstream's checks of a review's spec: one of resource or non-resource attributes, and
/// well-formed selectors in the resource attributes.
fn check_attributes(
    resource: Option<&ResourceAttributes>,
    non_resource: Option<&NonResourceAttributes>,
    errors: &mut Vec<FieldError>,
) {
    if let Some(r) = resource {
        check_selectors(r, errors);
    }
    match (resource, non_resource) {
        (Some(_), Some(n)) => errors.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            serde_json::to_value(n).unwrap_or(Value::Null),
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => errors.push(FieldError::invalid(
            "spec.resourceAttributes",
            Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        _ => {}
    }
}

/// Upstream's checks of the field and label selectors a review may limit its question by
/// (`validateFieldSelectorAttributes`, `validateLabelSelectorAttributes`): a raw selector or
/// requirements, not both, and each requirement well formed. Operators this server does not
/// know are allowed, so that newer clients' reviews are still answered. The authorizers
/// here (Node, RBAC) grant by rules that selectors cannot narrow, so a valid selector does
/// not change the answer, as upstream's RBAC.
fn check_selectors(r: &ResourceAttributes, errors: &mut Vec<FieldError>) {
    const PATH: &str = "spec.resourceAttributes";
    let in_or_not_in = |op: &str| matches!(op, "In" | "NotIn");
    let exists = |op: &str| matches!(op, "Exists" | "DoesNotExist");
    let raw_and_requirements =
        |path: &str, raw: &Option<String>, count: usize, errors: &mut Vec<FieldError>| {
            let raw = raw.as_deref().unwrap_or_default();
            if !raw.is_empty() && count > 0 {
                errors.push(FieldError::invalid(
                    format!("{path}.rawSelector"),
                    Value::String(raw.to_string()),
                    "may not specified at the same time as requirements",
                ));
            }
            if raw.is_empty() && count == 0 {
                errors.push(FieldError::required(format!("{path}.requirements")).with_detail(
                    format!("when {path} is specified, requirements or rawSelector is required"),
                ));
            }
        };
    let values_rule = |path: &str, op: &str, values: usize, errors: &mut Vec<FieldError>| {
        if in_or_not_in(op) && values == 0 {
            errors.push(
                FieldError::required(format!("{path}.values"))
                    .with_detail("must be specified when `operator` is 'In' or 'NotIn'"),
            );
        }
        if exists(op) && values > 0 {
            errors.push(FieldError::forbidden(
                format!("{path}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ));
        }
    };
    if let Some(selector) = &r.field_selector {
        let path = format!("{PATH}.fieldSelector");
        let requirements = selector.requirements.as_deref().unwrap_or_default();
        raw_and_requirements(&path, &selector.raw_selector, requirements.len(), errors);
        for (i, req) in requirements.iter().enumerate() {
            let values = req.values.as_ref().map_or(0, Vec::len);
            values_rule(&format!("{path}.requirements[{i}]"), &req.operator, values, errors);
        }
    }
    if let Some(selector) = &r.label_selector {
        let path = format!("{PATH}.labelSelector");
        let requirements = selector.requirements.as_deref().unwrap_or_default();
        raw_and_requirements(&path, &selector.raw_selector, requirements.len(), errors);
        for (i, req) in requirements.iter().enumerate() {
            let at = format!("{path}.requirements[{i}]");
            let values = req.values.as_deref().unwrap_or_default();
            values_rule(&at, &req.operator, values.len(), errors);
            if let Some(problem) = krust_api::selector::key_problem(&req.key) {
                errors.push(FieldError::invalid(
                    format!("{at}.key"),
                    Value::String(req.key.clone()),
                    problem,
                ));
            }
            for (j, value) in values.iter().enumerate() {
                for problem in krust_api::selector::label_value_problems(value) {
                    errors.push(FieldError::invalid(
                        format!("{at}.values[{j}]"),
                        Value::String(value.clone()),
                        problem,
                    ));
                }
            }
        }
    }
}

fn check_subject(spec: &SubjectAccessReviewSpec, errors: &mut Vec<FieldError>) {
    let user = spec.user.clone().unwrap_or_default();
    if user.is_empty() && spec.groups.as_ref().is_none_or(Vec::is_empty) {
        errors.push(FieldError::invalid(
            "spec.user",
            Value::String(user),
            "at least one of user or group must be specified",
        ));
    }
}

fn invalid(kind: &str, errors: &[FieldError]) -> Result<(), StatusError> {
    if errors.is_empty() { Ok(()) } else { Err(StatusError::invalid(GROUP, kind, "", errors)) }
}

/// The user a review's spec names.
fn spec_user(spec: &SubjectAccessReviewSpec) -> UserInfo {
    UserInfo {
        name: spec.user.clone().unwrap_or_default(),
        uid: spec.uid.clone().unwrap_or_default(),
        groups: spec.groups.clone().unwrap_or_default(),
        extra: spec.extra.clone().unwrap_or_default(),
    }
}

/// Answers a `SubjectAccessReview`: the posted object with its status.
pub fn subject_access_review(
    authorizer: &dyn Authorizer,
    mut review: SubjectAccessReview,
) -> Result<SubjectAccessReview, StatusError> {
    let spec = &review.spec;
    let mut errors = Vec::new();
    check_attributes(
        spec.resource_attributes.as_ref(),
        spec.non_resource_attributes.as_ref(),
        &mut errors,
    );
    check_subject(spec, &mut errors);
    invalid("SubjectAccessReview", &errors)?;
    let attributes = attributes(
        spec_user(spec),
        spec.resource_attributes.as_ref(),
        spec.non_resource_attributes.as_ref(),
    );
    review.status = Some(status(decide(authorizer, &attributes)));
    Ok(review)
}

/// Answers a `LocalSubjectAccessReview` posted in `namespace`.
pub fn local_subject_access_review(
    authorizer: &dyn Authorizer,
    namespace: &str,
    mut review: LocalSubjectAccessReview,
) -> Result<LocalSubjectAccessReview, StatusError> {
    if review.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        review.metadata.namespace = Some(namespace.to_string());
    }
    if review.metadata.namespace.as_deref() != Some(namespace) {
        return Err(StatusError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let spec = &review.spec;
    let mut errors = Vec::new();
    check_attributes(
        spec.resource_attributes.as_ref(),
        spec.non_resource_attributes.as_ref(),
        &mut errors,
    );
    check_subject(spec, &mut errors);
    if let Some(r) = &spec.resource_attributes
        && r.namespace.as_deref().unwrap_or_default() != namespace
    {
        errors.push(FieldError::invalid(
            "spec.resourceAttributes.namespace",
            Value::String(r.namespace.clone().unwrap_or_default()),
            "must match metadata.namespace",
        ));
    }
    if let Some(n) = &spec.non_resource_attributes {
        errors.push(FieldError::invalid(
            "spec.nonResourceAttributes",
            serde_json::to_value(n).unwrap_or(Value::Null),
            "disallowed on this kind of request",
        ));
    }
    invalid("LocalSubjectAccessReview", &errors)?;
    let attributes = attributes(spec_user(spec), spec.resource_attributes.as_ref(), None);
    review.status = Some(status(decide(authorizer, &attributes)));
    Ok(review)
}

/// Answers a `SelfSubjectAccessReview` from `requester`.
pub fn self_subject_access_review(
    authorizer: &dyn Authorizer,
    requester: &UserInfo,
    mut review: SelfSubjectAccessReview,
) -> Result<SelfSubjectAccessReview, StatusError> {
    let spec = &review.spec;
    let mut errors = Vec::new();
    check_attributes(
        spec.resource_attributes.as_ref(),
        spec.non_resource_attributes.as_ref(),
        &mut errors,
    );
    invalid("SelfSubjectAccessReview", &errors)?;
    let attributes = attributes(
        requester.clone(),
        spec.resource_attributes.as_ref(),
        spec.non_resource_attributes.as_ref(),
    );
    review.status = Some(status(decide(authorizer, &attributes)));
    Ok(review)
}

/// The rules `user` holds in `namespace`, as a rules review reports them: the
/// `system:masters` rules (everything) first, then RBAC's, each rule as a resource rule when
/// it names resources and as a non-resource rule when it names paths.
pub fn subject_rules(
    policy: &Policy,
    user: &UserInfo,
    namespace: &str,
) -> SubjectRulesReviewStatus {
    let mut rules = if user.in_group(MASTERS) { full_authority() } else { Vec::new() };
    let (held, errors) = policy.rules_for(user, namespace);
    rules.extend(held);
    let mut status = SubjectRulesReviewStatus {
        evaluation_error: (!errors.is_empty()).then(|| aggregate_errors(&errors)),
        ..SubjectRulesReviewStatus::default()
    };
    for rule in rules {
        if rule.resources.as_ref().is_some_and(|r| !r.is_empty()) {
            status.resource_rules.push(ResourceRule {
                verbs: rule.verbs.clone(),
                api_groups: rule.api_groups.clone(),
                resources: rule.resources.clone(),
                resource_names: rule.resource_names.clone(),
            });
        }
        if rule.non_resource_urls.as_ref().is_some_and(|u| !u.is_empty()) {
            status.non_resource_rules.push(NonResourceRule {
                verbs: rule.verbs,
                non_resource_urls: rule.non_resource_urls,
            });
        }
    }
    status
}

/// Answers a `SelfSubjectRulesReview` from `requester`.
pub fn self_subject_rules_review(
    policy: &Policy,
    requester: &UserInfo,
    mut review: SelfSubjectRulesReview,
) -> Result<SelfSubjectRulesReview, StatusError> {
    let namespace = review.spec.namespace.clone().unwrap_or_default();
    if namespace.is_empty() {
        return Err(StatusError::bad_request("no namespace on request"));
    }
    review.status = Some(subject_rules(policy, requester, &namespace));
    Ok(review)
}

#[cfg(test)]
mod tests;
