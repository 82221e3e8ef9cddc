//! Notifications (the rules are core's `notify`): finished and failed downloads from the
//! event stream, the download disk filling, and new friend requests, coalesced into at most
//! one message per 30 s and POSTed as plain text with a `Title` header (what an ntfy topic
//! reads; any webhook gets the same) to `notify_url`. Sending runs on a blocking thread with
//! a bounded timeout, so a URL that hangs costs that thread and never a transfer. `https://`
//! URLs are checked against the system's CA store (feature `https-notifications`, left out of
//! the router builds).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harddrive_party_core::notify::{Coalescer, Message, Notice};
use tokio::sync::broadcast::error::RecvError;

use super::Node;
use crate::events::Event;
use crate::locks::lock;
use crate::transfer::TransferState;

/// Whether this build can send to `https://` URLs.
pub(super) const HTTPS_BUILT_IN: bool = cfg!(feature = "https-notifications");
/// The whole request, connection to answer, is given this long.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the download disk is looked at for filling up.
const DISK_CHECK: Duration = Duration::from_secs(10);
/// Downloads already notified, remembered so repeated progress events say nothing twice.
const REMEMBERED_DOWNLOADS: usize = 1024;

/// What the notification loop keeps between events.
#[derive(Default)]
struct Seen {
    downloads: VecDeque<u64>,
    requests: HashSet<String>,
    disk_full: bool,
}

impl Node {
    pub fn notify_url(&self) -> String {
        lock(&self.notify_url).clone()
    }

    pub(super) async fn notify_loop(self: Arc<Self>) {
        let mut events = self.events.subscribe();
        let mut coalescer = Coalescer::default();
        let started = Instant::now();
        let mut seen = Seen {
            // Requests already waiting at start were there before: only new ones are news.
            requests: self
                .pending_requests()
                .into_iter()
                .map(|p| p.name)
                .collect(),
            ..Seen::default()
        };
        let mut disk = tokio::time::interval(DISK_CHECK);
        disk.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = coalescer
                .next_due_ms()
                .map(|ms| tokio::time::Instant::from_std(started + Duration::from_millis(ms)));
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => {
                        for notice in self.notices_in(&event, &mut seen) {
                            coalescer.push(notice);
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                },
                _ = disk.tick() => {
                    let full = self.problems().iter().any(|p| p.code == "download_disk_full");
                    if full && !seen.disk_full {
                        coalescer.push(Notice::DiskFull);
                    }
                    seen.disk_full = full;
                }
                () = async { tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)).await }, if due.is_some() => {
                    let now_ms = started.elapsed().as_millis() as u64;
                    if let Some(message) = coalescer.poll(now_ms) {
                        let url = self.notify_url();
                        if !url.is_empty() {
                            tokio::task::spawn_blocking(move || send(&url, &message));
                        }
                    }
                }
            }
        }
    }

    /// What `event` is news of, if notifications are on.
    fn notices_in(&self, event: &Event, seen: &mut Seen) -> Vec<Notice> {
        if self.notify_url().is_empty() {
            return Vec::new();
        }
        match event {
            Event::Transfer(view) if view.direction == "download" => {
                let notice = match view.state {
                    TransferState::Done => Notice::DownloadFinished {
                        path: format!("{}/{}", view.peer, view.path),
                    },
                    TransferState::Failed => Notice::DownloadFailed {
                        path: format!("{}/{}", view.peer, view.path),
                        why: view.error.clone().unwrap_or_else(|| "failed".into()),
                    },
                    _ => return Vec::new(),
                };
                if seen.downloads.contains(&view.id) {
                    return Vec::new();
                }
                if seen.downloads.len() == REMEMBERED_DOWNLOADS {
                    seen.downloads.pop_front();
                }
                seen.downloads.push_back(view.id);
                vec![notice]
            }
            Event::PeersChanged => {
                let now: HashSet<String> = self
                    .pending_requests()
                    .into_iter()
                    .map(|p| p.name)
                    .collect();
                let news = now
                    .difference(&seen.requests)
                    .map(|name| Notice::FriendRequest { name: name.clone() })
                    .collect();
                seen.requests = now;
                news
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(feature = "https-notifications")]
fn send(url: &str, message: &Message) {
    // Read for each message (at most one per 30 s), so a renewed CA store needs no restart.
    let roots = rustls_native_certs::load_native_certs();
    if roots.certs.is_empty() && url.starts_with("https://") {
        tracing::warn!(
            "notification to {url}: no CA certificates found ({:?})",
            roots.errors
        );
    }
    let request = roots.certs.into_iter().fold(
        attohttpc_tls::post(url),
        attohttpc_tls::RequestBuilder::add_root_certificate,
    );
    deliver(url, message, request);
}

#[cfg(not(feature = "https-notifications"))]
fn send(url: &str, message: &Message) {
    deliver(url, message, attohttpc::post(url));
}

#[cfg(not(feature = "https-notifications"))]
use attohttpc as http_client;
#[cfg(feature = "https-notifications")]
use attohttpc_tls as http_client;

fn deliver(url: &str, message: &Message, request: http_client::RequestBuilder) {
    let sent = request
        .timeout(SEND_TIMEOUT)
        .header("Title", &message.title)
        .header("Content-Type", "text/plain; charset=utf-8")
        .text(&message.body)
        .send();
    match sent {
        Ok(answer) if answer.is_success() => {}
        Ok(answer) => tracing::warn!("notification to {url} refused: HTTP {}", answer.status()),
        Err(e) => tracing::warn!("notification to {url} failed: {e}"),
    }
}
