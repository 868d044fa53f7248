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
