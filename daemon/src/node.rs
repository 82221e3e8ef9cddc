//! The running peer: owns the identity, store, shares, QUIC endpoint, peer table and
//! transfer engines, and implements the connection lifecycle (accept, dial, duplicate
//! resolution, gossip, reconnect with backoff) and the serving side of every request.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::announce::{AnnounceAddress, NatType};
use crate::events::{self, Event, EventSender};
use crate::identity::{self, Identity, PublicKey};
use crate::net::mdns;
use crate::net::peers::{
    Backoff, ConnectionFacts, PeerConnection, PeerTable, Registered, CLOSE_BY_USER, CLOSE_DUPLICATE,
};
use crate::net::quic::{peer_identity, QuicNode};
use crate::net::rpc;
use crate::shares::Shares;
use crate::store::{KnownPeer, Store};
use crate::transfer::download::{DownloadLimits, Downloads};
use crate::transfer::rate::{AltSpeed, Limits, RateLimiter};
use crate::transfer::upload::{UploadLimits, Uploads};
use crate::wire::{
    read_frame, write_frame, AnnounceReply, LsChunk, LsChunker, Request, WireError,
    MAX_REQUEST_FRAME, MAX_RESPONSE_FRAME,
};
use crate::wire::{HashChunk, HashesHeader, HaveReply, MAX_HASHES_PER_CHUNK};

