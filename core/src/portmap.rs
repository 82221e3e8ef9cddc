//! Port-mapping decisions, free of sockets and clocks: lease timing, which external ports
//! to ask for, what a refusal means, which external addresses are usable and which address
//! to announce. The daemon's `net::portmap` carries them out (PROTOCOL.md §8.8).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

use crate::announce::NatType;

/// Asked for on every mapping; the gateway may grant less (PCP, NAT-PMP) or only a
/// permanent one (some UPnP routers).
pub const LEASE_SECONDS: u32 = 3600;
/// A router handing out very short leases must not make us renew in a tight loop.
const MIN_RENEW: Duration = Duration::from_secs(30);
/// After a failed renewal, try again this soon while the lease still runs.
const RENEW_RETRY: Duration = Duration::from_secs(30);
/// How many external ports to ask a UPnP router for: ours, then random ones.
pub const PORT_TRIES: usize = 3;
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Protocol {
    #[serde(rename = "upnp")]
    Upnp,
    #[serde(rename = "nat-pmp")]
    NatPmp,
    #[serde(rename = "pcp")]
    Pcp,
}

/// A forwarding the gateway granted; `/api/info` shows it as `port_mapping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mapping {
    pub protocol: Protocol,
    pub external_address: SocketAddr,
    /// 0: permanent (a UPnP router that takes no leases); removed at shutdown all the same.
    pub lease_seconds: u32,
}

/// When to renew a lease: halfway through, as RFC 6886 §3.7 advises, so one lost renewal
/// still leaves time for another. A permanent mapping is re-added as often, since a router
/// reboot forgets it.
pub fn renew_in(lease_seconds: u32) -> Duration {
    let lease = if lease_seconds == 0 {
        LEASE_SECONDS
    } else {
        lease_seconds
    };
    Duration::from_secs(u64::from(lease / 2)).max(MIN_RENEW)
}

/// After a failed renewal with `remaining` of the lease left (`None`: permanent): the wait
/// before trying again, or `None` to give the mapping up and look for a gateway afresh.
pub fn retry_renew_in(remaining: Option<Duration>) -> Option<Duration> {
    let remaining = remaining?;
    (remaining > RENEW_RETRY * 2).then_some(RENEW_RETRY)
}

/// External ports to ask a UPnP router for, in order: the same as our local port first (it
/// keeps the announce address equal to the STUN-mapped one on a port-preserving NAT), then
/// random unprivileged ones in case another host holds it.
pub fn port_candidates(local: u16, random: [u8; 2 * (PORT_TRIES - 1)]) -> Vec<u16> {
    let mut ports = vec![local];
    for pair in random.chunks_exact(2) {
        let port = 1024 + u16::from_le_bytes([pair[0], pair[1]]) % (u16::MAX - 1024);
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    ports
}

/// Why a UPnP router refused `AddPortMapping`, from its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 718 ConflictInMappingEntry: another host holds that external port.
    PortInUse,
    /// 725 OnlyPermanentLeasesSupported.
    OnlyPermanentLeases,
    /// 724 SamePortValuesRequired: external must equal internal port.
    SamePortRequired,
    /// 606 or anything else: asking again will not help.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    NextPort,
    /// Ask for the same port again with lease 0.
    Permanent,
    GiveUp,
}

/// What to do after a refusal when the request asked for `lease_seconds`.
pub fn after_refusal(refusal: Refusal, lease_seconds: u32) -> Step {
    match refusal {
        Refusal::PortInUse => Step::NextPort,
        Refusal::OnlyPermanentLeases if lease_seconds != 0 => Step::Permanent,
        // Our own port went first, so a router insisting on equal ports has nothing more to
        // give.
        Refusal::SamePortRequired | Refusal::OnlyPermanentLeases | Refusal::Other => Step::GiveUp,
    }
}

/// Whether peers on the internet can reach a mapping on `ip`. A private or shared
/// (carrier-grade NAT, 100.64/10) address means another NAT sits beyond the router: the
/// mapping opens only the inner one and is no use.
pub fn usable_external(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let carrier_grade = v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64;
            !(v4.is_private()
                || carrier_grade
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast())
        }
        IpAddr::V6(_) => false,
    }
}

