//! Start-up settings from four layers: command-line flags, then `HDP_*` environment
//! variables (containers), then the TOML file given to `start --config` (packages), then
//! defaults. Pure: the layers are plain values, merged and checked without touching the system.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

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
    pub stun_servers: Option<Vec<String>>,
    pub threads: Option<usize>,
    pub max_downloads: Option<usize>,
    pub max_downloads_per_peer: Option<usize>,
    pub max_uploads: Option<usize>,
    pub max_uploads_per_peer: Option<usize>,
    /// Seconds between automatic rescans of the shares.
    pub rescan_interval: Option<u64>,
}

/// Settings with every layer applied and defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub storage: PathBuf,
    pub ui_address: String,
    pub share_dirs: Vec<PathBuf>,
    pub download_dir: PathBuf,
    pub listen: Option<SocketAddr>,
    pub mdns: bool,
    pub stun_servers: Vec<String>,
    pub threads: usize,
    pub max_downloads: usize,
    pub max_downloads_per_peer: usize,
    pub max_uploads: usize,
    pub max_uploads_per_peer: usize,
    pub rescan_interval: Duration,
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
            stun_servers: self.stun_servers.or(lower.stun_servers),
            threads: self.threads.or(lower.threads),
            max_downloads: self.max_downloads.or(lower.max_downloads),
            max_downloads_per_peer: self.max_downloads_per_peer.or(lower.max_downloads_per_peer),
            max_uploads: self.max_uploads.or(lower.max_uploads),
            max_uploads_per_peer: self.max_uploads_per_peer.or(lower.max_uploads_per_peer),
            rescan_interval: self.rescan_interval.or(lower.rescan_interval),
        }
    }

    pub fn settle(self, defaults: Defaults) -> Settings {
        let storage = self.storage.unwrap_or(defaults.storage);
        let download_dir = self
            .download_dir
            .or(defaults.home_downloads)
            .unwrap_or_else(|| storage.join("downloads"));
        Settings {
            ui_address: self
                .ui_address
                .unwrap_or_else(|| DEFAULT_UI_ADDRESS.to_string()),
            share_dirs: self.share_dirs.unwrap_or_default(),
            download_dir,
            listen: self.listen,
            mdns: self.mdns.unwrap_or(true),
            stun_servers: self.stun_servers.unwrap_or_default(),
            // Small boards: two workers are plenty for I/O-bound work and keep memory low.
            threads: self.threads.unwrap_or(2).clamp(1, 16),
            max_downloads: self.max_downloads.unwrap_or(4).max(1),
            max_downloads_per_peer: self.max_downloads_per_peer.unwrap_or(2).max(1),
            max_uploads: self.max_uploads.unwrap_or(8).max(1),
            max_uploads_per_peer: self.max_uploads_per_peer.unwrap_or(4).max(1),
            rescan_interval: Duration::from_secs(self.rescan_interval.unwrap_or(600).max(10)),
            storage,
        }
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

pub fn load(path: &Path) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Defaults {
        Defaults {
            storage: "/default/storage".into(),
            home_downloads: None,
        }
    }

    #[test]
    fn flags_beat_environment_beat_file_beat_defaults() {
        let file = parse(
            Path::new("c.toml"),
            "storage = \"/var/lib/hdp\"\nshare_dirs = [\"/srv/a\"]\nmax_uploads = 3\nmdns = false\n",
        )
        .unwrap();
        let flags_and_env = Layer {
            max_uploads: Some(9),
            share_dirs: Some(vec!["/srv/b".into()]),
            ..Layer::default()
        };
        let s = flags_and_env.over(file).settle(defaults());
        assert_eq!(s.max_uploads, 9);
        assert_eq!(s.share_dirs, [PathBuf::from("/srv/b")]);
        assert_eq!(s.storage, PathBuf::from("/var/lib/hdp"));
        assert_eq!(s.download_dir, PathBuf::from("/var/lib/hdp/downloads"));
        assert!(!s.mdns);
        assert_eq!(s.max_downloads, 4);
        assert_eq!(s.ui_address, DEFAULT_UI_ADDRESS);
        assert_eq!(s.threads, 2);
    }

    #[test]
    fn a_typo_names_the_file_line_and_key() {
        let text = "storage = \"/x\"\n\nshare_dir = [\"/srv\"]\n";
        let err = parse(Path::new("/etc/harddrive-party/config.toml"), text)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("/etc/harddrive-party/config.toml:3:1: "),
            "{err}"
        );
        assert!(err.contains("share_dir"), "{err}");
    }

    #[test]
    fn a_wrong_type_names_the_line() {
        let err = parse(Path::new("c.toml"), "threads = 2\nmax_uploads = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.toml:2:"), "{err}");
        let err = parse(Path::new("c.toml"), "listen = \"not an address\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("c.toml:1:"), "{err}");
    }

    #[test]
    fn limits_are_clamped_to_sane_values() {
        let s = Layer {
            threads: Some(0),
            max_uploads: Some(0),
            rescan_interval: Some(1),
            ..Layer::default()
        }
        .settle(defaults());
        assert_eq!(
            (s.threads, s.max_uploads, s.rescan_interval),
            (1, 1, Duration::from_secs(10))
        );
    }
}
