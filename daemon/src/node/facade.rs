//! What the HTTP API and the service may ask of the node: views, the settings it owns,
//! and the components it hands out by reference. Nothing outside `node/` touches a field.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use super::library::HashingProgress;
use super::{prepare_dir, Health, Library, Node, NodeError, Problem, SpeedLimits};
use crate::announce::NatType;
use crate::events::Event;
use crate::net::portmap::Mapping;
use crate::net::traversal::NatStatus;
use crate::store::{Store, StoreError};
use crate::transfer::download::{free_space, Downloads};
use crate::transfer::upload::UploadLimits;
use crate::transfer::{TransferState, TransferView};
use harddrive_party_core::peer_policy::{trust_label, Trust, Via};

#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    pub name: String,
    pub nickname: Option<String>,
    /// `friend`, `pending`, `suggested` or `blocked` (`peer_policy::trust_label`).
    pub trust: &'static str,
    /// For a suggestion: the friend that passed its address on.
    pub introduced_by: Option<String>,
    /// For a suggestion: found on the local network.
    pub lan: bool,
    pub connected: bool,
    pub connection: Option<&'static str>,
    pub remote_address: Option<String>,
    pub announce_address: Option<String>,
    pub disconnected_by_user: bool,
    /// Joined with a share-limited invite: sees only the shares that name it.
    pub guest: bool,
}

/// `/api/info`.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    pub name: String,
    pub announce_address: String,
    pub public_key: String,
    pub listen_address: Option<String>,
    pub nat_type: NatType,
    pub public_address: Option<String>,
    pub online: bool,
    pub port_mapping: Option<Mapping>,
    pub version: &'static str,
    pub download_dir: PathBuf,
    pub storage: PathBuf,
    pub peers_connected: usize,
    pub problems: Vec<Problem>,
    pub hashing: HashingProgress,
}

fn connection_kind(relayed: bool) -> &'static str {
    if relayed {
        "relayed"
    } else {
        "direct"
    }
}

impl Node {
    pub fn name(&self) -> &str {
        &self.identity.name
    }

    pub fn storage(&self) -> &Path {
        &self.storage
    }

