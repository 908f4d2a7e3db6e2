#![allow(clippy::unwrap_used)]

use super::*;

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        ..PolicyRule::default()
    }
}

fn meta(
    name: &str,
    ns: Option<&str>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.into()),
        namespace: ns.map(str::to_string),
        ..Default::default()
    }
}

fn subject(kind: &str, name: &str) -> Subject {
    Subject { kind: kind.into(), name: name.into(), api_group: None, namespace: None }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef { api_group: GROUP.into(), kind: kind.into(), name: name.into() }
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        ..UserInfo::default()
    }
}

/// edit in ns a for group dev; a Role pod-reader in b for jane; view everywhere for viewer;
/// a binding to a missing role for ghost.
fn policy() -> Policy {
    let edit = ClusterRole {
        metadata: meta("edit", None),
        rules: Some(vec![rule(&["*"], &["", "apps"], &["pods", "deployments"])]),
        aggregation_rule: None,
    };
    let view = ClusterRole {
        metadata: meta("view", None),
        rules: Some(vec![rule(&["get", "list"], &["*"], &["*"])]),
        aggregation_rule: None,
    };
    let reader = Role {
        metadata: meta("pod-reader", Some("b")),
        rules: Some(vec![rule(&["get"], &[""], &["pods"])]),
    };
    let dev_edit = RoleBinding {
        metadata: meta("dev-edit", Some("a")),
        role_ref: role_ref("ClusterRole", "edit"),
        subjects: Some(vec![subject("Group", "dev")]),
    };
    let jane_reads = RoleBinding {
        metadata: meta("jane-reads", Some("b")),
        role_ref: role_ref("Role", "pod-reader"),
        subjects: Some(vec![subject("User", "jane")]),
    };
    let ghost = RoleBinding {
        metadata: meta("ghost", Some("b")),
        role_ref: role_ref("Role", "missing"),
        subjects: Some(vec![subject("User", "ghost")]),
    };
    let viewers = ClusterRoleBinding {
        metadata: meta("viewers", None),
        role_ref: role_ref("ClusterRole", "view"),
        subjects: Some(vec![subject("User", "viewer")]),
    };
    Policy::new(
        [Arc::new(reader)],
        [Arc::new(edit), Arc::new(view)],
        [Arc::new(dev_edit), Arc::new(jane_reads), Arc::new(ghost)],
        [Arc::new(viewers)],
    )
}

fn request(who: UserInfo, verb: &str, ns: &str, group: &str, resource: &str) -> Attributes {
    Attributes {
        user: who,
        verb: verb.into(),
        resource_request: true,
        namespace: ns.into(),
        api_group: group.into(),
        resource: resource.into(),
        ..Attributes::default()
    }
}

#[test]
fn bindings_allow_in_their_scope_with_upstreams_reasons() {
    let p = policy();
    let jane = user("jane", &["dev", "system:authenticated"]);
    let cases = [
        (
            "a RoleBinding of a ClusterRole allows in its namespace",
            request(jane.clone(), "create", "a", "apps", "deployments"),
            Decision::Allow(
                "RBAC: allowed by RoleBinding \"dev-edit/a\" of ClusterRole \"edit\" to Group \"dev\"".into(),
            ),
        ),
        (
            "a RoleBinding does not allow in another namespace",
            request(jane.clone(), "create", "c", "apps", "deployments"),
            Decision::NoOpinion(String::new()),
        ),
        (
            "a RoleBinding does not allow cluster-wide",
            request(jane.clone(), "list", "", "", "pods"),
            Decision::NoOpinion(String::new()),
        ),
        (
            "a RoleBinding of a Role allows what the role has",
            request(jane.clone(), "get", "b", "", "pods"),
            Decision::Allow(
                "RBAC: allowed by RoleBinding \"jane-reads/b\" of Role \"pod-reader\" to User \"jane\"".into(),
            ),
        ),
        (
            "a ClusterRoleBinding allows everywhere",
            request(user("viewer", &[]), "list", "", "apps", "deployments"),
            Decision::Allow(
                "RBAC: allowed by ClusterRoleBinding \"viewers\" of ClusterRole \"view\" to User \"viewer\"".into(),
            ),
        ),
        (
            "a binding to a missing role says so",
            request(user("ghost", &[]), "get", "b", "", "pods"),
            Decision::NoOpinion("RBAC: role.rbac.authorization.k8s.io \"missing\" not found".into()),
        ),
    ];
    for (name, attributes, expected) in cases {
        assert_eq!(p.authorize(&attributes), expected, "{name}");
    }
}

