//! When a pod on a node with `NoExecute` taints must go (upstream's taint eviction
//! controller): at once when it does not tolerate one of them; after the shortest
//! `tolerationSeconds` of its tolerations of them otherwise, counted from when the taint was
//! added; never when it tolerates them all for ever.

use k8s_openapi::api::core::v1::{Pod, Taint};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Whether `toleration` tolerates `taint` (upstream's `ToleratesTaint`).
fn tolerates(toleration: &k8s_openapi::api::core::v1::Toleration, taint: &Taint) -> bool {
    if toleration.effect.as_deref().is_some_and(|e| !e.is_empty() && e != taint.effect) {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// When `pod` is to be evicted from a node with `taints` (`None`: it may stay).
pub fn eviction_time(pod: &Pod, taints: &[Taint], now: Timestamp) -> Option<Timestamp> {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let mut earliest: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<_> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Some(now);
        }
        // The shortest bound among the tolerations that match; none bounded: for ever.
        let Some(seconds) = matching.iter().filter_map(|t| t.toleration_seconds).min() else {
            continue;
        };
        let added = taint.time_added.as_ref().map_or(now, |t| t.0);
        let at = added.saturating_add(SignedDuration::from_secs(seconds.max(0))).unwrap_or(now);
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    earliest
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(tolerations: serde_json::Value) -> Pod {
        serde_json::from_value(
            serde_json::json!({"spec": {"containers": [], "tolerations": tolerations}}),
        )
        .expect("a pod")
    }

    #[test]
    fn eviction_times() {
        let now = Timestamp::now();
        let added = now - SignedDuration::from_secs(100);
        let taint = Taint {
            key: "node.kubernetes.io/unreachable".into(),
            effect: "NoExecute".into(),
            time_added: Some(Time(added)),
            value: None,
        };
        let soft = Taint { effect: "NoSchedule".into(), ..taint.clone() };
        let cases = [
            ("no toleration: now", pod(serde_json::json!([])), vec![taint.clone()], Some(now)),
            (
                "300 seconds from when the taint was added",
                pod(
                    serde_json::json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                    "effect": "NoExecute", "tolerationSeconds": 300}]),
                ),
                vec![taint.clone()],
                Some(added + SignedDuration::from_secs(300)),
            ),
            (
                "tolerated for ever",
                pod(serde_json::json!([{"operator": "Exists"}])),
                vec![taint.clone()],
                None,
            ),
            ("only NoExecute taints evict", pod(serde_json::json!([])), vec![soft], None),
        ];
        for (name, pod, taints, want) in cases {
            assert_eq!(eviction_time(&pod, &taints, now), want, "{name}");
        }
    }
}
