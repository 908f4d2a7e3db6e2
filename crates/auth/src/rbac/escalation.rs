//! Escalation prevention, as upstream's `rbac/validation` (`Covers`, `BreakdownRule`,
//! `CompactRules`, `ConfirmNoEscalation`): a user may grant only what they hold.

use std::collections::BTreeSet;

use k8s_openapi::api::rbac::v1::PolicyRule;

use super::matching::{ALL, go_quote_list, list};
use crate::UserInfo;

/// Splits a rule into rules of one group, resource, verb and name (or one URL and verb).
pub fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| Some(vec![s.clone()]);
    let mut out = Vec::new();
    for group in list(&rule.api_groups) {
        for resource in list(&rule.resources) {
            for verb in &rule.verbs {
                let base = PolicyRule {
                    api_groups: one(group),
                    resources: one(resource),
                    verbs: vec![verb.clone()],
                    ..PolicyRule::default()
                };
                let names = list(&rule.resource_names);
                if names.is_empty() {
                    out.push(base);
                } else {
                    out.extend(
                        names.iter().map(|n| PolicyRule { resource_names: one(n), ..base.clone() }),
                    );
                }
            }
        }
    }
    for url in list(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            out.push(PolicyRule {
                non_resource_urls: one(url),
                verbs: vec![verb.clone()],
                ..PolicyRule::default()
            });
        }
    }
    out
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|i| has(set, i))
}

fn resources_cover(owner: &[String], wanted: &[String]) -> bool {
    if has(owner, ALL) || has_all(owner, wanted) {
        return true;
    }
    wanted.iter().all(|path| {
        has(owner, path)
            || path.split_once('/').is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
    })
}

fn url_covers(owner: &str, path: &str) -> bool {
    owner == path || (owner.ends_with('*') && path.starts_with(owner.trim_end_matches('*')))
}

fn urls_cover(owner: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|path| owner.iter().any(|o| url_covers(o, path)))
}

/// Whether `owner` covers `sub`, a rule of at most one verb, resource and name.
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, ALL) || has_all(&owner.verbs, &sub.verbs);
    let groups = {
        let o = list(&owner.api_groups);
        has(o, ALL) || has_all(o, list(&sub.api_groups))
    };
    let resources = resources_cover(list(&owner.resources), list(&sub.resources));
    let urls = urls_cover(list(&owner.non_resource_urls), list(&sub.non_resource_urls));
    let owner_names = list(&owner.resource_names);
    let sub_names = list(&sub.resource_names);
    let names =
        owner_names.is_empty() || (!sub_names.is_empty() && has_all(owner_names, sub_names));
    verbs && groups && resources && urls && names
}

/// Whether `owner` rules cover every one of `requested`; the second value is what they do
/// not cover, broken down to single verbs, resources and names.
pub fn covers(owner: &[PolicyRule], requested: &[PolicyRule]) -> (bool, Vec<PolicyRule>) {
    let uncovered: Vec<PolicyRule> = requested
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| rule_covers(o, sub)))
        .collect();
    (uncovered.is_empty(), uncovered)
}

/// Merges rules of one group and resource (and at most one name) that differ only in verbs.
pub fn compact(rules: &[PolicyRule]) -> Vec<PolicyRule> {
    type Key = (String, String, Option<String>);
    let mut out = Vec::new();
    let mut simple: Vec<(Key, PolicyRule)> = Vec::new();
    for rule in rules {
        let groups = list(&rule.api_groups);
        let resources = list(&rule.resources);
        let names = list(&rule.resource_names);
        let is_simple = names.len() <= 1
            && list(&rule.non_resource_urls).is_empty()
            && groups.len() == 1
            && resources.len() == 1;
        if !is_simple {
            out.push(rule.clone());
            continue;
        }
        let key = (groups[0].clone(), resources[0].clone(), names.first().cloned());
        match simple.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => {
                for verb in &rule.verbs {
                    if !existing.verbs.contains(verb) {
                        existing.verbs.push(verb.clone());
                    }
                }
            }
            None => simple.push((key, rule.clone())),
        }
    }
    out.extend(simple.into_iter().map(|(_, r)| r));
    out
}

/// A rule in upstream's compact form: `{APIGroups:[""], Resources:["pods"], Verbs:["get"]}`.
pub fn compact_string(rule: &PolicyRule) -> String {
    let mut parts = Vec::new();
    let mut part = |label: &str, items: &[String]| {
        if !items.is_empty() {
            parts.push(format!("{label}:{}", go_quote_list(items)));
        }
    };
    part("APIGroups", list(&rule.api_groups));
    part("Resources", list(&rule.resources));
    part("NonResourceURLs", list(&rule.non_resource_urls));
    part("ResourceNames", list(&rule.resource_names));
    part("Verbs", &rule.verbs);
    format!("{{{}}}", parts.join(", "))
}

/// A user asked to grant rules they do not hold.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Escalation {
    /// Upstream's wording: `user "bob" (groups=["dev" "system:authenticated"]) is attempting
    /// to grant RBAC permissions not currently held:\n{...}` (one missing rule a line, sorted),
    /// then `; resolution errors: [...]` when some of the user's bindings could not be read.
    pub message: String,
    /// The rules not held, compacted.
    pub missing: Vec<PolicyRule>,
}

