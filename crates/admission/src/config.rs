//! The plugins' configuration file, upstream's `AdmissionConfiguration`
//! (`apiserver.config.k8s.io/v1`, or `apiserver.k8s.io/v1alpha1`), which
//! `--admission-control-config-file` names: a list of `plugins`, each a `name` with its
//! configuration embedded (`configuration`) or in a file of its own (`path`, relative to the
//! configuration file's folder).
//!
//! As upstream's `ReadAdmissionConfiguration` and `ConfigFor`: a plugin's configuration is the
//! first entry naming it (`configuration` wins over `path`; neither is the plugin's default);
//! a plugin reads it only when it is enabled, so an entry for a disabled plugin, or for one
//! that takes no configuration, is never read. Only PodSecurity takes one here
//! ([`CONFIGURABLE`]); an entry for any other plugin is ignored, which the binary says in its
//! log (upstream would hand it to the plugin). Unlike upstream, which decodes this file
//! leniently and accepts the legacy unversioned formats of `ImagePolicyWebhook` and
//! `PodNodeSelector`, an unknown field, a missing `apiVersion` or `kind`, or an entry without a
//! `name` is refused.
//!
//! Pure: the binary reads the files and hands their text here.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::pod_security;

/// The API versions the file may have (upstream's scheme registers the type in both).
pub const API_VERSIONS: &[&str] = &["apiserver.config.k8s.io/v1", "apiserver.k8s.io/v1alpha1"];

/// The file's kind.
pub const KIND: &str = "AdmissionConfiguration";

/// The plugins whose configuration krust reads.
pub const CONFIGURABLE: &[&str] = &[pod_security::NAME];

/// Why an admission configuration cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not YAML or JSON, or not of the file's shape (an unknown field, an entry
    /// without a name).
    #[error("{0}")]
    Decode(String),
    /// `apiVersion` is missing.
    #[error("apiVersion is missing: want apiserver.config.k8s.io/v1")]
    MissingApiVersion,
    /// `apiVersion` is not one of [`API_VERSIONS`].
    #[error("apiVersion {0:?} is not apiserver.config.k8s.io/v1 or apiserver.k8s.io/v1alpha1")]
    ApiVersion(String),
    /// `kind` is missing.
    #[error("kind is missing: want {KIND}")]
    MissingKind,
    /// `kind` is not [`KIND`].
    #[error("kind {0:?} is not {KIND}")]
    Kind(String),
    /// PodSecurity's configuration cannot be used.
    #[error("plugin PodSecurity")]
    PodSecurity(#[from] pod_security::ConfigError),
}

/// The file, as written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AdmissionConfiguration {
    /// The plugin entries, in the file's order.
    pub plugins: Vec<PluginEntry>,
}

/// One plugin's entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginEntry {
    /// The plugin's name (upstream's, such as `PodSecurity`).
    pub name: String,
    /// The file holding its configuration, relative to the configuration file's folder unless
    /// absolute.
    #[serde(default)]
    pub path: Option<String>,
    /// Its configuration, embedded (wins over `path`).
    #[serde(default)]
    pub configuration: Option<Value>,
}

/// Where a plugin's configuration is.
#[derive(Debug, Clone, PartialEq)]
pub enum Source<'a> {
    /// Embedded in its entry.
    Embedded(&'a Value),
    /// In this file (resolved against the configuration file's folder).
    File(PathBuf),
}

