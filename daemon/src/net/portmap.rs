//! Port mapping on the home router: asks the gateway (PCP or NAT-PMP first, then UPnP-IGD)
//! to forward a UDP port to our QUIC socket, renews the lease and removes it on shutdown.
//! A mapped port makes this node reachable like a public address, so peers dial it
//! directly; STUN and punching still run beside it (PROTOCOL.md §8.8).
//!
//! The decisions (lease timing, which external port to ask for, what a refusal means, which
//! address to announce) are the pure core's `portmap` rules, re-exported here; `PortMapper`
//! carries them out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, timeout, Instant};

pub use harddrive_party_core::portmap::*;

/// With no gateway answering (none there, or it was still booting), look again this often.
const REDISCOVER: Duration = Duration::from_secs(300);
/// Each exchange with the gateway must finish in this time, so start-up and shutdown never
/// wait on a silent router.
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(3);
const SSDP_WAIT: Duration = Duration::from_secs(2);
const SSDP_ATTEMPTS: usize = 2;
/// PCP and NAT-PMP retransmit after 250 ms, 500 ms and 1 s (RFC 6886 starts at 250 ms).
const PMP_TIMEOUTS: crab_nat::TimeoutConfig = crab_nat::TimeoutConfig {
    initial_timeout: Duration::from_millis(250),
    max_retries: 2,
    max_retry_timeout: Some(Duration::from_secs(1)),
};
/// What the router's mapping table shows next to our entry.
const DESCRIPTION: &str = "harddrive-party";

