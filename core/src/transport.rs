//! The machine-dependent choices of the QUIC transport: which TLS 1.3 cipher suites a node
//! offers and in what order, whether its server side follows the client's order, and which
//! congestion controller it runs.

use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not one of {choices}")]
pub struct ChoiceError {
    given: String,
    choices: &'static str,
}

/// `--cipher`: which AEAD protects QUIC packets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Cipher {
    /// ChaCha20-Poly1305 when either end lacks AES instructions, else AES-GCM.
    #[default]
    Auto,
    /// AES-GCM only: never ChaCha20, whatever the peer prefers.
    Aes,
    /// ChaCha20-Poly1305 with every peer that offers it.
    Chacha,
}

/// `--congestion`: the congestion controller of every connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Congestion {
    #[default]
    Auto,
    Cubic,
    Bbr,
}

/// A TLS 1.3 cipher suite, named here so the rule needs no TLS library.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

/// What a node puts in its TLS configurations, both as client and as server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuitePlan {
    /// Offered (client) and accepted (server) suites, most wanted first. Always holds
    /// AES-128-GCM: QUIC's Initial packets use it whatever is negotiated (RFC 9001 §5.2).
    pub order: &'static [Suite],
    /// The server picks by its own order rather than the client's.
    pub server_decides: bool,
}

const AES_FIRST: &[Suite] = &[Suite::Aes128Gcm, Suite::Aes256Gcm, Suite::Chacha20Poly1305];
const AES_ONLY: &[Suite] = &[Suite::Aes128Gcm, Suite::Aes256Gcm];
const CHACHA_FIRST: &[Suite] = &[Suite::Chacha20Poly1305, Suite::Aes128Gcm, Suite::Aes256Gcm];

/// The TLS 1.3 server picks the suite, and either node may be the server (both dial), so
/// the rule must give the same answer whichever end dials. A node that wants ChaCha20 (no
/// AES instructions, or `chacha`) lists it first and, as server, insists on it; a node
/// that is happy with AES lists AES first but, as server, follows the client, so a
/// ChaCha20-wanting client gets ChaCha20 too. `aes` leaves ChaCha20 out entirely, so it
/// wins against every other choice from either end.
pub fn suite_plan(choice: Cipher, aes_hardware: bool) -> SuitePlan {
    match (choice, aes_hardware) {
        (Cipher::Aes, _) => SuitePlan {
            order: AES_ONLY,
            server_decides: true,
        },
        (Cipher::Auto, true) => SuitePlan {
            order: AES_FIRST,
            server_decides: false,
        },
        (Cipher::Chacha, _) | (Cipher::Auto, false) => SuitePlan {
            order: CHACHA_FIRST,
            server_decides: true,
        },
    }
}

/// Whether this CPU has the AES and carry-less multiply instructions ring's AES-GCM uses
/// (a question to the CPU, not I/O). 32-bit ARM and MIPS boards count as without: few
/// have them, and ChaCha20 is fast there either way.
pub fn aes_instructions() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    return std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    return std::arch::is_aarch64_feature_detected!("aes");
    #[allow(unreachable_code)]
    false
}

/// Whether a connection to a peer runs BBR rather than CUBIC. Random loss is not
/// congestion, but CUBIC takes every lost packet for it and shrinks its window; BBR paces
/// at the measured bottleneck rate and round trip and shrugs random loss off. On loopback
/// and the LAN, where loss is rare and the CPU is the limit, BBR's pacing cost CUBIC's
/// throughput (BENCHMARKS.md, "Lossy link"), so `auto` keeps CUBIC there.
pub fn use_bbr(choice: Congestion, local_network: bool) -> bool {
    match choice {
        Congestion::Auto => !local_network,
        Congestion::Bbr => true,
        Congestion::Cubic => false,
    }
}

/// Whether `ip` is this machine or on a local network: loopback, RFC 1918, link-local,
/// IPv6 unique-local. Carrier-grade NAT space (100.64/10) is the internet's.
pub fn on_local_network(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

fn choose<T: Copy>(
    given: &str,
    options: &[(&str, T)],
    choices: &'static str,
) -> Result<T, ChoiceError> {
    options
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(given))
        .map(|(_, value)| *value)
        .ok_or_else(|| ChoiceError {
            given: given.to_string(),
            choices,
        })
}

