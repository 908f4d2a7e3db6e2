//! Compiles upstream's protobuf schemas into a descriptor set for `src/protobuf/`.
//!
//! The `generated.proto` files of every Kubernetes API group come with the `k8s-rs-pb`
//! crate (a build dependency, built without any of its code). Cargo has unpacked its sources
//! before this script runs, because it is a dependency of this build; the script finds them
//! from the version in `Cargo.lock` and the cargo home's registry sources. It asks nothing of
//! the network and nothing of packages this build does not use (a `cargo metadata` would
//! need every package of the lock file, for every platform, in the cache).
//! `protox` compiles the schemas, and the encoded `FileDescriptorSet` is written to
//! `$OUT_DIR/kubernetes.fds`, which the crate includes, without the schemas' comments.
//! The comments (upstream's Go documentation, from which upstream also writes its OpenAPI
//! descriptions) go to `$OUT_DIR/kubernetes-docs.deflate` in a compact form of their own for
//! `src/openapi/`: each description written once, as upstream's generator words it, beside
//! the markers the OpenAPI documents need (`+listType`, `+optional`, ...), deflated.
//!
//! `KRUST_K8S_PROTO_DIR` names the sources' directory explicitly (the one holding
//! `Cargo.toml` and `src/`), for vendored or otherwise unusual cargo set-ups.

use std::path::{Path, PathBuf};

#[path = "build_docs.rs"]
mod docs;

/// The Kubernetes version of the schemas (a directory of the `k8s-rs-pb` sources).
const KUBERNETES: &str = "v1_35";
/// The package that ships the schemas.
const PACKAGE: &str = "k8s-rs-pb";
/// Names the package's directory explicitly.
const OVERRIDE: &str = "KRUST_K8S_PROTO_DIR";

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=build_docs.rs");
    println!("cargo::rerun-if-env-changed={OVERRIDE}");
    let package = match package_root() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot find the sources of {PACKAGE}: {e}");
            eprintln!("set {OVERRIDE} to the directory of its Cargo.toml");
            std::process::exit(1);
        }
    };
    let root = package.join("src").join(KUBERNETES);
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no generated.proto under {}", root.display());
    let mut set = protox::Compiler::new([&root])
        .and_then(|mut compiler| {
            compiler.include_imports(true).include_source_info(true);
            compiler.open_files(&files)?;
            Ok(compiler.file_descriptor_set())
        })
        .unwrap_or_else(|e| panic!("cannot compile the protobuf schemas: {e}"));
    let mut docs = docs::Docs::default();
    for file in &mut set.file {
        if let Some(info) = file.source_code_info.take() {
            docs.add_file(file, &info);
        }
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let descriptors = prost::Message::encode_to_vec(&set);
    std::fs::write(out.join("kubernetes.fds"), descriptors).expect("the descriptor set is written");
    let mut deflated = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut deflated, docs.encode().as_bytes()).expect("in memory");
    let deflated = deflated.finish().expect("in memory");
    std::fs::write(out.join("kubernetes-docs.deflate"), deflated).expect("the docs are written");
    println!("cargo::rerun-if-changed={}", root.display());
}

/// The directory of the `k8s-rs-pb` package that this build resolved.
fn package_root() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(OVERRIDE) {
        return Ok(PathBuf::from(dir));
    }
    let version = locked_version()?;
    let wanted = format!("{PACKAGE}-{version}");
    let mut searched = Vec::new();
    for home in cargo_homes() {
        let sources = home.join("registry").join("src");
        searched.push(sources.display().to_string());
        let Ok(registries) = std::fs::read_dir(&sources) else { continue };
        for registry in registries.flatten() {
            let candidate = registry.path().join(&wanted);
            if candidate.join("Cargo.toml").is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(format!("{wanted} is in none of: {}", searched.join(", ")))
}

/// The version of the package that `Cargo.lock` (at the workspace root) pins.
fn locked_version() -> Result<String, String> {
    let manifest =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").ok_or("no CARGO_MANIFEST_DIR")?);
    let lock = manifest
        .ancestors()
        .map(|dir| dir.join("Cargo.lock"))
        .find(|path| path.is_file())
        .ok_or("no Cargo.lock above the crate")?;
    println!("cargo::rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            in_package = false;
        } else if line == format!("name = \"{PACKAGE}\"") {
            in_package = true;
        } else if in_package && let Some(version) = line.strip_prefix("version = ") {
            return Ok(version.trim_matches('"').to_string());
        }
    }
    Err(format!("{PACKAGE} is not in {}", lock.display()))
}

/// Where cargo keeps its registry sources: `$CARGO_HOME`, else `~/.cargo`.
fn cargo_homes() -> Vec<PathBuf> {
    let mut homes = Vec::new();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        homes.push(PathBuf::from(home));
    }
    if let Some(home) = std::env::var_os("HOME") {
        homes.push(Path::new(&home).join(".cargo"));
    }
    homes
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
