//! Seals and opens QUIC packets with each TLS 1.3 suite the daemon may negotiate, through
//! the rustls packet keys quinn uses, and prints MB/s per suite (one core, both directions'
//! work). Under qemu-user only the ratio between suites means anything.
//!
//!     cipher-speed [MIB] [PACKET_BYTES]     (default 64 MiB of 1452-byte packets)

use std::time::Instant;

use harddrive_party_core::transport;
use rustls::crypto::ring::cipher_suite;
use rustls::quic::Version;
use rustls::Side;

/// A packet's AEAD tag (16 bytes for all three suites).
const TAG: usize = 16;

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>().ok());
    let mib = args.next().flatten().unwrap_or(64);
    // An Ethernet path's datagram less headers: the common LAN packet.
    let packet = args.next().flatten().unwrap_or(1452).max(64);
    let suites = [
        ("AES-128-GCM", cipher_suite::TLS13_AES_128_GCM_SHA256),
        ("AES-256-GCM", cipher_suite::TLS13_AES_256_GCM_SHA384),
        (
            "ChaCha20-Poly1305",
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ),
    ];
    println!("aes-instructions {}", transport::aes_instructions());
    for (name, suite) in suites {
        let Some(quic) = suite.tls13().and_then(|tls13| tls13.quic_suite()) else {
            continue;
        };
        let sender = quic.keys(b"cipher-speed", Side::Client, Version::V1);
        let receiver = quic.keys(b"cipher-speed", Side::Server, Version::V1);
        let header = [0x40u8; 20];
        let payload = packet - header.len() - TAG;
        let mut buf = vec![0x5au8; payload + TAG];
        let packets = (mib << 20) / payload;
        let start = Instant::now();
        for number in 0..packets as u64 {
            let (plain, tag) = buf.split_at_mut(payload);
            let sealed = sender
                .local
                .packet
                .encrypt_in_place(number, &header, plain)
                .expect("sealing a packet");
            tag.copy_from_slice(sealed.as_ref());
            receiver
                .remote
                .packet
                .decrypt_in_place(number, &header, &mut buf)
                .expect("opening what was sealed");
        }
        let secs = start.elapsed().as_secs_f64();
        println!("{name} {:.1}", (packets * payload) as f64 / secs / 1e6);
    }
}
