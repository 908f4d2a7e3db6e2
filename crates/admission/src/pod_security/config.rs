//! PodSecurity's configuration, upstream's `PodSecurityConfiguration`
//! (`pod-security.admission.config.k8s.io/v1`, or the same type as `v1beta1` and `v1alpha1`),
//! given through `--admission-control-config-file`: the policy of a namespace for each mode it
//! has no label for (`defaults`), and the requests never checked (`exemptions`).
//!
//! Read as upstream's loader: no text (here, also only blanks) is the default configuration
//! (every mode `privileged:latest`, nothing exempt); otherwise `apiVersion` and `kind` must name the type,
//! and an unknown field is refused (upstream decodes it strictly). Then validated as upstream's
//! `ValidatePodSecurityConfiguration`: levels and versions parse, exempt namespaces are
//! DNS-1123 labels and runtime classes DNS-1123 subdomains, usernames are not empty, and no
//! list repeats a value.

use std::collections::BTreeSet;

use krust_api::validation::{FieldError, dns1123_label, dns1123_subdomain};
use serde::Deserialize;
use serde_json::Value;

use super::policy::{Level, LevelVersion, Policy, Version};

/// The configuration's API group.
pub const GROUP: &str = "pod-security.admission.config.k8s.io";

/// The versions of [`GROUP`] upstream reads, newest first (the type is the same in each).
pub const VERSIONS: &[&str] = &["v1", "v1beta1", "v1alpha1"];

/// The configuration's kind.
pub const KIND: &str = "PodSecurityConfiguration";

/// What PodSecurity is configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Configuration {
    /// The policy of each mode a namespace has no label for.
    pub defaults: Policy,
    /// What is never checked.
    pub exemptions: Exemptions,
}

/// Upstream's `PodSecurityExemptions`: requests PodSecurity lets through unchecked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exemptions {
    /// Requesting users, by name (the impersonated user's, when impersonating).
    pub usernames: BTreeSet<String>,
    /// Namespaces whose pods and workloads are not checked.
    pub namespaces: BTreeSet<String>,
    /// Pods (and workloads' pod templates) naming one of these `runtimeClassName`s.
    pub runtime_classes: BTreeSet<String>,
}

impl Exemptions {
    /// Whether requests of the user `name` are exempt (an empty name never is).
    pub fn user(&self, name: &str) -> bool {
        !name.is_empty() && self.usernames.contains(name)
    }

    /// Whether `namespace` is exempt (the empty namespace of a cluster-wide object never is).
    pub fn namespace(&self, namespace: &str) -> bool {
        !namespace.is_empty() && self.namespaces.contains(namespace)
    }

    /// Whether a pod of runtime class `class` is exempt (none, or an empty one, never is).
    pub fn runtime_class(&self, class: Option<&str>) -> bool {
        class.is_some_and(|c| !c.is_empty() && self.runtime_classes.contains(c))
    }
}

/// Why a PodSecurity configuration cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not YAML or JSON, or not of the type's shape (an unknown field, a value of
    /// the wrong type).
    #[error("{0}")]
    Decode(String),
    /// `apiVersion` is missing.
    #[error("apiVersion is missing: want {GROUP}/v1")]
    MissingApiVersion,
    /// `apiVersion` names another group or version.
    #[error("apiVersion {0:?} is not one of {GROUP}/v1, {GROUP}/v1beta1, {GROUP}/v1alpha1")]
    ApiVersion(String),
    /// `kind` is missing.
    #[error("kind is missing: want {KIND}")]
    MissingKind,
    /// `kind` is not [`KIND`].
    #[error("kind {0:?} is not {KIND}")]
    Kind(String),
    /// Values that do not validate, as upstream's field errors.
    #[error("{}", aggregate(.0))]
    Invalid(Vec<FieldError>),
}

/// Upstream's aggregate of errors: the one message, or `[a, b, ...]`.
fn aggregate(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let list: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("[{}]", list.join(", "))
        }
    }
}

/// `apiVersion` and `kind`, read before anything else so that a file of another type is named
/// as such rather than by its first unknown field.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
}

