//! A client's configuration from a kubeconfig file, and its name among candidates for a lease.

use std::path::Path;

use base64::Engine;
use kube::Config;
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::Error;

/// A client configuration and the CA it trusts (as PEM), from a kubeconfig file.
pub async fn config_from_kubeconfig(path: &Path) -> Result<(Config, String), Error> {
    let err = |source| Error::Kubeconfig { path: path.to_path_buf(), source };
    let kubeconfig = Kubeconfig::read_from(path).map_err(err)?;
    let ca = kubeconfig
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.certificate_authority_data.as_deref())
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .and_then(|pem| String::from_utf8(pem).ok())
        .unwrap_or_default();
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(err)?;
    Ok((config, ca))
}

/// A client configuration from `path`, or, without one, from where kubectl finds it
/// (`$KUBECONFIG`, `~/.kube/config`, or the pod's service account).
pub async fn config_or_default(path: Option<&Path>) -> Result<Config, Error> {
    match path {
        Some(path) => Ok(config_from_kubeconfig(path).await?.0),
        None => Config::infer().await.map_err(|e| Error::Infer(e.to_string())),
    }
}

/// An identity for a lease: the host's name and a random suffix, as upstream's.
pub fn identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}_{}", host.trim(), uuid::Uuid::new_v4())
}

/// `config` for `component`: its User-Agent as upstream's components write theirs
/// (`NAME/VERSION (OS/ARCH) krust`), which the server takes as the field manager of its
/// writes.
pub fn acting_as(config: &Config, component: &str) -> Config {
    let mut config = config.clone();
    // Go's names of the architectures, as upstream's agents write them.
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let agent = format!(
        "{component}/v{} ({}/{arch}) krust",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS
    );
    if let (Ok(name), Ok(value)) = ("user-agent".parse(), agent.parse()) {
        config.headers.push((name, value));
    }
    config
}
