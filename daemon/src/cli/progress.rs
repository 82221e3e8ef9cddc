//! The progress line of `download --wait`: redrawn in place on a terminal's stderr, and not
//! drawn at all elsewhere, so logs and scripts see only the outcome. Our own few lines
//! instead of indicatif and console, for the MIPS binaries' 5,000,000-byte budget
//! (BENCHMARKS.md, "Static sizes, session 14").

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::output::human_bytes;

const BAR_WIDTH: usize = 20;
/// The speed shown is the average over this window: recent enough that a stall shows
/// within seconds, long enough that it does not flicker at each 300 ms poll.
const RATE_WINDOW: Duration = Duration::from_secs(5);
/// Samples older than the window are dropped; this bounds the rest at one a poll.
const MAX_SAMPLES: usize = 64;
/// Long paths are cut from the left (the file name matters most) to keep the line on one
/// row of a phone-sized terminal.
const MAX_LABEL_CHARS: usize = 32;

/// Bytes per second over the last [`RATE_WINDOW`] of samples.
#[derive(Debug, Default)]
pub(super) struct RateWindow {
    samples: VecDeque<(Instant, u64)>,
}

impl RateWindow {
    /// Records that `bytes` had arrived in total by `now`; returns the rate over the window,
    /// or `None` until two samples lie far enough apart to say anything.
    pub(super) fn observe(&mut self, now: Instant, bytes: u64) -> Option<f64> {
        // A restarted transfer counts from zero again: the old samples say nothing about it.
        if self.samples.back().is_some_and(|&(_, last)| bytes < last) {
            self.samples.clear();
        }
        self.samples.push_back((now, bytes));
        while self.samples.len() > MAX_SAMPLES
            || self.samples.len() > 2
                && self
                    .samples
                    .get(1)
                    .is_some_and(|&(at, _)| now.saturating_duration_since(at) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let &(first_at, first_bytes) = self.samples.front()?;
        let span = now.saturating_duration_since(first_at).as_secs_f64();
        (span >= 0.5).then(|| (bytes - first_bytes) as f64 / span)
    }
}

/// One line: bar, bytes, speed, time left, label.
pub(super) fn render(done: u64, total: u64, rate: Option<f64>, label: &str) -> String {
    let filled = if total == 0 {
        0
    } else {
        (done.min(total) as u128 * BAR_WIDTH as u128 / total as u128) as usize
    };
    let mut bar = "=".repeat(filled);
    if filled < BAR_WIDTH {
        bar.push(if filled > 0 { '>' } else { ' ' });
        bar.push_str(&" ".repeat(BAR_WIDTH - filled - 1));
    }
    let speed = match rate {
        Some(r) => format!("{}/s", human_bytes(r as u64)),
        None => "-".to_string(),
    };
    let mut line = format!(
        "[{bar}] {}/{} {speed}",
        human_bytes(done),
        human_bytes(total)
    );
    if let Some(r) = rate.filter(|&r| r >= 1.0 && total > done) {
        line.push_str(&format!(
            " eta {}",
            human_duration((total - done) as f64 / r)
        ));
    }
    line.push(' ');
    line.push_str(&shorten(label));
    line
}

fn human_duration(secs: f64) -> String {
    let secs = secs.min(u32::MAX as f64) as u64;
    match secs {
        0..=99 => format!("{secs}s"),
        100..=5999 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

fn shorten(label: &str) -> String {
    let chars = label.chars().count();
    if chars <= MAX_LABEL_CHARS {
        return label.to_string();
    }
    let tail: String = label.chars().skip(chars - (MAX_LABEL_CHARS - 1)).collect();
    format!("…{tail}")
}

/// The line on stderr, when stderr is a terminal and the user did not ask for quiet.
pub(super) struct ProgressLine {
    visible: bool,
    drawn: bool,
    rate: RateWindow,
}

impl ProgressLine {
    pub(super) fn new(quiet: bool) -> Self {
        Self {
            visible: !quiet && std::io::stderr().is_terminal(),
            drawn: false,
            rate: RateWindow::default(),
        }
    }

    pub(super) fn update(&mut self, done: u64, total: u64, label: &str) {
        let rate = self.rate.observe(Instant::now(), done);
        if self.visible {
            // \r back to the start, \x1b[K clears what a longer previous line left.
            eprint!("\r{}\x1b[K", render(done, total, rate, label));
            let _ = std::io::stderr().flush();
            self.drawn = true;
        }
    }

    /// Ends the line so what follows starts on its own row.
    pub(super) fn finish(&mut self) {
        if std::mem::take(&mut self.drawn) {
            eprintln!();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_fills_in_proportion_and_names_the_file() {
        let half = render(
            50 << 20,
            100 << 20,
            Some(5.0 * 1024.0 * 1024.0),
            "Music/a.flac",
        );
        assert_eq!(
            half,
            "[==========>         ] 50.0 MiB/100.0 MiB 5.0 MiB/s eta 10s Music/a.flac"
        );
        let empty = render(0, 0, None, "x");
        assert!(
            empty.starts_with(&format!("[{}]", " ".repeat(BAR_WIDTH))),
            "{empty}"
        );
        let full = render(7, 7, Some(1.0), "x");
        assert!(
            full.starts_with(&format!("[{}]", "=".repeat(BAR_WIDTH))),
            "{full}"
        );
        assert!(!full.contains("eta"), "nothing left, no eta: {full}");
        // More received than announced (a file that grew) does not overflow the bar.
        let over = render(9, 7, None, "x");
        assert!(
            over.starts_with(&format!("[{}]", "=".repeat(BAR_WIDTH))),
            "{over}"
        );
    }

    #[test]
    fn long_paths_keep_their_end() {
        let path = format!("{}song.flac", "deep/".repeat(20));
        let line = render(1, 2, None, &path);
        assert!(
            line.ends_with(" …p/deep/deep/deep/deep/song.flac"),
            "{line}"
        );
        assert_eq!(shorten(&path).chars().count(), MAX_LABEL_CHARS);
        assert_eq!(shorten("Music/a.flac"), "Music/a.flac");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(42.4), "42s");
        assert_eq!(human_duration(125.0), "2m05s");
        assert_eq!(human_duration(7322.0), "2h02m");
        assert_eq!(human_duration(f64::INFINITY), "1193046h28m");
    }

    #[test]
    fn rate_follows_the_recent_window() {
        let start = Instant::now();
        let mut window = RateWindow::default();
        assert_eq!(window.observe(start, 0), None, "one sample says nothing");
        // 1 MiB/s for 10 s, then a stall: after the window the speed falls to zero.
        let mut rate = None;
        for s in 1..=10u64 {
            rate = window.observe(start + Duration::from_secs(s), s << 20);
        }
        assert_eq!(rate, Some((1u64 << 20) as f64));
        for s in 11..=20u64 {
            rate = window.observe(start + Duration::from_secs(s), 10 << 20);
        }
        assert_eq!(rate, Some(0.0));
        assert!(window.samples.len() <= 7, "old samples dropped");
        // A transfer that starts over is measured afresh.
        assert_eq!(window.observe(start + Duration::from_secs(21), 0), None);
    }

    #[test]
    fn samples_stay_bounded_at_any_poll_rate() {
        let start = Instant::now();
        let mut window = RateWindow::default();
        for ms in 0..10_000u64 {
            window.observe(start + Duration::from_micros(ms), ms);
        }
        assert!(window.samples.len() <= MAX_SAMPLES);
    }
}