/// The configuration's text or object, as [`PluginConfigs::set`] reads it.
#[derive(Debug, Clone, Copy)]
pub enum Raw<'a> {
    /// An entry's embedded object.
    Embedded(&'a Value),
    /// The text of an entry's file (YAML or JSON; empty: the plugin's defaults).
    Text(&'a str),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "apiVersion")]
    _api_version: Option<String>,
    #[serde(rename = "kind")]
    _kind: Option<String>,
    #[serde(default)]
    plugins: Option<Vec<PluginEntry>>,
}

impl AdmissionConfiguration {
    /// The file's text (YAML or JSON).
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let value: Value =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Decode(e.to_string()))?;
        let meta = TypeMeta::deserialize(&value).map_err(|e| ConfigError::Decode(e.to_string()))?;
        let Some(api_version) = meta.api_version.filter(|v| !v.is_empty()) else {
            return Err(ConfigError::MissingApiVersion);
        };
        if !API_VERSIONS.contains(&api_version.as_str()) {
            return Err(ConfigError::ApiVersion(api_version));
        }
        match meta.kind.filter(|k| !k.is_empty()) {
            None => return Err(ConfigError::MissingKind),
            Some(kind) if kind != KIND => return Err(ConfigError::Kind(kind)),
            Some(_) => {}
        }
        let file = File::deserialize(&value).map_err(|e| ConfigError::Decode(e.to_string()))?;
        Ok(Self { plugins: file.plugins.unwrap_or_default() })
    }

    /// Upstream's `ConfigFor`: where `plugin`'s configuration is, from the first entry naming
    /// it; `None` when no entry names it or that entry has neither `configuration` nor `path`.
    /// `folder` is the configuration file's, which a relative `path` is resolved against.
    pub fn source(&self, plugin: &str, folder: &Path) -> Option<Source<'_>> {
        let entry = self.plugins.iter().find(|e| e.name == plugin)?;
        if let Some(value) = entry.configuration.as_ref().filter(|v| !v.is_null()) {
            return Some(Source::Embedded(value));
        }
        let path = entry.path.as_deref().filter(|p| !p.is_empty())?;
        Some(Source::File(folder.join(path)))
    }

    /// The entries krust does not read: those naming a plugin outside [`CONFIGURABLE`] (the
    /// binary logs them).
    pub fn ignored(&self) -> impl Iterator<Item = &PluginEntry> {
        self.plugins.iter().filter(|e| !CONFIGURABLE.contains(&e.name.as_str()))
    }
}

/// The configurations of the plugins that take one, as [`crate::build`] hands them out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginConfigs {
    /// PodSecurity's defaults and exemptions.
    pub pod_security: pod_security::Configuration,
}

