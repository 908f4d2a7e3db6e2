//! A namespace's Pod Security policy, from its labels, as upstream's `PolicyToEvaluate`: a
//! level and a version for each mode (`enforce`, `audit`, `warn`); a mode without a label takes
//! the configured default (`privileged:latest` unless `--admission-control-config-file` says
//! otherwise, [`super::config`]).

use std::collections::BTreeMap;
use std::fmt;

/// The label naming the enforced level.
pub const ENFORCE_LABEL: &str = "pod-security.kubernetes.io/enforce";
/// The label naming the enforced level's version.
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
/// The label naming the audited level.
pub const AUDIT_LABEL: &str = "pod-security.kubernetes.io/audit";
/// The label naming the audited level's version.
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
/// The label naming the level warned about.
pub const WARN_LABEL: &str = "pod-security.kubernetes.io/warn";
/// The label naming the version of the level warned about.
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// A Pod Security Standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Unrestricted.
    Privileged,
    /// Known privilege escalations are refused.
    Baseline,
    /// Hardening best practices are required.
    Restricted,
}

impl Level {
    /// Upstream's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }

    /// Upstream's `ParseLevel`: an unknown level is `restricted`, with an error.
    pub fn parse(text: &str) -> (Self, Option<&'static str>) {
        match text {
            "privileged" => (Self::Privileged, None),
            "baseline" => (Self::Baseline, None),
            "restricted" => (Self::Restricted, None),
            _ => (Self::Restricted, Some("must be one of privileged, baseline, restricted")),
        }
    }
}

/// The version of a standard: `latest`, or `v1.N` (the rules as Kubernetes 1.N had them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The newest rules.
    Latest,
    /// The rules of Kubernetes `1.N`.
    Minor(u32),
}

impl Version {
    /// Upstream's `ParseVersion`: `latest` or `v1.N`; anything else is `latest`, with an error.
    pub fn parse(text: &str) -> (Self, Option<&'static str>) {
        const WRONG: &str = "must be \"latest\" or \"v1.x\"";
        if text == "latest" {
            return (Self::Latest, None);
        }
        let Some(minor) = text.strip_prefix("v1.") else { return (Self::Latest, Some(WRONG)) };
        let digits = !minor.is_empty() && minor.bytes().all(|b| b.is_ascii_digit());
        match minor.parse::<u32>() {
            Ok(n) if digits && (minor == "0" || !minor.starts_with('0')) => (Self::Minor(n), None),
            _ => (Self::Latest, Some(WRONG)),
        }
    }

    /// Whether the rules of this version include those introduced in `1.minor`.
    pub fn at_least(self, minor: u32) -> bool {
        match self {
            Self::Latest => true,
            Self::Minor(n) => n >= minor,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Minor(n) => write!(f, "v1.{n}"),
        }
    }
}

/// A level at a version, named `level:version` in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    /// The standard.
    pub level: Level,
    /// Its version.
    pub version: Version,
}

impl LevelVersion {
    /// `privileged:latest`, every mode's default.
    pub const PRIVILEGED: Self = Self { level: Level::Privileged, version: Version::Latest };
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// A label that does not parse: its key, value and upstream's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    /// The label.
    pub label: &'static str,
    /// Its value.
    pub value: String,
    /// Why it is wrong.
    pub message: &'static str,
}

/// What a namespace's labels ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Pods that violate it are refused.
    pub enforce: LevelVersion,
    /// Violations are recorded in the audit log (krust has none: nothing is recorded).
    pub audit: LevelVersion,
    /// Violations are answered as warnings.
    pub warn: LevelVersion,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            enforce: LevelVersion::PRIVILEGED,
            audit: LevelVersion::PRIVILEGED,
            warn: LevelVersion::PRIVILEGED,
        }
    }
}

impl Policy {
    /// Upstream's `PolicyToEvaluate`: `defaults` (the configured ones), each overridden by its
    /// label, a bad label reported (an enforced level that does not parse is `restricted`,
    /// audit and warn fail open to `privileged`, a bad version is `latest`); without a `warn`
    /// label, `warn` follows an explicitly labelled `enforce` level (and, without a
    /// `warn-version` label, its version) that is stricter than it.
    pub fn from_labels(
        labels: &BTreeMap<String, String>,
        defaults: Self,
    ) -> (Self, Vec<LabelError>) {
        let mut policy = defaults;
        let mut errors = Vec::new();
        let mut note = |label: &'static str, value: &str, error: Option<&'static str>| {
            if let Some(message) = error {
                errors.push(LabelError { label, value: value.to_string(), message });
            }
            error.is_none()
        };
        let mut has_enforce_level = false;
        if let Some(value) = labels.get(ENFORCE_LABEL) {
            let (level, error) = Level::parse(value);
            policy.enforce.level = level;
            has_enforce_level = note(ENFORCE_LABEL, value, error);
        }
        if let Some(value) = labels.get(ENFORCE_VERSION_LABEL) {
            let (version, error) = Version::parse(value);
            policy.enforce.version = version;
            note(ENFORCE_VERSION_LABEL, value, error);
        }
        for (mode, level_label, version_label) in [
            (&mut policy.audit, AUDIT_LABEL, AUDIT_VERSION_LABEL),
            (&mut policy.warn, WARN_LABEL, WARN_VERSION_LABEL),
        ] {
            if let Some(value) = labels.get(level_label) {
                let (level, error) = Level::parse(value);
                mode.level =
                    if note(level_label, value, error) { level } else { Level::Privileged };
            }
            if let Some(value) = labels.get(version_label) {
                let (version, error) = Version::parse(value);
                mode.version = version;
                note(version_label, value, error);
            }
        }
        if !labels.contains_key(WARN_LABEL)
            && has_enforce_level
            && policy.enforce.level > policy.warn.level
        {
            policy.warn.level = policy.enforce.level;
            if !labels.contains_key(WARN_VERSION_LABEL) {
                policy.warn.version = policy.enforce.version;
            }
        }
        (policy, errors)
    }

