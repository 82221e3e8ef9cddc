use std::io::IsTerminal;

use clap::Parser;
use harddrive_party::cli::{self, Cli, Command};
use harddrive_party::config::Settings;
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
    let result = cli
        .settings()
        .map_err(anyhow::Error::from)
        .and_then(|settings| match &cli.command {
            Command::Start(args) => {
                init_logging(cli.verbose);
                start(settings, args.allowed_hosts.clone())
            }
            _ => cli::run_client(&cli, &settings),
        });
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn start(settings: Settings, allowed_hosts: Vec<String>) -> anyhow::Result<()> {
    let ui_address = cli::ui_socket_address(&settings.ui_address)?;
    let config = NodeConfig {
        storage: settings.storage,
        share_dirs: settings.share_dirs,
        download_dir: settings.download_dir,
        listen: settings.listen,
        mdns: settings.mdns,
        stun_servers: settings.stun_servers,
        rescan_interval: settings.rescan_interval,
        download_limits: DownloadLimits {
            total: settings.max_downloads,
            per_peer: settings.max_downloads_per_peer,
        },
        limits: settings.limits,
        upload_limits: UploadLimits {
            total: settings.max_uploads,
            per_peer: settings.max_uploads_per_peer,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .max_blocking_threads(64)
        .enable_all()
        .build()?;
    runtime.block_on(harddrive_party::service::run_daemon(
        config,
        ui_address,
        allowed_hosts,
    ))
}
