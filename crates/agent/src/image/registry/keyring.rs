//! Registry credentials from a pod's `imagePullSecrets`, matched to an image as the kubelet's
//! keyring does: a secret's keys are registry hosts (globs per label, `*.example.com`),
//! optionally with a path prefix; the most specific key is tried first, and Docker Hub's
//! `https://index.docker.io/v1/` serves every Docker Hub image.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;

/// A user name and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The user.
    pub username: String,
    /// The password (or token).
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("username", &self.username).finish_non_exhaustive()
    }
}

/// The secret type holding a `~/.docker/config.json` under `.dockerconfigjson`.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// The legacy secret type holding a `~/.dockercfg` under `.dockercfg`.
pub const DOCKERCFG: &str = "kubernetes.io/dockercfg";

const DOCKER_HUB_KEY: &str = "index.docker.io";

/// Credentials by registry key (`host[:port][/path]`).
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    entries: Vec<(String, Credential)>,
}

#[derive(Deserialize)]
struct ConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

impl Entry {
    fn credential(&self) -> Option<Credential> {
        docker_credential(self.username.as_deref(), self.password.as_deref(), self.auth.as_deref())
    }
}

/// The credential of a Docker config entry: `username` and `password`, else `auth` (base64 of
/// `username:password`).
pub fn docker_credential(
    username: Option<&str>,
    password: Option<&str>,
    auth: Option<&str>,
) -> Option<Credential> {
    if let (Some(username), Some(password)) = (username, password) {
        return Some(Credential { username: username.into(), password: password.into() });
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth?).ok()?;
    let (username, password) = std::str::from_utf8(&decoded).ok()?.split_once(':')?;
    Some(Credential { username: username.into(), password: password.into() })
}

impl Keyring {
    /// Adds the entries of one pull secret, of its type and data; a secret of another type,
    /// or one that does not parse, adds nothing (as the kubelet's).
    pub fn add_secret(&mut self, secret_type: &str, data: &BTreeMap<String, Vec<u8>>) {
        let entries: BTreeMap<String, Entry> = match secret_type {
            DOCKER_CONFIG_JSON => data
                .get(".dockerconfigjson")
                .and_then(|raw| serde_json::from_slice::<ConfigJson>(raw).ok())
                .map(|c| c.auths)
                .unwrap_or_default(),
            DOCKERCFG => data
                .get(".dockercfg")
                .and_then(|raw| serde_json::from_slice(raw).ok())
                .unwrap_or_default(),
            _ => BTreeMap::new(),
        };
        for (location, entry) in entries {
            if let Some(credential) = entry.credential() {
                self.entries.push((key_of(&location), credential));
            }
        }
        // Reverse order puts `host/path` before `host`, as upstream's index.
        self.entries.sort_by(|a, b| b.0.cmp(&a.0));
    }

    /// A keyring holding one credential for the registry of `image` (a command line's
    /// `--creds`).
    pub fn for_image(image: &str, username: &str, password: &str) -> Keyring {
        let registry =
            super::super::Reference::parse(image).map(|r| r.registry).unwrap_or_default();
        let credential = Credential { username: username.into(), password: password.into() };
        Keyring { entries: vec![(registry, credential)] }
    }

    /// The credentials to try for `registry/repository`, in order.
    pub fn lookup(&self, registry: &str, repository: &str) -> Vec<Credential> {
        let target = format!("{registry}/{repository}");
        let found: Vec<Credential> = self
            .entries
            .iter()
            .filter(|(key, _)| matches(key, &target))
            .map(|(_, c)| c.clone())
            .collect();
        if !found.is_empty() || registry != "docker.io" {
            return found;
        }
        self.entries
            .iter()
            .filter(|(key, _)| key == DOCKER_HUB_KEY)
            .map(|(_, c)| c.clone())
            .collect()
    }
}

/// A secret's location as a key: no scheme, and Docker's `/v1/` or `/v2/` path means the
/// host alone.
fn key_of(location: &str) -> String {
    let bare = location
        .strip_prefix("https://")
        .or_else(|| location.strip_prefix("http://"))
        .unwrap_or(location);
    let (host, path) = bare.split_once('/').map_or((bare, ""), |(h, p)| (h, p));
    let path = path.strip_prefix("v1/").or_else(|| path.strip_prefix("v2/")).unwrap_or(path);
    let path = path.trim_end_matches('/');
    if path.is_empty() { host.to_string() } else { format!("{host}/{path}") }
}

