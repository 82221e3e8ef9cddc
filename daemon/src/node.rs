//! The running peer: owns the identity, store, shares, QUIC endpoint, peer table and
//! transfer engines, and implements the connection lifecycle (accept, dial, duplicate
//! resolution, gossip, reconnect with backoff) and the serving side of every request.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::announce::{AnnounceAddress, NatType};
use crate::config::Startup;
use crate::events::{self, Event, EventSender};
use crate::identity::{self, Identity, PublicKey};
use crate::net::mdns;
use crate::net::peers::{
    Backoff, ConnectionFacts, PeerConnection, PeerTable, Registered, CLOSE_BY_USER, CLOSE_DUPLICATE,
};
use crate::net::portmap::{self, Mapping, PortMapper};
use crate::net::punch::{approach, Approach};
use crate::net::quic::{peer_identity, QuicNode, TransportSettings};
use crate::net::relay::Relay;
use crate::net::rpc;
use crate::net::traversal::{NatStatus, Traversal};
use crate::net::turn::Credentials;
use crate::shares::Shares;
use crate::store::{KnownPeer, Store};
use crate::transfer::download::{DownloadLimits, Downloads};
use crate::transfer::rate::{AltSpeed, Limits, RateLimiter};
use crate::transfer::upload::{OpenRange, UploadLimits, Uploads};
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
const LIMITS_SETTING: &str = "rate_limits";
const ALT_SPEED_SETTING: &str = "alt_speed";
/// STUN is asked again this often while no server answers (offline start, outage).
const STUN_RETRY: Duration = Duration::from_secs(10);
/// How long to wait before asking an unreachable TURN server again.
const RELAY_RETRY: Duration = Duration::from_secs(15);
/// After our spray reached a symmetric peer, how long it has to dial us back.
const INBOUND_AFTER_PUNCH: Duration = Duration::from_secs(5);
/// The UDP address bound last time, or the one chosen through the API for the next start.
const LISTEN_SETTING: &str = "listen";
const DOWNLOAD_DIR_SETTING: &str = "download_dir";
const UPLOAD_SLOTS_SETTING: &str = "upload_slots";

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
    #[error("{} cannot be the download folder: {reason}", path.display())]
    BadDownloadDir { path: PathBuf, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    BadListen { addr: SocketAddr, reason: String },
    #[error("the listen address is set at start ({0}, from --listen, HDP_LISTEN or the config file): change it there")]
    ListenSetAtStart(SocketAddr),
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
    pub download_dir: Startup<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub mdns: bool,
    /// Ask the home router for a port mapping.
    pub upnp: bool,
    pub stun_servers: Vec<String>,
    pub stun_interval: Duration,
    pub keep_alive_interval: Duration,
    /// Per-connection flow-control window in bytes (bounded by the config layer).
    pub quic_window: u32,
    pub turn: Option<crate::config::TurnSettings>,
    pub rescan_interval: Duration,
    /// redb page cache in bytes (bounded by the config layer).
    pub db_cache: usize,
    pub download_limits: DownloadLimits,
    pub max_uploads: Startup<usize>,
    pub max_uploads_per_peer: Startup<usize>,
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

/// Something the user should fix, shown as a banner in the web UI (`problems` in `/api/info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Stable identifier: `storage_full` or `download_disk_full`.
    pub code: &'static str,
    pub message: String,
}

