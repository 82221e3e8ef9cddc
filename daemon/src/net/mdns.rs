//! LAN discovery over mDNS (PROTOCOL.md §8.7): this node advertises itself as a
//! `_harddrive-party._udp.local.` service carrying its public key, and reports the nodes it
//! finds so they can be dialled with no announce address exchanged. What to advertise, what
//! a resolved service means and whether to dial it are pure functions; `Discovery` is the
//! thin shell around the mdns-sd daemon thread.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use mdns_sd::{IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo};

use crate::announce::{AnnounceAddress, NatType};
use crate::identity::{peer_name, PublicKey};

pub const SERVICE_TYPE: &str = "_harddrive-party._udp.local.";
/// The web UI, advertised so phones and browsers that list local services find it.
pub const WEB_UI_SERVICE_TYPE: &str = "_http._tcp.local.";
const TXT_VERSION: &str = "v";
const VERSION: &str = "1";
const TXT_KEY: &str = "pk";
/// Each step of a stop (goodbye packets, daemon thread exit) waits at most this long, so a
/// wedged mDNS thread cannot hold up shutdown.
const STOP_STEP_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum MdnsError {
    #[error("mDNS: {0}")]
    Daemon(#[from] mdns_sd::Error),
    #[error("listening on loopback only")]
    NotOnLan,
}

/// Why a resolved service is not a peer to dial.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAPeer {
    #[error("TXT v is {0:?}, not \"1\"")]
    Version(Option<String>),
    #[error("TXT pk is missing or not a base64url ed25519 key")]
    BadKey,
    #[error("no usable IPv4 address")]
    NoAddress,
    #[error("port 0")]
    NoPort,
}

/// Where this node can be reached from the LAN, given the address its QUIC socket is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A wildcard bind: every non-loopback IPv4 interface, each with its own addresses.
    AllInterfaces,
    /// Bound to one IPv4 address: only that address, on its interface.
    Address(Ipv4Addr),
}

/// `None` when no LAN peer could reach us: a loopback bind, or an IPv6-only one (discovered
/// peers are dialled over IPv4, so both ends stay on IPv4).
pub fn scope(bound: SocketAddr) -> Option<Scope> {
    match bound.ip() {
        ip if ip.is_loopback() => None,
        // `[::]` too: a Linux socket bound there also takes IPv4 unless bindv6only is set.
        ip if ip.is_unspecified() => Some(Scope::AllInterfaces),
        IpAddr::V4(ip) => Some(Scope::Address(ip)),
        IpAddr::V6(_) => None,
    }
}

/// The service record we advertise: instance and host named after our peer name, our QUIC
/// port, and the TXT keys `v=1` and `pk=<base64url key>`.
pub fn service_info(key: &PublicKey, port: u16, scope: Scope) -> Result<ServiceInfo, MdnsError> {
    let name = peer_name(key);
    // The host name is ours alone too: peers on one LAN often share a machine host name.
    let host = format!("{name}.local.");
    let txt = [
        (TXT_VERSION, VERSION.to_string()),
        (TXT_KEY, URL_SAFE_NO_PAD.encode(key)),
    ];
    Ok(match scope {
        Scope::AllInterfaces => {
            ServiceInfo::new(SERVICE_TYPE, &name, &host, (), port, &txt[..])?.enable_addr_auto()
        }
        Scope::Address(ip) => {
            let mut info =
                ServiceInfo::new(SERVICE_TYPE, &name, &host, IpAddr::V4(ip), port, &txt[..])?;
            info.set_interfaces(vec![IfKind::Addr(IpAddr::V4(ip))]);
            info
        }
    })
}

/// The web UI's record: instance "harddrive-party PeerName", on our mDNS host name (so
/// `http://PeerName.local:PORT` works too), TXT `path=/`.
pub fn web_ui_info(key: &PublicKey, ui: SocketAddr) -> Result<ServiceInfo, MdnsError> {
    let scope = scope(ui).ok_or(MdnsError::NotOnLan)?;
    let name = peer_name(key);
    let instance = format!("harddrive-party {name}");
    let host = format!("{name}.local.");
    let txt = [("path", "/")];
    Ok(match scope {
        Scope::AllInterfaces => ServiceInfo::new(
            WEB_UI_SERVICE_TYPE,
            &instance,
            &host,
            (),
            ui.port(),
            &txt[..],
        )?
        .enable_addr_auto(),
        Scope::Address(ip) => {
            let mut info = ServiceInfo::new(
                WEB_UI_SERVICE_TYPE,
                &instance,
                &host,
                IpAddr::V4(ip),
                ui.port(),
                &txt[..],
            )?;
            info.set_interfaces(vec![IfKind::Addr(IpAddr::V4(ip))]);
            info
        }
    })
}

/// A node seen on the LAN, not yet authenticated: only the handshake proves it holds the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub public_key: PublicKey,
    pub addr: SocketAddr,
}

impl Candidate {
    /// On a LAN there is no NAT between the two ends.
    pub fn announce_address(&self) -> AnnounceAddress {
        AnnounceAddress {
            public_key: self.public_key,
            addr: self.addr,
            nat_type: NatType::None,
            relay: None,
        }
    }
}

