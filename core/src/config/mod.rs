//! Start-up settings from four layers: command-line flags, then `HDP_*` environment
//! variables (containers), then the TOML file given to `start --config` (packages), then
//! defaults. Pure: the layers are plain values, merged and checked without touching the system.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::rate::{Limits, Rate, RateValue};
use crate::transport::{ChoiceError, Cipher, Congestion};

pub mod registry;

use registry::Range;

/// A number setting's range from the registry, read at compile time (`Setting::bounds`).
macro_rules! bounds {
    ($setting:ident) => {
        const { registry::$setting.bounds() }
    };
}

pub const DEFAULT_UI_ADDRESS: &str = "http://127.0.0.1:3030";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

/// One layer of settings; every field optional so layers can be stacked. The file format is
/// exactly this struct: an unknown key is an error, never silently ignored.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    pub storage: Option<PathBuf>,
    pub ui_address: Option<String>,
    pub share_dirs: Option<Vec<PathBuf>>,
    pub download_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub mdns: Option<bool>,
    /// Ask the home router for a port mapping (UPnP-IGD, PCP, NAT-PMP).
    pub upnp: Option<bool>,
    /// Query STUN servers at all (off: LAN-only, no traffic to the internet).
    pub stun: Option<bool>,
    pub stun_servers: Option<Vec<String>>,
    /// Seconds between STUN rounds while servers answer (a changed public address is
    /// noticed within this time).
    pub stun_interval: Option<u64>,
    /// Seconds between QUIC keep-alives; below the NAT's UDP timeout (30 s on Linux) so
    /// idle connections keep their mapping.
    pub keep_alive_interval: Option<u64>,
    /// TURN relay HOST:PORT, used when no direct path is possible.
    pub turn_server: Option<String>,
    pub turn_username: Option<String>,
    pub turn_password: Option<String>,
    pub threads: Option<usize>,
    pub max_downloads: Option<usize>,
    pub max_downloads_per_peer: Option<usize>,
    pub max_uploads: Option<usize>,
    pub max_uploads_per_peer: Option<usize>,
    pub retry_limit: Option<u64>,
    pub notify_url: Option<String>,
    /// Seconds before the first retry of a failed file.
    pub retry_backoff: Option<u64>,
    /// Seconds between automatic rescans of the shares.
    pub rescan_interval: Option<u64>,
    /// Bandwidth caps in bytes per second ("5MB", "800KB", or a number); 0 = none.
    #[serde(default, deserialize_with = "rate_setting")]
    pub upload_limit: Option<Rate>,
    #[serde(default, deserialize_with = "rate_setting")]
    pub download_limit: Option<Rate>,
    #[serde(default, deserialize_with = "rate_setting")]
    pub peer_upload_limit: Option<Rate>,
    #[serde(default, deserialize_with = "rate_setting")]
    pub peer_download_limit: Option<Rate>,
    /// Hash shared files in a low-priority background pass, so other peers can find them
    /// by content and swarm downloads can use them.
    pub background_hashing: Option<bool>,
    #[serde(default, deserialize_with = "rate_setting")]
    pub background_hash_rate: Option<Rate>,
    /// Offer finished downloads to friends: the download folder is shared.
    pub seed_downloads: Option<bool>,
    /// Free space to keep on the download disk ("512MB", or bytes); downloads pause below it.
    #[serde(default, deserialize_with = "rate_setting")]
    pub min_free_space: Option<u64>,
    /// Page cache of the index database ("16MB", or bytes); bounded to 1 MiB – 1 GiB.
    #[serde(default, deserialize_with = "rate_setting")]
    pub db_cache: Option<u64>,
    /// Bytes in flight per peer connection ("16MB", or bytes); bounded to 256 KiB – 256 MiB.
    #[serde(default, deserialize_with = "rate_setting")]
    pub quic_window: Option<u64>,
    /// "auto", "aes" or "chacha" (`transport::suite_plan`).
    #[serde(default, deserialize_with = "choice_setting")]
    pub cipher: Option<Cipher>,
    /// "auto", "cubic" or "bbr" (`transport::use_bbr`).
    #[serde(default, deserialize_with = "choice_setting")]
    pub congestion: Option<Congestion>,
    /// Host names the web UI may be reached by, beyond IP addresses, `localhost` and this
    /// machine's hostname (the DNS-rebinding check).
    pub allowed_hosts: Option<Vec<String>>,
    /// A friend's introduction of a third party makes a friend, not a suggestion.
    pub trust_introduced: Option<bool>,
    /// A peer found on the LAN (mDNS) is a friend, not a suggestion.
    pub lan_trust: Option<bool>,
}

