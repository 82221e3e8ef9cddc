//! Bench-only stranger flood (`ci/bench`, stage `flood`): COUNT connections in a row to a
//! daemon, each from a fresh key on a fresh socket, each asking for the share list once and
//! hanging up, as `daemon/tests/flood.rs` does. An example, so the shipped binary does not
//! carry it: `cargo build --release --example knock`.
//!
//! Usage: `knock ANNOUNCE_ADDRESS COUNT`. Prints one line,
//! `knocks=N refused=R busy=B failed=F secs=S`, and exits 1 if any knock got an answer
//! other than a refusal (a stranger was served).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use harddrive_party::announce::AnnounceAddress;
use harddrive_party::identity::{random_bytes, Identity};
use harddrive_party::net::quic::{QuicNode, TransportSettings};
use harddrive_party::net::rpc;

/// A knock the daemon does not settle in this time counts as failed (the next one starts).
const KNOCK_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_KNOCKS: u32 = 100_000;

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

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [target, count] = args.as_slice() else {
        bail!("usage: knock ANNOUNCE_ADDRESS COUNT");
    };
    let target: AnnounceAddress = target.parse().context("ANNOUNCE_ADDRESS")?;
    let count: u32 = count.parse().context("COUNT")?;
    if count > MAX_KNOCKS {
        bail!("COUNT is at most {MAX_KNOCKS}");
    }
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
    println!(
        "knocks={count} refused={refused} busy={busy} failed={failed} secs={:.2}",
        started.elapsed().as_secs_f64()
    );
    if answered > 0 {
        bail!("{answered} knock(s) were answered: the daemon served a stranger");
    }
    Ok(())
}
