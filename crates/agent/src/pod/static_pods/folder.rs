//! The manifest folder (upstream's `pkg/kubelet/config/file.go`): every file whose name does
//! not start with a dot holds one pod; subfolders are not read; a file that does not decode is
//! logged (once per version of it) and left out. The path may also name a single file, and a
//! path that does not exist holds no pods. Files are read again only when their size, times or
//! inode change, so that looking every few seconds costs a `stat` per file.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::manifest::{self, ManifestError};
use super::mirror::{FullName, full_name};

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    inode: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            size: m.size(),
            inode: m.ino(),
            modified: (m.mtime(), m.mtime_nsec()),
            changed: (m.ctime(), m.ctime_nsec()),
        }
    }
}

/// The folder (or file) of static pod manifests of one node.
pub struct Folder {
    path: PathBuf,
    node: String,
    /// Each file as last read: its stamp and what it decoded to.
    files: HashMap<PathBuf, (Stamp, Result<Pod, ManifestError>)>,
    /// When each static pod (by uid) was first seen.
    seen: HashMap<String, String>,
}

impl Folder {
    /// The manifests at `path` for node `node`.
    pub fn new(path: PathBuf, node: String) -> Folder {
        Folder { path, node, files: HashMap::new(), seen: HashMap::new() }
    }

    /// Where the manifests are: a folder, or one file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The static pods the folder holds now, sorted by full name; an error only when the
    /// path cannot be read at all (then nothing is known).
    pub fn scan(&mut self) -> std::io::Result<Vec<Arc<Pod>>> {
        let paths = match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
            Ok(m) if m.is_file() => vec![self.path.clone()],
            Ok(m) if m.is_dir() => {
                let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.path)?
                    .flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .map(|e| e.path())
                    .collect();
                paths.sort();
                paths
            }
            Ok(_) => {
                return Err(std::io::Error::other("the manifest path is not a folder or a file"));
            }
        };
        let mut by_name: BTreeMap<FullName, Pod> = BTreeMap::new();
        let mut read = HashMap::new();
        for path in paths {
            let metadata = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "cannot stat a static pod manifest");
                    continue;
                }
            };
            if metadata.is_dir() {
                tracing::debug!(path = %path.display(), "not recursing into a folder of the manifest path");
                continue;
            }
            if !metadata.is_file() {
                continue;
            }
            let stamp = Stamp::of(&metadata);
            let decoded = match self.files.remove(&path) {
                Some((old, decoded)) if old == stamp => decoded,
                _ => {
                    let decoded = self.read(&path);
                    if let Err(e) = &decoded {
                        tracing::warn!(path = %path.display(), error = %e, "cannot use a static pod manifest");
                    }
                    decoded
                }
            };
            if let Ok(pod) = &decoded {
                // Two files of one pod: the later wins, as upstream's store keyed by name.
                if let Some(earlier) = by_name.insert(full_name(pod), pod.clone()) {
                    tracing::warn!(path = %path.display(), pod = ?full_name(&earlier), "a later manifest replaces a pod of the same name");
                }
            }
            read.insert(path, (stamp, decoded));
        }
        self.files = read;
        let now = k8s_openapi::jiff::Timestamp::now().to_string();
        let mut seen = HashMap::new();
        let pods = by_name
            .into_values()
            .map(|mut pod| {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                let first = self.seen.get(&uid).cloned().unwrap_or_else(|| now.clone());
                manifest::set_seen(&mut pod, &first);
                seen.insert(uid, first);
                Arc::new(pod)
            })
            .collect();
        self.seen = seen;
        Ok(pods)
    }

    fn read(&self, path: &Path) -> Result<Pod, ManifestError> {
        use std::io::Read;
        let mut data = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(manifest::MAX_MANIFEST + 1).read_to_end(&mut data))
            .map_err(|e| ManifestError::Parse(e.to_string()))?;
        manifest::decode(&data, path, &self.node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox:1\n";

    #[test]
    fn a_folder_holds_the_pods_of_its_files_and_skips_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("web.yaml"), POD).expect("write");
        std::fs::write(dir.path().join(".hidden.yaml"), POD.replace("web", "hidden"))
            .expect("write");
        std::fs::write(dir.path().join("broken.yaml"), "kind: [").expect("write");
        std::fs::write(
            dir.path().join("db.json"),
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"db","namespace":"data"},"spec":{"containers":[{"name":"c","image":"busybox:1"}]}}"#,
        )
        .expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/inner.yaml"), POD.replace("web", "inner"))
            .expect("write");
        let mut folder = Folder::new(dir.path().to_path_buf(), "N1".into());
        let pods = folder.scan().expect("scan");
        let names: Vec<FullName> = pods.iter().map(|p| full_name(p)).collect();
        assert_eq!(
            names,
            [("data".to_string(), "db-n1".to_string()), ("default".into(), "web-n1".into())]
        );
        // Unchanged files keep their pods, first-seen times included.
        let again = folder.scan().expect("scan");
        assert_eq!(pods, again);
        // A changed file is a new pod; a removed one is gone.
        std::fs::write(dir.path().join("web.yaml"), POD.replace("busybox:1", "busybox:2"))
            .expect("write");
        std::fs::remove_file(dir.path().join("db.json")).expect("rm");
        let changed = folder.scan().expect("scan");
        assert_eq!(changed.len(), 1);
        assert_ne!(changed[0].metadata.uid, pods[1].metadata.uid);
    }

    #[test]
    fn a_missing_path_holds_no_pods_and_a_file_path_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(
            Folder::new(dir.path().join("nothing"), "n1".into()).scan().expect("scan").is_empty()
        );
        let file = dir.path().join("only.yaml");
        std::fs::write(&file, POD).expect("write");
        let pods = Folder::new(file, "n1".into()).scan().expect("scan");
        assert_eq!(pods.len(), 1);
    }
}
