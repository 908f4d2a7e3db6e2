//! RBAC roles and bindings: `pkg/apis/rbac/v1/defaults.go`, `pkg/registry/rbac/*`,
//! `printRole*`.

use serde_json::{Value, json};

use super::Strategy;
use super::util::{AGE, age, array_at, col, default_field, each_mut, str_at};
use crate::table::{Column, TableContext};
use crate::validation::{FieldError, NameRule};

/// Rules of `Role`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoleStrategy;

/// Rules of `ClusterRole`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterRoleStrategy;

/// Rules of `RoleBinding` and `ClusterRoleBinding`, which differ only in scope.
#[derive(Debug, Clone, Copy)]
pub struct BindingStrategy {
    /// Whether the binding lives in a namespace (a `RoleBinding`).
    pub namespaced: bool,
}

/// Rules of `RoleBinding`.
pub const ROLE_BINDING: BindingStrategy = BindingStrategy { namespaced: true };

/// Rules of `ClusterRoleBinding`.
pub const CLUSTER_ROLE_BINDING: BindingStrategy = BindingStrategy { namespaced: false };

const CREATED_AT: &[Column] = &[Column::new(
    "Created At",
    "date",
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
)];

const BINDING_COLUMNS: &[Column] = &[
    col(
        "Role",
        "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. This field is immutable.",
    ),
    AGE,
    col("Users", "Users in the roleBinding").wide(),
    col("Groups", "Groups in the roleBinding").wide(),
    col("ServiceAccounts", "ServiceAccounts in the roleBinding").wide(),
];

fn created_at(obj: &Value) -> Vec<Value> {
    vec![obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null)]
}

fn validate_rules(obj: &Value, errors: &mut Vec<FieldError>) {
    for (i, rule) in array_at(obj, "rules").iter().enumerate() {
        let at = format!("rules[{i}]");
        let list = |f: &str| rule.get(f).and_then(Value::as_array).map_or(0, Vec::len);
        if list("verbs") == 0 {
            errors.push(FieldError::required(format!("{at}.verbs")));
        }
        let urls = list("nonResourceURLs");
        if urls > 0 && (list("apiGroups") > 0 || list("resources") > 0) {
            errors.push(FieldError::invalid(
                format!("{at}.nonResourceURLs"),
                rule.get("nonResourceURLs").cloned().unwrap_or(Value::Null),
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        } else if urls == 0
            && obj.pointer("/metadata/namespace").is_none()
            && list("resources") == 0
            && list("apiGroups") == 0
        {
            errors.push(FieldError::required(format!("{at}.apiGroups")));
            errors.push(FieldError::required(format!("{at}.resources")));
        } else if urls == 0 && list("apiGroups") == 0 {
            errors.push(FieldError::required(format!("{at}.apiGroups")));
        }
    }
}

fn default_subjects(obj: &mut Value) {
    each_mut(obj, "subjects", |s| {
        let group = match s.get("kind").and_then(Value::as_str) {
            Some("User" | "Group") => "rbac.authorization.k8s.io",
            Some("ServiceAccount") => "",
            _ => return,
        };
        default_field(s, "apiGroup", json!(group));
    });
}

fn validate_binding(obj: &Value, namespaced: bool, errors: &mut Vec<FieldError>) {
    let kinds: &[&str] = if namespaced { &["Role", "ClusterRole"] } else { &["ClusterRole"] };
    match str_at(obj, "roleRef.kind") {
        None | Some("") => errors.push(FieldError::required("roleRef.kind")),
        Some(k) if !kinds.contains(&k) => {
            errors.push(FieldError::not_supported("roleRef.kind", json!(k), kinds))
        }
        Some(_) => {}
    }
    if str_at(obj, "roleRef.apiGroup") != Some("rbac.authorization.k8s.io") {
        errors.push(FieldError::not_supported(
            "roleRef.apiGroup",
            json!(str_at(obj, "roleRef.apiGroup").unwrap_or_default()),
            &["rbac.authorization.k8s.io"],
        ));
    }
    if str_at(obj, "roleRef.name").is_none_or(str::is_empty) {
        errors.push(FieldError::required("roleRef.name"));
    }
    for (i, s) in array_at(obj, "subjects").iter().enumerate() {
        let at = format!("subjects[{i}]");
        if s.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            errors.push(FieldError::required(format!("{at}.name")));
        }
        match s.get("kind").and_then(Value::as_str).unwrap_or_default() {
            "ServiceAccount" => {
                if !namespaced
                    && s.get("namespace").and_then(Value::as_str).is_none_or(str::is_empty)
                {
                    errors.push(FieldError::required(format!("{at}.namespace")));
                }
            }
            "User" | "Group" => {}
            other => errors.push(FieldError::not_supported(
                format!("{at}.kind"),
                json!(other),
                &["ServiceAccount", "User", "Group"],
            )),
        }
    }
}

fn validate_binding_update(new: &Value, old: &Value, errors: &mut Vec<FieldError>) {
    if new.get("roleRef") != old.get("roleRef") {
        errors.push(FieldError::invalid(
            "roleRef",
            new.get("roleRef").cloned().unwrap_or(Value::Null),
            "cannot change roleRef",
        ));
    }
}

/// `rbac.SubjectsStrings`: users, groups and `namespace:name` service accounts.
fn binding_cells(obj: &Value, ctx: &TableContext) -> Vec<Value> {
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in array_at(obj, "subjects") {
        let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
        match s.get("kind").and_then(Value::as_str) {
            Some("User") => users.push(name.to_string()),
            Some("Group") => groups.push(name.to_string()),
            Some("ServiceAccount") => {
                let ns = s.get("namespace").and_then(Value::as_str).unwrap_or_default();
                sas.push(format!("{ns}:{name}"));
            }
            _ => {}
        }
    }
    vec![
        json!(format!(
            "{}/{}",
            str_at(obj, "roleRef.kind").unwrap_or_default(),
            str_at(obj, "roleRef.name").unwrap_or_default()
        )),
        age(obj, ctx),
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(sas.join(", ")),
    ]
}

impl Strategy for RoleStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_rules(obj, &mut errors);
        errors
    }
    fn columns(&self) -> &[Column] {
        CREATED_AT
    }
    fn cells(&self, obj: &Value, _ctx: &TableContext) -> Vec<Value> {
        created_at(obj)
    }
}

