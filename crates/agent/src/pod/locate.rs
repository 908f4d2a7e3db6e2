//! Finding what runs on this node by the names a client uses: a pod by namespace and name,
//! and the current run of one of its containers. Read from the pods' directories alone, so
//! the endpoint needs nothing of the workers.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::runtime::{self, Containers, Observed};

/// A pod on this node.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalPod {
    /// Its uid.
    pub uid: String,
    /// Its directory.
    pub dir: PathBuf,
}

impl LocalPod {
    /// Its pinned network namespace, unless it uses the node's network.
    pub fn network(&self) -> Option<PathBuf> {
        let net = self.dir.join("ns").join("net");
        crate::sys::is_mount_point(&net).then_some(net)
    }

    /// Whether it still runs here.
    pub fn exists(&self) -> bool {
        self.dir.join("pod.json").exists()
    }
}

/// The current run of a container.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalContainer {
    /// The OCI runtime's id of it.
    pub id: String,
    /// Its bundle.
    pub bundle: PathBuf,
}

#[derive(Deserialize)]
struct Names {
    namespace: Option<String>,
    name: Option<String>,
}

/// The pod `namespace/name`, if it runs here.
pub fn pod(pods_dir: &Path, namespace: &str, name: &str) -> Option<LocalPod> {
    fs::read_dir(pods_dir).ok()?.flatten().find_map(|entry| {
        let raw = fs::read(entry.path().join("pod.json")).ok()?;
        let names: Names = serde_json::from_slice(&raw).ok()?;
        (names.namespace.as_deref() == Some(namespace) && names.name.as_deref() == Some(name)).then(
            || LocalPod {
                uid: entry.file_name().to_string_lossy().into_owned(),
                dir: entry.path(),
            },
        )
    })
}

/// The running container `name` of `pod`, as `containers` observe it; upstream's message
/// when it does not run.
pub fn running_container(
    containers: &dyn Containers,
    pod: &LocalPod,
    name: &str,
) -> Result<LocalContainer, String> {
    let not_found = || format!("container not found ({name:?})");
    let dir = pod.dir.join("containers").join(name);
    let attempt = fs::read_dir(&dir)
        .map_err(|_| not_found())?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .ok_or_else(not_found)?;
    let bundle = dir.join(attempt.to_string());
    match containers.observe(&bundle) {
        Observed::Running(_) => {
            Ok(LocalContainer { id: runtime::container_id(&pod.uid, name, attempt), bundle })
        }
        _ => Err(not_found()),
    }
}