/// The disk problems from free-space readings: `storage_free` on the storage disk (the
/// database), `download_low` the download disk's reason to hold downloads, if any.
pub fn disk_problems(
    storage: &Path,
    storage_free: Option<u64>,
    download_low: Option<String>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Some(free) = storage_free.filter(|f| *f < STORAGE_LOW_BYTES) {
        problems.push(Problem {
            code: "storage_full",
            message: format!(
                "The storage disk is full or nearly full ({} MiB free in {}): progress, settings and logins may not be saved. Free some space there.",
                free / (1024 * 1024),
                storage.display()
            ),
        });
    }
    if let Some(low) = download_low {
        problems.push(Problem {
            code: "download_disk_full",
            message: format!(
                "The download disk is full: {low}. Downloads wait until there is room."
            ),
        });
    }
    problems
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
    /// Names of the settings given at start (flag, environment or config file): at the next
    /// start they win again over values stored through the API.
    pub set_at_start: Vec<&'static str>,
    listen_given: Option<SocketAddr>,
    quic: QuicNode,
    traversal: Arc<Traversal>,
    turn: Option<crate::config::TurnSettings>,
    /// The live TURN allocation, when a relay is configured and reachable.
    relay: Mutex<Option<Arc<Relay>>>,
    /// Changes when STUN learns a new public address or NAT type.
    announce: Mutex<AnnounceAddress>,
    /// mDNS advertising and browsing; `None` when off or unavailable.
    lan: Option<mdns::Discovery>,
    /// The router port mapping; `None` when off or pointless (loopback, IPv6).
    portmap: Option<Arc<PortMapper>>,
    backoff: Mutex<HashMap<String, Backoff>>,
    dialling: Mutex<HashSet<String>>,
    normal_limits: Mutex<Limits>,
    alt_speed: Mutex<AltSpeed>,
    /// `None` when background hashing is switched off.
    background_hash_rate: Option<crate::transfer::rate::Rate>,
    pub hashing: std::sync::atomic::AtomicBool,
    /// Files hashed (or found hashed) by background passes since start.
    pub hashed_files: portable_atomic::AtomicU64,
    shutdown: watch::Sender<bool>,
}