impl PluginConfigs {
    /// Sets `plugin`'s configuration from `raw`; a plugin outside [`CONFIGURABLE`] is left as
    /// it is.
    pub fn set(&mut self, plugin: &str, raw: Raw<'_>) -> Result<(), ConfigError> {
        if plugin == pod_security::NAME {
            self.pod_security = match raw {
                Raw::Embedded(value) => pod_security::Configuration::from_value(value)?,
                Raw::Text(text) => pod_security::Configuration::parse(text)?,
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::pod_security::{Level, LevelVersion, Policy, Version};

    const PSA: &str = "apiVersion: pod-security.admission.config.k8s.io/v1\n\
                       kind: PodSecurityConfiguration\n";

    #[test]
    fn entries_are_read_in_both_versions_and_yaml_or_json() {
        for version in API_VERSIONS {
            let yaml = format!(
                "apiVersion: {version}\nkind: AdmissionConfiguration\nplugins:\n\
                 - name: PodSecurity\n  configuration:\n    \
                 apiVersion: pod-security.admission.config.k8s.io/v1\n    \
                 kind: PodSecurityConfiguration\n    defaults:\n      enforce: restricted\n\
                 - name: EventRateLimit\n  path: limits.yaml\n"
            );
            let config = AdmissionConfiguration::parse(&yaml).unwrap();
            assert_eq!(config.plugins.len(), 2, "{version}");
            let Some(Source::Embedded(value)) = config.source("PodSecurity", Path::new("/etc"))
            else {
                panic!("{version}: no embedded PodSecurity configuration");
            };
            assert_eq!(value["defaults"]["enforce"], "restricted");
            let names: Vec<&str> = config.ignored().map(|e| e.name.as_str()).collect();
            assert_eq!(names, ["EventRateLimit"]);
        }
        let json = json!({"apiVersion": "apiserver.config.k8s.io/v1",
            "kind": "AdmissionConfiguration", "plugins": [{"name": "PodSecurity", "path": "psa.yaml"}]});
        let config = AdmissionConfiguration::parse(&json.to_string()).unwrap();
        assert_eq!(
            config.source("PodSecurity", Path::new("/etc/krust")),
            Some(Source::File(PathBuf::from("/etc/krust/psa.yaml")))
        );
    }

    #[test]
    fn the_first_entry_wins_and_embedded_wins_over_path() {
        let text = "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\n\
                    plugins:\n- name: PodSecurity\n  path: /abs/first.yaml\n\
                    - name: PodSecurity\n  path: second.yaml\n\
                    - name: Other\n  path: o.yaml\n  configuration: {a: 1}\n\
                    - name: Bare\n";
        let config = AdmissionConfiguration::parse(text).unwrap();
        let folder = Path::new("/etc");
        assert_eq!(
            config.source("PodSecurity", folder),
            Some(Source::File(PathBuf::from("/abs/first.yaml")))
        );
        assert_eq!(config.source("Other", folder), Some(Source::Embedded(&json!({"a": 1}))));
        assert_eq!(config.source("Bare", folder), None);
        assert_eq!(config.source("Missing", folder), None);
        // A configuration file named without a folder: paths stay relative (to the working
        // directory), as upstream's.
        let relative = AdmissionConfiguration {
            plugins: vec![PluginEntry {
                name: "PodSecurity".into(),
                path: Some("psa.yaml".into()),
                configuration: None,
            }],
        };
        assert_eq!(
            relative.source("PodSecurity", Path::new("")),
            Some(Source::File(PathBuf::from("psa.yaml")))
        );
    }

    #[test]
    fn files_of_another_type_or_shape_are_refused() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "no apiVersion",
                "kind: AdmissionConfiguration\nplugins: []\n",
                "apiVersion is missing: want apiserver.config.k8s.io/v1",
            ),
            (
                "an unknown apiVersion",
                "apiVersion: apiserver.config.k8s.io/v2\nkind: AdmissionConfiguration\n",
                r#"apiVersion "apiserver.config.k8s.io/v2" is not apiserver.config.k8s.io/v1 or apiserver.k8s.io/v1alpha1"#,
            ),
            (
                "another kind",
                "apiVersion: apiserver.config.k8s.io/v1\nkind: PodSecurityConfiguration\n",
                r#"kind "PodSecurityConfiguration" is not AdmissionConfiguration"#,
            ),
            (
                "no kind",
                "apiVersion: apiserver.config.k8s.io/v1\n",
                "kind is missing: want AdmissionConfiguration",
            ),
            (
                "an unknown field",
                "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugin: []\n",
                "unknown field `plugin`",
            ),
            (
                "an unknown field of an entry",
                "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\n\
                 plugins:\n- name: PodSecurity\n  config: {}\n",
                "unknown field `config`",
            ),
            (
                "an entry without a name",
                "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\n\
                 plugins:\n- path: x.yaml\n",
                "missing field `name`",
            ),
        ];
        for (case, text, want) in cases {
            let got = AdmissionConfiguration::parse(text).unwrap_err().to_string();
            assert!(got.starts_with(want), "{case}: {got}");
        }
        assert!(matches!(
            AdmissionConfiguration::parse("plugins: [\n"),
            Err(ConfigError::Decode(_))
        ));
    }

    #[test]
    fn pod_security_takes_its_configuration_and_others_are_left_alone() {
        let mut configs = PluginConfigs::default();
        let text = format!("{PSA}defaults:\n  enforce: baseline\n  warn: restricted\n");
        configs.set("PodSecurity", Raw::Text(&text)).unwrap();
        let lv = |level| LevelVersion { level, version: Version::Latest };
        assert_eq!(
            configs.pod_security.defaults,
            Policy {
                enforce: lv(Level::Baseline),
                warn: lv(Level::Restricted),
                audit: LevelVersion::PRIVILEGED
            }
        );
        configs.set("EventRateLimit", Raw::Text("not: [yaml")).unwrap();
        let bad = json!({"apiVersion": "pod-security.admission.config.k8s.io/v1",
            "kind": "PodSecurityConfiguration", "defaults": {"enforce": "strict"}});
        let error = configs.set("PodSecurity", Raw::Embedded(&bad)).unwrap_err();
        assert_eq!(error.to_string(), "plugin PodSecurity");
        assert_eq!(
            std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default(),
            r#"defaults.enforce: Invalid value: "strict": must be one of privileged, baseline, restricted"#
        );
        configs.set("PodSecurity", Raw::Text("")).unwrap();
        assert_eq!(configs, PluginConfigs::default(), "an empty file is the defaults");
    }
}
