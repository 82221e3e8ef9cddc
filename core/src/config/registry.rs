//! Every start-up setting, declared once: its config-file key (the [`Layer`] field), its
//! `start` flag and `HDP_*` variable, its OpenWrt UCI option, the `POST /api/settings` field
//! when the API changes it too, its bounds and default when it is a number, and its help.
//! The CLI takes flags, variables and help from here, [`Layer::settle`] the bounds and
//! defaults, the node the names of settings given at start; tests hold the config-file
//! format, the OpenWrt init script, debian's sample config and the API to this list, so a
//! setting added in one place and forgotten in another fails a test.
//!
//! [`Layer`]: super::Layer
//! [`Layer::settle`]: super::Layer::settle

/// A number's default and the bounds a given value is clamped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub default: u64,
    pub min: u64,
    pub max: u64,
}

impl Range {
    const fn new(default: u64, min: u64, max: u64) -> Self {
        Self { default, min, max }
    }

    /// The given value within bounds, or the default.
    pub fn settle(self, given: Option<u64>) -> u64 {
        given.unwrap_or(self.default).clamp(self.min, self.max)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The config file's key and the `Layer` field.
    pub key: &'static str,
    /// The long flag, without `--` (`start`'s, or global for `storage` and `ui_address`).
    pub flag: &'static str,
    pub env: &'static str,
    /// The option in /etc/config/harddrive-party, when the OpenWrt package offers it.
    pub uci: Option<&'static str>,
    /// The `POST /api/settings` field that changes it while running; a value given at start
    /// wins again at the next start.
    pub api: Option<&'static str>,
    pub range: Option<Range>,
    pub help: &'static str,
}

impl Setting {
    /// A number setting's range. Called in a `const` block, so a number setting declared
    /// without one fails to compile rather than falling back to a made-up default.
    pub const fn bounds(&self) -> Range {
        match self.range {
            Some(range) => range,
            None => panic!("a number setting without a range"),
        }
    }
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// What a declaration leaves out: no UCI option, not changed through the API, no range.
const UNSET: Setting = Setting {
    key: "",
    flag: "",
    env: "",
    uci: None,
    api: None,
    range: None,
    help: "",
};

pub const STORAGE: Setting = Setting {
    key: "storage",
    flag: "storage",
    env: "HDP_STORAGE",
    uci: Some("storage"),
    help: "Storage directory [default: $XDG_DATA_HOME/harddrive-party or ~/.local/share/harddrive-party]",
    ..UNSET
};
pub const UI_ADDRESS: Setting = Setting {
    key: "ui_address",
    flag: "ui-address",
    env: "HDP_UI_ADDRESS",
    uci: Some("ui_address"),
    help: "Where the web UI and API listen (start) or are reached (other commands) [default: http://127.0.0.1:3030]",
    ..UNSET
};
pub const SHARE_DIRS: Setting = Setting {
    key: "share_dirs",
    flag: "share-dir",
    env: "HDP_SHARE_DIRS",
    uci: Some("share_dir"),
    help: "Directory to share (repeatable).",
    ..UNSET
};
pub const DOWNLOAD_DIR: Setting = Setting {
    key: "download_dir",
    flag: "download-dir",
    env: "HDP_DOWNLOAD_DIR",
    uci: Some("download_dir"),
    api: Some("download_dir"),
    help: "Where downloads go [default: ~/Downloads/harddrive-party, or <storage>/downloads without a home]",
    ..UNSET
};
pub const LISTEN: Setting = Setting {
    key: "listen",
    flag: "listen",
    env: "HDP_LISTEN",
    uci: Some("listen"),
    api: Some("listen"),
    help: "UDP address for peer connections [default: the last one used, else 0.0.0.0:0]",
    ..UNSET
};
pub const MDNS: Setting = Setting {
    key: "mdns",
    flag: "no-mdns",
    env: "HDP_NO_MDNS",
    uci: Some("mdns"),
    api: Some("mdns"),
    help: "Disable local-network discovery.",
    ..UNSET
};
pub const UPNP: Setting = Setting {
    key: "upnp",
    flag: "no-upnp",
    env: "HDP_NO_UPNP",
    uci: Some("upnp"),
    api: Some("upnp"),
    help: "Do not ask the router for a port mapping (UPnP-IGD, PCP, NAT-PMP).",
    ..UNSET
};
pub const STUN: Setting = Setting {
    key: "stun",
    flag: "no-stun",
    env: "HDP_NO_STUN",
    uci: Some("stun"),
    help: "Do not query STUN servers (LAN only; nothing is sent to the internet).",
    ..UNSET
};
pub const STUN_SERVERS: Setting = Setting {
    key: "stun_servers",
    flag: "stun-server",
    env: "HDP_STUN_SERVERS",
    uci: Some("stun_server"),
    help: "STUN server HOST:PORT (repeatable) [default: public Google and Cloudflare servers]",
    ..UNSET
};
pub const STUN_INTERVAL: Setting = Setting {
    key: "stun_interval",
    flag: "stun-interval",
    env: "HDP_STUN_INTERVAL",
    uci: Some("stun_interval"),
    range: Some(Range::new(120, 2, 86_400)),
    help: "Seconds between STUN rounds; a new public address is noticed within this [default: 120]",
    ..UNSET
};
pub const KEEP_ALIVE_INTERVAL: Setting = Setting {
    key: "keep_alive_interval",
    flag: "keep-alive-interval",
    env: "HDP_KEEP_ALIVE_INTERVAL",
    uci: Some("keep_alive_interval"),
    range: Some(Range::new(10, 1, 600)),
    help: "Seconds between keep-alives on idle peer connections [default: 10]",
    ..UNSET
};
pub const TURN_SERVER: Setting = Setting {
    key: "turn_server",
    flag: "turn-server",
    env: "HDP_TURN_SERVER",
    uci: Some("turn_server"),
    help: "TURN relay HOST:PORT for peers no direct path reaches.",
    ..UNSET
};
pub const TURN_USERNAME: Setting = Setting {
    key: "turn_username",
    flag: "turn-username",
    env: "HDP_TURN_USERNAME",
    uci: Some("turn_username"),
    help: "User name at the TURN relay.",
    ..UNSET
};
pub const TURN_PASSWORD: Setting = Setting {
    key: "turn_password",
    flag: "turn-password",
    env: "HDP_TURN_PASSWORD",
    uci: Some("turn_password"),
    help: "Password at the TURN relay; prefer HDP_TURN_PASSWORD: command lines are visible to other local users.",
    ..UNSET
};
pub const THREADS: Setting = Setting {
    key: "threads",
    flag: "threads",
    env: "HDP_THREADS",
    uci: Some("threads"),
    range: Some(Range::new(2, 1, 16)),
    help: "Tokio worker threads; small boards want 1 or 2 [default: 2]",
    ..UNSET
};
pub const MAX_DOWNLOADS: Setting = Setting {
    key: "max_downloads",
    flag: "max-downloads",
    env: "HDP_MAX_DOWNLOADS",
    uci: Some("max_downloads"),
    api: Some("max_downloads"),
    range: Some(Range::new(4, 1, 1024)),
    help:
        "Concurrent file downloads in total; 16 files of at most 64 KiB count as one [default: 4]",
};
pub const MAX_DOWNLOADS_PER_PEER: Setting = Setting {
    key: "max_downloads_per_peer",
    flag: "max-downloads-per-peer",
    env: "HDP_MAX_DOWNLOADS_PER_PEER",
    uci: Some("max_downloads_per_peer"),
    api: Some("max_downloads_per_peer"),
    range: Some(Range::new(2, 1, 1024)),
    help: "Concurrent file downloads per peer, counted the same way [default: 2]",
};
pub const MAX_UPLOADS: Setting = Setting {
    key: "max_uploads",
    flag: "max-uploads",
    env: "HDP_MAX_UPLOADS",
    uci: Some("max_uploads"),
    api: Some("max_uploads"),
    range: Some(Range::new(8, 1, 1024)),
    help: "Concurrent uploads in total; further requests queue [default: 8]",
};
pub const MAX_UPLOADS_PER_PEER: Setting = Setting {
    key: "max_uploads_per_peer",
    flag: "max-uploads-per-peer",
    env: "HDP_MAX_UPLOADS_PER_PEER",
    uci: Some("max_uploads_per_peer"),
    api: Some("max_uploads_per_peer"),
    range: Some(Range::new(4, 1, 1024)),
    help: "Concurrent uploads per peer [default: 4]",
};
pub const RETRY_LIMIT: Setting = Setting {
    key: "retry_limit",
    flag: "retry-limit",
    env: "HDP_RETRY_LIMIT",
    uci: Some("retry_limit"),
    api: Some("retry_limit"),
    range: Some(Range::new(5, 1, 1000)),
    help: "Failed tries of a file before it is given up; a lost peer or a full disk is no try [default: 5]",
};
pub const RETRY_BACKOFF: Setting = Setting {
    key: "retry_backoff",
    flag: "retry-backoff",
    env: "HDP_RETRY_BACKOFF",
    uci: Some("retry_backoff"),
    api: Some("retry_backoff"),
    range: Some(Range::new(20, 1, 3600)),
    help: "Seconds before the first retry of a failed file, doubling after each failure (at most 32 times) [default: 20]",
};
pub const NOTIFY_URL: Setting = Setting {
    key: "notify_url",
    flag: "notify-url",
    env: "HDP_NOTIFY_URL",
    uci: Some("notify_url"),
    api: Some("notify_url"),
    help: "Send notifications (downloads finished or failed, disk full, friend requests) to this http:// URL: an ntfy topic or a webhook; at most one message per 30 s; empty: off",
    ..UNSET
};
pub const RESCAN_INTERVAL: Setting = Setting {
    key: "rescan_interval",
    flag: "rescan-interval",
    env: "HDP_RESCAN_INTERVAL",
    uci: Some("rescan_interval"),
    api: Some("rescan_interval"),
    range: Some(Range::new(600, 10, 30 * 86_400)),
    help: "Seconds between automatic rescans of the shares [default: 600]",
};
pub const UPLOAD_LIMIT: Setting = Setting {
    key: "upload_limit",
    flag: "upload-limit",
    env: "HDP_UPLOAD_LIMIT",
    uci: Some("upload_limit"),
    api: Some("upload_limit"),
    help: "Total upload cap, e.g. 5MB, 800KB; 0 for none [default: the last one set, else none]",
    ..UNSET
};
pub const DOWNLOAD_LIMIT: Setting = Setting {
    key: "download_limit",
    flag: "download-limit",
    env: "HDP_DOWNLOAD_LIMIT",
    uci: Some("download_limit"),
    api: Some("download_limit"),
    help: "Total download cap, e.g. 5MB; 0 for none",
    ..UNSET
};
pub const PEER_UPLOAD_LIMIT: Setting = Setting {
    key: "peer_upload_limit",
    flag: "peer-upload-limit",
    env: "HDP_PEER_UPLOAD_LIMIT",
    uci: Some("peer_upload_limit"),
    api: Some("peer_upload_limit"),
    help: "Upload cap for each peer; 0 for none",
    ..UNSET
};
pub const PEER_DOWNLOAD_LIMIT: Setting = Setting {
    key: "peer_download_limit",
    flag: "peer-download-limit",
    env: "HDP_PEER_DOWNLOAD_LIMIT",
    uci: Some("peer_download_limit"),
    api: Some("peer_download_limit"),
    help: "Download cap for each peer; 0 for none",
    ..UNSET
};
pub const BACKGROUND_HASHING: Setting = Setting {
    key: "background_hashing",
    flag: "no-background-hashing",
    env: "HDP_NO_BACKGROUND_HASHING",
    uci: Some("background_hashing"),
    help: "Do not hash shared files in the background (they are hashed when first requested).",
    ..UNSET
};
pub const SEED_DOWNLOADS: Setting = Setting {
    key: "seed_downloads",
    flag: "no-seed-downloads",
    env: "HDP_NO_SEED_DOWNLOADS",
    uci: Some("seed_downloads"),
    api: Some("seed_downloads"),
    help: "Do not offer finished downloads to friends (by default the download folder is a share).",
    ..UNSET
};
pub const BACKGROUND_HASH_RATE: Setting = Setting {
    key: "background_hash_rate",
    flag: "background-hash-rate",
    env: "HDP_BACKGROUND_HASH_RATE",
    uci: Some("background_hash_rate"),
    api: Some("background_hash_rate"),
    range: Some(Range::new(64_000_000, 0, u64::MAX)),
    help: "Read rate of background hashing, e.g. 20MB; 0 for as fast as possible [default: 64MB]",
};
pub const MIN_FREE_SPACE: Setting = Setting {
    key: "min_free_space",
    flag: "min-free-space",
    env: "HDP_MIN_FREE_SPACE",
    uci: Some("min_free_space"),
    api: Some("min_free_space"),
    range: Some(Range::new(256 * MIB, 0, u64::MAX)),
    help: "Free space to keep on the download disk, e.g. 1GB; downloads pause below it [default: 256MiB]",
};
pub const DB_CACHE: Setting = Setting {
    key: "db_cache",
    flag: "db-cache",
    env: "HDP_DB_CACHE",
    uci: Some("db_cache"),
    range: Some(Range::new(4 * MIB, MIB, GIB)),
    help: "Page cache of the index database, e.g. 16MB; 1MiB to 1GiB [default: 4MiB]",
    ..UNSET
};
pub const QUIC_WINDOW: Setting = Setting {
    key: "quic_window",
    flag: "quic-window",
    env: "HDP_QUIC_WINDOW",
    uci: Some("quic_window"),
    range: Some(Range::new(16 * MIB, 256 * KIB, 256 * MIB)),
    help: "Bytes in flight per peer connection, e.g. 4MB; 256KiB to 256MiB; lower saves memory on small boards, higher helps long fast links [default: 16MiB]",
    ..UNSET
};
pub const CIPHER: Setting = Setting {
    key: "cipher",
    flag: "cipher",
    env: "HDP_CIPHER",
    uci: Some("cipher"),
    help: "QUIC encryption: auto (ChaCha20 when either end lacks AES instructions, else AES-GCM), aes or chacha [default: auto]",
    ..UNSET
};
pub const CONGESTION: Setting = Setting {
    key: "congestion",
    flag: "congestion",
    env: "HDP_CONGESTION",
    uci: Some("congestion"),
    help: "Congestion control of peer connections: auto (CUBIC on the LAN, BBR beyond: lossy links), cubic or bbr [default: auto]",
    ..UNSET
};
pub const ALLOWED_HOSTS: Setting = Setting {
    key: "allowed_hosts",
    flag: "allowed-host",
    env: "HDP_ALLOWED_HOSTS",
    uci: Some("allowed_host"),
    help: "Extra host name the web UI may be reached by (repeatable); IP addresses, localhost and this machine's hostname(.local) always work",
    ..UNSET
};
pub const TRUST_INTRODUCED: Setting = Setting {
    key: "trust_introduced",
    flag: "trust-introduced",
    env: "HDP_TRUST_INTRODUCED",
    uci: Some("trust_introduced"),
    help: "Peers a friend introduces become friends, not suggestions to approve.",
    ..UNSET
};
pub const LAN_TRUST: Setting = Setting {
    key: "lan_trust",
    flag: "lan-trust",
    env: "HDP_LAN_TRUST",
    uci: Some("lan_trust"),
    help: "Peers found on the local network become friends, not suggestions to approve.",
    ..UNSET
};

/// Every setting, in the order of `start --help`.
pub const ALL: [&Setting; 38] = [
    &STORAGE,
    &UI_ADDRESS,
    &SHARE_DIRS,
    &DOWNLOAD_DIR,
    &LISTEN,
    &MDNS,
    &TRUST_INTRODUCED,
    &LAN_TRUST,
    &UPNP,
    &STUN_SERVERS,
    &STUN_INTERVAL,
    &STUN,
    &KEEP_ALIVE_INTERVAL,
    &TURN_SERVER,
    &TURN_USERNAME,
    &TURN_PASSWORD,
    &MAX_DOWNLOADS,
    &MAX_DOWNLOADS_PER_PEER,
    &MAX_UPLOADS,
    &MAX_UPLOADS_PER_PEER,
    &RETRY_LIMIT,
    &RETRY_BACKOFF,
    &NOTIFY_URL,
    &RESCAN_INTERVAL,
    &THREADS,
    &UPLOAD_LIMIT,
    &DOWNLOAD_LIMIT,
    &PEER_UPLOAD_LIMIT,
    &PEER_DOWNLOAD_LIMIT,
    &BACKGROUND_HASHING,
    &SEED_DOWNLOADS,
    &MIN_FREE_SPACE,
    &DB_CACHE,
    &QUIC_WINDOW,
    &CIPHER,
    &CONGESTION,
    &BACKGROUND_HASH_RATE,
    &ALLOWED_HOSTS,
];

/// The field names serde's derive gives a struct (`Layer`, the API's change request): a
/// deserializer that only records what it is asked for, so tests compare this registry
/// with the real types rather than with a copied list.
pub fn struct_fields<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    struct Recorder(Option<&'static [&'static str]>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("recorded")
        }
    }
    impl std::error::Error for Stop {}
    impl serde::de::Error for Stop {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Stop
        }
    }
    impl<'de> serde::Deserializer<'de> for &mut Recorder {
        type Error = Stop;
        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0 = Some(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    let mut recorder = Recorder(None);
    let _ = T::deserialize(&mut recorder);
    recorder.0.unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::config::Layer;

    #[test]
    fn every_layer_field_is_declared_once_and_nothing_else() {
        let fields: HashSet<&str> = struct_fields::<Layer>().iter().copied().collect();
        assert_eq!(fields.len(), 38, "Layer has {} fields", fields.len());
        let keys: HashSet<&str> = ALL.iter().map(|s| s.key).collect();
        assert_eq!(keys.len(), ALL.len(), "a key declared twice");
        assert_eq!(keys, fields);
    }

    #[test]
    fn flags_variables_and_uci_options_are_unique() {
        for name in [
            |s: &Setting| Some(s.flag),
            |s: &Setting| Some(s.env),
            |s: &Setting| s.uci,
        ] {
            let all: Vec<&str> = ALL.iter().filter_map(|s| name(s)).collect();
            let unique: HashSet<&str> = all.iter().copied().collect();
            assert_eq!(unique.len(), all.len(), "{all:?}");
        }
        // The variable is the flag in capitals; a repeatable flag's is plural.
        for s in ALL {
            let singular = format!("HDP_{}", s.flag.to_uppercase().replace('-', "_"));
            assert!(
                s.env == singular || s.env == singular.clone() + "S",
                "{}: {} does not follow --{}",
                s.key,
                s.env,
                s.flag
            );
        }
    }

    #[test]
    fn ranges_hold_their_default() {
        for s in ALL {
            if let Some(r) = s.range {
                assert!(r.min <= r.default && r.default <= r.max, "{}", s.key);
                assert_eq!(r.settle(None), r.default);
                assert_eq!(r.settle(Some(u64::MAX)), r.max);
                assert_eq!(r.settle(Some(0)), r.min);
            }
        }
    }
}