/// Checks that `owner_rules` (what `user` holds where the grant applies) cover `requested`,
/// as upstream's `ConfirmNoEscalation`; `resolution_errors` are the errors met while
/// gathering the owner's rules, reported with the refusal.
pub fn confirm_no_escalation(
    user: &UserInfo,
    owner_rules: &[PolicyRule],
    resolution_errors: &[String],
    requested: &[PolicyRule],
) -> Result<(), Escalation> {
    let (covered, missing) = covers(owner_rules, requested);
    if covered {
        return Ok(());
    }
    let missing = compact(&missing);
    let lines: BTreeSet<String> = missing.iter().map(compact_string).collect();
    let mut message = format!(
        "user {} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        super::matching::go_quote(&user.name),
        go_quote_list(&user.groups),
        lines.into_iter().collect::<Vec<_>>().join("\n")
    );
    if !resolution_errors.is_empty() {
        message.push_str(&format!("; resolution errors: [{}]", resolution_errors.join(", ")));
    }
    Err(Escalation { message, missing })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |s: &[&str]| {
            if s.is_empty() { None } else { Some(s.iter().map(|x| x.to_string()).collect()) }
        };
        PolicyRule {
            verbs: verbs.iter().map(|x| x.to_string()).collect(),
            api_groups: v(groups),
            resources: v(resources),
            resource_names: v(names),
            non_resource_urls: None,
        }
    }

    fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        PolicyRule {
            verbs: verbs.iter().map(|x| x.to_string()).collect(),
            non_resource_urls: Some(urls.iter().map(|x| x.to_string()).collect()),
            ..PolicyRule::default()
        }
    }

    #[test]
    fn owner_rules_cover_requested_rules_as_upstream_decides() {
        let cases = [
            (
                "the same rule is covered",
                vec![rule(&["get"], &[""], &["pods"], &[])],
                vec![rule(&["get"], &[""], &["pods"], &[])],
                true,
            ),
            (
                "a star owner covers everything",
                vec![rule(&["*"], &["*"], &["*"], &[])],
                vec![rule(&["get", "delete"], &["apps"], &["deployments/scale"], &["x"])],
                true,
            ),
            (
                "a missing verb is not covered",
                vec![rule(&["get"], &[""], &["pods"], &[])],
                vec![rule(&["get", "list"], &[""], &["pods"], &[])],
                false,
            ),
            (
                "verbs may come from several owner rules",
                vec![rule(&["get"], &[""], &["pods"], &[]), rule(&["list"], &[""], &["pods"], &[])],
                vec![rule(&["get", "list"], &[""], &["pods"], &[])],
                true,
            ),
            (
                "*/subresource covers that subresource",
                vec![rule(&["get"], &["*"], &["*/scale"], &[])],
                vec![rule(&["get"], &["apps"], &["deployments/scale"], &[])],
                true,
            ),
            (
                "a resource does not cover its subresource",
                vec![rule(&["get"], &[""], &["pods"], &[])],
                vec![rule(&["get"], &[""], &["pods/log"], &[])],
                false,
            ),
            (
                "an owner without names covers named requests",
                vec![rule(&["get"], &[""], &["pods"], &[])],
                vec![rule(&["get"], &[""], &["pods"], &["a"])],
                true,
            ),
            (
                "an owner with names does not cover unnamed requests",
                vec![rule(&["get"], &[""], &["pods"], &["a"])],
                vec![rule(&["get"], &[""], &["pods"], &[])],
                false,
            ),
            (
                "an owner with names covers those names",
                vec![rule(&["get"], &[""], &["pods"], &["a", "b"])],
                vec![rule(&["get"], &[""], &["pods"], &["b"])],
                true,
            ),
            (
                "a path prefix covers longer paths",
                vec![urls(&["get"], &["/apis/*"])],
                vec![urls(&["get"], &["/apis/apps"])],
                true,
            ),
            (
                "a path does not cover another",
                vec![urls(&["get"], &["/healthz"])],
                vec![urls(&["get"], &["/metrics"])],
                false,
            ),
            (
                "resource rules do not cover paths",
                vec![rule(&["*"], &["*"], &["*"], &[])],
                vec![urls(&["get"], &["/healthz"])],
                false,
            ),
            ("nothing is asked, nothing is missing", vec![], vec![], true),
        ];
        for (name, owner, requested, expected) in cases {
            assert_eq!(covers(&owner, &requested).0, expected, "{name}");
        }
    }

    #[test]
    fn escalation_is_refused_with_upstreams_message() {
        let bob = UserInfo {
            name: "bob".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            ..UserInfo::default()
        };
        let owner = vec![rule(&["list"], &[""], &["pods"], &[])];
        let requested = vec![rule(&["get", "list", "watch"], &["", "apps"], &["pods"], &[])];
        let error = confirm_no_escalation(&bob, &owner, &[], &requested).err().map(|e| e.message);
        assert_eq!(
            error.as_deref(),
            Some(
                "user \"bob\" (groups=[\"dev\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"get\" \"watch\"]}\n{APIGroups:[\"apps\"], Resources:[\"pods\"], Verbs:[\"get\" \"list\" \"watch\"]}"
            )
        );
        assert!(
            confirm_no_escalation(&bob, &owner, &[], &[rule(&["list"], &[""], &["pods"], &[])])
                .is_ok()
        );
    }
}
