//! Which nodes a simulator registers: groups of alike nodes, from flags or from a file
//! (`groups:` of `{prefix, count, cpu, memory, pods, labels, taints}`, YAML or JSON), each
//! group's nodes named `<prefix>-<i>`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use serde::Deserialize;

/// The topology label zones are spread over.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// The topology label of the region.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// Why a simulator's node list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The file does not parse.
    #[error("cannot parse the node groups: {0}")]
    Parse(String),
    /// A taint is not `key[=value]:Effect`.
    #[error("invalid taint {0:?}: want key[=value]:NoSchedule|PreferNoSchedule|NoExecute")]
    Taint(String),
    /// A label is not `key=value`.
    #[error("invalid label {0:?}: want key=value")]
    Label(String),
    /// A quantity does not parse.
    #[error("invalid {what} {value:?}")]
    Quantity {
        /// Which field.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// Two nodes would have the same name.
    #[error("node {0} appears twice")]
    Duplicate(String),
}

/// A group of alike nodes.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Group {
    /// Names are `<prefix>-<i>`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How many nodes.
    pub count: usize,
    /// CPU of each (a quantity).
    #[serde(default = "default_cpu")]
    pub cpu: String,
    /// Memory of each (a quantity).
    #[serde(default = "default_memory")]
    pub memory: String,
    /// Pods each takes.
    #[serde(default = "default_pods")]
    pub pods: u32,
    /// Labels on each, besides the well-known ones.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Taints on each, as `key[=value]:Effect`.
    #[serde(default)]
    pub taints: Vec<String>,
    /// Zones the group's nodes are spread over round robin (`zone-0`, `zone-1`, ...); none
    /// when 0 or when the labels name a zone.
    #[serde(default)]
    pub zones: usize,
}

fn default_prefix() -> String {
    "sim".to_string()
}
fn default_cpu() -> String {
    "4".to_string()
}
fn default_memory() -> String {
    "16Gi".to_string()
}
fn default_pods() -> u32 {
    110
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    groups: Vec<Group>,
}

/// One simulated node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// Its name.
    pub name: String,
    /// Its place among the simulator's nodes (its addresses derive from it).
    pub index: usize,
    /// CPU.
    pub cpu: String,
    /// Memory.
    pub memory: String,
    /// Pods.
    pub pods: u32,
    /// Labels besides the well-known ones.
    pub labels: BTreeMap<String, String>,
    /// Taints.
    pub taints: Vec<Taint>,
}

/// Parses a groups file.
pub fn parse_file(text: &str) -> Result<Vec<Group>, GroupError> {
    let file: File = serde_saphyr::from_str(text).map_err(|e| GroupError::Parse(e.to_string()))?;
    Ok(file.groups)
}

/// Parses `key[=value]:Effect`.
pub fn parse_taint(text: &str) -> Result<Taint, GroupError> {
    let invalid = || GroupError::Taint(text.to_string());
    let (pair, effect) = text.rsplit_once(':').ok_or_else(invalid)?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(invalid());
    }
    let (key, value) = match pair.split_once('=') {
        Some((key, value)) => (key, Some(value.to_string())),
        None => (pair, None),
    };
    if key.is_empty() {
        return Err(invalid());
    }
    Ok(Taint { key: key.to_string(), value, effect: effect.to_string(), time_added: None })
}

/// Parses `key=value`.
pub fn parse_label(text: &str) -> Result<(String, String), GroupError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(GroupError::Label(text.to_string())),
    }
}

/// The nodes of `groups`, in order, with zones spread and names checked.
pub fn nodes(groups: &[Group]) -> Result<Vec<NodeSpec>, GroupError> {
    let mut nodes = Vec::new();
    let mut names = std::collections::HashSet::new();
    for group in groups {
        for (what, value) in [("cpu", &group.cpu), ("memory", &group.memory)] {
            if krust_api::quantity::Amount::parse(value).is_err() {
                return Err(GroupError::Quantity { what, value: value.clone() });
            }
        }
        let taints = group.taints.iter().map(|t| parse_taint(t)).collect::<Result<Vec<_>, _>>()?;
        for i in 0..group.count {
            let name = format!("{}-{i}", group.prefix);
            if !names.insert(name.clone()) {
                return Err(GroupError::Duplicate(name));
            }
            let mut labels = group.labels.clone();
            if group.zones > 0 && !labels.contains_key(ZONE_LABEL) {
                labels.insert(ZONE_LABEL.to_string(), format!("zone-{}", i % group.zones));
                labels.entry(REGION_LABEL.to_string()).or_insert_with(|| "region-0".to_string());
            }
            nodes.push(NodeSpec {
                name,
                index: nodes.len(),
                cpu: group.cpu.clone(),
                memory: group.memory.clone(),
                pods: group.pods,
                labels,
                taints: taints.clone(),
            });
        }
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_and_labels_parse() {
        let taint = parse_taint("gpu=true:NoSchedule").expect("a taint");
        assert_eq!(
            (taint.key.as_str(), taint.value.as_deref(), taint.effect.as_str()),
            ("gpu", Some("true"), "NoSchedule")
        );
        let bare = parse_taint("dedicated:NoExecute").expect("a taint");
        assert_eq!(bare.value, None);
        for bad in ["gpu=true", "gpu=true:Sometimes", ":NoSchedule"] {
            assert!(parse_taint(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_label("a=b").expect("a label"), ("a".into(), "b".into()));
        assert!(parse_label("ab").is_err());
    }

    #[test]
    fn groups_become_nodes() {
        let text = r#"
groups:
- prefix: big
  count: 1
  cpu: "8"
  labels: {size: big}
- prefix: small
  count: 3
  cpu: "2"
  memory: 4Gi
  zones: 2
  taints: ["gpu=true:NoSchedule"]
"#;
        let nodes = nodes(&parse_file(text).expect("parses")).expect("nodes");
        let names: Vec<_> = nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, vec!["big-0", "small-0", "small-1", "small-2"]);
        assert_eq!(nodes[0].memory, "16Gi");
        assert_eq!(nodes[3].labels.get(ZONE_LABEL).map(String::as_str), Some("zone-0"));
        assert_eq!(nodes[2].labels.get(ZONE_LABEL).map(String::as_str), Some("zone-1"));
        assert_eq!(nodes[1].taints.len(), 1);
        assert_eq!(nodes[3].index, 3);
    }

    #[test]
    fn bad_files_are_refused() {
        let cases = [
            ("groups: [{count: 1, cpu: lots}]", "invalid cpu"),
            ("groups: [{count: 1, taints: [oops]}]", "invalid taint"),
            ("groups: [{count: 1}, {count: 1}]", "appears twice"),
            ("groups: [{count: 1, colour: red}]", "cannot parse"),
            ("nodes: 3", "cannot parse"),
        ];
        for (text, want) in cases {
            let error = parse_file(text).and_then(|g| nodes(&g)).expect_err(text).to_string();
            assert!(error.contains(want), "{text}: {error}");
        }
    }
}
