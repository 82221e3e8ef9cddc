//! NAT traversal proven in a lab of network namespaces (see `lab.rs`): real daemons behind
//! real Linux NAT, a real coturn for STUN and TURN. Every pair of NAT types connects by
//! exchanged announce addresses and downloads a file checked by sha256; every pair but
//! symmetric <-> symmetric must be direct, that one relayed. `join.rs`: an invite between
//! two symmetric NATs, where the inviter would have to dial.

#[path = "../common/mod.rs"]
mod common;
mod join;
mod lab;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use lab::{Lab, Nat, Site, STUN_A, TURN_PASSWORD, TURN_USER};

fn lab_daemon(root: &Path, label: &str, site: &Site, turn: bool) -> Daemon {
    let mut d = site.daemon(root, label);
    if turn {
        d = d.args(&[
            "--turn-server",
            STUN_A,
            "--turn-username",
            TURN_USER,
            "--turn-password",
            TURN_PASSWORD,
        ]);
    }
    d
}

fn wait_classified(d: &Daemon, nat: Nat) -> serde_json::Value {
    wait_for(
        &format!(
            "{} to classify its NAT as {}",
            d.label,
            nat.expected_class()
        ),
        Duration::from_secs(20),
        || {
            let info = d.api_get("/api/info");
            (info["nat_type"] == nat.expected_class()).then_some(info)
        },
    )
}

struct Outcome {
    pair: String,
    path: String,
    connect: Duration,
}

/// Both sides `connect` to each other at once (as two friends who swapped codes would), then
/// the right side downloads the left side's file.
fn run_pair(root: &Path, left: &Site, right: &Site, index: usize) -> Outcome {
    left.flush_conntrack();
    right.flush_conntrack();
    let dir = root.join(format!("pair{index}"));
    let share = dir.join("share/Lab");
    write_random_file(&share.join("data.bin"), 2 * 1024 * 1024, index as u64);
    let mut a = lab_daemon(&dir, "left", left, true).share(&share);
    let mut b = lab_daemon(&dir, "right", right, true);
    a.start();
    b.start();
    wait_classified(&a, left.nat);
    wait_classified(&b, right.nat);
    wait_indexed(&a, 2);
    let (an, bn) = (a.name(), b.name());
    let (a_code, b_code) = (a.announce(), b.announce());
    let started = Instant::now();
    let (a_out, b_out) = thread::scope(|s| {
        let ja = s.spawn(|| a.cli(&["connect", &b_code]));
        let jb = s.spawn(|| b.cli(&["connect", &a_code]));
        (ja.join().unwrap(), jb.join().unwrap())
    });
    let (a_entry, b_entry) = wait_for(
        "both ends to see the connection",
        Duration::from_secs(30),
        || Some((a.connected_entry(&bn)?, b.connected_entry(&an)?)),
    );
    let connect = started.elapsed();
    let pair = format!("{} <-> {}", left.nat.label(), right.nat.label());
    for (out, who) in [(&a_out, "left"), (&b_out, "right")] {
        // Both dial at once: each side may already know the other (0) or not yet (3).
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "{pair}: connect on the {who} side failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let expected = if left.nat == Nat::Symmetric && right.nat == Nat::Symmetric {
        "relayed"
    } else {
        "direct"
    };
    assert_eq!(a_entry["connection"], expected, "{pair}: {a_entry}");
    assert_eq!(b_entry["connection"], expected, "{pair}: {b_entry}");
    assert!(b_entry["remote_address"].is_string(), "{b_entry}");
    let id = b.download(&format!("{an}/Lab/data.bin"));
    let done = b.wait_download_done(id, Duration::from_secs(60));
    assert_eq!(done["verified"], true);
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Lab/data.bin")),
        sha256_file(&share.join("data.bin")),
        "{pair}: downloaded bytes differ"
    );
    a.stop();
    b.stop();
    Outcome {
        pair,
        path: expected.to_string(),
        connect,
    }
}

