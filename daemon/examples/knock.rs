//! Bench-only stranger flood (`ci/bench`, stage `flood`): COUNT connections in a row to a
//! daemon, each from a fresh key on a fresh socket, each asking for the share list once and
//! hanging up, as `daemon/tests/flood.rs` does. An example, so the shipped binary does not
//! carry it: `cargo build --release --example knock`.
//!
//! Usage: `knock ANNOUNCE_ADDRESS COUNT [JUNK_PER_SECOND]`. With a rate, a second thread
//! sends that many junk datagrams a second to the daemon's port while the knocks last: half
//! random bytes, half shaped like QUIC v1 Initials with fresh connection IDs (the daemon
//! derives keys for each before finding it forged). Prints one line,
//! `knocks=N refused=R busy=B failed=F junk=J secs=S`, and exits 1 if any knock got an answer
//! other than a refusal (a stranger was served).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use harddrive_party::announce::AnnounceAddress;
use harddrive_party::identity::{random_bytes, Identity};
use harddrive_party::net::quic::{QuicNode, TransportSettings};
use harddrive_party::net::rpc;

/// A knock the daemon does not settle in this time counts as failed (the next one starts).
const KNOCK_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_KNOCKS: u32 = 100_000;
const MAX_JUNK_PER_SECOND: u32 = 1_000_000;
/// The junk is sent in bursts this often, each of a hundredth of a second's worth.
const JUNK_TICK: Duration = Duration::from_millis(10);
/// The size of a client's first QUIC datagram (RFC 9000 §14.1).
const JUNK_SIZE: usize = 1200;

enum Knock {
    /// Heard and answered `NotAFriend` (or closed before the answer was read).
    Refused,
    /// Closed unheard by the stranger limits.
    Busy,
    /// No handshake, or no end within the timeout.
    Failed,
    /// The daemon answered a stranger's request: what must never happen.
    Answered,
}

fn fresh_identity(base: &[u8; 32], i: u32) -> Identity {
    let mut seed = *base;
    seed[..4].copy_from_slice(&i.to_be_bytes());
    Identity::from_seed(seed)
}

async fn knock(target: &AnnounceAddress, me: &Identity) -> Knock {
    let settings = TransportSettings {
        keep_alive: Duration::from_secs(10),
        window: 1 << 20,
        cipher: Default::default(),
        congestion: Default::default(),
    };
    let Ok((node, _control)) = QuicNode::bind("0.0.0.0:0".parse().expect("literal"), me, settings)
    else {
        return Knock::Failed;
    };
    let attempt = async {
        let Ok(conn) = node.connect(target.addr, target.public_key).await else {
            return Knock::Failed;
        };
        let answered = match rpc::ls(&conn, "", None, false).await {
            Err(_) => false,
            Ok(mut listing) => listing.next().await.is_ok(),
        };
        let busy = matches!(
            conn.close_reason(),
            Some(quinn::ConnectionError::ApplicationClosed(ref c)) if c.reason.as_ref() == b"busy"
        );
        conn.close(0u32.into(), b"bye");
        match (answered, busy) {
            (true, _) => Knock::Answered,
            (false, true) => Knock::Busy,
            (false, false) => Knock::Refused,
        }
    };
    let outcome = tokio::time::timeout(KNOCK_TIMEOUT, attempt)
        .await
        .unwrap_or(Knock::Failed);
    node.endpoint.close(0u32.into(), b"bye");
    outcome
}

/// Sends `per_second` junk datagrams a second to `target` until `stop`; returns how many.
fn send_junk(target: SocketAddr, per_second: u32, stop: &AtomicBool) -> anyhow::Result<u64> {
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    let mut datagram: [u8; JUNK_SIZE] = random_bytes()?;
    let per_tick = u64::from(per_second) * JUNK_TICK.as_millis() as u64 / 1000;
    let started = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        while sent
            < per_tick * (started.elapsed().as_millis() as u64 / JUNK_TICK.as_millis() as u64 + 1)
        {
            // A fresh destination and source connection ID each time (bytes 6..22), so the
            // daemon cannot match it to anything it has seen.
            datagram[6..22].copy_from_slice(&random_bytes::<16>()?);
            if sent % 2 == 0 {
                // Long header, Initial, QUIC v1, 8-byte connection IDs, no token.
                datagram[..6].copy_from_slice(&[0xc3, 0, 0, 0, 1, 8]);
                datagram[14] = 8;
                datagram[23] = 0;
            } else {
                datagram[0] = datagram[6];
            }
            // Unreachable errors (nothing listening yet, or any more) are part of the noise.
            let _ = socket.send_to(&datagram, target);
            sent += 1;
        }
        std::thread::sleep(JUNK_TICK);
    }
    Ok(sent)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (target, count, junk_per_second) = match args.as_slice() {
        [target, count] => (target, count, 0),
        [target, count, junk] => (target, count, junk.parse().context("JUNK_PER_SECOND")?),
        _ => bail!("usage: knock ANNOUNCE_ADDRESS COUNT [JUNK_PER_SECOND]"),
    };
    let target: AnnounceAddress = target.parse().context("ANNOUNCE_ADDRESS")?;
    let count: u32 = count.parse().context("COUNT")?;
    if count > MAX_KNOCKS {
        bail!("COUNT is at most {MAX_KNOCKS}");
    }
    if junk_per_second > MAX_JUNK_PER_SECOND {
        bail!("JUNK_PER_SECOND is at most {MAX_JUNK_PER_SECOND}");
    }
    let stop_junk = Arc::new(AtomicBool::new(false));
    let junk = (junk_per_second > 0).then(|| {
        let (stop, address) = (stop_junk.clone(), target.addr);
        std::thread::spawn(move || send_junk(address, junk_per_second, &stop))
    });
    // A random base, so every run's keys are new to the daemon.
    let base: [u8; 32] = random_bytes()?;
    let (mut refused, mut busy, mut failed, mut answered) = (0u32, 0u32, 0u32, 0u32);
    let started = Instant::now();
    for i in 0..count {
        match knock(&target, &fresh_identity(&base, i)).await {
            Knock::Refused => refused += 1,
            Knock::Busy => busy += 1,
            Knock::Failed => failed += 1,
            Knock::Answered => answered += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    stop_junk.store(true, Ordering::Relaxed);
    let junk_sent = match junk {
        Some(sender) => sender
            .join()
            .map_err(|_| anyhow::anyhow!("the junk sender panicked"))??,
        None => 0,
    };
    println!("knocks={count} refused={refused} busy={busy} failed={failed} junk={junk_sent} secs={secs:.2}");
    if answered > 0 {
        bail!("{answered} knock(s) were answered: the daemon served a stranger");
    }
    Ok(())
}