/// The file's shape (every version's).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    #[serde(rename = "apiVersion")]
    _api_version: Option<String>,
    #[serde(rename = "kind")]
    _kind: Option<String>,
    #[serde(default)]
    defaults: Option<Defaults>,
    #[serde(default)]
    exemptions: Option<ExemptionsFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Defaults {
    enforce: Option<String>,
    #[serde(rename = "enforce-version")]
    enforce_version: Option<String>,
    audit: Option<String>,
    #[serde(rename = "audit-version")]
    audit_version: Option<String>,
    warn: Option<String>,
    #[serde(rename = "warn-version")]
    warn_version: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ExemptionsFile {
    usernames: Option<Vec<String>>,
    namespaces: Option<Vec<String>>,
    runtime_classes: Option<Vec<String>>,
}

impl Configuration {
    /// A configuration file's text (YAML or JSON, from an `AdmissionConfiguration` plugin
    /// entry's `path`); empty text is the default configuration, as upstream's.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let value: Value =
            serde_saphyr::from_str(text).map_err(|e| ConfigError::Decode(e.to_string()))?;
        Self::from_value(&value)
    }

    /// The object embedded in an `AdmissionConfiguration` plugin entry's `configuration`.
    pub fn from_value(value: &Value) -> Result<Self, ConfigError> {
        let meta = TypeMeta::deserialize(value).map_err(|e| ConfigError::Decode(e.to_string()))?;
        let Some(api_version) = meta.api_version.filter(|v| !v.is_empty()) else {
            return Err(ConfigError::MissingApiVersion);
        };
        let known = api_version
            .strip_prefix(GROUP)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|version| VERSIONS.contains(&version));
        if !known {
            return Err(ConfigError::ApiVersion(api_version));
        }
        match meta.kind.filter(|k| !k.is_empty()) {
            None => return Err(ConfigError::MissingKind),
            Some(kind) if kind != KIND => return Err(ConfigError::Kind(kind)),
            Some(_) => {}
        }
        let file = File::deserialize(value).map_err(|e| ConfigError::Decode(e.to_string()))?;
        file.validate()
    }
}

impl File {
    /// Upstream's defaulting (an unset or empty level is `privileged`, an unset or empty
    /// version `latest`), then its validation, into the configuration.
    fn validate(self) -> Result<Configuration, ConfigError> {
        let defaults = self.defaults.unwrap_or_default();
        let exemptions = self.exemptions.unwrap_or_default();
        let mut errors = Vec::new();
        let mut mode = |level: Option<String>, version: Option<String>, name: &str| {
            let mut out = LevelVersion::PRIVILEGED;
            if let Some(text) = level.filter(|t| !t.is_empty()) {
                match Level::parse(&text) {
                    (level, None) => out.level = level,
                    (_, Some(why)) => errors.push(FieldError::invalid(
                        format!("defaults.{name}"),
                        Value::String(text),
                        why,
                    )),
                }
            }
            if let Some(text) = version.filter(|t| !t.is_empty()) {
                match Version::parse(&text) {
                    (version, None) => out.version = version,
                    (_, Some(why)) => errors.push(FieldError::invalid(
                        format!("defaults.{name}-version"),
                        Value::String(text),
                        why,
                    )),
                }
            }
            out
        };
        // Upstream's order: enforce, warn, audit.
        let enforce = mode(defaults.enforce, defaults.enforce_version, "enforce");
        let warn = mode(defaults.warn, defaults.warn_version, "warn");
        let audit = mode(defaults.audit, defaults.audit_version, "audit");
        let namespaces =
            names(exemptions.namespaces, "exemptions.namespaces", &mut errors, |at, n| {
                let problems = dns1123_label(n);
                (!problems.is_empty())
                    .then(|| FieldError::invalid(at, Value::String(n.into()), problems.join(", ")))
            });
        let runtime_classes =
            names(exemptions.runtime_classes, "exemptions.runtimeClasses", &mut errors, |at, n| {
                let problems = dns1123_subdomain(n);
                (!problems.is_empty())
                    .then(|| FieldError::invalid(at, Value::String(n.into()), problems.join(", ")))
            });
        let usernames =
            names(exemptions.usernames, "exemptions.usernames", &mut errors, |at, n| {
                n.is_empty().then(|| FieldError::required(at))
            });
        if !errors.is_empty() {
            return Err(ConfigError::Invalid(errors));
        }
        Ok(Configuration {
            defaults: Policy { enforce, audit, warn },
            exemptions: Exemptions { usernames, namespaces, runtime_classes },
        })
    }
}