#[test]
fn every_pair_of_nat_types_connects_and_downloads() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new("nat");
    lab.start_coturn(tmp.path(), true);
    let left: Vec<Site> = Nat::ALL
        .iter()
        .enumerate()
        .map(|(i, nat)| lab.site(&format!("l{i}"), *nat))
        .collect();
    let right: Vec<Site> = Nat::ALL
        .iter()
        .enumerate()
        .map(|(i, nat)| lab.site(&format!("r{i}"), *nat))
        .collect();
    let only = std::env::var("HDP_LAB_ONLY").ok();
    let mut outcomes = Vec::new();
    for (i, l) in left.iter().enumerate() {
        for r in &right[i..] {
            let label = format!("{}-{}", l.nat.label(), r.nat.label());
            if only.as_ref().is_some_and(|o| !label.contains(o.as_str())) {
                continue;
            }
            println!("pair {label} ...");
            let outcome = run_pair(tmp.path(), l, r, outcomes.len());
            println!("pair {label}: {} in {:?}", outcome.path, outcome.connect);
            outcomes.push(outcome);
        }
    }
    let mut table = String::from("NAT lab matrix (both sides connect by announce address):\n");
    table.push_str(&format!("{:<28} {:<8} {:>10}\n", "pair", "path", "connect"));
    for o in &outcomes {
        table.push_str(&format!(
            "{:<28} {:<8} {:>7} ms\n",
            o.pair,
            o.path,
            o.connect.as_millis()
        ));
    }
    println!("\n{table}");
    // ci/test prints this file after the integration tests, which capture test output.
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("natlab-matrix.txt"),
        &table,
    );
    assert!(!outcomes.is_empty());
}

/// Behind two port-restricted NATs whose routers forget quiet UDP flows after 10 s
/// (unreplied) and 20 s (replied): 10% loss and a 2 Mbit/s cap on the sharer's uplink still
/// deliver 20 MB intact, and keep-alives hold the mappings through a minute of silence.
#[test]
fn a_lossy_slow_link_completes_and_an_idle_connection_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new("lossy");
    lab.start_coturn(tmp.path(), false);
    let left = lab.site("kl", Nat::PortRestricted);
    let right = lab.site("kr", Nat::PortRestricted);
    left.set_udp_timeouts(10, 20);
    right.set_udp_timeouts(10, 20);
    left.host.exec(&["nft", "add", "table", "netdev", "lossy"]);
    left.host.exec(&[
        "nft",
        "add",
        "chain",
        "netdev",
        "lossy",
        "out",
        "{ type filter hook egress device \"eth0\" priority 0 ; }",
    ]);
    left.host.exec(&[
        "nft", "add", "rule", "netdev", "lossy", "out", "numgen", "random", "mod", "100", "<",
        "10", "counter", "drop",
    ]);
    left.host.exec(&[
        "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", "2mbit", "burst", "32kb",
        "latency", "400ms",
    ]);

    let share = tmp.path().join("share/Slow");
    write_random_file(&share.join("data.bin"), 20 * 1000 * 1000, 11);
    let keep_alive = ["--keep-alive-interval", "4"];
    let mut a = lab_daemon(tmp.path(), "a", &left, false)
        .share(&share)
        .args(&keep_alive);
    let mut b = lab_daemon(tmp.path(), "b", &right, false).args(&keep_alive);
    a.start();
    b.start();
    wait_classified(&a, Nat::PortRestricted);
    wait_classified(&b, Nat::PortRestricted);
    wait_indexed(&a, 2);
    let (an, bn) = (a.name(), b.name());
    let (a_code, b_code) = (a.announce(), b.announce());
    thread::scope(|s| {
        s.spawn(|| a.cli(&["connect", &b_code]));
        s.spawn(|| b.cli(&["connect", &a_code]));
    });
    wait_for("the lossy pair to connect", Duration::from_secs(30), || {
        Some((a.connected_entry(&bn)?, b.connected_entry(&an)?))
    });
    let id = b.download(&format!("{an}/Slow/data.bin"));
    let done = b.wait_download_done(id, Duration::from_secs(300));
    assert_eq!(done["verified"], true);
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Slow/data.bin")),
        sha256_file(&share.join("data.bin"))
    );

    // A minute without transfers: three times the routers' timeout for a replied flow.
    let logged_before = [a.log_text().len(), b.log_text().len()];
    thread::sleep(Duration::from_secs(60));
    assert!(a.connected_entry(&bn).is_some() && b.connected_entry(&an).is_some());
    for ((d, other), before) in [(&a, &bn), (&b, &an)].into_iter().zip(logged_before) {
        let during_idle = d.log_text().split_off(before);
        assert!(
            !during_idle.contains(&format!("{other} disconnected")),
            "{} lost the idle connection:\n{during_idle}",
            d.label
        );
    }
    let listing = b.cli_json(&["ls", &format!("{an}/Slow"), "--json"]);
    assert!(listing.to_string().contains("data.bin"), "{listing}");
}

