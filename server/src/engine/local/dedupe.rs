//! Remembering which publishes were already stored, so a retry gets its original ack.
//!
//! Every publish is checked here, and almost every check is a miss (a new message), so
//! the check must never touch the store: the whole dedupe window lives in memory. The
//! store is read once, at startup, to refill the window a restart interrupted
//! ([`crate::store::Store::receipts`]).
//!
//! Entries are small because the window can hold millions of them (ten minutes at
//! 50,000 publishes a second is 30 million): the key is a 128-bit fingerprint of
//! `(room, user id, client id)` made with two independently keyed SipHash hashers, and the
//! value is what an ack repeats (room, seq, time), with the room name shared per room.
//! About 80 bytes per remembered publish, against the ~450 a copy of the message took.
//! Two different keys share a fingerprint with probability about n²/2¹²⁹ (below 10⁻²⁴
//! for 30 million keys), far below the odds of the disk corrupting the message.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use tether_shared::Millis;

/// A publish's identity: `(room, user id, client id)`, hashed to 128 bits. The room is
/// part of it, as in cluster mode, where a room's dedupe markers live in its Redis
/// slot: the same id in two rooms is two messages (what a server-side broadcast needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u64, u64);

/// What the ack of a stored publish said; a duplicate is answered with the same.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// Room the message went to.
    pub room: Arc<str>,
    /// Its seq there.
    pub seq: u64,
    /// When it was stored.
    pub ts: Millis,
}

/// The publishes stored within the dedupe window, oldest first.
pub struct Dedupe {
    hashers: (RandomState, RandomState),
    receipts: HashMap<Fingerprint, Receipt>,
    order: VecDeque<(Millis, Fingerprint)>,
}

impl Default for Dedupe {
    fn default() -> Self {
        Dedupe {
            hashers: (RandomState::new(), RandomState::new()),
            receipts: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

impl Dedupe {
    /// The fingerprint of `user`'s publish to `room` with client id `id`.
    pub fn fingerprint(&self, room: &str, user: &str, id: &str) -> Fingerprint {
        let key = (room, user, id);
        Fingerprint(self.hashers.0.hash_one(key), self.hashers.1.hash_one(key))
    }

    /// The receipt of an earlier publish with this fingerprint, if still remembered.
    pub fn get(&self, fingerprint: Fingerprint) -> Option<&Receipt> {
        self.receipts.get(&fingerprint)
    }

    /// Remembers a stored publish. Receipts must arrive in time order (the sequencer
    /// stamps them), so expiry is a walk from the front.
    pub fn remember(&mut self, fingerprint: Fingerprint, receipt: Receipt) {
        self.order.push_back((receipt.ts, fingerprint));
        self.receipts.insert(fingerprint, receipt);
    }

    /// Forgets every publish stored before `cutoff`, and gives back the memory a burst
    /// left behind once the window has shrunk well below it.
    pub fn forget_before(&mut self, cutoff: Millis) {
        while let Some(&(ts, fingerprint)) = self.order.front() {
            if ts >= cutoff {
                break;
            }
            self.order.pop_front();
            self.receipts.remove(&fingerprint);
        }
        if self.receipts.capacity() > 1024 && self.receipts.len() < self.receipts.capacity() / 4 {
            self.receipts.shrink_to(self.receipts.len() * 2);
            self.order.shrink_to(self.order.len() * 2);
        }
    }

    /// How many publishes are remembered.
    pub fn len(&self) -> usize {
        self.receipts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(seq: u64, ts: u64) -> Receipt {
        Receipt { room: Arc::from("r"), seq, ts: Millis(ts) }
    }

    #[test]
    fn a_remembered_publish_is_found_until_the_window_passes() {
        let mut dedupe = Dedupe::default();
        let first = dedupe.fingerprint("r", "alice", "m1");
        let second = dedupe.fingerprint("r", "alice", "m2");
        dedupe.remember(first, receipt(1, 100));
        dedupe.remember(second, receipt(2, 200));
        assert_eq!(dedupe.get(first).map(|r| r.seq), Some(1));
        assert!(
            dedupe.get(dedupe.fingerprint("r", "bob", "m1")).is_none(),
            "another user's id is not a duplicate"
        );
        assert!(
            dedupe.get(dedupe.fingerprint("s", "alice", "m1")).is_none(),
            "nor the same id in another room"
        );
        dedupe.forget_before(Millis(150));
        assert!(dedupe.get(first).is_none());
        assert_eq!(dedupe.get(second).map(|r| r.seq), Some(2));
        assert_eq!(dedupe.len(), 1);
    }

    #[test]
    fn user_and_id_do_not_run_together() {
        let dedupe = Dedupe::default();
        assert_ne!(dedupe.fingerprint("r", "ab", "c"), dedupe.fingerprint("r", "a", "bc"));
        assert_ne!(dedupe.fingerprint("ra", "b", "c"), dedupe.fingerprint("r", "ab", "c"));
    }
}
