//! A Service's IP families (`spec.ipFamilyPolicy`, `spec.ipFamilies`, `spec.clusterIPs`)
//! against the families the cluster serves, as upstream's allocator settles them before it
//! allocates: defaults, checks, and the addresses still to allocate. Pure.

use std::net::IpAddr;

use krust_api::cidr::Family;
use krust_api::object::path;
use krust_api::validation::FieldError;
use serde_json::{Value, json};

const SINGLE: &str = "SingleStack";
const PREFER: &str = "PreferDualStack";
const REQUIRE: &str = "RequireDualStack";
const POLICIES: &[&str] = &[SINGLE, PREFER, REQUIRE];

/// What a Service's families settle to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// `spec.ipFamilyPolicy`.
    pub policy: &'static str,
    /// `spec.ipFamilies`, the primary first.
    pub families: Vec<Family>,
    /// For each family, the address asked for (`None`: allocate one). Empty for headless
    /// Services.
    pub addresses: Vec<Option<IpAddr>>,
}

fn strings(svc: &Value, at: &str) -> Vec<String> {
    path(svc, at)
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn has_selector(svc: &Value) -> bool {
    path(svc, "spec.selector").and_then(Value::as_object).is_some_and(|s| !s.is_empty())
}

/// Settles the families of `svc` (not an ExternalName Service) on a cluster serving
/// `cluster` (its primary first); `old` is the stored object on updates. The policy, the
/// families and the addresses are checked as upstream's `initIPFamilyFields` and validation
/// check them, with their messages.
pub fn settle(
    svc: &Value,
    old: Option<&Value>,
    cluster: &[Family],
) -> Result<Settled, Vec<FieldError>> {
    let mut errors = Vec::new();
    let dual_cluster = cluster.len() > 1;
    let raw_ips = strings(svc, "spec.clusterIPs");
    let headless = raw_ips.first().is_some_and(|ip| ip == "None")
        || path(svc, "spec.clusterIP").and_then(Value::as_str) == Some("None");
    let mut ips: Vec<IpAddr> = Vec::new();
    if !headless {
        for (i, raw) in raw_ips.iter().enumerate() {
            match raw.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => errors.push(FieldError::invalid(
                    format!("spec.clusterIPs[{i}]"),
                    json!(raw),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )),
            }
        }
    }
    if raw_ips.len() > 2 {
        errors.push(FieldError::invalid(
            "spec.clusterIPs",
            json!(raw_ips),
            "may only hold up to 2 values",
        ));
    }
    if let [a, b] = ips.as_slice()
        && Family::of(*a) == Family::of(*b)
    {
        errors.push(FieldError::invalid(
            "spec.clusterIPs[1]",
            json!(raw_ips[1]),
            "may specify no more than one IP for each IP family",
        ));
    }
    let mut families = Vec::new();
    let named = strings(svc, "spec.ipFamilies");
    for (i, name) in named.iter().enumerate() {
        match Family::from_name(name) {
            Some(f) if families.contains(&f) => {
                errors.push(FieldError::duplicate(format!("spec.ipFamilies[{i}]"), json!(name)))
            }
            Some(f) => families.push(f),
            None => errors.push(FieldError::not_supported(
                format!("spec.ipFamilies[{i}]"),
                json!(name),
                &["IPv4", "IPv6"],
            )),
        }
    }
    if named.len() > 2 {
        errors.push(FieldError::invalid(
            "spec.ipFamilies",
            json!(named),
            "may only hold up to 2 values",
        ));
    }
    let policy = match path(svc, "spec.ipFamilyPolicy").and_then(Value::as_str) {
        Some(p) => match POLICIES.iter().find(|known| **known == p) {
            Some(known) => *known,
            None => {
                errors.push(FieldError::not_supported("spec.ipFamilyPolicy", json!(p), POLICIES));
                SINGLE
            }
        },
        None if headless && !has_selector(svc) => REQUIRE,
        None => SINGLE,
    };
    if let Some(ip) =
        path(svc, "spec.clusterIP").and_then(Value::as_str).filter(|ip| !ip.is_empty())
        && raw_ips.first().is_some_and(|first| first != ip)
    {
        errors.push(FieldError::invalid(
            "spec.clusterIPs",
            json!(raw_ips),
            "first value must match `clusterIP`",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if let Some(old) = old {
        let old_ips = strings(old, "spec.clusterIPs");
        let old_families = strings(old, "spec.ipFamilies");
        let old_headless = old_ips.first().is_some_and(|ip| ip == "None");
        let was_external = path(old, "spec.type").and_then(Value::as_str) == Some("ExternalName");
        // The primary address and family stay what they were (a headless Service may change
        // its families).
        let both_headless = headless && old_headless;
        if !(was_external || both_headless) {
            if let (Some(before), Some(now)) = (old_ips.first(), raw_ips.first())
                && before != now
            {
                errors.push(FieldError::invalid(
                    "spec.clusterIPs[0]",
                    json!(raw_ips),
                    "may not change once set",
                ));
            }
            if let (Some(before), Some(now)) = (old_families.first(), named.first())
                && before != now
            {
                errors.push(FieldError::invalid(
                    "spec.ipFamilies[0]",
                    json!(named),
                    "may not change once set",
                ));
            }
            if !errors.is_empty() {
                return Err(errors);
            }
        }
        // A PreferDualStack Service left as it was keeps its stacks, whatever the cluster
        // serves now: it is neither upgraded nor downgraded behind its owner's back.
        if policy == PREFER
            && path(old, "spec.ipFamilyPolicy").and_then(Value::as_str) == Some(PREFER)
            && old_ips == raw_ips
            && old_families == named
        {
            let addresses = if headless { Vec::new() } else { ips.into_iter().map(Some).collect() };
            return Ok(Settled { policy, families, addresses });
        }
        // Asking for one stack where two were drops the secondary along with its address
        // (upstream's downgrade), when the request left them as they were.
        if policy == SINGLE {
            if old_ips.len() == 2 && old_ips == raw_ips {
                ips.truncate(1);
            }
            if old_families.len() == 2 && old_families == named {
                families.truncate(1);
            }
        } else if raw_ips.len() < old_ips.len() {
            errors.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                json!(policy),
                "must be 'SingleStack' to release the secondary cluster IP",
            ));
        } else if named.len() < old_families.len() {
            errors.push(FieldError::invalid(
                "spec.ipFamilyPolicy",
                json!(policy),
                "must be 'SingleStack' to release the secondary IP family",
            ));
        }
    }
    if policy == SINGLE && ips.len() > 1 {
        errors.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            json!(policy),
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple cluster IPs are specified",
        ));
    }
    if policy == SINGLE && families.len() > 1 {
        errors.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            json!(policy),
            "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families are specified",
        ));
    }
    // The addresses' families must agree with the named ones and fill in the rest.
    for (i, ip) in ips.iter().enumerate() {
        let family = Family::of(*ip);
        match families.get(i) {
            Some(named) if *named != family => errors.push(FieldError::invalid(
                format!("spec.clusterIPs[{i}]"),
                json!(ip.to_string()),
                format!("expected an {} value as indicated by `ipFamilies[{i}]`", named.name()),
            )),
            Some(_) => {}
            None if !cluster.contains(&family) => errors.push(FieldError::invalid(
                format!("spec.clusterIPs[{i}]"),
                json!(ip.to_string()),
                format!("{} is not configured on this cluster", family.name()),
            )),
            None => families.push(family),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let primary = cluster.first().copied().unwrap_or(Family::V4);
    if headless && !has_selector(svc) {
        // Headless Services without selector allocate nothing and select no pods: any
        // family goes, and a dual-stack policy gets both even where the cluster serves one.
        if families.is_empty() {
            families.push(primary);
        }
        if policy != SINGLE && families.len() == 1 {
            families.push(families[0].other());
        }
        return Ok(Settled { policy, families, addresses: Vec::new() });
    }
    if policy == REQUIRE && !dual_cluster {
        errors.push(FieldError::invalid(
            "spec.ipFamilyPolicy",
            json!(policy),
            "this cluster is not configured for dual-stack services",
        ));
    }
    for (i, family) in families.iter().enumerate() {
        if !cluster.contains(family) {
            errors.push(FieldError::invalid(
                format!("spec.ipFamilies[{i}]"),
                json!(family.name()),
                "not configured on this cluster",
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if families.is_empty() {
        families.push(primary);
    }
    if policy != SINGLE && families.len() == 1 && dual_cluster {
        families.push(families[0].other());
    }
    let addresses = match headless {
        true => Vec::new(),
        false => (0..families.len()).map(|i| ips.get(i).copied()).collect(),
    };
    Ok(Settled { policy, families, addresses })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &[Family] = &[Family::V4];
    const DUAL: &[Family] = &[Family::V4, Family::V6];
    const DUAL6: &[Family] = &[Family::V6, Family::V4];

    fn settled(spec: Value, cluster: &[Family]) -> Settled {
        settle(&json!({ "spec": spec }), None, cluster).expect("settles")
    }

    fn refused(spec: Value, cluster: &[Family]) -> Vec<FieldError> {
        settle(&json!({ "spec": spec }), None, cluster).expect_err("is refused")
    }

    #[test]
    fn a_plain_service_is_single_stack_of_the_primary_family() {
        let s = settled(json!({"selector": {"a": "b"}}), DUAL6);
        assert_eq!(s.policy, SINGLE);
        assert_eq!(s.families, vec![Family::V6]);
        assert_eq!(s.addresses, vec![None]);
    }

    #[test]
    fn dual_policies_add_the_other_family_where_the_cluster_has_it() {
        let s = settled(json!({"ipFamilyPolicy": "PreferDualStack"}), DUAL);
        assert_eq!(s.families, vec![Family::V4, Family::V6]);
        assert_eq!(s.addresses, vec![None, None]);
        let s = settled(json!({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6"]}), DUAL);
        assert_eq!(s.families, vec![Family::V6, Family::V4]);
        let s = settled(json!({"ipFamilyPolicy": "PreferDualStack"}), V4);
        assert_eq!(s.families, vec![Family::V4]);
        let e = refused(json!({"ipFamilyPolicy": "RequireDualStack"}), V4);
        assert_eq!(e[0].field, "spec.ipFamilyPolicy");
        assert!(e[0].body().contains("not configured for dual-stack"), "{}", e[0]);
    }

    #[test]
    fn addresses_decide_families_and_must_agree_with_them() {
        let s = settled(json!({"clusterIP": "fd00::5", "clusterIPs": ["fd00::5"]}), DUAL);
        assert_eq!(s.families, vec![Family::V6]);
        assert_eq!(s.addresses, vec![Some("fd00::5".parse().expect("ip"))]);
        let s = settled(
            json!({"ipFamilyPolicy": "RequireDualStack", "clusterIPs": ["10.0.0.5", "fd00::5"]}),
            DUAL,
        );
        assert_eq!(s.families, vec![Family::V4, Family::V6]);
        // Two addresses under no policy is SingleStack's, which holds one.
        let e = refused(json!({"clusterIPs": ["10.0.0.5", "fd00::5"]}), DUAL);
        assert_eq!(e[0].field, "spec.ipFamilyPolicy");
        let e = refused(json!({"clusterIPs": ["fd00::5"]}), V4);
        assert_eq!(
            e[0].body(),
            "Invalid value: \"fd00::5\": IPv6 is not configured on this cluster"
        );
        let e = refused(json!({"clusterIPs": ["10.0.0.5"], "ipFamilies": ["IPv6"]}), DUAL);
        assert_eq!(e[0].field, "spec.clusterIPs[0]");
        let e = refused(
            json!({"ipFamilyPolicy": "RequireDualStack", "clusterIPs": ["10.0.0.5", "10.0.0.6"]}),
            DUAL,
        );
        assert_eq!(e[0].field, "spec.clusterIPs[1]");
        let e = refused(json!({"ipFamilies": ["IPv6"]}), V4);
        assert_eq!(e[0].field, "spec.ipFamilies[0]");
        let e =
            refused(json!({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"]}), DUAL);
        assert_eq!(e[0].field, "spec.ipFamilyPolicy");
    }

    #[test]
    fn headless_services_without_selector_take_both_families() {
        let s = settled(json!({"clusterIP": "None"}), DUAL);
        assert_eq!((s.policy, s.families.len()), (REQUIRE, 2));
        assert!(s.addresses.is_empty());
        let s = settled(json!({"clusterIP": "None", "selector": {"a": "b"}}), DUAL);
        assert_eq!((s.policy, s.families.len()), (SINGLE, 1));
        // With a selector, the cluster's families hold as for any Service.
        let e = refused(
            json!({"clusterIP": "None", "selector": {"a": "b"}, "ipFamilies": ["IPv6"]}),
            V4,
        );
        assert_eq!(e[0].field, "spec.ipFamilies[0]");
        let s = settled(
            json!({"clusterIP": "None", "selector": {"a": "b"}, "ipFamilyPolicy": "PreferDualStack"}),
            V4,
        );
        assert_eq!(s.families, vec![Family::V4]);
        assert!(s.addresses.is_empty());
        // Even where the cluster serves one family.
        let s = settled(json!({"clusterIP": "None"}), V4);
        assert_eq!((s.policy, s.families.len()), (REQUIRE, 2));
    }

    #[test]
    fn setting_single_stack_on_update_drops_the_secondary() {
        let old = json!({"spec": {"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"],
            "clusterIPs": ["10.0.0.5", "fd00::5"]}});
        let new = json!({"spec": {"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv4", "IPv6"],
            "clusterIPs": ["10.0.0.5", "fd00::5"]}});
        let s = settle(&new, Some(&old), DUAL).expect("settles");
        assert_eq!(s.families, vec![Family::V4]);
        assert_eq!(s.addresses, vec![Some("10.0.0.5".parse().expect("ip"))]);
        // Dropping the secondary under a dual-stack policy is refused.
        let mut keep = new.clone();
        keep["spec"]["ipFamilyPolicy"] = json!("PreferDualStack");
        keep["spec"]["clusterIPs"] = json!(["10.0.0.5"]);
        let e = settle(&keep, Some(&old), DUAL).expect_err("refused");
        assert!(e[0].body().contains("to release the secondary cluster IP"), "{}", e[0]);
        // The primary address and family do not change.
        let mut swap = old.clone();
        swap["spec"]["clusterIPs"] = json!(["fd00::5"]);
        swap["spec"]["ipFamilies"] = json!(["IPv6"]);
        swap["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        let e = settle(&swap, Some(&old), DUAL).expect_err("refused");
        assert_eq!(e[0].field, "spec.clusterIPs[0]");
        assert!(e[0].body().contains("may not change once set"));
        let e = refused(json!({"clusterIP": "10.0.0.5", "clusterIPs": ["10.0.0.6"]}), DUAL);
        assert_eq!(e[0].field, "spec.clusterIPs");
    }
}
