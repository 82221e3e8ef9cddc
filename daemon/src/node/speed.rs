//! Bandwidth limits in force: the normal ones, the alternative ones and their weekly
//! schedule, and the clock that switches between them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::settings::SavedSettings;
use crate::local_time::LocalTime;
use crate::locks::lock;
use crate::store::StoreError;
use crate::transfer::rate::{AltSpeed, Limits, RateLimiter};

/// How often the schedule is looked at: a switch lands within this of its minute.
const SCHEDULE_TICK: Duration = Duration::from_secs(20);

pub struct SpeedLimits {
    normal: Mutex<Limits>,
    alt: Mutex<AltSpeed>,
    rate: Arc<RateLimiter>,
    saved: SavedSettings,
}

impl SpeedLimits {
    pub fn new(
        normal: Limits,
        alt: AltSpeed,
        rate: Arc<RateLimiter>,
        saved: SavedSettings,
    ) -> Self {
        Self {
            normal: Mutex::new(normal),
            alt: Mutex::new(alt),
            rate,
            saved,
        }
    }

    /// The normal limits (in force whenever the alternative ones are not).
    pub fn limits(&self) -> Limits {
        *lock(&self.normal)
    }

    /// The limits the transfers pace themselves by right now.
    pub fn in_force(&self) -> Limits {
        self.rate.limits()
    }

    pub fn alt_speed(&self) -> AltSpeed {
        lock(&self.alt).clone()
    }

    /// Changes the normal limits at once and keeps them for the next start.
    pub fn set_limits(&self, limits: Limits) -> Result<(), StoreError> {
        *lock(&self.normal) = limits;
        self.apply();
        self.saved.set_rate_limits(&limits)
    }

    pub fn set_alt_speed(&self, alt: AltSpeed) -> Result<(), StoreError> {
        self.saved.set_alt_speed(&alt)?;
        *lock(&self.alt) = alt;
        self.apply();
        Ok(())
    }

    /// Whether the alternative limits apply right now (local time).
    pub fn alt_speed_active(&self) -> bool {
        // A clock the C library cannot break down keeps the normal limits.
        LocalTime::now()
            .is_some_and(|now| lock(&self.alt).active(now.weekday_from_monday, now.minute_of_day()))
    }

    /// Puts the normal or the alternative limits in force, whichever applies now.
    fn apply(&self) {
        let wanted = if self.alt_speed_active() {
            lock(&self.alt).limits
        } else {
            *lock(&self.normal)
        };
        if self.rate.limits() != wanted {
            self.rate.set_limits(wanted);
        }
    }

    /// Switches between normal and alternative limits as the schedule says.
    pub async fn schedule_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SCHEDULE_TICK);
        loop {
            tick.tick().await;
            self.apply();
        }
    }
}
