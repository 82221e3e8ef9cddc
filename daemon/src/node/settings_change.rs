//! The settings the API reads and changes, as one view and one change request: most apply
//! live, `listen`, `mdns` and `upnp` from the next start. A change is checked whole before
//! anything is applied, so a refused request changes nothing (short of a storage error);
//! the web UI sends each field alone, so one bad field never blocks the others.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Node, NodeError};
use crate::config::registry::{self as setting, Setting};
use crate::store::StoreError;
use crate::transfer::download::DownloadLimits;
use crate::transfer::rate::{AltMode, AltSpeed, Limits, RateValue, Schedule};
use crate::transfer::upload::UploadLimits;
use crate::transfer::RetryPolicy;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A field's value is refused; the message names the field.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Serialize)]
pub struct ListenView {
    pub current: Option<String>,
    pub saved: Option<String>,
    pub restart_needed: bool,
}

/// A switch that applies from the next start.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SwitchView {
    pub current: bool,
    pub saved: bool,
}

/// `GET /api/settings`.
#[derive(Debug, Clone, Serialize)]
pub struct SettingsView {
    pub limits: Limits,
    pub alt_speed: AltSpeed,
    pub alt_speed_active: bool,
    pub effective_limits: Limits,
    pub download_dir: PathBuf,
    pub max_uploads: usize,
    pub max_uploads_per_peer: usize,
    pub seed_downloads: bool,
    pub retry_limit: u64,
    pub retry_backoff: u64,
    pub max_downloads: usize,
    pub max_downloads_per_peer: usize,
    /// Bytes.
    pub min_free_space: u64,
    /// Seconds.
    pub rescan_interval: u64,
    /// Bytes per second; 0: as fast as the disk goes.
    pub background_hash_rate: u64,
    pub notify_url: String,
    pub listen: ListenView,
    pub mdns: SwitchView,
    pub upnp: SwitchView,
    pub set_at_start: Vec<&'static str>,
}

/// Distinguishes a field that is absent (keep) from one that is null (clear).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(d).map(Some)
}

/// `POST /api/settings`: fields left out keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsChange {
    pub upload_limit: Option<RateValue>,
    pub download_limit: Option<RateValue>,
    pub peer_upload_limit: Option<RateValue>,
    pub peer_download_limit: Option<RateValue>,
    pub alt_upload_limit: Option<RateValue>,
    pub alt_download_limit: Option<RateValue>,
    pub alt_peer_upload_limit: Option<RateValue>,
    pub alt_peer_download_limit: Option<RateValue>,
    /// `{"days": [0..6], "from": "HH:MM", "to": "HH:MM"}`, or null to remove the schedule.
    #[serde(default, deserialize_with = "present")]
    pub alt_schedule: Option<serde_json::Value>,
    pub alt_mode: Option<AltMode>,
    /// Absolute path; created if missing.
    pub download_dir: Option<PathBuf>,
    pub max_uploads: Option<usize>,
    pub max_uploads_per_peer: Option<usize>,
    pub retry_limit: Option<u64>,
    /// Seconds before the first retry.
    pub retry_backoff: Option<u64>,
    /// Where notifications go (`http://…`); empty turns them off.
    pub notify_url: Option<String>,
    /// `IP:PORT` for peer connections, used from the next start.
    pub listen: Option<SocketAddr>,
    /// Offer finished downloads to friends (the download folder as a share).
    pub seed_downloads: Option<bool>,
    pub max_downloads: Option<usize>,
    pub max_downloads_per_peer: Option<usize>,
    /// A size (`1GB`) or bytes.
    pub min_free_space: Option<RateValue>,
    /// Seconds.
    pub rescan_interval: Option<u64>,
    /// A rate (`20MB`) or bytes per second; 0: as fast as the disk goes.
    pub background_hash_rate: Option<RateValue>,
    /// Local-network discovery, from the next start.
    pub mdns: Option<bool>,
    /// The router port mapping, from the next start.
    pub upnp: Option<bool>,
}

/// `n` if `s`'s bounds hold it, else a message naming the field and the bounds.
fn bounded(s: &Setting, n: u64) -> Result<u64, SettingsError> {
    let range = s.bounds();
    if (range.min..=range.max).contains(&n) {
        Ok(n)
    } else {
        Err(SettingsError::Invalid(format!(
            "{}: give a number from {} to {}",
            s.key, range.min, range.max
        )))
    }
}

/// A count within `s`'s bounds (which all fit a `usize`).
fn bounded_count(s: &Setting, n: usize) -> Result<usize, SettingsError> {
    bounded(s, n as u64).map(|n| n as usize)
}

