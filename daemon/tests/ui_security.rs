//! Web UI security on real daemons: the one-time setup code, sessions (cookie + CSRF
//! token), login throttling, Host/Origin checks, mandatory login beyond loopback, and the
//! CLI's API token still working for everything.

// The helpers hand back ureq's own Result so each check can look at the status.
#![allow(clippy::result_large_err)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const PASSWORD: &str = "correct horse battery";

struct Session {
    cookie: String,
    csrf: String,
}

fn status_of(result: Result<ureq::Response, ureq::Error>) -> u16 {
    match result {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("transport error: {e}"),
    }
}

fn body_of(result: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    match result {
        Ok(r) => (r.status(), r.into_json().unwrap_or(Value::Null)),
        Err(ureq::Error::Status(code, r)) => (code, r.into_json().unwrap_or(Value::Null)),
        Err(e) => panic!("transport error: {e}"),
    }
}

fn token(d: &Daemon) -> String {
    std::fs::read_to_string(d.storage.join("api-token"))
        .unwrap()
        .trim()
        .to_string()
}

fn setup_code(d: &Daemon) -> String {
    std::fs::read_to_string(d.storage.join("setup-code"))
        .unwrap()
        .trim()
        .to_string()
}

/// `name=value` of the session cookie in a Set-Cookie header, checking its flags.
fn session_from(response: ureq::Response) -> Session {
    let set_cookie = response
        .header("set-cookie")
        .expect("Set-Cookie")
        .to_string();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("hdp_session_"), "{cookie}");
    let body: Value = response.into_json().unwrap();
    Session {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_string(),
    }
}

fn setup(d: &Daemon, code: &str, password: &str) -> Result<ureq::Response, ureq::Error> {
    ureq::post(&format!("{}/api/auth/setup", d.ui))
        .send_json(json!({ "setup_code": code, "password": password }))
}

fn login(d: &Daemon, password: &str) -> Result<ureq::Response, ureq::Error> {
    ureq::post(&format!("{}/api/auth/login", d.ui)).send_json(json!({ "password": password }))
}

fn get(d: &Daemon, path: &str, session: Option<&Session>) -> Result<ureq::Response, ureq::Error> {
    let mut req = ureq::get(&format!("{}{path}", d.ui)).timeout(Duration::from_secs(5));
    if let Some(s) = session {
        req = req.set("Cookie", &s.cookie);
    }
    req.call()
}

fn post(
    d: &Daemon,
    path: &str,
    session: &Session,
    csrf: Option<&str>,
    body: Value,
) -> Result<ureq::Response, ureq::Error> {
    let mut req = ureq::post(&format!("{}{path}", d.ui)).set("Cookie", &session.cookie);
    if let Some(t) = csrf {
        req = req.set("X-CSRF-Token", t);
    }
    req.send_json(body)
}

