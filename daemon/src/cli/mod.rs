//! Command line: `start` runs the daemon; every other command is a thin client of the
//! HTTP API (the same one the web UI uses). Exact forms are kept for outside checks.

use std::io::Write;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::builder::FalseyValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};
use serde_json::json;

mod client;
mod commands;
mod invites;
mod output;
pub use output::error_line;
mod progress;
#[cfg(test)]
mod registry_check;

use crate::config::registry as setting;
use crate::config::{Defaults, Layer, Settings};
use crate::transfer::rate::{parse_rate, Rate};
use client::Client;
use commands::*;
use harddrive_party_core::transport::{Cipher, Congestion};
use output::*;

#[derive(Parser, Debug)]
#[command(
    name = "harddrive-party",
    version,
    about = "Peer-to-peer file sharing for NAS boxes, single-board computers and routers"
)]
pub struct Cli {
    #[arg(long = setting::UI_ADDRESS.flag, global = true, env = setting::UI_ADDRESS.env, help = setting::UI_ADDRESS.help)]
    pub ui_address: Option<String>,
    #[arg(long = setting::STORAGE.flag, global = true, env = setting::STORAGE.env, help = setting::STORAGE.help)]
    pub storage: Option<PathBuf>,
    /// TOML config file; flags and HDP_* variables override it.
    #[arg(long, global = true, env = "HDP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Debug logging (RUST_LOG overrides).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
// Parsed once per process, so the size of the `start` variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the daemon.
    Start(StartArgs),
    /// Rebuild a damaged database (stop the daemon first): the damaged file is kept as a
    /// backup; the identity, settings, shares, friends and invites are kept (from the kept
    /// copy where the damaged file cannot give them); the index is rebuilt by the next
    /// start's scan; the download queue and web UI logins are lost.
    Repair,
    /// Show this peer's name and announce address.
    Info {
        #[arg(long)]
        json: bool,
    },
    /// Connect to a peer by its announce address, or join with an invite code.
    Connect { announce_address: String },
    /// Make an invite code (and QR code) that makes its holder a friend.
    Invite {
        /// How long the code works: 90s, 30m, 24h, 7d [default: 24h, at most 30d]
        #[arg(long)]
        expires: Option<String>,
        /// How many peers may join with it [default: 1, at most 100]
        #[arg(long)]
        uses: Option<u32>,
        /// Only these shares (repeatable): the joiner is a guest that sees only them
        /// [default: what every friend sees]
        #[arg(long = "share")]
        shares: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List live invites, or revoke one.
    Invites {
        #[command(subcommand)]
        action: Option<invites::InvitesAction>,
        #[arg(long)]
        json: bool,
    },
    /// Show or set who sees a share: all friends, or only the peers named.
    ShareAccess {
        share: String,
        #[arg(long, conflicts_with = "peers")]
        all_friends: bool,
        /// A friend who may see the share (repeatable); the share is hidden from the rest.
        #[arg(long = "peer")]
        peers: Vec<String>,
    },
    /// Disconnect a peer and stop reconnecting to it.
    Disconnect { peer: String },
    /// List friends, pending requests, suggestions and blocked peers.
    Peers {
        #[arg(long)]
        json: bool,
    },
    /// Make a pending request or a suggestion a friend.
    Approve { peer: String },
    /// Refuse a peer from now on: never dialled, its downloads cancelled.
    Block { peer: String },
    /// Lift a block.
    Unblock { peer: String },
    /// Remove a peer's key and address.
    Forget { peer: String },
    /// Give a peer a nickname ("" clears it).
    Rename { peer: String, nickname: String },
    /// Query this peer's own shared files.
    Shares(ListArgs),
    /// Re-index every share now (changes show by themselves within seconds; this is for
    /// what the kernel cannot report, such as a network mount).
    Rescan,
    /// Query remote peers' files: `ls [peer/path]`.
    Ls(ListArgs),
    /// Download a file or directory: `download peer/path`.
    Download {
        path: String,
        /// Show progress until the download completes.
        #[arg(long)]
        wait: bool,
        /// With --wait: print only errors.
        #[arg(short, long)]
        quiet: bool,
        /// Save into this folder instead of the download folder's PEER/ folder: it must be
        /// the download folder or a share's folder (for example one a media server reads).
        #[arg(long, value_name = "DIR")]
        to: Option<std::path::PathBuf>,
    },
    /// Show downloads and uploads.
    Transfers {
        #[arg(long)]
        json: bool,
    },
    /// Stream a remote file (or a byte range) to stdout.
    Read {
        path: String,
        #[arg(long)]
        start: Option<u64>,
        #[arg(long)]
        end: Option<u64>,
    },
    /// Stop the running daemon gracefully.
    Stop,
    /// Set the web UI password (from a terminal, or the first line of stdin).
    Passwd,
    /// Print the one-time setup code the web UI asks for before a password is set.
    SetupCode,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    #[arg(long = setting::SHARE_DIRS.flag, env = setting::SHARE_DIRS.env, help = setting::SHARE_DIRS.help, value_delimiter = ':')]
    pub share_dirs: Vec<PathBuf>,
    #[arg(long = setting::DOWNLOAD_DIR.flag, env = setting::DOWNLOAD_DIR.env, help = setting::DOWNLOAD_DIR.help)]
    pub download_dir: Option<PathBuf>,
    #[arg(long = setting::LISTEN.flag, env = setting::LISTEN.env, help = setting::LISTEN.help)]
    pub listen: Option<SocketAddr>,
    #[arg(long = setting::MDNS.flag, env = setting::MDNS.env, help = setting::MDNS.help, value_parser = FalseyValueParser::new())]
    pub no_mdns: bool,
    #[arg(long = setting::TRUST_INTRODUCED.flag, env = setting::TRUST_INTRODUCED.env, help = setting::TRUST_INTRODUCED.help, value_parser = FalseyValueParser::new())]
    pub trust_introduced: bool,
    #[arg(long = setting::LAN_TRUST.flag, env = setting::LAN_TRUST.env, help = setting::LAN_TRUST.help, value_parser = FalseyValueParser::new())]
    pub lan_trust: bool,
    #[arg(long = setting::UPNP.flag, env = setting::UPNP.env, help = setting::UPNP.help, value_parser = FalseyValueParser::new())]
    pub no_upnp: bool,
    #[arg(long = setting::STUN_SERVERS.flag, env = setting::STUN_SERVERS.env, help = setting::STUN_SERVERS.help, value_delimiter = ',')]
    pub stun_servers: Vec<String>,
    #[arg(long = setting::STUN_INTERVAL.flag, env = setting::STUN_INTERVAL.env, help = setting::STUN_INTERVAL.help)]
    pub stun_interval: Option<u64>,
    #[arg(long = setting::STUN.flag, env = setting::STUN.env, help = setting::STUN.help, value_parser = FalseyValueParser::new())]
    pub no_stun: bool,
    #[arg(long = setting::KEEP_ALIVE_INTERVAL.flag, env = setting::KEEP_ALIVE_INTERVAL.env, help = setting::KEEP_ALIVE_INTERVAL.help)]
    pub keep_alive_interval: Option<u64>,
    #[arg(long = setting::TURN_SERVER.flag, env = setting::TURN_SERVER.env, help = setting::TURN_SERVER.help)]
    pub turn_server: Option<String>,
    #[arg(long = setting::TURN_USERNAME.flag, env = setting::TURN_USERNAME.env, help = setting::TURN_USERNAME.help)]
    pub turn_username: Option<String>,
    #[arg(long = setting::TURN_PASSWORD.flag, env = setting::TURN_PASSWORD.env, help = setting::TURN_PASSWORD.help)]
    pub turn_password: Option<String>,
    #[arg(long = setting::MAX_DOWNLOADS.flag, env = setting::MAX_DOWNLOADS.env, help = setting::MAX_DOWNLOADS.help)]
    pub max_downloads: Option<usize>,
    #[arg(long = setting::MAX_DOWNLOADS_PER_PEER.flag, env = setting::MAX_DOWNLOADS_PER_PEER.env, help = setting::MAX_DOWNLOADS_PER_PEER.help)]
    pub max_downloads_per_peer: Option<usize>,
    #[arg(long = setting::MAX_UPLOADS.flag, env = setting::MAX_UPLOADS.env, help = setting::MAX_UPLOADS.help)]
    pub max_uploads: Option<usize>,
    #[arg(long = setting::MAX_UPLOADS_PER_PEER.flag, env = setting::MAX_UPLOADS_PER_PEER.env, help = setting::MAX_UPLOADS_PER_PEER.help)]
    pub max_uploads_per_peer: Option<usize>,
    #[arg(long = setting::RETRY_LIMIT.flag, env = setting::RETRY_LIMIT.env, help = setting::RETRY_LIMIT.help)]
    pub retry_limit: Option<u64>,
    #[arg(long = setting::RETRY_BACKOFF.flag, env = setting::RETRY_BACKOFF.env, help = setting::RETRY_BACKOFF.help)]
    pub retry_backoff: Option<u64>,
    #[arg(long = setting::NOTIFY_URL.flag, env = setting::NOTIFY_URL.env, help = setting::NOTIFY_URL.help)]
    pub notify_url: Option<String>,
    #[arg(long = setting::RESCAN_INTERVAL.flag, env = setting::RESCAN_INTERVAL.env, help = setting::RESCAN_INTERVAL.help)]
    pub rescan_interval: Option<u64>,
    #[arg(long = setting::THREADS.flag, env = setting::THREADS.env, help = setting::THREADS.help)]
    pub threads: Option<usize>,
    #[arg(long = setting::UPLOAD_LIMIT.flag, env = setting::UPLOAD_LIMIT.env, help = setting::UPLOAD_LIMIT.help, value_parser = parse_rate)]
    pub upload_limit: Option<Rate>,
    #[arg(long = setting::DOWNLOAD_LIMIT.flag, env = setting::DOWNLOAD_LIMIT.env, help = setting::DOWNLOAD_LIMIT.help, value_parser = parse_rate)]
    pub download_limit: Option<Rate>,
    #[arg(long = setting::PEER_UPLOAD_LIMIT.flag, env = setting::PEER_UPLOAD_LIMIT.env, help = setting::PEER_UPLOAD_LIMIT.help, value_parser = parse_rate)]
    pub peer_upload_limit: Option<Rate>,
    #[arg(long = setting::PEER_DOWNLOAD_LIMIT.flag, env = setting::PEER_DOWNLOAD_LIMIT.env, help = setting::PEER_DOWNLOAD_LIMIT.help, value_parser = parse_rate)]
    pub peer_download_limit: Option<Rate>,
    #[arg(long = setting::BACKGROUND_HASHING.flag, env = setting::BACKGROUND_HASHING.env, help = setting::BACKGROUND_HASHING.help, value_parser = FalseyValueParser::new())]
    pub no_background_hashing: bool,
    #[arg(long = setting::SEED_DOWNLOADS.flag, env = setting::SEED_DOWNLOADS.env, help = setting::SEED_DOWNLOADS.help, value_parser = FalseyValueParser::new())]
    pub no_seed_downloads: bool,
    #[arg(long = setting::MIN_FREE_SPACE.flag, env = setting::MIN_FREE_SPACE.env, help = setting::MIN_FREE_SPACE.help, value_parser = parse_rate)]
    pub min_free_space: Option<u64>,
    #[arg(long = setting::DB_CACHE.flag, env = setting::DB_CACHE.env, help = setting::DB_CACHE.help, value_parser = parse_rate)]
    pub db_cache: Option<u64>,
    #[arg(long = setting::QUIC_WINDOW.flag, env = setting::QUIC_WINDOW.env, help = setting::QUIC_WINDOW.help, value_parser = parse_rate)]
    pub quic_window: Option<u64>,
    #[arg(long = setting::CIPHER.flag, env = setting::CIPHER.env, help = setting::CIPHER.help)]
    pub cipher: Option<Cipher>,
    #[arg(long = setting::CONGESTION.flag, env = setting::CONGESTION.env, help = setting::CONGESTION.help)]
    pub congestion: Option<Congestion>,
    #[arg(long = setting::BACKGROUND_HASH_RATE.flag, env = setting::BACKGROUND_HASH_RATE.env, help = setting::BACKGROUND_HASH_RATE.help, value_parser = parse_rate)]
    pub background_hash_rate: Option<Rate>,
    #[arg(long = setting::ALLOWED_HOSTS.flag, env = setting::ALLOWED_HOSTS.env, help = setting::ALLOWED_HOSTS.help, value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
}

impl Cli {
    /// The flags-and-environment layer (clap has already put HDP_* values under the flags).
    pub fn layer(&self) -> Layer {
        let base = Layer {
            storage: self.storage.clone(),
            ui_address: self.ui_address.clone(),
            ..Layer::default()
        };
        let Command::Start(args) = &self.command else {
            return base;
        };
        Layer {
            share_dirs: (!args.share_dirs.is_empty()).then(|| args.share_dirs.clone()),
            download_dir: args.download_dir.clone(),
            listen: args.listen,
            mdns: args.no_mdns.then_some(false),
            upnp: args.no_upnp.then_some(false),
            trust_introduced: args.trust_introduced.then_some(true),
            lan_trust: args.lan_trust.then_some(true),
            stun: args.no_stun.then_some(false),
            stun_servers: (!args.stun_servers.is_empty()).then(|| args.stun_servers.clone()),
            stun_interval: args.stun_interval,
            keep_alive_interval: args.keep_alive_interval,
            turn_server: args.turn_server.clone(),
            turn_username: args.turn_username.clone(),
            turn_password: args.turn_password.clone(),
            threads: args.threads,
            max_downloads: args.max_downloads,
            max_downloads_per_peer: args.max_downloads_per_peer,
            max_uploads: args.max_uploads,
            max_uploads_per_peer: args.max_uploads_per_peer,
            retry_limit: args.retry_limit,
            retry_backoff: args.retry_backoff,
            notify_url: args.notify_url.clone(),
            rescan_interval: args.rescan_interval,
            upload_limit: args.upload_limit,
            download_limit: args.download_limit,
            peer_upload_limit: args.peer_upload_limit,
            peer_download_limit: args.peer_download_limit,
            background_hashing: args.no_background_hashing.then_some(false),
            seed_downloads: args.no_seed_downloads.then_some(false),
            background_hash_rate: args.background_hash_rate,
            min_free_space: args.min_free_space,
            db_cache: args.db_cache,
            quic_window: args.quic_window,
            cipher: args.cipher,
            congestion: args.congestion,
            allowed_hosts: (!args.allowed_hosts.is_empty()).then(|| args.allowed_hosts.clone()),
            ..base
        }
    }

