//! Test harness: real `harddrive-party` processes on loopback, each in its own temp dirs,
//! driven through the real CLI and HTTP API. Every wait is bounded; every process is
//! stopped by its own PID when the test ends.

#![allow(dead_code)]

pub mod browser;
mod listing;
mod raw;
// Not every test binary uses the raw peers.
#[allow(unused_imports)]
pub use raw::*;

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

pub const BIN: &str = env!("CARGO_BIN_EXE_harddrive-party");

pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `check` every 50 ms until it returns Some, panicking with `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deterministic pseudo-random content from the BLAKE3 XOF: fast even in a debug build.
pub fn write_random_file(path: &Path, len: u64, seed: u64) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    let mut file = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path).unwrap());
    let mut xof = blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof();
    let mut block = vec![0u8; 1 << 20];
    let mut remaining = len;
    while remaining > 0 {
        let n = remaining.min(block.len() as u64) as usize;
        xof.fill(&mut block[..n]);
        file.write_all(&block[..n]).unwrap();
        remaining -= n as u64;
    }
    file.flush().unwrap();
}

pub fn sha256_file(path: &Path) -> String {
    let mut hasher = Sha256::new();
    let mut file = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    std::io::copy(&mut file, &mut hasher).unwrap();
    format!("{:x}", hasher.finalize())
}

/// A network namespace made by the test, deleted (with everything in it) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: &str) -> Self {
        let name = format!("hdp-{name}-{}", std::process::id());
        // A leftover from a crashed earlier run would make `add` fail.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace; it must succeed.
    pub fn exec(&self, args: &[&str]) {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `f` on a thread that has entered namespace `name`: its sockets live there.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let ns = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread inside the namespace")
}

/// Runs a setup command that must succeed.
pub fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sd_notify messages (`READY=1`, `WATCHDOG=1`, `STATUS=…`) arriving on `socket` within
/// `for_how_long`.
pub fn notify_messages(
    socket: &std::os::unix::net::UnixDatagram,
    for_how_long: Duration,
) -> Vec<String> {
    let deadline = Instant::now() + for_how_long;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        socket
            .set_read_timeout(Some(
                deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
        match socket.recv(&mut buf) {
            Ok(n) => out.push(String::from_utf8_lossy(&buf[..n]).to_string()),
            Err(_) => break,
        }
    }
    out
}

/// A small tmpfs mounted by the test on a directory it made (needs root); unmounted on drop.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Self {
        fs::create_dir_all(dir).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(
            mounted.success(),
            "this test needs root to mount a small tmpfs"
        );
        Self(dir.to_path_buf())
    }

    pub fn resize(&self, size: &str) {
        let dir = self.0.to_str().unwrap();
        run("mount", &["-o", &format!("remount,size={size}"), dir]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

pub struct Daemon {
    pub label: String,
    /// Namespace to run in (and to reach the API from); the host's if None.
    pub netns: Option<String>,
    pub root: PathBuf,
    pub storage: PathBuf,
    pub download_dir: PathBuf,
    pub ui: String,
    pub shares: Vec<PathBuf>,
    pub extra: Vec<String>,
    /// Environment variables for the daemon process.
    pub env: Vec<(String, String)>,
    /// Run under a systemd-style watchdog with this period (µs) and `NOTIFY_SOCKET`: the
    /// daemon pings only if `WATCHDOG_PID` is its own PID, which a shell's `exec` provides.
    pub watchdog: Option<(u64, PathBuf)>,
    /// Pass `--download-dir` (off: the daemon picks a stored or default folder).
    pub download_dir_flag: bool,
    /// Off unless a test opts in: mDNS multicasts on every interface, and tests may only
    /// send traffic to loopback or to namespaces they made.
    pub mdns: bool,
    /// Off unless a test opts in, for the same reason: a port-mapping request multicasts
    /// SSDP and asks the default gateway.
    pub upnp: bool,
    /// Off unless a test opts in, so a test's own shares are all a friend sees: on, the
    /// download folder is a share too (`seed_downloads`).
    pub seeding: bool,
    child: Option<Child>,
    log: PathBuf,
    starts: u32,
}

impl Daemon {
    /// Prepares (does not start) a daemon whose files live under `root/label`.
    pub fn new(root: &Path, label: &str) -> Self {
        let base = root.join(label);
        fs::create_dir_all(&base).unwrap();
        Self {
            label: label.to_string(),
            storage: base.join("storage"),
            download_dir: base.join("downloads"),
            ui: format!("http://127.0.0.1:{}", free_tcp_port()),
            root: base.clone(),
            shares: Vec::new(),
            extra: Vec::new(),
            env: Vec::new(),
            watchdog: None,
            download_dir_flag: true,
            mdns: false,
            upnp: false,
            seeding: false,
            netns: None,
            child: None,
            log: base.join("daemon.log"),
            starts: 0,
        }
    }

    pub fn share(mut self, dir: &Path) -> Self {
        self.shares.push(dir.to_path_buf());
        self
    }

    /// Runs the daemon inside `ns`, listening for peers on `listen`.
    pub fn in_netns(mut self, ns: &Netns, listen: &str) -> Self {
        self.netns = Some(ns.name.clone());
        self.extra
            .extend(["--listen".to_string(), listen.to_string()]);
        self
    }

    /// The daemon binary, prefixed with `ip netns exec NS` when it runs in a namespace.
    fn command(&self) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BIN]);
                c
            }
            None => match &self.watchdog {
                Some((usec, socket)) => {
                    let mut c = Command::new("sh");
                    c.args(["-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\"", BIN])
                        .env("WATCHDOG_USEC", usec.to_string())
                        .env("NOTIFY_SOCKET", socket);
                    c
                }
                None => Command::new(BIN),
            },
        }
    }

    /// Turns LAN discovery on; only for daemons inside a namespace the test made.
    pub fn with_mdns(mut self) -> Self {
        self.mdns = true;
        self
    }

    /// Turns router port mapping on; only for daemons inside a namespace the test made.
    pub fn with_upnp(mut self) -> Self {
        self.upnp = true;
        self
    }

    /// Leaves `seed_downloads` at its default (on).
    pub fn with_seeding(mut self) -> Self {
        self.seeding = true;
        self
    }

    pub fn args(mut self, extra: &[&str]) -> Self {
        self.extra.extend(extra.iter().map(|s| s.to_string()));
        self
    }

    /// `start` with every argument this daemon runs with, its output appended to its log.
    fn start_command(&self) -> Command {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = self.command();
        assert!(
            !self.mdns || self.netns.is_some(),
            "{}: mDNS only inside a test namespace",
            self.label
        );
        assert!(
            !self.upnp || self.netns.is_some(),
            "{}: port mapping only inside a test namespace",
            self.label
        );
        let loopback = ["--listen", "127.0.0.1:0"];
        cmd.args([
            "--storage",
            self.storage.to_str().unwrap(),
            "--ui-address",
            &self.ui,
            "start",
        ])
        // Only lab tests that bring their own STUN server in a namespace query one.
        .args(if self.extra.iter().any(|a| a == "--stun-server") {
            &[][..]
        } else {
            &["--no-stun"][..]
        })
        .args(if self.mdns {
            &[][..]
        } else {
            &["--no-mdns"][..]
        })
        .args(if self.upnp {
            &[][..]
        } else {
            &["--no-upnp"][..]
        })
        .args(if self.seeding {
            &[][..]
        } else {
            &["--no-seed-downloads"][..]
        })
        .args(if self.netns.is_none() {
            &loopback[..]
        } else {
            &[]
        })
        .args(if self.download_dir_flag {
            vec![
                OsString::from("--download-dir"),
                self.download_dir.clone().into(),
            ]
        } else {
            Vec::new()
        })
        .args(&self.extra)
        .env("RUST_LOG", "harddrive_party=debug,info")
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        for share in &self.shares {
            cmd.arg("--share-dir").arg(share);
        }
        cmd
    }

    /// Runs `start` expecting it to fail: its exit status and what it printed (bounded to
    /// 20 s; a daemon that stays up is killed and fails the test).
    pub fn start_fails(&self) -> (std::process::ExitStatus, String) {
        let before = self.log_text().len();
        let mut child = self.start_command().spawn().expect("spawn daemon");
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} start did not fail within 20 s", self.label);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        (status, self.log_text()[before..].to_string())
    }

    /// Starts the process and waits until its API answers.
    pub fn start(&mut self) -> &mut Self {
        assert!(self.child.is_none(), "{} already running", self.label);
        self.starts += 1;
        let mut cmd = self.start_command();
        self.child = Some(cmd.spawn().expect("spawn daemon"));
        let label = self.label.clone();
        wait_for(
            &format!("{label} API to answer"),
            Duration::from_secs(20),
            || {
                if let Some(child) = self.child.as_mut() {
                    if let Ok(Some(status)) = child.try_wait() {
                        panic!("{label} exited early with {status}:\n{}", self.log_text());
                    }
                }
                // Answers with or without a web UI password set.
                self.try_api_get("/api/auth/session")
            },
        );
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Waits (bounded) for the daemon to exit by itself; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = wait_for(&format!("{} to exit", self.label), limit, || {
            child.try_wait().unwrap()
        });
        self.child = None;
        status
    }

    /// SIGKILL: no chance to save anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        status.success(),
                        "{} exited with {status} on SIGTERM",
                        self.label
                    );
                    return;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{} did not stop within 10 s of SIGTERM", self.label);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .args([
                "--storage",
                self.storage.to_str().unwrap(),
                "--ui-address",
                &self.ui,
            ])
            .args(args)
            .output()
            .expect("run cli")
    }

    /// Runs `connect ADDRESS`: true when the peer welcomed us (exit 0), false when it keeps
    /// our request for its owner to approve (exit 3); any other outcome fails the test.
    pub fn connect(&self, address: &str) -> bool {
        let out = self.cli(&["connect", address]);
        match out.status.code() {
            Some(0) => true,
            Some(3) => false,
            _ => panic!(
                "{} connect {address} failed: {}\n--- daemon log ---\n{}",
                self.label,
                String::from_utf8_lossy(&out.stderr),
                self.log_text()
            ),
        }
    }

    /// Runs a CLI command that must succeed and returns its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{} {:?} failed: {}\n--- daemon log ---\n{}",
            self.label,
            args,
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn cli_json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.cli_ok(args)).expect("json output")
    }

    fn token(&self) -> String {
        fs::read_to_string(self.storage.join("api-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn try_api_get(&self, path: &str) -> Option<Value> {
        let url = format!("{}{path}", self.ui);
        let get = move || {
            ureq::get(&url)
                .timeout(Duration::from_secs(5))
                .call()
                .ok()?
                .into_json()
                .ok()
        };
        match &self.netns {
            Some(ns) => in_netns(ns, get),
            None => get(),
        }
    }

    pub fn api_get(&self, path: &str) -> Value {
        self.try_api_get(path)
            .unwrap_or_else(|| panic!("GET {path} on {} failed", self.label))
    }

    pub fn api_post(&self, path: &str, body: Value) -> Result<Value, (u16, String)> {
        let (url, token) = (format!("{}{path}", self.ui), self.token());
        let post = move || match ureq::post(&url)
            .set("Authorization", &format!("Bearer {token}"))
            .send_json(body)
        {
            Ok(r) => Ok(r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(code, r)) => Err((code, r.into_string().unwrap_or_default())),
            Err(e) => Err((0, e.to_string())),
        };
        match &self.netns {
            Some(ns) => in_netns(ns, post),
            None => post(),
        }
    }

    pub fn api_delete(&self, path: &str) -> Result<Value, (u16, String)> {
        let (url, token) = (format!("{}{path}", self.ui), self.token());
        let delete = move || match ureq::delete(&url)
            .set("Authorization", &format!("Bearer {token}"))
            .call()
        {
            Ok(r) => Ok(r.into_json().unwrap_or(Value::Null)),
            Err(ureq::Error::Status(code, r)) => Err((code, r.into_string().unwrap_or_default())),
            Err(e) => Err((0, e.to_string())),
        };
        match &self.netns {
            Some(ns) => in_netns(ns, delete),
            None => delete(),
        }
    }

    pub fn name(&self) -> String {
        self.api_get("/api/info")["name"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn announce(&self) -> String {
        self.api_get("/api/info")["announce_address"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `peer`'s entry in `peers --json`, if listed.
    pub fn peer(&self, peer: &str) -> Option<Value> {
        self.cli_json(&["peers", "--json"])
            .as_array()?
            .iter()
            .find(|p| p["name"] == peer)
            .cloned()
    }

    /// Waits for `peer`'s request to show as pending, then approves it.
    pub fn approve(&self, peer: &str) {
        wait_for(
            &format!("{peer}'s request on {}", self.label),
            Duration::from_secs(20),
            || (self.peer(peer)?["trust"] == "pending").then_some(()),
        );
        self.cli_ok(&["approve", peer]);
    }

    /// `peer`'s entry in `peers --json` while it is connected.
    pub fn connected_entry(&self, peer: &str) -> Option<Value> {
        self.peer(peer).filter(|p| p["connected"] == true)
    }

    pub fn connected_to(&self, peer: &str) -> bool {
        self.api_get("/api/peers")
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == peer && p["connected"] == true)
    }

    pub fn transfer(&self, id: u64) -> Value {
        self.api_get(&format!("/api/transfers/{id}"))
    }

    pub fn uploads(&self) -> Vec<Value> {
        self.api_get("/api/transfers")
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["direction"] == "upload")
            .cloned()
            .collect()
    }

    /// Queues `peer/path` and returns the download id.
    pub fn download(&self, peer_path: &str) -> u64 {
        self.api_post("/api/downloads", serde_json::json!({ "path": peer_path }))
            .unwrap()["id"]
            .as_u64()
            .unwrap()
    }

    pub fn wait_download_done(&self, id: u64, limit: Duration) -> Value {
        wait_for(
            &format!("download {id} on {} to finish", self.label),
            limit,
            || {
                let t = self.transfer(id);
                match t["state"].as_str() {
                    Some("done") => Some(t),
                    Some("failed") => panic!("download failed: {t}\n{}", self.log_text()),
                    _ => None,
                }
            },
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            let log = self.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last log lines of {} ---", self.label);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
        self.kill9();
    }
}

/// Waits until `d`'s own index lists `entries` entries (shares, dirs and files together).
pub fn wait_indexed(d: &Daemon, entries: usize) {
    wait_for(
        &format!("{} to index {entries} entries", d.label),
        Duration::from_secs(20),
        || {
            d.cli_json(&["shares", "--json"])
                .as_array()
                .is_some_and(|l| l.len() == entries)
                .then_some(())
        },
    );
}

/// A daemon "a" sharing `share` (indexed once it lists `entries` entries) and a daemon "b",
/// friends, each started with its extra arguments.
pub fn sharer_and_downloader(
    root: &Path,
    share: &Path,
    entries: usize,
    sharer_args: &[&str],
    downloader_args: &[&str],
) -> (Daemon, Daemon) {
    let mut a = Daemon::new(root, "a").share(share).args(sharer_args);
    let mut b = Daemon::new(root, "b").args(downloader_args);
    a.start();
    b.start();
    befriend(&b, &a);
    wait_indexed(&a, entries);
    (a, b)
}

/// Makes `a` and `b` friends the way two people who swapped announce addresses do (each
/// runs `connect` with the other's), and waits until both see the connection.
pub fn befriend(a: &Daemon, b: &Daemon) {
    // The first connect may wait for approval (b may not know a yet); the second cannot.
    a.connect(&b.announce());
    assert!(
        b.connect(&a.announce()),
        "{} did not welcome {} after dialling it",
        a.label,
        b.label
    );
    let (an, bn) = (a.name(), b.name());
    wait_for(
        "both ends to see the connection",
        Duration::from_secs(20),
        || (a.connected_to(&bn) && b.connected_to(&an)).then_some(()),
    );
}

/// A GET as a media player sends it, with a `Range` header if given; an error status is an
/// answer like any other (10 s at most).
pub fn ranged_get(url: &str, range: Option<&str>) -> ureq::Response {
    let mut request = ureq::get(url).timeout(Duration::from_secs(10));
    if let Some(range) = range {
        request = request.set("Range", range);
    }
    match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{url}: {e}"),
    }
}

pub fn body_of(response: ureq::Response) -> Vec<u8> {
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut body).unwrap();
    body
}
