//! Whether a rule allows a request and whether a binding's subject is a user, as upstream's
//! `authorizer/rbac` (`RuleAllows`, `appliesTo`) and `rbac/v1/evaluation_helpers.go`.

use k8s_openapi::api::rbac::v1::{PolicyRule, Subject};

use crate::{Attributes, UserInfo};

/// Matches every verb, group, resource or non-resource URL.
pub const ALL: &str = "*";

/// The strings of an optional list (absent is empty).
pub(crate) fn list(v: &Option<Vec<String>>) -> &[String] {
    v.as_deref().unwrap_or_default()
}

/// Whether the rule names `verb` (or `*`).
pub fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    rule.verbs.iter().any(|v| v == ALL || v == verb)
}

/// Whether the rule names the API group `group` (or `*`).
pub fn api_group_matches(rule: &PolicyRule, group: &str) -> bool {
    list(&rule.api_groups).iter().any(|g| g == ALL || g == group)
}

/// Whether the rule names `combined` (`resource` or `resource/subresource`), `*`, or
/// `*/subresource`.
pub fn resource_matches(rule: &PolicyRule, combined: &str, subresource: &str) -> bool {
    list(&rule.resources).iter().any(|r| {
        r == ALL
            || r == combined
            || (!subresource.is_empty()
                && r.len() == subresource.len() + 2
                && r.starts_with("*/")
                && r.ends_with(subresource))
    })
}

/// Whether the rule allows the object `name` (a rule without names allows every name).
pub fn resource_name_matches(rule: &PolicyRule, name: &str) -> bool {
    let names = list(&rule.resource_names);
    names.is_empty() || names.iter().any(|n| n == name)
}

/// Whether the rule names the path `url`, exactly, as `*`, or by a prefix ending in `*`.
pub fn non_resource_url_matches(rule: &PolicyRule, url: &str) -> bool {
    list(&rule.non_resource_urls).iter().any(|u| {
        u == ALL || u == url || (u.ends_with('*') && url.starts_with(u.trim_end_matches('*')))
    })
}

/// Whether `rule` allows the request `attributes`.
pub fn rule_allows(attributes: &Attributes, rule: &PolicyRule) -> bool {
    if !verb_matches(rule, &attributes.verb) {
        return false;
    }
    if !attributes.resource_request {
        return non_resource_url_matches(rule, &attributes.path);
    }
    let combined = if attributes.subresource.is_empty() {
        attributes.resource.clone()
    } else {
        format!("{}/{}", attributes.resource, attributes.subresource)
    };
    api_group_matches(rule, &attributes.api_group)
        && resource_matches(rule, &combined, &attributes.subresource)
        && resource_name_matches(rule, &attributes.name)
}

/// The user name of a service account.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// Whether `subject` of a binding in `namespace` (empty for a ClusterRoleBinding) is `user`.
/// A ServiceAccount subject without a namespace is in the binding's namespace.
pub fn applies_to(user: &UserInfo, subject: &Subject, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => user.name == subject.name,
        "Group" => user.in_group(&subject.name),
        "ServiceAccount" => {
            let ns = subject.namespace.as_deref().filter(|ns| !ns.is_empty()).unwrap_or(namespace);
            !ns.is_empty()
                && user
                    .name
                    .strip_prefix("system:serviceaccount:")
                    .and_then(|rest| rest.split_once(':'))
                    .is_some_and(|(n, s)| n == ns && s == subject.name)
        }
        _ => false,
    }
}

/// The index of the first of `subjects` that is `user`.
pub fn first_applying(user: &UserInfo, subjects: &[Subject], namespace: &str) -> Option<usize> {
    subjects.iter().position(|s| applies_to(user, s, namespace))
}

/// A subject as upstream's authorizer names it in its reasons (`User "jane"`,
/// `ServiceAccount "default/ns"`, the name before the namespace).
pub fn describe_subject(subject: &Subject, binding_namespace: &str) -> String {
    match subject.kind.as_str() {
        "ServiceAccount" => {
            let ns = subject
                .namespace
                .as_deref()
                .filter(|ns| !ns.is_empty())
                .unwrap_or(binding_namespace);
            format!("{} {}", subject.kind, go_quote(&format!("{}/{ns}", subject.name)))
        }
        _ => format!("{} {}", subject.kind, go_quote(&subject.name)),
    }
}