/// One exemption list: each entry checked by `check` (given its field path), then against the
/// ones before it.
fn names(
    list: Option<Vec<String>>,
    field: &str,
    errors: &mut Vec<FieldError>,
    check: impl Fn(String, &str) -> Option<FieldError>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for (i, name) in list.into_iter().flatten().enumerate() {
        let at = format!("{field}[{i}]");
        if let Some(error) = check(at.clone(), &name) {
            errors.push(error);
        } else if seen.contains(&name) {
            errors.push(FieldError::duplicate(at, Value::String(name)));
        } else {
            seen.insert(name);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn lv(level: Level, version: Version) -> LevelVersion {
        LevelVersion { level, version }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn every_version_reads_alike_in_yaml_and_json() {
        for version in VERSIONS {
            let yaml = format!(
                "apiVersion: {GROUP}/{version}\nkind: PodSecurityConfiguration\ndefaults:\n  \
                 enforce: baseline\n  enforce-version: v1.7\nexemptions:\n  usernames: \
                 [\"alice\", \"bob\"]\n  namespaces: [kube-system]\n  runtimeClasses: [special]\n"
            );
            let want = Configuration {
                defaults: Policy {
                    enforce: lv(Level::Baseline, Version::Minor(7)),
                    ..Policy::default()
                },
                exemptions: Exemptions {
                    usernames: set(&["alice", "bob"]),
                    namespaces: set(&["kube-system"]),
                    runtime_classes: set(&["special"]),
                },
            };
            assert_eq!(Configuration::parse(&yaml).unwrap(), want, "{version} in YAML");
            let json = json!({"apiVersion": format!("{GROUP}/{version}"),
                "kind": "PodSecurityConfiguration", "defaults": {"warn": "restricted"}});
            let got = Configuration::parse(&json.to_string()).unwrap();
            assert_eq!(
                got.defaults,
                Policy { warn: lv(Level::Restricted, Version::Latest), ..Policy::default() },
                "{version} in JSON"
            );
            assert_eq!(Configuration::from_value(&json).unwrap(), got, "{version} embedded");
        }
    }

    #[test]
    fn no_text_and_empty_values_are_the_defaults() {
        assert_eq!(Configuration::parse("").unwrap(), Configuration::default());
        assert_eq!(Configuration::parse("\n  \n").unwrap(), Configuration::default());
        let empty = json!({"apiVersion": "pod-security.admission.config.k8s.io/v1",
            "kind": "PodSecurityConfiguration", "defaults": {"enforce": "", "audit-version": ""},
            "exemptions": {"usernames": null}});
        assert_eq!(Configuration::from_value(&empty).unwrap(), Configuration::default());
    }

    #[test]
    fn files_of_another_type_or_shape_are_refused() {
        let cases: &[(&str, Value, &str)] = &[
            (
                "a missing apiVersion",
                json!({"kind": "PodSecurityConfiguration"}),
                "apiVersion is missing: want pod-security.admission.config.k8s.io/v1",
            ),
            (
                "an unknown version",
                json!({"apiVersion": "pod-security.admission.config.k8s.io/v99", "kind": "PodSecurityConfiguration"}),
                r#"apiVersion "pod-security.admission.config.k8s.io/v99" is not one of pod-security.admission.config.k8s.io/v1, pod-security.admission.config.k8s.io/v1beta1, pod-security.admission.config.k8s.io/v1alpha1"#,
            ),
            (
                "another group",
                json!({"apiVersion": "apps/v1alpha1", "kind": "PodSecurityConfiguration"}),
                r#"apiVersion "apps/v1alpha1" is not one of"#,
            ),
            (
                "a missing kind",
                json!({"apiVersion": "pod-security.admission.config.k8s.io/v1"}),
                "kind is missing: want PodSecurityConfiguration",
            ),
            (
                "another kind",
                json!({"apiVersion": "pod-security.admission.config.k8s.io/v1", "kind": "SomeConfiguration"}),
                r#"kind "SomeConfiguration" is not PodSecurityConfiguration"#,
            ),
            (
                "an unknown field",
                json!({"apiVersion": "pod-security.admission.config.k8s.io/v1", "kind": "PodSecurityConfiguration", "deflaults": {}}),
                "unknown field `deflaults`",
            ),
            (
                "an unknown default",
                json!({"apiVersion": "pod-security.admission.config.k8s.io/v1", "kind": "PodSecurityConfiguration", "defaults": {"enforceVersion": "latest"}}),
                "unknown field `enforceVersion`",
            ),
            (
                "a list where a string goes",
                json!({"apiVersion": "pod-security.admission.config.k8s.io/v1", "kind": "PodSecurityConfiguration", "exemptions": {"namespaces": "kube-system"}}),
                "invalid type",
            ),
        ];
        for (case, value, want) in cases {
            let got = Configuration::from_value(value).unwrap_err().to_string();
            assert!(got.starts_with(want), "{case}: {got}");
        }
        let yaml = "apiVersion: [";
        assert!(matches!(Configuration::parse(yaml), Err(ConfigError::Decode(_))));
    }

    #[test]
    fn values_are_validated_as_upstream() {
        let config = |defaults: Value, exemptions: Value| {
            json!({"apiVersion": "pod-security.admission.config.k8s.io/v1beta1",
                "kind": "PodSecurityConfiguration", "defaults": defaults, "exemptions": exemptions})
        };
        let cases: &[(&str, Value, &str)] = &[
            (
                "a bad level",
                config(json!({"enforce": "strict"}), json!({})),
                r#"defaults.enforce: Invalid value: "strict": must be one of privileged, baseline, restricted"#,
            ),
            (
                "a bad version",
                config(json!({"audit-version": "1.30"}), json!({})),
                r#"defaults.audit-version: Invalid value: "1.30": must be "latest" or "v1.x""#,
            ),
            (
                "several, in upstream's order and brackets",
                config(json!({"audit": "x", "warn": "y", "enforce-version": "v2.0"}), json!({})),
                r#"[defaults.enforce-version: Invalid value: "v2.0": must be "latest" or "v1.x", defaults.warn: Invalid value: "y": must be one of privileged, baseline, restricted, defaults.audit: Invalid value: "x": must be one of privileged, baseline, restricted]"#,
            ),
            (
                "a namespace that is no DNS label",
                config(json!({}), json!({"namespaces": ["Kube_System"]})),
                r#"exemptions.namespaces[0]: Invalid value: "Kube_System": a lowercase RFC 1123 label must consist of"#,
            ),
            (
                "an empty namespace is invalid, as upstream's",
                config(json!({}), json!({"namespaces": [""]})),
                r#"exemptions.namespaces[0]: Invalid value: "": a lowercase RFC 1123 label"#,
            ),
            (
                "a repeated namespace",
                config(json!({}), json!({"namespaces": ["a", "b", "a"]})),
                r#"exemptions.namespaces[2]: Duplicate value: "a""#,
            ),
            (
                "a runtime class that is no DNS subdomain",
                config(json!({}), json!({"runtimeClasses": ["gVisor"]})),
                r#"exemptions.runtimeClasses[0]: Invalid value: "gVisor": a lowercase RFC 1123 subdomain must consist of"#,
            ),
            (
                "an empty username",
                config(json!({}), json!({"usernames": ["alice", ""]})),
                "exemptions.usernames[1]: Required value",
            ),
            (
                "a repeated username",
                config(json!({}), json!({"usernames": ["alice", "alice"]})),
                r#"exemptions.usernames[1]: Duplicate value: "alice""#,
            ),
        ];
        for (case, value, want) in cases {
            let got = Configuration::from_value(value).unwrap_err().to_string();
            assert!(got.starts_with(want), "{case}: {got}");
        }
        // Usernames are any text, dots and capitals included.
        let ok = config(json!({}), json!({"usernames": ["system:serviceaccount:a:b", "Alice"]}));
        assert_eq!(
            Configuration::from_value(&ok).unwrap().exemptions.usernames,
            set(&["Alice", "system:serviceaccount:a:b"])
        );
    }

    #[test]
    fn exemptions_never_match_empty_names() {
        let exemptions = Exemptions {
            usernames: set(&["alice"]),
            namespaces: set(&["ops"]),
            runtime_classes: set(&["kata"]),
        };
        assert!(exemptions.user("alice") && !exemptions.user("") && !exemptions.user("bob"));
        assert!(exemptions.namespace("ops") && !exemptions.namespace(""));
        assert!(exemptions.runtime_class(Some("kata")));
        assert!(!exemptions.runtime_class(Some("")) && !exemptions.runtime_class(None));
    }
}
