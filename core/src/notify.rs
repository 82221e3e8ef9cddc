//! Notifications to the owner's phone (an ntfy topic or any webhook): what is worth a
//! message, and how a storm of them becomes a few. The daemon's `notify.rs` feeds events in
//! and sends what `Coalescer::poll` hands out; nothing here knows about HTTP or time sources.

use std::collections::VecDeque;

/// The first message goes out at once; later ones wait until this long after the last, and
/// carry everything that happened meanwhile.
pub const MIN_INTERVAL_MS: u64 = 30_000;
/// Notices held for the next message; older ones beyond this are only counted.
pub const MAX_PENDING: usize = 50;
/// Notices listed by name in one message; the rest are counted.
const LISTED: usize = 8;
/// The longest `notify_url` accepted.
pub const MAX_URL_LEN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    DownloadFinished { path: String },
    DownloadFailed { path: String, why: String },
    DiskFull,
    FriendRequest { name: String },
}

impl Notice {
    fn line(&self) -> String {
        match self {
            Notice::DownloadFinished { path } => format!("Downloaded {path}"),
            Notice::DownloadFailed { path, why } => format!("Download failed: {path} ({why})"),
            Notice::DiskFull => "The download disk is full: downloads are paused".into(),
            Notice::FriendRequest { name } => format!("{name} asks to be your friend"),
        }
    }
}

/// One message: a title and a body of one line per notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub title: String,
    pub body: String,
}

/// Holds notices and hands out at most one message per `MIN_INTERVAL_MS`.
#[derive(Debug, Default)]
pub struct Coalescer {
    pending: VecDeque<Notice>,
    /// Notices dropped from `pending` (the oldest first) since the last message.
    overflow: usize,
    last_sent_ms: Option<u64>,
}

impl Coalescer {
    pub fn push(&mut self, notice: Notice) {
        if self.pending.contains(&notice) {
            return;
        }
        if self.pending.len() == MAX_PENDING {
            self.pending.pop_front();
            self.overflow += 1;
        }
        self.pending.push_back(notice);
    }

    /// When `poll` will next have something to hand out, if anything is pending.
    pub fn next_due_ms(&self) -> Option<u64> {
        if self.pending.is_empty() {
            return None;
        }
        Some(self.last_sent_ms.map_or(0, |t| t + MIN_INTERVAL_MS))
    }

    /// The message due at `now_ms`, if any; taking it empties the pending notices.
    pub fn poll(&mut self, now_ms: u64) -> Option<Message> {
        if self.next_due_ms()? > now_ms {
            return None;
        }
        self.last_sent_ms = Some(now_ms);
        let notices: Vec<Notice> = self.pending.drain(..).collect();
        let total = notices.len() + std::mem::take(&mut self.overflow);
        Some(message(&notices, total))
    }
}

