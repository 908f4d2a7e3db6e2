//! Impersonation (`kubectl --as`, `--as-group`, `--as-uid`): from a request's `Impersonate-*`
//! headers to the authorization checks the requester must pass (verb `impersonate`) and the
//! user the request then runs as, as upstream's impersonation filter.
//!
//! The caller asks its authorizer about each [`Plan::checks`] in order and refuses the request
//! (403) at the first one not allowed; otherwise the request proceeds as [`Plan::user`].

use std::collections::BTreeMap;

use crate::authn::service_account;
use crate::{ANONYMOUS, AUTHENTICATED, Attributes, UNAUTHENTICATED, UserInfo};

/// `Impersonate-User`.
pub const USER_HEADER: &str = "impersonate-user";
/// `Impersonate-Group` (repeated for several groups).
pub const GROUP_HEADER: &str = "impersonate-group";
/// `Impersonate-Uid`.
pub const UID_HEADER: &str = "impersonate-uid";
/// The prefix of `Impersonate-Extra-<key>` headers.
pub const EXTRA_HEADER_PREFIX: &str = "impersonate-extra-";

/// Why impersonation headers cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImpersonationError {
    /// Groups, extras or a uid were asked for without a user.
    #[error("requested {0} without impersonating a user")]
    NoUser(String),
}

/// What impersonation asks: the checks, and the user the request runs as once they pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One `impersonate` check per user, group, extra value and uid, for the requester.
    pub checks: Vec<Attributes>,
    /// The impersonated user.
    pub user: UserInfo,
}

/// Whether a header (lower-case name) is an impersonation header.
pub fn is_impersonation_header(name: &str) -> bool {
    name == USER_HEADER
        || name == GROUP_HEADER
        || name == UID_HEADER
        || name.starts_with(EXTRA_HEADER_PREFIX)
}

/// Decodes `%XX` escapes of an extra key (upstream escapes `/` and `%` in header names).
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = key.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| key.to_string())
}

