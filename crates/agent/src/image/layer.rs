//! Unpacking one image layer into a directory that overlayfs can stack: the layer's
//! whiteouts (`.wh.NAME`, `.wh..wh..opq`) become overlay whiteouts (a 0/0 character
//! device) and opaque directories (`trusted.overlay.opaque=y`).

use std::fs;
use std::io::{BufReader, Read};
use std::path::{Component, Path};

use nix::sys::stat::{Mode, SFlag};

use super::ImageError;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks the layer tar (gzip-compressed or not) read from `blob` into `dir`.
pub fn unpack(blob: &Path, dir: &Path) -> Result<(), ImageError> {
    let io = |source| ImageError::Io { path: blob.to_path_buf(), source };
    let mut file = BufReader::new(fs::File::open(blob).map_err(io)?);
    let mut magic = [0u8; 2];
    let compressed = {
        use std::io::BufRead;
        let head = file.fill_buf().map_err(io)?;
        if head.len() >= 2 {
            magic.copy_from_slice(&head[..2]);
        }
        magic == [0x1f, 0x8b]
    };
    let reader: Box<dyn Read> =
        if compressed { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
    fs::create_dir_all(dir).map_err(|source| ImageError::Io { path: dir.to_path_buf(), source })?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    let bad =
        |e: std::io::Error| ImageError::Layer { blob: blob.to_path_buf(), message: e.to_string() };
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            continue;
        }
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            entry.unpack_in(dir).map_err(bad)?;
            continue;
        };
        let parent = dir.join(path.parent().unwrap_or(Path::new("")));
        if file_name == OPAQUE {
            fs::create_dir_all(&parent).map_err(bad)?;
            rustix::fs::setxattr(
                &parent,
                "trusted.overlay.opaque",
                b"y",
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|e| bad(e.into()))?;
        } else if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            fs::create_dir_all(&parent).map_err(bad)?;
            let target = parent.join(hidden);
            let _ = fs::remove_dir_all(&target).or_else(|_| fs::remove_file(&target));
            nix::sys::stat::mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|e| bad(e.into()))?;
        } else {
            entry.unpack_in(dir).map_err(bad)?;
        }
    }
    Ok(())
}