/// Accepts `"5MB"`-style strings or plain numbers of bytes per second.
fn rate_setting<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Rate>, D::Error> {
    RateValue::deserialize(d)?
        .bytes()
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A word the type's `FromStr` knows, so the file and the command line accept the same.
fn choice_setting<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr<Err = ChoiceError>,
{
    let word = String::deserialize(d)?;
    word.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Settings with every layer applied and defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub storage: PathBuf,
    pub ui_address: String,
    pub share_dirs: Vec<PathBuf>,
    pub download_dir: Startup<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub mdns: Startup<bool>,
    pub upnp: Startup<bool>,
    /// Empty when STUN is off.
    pub stun_servers: Vec<String>,
    pub stun_interval: Duration,
    pub keep_alive_interval: Duration,
    pub turn: Option<TurnSettings>,
    pub threads: usize,
    pub max_downloads: Startup<usize>,
    pub max_downloads_per_peer: Startup<usize>,
    pub max_uploads: Startup<usize>,
    pub max_uploads_per_peer: Startup<usize>,
    pub retry_limit: Startup<u64>,
    /// Empty: notifications off.
    pub notify_url: Startup<String>,
    /// Seconds.
    pub retry_backoff: Startup<u64>,
    /// Seconds.
    pub rescan_interval: Startup<u64>,
    /// Limits given at start; each one left unset keeps the value last set through the API.
    pub limits: LimitOverrides,
    pub background_hashing: bool,
    pub background_hash_rate: Startup<Rate>,
    pub seed_downloads: Startup<bool>,
    pub min_free_space: Startup<u64>,
    pub db_cache: usize,
    pub quic_window: u32,
    pub cipher: Cipher,
    pub congestion: Congestion,
    pub allowed_hosts: Vec<String>,
    /// Both off by default: only the user makes friends.
    pub trust: crate::peer_policy::TrustSettings,
}

/// A setting the API can also change and store: a value given at start (flag, environment or
/// config file) wins over the stored one, which wins over the default.
#[derive(Debug, Clone, PartialEq)]
pub struct Startup<T> {
    pub given: Option<T>,
    pub default: T,
}

impl<T> Startup<T> {
    pub fn over(self, saved: Option<T>) -> T {
        self.given.or(saved).unwrap_or(self.default)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnSettings {
    pub server: String,
    pub username: String,
    pub password: String,
}

/// Public STUN servers used when none are configured; two operators, so classification
/// compares answers from different IP addresses.
pub const DEFAULT_STUN_SERVERS: [&str; 3] = [
    "stun.l.google.com:19302",
    "stun1.l.google.com:19302",
    "stun.cloudflare.com:3478",
];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    pub upload: Option<Rate>,
    pub download: Option<Rate>,
    pub peer_upload: Option<Rate>,
    pub peer_download: Option<Rate>,
}

impl LimitOverrides {
    pub fn over(self, saved: Limits) -> Limits {
        Limits {
            upload: self.upload.unwrap_or(saved.upload),
            download: self.download.unwrap_or(saved.download),
            peer_upload: self.peer_upload.unwrap_or(saved.peer_upload),
            peer_download: self.peer_download.unwrap_or(saved.peer_download),
        }
    }
}

/// Where defaults come from: kept apart so tests do not depend on the environment.
pub struct Defaults {
    pub storage: PathBuf,
    /// Download dir when neither layer names one: `~/Downloads` if there is a home, else
    /// under the storage dir (a service user has no home).
    pub home_downloads: Option<PathBuf>,
}

impl Layer {
    /// Fills every field this layer leaves open from `lower`.
    pub fn over(self, lower: Layer) -> Layer {
        Layer {
            storage: self.storage.or(lower.storage),
            ui_address: self.ui_address.or(lower.ui_address),
            share_dirs: self.share_dirs.or(lower.share_dirs),
            download_dir: self.download_dir.or(lower.download_dir),
            listen: self.listen.or(lower.listen),
            mdns: self.mdns.or(lower.mdns),
            upnp: self.upnp.or(lower.upnp),
            stun: self.stun.or(lower.stun),
            stun_servers: self.stun_servers.or(lower.stun_servers),
            stun_interval: self.stun_interval.or(lower.stun_interval),
            keep_alive_interval: self.keep_alive_interval.or(lower.keep_alive_interval),
            turn_server: self.turn_server.or(lower.turn_server),
            turn_username: self.turn_username.or(lower.turn_username),
            turn_password: self.turn_password.or(lower.turn_password),
            threads: self.threads.or(lower.threads),
            max_downloads: self.max_downloads.or(lower.max_downloads),
            max_downloads_per_peer: self.max_downloads_per_peer.or(lower.max_downloads_per_peer),
            max_uploads: self.max_uploads.or(lower.max_uploads),
            max_uploads_per_peer: self.max_uploads_per_peer.or(lower.max_uploads_per_peer),
            retry_limit: self.retry_limit.or(lower.retry_limit),
            notify_url: self.notify_url.or(lower.notify_url),
            retry_backoff: self.retry_backoff.or(lower.retry_backoff),
            rescan_interval: self.rescan_interval.or(lower.rescan_interval),
            upload_limit: self.upload_limit.or(lower.upload_limit),
            download_limit: self.download_limit.or(lower.download_limit),
            peer_upload_limit: self.peer_upload_limit.or(lower.peer_upload_limit),
            peer_download_limit: self.peer_download_limit.or(lower.peer_download_limit),
            background_hashing: self.background_hashing.or(lower.background_hashing),
            background_hash_rate: self.background_hash_rate.or(lower.background_hash_rate),
            seed_downloads: self.seed_downloads.or(lower.seed_downloads),
            min_free_space: self.min_free_space.or(lower.min_free_space),
            db_cache: self.db_cache.or(lower.db_cache),
            quic_window: self.quic_window.or(lower.quic_window),
            cipher: self.cipher.or(lower.cipher),
            congestion: self.congestion.or(lower.congestion),
            allowed_hosts: self.allowed_hosts.or(lower.allowed_hosts),
            trust_introduced: self.trust_introduced.or(lower.trust_introduced),
            lan_trust: self.lan_trust.or(lower.lan_trust),
        }
    }

    pub fn settle(self, defaults: Defaults) -> Settings {
        let storage = self.storage.unwrap_or(defaults.storage);
        let download_dir = Startup {
            given: self.download_dir,
            default: defaults
                .home_downloads
                .unwrap_or_else(|| storage.join("downloads")),
        };
        Settings {
            ui_address: self
                .ui_address
                .unwrap_or_else(|| DEFAULT_UI_ADDRESS.to_string()),
            share_dirs: self.share_dirs.unwrap_or_default(),
            download_dir,
            listen: self.listen,
            mdns: switched_on(self.mdns),
            upnp: switched_on(self.upnp),
            stun_servers: match self.stun {
                Some(false) => Vec::new(),
                _ => self.stun_servers.unwrap_or_else(|| {
                    DEFAULT_STUN_SERVERS.iter().map(|s| s.to_string()).collect()
                }),
            },
            stun_interval: seconds(bounds!(STUN_INTERVAL), self.stun_interval),
            keep_alive_interval: seconds(bounds!(KEEP_ALIVE_INTERVAL), self.keep_alive_interval),
            turn: self.turn_server.map(|server| TurnSettings {
                server,
                username: self.turn_username.unwrap_or_default(),
                password: self.turn_password.unwrap_or_default(),
            }),
            // Small boards: two workers are plenty for I/O-bound work and keep memory low.
            threads: count(bounds!(THREADS), self.threads),
            max_downloads: startup_count(bounds!(MAX_DOWNLOADS), self.max_downloads),
            max_downloads_per_peer: startup_count(
                bounds!(MAX_DOWNLOADS_PER_PEER),
                self.max_downloads_per_peer,
            ),
            max_uploads: startup_count(bounds!(MAX_UPLOADS), self.max_uploads),
            max_uploads_per_peer: startup_count(
                bounds!(MAX_UPLOADS_PER_PEER),
                self.max_uploads_per_peer,
            ),
            retry_limit: startup(bounds!(RETRY_LIMIT), self.retry_limit),
            notify_url: Startup {
                given: self.notify_url,
                default: String::new(),
            },
            retry_backoff: startup(bounds!(RETRY_BACKOFF), self.retry_backoff),
            rescan_interval: startup(bounds!(RESCAN_INTERVAL), self.rescan_interval),
            background_hashing: self.background_hashing.unwrap_or(true),
            seed_downloads: switched_on(self.seed_downloads),
            min_free_space: startup(bounds!(MIN_FREE_SPACE), self.min_free_space),
            db_cache: bounds!(DB_CACHE).settle(self.db_cache) as usize,
            // Within u32: the range ends at 256 MiB.
            quic_window: bounds!(QUIC_WINDOW).settle(self.quic_window) as u32,
            cipher: self.cipher.unwrap_or_default(),
            congestion: self.congestion.unwrap_or_default(),
            // Gentle enough for a NAS disk that is also serving, quick on a fast one.
            background_hash_rate: startup(bounds!(BACKGROUND_HASH_RATE), self.background_hash_rate),
            limits: LimitOverrides {
                upload: self.upload_limit,
                download: self.download_limit,
                peer_upload: self.peer_upload_limit,
                peer_download: self.peer_download_limit,
            },
            allowed_hosts: self.allowed_hosts.unwrap_or_default(),
            trust: crate::peer_policy::TrustSettings {
                trust_introduced: self.trust_introduced.unwrap_or(false),
                lan_trust: self.lan_trust.unwrap_or(false),
            },
            storage,
        }
    }
}

fn count(range: Range, given: Option<usize>) -> usize {
    usize::try_from(range.settle(given.map(|n| n as u64))).unwrap_or(usize::MAX)
}

fn seconds(range: Range, given: Option<u64>) -> Duration {
    Duration::from_secs(range.settle(given))
}

/// A count the API can change too: a given value is bounded, and the default is the
/// registry's.
fn startup_count(range: Range, given: Option<usize>) -> Startup<usize> {
    Startup {
        given: given.map(|n| count(range, Some(n))),
        default: count(range, None),
    }
}

/// A switch the API can also change, on unless given off.
fn switched_on(given: Option<bool>) -> Startup<bool> {
    Startup {
        given,
        default: true,
    }
}

/// As [`startup_count`], for a number that is not a count of things in memory.
fn startup(range: Range, given: Option<u64>) -> Startup<u64> {
    Startup {
        given: given.map(|n| range.settle(Some(n))),
        default: range.default,
    }
}

/// Parses a config file's text; errors name the file, line and column.
pub fn parse(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().trim().to_string(),
        }
    })
}

#[cfg(test)]
mod tests;