impl FromStr for Cipher {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        choose(
            s,
            &[
                ("auto", Self::Auto),
                ("aes", Self::Aes),
                ("chacha", Self::Chacha),
            ],
            "auto, aes, chacha",
        )
    }
}

impl FromStr for Congestion {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        choose(
            s,
            &[
                ("auto", Self::Auto),
                ("cubic", Self::Cubic),
                ("bbr", Self::Bbr),
            ],
            "auto, cubic, bbr",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a TLS 1.3 server picks (rustls's rule): the first suite of the deciding list
    /// that the other side has.
    fn negotiate(client: SuitePlan, server: SuitePlan) -> Option<Suite> {
        let (first, second) = match server.server_decides {
            true => (server.order, client.order),
            false => (client.order, server.order),
        };
        first.iter().copied().find(|s| second.contains(s))
    }

    const NODES: [(Cipher, bool); 5] = [
        (Cipher::Auto, true),
        (Cipher::Auto, false),
        (Cipher::Aes, true),
        (Cipher::Aes, false),
        (Cipher::Chacha, true),
    ];

    fn wants_chacha((choice, aes_hardware): (Cipher, bool)) -> bool {
        choice == Cipher::Chacha || (choice == Cipher::Auto && !aes_hardware)
    }

    #[test]
    fn both_ends_agree_whichever_dials() {
        for a in NODES {
            for b in NODES {
                let (pa, pb) = (suite_plan(a.0, a.1), suite_plan(b.0, b.1));
                let one_way = negotiate(pa, pb);
                assert_eq!(one_way, negotiate(pb, pa), "{a:?} {b:?}");
                let forced_aes = a.0 == Cipher::Aes || b.0 == Cipher::Aes;
                let expected = if !forced_aes && (wants_chacha(a) || wants_chacha(b)) {
                    Suite::Chacha20Poly1305
                } else {
                    Suite::Aes128Gcm
                };
                assert_eq!(one_way, Some(expected), "{a:?} {b:?}");
            }
        }
    }

    #[test]
    fn aes_128_is_always_offered_for_the_initial_packets() {
        for (choice, aes_hardware) in NODES {
            let plan = suite_plan(choice, aes_hardware);
            assert!(plan.order.contains(&Suite::Aes128Gcm), "{choice:?}");
        }
        assert_eq!(
            suite_plan(Cipher::Aes, false).order,
            [Suite::Aes128Gcm, Suite::Aes256Gcm]
        );
    }

    #[test]
    fn choices_parse_from_their_names_only() {
        assert_eq!("CHACHA".parse(), Ok(Cipher::Chacha));
        assert_eq!("aes".parse(), Ok(Cipher::Aes));
        assert_eq!("auto".parse(), Ok(Congestion::Auto));
        assert_eq!("bbr".parse(), Ok(Congestion::Bbr));
        assert_eq!("cubic".parse(), Ok(Congestion::Cubic));
        let err = "reno".parse::<Congestion>().unwrap_err();
        assert_eq!(err.to_string(), "\"reno\" is not one of auto, cubic, bbr");
        assert!("".parse::<Cipher>().is_err());
    }

    #[test]
    fn auto_congestion_is_cubic_nearby_and_bbr_beyond() {
        let near = [
            "127.0.0.1",
            "10.88.1.2",
            "192.168.1.20",
            "172.16.0.1",
            "169.254.3.4",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:192.168.1.2",
        ];
        let far = [
            "203.0.113.10",
            "100.64.0.1",
            "8.8.8.8",
            "2001:db8::1",
            "::ffff:203.0.113.1",
        ];
        for (addrs, local) in [(near.as_slice(), true), (far.as_slice(), false)] {
            for a in addrs {
                let ip: IpAddr = a.parse().unwrap();
                assert_eq!(on_local_network(ip), local, "{a}");
                assert_eq!(
                    use_bbr(Congestion::Auto, on_local_network(ip)),
                    !local,
                    "{a}"
                );
                assert!(use_bbr(Congestion::Bbr, local));
                assert!(!use_bbr(Congestion::Cubic, local));
            }
        }
    }
}