fn connection_kind(relayed: bool) -> &'static str {
    if relayed {
        "relayed"
    } else {
        "direct"
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Creates the directory if needed and returns its canonical path.
fn prepare_dir(dir: &Path) -> Result<PathBuf, NodeError> {
    let io = |source| NodeError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    dir.canonicalize().map_err(io)
}

fn set_at_start(config: &NodeConfig) -> Vec<&'static str> {
    let limits = &config.limits;
    [
        ("download_dir", config.download_dir.given.is_some()),
        ("max_uploads", config.max_uploads.given.is_some()),
        (
            "max_uploads_per_peer",
            config.max_uploads_per_peer.given.is_some(),
        ),
        ("listen", config.listen.is_some()),
        ("upload_limit", limits.upload.is_some()),
        ("download_limit", limits.download.is_some()),
        ("peer_upload_limit", limits.peer_upload.is_some()),
        ("peer_download_limit", limits.peer_download.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, given)| given.then_some(name))
    .collect()
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
        let store = Arc::new(Store::open(&storage, config.db_cache)?);
        let remembered: Option<SocketAddr> = store.setting("listen")?.and_then(|s| s.parse().ok());
        let default_ip = remembered.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |r| r.ip());
        let wanted = config.listen.unwrap_or(SocketAddr::new(default_ip, 0));
        // Port 0 means "any": prefer the port we had last time so announce addresses stay valid.
        let transport = TransportSettings {
            keep_alive: config.keep_alive_interval,
            window: config.quic_window,
        };
        let (quic, control) =
            match remembered.filter(|r| wanted.port() == 0 && r.ip() == wanted.ip()) {
                Some(previous) => QuicNode::bind(previous, &identity, transport)
                    .or_else(|_| QuicNode::bind(wanted, &identity, transport))?,
                None => QuicNode::bind(wanted, &identity, transport)?,
            };
        let bound = quic.local_addr().map_err(|source| NodeError::Io {
            path: "udp socket".into(),
            source,
        })?;
        store.set_setting("listen", &bound.to_string())?;
        let traversal = Traversal::start(
            quic.socket(),
            control,
            identity.public_key,
            config.stun_servers.clone(),
        );
        let announce = AnnounceAddress {
            public_key: identity.public_key,
            addr: advertised_address(bound),
            nat_type: NatType::Unknown,
            relay: None,
        };
        let shares = Arc::new(Shares::open(store.clone())?);
        let peers = Arc::new(PeerTable::default());
        let events = events::channel();
        let saved_dir = store.setting(DOWNLOAD_DIR_SETTING)?.map(PathBuf::from);
        let from_api = config.download_dir.given.is_none() && saved_dir.is_some();
        let download_dir = match prepare_dir(&config.download_dir.clone().over(saved_dir)) {
            Ok(dir) => dir,
            // A folder chosen in the UI may be gone (an unplugged disk): start anyway, so the
            // UI stays reachable to choose another.
            Err(e) if from_api => {
                let fallback = &config.download_dir.default;
                tracing::warn!(
                    "download folder set in the web UI: {e}; using {}",
                    fallback.display()
                );
                prepare_dir(fallback)?
            }
            Err(e) => return Err(e),
        };
        let set_at_start = set_at_start(&config);
        let saved_slots: Option<UploadLimits> = store
            .setting(UPLOAD_SLOTS_SETTING)?
            .and_then(|json| serde_json::from_str(&json).ok());
        let upload_limits = UploadLimits {
            total: config
                .max_uploads
                .clone()
                .over(saved_slots.map(|s| s.total)),
            per_peer: config
                .max_uploads_per_peer
                .clone()
                .over(saved_slots.map(|s| s.per_peer)),
        };
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
        let uploads = Arc::new(Uploads::new(upload_limits, rate.clone(), events.clone()));
        // Last before the node exists, so a failed start leaves no advertisement behind.
        let (lan, browse) = config
            .mdns
            .then(|| mdns::Discovery::start(&identity.public_key, bound))
            .flatten()
            .unzip();
        let portmap =
            (config.upnp && portmap::worth_trying(bound)).then(|| PortMapper::start(bound));
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
            set_at_start,
            listen_given: config.listen,
            quic,
            traversal,
            turn: config.turn.clone(),
            relay: Mutex::new(None),
            announce: Mutex::new(announce),
            lan,
            portmap,
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
            node.announce_address()
        );
        tokio::spawn(node.clone().accept_loop());
        tokio::spawn(
            node.traversal
                .clone()
                .stun_loop(config.stun_interval, STUN_RETRY.min(config.stun_interval)),
        );
        tokio::spawn(node.clone().nat_status_loop());
        if node.turn.is_some() {
            tokio::spawn(node.clone().relay_loop());
        }
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
        self.store.setting(LISTEN_SETTING)?;
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

    pub fn download_dir(&self) -> PathBuf {
        self.downloads.download_dir()
    }

    /// Disk problems right now (two `statvfs` calls).
    pub fn problems(&self) -> Vec<Problem> {
        disk_problems(
            &self.storage,
            crate::transfer::download::free_space(&self.storage),
            self.downloads.download_disk_low(),
        )
    }

    /// Switches the download folder at once (files whose fetch starts from now on go there)
    /// and keeps it for the next start. The folder is created if needed and must be writable.
    pub fn set_download_dir(&self, dir: &Path) -> Result<PathBuf, NodeError> {
        let bad = |reason: String| NodeError::BadDownloadDir {
            path: dir.to_path_buf(),
            reason,
        };
        if !dir.is_absolute() {
            return Err(bad("give an absolute path".into()));
        }
        let canonical = prepare_dir(dir).map_err(|e| bad(e.to_string()))?;
        let text = canonical
            .to_str()
            .ok_or_else(|| bad("the path is not UTF-8".into()))?;
        let probe = canonical.join(format!(
            ".harddrive-party-write-check-{}",
            std::process::id()
        ));
        std::fs::File::create(&probe).map_err(|e| bad(format!("not writable: {e}")))?;
        let _ = std::fs::remove_file(&probe);
        self.store.set_setting(DOWNLOAD_DIR_SETTING, text)?;
        self.downloads.set_download_dir(canonical.clone());
        tracing::info!("download folder is now {}", canonical.display());
        Ok(canonical)
    }

    pub fn upload_limits(&self) -> UploadLimits {
        self.uploads.limits()
    }

    /// Changes the upload slots at once and keeps them for the next start.
    pub fn set_upload_limits(
        &self,
        limits: UploadLimits,
    ) -> Result<UploadLimits, crate::store::StoreError> {
        let limits = self.uploads.set_limits(limits);
        let json = serde_json::to_string(&limits).unwrap_or_default();
        self.store.set_setting(UPLOAD_SLOTS_SETTING, &json)?;
        Ok(limits)
    }

    /// The address the next start will try first: the one bound now, unless another was
    /// chosen through `set_listen`.
    pub fn saved_listen(&self) -> Option<SocketAddr> {
        self.store
            .setting(LISTEN_SETTING)
            .ok()
            .flatten()
            .and_then(|s| s.parse().ok())
    }

    /// Keeps `addr` as the peer listen address for the next start. The QUIC socket is not
    /// rebound while running: open connections and the announce address in friends' hands
    /// stay valid until the restart. A `--listen` given at start wins, except that with port
    /// 0 it still takes the saved port on its IP.
    pub fn set_listen(&self, addr: SocketAddr) -> Result<(), NodeError> {
        self.check_listen(addr)?;
        self.store.set_setting(LISTEN_SETTING, &addr.to_string())?;
        Ok(())
    }

    /// Whether `set_listen(addr)` would be accepted.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), NodeError> {
        if let Some(given) = self.listen_given {
            if given.port() != 0 || given.ip() != addr.ip() {
                return Err(NodeError::ListenSetAtStart(given));
            }
        }
        let current = self.listen_address();
        if current != Some(addr) {
            // An address this machine cannot bind would stop the next start, so try it now
            // (on port 0 when the port is ours already).
            let probe = match current {
                Some(c) if c.port() == addr.port() => SocketAddr::new(addr.ip(), 0),
                _ => addr,
            };
            UdpSocket::bind(probe).map_err(|e| NodeError::BadListen {
                addr,
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }

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
        lock(&self.announce).to_string()
    }

    pub fn nat_status(&self) -> NatStatus {
        self.traversal.status()
    }

    pub fn port_mapping(&self) -> Option<Mapping> {
        self.portmap.as_ref().and_then(|p| p.mapping())
    }

    /// Puts what STUN learnt and the router's port mapping into our announce address and
    /// tells connected peers, so they (and whoever they gossip to) redial the right address
    /// after a change.
    async fn nat_status_loop(self: Arc<Self>) {
        let mut status = self.traversal.watch_status();
        // Without a mapper this never changes and the loop follows STUN alone.
        let idle = watch::channel(None);
        let mut mapping = self
            .portmap
            .as_ref()
            .map_or_else(|| idle.1.clone(), |p| p.watch());
        // A mapping may have been granted before we subscribed.
        mapping.mark_changed();
        // Where we announce ourselves without a mapping: the last address STUN reported
        // (kept through an outage), before any the local one.
        let mut unmapped = lock(&self.announce).addr;
        loop {
            tokio::select! {
                changed = status.changed() => if changed.is_err() { return },
                changed = mapping.changed() => if changed.is_err() { return },
            }
            let nat = status.borrow_and_update().clone();
            let mapped = mapping.borrow_and_update().clone();
            if let Some(public) = nat.public_address {
                unmapped = public;
            }
            let (nat_type, addr) =
                portmap::advertise(nat.nat_type, nat.public_address, mapped.as_ref(), unmapped);
            self.update_announce(|announce| {
                announce.nat_type = nat_type;
                announce.addr = addr;
            })
            .await;
        }
    }

    async fn update_announce(&self, change: impl FnOnce(&mut AnnounceAddress)) {
        let text = {
            let mut announce = lock(&self.announce);
            change(&mut announce);
            announce.to_string()
        };
        for peer in self.peers.all() {
            let _ = rpc::announce(&peer.connection, text.clone()).await;
        }
    }

    /// Holds a TURN allocation for as long as the node runs: allocates (retrying while the
    /// server is unreachable), accepts relayed connections on it, announces the relayed
    /// address, and allocates anew if the server stops answering refreshes.
    async fn relay_loop(self: Arc<Self>) {
        let Some(turn) = self.turn.clone() else {
            return;
        };
        let credentials = Credentials {
            username: turn.username.clone(),
            password: turn.password.clone(),
        };
        loop {
            let allocated = Relay::allocate(&turn.server, credentials.clone(), |socket| {
                self.quic.relay_endpoint(socket)
            })
            .await;
            let relay = match allocated {
                Ok(relay) => relay,
                Err(e) => {
                    tracing::warn!("TURN relay {}: {e}; retrying", turn.server);
                    tokio::time::sleep(RELAY_RETRY).await;
                    continue;
                }
            };
            tracing::info!(
                "TURN relay {} gave us {}",
                turn.server,
                relay.allocation.relayed
            );
            *lock(&self.relay) = Some(relay.clone());
            let accept = tokio::spawn(self.clone().accept_relayed(relay.endpoint.clone()));
            let relayed = relay.allocation.relayed;
            self.update_announce(|a| a.relay = Some(relayed)).await;
            let lost = relay.clone().maintain().await;
            tracing::warn!("TURN relay {} lost: {lost}; allocating again", turn.server);
            accept.abort();
            lock(&self.relay).take();
            self.update_announce(|a| a.relay = None).await;
            tokio::time::sleep(RELAY_RETRY).await;
        }
    }

    async fn accept_relayed(self: Arc<Self>, endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            let node = self.clone();
            tokio::spawn(async move {
                match incoming.await {
                    Ok(conn) => node.on_connection(conn, false, true),
                    Err(e) => tracing::debug!("relayed handshake failed: {e}"),
                }
            });
        }
    }

    fn current_relay(&self) -> Option<Arc<Relay>> {
        lock(&self.relay).clone()
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
        if let Some(relay) = self.current_relay() {
            relay.endpoint.close(CLOSE_BY_USER.into(), b"shutting down");
            // Frees the relayed port on the server now instead of at lifetime expiry.
            let _ = tokio::time::timeout(Duration::from_secs(2), relay.release()).await;
        }
        if let Some(portmap) = &self.portmap {
            // Closes the forwarded port now rather than when its lease runs out.
            let _ = tokio::time::timeout(Duration::from_secs(4), portmap.close()).await;
        }
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
                    Ok(conn) => node.on_connection(conn, false, false),
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
        // The peer may reach us first (it dials us after its own punch): that also ends
        // this attempt successfully.
        let result = tokio::select! {
            result = self.open_path(address) => result,
            () = self.until_connected(&name) => Ok(None),
        };
        lock(&self.dialling).remove(&name);
        let Some((conn, relayed)) = result.map_err(|e| {
            let reason = e.to_string();
            if reason.contains("ApplicationVerificationFailure") {
                NodeError::WrongKey(name.clone())
            } else {
                NodeError::Unreachable {
                    name: name.clone(),
                    reason,
                }
            }
        })?
        else {
            // The peer dials us over the path the punch opened.
            return Ok(());
        };
        self.on_connection(conn, true, relayed);
        Ok(())
    }

    /// Gets a QUIC connection to `address` by the approach both NAT types call for
    /// (PROTOCOL.md, "NAT traversal"). `None`: the peer will dial us.
    async fn open_path(
        self: &Arc<Self>,
        address: &AnnounceAddress,
    ) -> Result<Option<(quinn::Connection, bool)>, NodeError> {
        // As announced: a router port mapping makes us reachable like a public address.
        let ours = lock(&self.announce).nat_type;
        let approach = approach(ours, address.nat_type);
        tracing::debug!(
            "reaching {} at {} ({:?} NAT, ours {:?}): {approach:?}",
            address.name(),
            address.addr,
            address.nat_type,
            ours
        );
        if !matches!(approach, Approach::Direct) {
            self.ask_for_introductions(address);
        }
        let direct = self.direct_path(approach, address).await;
        let can_relay = address.relay.is_some() || self.current_relay().is_some();
        match direct {
            Ok(path) => Ok(path.map(|conn| (conn, false))),
            Err(e) if can_relay && approach != Approach::Direct => {
                if approach != Approach::Relay {
                    tracing::info!("{}: {e}; trying the relay", address.name());
                }
                self.relayed_path(address).await
            }
            Err(e) => Err(e),
        }
    }

    async fn direct_path(
        self: &Arc<Self>,
        approach: Approach,
        address: &AnnounceAddress,
    ) -> Result<Option<quinn::Connection>, NodeError> {
        let key = address.public_key;
        let unreachable = |reason: &str| NodeError::Unreachable {
            name: address.name(),
            reason: reason.to_string(),
        };
        match approach {
            Approach::Direct => Ok(Some(self.quic.connect(address.addr, key).await?)),
            Approach::Relay => Err(unreachable(
                "both sides are behind symmetric NATs and neither has a relay",
            )),
            Approach::Punch => {
                let heard_at = self
                    .traversal
                    .punch(key, address.addr)
                    .await
                    .ok_or_else(|| unreachable("hole punching timed out"))?;
                Ok(Some(self.quic.connect(heard_at, key).await?))
            }
            Approach::SprayPorts => {
                self.traversal
                    .spray(key, address.addr.ip())
                    .await
                    .ok_or_else(|| unreachable("port spray found no opening"))?;
                self.await_inbound(&address.name()).await;
                Ok(None)
            }
            Approach::BirthdaySockets => {
                let (socket, heard_at) = self
                    .traversal
                    .birthday(key, address.addr)
                    .await
                    .ok_or_else(|| unreachable("birthday punching found no opening"))?;
                Ok(Some(self.quic.connect_from(socket, heard_at, key).await?))
            }
        }
    }

    /// Through TURN: our allocation admits the peer's IP, and we dial the peer's relayed
    /// address if it has one (else it dials ours). QUIC runs end to end inside.
    async fn relayed_path(
        self: &Arc<Self>,
        address: &AnnounceAddress,
    ) -> Result<Option<(quinn::Connection, bool)>, NodeError> {
        if let Some(relay) = self.current_relay() {
            if let Err(e) = relay.permit(address.addr.ip()).await {
                tracing::info!("TURN permission for {}: {e}", address.name());
            }
        }
        match address.relay {
            Some(relayed) => Ok(Some((
                self.quic.connect(relayed, address.public_key).await?,
                true,
            ))),
            None => {
                self.await_inbound(&address.name()).await;
                Ok(None)
            }
        }
    }

    /// After a spray succeeded the peer dials from the socket we reached; wait for it so the
    /// caller's "connected" means connected.
    async fn await_inbound(&self, name: &str) {
        let _ = tokio::time::timeout(INBOUND_AFTER_PUNCH, self.until_connected(name)).await;
    }

    async fn until_connected(&self, name: &str) {
        while self.peers.get(name).is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
                    connection: live.as_ref().map(|c| connection_kind(c.relayed)),
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
                    connection: Some(connection_kind(live.relayed)),
                    remote_address: Some(live.remote_address().to_string()),
                    announce_address: None,
                    disconnected_by_user: false,
                });
            }
        }
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    fn on_connection(self: &Arc<Self>, conn: quinn::Connection, outbound: bool, relayed: bool) {
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
            relayed,
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
                let range = match invalid {
                    Some(e) => Err(e),
                    None => self
                        .shares
                        .resolve(&path)
                        .and_then(|file| OpenRange::open(&file, start, end)),
                };
                self.uploads.serve(&peer, &path, range, &mut send).await;
            }
            Request::ReadPieces { root, first, end } => {
                let offered = self.downloads.partial(&root);
                let label = offered.as_ref().map_or("", |o| &*o.label).to_string();
                let range = match (invalid, offered) {
                    (Some(e), _) => Err(e),
                    (None, None) => Err(WireError::NotFound),
                    (None, Some(o)) => o.swarm.open_pieces(first..end),
                };
                self.uploads.serve(&peer, &label, range, &mut send).await;
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
                // A complete shared copy beats a partial one still being downloaded.
                let reply = match (found, self.downloads.partial(&root)) {
                    (Some((path, record)), _) => HaveReply::Found {
                        path,
                        size: record.size,
                    },
                    (None, Some(o)) => HaveReply::partial(o.swarm.size, &o.swarm.have()),
                    (None, None) => HaveReply::NotFound,
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
            Request::Introduce {
                target,
                announce_address,
            } => {
                let reply = match invalid {
                    Some(e) => AnnounceReply::Error(e),
                    None => {
                        self.on_introduce(&peer, &peer_key, &target, announce_address)
                            .await
                    }
                };
                let _ = write_frame(&mut send, &reply, MAX_RESPONSE_FRAME).await;
                let _ = send.finish();
            }
        }
    }

    /// Handles `Introduce`: passes the requester's own address on to `target`, so both
    /// start punching at once. Only a peer's own address is passed on, so nobody can use
    /// us to point our peers at a third party.
    async fn on_introduce(
        &self,
        from: &str,
        from_key: &PublicKey,
        target: &str,
        text: String,
    ) -> AnnounceReply {
        let own = text
            .parse::<AnnounceAddress>()
            .is_ok_and(|a| a.public_key == *from_key);
        if !own {
            return AnnounceReply::Error(WireError::BadRequest(
                "an introduction must carry the requester's own announce address".into(),
            ));
        }
        let Some(target_conn) = self.peers.get(target).filter(|_| target != from) else {
            return AnnounceReply::Error(WireError::NotFound);
        };
        tracing::debug!("introducing {from} to {target} at {from}'s request");
        match rpc::announce(&target_conn.connection, text).await {
            Ok(()) => AnnounceReply::Ok,
            Err(e) => AnnounceReply::Error(WireError::BadRequest(format!(
                "{target} did not take the introduction: {e}"
            ))),
        }
    }

    /// Before punching towards `address`, asks every other connected peer to introduce us
    /// to it: whichever is connected to it makes it punch back at the same moment.
    fn ask_for_introductions(&self, address: &AnnounceAddress) {
        let target = address.name();
        let ours = self.announce_address();
        for peer in self.peers.all().into_iter().filter(|p| p.name != target) {
            let (target, ours) = (target.clone(), ours.clone());
            tokio::spawn(async move {
                match rpc::introduce(&peer.connection, target.clone(), ours).await {
                    Ok(()) => tracing::debug!("{} introduced us to {target}", peer.name),
                    Err(e) => tracing::trace!("{} cannot introduce us to {target}: {e}", peer.name),
                }
            });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_problems_name_the_full_disks() {
        let storage = Path::new("/var/lib/hdp");
        assert!(disk_problems(storage, Some(STORAGE_LOW_BYTES), None).is_empty());
        assert!(
            disk_problems(storage, None, None).is_empty(),
            "unknown is not full"
        );
        let full = disk_problems(storage, Some(3 * 1024 * 1024), None);
        assert_eq!(full.len(), 1);
        assert_eq!(full[0].code, "storage_full");
        assert!(
            full[0].message.contains("3 MiB free in /var/lib/hdp"),
            "{}",
            full[0].message
        );
        let both = disk_problems(
            storage,
            Some(0),
            Some("1 MiB free, below the 256 MiB reserve".into()),
        );
        let codes: Vec<_> = both.iter().map(|p| p.code).collect();
        assert_eq!(codes, ["storage_full", "download_disk_full"]);
        assert!(both[1].message.contains("below the 256 MiB reserve"));
    }
}
