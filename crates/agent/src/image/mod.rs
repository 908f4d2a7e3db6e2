//! The node's images: a content store shared by all pods. Each layer is unpacked once into
//! a directory of its own (`layers/<sha256>`); a container's root filesystem is an overlay
//! of its image's layers. Images come from archives (`krust image import`, and archives
//! placed in `<data-dir>/images/`, the airgap path) and from registries (`registry`).

pub mod archive;
pub mod gc;
pub mod layer;
pub mod reference;
pub mod registry;

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use reference::Reference;

/// A failure of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An archive is not one of the known formats, or is incomplete.
    #[error("cannot import {}: {message}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A layer could not be unpacked.
    #[error("cannot unpack layer {}: {message}", blob.display())]
    Layer {
        /// The layer's blob.
        blob: PathBuf,
        /// Why.
        message: String,
    },
    /// No image has this name or id.
    #[error("image {0:?} not found")]
    NotFound(String),
    /// A layer the image shares with one being removed went with it before the image was
    /// recorded; pulling again brings it back.
    #[error("layer {0} was removed while the image was added")]
    LayerGone(String),
}

/// What an image's config says about how its containers run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ImageConfig {
    /// The entrypoint.
    pub entrypoint: Option<Vec<String>>,
    /// The command (the entrypoint's arguments).
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` environment.
    pub env: Option<Vec<String>>,
    /// The working directory.
    pub working_dir: Option<String>,
    /// The user (`uid[:gid]` or a name).
    pub user: Option<String>,
    /// The signal that stops the container (`SIGTERM` when unset).
    pub stop_signal: Option<String>,
}

/// An image in the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    /// The config's digest (`sha256:...`): the image id.
    pub id: String,
    /// The normalised references that name it.
    pub names: Vec<String>,
    /// Its layers' ids (the sha256 of each layer blob), bottom first.
    pub layers: Vec<String>,
    /// Its config.
    pub config: ImageConfig,
    /// The bytes of its blobs.
    pub size: u64,
    /// The registry digests it was pulled by (`registry/repository@sha256:...`), newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
}

impl Image {
    /// What a container's status reports as its `imageID`: the image's repository digest
    /// when it came from a registry, its id otherwise (containerd's choice).
    pub fn status_id(&self) -> &str {
        self.repo_digests.first().unwrap_or(&self.id)
    }
}

/// An image's blobs as files, ready to go into the store.
#[derive(Debug)]
pub struct Blobs<'a> {
    /// The names it gets (normalised references).
    pub names: Vec<String>,
    /// The repository digest it was pulled by, if it came from a registry.
    pub repo_digest: Option<String>,
    /// The config blob.
    pub config: &'a Path,
    /// The layer blobs, bottom first, each with its digest and size when known (a
    /// registry's descriptor names them; a blob downloaded was checked against them).
    pub layers: Vec<(&'a Path, Option<(String, u64)>)>,
}

#[derive(Deserialize)]
struct ConfigBlob {
    #[serde(default)]
    config: ImageConfig,
}

/// The content store under one directory.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// The store at `root` (made if missing).
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        for dir in ["layers", "images", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(|source| ImageError::Io { path, source })?;
        }
        Ok(ImageStore { root: root.to_path_buf() })
    }

    /// Removes `tmp/*` and `*.partial-*` left by processes no longer running (their names
    /// carry the process id); the agent sweeps once as it starts.
    pub fn sweep(&self) {
        let dead = |name: &str| {
            let pid = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        };
        for dir in ["tmp", "layers", "images"] {
            for entry in fs::read_dir(self.root.join(dir)).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if (dir == "tmp" || name.contains(".partial-")) && dead(&name) {
                    let path = entry.path();
                    let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
                }
            }
        }
    }

    /// A unique name for a file or directory this process makes: `{prefix}-{pid}-{n}`.
    fn unique(prefix: &str) -> String {
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{prefix}-{}-{n}", std::process::id())
    }

    /// A fresh scratch directory under the store (same filesystem: unpacked layers are
    /// renamed into place), removed when the returned guard is dropped.
    pub fn scratch(&self, purpose: &str) -> Result<Scratch, ImageError> {
        let dir = self.root.join("tmp").join(ImageStore::unique(purpose));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|source| ImageError::Io { path: dir.clone(), source })?;
        Ok(Scratch(dir))
    }

    /// Holds the store's records still against other writers, in this process or another
    /// (`krust image` beside a running agent), until the returned file is dropped.
    fn lock_records(&self) -> Result<fs::File, ImageError> {
        let path = self.root.join("images.lock");
        let io = |source| ImageError::Io { path: path.clone(), source };
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io(e.into()))?;
        Ok(file)
    }

    /// Imports every image of a docker-save or OCI archive; returns them. An image an OCI
    /// layout names by a tag alone is named `BASE:TAG` with a `base_name` (as `ctr import
    /// --base-name`), else left without a name.
    pub fn import(&self, file: &Path, base_name: Option<&str>) -> Result<Vec<Image>, ImageError> {
        let scratch = self.scratch("import")?;
        self.import_from(file, scratch.path(), base_name)
    }

    fn import_from(
        &self,
        file: &Path,
        scratch: &Path,
        base_name: Option<&str>,
    ) -> Result<Vec<Image>, ImageError> {
        let mut imported = Vec::new();
        for found in archive::read(file, scratch)? {
            let tagged = match (base_name, &found.tag) {
                (Some(base), Some(tag)) => Some(format!("{base}:{tag}")),
                (None, Some(tag)) => {
                    tracing::warn!(archive = %file.display(), tag, "an image named by a tag alone is imported without a name (give a base name)");
                    None
                }
                _ => None,
            };
            let names = found
                .names
                .iter()
                .chain(&tagged)
                .filter_map(|n| Reference::parse(n))
                .map(|r| r.to_string())
                .collect();
            let blobs = Blobs {
                names,
                repo_digest: None,
                config: &found.config,
                layers: found.layers.iter().map(|l| (l.as_path(), None)).collect(),
            };
            imported.push(self.add(&blobs).map_err(|e| match e {
                ImageError::Archive { message, .. } => {
                    ImageError::Archive { path: file.to_path_buf(), message }
                }
                other => other,
            })?);
        }
        Ok(imported)
    }

    /// Whether the layer with this blob digest is unpacked already.
    pub fn has_layer(&self, digest: &str) -> bool {
        is_sha256(digest) && self.layer_dir(digest).is_dir()
    }

    /// Adds an image from its blobs: unpacks the layers not yet in the store and records
    /// the image under its names (taken from any image that had them).
    pub fn add(&self, blobs: &Blobs<'_>) -> Result<Image, ImageError> {
        let mut layers = Vec::new();
        let mut size = 0;
        for (blob, known) in &blobs.layers {
            let digest = match known {
                Some((digest, bytes)) if self.has_layer(digest) => {
                    size += bytes;
                    digest.clone()
                }
                _ => {
                    let (digest, bytes) = sha256_file(blob)?;
                    size += bytes;
                    self.unpack_layer(blob, &digest)?;
                    digest
                }
            };
            layers.push(digest);
        }
        let (id, config_size) = sha256_file(blobs.config)?;
        size += config_size;
        let raw = fs::read(blobs.config)
            .map_err(|source| ImageError::Io { path: blobs.config.to_path_buf(), source })?;
        let config = serde_json::from_slice::<ConfigBlob>(&raw)
            .map_err(|e| ImageError::Archive {
                path: blobs.config.to_path_buf(),
                message: format!("image config: {e}"),
            })?
            .config;
        let repo_digests = blobs.repo_digest.iter().cloned().collect();
        let image = Image { id, names: blobs.names.clone(), layers, config, size, repo_digests };
        self.save(&image)
    }

    /// Unpacks a layer blob into its directory, unless another pull got there first.
    fn unpack_layer(&self, blob: &Path, digest: &str) -> Result<(), ImageError> {
        let dir = self.layer_dir(digest);
        if dir.exists() {
            return Ok(());
        }
        let partial = dir.with_extension(ImageStore::unique("partial"));
        let _ = fs::remove_dir_all(&partial);
        if let Err(e) = layer::unpack(blob, &partial) {
            let _ = fs::remove_dir_all(&partial);
            return Err(e);
        }
        if let Err(source) = fs::rename(&partial, &dir) {
            let _ = fs::remove_dir_all(&partial);
            if !dir.is_dir() {
                return Err(ImageError::Io { path: dir, source });
            }
        }
        Ok(())
    }

    /// Records `image`, taking its names away from any other image; returns it as stored
    /// (with the names and repository digests it had before).
    fn save(&self, image: &Image) -> Result<Image, ImageError> {
        let _held = self.lock_records()?;
        // A layer found in the store may have been removed since, with the last image that
        // used it (see `remove`, which holds the same lock).
        if let Some(gone) = image.layers.iter().find(|l| !self.layer_dir(l).is_dir()) {
            return Err(ImageError::LayerGone(gone.clone()));
        }
        for mut other in self.list()? {
            if other.id != image.id && other.names.iter().any(|n| image.names.contains(n)) {
                other.names.retain(|n| !image.names.contains(n));
                self.write(&other)?;
            }
        }
        let mut merged = image.clone();
        if let Ok(existing) = self.read(&image.id) {
            for name in existing.names {
                if !merged.names.contains(&name) {
                    merged.names.push(name);
                }
            }
            for digest in existing.repo_digests {
                if !merged.repo_digests.contains(&digest) {
                    merged.repo_digests.push(digest);
                }
            }
        }
        self.write(&merged)?;
        Ok(merged)
    }

    fn write(&self, image: &Image) -> Result<(), ImageError> {
        let path = self.image_file(&image.id);
        let partial = path.with_extension(ImageStore::unique("partial"));
        let raw = serde_json::to_vec_pretty(image)
            .map_err(|e| ImageError::Io { path: path.clone(), source: e.into() })?;
        fs::write(&partial, raw)
            .map_err(|source| ImageError::Io { path: partial.clone(), source })?;
        fs::rename(&partial, &path).map_err(|source| {
            let _ = fs::remove_file(&partial);
            ImageError::Io { path, source }
        })
    }

    fn read(&self, id: &str) -> Result<Image, ImageError> {
        let path = self.image_file(id);
        let raw = fs::read(&path).map_err(|_| ImageError::NotFound(id.to_string()))?;
        serde_json::from_slice(&raw).map_err(|e| ImageError::Io { path, source: e.into() })
    }

    /// Every image in the store.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let dir = self.root.join("images");
        let entries =
            fs::read_dir(&dir).map_err(|source| ImageError::Io { path: dir.clone(), source })?;
        let mut images = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Ok(raw) = fs::read(&path)
                && let Ok(image) = serde_json::from_slice::<Image>(&raw)
            {
                images.push(image);
            }
        }
        images.sort_by(|a, b| a.names.cmp(&b.names).then(a.id.cmp(&b.id)));
        Ok(images)
    }

    /// The image a pod's `image` field names: by normalised reference, or by id.
    pub fn resolve(&self, wanted: &str) -> Result<Image, ImageError> {
        let images = self.list()?;
        find(&images, wanted).cloned().ok_or_else(|| ImageError::NotFound(wanted.to_string()))
    }

    /// Removes the image a name or id resolves to, and the layers no other image uses.
    pub fn remove(&self, wanted: &str) -> Result<Image, ImageError> {
        let _held = self.lock_records()?;
        let image = self.resolve(wanted)?;
        let path = self.image_file(&image.id);
        fs::remove_file(&path).map_err(|source| ImageError::Io { path, source })?;
        let in_use: Vec<String> = self.list()?.into_iter().flat_map(|i| i.layers).collect();
        for layer in image.layers.iter().filter(|l| is_sha256(l)) {
            if !in_use.contains(layer) {
                let _ = fs::remove_dir_all(self.layer_dir(layer));
            }
        }
        Ok(image)
    }

    /// The unpacked layers of `image`, topmost first (overlayfs' `lowerdir` order).
    pub fn layer_dirs(&self, image: &Image) -> Vec<PathBuf> {
        image.layers.iter().rev().map(|l| self.layer_dir(l)).collect()
    }

    fn layer_dir(&self, digest: &str) -> PathBuf {
        self.root.join("layers").join(digest.trim_start_matches("sha256:"))
    }

    fn image_file(&self, id: &str) -> PathBuf {
        self.root.join("images").join(format!("{}.json", id.trim_start_matches("sha256:")))
    }
}

/// The image of `images` that `wanted` names, as [`ImageStore::resolve`] finds it: by
/// normalised reference, by repository digest, or by id (or an id prefix of 12 or more).
pub fn find<'a>(images: &'a [Image], wanted: &str) -> Option<&'a Image> {
    let by_id = |id: &str| {
        images.iter().find(|i| i.id == id || i.id.trim_start_matches("sha256:").starts_with(id))
    };
    if let Some(reference) = Reference::parse(wanted) {
        let full = reference.to_string();
        let pinned = reference.digest.as_ref().map(|d| format!("{}@{d}", reference.name()));
        if let Some(image) = images.iter().find(|i| {
            i.names.contains(&full) || pinned.as_ref().is_some_and(|p| i.repo_digests.contains(p))
        }) {
            return Some(image);
        }
        if let Some(image) = reference.digest.as_deref().and_then(by_id) {
            return Some(image);
        }
    }
    if wanted.len() >= 12 { by_id(wanted) } else { None }
}

/// A scratch directory, removed with what it holds when dropped (a pull cancelled halfway
/// leaves nothing behind).
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits: the only digests that name
/// files in the store (anything else could climb out of it).
pub fn is_sha256(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The `sha256:<hex>` digest of a file and its size.
fn sha256_file(path: &Path) -> Result<(String, u64), ImageError> {
    let io = |source| ImageError::Io { path: path.to_path_buf(), source };
    let mut file = fs::File::open(path).map_err(io)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        context.update(&buffer[..n]);
    }
    Ok((digest_string(context.finish().as_ref()), size))
}

/// The `sha256:<hex>` digest of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    digest_string(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// A SHA-256 sum written as a digest (`sha256:<hex>`).
fn digest_string(sum: &[u8]) -> String {
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}
