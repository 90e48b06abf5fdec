//! Joins the server could not do for a reason of its own (`error internal` about the
//! room: its store or Redis failed for a moment), asked again with backoff.
//!
//! Without this, a client whose join met a Redis restart would stay outside the room,
//! connected and silent, until its next reconnect. The room stays wanted; the core asks
//! again after 1 s, doubling to 30 s while it keeps failing.

use std::collections::BTreeSet;
use std::time::Duration;

/// The first wait before asking again.
const FIRST: Duration = Duration::from_secs(1);
/// The longest wait.
const LONGEST: Duration = Duration::from_secs(30);

/// Rooms waiting to be joined again, and how long the next wait is.
#[derive(Debug, Default)]
pub(super) struct Rejoins {
    /// Rooms to ask again when the timer fires.
    rooms: BTreeSet<String>,
    /// Rooms whose join failed and has not gone through since, asked again or not yet:
    /// a publish the server refused `not_joined` there waits for the join.
    outside: BTreeSet<String>,
    /// The wait after the last failure; `None` when the last join went through.
    delay: Option<Duration>,
}

impl Rejoins {
    /// The server failed to join `room`: remembers it, and returns how long to wait
    /// (doubling with each failure since the last success).
    pub(super) fn failed(&mut self, room: &str) -> Duration {
        self.rooms.insert(room.to_owned());
        self.outside.insert(room.to_owned());
        let delay = self.delay.map_or(FIRST, |last| (last * 2).min(LONGEST));
        self.delay = Some(delay);
        delay
    }

    /// `room` was joined: it waits no more, and the next failure waits the first step.
    /// Whether it had been waiting.
    pub(super) fn joined(&mut self, room: &str) -> bool {
        self.rooms.remove(room);
        let was_outside = self.outside.remove(room);
        if self.rooms.is_empty() {
            self.delay = None;
        }
        was_outside
    }

    /// Whether `room`'s join failed and has not gone through since.
    pub(super) fn outside(&self, room: &str) -> bool {
        self.outside.contains(room)
    }

    /// The rooms to ask again now.
    pub(super) fn take(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.rooms)
    }

    /// A new connection resumes every room anyway.
    pub(super) fn clear(&mut self) {
        *self = Rejoins::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_until_a_join_succeeds() {
        let mut rejoins = Rejoins::default();
        assert_eq!(rejoins.failed("a"), FIRST);
        assert_eq!(rejoins.failed("a"), FIRST * 2);
        assert_eq!(rejoins.take().len(), 1);
        for _ in 0..10 {
            rejoins.failed("a");
        }
        assert_eq!(rejoins.failed("a"), LONGEST);
        rejoins.joined("a");
        assert_eq!(rejoins.failed("b"), FIRST);
    }
}
