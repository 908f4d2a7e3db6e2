//! How big each of a Deployment's ReplicaSets should be (upstream's rolling, recreate and
//! proportional scaling arithmetic), as plain functions over the sets.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::runtime::int_or_percent;

use super::revision::{DESIRED_REPLICAS, MAX_REPLICAS, int_annotation, replicas_of};

/// A set's `spec.replicas`.
pub fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// A set's available replicas.
pub fn available(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// What orders sets by age: creation time, then name.
type Age = (Option<k8s_openapi::jiff::Timestamp>, String);

fn creation(rs: &ReplicaSet) -> Age {
    (
        rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        rs.metadata.name.clone().unwrap_or_default(),
    )
}

/// Whether the Deployment rolls updates (rather than recreating).
pub fn is_rolling(d: &Deployment) -> bool {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

fn scaled(value: Option<&IntOrString>, default: &str, total: i32, round_up: bool) -> i32 {
    match value {
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => percent(s, total, round_up),
        None => percent(default, total, round_up),
    }
}

/// `s` as a percentage of `total`; a plain number as that count, anything else 0.
fn percent(s: &str, total: i32, round_up: bool) -> i32 {
    int_or_percent::percent(s, total, round_up).unwrap_or_else(|_| s.parse().unwrap_or(0))
}

/// `(maxSurge, maxUnavailable)` resolved against the replicas; both zero makes one
/// unavailable allowed, as upstream's `ResolveFenceposts`.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    if !is_rolling(d) {
        return (0, 0);
    }
    let replicas = replicas_of(d);
    let rolling =
        d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), "25%", replicas, true);
    let mut unavailable =
        scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), "25%", replicas, false);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable.min(replicas))
}

/// The surge the Deployment allows.
pub fn max_surge(d: &Deployment) -> i32 {
    fenceposts(d).0
}

/// How many replicas may be unavailable during an update.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if replicas_of(d) == 0 { 0 } else { fenceposts(d).1 }
}

/// The replicas the new set should have now (upstream's `NewRSNewReplicas`).
pub fn new_rs_replicas(d: &Deployment, all: &[&ReplicaSet], new_rs: &ReplicaSet) -> i32 {
    let replicas = replicas_of(d);
    if !is_rolling(d) {
        return replicas;
    }
    let current: i32 = all.iter().map(|rs| spec_replicas(rs)).sum();
    let max_total = replicas + max_surge(d);
    if current >= max_total {
        return spec_replicas(new_rs);
    }
    let up = (max_total - current).min(replicas - spec_replicas(new_rs));
    spec_replicas(new_rs) + up
}

