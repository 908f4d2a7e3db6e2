//! Why a pod is pending, node by node, beyond upstream's one-line message: every filter runs
//! on every node (not only up to the first refusal), and each refusal comes with the smallest
//! change that would lift it (a toleration, a label, so much CPU freed). The same plugins as
//! a scheduling cycle, over the same kind of snapshot: `krust explain-pending` builds one from
//! the API and prints this.

use std::fmt::Write as _;

use crate::framework::{CycleState, NodeInfo, PodInfo, Reason, Rejection, Snapshot};
use crate::profile::Profile;

/// What one node says about the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The node.
    pub node: String,
    /// Every plugin's refusal (none: the pod fits).
    pub refusals: Vec<Rejection>,
    /// The change that would let the pod fit here, one line per refusal.
    pub changes: Vec<String>,
}

/// Every node's verdict, the fitting ones first, then by how few changes they need.
pub fn explain(profile: &Profile, pod: &PodInfo, snapshot: &Snapshot<'_>) -> Vec<Verdict> {
    let mut state = CycleState::default();
    let mut everywhere = Vec::new();
    for plugin in &profile.pre_filter {
        if let Err(rejection) = plugin.pre_filter(&mut state, pod, snapshot) {
            everywhere.push(rejection);
        }
    }
    let mut verdicts: Vec<Verdict> = snapshot
        .nodes
        .iter()
        .map(|node| {
            let mut refusals = everywhere.clone();
            refusals
                .extend(profile.filter.iter().filter_map(|p| p.filter(&state, pod, node).err()));
            let changes = refusals
                .iter()
                .flat_map(|r| r.reasons.iter().map(|reason| change(pod, node, reason)))
                .collect();
            Verdict { node: node.name.clone(), refusals, changes }
        })
        .collect();
    verdicts
        .sort_by(|a, b| a.changes.len().cmp(&b.changes.len()).then_with(|| a.node.cmp(&b.node)));
    verdicts
}

/// The smallest change that lifts `reason` for `pod` on `node`.
pub fn change(pod: &PodInfo, node: &NodeInfo, reason: &Reason) -> String {
    match reason {
        Reason::Insufficient(resource) => {
            let asked = pod.requests.requests.get(resource);
            let free = node.allocatable.get(resource) - node.requested.get(resource);
            let short = asked - free.max(0);
            format!(
                "free {} of {resource} (the pod asks {}, {} is free of {})",
                amount(resource, short),
                amount(resource, asked),
                amount(resource, free.max(0)),
                amount(resource, node.allocatable.get(resource)),
            )
        }
        Reason::TooManyPods => format!(
            "remove a pod (the node holds {} of its {} pods)",
            node.requested.pods, node.allocatable.pods
        ),
        Reason::NodeUnschedulable => format!("uncordon the node (kubectl uncordon {})", node.name),
        Reason::UntoleratedTaint { key, value } => {
            let effect = node
                .taints()
                .iter()
                .find(|t| t.key == *key)
                .map_or("NoSchedule", |t| t.effect.as_str());
            format!(
                "tolerate the taint: {{key: {key}, operator: Equal, value: \"{value}\", effect: {effect}}}"
            )
        }
        Reason::NodeAffinityMismatch => {
            let mut wanted = String::new();
            let selector = pod.pod.spec.as_ref().and_then(|s| s.node_selector.as_ref());
            for (key, value) in selector.into_iter().flatten() {
                if node.label(key) != Some(value.as_str()) {
                    let _ = write!(wanted, " {key}={value}");
                }
            }
            if wanted.is_empty() {
                "label the node to match the pod's required node affinity".to_string()
            } else {
                format!("label the node:{wanted} (kubectl label node {}{wanted})", node.name)
            }
        }
        Reason::NodeNameMismatch => "the pod names another node in spec.nodeName".to_string(),
        Reason::PortsInUse => {
            let ports: Vec<String> = pod
                .host_ports
                .iter()
                .filter(|p| node.used_ports.iter().any(|u| p.conflicts(u)))
                .map(|p| format!("{}/{}", p.port, p.protocol))
                .collect();
            format!("free host port {} on the node", ports.join(", "))
        }
        Reason::PodAffinityMismatch => {
            "run a pod that the pod's required affinity selects in this node's domain".to_string()
        }
        Reason::PodAntiAffinityMismatch => {
            "move the pods that the pod's required anti-affinity selects out of this node's domain"
                .to_string()
        }
        Reason::ExistingPodsAntiAffinityMismatch => {
            "move the pods whose anti-affinity selects this pod out of this node's domain"
                .to_string()
        }
        Reason::TopologySpreadMismatch => {
            "place pods of the spread in less populated domains first, or raise maxSkew".to_string()
        }
        Reason::TopologySpreadMissingLabel => {
            "label the node with the spread's topology key".to_string()
        }
        Reason::NotInPreFilterResult(plugin) => format!("satisfy {plugin}"),
        Reason::ClaimNotFound(name) => format!("create the PersistentVolumeClaim {name:?}"),
        Reason::ClaimBeingDeleted(name) => {
            format!("let the PersistentVolumeClaim {name:?} go, and create it again")
        }
        Reason::UnboundImmediateClaims => {
            "create a PersistentVolume that the pod's unbound claims can bind".to_string()
        }
        Reason::VolumeNodeAffinityConflict => {
            "run the pod where its bound volumes are (their node affinity)".to_string()
        }
        Reason::NoVolumeToBind => format!(
            "create an available PersistentVolume that node {} can reach for each of the pod's claims",
            node.name
        ),
        Reason::BoundToMissingVolume => {
            "recreate the PersistentVolume the pod's claim is bound to".to_string()
        }
    }
}