#[derive(Debug, thiserror::Error)]
pub enum PortmapError {
    #[error("no IPv4 default gateway")]
    NoGateway,
    #[error("PCP/NAT-PMP: {0}")]
    Pmp(#[from] crab_nat::MappingFailure),
    #[error("NAT-PMP external address: {0}")]
    PmpAddress(#[from] crab_nat::natpmp::Failure),
    #[error("UPnP discovery: {0}")]
    Search(#[from] igd_next::SearchError),
    #[error("UPnP external address: {0}")]
    ExternalIp(#[from] igd_next::GetExternalIpError),
    #[error("UPnP AddPortMapping: {0}")]
    AddPort(#[from] igd_next::AddPortError),
    #[error("UPnP DeletePortMapping: {0}")]
    Remove(#[from] igd_next::RemovePortError),
    #[error("{0}: the gateway did not answer in time")]
    Timeout(&'static str),
    #[error("{0}: the UPnP worker thread stopped")]
    UpnpWorker(&'static str),
    #[error("the gateway's external address {0} is not public (another NAT lies beyond it)")]
    NotPublic(IpAddr),
    #[error("no gateway mapped the port ({pmp}; {upnp})")]
    NoneAnswered {
        pmp: Box<PortmapError>,
        upnp: Box<PortmapError>,
    },
}

async fn bounded<T, E>(
    what: &'static str,
    limit: Duration,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, PortmapError>
where
    PortmapError: From<E>,
{
    match timeout(limit, call).await {
        Ok(result) => result.map_err(PortmapError::from),
        Err(_) => Err(PortmapError::Timeout(what)),
    }
}

/// A call of igd-next's blocking client (attohttpc), run on tokio's blocking pool and
/// bounded like the async ones. Its async client would link hyper's client and HTTP/2 stack
/// (0.34 MB of the static x86_64 binary, BENCHMARKS.md) for a few SOAP requests a day. A
/// call that outlives `limit` finishes on its thread (attohttpc's own 30 s socket timeouts)
/// while the mapper moves on.
async fn upnp_call<T, E>(
    what: &'static str,
    limit: Duration,
    call: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, PortmapError>
where
    T: Send + 'static,
    E: Send + 'static,
    PortmapError: From<E>,
{
    let on_its_thread = async move {
        match tokio::task::spawn_blocking(call).await {
            Ok(result) => result.map_err(PortmapError::from),
            Err(_) => Err(PortmapError::UpnpWorker(what)),
        }
    };
    bounded::<T, PortmapError>(what, limit, on_its_thread).await
}

/// The protocol-specific handle of a live mapping, needed to renew and delete it.
enum Handle {
    Upnp {
        gateway: igd_next::Gateway,
        local: SocketAddrV4,
    },
    Pmp(crab_nat::PortMapping),
}

struct Active {
    handle: Handle,
    mapping: Mapping,
    granted: Instant,
}

impl Active {
    fn remaining(&self) -> Option<Duration> {
        (self.mapping.lease_seconds != 0).then(|| {
            Duration::from_secs(u64::from(self.mapping.lease_seconds))
                .saturating_sub(self.granted.elapsed())
        })
    }

    async fn renew(&mut self) -> Result<(), PortmapError> {
        match &mut self.handle {
            Handle::Upnp { gateway, local } => {
                let port = self.mapping.external_address.port();
                let lease = self.mapping.lease_seconds;
                let (gateway, local) = (gateway.clone(), SocketAddr::V4(*local));
                let add = move || {
                    let udp = igd_next::PortMappingProtocol::UDP;
                    gateway.add_port(udp, port, local, lease, DESCRIPTION)
                };
                upnp_call("UPnP renewal", GATEWAY_TIMEOUT, add).await?;
            }
            Handle::Pmp(mapping) => {
                bounded("PCP/NAT-PMP renewal", GATEWAY_TIMEOUT * 2, mapping.renew()).await?;
                // The gateway may move the mapping to another port or shorten its lease.
                self.mapping
                    .external_address
                    .set_port(mapping.external_port().get());
                self.mapping.lease_seconds = mapping.lifetime();
            }
        }
        self.granted = Instant::now();
        Ok(())
    }

    async fn remove(self) -> Result<(), PortmapError> {
        match self.handle {
            Handle::Upnp { gateway, .. } => {
                let port = self.mapping.external_address.port();
                let delete = move || gateway.remove_port(igd_next::PortMappingProtocol::UDP, port);
                upnp_call("UPnP removal", GATEWAY_TIMEOUT, delete).await
            }
            Handle::Pmp(mapping) => match timeout(GATEWAY_TIMEOUT * 2, mapping.try_drop()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err((e, _))) => Err(e.into()),
                Err(_) => Err(PortmapError::Timeout("PCP/NAT-PMP removal")),
            },
        }
    }
}

/// The local address a mapping should forward to: the bound IP, or for a wildcard bind the
/// one we reach the gateway from.
fn local_towards(bound: SocketAddr, gateway: IpAddr) -> Option<SocketAddrV4> {
    let ip = if bound.ip().is_unspecified() {
        crate::net::traversal::source_ip_towards(SocketAddr::new(gateway, crab_nat::GATEWAY_PORT))
    } else {
        bound.ip()
    };
    match ip {
        IpAddr::V4(v4) if !v4.is_unspecified() => Some(SocketAddrV4::new(v4, bound.port())),
        _ => None,
    }
}

async fn map_with_pmp(bound: SocketAddr) -> Result<Active, PortmapError> {
    let routes = tokio::fs::read_to_string("/proc/net/route")
        .await
        .unwrap_or_default();
    let gateway = default_gateway(&routes).ok_or(PortmapError::NoGateway)?;
    let local = local_towards(bound, gateway.into()).ok_or(PortmapError::NoGateway)?;
    let internal = NonZeroU16::new(local.port()).ok_or(PortmapError::NoGateway)?;
    let options = crab_nat::PortMappingOptions {
        external_port: Some(internal),
        lifetime_seconds: Some(LEASE_SECONDS),
        timeout_config: Some(PMP_TIMEOUTS),
    };
    // PCP first; the crate falls back to NAT-PMP when the gateway answers with version 0.
    let request = crab_nat::PortMapping::new(
        gateway.into(),
        (*local.ip()).into(),
        crab_nat::InternetProtocol::Udp,
        internal,
        options,
    );
    let mapping = bounded("PCP/NAT-PMP", GATEWAY_TIMEOUT * 2, request).await?;
    let (protocol, external_ip) = match mapping.mapping_type() {
        crab_nat::PortMappingType::Pcp { external_ip, .. } => {
            (Protocol::Pcp, plain_ip(external_ip))
        }
        crab_nat::PortMappingType::NatPmp => {
            let asked = crab_nat::natpmp::external_address(gateway.into(), Some(PMP_TIMEOUTS));
            let ip = bounded("NAT-PMP external address", GATEWAY_TIMEOUT * 2, asked).await;
            (Protocol::NatPmp, IpAddr::V4(ip?))
        }
    };
    let active = Active {
        mapping: Mapping {
            protocol,
            external_address: SocketAddr::new(external_ip, mapping.external_port().get()),
            lease_seconds: mapping.lifetime(),
        },
        handle: Handle::Pmp(mapping),
        granted: Instant::now(),
    };
    keep_if_public(active).await
}

/// The router's UPnP-IGD service, by SSDP from the peer socket's IP (IPv4: UPnP has no v6
/// mapping here).
async fn find_gateway(bound: SocketAddr) -> Result<igd_next::Gateway, PortmapError> {
    let bind_ip = match bound.ip() {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    };
    let mut found = Err(PortmapError::Timeout("UPnP discovery"));
    for _ in 0..SSDP_ATTEMPTS {
        let options = igd_next::SearchOptions {
            bind_addr: SocketAddr::new(bind_ip.into(), 0),
            timeout: Some(SSDP_WAIT + GATEWAY_TIMEOUT),
            single_search_timeout: Some(SSDP_WAIT),
            ..Default::default()
        };
        // One M-SEARCH per call; a lost datagram is worth one more.
        let search = move || igd_next::search_gateway(options);
        found = upnp_call("UPnP discovery", SSDP_WAIT + GATEWAY_TIMEOUT * 2, search)
            .await
            .map_err(|e| match e {
                // The blocking search reports its socket's read timeout as an I/O error.
                PortmapError::Search(igd_next::SearchError::IoError(io))
                    if matches!(
                        io.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    PortmapError::Timeout("UPnP discovery")
                }
                other => other,
            });
        if found.is_ok() {
            break;
        }
    }
    found
}

async fn map_with_upnp(bound: SocketAddr) -> Result<Active, PortmapError> {
    let gateway = find_gateway(bound).await?;
    let local = local_towards(bound, gateway.addr.ip()).ok_or(PortmapError::NoGateway)?;
    let asked = gateway.clone();
    let external_ip = upnp_call("UPnP external address", GATEWAY_TIMEOUT, move || {
        asked.get_external_ip()
    })
    .await?;
    let mut random = [0u8; 2 * (PORT_TRIES - 1)];
    let _ = getrandom::getrandom(&mut random);
    let mut lease = LEASE_SECONDS;
    let mut last_error = PortmapError::Timeout("UPnP AddPortMapping");
    let mut ports = port_candidates(local.port(), random).into_iter();
    let mut port = ports.next();
    while let Some(external_port) = port {
        let asked = gateway.clone();
        let add = move || {
            let udp = igd_next::PortMappingProtocol::UDP;
            asked.add_port(
                udp,
                external_port,
                SocketAddr::V4(local),
                lease,
                DESCRIPTION,
            )
        };
        let error = match upnp_call("UPnP AddPortMapping", GATEWAY_TIMEOUT, add).await {
            Ok(()) => {
                let active = Active {
                    mapping: Mapping {
                        protocol: Protocol::Upnp,
                        external_address: SocketAddr::new(external_ip, external_port),
                        lease_seconds: lease,
                    },
                    handle: Handle::Upnp { gateway, local },
                    granted: Instant::now(),
                };
                return keep_if_public(active).await;
            }
            Err(e) => e,
        };
        let refusal = match &error {
            PortmapError::AddPort(igd_next::AddPortError::PortInUse) => Refusal::PortInUse,
            PortmapError::AddPort(igd_next::AddPortError::OnlyPermanentLeasesSupported) => {
                Refusal::OnlyPermanentLeases
            }
            PortmapError::AddPort(igd_next::AddPortError::SamePortValuesRequired) => {
                Refusal::SamePortRequired
            }
            _ => Refusal::Other,
        };
        tracing::debug!("UPnP refused external port {external_port}: {error}");
        last_error = error;
        match after_refusal(refusal, lease) {
            Step::NextPort => port = ports.next(),
            Step::Permanent => lease = 0,
            Step::GiveUp => break,
        }
    }
    Err(last_error)
}

/// A mapping behind another NAT is deleted again at once instead of being announced.
async fn keep_if_public(active: Active) -> Result<Active, PortmapError> {
    let ip = active.mapping.external_address.ip();
    if usable_external(ip) {
        return Ok(active);
    }
    let _ = active.remove().await;
    Err(PortmapError::NotPublic(ip))
}

async fn acquire(bound: SocketAddr) -> Result<Active, PortmapError> {
    let pmp = match map_with_pmp(bound).await {
        Ok(active) => return Ok(active),
        Err(e) => e,
    };
    map_with_upnp(bound)
        .await
        .map_err(|upnp| PortmapError::NoneAnswered {
            pmp: Box::new(pmp),
            upnp: Box::new(upnp),
        })
}

/// Holds one mapping for the QUIC port while the node runs. Everything happens in a
/// background task, so a slow or absent gateway never delays start-up.
pub struct PortMapper {
    bound: SocketAddr,
    active: tokio::sync::Mutex<Option<Active>>,
    published: watch::Sender<Option<Mapping>>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl PortMapper {
    pub fn start(bound: SocketAddr) -> Arc<Self> {
        let mapper = Arc::new(Self {
            bound,
            active: tokio::sync::Mutex::new(None),
            published: watch::channel(None).0,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(mapper.clone().run()).abort_handle();
        *mapper.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
        mapper
    }

    pub fn mapping(&self) -> Option<Mapping> {
        self.published.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Option<Mapping>> {
        self.published.subscribe()
    }

    fn publish(&self, mapping: Option<Mapping>) {
        self.published.send_if_modified(|current| {
            let changed = *current != mapping;
            *current = mapping;
            changed
        });
    }

    async fn run(self: Arc<Self>) {
        let mut quiet = false;
        loop {
            match acquire(self.bound).await {
                Ok(active) => {
                    tracing::info!(
                        "port mapping: {:?} forwards {} to port {} (lease {} s)",
                        active.mapping.protocol,
                        active.mapping.external_address,
                        self.bound.port(),
                        active.mapping.lease_seconds
                    );
                    let mapping = active.mapping.clone();
                    *self.active.lock().await = Some(active);
                    self.publish(Some(mapping));
                    quiet = false;
                    self.keep().await;
                    self.publish(None);
                }
                // Said once; a LAN without a mapping-capable router is common and stays so.
                Err(e) if quiet => tracing::debug!("port mapping: {e}"),
                Err(e) => {
                    tracing::info!("port mapping: {e}; asking again every {REDISCOVER:?}");
                    quiet = true;
                }
            }
            sleep(REDISCOVER).await;
        }
    }

    /// Renews the mapping until renewals fail for good; then it is given up (best effort
    /// removal) so the loop can look for a gateway afresh.
    async fn keep(&self) {
        let Some(lease) = self
            .active
            .lock()
            .await
            .as_ref()
            .map(|a| a.mapping.lease_seconds)
        else {
            return;
        };
        let mut wait = renew_in(lease);
        loop {
            sleep(wait).await;
            let mut guard = self.active.lock().await;
            let Some(active) = guard.as_mut() else {
                return;
            };
            match active.renew().await {
                Ok(()) => {
                    tracing::debug!("port mapping renewed: {:?}", active.mapping);
                    wait = renew_in(active.mapping.lease_seconds);
                    self.publish(Some(active.mapping.clone()));
                }
                Err(e) => match retry_renew_in(active.remaining()) {
                    Some(retry) => {
                        tracing::info!("port mapping renewal failed: {e}; retrying");
                        wait = retry;
                    }
                    None => {
                        tracing::warn!("port mapping lost: {e}");
                        if let Some(active) = guard.take() {
                            let _ = active.remove().await;
                        }
                        return;
                    }
                },
            }
        }
    }

    /// Stops renewing and deletes the mapping on the gateway, so the port is not left open
    /// to this host after it stopped.
    pub async fn close(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        let active = self.active.lock().await.take();
        if let Some(active) = active {
            let external = active.mapping.external_address;
            match active.remove().await {
                Ok(()) => tracing::info!("port mapping for {external} removed"),
                Err(e) => tracing::info!("port mapping for {external} not removed: {e}"),
            }
        }
    }
}
