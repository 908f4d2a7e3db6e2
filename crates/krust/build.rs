//! Records the git commit the binary is built from, for `/version` and `krust --version`, links
//! the binary position-dependent on Linux, and lays out the code a server runs at start and
//! idle together in release builds (`symbol-order.txt`).
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
    symbol_order();
    println!("cargo::rerun-if-changed=build.rs");
}

/// In release builds for x86_64 Linux, linked by the toolchain's LLD (the default since Rust
/// 1.90, unless a linker is configured), the functions of `symbol-order.txt` come first in
/// `.text`, in its order: the code a server with its agent runs from its start to idle
/// (`bench/symbol_order.py` writes the file). The kernel maps a binary's code 64 KiB around
/// each page a process touches; spread over the whole of `.text`, that code kept nearly all of
/// it resident (23 of 27 MiB), laid out together it keeps 14 MiB. Names the build no longer
/// has (after a change of Cargo.lock or of the toolchain) are skipped without a word.
/// `KRUST_SYMBOL_ORDER=0` turns it off.
fn symbol_order() {
    println!("cargo::rerun-if-env-changed=KRUST_SYMBOL_ORDER");
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let wanted = var("PROFILE") == "release"
        && var("TARGET") == "x86_64-unknown-linux-gnu"
        && var("KRUST_SYMBOL_ORDER") != "0"
        && std::env::var_os("RUSTC_LINKER").is_none()
        && lld_is_default();
    let order = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    println!("cargo::rerun-if-changed={}", order.display());
    if wanted && order.is_file() {
        println!("cargo::rustc-link-arg-bins=-Wl,--symbol-ordering-file={}", order.display());
        println!("cargo::rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether the compiler links with its own LLD by default (Rust 1.90 and later on x86_64
/// Linux): another linker would not know the ordering option.
fn lld_is_default() -> bool {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(output) = Command::new(rustc).arg("--version").output() else { return false };
    let version = String::from_utf8_lossy(&output.stdout);
    // `rustc 1.95.0 (59807616e 2026-04-14)`
    let mut numbers = version.split_whitespace().nth(1).unwrap_or_default().split('.');
    let major: u32 = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    let minor: u32 = numbers.next().and_then(|n| n.parse().ok()).unwrap_or(0);
    (major, minor) >= (1, 90)
}
