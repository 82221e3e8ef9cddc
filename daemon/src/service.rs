//! Running as a service: the daemon's main loop, signal handling and systemd notification.

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use crate::api;
use crate::node::{Node, NodeConfig};

/// Starts the node and the API, then waits for SIGTERM, SIGINT or `stop`.
pub async fn run_daemon(
    config: NodeConfig,
    ui_address: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let node = Node::start(config).await?;
    let token = api::load_or_create_token(&node.storage)?;
    let listener = tokio::net::TcpListener::bind(ui_address)
        .await
        .with_context(|| format!("cannot listen for the UI/API on {ui_address}"))?;
    tracing::info!("web UI and API on http://{}", listener.local_addr()?);
    let server = tokio::spawn(api::serve(
        listener,
        api::router(node.clone(), token),
        node.shutdown_signal(),
    ));
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    wait_for_stop(&node).await?;
    tracing::info!("shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    node.request_shutdown();
    node.close().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), server).await;
    Ok(())
}

async fn wait_for_stop(node: &Arc<Node>) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut stop = node.shutdown_signal();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = stop.wait_for(|s| *s) => {}
    }
    Ok(())
}