/// Reads a resolved service as a peer: its key from TXT `pk`, the lowest usable IPv4 address
/// (lowest, so the choice does not depend on the order answers arrived in) and the port.
pub fn candidate(service: &ResolvedService) -> Result<Candidate, NotAPeer> {
    let version = service.get_property_val_str(TXT_VERSION);
    if version != Some(VERSION) {
        return Err(NotAPeer::Version(version.map(str::to_string)));
    }
    let public_key: PublicKey = service
        .get_property_val_str(TXT_KEY)
        .and_then(|text| URL_SAFE_NO_PAD.decode(text).ok())
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(NotAPeer::BadKey)?;
    if service.get_port() == 0 {
        return Err(NotAPeer::NoPort);
    }
    let ip = service
        .get_addresses_v4()
        .into_iter()
        .filter(|ip| {
            !(ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast())
        })
        .min()
        .ok_or(NotAPeer::NoAddress)?;
    Ok(Candidate {
        public_key,
        addr: SocketAddr::new(IpAddr::V4(ip), service.get_port()),
    })
}

/// The running mDNS daemon thread, advertising this node and browsing for others.
pub struct Discovery {
    daemon: ServiceDaemon,
    /// Every record we registered (the peer service, the web UI), said goodbye to at stop.
    fullnames: Mutex<Vec<String>>,
}

/// The browse side: resolved services, read by the node's discovery task.
pub struct Browse {
    events: mdns_sd::Receiver<ServiceEvent>,
}

impl Discovery {
    /// Starts advertising `key` and browsing for other nodes on the interfaces that reach
    /// `bound`. Best effort: on a loopback bind or an mDNS failure it logs why and returns
    /// `None`, and the node works through announce addresses alone.
    pub fn start(key: &PublicKey, bound: SocketAddr) -> Option<(Self, Browse)> {
        let Some(scope) = scope(bound) else {
            tracing::info!("mDNS discovery off: peers on the LAN cannot reach {bound}");
            return None;
        };
        Self::launch(key, bound.port(), scope)
            .inspect_err(|e| tracing::warn!("LAN discovery unavailable: {e}"))
            .ok()
    }

    /// Loopback and IPv6 interfaces are left out: peers found there could not be dialled
    /// over the LAN anyway.
    fn launch(key: &PublicKey, port: u16, scope: Scope) -> Result<(Self, Browse), MdnsError> {
        let info = service_info(key, port, scope)?;
        let daemon = ServiceDaemon::new()?;
        let started = (|| {
            match scope {
                Scope::AllInterfaces => daemon.disable_interface(vec![
                    IfKind::LoopbackV4,
                    IfKind::LoopbackV6,
                    IfKind::IPv6,
                ])?,
                Scope::Address(ip) => {
                    daemon.disable_interface(IfKind::All)?;
                    daemon.enable_interface(IfKind::Addr(IpAddr::V4(ip)))?;
                }
            }
            let fullname = info.get_fullname().to_string();
            daemon.register(info)?;
            let events = daemon.browse(SERVICE_TYPE)?;
            Ok::<_, mdns_sd::Error>((fullname, events))
        })();
        match started {
            Ok((fullname, events)) => {
                tracing::info!("advertising {fullname} on the LAN and browsing for peers");
                Ok((
                    Self {
                        daemon,
                        fullnames: Mutex::new(vec![fullname]),
                    },
                    Browse { events },
                ))
            }
            Err(e) => {
                // The daemon thread is already running: do not leave it behind.
                let _ = daemon.shutdown();
                Err(e.into())
            }
        }
    }

    /// Advertises the web UI listening at `ui`, unless only this machine can reach it.
    pub fn advertise_web_ui(&self, key: &PublicKey, ui: SocketAddr) {
        let registered = web_ui_info(key, ui).and_then(|info| {
            let fullname = info.get_fullname().to_string();
            self.daemon.register(info)?;
            Ok(fullname)
        });
        match registered {
            Ok(fullname) => {
                tracing::info!("advertising the web UI on the LAN as {fullname}");
                self.fullnames
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(fullname);
            }
            Err(MdnsError::NotOnLan) => {}
            Err(e) => tracing::warn!("cannot advertise the web UI on the LAN: {e}"),
        }
    }

    /// Says goodbye (a zero-TTL announcement, so browsers drop us at once) and ends the mDNS
    /// thread, which also ends the browse stream. Bounded in time.
    pub async fn stop(&self) {
        let fullnames =
            std::mem::take(&mut *self.fullnames.lock().unwrap_or_else(|e| e.into_inner()));
        for fullname in fullnames {
            if let Ok(done) = self.daemon.unregister(&fullname) {
                let _ = tokio::time::timeout(STOP_STEP_TIMEOUT, done.recv_async()).await;
            }
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = tokio::time::timeout(STOP_STEP_TIMEOUT, done.recv_async()).await;
        }
    }
}

