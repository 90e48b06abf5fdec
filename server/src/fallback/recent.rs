//! Sessions that ended lately, remembered after the session itself is forgotten.
//!
//! A session is forgotten an idle timeout after its connection ends, and a request
//! naming it then would be told that no such session exists (404 `unknown_session`),
//! as if its id were forged. The client's session did exist and did end, and
//! `PROTOCOL.md` promises it says so (410 `session_closed`). So the ids of ended
//! sessions are kept, only the ids, for [`KEPT_FOR`] and at most [`MOST`] of them:
//! bounded memory whatever the rate of sessions ending (a full set lets its oldest go,
//! which then answer 404, as documented).

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// How long an ended session's id is remembered.
pub const KEPT_FOR: Duration = Duration::from_secs(10 * 60);
/// Most ids remembered at once: about a megabyte.
pub const MOST: usize = 10_000;

/// The ids of sessions that ended within a window, the newest [`MOST`] of them.
pub struct RecentlyEnded {
    /// Ids in the order they ended, with when.
    order: VecDeque<(Instant, String)>,
    ids: HashSet<String>,
    kept_for: Duration,
    most: usize,
}

impl Default for RecentlyEnded {
    fn default() -> Self {
        RecentlyEnded::new(KEPT_FOR, MOST)
    }
}

impl RecentlyEnded {
    /// Remembers ids for `kept_for`, at most `most` of them.
    pub fn new(kept_for: Duration, most: usize) -> RecentlyEnded {
        RecentlyEnded { order: VecDeque::new(), ids: HashSet::new(), kept_for, most }
    }

    /// Remembers that session `id` ended at `now`.
    pub fn insert(&mut self, id: &str, now: Instant) {
        self.forget_before(now);
        if self.most == 0 || !self.ids.insert(id.to_owned()) {
            return;
        }
        self.order.push_back((now, id.to_owned()));
        while self.order.len() > self.most {
            if let Some((_, oldest)) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
    }

    /// Whether session `id` ended within the window before `now`.
    pub fn contains(&mut self, id: &str, now: Instant) -> bool {
        self.forget_before(now);
        self.ids.contains(id)
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some((at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < self.kept_for {
                break;
            }
            if let Some((_, id)) = self.order.pop_front() {
                self.ids.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_remembered_for_the_window_and_no_longer() {
        let start = Instant::now();
        let mut ended = RecentlyEnded::new(Duration::from_secs(60), 10);
        ended.insert("a", start);
        assert!(ended.contains("a", start + Duration::from_secs(59)));
        assert!(!ended.contains("b", start));
        assert!(!ended.contains("a", start + Duration::from_secs(60)));
        assert!(ended.ids.is_empty() && ended.order.is_empty(), "what is forgotten takes no memory");
    }

    #[test]
    fn past_its_bound_the_oldest_go_first() {
        let start = Instant::now();
        let mut ended = RecentlyEnded::new(Duration::from_secs(60), 3);
        for (n, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
            ended.insert(id, start + Duration::from_millis(n as u64));
        }
        let later = start + Duration::from_secs(1);
        assert!(!ended.contains("a", later));
        assert!(["b", "c", "d"].iter().all(|id| ended.contains(id, later)));
        // Ending twice is remembered once.
        ended.insert("d", later);
        assert_eq!((ended.order.len(), ended.ids.len()), (3, 3));
    }
}