/// The NAT type and address to put into our announce address. A mapping that works acts as
/// a public address (`none`: peers dial it). It is not used when STUN saw another public IP:
/// then a NAT beyond the router hides the mapped port. `fallback` is what we would announce
/// without a mapping (the last STUN address, or the local one).
pub fn advertise(
    stun_type: NatType,
    stun_public: Option<SocketAddr>,
    mapping: Option<&Mapping>,
    fallback: SocketAddr,
) -> (NatType, SocketAddr) {
    match mapping {
        Some(m) if stun_public.is_none_or(|p| p.ip() == m.external_address.ip()) => {
            (NatType::None, m.external_address)
        }
        _ => (stun_type, fallback),
    }
}

/// The IPv4 default gateway from the text of Linux's `/proc/net/route`. Its addresses are
/// the network-order bytes printed as one native-endian hex number, so the native bytes of
/// the parsed number are the address (right on big-endian MIPS routers too).
pub fn default_gateway(proc_net_route: &str) -> Option<Ipv4Addr> {
    const RTF_UP: u16 = 0x1;
    const RTF_GATEWAY: u16 = 0x2;
    proc_net_route.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (destination, gateway, flags) = (fields.get(1)?, fields.get(2)?, fields.get(3)?);
        let flags = u16::from_str_radix(flags, 16).ok()?;
        let gateway = u32::from_str_radix(gateway, 16).ok()?;
        let is_default = u32::from_str_radix(destination, 16).ok()? == 0;
        (is_default && flags & (RTF_UP | RTF_GATEWAY) == RTF_UP | RTF_GATEWAY && gateway != 0)
            .then(|| Ipv4Addr::from(gateway.to_ne_bytes()))
    })
}

/// Port mapping is for an IPv4 socket that faces a LAN; a loopback-only node has no router.
pub fn worth_trying(bound: SocketAddr) -> bool {
    matches!(bound.ip(), IpAddr::V4(ip) if !ip.is_loopback()) && bound.port() != 0
}