/// No STUN server reachable: the daemon starts at once, says it is offline, keeps working on
/// the LAN, and notices the server when it appears.
#[test]
fn starting_offline_reports_unknown_then_classifies_when_stun_appears() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new("offline");
    let site = lab.site("of", Nat::Public);
    let mut d = lab_daemon(tmp.path(), "d", &site, false);
    d.start();
    let info = d.api_get("/api/info");
    assert_eq!(info["nat_type"], "unknown", "{info}");
    assert_eq!(info["online"], false, "{info}");
    assert!(info["public_address"].is_null(), "{info}");
    // A whole round must have failed (and the daemon kept serving) before the server
    // appears, so what follows proves the retry.
    wait_for("a failed STUN round", Duration::from_secs(10), || {
        d.log_text()
            .contains("no STUN server answered")
            .then_some(())
    });
    assert_eq!(d.api_get("/api/info")["online"], false);
    lab.start_coturn(tmp.path(), false);
    let info = wait_classified(&d, Nat::Public);
    assert_eq!(info["online"], true, "{info}");
    assert_eq!(
        info["public_address"],
        format!(
            "{}:{}",
            site.host_ip,
            d.api_get("/api/info")["listen_address"]
                .as_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
        ),
        "{info}"
    );
    assert!(info["announce_address"]
        .as_str()
        .unwrap()
        .parse::<harddrive_party::announce::AnnounceAddress>()
        .is_ok_and(|a| a.nat_type == harddrive_party::announce::NatType::None));
}

/// Two friends behind port-restricted NATs who each only know a public peer B: B's gossip
/// and their introductions through B make them punch towards each other at the same time,
/// and they end up connected directly.
#[test]
fn peers_learnt_through_a_mutual_friend_punch_through_together() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new("mutual");
    lab.start_coturn(tmp.path(), false);
    let public = lab.site("mb", Nat::Public);
    let left = lab.site("ma", Nat::PortRestricted);
    let right = lab.site("mc", Nat::PortRestricted);
    let mut b = lab_daemon(tmp.path(), "b", &public, false);
    let mut a = lab_daemon(tmp.path(), "a", &left, false).args(&["--trust-introduced"]);
    let mut c = lab_daemon(tmp.path(), "c", &right, false).args(&["--trust-introduced"]);
    for (d, nat) in [
        (&mut b, Nat::Public),
        (&mut a, Nat::PortRestricted),
        (&mut c, Nat::PortRestricted),
    ] {
        d.start();
        wait_classified(d, nat);
    }
    let b_code = b.announce();
    assert!(!a.connect(&b_code), "a stranger was welcomed");
    assert!(!c.connect(&b_code), "a stranger was welcomed");
    let (an, cn) = (a.name(), c.name());
    // B answers both requests; A and C trust whom B introduces (`--trust-introduced`).
    b.approve(&an);
    b.approve(&cn);
    let (from_a, from_c) = wait_for(
        "A and C to connect through what B told them",
        Duration::from_secs(40),
        || Some((a.connected_entry(&cn)?, c.connected_entry(&an)?)),
    );
    assert_eq!(from_a["connection"], "direct", "{from_a}");
    assert_eq!(from_c["connection"], "direct", "{from_c}");
    // The address each sees is the other's router, not B.
    let b_ip = public.host_ip.as_str();
    for entry in [&from_a, &from_c] {
        assert!(
            !entry["remote_address"].as_str().unwrap().starts_with(b_ip),
            "{entry}"
        );
    }
}

/// The router gets a new public IP: the next STUN round notices, and the new announce
/// address reaches the connected peer.
#[test]
fn a_new_public_address_is_noticed_and_announced() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lab = Lab::new("renum");
    lab.start_coturn(tmp.path(), false);
    let public = lab.site("np", Nat::Public);
    let home = lab.site("nh", Nat::PortRestricted);
    let mut p = lab_daemon(tmp.path(), "p", &public, false);
    let mut h = lab_daemon(tmp.path(), "h", &home, false).args(&["--stun-interval", "2"]);
    p.start();
    h.start();
    wait_classified(&p, Nat::Public);
    let before = wait_classified(&h, Nat::PortRestricted);
    assert!(!h.connect(&p.announce()), "a stranger was welcomed");
    let hn = h.name();
    p.approve(&hn);
    wait_for("the home peer to connect", Duration::from_secs(20), || {
        p.connected_entry(&hn)
    });

    home.change_public_ip("203.0.113.99");
    let after = wait_for(
        "a STUN round to see the new address",
        Duration::from_secs(30),
        || {
            let info = h.api_get("/api/info");
            info["public_address"]
                .as_str()
                .is_some_and(|a| a.starts_with("203.0.113.99:"))
                .then_some(info)
        },
    );
    assert_ne!(before["public_address"], after["public_address"]);
    wait_for(
        "the peer to learn the new address",
        Duration::from_secs(60),
        || {
            let peers = p.api_get("/api/peers");
            let code = peers
                .as_array()?
                .iter()
                .find(|e| e["name"] == hn.as_str())?["announce_address"]
                .as_str()?
                .parse::<harddrive_party::announce::AnnounceAddress>()
                .ok()?;
            (code.addr.ip().to_string() == "203.0.113.99").then_some(())
        },
    );
}
