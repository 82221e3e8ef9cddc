//! Running as a service: the daemon's main loop, signal handling and systemd notification.

use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Settings;
use crate::http;
use crate::node::Node;
use crate::store::Store;

/// How often `STATUS=` is refreshed when no watchdog is configured.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// How long an exit waits for the database to close: 30 × 100 ms.
const CLOSE_POLLS: u32 = 30;
const CLOSE_POLL: Duration = Duration::from_millis(100);
/// A health probe slower than this counts as a hang: no watchdog ping.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the kept copy of the user's tables is compared with them and, if they
/// changed, rewritten (`store/kept_copy.rs`): at most this much of the user's changes is
/// missing from what `repair` can restore after a crash that damaged the database.
const KEPT_COPY_INTERVAL: Duration = Duration::from_secs(60);

/// Starts the node and the API, then waits for SIGTERM, SIGINT or `stop`. Returns the
/// database, to be closed by its last holder once the runtime is gone (`close_database`).
pub async fn run_daemon(
    config: Settings,
    ui_address: std::net::SocketAddr,
    allowed_hosts: Vec<String>,
) -> anyhow::Result<Weak<Store>> {
    let node = Node::start(config).await?;
    let token = http::load_or_create_token(node.storage())?;
    let listener = tokio::net::TcpListener::bind(ui_address)
        .await
        .with_context(|| format!("cannot listen for the UI/API on {ui_address}"))?;
    let bound = listener.local_addr()?;
    tracing::info!("web UI and API on http://{bound}");
    if bound.ip().is_unspecified() {
        // What a phone on the LAN opens (the container's and the packages' logs show it).
        if let Some(name) = crate::auth::machine_hostname() {
            tracing::info!(
                "open the web UI from the LAN at http://{name}.local:{}/",
                bound.port()
            );
        }
    }
    node.advertise_web_ui(bound);
    let auth = Arc::new(crate::auth::Auth::new(
        node.store().clone(),
        node.storage(),
        bound,
        &allowed_hosts,
    )?);
    if !bound.ip().is_loopback() && !auth.password_set() {
        tracing::warn!("the UI listens beyond loopback: every API call needs a login or the API token until a password is set");
    }
    let server = tokio::spawn(http::serve(
        listener,
        http::router(node.clone(), token, auth),
        node.shutdown_signal(),
    ));
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let stopped = wait_for_stop(&node).await;
    tracing::info!("shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    node.request_shutdown();
    node.close().await;
    let _ = tokio::time::timeout(HEALTH_TIMEOUT, refresh_kept_copy(node.store().clone())).await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), server).await;
    stopped?;
    Ok(Arc::downgrade(node.store()))
}

/// Brings the kept copy up to date. A failure (full disk, say) is logged once until the copy
/// is written again: the previous copy stays in place meanwhile.
async fn refresh_kept_copy(store: Arc<Store>) {
    static FAILING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let refreshed = tokio::task::spawn_blocking(move || store.refresh_kept_copy()).await;
    match refreshed {
        Ok(Ok(_)) => FAILING.store(false, std::sync::atomic::Ordering::Relaxed),
        Ok(Err(e)) if !FAILING.swap(true, std::sync::atomic::Ordering::Relaxed) => {
            tracing::warn!("cannot refresh the kept copy of the settings and friends ({e}); the previous one stays");
        }
        _ => {}
    }
}

/// Waits (bounded) for the database's last holder to let go, so redb closes the file
/// cleanly: a file left open counts as a crash's, which `repair` cannot read. Called after
/// the runtime has shut down; only work still in a blocking call can hold it then.
pub fn close_database(store: Weak<Store>) {
    for _ in 0..CLOSE_POLLS {
        if store.strong_count() == 0 {
            return;
        }
        std::thread::sleep(CLOSE_POLL);
    }
    tracing::warn!("the database was still in use at exit; the next start recovers it");
}

/// The main loop: waits for SIGTERM, SIGINT or `stop`, and in between probes the node's
/// health, reporting `STATUS=` and pinging the systemd watchdog only when the probe answers.
/// A wedged daemon therefore stops pinging and systemd restarts it.
async fn wait_for_stop(node: &Arc<Node>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut stop = node.shutdown_signal();
    let mut watchdog_usec = 0u64;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    let period = if watchdog {
        Duration::from_micros(watchdog_usec / 3).max(Duration::from_millis(100))
    } else {
        STATUS_INTERVAL
    };
    let database = node.storage().join(crate::store::DB_FILE);
    let mut failed_logged = false;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut keep = tokio::time::interval(KEPT_COPY_INTERVAL);
    keep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = stop.wait_for(|s| *s) => return Ok(()),
            _ = keep.tick() => refresh_kept_copy(node.store().clone()).await,
            _ = tick.tick() => {
                let probe = node.clone();
                let health = tokio::time::timeout(HEALTH_TIMEOUT, tokio::task::spawn_blocking(move || probe.health())).await;
                match health {
                    Ok(Ok(Ok(health))) => {
                        let status = health.status_line();
                        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&status)]);
                        if watchdog && health.watchdog_ok() {
                            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
                        }
                        if health.restart_now() {
                            tracing::error!("database {} failed after an I/O error; exiting so that the service manager restarts harddrive-party and the database is reopened", database.display());
                            anyhow::bail!("database {} failed after an I/O error (changes since were not saved); start again to reopen it", database.display());
                        }
                        if health.database_failed && !failed_logged {
                            failed_logged = true;
                            tracing::error!("database {} failed after an I/O error (storage disk full?): changes are not saved; the watchdog is no longer pinged, and harddrive-party exits to be restarted once the storage disk has room", database.display());
                        }
                    }
                    Ok(Ok(Err(e))) => {
                        tracing::error!("health check failed: {e}");
                        let status = format!("unhealthy: {e}");
                        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&status)]);
                    }
                    _ => tracing::error!("health check did not answer within {HEALTH_TIMEOUT:?}"),
                }
            }
        }
    }
}