#[test]
fn setup_code_once_sessions_csrf_and_logout() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    a.start();
    // Before any password: loopback reads stay open (the CLI and old tests rely on it).
    let (_, s) = body_of(get(&a, "/api/auth/session", None));
    assert_eq!(s["password_set"], false);
    assert_eq!(s["login_required"], false);
    assert_eq!(
        s["setup_code_file"],
        Value::Null,
        "no server path for a visitor: {s}"
    );
    assert_eq!(status_of(get(&a, "/api/info", None)), 200);
    let code_file = a.storage.join("setup-code");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&code_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let code = setup_code(&a);
    assert!(a.log_text().contains(&code), "the setup code is in the log");

    // A wrong code and a too-short password are refused; the right code works once.
    assert_eq!(status_of(setup(&a, "AAAA-AAAA", PASSWORD)), 403);
    assert_eq!(status_of(setup(&a, &code, "short")), 400);
    let session = session_from(setup(&a, &code.to_lowercase(), PASSWORD).unwrap());
    assert!(
        !code_file.exists(),
        "the setup code file is removed once used"
    );
    let (status, body) = body_of(setup(&a, &code, "another password"));
    assert_eq!(status, 409, "{body}");

    // No session: 401 for the API, the event stream and downloaded files; the UI loads.
    for path in [
        "/api/info",
        "/api/peers",
        "/api/transfers",
        "/api/qr",
        "/ws",
        "/downloads/x",
    ] {
        assert_eq!(status_of(get(&a, path, None)), 401, "{path}");
    }
    assert_eq!(status_of(get(&a, "/", None)), 200);
    let (_, s) = body_of(get(&a, "/api/auth/session", None));
    assert_eq!(
        (s["password_set"].clone(), s["logged_in"].clone()),
        (json!(true), json!(false))
    );

    // With the session: reads work; writes need the CSRF token.
    assert_eq!(status_of(get(&a, "/api/info", Some(&session))), 200);
    let qr = get(&a, "/api/qr", Some(&session)).unwrap();
    assert_eq!(qr.content_type(), "image/svg+xml");
    assert!(qr.into_string().unwrap().contains("<svg"));
    let (status, body) = body_of(post(&a, "/api/settings", &session, None, json!({})));
    assert_eq!(status, 403, "CSRF-less POST refused: {body}");
    assert_eq!(
        status_of(post(&a, "/api/settings", &session, Some("0000"), json!({}))),
        403
    );
    let stop_without = ureq::post(&format!("{}/api/stop", a.ui))
        .set("Cookie", &session.cookie)
        .call();
    assert_eq!(status_of(stop_without), 403, "no CSRF token, no stop");
    assert_eq!(
        status_of(post(
            &a,
            "/api/settings",
            &session,
            Some(&session.csrf),
            json!({ "upload_limit": "2MB" })
        )),
        200
    );

    // The CLI's token keeps working for reads and writes, and the CLI itself too.
    let t = token(&a);
    let (status, settings) = body_of(
        ureq::get(&format!("{}/api/settings", a.ui))
            .set("Authorization", &format!("Bearer {t}"))
            .call(),
    );
    assert_eq!(status, 200);
    assert_eq!(settings["limits"]["upload"], 2_000_000);
    assert!(a.cli_ok(&["info"]).contains("announce address:"));
    a.cli_ok(&["peers"]);
    a.cli_ok(&["transfers"]);

    // Logout ends the session: the same cookie is refused afterwards.
    let out = post(
        &a,
        "/api/auth/logout",
        &session,
        Some(&session.csrf),
        json!({}),
    )
    .unwrap();
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(status_of(get(&a, "/api/info", Some(&session))), 401);
    let (_, s) = body_of(get(&a, "/api/auth/session", Some(&session)));
    assert_eq!(s["logged_in"], false);

    // Logging in again gives a new, working session.
    let again = session_from(login(&a, PASSWORD).unwrap());
    assert_ne!(again.cookie, session.cookie);
    assert_eq!(status_of(get(&a, "/api/info", Some(&again))), 200);
    a.cli_ok(&["stop"]);
}

#[test]
fn sessions_survive_a_restart_until_logout() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    a.start();
    let session = session_from(setup(&a, &setup_code(&a), PASSWORD).unwrap());
    let other = session_from(login(&a, PASSWORD).unwrap());
    a.stop();
    a.start();
    // The same cookie and CSRF token work after the restart.
    assert_eq!(status_of(get(&a, "/api/info", Some(&session))), 200);
    let (_, s) = body_of(get(&a, "/api/auth/session", Some(&session)));
    assert_eq!(s["csrf_token"], session.csrf.as_str());
    assert_eq!(
        status_of(post(
            &a,
            "/api/settings",
            &session,
            Some(&session.csrf),
            json!({ "upload_limit": "1MB" })
        )),
        200
    );
    assert_eq!(
        status_of(post(
            &a,
            "/api/settings",
            &session,
            Some(&other.csrf),
            json!({})
        )),
        403,
        "another session's CSRF token does not fit"
    );
    // The database holds neither the cookie value nor the CSRF token.
    let db = std::fs::read(a.storage.join("harddrive-party.redb")).unwrap();
    for secret in [session.cookie.split('=').nth(1).unwrap(), &session.csrf] {
        assert!(
            !db.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a session secret is stored in the database"
        );
    }
    post(
        &a,
        "/api/auth/logout",
        &session,
        Some(&session.csrf),
        json!({}),
    )
    .unwrap();
    assert_eq!(status_of(get(&a, "/api/info", Some(&session))), 401);
    a.stop();
    a.start();
    assert_eq!(
        status_of(get(&a, "/api/info", Some(&session))),
        401,
        "a logged-out session stays out after a restart"
    );
    assert_eq!(status_of(get(&a, "/api/info", Some(&other))), 200);
    a.cli_ok(&["stop"]);
}

