//! Time as the core sees it: a number handed in by the driver.
//!
//! The core never reads a clock. Drivers pass wall-clock milliseconds ([`Millis::now`]:
//! `Date.now()` in the browser, `SystemTime` natively), which also survive a page
//! reload, so a message's TTL in a restored outbox still means what it meant before.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    /// The wall clock, for drivers and servers; the core only ever uses the time it is
    /// given, which is what makes it testable with time under a test's control.
    pub fn now() -> Millis {
        wall_clock()
    }

    /// `self + duration`, saturating.
    pub fn after(self, duration: Duration) -> Millis {
        Millis(self.0.saturating_add(duration.as_millis().min(u64::MAX as u128) as u64))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    /// Time from `self` until `later`, zero if already past.
    pub fn until(self, later: Millis) -> Duration {
        later.since(self)
    }
}

#[cfg(target_arch = "wasm32")]
fn wall_clock() -> Millis {
    Millis(js_sys::Date::now() as u64)
}

#[cfg(not(target_arch = "wasm32"))]
fn wall_clock() -> Millis {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Millis(since_epoch.as_millis() as u64)
}