impl Strategy for ClusterRoleStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_rules(obj, &mut errors);
        errors
    }
    fn columns(&self) -> &[Column] {
        CREATED_AT
    }
    fn cells(&self, obj: &Value, _ctx: &TableContext) -> Vec<Value> {
        created_at(obj)
    }
}

impl Strategy for BindingStrategy {
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }
    fn default(&self, obj: &mut Value) {
        default_subjects(obj);
    }
    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate_binding(obj, self.namespaced, &mut errors);
        errors
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        validate_binding_update(new, old, &mut errors);
        errors
    }
    fn columns(&self) -> &[Column] {
        BINDING_COLUMNS
    }
    fn cells(&self, obj: &Value, ctx: &TableContext) -> Vec<Value> {
        binding_cells(obj, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_default_validate_and_print() {
        let mut rb = json!({
            "metadata": {"name": "system:read", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "sa", "namespace": "default"}],
        });
        ROLE_BINDING.default(&mut rb);
        assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][1]["apiGroup"], "");
        assert!(ROLE_BINDING.validate(&rb).is_empty());
        let mut changed = rb.clone();
        changed["roleRef"]["name"] = json!("writer");
        assert!(
            ROLE_BINDING.validate_update(&changed, &rb)[0]
                .to_string()
                .ends_with("cannot change roleRef")
        );
        let cells = ROLE_BINDING.cells(&rb, &TableContext { now: chrono::Utc::now() });
        assert_eq!(cells[0], "Role/reader");
        assert_eq!(cells[2], "alice");
        assert_eq!(cells[4], "default:sa");
        assert_eq!(RoleStrategy.name_rule(), NameRule::PathSegment);
    }
}