#[test]
fn rules_for_gathers_cluster_then_namespace_rules() {
    let p = policy();
    let (rules, errors) = p.rules_for(&user("jane", &["dev"]), "a");
    assert_eq!(rules, vec![rule(&["*"], &["", "apps"], &["pods", "deployments"])]);
    assert!(errors.is_empty());
    let (rules, errors) = p.rules_for(&user("ghost", &[]), "b");
    assert!(rules.is_empty());
    assert_eq!(errors, vec!["role.rbac.authorization.k8s.io \"missing\" not found".to_string()]);
}

#[test]
fn grants_are_checked_against_what_the_user_holds() {
    let p = policy();
    let jane = user("jane", &["dev"]);
    let masters = user("admin", &[MASTERS]);
    let pods_get = vec![rule(&["get"], &[""], &["pods"])];
    let secrets = vec![rule(&["get"], &[""], &["secrets"])];
    let binding = |r: Result<(), BindingRefusal>| r.map_err(|e| e.to_string());
    let cases: [(&str, Result<(), String>, bool); 6] = [
        (
            "a role within what the user holds is allowed",
            p.check_role_grant(&jane, "roles", "a", "", &pods_get, false),
            true,
        ),
        (
            "a role beyond it is refused",
            p.check_role_grant(&jane, "roles", "a", "", &secrets, false),
            false,
        ),
        (
            "the same role elsewhere is refused",
            p.check_role_grant(&jane, "roles", "c", "", &pods_get, false),
            false,
        ),
        (
            "masters may grant anything",
            p.check_role_grant(&masters, "clusterroles", "", "", &secrets, true),
            true,
        ),
        (
            "binding a role the user holds is allowed",
            binding(p.check_binding(&jane, "a", &role_ref("ClusterRole", "edit"))),
            true,
        ),
        (
            "binding a role beyond it is refused",
            binding(p.check_binding(&jane, "a", &role_ref("ClusterRole", "view"))),
            false,
        ),
    ];
    for (name, result, ok) in cases {
        assert_eq!(result.is_ok(), ok, "{name}: {result:?}");
    }
    let message = p.check_role_grant(&jane, "roles", "a", "", &secrets, false).err().unwrap();
    assert_eq!(
        message,
        "user \"jane\" (groups=[\"dev\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"get\"]}"
    );
}

#[test]
fn escalate_and_bind_verbs_let_a_user_grant_more() {
    let mut p = policy();
    let escalator = ClusterRole {
        metadata: meta("escalator", None),
        rules: Some(vec![rule(&["escalate", "bind"], &[GROUP], &["roles", "clusterroles"])]),
        aggregation_rule: None,
    };
    let binding = ClusterRoleBinding {
        metadata: meta("escalators", None),
        role_ref: role_ref("ClusterRole", "escalator"),
        subjects: Some(vec![subject("User", "root")]),
    };
    p.cluster_roles.insert("escalator".into(), Arc::new(escalator));
    p.cluster_role_bindings.insert("escalators".into(), Arc::new(binding));
    let root = user("root", &[]);
    assert!(p.check_role_grant(&root, "clusterroles", "", "x", &full_authority(), true).is_ok());
    assert!(p.check_binding(&root, "", &role_ref("ClusterRole", "view")).is_ok());
    let aggregating =
        p.check_role_grant(&user("jane", &["dev"]), "clusterroles", "", "", &[], true);
    assert_eq!(
        aggregating,
        Err("must have cluster-admin privileges to use the aggregationRule".into())
    );
}

#[test]
fn the_default_policy_lets_every_user_discover_and_review_itself() {
    let p = Policy::new(
        [],
        bootstrap::cluster_roles().into_iter().map(Arc::new),
        [],
        bootstrap::cluster_role_bindings().into_iter().map(Arc::new),
    );
    let anyone = user("jane", &[crate::AUTHENTICATED]);
    let anonymous = user(crate::ANONYMOUS, &[crate::UNAUTHENTICATED]);
    let path = |u: &UserInfo, p: &str| Attributes {
        user: u.clone(),
        verb: "get".into(),
        path: p.into(),
        ..Attributes::default()
    };
    assert!(p.authorize(&path(&anyone, "/apis/apps/v1")).allowed());
    assert!(p.authorize(&path(&anonymous, "/version")).allowed());
    assert!(!p.authorize(&path(&anonymous, "/metrics")).allowed());
    let review =
        request(anyone.clone(), "create", "", "authorization.k8s.io", "selfsubjectaccessreviews");
    assert!(p.authorize(&review).allowed());
    assert!(!p.authorize(&request(anyone, "list", "a", "", "pods")).allowed());
    assert!(p.authorize(&request(user("x", &[MASTERS]), "delete", "a", "", "pods")).allowed());
}
