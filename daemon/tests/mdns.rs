//! LAN discovery with real daemons on a LAN made of network namespaces: a "lan" namespace
//! holding a bridge, and a namespace per host with a veth into it. With mDNS on, the two
//! daemons find each other and connect with no announce address exchanged; with
//! `--no-mdns` they do not. Needs root and `iproute2`.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Two hosts on one bridge. Dropping it deletes the namespaces and every link in them.
struct Lan {
    hosts: [Netns; 2],
    _bridge: Netns,
}

impl Lan {
    /// Hosts get `{subnet}.1` and `{subnet}.2` (/24). No namespace has a default route and
    /// the root namespace is never linked in, so nothing leaves the lab.
    fn new(tag: &str, subnet: &str) -> Self {
        let bridge = Netns::new(&format!("{tag}-lan"));
        // Without snooping the bridge floods multicast to every port: mDNS needs nothing
        // else, and no IGMP querier is involved.
        bridge.exec(&[
            "ip",
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        bridge.exec(&["ip", "link", "set", "br0", "up"]);
        let hosts = [1, 2].map(|i| {
            let host = Netns::new(&format!("{tag}-h{i}"));
            let port = format!("port{i}");
            // Both ends are created straight inside the namespaces: the root namespace's
            // links and routes are never touched.
            host.exec(&[
                "ip",
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &bridge.name,
            ]);
            bridge.exec(&["ip", "link", "set", &port, "master", "br0"]);
            bridge.exec(&["ip", "link", "set", &port, "up"]);
            host.exec(&[
                "ip",
                "addr",
                "add",
                &format!("{subnet}.{i}/24"),
                "dev",
                "eth0",
            ]);
            host.exec(&["ip", "link", "set", "eth0", "multicast", "on", "up"]);
            host
        });
        Lan {
            hosts,
            _bridge: bridge,
        }
    }
}

#[test]
fn daemons_on_one_lan_find_each_other_and_share_without_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let lan = Lan::new("mdns", "10.78.0");
    let share = tmp.path().join("share/Lan");
    write_random_file(&share.join("data.bin"), 3_000_000, 11);
    // `--lan-trust`: whoever is on this LAN is a friend (the default makes suggestions).
    let mut a = Daemon::new(tmp.path(), "a")
        .share(&share)
        .in_netns(&lan.hosts[0], "10.78.0.1:0")
        .with_mdns()
        .args(&["--lan-trust"]);
    let mut b = Daemon::new(tmp.path(), "b")
        .in_netns(&lan.hosts[1], "10.78.0.2:0")
        .with_mdns()
        .args(&["--lan-trust"]);
    a.start();
    b.start();
    let (an, bn) = (a.name(), b.name());

    let started = Instant::now();
    wait_for(
        "mDNS discovery and a connection seen by both",
        Duration::from_secs(30),
        || (a.connected_to(&bn) && b.connected_to(&an)).then_some(()),
    );
    eprintln!("discovered and connected in {:.2?}", started.elapsed());
    assert!(
        a.log_text().contains("on the LAN") || b.log_text().contains("on the LAN"),
        "neither daemon logged a LAN discovery"
    );
    // A discovered peer is a known peer: listed with an address to reconnect to.
    let peers = b.cli_json(&["peers", "--json"]);
    let entry = peers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == an.as_str())
        .unwrap_or_else(|| panic!("{an} missing from {peers}"));
    assert_eq!(entry["connected"], true);
    assert!(
        entry["announce_address"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("{an}."))),
        "{entry}"
    );

    wait_indexed(&a, 2);
    let listing = b.cli_json(&["ls", &format!("{an}/Lan"), "--json"]);
    assert!(
        listing
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == format!("{an}/Lan/data.bin").as_str()),
        "{listing}"
    );
    let id = b.download(&format!("{an}/Lan/data.bin"));
    let done = b.wait_download_done(id, Duration::from_secs(60));
    assert_eq!(done["verified"], true);
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Lan/data.bin")),
        sha256_file(&share.join("data.bin"))
    );

    // A peer the user disconnected is not dialled again when it shows up on the LAN anew
    // (a restart re-advertises it); its own dials are refused as before.
    b.cli_ok(&["disconnect", &an]);
    a.stop();
    a.start();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        assert!(!b.connected_to(&an), "{bn} dialled {an} after a disconnect");
        std::thread::sleep(Duration::from_millis(250));
    }
    let peers = b.cli_json(&["peers", "--json"]);
    assert!(
        peers
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == an.as_str() && p["disconnected_by_user"] == true),
        "{peers}"
    );
    a.stop();
    b.stop();
}