/// The old sets to shrink in a rolling update, as `(name, replicas)`: first the unhealthy
/// replicas of the oldest sets, then as many as availability allows, oldest sets first.
pub fn scale_down_old(
    d: &Deployment,
    old: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Vec<(String, i32)> {
    let mut sizes: Vec<(String, i32, i32, Age)> = old
        .iter()
        .filter(|rs| spec_replicas(rs) > 0)
        .map(|rs| {
            (
                rs.metadata.name.clone().unwrap_or_default(),
                spec_replicas(rs),
                available(rs),
                creation(rs),
            )
        })
        .collect();
    sizes.sort_by(|a, b| a.3.cmp(&b.3));
    let old_count: i32 = sizes.iter().map(|s| s.1).sum();
    if old_count == 0 {
        return Vec::new();
    }
    let all_count = old_count + spec_replicas(new_rs);
    let min_available = replicas_of(d) - max_unavailable(d);
    let new_unavailable = spec_replicas(new_rs) - available(new_rs);
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    // Unhealthy replicas of old sets go first: they count for nothing.
    let mut cleaned = 0;
    for (_, replicas, avail, _) in sizes.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if *replicas == 0 || *replicas == *avail {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(*replicas - *avail);
        *replicas -= down;
        cleaned += down;
    }
    // Then available ones, while availability stays above the minimum.
    let available_count: i32 = sizes.iter().map(|s| s.2.min(s.1)).sum::<i32>() + available(new_rs);
    if available_count > min_available {
        let total_down = available_count - min_available;
        let mut down_so_far = 0;
        for (_, replicas, _, _) in sizes.iter_mut() {
            if down_so_far >= total_down {
                break;
            }
            if *replicas == 0 {
                continue;
            }
            let down = (*replicas).min(total_down - down_so_far);
            *replicas -= down;
            down_so_far += down;
        }
    }
    let before: Vec<(String, i32)> = old
        .iter()
        .map(|rs| (rs.metadata.name.clone().unwrap_or_default(), spec_replicas(rs)))
        .collect();
    sizes
        .into_iter()
        .filter(|(name, replicas, _, _)| before.iter().any(|(n, r)| n == name && r != replicas))
        .map(|(name, replicas, _, _)| (name, replicas))
        .collect()
}

/// Whether the Deployment's replicas changed since its active sets were sized.
pub fn is_scaling_event(d: &Deployment, sets: &[&ReplicaSet]) -> bool {
    sets.iter()
        .filter(|rs| spec_replicas(rs) > 0)
        .filter_map(|rs| int_annotation(rs, DESIRED_REPLICAS))
        .any(|desired| desired != replicas_of(d))
}

/// The sizes of the sets after the Deployment was scaled (upstream's `scale`): one active set
/// takes everything; a saturated new set drains the old ones; otherwise a rolling Deployment
/// spreads the change over its active sets in proportion to their size.
pub fn proportional(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    old: &[&ReplicaSet],
) -> Vec<(String, i32)> {
    let replicas = replicas_of(d);
    let name = |rs: &ReplicaSet| rs.metadata.name.clone().unwrap_or_default();
    let mut active: Vec<&ReplicaSet> =
        old.iter().copied().chain(new_rs).filter(|rs| spec_replicas(rs) > 0).collect();
    if active.len() <= 1 {
        // The one active set, or else the newest, takes it all (its replica annotations are
        // brought up to date even when its size stays).
        let target = active
            .first()
            .copied()
            .or(new_rs)
            .or_else(|| old.iter().copied().max_by_key(|rs| creation(rs)));
        return match target {
            Some(rs)
                if spec_replicas(rs) != replicas
                    || int_annotation(rs, DESIRED_REPLICAS) != Some(replicas) =>
            {
                vec![(name(rs), replicas)]
            }
            _ => Vec::new(),
        };
    }
    if let Some(new_rs) = new_rs
        && spec_replicas(new_rs) == replicas
        && int_annotation(new_rs, DESIRED_REPLICAS) == Some(replicas)
        && available(new_rs) == replicas
    {
        return old.iter().filter(|rs| spec_replicas(rs) > 0).map(|rs| (name(rs), 0)).collect();
    }
    if !is_rolling(d) {
        return Vec::new();
    }
    let current: i32 = active.iter().map(|rs| spec_replicas(rs)).sum();
    let allowed = if replicas > 0 { replicas + max_surge(d) } else { 0 };
    let to_add = allowed - current;
    if to_add > 0 {
        // Bigger and newer first.
        active.sort_by(|a, b| {
            spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| creation(b).cmp(&creation(a)))
        });
    } else {
        // Bigger and older first.
        active.sort_by(|a, b| {
            spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| creation(a).cmp(&creation(b)))
        });
    }
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &active {
        let proportion = if to_add == 0 || to_add == added {
            0
        } else {
            let fraction = fraction(rs, d);
            let allowed = to_add - added;
            if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
        };
        added += proportion;
        sizes.push((name(rs), spec_replicas(rs) + proportion));
    }
    if to_add != 0
        && let Some(first) = sizes.first_mut()
    {
        first.1 = (first.1 + to_add - added).max(0);
    }
    // Every active set is sized, so that all carry the Deployment's new replica annotations
    // (a set left out would make every later sync a scaling event).
    sizes
}

