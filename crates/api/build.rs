//! Compiles upstream's protobuf schemas into a descriptor set for `src/protobuf/`.
//!
//! The `generated.proto` files of every Kubernetes API group come with the `k8s-rs-pb`
//! crate (a build dependency, built without any of its code). Cargo tells where its sources
//! are (`cargo metadata`); `protox` compiles them, and the encoded `FileDescriptorSet` is
//! written to `$OUT_DIR/kubernetes.fds`, which the crate includes.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version of the schemas (a directory of the `k8s-rs-pb` sources).
const KUBERNETES: &str = "v1_35";

fn main() {
    let root = k8s_rs_pb_root().join("src").join(KUBERNETES);
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no generated.proto under {}", root.display());
    let descriptors = protox::Compiler::new([&root])
        .and_then(|mut compiler| {
            compiler.include_imports(true).include_source_info(false);
            compiler.open_files(&files)?;
            Ok(compiler.encode_file_descriptor_set())
        })
        .unwrap_or_else(|e| panic!("cannot compile the protobuf schemas: {e}"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("kubernetes.fds"), descriptors).expect("the descriptor set is written");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed={}", root.display());
}

/// The directory of the `k8s-rs-pb` package that this build resolved.
fn k8s_rs_pb_root() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--manifest-path"])
        .arg(manifest.join("Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let manifest_path = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "k8s-rs-pb")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("k8s-rs-pb is a build dependency");
    Path::new(manifest_path).parent().expect("a manifest is in a directory").to_path_buf()
}

/// Every `generated.proto` under `dir`, relative to `root`.
fn collect(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if path.file_name().is_some_and(|n| n == "generated.proto") {
            files.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
}