#[test]
fn lan_peers_are_suggestions_until_approved() {
    let tmp = tempfile::tempdir().unwrap();
    let lan = Lan::new("mdnssug", "10.80.0");
    let mut a = Daemon::new(tmp.path(), "a")
        .in_netns(&lan.hosts[0], "10.80.0.1:0")
        .with_mdns();
    let mut b = Daemon::new(tmp.path(), "b")
        .in_netns(&lan.hosts[1], "10.80.0.2:0")
        .with_mdns();
    a.start();
    b.start();
    let (an, bn) = (a.name(), b.name());
    for (d, other) in [(&a, &bn), (&b, &an)] {
        let entry = wait_for(
            &format!("{} to list {other} as a LAN suggestion", d.label),
            Duration::from_secs(30),
            || d.peer(other).filter(|p| p["trust"] == "suggested"),
        );
        assert_eq!(entry["lan"], true, "{entry}");
        assert_eq!(entry["connected"], false, "{entry}");
    }
    // Nobody dials a suggestion.
    std::thread::sleep(Duration::from_secs(3));
    assert!(!a.connected_to(&bn) && !b.connected_to(&an));
    assert!(!a.log_text().contains("reaching "), "{}", a.log_text());
    // Approving on both sides makes friends, who connect.
    b.cli_ok(&["approve", &an]);
    a.cli_ok(&["approve", &bn]);
    wait_for(
        "the approved pair to connect",
        Duration::from_secs(20),
        || (a.connected_to(&bn) && b.connected_to(&an)).then_some(()),
    );
    assert_eq!(b.peer(&an).unwrap()["trust"], "friend");
    a.stop();
    b.stop();
}

/// A phone on the LAN that lists local web services finds the UI: `_http._tcp` with the
/// UI's port and LAN address (browsed from the other host with mdns-sd).
#[test]
fn the_web_ui_is_advertised_on_the_lan() {
    let tmp = tempfile::tempdir().unwrap();
    let lan = Lan::new("mdnsui", "10.77.0");
    let port = free_tcp_port();
    let mut a = Daemon::new(tmp.path(), "a")
        .in_netns(&lan.hosts[0], "10.77.0.1:0")
        .with_mdns();
    a.ui = format!("http://10.77.0.1:{port}");
    a.start();
    let found = in_netns(&lan.hosts[1].name, move || {
        let browser = mdns_sd::ServiceDaemon::new().unwrap();
        let events = browser
            .browse(harddrive_party::net::mdns::WEB_UI_SERVICE_TYPE)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut found = None;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match events.recv_timeout(left) {
                Ok(mdns_sd::ServiceEvent::ServiceResolved(service)) => {
                    found = Some((
                        service.fullname.clone(),
                        service.port,
                        service
                            .addresses
                            .iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>(),
                    ));
                    break;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let _ = browser.shutdown();
        found
    });
    let (fullname, found_port, addresses) = found.expect("no _http._tcp service resolved in 20 s");
    assert!(fullname.starts_with("harddrive-party "), "{fullname}");
    assert_eq!(found_port, port);
    assert!(addresses.iter().any(|a| a == "10.77.0.1"), "{addresses:?}");
    a.stop();
}

#[test]
fn with_no_mdns_daemons_on_one_lan_stay_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let lan = Lan::new("nomdns", "10.79.0");
    // The harness passes --no-mdns unless a test opts in.
    let mut a = Daemon::new(tmp.path(), "a").in_netns(&lan.hosts[0], "10.79.0.1:0");
    let mut b = Daemon::new(tmp.path(), "b").in_netns(&lan.hosts[1], "10.79.0.2:0");
    a.start();
    b.start();
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline {
        for (d, other) in [(&a, &b), (&b, &a)] {
            let peers = d.api_get("/api/peers");
            assert_eq!(
                peers.as_array().map(Vec::len),
                Some(0),
                "{} learnt of {} without mDNS: {peers}",
                d.label,
                other.label
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // The link itself works: an announce address still connects them.
    befriend(&b, &a);
    a.stop();
    b.stop();
}