/// A string quoted as Go's `%q` quotes it (for messages worded as upstream's).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A list of strings as Go's `%q` prints a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect());
        PolicyRule {
            verbs: verbs.iter().map(|x| x.to_string()).collect(),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: if names.is_empty() { None } else { v(names) },
            non_resource_urls: None,
        }
    }

    fn url_rule(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|x| x.to_string()).collect(),
            non_resource_urls: Some(urls.iter().map(|x| x.to_string()).collect()),
            ..PolicyRule::default()
        }
    }

    fn request(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..Attributes::default()
        }
    }

    fn path(verb: &str, path: &str) -> Attributes {
        Attributes { verb: verb.into(), path: path.into(), ..Attributes::default() }
    }

    #[test]
    fn rules_allow_requests_as_upstream_matches_them() {
        let cases = [
            (
                "an exact rule allows its verb",
                rule(&["get"], &[""], &["pods"], &[]),
                request("get", "", "pods", "", "x"),
                true,
            ),
            (
                "another verb is not allowed",
                rule(&["get"], &[""], &["pods"], &[]),
                request("list", "", "pods", "", ""),
                false,
            ),
            (
                "the star verb allows any verb",
                rule(&["*"], &[""], &["pods"], &[]),
                request("delete", "", "pods", "", ""),
                true,
            ),
            (
                "another group is not allowed",
                rule(&["get"], &["apps"], &["pods"], &[]),
                request("get", "", "pods", "", ""),
                false,
            ),
            (
                "the star group allows any group",
                rule(&["get"], &["*"], &["deployments"], &[]),
                request("get", "apps", "deployments", "", ""),
                true,
            ),
            (
                "a resource does not allow its subresources",
                rule(&["get"], &[""], &["pods"], &[]),
                request("get", "", "pods", "log", ""),
                false,
            ),
            (
                "resource/subresource allows that subresource",
                rule(&["get"], &[""], &["pods/log"], &[]),
                request("get", "", "pods", "log", ""),
                true,
            ),
            (
                "*/subresource allows it on any resource",
                rule(&["get"], &["*"], &["*/scale"], &[]),
                request("get", "apps", "deployments", "scale", ""),
                true,
            ),
            (
                "*/subresource does not allow the resource",
                rule(&["get"], &["*"], &["*/scale"], &[]),
                request("get", "apps", "deployments", "", ""),
                false,
            ),
            (
                "*/subresource needs the whole subresource",
                rule(&["get"], &["*"], &["*/cale"], &[]),
                request("get", "apps", "deployments", "scale", ""),
                false,
            ),
            (
                "the star resource allows subresources too",
                rule(&["get"], &[""], &["*"], &[]),
                request("get", "", "pods", "exec", ""),
                true,
            ),
            (
                "resourceNames limit the names",
                rule(&["get"], &[""], &["pods"], &["a"]),
                request("get", "", "pods", "", "b"),
                false,
            ),
            (
                "resourceNames allow their names",
                rule(&["get"], &[""], &["pods"], &["a", "b"]),
                request("get", "", "pods", "", "b"),
                true,
            ),
            (
                "resourceNames do not allow a list",
                rule(&["list"], &[""], &["pods"], &["a"]),
                request("list", "", "pods", "", ""),
                false,
            ),
            (
                "a resource rule allows no path",
                rule(&["get"], &["*"], &["*"], &[]),
                path("get", "/healthz"),
                false,
            ),
            (
                "an exact path is allowed",
                url_rule(&["get"], &["/healthz"]),
                path("get", "/healthz"),
                true,
            ),
            (
                "a trailing star allows a prefix",
                url_rule(&["get"], &["/apis/*"]),
                path("get", "/apis/apps/v1"),
                true,
            ),
            (
                "a trailing star after a slash needs the slash",
                url_rule(&["get"], &["/apis/*"]),
                path("get", "/apis"),
                false,
            ),
            (
                "the star path allows any path",
                url_rule(&["*"], &["*"]),
                path("post", "/anything"),
                true,
            ),
            (
                "a path rule allows no resource",
                url_rule(&["*"], &["*"]),
                request("get", "", "pods", "", ""),
                false,
            ),
        ];
        for (name, rule, attributes, allowed) in cases {
            assert_eq!(rule_allows(&attributes, &rule), allowed, "{name}");
        }
    }

    #[test]
    fn subjects_apply_to_users_groups_and_service_accounts() {
        let user = |name: &str, groups: &[&str]| UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        };
        let subject = |kind: &str, name: &str, ns: Option<&str>| Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.map(str::to_string),
            api_group: None,
        };
        let sa = user(
            "system:serviceaccount:a:robot",
            &["system:serviceaccounts", "system:serviceaccounts:a"],
        );
        let cases = [
            (
                "a user subject is that user",
                subject("User", "jane", None),
                user("jane", &[]),
                "",
                true,
            ),
            (
                "a user subject is not another user",
                subject("User", "jane", None),
                user("bob", &[]),
                "",
                false,
            ),
            (
                "a group subject is its members",
                subject("Group", "dev", None),
                user("bob", &["dev"]),
                "",
                true,
            ),
            (
                "a service account with its namespace",
                subject("ServiceAccount", "robot", Some("a")),
                sa.clone(),
                "",
                true,
            ),
            (
                "a service account defaults to the binding's namespace",
                subject("ServiceAccount", "robot", None),
                sa.clone(),
                "a",
                true,
            ),
            (
                "a service account of another namespace",
                subject("ServiceAccount", "robot", None),
                sa.clone(),
                "b",
                false,
            ),
            (
                "a service account without any namespace is nobody",
                subject("ServiceAccount", "robot", None),
                sa.clone(),
                "",
                false,
            ),
            (
                "the service accounts group is a group subject",
                subject("Group", "system:serviceaccounts:a", None),
                sa.clone(),
                "",
                true,
            ),
            (
                "an unknown kind is nobody",
                subject("Robot", "jane", None),
                user("jane", &[]),
                "",
                false,
            ),
        ];
        for (name, subject, user, ns, applies) in cases {
            assert_eq!(applies_to(&user, &subject, ns), applies, "{name}");
        }
    }

    #[test]
    fn strings_are_quoted_as_go_quotes_them() {
        assert_eq!(
            go_quote_list(&["dev".into(), "system:authenticated".into()]),
            r#"["dev" "system:authenticated"]"#
        );
        assert_eq!(go_quote("a\"b"), r#""a\"b""#);
    }
}
