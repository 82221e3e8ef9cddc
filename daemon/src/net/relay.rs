//! The TURN relay fallback's I/O: a UDP socket to the TURN server that quinn uses as if it
//! were a plain socket (each datagram wrapped in a Send indication, unwrapped from Data
//! indications), the allocation, its permissions and refreshes. A second QUIC endpoint runs
//! on it, so relayed connections keep end-to-end encryption and authentication.

use crate::locks::lock;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use stun_codec::rfc5766::methods::{ALLOCATE, CREATE_PERMISSION, REFRESH};
use stun_codec::{Method, TransactionId};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::time::{timeout, Instant};

use crate::net::stun::{self, StunError, StunMessage};
use crate::net::traversal::retransmit_until_answered;
use crate::net::turn::{self, Allocation, Challenge, Credentials, Incoming};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const RETRANSMITS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(500),
    Duration::from_millis(1500),
];

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("cannot resolve TURN server {0}")]
    Resolve(String),
    #[error("TURN socket: {0}")]
    Io(#[from] io::Error),
    #[error("TURN server did not answer")]
    Timeout,
    #[error("TURN: {0}")]
    Stun(#[from] StunError),
    #[error("TURN server sent no realm and nonce with its 401")]
    NoChallenge,
}

/// The socket quinn sees: datagrams to peers leave as Send indications to the server;
/// Data indications come back as datagrams from those peers. Answers to our own requests
/// are handed to whoever waits for their transaction.
pub struct TurnSocket {
    io: Arc<UdpSocket>,
    server: SocketAddr,
    waiters: Mutex<HashMap<[u8; 12], oneshot::Sender<StunMessage>>>,
}

impl fmt::Debug for TurnSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TurnSocket")
            .field("server", &self.server)
            .finish()
    }
}

#[derive(Debug)]
struct Writable(Arc<UdpSocket>);

impl UdpPoller for Writable {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        self.0.poll_send_ready(cx)
    }
}

