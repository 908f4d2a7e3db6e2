//! A pod's volumes on the node: `emptyDir` (a tmpfs for `medium: Memory`), `hostPath` with
//! its type checks, a claim's `hostPath` or `local` volume, and the files of `configMap`,
//! `secret`, `downwardAPI` and `projected` volumes, written as upstream's atomic writer
//! writes them, with their modes (`defaultMode`, each item's `mode`) and the pod's
//! `fsGroup` as their group.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, KeyToPath, Pod, Volume};

use super::container::{self, Context};
use super::sources::{Kind, Sources};
use crate::host::Host;

/// The mode of a volume's files when the volume does not say (upstream's
/// `defaultMode`: 0644).
const DEFAULT_MODE: u32 = 0o644;
/// What `fsGroup` adds to the files of a read-only volume (upstream's `roMask`), and to
/// its directories with setgid and search (`execMask`).
const FS_GROUP_FILE_BITS: u32 = 0o440;
const FS_GROUP_DIR_BITS: u32 = 0o2550;

/// One file of a volume made of files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFile {
    /// Its path in the volume (relative).
    pub path: String,
    /// Its content.
    pub data: Vec<u8>,
    /// Its permission bits.
    pub mode: u32,
}

/// Makes the pod's volumes and returns each one's host directory, or why one cannot be
/// made. `allocatable`: the node's CPU (millicores) and memory (bytes), for
/// `resourceFieldRef` items of limits not set.
pub fn volumes(
    dir: &Path,
    pod: &Pod,
    sources: &Sources,
    host: &dyn Host,
    allocatable: (u64, u64),
) -> Result<HashMap<String, PathBuf>, String> {
    let mut made = HashMap::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let fs_group =
        spec.security_context.as_ref().and_then(|s| s.fs_group).and_then(|g| u32::try_from(g).ok());
    for volume in spec.volumes.iter().flatten() {
        let path = volume_dir(dir, volume, pod, sources, host, fs_group, allocatable)
            .map_err(|e| format!("MountVolume.SetUp failed for volume {:?} : {e}", volume.name))?;
        made.insert(volume.name.clone(), path);
    }
    Ok(made)
}

/// Makes one volume; its host directory.
fn volume_dir(
    dir: &Path,
    volume: &Volume,
    pod: &Pod,
    sources: &Sources,
    host: &dyn Host,
    fs_group: Option<u32>,
    allocatable: (u64, u64),
) -> Result<PathBuf, String> {
    let path = dir.join("volumes").join(&volume.name);
    if let Some(empty) = &volume.empty_dir {
        fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        if empty.medium.as_deref() == Some("Memory") && !host.is_mount_point(&path) {
            let size = empty
                .size_limit
                .as_ref()
                .and_then(|q| krust_api::quantity::Amount::of(q).ok())
                .map(|a| a.value() as u64);
            host.mount_tmpfs(&path, size).map_err(|e| e.to_string())?;
        }
        // World-writable, as upstream's; with an fsGroup, owned by the group and setgid
        // so that what the containers make there keeps it.
        let mode = match fs_group {
            Some(gid) => {
                std::os::unix::fs::lchown(&path, None, Some(gid)).map_err(|e| e.to_string())?;
                0o2777
            }
            None => 0o777,
        };
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode(mode));
        Ok(path)
    } else if let Some(host_path) = &volume.host_path {
        let path = PathBuf::from(&host_path.path);
        check_host_path(&path, host_path.type_.as_deref().unwrap_or(""))?;
        Ok(path)
    } else if let Some(claim) = &volume.persistent_volume_claim {
        let host_path = sources.claim(&claim.claim_name)?;
        if !host_path.exists() {
            return Err(format!(
                "the volume of persistentvolumeclaim {:?} is missing on this node: {}",
                claim.claim_name,
                host_path.display()
            ));
        }
        Ok(host_path.to_path_buf())
    } else {
        let context = Context { allocatable, ..Context::default() };
        let files = files_of(volume, pod, sources, &context)?;
        write_atomically(&path, &files, fs_group)?;
        Ok(path)
    }
}

