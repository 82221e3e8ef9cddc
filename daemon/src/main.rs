use clap::Parser;
use harddrive_party::cli::{self, Cli, Command};
use harddrive_party::config::Settings;

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
    // Plain lines without colour, so journald and logread stay clean (the "ansi" feature
    // is left out of the build for the binary's size).
    let format = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
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
            Command::Repair => cli::repair(&settings),
            _ => cli::run_client(&cli, &settings),
        });
    if let Err(e) = result {
        eprintln!("error: {}", cli::error_line(&e));
        let awaiting_approval = e.downcast_ref::<cli::AwaitingApproval>().is_some();
        std::process::exit(if awaiting_approval { 3 } else { 1 });
    }
}

fn start(settings: Settings) -> anyhow::Result<()> {
    let ui_address = cli::ui_socket_address(&settings.ui_address)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .max_blocking_threads(64)
        .enable_all()
        .build()?;
    let allowed_hosts = settings.allowed_hosts.clone();
    let store = runtime.block_on(harddrive_party::service::run_daemon(
        settings,
        ui_address,
        allowed_hosts,
    ))?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    harddrive_party::service::close_database(store);
    Ok(())
}