/// An amount as a reader writes it: CPU in millicores or cores, bytes in Mi or Gi.
fn amount(resource: &str, value: i64) -> String {
    match resource {
        "cpu" if value % 1000 == 0 => format!("{}", value / 1000),
        "cpu" => format!("{value}m"),
        "memory" | "ephemeral-storage" if value % (1 << 30) == 0 && value != 0 => {
            format!("{}Gi", value >> 30)
        }
        "memory" | "ephemeral-storage" => format!("{}Mi", (value + (1 << 20) - 1) >> 20),
        _ => value.to_string(),
    }
}

/// The verdicts as a table, then the best node's changes.
pub fn render(pod: &str, verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    let fitting = verdicts.iter().filter(|v| v.refusals.is_empty()).count();
    let _ = writeln!(out, "Pod {pod}: fits {fitting} of {} nodes.", verdicts.len());
    let width = verdicts.iter().map(|v| v.node.len()).max().unwrap_or(4).max(4);
    let _ = writeln!(out, "{:width$}  {:18}  WHY", "NODE", "REFUSED BY");
    for verdict in verdicts {
        if verdict.refusals.is_empty() {
            let _ = writeln!(out, "{:width$}  {:18}  fits", verdict.node, "-");
            continue;
        }
        for (i, refusal) in verdict.refusals.iter().enumerate() {
            let node = if i == 0 { verdict.node.as_str() } else { "" };
            let reasons: Vec<String> = refusal.reasons.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "{node:width$}  {:18}  {}", refusal.plugin, reasons.join(", "));
        }
    }
    if fitting == 0
        && let Some(best) = verdicts.first()
    {
        let _ = writeln!(out, "\nSmallest change: on node {}:", best.node);
        for change in &best.changes {
            let _ = writeln!(out, "  - {change}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::framework::snapshot::ImageSpread;
    use crate::plugins::fixtures::{info, node, pod, requesting, sized};
    use crate::profile::Configuration;

    #[test]
    fn every_node_says_what_would_let_the_pod_fit() {
        let nodes = [
            sized("small", "1", "2Gi", &[requesting("500m", "1Gi")]),
            node(
                "gpu",
                serde_json::json!({
                "spec": {"taints": [{"key": "gpu", "value": "true", "effect": "NoSchedule"}]},
                "status": {"allocatable": {"cpu": "8", "memory": "8Gi", "pods": "110"}}}),
                &[],
            ),
        ];
        let images: HashMap<String, ImageSpread> = HashMap::new();
        let snapshot = Snapshot::new(nodes.iter().collect(), &images);
        let profile = Configuration::default().profiles().expect("profiles").remove(0);
        let large = info(requesting("2", "512Mi"));
        let verdicts = explain(&profile, &large, &snapshot);
        assert_eq!(verdicts.len(), 2);
        assert_eq!(verdicts[0].node, "gpu");
        assert_eq!(
            verdicts[0].changes,
            vec![
                "tolerate the taint: {key: gpu, operator: Equal, value: \"true\", effect: NoSchedule}"
            ]
        );
        assert_eq!(
            verdicts[1].changes,
            vec!["free 1500m of cpu (the pod asks 2, 500m is free of 1)"]
        );
        let text = render("default/p", &verdicts);
        assert!(text.starts_with("Pod default/p: fits 0 of 2 nodes."), "{text}");
        assert!(text.contains("Smallest change: on node gpu:"), "{text}");
        let labelled =
            info(pod(serde_json::json!({"containers": [], "nodeSelector": {"zone": "a"}})));
        let verdicts = explain(&profile, &labelled, &snapshot);
        assert!(
            verdicts[0].changes.iter().any(|c| c.contains("kubectl label node")),
            "{verdicts:?}"
        );
    }
}
