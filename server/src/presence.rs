//! Presence in one room: who is there, and what to tell the members about it.
//!
//! Announcing every join to every member costs N²/2 frames while a room fills (50
//! million for 10,000 members), so changes are **coalesced**: the first change after a
//! quiet spell is told at once, and the ones that follow wait for the next presence
//! tick and go out together as one diff per room. A room bigger than the configured
//! limit stops sending diffs altogether and tells only its **count**, at most once per
//! second (or tick, if longer); its members can still page through the list on request. When it shrinks to
//! half the limit it sends everyone the full list again and goes back to diffs. The
//! gap between the two thresholds keeps a room near the limit from flapping.
//!
//! This type is plain data with time passed in: the hub calls it under the room's lock
//! and sends what it returns; the presence task wakes it when a tick is due.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_shared::{PresenceMode, ServerFrame, User};

/// Largest page a `members` request gets.
pub const MAX_PAGE: usize = 1_000;
/// Page size when the request names none.
pub const DEFAULT_PAGE: usize = 100;
/// Shortest gap between two count updates in a big room.
pub const COUNT_INTERVAL: Duration = Duration::from_secs(1);

/// How presence is paced and when a room counts as big.
#[derive(Debug, Clone, Copy)]
pub struct PresenceConfig {
    /// Shortest gap between two announcements in one room.
    pub tick: Duration,
    /// Above this many users a room announces counts instead of diffs.
    pub limit: usize,
}

/// What a joiner learns about who is there.
pub struct Snapshot {
    /// Full or count.
    pub mode: PresenceMode,
    /// Every user in full mode; none in count mode (a join's answer stays small).
    pub members: Vec<User>,
    /// Users present.
    pub count: usize,
}

/// When the room should next announce.
#[derive(Debug, PartialEq, Eq)]
pub enum Due {
    /// Now: nothing was announced within the last tick.
    Now,
    /// At this instant; the caller must arrange a wake-up.
    At(Instant),
    /// A wake-up is already arranged, or there is nothing to tell.
    Nothing,
}

/// One room's presence.
pub struct Presence {
    config: PresenceConfig,
    /// User id → the user and how many of their connections are in the room.
    users: BTreeMap<String, (Arc<User>, usize)>,
    mode: PresenceMode,
    /// Users whose presence changed since the last announcement (full mode).
    changed: BTreeSet<String>,
    /// The count members were last told.
    told_count: usize,
    /// The mode members were last told.
    told_mode: PresenceMode,
    /// The room went back to a list: the next announcement carries all of it, even if
    /// it went to counts and back again within one tick.
    list_due: bool,
    /// When the last announcement went out.
    last_told: Option<Instant>,
    /// Whether a wake-up is arranged.
    scheduled: bool,
}

impl Presence {
    /// An empty room's presence.
    pub fn new(config: PresenceConfig) -> Self {
        Presence {
            config,
            users: BTreeMap::new(),
            mode: PresenceMode::Full,
            changed: BTreeSet::new(),
            told_count: 0,
            told_mode: PresenceMode::Full,
            list_due: false,
            last_told: None,
            scheduled: false,
        }
    }

    /// Users present.
    pub fn count(&self) -> usize {
        self.users.len()
    }

    /// How the room announces presence right now.
    #[cfg(test)]
    pub fn mode(&self) -> PresenceMode {
        self.mode
    }

    /// Records one more connection of `user`. Returns whether that made them present.
    pub fn add(&mut self, user: &Arc<User>) -> bool {
        let entry = self.users.entry(user.id.clone()).or_insert_with(|| (user.clone(), 0));
        entry.1 += 1;
        let arrived = entry.1 == 1;
        if arrived {
            self.changed_one(&user.id);
        }
        arrived
    }