    /// The database, for the API's sessions and password.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn library(&self) -> &Arc<Library> {
        &self.library
    }

    pub fn downloads(&self) -> &Arc<Downloads> {
        &self.downloads
    }

    pub fn speed(&self) -> &SpeedLimits {
        &self.speed
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Every download and upload, for `/api/transfers`.
    pub fn transfers(&self) -> Vec<TransferView> {
        let mut all = self.downloads.views();
        all.extend(self.uploads.views());
        all
    }

    /// Takes finished transfers off the list: done downloads (their files stay) and uploads
    /// no longer in progress. Returns how many of each.
    pub fn clear_finished_transfers(
        &self,
    ) -> Result<(usize, usize), crate::transfer::download::DownloadError> {
        Ok((
            self.downloads.clear_finished()?,
            self.uploads.clear_finished(),
        ))
    }

    /// Advertises the web UI on the LAN by mDNS (when discovery is on and the UI is not
    /// on loopback only).
    pub fn advertise_web_ui(&self, ui: std::net::SocketAddr) {
        if let Some(lan) = &self.lan {
            lan.advertise_web_ui(&self.identity.public_key, ui);
        }
    }

    pub fn announce_address(&self) -> String {
        self.reach.announce().to_string()
    }

    pub fn nat_status(&self) -> NatStatus {
        self.reach.nat_status()
    }

    pub fn port_mapping(&self) -> Option<Mapping> {
        self.reach.port_mapping()
    }

    pub fn listen_address(&self) -> Option<SocketAddr> {
        self.reach.listen_address()
    }

    pub fn info(&self) -> Info {
        let nat = self.nat_status();
        Info {
            name: self.identity.name.clone(),
            announce_address: self.announce_address(),
            public_key: self
                .identity
                .public_key
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            listen_address: self.listen_address().map(|a| a.to_string()),
            nat_type: nat.nat_type,
            public_address: nat.public_address.map(|a| a.to_string()),
            online: nat.online,
            port_mapping: self.port_mapping(),
            version: env!("CARGO_PKG_VERSION"),
            download_dir: self.download_dir(),
            storage: self.storage.clone(),
            peers_connected: self.peers.all().len(),
            problems: self.problems(),
            hashing: self.library.hashing(),
        }
    }

    /// Touches the database and the transfer tables. Called from the service's main loop: a
    /// wedged lock or database shows up as this call not returning, which stops the watchdog.
    pub fn health(&self) -> Result<Health, StoreError> {
        self.saved.listen()?;
        let active = |views: Vec<TransferView>| {
            views
                .iter()
                .filter(|v| v.state == TransferState::Active)
                .count()
        };
        Ok(Health {
            peers: self.peers.all().len(),
            downloading: active(self.downloads.views()),
            uploading: active(self.uploads.views()),
            storage_free: free_space(&self.storage),
            database_failed: self.store.failed(),
        })
    }

    /// Disk problems right now (two `statvfs` calls and an `access`).
    pub fn problems(&self) -> Vec<Problem> {
        super::disk_problems(
            &self.storage,
            free_space(&self.storage),
            self.downloads.download_disk_low(),
            self.downloads.download_dir_unwritable(),
        )
    }

    /// Every remembered peer, live connection and pending request, by name.
    pub fn peer_views(&self) -> Vec<PeerView> {
        let pending = self.pending_requests();
        let mut views: Vec<PeerView> = self
            .store
            .known_peers()
            .unwrap_or_default()
            .into_iter()
            .map(|(name, known)| {
                let live = self.peers.get(&name);
                let asked = pending.iter().find(|p| p.name == name);
                let (introduced_by, lan) = match &known.trust {
                    Trust::Suggested(Via::IntroducedBy(by)) => (Some(by.clone()), false),
                    Trust::Suggested(Via::Lan) => (None, true),
                    Trust::Friend | Trust::Stranger => (None, false),
                };
                PeerView {
                    trust: trust_label(Some(&known), asked.is_some()),
                    nickname: known.nickname.clone(),
                    introduced_by,
                    lan,
                    connected: live.is_some(),
                    connection: live.as_ref().map(|c| connection_kind(c.relayed)),
                    remote_address: live
                        .map(|c| c.remote_address().to_string())
                        .or_else(|| asked.map(|p| p.remote_address.clone())),
                    announce_address: (!known.announce_address.is_empty())
                        .then_some(known.announce_address),
                    disconnected_by_user: known.disconnected,
                    guest: known.guest,
                    name,
                }
            })
            .collect();
        for live in self.peers.all() {
            if !views.iter().any(|v| v.name == live.name) {
                views.push(PeerView {
                    name: live.name.clone(),
                    nickname: None,
                    trust: "friend",
                    introduced_by: None,
                    lan: false,
                    connected: true,
                    connection: Some(connection_kind(live.relayed)),
                    remote_address: Some(live.remote_address().to_string()),
                    announce_address: None,
                    disconnected_by_user: false,
                    guest: false,
                });
            }
        }
        for request in pending {
            if !views.iter().any(|v| v.name == request.name) {
                views.push(PeerView {
                    name: request.name,
                    nickname: None,
                    trust: trust_label(None, true),
                    introduced_by: None,
                    lan: false,
                    connected: false,
                    connection: None,
                    remote_address: Some(request.remote_address),
                    announce_address: request.announce_address,
                    disconnected_by_user: false,
                    guest: false,
                });
            }
        }
        views.sort_by(|a, b| a.name.cmp(&b.name));
        views
    }

    /// Names of the settings given at start, which win over the API's at the next start.
    pub fn set_at_start(&self) -> &[&'static str] {
        &self.set_at_start
    }

    pub fn download_dir(&self) -> PathBuf {
        self.downloads.download_dir()
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
        self.saved.set_download_dir(text)?;
        self.downloads.set_download_dir(canonical.clone());
        self.library.follow_download_dir(canonical.clone());
        tracing::info!("download folder is now {}", canonical.display());
        Ok(canonical)
    }

    pub fn upload_limits(&self) -> UploadLimits {
        self.uploads.limits()
    }

    /// Changes the upload slots at once and keeps them for the next start.
    pub fn set_upload_limits(&self, limits: UploadLimits) -> Result<UploadLimits, StoreError> {
        let limits = self.uploads.set_limits(limits);
        self.saved.set_upload_slots(&limits)?;
        Ok(limits)
    }

    /// The address the next start will try first: the one bound now, unless another was
    /// chosen through `set_listen`.
    pub fn saved_listen(&self) -> Option<SocketAddr> {
        self.saved.listen().ok().flatten()
    }

    /// Keeps `addr` as the peer listen address for the next start. The QUIC socket is not
    /// rebound while running: open connections and the announce address in friends' hands
    /// stay valid until the restart. A `--listen` given at start wins, except that with port
    /// 0 it still takes the saved port on its IP.
    pub fn set_listen(&self, addr: SocketAddr) -> Result<(), NodeError> {
        self.check_listen(addr)?;
        self.saved.set_listen(addr)?;
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
}
