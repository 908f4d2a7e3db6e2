//! The node's registry configuration, in k3s' `registries.yaml` format: mirrors that stand in
//! for a registry (tried in order, then the registry itself), and per-host credentials and TLS
//! settings.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["http://127.0.0.1:5000", "https://mirror.example:5443"]
//!   "*":                     # every registry without an entry of its own
//!     endpoint: ["https://cache.example"]
//! configs:
//!   "mirror.example:5443":
//!     auth: {username: u, password: p}   # or `auth: base64(u:p)`, or `identitytoken`
//!     tls: {ca_file: /etc/ssl/mirror-ca.pem, cert_file: c.pem, key_file: k.pem, insecure_skip_verify: false}
//! ```
//!
//! An endpoint's scheme says how to talk to it: `http://` is plain HTTP (an insecure
//! registry), `https://` or none is TLS. Requests go to the endpoint's `/v2/` (a path in the
//! endpoint is kept as its prefix). Pure: the file is read by the caller.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::keyring::{self, Credential};

/// The whole file.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Registries {
    /// Mirrors by registry name (`docker.io`, `registry.k8s.io:443`, `*`).
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    /// Settings by host (`host[:port]`, as an endpoint or image names it, or `*`).
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
}

/// The endpoints that serve one registry's images.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// URLs, tried in order before the registry itself.
    #[serde(default)]
    pub endpoint: Vec<String>,
    /// Repository rewrites (k3s' `rewrite`): not supported; a file that uses them is refused
    /// rather than pulled from the wrong repository.
    #[serde(default)]
    pub rewrite: BTreeMap<String, String>,
}

/// How to talk to one host.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Credentials sent to it.
    #[serde(default)]
    pub auth: Option<Auth>,
    /// Its TLS settings.
    #[serde(default)]
    pub tls: Option<Tls>,
}

/// Credentials for one host, as in a Docker config: `username` and `password`, or `auth`
/// (base64 of `username:password`), or an identity token.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// The user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Its password.
    #[serde(default)]
    pub password: Option<String>,
    /// Base64 of `username:password`.
    #[serde(default)]
    pub auth: Option<String>,
    /// A refresh token for the registry's token service.
    #[serde(default)]
    pub identitytoken: Option<String>,
}

/// TLS settings for one host.
#[derive(Debug, Default, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// A CA bundle trusted besides the host's CAs.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) to present, with `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("registry configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub(super) fn new(message: String) -> ConfigError {
        ConfigError(message)
    }
}

/// Where a pull may fetch from: a mirror's URL or the registry itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https`; `None` for the registry itself, which is HTTPS unless it is on
    /// this host and speaks plain HTTP.
    pub scheme: Option<&'static str>,
    /// `host[:port]`.
    pub host: String,
    /// A path before `/v2/`, without a trailing slash (usually empty).
    pub prefix: String,
    /// Whether this is a mirror (credentials come from `configs` only, as containerd gives a
    /// pod's pull secrets to the registry it names).
    pub mirror: bool,
}

impl Registries {
    /// Parses a `registries.yaml`; refuses what would make pulls go somewhere unintended.
    pub fn parse(text: &str) -> Result<Registries, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Registries::default());
        }
        let parsed: Registries =
            serde_saphyr::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        for (registry, mirror) in &parsed.mirrors {
            if !mirror.rewrite.is_empty() {
                return Err(ConfigError(format!("mirrors.{registry:?}.rewrite is not supported")));
            }
            for url in &mirror.endpoint {
                parse_endpoint(url).map_err(|m| {
                    ConfigError(format!("mirrors.{registry:?}.endpoint {url:?}: {m}"))
                })?;
            }
        }
        for (host, config) in &parsed.configs {
            if let Some(tls) = &config.tls
                && tls.cert_file.is_some() != tls.key_file.is_some()
            {
                return Err(ConfigError(format!(
                    "configs.{host:?}.tls: cert_file and key_file go together"
                )));
            }
        }
        Ok(parsed)
    }

    /// The endpoints for `registry`, in the order to try them: its mirrors (or the `*`
    /// mirrors when it has no entry), then the registry itself.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mirror = self.mirrors.get(registry).or_else(|| self.mirrors.get("*"));
        let mut endpoints: Vec<Endpoint> = mirror
            .map(|m| m.endpoint.iter().filter_map(|url| parse_endpoint(url).ok()).collect())
            .unwrap_or_default();
        let own = Endpoint {
            scheme: None,
            host: default_host(registry).to_string(),
            prefix: String::new(),
            mirror: false,
        };
        // A registry listed as its own mirror is tried once, as itself.
        match endpoints.iter_mut().find(|e| e.host == own.host && e.prefix.is_empty()) {
            Some(listed) => listed.mirror = false,
            None => endpoints.push(own),
        }
        endpoints
    }
}

