//! The running peer: wires the components together at start and runs the loops that need
//! more than one of them. Each concern keeps its own state in its own file:
//!
//! * `settings`: the settings the API changes, stored for the next start;
//! * `speed`: the normal and alternative bandwidth limits and their clock;
//! * `library`: the shares, their index and the paced hashing pass;
//! * `reach`: our announce address, STUN's view, the port mapping and the TURN relay;
//! * `dialer`: getting a connection to a peer by the approach both NAT types call for;
//! * `admission`: taking a connection in (peer policy), its life and its end;
//! * `gossip`: announcements, introductions, LAN adverts and redials;
//! * `server`: answering a peer's requests;
//! * `trust`: strangers' requests, approve, block, forget, rename;
//! * `invites`: making and revoking invites, joining with one, answering a joiner;
//! * `access`: who sees each share, and the view of the shares a friend gets;
//! * `downloaded`: the local library of finished downloads, served and deleted by path;
//! * `facade`: what the HTTP API and the service may call.
//!
//! Every rule these apply (admission, key pinning, backoff, the dial plan) is in the pure
//! core (`harddrive_party_core::peer_policy`, `punch`); this module carries them out.

mod access;
mod admission;
mod dialer;
mod downloaded;
mod facade;
mod gossip;
mod invites;
mod library;
mod notify;
mod queue;
mod reach;
mod remote;
mod seeding;
mod server;
mod settings;
mod settings_change;
mod speed;
pub(crate) mod trust;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{registry as setting, Settings};
use crate::events::{self, EventSender};
use crate::identity::{self, Identity};
use crate::net::mdns;
use crate::net::peers::PeerTable;
use crate::net::quic::{QuicNode, TransportSettings};
use crate::shares::Shares;
use crate::store::Store;
use crate::transfer::download::{DownloadLimits, DownloadSettings, Downloads};
use crate::transfer::rate::RateLimiter;
use crate::transfer::upload::{UploadLimits, Uploads};
use crate::transfer::RetryPolicy;
use harddrive_party_core::peer_policy::{Backoffs, PendingRequests, TrustSettings};

pub use access::ShareView;
pub use admission::Connected;
pub use downloaded::{LibraryError, LibraryPage, LIBRARY_PAGE};
pub use facade::{Info, PeerView};
pub use harddrive_party_core::health::{disk_problems, Health, Problem, STORAGE_LOW_BYTES};
pub use invites::InviteView;
pub use library::{Library, ListingChunk};
pub use queue::QueueError;
pub use remote::{RemoteError, RemoteRead};
pub use settings_change::{SettingsChange, SettingsError, SettingsView};
pub use speed::SpeedLimits;

