//! Time as the core sees it: a number handed in by the driver.
//!
//! The core never reads a clock. Drivers pass wall-clock milliseconds (`Date.now()` in
//! the browser, `SystemTime` natively), which also survive a page reload, so a message's
//! TTL in a restored outbox still means what it meant before the reload.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
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
