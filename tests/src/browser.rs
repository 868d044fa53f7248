//! A real headless Chromium for tests: find it, load a page, read the DOM it built.

use std::path::Path;
use std::process::Command;

/// The Chromium binary on this machine, if there is one. When `KITH_REQUIRE_CHROMIUM`
/// is set (CI sets it), a missing browser fails the test instead of skipping it.
///
/// # Panics
/// When `KITH_REQUIRE_CHROMIUM` is set and there is no Chromium.
pub fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        assert!(
            std::env::var_os("KITH_REQUIRE_CHROMIUM").is_none(),
            "KITH_REQUIRE_CHROMIUM is set but no Chromium was found"
        );
        eprintln!("no Chromium on this machine: browser check skipped");
    }
    found
}

/// Loads `url` in headless `browser` with a fresh profile under `dir`, lets its
/// scripts run for `budget_ms` of virtual time, and returns the DOM they built.
/// `extra` adds flags (e.g. `--host-resolver-rules=…`).
///
/// # Panics
/// If the browser cannot run or fails.
pub fn dump_dom(browser: &str, dir: &Path, url: &str, budget_ms: u32, extra: &[String]) -> String {
    let profile = dir.join(format!("chromium-profile-{}", blake3::hash(url.as_bytes())));
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