/// The share of a scale a set takes: its size times the new maximum over the maximum it was
/// sized for, less its size.
fn fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let replicas = replicas_of(d);
    if replicas == 0 {
        return -spec_replicas(rs);
    }
    let max = replicas + max_surge(d);
    // Without the annotation, the Deployment's current size stands in, as upstream's.
    let Some(before) = int_annotation(rs, MAX_REPLICAS)
        .or_else(|| d.status.as_ref().and_then(|s| s.replicas))
        .filter(|b| *b > 0)
    else {
        return 0;
    };
    let size = f64::from(spec_replicas(rs)) * f64::from(max) / f64::from(before);
    size.round() as i32 - spec_replicas(rs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use k8s_openapi::api::apps::v1::{DeploymentSpec, ReplicaSetSpec, ReplicaSetStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use kube::api::ObjectMeta;

    fn deployment(replicas: i32) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec { replicas: Some(replicas), ..Default::default() }),
            ..Default::default()
        }
    }

    fn rs(name: &str, age: i64, replicas: i32, available: i32, max: Option<i32>) -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(
                    Timestamp::from_second(1_000_000 - age).unwrap_or(Timestamp::UNIX_EPOCH),
                )),
                annotations: max
                    .map(|m| BTreeMap::from([(MAX_REPLICAS.to_string(), m.to_string())])),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(replicas), ..Default::default() }),
            status: Some(ReplicaSetStatus {
                replicas,
                available_replicas: Some(available),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        assert_eq!(fenceposts(&deployment(3)), (1, 0));
        assert_eq!(fenceposts(&deployment(10)), (3, 2));
        let mut d = deployment(4);
        if let Some(s) = d.spec.as_mut() {
            s.strategy = Some(k8s_openapi::api::apps::v1::DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(k8s_openapi::api::apps::v1::RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            });
        }
        assert_eq!(fenceposts(&d), (0, 1));
    }

    #[test]
    fn a_rolling_update_surges_then_drains_the_old_set() {
        let d = deployment(3);
        let old = rs("old", 10, 3, 3, Some(4));
        let new = rs("new", 1, 0, 0, Some(4));
        // maxSurge 1: the new set may grow to 1.
        assert_eq!(new_rs_replicas(&d, &[&old, &new], &new), 1);
        // maxUnavailable 0: nothing old goes until the new replica is available.
        let new = rs("new", 1, 1, 0, Some(4));
        assert!(scale_down_old(&d, &[&old], &new).is_empty());
        let new = rs("new", 1, 1, 1, Some(4));
        assert_eq!(scale_down_old(&d, &[&old], &new), [("old".to_string(), 2)]);
    }

    #[test]
    fn unhealthy_old_replicas_go_first() {
        let d = deployment(3);
        let old = rs("old", 10, 3, 1, Some(4));
        let new = rs("new", 1, 1, 1, Some(4));
        // 4 pods of which 3 must stay: one may go, and it is an unavailable old one.
        assert_eq!(scale_down_old(&d, &[&old], &new), [("old".to_string(), 2)]);
    }

    #[test]
    fn scaling_mid_rollout_is_proportional() {
        let d = deployment(20);
        let old = rs("old", 10, 6, 6, Some(13));
        let new = rs("new", 1, 4, 4, Some(13));
        let sizes: BTreeMap<String, i32> =
            proportional(&d, Some(&new), &[&old]).into_iter().collect();
        // From 10 of 13 allowed to 25 allowed: each set in proportion, leftovers to the biggest.
        assert_eq!(sizes.values().sum::<i32>(), 25);
        assert!(sizes["old"] > sizes["new"]);
        assert_eq!(sizes.len(), 2, "every active set gets the new annotations");
    }

    #[test]
    fn one_active_set_takes_the_whole_scale() {
        let d = deployment(5);
        let only = rs("only", 1, 2, 2, Some(3));
        assert_eq!(proportional(&d, Some(&only), &[]), [("only".to_string(), 5)]);
    }
}