/// Checks (or makes) a `hostPath` volume's path as its `type` says.
fn check_host_path(path: &Path, type_: &str) -> Result<(), String> {
    let shown = path.display();
    let file_type = fs::metadata(path).map(|m| m.file_type());
    let is = |test: fn(&fs::FileType) -> bool| file_type.as_ref().is_ok_and(test);
    let failed = |what: &str| Err(format!("hostPath type check failed: {shown} is not a {what}"));
    match type_ {
        "DirectoryOrCreate" if !is(fs::FileType::is_dir) => {
            fs::create_dir_all(path).map_err(|e| e.to_string())?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())
        }
        "FileOrCreate" if file_type.is_err() => {
            fs::write(path, b"").map_err(|e| e.to_string())?;
            fs::set_permissions(path, fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())
        }
        "Directory" if !is(fs::FileType::is_dir) => failed("directory"),
        "File" if !is(fs::FileType::is_file) => failed("file"),
        "Socket" if !is(FileTypeExt::is_socket) => failed("socket"),
        "CharDevice" if !is(FileTypeExt::is_char_device) => failed("character device"),
        "BlockDevice" if !is(FileTypeExt::is_block_device) => failed("block device"),
        "" | "DirectoryOrCreate" | "FileOrCreate" | "Directory" | "File" | "Socket"
        | "CharDevice" | "BlockDevice" => Ok(()),
        other => Err(format!("hostPath type {other:?} is not supported")),
    }
}

/// The files of a `configMap`, `secret`, `downwardAPI` or `projected` volume.
fn files_of(
    volume: &Volume,
    pod: &Pod,
    sources: &Sources,
    context: &Context,
) -> Result<Vec<VolumeFile>, String> {
    let keyed = |kind: Kind,
                 name: &str,
                 items: &Option<Vec<KeyToPath>>,
                 optional: bool,
                 default_mode: Option<i32>|
     -> Result<Vec<VolumeFile>, String> {
        let default_mode = mode_of(default_mode, DEFAULT_MODE);
        let Some(data) = sources.get(kind, name) else {
            if optional {
                return Ok(Vec::new());
            }
            let kind = if kind == Kind::ConfigMap { "configmap" } else { "secret" };
            return Err(format!("{kind} \"{name}\" not found"));
        };
        let Some(items) = items else {
            return Ok(data
                .iter()
                .map(|(k, v)| VolumeFile { path: k.clone(), data: v.clone(), mode: default_mode })
                .collect());
        };
        let mut chosen = Vec::new();
        for item in items {
            match data.get(&item.key) {
                Some(v) => chosen.push(VolumeFile {
                    path: item.path.clone(),
                    data: v.clone(),
                    mode: mode_of(item.mode, default_mode),
                }),
                None if optional => {}
                None => {
                    return Err(format!(
                        "configmap references non-existent config key: {}",
                        item.key
                    ));
                }
            }
        }
        Ok(chosen)
    };
    let mut files = Vec::new();
    if let Some(cm) = &volume.config_map {
        files.extend(keyed(
            Kind::ConfigMap,
            &cm.name,
            &cm.items,
            cm.optional.unwrap_or(false),
            cm.default_mode,
        )?);
    } else if let Some(secret) = &volume.secret {
        files.extend(keyed(
            Kind::Secret,
            secret.secret_name.as_deref().unwrap_or(""),
            &secret.items,
            secret.optional.unwrap_or(false),
            secret.default_mode,
        )?);
    } else if let Some(downward) = &volume.downward_api {
        let default_mode = mode_of(downward.default_mode, DEFAULT_MODE);
        files.extend(downward_files(pod, downward.items.iter().flatten(), default_mode, context)?);
    } else if let Some(projected) = &volume.projected {
        let default_mode = projected.default_mode;
        for source in projected.sources.iter().flatten() {
            if let Some(cm) = &source.config_map {
                let optional = cm.optional.unwrap_or(false);
                files.extend(keyed(Kind::ConfigMap, &cm.name, &cm.items, optional, default_mode)?);
            }
            if let Some(s) = &source.secret {
                let optional = s.optional.unwrap_or(false);
                files.extend(keyed(Kind::Secret, &s.name, &s.items, optional, default_mode)?);
            }
            if let Some(t) = &source.service_account_token {
                let token = sources
                    .token(
                        t.audience.as_deref().unwrap_or_default(),
                        t.expiration_seconds.unwrap_or(3600),
                    )
                    .ok_or_else(|| "no service account token for the pod yet".to_string())?;
                files.push(VolumeFile {
                    path: t.path.clone(),
                    data: token.as_bytes().to_vec(),
                    mode: mode_of(default_mode, DEFAULT_MODE),
                });
            }
            if let Some(downward) = &source.downward_api {
                let default_mode = mode_of(default_mode, DEFAULT_MODE);
                files.extend(downward_files(
                    pod,
                    downward.items.iter().flatten(),
                    default_mode,
                    context,
                )?);
            }
        }
    } else {
        // Kinds of volume the agent does not serve yet (CSI, ...) are reported, not
        // silently empty.
        return Err(format!(
            "volume {:?}: this kind of volume is not supported by the node agent yet",
            volume.name
        ));
    }
    Ok(files)
}

