//! The I/O shell of NAT traversal: STUN discovery through the peer socket, and the three
//! punching procedures of `punch.rs` (probe exchange, port spray, birthday sockets). It owns
//! the control datagrams the peer socket diverts from QUIC.

use crate::locks::lock;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::AsyncUdpSocket;
use serde::Serialize;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};

use crate::announce::NatType;
use crate::identity::PublicKey;
use crate::net::punch::{
    probe_interval, ProbeKind, PunchProbe, SprayPorts, BIRTHDAY_SOCKETS, PUNCH_DEADLINE,
    SPRAY_PER_SECOND,
};
use crate::net::socket::{ControlDatagram, DemuxSocket};
use crate::net::stun;

/// A STUN server gets this long to answer (with two retransmissions) before it counts as
/// unreachable.
const STUN_TIMEOUT: Duration = Duration::from_millis(2500);
const STUN_RETRANSMITS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(300),
    Duration::from_millis(900),
];
const DNS_TIMEOUT: Duration = Duration::from_secs(3);
/// Birthday sockets re-probe this often, keeping their fresh mappings alive meanwhile.
const BIRTHDAY_REPROBE: Duration = Duration::from_millis(500);

/// What STUN found out; shown by `info` and put into the announce address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NatStatus {
    pub nat_type: NatType,
    pub public_address: Option<SocketAddr>,
    /// False when no STUN server answered the last round (or none is configured).
    pub online: bool,
}

impl NatStatus {
    fn offline() -> Self {
        Self {
            nat_type: NatType::Unknown,
            public_address: None,
            online: false,
        }
    }
}

type StunWaiters = HashMap<[u8; 12], (SocketAddr, oneshot::Sender<Vec<u8>>)>;

pub struct Traversal {
    socket: Arc<DemuxSocket>,
    our_key: PublicKey,
    stun_servers: Vec<String>,
    stun_waiters: Mutex<StunWaiters>,
    /// Peers we are punching towards, and where to report the address a probe came from.
    punching: Mutex<HashMap<PublicKey, mpsc::Sender<SocketAddr>>>,
    status: watch::Sender<NatStatus>,
}

/// Unregisters a punch when the procedure ends, however it ends.
struct PunchRegistration<'a> {
    traversal: &'a Traversal,
    peer: PublicKey,
}

impl Drop for PunchRegistration<'_> {
    fn drop(&mut self) {
        lock(&self.traversal.punching).remove(&self.peer);
    }
}

impl Traversal {
    pub fn start(
        socket: Arc<DemuxSocket>,
        control: mpsc::Receiver<ControlDatagram>,
        our_key: PublicKey,
        stun_servers: Vec<String>,
    ) -> Arc<Self> {
        let traversal = Arc::new(Self {
            socket,
            our_key,
            stun_servers,
            stun_waiters: Mutex::new(HashMap::new()),
            punching: Mutex::new(HashMap::new()),
            status: watch::channel(NatStatus::offline()).0,
        });
        tokio::spawn(traversal.clone().control_loop(control));
        traversal
    }

    pub fn status(&self) -> NatStatus {
        self.status.borrow().clone()
    }

    pub fn watch_status(&self) -> watch::Receiver<NatStatus> {
        self.status.subscribe()
    }

    pub fn has_stun_servers(&self) -> bool {
        !self.stun_servers.is_empty()
    }

    async fn control_loop(self: Arc<Self>, mut control: mpsc::Receiver<ControlDatagram>) {
        while let Some(datagram) = control.recv().await {
            if let Some(id) = stun::transaction_of(&datagram.bytes) {
                let mut waiters = lock(&self.stun_waiters);
                // Only the server we asked may answer; anything else is a forgery or stray.
                if waiters
                    .get(&id)
                    .is_some_and(|(server, _)| *server == datagram.from)
                {
                    if let Some((_, reply)) = waiters.remove(&id) {
                        let _ = reply.send(datagram.bytes);
                    }
                }
            } else if let Some(probe) = PunchProbe::decode(&datagram.bytes) {
                self.on_probe(probe, datagram.from);
            }
        }
    }

    /// A probe from a peer we are punching towards is answered at once (waiting would add
    /// a probe interval to every punch) and reported; probes from anyone else are dropped,
    /// so the socket is no reflector for strangers.
    fn on_probe(&self, probe: PunchProbe, from: SocketAddr) {
        let Some(report) = lock(&self.punching).get(&probe.sender).cloned() else {
            tracing::debug!("ignored a punch probe from {from}: no punch towards its sender");
            return;
        };
        tracing::debug!("punch {:?} from {from}", probe.kind);
        if probe.kind == ProbeKind::Probe {
            let ack = PunchProbe {
                kind: ProbeKind::Ack,
                sender: self.our_key,
            };
            let _ = self.socket.send_control(from, &ack.encode());
        }
        let _ = report.try_send(from);
    }

