//! Profiles: which plugins run at which extension point, with which score weights, for pods
//! of one `schedulerName`. Read from upstream's `KubeSchedulerConfiguration`
//! (`kubescheduler.config.k8s.io/v1`, YAML or JSON) the way upstream merges it over the default
//! plugins: `multiPoint` first, then each point's own `enabled` and `disabled`.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Deserialize;

use crate::framework::{Plugin, Points};
use crate::plugins::{self, PluginError};

/// The scheduler name pods get by default.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// The configuration's API version.
pub const API_VERSION: &str = "kubescheduler.config.k8s.io/v1";

/// One profile: the plugins at each point, in order.
pub struct Profile {
    /// The `spec.schedulerName` of the pods it schedules.
    pub scheduler_name: String,
    /// PreFilter plugins.
    pub pre_filter: Vec<Arc<dyn Plugin>>,
    /// Filter plugins.
    pub filter: Vec<Arc<dyn Plugin>>,
    /// PreScore plugins.
    pub pre_score: Vec<Arc<dyn Plugin>>,
    /// Score plugins with their weights.
    pub score: Vec<(Arc<dyn Plugin>, i64)>,
    /// Reserve plugins.
    pub reserve: Vec<Arc<dyn Plugin>>,
    /// Permit plugins.
    pub permit: Vec<Arc<dyn Plugin>>,
    /// PreBind plugins.
    pub pre_bind: Vec<Arc<dyn Plugin>>,
    /// Bind plugins, tried in order until one binds (at least one).
    pub bind: Vec<Arc<dyn Plugin>>,
    /// The share of nodes to find feasible before scoring (0: upstream's adaptive share).
    pub percentage_of_nodes_to_score: u32,
    /// Whether DefaultPreemption runs when no node fits.
    pub preemption: bool,
}

