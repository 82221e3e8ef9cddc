//! Port mapping against a real miniupnpd (Debian's `miniupnpd-nftables`) running in a NAT
//! lab router (see `natlab/lab.rs`): a daemon behind a port-restricted NAT gets a mapping,
//! announces it as a public address, is reached by a public peer that alone dials (no
//! punching from behind the NAT), and removes the mapping when it stops. Once over UPnP-IGD
//! (miniupnpd with NAT-PMP/PCP off), once over PCP (UPnP off), the latter with a short
//! lease so a renewal happens during the test.
//!
//! miniupnpd refuses to map when its WAN address is private or reserved, and the lab's
//! "internet" is TEST-NET-3. With `ext_perform_stun` it asks the lab's coturn (RFC 5780
//! change requests) whether the WAN is filtered and, finding it open, maps all the same.

#[path = "common/mod.rs"]
mod common;
#[path = "natlab/lab.rs"]
mod lab;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use harddrive_party::announce::{AnnounceAddress, NatType};
use lab::{Lab, Nat, Site};

/// The chains miniupnpd fills (its defaults: table `filter`, family inet), hooked in beside
/// the lab's own NAT table. Made here rather than with its init script, which writes to a
/// fixed path in /tmp.
const MINIUPNPD_TABLES: &str = "table inet filter {
  chain forward {
    type filter hook forward priority 0; policy accept;
    jump miniupnpd
  }
  chain miniupnpd {
  }
  chain prerouting {
    type nat hook prerouting priority -100; policy accept;
    jump prerouting_miniupnpd
  }
  chain postrouting {
    type nat hook postrouting priority 100; policy accept;
    jump postrouting_miniupnpd
  }
  chain prerouting_miniupnpd {
  }
  chain postrouting_miniupnpd {
  }
}
";

#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Upnp,
    Pcp,
}

/// miniupnpd in the router's namespace, in the foreground; stopped by its PID on drop (also
/// when the test fails).
struct Miniupnpd {
    child: Child,
    log: std::path::PathBuf,
}

