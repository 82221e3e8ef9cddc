//! Running as a service: the sd_notify protocol (READY, STATUS, WATCHDOG from the main loop,
//! STOPPING) observed on a real notify socket, and the config file with its precedence and
//! its line-numbered errors.

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn notify_protocol_ready_status_watchdog_and_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let socket_path = tmp.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let ui = format!("http://127.0.0.1:{}", free_tcp_port());
    // WATCHDOG_PID must be the daemon's own PID: the shell's $$ survives `exec`.
    let script = format!(
        "WATCHDOG_PID=$$ exec {BIN} --storage {} --ui-address {ui} start --listen 127.0.0.1:0 --no-mdns --download-dir {}",
        tmp.path().join("storage").display(),
        tmp.path().join("dl").display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &script])
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let first = notify_messages(&socket, Duration::from_secs(3));
    assert!(first.iter().any(|m| m.contains("READY=1")), "{first:?}");
    assert!(
        first
            .iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("peers connected")),
        "{first:?}"
    );
    let pings = first.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    assert!(
        pings >= 5,
        "expected a watchdog ping about every 100 ms, got {pings}: {first:?}"
    );
    // A stopped (hung) daemon must stop pinging, so systemd would restart it.
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    let _ = notify_messages(&socket, Duration::from_millis(100));
    let while_stopped = notify_messages(&socket, Duration::from_secs(1));
    assert!(
        while_stopped.iter().all(|m| !m.contains("WATCHDOG=1")),
        "{while_stopped:?}"
    );
    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let resumed = notify_messages(&socket, Duration::from_secs(1));
    assert!(
        resumed.iter().any(|m| m.contains("WATCHDOG=1")),
        "{resumed:?}"
    );
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let last = notify_messages(&socket, Duration::from_secs(3));
    assert!(last.iter().any(|m| m.contains("STOPPING=1")), "{last:?}");
    let status = wait_for("exit", Duration::from_secs(10), || {
        child.try_wait().unwrap()
    });
    assert!(status.success());
}

#[test]
fn config_file_is_read_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("from-config/Books");
    write_random_file(&share.join("novel.epub"), 1234, 1);
    let config = tmp.path().join("config.toml");
    std::fs::write(
        &config,
        format!("# written by the package\nshare_dirs = [\"{}\"]\nmax_uploads = 3\nrescan_interval = 3600\n", share.display()),
    )
    .unwrap();
    let mut a = Daemon::new(tmp.path(), "a").args(&["--config", config.to_str().unwrap()]);
    a.start();
    let listing = wait_for("config share indexed", Duration::from_secs(20), || {
        let l = a.cli_json(&["shares", "--json"]);
        (l.as_array().unwrap().len() == 2).then_some(l)
    });
    assert_eq!(listing[1]["path"], "Books/novel.epub");
    // The harness passes --download-dir on the command line: it beats the file.
    a.stop();
    std::fs::write(
        &config,
        format!(
            "download_dir = \"{}\"\n",
            tmp.path().join("ignored").display()
        ),
    )
    .unwrap();
    a.start();
    assert_eq!(
        a.api_get("/api/info")["download_dir"]
            .as_str()
            .map(std::path::PathBuf::from),
        Some(a.download_dir.canonicalize().unwrap())
    );
}

#[test]
fn a_typo_in_the_config_stops_start_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "max_uploads = 3\nshare_dir = [\"/srv\"]\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "--config",
            config.to_str().unwrap(),
            "--storage",
            tmp.path().join("s").to_str().unwrap(),
            "start",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("error: {}:2:1: ", config.display())),
        "{err}"
    );
    assert!(err.contains("share_dir"), "{err}");
    assert!(!tmp.path().join("s").exists(), "nothing half-started");
    std::fs::write(&config, "threads = \"two\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["--config", config.to_str().unwrap(), "info"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("config.toml:1:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A start-up error names the OS error once, not once per layer that wraps it.
#[test]
fn a_failed_start_says_the_os_error_once() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"").unwrap();
    let out = Command::new(BIN)
        .args(["--storage", file.join("s").to_str().unwrap(), "start"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("os error 20").count(), 1, "{err}");
}
