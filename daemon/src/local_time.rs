//! Local wall-clock time, from the C library's `localtime_r`: the alternative-speed schedule
//! and the dates shown to the user follow the system's time zone (`TZ`, `/etc/localtime`).
//! The C library is linked anyway; chrono's own time-zone reader cost about 20 KB of the
//! 5,000,000-byte budget of the router builds.

use nix::libc;

/// A moment broken down in the local time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    /// 0 = Monday ... 6 = Sunday.
    pub weekday_from_monday: u8,
}

impl LocalTime {
    /// The local time at `unix_secs`, or None where the C library cannot represent it.
    pub fn at(unix_secs: i64) -> Option<LocalTime> {
        // time_t is 32 bits where the libc crate still follows the C library's old ABI
        // (32-bit glibc, and 32-bit musl: the crate marks that time_t deprecated until it
        // moves to musl 1.2's 64-bit one); 64 bits on x86_64 and aarch64.
        #[allow(clippy::useless_conversion, deprecated)]
        let time: libc::time_t = unix_secs.try_into().ok()?;
        let mut broken_down = std::mem::MaybeUninit::<libc::tm>::zeroed();
        // SAFETY: localtime_r reads `time` and writes only the `tm` we own (the reentrant
        // variant: no shared static buffer). A null return means it wrote nothing useful.
        let written = unsafe { libc::localtime_r(&time, broken_down.as_mut_ptr()) };
        if written.is_null() {
            return None;
        }
        // SAFETY: zero-initialised, and fully written by the successful call above.
        let tm = unsafe { broken_down.assume_init() };
        Some(LocalTime {
            year: tm.tm_year.checked_add(1900)?,
            month: u8::try_from(tm.tm_mon + 1).ok()?,
            day: u8::try_from(tm.tm_mday).ok()?,
            hour: u8::try_from(tm.tm_hour).ok()?,
            minute: u8::try_from(tm.tm_min).ok()?,
            // tm_wday counts from Sunday.
            weekday_from_monday: u8::try_from((tm.tm_wday + 6) % 7).ok()?,
        })
    }

    pub fn now() -> Option<LocalTime> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs();
        LocalTime::at(i64::try_from(secs).ok()?)
    }

    /// Minutes since local midnight.
    pub fn minute_of_day(&self) -> u16 {
        u16::from(self.hour) * 60 + u16::from(self.minute)
    }
}

impl std::fmt::Display for LocalTime {
    /// `2026-12-03 14:05`: sortable, and the same in every locale.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_moment_breaks_down_in_utc() {
        // The process-wide TZ is left alone (tests run in parallel); a fixed offset is only
        // checked when the machine is on UTC, and the weekday and minutes always agree.
        let t = LocalTime::at(1_764_770_700).expect("representable"); // 2025-12-03 14:05 UTC
        if std::env::var("TZ").map_or(true, |tz| tz == "UTC" || tz.is_empty())
            && std::fs::read_link("/etc/localtime").map_or(true, |p| p.ends_with("UTC"))
        {
            assert_eq!(t.to_string(), "2025-12-03 14:05");
            assert_eq!(t.weekday_from_monday, 2, "a Wednesday");
        }
        assert!(t.weekday_from_monday < 7);
        assert_eq!(
            t.minute_of_day(),
            u16::from(t.hour) * 60 + u16::from(t.minute)
        );
        assert!((1..=12).contains(&t.month) && (1..=31).contains(&t.day));
    }

    #[test]
    fn now_is_representable() {
        assert!(LocalTime::now().is_some());
    }
}
