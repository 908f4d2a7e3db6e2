//! Which local-path directories a node keeps: pure, over the volumes provisioned on the node
//! and the names found in the storage directory.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::PersistentVolume;

/// On a volume: the node whose agent keeps its directory (the provisioner's label).
pub const NODE_LABEL: &str = "krust.io/local-path-node";

/// The prefix of every directory the provisioner names; only those are ever removed.
pub const PREFIX: &str = "pvc-";

/// What to do in the storage directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Directories to create (mode 0777), by name.
    pub create: Vec<String>,
    /// Directories to remove with what they hold, by name.
    pub remove: Vec<String>,
}

/// The name of `volume`'s directory if it is this node's local-path volume: labelled with
/// `node`, its `hostPath` directly inside `root` (one plain component below it, so that
/// nothing outside `root` is ever touched).
pub fn directory_of(volume: &PersistentVolume, node: &str, root: &Path) -> Option<String> {
    let labels = volume.metadata.labels.as_ref()?;
    if labels.get(NODE_LABEL).map(String::as_str) != Some(node) {
        return None;
    }
    let path = PathBuf::from(&volume.spec.as_ref()?.host_path.as_ref()?.path);
    let mut inside = path.components();
    for expected in root.components() {
        if inside.next() != Some(expected) {
            return None;
        }
    }
    match (inside.next(), inside.next()) {
        (Some(Component::Normal(name)), None) => name.to_str().map(str::to_string),
        _ => None,
    }
}

/// What to do given the node's `volumes` (every volume labelled with `node`, as a complete
/// list shows them) and the directory names `present` in `root`: create the volumes'
/// directories that are missing, remove the `pvc-*` directories no volume has.
pub fn plan<'a>(
    volumes: impl IntoIterator<Item = &'a PersistentVolume>,
    node: &str,
    root: &Path,
    present: &BTreeSet<String>,
) -> Plan {
    let wanted: BTreeSet<String> =
        volumes.into_iter().filter_map(|v| directory_of(v, node, root)).collect();
    Plan {
        create: wanted.difference(present).cloned().collect(),
        remove: present
            .iter()
            .filter(|name| name.starts_with(PREFIX) && !wanted.contains(*name))
            .cloned()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{HostPathVolumeSource, PersistentVolumeSpec};
    use kube::api::ObjectMeta;

    use super::*;

    fn volume(node: &str, path: &str) -> PersistentVolume {
        PersistentVolume {
            metadata: ObjectMeta {
                name: Some("pvc-1".into()),
                labels: Some(BTreeMap::from([(NODE_LABEL.to_string(), node.to_string())])),
                ..Default::default()
            },
            spec: Some(PersistentVolumeSpec {
                host_path: Some(HostPathVolumeSource { path: path.into(), type_: None }),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn only_this_nodes_volumes_directly_inside_the_storage_path_are_kept() {
        let root = Path::new("/var/lib/krust/storage");
        // (case, volume, its directory)
        let cases: Vec<(&str, PersistentVolume, Option<&str>)> = vec![
            ("ours", volume("n1", "/var/lib/krust/storage/pvc-1_ns_c"), Some("pvc-1_ns_c")),
            ("a trailing slash", volume("n1", "/var/lib/krust/storage/pvc-1/"), Some("pvc-1")),
            ("another node's", volume("n2", "/var/lib/krust/storage/pvc-1_ns_c"), None),
            ("outside the storage path", volume("n1", "/var/lib/other/pvc-1"), None),
            ("the storage path itself", volume("n1", "/var/lib/krust/storage"), None),
            ("nested deeper", volume("n1", "/var/lib/krust/storage/a/pvc-1"), None),
            ("escaping upwards", volume("n1", "/var/lib/krust/storage/../pvc-1"), None),
            ("a sibling sharing the prefix", volume("n1", "/var/lib/krust/storage2/pvc-1"), None),
            ("relative", volume("n1", "var/lib/krust/storage/pvc-1"), None),
        ];
        for (case, v, want) in cases {
            assert_eq!(directory_of(&v, "n1", root).as_deref(), want, "{case}");
        }
        let mut unlabelled = volume("n1", "/var/lib/krust/storage/pvc-1");
        unlabelled.metadata.labels = None;
        assert_eq!(directory_of(&unlabelled, "n1", root), None, "unlabelled");
    }

    #[test]
    fn missing_directories_are_created_and_only_orphaned_pvc_directories_removed() {
        let root = Path::new("/s");
        let volumes = [volume("n1", "/s/pvc-a_ns_c"), volume("n1", "/s/pvc-b_ns_d")];
        let present: BTreeSet<String> =
            ["pvc-b_ns_d", "pvc-old_ns_e", "lost+found", "notes"].map(String::from).into();
        assert_eq!(
            plan(&volumes, "n1", root, &present),
            Plan { create: vec!["pvc-a_ns_c".into()], remove: vec!["pvc-old_ns_e".into()] }
        );
        assert_eq!(
            plan(&[], "n1", root, &BTreeSet::new()),
            Plan::default(),
            "nothing to do in an empty directory"
        );
    }
}