impl Miniupnpd {
    fn start(dir: &Path, site: &Site, protocol: Protocol) -> Self {
        let router = site.router.as_ref().expect("a router");
        let tables = dir.join("miniupnpd.nft");
        std::fs::write(&tables, MINIUPNPD_TABLES).unwrap();
        router.exec(&["nft", "-f", tables.to_str().unwrap()]);
        // miniupnpd's STUN check sends from fresh ports and needs the answers from the
        // server's other address and port; the lab router drops unsolicited WAN input.
        router.exec(&[
            "nft",
            "insert",
            "rule",
            "ip",
            "lab",
            "input",
            "iifname",
            "wan",
            "ip",
            "saddr",
            "203.0.113.0/24",
            "udp",
            "sport",
            "{",
            "3478,",
            "3479",
            "}",
            "accept",
        ]);
        let lan = site.host_ip.rsplit_once('.').unwrap().0;
        let (upnp, pmp, lifetime) = match protocol {
            Protocol::Upnp => ("yes", "no", ""),
            // PCP grants at most 60 s here, so the daemon renews after 30 s.
            Protocol::Pcp => ("no", "yes", "min_lifetime=30\nmax_lifetime=60\n"),
        };
        let config = dir.join("miniupnpd.conf");
        std::fs::write(
            &config,
            format!(
                "ext_ifname=wan
listening_ip=lan
enable_upnp={upnp}
enable_natpmp={pmp}
{lifetime}secure_mode=yes
system_uptime=yes
ext_perform_stun=yes
ext_stun_host=203.0.113.1
ext_stun_port=3478
lease_file={leases}
uuid=5f1d9c2e-7a41-4c7e-9b1a-2f6d3e8a0b11
allow 1024-65535 {lan}.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
",
                leases = dir.join("miniupnpd.leases").display(),
            ),
        )
        .unwrap();
        let log = dir.join("miniupnpd.log");
        let pidfile = dir.join("miniupnpd.pid");
        let child = lab::spawn_in(
            router,
            &[
                "miniupnpd",
                "-d",
                "-f",
                config.to_str().unwrap(),
                "-P",
                pidfile.to_str().unwrap(),
            ],
            &log,
        );
        let daemon = Self { child, log };
        let listening = match protocol {
            Protocol::Upnp => "HTTP listening on port",
            Protocol::Pcp => "Listening for NAT-PMP/PCP traffic",
        };
        wait_for(
            "miniupnpd to enable port forwarding",
            Duration::from_secs(20),
            || {
                let text = daemon.log_text();
                assert!(
                    !text.contains("Port forwarding is now disabled"),
                    "miniupnpd found its WAN filtered:\n{text}"
                );
                (text.contains("Port forwarding is now enabled") && text.contains(listening))
                    .then_some(())
            },
        );
        daemon
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Miniupnpd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- miniupnpd log ---\n{}", self.log_text());
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The router's NAT rules that miniupnpd added (its DNAT per mapping).
fn forwardings(site: &Site) -> String {
    let router = &site.router.as_ref().unwrap().name;
    let out = Command::new("ip")
        .args([
            "netns", "exec", router, "nft", "list", "chain", "inet", "filter",
        ])
        .arg("prerouting_miniupnpd")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn mapped_daemon_is_dialled_directly(tag: &str, protocol: Protocol) {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(tag);
    lab.start_coturn_rfc5780(tmp.path());
    let home = lab.site(&format!("{tag}h"), Nat::PortRestricted);
    let outside = lab.site(&format!("{tag}o"), Nat::Public);
    let upnpd = Miniupnpd::start(tmp.path(), &home, protocol);

    if protocol == Protocol::Upnp {
        // Off by default in the harness; `--no-upnp` must also hold with a router that
        // would map.
        let mut off = home.daemon(tmp.path(), "off");
        off.start();
        std::thread::sleep(Duration::from_secs(4));
        let info = off.api_get("/api/info");
        assert!(info["port_mapping"].is_null(), "{info}");
        off.stop();
        let rules = forwardings(&home);
        assert!(!rules.contains("dnat"), "{rules}");
    }

    let share = tmp.path().join("share/Home");
    write_random_file(&share.join("data.bin"), 256 * 1024, 7);
    let mut d = home.daemon(tmp.path(), "home").with_upnp().share(&share);
    let mut p = outside.daemon(tmp.path(), "outside");
    d.start();
    p.start();
    let info = wait_for(
        "the daemon behind the NAT to get a port mapping and classify its NAT",
        Duration::from_secs(30),
        || {
            let info = d.api_get("/api/info");
            (!info["port_mapping"].is_null() && info["nat_type"] == "cone").then_some(info)
        },
    );
    let mapping = &info["port_mapping"];
    let expected_protocol = match protocol {
        Protocol::Upnp => "upnp",
        Protocol::Pcp => "pcp",
    };
    assert_eq!(mapping["protocol"], expected_protocol, "{info}");
    let external: std::net::SocketAddr = mapping["external_address"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let local_port: u16 = info["listen_address"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // The router's WAN address, the same STUN sees.
    assert_eq!(
        info["public_address"]
            .as_str()
            .unwrap()
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .ip(),
        external.ip(),
        "{info}"
    );
    assert_eq!(external.port(), local_port, "our own port first: {info}");
    match protocol {
        Protocol::Upnp => assert_eq!(mapping["lease_seconds"], 3600, "{info}"),
        Protocol::Pcp => assert_eq!(mapping["lease_seconds"], 60, "{info}"),
    }
    // The mapping is announced as a public address; `nat_type` keeps what STUN found.
    let announce: AnnounceAddress = info["announce_address"].as_str().unwrap().parse().unwrap();
    assert_eq!(announce.addr, external, "{info}");
    assert_eq!(announce.nat_type, NatType::None, "{info}");
    let rules = forwardings(&home);
    let target = format!("{}:{local_port}", home.host_ip);
    assert!(
        rules.contains("dnat") && rules.contains(&target),
        "no DNAT to {target} in the router:\n{rules}"
    );

    // Only the public side runs `connect`; the home daemon approves its request.
    wait_for(
        "the outside peer to classify itself",
        Duration::from_secs(20),
        || (p.api_get("/api/info")["nat_type"] == "none").then_some(()),
    );
    let (dn, pn) = (d.name(), p.name());
    assert!(!p.connect(&d.announce()), "a stranger was welcomed");
    // The outside peer's request reached the home daemon through the mapping, before the
    // home daemon dialled anything.
    wait_for(
        "the outside peer's request at home",
        Duration::from_secs(20),
        || (d.peer(&pn)?["trust"] == "pending").then_some(()),
    );
    let log = d.log_text();
    assert!(
        !log.contains("punch") && !log.contains("reaching "),
        "the home daemon dialled or punched:\n{log}"
    );
    d.cli_ok(&["approve", &pn]);
    let (p_entry, _) = wait_for(
        "both ends to see the connection",
        Duration::from_secs(20),
        || Some((p.connected_entry(&dn)?, d.connected_entry(&pn)?)),
    );
    assert_eq!(p_entry["connection"], "direct", "{p_entry}");
    assert_eq!(p_entry["remote_address"], external.to_string(), "{p_entry}");
    wait_indexed(&d, 2);
    let id = p.download(&format!("{dn}/Home/data.bin"));
    let done = p.wait_download_done(id, Duration::from_secs(30));
    assert_eq!(done["verified"], true);
    assert_eq!(
        sha256_file(&p.download_dir.join(&dn).join("Home/data.bin")),
        sha256_file(&share.join("data.bin"))
    );

    if protocol == Protocol::Pcp {
        wait_for(
            "the 60 s PCP lease to be renewed",
            Duration::from_secs(45),
            || d.log_text().contains("port mapping renewed").then_some(()),
        );
        assert!(forwardings(&home).contains(&target));
        assert!(p.connected_entry(&dn).is_some());
    }

    d.stop();
    wait_for(
        "the mapping to be removed when the daemon stops",
        Duration::from_secs(5),
        || (!forwardings(&home).contains(&target)).then_some(()),
    );
    let log = d.log_text();
    assert!(
        log.contains(&format!("port mapping for {external} removed")),
        "no removal logged:\n{log}"
    );
    p.stop();
    drop(upnpd);
}

#[test]
fn a_upnp_mapping_lets_a_public_peer_dial_in_and_goes_away_on_stop() {
    mapped_daemon_is_dialled_directly("pmu", Protocol::Upnp);
}

#[test]
fn a_pcp_mapping_is_renewed_and_goes_away_on_stop() {
    mapped_daemon_is_dialled_directly("pmp", Protocol::Pcp);
}