#[test]
fn wrong_host_or_origin_is_forbidden() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a").args(&["--allowed-host", "nas.example"]);
    a.start();
    let session = session_from(setup(&a, &setup_code(&a), PASSWORD).unwrap());
    let port = a.ui.rsplit(':').next().unwrap().to_string();
    let with_host = |host: &str, path: &str| {
        ureq::get(&format!("{}{path}", a.ui))
            .set("Host", host)
            .set("Cookie", &session.cookie)
            .call()
    };
    // DNS rebinding: a foreign name in Host is refused everywhere, even the UI and login.
    for path in ["/api/info", "/", "/api/auth/session", "/ws"] {
        let (status, body) = body_of(with_host(&format!("evil.example:{port}"), path));
        assert_eq!(status, 403, "{path}: {body}");
    }
    let refused_login = ureq::post(&format!("{}/api/auth/login", a.ui))
        .set("Host", "evil.example")
        .send_json(json!({ "password": PASSWORD }));
    assert_eq!(status_of(refused_login), 403);
    // The names a user types are accepted.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("nas.example:{port}"),
    ] {
        assert_eq!(status_of(with_host(&host, "/api/info")), 200, "{host}");
    }
    // A foreign Origin is refused for reads, writes and the WebSocket handshake.
    let origin = |o: &str| {
        ureq::get(&format!("{}/api/info", a.ui))
            .set("Origin", o)
            .set("Cookie", &session.cookie)
            .call()
    };
    assert_eq!(status_of(origin("http://evil.example")), 403);
    assert_eq!(status_of(origin("null")), 403);
    assert_eq!(status_of(origin(&a.ui)), 200);
    let cross_site_write = ureq::post(&format!("{}/api/settings", a.ui))
        .set("Origin", "http://evil.example")
        .set("Cookie", &session.cookie)
        .set("X-CSRF-Token", &session.csrf)
        .send_json(json!({}));
    assert_eq!(status_of(cross_site_write), 403);
    let ws = ureq::get(&format!("{}/ws", a.ui))
        .set("Origin", "http://evil.example")
        .set("Cookie", &session.cookie)
        .set("Connection", "Upgrade")
        .set("Upgrade", "websocket")
        .set("Sec-WebSocket-Version", "13")
        .set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .call();
    assert_eq!(status_of(ws), 403);
    a.cli_ok(&["stop"]);
}

#[test]
fn allowed_hosts_from_the_config_file_and_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.toml");
    std::fs::write(&config, "allowed_hosts = [\"file.example\"]\n").unwrap();
    let mut a = Daemon::new(tmp.path(), "a").args(&["--config", config.to_str().unwrap()]);
    a.start();
    let ui = a.ui.clone();
    let port = ui.rsplit(':').next().unwrap().to_string();
    let host_status = |host: &str| {
        status_of(
            ureq::get(&format!("{ui}/api/auth/session"))
                .set("Host", &format!("{host}:{port}"))
                .call(),
        )
    };
    assert_eq!(host_status("file.example"), 200, "a name from the file");
    assert_eq!(host_status("other.example"), 403, "a name in no layer");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let hostname = hostname.trim().to_ascii_lowercase();
    assert_eq!(host_status(&hostname), 200, "the machine's hostname");
    assert_eq!(host_status(&format!("{hostname}.local")), 200);
    assert_eq!(host_status("localhost"), 200);
    a.stop();

    // HDP_ALLOWED_HOSTS replaces the file's list; a flag replaces both.
    a.env = vec![(
        "HDP_ALLOWED_HOSTS".into(),
        "env-one.example,env-two.example".into(),
    )];
    a.start();
    assert_eq!(host_status("env-one.example"), 200);
    assert_eq!(host_status("env-two.example"), 200);
    assert_eq!(host_status("file.example"), 403);
    a.stop();
    a.extra
        .extend(["--allowed-host".to_string(), "flag.example".to_string()]);
    a.start();
    assert_eq!(host_status("flag.example"), 200);
    assert_eq!(host_status("env-one.example"), 403);
    assert_eq!(host_status("file.example"), 403);
    a.cli_ok(&["stop"]);
}

