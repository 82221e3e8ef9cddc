//! Bandwidth limits: a pure token bucket, a parser for human rates, and a thin async shell
//! that applies a global and a per-peer bucket to each chunk. Limits change live.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Bytes per second; 0 means unlimited.
pub type Rate = u64;

/// A token bucket holding at most `burst` bytes, refilled at `rate` bytes per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: Rate,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Bursts are capped at a quarter second of traffic (at least 64 KiB), so a limit holds
    /// over short windows while a single large chunk can still pass.
    fn burst(rate: Rate) -> f64 {
        (rate as f64 / 4.0).max(64.0 * 1024.0)
    }

    pub fn new(rate: Rate, now: Instant) -> Self {
        Self {
            rate,
            tokens: Self::burst(rate),
            last: now,
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    pub fn set_rate(&mut self, rate: Rate, now: Instant) {
        self.refill(now);
        self.rate = rate;
        self.tokens = self.tokens.min(Self::burst(rate));
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(Self::burst(self.rate));
    }

    /// Takes `bytes` and returns how long the caller must wait before sending them. Debt is
    /// allowed (tokens go negative), so a chunk bigger than the burst still passes, later.
    pub fn take(&mut self, bytes: u64, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        self.refill(now);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a rate: use a number of bytes per second with an optional unit, e.g. 800KB, 5MB, 1.5MiB, or 0 for no limit")]
pub struct BadRate(pub String);

/// Parses "5MB", "800KB", "1.5MiB", "250000" or "0" (unlimited) into bytes per second.
/// KB/MB/GB are decimal (as network speeds are quoted); KiB/MiB/GiB are binary.
pub fn parse_rate(text: &str) -> Result<Rate, BadRate> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| BadRate(text.to_string()))?;
    let unit = unit.trim().trim_end_matches("/s");
    let factor = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(BadRate(text.to_string())),
    };
    let bytes = number * factor;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(BadRate(text.to_string()));
    }
    Ok(bytes.round() as Rate)
}

/// A rate as people write it in JSON or TOML: bytes per second, or a string with a unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub enum RateValue {
    Number(u64),
    Text(String),
}

