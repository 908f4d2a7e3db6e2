//! Escalation prevention in the write path of roles, cluster roles and their bindings, as
//! upstream's policy-based RBAC storage (`pkg/registry/rbac/*/policybased`): a user writes a
//! role only with rules they hold (or the `escalate` verb), and a binding only to a role whose
//! rules they hold (or the `bind` verb); `system:masters` may do anything.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use krust_api::{ResourceInfo, StatusError};
use krust_auth::UserInfo;
use krust_auth::rbac::{BindingRefusal, PolicySource};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::index::PolicyIndex;
use crate::registry::WriteCheck;

/// The [`WriteCheck`] of the four RBAC resources.
pub struct EscalationCheck {
    index: Arc<PolicyIndex>,
}

impl EscalationCheck {
    /// A check reading the policy of `index`.
    pub fn new(index: Arc<PolicyIndex>) -> Self {
        Self { index }
    }
}

/// 403 for the object `name` of `info`, worded as upstream's `NewForbidden`.
fn forbidden(info: &ResourceInfo, name: &str, why: &str) -> StatusError {
    StatusError {
        details: Some(json!({"name": name, "group": info.group, "kind": info.plural})),
        ..StatusError::forbidden(format!(
            "{}.{} \"{name}\" is forbidden: {why}",
            info.plural, info.group
        ))
    }
}

fn typed<T: DeserializeOwned>(obj: &Value) -> Result<T, StatusError> {
    T::deserialize(obj).map_err(|e| StatusError::bad_request(e.to_string()))
}

/// Whether `new` differs from `old` only in what the garbage collector changes (owner
/// references, finalizers) or in what the server sets: such updates are not checked.
fn only_gc_fields(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in
                ["ownerReferences", "finalizers", "resourceVersion", "managedFields", "generation"]
            {
                meta.remove(field);
            }
        }
        v
    };
    strip(new) == strip(old)
}

impl WriteCheck for EscalationCheck {
    fn check(
        &self,
        info: &ResourceInfo,
        user: &UserInfo,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), StatusError> {
        if old.is_some_and(|old| only_gc_fields(new, old)) {
            return Ok(());
        }
        let policy = self.index.current();
        let meta = |v: &Value, f: &str| {
            v.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (name, namespace) = (meta(new, "name"), meta(new, "namespace"));
        // Upstream asks about `escalate` with the request's name: none for a create.
        let request_name = if old.is_some() { name.as_str() } else { "" };
        let refused = |why: &str| forbidden(info, &name, why);
        match info.plural {
            "roles" => {
                let role: Role = typed(new)?;
                let rules = role.rules.unwrap_or_default();
                policy
                    .check_role_grant(user, "roles", &namespace, request_name, &rules, false)
                    .map_err(|why| refused(&why))
            }
            "clusterroles" => {
                let role: ClusterRole = typed(new)?;
                let was_aggregated =
                    old.is_some_and(|o| o.get("aggregationRule").is_some_and(|a| !a.is_null()));
                let aggregates = role.aggregation_rule.is_some() || was_aggregated;
                let rules = role.rules.unwrap_or_default();
                policy
                    .check_role_grant(user, "clusterroles", "", request_name, &rules, aggregates)
                    .map_err(|why| refused(&why))
            }
            "rolebindings" | "clusterrolebindings" => {
                let role_ref = if info.plural == "rolebindings" {
                    typed::<RoleBinding>(new)?.role_ref
                } else {
                    typed::<ClusterRoleBinding>(new)?.role_ref
                };
                match policy.check_binding(user, &namespace, &role_ref) {
                    Ok(()) => Ok(()),
                    Err(BindingRefusal::RoleMissing(_)) => {
                        let plural = if role_ref.kind == "Role" { "roles" } else { "clusterroles" };
                        Err(StatusError::not_found(info.group, plural, &role_ref.name))
                    }
                    Err(BindingRefusal::Escalation(why)) => Err(refused(&why)),
                }
            }
            _ => Ok(()),
        }
    }
}
