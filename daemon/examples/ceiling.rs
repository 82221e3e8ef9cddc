//! Bench-only ceilings (`ci/bench`, stage `ceilings`): what loopback carries on this machine
//! without harddrive-party's own work (files, hashing, the store), so a transfer's figure can
//! be read as a ratio to it in the same run. An example, so the shipped binary does not carry
//! it: `cargo build --release --example ceiling`.
//!
//! Usage:
//! - `ceiling quic BYTES [WINDOW]`: two endpoints in this process, built by the daemon's own
//!   `QuicNode` (the same TLS, cipher suites, congestion controller, MTU probing and windows,
//!   all at their defaults, WINDOW too unless given), one sending BYTES on one stream and the
//!   other reading and discarding them;
//! - `ceiling tcp BYTES`: the same over a loopback TCP connection, in 1 MiB writes.
//!
//! Prints one line, `bytes=N secs=S mbps=M cpu_secs=C` (C: this process's user and system
//! time, both ends together).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use harddrive_party::identity::{random_bytes, Identity};
use harddrive_party::net::quic::{QuicNode, TransportSettings};
use harddrive_party_core::config::registry::{KEEP_ALIVE_INTERVAL, QUIC_WINDOW};

const CHUNK: usize = 1 << 20;
const MAX_BYTES: u64 = 1 << 40;

/// User and system CPU seconds of this process so far.
fn cpu_secs() -> f64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF);
    usage.map_or(0.0, |u| {
        let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        secs(u.user_time()) + secs(u.system_time())
    })
}

fn fresh_identity() -> anyhow::Result<Identity> {
    Ok(Identity::from_seed(random_bytes()?))
}

async fn quic(bytes: u64, window: u32) -> anyhow::Result<()> {
    let settings = TransportSettings {
        keep_alive: Duration::from_secs(KEEP_ALIVE_INTERVAL.range.map_or(10, |r| r.default)),
        window,
        // The defaults, as a daemon started without --cipher or --congestion runs them.
        cipher: Default::default(),
        congestion: Default::default(),
    };
    let loopback = "127.0.0.1:0".parse().expect("literal");
    let (sender_id, receiver_id) = (fresh_identity()?, fresh_identity()?);
    let (sender, _) = QuicNode::bind(loopback, &sender_id, settings)?;
    let (receiver, _) = QuicNode::bind(loopback, &receiver_id, settings)?;
    let sender_addr = sender.local_addr()?;
    let accepting = sender.endpoint.clone();
    let serve = tokio::spawn(async move {
        let conn = accepting.accept().await.context("no connection")?.await?;
        let (mut send, mut recv) = conn.accept_bi().await?;
        // The receiver's one-byte request opens the stream, as a daemon's request does.
        let mut request = [0u8; 1];
        recv.read_exact(&mut request).await?;
        let chunk = bytes::Bytes::from(vec![0x5a; CHUNK]);
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            send.write_chunk(chunk.slice(..n)).await?;
            left -= n as u64;
        }
        send.finish()?;
        send.stopped().await?;
        anyhow::Ok(())
    });
    let conn = receiver.connect(sender_addr, sender_id.public_key).await?;
    let (cpu0, started) = (cpu_secs(), Instant::now());
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&[1]).await?;
    let mut received = 0u64;
    while let Some(chunk) = recv.read_chunk(usize::MAX, true).await? {
        received += chunk.bytes.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    serve.await??;
    report(received, bytes, secs, cpu_secs() - cpu0)
}

fn tcp(bytes: u64) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        let chunk = vec![0x5a; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            stream.write_all(&chunk[..n])?;
            left -= n as u64;
        }
        Ok(())
    });
    let (cpu0, started) = (cpu_secs(), Instant::now());
    let mut stream = TcpStream::connect(addr)?;
    let mut buffer = vec![0u8; CHUNK];
    let mut received = 0u64;
    loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        received += n as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("the sender panicked"))??;
    report(received, bytes, secs, cpu_secs() - cpu0)
}

fn report(received: u64, expected: u64, secs: f64, cpu: f64) -> anyhow::Result<()> {
    if received != expected {
        bail!("received {received} of {expected} bytes");
    }
    println!(
        "bytes={received} secs={secs:.3} mbps={:.1} cpu_secs={cpu:.2}",
        received as f64 / 1e6 / secs
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ceiling quic BYTES [WINDOW] | ceiling tcp BYTES";
    let (mode, bytes) = match args.as_slice() {
        [mode, bytes, ..] => (mode.as_str(), bytes.parse::<u64>().context("BYTES")?),
        _ => bail!(usage),
    };
    if bytes > MAX_BYTES {
        bail!("BYTES is at most {MAX_BYTES}");
    }
    match (mode, &args[2..]) {
        ("tcp", []) => tcp(bytes),
        ("quic", rest) if rest.len() <= 1 => {
            let default = QUIC_WINDOW.range.map_or(16 << 20, |r| r.default);
            let window = match rest.first() {
                Some(w) => w.parse().context("WINDOW")?,
                None => u32::try_from(default).context("the default window")?,
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?
                .block_on(quic(bytes, window))
        }
        _ => bail!(usage),
    }
}
