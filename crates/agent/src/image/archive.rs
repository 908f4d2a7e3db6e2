//! Image archives: `docker save` output (`manifest.json`) and OCI image layouts in a tar
//! (`index.json`, `blobs/sha256/...`), as `skopeo copy` and `umoci` write them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ImageError;
use super::registry::manifest;

/// One image found in an archive: its names, its config and its layers, all as files in
/// the unpacked archive.
#[derive(Debug)]
pub struct ArchivedImage {
    /// The names the archive gives it (may be empty for an unnamed OCI manifest).
    pub names: Vec<String>,
    /// A tag alone that an OCI layout gives it (`org.opencontainers.image.ref.name` without
    /// a repository, as umoci and skopeo write it): a name only after a base name.
    pub tag: Option<String>,
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
                    tag: None,
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
            let annotation = |key: &str| descriptor.annotations.get(key).cloned();
            let (names, tag) = match (
                annotation("io.containerd.image.name"),
                annotation("org.opencontainers.image.ref.name"),
            ) {
                (Some(name), _) => (vec![name], None),
                (None, Some(tag)) if !tag.contains(['/', ':', '@']) => (Vec::new(), Some(tag)),
                (None, Some(name)) => (vec![name], None),
                (None, None) => (Vec::new(), None),
            };
            let (config, layers) = platform_image(dir, &descriptor.digest, &descriptor.media_type)?;
            images.push(ArchivedImage {
                names,
                tag,
                config: blob(dir, &config).ok_or_else(|| bad(format!("no blob {config}")))?,
                layers: layers
                    .iter()
                    .map(|l| blob(dir, l).ok_or_else(|| bad(format!("no blob {l}"))))
                    .collect::<Result<_, _>>()?,
            });
        }
        return Ok(images);
    }
    Err(bad("neither a docker-save archive (manifest.json) nor an OCI layout (index.json)".into()))
}

