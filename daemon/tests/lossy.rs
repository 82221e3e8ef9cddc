//! A lossy link between two real daemons in network namespaces made by the test: 10% of
//! packets dropped on one side (nft numgen; netem is not in this kernel). The download is
//! slow but completes and verifies.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_download_over_a_link_losing_ten_percent_completes_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let (left, right) = (Netns::new("loss-a"), Netns::new("loss-b"));
    let veth_a = format!("hla{}", std::process::id() % 100_000);
    let veth_b = format!("hlb{}", std::process::id() % 100_000);
    // Both ends are created straight inside the namespaces: the host's links and routes
    // are never touched.
    left.exec(&[
        "ip",
        "link",
        "add",
        &veth_a,
        "type",
        "veth",
        "peer",
        "name",
        &veth_b,
        "netns",
        &right.name,
    ]);
    left.exec(&["ip", "addr", "add", "10.77.0.1/24", "dev", &veth_a]);
    left.exec(&["ip", "link", "set", &veth_a, "up"]);
    right.exec(&["ip", "addr", "add", "10.77.0.2/24", "dev", &veth_b]);
    right.exec(&["ip", "link", "set", &veth_b, "up"]);
    left.exec(&["nft", "add", "table", "netdev", "lossy"]);
    let chain = format!("{{ type filter hook egress device \"{veth_a}\" priority 0 ; }}");
    left.exec(&["nft", "add", "chain", "netdev", "lossy", "out", &chain]);
    left.exec(&[
        "nft", "add", "rule", "netdev", "lossy", "out", "numgen", "random", "mod", "100", "<",
        "10", "counter", "drop",
    ]);

    let share = tmp.path().join("share/Lossy");
    write_random_file(&share.join("data.bin"), 20 * 1000 * 1000, 5);
    let mut a = Daemon::new(tmp.path(), "a")
        .share(&share)
        .in_netns(&left, "10.77.0.1:0");
    let mut b = Daemon::new(tmp.path(), "b").in_netns(&right, "10.77.0.2:0");
    a.start();
    b.start();
    let an = a.name();
    wait_indexed(&a, 2);
    // Connecting crosses the lossy link too: QUIC retransmits the handshake.
    b.cli_ok(&["connect", &a.announce()]);
    let id = b.download(&format!("{an}/Lossy/data.bin"));
    let done = b.wait_download_done(id, Duration::from_secs(180));
    assert_eq!(done["verified"], true);
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Lossy/data.bin")),
        sha256_file(&share.join("data.bin"))
    );
    // The rule really dropped packets: its counter shows what it matched.
    let out = std::process::Command::new("ip")
        .args([
            "netns", "exec", &left.name, "nft", "list", "table", "netdev", "lossy",
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    let dropped: u64 = listing
        .split("counter packets ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        dropped > 100,
        "the link dropped only {dropped} packets:\n{listing}"
    );
    a.stop();
    b.stop();
}
