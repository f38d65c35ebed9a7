//! The one clock abstraction of every part: the codec's replay window, the program's store, jobs
//! and abilities, and the local zone all read the time through [`Clock`], so that windows, TTLs,
//! leases and backoff have deterministic tests ([`ManualClock`]) and the local zone can move its
//! own clock.

use std::sync::atomic::{AtomicI64, Ordering};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    /// Unix milliseconds now.
    fn now_ms(&self) -> i64;

    /// Unix seconds now (whole seconds, rounded down).
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `start_ms` Unix milliseconds.
    pub fn new(start_ms: i64) -> Self {
        Self(AtomicI64::new(start_ms))
    }

    /// Moves the clock forward by `ms` milliseconds.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_whole_milliseconds_rounded_down() {
        let clock = ManualClock::new(1_700_000_000_999);
        assert_eq!(clock.now_secs(), 1_700_000_000);
        clock.advance(1);
        assert_eq!((clock.now_ms(), clock.now_secs()), (1_700_000_001_000, 1_700_000_001));
        assert_eq!(ManualClock::new(-1).now_secs(), -1, "before the epoch rounds down too");
    }

    #[test]
    fn the_system_clock_agrees_with_itself_in_both_units() {
        let ms = SystemClock.now_ms();
        let secs = SystemClock.now_secs();
        assert!(ms > 1_600_000_000_000, "{ms}");
        assert!((secs - ms / 1000).abs() <= 1, "{secs} vs {ms}");
    }
}