/// A mode from the API (`defaultMode`, `mode`), else `default`.
fn mode_of(mode: Option<i32>, default: u32) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok()).map_or(default, |m| m & 0o7777)
}

/// The files of `downwardAPI` items (volume or projection): each `fieldRef`'s value, or
/// each `resourceFieldRef`'s (of the container it names).
fn downward_files<'a>(
    pod: &Pod,
    items: impl Iterator<Item = &'a DownwardAPIVolumeFile>,
    default_mode: u32,
    context: &Context,
) -> Result<Vec<VolumeFile>, String> {
    let mut files = Vec::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            container::field_value(pod, &field.field_path, context).map_err(|e| e.0)?
        } else if let Some(resource) = &item.resource_field_ref {
            let name = resource.container_name.as_deref().unwrap_or_default();
            let target = container::named(pod, name).ok_or_else(|| {
                format!("downwardAPI item {:?}: container {name:?} not found", item.path)
            })?;
            container::resource_value(
                target,
                &resource.resource,
                resource.divisor.as_ref(),
                context,
            )
            .map_err(|e| e.0)?
        } else {
            continue;
        };
        files.push(VolumeFile {
            path: item.path.clone(),
            data: value.into_bytes(),
            mode: mode_of(item.mode, default_mode),
        });
    }
    Ok(files)
}

/// The mode `file` gets with the pod's `fs_group`.
fn final_mode(file: &VolumeFile, fs_group: Option<u32>) -> u32 {
    if fs_group.is_some() { file.mode | FS_GROUP_FILE_BITS } else { file.mode }
}

/// Whether `data` holds exactly `files`, with their modes.
fn holds(data: &Path, files: &[VolumeFile], fs_group: Option<u32>) -> bool {
    fn count(dir: &Path) -> usize {
        fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| if e.file_type().is_ok_and(|t| t.is_dir()) { count(&e.path()) } else { 1 })
            .sum()
    }
    data.exists()
        && count(data) == files.len()
        && files.iter().all(|f| {
            let path = data.join(&f.path);
            fs::metadata(&path).is_ok_and(|m| {
                m.mode() & 0o7777 == final_mode(f, fs_group)
                    && fs_group.is_none_or(|gid| m.gid() == gid)
            }) && fs::read(&path).is_ok_and(|b| b == f.data)
        })
}

