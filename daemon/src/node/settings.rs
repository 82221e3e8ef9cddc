//! The settings changed through the API and kept in the database for the next start, each
//! under one key with a typed getter and setter (the values are JSON or plain text).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Serialize};

use crate::store::{Store, StoreError};
use crate::transfer::rate::{AltSpeed, Limits};
use crate::transfer::upload::UploadLimits;

/// The UDP address bound last time, or the one chosen through the API for the next start.
const LISTEN: &str = "listen";
const DOWNLOAD_DIR: &str = "download_dir";
const UPLOAD_SLOTS: &str = "upload_slots";
const RATE_LIMITS: &str = "rate_limits";
const ALT_SPEED: &str = "alt_speed";
/// The name of the share made of the download folder by `seed_downloads`, so that turning
/// it off (or moving the folder) removes that share and no share the user made.
const SEEDED_SHARE: &str = "seeded_share";

#[derive(Clone)]
pub struct SavedSettings {
    store: Arc<Store>,
}

impl SavedSettings {
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// A value that no longer parses (written by another version) reads as unset.
    fn json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        Ok(self
            .store
            .setting(key)?
            .and_then(|json| serde_json::from_str(&json).ok()))
    }

    fn set_json<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        let json = serde_json::to_string(value).unwrap_or_default();
        self.store.set_setting(key, &json)
    }

    pub fn listen(&self) -> Result<Option<SocketAddr>, StoreError> {
        Ok(self.store.setting(LISTEN)?.and_then(|s| s.parse().ok()))
    }

    pub fn set_listen(&self, addr: SocketAddr) -> Result<(), StoreError> {
        self.store.set_setting(LISTEN, &addr.to_string())
    }

    pub fn download_dir(&self) -> Result<Option<PathBuf>, StoreError> {
        Ok(self.store.setting(DOWNLOAD_DIR)?.map(PathBuf::from))
    }

    pub fn set_download_dir(&self, dir: &str) -> Result<(), StoreError> {
        self.store.set_setting(DOWNLOAD_DIR, dir)
    }

    pub fn upload_slots(&self) -> Result<Option<UploadLimits>, StoreError> {
        self.json(UPLOAD_SLOTS)
    }

    pub fn set_upload_slots(&self, slots: &UploadLimits) -> Result<(), StoreError> {
        self.set_json(UPLOAD_SLOTS, slots)
    }

    /// A number kept under its setting's key.
    pub fn number(&self, key: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.store.setting(key)?.and_then(|s| s.parse().ok()))
    }

    /// A count kept under its setting's key.
    pub fn count(&self, key: &str) -> Result<Option<usize>, StoreError> {
        Ok(self.number(key)?.and_then(|n| usize::try_from(n).ok()))
    }

    pub fn set_number(&self, key: &str, n: u64) -> Result<(), StoreError> {
        self.store.set_setting(key, &n.to_string())
    }

    /// A text kept under its setting's key, as it was given.
    pub fn text(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.store.setting(key)
    }

    pub fn set_text(&self, key: &str, text: &str) -> Result<(), StoreError> {
        self.store.set_setting(key, text)
    }

    pub fn rate_limits(&self) -> Result<Option<Limits>, StoreError> {
        self.json(RATE_LIMITS)
    }

    pub fn set_rate_limits(&self, limits: &Limits) -> Result<(), StoreError> {
        self.set_json(RATE_LIMITS, limits)
    }

    pub fn alt_speed(&self) -> Result<Option<AltSpeed>, StoreError> {
        self.json(ALT_SPEED)
    }

    pub fn set_alt_speed(&self, alt: &AltSpeed) -> Result<(), StoreError> {
        self.set_json(ALT_SPEED, alt)
    }

    /// A switch kept under its setting's key (`seed_downloads`, `mdns`, `upnp`).
    pub fn flag(&self, key: &str) -> Result<Option<bool>, StoreError> {
        self.json(key)
    }

    pub fn set_flag(&self, key: &str, on: bool) -> Result<(), StoreError> {
        self.set_json(key, &on)
    }

    pub fn seeded_share(&self) -> Result<Option<String>, StoreError> {
        self.json(SEEDED_SHARE)
    }

    pub fn set_seeded_share(&self, name: Option<&str>) -> Result<(), StoreError> {
        self.set_json(SEEDED_SHARE, &name)
    }
}