impl Profile {
    /// Every plugin of the profile, once.
    pub fn plugins(&self) -> Vec<&Arc<dyn Plugin>> {
        let mut seen = BTreeSet::new();
        self.pre_filter
            .iter()
            .chain(&self.filter)
            .chain(&self.pre_score)
            .chain(self.score.iter().map(|(p, _)| p))
            .chain(&self.reserve)
            .chain(&self.permit)
            .chain(&self.pre_bind)
            .chain(&self.bind)
            .filter(|p| seen.insert(p.name()))
            .collect()
    }
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |list: &[Arc<dyn Plugin>]| list.iter().map(|p| p.name()).collect::<Vec<_>>();
        f.debug_struct("Profile")
            .field("scheduler_name", &self.scheduler_name)
            .field("filter", &names(&self.filter))
            .field("score", &self.score.iter().map(|(p, w)| (p.name(), *w)).collect::<Vec<_>>())
            .finish()
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It does not parse.
    #[error("cannot parse the scheduler configuration: {0}")]
    Parse(String),
    /// It is not a `KubeSchedulerConfiguration` of a version this scheduler reads.
    #[error(
        "the scheduler configuration must be apiVersion {API_VERSION}, kind KubeSchedulerConfiguration"
    )]
    Kind,
    /// A profile has no Bind plugin.
    #[error("profile {0:?}: at least one bind plugin is needed")]
    NoBinder(String),
    /// Two profiles share a scheduler name.
    #[error("duplicate profile for schedulerName {0:?}")]
    DuplicateProfile(String),
    /// A percentage is out of range.
    #[error("percentageOfNodesToScore must be in 0..=100")]
    Percentage,
    /// A plugin cannot be built.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// The scheduler's configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Configuration {
    api_version: Option<String>,
    kind: Option<String>,
    percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    profiles: Vec<ProfileConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileConfig {
    scheduler_name: Option<String>,
    percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    plugins: PluginsConfig,
    #[serde(default)]
    plugin_config: Vec<PluginArgs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PluginsConfig {
    #[serde(default)]
    multi_point: PluginSet,
    #[serde(default)]
    pre_filter: PluginSet,
    #[serde(default)]
    filter: PluginSet,
    #[serde(default)]
    post_filter: PluginSet,
    #[serde(default)]
    pre_score: PluginSet,
    #[serde(default)]
    score: PluginSet,
    #[serde(default)]
    reserve: PluginSet,
    #[serde(default)]
    permit: PluginSet,
    #[serde(default)]
    pre_bind: PluginSet,
    #[serde(default)]
    bind: PluginSet,
}

#[derive(Debug, Default, Deserialize)]
struct PluginSet {
    #[serde(default)]
    enabled: Vec<PluginRef>,
    #[serde(default)]
    disabled: Vec<PluginRef>,
}

impl PluginSet {
    fn disables(&self, name: &str) -> bool {
        self.disabled.iter().any(|p| p.name == "*" || p.name == name)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct PluginRef {
    name: String,
    #[serde(default)]
    weight: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct PluginArgs {
    name: String,
    args: Option<serde_json::Value>,
}

impl Configuration {
    /// Parses a configuration file's text (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let config: Configuration =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let version_ok = config.api_version.as_deref().is_none_or(|v| v == API_VERSION);
        let kind_ok = config.kind.as_deref().is_none_or(|k| k == "KubeSchedulerConfiguration");
        if !version_ok || !kind_ok {
            return Err(ConfigError::Kind);
        }
        Ok(config)
    }

    /// The profiles it describes (one default profile when it lists none).
    pub fn profiles(&self) -> Result<Vec<Profile>, ConfigError> {
        let default = [ProfileConfig::default()];
        let configs = if self.profiles.is_empty() { &default[..] } else { &self.profiles[..] };
        let mut names = BTreeSet::new();
        let mut profiles = Vec::new();
        for config in configs {
            let name = config.scheduler_name.clone().unwrap_or_else(|| DEFAULT_SCHEDULER.into());
            if !names.insert(name.clone()) {
                return Err(ConfigError::DuplicateProfile(name));
            }
            let percentage = config
                .percentage_of_nodes_to_score
                .or(self.percentage_of_nodes_to_score)
                .unwrap_or(0);
            if percentage > 100 {
                return Err(ConfigError::Percentage);
            }
            profiles.push(build(name, config, percentage)?);
        }
        Ok(profiles)
    }
}

/// Plugins with their score weights.
type Weighted = Vec<(Arc<dyn Plugin>, i64)>;

/// The plugins of one profile: the defaults less `multiPoint.disabled`, plus
/// `multiPoint.enabled`, each at the points it implements unless that point disables it, then
/// each point's own `enabled`.
fn build(name: String, config: &ProfileConfig, percentage: u32) -> Result<Profile, ConfigError> {
    let plugins_config = &config.plugins;
    let mut multi_point: Vec<PluginRef> = plugins::DEFAULT
        .iter()
        .filter(|(n, _)| !plugins_config.multi_point.disables(n))
        .map(|(n, w)| PluginRef { name: n.to_string(), weight: Some(*w) })
        .collect();
    for enabled in &plugins_config.multi_point.enabled {
        match multi_point.iter_mut().find(|p| p.name == enabled.name) {
            Some(existing) => existing.weight = enabled.weight.or(existing.weight),
            None => multi_point.push(enabled.clone()),
        }
    }
    let mut built: Vec<Arc<dyn Plugin>> = Vec::new();
    let mut instance = |plugin: &str| -> Result<Arc<dyn Plugin>, ConfigError> {
        if let Some(found) = built.iter().find(|p| p.name() == plugin) {
            return Ok(Arc::clone(found));
        }
        let args =
            config.plugin_config.iter().find(|a| a.name == plugin).and_then(|a| a.args.as_ref());
        let made = plugins::build(plugin, args)?;
        built.push(Arc::clone(&made));
        Ok(made)
    };
    let mut at = |point: Points, set: &PluginSet| -> Result<Weighted, ConfigError> {
        let mut list: Weighted = Vec::new();
        for entry in &multi_point {
            if set.disables(&entry.name) || plugins::BUILT_IN.contains(&entry.name.as_str()) {
                continue;
            }
            let plugin = instance(&entry.name)?;
            if plugin.points().contains(point) {
                list.push((plugin, entry.weight.unwrap_or(0)));
            }
        }
        for entry in set.enabled.iter().filter(|e| !plugins::BUILT_IN.contains(&e.name.as_str())) {
            let plugin = instance(&entry.name)?;
            match list.iter_mut().find(|(p, _)| p.name() == entry.name) {
                Some((_, weight)) => *weight = entry.weight.unwrap_or(*weight),
                None => list.push((plugin, entry.weight.unwrap_or(0))),
            }
        }
        Ok(list)
    };
    let plain = |list: Weighted| list.into_iter().map(|(p, _)| p).collect::<Vec<_>>();
    let bind = plain(at(Points::BIND, &plugins_config.bind)?);
    if bind.is_empty() {
        return Err(ConfigError::NoBinder(name));
    }
    Ok(Profile {
        reserve: plain(at(Points::RESERVE, &plugins_config.reserve)?),
        permit: plain(at(Points::PERMIT, &plugins_config.permit)?),
        pre_bind: plain(at(Points::PRE_BIND, &plugins_config.pre_bind)?),
        bind,
        scheduler_name: name,
        pre_filter: plain(at(Points::PRE_FILTER, &plugins_config.pre_filter)?),
        filter: plain(at(Points::FILTER, &plugins_config.filter)?),
        pre_score: plain(at(Points::PRE_SCORE, &plugins_config.pre_score)?),
        score: at(Points::SCORE, &plugins_config.score)?
            .into_iter()
            .map(|(p, w)| (p, if w <= 0 { 1 } else { w }))
            .collect(),
        percentage_of_nodes_to_score: percentage,
        preemption: {
            let named =
                |set: &PluginSet| set.enabled.iter().any(|p| p.name == crate::preemption::NAME);
            named(&plugins_config.post_filter)
                || named(&plugins_config.multi_point)
                || !(plugins_config.multi_point.disables(crate::preemption::NAME)
                    || plugins_config.post_filter.disables(crate::preemption::NAME))
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[Arc<dyn Plugin>]) -> Vec<&'static str> {
        list.iter().map(|p| p.name()).collect()
    }

    #[test]
    fn the_default_profile() {
        let profiles = Configuration::default().profiles().expect("profiles");
        let [profile] = &profiles[..] else { panic!("one profile") };
        assert_eq!(profile.scheduler_name, DEFAULT_SCHEDULER);
        assert_eq!(
            names(&profile.filter),
            vec![
                "NodeUnschedulable",
                "NodeName",
                "TaintToleration",
                "NodeAffinity",
                "NodePorts",
                "NodeResourcesFit",
                "VolumeBinding",
                "PodTopologySpread",
                "InterPodAffinity"
            ]
        );
        let weights: Vec<_> = profile.score.iter().map(|(p, w)| (p.name(), *w)).collect();
        assert_eq!(
            weights,
            vec![
                ("TaintToleration", 3),
                ("NodeAffinity", 2),
                ("NodeResourcesFit", 1),
                ("PodTopologySpread", 2),
                ("InterPodAffinity", 2),
                ("NodeResourcesBalancedAllocation", 1),
                ("ImageLocality", 1)
            ]
        );
        assert_eq!(names(&profile.bind), vec!["DefaultBinder"]);
        assert_eq!(names(&profile.reserve), vec!["VolumeBinding"]);
        assert_eq!(names(&profile.pre_bind), vec!["VolumeBinding"]);
        assert!(profile.permit.is_empty());
    }

    #[test]
    fn volume_binding_is_turned_off_by_a_profile() {
        let text = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- plugins:
    multiPoint:
      disabled: [{name: VolumeBinding}]
"#;
        let profiles = Configuration::parse(text).expect("parses").profiles().expect("profiles");
        let profile = &profiles[0];
        assert!(!names(&profile.filter).contains(&"VolumeBinding"));
        assert!(profile.reserve.is_empty() && profile.pre_bind.is_empty());
    }

    #[test]
    fn volume_binding_named_again_by_a_profile_is_there_once() {
        let text = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- plugins:
    multiPoint:
      enabled: [{name: VolumeBinding}]
"#;
        let profiles = Configuration::parse(text).expect("parses").profiles().expect("profiles");
        let profile = &profiles[0];
        assert_eq!(names(&profile.filter).iter().filter(|n| **n == "VolumeBinding").count(), 1);
        assert!(names(&profile.pre_filter).contains(&"VolumeBinding"));
        assert_eq!(names(&profile.reserve), vec!["VolumeBinding"]);
        assert_eq!(names(&profile.pre_bind), vec!["VolumeBinding"]);
    }

    #[test]
    fn a_profile_needs_a_binder() {
        let text = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: nobind
  plugins:
    bind:
      disabled: [{name: "*"}]
"#;
        let config = Configuration::parse(text).expect("parses");
        let error = config.profiles().expect_err("no binder");
        assert_eq!(error.to_string(), "profile \"nobind\": at least one bind plugin is needed");
    }

    #[test]
    fn profiles_merge_over_the_defaults() {
        let text = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
- schedulerName: packer
  plugins:
    postFilter:
      disabled:
      - name: DefaultPreemption
    score:
      disabled:
      - name: "*"
      enabled:
      - name: NodeResourcesFit
        weight: 5
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
"#;
        let profiles = Configuration::parse(text).expect("parses").profiles().expect("profiles");
        assert_eq!(profiles.len(), 2);
        let packer = &profiles[1];
        assert_eq!(packer.scheduler_name, "packer");
        let weights: Vec<_> = packer.score.iter().map(|(p, w)| (p.name(), *w)).collect();
        assert_eq!(weights, vec![("NodeResourcesFit", 5)]);
        assert_eq!(packer.filter.len(), 9);
        assert!(!packer.preemption);
        assert!(profiles[0].preemption);
    }

    #[test]
    fn bad_configurations_are_refused() {
        let cases = [
            ("kind: Pod", "KubeSchedulerConfiguration"),
            ("profiles: [{schedulerName: a}, {schedulerName: a}]", "duplicate profile"),
            (
                "profiles: [{plugins: {filter: {enabled: [{name: Nope}]}}}]",
                "no plugin named \"Nope\"",
            ),
            ("percentageOfNodesToScore: 101", "percentageOfNodesToScore"),
            (
                "profiles: [{pluginConfig: [{name: NodeResourcesFit, args: {scoringStrategy: {type: Weird}}}]}]",
                "unknown scoring strategy",
            ),
            ("profiles: [[", "cannot parse"),
        ];
        for (text, want) in cases {
            let error =
                Configuration::parse(text).and_then(|c| c.profiles()).expect_err(text).to_string();
            assert!(error.contains(want), "{text}: {error}");
        }
    }
}
