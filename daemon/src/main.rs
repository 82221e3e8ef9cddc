use std::io::IsTerminal;
use std::time::Duration;

use clap::Parser;
use harddrive_party::cli::{self, Cli, Command};
use harddrive_party::node::NodeConfig;
use harddrive_party::transfer::download::DownloadLimits;
use harddrive_party::transfer::upload::UploadLimits;

fn init_logging(verbose: bool) {
    let default = if verbose {
        "harddrive_party=debug,info"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Plain lines without colour when stderr is not a terminal, so journald and logread stay clean.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() {
    let cli = Cli::parse();
    let storage = cli.storage.clone().unwrap_or_else(cli::default_storage);
    let result = match &cli.command {
        Command::Start(args) => {
            init_logging(cli.verbose);
            start(&cli, args, storage)
        }
        _ => cli::run_client(&cli, &storage),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn start(cli: &Cli, args: &cli::StartArgs, storage: std::path::PathBuf) -> anyhow::Result<()> {
    let ui_address = cli::ui_socket_address(&cli.ui_address)?;
    let config = NodeConfig {
        download_dir: args
            .download_dir
            .clone()
            .unwrap_or_else(|| cli::default_download_dir(&storage)),
        storage,
        share_dirs: args.share_dirs.clone(),
        listen: args.listen,
        mdns: !args.no_mdns,
        stun_servers: args.stun_servers.clone(),
        rescan_interval: Duration::from_secs(args.rescan_interval.max(10)),
        download_limits: DownloadLimits {
            total: args.max_downloads.max(1),
            per_peer: args.max_downloads_per_peer.max(1),
        },
        upload_limits: UploadLimits {
            total: args.max_uploads,
            per_peer: args.max_uploads_per_peer,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.clamp(1, 16))
        .max_blocking_threads(64)
        .enable_all()
        .build()?;
    runtime.block_on(harddrive_party::service::run_daemon(config, ui_address))
}
