//! Role-based access control over typed `rbac.authorization.k8s.io/v1` objects, as upstream's
//! `plugin/pkg/auth/authorizer/rbac` and `pkg/registry/rbac/validation`.
//!
//! - [`Policy`]: a snapshot of roles, cluster roles and bindings, and the rules it gives a
//!   user in a namespace ([`Policy::visit_rules_for`], [`Policy::rules_for`]); ClusterRoleBindings
//!   apply everywhere, RoleBindings in their namespace (to a Role there or a ClusterRole).
//! - [`RbacAuthorizer`]: an [`Authorizer`] over the current snapshot of a [`PolicySource`];
//!   allows with upstream's reason (`RBAC: allowed by ClusterRoleBinding "x" of ClusterRole
//!   "y" to User "z"`), else has no opinion.
//! - [`escalation`]: a user may grant only what they hold, unless they may `escalate` (roles) or
//!   `bind` (bindings); [`Policy::check_role_grant`] and [`Policy::check_binding`].
//! - [`aggregation`]: the rules of a ClusterRole with an `aggregationRule`.
//! - [`bootstrap`]: the default ClusterRoles and ClusterRoleBindings.
//!
//! The API server keeps a [`Policy`] current from its watch cache; nothing here reads a store.

pub mod aggregation;
pub mod bootstrap;
pub mod escalation;
pub mod matching;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use crate::{Attributes, Authorizer, Decision, MASTERS, UserInfo};
use matching::{describe_subject, first_applying, go_quote, rule_allows};

/// The API group of RBAC objects.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// A snapshot of the RBAC objects of a cluster, indexed for authorization.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    roles: HashMap<(String, String), Arc<Role>>,
    cluster_roles: HashMap<String, Arc<ClusterRole>>,
    /// By namespace, then by name.
    role_bindings: HashMap<String, BTreeMap<String, Arc<RoleBinding>>>,
    /// By name.
    cluster_role_bindings: BTreeMap<String, Arc<ClusterRoleBinding>>,
}

/// Where a rule came from, worded as upstream's reasons name it.
#[derive(Debug, Clone, Copy)]
pub enum RuleSource<'a> {
    /// A ClusterRoleBinding, through one of its subjects.
    ClusterRoleBinding(&'a ClusterRoleBinding, &'a Subject),
    /// A RoleBinding, through one of its subjects.
    RoleBinding(&'a RoleBinding, &'a Subject),
}

impl fmt::Display for RuleSource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClusterRoleBinding(b, s) => write!(
                f,
                "ClusterRoleBinding {} of {} {} to {}",
                go_quote(b.metadata.name.as_deref().unwrap_or_default()),
                b.role_ref.kind,
                go_quote(&b.role_ref.name),
                describe_subject(s, "")
            ),
            Self::RoleBinding(b, s) => {
                let ns = b.metadata.namespace.as_deref().unwrap_or_default();
                write!(
                    f,
                    "RoleBinding {} of {} {} to {}",
                    go_quote(&format!("{}/{ns}", b.metadata.name.as_deref().unwrap_or_default())),
                    b.role_ref.kind,
                    go_quote(&b.role_ref.name),
                    describe_subject(s, ns)
                )
            }
        }
    }
}

