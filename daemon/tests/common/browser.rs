//! Running a browser test script of `tests/ui/` (Debian's Chromium driven by playwright-core)
//! against daemons started by the Rust test, within a time limit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::Daemon;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `target/ui-shots/`, under `CARGO_TARGET_DIR` when it is set.
pub fn shots_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_relative() {
                repo_root().join(t)
            } else {
                t
            }
        })
        .unwrap_or_else(|| repo_root().join("target"))
        .join("ui-shots")
}

/// Runs `tests/ui/SCRIPT` with `env` (and `HDP_SHOTS`, `HDP_CHROMIUM`), failing the test
/// if it fails or outlives `limit`; `daemon`'s log tail is shown then.
pub fn run_browser_script(script: &str, env: &[(&str, String)], limit: Duration, daemon: &Daemon) {
    let ui_tests = repo_root().join("tests/ui");
    let chromium = std::env::var("HDP_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        ui_tests.join("node_modules/playwright-core").is_dir() && Path::new(&chromium).exists(),
        "browser test dependencies missing: run ci/test (or `apt-get install chromium` and `npm ci --prefix tests/ui`)"
    );
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(ui_tests.join(script))
        .current_dir(&ui_tests)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .env("HDP_SHOTS", shots_dir())
        .env("HDP_CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .spawn()
        .expect("run node (install nodejs)");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "tests/ui/{script} did not finish within {limit:?}\n--- {} ---\n{}",
                daemon.label,
                daemon.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = daemon.log_text();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    assert!(
        status.success(),
        "tests/ui/{script} failed ({status})\n--- daemon {} log (tail) ---\n{}",
        daemon.label,
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
}

/// Each screenshot `target/ui-shots/NAME.png` the script was to take exists and has content.
pub fn assert_screenshots(names: &[&str]) {
    for name in names {
        let shot = shots_dir().join(format!("{name}.png"));
        let len = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(len > 1000, "screenshot {shot:?} missing or empty");
    }
}
