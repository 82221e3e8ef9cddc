//! `/ws`: the event stream for the web UI.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::IntoResponse;
use futures_util::StreamExt;

use crate::events::Event;

use super::*;

/// WebSocket clients at once: each holds a socket, a task and a queue of events, and an
/// upgraded connection no longer counts towards `MAX_HTTP_CONNECTIONS`.
pub const MAX_WS_CLIENTS: usize = 32;

pub(super) async fn ws(
    State(s): State<AppState>,
    upgrade: WebSocketUpgrade,
) -> Result<impl IntoResponse, ApiError> {
    let Ok(client) = s.ws_clients.clone().try_acquire_owned() else {
        return Err(ApiError::Unavailable(format!(
            "already {MAX_WS_CLIENTS} event stream clients; close one"
        )));
    };
    let events = s.node.subscribe_events();
    Ok(upgrade.on_upgrade(move |socket| async move {
        forward_events(socket, events).await;
        drop(client);
    }))
}

pub(super) async fn forward_events(
    mut socket: WebSocket,
    mut events: tokio::sync::broadcast::Receiver<Event>,
) {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(event) => {
                    let Ok(text) = serde_json::to_string(&event) else { continue };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                // A slow client misses progress ticks rather than stalling the daemon.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            },
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
