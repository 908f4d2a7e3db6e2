//! The in-tree plugins, one module each, and the registry that builds them by name with their
//! arguments from a profile's `pluginConfig`.

pub mod default_binder;
#[cfg(test)]
pub mod fixtures;
pub mod image_locality;
pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources_fit;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod taint_toleration;
pub mod volume_binding;

use std::sync::Arc;

use serde::Deserialize;

use crate::framework::Plugin;
use node_resources_fit::{NodeResourcesFit, ShapePoint, Strategy, WeightedResource};

/// Upstream's default plugins (its `multiPoint` set) in order, with their score weights, for
/// those this scheduler has. Queue sorting and scheduling gates are the queue's own.
///
/// VolumeBinding sits where upstream puts it, after NodeResourcesFit: the binder
/// (`persistent-volume-binder`) and the local-path provisioner complete what its PreBind
/// asks for. A pod without claims passes its PreFilter at once and no later point of it does
/// anything for that pod.
pub const DEFAULT: &[(&str, i64)] = &[
    (node_unschedulable::NAME, 0),
    (node_name::NAME, 0),
    (taint_toleration::NAME, 3),
    (node_affinity::NAME, 2),
    (node_ports::NAME, 0),
    (node_resources_fit::NAME, 1),
    (volume_binding::NAME, 0),
    (pod_topology_spread::NAME, 2),
    (inter_pod_affinity::NAME, 2),
    (node_resources_fit::BALANCED_NAME, 1),
    (image_locality::NAME, 1),
    (default_binder::NAME, 0),
];

/// Upstream plugins whose work is done outside the plugin lists here: the queue sorts by
/// priority and holds gated pods, and preemption runs as the profile's PostFilter. Profiles
/// may name them; they are not built as plugins.
pub const BUILT_IN: &[&str] = &["PrioritySort", "SchedulingGates", crate::preemption::NAME];

/// Why a plugin could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No plugin has that name.
    #[error("no plugin named {0:?}")]
    Unknown(String),
    /// The plugin's arguments do not parse.
    #[error("invalid args for plugin {plugin}: {message}")]
    Args {
        /// The plugin.
        plugin: String,
        /// What is wrong.
        message: String,
    },
}

/// `NodeResourcesFitArgs`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FitArgs {
    scoring_strategy: Option<ScoringStrategy>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScoringStrategy {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    resources: Option<Vec<WeightedResource>>,
    requested_to_capacity_ratio: Option<RatioArgs>,
}

/// `PodTopologySpreadArgs`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpreadArgs {
    #[serde(default)]
    default_constraints: Vec<k8s_openapi::api::core::v1::TopologySpreadConstraint>,
    defaulting_type: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RatioArgs {
    shape: Vec<ShapePoint>,
}