    /// Whether every mode is `privileged`.
    pub fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn].iter().all(|m| m.level == Level::Privileged)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::type_complexity)]

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn versions_parse_as_upstreams() {
        let cases: &[(&str, Version, bool)] = &[
            ("latest", Version::Latest, true),
            ("v1.0", Version::Minor(0), true),
            ("v1.30", Version::Minor(30), true),
            ("v1.030", Version::Latest, false),
            ("v2.0", Version::Latest, false),
            ("1.30", Version::Latest, false),
            ("", Version::Latest, false),
        ];
        for (text, version, ok) in cases {
            let (got, error) = Version::parse(text);
            assert_eq!((got, error.is_none()), (*version, *ok), "{text:?}");
        }
        assert_eq!(Version::Minor(22).to_string(), "v1.22");
    }

    #[test]
    fn labels_make_the_policy() {
        let lv = |level, version| LevelVersion { level, version };
        let cases: &[(&str, &[(&str, &str)], Policy, usize)] = &[
            ("no labels is privileged everywhere", &[], Policy::default(), 0),
            (
                "warn follows a stricter enforce, with its version",
                &[(ENFORCE_LABEL, "baseline"), (ENFORCE_VERSION_LABEL, "v1.25")],
                Policy {
                    enforce: lv(Level::Baseline, Version::Minor(25)),
                    warn: lv(Level::Baseline, Version::Minor(25)),
                    ..Policy::default()
                },
                0,
            ),
            (
                "an explicit warn level is kept",
                &[(ENFORCE_LABEL, "restricted"), (WARN_LABEL, "baseline")],
                Policy {
                    enforce: lv(Level::Restricted, Version::Latest),
                    warn: lv(Level::Baseline, Version::Latest),
                    ..Policy::default()
                },
                0,
            ),
            (
                "a bad enforce level is restricted and not copied to warn",
                &[(ENFORCE_LABEL, "nope")],
                Policy { enforce: lv(Level::Restricted, Version::Latest), ..Policy::default() },
                1,
            ),
            (
                "bad warn and audit levels fail open",
                &[(WARN_LABEL, "nope"), (AUDIT_LABEL, "nope"), (AUDIT_VERSION_LABEL, "x")],
                Policy::default(),
                3,
            ),
        ];
        for (case, pairs, policy, errors) in cases {
            let (got, errs) = Policy::from_labels(&labels(pairs), Policy::default());
            assert_eq!((got, errs.len()), (*policy, *errors), "{case}");
        }
    }

    #[test]
    fn labels_override_the_configured_defaults_mode_by_mode() {
        let lv = |level, version| LevelVersion { level, version };
        let defaults = Policy {
            enforce: lv(Level::Restricted, Version::Minor(30)),
            audit: lv(Level::Baseline, Version::Latest),
            warn: lv(Level::Baseline, Version::Latest),
        };
        let cases: &[(&str, &[(&str, &str)], Policy)] = &[
            ("an unlabelled namespace gets the defaults", &[], defaults),
            (
                "a level label replaces the default level and keeps the default version",
                &[(ENFORCE_LABEL, "privileged")],
                Policy { enforce: lv(Level::Privileged, Version::Minor(30)), ..defaults },
            ),
            (
                "a version label alone keeps the default level",
                &[(AUDIT_VERSION_LABEL, "v1.25")],
                Policy { audit: lv(Level::Baseline, Version::Minor(25)), ..defaults },
            ),
            (
                "a labelled enforce stricter than the default warn raises warn",
                &[(ENFORCE_LABEL, "restricted"), (ENFORCE_VERSION_LABEL, "v1.29")],
                Policy {
                    enforce: lv(Level::Restricted, Version::Minor(29)),
                    warn: lv(Level::Restricted, Version::Minor(29)),
                    ..defaults
                },
            ),
            ("a default enforce does not raise warn", &[(AUDIT_LABEL, "baseline")], defaults),
        ];
        for (case, pairs, want) in cases {
            let (got, errs) = Policy::from_labels(&labels(pairs), defaults);
            assert_eq!((got, errs.len()), (*want, 0), "{case}");
        }
    }
}