/// PCP carries IPv4 addresses as IPv4-mapped IPv6.
pub fn plain_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(addr: &str) -> Mapping {
        Mapping {
            protocol: Protocol::Upnp,
            external_address: addr.parse().unwrap(),
            lease_seconds: 3600,
        }
    }

    #[test]
    fn leases_renew_halfway_but_never_in_a_tight_loop() {
        assert_eq!(renew_in(3600), Duration::from_secs(1800));
        assert_eq!(renew_in(7200), Duration::from_secs(3600));
        assert_eq!(renew_in(10), MIN_RENEW);
        assert_eq!(renew_in(1), MIN_RENEW);
        // Permanent mappings are re-added as often as a requested lease would be renewed.
        assert_eq!(renew_in(0), renew_in(LEASE_SECONDS));
    }

    #[test]
    fn a_failed_renewal_is_retried_only_while_the_lease_runs() {
        assert_eq!(
            retry_renew_in(Some(Duration::from_secs(1800))),
            Some(RENEW_RETRY)
        );
        assert_eq!(retry_renew_in(Some(RENEW_RETRY * 2)), None);
        assert_eq!(retry_renew_in(Some(Duration::ZERO)), None);
        // A permanent mapping that cannot be re-added is looked for afresh.
        assert_eq!(retry_renew_in(None), None);
    }

    #[test]
    fn our_own_port_is_asked_for_first_then_distinct_unprivileged_ones() {
        let ports = port_candidates(40000, [1, 2, 3, 4]);
        assert_eq!(ports[0], 40000);
        assert_eq!(ports.len(), PORT_TRIES);
        assert!(ports.iter().all(|p| *p >= 1024));
        for random in [[0u8; 4], [0xff; 4], [0xff, 0xfb, 0, 0]] {
            let ports = port_candidates(1024, random);
            assert_eq!(ports[0], 1024);
            assert!(ports.iter().all(|p| *p >= 1024));
            let mut unique = ports.clone();
            unique.dedup();
            assert_eq!(unique, ports, "no port asked for twice");
        }
    }

    #[test]
    fn refusals_lead_to_another_port_a_permanent_lease_or_giving_up() {
        assert_eq!(after_refusal(Refusal::PortInUse, 3600), Step::NextPort);
        assert_eq!(
            after_refusal(Refusal::OnlyPermanentLeases, 3600),
            Step::Permanent
        );
        assert_eq!(after_refusal(Refusal::OnlyPermanentLeases, 0), Step::GiveUp);
        assert_eq!(after_refusal(Refusal::SamePortRequired, 3600), Step::GiveUp);
        assert_eq!(after_refusal(Refusal::Other, 3600), Step::GiveUp);
        assert_eq!(after_refusal(Refusal::PortInUse, 0), Step::NextPort);
    }

    #[test]
    fn external_addresses_behind_another_nat_are_not_usable() {
        for ip in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.9",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "2001:db8::1",
        ] {
            assert!(!usable_external(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["203.0.113.11", "198.51.100.7", "100.128.0.1", "8.8.8.8"] {
            assert!(usable_external(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn a_mapping_is_announced_as_a_public_address() {
        let local: SocketAddr = "10.0.1.2:40000".parse().unwrap();
        let m = mapping("203.0.113.11:40000");
        assert_eq!(
            advertise(NatType::Cone, None, Some(&m), local),
            (NatType::None, m.external_address)
        );
        // STUN agreeing on the IP (its port may differ: the mapping is what peers dial).
        let stun: SocketAddr = "203.0.113.11:51000".parse().unwrap();
        assert_eq!(
            advertise(NatType::Symmetric, Some(stun), Some(&m), stun),
            (NatType::None, m.external_address)
        );
        // Without a mapping, STUN's view stands.
        assert_eq!(
            advertise(NatType::Cone, Some(stun), None, stun),
            (NatType::Cone, stun)
        );
        // STUN sees another public IP: a NAT beyond the router, so the mapping is useless.
        let beyond: SocketAddr = "198.51.100.1:40000".parse().unwrap();
        assert_eq!(
            advertise(NatType::Cone, Some(beyond), Some(&m), beyond),
            (NatType::Cone, beyond)
        );
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn the_default_gateway_is_read_from_proc_net_route() {
        let table =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            eth0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
        assert_eq!(default_gateway(table), Some(Ipv4Addr::new(10, 0, 1, 1)));
        // No default route, a default route without a gateway, or garbage: none.
        let no_default = "Iface\tDestination\tGateway\tFlags\n\
            eth0\t0001000A\t00000000\t0001\n";
        assert_eq!(default_gateway(no_default), None);
        let direct = "Iface\tDestination\tGateway\tFlags\n\
            ppp0\t00000000\t00000000\t0001\n";
        assert_eq!(default_gateway(direct), None);
        let down = "Iface\tDestination\tGateway\tFlags\n\
            eth0\t00000000\t0101000A\t0002\n";
        assert_eq!(default_gateway(down), None);
        assert_eq!(default_gateway("x\ny z\n\n00000000 zz 3"), None);
        assert_eq!(default_gateway(""), None);
    }

    #[test]
    fn only_ipv4_sockets_off_loopback_are_mapped() {
        assert!(worth_trying("0.0.0.0:40000".parse().unwrap()));
        assert!(worth_trying("10.0.1.2:40000".parse().unwrap()));
        assert!(!worth_trying("127.0.0.1:40000".parse().unwrap()));
        assert!(!worth_trying("[::]:40000".parse().unwrap()));
        assert!(!worth_trying("0.0.0.0:0".parse().unwrap()));
    }

    #[test]
    fn pcp_addresses_are_unwrapped_to_ipv4() {
        let mapped: IpAddr = "::ffff:203.0.113.11".parse().unwrap();
        assert_eq!(plain_ip(mapped), "203.0.113.11".parse::<IpAddr>().unwrap());
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(plain_ip(v6), v6);
    }

    #[test]
    fn the_api_shape_of_a_mapping() {
        let json = serde_json::to_value(mapping("203.0.113.11:40000")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "protocol": "upnp",
                "external_address": "203.0.113.11:40000",
                "lease_seconds": 3600,
            })
        );
    }
}
