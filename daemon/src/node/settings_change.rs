//! The settings the API reads and changes live, as one view and one change request. A
//! change is checked whole before anything is applied, so a refused request changes
//! nothing (short of a storage error).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Node, NodeError};
use crate::config::registry as setting;
use crate::store::StoreError;
use crate::transfer::rate::{AltMode, AltSpeed, Limits, RateValue, Schedule};
use crate::transfer::upload::{UploadLimits, MAX_UPLOAD_SLOTS};
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
    pub notify_url: String,
    pub listen: ListenView,
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
        for (value, slot, name) in [
            (self.max_uploads, &mut slots.total, "max_uploads"),
            (
                self.max_uploads_per_peer,
                &mut slots.per_peer,
                "max_uploads_per_peer",
            ),
        ] {
            if let Some(n) = value {
                if !(1..=MAX_UPLOAD_SLOTS).contains(&n) {
                    return Err(SettingsError::Invalid(format!(
                        "{name}: give a number of upload slots from 1 to {MAX_UPLOAD_SLOTS}"
                    )));
                }
                *slot = n;
            }
        }
        Ok(slots)
    }

    fn retry_policy(&self, mut retry: RetryPolicy) -> Result<RetryPolicy, SettingsError> {
        for (value, slot, s) in [
            (self.retry_limit, &mut retry.limit, setting::RETRY_LIMIT),
            (
                self.retry_backoff,
                &mut retry.backoff,
                setting::RETRY_BACKOFF,
            ),
        ] {
            if let Some(n) = value {
                let range = s.bounds();
                if !(range.min..=range.max).contains(&n) {
                    return Err(SettingsError::Invalid(format!(
                        "{}: give a number from {} to {}",
                        s.key, range.min, range.max
                    )));
                }
                *slot = n;
            }
        }
        Ok(retry)
    }
}

impl Node {
    pub fn settings(&self) -> SettingsView {
        let slots = self.upload_limits();
        let retry = self.downloads.retry_policy();
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
            notify_url: self.notify_url(),
            listen: ListenView {
                current: current.map(|a| a.to_string()),
                saved: saved.map(|a| a.to_string()),
                restart_needed: saved != current,
            },
            set_at_start: self.set_at_start.clone(),
        }
    }

    /// Applies a change live and keeps it for the next start.
    pub fn change_settings(&self, change: SettingsChange) -> Result<SettingsView, SettingsError> {
        let limits = change.normal_limits(self.speed.limits())?;
        let alt = change.alt_speed(self.speed.alt_speed())?;
        let slots = change.upload_slots(self.upload_limits())?;
        let retry = change.retry_policy(self.downloads.retry_policy())?;
        let notify_url = change.notify_url.as_deref().map(str::trim);
        if let Some(url) = notify_url {
            harddrive_party_core::notify::check_url(url)
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
        if let Some(url) = notify_url {
            self.saved.set_text(setting::NOTIFY_URL.key, url)?;
            *crate::locks::lock(&self.notify_url) = url.to_string();
        }
        self.speed.set_limits(limits)?;
        self.speed.set_alt_speed(alt)?;
        Ok(self.settings())
    }
}