/// A rate in bytes per second within `s`'s bounds.
fn bounded_rate(s: &Setting, value: &RateValue) -> Result<u64, SettingsError> {
    let n = value
        .bytes()
        .map_err(|e| SettingsError::Invalid(format!("{}: {e}", s.key)))?;
    bounded(s, n)
}

/// A size in bytes (written as rates are, without the "per second") within `s`'s bounds.
fn bounded_size(s: &Setting, value: &RateValue) -> Result<u64, SettingsError> {
    let n = value.bytes().map_err(|_| {
        SettingsError::Invalid(format!(
            "{}: give a size such as 500MB, 2GB or 1.5GiB, or 0",
            s.key
        ))
    })?;
    bounded(s, n)
}

fn apply_rates(
    limits: &mut Limits,
    fields: [(&Option<RateValue>, &str); 4],
) -> Result<(), SettingsError> {
    let slots = [
        &mut limits.upload,
        &mut limits.download,
        &mut limits.peer_upload,
        &mut limits.peer_download,
    ];
    for ((value, name), slot) in fields.into_iter().zip(slots) {
        if let Some(value) = value {
            *slot = value
                .bytes()
                .map_err(|e| SettingsError::Invalid(format!("{name}: {e}")))?;
        }
    }
    Ok(())
}

impl SettingsChange {
    fn normal_limits(&self, mut limits: Limits) -> Result<Limits, SettingsError> {
        apply_rates(
            &mut limits,
            [
                (&self.upload_limit, "upload_limit"),
                (&self.download_limit, "download_limit"),
                (&self.peer_upload_limit, "peer_upload_limit"),
                (&self.peer_download_limit, "peer_download_limit"),
            ],
        )?;
        Ok(limits)
    }

    fn alt_speed(&self, mut alt: AltSpeed) -> Result<AltSpeed, SettingsError> {
        apply_rates(
            &mut alt.limits,
            [
                (&self.alt_upload_limit, "alt_upload_limit"),
                (&self.alt_download_limit, "alt_download_limit"),
                (&self.alt_peer_upload_limit, "alt_peer_upload_limit"),
                (&self.alt_peer_download_limit, "alt_peer_download_limit"),
            ],
        )?;
        if let Some(schedule) = &self.alt_schedule {
            alt.schedule = match schedule {
                serde_json::Value::Null => None,
                value => {
                    let invalid = |e: String| SettingsError::Invalid(format!("alt_schedule: {e}"));
                    let schedule: Schedule = serde_json::from_value(value.clone())
                        .map_err(|e| invalid(e.to_string()))?;
                    schedule.validate().map_err(invalid)?;
                    Some(schedule)
                }
            };
        }
        if let Some(mode) = self.alt_mode {
            alt.mode = mode;
        }
        Ok(alt)
    }

    fn upload_slots(&self, mut slots: UploadLimits) -> Result<UploadLimits, SettingsError> {
        if let Some(n) = self.max_uploads {
            slots.total = bounded_count(&setting::MAX_UPLOADS, n)?;
        }
        if let Some(n) = self.max_uploads_per_peer {
            slots.per_peer = bounded_count(&setting::MAX_UPLOADS_PER_PEER, n)?;
        }
        Ok(slots)
    }

    fn download_limits(&self, mut limits: DownloadLimits) -> Result<DownloadLimits, SettingsError> {
        if let Some(n) = self.max_downloads {
            limits.total = bounded_count(&setting::MAX_DOWNLOADS, n)?;
        }
        if let Some(n) = self.max_downloads_per_peer {
            limits.per_peer = bounded_count(&setting::MAX_DOWNLOADS_PER_PEER, n)?;
        }
        if let Some(value) = &self.min_free_space {
            limits.min_free_space = bounded_size(&setting::MIN_FREE_SPACE, value)?;
        }
        Ok(limits)
    }

    fn retry_policy(&self, mut retry: RetryPolicy) -> Result<RetryPolicy, SettingsError> {
        if let Some(n) = self.retry_limit {
            retry.limit = bounded(&setting::RETRY_LIMIT, n)?;
        }
        if let Some(n) = self.retry_backoff {
            retry.backoff = bounded(&setting::RETRY_BACKOFF, n)?;
        }
        Ok(retry)
    }
}