/// STUN is asked again this often while no server answers (offline start, outage).
const STUN_RETRY: Duration = Duration::from_secs(10);

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
    #[error("no peer or request called {0}")]
    UnknownPeer(String),
    #[error("{0} is blocked: unblock it first")]
    Blocked(String),
    #[error("{0} is not blocked")]
    NotBlocked(String),
    #[error("a nickname is 1 to {max} characters without control characters", max = trust::MAX_NICKNAME_CHARS)]
    BadNickname,
    #[error("{} cannot be the download folder: {reason}", path.display())]
    BadDownloadDir { path: PathBuf, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    BadListen { addr: SocketAddr, reason: String },
    #[error("the listen address is set at start ({0}, from --listen, HDP_LISTEN or the config file): change it there")]
    ListenSetAtStart(SocketAddr),
    #[error(transparent)]
    Access(#[from] harddrive_party_core::peer_policy::AccessError),
    #[error(transparent)]
    InviteRequest(#[from] harddrive_party_core::invite::InviteRequestError),
    #[error("{0}")]
    InviteCode(#[from] harddrive_party_core::invite::InviteCodeError),
    #[error("the invite was refused: {0}")]
    InviteRefused(harddrive_party_core::invite::InviteRefusal),
    #[error("no live invite with id {0}")]
    UnknownInvite(String),
    #[error(transparent)]
    NotifyUrl(#[from] harddrive_party_core::notify::NotifyUrlError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the long-running tasks need from the start-up settings.
struct TaskSettings {
    stun_interval: Duration,
    index: library::IndexStart,
}

/// Who is being dialled and each name's reconnect backoff, under one lock.
#[derive(Default)]
struct Dials {
    backoffs: Backoffs,
    in_flight: HashSet<String>,
}

pub struct Node {
    identity: Identity,
    storage: PathBuf,
    store: Arc<Store>,
    saved: settings::SavedSettings,
    /// Names of the settings given at start (flag, environment or config file): at the next
    /// start they win again over values stored through the API.
    set_at_start: Vec<&'static str>,
    listen_given: Option<SocketAddr>,
    /// The switches in force since start; a change through the API waits for a restart.
    running: Switches,
    library: Arc<Library>,
    peers: Arc<PeerTable>,
    downloads: Arc<Downloads>,
    uploads: Arc<Uploads>,
    events: EventSender,
    speed: Arc<SpeedLimits>,
    reach: reach::Reachability,
    /// mDNS advertising and browsing; `None` when off or unavailable.
    lan: Option<mdns::Discovery>,
    dials: Mutex<Dials>,
    /// Wakes the reconnect loop: a connection ended or a dial failed.
    redial_wake: tokio::sync::Notify,
    trust: TrustSettings,
    /// Strangers that knocked, for the user to approve or block (in memory: a stranger
    /// knocks again, and a restart should not keep what nobody approved).
    pending: Mutex<PendingRequests>,
    /// Bounds what strangers (and joiners) may make us spend.
    strangers: trust::StrangerGate,
    shutdown: watch::Sender<bool>,
    /// Where notifications go (`notify.rs`); empty: nowhere.
    notify_url: Mutex<String>,
}

/// Features started (or not) once, at start.
#[derive(Debug, Clone, Copy)]
struct Switches {
    mdns: bool,
    upnp: bool,
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

/// The API fields (`SettingsView::set_at_start`) whose setting was given at start.
fn set_at_start(config: &Settings) -> Vec<&'static str> {
    let limits = &config.limits;
    [
        (setting::DOWNLOAD_DIR, config.download_dir.given.is_some()),
        (setting::MAX_UPLOADS, config.max_uploads.given.is_some()),
        (
            setting::MAX_UPLOADS_PER_PEER,
            config.max_uploads_per_peer.given.is_some(),
        ),
        (setting::RETRY_LIMIT, config.retry_limit.given.is_some()),
        (setting::RETRY_BACKOFF, config.retry_backoff.given.is_some()),
        (setting::NOTIFY_URL, config.notify_url.given.is_some()),
        (setting::MAX_DOWNLOADS, config.max_downloads.given.is_some()),
        (
            setting::MAX_DOWNLOADS_PER_PEER,
            config.max_downloads_per_peer.given.is_some(),
        ),
        (
            setting::MIN_FREE_SPACE,
            config.min_free_space.given.is_some(),
        ),
        (
            setting::RESCAN_INTERVAL,
            config.rescan_interval.given.is_some(),
        ),
        (
            setting::BACKGROUND_HASH_RATE,
            config.background_hash_rate.given.is_some(),
        ),
        (setting::MDNS, config.mdns.given.is_some()),
        (setting::UPNP, config.upnp.given.is_some()),
        (setting::LISTEN, config.listen.is_some()),
        (
            setting::SEED_DOWNLOADS,
            config.seed_downloads.given.is_some(),
        ),
        (setting::UPLOAD_LIMIT, limits.upload.is_some()),
        (setting::DOWNLOAD_LIMIT, limits.download.is_some()),
        (setting::PEER_UPLOAD_LIMIT, limits.peer_upload.is_some()),
        (setting::PEER_DOWNLOAD_LIMIT, limits.peer_download.is_some()),
    ]
    .into_iter()
    .filter_map(|(s, given)| given.then_some(s.api).flatten())
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

type ControlReceiver = tokio::sync::mpsc::Receiver<crate::net::socket::ControlDatagram>;

/// Binds the peer socket, preferring the port we had last time so announce addresses
/// stay valid when the wanted port is "any".
fn bind_peer_socket(
    config: &Settings,
    saved: &settings::SavedSettings,
    identity: &Identity,
) -> Result<(QuicNode, ControlReceiver, SocketAddr), NodeError> {
    let remembered = saved.listen()?;
    let default_ip = remembered.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |r| r.ip());
    let wanted = config.listen.unwrap_or(SocketAddr::new(default_ip, 0));
    let transport = TransportSettings {
        keep_alive: config.keep_alive_interval,
        window: config.quic_window,
        cipher: config.cipher,
        congestion: config.congestion,
    };
    let (quic, control) = match remembered.filter(|r| wanted.port() == 0 && r.ip() == wanted.ip()) {
        Some(previous) => QuicNode::bind(previous, identity, transport)
            .or_else(|_| QuicNode::bind(wanted, identity, transport))?,
        None => QuicNode::bind(wanted, identity, transport)?,
    };
    let bound = quic.local_addr().map_err(|source| NodeError::Io {
        path: "udp socket".into(),
        source,
    })?;
    saved.set_listen(bound)?;
    Ok((quic, control, bound))
}

/// The download folder: the start-up value over the stored one over the default. A folder
/// chosen in the UI may be gone (an unplugged disk): start anyway on the default, so the UI
/// stays reachable to choose another.
fn download_dir(config: &Settings, saved: &settings::SavedSettings) -> Result<PathBuf, NodeError> {
    let saved_dir = saved.download_dir()?;
    let from_api = config.download_dir.given.is_none() && saved_dir.is_some();
    match prepare_dir(&config.download_dir.clone().over(saved_dir)) {
        Ok(dir) => Ok(dir),
        Err(e) if from_api => {
            let fallback = &config.download_dir.default;
            tracing::warn!(
                "download folder set in the web UI: {e}; using {}",
                fallback.display()
            );
            prepare_dir(fallback)
        }
        Err(e) => Err(e),
    }
}

fn upload_limits(
    config: &Settings,
    saved: &settings::SavedSettings,
) -> Result<UploadLimits, NodeError> {
    let saved_slots = saved.upload_slots()?;
    Ok(UploadLimits {
        total: config
            .max_uploads
            .clone()
            .over(saved_slots.map(|s| s.total)),
        per_peer: config
            .max_uploads_per_peer
            .clone()
            .over(saved_slots.map(|s| s.per_peer)),
    })
}

struct TransferEngines {
    speed: Arc<SpeedLimits>,
    downloads: Arc<Downloads>,
    uploads: Arc<Uploads>,
}

/// The bandwidth limits and the download and upload engines, from the start-up values
/// over the stored ones.
fn transfer_engines(
    config: &Settings,
    saved: &settings::SavedSettings,
    store: &Arc<Store>,
    peers: &Arc<PeerTable>,
    events: &EventSender,
    shares: &Arc<Shares>,
) -> Result<TransferEngines, NodeError> {
    let download_dir = download_dir(config, saved)?;
    let upload_limits = upload_limits(config, saved)?;
    let normal_limits = config.limits.over(saved.rate_limits()?.unwrap_or_default());
    let rate = Arc::new(RateLimiter::new(normal_limits));
    let speed = Arc::new(SpeedLimits::new(
        normal_limits,
        saved.alt_speed()?.unwrap_or_default(),
        rate.clone(),
        saved.clone(),
    ));
    let downloads = Downloads::load(
        store.clone(),
        peers.clone(),
        events.clone(),
        DownloadSettings {
            folder: download_dir,
            limits: DownloadLimits {
                total: config
                    .max_downloads
                    .clone()
                    .over(saved.count(setting::MAX_DOWNLOADS.key)?),
                per_peer: config
                    .max_downloads_per_peer
                    .clone()
                    .over(saved.count(setting::MAX_DOWNLOADS_PER_PEER.key)?),
                min_free_space: config
                    .min_free_space
                    .clone()
                    .over(saved.number(setting::MIN_FREE_SPACE.key)?),
            },
            retry: RetryPolicy {
                limit: config
                    .retry_limit
                    .clone()
                    .over(saved.number(setting::RETRY_LIMIT.key)?),
                backoff: config
                    .retry_backoff
                    .clone()
                    .over(saved.number(setting::RETRY_BACKOFF.key)?),
            },
        },
        rate.clone(),
        shares.clone(),
    )?;
    let uploads = Arc::new(Uploads::new(upload_limits, rate, events.clone()));
    Ok(TransferEngines {
        speed,
        downloads,
        uploads,
    })
}

/// The start-up values over the stored ones: what runs from this start (mDNS, port
/// mapping), and how the library is rescanned and hashed.
fn switches_and_pacing(
    config: &Settings,
    saved: &settings::SavedSettings,
) -> Result<(Switches, library::Pacing), NodeError> {
    let running = Switches {
        mdns: config.mdns.clone().over(saved.flag(setting::MDNS.key)?),
        upnp: config.upnp.clone().over(saved.flag(setting::UPNP.key)?),
    };
    let pacing = library::Pacing {
        background_hashing: config.background_hashing,
        hash_rate: config
            .background_hash_rate
            .clone()
            .over(saved.number(setting::BACKGROUND_HASH_RATE.key)?),
        rescan_interval: Duration::from_secs(
            config
                .rescan_interval
                .clone()
                .over(saved.number(setting::RESCAN_INTERVAL.key)?),
        ),
    };
    Ok((running, pacing))
}

impl Node {
    /// Start-up order: storage dir → identity → database → UDP socket → shares → download
    /// dir and upload slots → rate limits → downloads → uploads → LAN and port mapping →
    /// tasks. Start-up values beat stored ones, which beat defaults.
    pub async fn start(config: Settings) -> Result<Arc<Self>, NodeError> {
        let storage = prepare_dir(&config.storage).map(|_| config.storage.clone())?;
        let identity = Identity::load_or_create(&storage)?;
        let store = Arc::new(Store::open(&storage, config.db_cache)?);
        let saved = settings::SavedSettings::new(store.clone());
        let (quic, control, bound) = bind_peer_socket(&config, &saved, &identity)?;
        let set_at_start = set_at_start(&config);
        let notify_url = config
            .notify_url
            .clone()
            .over(saved.text(setting::NOTIFY_URL.key)?);
        harddrive_party_core::notify::check_url(&notify_url, notify::HTTPS_BUILT_IN)?;
        let shares = Arc::new(Shares::open(store.clone())?);
        let peers = Arc::new(PeerTable::default());
        let events = events::channel();
        let TransferEngines {
            speed,
            downloads,
            uploads,
        } = transfer_engines(&config, &saved, &store, &peers, &events, &shares)?;
        let (running, pacing) = switches_and_pacing(&config, &saved)?;
        // Last before the node exists, so a failed start leaves no advertisement behind.
        let (lan, browse) = running
            .mdns
            .then(|| mdns::Discovery::start(&identity.public_key, bound))
            .flatten()
            .unzip();
        let reach =
            reach::Reachability::start(quic, control, &identity, &config, running.upnp, bound);
        let shutdown = watch::channel(false).0;
        let library = Arc::new(Library::new(
            shares,
            events.clone(),
            pacing,
            shutdown.subscribe(),
            saved.clone(),
        ));
        let node = Arc::new(Node {
            set_at_start,
            listen_given: config.listen,
            running,
            identity,
            storage,
            store,
            saved,
            library,
            peers,
            downloads,
            uploads,
            events,
            speed,
            reach,
            lan,
            dials: Mutex::new(Dials::default()),
            redial_wake: tokio::sync::Notify::new(),
            trust: config.trust,
            pending: Mutex::new(PendingRequests::default()),
            strangers: trust::StrangerGate::default(),
            shutdown,
            notify_url: Mutex::new(notify_url),
        });
        tracing::info!(
            "peer {} listening on {bound}; announce address {}",
            node.identity.name,
            node.announce_address()
        );
        node.spawn_tasks(
            TaskSettings {
                stun_interval: config.stun_interval,
                index: library::IndexStart {
                    share_dirs: config.share_dirs,
                    download_dir: node.download_dir(),
                    seed_given: config.seed_downloads.given,
                },
            },
            browse,
        );
        Ok(node)
    }

    fn spawn_tasks(self: &Arc<Self>, config: TaskSettings, browse: Option<mdns::Browse>) {
        tokio::spawn(self.clone().accept_loop());
        tokio::spawn(
            self.reach
                .traversal
                .clone()
                .stun_loop(config.stun_interval, STUN_RETRY.min(config.stun_interval)),
        );
        tokio::spawn(self.clone().nat_status_loop());
        if self.reach.turn.is_some() {
            tokio::spawn(self.clone().relay_loop());
        }
        tokio::spawn(self.clone().reconnect_loop());
        if let Some(browse) = browse {
            tokio::spawn(self.clone().lan_discovery_loop(browse));
        }
        tokio::spawn(self.downloads.clone().run());
        tokio::spawn(self.clone().push_hashed_loop());
        tokio::spawn(self.clone().upload_progress_loop());
        tokio::spawn(self.speed.clone().schedule_loop());
        tokio::spawn(self.library.clone().index_loop(config.index));
        tokio::spawn(self.clone().notify_loop());
    }

    /// Progress of uploads every tick while any is sent; asleep otherwise (an idle router
    /// wakes for nothing).
    async fn upload_progress_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(crate::transfer::PROGRESS_INTERVAL);
        loop {
            if self.uploads.emit_progress() {
                tick.tick().await;
            } else {
                self.uploads.run_started().await;
                tick.reset();
            }
        }
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
        self.reach.close().await;
    }
}