    fn register_punch(
        &self,
        peer: PublicKey,
    ) -> (PunchRegistration<'_>, mpsc::Receiver<SocketAddr>) {
        let (report, heard) = mpsc::channel(8);
        lock(&self.punching).insert(peer, report);
        (
            PunchRegistration {
                traversal: self,
                peer,
            },
            heard,
        )
    }

    fn probe(&self) -> [u8; crate::net::punch::PROBE_LEN] {
        PunchProbe {
            kind: ProbeKind::Probe,
            sender: self.our_key,
        }
        .encode()
    }

    /// One binding request to `server` from the peer socket; the address it saw us at.
    async fn stun_query(&self, server: SocketAddr) -> Option<SocketAddr> {
        let transaction = stun::random_transaction_id();
        let request = stun::binding_request(transaction).ok()?;
        let (reply, answer) = oneshot::channel();
        lock(&self.stun_waiters).insert(*transaction.as_bytes(), (server, reply));
        let bytes = retransmit_until_answered(answer, &STUN_RETRANSMITS, STUN_TIMEOUT, || {
            let _ = self.socket.send_control(server, &request);
        })
        .await;
        lock(&self.stun_waiters).remove(transaction.as_bytes());
        match stun::mapped_address(&bytes?, transaction) {
            Ok(mapped) => Some(mapped),
            Err(e) => {
                tracing::debug!("STUN answer from {server} ignored: {e}");
                None
            }
        }
    }

    /// Resolves the configured servers to distinct IPs of our socket's family.
    async fn stun_targets(&self) -> Vec<SocketAddr> {
        let want_v4 = self.socket.local_addr().map_or(true, |a| a.is_ipv4());
        let mut targets: Vec<SocketAddr> = Vec::new();
        for server in &self.stun_servers {
            let resolved =
                match timeout(DNS_TIMEOUT, tokio::net::lookup_host(server.as_str())).await {
                    Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
                    _ => {
                        tracing::debug!("cannot resolve STUN server {server}");
                        continue;
                    }
                };
            if let Some(addr) = resolved.into_iter().find(|a| a.is_ipv4() == want_v4) {
                if !targets.iter().any(|t| t.ip() == addr.ip()) {
                    targets.push(addr);
                }
            }
        }
        targets
    }

    /// Asks every configured server (in parallel) and classifies the NAT from the answers.
    pub async fn discover(&self) -> NatStatus {
        let targets = self.stun_targets().await;
        let port = self.socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let answers =
            futures_util::future::join_all(targets.iter().map(|t| self.stun_query(*t))).await;
        let mut mapped = Vec::new();
        let mut local = Vec::new();
        for (target, answer) in targets.iter().zip(answers) {
            if let Some(seen) = answer {
                mapped.push(seen);
                local.push(SocketAddr::new(source_ip_towards(*target), port));
            }
        }
        if mapped.is_empty() {
            return NatStatus::offline();
        }
        NatStatus {
            nat_type: stun::classify(&local, &mapped),
            public_address: mapped.first().copied(),
            online: true,
        }
    }

    /// Runs discovery now and then forever: every `period` while servers answer, every
    /// `retry` while none does. Never blocks start-up and never gives up.
    pub async fn stun_loop(self: Arc<Self>, period: Duration, retry: Duration) {
        if self.stun_servers.is_empty() {
            return;
        }
        loop {
            let status = self.discover().await;
            let next = if status.online { period } else { retry };
            if !status.online {
                tracing::debug!("no STUN server answered; asking again in {next:?}");
            }
            self.status.send_if_modified(|current| {
                if *current == status {
                    return false;
                }
                // Display, not Debug: the MIPS builds print derived Debug without fields.
                let public = status
                    .public_address
                    .map_or_else(|| "unknown".to_string(), |a| a.to_string());
                tracing::info!(
                    "NAT: {:?}, public address {public}{}",
                    status.nat_type,
                    if status.online {
                        ""
                    } else {
                        " (no STUN server answered; retrying)"
                    }
                );
                *current = status;
                true
            });
            sleep(next).await;
        }
    }

