use std::io::IsTerminal;

use clap::Parser;
use harddrive_party::cli::{self, Cli, Command};
use harddrive_party::config::Settings;
use harddrive_party::node::NodeConfig;
use harddrive_party::transfer::download::DownloadLimits;

#[global_allocator]
static ALLOCATOR: harddrive_party::memory::MapLargeBlocks = harddrive_party::memory::MapLargeBlocks;

fn init_logging(verbose: bool) {
    use tracing_subscriber::prelude::*;
    // `Targets` understands RUST_LOG's common "target=level,level" form without pulling in a
    // regex engine, which keeps the static binary small.
    let default = if verbose {
        "info,harddrive_party=debug"
    } else {
        "info"
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse::<tracing_subscriber::filter::Targets>().ok())
        .unwrap_or_else(|| default.parse().unwrap_or_default());
    // Plain lines without colour when stderr is not a terminal, so journald and logread stay clean.
    let format = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    tracing_subscriber::registry()
        .with(format)
        .with(filter)
        .init();
}

fn main() {
    let cli = Cli::parse();
    let result = cli
        .settings()
        .map_err(anyhow::Error::from)
        .and_then(|settings| match &cli.command {
            Command::Start(_) => {
                init_logging(cli.verbose);
                start(settings)
            }
            _ => cli::run_client(&cli, &settings),
        });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn start(settings: Settings) -> anyhow::Result<()> {
    let ui_address = cli::ui_socket_address(&settings.ui_address)?;
    let config = NodeConfig {
        storage: settings.storage,
        share_dirs: settings.share_dirs,
        download_dir: settings.download_dir,
        listen: settings.listen,
        mdns: settings.mdns,
        upnp: settings.upnp,
        trust: settings.trust,
        stun_servers: settings.stun_servers,
        stun_interval: settings.stun_interval,
        keep_alive_interval: settings.keep_alive_interval,
        quic_window: settings.quic_window,
        turn: settings.turn,
        rescan_interval: settings.rescan_interval,
        db_cache: settings.db_cache,
        download_limits: DownloadLimits {
            total: settings.max_downloads,
            per_peer: settings.max_downloads_per_peer,
            min_free_space: settings.min_free_space,
        },
        limits: settings.limits,
        background_hashing: settings.background_hashing,
        background_hash_rate: settings.background_hash_rate,
        max_uploads: settings.max_uploads,
        max_uploads_per_peer: settings.max_uploads_per_peer,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .max_blocking_threads(64)
        .enable_all()
        .build()?;
    runtime.block_on(harddrive_party::service::run_daemon(
        config,
        ui_address,
        settings.allowed_hosts,
    ))
}