impl AsyncUdpSocket for TurnSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(Writable(self.io.clone()))
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        let wrapped = turn::send_indication(transmit.destination, transmit.contents)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        self.io.try_send_to(&wrapped, self.server).map(|_| ())
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(slot)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let mut scratch = [0u8; turn::MAX_RELAY_MESSAGE];
        loop {
            let mut read = tokio::io::ReadBuf::new(&mut scratch);
            let from = match self.io.poll_recv_from(cx, &mut read) {
                Poll::Ready(Ok(from)) => from,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if from != self.server {
                continue;
            }
            match turn::parse_incoming(read.filled()) {
                Ok(Incoming::Data { peer, datagram }) if datagram.len() <= buf.len() => {
                    buf[..datagram.len()].copy_from_slice(&datagram);
                    *slot = RecvMeta {
                        addr: peer,
                        len: datagram.len(),
                        stride: datagram.len(),
                        ecn: None,
                        dst_ip: None,
                    };
                    return Poll::Ready(Ok(1));
                }
                Ok(Incoming::Response(message)) => self.deliver(message),
                Ok(Incoming::Data { .. }) => {}
                Err(e) => tracing::debug!("ignored a datagram from the TURN server: {e}"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }
}

impl TurnSocket {
    fn deliver(&self, message: StunMessage) {
        if let Some(waiter) = lock(&self.waiters).remove(message.transaction_id().as_bytes()) {
            let _ = waiter.send(message);
        }
    }
}

/// A live allocation on the TURN server, with the QUIC endpoint running over it.
pub struct Relay {
    socket: Arc<TurnSocket>,
    pub endpoint: quinn::Endpoint,
    pub allocation: Allocation,
    credentials: Credentials,
    challenge: Mutex<Challenge>,
    permitted: Mutex<HashMap<IpAddr, Instant>>,
}

/// Sends `request` built for each (re)try and waits for its answer on a socket nobody
/// else reads yet (before the QUIC endpoint takes the socket over).
async fn exchange_unshared(
    io: &UdpSocket,
    server: SocketAddr,
    transaction: TransactionId,
    request: &[u8],
) -> Result<StunMessage, RelayError> {
    let started = Instant::now();
    let mut buf = [0u8; turn::MAX_RELAY_MESSAGE];
    for (i, offset) in RETRANSMITS.iter().enumerate() {
        tokio::time::sleep_until(started + *offset).await;
        io.send_to(request, server).await?;
        let until = RETRANSMITS
            .get(i + 1)
            .map_or(started + REQUEST_TIMEOUT, |next| started + *next);
        while let Ok(received) = tokio::time::timeout_at(until, io.recv_from(&mut buf)).await {
            let (n, from) = received?;
            if from != server {
                continue;
            }
            if let Ok(Incoming::Response(message)) = turn::parse_incoming(&buf[..n]) {
                if message.transaction_id() == transaction {
                    return Ok(message);
                }
            }
        }
    }
    Err(RelayError::Timeout)
}

impl Relay {
    /// Allocates a relayed address (answering the server's 401 challenge) and starts a
    /// QUIC endpoint on it with `make_endpoint`.
    pub async fn allocate(
        server: &str,
        credentials: Credentials,
        make_endpoint: impl FnOnce(Arc<dyn AsyncUdpSocket>) -> io::Result<quinn::Endpoint>,
    ) -> Result<Arc<Self>, RelayError> {
        let server_addr = timeout(Duration::from_secs(3), tokio::net::lookup_host(server))
            .await
            .ok()
            .and_then(|r| r.ok())
            .and_then(|mut addrs| addrs.find(|a| a.is_ipv4()))
            .ok_or_else(|| RelayError::Resolve(server.to_string()))?;
        let io = UdpSocket::bind((std::net::Ipv4Addr::UNSPECIFIED, 0)).await?;
        let first = stun::random_transaction_id();
        let answer = exchange_unshared(
            &io,
            server_addr,
            first,
            &turn::allocate_request(first, None)?,
        )
        .await?;
        let allocated = match stun::check_response(&answer, first, ALLOCATE) {
            Ok(()) => (answer, None),
            Err(e) if turn::needs_new_challenge(&e) => {
                let challenge = turn::challenge_of(&answer).ok_or(RelayError::NoChallenge)?;
                let signed = stun::random_transaction_id();
                let request = turn::allocate_request(signed, Some((&credentials, &challenge)))?;
                let answer = exchange_unshared(&io, server_addr, signed, &request).await?;
                stun::check_response(&answer, signed, ALLOCATE)?;
                (answer, Some(challenge))
            }
            Err(e) => return Err(e.into()),
        };
        let (answer, challenge) = allocated;
        let allocation = turn::allocation_of(&answer)?;
        let socket = Arc::new(TurnSocket {
            io: Arc::new(io),
            server: server_addr,
            waiters: Mutex::new(HashMap::new()),
        });
        let endpoint = make_endpoint(socket.clone())?;
        Ok(Arc::new(Self {
            socket,
            endpoint,
            allocation,
            credentials,
            challenge: Mutex::new(challenge.unwrap_or(Challenge {
                realm: String::new(),
                nonce: String::new(),
            })),
            permitted: Mutex::new(HashMap::new()),
        }))
    }

    /// One signed request through the shared socket; a stale-nonce answer is retried once
    /// with the server's new nonce.
    async fn signed_request(
        &self,
        method: Method,
        build: impl Fn(TransactionId, &Credentials, &Challenge) -> Result<Vec<u8>, StunError>,
    ) -> Result<StunMessage, RelayError> {
        for _ in 0..2 {
            let transaction = stun::random_transaction_id();
            let challenge = lock(&self.challenge).clone();
            let request = build(transaction, &self.credentials, &challenge)?;
            let (reply, answer) = oneshot::channel();
            lock(&self.socket.waiters).insert(*transaction.as_bytes(), reply);
            let message = retransmit_until_answered(answer, &RETRANSMITS, REQUEST_TIMEOUT, || {
                // A full socket buffer drops it like the network might; retried anyway.
                let _ = self.socket.io.try_send_to(&request, self.socket.server);
            })
            .await;
            lock(&self.socket.waiters).remove(transaction.as_bytes());
            let message = message.ok_or(RelayError::Timeout)?;
            match stun::check_response(&message, transaction, method) {
                Ok(()) => return Ok(message),
                Err(e) if turn::needs_new_challenge(&e) => {
                    let fresh = turn::challenge_of(&message).ok_or(RelayError::NoChallenge)?;
                    *lock(&self.challenge) = fresh;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(RelayError::Timeout)
    }

    /// Lets `peer` send to our relayed address (renewed by `maintain`).
    pub async fn permit(&self, peer: IpAddr) -> Result<(), RelayError> {
        self.signed_request(CREATE_PERMISSION, |t, c, ch| {
            turn::permission_request(t, peer, c, ch)
        })
        .await?;
        lock(&self.permitted).insert(peer, Instant::now());
        Ok(())
    }

    /// Keeps the allocation and its permissions alive; returns when the server stops
    /// answering (the caller allocates anew).
    pub async fn maintain(self: Arc<Self>) -> RelayError {
        let refresh_every = self
            .allocation
            .lifetime
            .saturating_sub(Duration::from_secs(60))
            .max(Duration::from_secs(30));
        let mut last_refresh = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(15)).await;
            if last_refresh.elapsed() >= refresh_every {
                let refreshed = self
                    .signed_request(REFRESH, |t, c, ch| {
                        turn::refresh_request(t, c, ch, turn::ALLOCATION_LIFETIME)
                    })
                    .await;
                if let Err(e) = refreshed {
                    return e;
                }
                last_refresh = Instant::now();
            }
            let due: Vec<IpAddr> = lock(&self.permitted)
                .iter()
                .filter(|(_, at)| at.elapsed() >= turn::PERMISSION_REFRESH)
                .map(|(ip, _)| *ip)
                .collect();
            for ip in due {
                if let Err(e) = self.permit(ip).await {
                    tracing::debug!("TURN permission for {ip} not renewed: {e}");
                }
            }
        }
    }

    /// Releases the allocation (lifetime zero) so the server frees the port at once.
    pub async fn release(&self) {
        let _ = self
            .signed_request(REFRESH, |t, c, ch| {
                turn::refresh_request(t, c, ch, Duration::ZERO)
            })
            .await;
    }
}