fn check(
    requester: &UserInfo,
    group: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Attributes {
    Attributes {
        user: requester.clone(),
        verb: "impersonate".into(),
        resource_request: true,
        namespace: namespace.into(),
        api_group: group.into(),
        api_version: "v1".into(),
        resource: resource.into(),
        name: name.into(),
        ..Attributes::default()
    }
}

/// The impersonation `requester` asks for with `headers` (lower-case names and values, in
/// order, repeated names repeated); `None` when there is no impersonation header.
pub fn plan(
    requester: &UserInfo,
    headers: &[(String, String)],
) -> Result<Option<Plan>, ImpersonationError> {
    let user_name = headers.iter().find(|(k, _)| k == USER_HEADER).map(|(_, v)| v.as_str());
    let groups: Vec<&str> =
        headers.iter().filter(|(k, _)| k == GROUP_HEADER).map(|(_, v)| v.as_str()).collect();
    let uid = headers.iter().find(|(k, _)| k == UID_HEADER).map(|(_, v)| v.as_str());
    let extras: Vec<(String, &str)> = headers
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(EXTRA_HEADER_PREFIX).map(|key| (unescape(key), v.as_str()))
        })
        .collect();
    let user_name = user_name.filter(|u| !u.is_empty());
    let uid = uid.filter(|u| !u.is_empty());
    let Some(user_name) = user_name else {
        if groups.is_empty() && extras.is_empty() && uid.is_none() {
            return Ok(None);
        }
        let mut asked: Vec<String> = groups.iter().map(|g| format!("group {g}")).collect();
        asked.extend(extras.iter().map(|(k, v)| format!("extra {k}={v}")));
        asked.extend(uid.map(|u| format!("uid {u}")));
        return Err(ImpersonationError::NoUser(format!("[{}]", asked.join(" "))));
    };

    let mut checks = Vec::new();
    let mut user = UserInfo { name: user_name.to_string(), ..UserInfo::default() };
    match service_account::split_username(user_name) {
        Some((namespace, name)) => {
            checks.push(check(requester, "", "serviceaccounts", namespace, name));
            if groups.is_empty() {
                // A service account's groups are known: they come with it.
                user.groups = service_account::groups(namespace);
            }
        }
        None => checks.push(check(requester, "", "users", "", user_name)),
    }
    for group in &groups {
        checks.push(check(requester, "", "groups", "", group));
        user.groups.push(group.to_string());
    }
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, value) in &extras {
        let mut attributes = check(requester, "authentication.k8s.io", "userextras", "", value);
        attributes.subresource = key.clone();
        checks.push(attributes);
        extra.entry(key.clone()).or_default().push(value.to_string());
    }
    user.extra = extra;
    if let Some(uid) = uid {
        checks.push(check(requester, "authentication.k8s.io", "uids", "", uid));
        user.uid = uid.to_string();
    }
    if user.name != ANONYMOUS {
        if !user.groups.iter().any(|g| g == AUTHENTICATED || g == UNAUTHENTICATED) {
            user.groups.push(AUTHENTICATED.into());
        }
    } else if !user.in_group(UNAUTHENTICATED) {
        user.groups.push(UNAUTHENTICATED.into());
    }
    Ok(Some(Plan { checks, user }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn admin() -> UserInfo {
        UserInfo {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        }
    }

    fn summary(plan: &Plan) -> Vec<String> {
        plan.checks
            .iter()
            .map(|a| {
                format!("{} {}/{} {}/{}", a.verb, a.api_group, a.resource, a.namespace, a.name)
                    + &if a.subresource.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", a.subresource)
                    }
            })
            .collect()
    }

    #[test]
    fn no_headers_is_no_impersonation() {
        assert_eq!(plan(&admin(), &headers(&[("accept", "x")])), Ok(None));
    }

    #[test]
    fn a_user_and_groups_are_checked_one_by_one_and_become_the_user() {
        let plan = plan(
            &admin(),
            &headers(&[
                ("impersonate-user", "jane"),
                ("impersonate-group", "dev"),
                ("impersonate-group", "ops"),
            ]),
        )
        .expect("valid")
        .expect("impersonation");
        assert_eq!(
            summary(&plan),
            ["impersonate /users /jane", "impersonate /groups /dev", "impersonate /groups /ops"]
        );
        assert!(plan.checks.iter().all(|c| c.user == admin() && c.resource_request));
        assert_eq!(plan.user.name, "jane");
        assert_eq!(plan.user.groups, ["dev", "ops", "system:authenticated"]);
    }

    #[test]
    fn a_service_account_is_checked_in_its_namespace_and_gets_its_groups() {
        let plan =
            plan(&admin(), &headers(&[("impersonate-user", "system:serviceaccount:team:robot")]))
                .expect("valid")
                .expect("impersonation");
        assert_eq!(summary(&plan), ["impersonate /serviceaccounts team/robot"]);
        assert_eq!(
            plan.user.groups,
            ["system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"]
        );
    }

    #[test]
    fn extras_and_uids_are_checked_in_the_authentication_group() {
        let plan = plan(
            &admin(),
            &headers(&[
                ("impersonate-user", "jane"),
                ("impersonate-extra-scopes", "view"),
                ("impersonate-extra-example.com%2fteam", "a"),
                ("impersonate-uid", "u-1"),
            ]),
        )
        .expect("valid")
        .expect("impersonation");
        assert_eq!(
            summary(&plan),
            [
                "impersonate /users /jane",
                "impersonate authentication.k8s.io/userextras /view [scopes]",
                "impersonate authentication.k8s.io/userextras /a [example.com/team]",
                "impersonate authentication.k8s.io/uids /u-1",
            ]
        );
        assert_eq!(plan.user.uid, "u-1");
        assert_eq!(plan.user.extra["example.com/team"], ["a"]);
    }

    #[test]
    fn the_authenticated_group_is_added_as_upstream_adds_it() {
        let groups = |pairs: &[(&str, &str)]| {
            plan(&admin(), &headers(pairs)).expect("valid").expect("impersonation").user.groups
        };
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
        let cases: [Case; 4] = [
            ("to a user", &[("impersonate-user", "jane")], &["system:authenticated"]),
            (
                "not when unauthenticated was asked for",
                &[("impersonate-user", "jane"), ("impersonate-group", "system:unauthenticated")],
                &["system:unauthenticated"],
            ),
            (
                "anonymous gets unauthenticated",
                &[("impersonate-user", "system:anonymous")],
                &["system:unauthenticated"],
            ),
            (
                "not twice",
                &[("impersonate-user", "jane"), ("impersonate-group", "system:authenticated")],
                &["system:authenticated"],
            ),
        ];
        for (case, pairs, expected) in cases {
            assert_eq!(groups(pairs), expected, "{case}");
        }
    }

    #[test]
    fn groups_without_a_user_are_refused() {
        let err = plan(&admin(), &headers(&[("impersonate-group", "dev")])).expect_err("refused");
        assert_eq!(err.to_string(), "requested [group dev] without impersonating a user");
    }
}