    /// Every layer applied: flags and environment, then the config file, then defaults.
    pub fn settings(&self) -> Result<Settings, crate::config::ConfigError> {
        let file = match &self.config {
            Some(path) => crate::config::load(path)?,
            None => Layer::default(),
        };
        let storage = default_storage();
        // A folder of its own inside ~/Downloads: with seed_downloads on, the download
        // folder is shared with friends, and ~/Downloads holds everything a browser fetched.
        let home_downloads = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|home| home.is_dir() && home != Path::new("/"))
            .map(|home| home.join("Downloads").join("harddrive-party"));
        Ok(self.layer().over(file).settle(Defaults {
            storage,
            home_downloads,
        }))
    }
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// `path` (shares) or `peer/path` (ls)
    pub path: Option<String>,
    /// Case-insensitive filter on paths.
    #[arg(long)]
    pub searchterm: Option<String>,
    #[arg(long, action = ArgAction::Set, default_value_t = true)]
    pub recursive: bool,
    #[arg(long)]
    pub json: bool,
}

/// Where the packages keep the service's state (debian/config.toml, the container image).
const SERVICE_STORAGE: &str = "/var/lib/harddrive-party";

/// The setup code from the storage directory, or from the system service's when this
/// user's has none (so `sudo harddrive-party setup-code` works after a package install).
fn read_setup_code(storage: &Path) -> anyhow::Result<String> {
    let candidates = [
        storage.join(crate::auth::SETUP_CODE_FILE),
        Path::new(SERVICE_STORAGE).join(crate::auth::SETUP_CODE_FILE),
    ];
    let mut denied = None;
    for path in &candidates {
        match std::fs::read_to_string(path) {
            Ok(code) => return Ok(code.trim().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                denied.get_or_insert(path.clone());
            }
            Err(_) => {}
        }
    }
    match denied {
        Some(path) => bail!(
            "{} is readable only by the service's user: run this as root (sudo) or as that user",
            path.display()
        ),
        None => bail!(
            "no setup code in {} or {SERVICE_STORAGE}: a web UI password is set already \
             (change it with `harddrive-party passwd` or in Settings), or the daemon has not \
             started yet (give --storage or --config as for the daemon)",
            storage.display()
        ),
    }
}

