//! Time as the core sees it: a number handed in by the driver.
//!
//! The core never reads a clock. Drivers pass [`Millis::monotonic`]: milliseconds since
//! the Unix epoch as they were when the page (or process) started, plus the time a
//! monotonic clock has counted since. That reads like wall-clock time, so a message's
//! TTL in an outbox restored after a reload still means what it meant before, yet it
//! never jumps when someone (or NTP) sets the wall clock. [`Millis::now`] is the plain
//! wall clock, for timestamps that other machines compare.

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

    /// A clock that never jumps but reads like the wall clock: the epoch time at start
    /// plus monotonic time since (`performance.timeOrigin + performance.now()` in a
    /// browser, a [`std::time::Instant`] natively). What drivers give the core.
    pub fn monotonic() -> Millis {
        monotonic_clock()
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

#[cfg(target_arch = "wasm32")]
fn monotonic_clock() -> Millis {
    use js_sys::{Function, Reflect};
    thread_local! {
        /// `performance`, its `now` and its `timeOrigin`, looked up once.
        static PERFORMANCE: Option<(js_sys::Object, Function, f64)> = {
            let performance = Reflect::get(&js_sys::global(), &"performance".into()).ok().filter(|p| p.is_object());
            performance.and_then(|performance| {
                let now = Reflect::get(&performance, &"now".into()).ok().filter(|f| f.is_function())?;
                let origin = Reflect::get(&performance, &"timeOrigin".into()).ok()?.as_f64()?;
                Some((js_sys::Object::from(performance), Function::from(now), origin))
            })
        };
    }
    PERFORMANCE.with(|performance| match performance {
        Some((performance, now, origin)) => match now.call0(performance).ok().and_then(|t| t.as_f64()) {
            Some(elapsed) => Millis((origin + elapsed) as u64),
            None => wall_clock(),
        },
        // No `performance` (a very old runtime): the wall clock is all there is.
        None => wall_clock(),
    })
}

#[cfg(not(target_arch = "wasm32"))]
fn monotonic_clock() -> Millis {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<(Millis, Instant)> = OnceLock::new();
    let (wall, instant) = START.get_or_init(|| (wall_clock(), Instant::now()));
    wall.after(instant.elapsed())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_reads_like_the_wall_clock_and_never_goes_back() {
        let first = Millis::monotonic();
        assert!(first.0.abs_diff(Millis::now().0) < 1_000);
        let mut last = first;
        for _ in 0..1_000 {
            let next = Millis::monotonic();
            assert!(next >= last);
            last = next;
        }
    }
}