/// Joins errors as upstream's `utilerrors.NewAggregate` prints them.
pub fn aggregate_errors(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

impl Policy {
    /// A snapshot of these objects.
    pub fn new(
        roles: impl IntoIterator<Item = Arc<Role>>,
        cluster_roles: impl IntoIterator<Item = Arc<ClusterRole>>,
        role_bindings: impl IntoIterator<Item = Arc<RoleBinding>>,
        cluster_role_bindings: impl IntoIterator<Item = Arc<ClusterRoleBinding>>,
    ) -> Self {
        let name = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.name.clone().unwrap_or_default()
        };
        let ns = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.namespace.clone().unwrap_or_default()
        };
        let mut policy = Self::default();
        for r in roles {
            policy.roles.insert((ns(&r.metadata), name(&r.metadata)), r);
        }
        for r in cluster_roles {
            policy.cluster_roles.insert(name(&r.metadata), r);
        }
        for b in role_bindings {
            policy.role_bindings.entry(ns(&b.metadata)).or_default().insert(name(&b.metadata), b);
        }
        for b in cluster_role_bindings {
            policy.cluster_role_bindings.insert(name(&b.metadata), b);
        }
        policy
    }

    /// A Role by namespace and name.
    pub fn role(&self, namespace: &str, name: &str) -> Option<&Arc<Role>> {
        self.roles.get(&(namespace.to_string(), name.to_string()))
    }

    /// A ClusterRole by name.
    pub fn cluster_role(&self, name: &str) -> Option<&Arc<ClusterRole>> {
        self.cluster_roles.get(name)
    }

    /// Every ClusterRole.
    pub fn cluster_roles(&self) -> impl Iterator<Item = &Arc<ClusterRole>> {
        self.cluster_roles.values()
    }

    /// How many objects the snapshot holds.
    pub fn len(&self) -> usize {
        self.roles.len()
            + self.cluster_roles.len()
            + self.role_bindings.values().map(BTreeMap::len).sum::<usize>()
            + self.cluster_role_bindings.len()
    }

    /// Whether the snapshot holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rules a role reference gives, for a binding in `namespace` (empty for a
    /// ClusterRoleBinding); the error is worded as upstream's lister's.
    pub fn role_ref_rules(
        &self,
        role_ref: &RoleRef,
        namespace: &str,
    ) -> Result<&[PolicyRule], String> {
        match role_ref.kind.as_str() {
            "Role" => self
                .role(namespace, &role_ref.name)
                .map(|r| r.rules.as_deref().unwrap_or_default())
                .ok_or_else(|| format!("role.{GROUP} {} not found", go_quote(&role_ref.name))),
            "ClusterRole" => self
                .cluster_role(&role_ref.name)
                .map(|r| r.rules.as_deref().unwrap_or_default())
                .ok_or_else(|| {
                    format!("clusterrole.{GROUP} {} not found", go_quote(&role_ref.name))
                }),
            other => Err(format!("unsupported role reference kind: {}", go_quote(other))),
        }
    }

    /// Calls `visit` with every rule `user` holds in `namespace` (cluster-wide rules first),
    /// and with every error met; stops when `visit` answers false. As upstream's
    /// `VisitRulesFor`.
    pub fn visit_rules_for<'a>(
        &'a self,
        user: &UserInfo,
        namespace: &str,
        visit: &mut dyn FnMut(
            Option<RuleSource<'a>>,
            Option<&'a PolicyRule>,
            Option<String>,
        ) -> bool,
    ) {
        for binding in self.cluster_role_bindings.values() {
            let subjects = binding.subjects.as_deref().unwrap_or_default();
            let Some(i) = first_applying(user, subjects, "") else { continue };
            match self.role_ref_rules(&binding.role_ref, "") {
                Ok(rules) => {
                    let source = RuleSource::ClusterRoleBinding(binding, &subjects[i]);
                    for rule in rules {
                        if !visit(Some(source), Some(rule), None) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if !visit(None, None, Some(e)) {
                        return;
                    }
                }
            }
        }
        if namespace.is_empty() {
            return;
        }
        for binding in self.role_bindings.get(namespace).into_iter().flat_map(BTreeMap::values) {
            let subjects = binding.subjects.as_deref().unwrap_or_default();
            let Some(i) = first_applying(user, subjects, namespace) else { continue };
            match self.role_ref_rules(&binding.role_ref, namespace) {
                Ok(rules) => {
                    let source = RuleSource::RoleBinding(binding, &subjects[i]);
                    for rule in rules {
                        if !visit(Some(source), Some(rule), None) {
                            return;
                        }
                    }
                }
                Err(e) => {
                    if !visit(None, None, Some(e)) {
                        return;
                    }
                }
            }
        }
    }

    /// Every rule `user` holds in `namespace` (empty: cluster-wide only), and the errors met
    /// (bindings to roles that do not exist), as upstream's `RulesFor`.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules_for(user, namespace, &mut |_, rule, error| {
            if let Some(rule) = rule {
                rules.push(rule.clone());
            }
            if let Some(error) = error {
                errors.push(error);
            }
            true
        });
        (rules, errors)
    }

    /// The RBAC decision for a request: `Allow` with the binding that allows it, else
    /// `NoOpinion` (with the errors met, if any).
    pub fn authorize(&self, attributes: &Attributes) -> Decision {
        let mut allowed = None;
        let mut errors = Vec::new();
        self.visit_rules_for(
            &attributes.user,
            &attributes.namespace,
            &mut |source, rule, error| {
                if let (Some(source), Some(rule)) = (source, rule)
                    && rule_allows(attributes, rule)
                {
                    allowed = Some(format!("RBAC: allowed by {source}"));
                    return false;
                }
                if let Some(error) = error {
                    errors.push(error);
                }
                true
            },
        );
        match allowed {
            Some(reason) => Decision::Allow(reason),
            None if errors.is_empty() => Decision::NoOpinion(String::new()),
            None => Decision::NoOpinion(format!("RBAC: {}", aggregate_errors(&errors))),
        }
    }

    /// Whether RBAC allows `user` the `verb` on an RBAC resource (`roles`, `clusterroles`).
    fn allows_rbac_verb(
        &self,
        user: &UserInfo,
        verb: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> bool {
        self.authorize(&Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            namespace: namespace.into(),
            api_group: GROUP.into(),
            api_version: "*".into(),
            resource: resource.into(),
            name: name.into(),
            ..Attributes::default()
        })
        .allowed()
    }

    /// Whether `user` may write a Role (`resource` `roles`, in `namespace`) or ClusterRole
    /// (`clusterroles`, namespace empty) named `name` (empty for a create) with `rules`, as
    /// upstream's policy-based role storage decides: members of `system:masters` may; so may
    /// a user allowed to `escalate` on it; else the user must hold every rule. Setting an
    /// `aggregationRule` (`aggregates`) needs every permission (cluster-admin). The error is
    /// the message of the 403.
    pub fn check_role_grant(
        &self,
        user: &UserInfo,
        resource: &str,
        namespace: &str,
        name: &str,
        rules: &[PolicyRule],
        aggregates: bool,
    ) -> Result<(), String> {
        if user.in_group(MASTERS)
            || self.allows_rbac_verb(user, "escalate", resource, namespace, name)
        {
            return Ok(());
        }
        let (owner, errors) = self.rules_for(user, namespace);
        escalation::confirm_no_escalation(user, &owner, &errors, rules).map_err(|e| e.message)?;
        if aggregates && !escalation::covers(&owner, &full_authority()).0 {
            return Err("must have cluster-admin privileges to use the aggregationRule".into());
        }
        Ok(())
    }

    /// Whether `user` may write a binding to `role_ref` in `namespace` (empty for a
    /// ClusterRoleBinding), as upstream's policy-based binding storage decides: members of
    /// `system:masters` may; so may a user allowed to `bind` the role; else the user must hold
    /// every rule of the role.
    pub fn check_binding(
        &self,
        user: &UserInfo,
        namespace: &str,
        role_ref: &RoleRef,
    ) -> Result<(), BindingRefusal> {
        let resource = if role_ref.kind == "Role" { "roles" } else { "clusterroles" };
        if user.in_group(MASTERS)
            || self.allows_rbac_verb(user, "bind", resource, namespace, &role_ref.name)
        {
            return Ok(());
        }
        let rules =
            self.role_ref_rules(role_ref, namespace).map_err(BindingRefusal::RoleMissing)?;
        let (owner, errors) = self.rules_for(user, namespace);
        escalation::confirm_no_escalation(user, &owner, &errors, rules)
            .map_err(|e| BindingRefusal::Escalation(e.message))
    }
}