/// Builds the plugin `name` with `args` (the `args` of its `pluginConfig` entry, if any).
pub fn build(name: &str, args: Option<&serde_json::Value>) -> Result<Arc<dyn Plugin>, PluginError> {
    let invalid = |message: String| PluginError::Args { plugin: name.to_string(), message };
    Ok(match name {
        node_unschedulable::NAME => Arc::new(node_unschedulable::NodeUnschedulable),
        node_name::NAME => Arc::new(node_name::NodeName),
        taint_toleration::NAME => Arc::new(taint_toleration::TaintToleration),
        node_affinity::NAME => Arc::new(node_affinity::NodeAffinity),
        node_ports::NAME => Arc::new(node_ports::NodePorts),
        node_resources_fit::BALANCED_NAME => {
            Arc::new(node_resources_fit::BalancedAllocation::default())
        }
        image_locality::NAME => Arc::new(image_locality::ImageLocality),
        default_binder::NAME => Arc::new(default_binder::DefaultBinder),
        volume_binding::NAME => Arc::new(volume_binding::VolumeBinding::default()),
        pod_topology_spread::NAME => {
            let args: SpreadArgs = match args {
                Some(value) => {
                    serde_json::from_value(value.clone()).map_err(|e| invalid(e.to_string()))?
                }
                None => SpreadArgs::default(),
            };
            match args.defaulting_type.as_deref().unwrap_or("System") {
                "System" if args.default_constraints.is_empty() => {
                    Arc::new(pod_topology_spread::PodTopologySpread::default())
                }
                "System" => {
                    return Err(invalid(
                        "when .defaultingType is \"System\", .defaultConstraints must be empty"
                            .into(),
                    ));
                }
                "List" => {
                    for c in &args.default_constraints {
                        if c.label_selector.is_some() {
                            return Err(invalid(
                                "default constraints must not define a selector, as they are deduced for each pod".into(),
                            ));
                        }
                        if c.max_skew <= 0 || c.topology_key.is_empty() {
                            return Err(invalid(
                                "default constraints need maxSkew above 0 and a topologyKey".into(),
                            ));
                        }
                        if !matches!(
                            c.when_unsatisfiable.as_str(),
                            "DoNotSchedule" | "ScheduleAnyway"
                        ) {
                            return Err(invalid(format!(
                                "unsupported whenUnsatisfiable {:?}",
                                c.when_unsatisfiable
                            )));
                        }
                    }
                    Arc::new(pod_topology_spread::PodTopologySpread::with_defaults(
                        args.default_constraints,
                    ))
                }
                other => return Err(invalid(format!("unknown defaultingType {other:?}"))),
            }
        }
        inter_pod_affinity::NAME => Arc::new(inter_pod_affinity::InterPodAffinity),
        node_resources_fit::NAME => {
            let args: FitArgs = match args {
                Some(value) => {
                    serde_json::from_value(value.clone()).map_err(|e| invalid(e.to_string()))?
                }
                None => FitArgs::default(),
            };
            let Some(scoring) = args.scoring_strategy else {
                return Ok(Arc::new(NodeResourcesFit::default()));
            };
            let resources = scoring.resources.unwrap_or_else(node_resources_fit::default_resources);
            if resources.iter().any(|r| r.weight <= 0 || r.weight > 100) {
                return Err(invalid("resource weights must be in 1..=100".to_string()));
            }
            let strategy = match scoring.kind.as_deref().unwrap_or("LeastAllocated") {
                "LeastAllocated" => Strategy::LeastAllocated,
                "MostAllocated" => Strategy::MostAllocated,
                "RequestedToCapacityRatio" => {
                    let shape = scoring
                        .requested_to_capacity_ratio
                        .map(|r| r.shape)
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| {
                            invalid("requestedToCapacityRatio.shape is required".into())
                        })?;
                    let increasing = shape.windows(2).all(|w| w[0].utilization < w[1].utilization);
                    let in_range = shape
                        .iter()
                        .all(|p| (0..=100).contains(&p.utilization) && (0..=10).contains(&p.score));
                    if !increasing || !in_range {
                        return Err(invalid(
                            "shape points need increasing utilization in 0..=100 and scores in 0..=10"
                                .into(),
                        ));
                    }
                    Strategy::RequestedToCapacityRatio(shape)
                }
                other => return Err(invalid(format!("unknown scoring strategy type {other:?}"))),
            };
            Arc::new(NodeResourcesFit::new(strategy, resources))
        }
        other => return Err(PluginError::Unknown(other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_args_are_checked_as_upstream_checks_them() {
        let list = serde_json::json!({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]});
        assert!(build(pod_topology_spread::NAME, Some(&list)).is_ok());
        let system_with_list = serde_json::json!({"defaultingType": "System",
            "defaultConstraints": list["defaultConstraints"].clone()});
        let error = build(pod_topology_spread::NAME, Some(&system_with_list)).err();
        assert!(error.is_some_and(|e| e.to_string().contains("must be empty")));
        let with_selector = serde_json::json!({"defaultingType": "List", "defaultConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": {"a": "b"}}}]});
        assert!(build(pod_topology_spread::NAME, Some(&with_selector)).is_err());
    }
}