/// Writes `files` as upstream's atomic writer does: into a fresh timestamped directory,
/// then `..data` is swapped to it in one rename, and each top-level name links through it.
/// With an `fs_group`, the files and directories belong to that group and it may read
/// them. Nothing is written when the files are already there as given.
pub fn write_atomically(
    dir: &Path,
    files: &[VolumeFile],
    fs_group: Option<u32>,
) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    if holds(&dir.join("..data"), files, fs_group) {
        return Ok(());
    }
    let version = format!("..{}", chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S.%9f"));
    let staged = dir.join(&version);
    fs::create_dir_all(&staged).map_err(|e| e.to_string())?;
    let own = |path: &Path, mode: u32| -> Result<(), String> {
        if let Some(gid) = fs_group {
            std::os::unix::fs::lchown(path, None, Some(gid)).map_err(|e| e.to_string())?;
        }
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| e.to_string())
    };
    let dir_mode = if fs_group.is_some() { 0o755 | FS_GROUP_DIR_BITS } else { 0o755 };
    for file in files {
        let path = &file.path;
        if path.is_empty() || Path::new(path).is_absolute() || path.split('/').any(|p| p == "..") {
            return Err(format!("invalid path {path:?} in volume"));
        }
        let target = staged.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(|e| e.to_string())?;
            let mut at = parent;
            while at.starts_with(&staged) {
                own(at, dir_mode)?;
                let Some(up) = at.parent() else { break };
                at = up;
            }
        }
        fs::write(&target, &file.data).map_err(|e| e.to_string())?;
        own(&target, final_mode(file, fs_group))?;
    }
    own(dir, dir_mode)?;
    let old = fs::read_link(dir.join("..data")).ok();
    let link = dir.join("..data_tmp");
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(&version, &link).map_err(|e| e.to_string())?;
    fs::rename(&link, dir.join("..data")).map_err(|e| e.to_string())?;
    for file in files {
        let top = file.path.split('/').next().unwrap_or(&file.path);
        let entry = dir.join(top);
        if fs::symlink_metadata(&entry).is_err() {
            std::os::unix::fs::symlink(format!("..data/{top}"), &entry)
                .map_err(|e| e.to_string())?;
        }
    }
    if let Some(old) = old
        && old != Path::new(&version)
    {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, data: &str, mode: u32) -> VolumeFile {
        VolumeFile { path: path.into(), data: data.into(), mode }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").mode() & 0o7777
    }

    #[test]
    fn files_get_their_modes_and_the_fs_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("v");
        let files = [file("run.sh", "echo hi", 0o755), file("conf/app.yaml", "a: 1", 0o400)];
        write_atomically(&volume, &files, None).expect("written");
        assert_eq!(mode(&volume.join("run.sh")), 0o755);
        assert_eq!(mode(&volume.join("conf/app.yaml")), 0o400);
        assert_eq!(fs::read_to_string(volume.join("conf/app.yaml")).expect("read"), "a: 1");
        // A new mode alone rewrites the files.
        let files = [file("run.sh", "echo hi", 0o700), file("conf/app.yaml", "a: 1", 0o400)];
        write_atomically(&volume, &files, None).expect("written");
        assert_eq!(mode(&volume.join("run.sh")), 0o700);
        // With an fsGroup, the group owns them and may read them (upstream: 0400 -> 0440).
        let gid = 4321;
        write_atomically(&volume, &files, Some(gid)).expect("written");
        let conf = volume.join("conf/app.yaml");
        assert_eq!(mode(&conf), 0o440);
        assert_eq!(fs::metadata(&conf).expect("metadata").gid(), gid);
        let conf_dir = fs::canonicalize(volume.join("conf")).expect("dir");
        assert_eq!(mode(&conf_dir) & 0o2000, 0o2000);
        assert!(holds(&volume.join("..data"), &files, Some(gid)));
    }

    #[test]
    fn paths_out_of_the_volume_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            let error = write_atomically(&dir.path().join("v"), &[file(bad, "", 0o644)], None);
            assert!(error.is_err(), "{bad}");
        }
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = dir.path().join("made");
        check_host_path(&made, "DirectoryOrCreate").expect("made");
        assert!(made.is_dir());
        check_host_path(&made, "Directory").expect("a directory");
        assert!(check_host_path(&made, "File").is_err());
        assert!(check_host_path(&made, "Socket").is_err_and(|e| e.contains("not a socket")));
        assert!(check_host_path(Path::new("/dev/null"), "CharDevice").is_ok());
        assert!(check_host_path(Path::new("/dev/null"), "BlockDevice").is_err());
        assert!(check_host_path(&made, "Sideways").is_err());
        let socket = dir.path().join("s.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("socket");
        check_host_path(&socket, "Socket").expect("a socket");
    }

    #[test]
    fn downward_items_have_fields_and_resources() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "resources": {"limits": {"memory": "64Mi"}}}]},
        }))
        .expect("pod");
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "mem", "mode": 0o600,
             "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
        ]))
        .expect("items");
        let context = Context { allocatable: (4000, 8 << 30), ..Context::default() };
        let files = downward_files(&pod, items.iter(), 0o644, &context).expect("files");
        assert_eq!(files, [file("labels", "app=\"web\"", 0o644), file("mem", "64", 0o600)]);
        let missing: Vec<DownwardAPIVolumeFile> = serde_json::from_value(serde_json::json!([
            {"path": "x", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}},
        ]))
        .expect("items");
        assert!(downward_files(&pod, missing.iter(), 0o644, &context).is_err());
    }
}