/// The config and layer digests of the image `digest` names in the layout at `dir`: the
/// manifest itself, or this node's platform of a multi-platform index (among the platforms
/// the archive holds: `docker save --platform` keeps the index of them all).
fn platform_image(
    dir: &Path,
    digest: &str,
    media_type: &str,
) -> Result<(String, Vec<String>), ImageError> {
    let bad = |message: String| ImageError::Archive { path: dir.to_path_buf(), message };
    let read = |digest: &str| {
        let path = blob(dir, digest).ok_or_else(|| bad(format!("no blob {digest}")))?;
        fs::read(&path).map_err(|e| bad(e.to_string()))
    };
    // An image's manifest, or an index, or (in a nested index) both again, one level deep.
    let mut wanted = (digest.to_string(), media_type.to_string());
    for _ in 0..2 {
        let raw = read(&wanted.0)?;
        match manifest::parse(&raw, &wanted.1)
            .map_err(|e| bad(format!("manifest {}: {e}", wanted.0)))?
        {
            manifest::Fetched::Image { config, layers } => {
                return Ok((config.digest, layers.into_iter().map(|l| l.digest).collect()));
            }
            manifest::Fetched::Index(entries) => {
                let present: Vec<_> =
                    entries.into_iter().filter(|e| blob(dir, &e.digest).is_some()).collect();
                let host = manifest::host_platform();
                let entry = manifest::choose(&present, &host).ok_or_else(|| {
                    bad(format!(
                        "no image for this node's platform ({}/{}) in the index {}",
                        host.os, host.architecture, wanted.0
                    ))
                })?;
                wanted = (entry.digest.clone(), entry.media_type.clone());
            }
        }
    }
    Err(bad(format!("an index inside an index inside {digest}")))
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An OCI layout with `blobs` (each written under its digest) and `index`, as a tar.
    fn layout(blobs: &[Vec<u8>], index: serde_json::Value, dir: &Path) -> PathBuf {
        let root = dir.join("layout");
        fs::create_dir_all(root.join("blobs/sha256")).expect("blobs dir");
        for blob in blobs {
            let digest = crate::image::sha256_hex(blob);
            fs::write(root.join("blobs/sha256").join(&digest["sha256:".len()..]), blob)
                .expect("blob");
        }
        fs::write(root.join("index.json"), index.to_string()).expect("index");
        fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("marker");
        let file = dir.join("layout.tar");
        let mut tar = tar::Builder::new(fs::File::create(&file).expect("tar file"));
        tar.append_dir_all(".", &root).expect("tar");
        tar.finish().expect("tar end");
        file
    }

    fn digest(blob: &[u8]) -> String {
        crate::image::sha256_hex(blob)
    }

    /// One platform's config and manifest (sharing `layer`).
    fn platform(arch: &str, layer: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let config = json!({"architecture": arch, "os": "linux", "config": {"Cmd": [arch]}})
            .to_string()
            .into_bytes();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest(layer), "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        (config, manifest)
    }

    #[test]
    fn a_layouts_reference_names_are_names_or_tags() {
        let tmp = tempfile::tempdir().expect("tmp");
        let layer = b"layer".to_vec();
        let (config, manifest) = platform(&manifest::host_platform().architecture, &layer);
        let entry = |name: &str| {
            json!({"mediaType": manifest::OCI_MANIFEST, "digest": digest(&manifest),
                   "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": name}})
        };
        let index =
            json!({"schemaVersion": 2, "manifests": [entry("1.0"), entry("example.com/app:2")]});
        let file = layout(&[layer, config, manifest.clone()], index, tmp.path());
        let images = read(&file, &tmp.path().join("out")).expect("read");
        assert_eq!((images[0].names.len(), images[0].tag.as_deref()), (0, Some("1.0")));
        assert_eq!(
            (images[1].names.clone(), images[1].tag.clone()),
            (vec!["example.com/app:2".to_string()], None)
        );
    }

    #[test]
    fn a_multi_platform_layout_gives_this_nodes_platform() {
        let tmp = tempfile::tempdir().expect("tmp");
        let layer = b"layer".to_vec();
        let host = manifest::host_platform();
        let other = if host.architecture == "arm64" { "amd64" } else { "arm64" };
        let (host_config, host_manifest) = platform(&host.architecture, &layer);
        let (other_config, other_manifest) = platform(other, &layer);
        let entry = |m: &[u8], arch: &str| {
            json!({"mediaType": manifest::OCI_MANIFEST, "digest": digest(m), "size": m.len(),
                   "platform": {"architecture": arch, "os": "linux"}})
        };
        let nested = json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": [
            entry(&other_manifest, other), entry(&host_manifest, &host.architecture)]})
        .to_string()
        .into_bytes();
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": manifest::OCI_INDEX, "digest": digest(&nested), "size": nested.len(),
            "annotations": {"io.containerd.image.name": "example.com/app:1"}}]});
        let blobs = [
            layer.clone(),
            host_config.clone(),
            host_manifest,
            other_config,
            other_manifest,
            nested.clone(),
        ];
        let file = layout(&blobs, index.clone(), tmp.path());
        let images = read(&file, &tmp.path().join("out")).expect("read");
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].names, ["example.com/app:1"]);
        assert_eq!(fs::read(&images[0].config).expect("config"), host_config);
        assert_eq!(images[0].layers.len(), 1);

        // An archive without this node's platform says so.
        let tmp = tempfile::tempdir().expect("tmp");
        let (config, only_other) = platform(other, &layer);
        let nested = json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX,
                            "manifests": [entry(&only_other, other)]})
        .to_string()
        .into_bytes();
        let index = json!({"schemaVersion": 2, "manifests": [{
            "mediaType": manifest::OCI_INDEX, "digest": digest(&nested), "size": nested.len()}]});
        let file = layout(&[layer, config, only_other, nested], index, tmp.path());
        let error = read(&file, &tmp.path().join("out")).expect_err("no platform").to_string();
        assert!(error.contains("no image for this node's platform"), "{error}");
    }
}