impl Browse {
    /// The next node found on the LAN; `None` once the daemon has stopped. Services that are
    /// not well-formed peers are logged and passed over.
    pub async fn next(&self) -> Option<Candidate> {
        loop {
            match self.events.recv_async().await.ok()? {
                ServiceEvent::ServiceResolved(service) => match candidate(&service) {
                    Ok(found) => return Some(found),
                    Err(e) => tracing::debug!("mDNS: ignoring {}: {e}", service.get_fullname()),
                },
                ServiceEvent::SearchStopped(_) => return None,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: PublicKey = [7u8; 32];

    fn resolved(txt: &[(&str, &str)], addrs: &str, port: u16) -> ResolvedService {
        ServiceInfo::new(SERVICE_TYPE, "x", "x.local.", addrs, port, txt)
            .unwrap()
            .as_resolved_service()
    }

    #[test]
    fn scope_follows_the_bound_address() {
        let scope_of = |a: &str| scope(a.parse().unwrap());
        assert_eq!(scope_of("0.0.0.0:4000"), Some(Scope::AllInterfaces));
        assert_eq!(scope_of("[::]:4000"), Some(Scope::AllInterfaces));
        assert_eq!(
            scope_of("192.168.1.5:4000"),
            Some(Scope::Address(Ipv4Addr::new(192, 168, 1, 5)))
        );
        assert_eq!(scope_of("127.0.0.1:4000"), None);
        assert_eq!(scope_of("[::1]:4000"), None);
        assert_eq!(scope_of("[2001:db8::1]:4000"), None);
    }

    #[test]
    fn our_advert_reads_back_as_our_key_address_and_port() {
        let ip = Ipv4Addr::new(10, 0, 0, 7);
        let info = service_info(&KEY, 4242, Scope::Address(ip)).unwrap();
        assert_eq!(info.get_type(), SERVICE_TYPE);
        assert_eq!(
            info.get_fullname(),
            format!("{}.{SERVICE_TYPE}", peer_name(&KEY))
        );
        assert_eq!(info.get_property_val_str("v"), Some("1"));
        let found = candidate(&info.as_resolved_service()).unwrap();
        assert_eq!(
            found,
            Candidate {
                public_key: KEY,
                addr: "10.0.0.7:4242".parse().unwrap()
            }
        );
        let announce = found.announce_address();
        assert_eq!(announce.nat_type, NatType::None);
        assert_eq!(announce.name(), peer_name(&KEY));

        let auto = service_info(&KEY, 4242, Scope::AllInterfaces).unwrap();
        assert!(auto.is_addr_auto());
    }

    #[test]
    fn the_web_ui_is_advertised_only_beyond_loopback() {
        let info = web_ui_info(&KEY, "10.0.0.7:3030".parse().unwrap()).unwrap();
        assert_eq!(info.get_type(), WEB_UI_SERVICE_TYPE);
        assert_eq!(info.get_port(), 3030);
        assert_eq!(info.get_hostname(), format!("{}.local.", peer_name(&KEY)));
        assert_eq!(info.get_property_val_str("path"), Some("/"));
        assert!(web_ui_info(&KEY, "0.0.0.0:3030".parse().unwrap())
            .unwrap()
            .is_addr_auto());
        assert!(matches!(
            web_ui_info(&KEY, "127.0.0.1:3030".parse().unwrap()),
            Err(MdnsError::NotOnLan)
        ));
    }

    #[test]
    fn the_lowest_usable_ipv4_address_is_chosen() {
        let pk = URL_SAFE_NO_PAD.encode(KEY);
        let txt = [("v", "1"), ("pk", pk.as_str())];
        let found = candidate(&resolved(
            &txt,
            "127.0.0.1,192.168.1.9,10.1.2.3,2001:db8::1,224.0.0.251",
            9,
        ))
        .unwrap();
        assert_eq!(found.addr, "10.1.2.3:9".parse().unwrap());
        assert_eq!(
            candidate(&resolved(&txt, "127.0.0.1,2001:db8::1", 9)),
            Err(NotAPeer::NoAddress)
        );
        assert_eq!(
            candidate(&resolved(&txt, "10.1.2.3", 0)),
            Err(NotAPeer::NoPort)
        );
    }

    #[test]
    fn malformed_txt_records_are_not_peers() {
        let pk = URL_SAFE_NO_PAD.encode(KEY);
        let short = URL_SAFE_NO_PAD.encode([1u8; 31]);
        let padded = format!("{pk}=");
        let cases: [(&[(&str, &str)], NotAPeer); 5] = [
            (&[("pk", &pk)], NotAPeer::Version(None)),
            (
                &[("v", "2"), ("pk", &pk)],
                NotAPeer::Version(Some("2".into())),
            ),
            (&[("v", "1")], NotAPeer::BadKey),
            (&[("v", "1"), ("pk", &short)], NotAPeer::BadKey),
            (&[("v", "1"), ("pk", &padded)], NotAPeer::BadKey),
        ];
        for (txt, expected) in cases {
            assert_eq!(candidate(&resolved(txt, "10.0.0.1", 9)), Err(expected));
        }
    }
}