/// Whether the key `glob` (`host[:port][/path]`, host labels may be globs) covers
/// `target` (`host[:port]/repository`).
fn matches(glob: &str, target: &str) -> bool {
    let split = |s: &str| -> (String, String) {
        let (host, path) = s.split_once('/').map_or((s, ""), |(h, p)| (h, p));
        (host.to_string(), path.to_string())
    };
    let ((glob_host, glob_path), (host, path)) = (split(glob), split(target));
    let (glob_name, glob_port) = glob_host.split_once(':').unwrap_or((&glob_host, ""));
    let (name, port) = host.split_once(':').unwrap_or((&host, ""));
    let glob_labels: Vec<&str> = glob_name.split('.').collect();
    let labels: Vec<&str> = name.split('.').collect();
    glob_port == port
        && glob_labels.len() == labels.len()
        && glob_labels.iter().zip(&labels).all(|(g, l)| label_matches(g, l))
        && path.starts_with(&glob_path)
}

/// A shell-style match of one host label (`*` for any run of characters).
fn label_matches(glob: &str, label: &str) -> bool {
    match glob.split_once('*') {
        None => glob.eq_ignore_ascii_case(label),
        Some((prefix, rest)) => {
            let lower = label.to_ascii_lowercase();
            let Some(after) = lower.strip_prefix(&prefix.to_ascii_lowercase()) else {
                return false;
            };
            (0..=after.len())
                .filter(|i| after.is_char_boundary(*i))
                .any(|i| label_matches(rest, &after[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(config: &str) -> Keyring {
        let mut keyring = Keyring::default();
        let data = BTreeMap::from([(".dockerconfigjson".to_string(), config.as_bytes().to_vec())]);
        keyring.add_secret(DOCKER_CONFIG_JSON, &data);
        keyring
    }

    fn users(found: Vec<Credential>) -> Vec<String> {
        found.into_iter().map(|c| c.username).collect()
    }

    #[test]
    fn reads_auth_and_user_password_entries() {
        // "alice:s3cret:x" in base64: the password keeps its colons.
        let ring = keyring(
            r#"{"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcmV0Ong="},"reg.example.com":{"username":"bob","password":"pw"}}}"#,
        );
        assert_eq!(
            ring.lookup("127.0.0.1:5000", "e2e/busybox"),
            vec![Credential { username: "alice".into(), password: "s3cret:x".into() }]
        );
        assert_eq!(users(ring.lookup("reg.example.com", "app")), ["bob"]);
        assert!(ring.lookup("127.0.0.1:5001", "e2e/busybox").is_empty(), "ports must match");
        assert!(ring.lookup("other.example.com", "app").is_empty());
    }

    #[test]
    fn matches_globs_paths_and_docker_hub() {
        let ring = keyring(
            r#"{"auths":{
                "https://index.docker.io/v1/":{"username":"hub","password":"p"},
                "*.example.com":{"username":"any","password":"p"},
                "reg.example.com/team":{"username":"team","password":"p"}}}"#,
        );
        assert_eq!(users(ring.lookup("docker.io", "library/busybox")), ["hub"]);
        assert_eq!(users(ring.lookup("reg.example.com", "team/app")), ["team", "any"]);
        assert_eq!(users(ring.lookup("reg.example.com", "other/app")), ["any"]);
        assert!(ring.lookup("a.b.example.com", "app").is_empty(), "a glob is one label");
        assert!(ring.lookup("quay.io", "app").is_empty());
    }

    #[test]
    fn ignores_other_secret_types_and_bad_data() {
        let mut ring = Keyring::default();
        let data = BTreeMap::from([(".dockerconfigjson".to_string(), b"{}".to_vec())]);
        ring.add_secret("Opaque", &data);
        let bad = BTreeMap::from([(".dockerconfigjson".to_string(), b"not json".to_vec())]);
        ring.add_secret(DOCKER_CONFIG_JSON, &bad);
        let legacy = BTreeMap::from([(
            ".dockercfg".to_string(),
            br#"{"legacy.example.com":{"auth":"dTpw"}}"#.to_vec(),
        )]);
        ring.add_secret(DOCKERCFG, &legacy);
        assert_eq!(users(ring.lookup("legacy.example.com", "x")), ["u"]);
        assert_eq!(ring.entries.len(), 1);
    }
}