    /// Probes `target` from the peer socket until the peer's own probe or answer arrives;
    /// returns the address it came from (the one to dial).
    pub async fn punch(&self, peer: PublicKey, target: SocketAddr) -> Option<SocketAddr> {
        let (_registration, mut heard) = self.register_punch(peer);
        let probe = self.probe();
        let started = Instant::now();
        let deadline = started + PUNCH_DEADLINE;
        while Instant::now() < deadline {
            if let Err(e) = self.socket.send_control(target, &probe) {
                tracing::debug!("punch probe to {target} not sent: {e}");
            }
            let next = (Instant::now() + probe_interval(started.elapsed())).min(deadline);
            tokio::select! {
                from = heard.recv() => return from,
                () = tokio::time::sleep_until(next) => {}
            }
        }
        None
    }

    /// The cone side against a symmetric peer: walks the peer IP's ports at a bounded rate
    /// while the peer's birthday sockets probe us. Returns the address that answered; the
    /// peer then dials us from that socket.
    pub async fn spray(&self, peer: PublicKey, ip: IpAddr) -> Option<SocketAddr> {
        let (_registration, mut heard) = self.register_punch(peer);
        let probe = self.probe();
        let mut random = [0u8; 8];
        let _ = getrandom::getrandom(&mut random);
        let mut ports = SprayPorts::new(random);
        let started = Instant::now();
        let deadline = started + PUNCH_DEADLINE;
        // Probes go out in small batches per millisecond tick of a 1000/s budget.
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let per_tick = (SPRAY_PER_SECOND / 100).max(1);
        while Instant::now() < deadline {
            tokio::select! {
                from = heard.recv() => return from,
                _ = tick.tick() => {
                    for _ in 0..per_tick {
                        let Some(port) = ports.next() else { break };
                        let _ = self.socket.send_control(SocketAddr::new(ip, port), &probe);
                    }
                }
            }
        }
        None
    }

    /// The symmetric side against a cone peer: opens fresh sockets, each probing `target`
    /// (each gets its own mapping), and returns the first socket the peer's spray reaches,
    /// with the address it came from.
    pub async fn birthday(
        &self,
        peer: PublicKey,
        target: SocketAddr,
    ) -> Option<(std::net::UdpSocket, SocketAddr)> {
        let bind: SocketAddr = if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let probe = self.probe();
        let ack = PunchProbe {
            kind: ProbeKind::Ack,
            sender: self.our_key,
        }
        .encode();
        let mut sockets = JoinSet::new();
        for _ in 0..BIRTHDAY_SOCKETS {
            let Ok(socket) = UdpSocket::bind(bind).await else {
                break;
            };
            sockets.spawn(async move {
                let mut buf = [0u8; crate::net::punch::PROBE_LEN + 1];
                let mut reprobe = tokio::time::interval(BIRTHDAY_REPROBE);
                loop {
                    tokio::select! {
                        _ = reprobe.tick() => {
                            let _ = socket.send_to(&probe, target).await;
                        }
                        received = socket.recv_from(&mut buf) => {
                            let Ok((n, from)) = received else { continue };
                            let from_peer = PunchProbe::decode(&buf[..n])
                                .is_some_and(|p| p.sender == peer);
                            if from_peer {
                                let _ = socket.send_to(&ack, from).await;
                                return Some((socket, from));
                            }
                        }
                    }
                }
            });
        }
        let winner = timeout(PUNCH_DEADLINE, async {
            while let Some(done) = sockets.join_next().await {
                if let Ok(Some(found)) = done {
                    return Some(found);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        sockets.abort_all();
        let (socket, from) = winner?;
        Some((socket.into_std().ok()?, from))
    }
}

/// Sends a request at each offset of `schedule` (from now) until its answer arrives on
/// `answer`, giving up after `limit`. STUN over UDP: requests and answers may be lost.
pub async fn retransmit_until_answered<T>(
    answer: oneshot::Receiver<T>,
    schedule: &[Duration],
    limit: Duration,
    mut send: impl FnMut(),
) -> Option<T> {
    let exchange = async {
        let started = Instant::now();
        let mut answer = std::pin::pin!(answer);
        for offset in schedule {
            tokio::select! {
                reply = &mut answer => return reply.ok(),
                () = tokio::time::sleep_until(started + *offset) => send(),
            }
        }
        answer.await.ok()
    };
    timeout(limit, exchange).await.ok().flatten()
}

/// The local IP the kernel would send from towards `target` (no packet is sent): with it,
/// a mapped address equal to our own means there is no NAT on that path.
pub(crate) fn source_ip_towards(target: SocketAddr) -> IpAddr {
    let bind: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    std::net::UdpSocket::bind(bind)
        .and_then(|s| s.connect(target).and_then(|()| s.local_addr()))
        .map_or(bind.ip(), |a| a.ip())
}
