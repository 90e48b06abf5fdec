//! How many new rooms one user may open: `--room-creations` per minute.
//!
//! Every room with history costs disk and every live room costs memory, so a client
//! that joins, publishes into and leaves room after room could fill both. A keyed rate
//! limit caps it per user, or in dev mode (where a name is anyone's for the asking) per
//! IP address. Joining a room that already has history or members is never counted.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Checks between two sweeps of keys that have used nothing for a while.
const SWEEP_EVERY: u32 = 1024;

/// Who opens rooms: a signed-in user, or in dev mode an address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Creator {
    /// A user id from a verified token.
    User(String),
    /// The client's IP address (dev mode).
    Address(IpAddr),
}

/// The per-creator quota of new rooms.
pub struct RoomCreations {
    limiter: DefaultKeyedRateLimiter<Creator>,
    checks: AtomicU32,
}

impl RoomCreations {
    /// At most `per_minute` new rooms a minute per creator, with a burst of as many.
    pub fn new(per_minute: u32) -> RoomCreations {
        let per_minute = NonZeroU32::new(per_minute.max(1)).expect("at least one");
        RoomCreations {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            checks: AtomicU32::new(0),
        }
    }

    /// Takes one new room from `creator`'s quota; `false` when it is used up.
    pub fn allow(&self, creator: &Creator) -> bool {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            // Keys whose quota is full again weigh nothing worth keeping.
            self.limiter.retain_recent();
        }
        self.limiter.check_key(creator).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_creator_has_its_own_quota() {
        let creations = RoomCreations::new(3);
        let ada = Creator::User("ada".into());
        let address = Creator::Address("127.0.0.2".parse().unwrap());
        assert!((0..3).all(|_| creations.allow(&ada)));
        assert!(!creations.allow(&ada), "the fourth in a minute is refused");
        assert!(creations.allow(&address), "others are unaffected");
    }
}
