//! Image archives: `docker save` output (`manifest.json`) and OCI image layouts in a tar
//! (`index.json`, `blobs/sha256/...`), as `skopeo copy` and `umoci` write them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ImageError;

/// One image found in an archive: its names, its config and its layers, all as files in
/// the unpacked archive.
#[derive(Debug)]
pub struct ArchivedImage {
    /// The names the archive gives it (may be empty for an unnamed OCI manifest).
    pub names: Vec<String>,
    /// The config blob.
    pub config: PathBuf,
    /// The layer blobs, bottom first.
    pub layers: Vec<PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct OciIndex {
    #[serde(default)]
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
struct OciDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct OciManifest {
    config: OciDescriptor,
    layers: Vec<OciDescriptor>,
}

/// Unpacks the archive at `file` into `dir` (a fresh directory) and lists its images.
pub fn read(file: &Path, dir: &Path) -> Result<Vec<ArchivedImage>, ImageError> {
    let bad = |message: String| ImageError::Archive { path: file.to_path_buf(), message };
    let handle = fs::File::open(file)
        .map_err(|source| ImageError::Io { path: file.to_path_buf(), source })?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(handle));
    archive.set_preserve_permissions(false);
    archive.unpack(dir).map_err(|e| bad(format!("not a tar archive: {e}")))?;
    if dir.join("manifest.json").exists() {
        let raw = fs::read(dir.join("manifest.json")).map_err(|e| bad(e.to_string()))?;
        let manifests: Vec<DockerManifest> =
            serde_json::from_slice(&raw).map_err(|e| bad(format!("manifest.json: {e}")))?;
        return manifests
            .into_iter()
            .map(|m| {
                Ok(ArchivedImage {
                    names: m.repo_tags.unwrap_or_default(),
                    config: inside(dir, &m.config)
                        .ok_or_else(|| bad(format!("no file {}", m.config)))?,
                    layers: m
                        .layers
                        .iter()
                        .map(|l| inside(dir, l).ok_or_else(|| bad(format!("no file {l}"))))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect();
    }
    if dir.join("index.json").exists() {
        let raw = fs::read(dir.join("index.json")).map_err(|e| bad(e.to_string()))?;
        let index: OciIndex =
            serde_json::from_slice(&raw).map_err(|e| bad(format!("index.json: {e}")))?;
        let mut images = Vec::new();
        for descriptor in index.manifests {
            if descriptor.media_type.contains("index")
                || descriptor.media_type.contains("manifest.list")
            {
                return Err(bad(
                    "multi-platform indexes are not supported yet; save one platform".into()
                ));
            }
            let manifest_path = blob(dir, &descriptor.digest)
                .ok_or_else(|| bad(format!("no blob {}", descriptor.digest)))?;
            let raw = fs::read(&manifest_path).map_err(|e| bad(e.to_string()))?;
            let manifest: OciManifest = serde_json::from_slice(&raw)
                .map_err(|e| bad(format!("manifest {}: {e}", descriptor.digest)))?;
            let names = ["io.containerd.image.name", "org.opencontainers.image.ref.name"]
                .iter()
                .filter_map(|k| descriptor.annotations.get(*k).cloned())
                .take(1)
                .collect();
            images.push(ArchivedImage {
                names,
                config: blob(dir, &manifest.config.digest)
                    .ok_or_else(|| bad(format!("no blob {}", manifest.config.digest)))?,
                layers: manifest
                    .layers
                    .iter()
                    .map(|l| {
                        blob(dir, &l.digest).ok_or_else(|| bad(format!("no blob {}", l.digest)))
                    })
                    .collect::<Result<_, _>>()?,
            });
        }
        return Ok(images);
    }
    Err(bad("neither a docker-save archive (manifest.json) nor an OCI layout (index.json)".into()))
}

/// `name` under `dir`, if it names a file there (and does not climb out).
fn inside(dir: &Path, name: &str) -> Option<PathBuf> {
    let relative = Path::new(name);
    if relative.is_absolute()
        || relative.components().any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return None;
    }
    let path = dir.join(relative);
    path.is_file().then_some(path)
}

fn blob(dir: &Path, digest: &str) -> Option<PathBuf> {
    let (algorithm, hex) = digest.split_once(':')?;
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    inside(dir, &format!("blobs/{algorithm}/{hex}"))
}
