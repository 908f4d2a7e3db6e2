//! Records the git commit the binary is built from, for `/version` and `krust --version`, and
//! links the binary position-dependent on Linux.
//!
//! Reads `git` when the source is a checkout; a source tree without git (an archive) builds
//! too, with the commit unknown. `KRUST_GIT_COMMIT` (and `KRUST_GIT_TREE_STATE`,
//! `KRUST_BUILD_DATE`) set it from outside, for builds from archives.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| -> Option<String> {
        let output = Command::new("git").args(args).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let commit = std::env::var("KRUST_GIT_COMMIT")
        .ok()
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_default();
    let state = std::env::var("KRUST_GIT_TREE_STATE").ok().unwrap_or_else(|| {
        match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if changes.is_empty() => "clean".into(),
            Some(_) => "dirty".into(),
            None => String::new(),
        }
    });
    let date = std::env::var("KRUST_BUILD_DATE")
        .ok()
        .or_else(|| {
            git(&["show", "-s", "--format=%cd", "--date=format-local:%Y-%m-%dT%H:%M:%SZ", "HEAD"])
        })
        .unwrap_or_default();
    println!("cargo::rustc-env=KRUST_GIT_COMMIT={commit}");
    println!("cargo::rustc-env=KRUST_GIT_TREE_STATE={state}");
    println!("cargo::rustc-env=KRUST_BUILD_DATE={date}");
    for var in ["KRUST_GIT_COMMIT", "KRUST_GIT_TREE_STATE", "KRUST_BUILD_DATE"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    // A new commit or a change of the index reruns this script.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for file in ["HEAD", "index", "packed-refs"] {
            println!("cargo::rerun-if-changed={dir}/{file}");
        }
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo::rerun-if-changed={dir}/{head}");
        }
    }
    // A position-dependent executable on Linux: its pointers into itself are fixed when it is
    // linked, so a process of it (the server, the agent, each container's shim) starts without
    // relocating about 100,000 of them, and shares those pages (about 1.7 MB) with every other
    // process of it rather than keeping a private copy.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg-bins=-no-pie");
    }
    println!("cargo::rerun-if-changed=build.rs");
}