    /// Records that one connection of user `id` left. Returns whether they are gone.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(entry) = self.users.get_mut(id) else { return false };
        entry.1 -= 1;
        let gone = entry.1 == 0;
        if gone {
            self.users.remove(id);
            self.changed_one(id);
        }
        gone
    }

    fn changed_one(&mut self, id: &str) {
        let count = self.users.len();
        match self.mode {
            PresenceMode::Full if count > self.config.limit => {
                self.mode = PresenceMode::Count;
                self.changed.clear();
            }
            PresenceMode::Full => {
                self.changed.insert(id.to_owned());
            }
            PresenceMode::Count if count <= self.config.limit / 2 => {
                // The list will go out whole; individual changes are covered by it.
                self.mode = PresenceMode::Full;
                self.changed.clear();
                self.list_due = true;
            }
            PresenceMode::Count => {}
        }
    }

    /// What a connection joining now is told.
    pub fn snapshot(&self) -> Snapshot {
        let members = match self.mode {
            PresenceMode::Full => self.users.values().map(|(user, _)| User::clone(user)).collect(),
            PresenceMode::Count => Vec::new(),
        };
        Snapshot { mode: self.mode, members, count: self.users.len() }
    }

    /// Up to `limit` users after the id `after`, and the id to continue from.
    pub fn page(&self, after: Option<&str>, limit: usize) -> (Vec<User>, Option<String>) {
        let start = match after {
            Some(id) => Bound::Excluded(id),
            None => Bound::Unbounded,
        };
        let mut range = self.users.range::<str, _>((start, Bound::Unbounded));
        let page: Vec<User> = range.by_ref().take(limit).map(|(_, (user, _))| User::clone(user)).collect();
        let next = match (range.next(), page.last()) {
            (Some(_), Some(last)) => Some(last.id.clone()),
            _ => None,
        };
        (page, next)
    }

    fn pending(&self) -> bool {
        self.mode != self.told_mode
            || self.list_due
            || match self.mode {
                PresenceMode::Full => !self.changed.is_empty(),
                PresenceMode::Count => self.users.len() != self.told_count,
            }
    }

    /// The shortest gap between announcements: a tick, or in a big room
    /// [`COUNT_INTERVAL`] if that is longer. A count is glanced at, not read like a
    /// list, and every count update is one frame to every member of a big room.
    fn gap(&self) -> Duration {
        match self.mode {
            PresenceMode::Full => self.config.tick,
            PresenceMode::Count => self.config.tick.max(COUNT_INTERVAL),
        }
    }

    /// After a change: whether to announce now, later, or not at all. `Due::At` means
    /// the caller must call [`Presence::tick`] at that instant.
    pub fn due(&mut self, now: Instant) -> Due {
        if self.scheduled || !self.pending() {
            return Due::Nothing;
        }
        match self.last_told {
            Some(last) if now < last + self.gap() => {
                self.scheduled = true;
                Due::At(last + self.gap())
            }
            _ => Due::Now,
        }
    }

    /// The arranged wake-up has come: the frame to send to every member, if any.
    pub fn tick(&mut self, room: &str, now: Instant) -> Option<ServerFrame> {
        self.scheduled = false;
        self.announce(room, now)
    }

    /// The frame that brings every member up to date, marking it told.
    pub fn announce(&mut self, room: &str, now: Instant) -> Option<ServerFrame> {
        if !self.pending() {
            return None;
        }
        self.last_told = Some(now);
        let count = self.users.len();
        let whole_list = std::mem::take(&mut self.list_due);
        self.told_mode = self.mode;
        self.told_count = count;
        let frame = match self.mode {
            PresenceMode::Count => ServerFrame::PresenceCount { room: room.into(), count },
            PresenceMode::Full if whole_list => ServerFrame::Presence {
                room: room.into(),
                joined: self.users.values().map(|(user, _)| User::clone(user)).collect(),
                left: Vec::new(),
                count,
                snapshot: true,
            },
            PresenceMode::Full => {
                let mut joined = Vec::new();
                let mut left = Vec::new();
                for id in std::mem::take(&mut self.changed) {
                    match self.users.get(&id) {
                        Some((user, _)) => joined.push(User::clone(user)),
                        None => left.push(id),
                    }
                }
                ServerFrame::Presence { room: room.into(), joined, left, count, snapshot: false }
            }
        };
        self.changed.clear();
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> Arc<User> {
        Arc::new(User::new(id, id.to_uppercase(), "#000"))
    }

    fn presence(limit: usize) -> Presence {
        Presence::new(PresenceConfig { tick: Duration::from_millis(200), limit })
    }

    fn ids(users: &[User]) -> Vec<&str> {
        users.iter().map(|u| u.id.as_str()).collect()
    }

    #[test]
    fn a_change_after_a_quiet_spell_is_told_at_once_then_changes_wait_for_the_tick() {
        let mut p = presence(100);
        let t0 = Instant::now();
        p.add(&user("a"));
        assert_eq!(p.due(t0), Due::Now);
        let Some(ServerFrame::Presence { joined, .. }) = p.announce("r", t0) else { panic!() };
        assert_eq!(ids(&joined), ["a"]);

        p.add(&user("b"));
        assert_eq!(p.due(t0 + Duration::from_millis(10)), Due::At(t0 + Duration::from_millis(200)));
        p.add(&user("c"));
        assert_eq!(p.due(t0 + Duration::from_millis(20)), Due::Nothing, "already arranged");
        p.remove("a");
        let Some(ServerFrame::Presence { joined, left, count, snapshot, .. }) =
            p.tick("r", t0 + Duration::from_millis(200))
        else {
            panic!()
        };
        assert_eq!((ids(&joined), left, count, snapshot), (vec!["b", "c"], vec!["a".to_owned()], 2, false));
        assert_eq!(p.due(t0 + Duration::from_millis(500)), Due::Nothing, "nothing new to tell");
    }

    #[test]
    fn a_join_and_leave_within_one_tick_is_told_as_gone() {
        let mut p = presence(100);
        let t0 = Instant::now();
        p.add(&user("a"));
        p.announce("r", t0);
        p.add(&user("x"));
        p.remove("x");
        assert!(matches!(p.due(t0), Due::At(_)));
        let Some(ServerFrame::Presence { joined, left, .. }) = p.tick("r", t0 + Duration::from_millis(200))
        else {
            panic!()
        };
        assert!(joined.is_empty());
        assert_eq!(left, ["x"], "a joiner who saw x in its snapshot must hear x left");
    }

    #[test]
    fn several_tabs_of_one_user_are_one_member() {
        let mut p = presence(100);
        assert!(p.add(&user("a")));
        assert!(!p.add(&user("a")));
        assert!(!p.remove("a"));
        assert_eq!(p.count(), 1);
        assert!(p.remove("a"));
        assert_eq!(p.count(), 0);
        assert!(!p.remove("a"), "leaving twice is harmless");
    }

    #[test]
    fn a_big_room_tells_counts_and_returns_to_a_list_at_half_the_limit() {
        let mut p = presence(4);
        let t0 = Instant::now();
        for id in ["a", "b", "c", "d"] {
            p.add(&user(id));
        }
        assert_eq!(p.mode(), PresenceMode::Full);
        p.announce("r", t0);
        p.add(&user("e"));
        assert_eq!(p.mode(), PresenceMode::Count);
        let snapshot = p.snapshot();
        assert_eq!((snapshot.mode, snapshot.members.len(), snapshot.count), (PresenceMode::Count, 0, 5));
        let frame = p.announce("r", t0 + Duration::from_secs(1));
        assert_eq!(frame, Some(ServerFrame::PresenceCount { room: "r".into(), count: 5 }));

        p.remove("e");
        p.remove("d");
        assert_eq!(p.mode(), PresenceMode::Count, "4 and 3 are above half the limit");
        p.remove("c");
        assert_eq!(p.mode(), PresenceMode::Full);
        let Some(ServerFrame::Presence { joined, left, count, snapshot, .. }) =
            p.announce("r", t0 + Duration::from_secs(2))
        else {
            panic!()
        };
        assert_eq!((ids(&joined), left.len(), count, snapshot), (vec!["a", "b"], 0, 2, true));
    }

    #[test]
    fn to_counts_and_back_within_one_tick_still_sends_the_whole_list() {
        let mut p = presence(4);
        let t0 = Instant::now();
        for id in ["a", "b", "c", "d"] {
            p.add(&user(id));
        }
        p.announce("r", t0);
        p.add(&user("e"));
        for id in ["e", "d", "c"] {
            p.remove(id);
        }
        assert_eq!(p.mode(), PresenceMode::Full);
        let Some(ServerFrame::Presence { joined, snapshot: true, .. }) = p.announce("r", t0) else {
            panic!("members who believe four are here must get the list")
        };
        assert_eq!(ids(&joined), ["a", "b"]);
    }

    #[test]
    fn counts_are_told_only_when_they_changed() {
        let mut p = presence(1);
        let t0 = Instant::now();
        p.add(&user("a"));
        p.add(&user("b"));
        assert_eq!(p.due(t0), Due::Now);
        assert!(matches!(p.announce("r", t0), Some(ServerFrame::PresenceCount { count: 2, .. })));
        p.add(&user("c"));
        assert!(matches!(p.due(t0 + Duration::from_millis(50)), Due::At(_)));
        p.remove("c");
        assert_eq!(p.tick("r", t0 + Duration::from_millis(200)), None, "back to 2: nothing to tell");
    }

    #[test]
    fn pages_walk_the_members_in_id_order() {
        let mut p = presence(1);
        for id in ["d", "a", "c", "b", "e"] {
            p.add(&user(id));
        }
        let (first, next) = p.page(None, 2);
        assert_eq!((ids(&first), next.as_deref()), (vec!["a", "b"], Some("b")));
        let (second, next) = p.page(next.as_deref(), 2);
        assert_eq!((ids(&second), next.as_deref()), (vec!["c", "d"], Some("d")));
        let (last, next) = p.page(next.as_deref(), 2);
        assert_eq!((ids(&last), next), (vec!["e"], None));
        let (exact, next) = p.page(None, 5);
        assert_eq!((exact.len(), next), (5, None), "no next when nothing is left");
    }
}