impl RateValue {
    pub fn bytes(&self) -> Result<Rate, BadRate> {
        match self {
            RateValue::Number(n) => Ok(*n),
            RateValue::Text(t) => parse_rate(t),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub upload: Rate,
    pub download: Rate,
    pub peer_upload: Rate,
    pub peer_download: Rate,
}

/// Alternative limits ("turtle mode"): switched on by hand or by a weekly schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AltSpeed {
    pub limits: Limits,
    /// When they apply by themselves; None = only when switched on by hand.
    pub schedule: Option<Schedule>,
    /// How the alternative limits are chosen now.
    pub mode: AltMode,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AltMode {
    /// Follow the schedule (off when there is none).
    #[default]
    Schedule,
    On,
    Off,
}

/// Local-time window, e.g. 18:00 to 23:30 on weekdays; `to` earlier than `from` crosses
/// midnight, equal means the whole day.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    /// 0 = Monday … 6 = Sunday; empty = every day. A window crossing midnight belongs to
    /// the day it starts on.
    #[serde(default)]
    pub days: Vec<u8>,
    pub from: String,
    pub to: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a time of day: use HH:MM, 00:00 to 23:59")]
pub struct BadTime(pub String);

/// "HH:MM" to minutes after midnight.
pub fn parse_time(text: &str) -> Result<u16, BadTime> {
    let bad = || BadTime(text.to_string());
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Schedule {
    pub fn validate(&self) -> Result<(), String> {
        parse_time(&self.from).map_err(|e| e.to_string())?;
        parse_time(&self.to).map_err(|e| e.to_string())?;
        match self.days.iter().find(|d| **d > 6) {
            Some(d) => Err(format!("day {d} is not 0 (Monday) to 6 (Sunday)")),
            None => Ok(()),
        }
    }

    /// Whether local `weekday` (0 = Monday) at `minute` after midnight falls in the window.
    pub fn covers(&self, weekday: u8, minute: u16) -> bool {
        let (Ok(from), Ok(to)) = (parse_time(&self.from), parse_time(&self.to)) else {
            return false;
        };
        let on = |day: u8| self.days.is_empty() || self.days.contains(&day);
        if from == to {
            on(weekday)
        } else if from < to {
            on(weekday) && (from..to).contains(&minute)
        } else {
            (minute >= from && on(weekday)) || (minute < to && on((weekday + 6) % 7))
        }
    }
}

impl AltSpeed {
    pub fn active(&self, weekday: u8, minute: u16) -> bool {
        match self.mode {
            AltMode::On => true,
            AltMode::Off => false,
            AltMode::Schedule => self
                .schedule
                .as_ref()
                .is_some_and(|s| s.covers(weekday, minute)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

/// The buckets in use: one global per direction and one per peer per direction. Pure:
/// every call is handed the time, so the arithmetic is tested without sleeping; the
/// daemon's `RateLimiter` puts it behind a lock and sleeps for the delays it returns.
pub struct Buckets {
    limits: Limits,
    upload: TokenBucket,
    download: TokenBucket,
    peers: HashMap<(String, bool), TokenBucket>,
}

impl Buckets {
    pub fn new(limits: Limits, now: Instant) -> Self {
        Self {
            limits,
            upload: TokenBucket::new(limits.upload, now),
            download: TokenBucket::new(limits.download, now),
            peers: HashMap::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Applies new limits at once, to transfers already running too.
    pub fn set_limits(&mut self, limits: Limits, now: Instant) {
        self.limits = limits;
        self.upload.set_rate(limits.upload, now);
        self.download.set_rate(limits.download, now);
        for ((_, upload), bucket) in self.peers.iter_mut() {
            bucket.set_rate(
                if *upload {
                    limits.peer_upload
                } else {
                    limits.peer_download
                },
                now,
            );
        }
    }

    /// How long `bytes` for `peer` in `direction` must wait: the longer of the global and
    /// the per-peer bucket's answer.
    pub fn delay(
        &mut self,
        peer: &str,
        direction: Direction,
        bytes: u64,
        now: Instant,
    ) -> Duration {
        let upload = direction == Direction::Upload;
        let peer_rate = if upload {
            self.limits.peer_upload
        } else {
            self.limits.peer_download
        };
        let global = if upload {
            self.upload.take(bytes, now)
        } else {
            self.download.take(bytes, now)
        };
        let per_peer = if peer_rate == 0 {
            Duration::ZERO
        } else {
            self.peers
                .entry((peer.to_string(), upload))
                .or_insert_with(|| TokenBucket::new(peer_rate, now))
                .take(bytes, now)
        };
        global.max(per_peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_units() {
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("5MB"), Ok(5_000_000));
        assert_eq!(parse_rate("800KB"), Ok(800_000));
        assert_eq!(parse_rate("1.5MiB"), Ok(1_572_864));
        assert_eq!(parse_rate("2 mb/s"), Ok(2_000_000));
        assert_eq!(parse_rate("123"), Ok(123));
        for bad in ["", "fast", "5XB", "-1MB", "1e400"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_holds_the_rate_over_time() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1_000_000, t0);
        // Send 64 KiB chunks as fast as allowed for 10 simulated seconds.
        let mut now = t0;
        let mut sent = 0u64;
        while now < t0 + Duration::from_secs(10) {
            now += bucket.take(65_536, now);
            sent += 65_536;
        }
        let rate = sent as f64 / now.duration_since(t0).as_secs_f64();
        assert!(
            (rate - 1_000_000.0).abs() / 1_000_000.0 < 0.05,
            "rate {rate}"
        );
    }

    #[test]
    fn unlimited_never_waits_and_changes_apply_live() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0, t0);
        assert_eq!(bucket.take(u64::MAX / 2, t0), Duration::ZERO);
        bucket.set_rate(100_000, t0);
        let wait = bucket.take(100_000 + 65_536, t0);
        assert!(wait >= Duration::from_millis(900), "{wait:?}");
    }

    #[test]
    fn schedules_cover_their_window_including_across_midnight() {
        let evenings = Schedule {
            days: vec![0, 1, 2, 3, 4],
            from: "18:00".into(),
            to: "23:30".into(),
        };
        assert!(evenings.covers(0, 18 * 60));
        assert!(!evenings.covers(0, 23 * 60 + 30));
        assert!(!evenings.covers(5, 19 * 60), "not on Saturday");
        let nights = Schedule {
            days: vec![4],
            from: "22:00".into(),
            to: "07:00".into(),
        };
        assert!(nights.covers(4, 23 * 60), "Friday night");
        assert!(
            nights.covers(5, 6 * 60),
            "early Saturday belongs to Friday's window"
        );
        assert!(
            !nights.covers(4, 6 * 60),
            "early Friday belongs to Thursday's"
        );
        let always = Schedule {
            days: vec![],
            from: "00:00".into(),
            to: "00:00".into(),
        };
        assert!(always.covers(6, 0) && always.covers(2, 1439));
        assert_eq!(parse_time("7:05"), Ok(425));
        assert!(parse_time("24:00").is_err() && parse_time("noon").is_err());
        assert!(Schedule {
            days: vec![7],
            from: "01:00".into(),
            to: "02:00".into()
        }
        .validate()
        .is_err());
    }

    #[test]
    fn manual_mode_overrides_the_schedule() {
        let mut alt = AltSpeed {
            schedule: Some(Schedule {
                days: vec![],
                from: "00:00".into(),
                to: "00:00".into(),
            }),
            ..AltSpeed::default()
        };
        assert!(alt.active(3, 600));
        alt.mode = AltMode::Off;
        assert!(!alt.active(3, 600));
        alt = AltSpeed {
            mode: AltMode::On,
            ..AltSpeed::default()
        };
        assert!(alt.active(3, 600));
        assert!(
            !AltSpeed::default().active(3, 600),
            "no schedule, no manual switch: off"
        );
    }

    #[test]
    fn per_peer_and_global_buckets_both_bind() {
        let now = Instant::now();
        let mut buckets = Buckets::new(
            Limits {
                upload: 0,
                download: 0,
                peer_upload: 100_000,
                peer_download: 0,
            },
            now,
        );
        let first = buckets.delay("a", Direction::Upload, 200_000, now);
        assert!(first > Duration::from_millis(500));
        assert_eq!(
            buckets.delay("b", Direction::Download, 10_000_000, now),
            Duration::ZERO
        );
        buckets.set_limits(
            Limits {
                upload: 50_000,
                ..Limits::default()
            },
            now,
        );
        assert!(buckets.delay("c", Direction::Upload, 200_000, now) > Duration::from_secs(1));
    }
}