impl Auth {
    /// The credential it gives, if complete.
    pub fn credential(&self) -> Option<Credential> {
        let given = keyring::docker_credential(
            self.username.as_deref(),
            self.password.as_deref(),
            self.auth.as_deref(),
        );
        if given.is_some() {
            return given;
        }
        // An identity token is a refresh token, sent to the token service as a password.
        let token = self.identitytoken.as_ref()?;
        Some(Credential { username: "<token>".into(), password: token.clone() })
    }
}

/// The host serving a registry's name (Docker Hub's images come from `registry-1.docker.io`).
pub fn default_host(registry: &str) -> &str {
    if registry == "docker.io" { "registry-1.docker.io" } else { registry }
}

/// An endpoint URL: `[scheme://]host[:port][/prefix]`.
fn parse_endpoint(url: &str) -> Result<Endpoint, String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => ("http", rest),
        Some(("https", rest)) => ("https", rest),
        Some((other, _)) => return Err(format!("scheme {other:?} is not http or https")),
        None => ("https", url),
    };
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err("no host".into());
    }
    let path = path.trim_end_matches('/');
    let prefix = path.strip_suffix("v2").unwrap_or(path).trim_end_matches('/');
    let prefix = if prefix.is_empty() { String::new() } else { format!("/{prefix}") };
    Ok(Endpoint { scheme: Some(scheme), host: host.to_string(), prefix, mirror: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
mirrors:
  docker.io:
    endpoint:
      - "http://127.0.0.1:5000"
      - "mirror.example:5443/cache/v2"
  "*":
    endpoint: ["https://everything.example"]
configs:
  "mirror.example:5443":
    auth:
      username: u
      password: p
    tls:
      ca_file: /etc/ssl/mirror.pem
  "*":
    auth:
      auth: dTI6cDI=
"#;

    #[test]
    fn mirrors_come_first_then_the_registry() {
        let registries = Registries::parse(FILE).expect("parses");
        let endpoints = registries.endpoints("docker.io");
        let seen: Vec<(Option<&str>, &str, &str)> =
            endpoints.iter().map(|e| (e.scheme, e.host.as_str(), e.prefix.as_str())).collect();
        assert_eq!(
            seen,
            [
                (Some("http"), "127.0.0.1:5000", ""),
                (Some("https"), "mirror.example:5443", "/cache"),
                (None, "registry-1.docker.io", ""),
            ]
        );
        assert!(endpoints[0].mirror && !endpoints[2].mirror);
        // A registry without an entry of its own takes the `*` mirrors.
        let other = registries.endpoints("quay.io");
        assert_eq!(other[0].host, "everything.example");
        assert_eq!(other[1].host, "quay.io");
        // No file: the registry alone.
        let none = Registries::default().endpoints("registry.k8s.io");
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].host, "registry.k8s.io");
    }

    #[test]
    fn credentials_by_host_with_a_wildcard() {
        let registries = Registries::parse(FILE).expect("parses");
        let credential = |host: &str| {
            let auth = registries.configs[host].auth.as_ref().expect("auth");
            let c = auth.credential().expect("credential");
            (c.username, c.password)
        };
        assert_eq!(credential("mirror.example:5443"), ("u".into(), "p".into()));
        assert_eq!(credential("*"), ("u2".into(), "p2".into()));
        let tls = registries.configs.get("mirror.example:5443").and_then(|c| c.tls.clone());
        assert_eq!(tls.and_then(|t| t.ca_file), Some(PathBuf::from("/etc/ssl/mirror.pem")));
    }

    #[test]
    fn bad_files_are_refused_with_where() {
        for (text, wanted) in [
            ("mirrors: {docker.io: {endpoint: [\"ftp://x\"]}}", "ftp"),
            ("mirrors: {docker.io: {endpoints: [\"http://x\"]}}", "endpoints"),
            ("mirrors: {docker.io: {rewrite: {\"^a/(.*)\": \"b/$1\"}}}", "rewrite"),
            ("configs: {x: {tls: {cert_file: /c.pem}}}", "key_file"),
            ("mirrors: [1, 2]", ""),
        ] {
            let error = Registries::parse(text).expect_err(text).to_string();
            assert!(error.contains(wanted), "{text}: {error}");
        }
        assert_eq!(Registries::parse("").expect("empty"), Registries::default());
    }
}