impl Node {
    pub fn settings(&self) -> SettingsView {
        let slots = self.upload_limits();
        let retry = self.downloads.retry_policy();
        let downloads = self.downloads.limits();
        let current = self.listen_address();
        let saved = self.saved_listen().or(current);
        SettingsView {
            limits: self.speed.limits(),
            alt_speed: self.speed.alt_speed(),
            alt_speed_active: self.speed.alt_speed_active(),
            effective_limits: self.speed.in_force(),
            download_dir: self.download_dir(),
            max_uploads: slots.total,
            max_uploads_per_peer: slots.per_peer,
            seed_downloads: self.library.seeding(),
            retry_limit: retry.limit,
            retry_backoff: retry.backoff,
            max_downloads: downloads.total,
            max_downloads_per_peer: downloads.per_peer,
            min_free_space: downloads.min_free_space,
            rescan_interval: self.library.rescan_interval().as_secs(),
            background_hash_rate: self.library.hash_rate(),
            notify_url: self.notify_url(),
            listen: ListenView {
                current: current.map(|a| a.to_string()),
                saved: saved.map(|a| a.to_string()),
                restart_needed: saved != current,
            },
            mdns: self.switch_view(&setting::MDNS, self.running.mdns),
            upnp: self.switch_view(&setting::UPNP, self.running.upnp),
            set_at_start: self.set_at_start.clone(),
        }
    }

    fn switch_view(&self, s: &Setting, current: bool) -> SwitchView {
        let saved = self.saved.flag(s.key).ok().flatten().unwrap_or(current);
        SwitchView { current, saved }
    }

    /// Applies a change live and keeps it for the next start.
    pub fn change_settings(&self, change: SettingsChange) -> Result<SettingsView, SettingsError> {
        let limits = change.normal_limits(self.speed.limits())?;
        let alt = change.alt_speed(self.speed.alt_speed())?;
        let slots = change.upload_slots(self.upload_limits())?;
        let retry = change.retry_policy(self.downloads.retry_policy())?;
        let downloads = change.download_limits(self.downloads.limits())?;
        let rescan_interval = change
            .rescan_interval
            .map(|n| bounded(&setting::RESCAN_INTERVAL, n))
            .transpose()?;
        let hash_rate = change
            .background_hash_rate
            .as_ref()
            .map(|v| bounded_rate(&setting::BACKGROUND_HASH_RATE, v))
            .transpose()?;
        let notify_url = change.notify_url.as_deref().map(str::trim);
        if let Some(url) = notify_url {
            harddrive_party_core::notify::check_url(url, super::notify::HTTPS_BUILT_IN)
                .map_err(|e| SettingsError::Invalid(format!("notify_url: {e}")))?;
        }
        if let Some(listen) = change.listen {
            self.check_listen(listen)?;
        }
        if let Some(dir) = &change.download_dir {
            self.set_download_dir(dir)?;
        }
        if let Some(listen) = change.listen {
            self.set_listen(listen)?;
        }
        if change.max_uploads.is_some() || change.max_uploads_per_peer.is_some() {
            self.set_upload_limits(slots)?;
        }
        if let Some(on) = change.seed_downloads {
            self.library.set_seeding(on, self.download_dir())?;
        }
        if change.retry_limit.is_some() || change.retry_backoff.is_some() {
            self.saved
                .set_number(setting::RETRY_LIMIT.key, retry.limit)?;
            self.saved
                .set_number(setting::RETRY_BACKOFF.key, retry.backoff)?;
            self.downloads.set_retry_policy(retry);
        }
        if change.max_downloads.is_some()
            || change.max_downloads_per_peer.is_some()
            || change.min_free_space.is_some()
        {
            for (s, n) in [
                (setting::MAX_DOWNLOADS, downloads.total as u64),
                (setting::MAX_DOWNLOADS_PER_PEER, downloads.per_peer as u64),
                (setting::MIN_FREE_SPACE, downloads.min_free_space),
            ] {
                self.saved.set_number(s.key, n)?;
            }
            self.downloads.set_limits(downloads);
        }
        if let Some(seconds) = rescan_interval {
            self.saved
                .set_number(setting::RESCAN_INTERVAL.key, seconds)?;
            self.library
                .set_rescan_interval(Duration::from_secs(seconds));
        }
        if let Some(rate) = hash_rate {
            self.saved
                .set_number(setting::BACKGROUND_HASH_RATE.key, rate)?;
            self.library.set_hash_rate(rate);
        }
        for (s, on) in [(setting::MDNS, change.mdns), (setting::UPNP, change.upnp)] {
            if let Some(on) = on {
                self.saved.set_flag(s.key, on)?;
            }
        }
        if let Some(url) = notify_url {
            self.saved.set_text(setting::NOTIFY_URL.key, url)?;
            *crate::locks::lock(&self.notify_url) = url.to_string();
        }
        self.speed.set_limits(limits)?;
        self.speed.set_alt_speed(alt)?;
        Ok(self.settings())
    }
}
