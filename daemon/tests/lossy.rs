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
    assert!(!b.connect(&a.announce()), "a stranger was welcomed");
    a.approve(&b.name());
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

type Slot = std::sync::Arc<std::sync::Mutex<Option<std::net::SocketAddr>>>;

/// A 1500-byte MTU minus the IPv4 and UDP headers.
const ETHERNET_UDP_PAYLOAD: usize = 1472;

/// One direction of a slow, lossy link: datagrams arriving on `from` leave `to` for the
/// address in `dest` after `delay`, except every tenth, which is dropped. Like a path
/// through Ethernet it carries at most 1472-byte datagrams: larger ones (MTU probes; the
/// relay sits on loopback, where the daemons could otherwise use 64 KB packets) vanish
/// without counting as loss. The sender of each datagram is written to `learn` (how the
/// relay finds B). This kernel has no netem, so the delay is a real UDP relay in the test.
fn relay_direction(
    from: std::net::UdpSocket,
    to: std::net::UdpSocket,
    dest: Slot,
    learn: Option<Slot>,
    delay: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        use std::sync::atomic::Ordering;
        use std::time::Instant;
        let deadline = Instant::now() + Duration::from_secs(900);
        from.set_read_timeout(Some(Duration::from_millis(2)))
            .unwrap();
        let mut queue: std::collections::VecDeque<(Instant, Vec<u8>)> = Default::default();
        let mut buf = vec![0u8; 65536];
        let (mut seen, mut dropped) = (0u64, 0u64);
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            if let Ok((n, source)) = from.recv_from(&mut buf) {
                if let Some(slot) = &learn {
                    *slot.lock().unwrap() = Some(source);
                }
                if n > ETHERNET_UDP_PAYLOAD {
                    continue;
                }
                seen += 1;
                // A fixed pattern is as lossy as a random one and keeps runs comparable.
                if seen % 10 == 7 {
                    dropped += 1;
                } else {
                    queue.push_back((Instant::now() + delay, buf[..n].to_vec()));
                }
            }
            let now = Instant::now();
            while queue.front().is_some_and(|(due, _)| *due <= now) {
                let Some((_, datagram)) = queue.pop_front() else {
                    break;
                };
                let target = *dest.lock().unwrap();
                if let Some(target) = target {
                    let _ = to.send_to(&datagram, target);
                }
            }
        }
        dropped
    })
}

/// A 1 s round trip (500 ms each way) with 10% loss both ways, through a delaying relay
/// between two real daemons: slow, but the download completes and verifies.
#[test]
fn a_download_over_a_one_second_round_trip_with_loss_completes() {
    use std::net::UdpSocket;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let tmp = tempfile::tempdir().unwrap();
    let share = tmp.path().join("share/Far");
    // Small: at this RTT and loss QUIC's congestion control moves a few KB/s.
    write_random_file(&share.join("data.bin"), 512 * 1024, 6);
    let mut a = Daemon::new(tmp.path(), "a").share(&share);
    let mut b = Daemon::new(tmp.path(), "b");
    a.start();
    b.start();
    wait_indexed(&a, 2);
    let real: harddrive_party::announce::AnnounceAddress = a.announce().parse().unwrap();

    // B dials the relay's near side; its far side talks to A.
    let near = UdpSocket::bind("127.0.0.1:0").unwrap();
    let far = UdpSocket::bind("127.0.0.1:0").unwrap();
    let near_addr = near.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let to_a: Slot = Arc::new(Mutex::new(Some(real.addr)));
    let to_b: Slot = Arc::new(Mutex::new(None));
    let one_way = Duration::from_millis(500);
    let towards_a = relay_direction(
        near.try_clone().unwrap(),
        far.try_clone().unwrap(),
        to_a,
        Some(to_b.clone()),
        one_way,
        stop.clone(),
    );
    let towards_b = relay_direction(far, near, to_b, None, one_way, stop.clone());

    let via_relay = harddrive_party::announce::AnnounceAddress {
        addr: near_addr,
        ..real
    };
    let an = a.name();
    assert!(
        !b.connect(&via_relay.to_string()),
        "a stranger was welcomed"
    );
    // A answers the request where it came from: through the relay.
    a.approve(&b.name());
    let id = b.download(&format!("{an}/Far/data.bin"));
    let done = b.wait_download_done(id, Duration::from_secs(400));
    // Still through the relay: nothing went round it on the fast loopback path.
    let peers = b.api_get("/api/peers");
    let through = peers
        .as_array()
        .and_then(|l| l.iter().find(|p| p["name"] == an.as_str()))
        .map(|p| p["remote_address"].clone());
    stop.store(true, Ordering::Relaxed);
    assert_eq!(through, Some(near_addr.to_string().into()), "{peers}");
    let dropped = towards_a.join().unwrap() + towards_b.join().unwrap();
    assert_eq!(done["verified"], true);
    assert_eq!(
        sha256_file(&b.download_dir.join(&an).join("Far/data.bin")),
        sha256_file(&share.join("data.bin"))
    );
    assert!(dropped > 50, "the relay dropped only {dropped} datagrams");
}