#[test]
fn sixth_bad_password_within_a_minute_is_throttled() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    a.start();
    session_from(setup(&a, &setup_code(&a), PASSWORD).unwrap());
    for attempt in 1..=5 {
        let (status, body) = body_of(login(&a, "not the password"));
        assert_eq!(status, 401, "attempt {attempt}: {body}");
    }
    let sixth = login(&a, "not the password");
    match sixth {
        Err(ureq::Error::Status(429, r)) => {
            let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
        other => panic!("expected 429, got {:?}", other.map(|r| r.status())),
    }
    // Throttled means not even checked: the right password waits too.
    assert_eq!(status_of(login(&a, PASSWORD)), 429);
    // The API token is not affected.
    a.cli_ok(&["info"]);
    a.cli_ok(&["stop"]);
}

fn passwd(d: &Daemon, password: &str) -> std::process::Output {
    let mut child = Command::new(BIN)
        .args([
            "--storage",
            d.storage.to_str().unwrap(),
            "--ui-address",
            &d.ui,
            "passwd",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn passwd_command_sets_the_password_and_ends_sessions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    a.start();
    // First run from the command line: no setup code needed with the API token.
    let out = passwd(&a, PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!a.storage.join("setup-code").exists());
    let first = session_from(login(&a, PASSWORD).unwrap());
    // Changing it from the UI needs the current password and ends other sessions.
    let second = session_from(login(&a, PASSWORD).unwrap());
    let (status, _) = body_of(post(
        &a,
        "/api/auth/password",
        &second,
        Some(&second.csrf),
        json!({ "current_password": "wrong one!", "new_password": "a new password" }),
    ));
    assert_eq!(status, 401);
    let changed = session_from(
        post(
            &a,
            "/api/auth/password",
            &second,
            Some(&second.csrf),
            json!({ "current_password": PASSWORD, "new_password": "a new password" }),
        )
        .unwrap(),
    );
    assert_eq!(status_of(get(&a, "/api/info", Some(&first))), 401);
    assert_eq!(status_of(get(&a, "/api/info", Some(&second))), 401);
    assert_eq!(status_of(get(&a, "/api/info", Some(&changed))), 200);
    // `passwd` again replaces it, and every session ends.
    let out = passwd(&a, "third password");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(status_of(get(&a, "/api/info", Some(&changed))), 401);
    assert_eq!(status_of(login(&a, "a new password")), 401);
    session_from(login(&a, "third password").unwrap());
    // Too short is refused before it reaches the daemon.
    let out = passwd(&a, "short");
    assert!(!out.status.success());
    a.cli_ok(&["stop"]);
}

#[test]
fn beyond_loopback_login_is_mandatory_even_without_a_password() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let storage = tmp.path().join("storage");
    let mut child = Command::new(BIN)
        .args([
            "--storage",
            storage.to_str().unwrap(),
            "--ui-address",
            &format!("http://0.0.0.0:{port}"),
            "start",
            "--listen",
            "127.0.0.1:0",
            "--no-mdns",
            "--download-dir",
            tmp.path().join("dl").to_str().unwrap(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ui = format!("http://127.0.0.1:{port}");
    let session: Value = wait_for("the API to answer", Duration::from_secs(20), || {
        ureq::get(&format!("{ui}/api/auth/session"))
            .call()
            .ok()?
            .into_json()
            .ok()
    });
    let result = std::panic::catch_unwind(|| {
        assert_eq!(session["login_required"], true);
        assert_eq!(session["password_set"], false);
        assert_eq!(status_of(ureq::get(&format!("{ui}/api/info")).call()), 401);
        assert_eq!(status_of(ureq::get(&format!("{ui}/api/ls")).call()), 401);
        assert_eq!(status_of(ureq::get(&format!("{ui}/")).call()), 200);
        // The CLI (API token) still works for reads.
        let out = Command::new(BIN)
            .args([
                "--storage",
                storage.to_str().unwrap(),
                "--ui-address",
                &ui,
                "info",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The UI is embedded gzipped: sent as stored to clients that accept gzip, unpacked for
/// the others; a file kept gzipped in webui-dist (the vendored QR decoder) is sent as is.
#[test]
fn ui_files_are_sent_gzipped_or_unpacked() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    a.start();
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../webui-dist");
    let fetch = |path: &str, accept: Option<&str>| {
        let mut req = ureq::get(&format!("{}{path}", a.ui)).timeout(Duration::from_secs(5));
        if let Some(encoding) = accept {
            req = req.set("Accept-Encoding", encoding);
        }
        let response = req.call().unwrap();
        let encoding = response.header("Content-Encoding").map(str::to_string);
        let mime = response
            .header("Content-Type")
            .unwrap_or_default()
            .to_string();
        assert_eq!(response.header("Vary"), Some("Accept-Encoding"), "{path}");
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
        (encoding, mime, body)
    };
    let gunzip = |bytes: &[u8]| {
        let mut child = Command::new("gzip")
            .arg("-dc")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "not gzip");
        out.stdout
    };
    let index = std::fs::read(dist.join("index.html")).unwrap();
    for path in ["/", "/index.html", "/peers"] {
        let (encoding, mime, body) = fetch(path, Some("br, gzip;q=0.8"));
        assert_eq!(encoding.as_deref(), Some("gzip"), "{path}");
        assert!(mime.starts_with("text/html"), "{path}: {mime}");
        assert_eq!(gunzip(&body), index, "{path}");
        for refusing in [None, Some("identity"), Some("gzip;q=0")] {
            let (encoding, _, body) = fetch(path, refusing);
            assert_eq!(encoding, None, "{path} {refusing:?}");
            assert_eq!(body, index, "{path} {refusing:?}");
        }
    }
    let stored = std::fs::read(dist.join("vendor/jsqr/jsQR.js.gz")).unwrap();
    let (encoding, mime, body) = fetch("/vendor/jsqr/jsQR.js", Some("gzip"));
    assert_eq!(encoding.as_deref(), Some("gzip"));
    assert!(mime.contains("javascript"), "{mime}");
    assert_eq!(
        body, stored,
        "a .gz file is sent as stored, not compressed twice"
    );
    let (encoding, _, body) = fetch("/vendor/jsqr/jsQR.js", None);
    assert_eq!((encoding, body), (None, gunzip(&stored)));
}

/// The review's case: on a password-less loopback setup (reads open to local callers), a
/// page served from any IP address must not open the event stream or read the API. Only
/// the UI's own origin may.
#[test]
fn a_page_on_another_address_cannot_open_the_event_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    a.start();
    let port = a.ui.rsplit(':').next().unwrap().to_string();
    let handshake = |origin: &str| {
        ureq::get(&format!("{}/ws", a.ui))
            .set("Origin", origin)
            .set("Connection", "Upgrade")
            .set("Upgrade", "websocket")
            .set("Sec-WebSocket-Version", "13")
            .set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .timeout(Duration::from_secs(5))
            .call()
    };
    let read = |origin: &str| {
        ureq::get(&format!("{}/api/peers", a.ui))
            .set("Origin", origin)
            .timeout(Duration::from_secs(5))
            .call()
    };
    for foreign in [
        "http://1.2.3.4".to_string(),
        "http://192.168.1.66:8080".to_string(),
        "http://127.0.0.2".to_string(),
        format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap() ^ 1),
        format!("http://[::1]:{port}"),
    ] {
        assert_eq!(status_of(handshake(&foreign)), 403, "/ws from {foreign}");
        assert_eq!(status_of(read(&foreign)), 403, "/api/peers from {foreign}");
    }
    // The UI's own origin upgrades (101) and reads.
    assert_eq!(status_of(handshake(&a.ui)), 101);
    assert_eq!(status_of(read(&a.ui)), 200);
}

/// `/downloads/` serves regular files inside the download folder only, and its redirects
/// stay under `/downloads/` on this site.
#[test]
fn downloads_serve_regular_files_only_and_redirect_within_the_site() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(tmp.path(), "a");
    d.start();
    let folder = d.download_dir.join("CalmOtter1").join("Docs");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("ok.txt"), b"fine").unwrap();
    std::fs::write(tmp.path().join("secret.txt"), b"top secret").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), folder.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), d.download_dir.join("CalmOtter1/out")).unwrap();
    let agent = ureq::AgentBuilder::new().redirects(0).build();
    let get = |path: &str| match agent.get(&format!("{}{path}", d.ui)).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    assert_eq!(
        get("/downloads/CalmOtter1/Docs/ok.txt")
            .into_string()
            .unwrap(),
        "fine"
    );
    for path in [
        "/downloads/CalmOtter1/Docs/link.txt",
        "/downloads/CalmOtter1/out/secret.txt",
        "/downloads//evil.example",
        "/downloads//evil.example/",
    ] {
        let r = get(path);
        assert_eq!(r.status(), 404, "{path}: {:?}", r.header("location"));
    }
    let r = get("/downloads/CalmOtter1/Docs");
    assert_eq!(r.status(), 307);
    assert_eq!(r.header("location"), Some("/downloads/CalmOtter1/Docs/"));
    d.stop();
}