pub fn default_storage() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("harddrive-party");
    }
    home().join(".local/share/harddrive-party")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `http://host:port` (or bare `host:port`) to a socket address to bind or dial.
pub fn ui_socket_address(url: &str) -> anyhow::Result<SocketAddr> {
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    if url.starts_with("https://") || hostport.contains('/') {
        bail!("--ui-address must look like http://HOST:PORT, got {url}");
    }
    hostport
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve --ui-address {url}"))?
        .next()
        .ok_or_else(|| anyhow!("--ui-address {url} resolves to nothing"))
}

/// `repair`: runs without a daemon, on the storage directory itself.
pub fn repair(settings: &Settings) -> anyhow::Result<()> {
    use crate::store::{Source, KEPT_COPY_FILE};
    let report = crate::store::repair(&settings.storage)?;
    println!("damaged database kept as {}", report.backup.display());
    for (table, rows, source) in &report.kept {
        match source {
            Source::Damaged => println!("kept {table}: {rows}"),
            Source::KeptCopy => println!(
                "kept {table}: {rows} (from the kept copy {KEPT_COPY_FILE}: changes of its last minute before the damage may be missing)"
            ),
        }
    }
    for (table, why) in &report.lost {
        println!("lost {table}: {why}");
    }
    println!("dropped: the share index and hashes (the next start rescans), the download queue (add downloads again; their .part files resume), web UI logins; the identity key is a file of its own and is unchanged");
    Ok(())
}