/// A peer that opens a stream must send its request within this time.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const RECONNECT_TICK: Duration = Duration::from_secs(1);
/// A connection that lasted this long resets its peer's reconnect backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(60);
/// Stream reset code for a request frame we could not parse.
const RESET_MALFORMED: u32 = 4;
const DB_CACHE_BYTES: usize = 4 * 1024 * 1024;
const LIMITS_SETTING: &str = "rate_limits";
const ALT_SPEED_SETTING: &str = "alt_speed";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Shares(#[from] crate::shares::SharesError),
    #[error(transparent)]
    Quic(#[from] crate::net::quic::QuicError),
    #[error("invalid announce address: {0}")]
    Announce(#[from] crate::announce::AnnounceError),
    #[error("that announce address is this peer's own")]
    OwnAddress,
    #[error("cannot reach {name}: {reason}")]
    Unreachable { name: String, reason: String },
    #[error("{0} was rejected: it presented an unexpected key")]
    WrongKey(String),
    #[error("peer {0} is not connected")]
    NotConnected(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

async fn send_hashes(
    send: &mut quinn::SendStream,
    record: crate::store::HashRecord,
) -> Result<(), crate::wire::FrameError> {
    let header = HashesHeader::Ok {
        size: record.size,
        mtime: record.mtime,
        root: record.root,
    };
    write_frame(send, &header, MAX_RESPONSE_FRAME).await?;
    for chunk in record.pieces.chunks(MAX_HASHES_PER_CHUNK) {
        write_frame(send, &HashChunk(chunk.to_vec()), MAX_RESPONSE_FRAME).await?;
    }
    Ok(())
}

pub struct NodeConfig {
    pub storage: PathBuf,
    pub share_dirs: Vec<PathBuf>,
    pub download_dir: PathBuf,
    pub listen: Option<SocketAddr>,
    pub mdns: bool,
    pub stun_servers: Vec<String>,
    pub rescan_interval: Duration,
    pub download_limits: DownloadLimits,
    pub upload_limits: UploadLimits,
    pub limits: crate::config::LimitOverrides,
    pub background_hashing: bool,
    /// Read rate of the background hashing pass (0 = as fast as the disk allows).
    pub background_hash_rate: crate::transfer::rate::Rate,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    pub name: String,
    pub connected: bool,
    pub connection: Option<&'static str>,
    pub remote_address: Option<String>,
    pub announce_address: Option<String>,
    pub disconnected_by_user: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub peers: usize,
    pub downloading: usize,
    pub uploading: usize,
    /// Free bytes on the storage disk, when the filesystem says.
    pub storage_free: Option<u64>,
}

/// Below this much free space on the storage disk the status line warns.
pub const STORAGE_LOW_BYTES: u64 = 64 * 1024 * 1024;

impl Health {
    /// The one-line status systemd shows (`STATUS=`).
    pub fn status_line(&self) -> String {
        let mut line = format!(
            "{} peers connected, {} downloading, {} uploading",
            self.peers, self.downloading, self.uploading
        );
        if let Some(free) = self.storage_free.filter(|f| *f < STORAGE_LOW_BYTES) {
            line.push_str(&format!(
                "; storage disk nearly full ({} MiB free)",
                free / (1024 * 1024)
            ));
        }
        line
    }
}

pub struct Node {
    pub identity: Identity,
    pub store: Arc<Store>,
    pub shares: Arc<Shares>,
    pub peers: Arc<PeerTable>,
    pub downloads: Arc<Downloads>,
    pub uploads: Arc<Uploads>,
    pub events: EventSender,
    pub rate: Arc<RateLimiter>,
    pub storage: PathBuf,
    pub download_dir: PathBuf,
    quic: QuicNode,
    /// mDNS advertising and browsing; `None` when off or unavailable.
    lan: Option<mdns::Discovery>,
    announce: AnnounceAddress,
    backoff: Mutex<HashMap<String, Backoff>>,
    dialling: Mutex<HashSet<String>>,
    normal_limits: Mutex<Limits>,
    alt_speed: Mutex<AltSpeed>,
    /// `None` when background hashing is switched off.
    background_hash_rate: Option<crate::transfer::rate::Rate>,
    pub hashing: std::sync::atomic::AtomicBool,
    /// Files hashed (or found hashed) by background passes since start.
    pub hashed_files: std::sync::atomic::AtomicU64,
    shutdown: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The address other peers should dial: the bound one, or for a wildcard bind the local
/// address the kernel would route outwards from (no packet is sent).
fn advertised_address(bound: SocketAddr) -> SocketAddr {
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let probe = UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.1:9").and_then(|()| s.local_addr()));
    let ip = probe
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    SocketAddr::new(ip, bound.port())
}

impl Node {
    pub async fn start(config: NodeConfig) -> Result<Arc<Self>, NodeError> {
        let storage = config.storage.clone();
        std::fs::create_dir_all(&storage).map_err(|source| NodeError::Io {
            path: storage.clone(),
            source,
        })?;
        let identity = Identity::load_or_create(&storage)?;
        let store = Arc::new(Store::open(&storage, DB_CACHE_BYTES)?);
        let remembered: Option<SocketAddr> = store.setting("listen")?.and_then(|s| s.parse().ok());
        let default_ip = remembered.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |r| r.ip());
        let wanted = config.listen.unwrap_or(SocketAddr::new(default_ip, 0));
        // Port 0 means "any": prefer the port we had last time so announce addresses stay valid.
        let quic = match remembered.filter(|r| wanted.port() == 0 && r.ip() == wanted.ip()) {
            Some(previous) => QuicNode::bind(previous, &identity)
                .or_else(|_| QuicNode::bind(wanted, &identity))?,
            None => QuicNode::bind(wanted, &identity)?,
        };
        let bound = quic.local_addr().map_err(|source| NodeError::Io {
            path: "udp socket".into(),
            source,
        })?;
        store.set_setting("listen", &bound.to_string())?;
        if !config.stun_servers.is_empty() {
            tracing::debug!(
                "STUN servers {:?} take effect with NAT traversal support",
                config.stun_servers
            );
        }
        let announce = AnnounceAddress {
            public_key: identity.public_key,
            addr: advertised_address(bound),
            nat_type: NatType::Unknown,
        };
        let shares = Arc::new(Shares::open(store.clone())?);
        let peers = Arc::new(PeerTable::default());
        let events = events::channel();
        std::fs::create_dir_all(&config.download_dir).map_err(|source| NodeError::Io {
            path: config.download_dir.clone(),
            source,
        })?;
        let download_dir = config
            .download_dir
            .canonicalize()
            .map_err(|source| NodeError::Io {
                path: config.download_dir.clone(),
                source,
            })?;
        let saved_limits = store
            .setting(LIMITS_SETTING)?
            .and_then(|json| serde_json::from_str::<Limits>(&json).ok())
            .unwrap_or_default();
        let normal_limits = config.limits.over(saved_limits);
        let alt_speed: AltSpeed = store
            .setting(ALT_SPEED_SETTING)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default();
        let rate = Arc::new(RateLimiter::new(normal_limits));
        let downloads = Downloads::load(
            store.clone(),
            peers.clone(),
            events.clone(),
            download_dir.clone(),
            config.download_limits,
            rate.clone(),
        )?;
        let uploads = Arc::new(Uploads::new(
            config.upload_limits,
            rate.clone(),
            events.clone(),
        ));
        // Last before the node exists, so a failed start leaves no advertisement behind.
        let (lan, browse) = config
            .mdns
            .then(|| mdns::Discovery::start(&identity.public_key, bound))
            .flatten()
            .unzip();
        let node = Arc::new(Node {
            identity,
            store,
            shares,
            peers,
            downloads,
            uploads,
            events,
            rate,
            storage,
            download_dir,
            quic,
            lan,
            announce,
            backoff: Mutex::new(HashMap::new()),
            dialling: Mutex::new(HashSet::new()),
            normal_limits: Mutex::new(normal_limits),
            alt_speed: Mutex::new(alt_speed),
            background_hash_rate: config
                .background_hashing
                .then_some(config.background_hash_rate),
            hashing: Default::default(),
            hashed_files: Default::default(),
            shutdown: watch::channel(false).0,
        });
        tracing::info!(
            "peer {} listening on {bound}; announce address {}",
            node.identity.name,
            node.announce
        );
        tokio::spawn(node.clone().accept_loop());
        tokio::spawn(node.clone().reconnect_loop());
        if let Some(browse) = browse {
            tokio::spawn(node.clone().lan_discovery_loop(browse));
        }
        tokio::spawn(node.downloads.clone().run());
        tokio::spawn(node.clone().upload_progress_loop());
        tokio::spawn(node.clone().limits_schedule_loop());
        tokio::spawn(
            node.clone()
                .index_loop(config.share_dirs, config.rescan_interval),
        );
        Ok(node)
    }

    /// Touches the database and the transfer tables. Called from the service's main loop: a
    /// wedged lock or database shows up as this call not returning, which stops the watchdog.
    pub fn health(&self) -> Result<Health, crate::store::StoreError> {
        self.store.setting("listen")?;
        let active = |views: Vec<crate::transfer::TransferView>| {
            views
                .iter()
                .filter(|v| v.state == crate::transfer::TransferState::Active)
                .count()
        };
        let storage_free = crate::transfer::download::free_space(&self.storage);
        Ok(Health {
            peers: self.peers.all().len(),
            downloading: active(self.downloads.views()),
            uploading: active(self.uploads.views()),
            storage_free,
        })
    }

    /// Changes bandwidth limits at once and keeps them for the next start.
    /// The normal limits (in force whenever the alternative ones are not).
    pub fn limits(&self) -> Limits {
        *lock(&self.normal_limits)
    }

    pub fn alt_speed(&self) -> AltSpeed {
        lock(&self.alt_speed).clone()
    }

    /// Changes the normal limits at once and keeps them for the next start.
    pub fn set_limits(&self, limits: Limits) -> Result<(), crate::store::StoreError> {
        *lock(&self.normal_limits) = limits;
        self.apply_limits();
        let json = serde_json::to_string(&limits).unwrap_or_default();
        self.store.set_setting(LIMITS_SETTING, &json)
    }

    pub fn set_alt_speed(&self, alt: AltSpeed) -> Result<(), crate::store::StoreError> {
        let json = serde_json::to_string(&alt).unwrap_or_default();
        *lock(&self.alt_speed) = alt;
        self.apply_limits();
        self.store.set_setting(ALT_SPEED_SETTING, &json)
    }

    /// Whether the alternative limits apply right now (local time).
    pub fn alt_speed_active(&self) -> bool {
        use chrono::{Datelike, Timelike};
        let now = chrono::Local::now();
        let minute = (now.hour() * 60 + now.minute()) as u16;
        lock(&self.alt_speed).active(now.weekday().num_days_from_monday() as u8, minute)
    }

    /// Puts the normal or the alternative limits in force, whichever applies now.
    fn apply_limits(&self) {
        let wanted = if self.alt_speed_active() {
            lock(&self.alt_speed).limits
        } else {
            *lock(&self.normal_limits)
        };
        if self.rate.limits() != wanted {
            self.rate.set_limits(wanted);
        }
    }

    /// Switches between normal and alternative limits as the schedule says.
    async fn limits_schedule_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(20));
        loop {
            tick.tick().await;
            self.apply_limits();
        }
    }

    pub fn announce_address(&self) -> String {
        self.announce.to_string()
    }

    pub fn listen_address(&self) -> Option<SocketAddr> {
        self.quic.local_addr().ok()
    }

    pub fn request_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Stops transfers (their `.part` files stay resumable) and closes every connection.
    pub async fn close(&self) {
        if let Some(lan) = &self.lan {
            lan.stop().await;
        }
        self.downloads.abort_all();
        self.quic
            .endpoint
            .close(CLOSE_BY_USER.into(), b"shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.quic.endpoint.wait_idle()).await;
    }

    /// Indexes every share once at start (new `--share-dir`s are registered first), then
    /// rescans periodically; after each scan, hashes what is not hashed yet in the background.
    async fn index_loop(self: Arc<Self>, share_dirs: Vec<PathBuf>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        let mut first = Some(share_dirs);
        loop {
            tick.tick().await;
            let node = self.clone();
            let new_dirs = first.take();
            let _ = tokio::task::spawn_blocking(move || {
                for dir in new_dirs.unwrap_or_default() {
                    node.register_share(&dir);
                }
                node.rescan_logged();
                if let Some(rate) = node.background_hash_rate {
                    node.hash_in_background(rate);
                }
            })
            .await;
            let _ = self.events.send(Event::SharesChanged);
        }
    }

    fn register_share(&self, dir: &std::path::Path) {
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        if self.shares.roots().values().any(|r| *r == canonical) {
            return;
        }
        match self.shares.register(dir) {
            Ok(name) => tracing::info!("sharing {} as {name}", dir.display()),
            Err(e) => tracing::warn!("{e}"),
        }
    }

    /// Computes content hashes of every shared file not hashed yet, paced so that a NAS
    /// keeps serving while it works. Blocking.
    fn hash_in_background(&self, rate: crate::transfer::rate::Rate) {
        let mut files = Vec::new();
        let _ = self.shares.ls("", None, true, |entry| {
            if !entry.is_dir {
                files.push(entry.path);
            }
            true
        });
        self.hashing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        let mut bucket = crate::transfer::rate::TokenBucket::new(rate, started);
        // Paced by the bucket, and stopped mid-file at shutdown so a stop never waits for a
        // big file to finish hashing.
        let mut pace = |bytes: u64| {
            let wait = bucket.take(bytes, Instant::now());
            if !self.shares.demand_waiting() {
                std::thread::sleep(wait);
            }
            !*self.shutdown.borrow()
        };
        for path in files {
            if *self.shutdown.borrow() {
                break;
            }
            match self.shares.content_hashes_paced(&path, &mut pace) {
                Ok((_, true)) => {
                    self.hashed_files
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Ok((_, false)) => {}
                Err(e) => tracing::debug!("background hashing skipped {path}: {e}"),
            }
        }
        self.hashing
            .store(false, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!("background hashing pass took {:.2?}", started.elapsed());
    }

    fn rescan_logged(&self) {
        let started = Instant::now();
        match self.shares.rescan_all() {
            Ok(stats) => tracing::info!(
                "indexed {} files in {} dirs in {:.2?} ({} entries written, {} removed)",
                stats.files,
                stats.dirs,
                started.elapsed(),
                stats.written,
                stats.removed
            ),
            Err(e) => tracing::error!("rescan failed: {e}"),
        }
    }

    async fn upload_progress_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(crate::transfer::PROGRESS_INTERVAL);
        loop {
            tick.tick().await;
            self.uploads.emit_progress();
        }
    }

    async fn accept_loop(self: Arc<Self>) {
        while let Some(incoming) = self.quic.endpoint.accept().await {
            let node = self.clone();
            tokio::spawn(async move {
                match incoming.await {
                    Ok(conn) => node.on_connection(conn, false),
                    Err(e) => tracing::debug!("inbound handshake failed: {e}"),
                }
            });
        }
    }

    /// Dials a peer by announce address, remembering it as a known peer.
    pub async fn connect(self: &Arc<Self>, text: &str) -> Result<String, NodeError> {
        let address: AnnounceAddress = text.parse()?;
        if address.public_key == self.identity.public_key {
            return Err(NodeError::OwnAddress);
        }
        let name = address.name();
        self.store.put_known_peer(
            &name,
            &KnownPeer {
                announce_address: address.to_string(),
                disconnected: false,
            },
        )?;
        lock(&self.backoff).remove(&name);
        self.dial(&address).await?;
        Ok(name)
    }

    async fn dial(self: &Arc<Self>, address: &AnnounceAddress) -> Result<(), NodeError> {
        let name = address.name();
        if self.peers.get(&name).is_some() {
            return Ok(());
        }
        if !lock(&self.dialling).insert(name.clone()) {
            return Ok(());
        }
        let result = self.quic.connect(address.addr, address.public_key).await;
        lock(&self.dialling).remove(&name);
        let conn = result.map_err(|e| {
            let reason = e.to_string();
            if reason.contains("ApplicationVerificationFailure") {
                NodeError::WrongKey(name.clone())
            } else {
                NodeError::Unreachable {
                    name: name.clone(),
                    reason,
                }
            }
        })?;
        self.on_connection(conn, true);
        Ok(())
    }

    pub fn disconnect(&self, name: &str) -> Result<(), NodeError> {
        let known = self.store.known_peer(name)?;
        let connected = self.peers.remove(name);
        if known.is_none() && connected.is_none() {
            return Err(NodeError::NotConnected(name.to_string()));
        }
        if let Some(mut peer) = known {
            peer.disconnected = true;
            self.store.put_known_peer(name, &peer)?;
        }
        if let Some(conn) = connected {
            conn.connection
                .close(CLOSE_BY_USER.into(), b"disconnected by user");
            let _ = self.events.send(Event::PeerDisconnected {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    pub fn peer_views(&self) -> Vec<PeerView> {
        let mut views: Vec<PeerView> = self
            .store
            .known_peers()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, known)| {
                let live = self.peers.get(&name);
                PeerView {
                    connected: live.is_some(),
                    connection: live.as_ref().map(|_| "direct"),
                    remote_address: live.map(|c| c.remote_address().to_string()),
                    announce_address: Some(known.announce_address),
                    disconnected_by_user: known.disconnected,
                    name,
                }
            })
            .collect();
        for live in self.peers.all() {
            if !views.iter().any(|v| v.name == live.name) {
                views.push(PeerView {
                    name: live.name.clone(),
                    connected: true,
                    connection: Some("direct"),
                    remote_address: Some(live.remote_address().to_string()),
                    announce_address: None,
                    disconnected_by_user: false,
                });
            }
        }
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    fn on_connection(self: &Arc<Self>, conn: quinn::Connection, outbound: bool) {
        let Some((key, cert_fingerprint)) = peer_identity(&conn) else {
            conn.close(CLOSE_BY_USER.into(), b"no identity");
            return;
        };
        let name = identity::peer_name(&key);
        if key == self.identity.public_key {
            conn.close(CLOSE_BY_USER.into(), b"self");
            return;
        }
        let known = self.store.known_peer(&name).ok().flatten();
        if !outbound && known.as_ref().is_some_and(|k| k.disconnected) {
            tracing::info!("refusing {name}: disconnected by the user");
            conn.close(CLOSE_BY_USER.into(), b"disconnected by user");
            return;
        }
        // Names are short: a stranger whose key maps to a known peer's name must not take
        // that peer's place (and its queued downloads).
        let known_key = known
            .and_then(|k| k.announce_address.parse::<AnnounceAddress>().ok())
            .map(|a| a.public_key);
        if known_key.is_some_and(|k| k != key) {
            tracing::warn!("refusing a connection from another key under the known name {name}");
            conn.close(CLOSE_DUPLICATE.into(), b"name in use");
            return;
        }
        let peer = PeerConnection {
            name: name.clone(),
            key,
            connection: conn.clone(),
            facts: ConnectionFacts {
                outbound,
                cert_fingerprint,
                closed: false,
            },
            connected_at: SystemTime::now(),
        };
        if let Registered::Rejected = self.peers.register(peer, &self.identity.public_key) {
            tracing::debug!("dropped a duplicate connection to {name}");
            return;
        }
        tracing::info!(
            "connected to {name} at {} ({})",
            conn.remote_address(),
            if outbound { "outbound" } else { "inbound" }
        );
        let _ = self.events.send(Event::PeerConnected {
            name: name.clone(),
            remote_address: conn.remote_address().to_string(),
        });
        tokio::spawn(
            self.clone()
                .serve_connection(name.clone(), key, conn.clone()),
        );
        tokio::spawn(self.clone().introduce(name, conn, outbound));
        self.downloads.wake();
    }

    /// Tells the new peer who we are and who else we know; tells the others about it.
    async fn introduce(self: Arc<Self>, name: String, conn: quinn::Connection, outbound: bool) {
        if let Err(e) = rpc::announce(&conn, self.announce_address()).await {
            tracing::debug!("self-announce to {name} failed: {e}");
        }
        for other in self.peers.all().into_iter().filter(|p| p.name != name) {
            if let Ok(Some(known)) = self.store.known_peer(&other.name) {
                let _ = rpc::announce(&conn, known.announce_address).await;
            }
        }
        if outbound {
            self.gossip(&name).await;
        }
    }

    /// Passes `name`'s announce address to every other connected peer.
    async fn gossip(&self, name: &str) {
        let Ok(Some(known)) = self.store.known_peer(name) else {
            return;
        };
        for other in self.peers.all().into_iter().filter(|p| p.name != name) {
            let _ = rpc::announce(&other.connection, known.announce_address.clone()).await;
        }
    }

    async fn serve_connection(
        self: Arc<Self>,
        name: String,
        key: PublicKey,
        conn: quinn::Connection,
    ) {
        let started = Instant::now();
        loop {
            match conn.accept_bi().await {
                Ok((send, recv)) => {
                    tokio::spawn(self.clone().serve_stream(name.clone(), key, send, recv));
                }
                Err(e) => {
                    tracing::debug!("connection to {name} ended: {e}");
                    break;
                }
            }
        }
        if self.peers.remove_if_current(&name, conn.stable_id()) {
            // A connection that dies young (for instance one the peer refuses right after the
            // handshake) counts as a failed attempt, so redials back off instead of spinning.
            let now = Instant::now();
            let mut backoff = lock(&self.backoff);
            let entry = backoff
                .entry(name.clone())
                .or_insert_with(|| Backoff::new(now));
            if started.elapsed() >= STABLE_CONNECTION {
                *entry = Backoff::new(now);
            } else {
                entry.failed(now);
            }
            drop(backoff);
            tracing::info!("{name} disconnected");
            let _ = self.events.send(Event::PeerDisconnected { name });
            self.downloads.wake();
        }
    }

    async fn serve_stream(
        self: Arc<Self>,
        peer: String,
        peer_key: PublicKey,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
    ) {
        let request = match tokio::time::timeout(
            REQUEST_TIMEOUT,
            read_frame::<Request, _>(&mut recv, MAX_REQUEST_FRAME),
        )
        .await
        {
            Ok(Ok(request)) => request,
            Ok(Err(e)) => {
                tracing::info!("bad request from {peer}: {e}; closing that stream");
                let _ = send.reset(RESET_MALFORMED.into());
                let _ = recv.stop(RESET_MALFORMED.into());
                return;
            }
            Err(_) => {
                let _ = send.reset(RESET_MALFORMED.into());
                return;
            }
        };
        let invalid = request.validate().err();
        match request {
            Request::Ls {
                path,
                searchterm,
                recursive,
            } => {
                let result = match invalid {
                    Some(e) => Err(e),
                    None => self.stream_ls(&mut send, path, searchterm, recursive).await,
                };
                if let Err(e) = result {
                    let _ = write_frame(&mut send, &LsChunk::Error(e), MAX_RESPONSE_FRAME).await;
                }
                let _ = send.finish();
            }
            Request::Read { path, start, end } => {
                let file = match invalid {
                    Some(e) => Err(e),
                    None => self.shares.resolve(&path),
                };
                self.uploads
                    .serve(&peer, &path, file, start, end, &mut send)
                    .await;
            }
            Request::Hashes { path } => {
                let result = match invalid {
                    Some(e) => Err(e),
                    None => {
                        let shares = self.shares.clone();
                        tokio::task::spawn_blocking(move || shares.content_hashes(&path))
                            .await
                            .unwrap_or_else(|e| Err(WireError::Io(e.to_string())))
                    }
                };
                let _ = match result {
                    Ok(record) => send_hashes(&mut send, record).await,
                    Err(e) => {
                        write_frame(&mut send, &HashesHeader::Error(e), MAX_RESPONSE_FRAME).await
                    }
                };
                let _ = send.finish();
            }
            Request::Have { root } => {
                let shares = self.shares.clone();
                let found = tokio::task::spawn_blocking(move || shares.find_root(&root))
                    .await
                    .ok()
                    .flatten();
                let reply = match found {
                    Some((path, record)) => HaveReply::Found {
                        path,
                        size: record.size,
                    },
                    None => HaveReply::NotFound,
                };
                let _ = write_frame(&mut send, &reply, MAX_RESPONSE_FRAME).await;
                let _ = send.finish();
            }
            Request::AnnouncePeer { announce_address } => {
                let reply = match invalid {
                    Some(e) => AnnounceReply::Error(e),
                    None => self.on_announce(&peer, &peer_key, &announce_address).await,
                };
                let _ = write_frame(&mut send, &reply, MAX_RESPONSE_FRAME).await;
                let _ = send.finish();
            }
        }
    }

    /// Streams an `Ls` answer in bounded chunks straight from the index.
    async fn stream_ls(
        &self,
        send: &mut quinn::SendStream,
        path: String,
        searchterm: Option<String>,
        recursive: bool,
    ) -> Result<(), WireError> {
        let (tx, mut rx) = mpsc::channel::<Vec<crate::wire::Entry>>(2);
        let shares = self.shares.clone();
        let lister = tokio::task::spawn_blocking(move || {
            let mut chunker = LsChunker::default();
            let mut open = true;
            let result = shares.ls(&path, searchterm.as_deref(), recursive, |entry| {
                if let Some(chunk) = chunker.push(entry) {
                    open = tx.blocking_send(chunk).is_ok();
                }
                open
            });
            let rest = chunker.take();
            if open && !rest.is_empty() {
                let _ = tx.blocking_send(rest);
            }
            result
        });
        while let Some(chunk) = rx.recv().await {
            if write_frame(send, &LsChunk::Entries(chunk), MAX_RESPONSE_FRAME)
                .await
                .is_err()
            {
                break;
            }
        }
        // A peer that stopped reading must not leave the lister blocked on a full channel.
        drop(rx);
        lister
            .await
            .unwrap_or_else(|e| Err(WireError::Io(e.to_string())))
    }

    /// Handles `AnnouncePeer`. A peer's own address is accepted as given (its key is the one
    /// it authenticated with). A third party's address only adds a peer we do not know or
    /// updates an offline one with the same key: gossip never swaps the key behind a name,
    /// nor moves a peer that is connected.
    async fn on_announce(
        self: &Arc<Self>,
        from: &str,
        from_key: &PublicKey,
        text: &str,
    ) -> AnnounceReply {
        let address: AnnounceAddress = match text.parse() {
            Ok(a) => a,
            Err(e) => return AnnounceReply::Error(WireError::BadRequest(e.to_string())),
        };
        if address.public_key == self.identity.public_key {
            return AnnounceReply::Ok;
        }
        let name = address.name();
        let introduces_itself = address.public_key == *from_key;
        let known = self.store.known_peer(&name).ok().flatten();
        let known_key = known
            .as_ref()
            .and_then(|k| k.announce_address.parse::<AnnounceAddress>().ok())
            .map(|a| a.public_key);
        if known_key.is_some_and(|k| k != address.public_key) {
            tracing::warn!("{from} announced another key under the known name {name}; ignored");
            return AnnounceReply::Ok;
        }
        if !introduces_itself && self.peers.get(&name).is_some() {
            return AnnounceReply::Ok;
        }
        let disconnected = known.as_ref().is_some_and(|k| k.disconnected);
        let record = KnownPeer {
            announce_address: address.to_string(),
            disconnected,
        };
        if known.as_ref() != Some(&record) {
            if let Err(e) = self.store.put_known_peer(&name, &record) {
                tracing::warn!("cannot remember peer {name}: {e}");
            }
        }
        if introduces_itself {
            // Now others can learn how to reach it.
            let node = self.clone();
            tokio::spawn(async move { node.gossip(&name).await });
        } else if !disconnected {
            tracing::info!("{from} told us about {name}; connecting");
            let node = self.clone();
            tokio::spawn(async move {
                if let Err(e) = node.dial(&address).await {
                    tracing::info!("gossiped peer {}: {e}", address.name());
                }
            });
        }
        AnnounceReply::Ok
    }

    /// Redials known peers that are not connected, each with its own exponential backoff.
    async fn reconnect_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(RECONNECT_TICK);
        loop {
            tick.tick().await;
            let now = Instant::now();
            for (name, known) in self.store.known_peers().unwrap_or_default() {
                if known.disconnected
                    || self.peers.get(&name).is_some()
                    || lock(&self.dialling).contains(&name)
                {
                    continue;
                }
                if !lock(&self.backoff)
                    .entry(name.clone())
                    .or_insert_with(|| Backoff::new(now))
                    .due(now)
                {
                    continue;
                }
                let Ok(address) = known.announce_address.parse::<AnnounceAddress>() else {
                    continue;
                };
                let node = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = node.dial(&address).await {
                        tracing::debug!("reconnect to {name} failed: {e}");
                        lock(&node.backoff)
                            .entry(name)
                            .or_insert_with(|| Backoff::new(now))
                            .failed(Instant::now());
                    }
                });
            }
        }
    }

    /// Ends when the mDNS daemon stops (`close`).
    async fn lan_discovery_loop(self: Arc<Self>, browse: mdns::Browse) {
        while let Some(found) = browse.next().await {
            self.on_lan_peer(found);
        }
    }

    /// A node advertised on the LAN: remembered and dialled under the same rules as a
    /// gossiped address (PROTOCOL.md §8.7); the handshake then proves it holds the key.
    fn on_lan_peer(self: &Arc<Self>, found: mdns::Candidate) {
        let address = found.announce_address();
        let name = address.name();
        let known = self.store.known_peer(&name).ok().flatten();
        let now = Instant::now();
        let state = mdns::PeerState {
            recorded_key: known
                .as_ref()
                .and_then(|k| k.announce_address.parse::<AnnounceAddress>().ok())
                .map(|a| a.public_key),
            disconnected_by_user: known.as_ref().is_some_and(|k| k.disconnected),
            connected: self.peers.get(&name).is_some(),
            dial_due: lock(&self.backoff).get(&name).is_none_or(|b| b.due(now)),
        };
        let dial_now = match mdns::verdict(&found.public_key, &self.identity.public_key, &state) {
            mdns::Verdict::Skip(why) => {
                tracing::debug!("mDNS: {name} at {}: {why}", found.addr);
                return;
            }
            mdns::Verdict::Remember { dial_now } => dial_now,
        };
        let record = KnownPeer {
            announce_address: address.to_string(),
            disconnected: false,
        };
        if known.as_ref() != Some(&record) {
            if let Err(e) = self.store.put_known_peer(&name, &record) {
                tracing::warn!("cannot remember peer {name}: {e}");
            }
        }
        if dial_now {
            tracing::info!("found {name} on the LAN at {}; connecting", found.addr);
            let node = self.clone();
            tokio::spawn(async move {
                if let Err(e) = node.dial(&address).await {
                    tracing::info!("LAN peer {name}: {e}");
                    lock(&node.backoff)
                        .entry(name)
                        .or_insert_with(|| Backoff::new(now))
                        .failed(Instant::now());
                }
            });
        }
    }
}
