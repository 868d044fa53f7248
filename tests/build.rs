//! Builds the example and hostile guest functions in `sdk/functions` for
//! wasm32-unknown-unknown, so tests run the real modules an author would build.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const FUNCTIONS: &[&str] = &[
    "hello",
    "json_transform",
    "cpu_heavy",
    "hostile",
    "visit_counter",
    "visit_report",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ has a parent")
        .to_owned();
    let functions = root.join("sdk/functions");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let target_dir = out.join("guest-target");

    for path in ["sdk/src", "sdk/Cargo.toml", "sdk/functions"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }

    ensure_wasm_target();
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-unknown-unknown",
        "--manifest-path",
    ])
    .arg(functions.join("Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir);
    // Do not leak the outer build's settings into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the guest functions");
    if !status.success() {
        panic!(
            "building the guest functions failed. Is the wasm32 target installed? \
             Run: rustup target add wasm32-unknown-unknown"
        );
    }
    let wasm_dir = target_dir.join("wasm32-unknown-unknown/release");
    for name in FUNCTIONS {
        let path = wasm_dir.join(format!("{name}.wasm"));
        assert!(
            path.exists(),
            "guest build did not produce {}",
            path.display()
        );
        println!(
            "cargo:rustc-env=KITH_GUEST_{}={}",
            name.to_uppercase(),
            path.display()
        );
    }
}

/// Installs the wasm32 standard library with rustup when it is missing, so that
/// `cargo test --workspace` works on a fresh machine as a single command.
fn ensure_wasm_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let libdir = Command::new(rustc)
        .args([
            "--print",
            "target-libdir",
            "--target",
            "wasm32-unknown-unknown",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if libdir.is_some_and(|d| d.exists()) {
        return;
    }
    println!("cargo:warning=installing the wasm32-unknown-unknown target with rustup");
    let ok = Command::new("rustup")
        .args(["target", "add", "wasm32-unknown-unknown"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!(
            "cargo:warning=could not install wasm32-unknown-unknown; run: rustup target add wasm32-unknown-unknown"
        );
    }
}