/// Half-sent requests are cut off after the header timeout (10 s), at most 64 HTTP
/// connections are served at once (the next waits until a slot frees), and at most 32
/// event stream clients are open at once.
#[test]
fn slow_requests_time_out_and_connections_and_event_streams_are_capped() {
    use std::io::Read;
    use std::net::TcpStream;
    const MAX_HTTP_CONNECTIONS: usize = 64;
    const MAX_WS_CLIENTS: usize = 32;
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(tmp.path(), "a");
    a.start();
    let addr = a.ui.trim_start_matches("http://").to_string();
    let open = |wait: u64| {
        let s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(wait))).unwrap();
        s
    };
    let timed_out = |r: &std::io::Result<usize>| matches!(r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    let mut buf = [0u8; 1024];

    let mut slow = open(30);
    slow.write_all(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    let cut = slow.read(&mut buf);
    assert!(
        !timed_out(&cut),
        "a request whose headers never end is cut off: {cut:?}"
    );

    let holders: Vec<TcpStream> = (0..MAX_HTTP_CONNECTIONS)
        .map(|_| {
            let mut s = open(30);
            s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    let mut late = open(3);
    late.write_all(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let waiting = late.read(&mut buf);
    assert!(timed_out(&waiting), "served beyond the cap: {waiting:?}");
    late.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let n = late.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "served once the holders timed out: {head}"
    );
    drop(holders);

    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let ws = || {
        let mut s = open(10);
        s.write_all(handshake.as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap();
        (String::from_utf8_lossy(&buf[..n]).to_string(), s)
    };
    let clients: Vec<TcpStream> = (0..MAX_WS_CLIENTS)
        .map(|_| {
            let (head, s) = ws();
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            s
        })
        .collect();
    let (head, _) = ws();
    assert!(
        head.starts_with("HTTP/1.1 503"),
        "one client too many: {head}"
    );
    drop(clients);
    wait_for(
        "an event stream slot to free",
        Duration::from_secs(10),
        || ws().0.starts_with("HTTP/1.1 101").then_some(()),
    );
    a.stop();
}