/// Why a binding may not be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingRefusal {
    /// The role it refers to does not exist (upstream answers 404).
    #[error("{0}")]
    RoleMissing(String),
    /// The user does not hold what the role grants (upstream answers 403).
    #[error("{0}")]
    Escalation(String),
}

/// Every permission: `*` on `*.*` and on every path.
pub fn full_authority() -> Vec<PolicyRule> {
    let all = || Some(vec!["*".to_string()]);
    vec![
        PolicyRule {
            verbs: vec!["*".into()],
            api_groups: all(),
            resources: all(),
            ..PolicyRule::default()
        },
        PolicyRule { verbs: vec!["*".into()], non_resource_urls: all(), ..PolicyRule::default() },
    ]
}

/// The groups of a service account's user, besides `system:authenticated`.
pub fn service_account_groups(namespace: &str) -> [String; 2] {
    ["system:serviceaccounts".into(), format!("system:serviceaccounts:{namespace}")]
}

/// Where an authorizer reads the current [`Policy`].
pub trait PolicySource: Send + Sync {
    /// The current snapshot.
    fn current(&self) -> Arc<Policy>;
}

impl PolicySource for Arc<Policy> {
    fn current(&self) -> Arc<Policy> {
        Arc::clone(self)
    }
}

/// The RBAC authorizer over the snapshots of a [`PolicySource`].
pub struct RbacAuthorizer<S>(pub S);

impl<S: PolicySource> Authorizer for RbacAuthorizer<S> {
    fn authorize(&self, attributes: &Attributes) -> Decision {
        self.0.current().authorize(attributes)
    }
}

#[cfg(test)]
mod tests;