/// `connect` reached the peer, which keeps our request until its owner approves it: not a
/// failure of the command, but not a friendship yet either (exit status 3, apart from 1).
#[derive(Debug, thiserror::Error)]
#[error("{0} has not approved you yet: it now lists you as a request to approve; you become friends when its owner approves you or connects to your address")]
pub struct AwaitingApproval(pub String);

/// Runs a client command against a running daemon.
pub fn run_client(cli: &Cli, settings: &Settings) -> anyhow::Result<()> {
    let client = Client::new(&settings.ui_address, &settings.storage)?;
    match &cli.command {
        Command::Start(_) | Command::Repair => unreachable!("handled by main"),
        Command::Info { json } => print_info(&client, *json)?,
        Command::Connect { announce_address } => connect(&client, announce_address)?,
        Command::Invite {
            expires,
            uses,
            shares,
            json,
        } => invites::invite(
            &client,
            invites::InviteOptions {
                expires: expires.as_deref(),
                uses: *uses,
                shares,
                json: *json,
            },
        )?,
        Command::Invites { action, json } => invites::invites(&client, action.as_ref(), *json)?,
        Command::ShareAccess {
            share,
            all_friends,
            peers,
        } => invites::share_access(&client, share, *all_friends, peers)?,
        Command::Disconnect { peer } => {
            client.post("/api/disconnect", json!({ "peer": peer }))?;
            println!("disconnected {peer}");
        }
        Command::Peers { json } => print_peers(&client, *json)?,
        Command::Approve { peer } => trust_action(&client, "approve", peer, "approved")?,
        Command::Block { peer } => trust_action(&client, "block", peer, "blocked")?,
        Command::Unblock { peer } => trust_action(&client, "unblock", peer, "unblocked")?,
        Command::Forget { peer } => trust_action(&client, "forget", peer, "forgot")?,
        Command::Rename { peer, nickname } => {
            client.post(
                "/api/peers/rename",
                json!({ "peer": peer, "nickname": nickname }),
            )?;
            println!("renamed {peer}");
        }
        Command::Shares(args) => print_listing(&client, "/api/index", args)?,
        Command::Ls(args) => print_listing(&client, "/api/ls", args)?,
        Command::Rescan => rescan(&client)?,
        Command::Download {
            path,
            wait,
            quiet,
            to,
        } => download(&client, path, to.as_deref(), *wait, *quiet)?,
        Command::Transfers { json } => print_transfers(&client, *json)?,
        Command::Read { path, start, end } => read_to_stdout(&client, path, *start, *end)?,
        Command::Stop => stop(&client)?,
        Command::Passwd => {
            let password = crate::auth::read_new_password()?;
            client.post("/api/auth/password", json!({ "new_password": password }))?;
            println!("web UI password set; every web UI session was logged out");
        }
        Command::SetupCode => println!("{}", read_setup_code(&settings.storage)?),
    }
    Ok(())
}