fn message(notices: &[Notice], total: usize) -> Message {
    let title = match notices {
        [only] if total == 1 => match only {
            Notice::DownloadFinished { .. } => "Download finished",
            Notice::DownloadFailed { .. } => "Download failed",
            Notice::DiskFull => "Download disk full",
            Notice::FriendRequest { .. } => "Friend request",
        }
        .to_string(),
        _ => format!("{total} events"),
    };
    let mut body: Vec<String> = notices.iter().take(LISTED).map(Notice::line).collect();
    if total > body.len() {
        body.push(format!("and {} more", total - body.len()));
    }
    Message {
        title: format!("harddrive-party: {title}"),
        body: body.join("\n"),
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotifyUrlError {
    #[error("the notification URL is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("the notification URL must start with http:// or https://")]
    NotHttp,
    #[error("this router build sends notifications over http:// only (TLS would not fit it): use an ntfy server or a webhook on your network")]
    HttpsNotBuiltIn,
    #[error("the notification URL has no host")]
    NoHost,
    #[error("the notification URL must not contain spaces or control characters")]
    BadCharacters,
}

/// Checks a `notify_url`: empty turns notifications off; otherwise an `http://` URL, or an
/// `https://` one where the build has TLS for it (`https_built_in`).
pub fn check_url(url: &str, https_built_in: bool) -> Result<(), NotifyUrlError> {
    if url.is_empty() {
        return Ok(());
    }
    if url.len() > MAX_URL_LEN {
        return Err(NotifyUrlError::TooLong);
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(NotifyUrlError::BadCharacters);
    }
    let rest = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => rest,
        (None, Some(rest)) if https_built_in => rest,
        (None, Some(_)) => return Err(NotifyUrlError::HttpsNotBuiltIn),
        (None, None) => return Err(NotifyUrlError::NotHttp),
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') || host.contains('@') {
        return Err(NotifyUrlError::NoHost);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(i: usize) -> Notice {
        Notice::DownloadFinished {
            path: format!("Peer/Film {i}.mkv"),
        }
    }

    #[test]
    fn the_first_notice_goes_out_at_once_and_a_storm_becomes_one_message_per_interval() {
        let mut c = Coalescer::default();
        assert_eq!(c.poll(0), None, "nothing pending");
        c.push(finished(0));
        let first = c.poll(1_000).expect("the first at once");
        assert_eq!(first.title, "harddrive-party: Download finished");
        assert_eq!(first.body, "Downloaded Peer/Film 0.mkv");
        for i in 1..=20 {
            c.push(finished(i));
        }
        assert_eq!(c.next_due_ms(), Some(1_000 + MIN_INTERVAL_MS));
        assert_eq!(c.poll(1_000 + MIN_INTERVAL_MS - 1), None, "too soon");
        let storm = c.poll(1_000 + MIN_INTERVAL_MS).expect("due");
        assert_eq!(storm.title, "harddrive-party: 20 events");
        assert_eq!(storm.body.lines().count(), LISTED + 1);
        assert_eq!(storm.body.lines().last(), Some("and 12 more"));
        assert_eq!(c.poll(u64::MAX), None, "taken");
    }

    #[test]
    fn pending_notices_are_bounded_and_repeats_are_merged() {
        let mut c = Coalescer::default();
        c.push(Notice::DiskFull);
        c.poll(0);
        c.push(Notice::DiskFull);
        c.push(Notice::DiskFull);
        for i in 0..MAX_PENDING + 10 {
            c.push(finished(i));
        }
        assert_eq!(c.pending.len(), MAX_PENDING);
        let m = c.poll(MIN_INTERVAL_MS).unwrap();
        assert_eq!(
            m.title,
            format!("harddrive-party: {} events", MAX_PENDING + 11)
        );
    }

    #[test]
    fn single_notices_say_what_happened() {
        for (notice, title, body) in [
            (
                Notice::DownloadFailed {
                    path: "P/x".into(),
                    why: "no such file".into(),
                },
                "Download failed",
                "Download failed: P/x (no such file)",
            ),
            (
                Notice::FriendRequest {
                    name: "Otter".into(),
                },
                "Friend request",
                "Otter asks to be your friend",
            ),
            (
                Notice::DiskFull,
                "Download disk full",
                "The download disk is full: downloads are paused",
            ),
        ] {
            let mut c = Coalescer::default();
            c.push(notice);
            let m = c.poll(0).unwrap();
            assert_eq!(m.title, format!("harddrive-party: {title}"));
            assert_eq!(m.body, body);
        }
    }

    #[test]
    fn urls_are_http_or_https_where_built_in_with_a_host() {
        for https in [true, false] {
            assert_eq!(check_url("", https), Ok(()));
            assert_eq!(check_url("http://ntfy.lan/nas", https), Ok(()));
            assert_eq!(check_url("http://192.168.1.5:8080/hook?x=1", https), Ok(()));
            assert_eq!(check_url("ftp://x", https), Err(NotifyUrlError::NotHttp));
            assert_eq!(
                check_url("http:///path", https),
                Err(NotifyUrlError::NoHost)
            );
            assert_eq!(check_url("http://:80/", https), Err(NotifyUrlError::NoHost));
            assert_eq!(check_url("http://u@h/", https), Err(NotifyUrlError::NoHost));
            assert_eq!(
                check_url("http://h/a b", https),
                Err(NotifyUrlError::BadCharacters)
            );
        }
        assert_eq!(check_url("https://ntfy.sh/nas", true), Ok(()));
        assert_eq!(check_url("https:///nas", true), Err(NotifyUrlError::NoHost));
        assert_eq!(
            check_url("https://ntfy.sh/nas", false),
            Err(NotifyUrlError::HttpsNotBuiltIn)
        );
        assert_eq!(
            check_url(&format!("http://h/{}", "a".repeat(MAX_URL_LEN)), true),
            Err(NotifyUrlError::TooLong)
        );
    }
}
